/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: the pool owns worker threads and one bounded FIFO queue.
 *
 * - One mutex guards the queue, the idle list and the counters. It is
 *   never held while user code runs, while a thread is created, or while a
 *   wake fd is written; it is the only lock here, so there is no lock order
 *   to keep.
 * - A worker is woken only if one is idle: idle workers sleep on a word of
 *   their own (a futex; a condition variable where there is none), on a
 *   most-recent-first list, and a submitter hands the job straight to one
 *   of them (preferring one that went idle on the submitter's CPU), waking
 *   it only if it sleeps (it may still be spinning, with spin_us). Surplus workers at the cold end
 *   of that list time out and exit. When no worker is idle the job is
 *   queued, and a thread is started if the pool may grow and the queued jobs
 *   outnumber the threads already starting.
 * - A worker pushes a finished job on its port only after it has picked its
 *   next job, so each job costs one lock round trip.
 * - Exited threads are joined by the next thread to exit, or by
 *   evexec_pool_free(), so at most one is ever left unjoined and no loop
 *   thread ever waits in pthread_join().
 * - Worker structs are never freed before the pool, so a submitter may
 *   signal a worker's condition variable after unlocking.
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

#include "evexec-internal.h"

#define DEFAULT_MAX_THREADS 4u
#define DEFAULT_MAX_QUEUED 65536u
#define DEFAULT_IDLE_MS 10000u
#define MIN_STACK ((size_t)16 * 1024)
#define MAX_STACK ((size_t)1 << 30)
#define MAX_SPIN_US 10000u
#define MAX_NICE 19u
#define MIN_POOL_OPTS_SIZE (offsetof(struct evexec_pool_opts, stack_size) + sizeof(size_t))

struct worker {
    struct evexec_pool *pool;
#ifdef EVEXEC_USE_FUTEX
    _Atomic uint32_t wake;         /* parked: sleeps while 0 */
#else
    pthread_cond_t cv;             /* parked: waits here, with mu */
#endif
    /* Given by a submitter while idle. Written under mu; read without it
     * only by the worker's own spin, as a hint. */
    _Atomic(struct evexec_job *) handoff;
    struct evexec_job *current;    /* running; for EVEXEC_CANCEL */
    struct worker *idle_next, *idle_prev;
    struct worker *all_next;
    unsigned number;
    int idle;                      /* on pool->idle */
    int parked;                    /* idle and asleep: needs a wake-up */
    int alive;
    int last_cpu;                  /* the CPU it went idle on (Linux) */
};

/* Lets evexec_pool_free() refuse to be called from its own pool. */
static _Thread_local struct evexec_pool *current_pool;

/* --- idle list ----------------------------------------------------------- */

static void idle_push(struct evexec_pool *pool, struct worker *w)
{
    w->idle_prev = NULL;
    w->idle_next = pool->idle;
    if (pool->idle)
        pool->idle->idle_prev = w;
    pool->idle = w;
    w->idle = 1;
    pool->nidle++;
}

static void idle_remove(struct evexec_pool *pool, struct worker *w)
{
    if (w->idle_prev)
        w->idle_prev->idle_next = w->idle_next;
    else
        pool->idle = w->idle_next;
    if (w->idle_next)
        w->idle_next->idle_prev = w->idle_prev;
    w->idle = 0;
    pool->nidle--;
}

/* With mu held and several workers idle: among the eight most recently idle
 * ones, the one that went idle on the submitter's CPU, else the most recent.
 * The scheduler tends to wake a thread where it last ran; a worker that
 * ran beside the loop would be woken across CPUs, which costs tens of
 * microseconds on a VM, where one on the loop's CPU simply runs when the
 * loop goes back to waiting (W2 unpinned: 46 -> 6 us per round trip). */
static struct worker *pick_idle(struct worker *first)
{
#ifdef __linux__
    int cpu = sched_getcpu();
    unsigned n = 0;
    for (struct worker *w = first; w && n < 8; w = w->idle_next, n++)
        if (w->last_cpu == cpu)
            return w;
#endif
    return first;
}

/* --- queue --------------------------------------------------------------- */

static void queue_append(struct evexec_pool *pool, struct evexec_job *job)
{
    job_set_next(job, NULL);
    job->u.prev = pool->q_tail;
    if (pool->q_tail)
        job_set_next(pool->q_tail, job);
    else
        pool->q_head = job;
    pool->q_tail = job;
    pool->nqueued++;
}

static void queue_unlink(struct evexec_pool *pool, struct evexec_job *job)
{
    struct evexec_job *next = job_next(job);
    if (job->u.prev)
        job_set_next(job->u.prev, next);
    else
        pool->q_head = next;
    if (next)
        next->u.prev = job->u.prev;
    else
        pool->q_tail = job->u.prev;
    pool->nqueued--;
}

/* --- workers ------------------------------------------------------------- */

static void name_thread(struct worker *w)
{
    /* Build the whole name; evexec__thread_name() cuts it. */
    char name[64 + 12];
    snprintf(name, sizeof name, "%s-%u", w->pool->name, w->number);
    evexec__thread_name(name);
}

static int has_handoff(const struct worker *w)
{
    return atomic_load_explicit(&w->handoff, memory_order_relaxed) != NULL;
}

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Spinning only pays when the submitter runs on another CPU: not when this
 * worker may run on one CPU only, the one its submitters last ran on (a
 * worker pinned apart from its loop thread still spins). */
static int may_run_beside_submitter(const struct evexec_pool *pool)
{
#ifdef __linux__
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) != 0 || CPU_COUNT(&cpus) > 1)
        return 1;
    int cpu = atomic_load_explicit(&pool->submit_cpu, memory_order_relaxed);
    return cpu < 0 || !CPU_ISSET(cpu, &cpus);
