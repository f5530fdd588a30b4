/* SPDX-License-Identifier: MIT */
/*
 * Stress tests.
 *
 * test_million: four loop threads (each with its own event_base and port)
 * share two small pools and push at least a million short jobs through them,
 * keeping a window of jobs in flight, cancelling some at random, and racing
 * a final shutdown of both pools (random modes; from the main thread or from
 * the loop that reaches the target) with their submissions. Every submission
 * has a record; at the end each accepted one must have had exactly one
 * callback, on its own loop thread, with a status that can be explained, and
 * the totals must match the pools' and ports' counters.
 *
 * test_cancel_shutdown_race: 20 single-threaded rounds of submit / cancel /
 * shutdown (random mode, random point) / free, checking exactly-once.
 *
 * test_inbox_threads_come_and_go: four foreign threads make bursts of pool
 * calls, which go through the pool's inbox without its lock, to a pool
 * whose threads time out after 1 ms idle and exit, so that pushes race with
 * workers parking, searching and leaving; a call that never completes (a
 * job stranded in the inbox) fails the test.
 *
 * test_bound_is_exact_under_racing_submitters: with every worker busy, four
 * threads race to fill a queue of max_queued from both paths (pool calls
 * without the lock, a port's prioritised submits under it): exactly
 * max_queued are accepted, every round.
 *
 * The seed is printed; EVEXEC_STRESS_SEED=<n> replays it (as far as thread
 * scheduling allows) and EVEXEC_STRESS_JOBS=<n> changes the job count.
 */
#include "config.h"

#include "helpers.h"

#include <errno.h>
#include <sched.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* --- common -------------------------------------------------------------- */

#define ID_SENTINEL UINT64_C(0xfeedfacecafebeef)

static uint64_t stress_jobs(void)
{
    const char *s = getenv("EVEXEC_STRESS_JOBS");
    if (s && *s) {
        unsigned long long v = strtoull(s, NULL, 0);
        if (v >= 16)
            return v;
    }
    return 1000000;
}

static void spin_ns(uint64_t ns)
{
    uint64_t end = now_ns() + ns;
    while (now_ns() < end)
        ;
}

/* Polls the stop flag for up to ns; 1 if it was seen. */
static int poll_stop(const evexec_job *job, uint64_t ns)
{
    uint64_t end = now_ns() + ns;
    do {
        if (evexec_job_cancelled(job))
            return 1;
    } while (now_ns() < end);
    return 0;
}

enum { K_NOOP, K_SPIN, K_POLL };

/* Record flags (loop thread only). */
#define R_ACCEPTED 0x01
#define R_REJECTED 0x02
#define R_CANCEL_OK 0x04      /* an evexec_cancel() returned 0 */
#define R_CANCEL_BUSY 0x08    /* ... returned -EBUSY */
#define R_CANCEL_ALREADY 0x10 /* ... returned -EALREADY */

/* ========================================================================= */
/* test_million                                                              */
/* ========================================================================= */

#define NLOOPS 4
#define NPOOLS 2
#define WINDOW_MAX 96
#define NSTALE 16
#define WATCHDOG_NS (UINT64_C(60) * 1000000000u)

/* One submission attempt. Loop-thread fields and the worker's saw_stop are
 * distinct bytes, so they never race. */
struct rec {
    int32_t wpos;     /* index in the loop's window while in flight, else -1 */
    int16_t status;   /* status of the (first) callback */
    uint8_t tid;      /* the loop that submitted it */
    uint8_t pool;     /* 0 or 1 */
    uint8_t kind;     /* K_* (read by the worker) */
    uint8_t len_us;   /* spin / poll length (read by the worker) */
    uint8_t flags;    /* R_* */
    uint8_t calls;    /* done callbacks seen */
    uint8_t saw_stop; /* written by the worker: it saw the stop flag */
};

struct win_ent {
    uint32_t rec;
    evexec_job_id id;
};

struct loop {
    int tid;
    pthread_t self;
    unsigned rng;
    unsigned max_batch;
    struct event_base *base;
    evexec_port *port;
    struct event *tick;

    struct rec *recs;
    uint32_t nrecs, cap;

    struct win_ent win[WINDOW_MAX];
    unsigned nwin, winmax;
    evexec_job_id stale[NSTALE];
    unsigned nstale;

    int seen_shut[NPOOLS];
    int submitting, finished;
    uint64_t last_cb, last_progress;

    uint64_t accepted, rej_again, rej_shutdown;
    uint64_t callbacks, cb_ok, cb_cancelled;
    uint64_t cancel_ok, cancel_busy, cancel_already, cancel_noent;
    uint64_t port_delivered, port_wakeups, port_batches;
    uint64_t errors;
    char first_error[256];
};

struct stress {
    evexec_pool *pool[NPOOLS];
    uint64_t target;
    _Atomic uint64_t accepted_total;
    _Atomic unsigned wrong_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int trigger; /* time to shut the pools down (main's job) */
    int stopped; /* loops no longer submitting */
    int shutdown_by_loop; /* the loop reaching the target shuts down */
    int shutdown_done;
    int mode[NPOOLS];     /* 0 DRAIN, 1 CANCEL, 2 DRAIN then CANCEL */
    uint64_t at_shutdown; /* accepted_total then */
    int shutdown_errors;
    char shutdown_error[256];
    struct loop loops[NLOOPS];
};

static struct stress S;
static struct rec dummy_rec;

__attribute__((format(printf, 2, 3))) static void loop_error(struct loop *l, const char *fmt, ...)
{
    if (l->errors++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->first_error, sizeof l->first_error, fmt, ap);
        va_end(ap);
    }
}

