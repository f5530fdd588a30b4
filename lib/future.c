/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: futures, the waiting side of a call posted to a loop (loop.c) or
 * of a job submitted to a pool from any thread; and promises, the loop side
 * of a call (the same object, seen from the loop thread).
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
 * Lifetime: reference counted. A call's future starts with one reference
 * for the holder's handle (none for a call posted without a future) and one
 * for the loop side, which covers the node in the mailbox and then the
 * promise until it is settled (or until the loop thread ends and evexec
 * releases it). A holder's cancel of a running call takes one more for the
 * cancel notice it posts to the loop, so the loop can run the call's cancel
 * hook, on its own thread, even after the holder has freed the future.
 * A pool job's future has the holder's reference and one for the job while
 * the pool has it; it also keeps the reference the job took on its pool
 * until the future is freed, so evexec_future_cancel() may always lock the
 * pool's mutex.
 *
 * Locks: a future's mutex is never held together with another evexec
 * lock: evexec_future_cancel() of a pool job reads the job's state under
 * neither and calls into the pool without the future's mutex, and the pool
 * completes jobs after dropping its own. The one thing done under a
 * future's mutex besides its state is posting a cancel notice to its loop
 * (lock-free, see loop.c). No lock is held while user code runs.
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

#include "evexec-internal.h"

static struct evexec_future *from_promise(const evexec_promise *p)
{
    return (struct evexec_future *)p;
}

static struct evexec_future *from_job(struct evexec_job *job)
{
    return (struct evexec_future *)((char *)job - offsetof(struct evexec_future, u.job));
}

static uint8_t state_of(const struct evexec_future *f)
{
    return atomic_load_explicit(&f->state, memory_order_acquire);
}

/* --- lifetime ------------------------------------------------------------ */

struct evexec_future *evexec__future_new(enum future_kind kind, unsigned refs)
{
    struct evexec_future *f = calloc(1, sizeof *f);

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
    f->kind = (uint8_t)kind;
    atomic_init(&f->state, FUTURE_QUEUED);
    atomic_init(&f->refs, refs);
    if (kind == FUTURE_CALL)
        ring_init(&f->u.call.ring);
    return f;
}

