/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: the pool's worker threads (the queue and the public calls are in
 * pool.c, the shared layout in pool-internal.h).
 *
 * - Wake-ups stay off the loop thread, which has at most one in flight:
 *   see "Who wakes whom" above worker_main(). Idle workers sleep on a word of
 *   their own (a futex; a condition variable where there is none), on a
 *   most-recent-first list. Surplus workers at the cold end of that list
 *   time out and exit.
 * - A worker pushes a finished job on its port only after it has picked its
 *   next job, so each job costs one lock round trip, and a job it took
 *   ahead none ("Jobs taken ahead").
 * - A worker only goes idle when no queued job may start (jobs wait while
 *   idle workers sleep only while a woken one is on its way). A job held back
 *   by its class limit becomes startable only when a job of its class
 *   finishes; that worker hands what may now start to idle workers
 *   (evexec__worker_dispatch_idle()) before it looks for its own next job.
 * - Exited threads are joined by the next thread to exit, or by
 *   evexec_pool_free(), so at most one is ever left unjoined and no loop
 *   thread ever waits in pthread_join(). A thread that leaves last with
 *   jobs still queued (its worker_init failed) cancels them: none is ever
 *   stranded.
 * - Worker structs are never freed before the pool, so a submitter may
 *   signal a worker after unlocking.
 * - worker_init runs before the thread takes its first job, worker_fini
 *   after its last, both without mu.
 * - A worker that has run for GIVE_WAY_NS without running out of work
 *   yields its CPU before its next job ("Giving way"), so a loop thread
 *   woken on that CPU waits for one job, not for the worker's time slice.
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


/* The worker the calling thread is: evexec_pool_free() refuses to be called
 * from its own pool; evexec_worker_state(). */
static _Thread_local struct worker *current_worker;

/* --- idle list ----------------------------------------------------------- */

/* Most recent first, but a searching worker stays at the head, where a
 * submitter looks for it. */
static void idle_push(struct evexec_pool *pool, struct worker *w)
{
    struct worker *after = pool->idle && pool->idle->searching ? pool->idle : NULL;
    struct worker *next = after ? after->idle_next : pool->idle;
    w->idle_prev = after;
    w->idle_next = next;
    if (next)
        next->idle_prev = w;
    if (after)
        after->idle_next = w;
    else
        pool->idle = w;
    w->idle = 1;
    pool->nidle++;
    watch_sync(pool); /* before the worker's last look at the inbox */
}

/* --- jobs taken ahead ---------------------------------------------------- */

/*
 * Jobs taken ahead. A worker that takes a job while jobs wait takes its
 * share of the queue (nqueued / nthreads, at most AHEAD) from the queue's
 * front into slots of its own, and runs them one after the other without
 * the pool's mutex. A burst of short jobs then costs a worker one lock
 * round trip per AHEAD + 1 jobs instead of one per job, and four workers
 * on two CPUs stop queueing on the mutex: once one that holds it is
 * preempted, every lock after it would otherwise sleep and wake in the
 * kernel for a while (bench/README.md, "W1 and W7").
 *
 * A job taken ahead stays a queued job (JOB_AHEAD) until its worker claims
 * it. The worker empties the slot with an exchange and runs what it got;
 * any other thread empties it with mu held and a compare-and-swap. Exactly
 * one of them gets the job, and only the one that emptied the slot ever
 * touches it again. So:
 * - evexec_cancel() takes it from its slot: 0, it never ran;
 * - it stays on the gate's count until claimed (claims are counted off
 *   with mu held, evexec__ahead_settle()): -EAGAIN at max_queued stays
 *   exact, and stats count it as queued;
 * - none waits long behind a job that blocks, and jobs start in about the
 *   order they came: a worker takes jobs ahead only while no other worker
 *   is on its way to them (searching, or just woken), and whenever a worker
 *   looks for work, or the watchman looks, the jobs another worker has
 *   held for more than AHEAD_STALE_US go back to the queue's front, to be
 *   taken before newer ones; a worker that finds the queue empty takes
 *   back every job held before it goes idle;
 * - what must see the whole queue takes them back first, as it drains the
 *   inbox: a higher-priority job queued, a class limit set, a full queue
 *   with EVEXEC_OVERFLOW_DROP_OLDEST, EVEXEC_CANCEL;
 * - jobs are taken ahead only on the common path (normal jobs only, no
 *   class limit, no blocked submitter, no shrinking, not shut down), and a
 *   worker takes mu again only once its slots are empty: a worker holding
 *   mu holds no job ahead.
 * A pool of one thread still starts jobs in submission order; with
 * several, a newer job another worker takes from the queue may start
 * before one held ahead: for up to AHEAD_STALE_US, or until a worker
 * next looks for work after that.
 *
 * Running jobs are described to others by counts, not pointers (running,
 * completed): a job claimed ahead goes home without mu, so a
 * pointer to it could be reused by the time someone with mu followed it.
 * EVEXEC_CANCEL reaches running jobs through the runner's stopping flag.
 */
#define AHEAD_STALE_US 20u