static void signal_trigger(void)
{
    pthread_mutex_lock(&S.mu);
    S.trigger = 1;
    pthread_cond_signal(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

static void shutdown_check(evexec_pool *pool, int p, int how, int expect)
{
    int rc = evexec_pool_shutdown(pool, how);
    if (rc != expect && S.shutdown_errors++ == 0)
        snprintf(S.shutdown_error, sizeof S.shutdown_error, "pool %d: shutdown(%s) = %s, not %s",
                 p, how == EVEXEC_DRAIN ? "DRAIN" : "CANCEL", evexec_errname(rc),
                 evexec_errname(expect));
}

/* Shuts both pools down, in random order and modes, while the loops run.
 * Any thread. */
static void shutdown_pools(unsigned *rng)
{
    int first = (int)rnd(rng, 2);
    S.at_shutdown = atomic_load(&S.accepted_total);
    for (int i = 0; i < NPOOLS; i++) {
        int p = first ^ i;
        evexec_pool *pool = S.pool[p];
        S.mode[p] = (int)rnd(rng, 3);
        switch (S.mode[p]) {
        case 0:
            shutdown_check(pool, p, EVEXEC_DRAIN, 0);
            shutdown_check(pool, p, EVEXEC_DRAIN, -EALREADY);
            break;
        case 1:
            shutdown_check(pool, p, EVEXEC_CANCEL, 0);
            shutdown_check(pool, p, EVEXEC_DRAIN, -EALREADY);
            shutdown_check(pool, p, EVEXEC_CANCEL, -EALREADY);
            break;
        default:
            shutdown_check(pool, p, EVEXEC_DRAIN, 0);
            shutdown_check(pool, p, EVEXEC_CANCEL, 0);
            shutdown_check(pool, p, EVEXEC_CANCEL, -EALREADY);
            break;
        }
    }
    S.shutdown_done = 1;
}

static void stop_submitting(struct loop *l)
{
    if (!l->submitting)
        return;
    l->submitting = 0;
    pthread_mutex_lock(&S.mu);
    if (++S.stopped == NLOOPS) {
        S.trigger = 1;
        pthread_cond_signal(&S.cv);
    }
    pthread_mutex_unlock(&S.mu);
}

static void *stress_work(evexec_job *job, void *arg)
{
    struct rec *r = arg;
    switch (r->kind) {
    case K_SPIN:
        spin_ns((uint64_t)r->len_us * 1000);
        break;
    case K_POLL:
        if (poll_stop(job, (uint64_t)r->len_us * 1000))
            r->saw_stop = 1;
        break;
    default:
        break;
    }
    return r;
}

static void stress_done(int status, void *result, void *arg);

/* One submission attempt: 1 if accepted. */
static int try_submit(struct loop *l)
{
    if (!l->submitting || l->nwin >= l->winmax)
        return 0;
    if (l->nrecs == l->cap || (l->seen_shut[0] && l->seen_shut[1])) {
        stop_submitting(l);
        return 0;
    }
    int p = l->seen_shut[0] ? 1 : l->seen_shut[1] ? 0 : (int)rnd(&l->rng, NPOOLS);
    uint32_t idx = l->nrecs++;
    struct rec *r = &l->recs[idx];
    unsigned k = rnd(&l->rng, 100);
    r->tid = (uint8_t)l->tid;
    r->pool = (uint8_t)p;
    r->wpos = -1;
    if (k < 80) {
        r->kind = K_NOOP;
    } else if (k < 92) {
        r->kind = K_SPIN;
        r->len_us = (uint8_t)(1 + rnd(&l->rng, 5));
    } else {
        r->kind = K_POLL;
        r->len_us = (uint8_t)(2 + rnd(&l->rng, 19));
    }

    evexec_job_id id = ID_SENTINEL;
    int rc = evexec_submit(l->port, S.pool[p], stress_work, stress_done, r, &id);
    if (rc == 0) {
        r->flags |= R_ACCEPTED;
        if (id == ID_SENTINEL || id == 0)
            loop_error(l, "submit returned 0 but id %#" PRIx64, id);
        r->wpos = (int32_t)l->nwin;
        l->win[l->nwin].rec = idx;
        l->win[l->nwin].id = id;
        l->nwin++;
        l->accepted++;
        if (atomic_fetch_add_explicit(&S.accepted_total, 1, memory_order_relaxed) + 1 ==
            S.target) {
            if (S.shutdown_by_loop)
                shutdown_pools(&l->rng); /* in the middle of a refill, maybe */
            else
                signal_trigger();
        }
        return 1;
    }
    r->flags |= R_REJECTED;
    if (id != ID_SENTINEL)
        loop_error(l, "failed submit (%s) wrote the id", evexec_errname(rc));
    if (rc == -EAGAIN) {
        l->rej_again++;
    } else if (rc == -ESHUTDOWN) {
        l->rej_shutdown++;
        l->seen_shut[p] = 1;
    } else {
        loop_error(l, "submit: unexpected %s", evexec_errname(rc));
    }
    return 0;
}

static void refill(struct loop *l)
{
    while (l->submitting && l->nwin < l->winmax)
        if (!try_submit(l))
            break; /* queue full or shut down: the tick retries */
}

/* Cancels a random job of the window (not yet delivered). */
static void cancel_random(struct loop *l)
{
    if (!l->nwin)
        return;
    struct win_ent *e = &l->win[rnd(&l->rng, l->nwin)];
    struct rec *r = &l->recs[e->rec];
    int rc = evexec_cancel(l->port, e->id);
    switch (rc) {
    case 0:
        if (r->flags & (R_CANCEL_OK | R_CANCEL_BUSY | R_CANCEL_ALREADY))
            loop_error(l, "loop %d job %u: cancel returned 0 after an earlier cancel (flags %#x)",
                       l->tid, e->rec, r->flags);
        r->flags |= R_CANCEL_OK;
        l->cancel_ok++;
        break;
    case -EBUSY:
        if (r->flags & (R_CANCEL_OK | R_CANCEL_ALREADY))
            loop_error(l, "loop %d job %u: -EBUSY after it was cancelled (flags %#x)", l->tid,
                       e->rec, r->flags);
        r->flags |= R_CANCEL_BUSY;
        l->cancel_busy++;
        break;
    case -EALREADY:
        r->flags |= R_CANCEL_ALREADY;
        l->cancel_already++;
        break;
    case -ENOENT:
        l->cancel_noent++;
        loop_error(l, "loop %d job %u: -ENOENT for a job not yet delivered", l->tid, e->rec);
        break;
    default:
        loop_error(l, "cancel: unexpected %s", evexec_errname(rc));
    }
}

/* Cancels an id whose job was delivered (or id 0): must be -ENOENT. */
static void cancel_stale(struct loop *l)
{
    unsigned n = l->nstale < NSTALE ? l->nstale : NSTALE;
    evexec_job_id id = n ? l->stale[rnd(&l->rng, n)] : 0;
    int rc = evexec_cancel(l->port, id);
    if (rc != -ENOENT)
        loop_error(l, "cancel of stale id %#" PRIx64 ": %s", id, evexec_errname(rc));
    l->cancel_noent++;
}

/* Frees the port once nothing is left to submit or to receive. */
static void maybe_finish(struct loop *l, int from_done)
{
    if (l->finished || l->submitting || l->callbacks != l->accepted)
        return;
    struct evexec_port_stats ps;
    memset(&ps, 0, sizeof ps);
    ps.size = sizeof ps;
    int rc = evexec_port_stats(l->port, &ps);
    if (rc != 0)
        loop_error(l, "port_stats: %s", evexec_errname(rc));
    else if (ps.outstanding != 0 || ps.delivered != l->callbacks)
        loop_error(l, "loop %d: port says outstanding %zu delivered %" PRIu64 ", we saw %" PRIu64,
                   l->tid, ps.outstanding, ps.delivered, l->callbacks);
    l->port_delivered = ps.delivered;
    l->port_wakeups = ps.wakeups;
    l->port_batches = ps.batches;
    if ((rc = evexec_port_free(l->port)) != 0)
        loop_error(l, "port_free: %s", evexec_errname(rc));
    if (from_done) {
        /* Allowed from a callback the freed port delivers: -ESHUTDOWN. */
        evexec_job_id id = ID_SENTINEL;
        rc = evexec_submit(l->port, S.pool[0], stress_work, stress_done, &dummy_rec, &id);
        if (rc != -ESHUTDOWN || id != ID_SENTINEL)
            loop_error(l, "submit through a freed port: %s", evexec_errname(rc));
    }
    l->port = NULL;
    event_del(l->tick);
    l->finished = 1;
}

static void stress_done(int status, void *result, void *arg)
{
    struct rec *r = arg;
    struct loop *l = &S.loops[r->tid];

    if (!pthread_equal(pthread_self(), l->self)) {
        /* Touching l here would race with its thread: just count. */
        atomic_fetch_add(&S.wrong_thread, 1);
        return;
    }
    if (r == &dummy_rec) {
        loop_error(l, "callback for a submit that returned -ESHUTDOWN");
        return;
    }
    uint32_t idx = (uint32_t)(r - l->recs);
    if (++r->calls != 1) {
        loop_error(l, "loop %d job %u: callback number %u (status %d)", l->tid, idx, r->calls,
                   status);
        return;
    }
    r->status = (int16_t)status;
    if (!(r->flags & R_ACCEPTED))
        loop_error(l, "loop %d job %u: callback for a rejected submit", l->tid, idx);
    l->callbacks++;
    if (status == 0) {
        l->cb_ok++;
        if (result != r)
            loop_error(l, "loop %d job %u: result %p, expected %p", l->tid, idx, result, arg);
    } else if (status == -ECANCELED) {
        l->cb_cancelled++;
        if (result != NULL)
            loop_error(l, "loop %d job %u: cancelled with result %p", l->tid, idx, result);
    } else {
        loop_error(l, "loop %d job %u: status %d", l->tid, idx, status);
    }

    /* Out of the window; its id becomes stale. */
    if (r->wpos < 0 || (unsigned)r->wpos >= l->nwin || l->win[r->wpos].rec != idx) {
        loop_error(l, "loop %d job %u: not in the window (wpos %d)", l->tid, idx, r->wpos);
    } else {
        unsigned pos = (unsigned)r->wpos, last = --l->nwin;
        l->stale[l->nstale++ % NSTALE] = l->win[pos].id;
        if (pos != last) {
            l->win[pos] = l->win[last];
            l->recs[l->win[pos].rec].wpos = (int32_t)pos;
        }
        r->wpos = -1;
    }

    unsigned k = rnd(&l->rng, 64);
    if (k < 4)
        cancel_random(l);
    else if (k == 4)
        cancel_stale(l);
    k = rnd(&l->rng, 8);
    for (unsigned n = k == 0 ? 0 : k < 7 ? 1 : 2; n > 0; n--)
        try_submit(l);
    maybe_finish(l, 1);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct loop *l = arg;
    (void)fd;
    (void)what;
    if (l->finished)
        return;
    for (unsigned n = rnd(&l->rng, 4); n > 0; n--)
        cancel_random(l);
    refill(l);
    maybe_finish(l, 0);
    if (l->finished)
        return;

    uint64_t now = now_ns();
    if (l->callbacks != l->last_cb) {
        l->last_cb = l->callbacks;
        l->last_progress = now;
    } else if (l->callbacks != l->accepted && now - l->last_progress > WATCHDOG_NS) {
        fprintf(stderr,
                "check_stress: loop %d stalled: accepted %" PRIu64 ", callbacks %" PRIu64
                ", window %u, submitting %d\n",
                l->tid, l->accepted, l->callbacks, l->nwin, l->submitting);
        for (int p = 0; p < NPOOLS; p++) {
            struct evexec_pool_stats s;
            memset(&s, 0, sizeof s);
            s.size = sizeof s;
            evexec_pool_stats(S.pool[p], &s);
            fprintf(stderr,
                    "  pool %d: threads %u idle %u running %u queued %zu submitted %" PRIu64
                    " completed %" PRIu64 " cancelled %" PRIu64 "\n",
                    p, s.threads, s.idle, s.running, s.queued, s.submitted, s.completed,
                    s.cancelled);
        }
        abort();
    }
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    struct evexec_port_opts po = EVEXEC_PORT_OPTS_INIT;
    struct timeval period = {0, 1000};
    int rc;

    l->self = pthread_self();
    if (!(l->base = event_base_new())) {
        loop_error(l, "event_base_new failed");
        stop_submitting(l);
        return NULL;
    }
    po.max_batch = l->max_batch;
    if ((rc = evexec_port_new(&l->port, l->base, &po)) != 0) {
        loop_error(l, "port_new: %s", evexec_errname(rc));
        stop_submitting(l);
        event_base_free(l->base);
        return NULL;
    }
    l->tick = event_new(l->base, -1, EV_PERSIST, on_tick, l);
    if (!l->tick || event_add(l->tick, &period) < 0)
        loop_error(l, "tick event");
    l->last_progress = now_ns();
    refill(l);
    rc = event_base_dispatch(l->base);
    if (rc < 0)
        loop_error(l, "event_base_dispatch: %d", rc);
    if (!l->finished)
        loop_error(l, "loop %d: dispatch returned before the end", l->tid);
    if (l->tick)
        event_free(l->tick);
    event_base_free(l->base);
    return NULL;
}

static const char *mode_name(int m)
{
    return m == 0 ? "DRAIN" : m == 1 ? "CANCEL" : "DRAIN+CANCEL";
}

START_TEST(test_million)
{
    unsigned seed = stress_seed(), rng = seed;
    uint64_t target = stress_jobs();
    printf("check_stress: million: seed=%u jobs=%" PRIu64
           " (replay: EVEXEC_STRESS_SEED=%u EVEXEC_STRESS_JOBS=%" PRIu64 ")\n",
           seed, target, seed, target);
    fflush(stdout);

    memset(&S, 0, sizeof S);
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.cv, NULL);
    S.target = target;
    S.shutdown_by_loop = (int)rnd(&rng, 2);

    struct evexec_pool_opts oa = EVEXEC_POOL_OPTS_INIT, ob = EVEXEC_POOL_OPTS_INIT;
    oa.max_threads = 3;
    oa.min_threads = 1;
    oa.max_queued = 128;
    oa.name = "stressA";
    ob.max_threads = 2;
    ob.max_queued = 32;
    ob.idle_timeout_ms = 1; /* workers come and go */
    ob.name = "stressB";
    ck_assert_int_eq(evexec_pool_new(&S.pool[0], &oa), 0);
    ck_assert_int_eq(evexec_pool_new(&S.pool[1], &ob), 0);

    /* Loops submit until both pools refuse with -ESHUTDOWN, which happens
     * once the target is reached, so the shutdown always races with all of
     * them. The records are bounded only as a safety net (one loop may do
     * most of the work): calloc'ed pages cost nothing until touched. */
    uint64_t cap = target + target / 4 + 4096;
    ck_assert_uint_lt(cap, UINT32_MAX);
    static const unsigned batches[] = {0, 1, 7, 64};
    for (int t = 0; t < NLOOPS; t++) {
        struct loop *l = &S.loops[t];
        l->tid = t;
        l->rng = seed ^ (0x9e3779b9u * (unsigned)(t + 1));
        l->cap = (uint32_t)cap;
        l->recs = calloc(l->cap, sizeof *l->recs);
        ck_assert_ptr_nonnull(l->recs);
        l->winmax = 16 + rnd(&rng, WINDOW_MAX - 15);
        l->max_batch = batches[rnd(&rng, 4)];
        l->submitting = 1;
    }

    uint64_t t0 = now_ns();
    pthread_t th[NLOOPS];
    for (int t = 0; t < NLOOPS; t++)
        ck_assert_int_eq(pthread_create(&th[t], NULL, loop_main, &S.loops[t]), 0);

    if (!S.shutdown_by_loop) {
        pthread_mutex_lock(&S.mu);
        while (!S.trigger)
            pthread_cond_wait(&S.cv, &S.mu);
        pthread_mutex_unlock(&S.mu);
        shutdown_pools(&rng);
    }

    for (int t = 0; t < NLOOPS; t++)
        ck_assert_int_eq(pthread_join(th[t], NULL), 0);
    double secs = (double)(now_ns() - t0) / 1e9;

    ck_assert_uint_eq(atomic_load(&S.wrong_thread), 0);
    ck_assert_msg(S.shutdown_done, "the pools were never shut down");
    ck_assert_msg(S.shutdown_errors == 0, "%s", S.shutdown_error);
    int cancel_applied[NPOOLS];
    for (int p = 0; p < NPOOLS; p++)
        cancel_applied[p] = S.mode[p] != 0;

    /* Per-loop errors, then every record. */
    uint64_t accepted = 0, rejected = 0, rej_again = 0, rej_shutdown = 0, callbacks = 0;
    uint64_t cb_ok = 0, cb_cancelled = 0, by_cancel = 0, by_shutdown = 0;
    uint64_t c_ok = 0, c_busy = 0, c_already = 0, c_noent = 0, saw_stop = 0;
    uint64_t missing = 0, dup = 0, rejected_called = 0, bad_status = 0, ok_but_ran = 0;
    uint64_t unexplained_cancel = 0, already_but_ran = 0, spurious_stop = 0, bad_flags = 0;
    uint64_t busy_then_cancelled = 0, wakeups = 0, batch_runs = 0;
    for (int t = 0; t < NLOOPS; t++) {
        struct loop *l = &S.loops[t];
        ck_assert_msg(l->errors == 0, "loop %d: %" PRIu64 " errors, first: %s", t, l->errors,
                      l->first_error);
        ck_assert_msg(l->finished, "loop %d never finished", t);
        ck_assert_uint_eq(l->callbacks, l->accepted);
        ck_assert_uint_eq(l->port_delivered, l->callbacks);
        accepted += l->accepted;
        rej_again += l->rej_again;
        rej_shutdown += l->rej_shutdown;
        callbacks += l->callbacks;
        cb_ok += l->cb_ok;
        cb_cancelled += l->cb_cancelled;
        c_ok += l->cancel_ok;
        c_busy += l->cancel_busy;
        c_already += l->cancel_already;
        c_noent += l->cancel_noent;
        wakeups += l->port_wakeups;
        batch_runs += l->port_batches;
        for (uint32_t i = 0; i < l->nrecs; i++) {
            const struct rec *r = &l->recs[i];
            if ((r->flags & (R_ACCEPTED | R_REJECTED)) == R_REJECTED) {
                rejected++;
                if (r->calls)
                    rejected_called++;
                continue;
            }
            if ((r->flags & (R_ACCEPTED | R_REJECTED)) != R_ACCEPTED) {
                bad_flags++;
                continue;
            }
            if (r->calls == 0) {
                missing++;
                continue;
            }
            if (r->calls > 1)
                dup++;
            if (r->saw_stop) {
                saw_stop++;
                if (!(r->flags & R_CANCEL_BUSY) && !cancel_applied[r->pool])
                    spurious_stop++;
            }
            if (r->status == -ECANCELED) {
                if (r->flags & R_CANCEL_OK) {
                    by_cancel++;
                } else {
                    by_shutdown++;
                    if (!cancel_applied[r->pool])
                        unexplained_cancel++;
                }
                /* -EBUSY means "running or has run": such a job cannot
                 * come back cancelled, even when a concurrent EVEXEC_CANCEL
                 * shutdown races the cancel (that answers -EALREADY). */
                if (r->flags & R_CANCEL_BUSY)
                    busy_then_cancelled++;
                if (r->saw_stop)
                    bad_status++; /* its work ran: status must be 0 */
            } else if (r->status == 0) {
                if (r->flags & R_CANCEL_OK)
                    ok_but_ran++;
                if (r->flags & R_CANCEL_ALREADY)
                    already_but_ran++;
            } else {
                bad_status++;
            }
        }
    }

    struct evexec_pool_stats ps[NPOOLS];
    uint64_t p_sub = 0, p_comp = 0, p_canc = 0, p_rej = 0;
    for (int p = 0; p < NPOOLS; p++) {
        ps[p] = pool_stats(S.pool[p]);
        p_sub += ps[p].submitted;
        p_comp += ps[p].completed;
        p_canc += ps[p].cancelled;
        p_rej += ps[p].rejected;
    }

    printf("check_stress: million: %.2f s (%.0f jobs/s); shutdown by %s at %" PRIu64
           " accepted: pool A %s, pool B %s\n",
           secs, (double)accepted / secs, S.shutdown_by_loop ? "a loop" : "main", S.at_shutdown,
           mode_name(S.mode[0]), mode_name(S.mode[1]));
    printf("check_stress: million: accepted=%" PRIu64 " callbacks=%" PRIu64 " ok=%" PRIu64
           " cancelled=%" PRIu64 " (by evexec_cancel %" PRIu64 ", by shutdown %" PRIu64
           ") rejected=%" PRIu64 " (EAGAIN %" PRIu64 ", ESHUTDOWN %" PRIu64 ")\n",
           accepted, callbacks, cb_ok, cb_cancelled, by_cancel, by_shutdown, rejected, rej_again,
           rej_shutdown);
    printf("check_stress: million: evexec_cancel: 0=%" PRIu64 " EBUSY=%" PRIu64
           " EALREADY=%" PRIu64 " ENOENT(stale)=%" PRIu64 "; stop flag seen by %" PRIu64
           " work functions; EBUSY then -ECANCELED: %" PRIu64 "\n",
           c_ok, c_busy, c_already, c_noent, saw_stop, busy_then_cancelled);
    for (int p = 0; p < NPOOLS; p++)
        printf("check_stress: million: pool %c: submitted=%" PRIu64 " completed=%" PRIu64
               " cancelled=%" PRIu64 " rejected=%" PRIu64 " threads_started=%" PRIu64 "\n",
               'A' + p, ps[p].submitted, ps[p].completed, ps[p].cancelled, ps[p].rejected,
               ps[p].threads_started);
    printf("check_stress: million: ports: wakeups=%" PRIu64 " batches=%" PRIu64
           "; windows %u/%u/%u/%u, max_batch %u/%u/%u/%u\n",
           wakeups, batch_runs, S.loops[0].winmax, S.loops[1].winmax, S.loops[2].winmax,
           S.loops[3].winmax, S.loops[0].max_batch, S.loops[1].max_batch, S.loops[2].max_batch,
           S.loops[3].max_batch);
    fflush(stdout);

    ck_assert_uint_eq(bad_flags, 0);
    ck_assert_uint_eq(missing, 0);
    ck_assert_uint_eq(dup, 0);
    ck_assert_uint_eq(rejected_called, 0);
    ck_assert_uint_eq(bad_status, 0);
    ck_assert_uint_eq(ok_but_ran, 0);
    ck_assert_uint_eq(already_but_ran, 0);
    ck_assert_uint_eq(unexplained_cancel, 0);
    ck_assert_uint_eq(spurious_stop, 0);
    ck_assert_uint_eq(busy_then_cancelled, 0);
    ck_assert_uint_ge(accepted, target);
    ck_assert_uint_eq(accepted, callbacks);
    ck_assert_uint_eq(cb_ok + cb_cancelled, callbacks);
    ck_assert_uint_eq(rej_again + rej_shutdown, rejected);

    for (int p = 0; p < NPOOLS; p++) {
        ck_assert_uint_eq(ps[p].submitted, ps[p].completed + ps[p].cancelled);
        ck_assert_uint_eq(ps[p].queued, 0);
        ck_assert_uint_eq(ps[p].running, 0);
    }
    ck_assert_uint_eq(p_sub, accepted);
    ck_assert_uint_eq(p_comp, cb_ok);
    ck_assert_uint_eq(p_canc, cb_cancelled);
    ck_assert_uint_eq(p_rej, rejected);

    for (int p = 0; p < NPOOLS; p++)
        ck_assert_int_eq(evexec_pool_free(S.pool[p]), 0);
    for (int t = 0; t < NLOOPS; t++)
        free(S.loops[t].recs);
    pthread_cond_destroy(&S.cv);
    pthread_mutex_destroy(&S.mu);
}
END_TEST

/* ========================================================================= */
/* test_cancel_shutdown_race                                                 */
/* ========================================================================= */

#define RACE_ROUNDS 20
#define RACE_CAP 6000

struct rjob {
    evexec_job_id id;
    int16_t status;
    uint8_t flags, calls;
    uint8_t kind, len_us; /* read by the worker */
    uint8_t saw_stop;     /* written by the worker */
};

/* How a round ends, at its shutdown point. */
enum { END_PLAIN, END_FREE_POOL, END_FREE_PORT };
/* Shutdown modes: 0 DRAIN, 1 CANCEL, 2 DRAIN then CANCEL, 3 none (only with
 * END_FREE_PORT: the port's release cancels what is queued). */

struct race {
    pthread_t self;
    unsigned rng;
    struct event_base *base;
    evexec_port *port;
    evexec_pool *pool;
    struct rjob *jobs;
    int n;
    int accepted, callbacks, rej_again, rej_shutdown, rej_pool;
    int in_cb;
    int shut_submit_at; /* shut down before submit number n, or -1 */
    int shut_cb_at;     /* ... or in callback number n, or -1 */
    int mode, ending;
    int shut, pool_shut, cancel_applied, pool_freed, port_freed;
    int c_ok, c_busy, c_already, c_noent;
    uint64_t errors;
    char first_error[256];
};

static struct race R;

__attribute__((format(printf, 1, 2))) static void race_error(const char *fmt, ...)
{
    if (R.errors++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(R.first_error, sizeof R.first_error, fmt, ap);
        va_end(ap);
    }
}

static void *race_work(evexec_job *job, void *arg)
{
    struct rjob *j = arg;
    switch (j->kind) {
    case K_SPIN:
        spin_ns((uint64_t)j->len_us * 1000);
        break;
    case K_POLL:
        if (poll_stop(job, (uint64_t)j->len_us * 1000))
            j->saw_stop = 1;
        break;
    default:
        break;
    }
    return j;
}

static void race_cancel(void)
{
    if (R.port_freed || R.n == 0)
        return; /* a freed port's handle is dead */
    int idx = (int)rnd(&R.rng, (unsigned)R.n);
    struct rjob *j = &R.jobs[idx];
    int live = (j->flags & R_ACCEPTED) && !j->calls;
    int rc = evexec_cancel(R.port, (j->flags & R_ACCEPTED) ? j->id : 0);
    if (!live) {
        if (rc != -ENOENT)
            race_error("job %d (delivered or rejected): cancel %s", idx, evexec_errname(rc));
        R.c_noent++;
        return;
    }
    switch (rc) {
    case 0:
        if ((j->flags & (R_CANCEL_OK | R_CANCEL_BUSY | R_CANCEL_ALREADY)) || R.cancel_applied ||
            R.pool_freed)
            race_error("job %d: cancel returned 0 (flags %#x, cancel shutdown %d, pool freed %d)",
                       idx, j->flags, R.cancel_applied, R.pool_freed);
        j->flags |= R_CANCEL_OK;
        R.c_ok++;
        break;
    case -EBUSY:
        if (j->flags & (R_CANCEL_OK | R_CANCEL_ALREADY))
            race_error("job %d: -EBUSY after it was cancelled (flags %#x)", idx, j->flags);
        j->flags |= R_CANCEL_BUSY;
        R.c_busy++;
        break;
    case -EALREADY:
        if ((j->flags & R_CANCEL_BUSY) || (!(j->flags & R_CANCEL_OK) && !R.cancel_applied))
            race_error("job %d: -EALREADY but never cancelled (flags %#x)", idx, j->flags);
        j->flags |= R_CANCEL_ALREADY;
        R.c_already++;
        break;
    default:
        race_error("job %d: cancel of a live job: %s", idx, evexec_errname(rc));
    }
}

static void race_shutdown(void)
{
    int rc;
    R.shut = 1;
    switch (R.mode) {
    case 0:
        if ((rc = evexec_pool_shutdown(R.pool, EVEXEC_DRAIN)) != 0)
            race_error("shutdown DRAIN: %s", evexec_errname(rc));
        R.pool_shut = 1;
        break;
    case 1:
        if ((rc = evexec_pool_shutdown(R.pool, EVEXEC_CANCEL)) != 0)
            race_error("shutdown CANCEL: %s", evexec_errname(rc));
        R.pool_shut = R.cancel_applied = 1;
        break;
    case 2:
        if ((rc = evexec_pool_shutdown(R.pool, EVEXEC_DRAIN)) != 0)
            race_error("shutdown DRAIN: %s", evexec_errname(rc));
        R.pool_shut = 1;
        for (unsigned n = rnd(&R.rng, 8); n > 0; n--)
            race_cancel();
        if ((rc = evexec_pool_shutdown(R.pool, EVEXEC_CANCEL)) != 0)
            race_error("shutdown CANCEL after DRAIN: %s", evexec_errname(rc));
        R.cancel_applied = 1;
        break;
    default:
        break;
    }
    if (R.ending == END_FREE_POOL) {
        if ((rc = evexec_pool_free(R.pool)) != 0)
            race_error("pool_free: %s", evexec_errname(rc));
        R.pool_freed = 1;
    } else if (R.ending == END_FREE_PORT) {
        if ((rc = evexec_port_free(R.port)) != 0)
            race_error("port_free: %s", evexec_errname(rc));
        R.port_freed = 1;
    }
}

static void race_done(int status, void *result, void *arg);

static void race_submit(void)
{
    if (R.n >= RACE_CAP || R.pool_freed || (R.port_freed && !R.in_cb))
        return;
    if (!R.shut && R.shut_submit_at == R.n) {
        race_shutdown();
        if (R.pool_freed || (R.port_freed && !R.in_cb))
            return;
    }
    int idx = R.n++;
    struct rjob *j = &R.jobs[idx];
    unsigned k = rnd(&R.rng, 100);
    if (k < 70) {
        j->kind = K_NOOP;
    } else if (k < 85) {
        j->kind = K_SPIN;
        j->len_us = (uint8_t)(1 + rnd(&R.rng, 20));
    } else {
        j->kind = K_POLL;
        j->len_us = (uint8_t)(10 + rnd(&R.rng, 240));
    }
    evexec_job_id id = ID_SENTINEL;
    int rc = evexec_submit(R.port, R.pool, race_work, race_done, j, &id);
    if (rc == 0) {
        j->flags = R_ACCEPTED;
        j->id = id;
        R.accepted++;
        if (R.pool_shut || R.port_freed)
            race_error("job %d accepted after shutdown", idx);
        if (id == ID_SENTINEL || id == 0)
            race_error("job %d: id %#" PRIx64, idx, id);
        return;
    }
    j->flags = R_REJECTED;
    if (id != ID_SENTINEL)
        race_error("job %d: failed submit wrote the id", idx);
    if (rc == -EAGAIN) {
        if (R.pool_shut || R.port_freed)
            race_error("job %d: -EAGAIN after shutdown", idx);
        R.rej_again++;
        R.rej_pool++;
    } else if (rc == -ESHUTDOWN) {
        if (!R.pool_shut && !R.port_freed)
            race_error("job %d: -ESHUTDOWN before shutdown", idx);
        R.rej_shutdown++;
        if (!R.port_freed)
            R.rej_pool++; /* the pool refused it, and counts it */
    } else {
        race_error("job %d: submit: %s", idx, evexec_errname(rc));
    }
}

static void race_done(int status, void *result, void *arg)
{
    struct rjob *j = arg;
    int idx = (int)(j - R.jobs);

    if (!pthread_equal(pthread_self(), R.self))
        race_error("job %d: callback off the loop thread", idx);
    if (++j->calls != 1) {
        race_error("job %d: callback number %u", idx, j->calls);
        return;
    }
    j->status = (int16_t)status;
    if (!(j->flags & R_ACCEPTED))
        race_error("job %d: callback for a rejected submit", idx);
    R.callbacks++;
    if (status == 0) {
        if (result != j)
            race_error("job %d: result %p", idx, result);
    } else if (status == -ECANCELED) {
        if (result != NULL)
            race_error("job %d: cancelled with result %p", idx, result);
    } else {
        race_error("job %d: status %d", idx, status);
    }

    R.in_cb = 1;
    if (!R.shut && R.shut_cb_at == R.callbacks)
        race_shutdown();
    unsigned k = rnd(&R.rng, 16);
    if (k < 2)
        race_cancel();
    else if (k >= 10)
        race_submit();
    R.in_cb = 0;
}

static const char *ending_name(int e)
{
    return e == END_PLAIN ? "plain" : e == END_FREE_POOL ? "free-pool" : "free-port";
}

static const char *race_mode_name(int m)
{
    return m == 3 ? "none" : mode_name(m);
}

static void race_round(unsigned seed, int round)
{
    memset(&R, 0, sizeof R);
    R.rng = seed ^ (0x85ebca6bu * (unsigned)(round + 1));
    R.self = pthread_self();
    R.jobs = calloc(RACE_CAP, sizeof *R.jobs);
    ck_assert_ptr_nonnull(R.jobs);
    R.base = event_base_new();
    ck_assert_ptr_nonnull(R.base);

    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    po.max_threads = 1 + rnd(&R.rng, 4);
    po.min_threads = rnd(&R.rng, po.max_threads + 1);
    po.max_queued = rnd(&R.rng, 2) ? 0 : 16 + rnd(&R.rng, 1024);
    po.idle_timeout_ms = rnd(&R.rng, 2) ? 0 : 1 + rnd(&R.rng, 3);
    po.name = "race";
    ck_assert_int_eq(evexec_pool_new(&R.pool, &po), 0);
    struct evexec_port_opts pto = EVEXEC_PORT_OPTS_INIT;
    static const unsigned batches[] = {0, 1, 3, 128};
    pto.max_batch = batches[rnd(&R.rng, 4)];
    ck_assert_int_eq(evexec_port_new(&R.port, R.base, &pto), 0);

    int n0 = 1500 + (int)rnd(&R.rng, 1001);
    R.ending = (int)rnd(&R.rng, 3);
    R.mode = (int)rnd(&R.rng, R.ending == END_FREE_PORT ? 4 : 3);
    R.shut_submit_at = R.shut_cb_at = -1;
    if (rnd(&R.rng, 3) == 0)
        R.shut_submit_at = (int)rnd(&R.rng, (unsigned)n0 + 1);
    else
        R.shut_cb_at = 1 + (int)rnd(&R.rng, (unsigned)n0 / 3);

    for (int i = 0; i < n0; i++) {
        race_submit();
        if (rnd(&R.rng, 10) == 0)
            race_cancel();
        if (rnd(&R.rng, 64) == 0) /* deliver what is ready, now and then */
            event_base_loop(R.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    /* Deliver everything; shut down now if the chosen point never came. */
    for (;;) {
        while (R.callbacks < R.accepted)
            run_until(R.base, &R.callbacks, R.accepted);
        if (R.shut)
            break;
        race_shutdown();
    }

    if (!R.port_freed) {
        struct evexec_port_stats s = port_stats(R.port);
        ck_assert_uint_eq(s.outstanding, 0);
        ck_assert_uint_eq(s.delivered, (unsigned)R.callbacks);
        ck_assert_int_eq(evexec_port_free(R.port), 0);
    }
    /* The port goes (after a last wake-up, if one is owed); then the base
     * has nothing left and dispatch returns. */
    ck_assert_int_ge(event_base_dispatch(R.base), 0);

    int ok = 0, cancelled = 0, missing = 0, dup = 0, rejected = 0, rejected_called = 0;
    int bad = 0;
    for (int i = 0; i < R.n; i++) {
        const struct rjob *j = &R.jobs[i];
        if (j->flags & R_REJECTED) {
            rejected++;
            if (j->calls)
                rejected_called++;
            continue;
        }
        if (j->calls == 0) {
            missing++;
            continue;
        }
        if (j->calls > 1)
            dup++;
        if (j->status == 0) {
            ok++;
            if (j->flags & (R_CANCEL_OK | R_CANCEL_ALREADY))
                bad++;
        } else if (j->status == -ECANCELED) {
            cancelled++;
            if (j->flags & R_CANCEL_BUSY)
                bad++;
            if (!(j->flags & R_CANCEL_OK) && !R.cancel_applied && !R.port_freed)
                bad++;
        } else {
            bad++;
        }
        if (j->saw_stop && (j->status != 0 || !((j->flags & R_CANCEL_BUSY) || R.cancel_applied ||
                                                R.port_freed)))
            bad++;
    }

    if (!R.pool_freed) {
        struct evexec_pool_stats ps = pool_stats(R.pool);
        ck_assert_uint_eq(ps.submitted, (unsigned)R.accepted);
        ck_assert_uint_eq(ps.completed, (unsigned)ok);
        ck_assert_uint_eq(ps.cancelled, (unsigned)cancelled);
        ck_assert_uint_eq(ps.submitted, ps.completed + ps.cancelled);
        ck_assert_uint_eq(ps.rejected, (unsigned)R.rej_pool);
        ck_assert_uint_eq(ps.queued, 0);
        ck_assert_uint_eq(ps.running, 0);
        ck_assert_int_eq(evexec_pool_free(R.pool), 0);
    }
    event_base_free(R.base);

    printf("check_stress: race round %2d: threads %u (min %u) max_queued %zu idle_ms %u, "
           "batch %u, shutdown %s at %s %d, end %s: accepted %d ok %d cancelled %d rejected %d "
           "(EAGAIN %d ESHUTDOWN %d); cancel 0/EBUSY/EALREADY/ENOENT %d/%d/%d/%d\n",
           round, po.max_threads, po.min_threads, po.max_queued, po.idle_timeout_ms,
           pto.max_batch, race_mode_name(R.mode), R.shut_submit_at >= 0 ? "submit" : "callback",
           R.shut_submit_at >= 0 ? R.shut_submit_at : R.shut_cb_at, ending_name(R.ending),
           R.accepted, ok, cancelled, rejected, R.rej_again, R.rej_shutdown, R.c_ok, R.c_busy,
           R.c_already, R.c_noent);
    fflush(stdout);

    ck_assert_msg(R.errors == 0, "round %d: %" PRIu64 " errors, first: %s", round, R.errors,
                  R.first_error);
    ck_assert_int_eq(missing, 0);
    ck_assert_int_eq(dup, 0);
    ck_assert_int_eq(rejected_called, 0);
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(R.callbacks, R.accepted);
    ck_assert_int_eq(ok + cancelled, R.accepted);
    ck_assert_int_eq(rejected, R.rej_again + R.rej_shutdown);
    free(R.jobs);
}

START_TEST(test_cancel_shutdown_race)
{
    unsigned seed = stress_seed();
    printf("check_stress: race: seed=%u (replay: EVEXEC_STRESS_SEED=%u)\n", seed, seed);
    fflush(stdout);
    uint64_t t0 = now_ns();
    for (int round = 0; round < RACE_ROUNDS; round++)
        race_round(seed, round);
    printf("check_stress: race: %d rounds in %.2f s\n", RACE_ROUNDS,
           (double)(now_ns() - t0) / 1e9);
    fflush(stdout);
}
END_TEST


/* --- the inbox ------------------------------------------------------------ */

#define INBOX_THREADS 4
#define INBOX_BURSTS 300

struct inbox_thread {
    evexec_pool *pool;
    unsigned seed;
    _Atomic unsigned long *calls, *refused;
    _Atomic int *stranded;
};

static void *add_one_work(evexec_job *job, void *arg)
{
    (void)job;
    return (void *)((uintptr_t)arg + 1);
}

static void *inbox_main(void *arg)
{
    struct inbox_thread *t = arg;
    unsigned rng = t->seed;
    evexec_future *f[40];
    for (int b = 0; b < INBOX_BURSTS && !atomic_load(t->stranded); b++) {
        int n = 1 + rand_r(&rng) % 40, made = 0;
        for (int i = 0; i < n; i++) {
            int rc = evexec_pool_call(t->pool, add_one_work, (void *)(uintptr_t)i, &f[made]);
            if (rc == 0)
                made++;
            else if (rc == -EAGAIN)
                atomic_fetch_add(t->refused, 1);
            else
                atomic_store(t->stranded, 1000 + -rc);
        }
        for (int i = 0; i < made; i++) {
            void *r;
            /* 10 s: far beyond a no-op's time; only a lost job waits so long. */
            if (evexec_future_wait(f[i], 10000) != 0)
                atomic_store(t->stranded, 1);
            else if (evexec_future_result(f[i], &r) != 0)
                atomic_store(t->stranded, 2);
            evexec_future_free(f[i]);
        }
        atomic_fetch_add(t->calls, (unsigned long)made);
        /* Now and then idle long enough for workers to park or time out. */
        if (rand_r(&rng) % 3 == 0)
            usleep((useconds_t)(rand_r(&rng) % 3000));
    }
    return NULL;
}

START_TEST(test_inbox_threads_come_and_go)
{
    unsigned seed = stress_seed();
#ifdef __linux__
    /* Every thread on one CPU (threads inherit it): no worker then searches
     * (it would only delay the submitter), so each one that goes idle parks
     * after its last look at the inbox, the race this test is about. */
    cpu_set_t was, one;
    ck_assert_int_eq(sched_getaffinity(0, sizeof was, &was), 0);
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &was)) {
            CPU_SET(c, &one);
            break;
        }
    ck_assert_int_eq(sched_setaffinity(0, sizeof one, &one), 0);
#endif
    printf("check_stress: inbox: seed=%u (replay: EVEXEC_STRESS_SEED=%u)\n", seed, seed);
    fflush(stdout);
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    o.max_threads = 3;
    o.min_threads = 0;
    o.idle_timeout_ms = 1;
    o.max_queued = 64;
    evexec_pool *pool;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    _Atomic unsigned long calls = 0, refused = 0;
    _Atomic int stranded = 0;
    struct inbox_thread t[INBOX_THREADS];
    pthread_t tid[INBOX_THREADS];
    for (int i = 0; i < INBOX_THREADS; i++) {
        t[i] = (struct inbox_thread){pool, seed + (unsigned)i, &calls, &refused, &stranded};
        ck_assert_int_eq(pthread_create(&tid[i], NULL, inbox_main, &t[i]), 0);
    }
    for (int i = 0; i < INBOX_THREADS; i++)
        pthread_join(tid[i], NULL);
#ifdef __linux__
    ck_assert_int_eq(sched_setaffinity(0, sizeof was, &was), 0);
#endif
    ck_assert_msg(!atomic_load(&stranded), "a pool call never completed or failed (%d)",
                  atomic_load(&stranded));
    struct evexec_pool_stats st = pool_stats(pool);
    printf("check_stress: inbox: %lu calls, %lu refused, %" PRIu64 " threads started\n",
           atomic_load(&calls), atomic_load(&refused), st.threads_started);
    fflush(stdout);
    ck_assert_uint_eq(st.submitted, atomic_load(&calls));
    ck_assert_uint_eq(st.completed, atomic_load(&calls));
    ck_assert_uint_eq(st.queued, 0);
    /* The idle timeout did make threads come and go. */
    ck_assert_uint_gt(st.threads_started, 3);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

#define BOUND_QUEUED 50
#define BOUND_ROUNDS 20

struct bound_thread {
    evexec_pool *pool;
    pthread_barrier_t *start;
    evexec_future *f[BOUND_QUEUED];
    int accepted, error;
};

static void *bound_main(void *arg)
{
    struct bound_thread *t = arg;
    t->accepted = t->error = 0;
    pthread_barrier_wait(t->start);
    while (t->accepted < BOUND_QUEUED) {
        int rc = evexec_pool_call(t->pool, add_one_work, NULL, &t->f[t->accepted]);
        if (rc == -EAGAIN)
            return NULL;
        if (rc < 0) {
            t->error = rc;
            return NULL;
        }
        t->accepted++;
    }
    /* BOUND_QUEUED accepted by this thread alone: one more must be refused. */
    evexec_future *extra;
    if (evexec_pool_call(t->pool, add_one_work, NULL, &extra) == 0)
        t->error = 1; /* the test fails; the call stays behind the gate */
    return NULL;
}

static int bound_port_accepted;
static void bound_port_done(int status, void *result, void *arg)
{
    (void)result;
    (void)arg;
    ck_assert_int_eq(status, 0);
    bound_port_accepted--;
}

START_TEST(test_bound_is_exact_under_racing_submitters)
{
    evexec_pool *pool = new_pool(2, 2, BOUND_QUEUED);
    for (int round = 0; round < BOUND_ROUNDS; round++) {
        struct gate g;
        struct tally tl;
        park_n(pool, park_work, &g, &tl, 2); /* both workers busy */
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, INBOX_THREADS + 1);
        struct bound_thread t[INBOX_THREADS];
        pthread_t tid[INBOX_THREADS];
        for (int i = 0; i < INBOX_THREADS; i++) {
            t[i].pool = pool;
            t[i].start = &start;
            ck_assert_int_eq(pthread_create(&tid[i], NULL, bound_main, &t[i]), 0);
        }
        pthread_barrier_wait(&start);
        /* Meanwhile the locked path: low-priority submits through the port. */
        int port = 0, rc;
        while ((rc = submit_prio(pool, EVEXEC_PRIO_LOW, add_one_work, bound_port_done, NULL,
                                 NULL)) == 0)
            port++;
        ck_assert_int_eq(rc, -EAGAIN);
        int total = port;
        for (int i = 0; i < INBOX_THREADS; i++) {
            pthread_join(tid[i], NULL);
            ck_assert_int_eq(t[i].error, 0);
            total += t[i].accepted;
        }
        pthread_barrier_destroy(&start);
        ck_assert_msg(total == BOUND_QUEUED, "round %d: %d accepted with max_queued %d", round,
                      total, BOUND_QUEUED);
        ck_assert_uint_eq(pool_stats(pool).queued, BOUND_QUEUED);
        gate_release(&g, 2);
        for (int i = 0; i < INBOX_THREADS; i++)
            for (int k = 0; k < t[i].accepted; k++) {
                ck_assert_int_eq(evexec_future_wait(t[i].f[k], 10000), 0);
                evexec_future_free(t[i].f[k]);
            }
        bound_port_accepted = port;
        run_until(fx.base, &tl.calls, 2);
        while (bound_port_accepted > 0)
            ck_assert_int_ge(event_base_loop(fx.base, EVLOOP_ONCE), 0);
        gate_destroy(&g);
    }
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

static Suite *stress_suite(void)
{
    Suite *s = suite_create("stress");
    TCase *tc = add_tcase(s, "million", 300, FX_FDS);
    tcase_add_test(tc, test_million);
    tc = add_tcase(s, "race", 300, FX_FDS);
    tcase_add_test(tc, test_cancel_shutdown_race);
    tc = add_tcase(s, "inbox", 120, FX_PORT);
    tcase_add_test(tc, test_inbox_threads_come_and_go);
    tcase_add_test(tc, test_bound_is_exact_under_racing_submitters);
    return s;
}

int main(void)
{
    return run_suite(stress_suite());
}
