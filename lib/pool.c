/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: the pool: one bounded queue, a FIFO per priority class, and the
 * public calls (its worker threads are in pool-worker.c). The pool is a
 * runner (job-internal.h): ports reach it only through its ops.
 *
 * - One mutex guards the queue, the idle list and the counters. It is
 *   never held while user code runs, while a thread is created, or while a
 *   wake fd is written. It is the innermost lock: a port's remote_mu may be
 *   held while it is taken (evexec__remote_cancel_all()), never the other
 *   way round.
 * - A submit hands the job straight to an idle worker if there is one;
 *   otherwise the job is queued, and a thread is started if the pool may
 *   grow and the queued jobs outnumber the threads already starting.
 * - Priorities and class limits: a worker takes the oldest job of the
 *   highest class under its limit of running jobs, unless a lower class
 *   has been passed over AGING times (evexec__queue_pop_classes()). With
 *   only normal jobs and no limit, as in most programs, queue_pop() takes
 *   the head of one FIFO and nothing else is counted (running_c is kept
 *   only while a limit exists: SLOW_LIMITED).
 * - Resizing changes the limits under mu; a thread above max_threads exits
 *   the next time it looks for work, so no running job is interrupted.
 * - Back-pressure: a full queue rejects, drops its oldest lowest job, or
 *   (evexec_submit_threadsafe() with wait_ms) waits on space_cv, signalled
 *   whenever a job leaves the queue while someone waits.
 * - The pool's memory outlives evexec_pool_free() while jobs it accepted are
 *   undelivered (refs), because evexec_cancel() may still lock the mutex;
 *   a future's job (evexec_pool_call()) keeps its reference until the
 *   future is freed, for evexec_future_cancel().
 * - A job that ran or was cancelled goes back through evexec__job_complete():
 *   to its port, or straight into its future. Either way, never with mu held.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <sys/resource.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif
#ifdef EVEXEC_USE_FUTEX
#include <linux/futex.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool-internal.h"

#define DEFAULT_MAX_THREADS 4u
#define DEFAULT_MAX_QUEUED 65536u
#define DEFAULT_IDLE_MS 10000u
#define MIN_STACK ((size_t)16 * 1024)
#define MAX_STACK ((size_t)1 << 30)
#define MAX_SPIN_US 10000u
#define MAX_NICE 19u
#define MIN_POOL_OPTS_SIZE (offsetof(struct evexec_pool_opts, stack_size) + sizeof(size_t))

static const struct evexec__runner_ops pool_ops;

/* --- queue --------------------------------------------------------------- */

static int class_runnable(const struct evexec_pool *pool, unsigned c)
{
    return pool->q[c].head && pool->running_c[c] < pool->class_max[c];
}

/* With mu held: takes the next job to start off the queue, or NULL. The
 * highest class with a job that may start (its class under its limit)
 * goes first, unless a lower one has been passed over AGING times. */
struct evexec_job *evexec__queue_pop_classes(struct evexec_pool *pool)
{
    struct evexec_job *job;
    unsigned c, k;

    evexec__inbox_drain(pool); /* its jobs (all normal) may outrank a queued low one */
    for (k = 0; k < EVEXEC__NCLASSES && !class_runnable(pool, k); k++)
        ;
    if (k == EVEXEC__NCLASSES)
        return NULL; /* what waits is held back by its class limit */
    for (c = EVEXEC__NCLASSES - 1; c > k; c--)
        if (pool->skipped[c] >= AGING && class_runnable(pool, c)) {
            k = c;
            break;
        }
    pool->skipped[k] = 0;
    for (c = k + 1; c < EVEXEC__NCLASSES; c++)
        if (pool->q[c].head)
            pool->skipped[c]++;
    job = pool->q[k].head;
    queue_unlink(pool, job);
    return job;
}