/* With mu held, w having taken a job: takes its share of the queue. */
static void ahead_fill(struct evexec_pool *pool, struct worker *w)
{
    struct job_queue *q = &pool->q[EVEXEC__CLASS_NORMAL];
    size_t share = pool->nqueued / pool->nthreads;
    unsigned k = share < AHEAD ? (unsigned)share : AHEAD;
    for (unsigned i = 0; i < k; i++) {
        struct evexec_job *job = q->head;
        /* As queue_pop(): the new head's prev is left stale. Off the
         * queue, but still on the gate's count. */
        if ((q->head = job_next(job)) == NULL)
            q->tail = NULL;
        pool->nqueued--;
        evexec__job_set_state(job, JOB_AHEAD);
        atomic_store_explicit(&w->ahead[i], job, memory_order_relaxed);
    }
    w->ahead_n = k;
    w->ahead_next = 0;
    w->held = k;
    pool->nheld += k;
    w->fill_ns = evexec__now_ns();
}

/* 1 if a worker that has its job may take jobs ahead now (mu held): jobs
 * wait, at least one per thread, and no other worker is on its way to them
 * (searching, or woken): those take the oldest. */
static int ahead_wanted(const struct evexec_pool *pool)
{
    return pool->nqueued >= pool->nthreads && !pool->nsearching &&
           !pool->closed &&
           !(pool->slow & (SLOW_CLASSES | SLOW_LIMITED | SLOW_WAITERS | SLOW_SHRINK));
}

/* Without mu: the next job w took ahead and still holds, now claimed and
 * running; or NULL. */
static struct evexec_job *ahead_claim(struct worker *w)
{
    while (w->ahead_next < w->ahead_n) {
        struct evexec_job *job = atomic_exchange(&w->ahead[w->ahead_next++], NULL);
        if (!job)
            continue; /* taken back */
        evexec__job_set_state(job, JOB_RUNNING);
        w->current = job;
        atomic_store_explicit(&w->running, EVEXEC__CLASS_NORMAL + 1, memory_order_relaxed);
        return job;
    }
    return NULL;
}

/* With mu held: takes w's unclaimed jobs back onto the queue's front, in
 * the order w took them; returns how many. */
static unsigned ahead_take_back(struct evexec_pool *pool, struct worker *w)
{
    unsigned n = 0;
    for (unsigned i = AHEAD; i-- > 0;) {
        struct evexec_job *job = atomic_load_explicit(&w->ahead[i], memory_order_relaxed);
        if (job && atomic_compare_exchange_strong(&w->ahead[i], &job, NULL)) {
            evexec__job_set_state(job, JOB_QUEUED);
            queue_prepend(pool, job);
            n++;
        }
    }
    w->held -= n;
    pool->nheld -= n;
    return n;
}

unsigned evexec__ahead_return(struct evexec_pool *pool)
{
    unsigned n = 0;
    if (pool->nheld)
        for (struct worker *w = pool->all; w; w = w->all_next)
            if (w->held)
                n += ahead_take_back(pool, w);
    return n;
}

/* With mu held: takes back the jobs other workers have held for more than
 * AHEAD_STALE_US (they run something long); returns how many. */
static unsigned ahead_take_stale(struct evexec_pool *pool)
{
    unsigned n = 0;
    uint64_t stale = evexec__now_ns() - AHEAD_STALE_US * 1000u;
    for (struct worker *w = pool->all; w; w = w->all_next)
        if (w->held && w->fill_ns < stale)
            n += ahead_take_back(pool, w);
    return n;
}

int evexec__ahead_cancel(struct evexec_pool *pool, struct evexec_job *job)
{
    for (struct worker *w = pool->all; w; w = w->all_next)
        for (unsigned i = 0; w->held && i < AHEAD; i++) {
            struct evexec_job *expect = job;
            if (atomic_load_explicit(&w->ahead[i], memory_order_relaxed) == job &&
                atomic_compare_exchange_strong(&w->ahead[i], &expect, NULL)) {
                w->held--;
                pool->nheld--;
                gate_leave(pool, 1);
                evexec__job_set_state(job, JOB_CANCELLED);
                pool->cancelled++;
                if (pool->space_waiters)
                    pthread_cond_signal(&pool->space_cv);
                return 0;
            }
        }
    return -EBUSY; /* its worker claimed it */
}

/* With mu held: n jobs w took ahead were claimed (and are off its slots):
 * off the gate's count. */
static void ahead_settled(struct evexec_pool *pool, struct worker *w, unsigned n)
{
    w->held -= n;
    pool->nheld -= n;
    gate_leave(pool, n);
    if (pool->space_waiters)
        pthread_cond_broadcast(&pool->space_cv);
}

void evexec__ahead_settle(struct evexec_pool *pool)
{
    for (struct worker *w = pool->all; w; w = w->all_next) {
        if (!w->held)
            continue;
        unsigned left = 0;
        for (unsigned i = 0; i < AHEAD; i++)
            left += atomic_load_explicit(&w->ahead[i], memory_order_relaxed) != NULL;
        if (w->held > left)
            ahead_settled(pool, w, w->held - left);
    }
}

unsigned evexec__ahead_count(const struct evexec_pool *pool)
{
    unsigned n = 0;
    if (pool->nheld)
        for (const struct worker *w = pool->all; w; w = w->all_next)
            for (unsigned i = 0; w->held && i < AHEAD; i++)
                n += atomic_load_explicit(&w->ahead[i], memory_order_relaxed) != NULL;
    return n;
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
    return atomic_load_explicit(&w->handoff, memory_order_acquire) != NULL;
}

