/* SPDX-License-Identifier: MIT */
/*
 * The thread pool's private layout, shared by pool.c (the queue,
 * submission and the public calls) and pool-worker.c (the threads): one
 * part in two files. Other parts see only pool.h. Never installed.
 */
#ifndef EVEXEC_POOL_INTERNAL_H
#define EVEXEC_POOL_INTERNAL_H

#include <sched.h>
#ifdef EVEXEC_USE_FUTEX
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <pthread.h>
#include <stdatomic.h>

#include "error-internal.h"
#include "pool.h"
#include "thread-internal.h"

/* A class passed over this many times in a row while it had jobs waiting
 * goes next: no priority class starves. */
#define AGING 8u

/* How long an idle worker searches (polls for a hand-off) before it parks,
 * unless spin_us says otherwise: about what a park and a wake-up cost the
 * two threads together on a VM, so searching never costs more than twice
 * what it saves. */
#define SEARCH_US 50u

/* Jobs a worker may take ahead (pool-worker.c, "Jobs taken ahead"). */
#define AHEAD 4u


struct worker;

/* pool->slow */
#define SLOW_LIMITED 0x1u  /* a class has a limit: running_c is kept up to
                              date (else stats count the workers' jobs) */
#define SLOW_SHRINK 0x2u   /* more threads than max_threads: busy ones exit */
#define SLOW_CLASSES 0x4u  /* a job of a class other than normal is queued */
#define SLOW_WAITERS 0x8u  /* a submitter waits for a queue slot */

/*
 * The gate (pool->gate): how many jobs wait -- queued, in the inbox, or
 * admitted and on their way there -- in the low bits, and in the high bits
 * why a submit may not take the path without mu ("The inbox", pool.c).
 * EVEXEC_MAX_QUEUED is 2^28: a count never reaches the flags.
 */
#define GATE_CLOSED (1u << 29) /* shut down */
#define GATE_SLOW (1u << 30)   /* class limits set, or a submitter waits */
#define GATE_GROW (1u << 31)   /* fewer threads than max_threads */
#define GATE_FLAGS (GATE_CLOSED | GATE_SLOW | GATE_GROW)

struct job_queue {
    struct evexec_job *head, *tail;
    size_t n;                      /* not kept for the normal class */
};

struct evexec_pool {
    struct evexec__runner runner;  /* first: see pool.h */
    /* Every submit reads runner, and the workers write mu for every job:
     * a line apart, or each submit waits for the workers' line. */
    _Alignas(EVEXEC_CACHELINE) pthread_mutex_t mu;
    /* Everything below is guarded by mu, except refs, timed_out and the
     * settings that never change after creation. */
    struct job_queue q[EVEXEC__NCLASSES]; /* one FIFO per priority class */
    size_t nqueued;                /* in all of them (not the inbox, not
                                      the jobs workers took ahead) */
    unsigned nheld;                /* sum of the workers' held counts */
    unsigned class_max[EVEXEC__NCLASSES]; /* running jobs per class at most;
                                             UINT_MAX: no limit */
    unsigned slow;                 /* SLOW_*: what the common path can skip */
    unsigned running_c[EVEXEC__NCLASSES]; /* running jobs per class */
    unsigned skipped[EVEXEC__NCLASSES];   /* pops that passed a waiting class */
    pthread_cond_t space_cv;       /* a queue slot freed, for space_waiters */
    unsigned space_waiters;
    struct worker *idle;           /* idle workers, most recent first */
    /* The watchman (pool-worker.c, "Small backlogs and the watchman"). */
    struct worker *watchman;       /* the idle worker that sleeps with a
                                      timeout, or NULL */
    int watch_wanted;              /* a small backlog found none: the next
                                      worker to go idle takes the role */
    unsigned watch_us;             /* the watchman's next sleep */
    uint64_t unkicked;             /* small backlogs left to the watchman */
    uint64_t seen_submitted;       /* pool->submitted at its last look */
    uint64_t last_kick_ns;         /* when one of several parked workers was
                                      last picked to wake (pick_idle()) */
    uint64_t seen_unkicked, seen_completed, seen_ns; /* at its last look */
    struct worker *all;            /* every worker struct, alive or not */
    unsigned nthreads;             /* alive, including starting */
    unsigned nstarting;            /* created, not yet looking for work */
    unsigned gate_owed;            /* jobs gone from the queue, not yet taken
                                      off the gate's count (gate_leave()) */
    int closed;                    /* 0, or EVEXEC_DRAIN + 1, EVEXEC_CANCEL + 1 */
    unsigned nexiting;             /* left nthreads, not yet the zombie */
    pthread_cond_t exit_cv;        /* nthreads and nexiting reached 0 */
    pthread_t zombie;              /* last exited thread, not yet joined */
    int has_zombie;
    unsigned next_number;          /* for thread names */
    uint64_t submitted, cancelled, rejected, threads_started;
    uint64_t dropped, init_failed;
    _Atomic uint64_t timed_out;    /* counted by ports */

    /* One reference for the handle, one per job accepted and not yet
     * delivered (the runner's release), taken when the job reaches the
     * queue: evexec_cancel() may lock mu until the job is delivered. */
    _Atomic unsigned long refs;

    /* Settings; max_threads, min_threads and max_queued change under mu. */
    unsigned max_threads, min_threads, idle_ms, spin_us, nice;
    int overflow;                  /* EVEXEC_OVERFLOW_* */
    int hist;                      /* EVEXEC_POOL_HISTOGRAMS */
    int sched_batch;               /* EVEXEC_POOL_SCHED_BATCH */
    int give_way;                  /* no EVEXEC_POOL_NO_YIELD */
    int enqueue_prep;              /* spin_us or hist: a submit has more to do */
    evexec_worker_init_fn worker_init;
    evexec_worker_fini_fn worker_fini;
    void *worker_arg;
    int port_owned;                /* a port's default pool: only the port
                                      frees it (evexec__pool_free_owned()) */
    size_t max_queued;
    pthread_attr_t attr;
    char name[64];

    /* Atomic, though written only under mu: a submit without mu reads
     * them after pushing on the inbox (pool.c, "The inbox"). On a line of
     * their own, which a burst of busy workers leaves alone. */
    _Alignas(EVEXEC_CACHELINE) _Atomic unsigned nidle;
    _Atomic unsigned nsearching;   /* idle workers awake or woken, looking */
    _Atomic int watching;          /* a watchman is on duty and a worker is
                                      busy: submits wake nobody (pool-worker.c,
                                      "Submits that wake nobody") */

    /* Written by submitters without mu, on a line of their own: */
    _Alignas(EVEXEC_CACHELINE) _Atomic(struct evexec_job *) inbox; /* newest first */
    _Atomic unsigned gate;         /* GATE_* | jobs waiting, see above */
    _Atomic unsigned gate_max;     /* max_queued, for the path without mu */
    _Atomic int submit_cpu;        /* CPU of the last submit (a hint) */
};

struct worker {
    struct evexec_pool *pool;
#ifdef EVEXEC_USE_FUTEX
    _Atomic uint32_t wake;         /* parked: sleeps while 0 */
#else
    pthread_cond_t cv;             /* parked: waits here, with mu */
#endif
    /* Given by a submitter while idle. Written under mu (release); read by
     * a searching worker without mu (acquire), who then owns the job. */
    _Atomic(struct evexec_job *) handoff;
    /* Jobs taken ahead ("Jobs taken ahead", pool-worker.c). Filled by this
     * worker with mu held; a slot is emptied either by this worker without
     * mu (an exchange: it claims the job) or by another thread with mu (a
     * compare-and-swap: it takes the job back or cancels it). Whoever
     * empties a slot owns its job. All empty whenever this worker holds mu. */
    _Atomic(struct evexec_job *) ahead[AHEAD];
    unsigned ahead_n, ahead_next;  /* filled at the last fill; next to claim
                                      (this worker's own) */
    unsigned held;                 /* (mu) filled and not yet off the gate's
                                      count: unclaimed, or claimed since */
    uint64_t fill_ns;              /* (mu) when it last took jobs ahead */
    unsigned counted;              /* (mu) class + 1 of the running job
                                      counted in running_c, or 0 */
    /* Written by this worker without mu (or, before it takes its job, by
     * the submitter handing it over); others read them with mu and never
     * follow a job pointer here: a job claimed ahead may be home and
     * reused by the time they look. */
    struct evexec_job *current;    /* running (evexec_worker_state()); read
                                      by this worker only */
    _Atomic unsigned running;      /* class + 1 of the running job, or 0 */
    _Atomic uint64_t completed;    /* jobs this struct's threads ran: kept
                                      here, not in the pool, so that workers
                                      write no line the submitter writes */
    struct worker *idle_next, *idle_prev;
    struct worker *all_next;
    unsigned number;
    int idle;                      /* on pool->idle */
    int parked;                    /* idle and asleep: needs a wake-up */
    int alive;
    int searching;                 /* idle, awake, polling handoff: counted
                                      in pool->nsearching, head of pool->idle */
    int inflight;                  /* woken to work, not yet back under mu:
                                      counted in pool->nsearching */
    int last_cpu;                  /* the CPU it went idle on (Linux) */
    /* Giving way (pool-worker.c), this worker's own: */
    uint64_t way_since;            /* start of its stretch of running; 0
                                      since it last ran out of work */
    uint64_t way_checked;          /* when it last read the clock for it */
    unsigned way_every, way_left;  /* jobs between reads; left to the next */
    void *state;                   /* set by worker_init */
    /* EVEXEC_POOL_HISTOGRAMS: written by this worker only, summed by
     * evexec_pool_histograms() without a lock. */
    _Atomic uint64_t hist_wait[EVEXEC_HIST_BUCKETS];
    _Atomic uint64_t hist_run[EVEXEC_HIST_BUCKETS];
};

/* --- the queue (with mu held) ------------------------------------------- */

/* Takes what left the queue off the gate's count. */
static inline void gate_settle(struct evexec_pool *pool)
{
    if (pool->gate_owed) {
        atomic_fetch_sub_explicit(&pool->gate, pool->gate_owed, memory_order_relaxed);
        pool->gate_owed = 0;
    }
}

/* With mu held: takes the jobs workers claimed from their slots since
 * the last look off the gate's count (pool-worker.c). */
void evexec__ahead_settle(struct evexec_pool *pool);

/* With mu held: jobs waiting, exactly (see gate_leave()). */
static inline unsigned gate_count(struct evexec_pool *pool)
{
    if (pool->nheld)
        evexec__ahead_settle(pool);
    gate_settle(pool);
    return atomic_load(&pool->gate) & ~GATE_FLAGS;
}

/* With mu held: n jobs left the queue (popped, cancelled or dropped). The
 * gate learns of it in batches, or when the queue runs empty, so that busy
 * workers do not pull the submitter's line once per job: in between, the
 * count may be high by up to 32, which only sends a submit under mu, where
 * gate_count() is exact. */
static inline void gate_leave(struct evexec_pool *pool, unsigned n)
{
    pool->gate_owed += n;
    if (pool->gate_owed >= 32 || !pool->nqueued)
        gate_settle(pool);
}

/* The normal class keeps no count of its own (nqueued less the others'):
 * the common path counts nothing twice. A job of another class sets
 * SLOW_CLASSES, which sends workers to evexec__queue_pop_classes(). */
static inline void queue_append(struct evexec_pool *pool, struct evexec_job *job)
{
    unsigned c = job_class(job);
    struct job_queue *q = &pool->q[c];
    job_set_next(job, NULL);
    job->u.prev = q->tail;
    if (q->tail)
        job_set_next(q->tail, job);
    else
        q->head = job;
    q->tail = job;
    pool->nqueued++;
    if (EVEXEC_UNLIKELY(c != EVEXEC__CLASS_NORMAL)) {
        q->n++;
        if (!(pool->slow & SLOW_CLASSES)) {
            /* Only normal jobs waited until now, popped on the common path
             * that counts no pass-overs: start the count afresh. */
            for (unsigned k = 0; k < EVEXEC__NCLASSES; k++)
                pool->skipped[k] = 0;
            pool->slow |= SLOW_CLASSES;
        }
    }
}

/* Puts a normal job taken back from a worker's slot (pool-worker.c, "Jobs
 * taken ahead") at the front of its FIFO: it is older than all queued. */
static inline void queue_prepend(struct evexec_pool *pool, struct evexec_job *job)
{
    struct job_queue *q = &pool->q[EVEXEC__CLASS_NORMAL];
    job_set_next(job, q->head);
    if (q->head)
        q->head->u.prev = job;
    else
        q->tail = job;
    q->head = job;
    pool->nqueued++;
}

/* Every way off the queue: frees a slot, which a blocked
 * evexec_submit_threadsafe() may be waiting for. */
static inline void queue_unlink(struct evexec_pool *pool, struct evexec_job *job)
{
    struct job_queue *q = &pool->q[job_class(job)];
    struct evexec_job *next = job_next(job);
    /* The head's prev is stale (queue_pop() leaves it): never read. */
    struct evexec_job *prev = q->head == job ? NULL : job->u.prev;
    if (prev)
        job_set_next(prev, next);
    else
        q->head = next;
    if (next)
        next->u.prev = prev;
    else
        q->tail = prev;
    pool->nqueued--;
    gate_leave(pool, 1);
    if (job_class(job) != EVEXEC__CLASS_NORMAL && --q->n == 0 && !pool->q[0].n && !pool->q[2].n)
        pool->slow &= ~SLOW_CLASSES;
    if (EVEXEC_UNLIKELY(pool->space_waiters))
        pthread_cond_signal(&pool->space_cv);
}

/* With mu held: the next job to start when more than one class may hold
 * one, or a class limit applies (pool.c). */
struct evexec_job *evexec__queue_pop_classes(struct evexec_pool *pool);

/* Jobs pushed without mu wait on the inbox (pool.c, "The inbox").
 * Sequentially consistent: it pairs with the counts of idle and searching
 * workers there. */
static inline int inbox_full(const struct evexec_pool *pool)
{
    return atomic_load(&pool->inbox) != NULL;
}

/* With mu held: moves what submitters pushed on the inbox onto the queue,
 * oldest first. Every inbox job is newer than every queued one (a submit
 * under mu drains before it appends), so FIFO order holds. Out of line. */
void evexec__inbox_drain(struct evexec_pool *pool);

/* 1 if queue_pop() will return a job: jobs are queued and no class limit
 * may hold them back. (With limits, queued jobs may all wait for their
 * class: the caller then keeps to what it did before limits mattered.) */
static inline int queue_startable(const struct evexec_pool *pool)
{
    return pool->nqueued && !(pool->slow & SLOW_LIMITED);
}

static inline struct evexec_job *queue_pop(struct evexec_pool *pool)
{
    struct job_queue *q = &pool->q[EVEXEC__CLASS_NORMAL];
    struct evexec_job *job;

    if (!pool->nqueued) {
        /* Workers drain only an empty queue: the submitter's line moves
         * once per batch, not once per job. */
        if (!inbox_full(pool)) /* after nsearching: see pool.c */
            return NULL;
        evexec__inbox_drain(pool);
    }
    /* The common case, priorities, limits and blocked submitters unused:
     * only normal jobs wait, nothing holds them back, nobody waits for a
     * slot. */
    if (EVEXEC_UNLIKELY(pool->slow & (SLOW_CLASSES | SLOW_LIMITED | SLOW_WAITERS)))
        return evexec__queue_pop_classes(pool);
    job = q->head;
    /* The new head's prev is left stale, not cleared: that would be one
     * more cache line (the next job's) under the lock. */
    if ((q->head = job_next(job)) == NULL)
        q->tail = NULL;
    pool->nqueued--;
    gate_leave(pool, 1);
    return job;
}

/* --- between pool.c and pool-worker.c (with mu held unless said) -------- */

/* Takes every job workers took ahead and have not claimed back onto the
 * queue's front, in each worker's order; returns how many. */
unsigned evexec__ahead_return(struct evexec_pool *pool);
/* Cancels a job seen AHEAD: 0, taken from its slot as CANCELLED (the
 * caller completes it once mu is dropped); -EBUSY, its worker claimed it. */
int evexec__ahead_cancel(struct evexec_pool *pool, struct evexec_job *job);
/* Jobs taken ahead and not claimed (for stats). */
unsigned evexec__ahead_count(const struct evexec_pool *pool);

/* Sets the gate's flags from the pool's state (pool.c). */
void evexec__gate_sync(struct evexec_pool *pool);
/* Starts a worker (mu is dropped while the thread is created). */
int evexec__worker_spawn(struct evexec_pool *pool);
/* Wakes idle worker w if it sleeps, to look at the pool again. */
void evexec__worker_wake(struct worker *w);
/* Hands queued jobs that may start to idle workers. */
void evexec__worker_dispatch_idle(struct evexec_pool *pool);
/* Takes every queued job off the queue as cancelled; complete them with
 * evexec__pool_complete_all() once mu is dropped. */
struct evexec_job *evexec__pool_cancel_queue(struct evexec_pool *pool);
/* Without mu: hands cancelled jobs back, in queue order. */
void evexec__pool_complete_all(struct evexec_job *list);
/* Frees the pool's memory (its last reference is gone). */
void evexec__pool_destroy(struct evexec_pool *pool);
/* Drops n references; frees the pool when none remains. Any thread. */
void evexec__pool_unref(struct evexec_pool *pool, unsigned long n);

/* --- idle workers (with mu held): inline, a submit's hand-off path ------- */

/* With mu held, after a change of watchman or of the idle count: whether
 * submits may leave jobs to busy workers, watched. Sequentially consistent:
 * it pairs with a submitter's push on the inbox and its read of watching;
 * whoever turns it off looks at the inbox after (pool-worker.c). */
static inline void watch_sync(struct evexec_pool *pool)
{
    int want = pool->watchman && pool->nthreads > pool->nidle + pool->nstarting;
    if (atomic_load_explicit(&pool->watching, memory_order_relaxed) != want)
        atomic_store(&pool->watching, want);
}

static inline void idle_remove(struct evexec_pool *pool, struct worker *w)
{
    if (pool->watchman == w) { /* only an idle worker watches */
        pool->watchman = NULL;
        pool->watch_wanted = 1; /* off to work: the next to go idle watches */
    }
    if (w->idle_prev)
        w->idle_prev->idle_next = w->idle_next;
    else
        pool->idle = w->idle_next;
    if (w->idle_next)
        w->idle_next->idle_prev = w->idle_prev;
    w->idle = 0;
    pool->nidle--;
    watch_sync(pool);
}

/* With mu held and several workers idle, all parked: among the eight most
 * recently idle ones, the one that went idle on the waker's CPU, else the
 * most recent. The scheduler tends to wake a thread where it last ran; a
 * worker that ran beside the loop would be woken across CPUs, which costs
 * tens of microseconds on a VM, where one on the loop's CPU simply runs when
 * the loop goes back to waiting (W2 unpinned: 46 -> 6 us per round trip).
 * But a wake-up within SEARCH_US of the last one is a burst: the waker is
 * not about to wait, and one woken beside it would only share its CPU and
 * park again at once (it may not search there), to be woken for the next
 * job. Then a worker that went idle on another CPU is preferred: once its
 * job is done it searches, and takes the next jobs with no wake-up.
 * The watchman goes last: while it is idle, no job left to busy workers
 * can wait for them with another worker idle (pool-worker.c). */
static inline struct worker *pick_idle(const struct evexec_pool *pool, int cpu, int burst)
{
    struct worker *first = pool->idle, *other = NULL;
    unsigned n = 0;
    for (struct worker *w = first; w && n < 8; w = w->idle_next, n++) {
        if (w == pool->watchman)
            continue;
#ifdef __linux__
        if ((w->last_cpu == cpu) != burst)
            return w;
#else
        EVEXEC_UNUSED(cpu);
        EVEXEC_UNUSED(burst);
#endif
        if (!other)
            other = w;
    }
    return other ? other : first;
}

static inline int this_cpu(void)
{
#ifdef __linux__
    return sched_getcpu(); /* rseq or vDSO: no syscall */
#else
    return -1;
#endif
}

/* Marks w to be woken; the caller calls evexec__worker_unpark() after
 * unlocking (or before: both are safe, workers outlive the pool's users). */
static inline void unpark_mark(struct worker *w)
{
#ifdef EVEXEC_USE_FUTEX
    atomic_store_explicit(&w->wake, 1, memory_order_release);
#else
    EVEXEC_UNUSED(w);
#endif
}

/* Wakes a worker marked by unpark_mark(). Inline: a submit's hand-off. */
static inline void evexec__worker_unpark(struct worker *w)
{
#ifdef EVEXEC_USE_FUTEX
    syscall(SYS_futex, &w->wake, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
#else
    pthread_cond_signal(&w->cv);
#endif
}

/* With mu held and a parked worker on pool->idle: takes one off the list
 * and marks it in flight (counted as searching until it is back under mu).
 * The caller wakes it with evexec__worker_unpark() once mu is dropped. */
static inline struct worker *evexec__worker_kick(struct evexec_pool *pool, int cpu)
{
    struct worker *w = pool->idle;
    if (w->idle_next) {
        uint64_t now = evexec__now_ns();
        w = pick_idle(pool, cpu, now - pool->last_kick_ns < SEARCH_US * 1000u);
        pool->last_kick_ns = now;
    }
    idle_remove(pool, w);
    w->inflight = 1;
    pool->nsearching++;
    unpark_mark(w);
    return w;
}

/* With mu held: hands the job to an idle worker, the searching one if there
 * is one (always the head of pool->idle), else a parked one, which is then
 * in flight. Returns the worker if it sleeps and must be unparked (after mu
 * is dropped, or before: both are safe). */
static inline struct worker *evexec__worker_hand_off(struct evexec_pool *pool,
                                                     struct evexec_job *job, int cpu)
{
    struct worker *w = pool->idle, *wake = NULL;
    if (w->searching) {
        w->searching = 0; /* it stops searching as it takes the job */
        pool->nsearching--;
        idle_remove(pool, w);
    } else {
        w = wake = evexec__worker_kick(pool, cpu);
    }
    if (EVEXEC_UNLIKELY(pool->slow & SLOW_LIMITED)) {
        pool->running_c[job_class(job)]++;
        w->counted = job_class(job) + 1;
    }
    evexec__job_set_state(job, JOB_RUNNING);
    w->current = job; /* running from now on */
    atomic_store_explicit(&w->running, job_class(job) + 1, memory_order_relaxed);
    atomic_store_explicit(&w->handoff, job, memory_order_release);
    return wake;
}

#endif /* EVEXEC_POOL_INTERNAL_H */