void evexec__pool_destroy(struct evexec_pool *pool)
{
    struct worker *w, *next;
    for (w = pool->all; w; w = next) {
        next = w->all_next;
#ifndef EVEXEC_USE_FUTEX
        pthread_cond_destroy(&w->cv);
#endif
        free(w);
    }
    pthread_attr_destroy(&pool->attr);
    pthread_cond_destroy(&pool->space_cv);
    pthread_cond_destroy(&pool->exit_cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}

void evexec__pool_unref(struct evexec_pool *pool, unsigned long n)
{
    if (atomic_fetch_sub_explicit(&pool->refs, n, memory_order_acq_rel) == n)
        evexec__pool_destroy(pool);
}

/* --- the inbox ----------------------------------------------------------- */

/*
 * The inbox. A submit of a normal-class job takes no lock when it can:
 * it admits the job on the gate (one atomic add: the count of waiting jobs,
 * whose flags make it fail when the pool is shut down, has class limits or
 * blocked submitters, or still grows), pushes it on the inbox (a lock-free
 * stack) and is done, unless an idle worker waits and none is already
 * looking or watching -- then it takes mu and hands out work as a locked
 * submit would.
 * Workers move the inbox onto the queue, in one exchange, when they find
 * the queue empty; everything under mu that must see every waiting job
 * (cancel, shutdown, stats, a locked submit) drains it first.
 *
 * Why no job is stranded in the inbox:
 * - an idle worker is counted in nidle before it looks at the inbox a last
 *   time and sleeps; a submitter pushes before it reads nidle, nsearching
 *   and watching (all sequentially consistent): either the worker sees the
 *   job, or the submitter sees the idle worker and wakes it under mu, or
 *   sees the watchman on duty, who looks at the inbox at each of its looks
 *   and after it turns watching off (pool-worker.c, "Submits that wake
 *   nobody");
 * - a worker that stops searching, or a woken one back under mu, lowers
 *   nsearching before it looks at the queue (and so at the inbox);
 * - busy workers drain the inbox when their queue runs dry;
 * - a thread that exits sets GATE_GROW (nthreads < max_threads) before it
 *   checks the count: a submit admitted before that is counted and keeps
 *   it (or the last thread drains and cancels it), one after it fails the
 *   gate and goes under mu, which starts a thread;
 * - shut down, a worker does not exit while the count says a job is on
 *   its way to the inbox, and that job's submitter, seeing GATE_CLOSED
 *   after its push, drains under mu (cancelling it after EVEXEC_CANCEL).
 * The count makes -EAGAIN at max_queued exact: the slot is taken by the
 * add itself, with or without mu.
 */
void evexec__inbox_drain(struct evexec_pool *pool)
{
    struct evexec_job *j, *fifo = NULL, *next;
    if (!inbox_full(pool))
        return;
    j = atomic_exchange_explicit(&pool->inbox, NULL, memory_order_acquire);
    for (; j; j = next) { /* newest first: reverse */
        next = job_next(j);
        job_set_next(j, fifo);
        fifo = j;
    }
    unsigned long n = 0;
    for (; fifo; fifo = next, n++) {
        next = job_next(fifo);
        queue_append(pool, fifo);
    }
    pool->submitted += n;
    /* Their references, taken here for the batch: until they are drained
     * the gate's count keeps every worker from exiting, and so
     * evexec_pool_free() from dropping the handle's. */
    if (n)
        atomic_fetch_add_explicit(&pool->refs, n, memory_order_relaxed);
}

/* With mu held: the gate's flags from the pool's state. Called wherever
 * that state changes, before anything that then reads the count. */
void evexec__gate_sync(struct evexec_pool *pool)
{
    unsigned want = (pool->closed ? GATE_CLOSED : 0) |
                    (pool->slow & (SLOW_LIMITED | SLOW_WAITERS) ? GATE_SLOW : 0) |
                    (pool->nthreads < pool->max_threads ? GATE_GROW : 0);
    unsigned have = atomic_load_explicit(&pool->gate, memory_order_relaxed) & GATE_FLAGS;
    if (want & ~have)
        atomic_fetch_or(&pool->gate, want & ~have);
    if (have & ~want)
        atomic_fetch_and(&pool->gate, ~(have & ~want));
}

/* With mu held: a slot for one more waiting job, if the queue has room. */
static inline int gate_reserve(struct evexec_pool *pool)
{
    if (pool->nheld)
        evexec__ahead_settle(pool);
    gate_settle(pool);
    unsigned n = atomic_fetch_add_explicit(&pool->gate, 1, memory_order_relaxed) & ~GATE_FLAGS;
    if (EVEXEC_LIKELY(n < pool->max_queued))
        return 1;
    atomic_fetch_sub_explicit(&pool->gate, 1, memory_order_relaxed);
    return 0;
}

/* --- jobs ---------------------------------------------------------------- */

/* With mu held: takes every queued job off the queue as cancelled. The
 * caller completes them with evexec__pool_complete_all() once it has unlocked. */
struct evexec_job *evexec__pool_cancel_queue(struct evexec_pool *pool)
{
    struct evexec_job *list = NULL, **tail = &list;
    evexec__inbox_drain(pool);
    evexec__ahead_return(pool);
    for (unsigned c = 0; c < EVEXEC__NCLASSES; c++) {
        struct job_queue *q = &pool->q[c];
        for (struct evexec_job *j = q->head; j; j = job_next(j))
            evexec__job_set_state(j, JOB_CANCELLED);
        if (q->head) {
            *tail = q->head;
            tail = (struct evexec_job **)&q->tail->link.next;
        }
        q->head = q->tail = NULL;
        q->n = 0;
    }
    unsigned n = (unsigned)pool->nqueued;
    pool->cancelled += n;
    pool->nqueued = 0;
    gate_leave(pool, n);
    pool->slow &= ~SLOW_CLASSES;
    if (pool->space_waiters)
        pthread_cond_broadcast(&pool->space_cv);
    return list;
}

/* With mu held and the queue full: EVEXEC_OVERFLOW_DROP_OLDEST takes the
 * oldest job of the lowest class not above class c off the queue, as
 * cancelled, for the caller to complete; NULL if all queued jobs rank
 * above c. */
static struct evexec_job *drop_oldest(struct evexec_pool *pool, unsigned c)
{
    for (unsigned k = EVEXEC__NCLASSES; k-- > c;) {
        struct evexec_job *victim = pool->q[k].head;
        if (victim) {
            queue_unlink(pool, victim);
            evexec__job_set_state(victim, JOB_CANCELLED);
            job_set_next(victim, NULL);
            victim->u.result = NULL;
            pool->cancelled++;
            pool->dropped++;
            return victim;
        }
    }
    return NULL;
}

/* With mu held and the queue full, for a job of class c: drops a job
 * (EVEXEC_OVERFLOW_DROP_OLDEST: *dropped, for the caller to complete) and
 * returns 1: queue the new one; or waits for a slot until *deadline
 * (wait_ms > 0) or for ever (EVEXEC_WAIT_FOREVER) and returns 0: look
 * again; or returns -EAGAIN or -ETIMEDOUT. Out of line: the common path
 * never comes here. */
static __attribute__((noinline)) int queue_full(struct evexec_pool *pool, unsigned c, int wait_ms,
                                                const struct timespec *deadline,
                                                struct evexec_job **dropped)
{
    int timedout = 0;

    if (pool->overflow == EVEXEC_OVERFLOW_DROP_OLDEST) {
        evexec__ahead_return(pool); /* the oldest may be held by a worker */
        if ((*dropped = drop_oldest(pool, c)) != NULL)
            return 1;
    }
    if (!wait_ms)
        return -EAGAIN;
    pool->space_waiters++;
    pool->slow |= SLOW_WAITERS;
    evexec__gate_sync(pool); /* no submit passes a waiter without mu */
    if (wait_ms > 0)
        timedout = pthread_cond_timedwait(&pool->space_cv, &pool->mu, deadline) == ETIMEDOUT;
    else
        pthread_cond_wait(&pool->space_cv, &pool->mu);
    if (--pool->space_waiters == 0) {
        pool->slow &= ~SLOW_WAITERS;
        evexec__gate_sync(pool);
    }
    return timedout ? -ETIMEDOUT : 0;
}

/* Without mu: hands cancelled jobs back, in queue order. */
void evexec__pool_complete_all(struct evexec_job *list)
{
    struct evexec_job *next;
    for (; list; list = next) {
        next = job_next(list); /* completing rewrites it */
        list->u.result = NULL;
        evexec__job_complete(list);
    }
}

/* Where submits come from, for idle workers deciding whether to search
 * (pool-worker.c). Written only when it changes: with several loops on one pool
 * the line would otherwise bounce between their CPUs on every submit. */
static inline void note_submit_cpu(struct evexec_pool *pool, int cpu)
{
    if (atomic_load_explicit(&pool->submit_cpu, memory_order_relaxed) != cpu)
        atomic_store_explicit(&pool->submit_cpu, cpu, memory_order_relaxed);
}

/* After a push on the inbox that found an idle worker and none looking, or
 * a flag on the gate: with mu, what a locked submit would do -- hand a job
 * to the searching worker or wake a parked one, start a thread if the pool
 * may grow, or cancel what came in after an EVEXEC_CANCEL shutdown. */
static __attribute__((noinline)) void inbox_wake(struct evexec_pool *pool, int cpu)
{
    struct evexec_job *job, *cancelled = NULL;
    struct worker *taker = NULL;

    pthread_mutex_lock(&pool->mu);
    evexec__inbox_drain(pool);
    if (pool->closed == EVEXEC_CANCEL + 1) {
        cancelled = evexec__pool_cancel_queue(pool);
    } else if (pool->nqueued) {
        if (pool->idle && (pool->idle->searching || (!pool->nsearching && !pool->watching)) &&
            (job = queue_pop(pool)) != NULL)
            taker = evexec__worker_hand_off(pool, job, cpu);
        if (taker && pool->nthreads > pool->nidle + pool->nstarting + 1)
            pool->watch_wanted = 1; /* others are busy: next time, leave it to them */
        if (pool->nthreads < pool->max_threads && pool->nqueued > pool->nstarting + pool->nidle &&
            !pool->closed && evexec__worker_spawn(pool) < 0 && pool->nthreads == 0)
            cancelled = evexec__pool_cancel_queue(pool); /* accepted: never stranded */
    }
    pthread_mutex_unlock(&pool->mu);
    if (taker)
        evexec__worker_unpark(taker);
    evexec__pool_complete_all(cancelled);
}

int evexec__pool_enqueue(struct evexec_pool *pool, struct evexec_job *job, int wait_ms)
{
    struct evexec_job *dropped = NULL;
    struct timespec deadline;
    struct worker *w;
    unsigned c = job_class(job);
    int rc;

    int cpu = this_cpu();
    if (EVEXEC_UNLIKELY(pool->enqueue_prep | wait_ms)) {
        if (pool->hist)
            job_set_enqueued(job, evexec__now_ns());
        if (wait_ms > 0)
            evexec__deadline_after(&deadline, (unsigned)wait_ms);
    }
    /* Without mu, through the inbox (see above), when the gate lets it and
     * no parked worker is to be woken (that takes mu anyway: straight
     * there). A job is never cancelled while its submit runs (its id is
     * not out yet). */
    if (EVEXEC_LIKELY(job_class(job) == EVEXEC__CLASS_NORMAL) &&
        !(atomic_load_explicit(&pool->nidle, memory_order_relaxed) &&
          !atomic_load_explicit(&pool->nsearching, memory_order_relaxed) &&
          !atomic_load_explicit(&pool->watching, memory_order_relaxed))) {
        unsigned n = atomic_fetch_add(&pool->gate, 1);
        if (EVEXEC_LIKELY(n < atomic_load_explicit(&pool->gate_max, memory_order_relaxed))) {
            note_submit_cpu(pool, cpu);
            evexec__job_set_state(job, JOB_QUEUED);
            struct evexec_job *head = atomic_load_explicit(&pool->inbox, memory_order_relaxed);
            do
                job_set_next(job, head);
            while (!atomic_compare_exchange_weak(&pool->inbox, &head, job));
            if (EVEXEC_UNLIKELY((pool->nidle && !pool->nsearching && !pool->watching) ||
                                (atomic_load(&pool->gate) & GATE_FLAGS)))
                inbox_wake(pool, cpu);
            return 0;
        }
        atomic_fetch_sub_explicit(&pool->gate, 1, memory_order_relaxed);
    }

    pthread_mutex_lock(&pool->mu);
    for (;;) {
        if (EVEXEC_UNLIKELY(pool->closed)) {
            rc = -ESHUTDOWN;
            goto reject;
        }
        evexec__inbox_drain(pool); /* older than this job */
        /* An idle worker takes the job at once if one searches; if all
         * sleep, one is woken, unless one is already on its way (it wakes
         * the next if work remains): see pool-worker.c. */
        if ((w = pool->idle) != NULL &&
            (w->searching || (!pool->nsearching && !pool->watching) ||
             gate_count(pool) >= pool->max_queued) &&
            (EVEXEC_LIKELY(!(pool->slow & SLOW_LIMITED)) || pool->running_c[c] < pool->class_max[c])) {
            pool->submitted++;
            atomic_fetch_add_explicit(&pool->refs, 1, memory_order_relaxed);
            note_submit_cpu(pool, cpu);
            struct evexec_job *give = job;
            if (EVEXEC_UNLIKELY(queue_startable(pool))) {
                /* Jobs wait already (a few left to the watchman, or just
                 * moved from the inbox): the new one queues behind them,
                 * by its priority, and the worker takes the queue's next.
                 * Its slot on the gate is the one the pop gives back. */
                atomic_fetch_add(&pool->gate, 1);
                evexec__job_set_state(job, JOB_QUEUED);
                queue_append(pool, job);
                give = queue_pop(pool);
            }
            struct worker *taker = evexec__worker_hand_off(pool, give, cpu);
            if (taker && pool->nthreads > pool->nidle + pool->nstarting + 1)
                pool->watch_wanted = 1; /* see inbox_wake() */
            pthread_mutex_unlock(&pool->mu);
            if (taker)
                evexec__worker_unpark(taker); /* it outlives this: see DESIGN */
            return 0;
        }
        if (EVEXEC_LIKELY(gate_reserve(pool)))
            break;
        if ((rc = queue_full(pool, c, wait_ms, &deadline, &dropped)) > 0) {
            atomic_fetch_add(&pool->gate, 1); /* the dropped job's slot */
            break;
        }
        if (rc < 0)
            goto reject;
    }
    pool->submitted++;
    atomic_fetch_add_explicit(&pool->refs, 1, memory_order_relaxed);
    note_submit_cpu(pool, cpu);
    evexec__job_set_state(job, JOB_QUEUED);
    if (EVEXEC_UNLIKELY(c < EVEXEC__CLASS_NORMAL))
        evexec__ahead_return(pool); /* no normal job held ahead starts first */
    queue_append(pool, job);
    /* A thread more if the queued jobs outnumber the threads that will take
     * them: starting, or idle (woken one after the other). A worker on its
     * way may already hold a job of its own: not counted. */
    if (pool->nthreads < pool->max_threads && pool->nqueued > pool->nstarting + pool->nidle &&
        (EVEXEC_LIKELY(!(pool->slow & SLOW_LIMITED)) || pool->running_c[c] < pool->class_max[c])) {
        rc = evexec__worker_spawn(pool);
        /* With no thread at all, no queued job would ever run. Our own job
         * is refused (unless a concurrent shutdown has already cancelled
         * it); jobs other submitters queued while counting on a thread that
         * then failed to start were accepted, so they come back cancelled
         * rather than wait forever. */
        if (rc < 0 && pool->nthreads == 0) {
            struct evexec_job *stranded;
            int ours = atomic_load_explicit(&job->state, memory_order_relaxed) == JOB_QUEUED;
            if (ours) {
                queue_unlink(pool, job);
                pool->submitted--;
                pool->rejected++;
                atomic_fetch_sub_explicit(&pool->refs, 1, memory_order_relaxed);
            }
            stranded = evexec__pool_cancel_queue(pool);
            pthread_mutex_unlock(&pool->mu);
            evexec__pool_complete_all(stranded);
            evexec__pool_complete_all(dropped);
            if (ours)
                return rc == -ENOMEM ? -ENOMEM : -EAGAIN;
            return 0;
        }
    }
    pthread_mutex_unlock(&pool->mu);
    if (EVEXEC_UNLIKELY(dropped != NULL))
        evexec__pool_complete_all(dropped);
    return 0;

reject:
    pool->rejected++;
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

/* The runner's cancel: a job seen QUEUED. */
static int pool_cancel(struct evexec__runner *r, struct evexec_job *job)
{
    struct evexec_pool *pool = (struct evexec_pool *)(void *)r;
    pthread_mutex_lock(&pool->mu);
    uint8_t st = atomic_load_explicit(&job->state, memory_order_relaxed);
    if (st == JOB_AHEAD) { /* held by a worker that has not started it */
        int rc = evexec__ahead_cancel(pool, job);
        pthread_mutex_unlock(&pool->mu);
        if (rc == 0) {
            job->u.result = NULL;
            evexec__job_complete(job);
        }
        return rc;
    }
    if (st != JOB_QUEUED) {
        /* A worker took it, or a concurrent EVEXEC_CANCEL shutdown. */
        pthread_mutex_unlock(&pool->mu);
        return st == JOB_CANCELLED ? -EALREADY : -EBUSY;
    }
    evexec__inbox_drain(pool);
    queue_unlink(pool, job);
    evexec__job_set_state(job, JOB_CANCELLED);
    pool->cancelled++;
    pthread_mutex_unlock(&pool->mu);
    job->u.result = NULL;
    evexec__job_complete(job);
    return 0;
}

/* --- public -------------------------------------------------------------- */

int evexec_pool_new(evexec_pool **out, const struct evexec_pool_opts *opts)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct evexec_pool *pool;
    int rc;

    if (!out)
        return -EINVAL;
    if ((rc = evexec__opts_read(&o, sizeof o, opts, MIN_POOL_OPTS_SIZE)) < 0)
        return rc;
    if (!o.max_threads)
        o.max_threads = DEFAULT_MAX_THREADS;
    if (!o.max_queued)
        o.max_queued = DEFAULT_MAX_QUEUED;
    if (!o.idle_timeout_ms)
        o.idle_timeout_ms = DEFAULT_IDLE_MS;
    if (!o.name || !o.name[0])
        o.name = "evexec";
    if (o.max_threads > EVEXEC_MAX_THREADS || o.min_threads > o.max_threads ||
        o.max_queued > EVEXEC_MAX_QUEUED || strnlen(o.name, 64) >= 64 ||
        o.spin_us > MAX_SPIN_US || o.nice > MAX_NICE ||
        (o.stack_size && (o.stack_size < MIN_STACK || o.stack_size > MAX_STACK)) ||
        (o.overflow != EVEXEC_OVERFLOW_REJECT && o.overflow != EVEXEC_OVERFLOW_DROP_OLDEST) ||
        o.max_running_high > EVEXEC_MAX_THREADS || o.max_running_normal > EVEXEC_MAX_THREADS ||
        o.max_running_low > EVEXEC_MAX_THREADS ||
        (o.flags & ~(EVEXEC_POOL_HISTOGRAMS | EVEXEC_POOL_SCHED_BATCH | EVEXEC_POOL_NO_YIELD)))
        return -EINVAL;

    /* Aligned as its lines are laid out (pool-internal.h). */
    void *mem;
    if (posix_memalign(&mem, EVEXEC_CACHELINE, sizeof *pool) != 0)
        return -ENOMEM;
    pool = memset(mem, 0, sizeof *pool);
    pool->runner.ops = &pool_ops;
    pool->max_threads = o.max_threads;
    pool->min_threads = o.min_threads;
    pool->max_queued = o.max_queued;
    atomic_init(&pool->gate_max, (unsigned)o.max_queued);
    atomic_init(&pool->gate, GATE_GROW);
    atomic_init(&pool->inbox, NULL);
    pool->idle_ms = o.idle_timeout_ms;
    pool->spin_us = o.spin_us;
    pool->nice = o.nice;
    pool->overflow = o.overflow;
    pool->hist = (o.flags & EVEXEC_POOL_HISTOGRAMS) != 0;
    if (pool->hist)
        pool->runner.flags = RUNNER_WANTS_EXT;
    pool->sched_batch = (o.flags & EVEXEC_POOL_SCHED_BATCH) != 0;
    pool->give_way = (o.flags & EVEXEC_POOL_NO_YIELD) == 0;
    pool->worker_init = o.worker_init;
    pool->worker_fini = o.worker_fini;
    pool->worker_arg = o.worker_arg;
    pool->class_max[0] = o.max_running_high ? o.max_running_high : UINT_MAX;
    pool->class_max[1] = o.max_running_normal ? o.max_running_normal : UINT_MAX;
    pool->class_max[2] = o.max_running_low ? o.max_running_low : UINT_MAX;
    if (o.max_running_high || o.max_running_normal || o.max_running_low)
        pool->slow = SLOW_LIMITED;
    pool->enqueue_prep = pool->hist;
    strcpy(pool->name, o.name);
    atomic_init(&pool->refs, 1);
    atomic_init(&pool->submit_cpu, -1);

    /* Adaptive where available: the lock is held for a few instructions, so
     * a contender spins a little before it sleeps in the kernel. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    rc = -pthread_mutex_init(&pool->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    if (rc < 0)
        goto fail_free;
    if ((rc = -pthread_cond_init(&pool->exit_cv, NULL)) < 0)
        goto fail_mutex;
    if ((rc = evexec__cond_init(&pool->space_cv)) < 0)
        goto fail_cond;
    if ((rc = -pthread_attr_init(&pool->attr)) < 0)
        goto fail_space;
    if (o.stack_size) {
        long page = sysconf(_SC_PAGESIZE);
        size_t sz = (o.stack_size + (size_t)page - 1) & ~((size_t)page - 1);
        if ((rc = -pthread_attr_setstacksize(&pool->attr, sz)) < 0)
            goto fail_attr;
    }

    /* Each minimum thread is started once: one whose worker_init fails
     * exits at once and is not replaced here (waiting for the count to
     * reach min_threads would then start threads for ever). */
    pthread_mutex_lock(&pool->mu);
    for (unsigned i = 0; i < pool->min_threads; i++) {
        if ((rc = evexec__worker_spawn(pool)) < 0) {
            pthread_mutex_unlock(&pool->mu);
            evexec_pool_free(pool);
            return rc;
        }
    }
    pthread_mutex_unlock(&pool->mu);
    *out = pool;
    return 0;

fail_attr:
    pthread_attr_destroy(&pool->attr);
fail_space:
    pthread_cond_destroy(&pool->space_cv);
fail_cond:
    pthread_cond_destroy(&pool->exit_cv);
fail_mutex:
    pthread_mutex_destroy(&pool->mu);
fail_free:
    free(pool);
    return rc;
}

int evexec_pool_shutdown(evexec_pool *pool, int how)
{
    struct evexec_job *cancelled = NULL;
    struct worker *w;

    if (!pool || (how != EVEXEC_DRAIN && how != EVEXEC_CANCEL))
        return -EINVAL;
    pthread_mutex_lock(&pool->mu);
    if (pool->closed >= how + 1) {
        pthread_mutex_unlock(&pool->mu);
        return -EALREADY;
    }
    pool->closed = how + 1;
    evexec__gate_sync(pool);
    if (how == EVEXEC_CANCEL) {
        /* Running jobs, and any a worker claims from now on, read as
         * asked to stop (evexec_job_cancelled()). */
        atomic_store(&pool->runner.stopping, 1);
        cancelled = evexec__pool_cancel_queue(pool);
    }
    for (w = pool->idle; w; w = w->idle_next)
        evexec__worker_wake(w);
    pthread_cond_broadcast(&pool->space_cv); /* blocked submits: -ESHUTDOWN */
    pthread_mutex_unlock(&pool->mu);
    evexec__pool_complete_all(cancelled);
    return 0;
}

int evexec_pool_free(evexec_pool *pool)
{
    if (!pool)
        return 0;
    if (pool->port_owned)
        return -EPERM; /* its port frees it */
    if (evexec__pool_current() == pool)
        return -EDEADLK;
    evexec_pool_shutdown(pool, EVEXEC_DRAIN); /* -EALREADY is fine */
    pthread_mutex_lock(&pool->mu);
    while (pool->nthreads || pool->nexiting)
        pthread_cond_wait(&pool->exit_cv, &pool->mu);
    int had = pool->has_zombie;
    pthread_t last = pool->zombie;
    pool->has_zombie = 0;
    pthread_mutex_unlock(&pool->mu);
    if (had)
        pthread_join(last, NULL); /* which joined the one before, and so on */
    evexec__pool_unref(pool, 1);
    return 0;
}

/* With mu held: jobs running (handed to a worker, not finished) per class.
 * Kept up to date in running_c only while a class limit needs it. */
static void count_running(const struct evexec_pool *pool, unsigned out[EVEXEC__NCLASSES])
{
    memset(out, 0, EVEXEC__NCLASSES * sizeof *out);
    for (const struct worker *w = pool->all; w; w = w->all_next) {
        unsigned r = atomic_load_explicit(&w->running, memory_order_relaxed);
        if (w->alive && r)
            out[r - 1]++;
    }
}

int evexec_pool_stats(evexec_pool *pool, struct evexec_pool_stats *out)
{
    if (!pool || !out)
        return -EINVAL;
    const size_t min_size = offsetof(struct evexec_pool_stats, threads_started) + sizeof(uint64_t);
    if (out->size < min_size)
        return -EINVAL;
    struct evexec_pool_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    pthread_mutex_lock(&pool->mu);
    evexec__inbox_drain(pool);
    s.threads = pool->nthreads;
    s.idle = pool->nidle;
    unsigned running[EVEXEC__NCLASSES];
    count_running(pool, running);
    s.running = running[0] + running[1] + running[2];
    unsigned ahead = evexec__ahead_count(pool);
    s.queued = pool->nqueued + ahead;
    s.submitted = pool->submitted;
    s.completed = 0; /* the workers count their own: their structs stay */
    for (const struct worker *w = pool->all; w; w = w->all_next)
        s.completed += atomic_load_explicit(&w->completed, memory_order_relaxed);
    s.cancelled = pool->cancelled;
    s.rejected = pool->rejected;
    s.threads_started = pool->threads_started;
    s.queued_high = pool->q[0].n;
    s.queued_normal = pool->nqueued - pool->q[0].n - pool->q[2].n + ahead;
    s.queued_low = pool->q[2].n;
    s.running_high = running[0];
    s.running_normal = running[1];
    s.running_low = running[2];
    s.dropped = pool->dropped;
    s.worker_init_failed = pool->init_failed;
    s.max_threads = pool->max_threads;
    s.min_threads = pool->min_threads;
    s.max_queued = pool->max_queued;
    pthread_mutex_unlock(&pool->mu);
    s.timed_out = atomic_load_explicit(&pool->timed_out, memory_order_relaxed);
    return evexec__stats_write(out, &s, sizeof s, min_size);
}

int evexec_pool_histograms(evexec_pool *pool, struct evexec_pool_histograms *out)
{
    if (!pool || !out || out->size < sizeof *out)
        return -EINVAL;
    if (!pool->hist)
        return -ENOTSUP;
    memset(out->wait, 0, sizeof out->wait);
    memset(out->run, 0, sizeof out->run);
    /* Worker structs are never freed before the pool; the list only grows,
     * at its head, under mu. */
    pthread_mutex_lock(&pool->mu);
    struct worker *all = pool->all;
    pthread_mutex_unlock(&pool->mu);
    for (struct worker *w = all; w; w = w->all_next)
        for (unsigned i = 0; i < EVEXEC_HIST_BUCKETS; i++) {
            out->wait[i] += atomic_load_explicit(&w->hist_wait[i], memory_order_relaxed);
            out->run[i] += atomic_load_explicit(&w->hist_run[i], memory_order_relaxed);
        }
    return 0;
}

/* With mu held: starts what the limits and the queue call for, and hands
 * queued jobs that may now start to idle workers. Returns the first error
 * of spawn(), -ESHUTDOWN if the pool was shut down meanwhile, or 0.
 *
 * Each loop makes at most as many starts as were missing when it began:
 * a new thread may exit at once (its worker_init failed, or the pool was
 * shut down while mu was dropped for pthread_create()), and a loop that
 * waited for the count to come up would then start threads for ever. */
static int pool_rebalance(struct evexec_pool *pool)
{
    struct worker *w;
    unsigned n;
    int rc = 0;

    evexec__inbox_drain(pool);
    evexec__gate_sync(pool);
    evexec__worker_dispatch_idle(pool);
    n = pool->nthreads < pool->min_threads ? pool->min_threads - pool->nthreads : 0;
    while (!rc && n-- && pool->nthreads < pool->min_threads)
        rc = pool->closed ? -ESHUTDOWN : evexec__worker_spawn(pool);
    n = pool->nthreads < pool->max_threads ? pool->max_threads - pool->nthreads : 0;
    while (!rc && n-- && pool->nthreads < pool->max_threads && pool->nqueued > pool->nstarting)
        rc = pool->closed ? -ESHUTDOWN : evexec__worker_spawn(pool);
    /* Surplus idle threads leave now (busy ones after their job), or start
     * their idle timeout. */
    if (pool->nthreads > pool->min_threads)
        for (w = pool->idle; w; w = w->idle_next)
            evexec__worker_wake(w);
    return rc;
}

int evexec_pool_resize(evexec_pool *pool, unsigned min_threads, unsigned max_threads,
                       size_t max_queued)
{
    if (!pool || !max_threads || max_threads > EVEXEC_MAX_THREADS || min_threads > max_threads ||
        !max_queued || max_queued > EVEXEC_MAX_QUEUED)
        return -EINVAL;
    pthread_mutex_lock(&pool->mu);
    if (pool->closed) {
        pthread_mutex_unlock(&pool->mu);
        return -ESHUTDOWN;
    }
    pool->min_threads = min_threads;
    pool->max_threads = max_threads;
    pool->max_queued = max_queued;
    atomic_store_explicit(&pool->gate_max, (unsigned)max_queued, memory_order_relaxed);
    if (pool->nthreads > max_threads)
        pool->slow |= SLOW_SHRINK;
    if (pool->space_waiters)
        pthread_cond_broadcast(&pool->space_cv);
    int rc = pool_rebalance(pool);
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

int evexec_pool_set_class_limit(evexec_pool *pool, int priority, unsigned max_running)
{
    if (!pool || priority < EVEXEC_PRIO_HIGH || priority > EVEXEC_PRIO_LOW ||
        max_running > EVEXEC_MAX_THREADS)
        return -EINVAL;
    pthread_mutex_lock(&pool->mu);
    pool->class_max[priority + 1] = max_running ? max_running : UINT_MAX;
    evexec__ahead_return(pool); /* a limit holds back queued jobs */
    if (!(pool->slow & SLOW_LIMITED)) {
        /* Counted from now on; each worker uncounts its own when done. */
        count_running(pool, pool->running_c);
        for (struct worker *w = pool->all; w; w = w->all_next)
            w->counted = w->alive ? atomic_load_explicit(&w->running, memory_order_relaxed) : 0;
    }
    pool->slow &= ~SLOW_LIMITED;
    if (pool->class_max[0] != UINT_MAX || pool->class_max[1] != UINT_MAX ||
        pool->class_max[2] != UINT_MAX)
        pool->slow |= SLOW_LIMITED;
    int rc = pool->closed ? 0 : pool_rebalance(pool);
    pthread_mutex_unlock(&pool->mu);
    return rc == -ESHUTDOWN ? 0 : rc; /* shut down meanwhile: no thread needed */
}

/* --- the runner's ops ---------------------------------------------------- */

static void pool_timed_out(struct evexec__runner *r, struct evexec_job *job)
{
    struct evexec_pool *pool = (struct evexec_pool *)(void *)r;
    EVEXEC_UNUSED(job);
    atomic_fetch_add_explicit(&pool->timed_out, 1, memory_order_relaxed);
}

static void pool_release(struct evexec__runner *r, unsigned long n)
{
    evexec__pool_unref((struct evexec_pool *)(void *)r, n);
}

static int pool_enqueue(struct evexec__runner *r, struct evexec_job *job, int wait_ms)
{
    return evexec__pool_enqueue((struct evexec_pool *)(void *)r, job, wait_ms);
}

static const struct evexec__runner_ops pool_ops = {
    .enqueue = pool_enqueue,
    .cancel = pool_cancel,
    .stop = NULL, /* a thread cannot be stopped: its work polls the flag */
    .timed_out = pool_timed_out,
    .release = pool_release,
};

void evexec__pool_set_port_owned(struct evexec_pool *pool)
{
    pool->port_owned = 1;
}

int evexec__pool_free_owned(struct evexec_pool *pool)
{
    if (pool)
        pool->port_owned = 0;
    return evexec_pool_free(pool);
}