/* Bucket of a duration: 0 below 2 ns, else floor(log2(ns)), capped. */
static unsigned hist_bucket(uint64_t ns)
{
    unsigned b = ns < 2 ? 0 : 63u - (unsigned)__builtin_clzll(ns);
    return b < EVEXEC_HIST_BUCKETS ? b : EVEXEC_HIST_BUCKETS - 1;
}

/* Single writer: a relaxed load and store, no locked instruction. */
static void hist_add(_Atomic uint64_t *h, uint64_t ns)
{
    _Atomic uint64_t *b = &h[hist_bucket(ns)];
    atomic_store_explicit(b, atomic_load_explicit(b, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Searching only pays on another CPU than the submitter's: on its CPU the
 * spin would only delay it (every thread pinned to one CPU, or a worker the
 * scheduler placed beside the loop). sched_getcpu() costs no syscall; where
 * the CPU is unknown (-1), a worker searches. */
static int may_search(const struct evexec_pool *pool, int cpu)
{
    return !pool->closed && !pool->nsearching &&
           (cpu < 0 || cpu != atomic_load_explicit(&pool->submit_cpu, memory_order_relaxed));
}

/* Without mu: polls for a hand-off, or a job on the inbox, for up to us
 * microseconds; 1 if a hand-off came, 2 if the inbox has a job.
 * The default search is shorter than a park and a wake-up cost together;
 * only a longer spin_us yields the CPU now and then, to anything else
 * runnable here (a syscall, which the default idle path never makes). */
static int search(struct worker *w, unsigned us)
{
    uint64_t deadline = evexec__now_ns() + (uint64_t)us * 1000u;
    for (unsigned i = 1;; i++) {
        if (has_handoff(w))
            return 1;
        if (inbox_full(w->pool))
            return 2;
        evexec__cpu_relax();
        if (i % 32 == 0) {
            if (evexec__now_ns() >= deadline)
                return 0;
            if (i % 1024 == 0 && us > SEARCH_US)
                sched_yield();
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

static int park(struct evexec_pool *pool, struct worker *w, const struct timespec *deadline)
{
    if (deadline)
        return pthread_cond_timedwait(&w->cv, &pool->mu, deadline) == ETIMEDOUT;
    pthread_cond_wait(&w->cv, &pool->mu);
    return 0;
}
#endif

enum { IDLE_EXIT, IDLE_LOOK, IDLE_GOT };

/*
 * Small backlogs and the watchman. A worker that takes a job and sees more
 * queued than workers on their way wakes one or two parked ones ("Who
 * wakes whom"). For a backlog of a few short jobs that costs more than it
 * saves: the woken worker arrives tens of microseconds later, on the other
 * CPU, after the busy one has run them all, and from then on hand-offs
 * cross CPUs (W4 in bench/README.md). But a busy worker may be in a call
 * that blocks, and the jobs behind it must not wait for it. So a backlog
 * of up to WATCH_BACKLOG jobs wakes nobody while there is a watchman: one
 * idle worker that sleeps with a timeout and, if it wakes to find jobs
 * still queued, takes one itself (and, taking it, wakes more for what
 * remains, as any worker taking a job does). A small backlog that finds
 * no watchman is kicked as before, and the next worker to go idle becomes
 * the watchman. It sleeps WATCH_MIN_US, then twice as long each time, up
 * to WATCH_MAX_US, while small backlogs keep being left to it; after a
 * sleep in which none was and with nothing queued it stands down (sleeps
 * on without a timeout, no longer the watchman). So a small backlog waits
 * at most about WATCH_MAX_US for a second worker, and a pool that leaves
 * no backlog to a watchman has no timer running.
 *
 * The watchman is only about latency: a job left to it is queued, and the
 * busy worker takes it when it finishes, like any queued job ("Why no
 * wake-up is lost" holds without it). Pools with class limits keep
 * kicking: a job held back by its limit is queued but may not start.
 *
 * Submits that wake nobody. The same holds for a submit: while a watchman
 * is on duty and some worker is busy (pool->watching), a submit through
 * the inbox leaves its job there for the busy workers, who drain the inbox
 * when their queue runs dry, and wakes nobody, even with workers parked.
 * Without it, in a burst, a worker that ran beside the loop went idle again
 * and again and the loop woke it every time: a system call and a
 * preemption of the loop thread each, a third of W1's futex calls
 * (bench/README.md, "W1 and W7"). A submit that does wake a parked worker
 * while another is busy asks for a watchman (watch_wanted). The watchman
 * drains the inbox at each look, counts what came in (pool->submitted) as
 * left to it, and stays on duty while jobs keep coming. The price: a job
 * submitted while every busy worker blocks waits up to WATCH_MAX_US for the
 * watchman's look instead of waking a parked worker at once.
 * Why no job waits for a blocked worker with another worker idle: the
 * watchman is idle, so every worker going idle, being woken or handed a job
 * updates watching under mu; it goes off when the watchman leaves the idle
 * list or stands down, or when no worker is busy, and whoever turns it off
 * looks at the inbox after (a worker going idle, its last look; the
 * watchman standing down, below; the watchman leaving the list runs a job
 * or looks itself, and is handed or kicked last of all idle workers,
 * pick_idle(), so none is left idle behind it). A submitter pushes before
 * it reads watching, sequentially consistent on both sides: it sees
 * watching off, or its job is seen.
 */
#define WATCH_BACKLOG 4u
#define WATCH_MIN_US 100u
#define WATCH_MAX_US 1000u

/* With mu held, a worker taking a job, more jobs queued than workers on
 * their way, and a worker parked: 1 to leave them to the watchman. */
static int leave_to_watchman(struct evexec_pool *pool)
{
    if (pool->nqueued > WATCH_BACKLOG || !queue_startable(pool))
        return 0;
    if (!pool->watchman) {
        pool->watch_wanted = 1;
        return 0;
    }
    pool->unkicked++;
    return 1;
}

/* With mu held: jobs the workers have finished, all together. */
static uint64_t completed_jobs(const struct evexec_pool *pool)
{
    uint64_t n = 0;
    for (const struct worker *w = pool->all; w; w = w->all_next)
        n += atomic_load_explicit(&w->completed, memory_order_relaxed);
    return n;
}

/* With mu held: idle worker w becomes the watchman. */
static void watch_start(struct evexec_pool *pool, struct worker *w)
{
    pool->watchman = w;
    pool->watch_wanted = 0;
    pool->watch_us = WATCH_MIN_US;
    pool->seen_unkicked = pool->unkicked;
    pool->seen_submitted = pool->submitted;
    watch_sync(pool);
    pool->seen_completed = completed_jobs(pool);
    pool->seen_ns = evexec__now_ns();
}

/* With mu held, the watchman's sleep over: 1 if it takes a job (no longer
 * the watchman): jobs wait that the busy workers, at the pace they have
 * finished jobs since its last look, would not all have started within
 * WATCH_MIN_US. Else 0, to sleep again, as the watchman if a small
 * backlog was left to it, or jobs were submitted, meanwhile. Jobs a worker
 * took ahead and has not started since the last look go back to the queue
 * first ("Jobs taken ahead"). */
static int watch_look(struct evexec_pool *pool)
{
    evexec__inbox_drain(pool);
    if (pool->nheld)
        ahead_take_stale(pool);
    uint64_t now = evexec__now_ns(), done = completed_jobs(pool);
    uint64_t pace = done > pool->seen_completed
                        ? (now - pool->seen_ns) / (done - pool->seen_completed)
                        : UINT64_MAX;

    if (pool->nqueued && pace > WATCH_MIN_US * 1000u / pool->nqueued)
        return 1; /* leaving the idle list, it stops watching */
    if (pool->unkicked == pool->seen_unkicked && pool->submitted == pool->seen_submitted &&
        !pool->nqueued) {
        pool->watchman = NULL;
        watch_sync(pool); /* off: then a last look at the inbox */
        evexec__inbox_drain(pool);
        return queue_startable(pool);
    }
    pool->seen_unkicked = pool->unkicked;
    pool->seen_submitted = pool->submitted;
    pool->seen_completed = done;
    pool->seen_ns = now;
    pool->watch_us = pool->watch_us >= WATCH_MAX_US / 2 ? WATCH_MAX_US : pool->watch_us * 2;
    return 0;
}

/* With mu held, the watchman gone to take a job: a parked worker takes
 * over the watch at once (woken to sleep again with the watch's timeout),
 * so that submits go on waking nobody. */
static void watch_hand_over(struct evexec_pool *pool)
{
    struct worker *x = pool->idle;
    if (!x || x->searching || pool->watchman || pool->closed)
        return; /* none idle, or a searcher, who watches once it parks */
    watch_start(pool, x);
    evexec__worker_wake(x);
}

/* With mu held: waits idle for a job. Returns IDLE_GOT with mu dropped if a
 * submitter handed this worker a job while it searched (w->handoff);
 * otherwise with mu held: IDLE_LOOK to look at the pool again, IDLE_EXIT if
 * this surplus thread has been idle for the whole timeout. */
static int idle_wait(struct evexec_pool *pool, struct worker *w)
{
    struct timespec deadline;
    int timed = 0, timedout = 0;

    w->last_cpu = this_cpu();
    idle_push(pool, w);
    if (may_search(pool, w->last_cpu)) {
        w->searching = 1;
        pool->nsearching++;
        pthread_mutex_unlock(&pool->mu);
        if (search(w, pool->spin_us ? pool->spin_us : SEARCH_US) == 1)
            return IDLE_GOT; /* the submitter took us off the list and the count */
        pthread_mutex_lock(&pool->mu);
        if (!w->searching) /* handed a job between the last poll and the lock */
            return IDLE_LOOK;
        w->searching = 0;
        /* On duty before the search count drops: a submit in between would
         * see an idle worker, none looking or watching, and wake it. */
        if (pool->watch_wanted && !pool->watchman && !pool->closed)
            watch_start(pool, w);
        pool->nsearching--;
    } else if (pool->watch_wanted && !pool->watchman && !pool->closed) {
        watch_start(pool, w);
    }
    /* Counted idle (nidle) and no longer searching: a last look at the
     * inbox, which a submitter fills before it reads those counts, and at
     * the queue, where another worker may have moved the inbox meanwhile,
     * and at jobs other workers hold ahead. */
    if (inbox_full(pool) || queue_startable(pool) || evexec__ahead_return(pool)) {
        idle_remove(pool, w);
        return IDLE_LOOK;
    }
    while (w->idle && !pool->closed && !timedout && pool->nthreads <= pool->max_threads) {
        /* Surplus now (evexec_pool_resize() may have lowered min_threads
         * while we slept): the idle timeout starts. */
        if (!timed && pool->idle_ms != EVEXEC_IDLE_FOREVER && pool->nthreads > pool->min_threads) {
            timed = 1;
            evexec__deadline_after(&deadline, pool->idle_ms);
        }
        const struct timespec *until = timed ? &deadline : NULL;
        struct timespec look;
        if (pool->watchman == w) {
            evexec__deadline_after_us(&look, pool->watch_us);
            if (!until || evexec__timespec_before(&look, until))
                until = &look;
        }
        w->parked = 1;
        timedout = park(pool, w, until);
        w->parked = 0;
        if (timedout && until == &look) {
            timedout = 0;
            if (w->idle && pool->watchman == w && watch_look(pool)) {
                idle_remove(pool, w);
                watch_hand_over(pool);
                break;
            }
        }
    }
    if (w->inflight) { /* back under mu: whoever wakes next needs no help */
        w->inflight = 0;
        pool->nsearching--;
    }
    if (w->idle)
        idle_remove(pool, w);
    else
        timedout = 0; /* taken off the list: handed a job, or kicked to look */
    if (has_handoff(w) || pool->closed || !timedout || pool->nthreads <= pool->min_threads)
        return IDLE_LOOK;
    /* A surplus thread leaves if nothing waits. GATE_GROW goes up first: a
     * submit admitted after that goes under mu and starts a thread. */
    atomic_fetch_or(&pool->gate, GATE_GROW);
    if (!gate_count(pool))
        return IDLE_EXIT;
    evexec__gate_sync(pool); /* staying after all */
    return IDLE_LOOK;
}

/* With mu held: the worker's next job, or NULL. Jobs other workers took
 * ahead come back to the queue first if they have waited too long, or if
 * the queue is empty ("Jobs taken ahead"). */
static struct evexec_job *next_job(struct evexec_pool *pool, struct worker *w)
{
    struct evexec_job *job = atomic_load_explicit(&w->handoff, memory_order_relaxed);
    if (job) { /* set under mu */
        atomic_store_explicit(&w->handoff, NULL, memory_order_relaxed);
    } else {
        if (EVEXEC_UNLIKELY(pool->nheld))
            ahead_take_stale(pool);
        job = queue_pop(pool);
        if (!job && EVEXEC_UNLIKELY(pool->nheld) && evexec__ahead_return(pool))
            job = queue_pop(pool);
        if (job) {
            if (EVEXEC_UNLIKELY(pool->slow & SLOW_LIMITED)) {
                pool->running_c[job_class(job)]++;
                w->counted = job_class(job) + 1;
            }
            evexec__job_set_state(job, JOB_RUNNING);
            atomic_store_explicit(&w->running, job_class(job) + 1, memory_order_relaxed);
        }
    }
    w->current = job;
    return job;
}

/*
 * Giving way. Workers that keep every CPU busy hold a CPU for a whole
 * time slice (about a millisecond under Linux's EEVDF) whatever wakes up
 * beside them: a loop thread whose timer fires, whose socket turns
 * readable, waits that long unless the scheduler lets it preempt, and it
 * does not when the loop has used its share recently or the worker's
 * slice is protected. Nice values would let the loop in, but cost the
 * workers their share against every other thread. So instead a worker
 * that has run GIVE_WAY_NS since it last ran out of work calls
 * sched_yield() between two jobs: the scheduler picks again, and a waiting
 * thread with an earlier deadline (the loop, which mostly sleeps) runs
 * first. The worker keeps its weight, and with nothing else runnable the
 * call returns at once.
 *
 * The clock is read once every way_every jobs, which adapts so that reads
 * come about every GIVE_WAY_NS / 4 to GIVE_WAY_NS of running: one per job
 * for jobs of tens of microseconds, one per WAY_EVERY_MAX for jobs of
 * nanoseconds. Running out of work starts the count again, so a worker
 * that runs fewer than way_every jobs between two such times never reads
 * it. EVEXEC_POOL_NO_YIELD turns it off (way_left never runs out in
 * practice: it counts down from UINT_MAX and starts again).
 */
#define GIVE_WAY_NS 25000u
#define WAY_EVERY_START 8u
#define WAY_EVERY_MAX 256u

static void give_way_check(struct worker *w)
{
    if (!w->pool->give_way) {
        w->way_left = UINT_MAX;
        return;
    }
    uint64_t now = evexec__now_ns();
    if (w->way_since) { /* else the first read since it ran out of work */
        uint64_t dt = now - w->way_checked;
        if (dt < GIVE_WAY_NS / 4 && w->way_every < WAY_EVERY_MAX)
            w->way_every *= 2;
        else if (dt > GIVE_WAY_NS && w->way_every > 1)
            w->way_every /= 2;
        if (now - w->way_since >= GIVE_WAY_NS) {
            sched_yield();
            now = evexec__now_ns(); /* the time given away starts no stretch */
            w->way_since = now;
        }
    } else {
        w->way_since = now;
        if (w->way_every < WAY_EVERY_START) /* long jobs are over, maybe */
            w->way_every *= 2;
    }
    w->way_checked = now;
    w->way_left = w->way_every;
}

/* Before each job: see "Giving way". */
static inline void give_way(struct worker *w)
{
    if (EVEXEC_UNLIKELY(--w->way_left == 0))
        give_way_check(w);
}

/* One more job run, counted by the worker that ran it (its own line). */
static inline void count_completed(struct worker *w)
{
    atomic_store_explicit(&w->completed,
                          atomic_load_explicit(&w->completed, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Runs a job's work function, timing it for the histograms if asked. */
static inline void run_job(int hist, struct worker *w, struct evexec_job *job)
{
    if (EVEXEC_LIKELY(!hist)) {
        job->u.result = job->work(job, job->arg);
        return;
    }
    uint64_t t0 = evexec__now_ns();
    hist_add(w->hist_wait, t0 - job_ext(job)->enqueued);
    job->u.result = job->work(job, job->arg);
    hist_add(w->hist_run, evexec__now_ns() - t0);
}

/* With mu held: a thread is leaving (its exit is decided and counted in
 * nthreads by the caller). If it was the last, queued jobs could never
 * run: they are taken off as cancelled, for the caller to complete. */
static struct evexec_job *last_thread_gone(struct evexec_pool *pool)
{
    if (pool->nthreads)
        return NULL;
    evexec__inbox_drain(pool); /* after GATE_GROW: see "The inbox", pool.c */
    if (!pool->nqueued)
        return NULL;
    return evexec__pool_cancel_queue(pool);
}


/* With mu held: hands queued jobs that may start to idle workers. */
void evexec__worker_dispatch_idle(struct evexec_pool *pool)
{
    struct evexec_job *job;
    struct worker *w;
    while (pool->idle && (job = queue_pop(pool)) != NULL)
        if ((w = evexec__worker_hand_off(pool, job, this_cpu())) != NULL)
            evexec__worker_unpark(w);
}

/*
 * Who wakes whom. A wake-up costs its caller a syscall (about 1 us on some
 * VMs) and the woken thread tens of microseconds before it runs on another
 * CPU; the loop thread, which must never stall, used to pay one for nearly
 * every job of a burst, as the woken workers emptied the queue and parked
 * again before the next submit. Like Go's scheduler (one spinning thread,
 * and a thread that stops spinning because it found work wakes the next)
 * and Tokio's (wake a parked worker only when none is searching), evexec
 * keeps the count of workers already looking for work, pool->nsearching:
 *
 * - searching: an idle worker that found nothing polls its own handoff
 *   word for SEARCH_US (or spin_us if set) before it parks. At most one
 *   searches, none on the CPU the submits come from (it would only delay
 *   them: every thread pinned to one CPU), and it stays at the head of the
 *   idle list, where a submitter finds it.
 * - in flight: a parked worker that someone woke, until it is back under
 *   mu. Whoever wakes it takes it off the idle list and counts it.
 *
 * A submit through the inbox (pool.c, "The inbox") takes no lock while a
 * worker searches or is in flight, or none is idle, or a watchman is on
 * duty while a worker is busy ("Submits that wake nobody"): the searcher
 * polls the inbox too, the others look at it before they go idle, the
 * watchman at each look. Otherwise -- idle workers, none looking or
 * watching -- it continues under mu as a locked submit,
 * which (mu held) does exactly one of these:
 *   1. a worker searches: hand it the job (no syscall; the searcher takes
 *      it without the lock and stops searching);
 *   2. none searches, none is in flight, workers are parked: hand the job
 *      to one (preferring one that last ran on this CPU) and wake it, now
 *      in flight -- the only wake-up a loop thread makes;
 *   3. otherwise queue it: a worker in flight or busy takes it (the queue
 *      at its bound with workers idle: 2., so a full queue never refuses
 *      a job an idle worker could take).
 *   In 1. and 2., if jobs are queued already (a few left to the watchman,
 *   or just moved from the inbox), the new job is queued behind them and
 *   the worker is handed the queue's next: no job overtakes an older one
 *   of its priority.
 * A worker that takes a job (mu held) and sees more jobs queued than
 *   workers in flight, and workers parked, wakes one or two (after
 *   unlocking), which do the same in turn: a backlog wakes n workers in
 *   about log2(n) steps, every wake-up made by a worker, none by the loop.
 *   A searcher is handed a queued job first (it polls its hand-off word,
 *   not the queue). A backlog of a few jobs is left to the watchman
 *   instead of woken workers, if there is one ("Small backlogs and the
 *   watchman").
 *
 * Why no wake-up is lost: a job is queued only (a) when no worker is idle,
 * and every busy worker looks at the queue under mu before it goes idle;
 * or (b) when a worker is in flight: it looks at the queue under mu before
 * it could go idle, and the last one back (nsearching then 0) wakes more
 * if jobs remain after its own. A searcher is never
 * passed over: while it searches it is the head of the idle list and case
 * 1 applies, and jobs that class limits hold back are handed to idle
 * workers by the worker whose job frees the limit, as before. The searcher
 * stops under mu: a hand-off that lands between its last poll and the lock
 * has already taken it off the list and the count, and it finds the job;
 * and it looks at the queue before it parks, where a busy worker may have
 * moved the inbox while it searched (jobs that would otherwise have waited
 * for that worker's job, however long).
 * A parked worker sleeps only while its word is 0 and whoever wakes it sets
 * the word before the syscall, so a wake-up between its unlock and its
 * futex wait is not lost (the condition variable build waits with mu held).
 *
 * Lock order: mu only; the futex wake and the cond signal happen after mu
 * is dropped (worker structs outlive every submitter). Without mu: a
 * worker's hand-off word, written under mu with release order and read by
 * its searching owner with acquire order; and the inbox, the gate, nidle
 * and nsearching (pool.c, "The inbox").
 *
 * With EVEXEC_POOL_SCHED_BATCH, a worker that wakes up does not preempt
 * the thread running on its CPU, often the loop thread (the scheduler tends
 * to wake a thread on its waker's CPU), so a burst's submits run on; woken,
 * it stays in flight until that CPU is free or the tick, and meanwhile the
 * searcher or a busy worker takes what is queued. Not the default: every
 * wake-up from a blocking call would then wait for a busy CPU's tick.
 */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct evexec_pool *pool = w->pool;
    struct evexec_job *job, *finished = NULL, *stranded = NULL;
    int init_ok = 1, hist = pool->hist; /* never changes */

    current_worker = w;
    name_thread(w);
#if defined(__linux__) && defined(SCHED_BATCH)
    /* EVEXEC_POOL_SCHED_BATCH: same CPU share, but no preempting the loop
     * thread when a worker wakes (see "Who wakes whom"); a failure leaves
     * the policy as it was. */
    if (pool->sched_batch) {
        struct sched_param sp = {0};
        pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    }
#endif
#ifdef __linux__
    /* Linux's nice value is per thread: only the workers are niced. */
    if (pool->nice) {
        id_t tid = (id_t)syscall(SYS_gettid);
        int base = getpriority(PRIO_PROCESS, tid);
        int want = base + (int)pool->nice;
        setpriority(PRIO_PROCESS, tid, want > 19 ? 19 : want);
    }
#endif
    w->state = NULL;
    if (pool->worker_init && pool->worker_init(pool->worker_arg, &w->state) != 0)
        init_ok = 0;
    pthread_mutex_lock(&pool->mu);
    pool->nstarting--;
    if (EVEXEC_UNLIKELY(!init_ok)) {
        pool->init_failed++;
        goto out;
    }
    for (;;) {
        struct worker *kick[2];
        unsigned nkick = 0;
        job = next_job(pool, w);
        if (!job) {
            /* Out of work: its stretch of running ends ("Giving way"). */
            w->way_since = 0;
            w->way_left = w->way_every;
            if (finished) {
                pthread_mutex_unlock(&pool->mu);
                evexec__job_complete(finished);
                finished = NULL;
                pthread_mutex_lock(&pool->mu);
                continue; /* look again: work may have come meanwhile */
            }
            /* Shut down, and nothing may start: what is still queued is
             * held back by its class limit, and the workers running that
             * class take it when they finish. Or a surplus thread after
             * evexec_pool_resize(). */
            if (EVEXEC_UNLIKELY(pool->closed) && gate_count(pool) > pool->nqueued) {
                /* A job admitted before the shutdown is on its way to the
                 * inbox (its submitter is between two instructions). */
                pthread_mutex_unlock(&pool->mu);
                sched_yield();
                pthread_mutex_lock(&pool->mu);
                continue;
            }
            if (pool->closed || pool->nthreads > pool->max_threads)
                break;
            int r = idle_wait(pool, w);
            if (r == IDLE_EXIT)
                break;
            if (r == IDLE_LOOK)
                continue;
            /* IDLE_GOT: handed a job while searching, mu not held. */
            job = atomic_load_explicit(&w->handoff, memory_order_relaxed);
            atomic_store_explicit(&w->handoff, NULL, memory_order_relaxed);
        } else {
            /* More work waits than workers on their way to it, and parked
             * workers could take it: wake one or two, who do the same in
             * turn, so a backlog wakes n workers in log2(n) steps. Jobs
             * pushed without mu count too, once on the queue. */
            if (EVEXEC_UNLIKELY(pool->idle != NULL) && !pool->idle->searching && inbox_full(pool))
                evexec__inbox_drain(pool);
            if (EVEXEC_UNLIKELY(pool->nqueued > pool->nsearching) && pool->idle) {
                /* A searcher polls its hand-off word and the inbox, not
                 * the queue: it is handed a job first. */
                struct evexec_job *next;
                if (pool->idle->searching && (next = queue_pop(pool)) != NULL)
                    evexec__worker_hand_off(pool, next, this_cpu());
                if (pool->nqueued > pool->nsearching && pool->idle && !pool->idle->searching &&
                    !leave_to_watchman(pool))
                    while (pool->nqueued > pool->nsearching && nkick < 2 && pool->idle &&
                           !pool->idle->searching)
                        kick[nkick++] = evexec__worker_kick(pool, this_cpu());
            }
            if (EVEXEC_UNLIKELY(ahead_wanted(pool)))
                ahead_fill(pool, w);
            pthread_mutex_unlock(&pool->mu);
            for (unsigned i = 0; i < nkick; i++)
                evexec__worker_unpark(kick[i]);
        }

        if (finished)
            evexec__job_complete(finished);
        give_way(w);
        run_job(hist, w, job);
        /* Then the jobs it took ahead, each one home once it has the next. */
        for (struct evexec_job *next; (next = ahead_claim(w)) != NULL;) {
            count_completed(w);
            evexec__job_complete(job);
            job = next;
            give_way(w);
            run_job(hist, w, job);
        }
        finished = job;
        count_completed(w);

        pthread_mutex_lock(&pool->mu);
        w->current = NULL;
        atomic_store_explicit(&w->running, 0, memory_order_relaxed);
        if (EVEXEC_UNLIKELY(w->held))
            ahead_settled(pool, w, w->held); /* its slots are empty */
        w->ahead_n = 0;
        if (EVEXEC_UNLIKELY(pool->slow & (SLOW_LIMITED | SLOW_SHRINK))) {
            /* A limited class has room again: if this worker takes a job
             * of another class next, idle ones must take what may start. */
            if (pool->slow & SLOW_LIMITED) {
                if (w->counted) {
                    pool->running_c[w->counted - 1]--;
                    w->counted = 0;
                }
                if (pool->class_max[job_class(job)] != UINT_MAX && pool->idle)
                    evexec__worker_dispatch_idle(pool);
            }
            /* evexec_pool_resize() shrank the pool: leave after this job. */
            if ((pool->slow & SLOW_SHRINK) && pool->nthreads > pool->max_threads) {
                pthread_mutex_unlock(&pool->mu);
                evexec__job_complete(finished);
                finished = NULL;
                pthread_mutex_lock(&pool->mu);
                if (pool->nthreads > pool->max_threads)
                    break;
            }
        }
    }

out:;
    /* Exit: leave the count, then join the zombie (the last thread that
     * exited) if there is one, and become the zombie. Joining first keeps
     * threads that exit faster than their predecessors finish from piling
     * up in a chain of joins, each a live thread (valgrind allows 500);
     * nexiting keeps evexec_pool_free() waiting meanwhile. The worker
     * struct may be reused by a new thread once it is not alive and mu is
     * dropped: keep what worker_fini needs. */
    void *state = w->state;
    w->alive = 0;
    pool->nthreads--;
    if (pool->nthreads <= pool->max_threads)
        pool->slow &= ~SLOW_SHRINK;
    evexec__gate_sync(pool);
    stranded = last_thread_gone(pool);
    pool->nexiting++;
    while (pool->has_zombie) {
        pthread_t prev = pool->zombie;
        pool->has_zombie = 0;
        pthread_mutex_unlock(&pool->mu);
        pthread_join(prev, NULL);
        pthread_mutex_lock(&pool->mu);
    }
    pool->zombie = pthread_self();
    pool->has_zombie = 1;
    if (--pool->nexiting == 0 && pool->nthreads == 0)
        pthread_cond_broadcast(&pool->exit_cv);
    pthread_mutex_unlock(&pool->mu);
    evexec__pool_complete_all(stranded);
    if (init_ok && pool->worker_fini)
        pool->worker_fini(state, pool->worker_arg);
    return NULL;
}

/* With mu held (dropped while the thread is created): starts a worker. */
int evexec__worker_spawn(struct evexec_pool *pool)
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
    atomic_store_explicit(&w->running, 0, memory_order_relaxed);
    w->ahead_n = w->ahead_next = w->held = 0; /* its slots are empty */
    w->counted = 0;
    w->parked = 0;
    w->searching = 0;
    w->inflight = 0;
    w->way_since = 0;
    w->way_every = w->way_left = pool->give_way ? WAY_EVERY_START : UINT_MAX;
    w->number = ++pool->next_number;
    pool->nthreads++;
    pool->nstarting++;
    evexec__gate_sync(pool);
    pthread_mutex_unlock(&pool->mu);

    /* No signal can reach the thread, even before its first instruction. */
    rc = evexec__thread_create(&tid, &pool->attr, worker_main, w);

    pthread_mutex_lock(&pool->mu);
    if (rc < 0) {
        w->alive = 0;
        pool->nstarting--;
        if (--pool->nthreads == 0)
            pthread_cond_broadcast(&pool->exit_cv);
        evexec__gate_sync(pool);
        return rc;
    }
    pool->threads_started++;
    return 0;
}

void evexec__worker_wake(struct worker *w)
{
    if (w->parked) {
        unpark_mark(w);
        evexec__worker_unpark(w);
    }
}

struct evexec_pool *evexec__pool_current(void)
{
    return current_worker ? current_worker->pool : NULL;
}

void *evexec_worker_state(const evexec_job *job)
{
    struct worker *w = current_worker;
    if (!job || !w || w->current != job)
        return NULL;
    return w->state;
}