#else
    EVEXEC_UNUSED(pool);
    return 1;
#endif
}

/* Without mu: polls for a hand-off for up to spin_us. A submitter that finds
 * this worker idle but not parked hands it the job without a wake-up. */
static void spin(struct evexec_pool *pool, struct worker *w)
{
    double deadline = now_us() + pool->spin_us;
    for (unsigned i = 1;; i++) {
        if (has_handoff(w))
            return;
        cpu_relax();
        if (i % 32 == 0) {
            if (now_us() >= deadline)
                return;
            if (i % 1024 == 0)
                sched_yield(); /* let anything else runnable here go first */
        }
    }
}

/*
 * Parking. An idle worker sleeps on a word of its own (a futex on Linux),
 * outside the pool mutex, and whoever hands it a job or shuts the pool down
 * wakes exactly that worker, and only if it is asleep (w->parked, under mu).
 * A condition variable waited on with mu would make the woken worker
 * re-take mu on the way out, and glibc then also wakes a contender on the
 * next unlock: one more futex call per job.
 */
#ifdef EVEXEC_USE_FUTEX
static void futex_wait(_Atomic uint32_t *word, const struct timespec *rel)
{
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 0, rel, NULL, 0);
}

/* With mu held: marks w to be woken; the caller calls unpark() after
 * unlocking (or before: both are safe, workers outlive the pool's users). */
static void unpark_mark(struct worker *w)
{
    atomic_store_explicit(&w->wake, 1, memory_order_release);
}

