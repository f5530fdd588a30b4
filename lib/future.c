/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: futures, the waiting side of a call posted to a loop (made by
 * loop-call.c) or of a job submitted to a pool from any thread (made here,
 * evexec_pool_call()). This file keeps what every future has — state,
 * result, waiters, references — and the pool's kind; a loop's call adds
 * its own part in loop-call.c, through the ops.
 *
 * States: QUEUED -> RUNNING -> DONE for calls, QUEUED -> DONE for pool jobs
 * (the job's own state says whether it runs). Every change of state happens
 * under the future's mutex, so exactly one completion wins: the promise's
 * settling, a cancel by the holder, a cancel by a stop. The state is also an
 * atomic, stored with release after status and result, so that
 * evexec_future_result() reads a completed future without the lock. Waiters
 * sleep on the future's condition variable; it is signalled only when
 * someone waits.
 *
 * Lifetime: reference counted. A pool job's future has the holder's
 * reference and one for the job while the pool has it; it also keeps the
 * reference the job took on its pool until the future is freed, so
 * evexec_future_cancel() may always lock the pool's mutex.
 *
 * Locks: a future's mutex is never held together with another evexec
 * lock: evexec_future_cancel() of a pool job reads the job's state under
 * neither and calls into the pool without the future's mutex, and the pool
 * completes jobs after dropping its own. The one thing done under a
 * future's mutex besides its state is the maker's `running` hook of a
 * cancel (a loop posts its notice, lock-free). No lock is held while user
 * code runs.
 *
 * A pool job cancelled by a concurrent EVEXEC_CANCEL shutdown (or cancel)
 * is marked cancelled under the pool's mutex and completed just after,
 * outside it: evexec_future_cancel() that finds it so waits for that
 * completion (it runs no user code and needs no lock the waiter holds), so
 * that -EALREADY always means "complete".
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

#include "future-internal.h"
#include "pool.h"
#include "thread-internal.h"

/* --- lifetime ------------------------------------------------------------ */

struct evexec_future *evexec__future_new(size_t size, const struct evexec__future_ops *ops,
                                         unsigned refs)
{
    struct evexec_future *f = calloc(1, size);

    if (!f)
        return NULL;
    if (pthread_mutex_init(&f->mu, NULL)) {
        free(f);
        return NULL;
    }
    if (evexec__cond_init(&f->cv) < 0) {
        pthread_mutex_destroy(&f->mu);
        free(f);
        return NULL;
    }
    f->ops = ops;
    atomic_init(&f->state, FUTURE_QUEUED);
    atomic_init(&f->refs, refs);
    return f;
}

void evexec__future_discard(struct evexec_future *f)
{
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void evexec__future_ref(struct evexec_future *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void evexec__future_unref(struct evexec_future *f)
{
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (f->ops->destroy)
        f->ops->destroy(f);
    evexec__future_discard(f);
}

/* --- completion ---------------------------------------------------------- */

/* With f->mu held. */
static void complete_locked(struct evexec_future *f, int status, void *result)
{
    f->status = status;
    f->result = result;
    atomic_store_explicit(&f->state, FUTURE_DONE, memory_order_release);
    if (f->waiters)
        pthread_cond_broadcast(&f->cv);
}

int evexec__future_settle(struct evexec_future *f, int status, void *result)
{
    int won = 0;
    pthread_mutex_lock(&f->mu);
    if (atomic_load_explicit(&f->state, memory_order_relaxed) != FUTURE_DONE) {
        complete_locked(f, status, result);
        won = 1;
    }
    pthread_mutex_unlock(&f->mu);
    return won;
}

int evexec__future_start(struct evexec_future *f)
{
    pthread_mutex_lock(&f->mu);
    int queued = atomic_load_explicit(&f->state, memory_order_relaxed) == FUTURE_QUEUED;
    if (queued)
        atomic_store_explicit(&f->state, FUTURE_RUNNING, memory_order_relaxed);
    pthread_mutex_unlock(&f->mu);
    return queued;
}

int evexec__future_cancel_now(struct evexec_future *f, void (*running)(struct evexec_future *))
{
    pthread_mutex_lock(&f->mu);
    uint8_t st = atomic_load_explicit(&f->state, memory_order_relaxed);
    if (st != FUTURE_DONE) {
        complete_locked(f, -ECANCELED, NULL);
        if (st == FUTURE_RUNNING && running)
            running(f);
    }
    pthread_mutex_unlock(&f->mu);
    return st == FUTURE_DONE ? -EALREADY : 0;
}

/* Waits until f is DONE, or until the deadline if there is one. 1 if DONE. */
static int wait_done(struct evexec_future *f, const struct timespec *deadline)
{
    int done;

    pthread_mutex_lock(&f->mu);
    f->waiters++;
    while (atomic_load_explicit(&f->state, memory_order_relaxed) != FUTURE_DONE) {
        if (!deadline)
            pthread_cond_wait(&f->cv, &f->mu);
        else if (pthread_cond_timedwait(&f->cv, &f->mu, deadline) == ETIMEDOUT)
            break;
    }
    f->waiters--;
    done = atomic_load_explicit(&f->state, memory_order_relaxed) == FUTURE_DONE;
    pthread_mutex_unlock(&f->mu);
    return done;
}

void evexec__future_wait_done(struct evexec_future *f)
{
    (void)wait_done(f, NULL);
}

/* --- futures ------------------------------------------------------------- */

int evexec_future_wait(evexec_future *f, int timeout_ms)
{
    struct timespec deadline;

    if (!f || timeout_ms < EVEXEC_WAIT_FOREVER)
        return -EINVAL;
    if (evexec__future_is_done(f))
        return 0;
    /* Pending, so its loop or pool is still alive (a loop ends only once
     * all its futures are complete): comparing the pointers is safe. */
    if (f->ops->waits_for_itself(f))
        return -EDEADLK;
    if (timeout_ms == 0)
        return -ETIMEDOUT;
    if (timeout_ms > 0)
        evexec__deadline_after(&deadline, (unsigned)timeout_ms);
    return wait_done(f, timeout_ms > 0 ? &deadline : NULL) ? 0 : -ETIMEDOUT;
}

int evexec_future_result(evexec_future *f, void **result)
{
    if (!f)
        return -EINVAL;
    if (!evexec__future_is_done(f))
        return -EINPROGRESS;
    if (result)
        *result = f->result;
    return f->status;
}

int evexec_future_cancel(evexec_future *f)
{
    if (!f)
        return -EINVAL;
    return f->ops->cancel(f);
}

void evexec_future_free(evexec_future *f)
{
    if (!f)
        return;
    (void)evexec_future_cancel(f);
    evexec__future_unref(f);
}

/* --- pool futures -------------------------------------------------------- */

/* A pool job's future: the job is completed in place (JOB_KIND_DIRECT). */
struct pool_future {
    struct evexec_future future;   /* first member */
    struct job_single single;
};

static struct pool_future *of_future(const struct evexec_future *f)
{
    return (struct pool_future *)(void *)f;
}

/* The pool hands the job back, on the worker's thread: the future is
 * completed only here (evexec_future_cancel() cancels through the pool,
 * which then calls this). */
static void job_complete(struct evexec_job *job)
{
    struct pool_future *pf = EVEXEC_CONTAINER(job, struct pool_future, single.job);
    evexec__future_settle(&pf->future, job_status(job), job_result(job));
    evexec__future_unref(&pf->future); /* the job's reference; the pool's stays */
}

static int pool_future_cancel(struct evexec_future *f)
{
    struct evexec_job *job = &of_future(f)->single.job;

    if (evexec__future_is_done(f))
        return -EALREADY;
    /* The pool is alive: this future holds a reference on it. */
    int rc = evexec__job_cancel(job);
    if (rc == -EBUSY) /* running: its stop flag is set */
        return evexec__future_is_done(f) ? -EALREADY : -EBUSY;
    if (rc == -EALREADY)
        evexec__future_wait_done(f); /* whoever cancelled it completes it now */
    return rc; /* 0: completed as -ECANCELED */
}

static int pool_future_waits_for_itself(const struct evexec_future *f)
{
    struct evexec_pool *pool = evexec__pool_current();
    return pool && evexec__pool_runner(pool) == of_future(f)->single.job.runner;
}

static void pool_future_destroy(struct evexec_future *f)
{
    struct evexec__runner *r = of_future(f)->single.job.runner;
    r->ops->release(r, 1); /* the job's reference on its pool */
}

static const struct evexec__future_ops pool_future_ops = {
    .cancel = pool_future_cancel,
    .waits_for_itself = pool_future_waits_for_itself,
    .destroy = pool_future_destroy,
};

int evexec_pool_call(evexec_pool *pool, evexec_work_fn work, void *arg, evexec_future **out)
{
    struct pool_future *pf;
    int rc;

    if (!pool || !work || !out)
        return -EINVAL;
    /* Two references: the holder and the job. */
    if (!(pf = (struct pool_future *)evexec__future_new(sizeof *pf, &pool_future_ops, 2)))
        return -ENOMEM;
    struct evexec_job *job = &pf->single.job;
    job->kind = JOB_KIND_DIRECT;
    evexec__job_init(job, evexec__pool_runner(pool), work, NULL, arg,
                     EVEXEC__CLASS_NORMAL | JOB_HAS_EXT);
    evexec__job_ext_init(&pf->single.ext, job, NULL);
    pf->single.to.complete = job_complete;
    if ((rc = evexec__pool_enqueue(pool, job, 0)) < 0) {
        evexec__future_discard(&pf->future); /* the pool took no reference */
        return rc;
    }
    *out = &pf->future;
    return 0;
}