void evexec__future_ref(struct evexec_future *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

static void future_destroy(struct evexec_future *f)
{
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void evexec__future_unref(struct evexec_future *f)
{
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (f->kind == FUTURE_JOB)
        evexec__pool_unref(f->u.job.pool, 1); /* the job's reference */
    future_destroy(f);
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

void evexec__future_job_complete(struct evexec_job *job)
{
    struct evexec_future *f = from_job(job);
    int cancelled = atomic_load_explicit(&job->state, memory_order_relaxed) == JOB_CANCELLED;

    /* A pool job's future is completed only here: evexec_future_cancel()
     * cancels through the pool, which then calls us. */
    evexec__future_settle(f, cancelled ? -ECANCELED : 0, cancelled ? NULL : job->u.result);
    evexec__future_unref(f); /* the job's reference; the pool's stays */
}

/* --- futures ------------------------------------------------------------- */

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

/* Would waiting on the calling thread wait for itself? */
static int waits_for_itself(const struct evexec_future *f)
{
    if (f->kind == FUTURE_CALL)
        return evexec__loop_current() == f->u.call.loop;
    return evexec__pool_current() == f->u.job.pool;
}

int evexec_future_wait(evexec_future *f, int timeout_ms)
{
    struct timespec deadline;

    if (!f || timeout_ms < EVEXEC_WAIT_FOREVER)
        return -EINVAL;
    if (state_of(f) == FUTURE_DONE)
        return 0;
    /* Pending, so its loop is still alive (a loop ends only once all its
     * futures are complete): comparing the pointers is safe. */
    if (waits_for_itself(f))
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
    if (state_of(f) != FUTURE_DONE)
        return -EINPROGRESS;
    if (result)
        *result = f->result;
    return f->status;
}

static int cancel_job(struct evexec_future *f)
{
    struct evexec_job *job = &f->u.job;
    int rc = -EALREADY;

    if (state_of(f) == FUTURE_DONE)
        return -EALREADY;
    switch (atomic_load_explicit(&job->state, memory_order_relaxed)) {
    case JOB_CANCELLED:
        break; /* by a shutdown or another cancel: completing or complete */
    case JOB_QUEUED:
        /* The pool is alive: this future holds a reference on it. */
        rc = evexec__pool_cancel(job->pool, job);
        if (rc != -EBUSY)
            break; /* 0: completed as -ECANCELED; -EALREADY: as above */
        /* a worker took it meanwhile */
        /* fall through */
    default:
        atomic_store_explicit(&job->stop, 1, memory_order_relaxed);
        return state_of(f) == FUTURE_DONE ? -EALREADY : -EBUSY;
    }
    if (rc == -EALREADY)
        wait_done(f, NULL); /* whoever cancelled it completes it now */
    return rc;
}

static int cancel_call(struct evexec_future *f)
{
    uint8_t st;

    pthread_mutex_lock(&f->mu);
    st = atomic_load_explicit(&f->state, memory_order_relaxed);
    if (st != FUTURE_DONE) {
        /* QUEUED: the loop will find it complete and never run it.
         * RUNNING: the loop must run the cancel hook: notify it. */
        complete_locked(f, -ECANCELED, NULL);
        if (st == FUTURE_RUNNING) {
            evexec__future_ref(f); /* for the notice */
            evexec__loop_post_notice(f->u.call.loop, f);
        }
    }
    pthread_mutex_unlock(&f->mu);
    return st == FUTURE_DONE ? -EALREADY : 0;
}

int evexec_future_cancel(evexec_future *f)
{
    if (!f)
        return -EINVAL;
    return f->kind == FUTURE_CALL ? cancel_call(f) : cancel_job(f);
}

void evexec_future_free(evexec_future *f)
{
    if (!f)
        return;
    (void)evexec_future_cancel(f);
    evexec__future_unref(f);
}

/* --- promises ------------------------------------------------------------ */

/* A promise the caller may use: the right thread, not yet settled. */
static int check_promise(const struct evexec_future *f)
{
    if (!f || f->kind != FUTURE_CALL)
        return -EINVAL;
    if (evexec__loop_current() != f->u.call.loop)
        return -EPERM;
    return f->u.call.live ? 0 : -EINVAL;
}

static int settle(evexec_promise *p, int status, void *result)
{
    struct evexec_future *f = from_promise(p);
    int rc = check_promise(f);
    if (rc < 0)
        return rc;
    int lost = !evexec__future_settle(f, status, result);
    evexec__loop_promise_released(f->u.call.loop, f);
    return lost ? -ECANCELED : 0;
}

int evexec_promise_resolve(evexec_promise *p, void *result)
{
    return settle(p, 0, result);
}

int evexec_promise_fail(evexec_promise *p, int err)
{
    /* -EINPROGRESS would read as "not complete" from a complete future. */
    if (p && (err >= 0 || err == -EINPROGRESS))
        return -EINVAL;
    return settle(p, err, NULL);
}

int evexec_promise_on_cancel(evexec_promise *p, evexec_promise_fn fn, void *arg)
{
    struct evexec_future *f = from_promise(p);
    int rc = check_promise(f);
    if (rc < 0)
        return rc;
    if (state_of(f) == FUTURE_DONE)
        return -ECANCELED; /* a live promise's future completes only by a cancel */
    f->u.call.on_cancel = fn;
    f->u.call.cancel_arg = arg;
    return 0;
}

int evexec_promise_on_stop(evexec_promise *p, evexec_promise_fn fn, void *arg)
{
    struct evexec_future *f = from_promise(p);
    int rc = check_promise(f);
    if (rc < 0)
        return rc;
    if (evexec__loop_stop_applied(f->u.call.loop))
        return -ESHUTDOWN;
    f->u.call.on_stop = fn;
    f->u.call.stop_arg = arg;
    return 0;
}

int evexec_promise_cancelled(const evexec_promise *p)
{
    const struct evexec_future *f = from_promise(p);
    if (!f || f->kind != FUTURE_CALL)
        return 0;
    /* Settled by its own code it is released; live and DONE means cancelled. */
    return f->u.call.live && state_of(f) == FUTURE_DONE;
}

/* --- pool futures -------------------------------------------------------- */

int evexec_pool_call(evexec_pool *pool, evexec_work_fn work, void *arg, evexec_future **out)
{
    struct evexec_future *f;
    int rc;

    if (!pool || !work || !out)
        return -EINVAL;
    if (!(f = evexec__future_new(FUTURE_JOB, 2))) /* the holder and the job */
        return -ENOMEM;
    struct evexec_job *job = &f->u.job;
    job->kind = JOB_KIND_FUTURE;
    job->flags = EVEXEC__CLASS_NORMAL | JOB_HAS_EXT;
    f->ext.job = job;
    job->pool = pool;
    job->work = work;
    job->done = NULL;
    job->arg = arg;
    atomic_init(&job->stop, 0);
    atomic_init(&job->state, JOB_FREE);
    if ((rc = evexec__pool_enqueue(pool, job, 0)) < 0) {
        future_destroy(f); /* the pool took no reference */
        return rc;
    }
    *out = f;
    return 0;
}