static void unpark(struct worker *w)
{
    syscall(SYS_futex, &w->wake, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* With mu held, w parked: sleeps until woken or the deadline. Returns with
 * mu held; 1 if the deadline passed. */
static int park(struct evexec_pool *pool, struct worker *w, const struct timespec *deadline)
{
    int timedout = 0;
    atomic_store_explicit(&w->wake, 0, memory_order_relaxed);
    pthread_mutex_unlock(&pool->mu);
    while (!atomic_load_explicit(&w->wake, memory_order_acquire)) {
        struct timespec rel, now;
        if (deadline) {
            evexec__clock_now(&now);
            rel.tv_sec = deadline->tv_sec - now.tv_sec;
            rel.tv_nsec = deadline->tv_nsec - now.tv_nsec;
            if (rel.tv_nsec < 0) {
                rel.tv_sec--;
                rel.tv_nsec += 1000000000L;
            }
            if (rel.tv_sec < 0) {
                timedout = 1;
                break;
            }
        }
        futex_wait(&w->wake, deadline ? &rel : NULL);
    }
    pthread_mutex_lock(&pool->mu);
    return timedout;
}
#else
static void unpark_mark(struct worker *w)
{
    EVEXEC_UNUSED(w);
}

static void unpark(struct worker *w)
{
    pthread_cond_signal(&w->cv);
}

static int park(struct evexec_pool *pool, struct worker *w, const struct timespec *deadline)
{
    if (deadline)
        return pthread_cond_timedwait(&w->cv, &pool->mu, deadline) == ETIMEDOUT;
    pthread_cond_wait(&w->cv, &pool->mu);
    return 0;
}
#endif

/* With mu held: waits idle for a job. Returns 0 if this surplus thread has
 * been idle for the whole timeout and should exit. */
static int idle_wait(struct evexec_pool *pool, struct worker *w)
{
    struct timespec deadline;
    int timed = pool->idle_ms != EVEXEC_IDLE_FOREVER && pool->nthreads > pool->min_threads;
    int timedout = 0;

#ifdef __linux__
    w->last_cpu = sched_getcpu();
#endif
    idle_push(pool, w);
    /* One spinner at a time: more would only take CPU from the submitter. */
    if (pool->spin_us && !pool->closed && !pool->nspinning && may_run_beside_submitter(pool)) {
        pool->nspinning++;
        pthread_mutex_unlock(&pool->mu);
        spin(pool, w);
        pthread_mutex_lock(&pool->mu);
        pool->nspinning--;
    }
    if (timed)
        evexec__deadline_after(&deadline, pool->idle_ms);
    while (!has_handoff(w) && !pool->closed && !timedout) {
        w->parked = 1;
        timedout = park(pool, w, timed ? &deadline : NULL);
        w->parked = 0;
    }
    if (w->idle) /* a submitter that hands us a job takes us off the list */
        idle_remove(pool, w);
    if (has_handoff(w) || pool->closed || !timedout)
        return 1;
    return !(pool->nthreads > pool->min_threads && !pool->q_head);
}

/* With mu held: the worker's next job, or NULL. */
static struct evexec_job *next_job(struct evexec_pool *pool, struct worker *w)
{
    struct evexec_job *job = atomic_load_explicit(&w->handoff, memory_order_relaxed);
    if (job) {
        atomic_store_explicit(&w->handoff, NULL, memory_order_relaxed);
    } else if ((job = pool->q_head) != NULL) {
        queue_unlink(pool, job);
        atomic_store_explicit(&job->state, JOB_RUNNING, memory_order_relaxed);
    }
    w->current = job;
    return job;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct evexec_pool *pool = w->pool;
    struct evexec_job *job, *finished = NULL;

    current_pool = pool;
    name_thread(w);
#ifdef __linux__
    /* Linux's nice value is per thread: only the workers are niced. */
    if (pool->nice) {
        id_t tid = (id_t)syscall(SYS_gettid);
        int base = getpriority(PRIO_PROCESS, tid);
        int want = base + (int)pool->nice;
        setpriority(PRIO_PROCESS, tid, want > 19 ? 19 : want);
    }
#endif
    pthread_mutex_lock(&pool->mu);
    pool->nstarting--;
    for (;;) {
        job = next_job(pool, w);
        if (!job) {
            if (finished) {
                pthread_mutex_unlock(&pool->mu);
                evexec__job_complete(finished);
                finished = NULL;
                pthread_mutex_lock(&pool->mu);
                continue; /* look again: work may have come meanwhile */
            }
            if (pool->closed && !pool->q_head)
                break;
            if (!idle_wait(pool, w))
                break;
            continue;
        }
        pool->nrunning++;
        pthread_mutex_unlock(&pool->mu);

        if (finished)
            evexec__job_complete(finished);
        job->u.result = job->work(job, job->arg);
        finished = job;

        pthread_mutex_lock(&pool->mu);
        pool->nrunning--;
        pool->completed++;
        w->current = NULL;
    }

    /* Exit: become the zombie and join the previous one. */
    pthread_t prev = pool->zombie;
    int had_prev = pool->has_zombie;
    pool->zombie = pthread_self();
    pool->has_zombie = 1;
    w->alive = 0;
    if (--pool->nthreads == 0)
        pthread_cond_broadcast(&pool->exit_cv);
    pthread_mutex_unlock(&pool->mu);
    if (had_prev)
        pthread_join(prev, NULL);
    return NULL;
}

/* With mu held (dropped while the thread is created): starts a worker. */
static int spawn(struct evexec_pool *pool)
{
    struct worker *w;
    pthread_t tid;
    int rc;

    for (w = pool->all; w && w->alive; w = w->all_next)
        ;
    if (!w) {
        if (!(w = calloc(1, sizeof *w)))
            return -ENOMEM;
#ifndef EVEXEC_USE_FUTEX
        if ((rc = evexec__cond_init(&w->cv)) < 0) {
            free(w);
            return rc;
        }
#endif
        w->pool = pool;
        w->all_next = pool->all;
        pool->all = w;
    }
    w->alive = 1;
    atomic_store_explicit(&w->handoff, NULL, memory_order_relaxed);
    w->current = NULL;
    w->parked = 0;
    w->number = ++pool->next_number;
    pool->nthreads++;
    pool->nstarting++;
    pthread_mutex_unlock(&pool->mu);

    /* No signal can reach the thread, even before its first instruction. */
    rc = evexec__thread_create(&tid, &pool->attr, worker_main, w);

    pthread_mutex_lock(&pool->mu);
    if (rc < 0) {
        w->alive = 0;
        pool->nstarting--;
        if (--pool->nthreads == 0)
            pthread_cond_broadcast(&pool->exit_cv);
        return rc;
    }
    pool->threads_started++;
    return 0;
}

static void pool_destroy(struct evexec_pool *pool)
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
    pthread_cond_destroy(&pool->exit_cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}

struct evexec_pool *evexec__pool_current(void)
{
    return current_pool;
}

void evexec__pool_unref(struct evexec_pool *pool, unsigned long n)
{
    if (atomic_fetch_sub_explicit(&pool->refs, n, memory_order_acq_rel) == n)
        pool_destroy(pool);
}

/* --- jobs ---------------------------------------------------------------- */

/* With mu held: takes every queued job off the queue as cancelled. The
 * caller completes them with complete_all() once it has unlocked. */
static struct evexec_job *cancel_queue(struct evexec_pool *pool)
{
    struct evexec_job *list = pool->q_head;
    for (struct evexec_job *j = list; j; j = job_next(j))
        atomic_store_explicit(&j->state, JOB_CANCELLED, memory_order_relaxed);
    pool->cancelled += pool->nqueued;
    pool->q_head = pool->q_tail = NULL;
    pool->nqueued = 0;
    return list;
}

/* Without mu: hands cancelled jobs back, in queue order. */
static void complete_all(struct evexec_job *list)
{
    struct evexec_job *next;
    for (; list; list = next) {
        next = job_next(list); /* completing rewrites it */
        list->u.result = NULL;
        evexec__job_complete(list);
    }
}

int evexec__pool_enqueue(struct evexec_pool *pool, struct evexec_job *job)
{
    struct worker *w;
    int rc;

#ifdef __linux__
    if (pool->spin_us) /* for may_run_beside_submitter() */
        atomic_store_explicit(&pool->submit_cpu, sched_getcpu(), memory_order_relaxed);
#endif
    pthread_mutex_lock(&pool->mu);
    if (EVEXEC_UNLIKELY(pool->closed)) {
        pool->rejected++;
        pthread_mutex_unlock(&pool->mu);
        return -ESHUTDOWN;
    }
    pool->submitted++;
    atomic_fetch_add_explicit(&pool->refs, 1, memory_order_relaxed);
    if ((w = pool->idle) != NULL) {
        if (w->idle_next)
            w = pick_idle(w);
        idle_remove(pool, w);
        atomic_store_explicit(&job->state, JOB_RUNNING, memory_order_relaxed);
        atomic_store_explicit(&w->handoff, job, memory_order_relaxed);
        w->current = job; /* running from now on, for EVEXEC_CANCEL */
        int parked = w->parked; /* else it is spinning and will see the job */
        if (parked)
            unpark_mark(w);
        pthread_mutex_unlock(&pool->mu);
        if (parked)
            unpark(w); /* w outlives this: see DESIGN */
        return 0;
    }
    if (pool->nqueued >= pool->max_queued) {
        pool->submitted--;
        pool->rejected++;
        atomic_fetch_sub_explicit(&pool->refs, 1, memory_order_relaxed);
        pthread_mutex_unlock(&pool->mu);
        return -EAGAIN;
    }
    atomic_store_explicit(&job->state, JOB_QUEUED, memory_order_relaxed);
    queue_append(pool, job);
    if (pool->nthreads < pool->max_threads && pool->nqueued > pool->nstarting) {
        rc = spawn(pool);
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
            stranded = cancel_queue(pool);
            pthread_mutex_unlock(&pool->mu);
            complete_all(stranded);
            if (ours)
                return rc == -ENOMEM ? -ENOMEM : -EAGAIN;
            return 0;
        }
    }
    pthread_mutex_unlock(&pool->mu);
    return 0;
}

int evexec__pool_cancel(struct evexec_pool *pool, struct evexec_job *job)
{
    pthread_mutex_lock(&pool->mu);
    uint8_t st = atomic_load_explicit(&job->state, memory_order_relaxed);
    if (st != JOB_QUEUED) {
        /* A worker took it, or a concurrent EVEXEC_CANCEL shutdown. */
        pthread_mutex_unlock(&pool->mu);
        return st == JOB_CANCELLED ? -EALREADY : -EBUSY;
    }
    queue_unlink(pool, job);
    atomic_store_explicit(&job->state, JOB_CANCELLED, memory_order_relaxed);
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
    if (opts) {
        rc = evexec__check_opts_size(opts, opts->size, MIN_POOL_OPTS_SIZE, sizeof o);
        if (rc < 0)
            return rc;
        memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
    }
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
        (o.stack_size && (o.stack_size < MIN_STACK || o.stack_size > MAX_STACK)))
        return -EINVAL;

    if (!(pool = calloc(1, sizeof *pool)))
        return -ENOMEM;
    pool->max_threads = o.max_threads;
    pool->min_threads = o.min_threads;
    pool->max_queued = o.max_queued;
    pool->idle_ms = o.idle_timeout_ms;
    pool->spin_us = o.spin_us;
    pool->nice = o.nice;
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
    if ((rc = -pthread_attr_init(&pool->attr)) < 0)
        goto fail_cond;
    if (o.stack_size) {
        long page = sysconf(_SC_PAGESIZE);
        size_t sz = (o.stack_size + (size_t)page - 1) & ~((size_t)page - 1);
        if ((rc = -pthread_attr_setstacksize(&pool->attr, sz)) < 0)
            goto fail_attr;
    }

    pthread_mutex_lock(&pool->mu);
    while (pool->nthreads < pool->min_threads) {
        if ((rc = spawn(pool)) < 0) {
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
    if (how == EVEXEC_CANCEL) {
        cancelled = cancel_queue(pool);
        for (w = pool->all; w; w = w->all_next)
            if (w->current)
                atomic_store_explicit(&w->current->stop, 1, memory_order_relaxed);
    }
    for (w = pool->idle; w; w = w->idle_next)
        if (w->parked) {
            unpark_mark(w);
            unpark(w);
        }
    pthread_mutex_unlock(&pool->mu);
    complete_all(cancelled);
    return 0;
}

int evexec_pool_free(evexec_pool *pool)
{
    if (!pool)
        return 0;
    if (current_pool == pool)
        return -EDEADLK;
    evexec_pool_shutdown(pool, EVEXEC_DRAIN); /* -EALREADY is fine */
    pthread_mutex_lock(&pool->mu);
    while (pool->nthreads)
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

int evexec_pool_stats(evexec_pool *pool, struct evexec_pool_stats *out)
{
    if (!pool || !out)
        return -EINVAL;
    int rc = evexec__check_opts_size(out, out->size,
                                     offsetof(struct evexec_pool_stats, threads_started) +
                                         sizeof(uint64_t),
                                     sizeof *out);
    if (rc == -E2BIG)
        rc = 0; /* a newer caller: fill what we know */
    if (rc < 0)
        return rc;
    struct evexec_pool_stats s;
    memset(&s, 0, sizeof s);
    s.size = out->size;
    pthread_mutex_lock(&pool->mu);
    s.threads = pool->nthreads;
    s.idle = pool->nidle;
    s.running = pool->nrunning;
    s.queued = pool->nqueued;
    s.submitted = pool->submitted;
    s.completed = pool->completed;
    s.cancelled = pool->cancelled;
    s.rejected = pool->rejected;
    s.threads_started = pool->threads_started;
    pthread_mutex_unlock(&pool->mu);
    memcpy(out, &s, out->size < sizeof s ? out->size : sizeof s);
    return 0;
}
