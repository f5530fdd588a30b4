/* SPDX-License-Identifier: MIT */
/*
 * The pool-side features of issue 7, one test per behaviour and per error
 * the header documents: priorities and anti-starvation, per-class limits,
 * overflow policies, blocking any-thread submits, run-time resize, per-worker
 * state, the new counters and histograms, and a port's default pool.
 *
 * Queue states are made deterministic by parking workers on gates; a thread
 * blocked inside evexec_submit_threadsafe() is recognised by its state in
 * /proc (sleeping), never by sleeping ourselves.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static struct event_base *base;
static evexec_port *port;

static void setup(void)
{
    port_fixture_setup(&base, &port);
}

static void teardown(void)
{
    port_fixture_teardown(base, port);
}

static evexec_pool *new_pool_o(struct evexec_pool_opts *o)
{
    evexec_pool *p = NULL;
    ck_assert_int_eq(evexec_pool_new(&p, o), 0);
    ck_assert_ptr_nonnull(p);
    return p;
}

static evexec_pool *new_pool(unsigned max, unsigned min, size_t max_queued)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    o.max_threads = max;
    o.min_threads = min;
    o.max_queued = max_queued;
    return new_pool_o(&o);
}

static void *noop_thread(void *arg)
{
    return arg;
}

/* The process's thread count before a test makes threads. A sanitizer's
 * runtime (TSan) starts a background thread of its own at the first
 * pthread_create(): start and join one first, so that it is counted. */
static int threads_base(void)
{
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, noop_thread, NULL), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    return count_threads();
}

/* evexec_submit_ex() with a priority only. */
static int submit_prio(evexec_pool *pool, int prio, evexec_work_fn work, evexec_done_fn done,
                       void *arg, evexec_job_id *id)
{
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    jo.priority = prio;
    return evexec_submit_ex(port, pool, work, done, arg, &jo, id);
}

/* ---------------------------------------------------------------------- */
/* Jobs that record when they start and how they end.                     */

enum { MAX_RECS = 64 };

struct rec {
    int tag;
    int started;        /* position in the start order, from 1; 0: never */
    int status;
    int delivered;
    void *result;
};

static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static int order_n;
static int order[MAX_RECS];
static struct rec recs[MAX_RECS];
static int recs_delivered;

static void recs_reset(void)
{
    pthread_mutex_lock(&order_mu);
    order_n = 0;
    memset(order, 0, sizeof order);
    memset(recs, 0, sizeof recs);
    for (int i = 0; i < MAX_RECS; i++)
        recs[i].tag = i;
    pthread_mutex_unlock(&order_mu);
    recs_delivered = 0;
}

static void *rec_work(evexec_job *job, void *arg)
{
    struct rec *r = arg;
    (void)job;
    pthread_mutex_lock(&order_mu);
    order[order_n++] = r->tag;
    r->started = order_n;
    pthread_mutex_unlock(&order_mu);
    return r;
}

static void rec_done(int status, void *result, void *arg)
{
    struct rec *r = arg;
    r->status = status;
    r->result = result;
    r->delivered++;
    recs_delivered++;
}

/* ---------------------------------------------------------------------- */
/* 1. Priorities.                                                         */

START_TEST(queued_jobs_start_by_class_then_fifo)
{
    struct gate g;
    struct tally t;
    evexec_pool *pool = new_pool(1, 0, 0);
    /* Mixed submission order; tags 1..9. */
    static const int prio[] = {EVEXEC_PRIO_LOW,    EVEXEC_PRIO_NORMAL, EVEXEC_PRIO_HIGH,
                               EVEXEC_PRIO_LOW,    EVEXEC_PRIO_NORMAL, EVEXEC_PRIO_HIGH,
                               EVEXEC_PRIO_HIGH,   EVEXEC_PRIO_LOW,    EVEXEC_PRIO_NORMAL};
    /* Highest class first, submission order within a class. */
    static const int want[] = {3, 6, 7, 2, 5, 9, 1, 4, 8};
    enum { N = sizeof prio / sizeof prio[0] };

    recs_reset();
    tally_init(&t);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(submit_prio(pool, prio[i], rec_work, rec_done, &recs[i + 1], NULL), 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.queued, N);
    ck_assert_uint_eq(s.queued_high, 3);
    ck_assert_uint_eq(s.queued_normal, 3);
    ck_assert_uint_eq(s.queued_low, 3);

    gate_release(&g, 1);
    run_until(base, &recs_delivered, N);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(order_n, N);
    for (int i = 0; i < N; i++)
        ck_assert_msg(order[i] == want[i], "start %d: job %d, expected job %d", i + 1, order[i],
                      want[i]);
    for (int i = 1; i <= N; i++) {
        ck_assert_int_eq(recs[i].status, 0);
        ck_assert_int_eq(recs[i].delivered, 1);
    }
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

/* One job of a lower class queued before a flood of a higher class: it is
 * passed over at most 8 times in a row, so it starts 9th at the latest. */
START_TEST(a_passed_over_class_goes_next_after_eight)
{
    static const int pairs[][2] = {
        {EVEXEC_PRIO_LOW, EVEXEC_PRIO_HIGH},
        {EVEXEC_PRIO_NORMAL, EVEXEC_PRIO_HIGH},
        {EVEXEC_PRIO_LOW, EVEXEC_PRIO_NORMAL},
    };
    enum { FLOOD = 20 };

    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        struct gate g;
        struct tally t;
        evexec_pool *pool = new_pool(1, 0, 0);

        recs_reset();
        tally_init(&t);
        gate_init(&g, &t);
        ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
        gate_wait_entered(&g, 1);
        ck_assert_int_eq(submit_prio(pool, pairs[p][0], rec_work, rec_done, &recs[0], NULL), 0);
        for (int i = 1; i <= FLOOD; i++)
            ck_assert_int_eq(submit_prio(pool, pairs[p][1], rec_work, rec_done, &recs[i], NULL),
                             0);
        gate_release(&g, 1);
        run_until(base, &recs_delivered, FLOOD + 1);
        run_until(base, &t.calls, 1);

        ck_assert_msg(recs[0].started >= 2 && recs[0].started <= 9,
                      "pair %zu: the passed-over job started %d-th (want 2..9)", p,
                      recs[0].started);
        /* The flood itself stays in submission order. */
        int last = 0;
        for (int i = 0; i < order_n; i++) {
            if (order[i] == 0)
                continue;
            ck_assert_int_gt(order[i], last);
            last = order[i];
        }
        for (int i = 0; i <= FLOOD; i++)
            ck_assert_int_eq(recs[i].status, 0);
        ck_assert_int_eq(evexec_pool_free(pool), 0);
        gate_destroy(&g);
    }
}
END_TEST

START_TEST(bad_priority_is_einval_without_callback)
{
    struct tally t;
    evexec_pool *pool = new_pool(1, 0, 0);
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    static const int bad[] = {-2, 2, 100, -100};

    tally_init(&t);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        evexec_job_id id = 77;
        jo.priority = bad[i];
        ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &jo, &id),
                         -EINVAL);
        ck_assert_uint_eq(id, 77); /* untouched on error */
        ck_assert_int_eq(evexec_submit_threadsafe(port, pool, echo_work, tally_done, &t, &jo),
                         -EINVAL);
    }
    /* The three classes are accepted. */
    for (int prio = EVEXEC_PRIO_HIGH; prio <= EVEXEC_PRIO_LOW; prio++)
        ck_assert_int_eq(submit_prio(pool, prio, echo_work, tally_done, &t, NULL), 0);
    run_until(base, &t.calls, 3);
    run_nonblock(base, 5);
    ck_assert_int_eq(t.calls, 3);
    ck_assert_int_eq(t.ok, 3);
    ck_assert_uint_eq(pool_stats(pool).submitted, 3);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* 2. Per-class limits.                                                   */

struct limited {
    struct gate g;
    atomic_int cur, max;
};

static void *limited_work(evexec_job *job, void *arg)
{
    struct limited *l = arg;
    int now = atomic_fetch_add(&l->cur, 1) + 1;
    int m = atomic_load(&l->max);
    while (now > m && !atomic_compare_exchange_weak(&l->max, &m, now))
        ;
    park_work(job, &l->g);
    atomic_fetch_sub(&l->cur, 1);
    return NULL;
}

static void limited_done(int status, void *result, void *arg)
{
    gate_done(status, result, &((struct limited *)arg)->g);
}

START_TEST(class_limit_caps_running_jobs_of_that_class_only)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct limited low;
    struct gate gn;
    struct tally t, tn;
    evexec_pool *pool;
    struct evexec_pool_stats s;

    o.max_threads = 4;
    o.max_running_low = 1;
    pool = new_pool_o(&o);
    tally_init(&t);
    tally_init(&tn);
    gate_init(&low.g, &t);
    gate_init(&gn, &tn);
    atomic_init(&low.cur, 0);
    atomic_init(&low.max, 0);

    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_LOW, limited_work, limited_done, &low,
                                     NULL), 0);
    gate_wait_entered(&low.g, 1);
    /* A NORMAL job starts at once on another worker. */
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &gn, NULL), 0);
    gate_wait_entered(&gn, 1);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.running_low, 1);
    ck_assert_uint_eq(s.running_normal, 1);
    ck_assert_uint_eq(s.running, 2);
    ck_assert_uint_eq(s.queued_low, 3);
    ck_assert_uint_eq(s.queued, 3);
    ck_assert_int_eq(atomic_load(&low.max), 1);

    /* Raised at run time: a second LOW job starts at once. */
    ck_assert_int_eq(evexec_pool_set_class_limit(pool, EVEXEC_PRIO_LOW, 2), 0);
    gate_wait_entered(&low.g, 1);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.running_low, 2);
    ck_assert_uint_eq(s.queued_low, 2);
    ck_assert_int_eq(atomic_load(&low.max), 2);

    /* Lowered below the number running: nothing is interrupted... */
    ck_assert_int_eq(evexec_pool_set_class_limit(pool, EVEXEC_PRIO_LOW, 1), 0);
    ck_assert_uint_eq(pool_stats(pool).running_low, 2);
    /* ...and one finishing does not let another start (2 -> 1 running). */
    gate_release(&low.g, 1);
    run_until(base, &t.calls, 1);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.running_low, 1);
    ck_assert_uint_eq(s.queued_low, 2);
    /* The next finishing lets exactly one more start. */
    atomic_store(&low.max, 1);
    gate_release(&low.g, 1);
    gate_wait_entered(&low.g, 1);
    run_until(base, &t.calls, 2);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.running_low, 1);
    ck_assert_uint_eq(s.queued_low, 1);

    /* 0 means no limit but max_threads: the last one starts beside it. */
    ck_assert_int_eq(evexec_pool_set_class_limit(pool, EVEXEC_PRIO_LOW, 0), 0);
    gate_wait_entered(&low.g, 1);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.running_low, 2);
    ck_assert_uint_eq(s.queued_low, 0);
    ck_assert_int_eq(atomic_load(&low.max), 2);

    gate_release(&low.g, 2);
    gate_release(&gn, 1);
    run_until(base, &t.calls, 4);
    run_until(base, &tn.calls, 1);
    ck_assert_int_eq(t.ok, 4);
    ck_assert_int_eq(tn.ok, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&low.g);
    gate_destroy(&gn);
}
END_TEST

START_TEST(class_limits_from_opts_apply_to_each_class)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct gate g1, g2; /* the first and the second job of each class */
    struct tally t;
    evexec_pool *pool;
    struct evexec_pool_stats s;

    o.max_threads = 4;
    o.max_running_high = 1;
    o.max_running_normal = 1;
    o.max_running_low = 1;
    pool = new_pool_o(&o);
    tally_init(&t);
    gate_init(&g1, &t);
    gate_init(&g2, &t);
    for (int prio = EVEXEC_PRIO_HIGH; prio <= EVEXEC_PRIO_LOW; prio++) {
        ck_assert_int_eq(submit_prio(pool, prio, park_work, gate_done, &g1, NULL), 0);
        ck_assert_int_eq(submit_prio(pool, prio, park_work, gate_done, &g2, NULL), 0);
    }
    gate_wait_entered(&g1, 3);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.running, 3);
    ck_assert_uint_eq(s.running_high, 1);
    ck_assert_uint_eq(s.running_normal, 1);
    ck_assert_uint_eq(s.running_low, 1);
    ck_assert_uint_eq(s.queued_high, 1);
    ck_assert_uint_eq(s.queued_normal, 1);
    ck_assert_uint_eq(s.queued_low, 1);
    gate_release(&g1, 3);
    gate_wait_entered(&g2, 3);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.running_high, 1);
    ck_assert_uint_eq(s.running_normal, 1);
    ck_assert_uint_eq(s.running_low, 1);
    ck_assert_uint_eq(s.queued, 0);
    gate_release(&g2, 3);
    run_until(base, &t.calls, 6);
    ck_assert_int_eq(t.ok, 6);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g1);
    gate_destroy(&g2);
}
END_TEST

START_TEST(class_limit_errors)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool = new_pool(2, 0, 0), *p2 = (evexec_pool *)&o;

    ck_assert_int_eq(evexec_pool_set_class_limit(NULL, EVEXEC_PRIO_LOW, 1), -EINVAL);
    ck_assert_int_eq(evexec_pool_set_class_limit(pool, 2, 1), -EINVAL);
    ck_assert_int_eq(evexec_pool_set_class_limit(pool, -2, 1), -EINVAL);
    ck_assert_int_eq(evexec_pool_set_class_limit(pool, EVEXEC_PRIO_HIGH, EVEXEC_MAX_THREADS + 1),
                     -EINVAL);
    ck_assert_int_eq(evexec_pool_set_class_limit(pool, EVEXEC_PRIO_HIGH, EVEXEC_MAX_THREADS), 0);
    ck_assert_int_eq(evexec_pool_set_class_limit(pool, EVEXEC_PRIO_NORMAL, 0), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);

    /* The same range in the pool's options. */
    o.max_running_low = EVEXEC_MAX_THREADS + 1;
    ck_assert_int_eq(evexec_pool_new(&p2, &o), -EINVAL);
    ck_assert_ptr_eq(p2, (evexec_pool *)&o); /* untouched */
    o.max_running_low = 0;
    o.max_running_high = EVEXEC_MAX_THREADS + 1;
    ck_assert_int_eq(evexec_pool_new(&p2, &o), -EINVAL);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* 3. Overflow.                                                           */

START_TEST(overflow_reject_is_the_default)
{
    struct gate g;
    struct tally t, tq, tr;
    evexec_pool *pool = new_pool(1, 0, 2);
    struct evexec_pool_stats s;

    tally_init(&t);
    tally_init(&tq);
    tally_init(&tr);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tr, NULL), -EAGAIN);
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_HIGH, echo_work, tally_done, &tr, NULL),
                     -EAGAIN);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.rejected, 2);
    ck_assert_uint_eq(s.dropped, 0);
    ck_assert_uint_eq(s.cancelled, 0);
    ck_assert_uint_eq(s.queued, 2);
    gate_release(&g, 1);
    run_until(base, &tq.calls, 2);
    run_until(base, &t.calls, 1);
    run_nonblock(base, 5);
    ck_assert_int_eq(tr.calls, 0);
    ck_assert_int_eq(tq.ok, 2);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(drop_oldest_cancels_the_oldest_and_takes_the_new)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct gate g;
    struct tally t;
    evexec_pool *pool;
    struct evexec_pool_stats s;

    o.max_threads = 1;
    o.max_queued = 3;
    o.overflow = EVEXEC_OVERFLOW_DROP_OLDEST;
    pool = new_pool_o(&o);
    recs_reset();
    tally_init(&t);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(evexec_submit(port, pool, rec_work, rec_done, &recs[i], NULL), 0);
    ck_assert_int_eq(evexec_submit(port, pool, rec_work, rec_done, &recs[4], NULL), 0);
    ck_assert_int_eq(recs_delivered, 0); /* never inside the submit */
    s = pool_stats(pool);
    ck_assert_uint_eq(s.queued, 3);
    ck_assert_uint_eq(s.dropped, 1);
    ck_assert_uint_eq(s.cancelled, 1);
    ck_assert_uint_eq(s.rejected, 0);
    ck_assert_uint_eq(s.submitted, 5);
    /* Delivered while the only worker is still parked. */
    run_until(base, &recs_delivered, 1);
    ck_assert_int_eq(recs[1].delivered, 1);
    ck_assert_int_eq(recs[1].status, -ECANCELED);
    ck_assert_ptr_null(recs[1].result);

    gate_release(&g, 1);
    run_until(base, &recs_delivered, 4);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(recs[1].started, 0); /* never ran */
    for (int i = 2; i <= 4; i++) {
        ck_assert_int_eq(recs[i].status, 0);
        ck_assert_int_eq(recs[i].delivered, 1);
        ck_assert_int_eq(recs[i].started, i - 1);
    }
    ck_assert_uint_eq(pool_stats(pool).dropped, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(drop_oldest_picks_the_lowest_class_not_above_the_new_job)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct gate g;
    struct tally t;
    evexec_pool *pool;
    struct evexec_pool_stats s;
    enum { H1 = 1, L1, N1, N2, L2, H2, N3 };

    o.max_threads = 1;
    o.max_queued = 3;
    o.overflow = EVEXEC_OVERFLOW_DROP_OLDEST;
    pool = new_pool_o(&o);
    recs_reset();
    tally_init(&t);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_HIGH, rec_work, rec_done, &recs[H1], NULL), 0);
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_LOW, rec_work, rec_done, &recs[L1], NULL), 0);
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_NORMAL, rec_work, rec_done, &recs[N1], NULL),
                     0);
    /* Full: [H1 L1 N1]. A NORMAL job drops the LOW one, the lowest class. */
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_NORMAL, rec_work, rec_done, &recs[N2], NULL),
                     0);
    run_until(base, &recs_delivered, 1);
    ck_assert_int_eq(recs[L1].status, -ECANCELED);
    /* [H1 N1 N2]: every queued job is above LOW: a LOW job is refused. */
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_LOW, rec_work, rec_done, &recs[L2], NULL),
                     -EAGAIN);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.rejected, 1);
    ck_assert_uint_eq(s.dropped, 1);
    /* A HIGH job drops the oldest of the lowest class queued: N1. */
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_HIGH, rec_work, rec_done, &recs[H2], NULL), 0);
    run_until(base, &recs_delivered, 2);
    ck_assert_int_eq(recs[N1].status, -ECANCELED);
    /* [H1 N2 H2]: a NORMAL job drops N2, not a HIGH one. */
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_NORMAL, rec_work, rec_done, &recs[N3], NULL),
                     0);
    run_until(base, &recs_delivered, 3);
    ck_assert_int_eq(recs[N2].status, -ECANCELED);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.dropped, 3);
    ck_assert_uint_eq(s.cancelled, 3);
    ck_assert_uint_eq(s.queued_high, 2);
    ck_assert_uint_eq(s.queued_normal, 1);
    ck_assert_uint_eq(s.queued_low, 0);

    gate_release(&g, 1);
    run_until(base, &recs_delivered, 6);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(recs[H1].status, 0);
    ck_assert_int_eq(recs[H2].status, 0);
    ck_assert_int_eq(recs[N3].status, 0);
    ck_assert_int_eq(recs[H1].started, 1);
    ck_assert_int_eq(recs[H2].started, 2);
    ck_assert_int_eq(recs[N3].started, 3);
    ck_assert_int_eq(recs[L2].delivered, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(bad_overflow_is_einval)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *p = NULL;
    static const int bad[] = {-1, 2, 1000};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.overflow = bad[i];
        ck_assert_int_eq(evexec_pool_new(&p, &o), -EINVAL);
        ck_assert_ptr_null(p);
    }
    o.overflow = EVEXEC_OVERFLOW_REJECT;
    ck_assert_int_eq(evexec_pool_new(&p, &o), 0);
    ck_assert_int_eq(evexec_pool_free(p), 0);
    p = NULL;
    o.overflow = EVEXEC_OVERFLOW_DROP_OLDEST;
    ck_assert_int_eq(evexec_pool_new(&p, &o), 0);
    ck_assert_int_eq(evexec_pool_free(p), 0);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* 4. Blocking submits from any thread.                                   */

struct ts_call {
    evexec_pool *pool;
    evexec_done_fn done;
    void *arg;
    int wait_ms;
    int rc;
    double elapsed;
    atomic_int tid;
    pthread_t th;
};

static void *ts_thread(void *a)
{
    struct ts_call *c = a;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    jo.wait_ms = c->wait_ms;
    atomic_store(&c->tid, (int)syscall(SYS_gettid));
    double t0 = now_s();
    c->rc = evexec_submit_threadsafe(port, c->pool, echo_work, c->done, c->arg, &jo);
    c->elapsed = now_s() - t0;
    return NULL;
}

static void ts_start(struct ts_call *c, evexec_pool *pool, int wait_ms, struct tally *t)
{
    memset(c, 0, sizeof *c);
    atomic_init(&c->tid, 0);
    c->pool = pool;
    c->done = tally_done;
    c->arg = t;
    c->wait_ms = wait_ms;
    ck_assert_int_eq(pthread_create(&c->th, NULL, ts_thread, c), 0);
}

static void ts_join(struct ts_call *c)
{
    ck_assert_int_eq(pthread_join(c->th, NULL), 0);
}

/* 1 once the thread sleeps in the kernel (blocked in the submit). */
static int ts_blocked(void *arg)
{
    struct ts_call *c = arg;
    char path[64], buf[512];
    int tid = atomic_load(&c->tid);
    FILE *f;
    if (tid == 0)
        return 0;
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'S';
}

/* A pool of one parked worker and a full queue of one echo job. */
struct full_pool {
    evexec_pool *pool;
    struct gate g;
    struct tally t, tq;
};

static void full_pool_init(struct full_pool *fp)
{
    fp->pool = new_pool(1, 0, 1);
    tally_init(&fp->t);
    tally_init(&fp->tq);
    gate_init(&fp->g, &fp->t);
    ck_assert_int_eq(evexec_submit(port, fp->pool, park_work, gate_done, &fp->g, NULL), 0);
    gate_wait_entered(&fp->g, 1);
    ck_assert_int_eq(evexec_submit(port, fp->pool, echo_work, tally_done, &fp->tq, NULL), 0);
    ck_assert_uint_eq(pool_stats(fp->pool).queued, 1);
}

static void full_pool_finish(struct full_pool *fp)
{
    gate_release(&fp->g, 1);
    run_until(base, &fp->t.calls, 1);
    run_until(base, &fp->tq.calls, 1);
    ck_assert_int_eq(evexec_pool_free(fp->pool), 0);
    gate_destroy(&fp->g);
}

START_TEST(threadsafe_wait_zero_on_a_full_queue_is_eagain)
{
    struct full_pool fp;
    struct tally ts;
    struct ts_call c;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;

    full_pool_init(&fp);
    tally_init(&ts);
    ts_start(&c, fp.pool, 0, &ts);
    ts_join(&c);
    ck_assert_int_eq(c.rc, -EAGAIN);
    /* On the loop thread too: wait_ms 0 never blocks, so it is allowed. */
    ck_assert_int_eq(evexec_submit_threadsafe(port, fp.pool, echo_work, tally_done, &ts, &jo),
                     -EAGAIN);
    ck_assert_int_eq(evexec_submit_threadsafe(port, fp.pool, echo_work, tally_done, &ts, NULL),
                     -EAGAIN);
    ck_assert_uint_eq(pool_stats(fp.pool).rejected, 3);
    full_pool_finish(&fp);
    run_nonblock(base, 5);
    ck_assert_int_eq(ts.calls, 0);
}
END_TEST

START_TEST(threadsafe_wait_times_out_on_a_full_queue)
{
    struct full_pool fp;
    struct tally ts;
    struct ts_call c;

    full_pool_init(&fp);
    tally_init(&ts);
    ts_start(&c, fp.pool, 150, &ts);
    ts_join(&c); /* nothing it needs runs on this thread */
    ck_assert_int_eq(c.rc, -ETIMEDOUT);
    ck_assert_msg(c.elapsed >= 0.145 && c.elapsed < 5.0, "waited %.3f s for 150 ms", c.elapsed);
    ck_assert_uint_eq(pool_stats(fp.pool).queued, 1);
    ck_assert_uint_eq(pool_stats(fp.pool).submitted, 2);
    ck_assert_uint_eq(pool_stats(fp.pool).timed_out, 0); /* that counter is for deadlines */
    full_pool_finish(&fp);
    run_nonblock(base, 5);
    ck_assert_int_eq(ts.calls, 0);
}
END_TEST

START_TEST(threadsafe_wait_succeeds_when_a_worker_makes_room)
{
    static const int waits[] = {EVEXEC_WAIT_FOREVER, 10000};

    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        struct full_pool fp;
        struct tally ts;
        struct ts_call c;

        full_pool_init(&fp);
        tally_init(&ts);
        ts_start(&c, fp.pool, waits[i], &ts);
        wait_for(ts_blocked, &c);
        ck_assert_int_eq(ts.calls, 0);
        gate_release(&fp.g, 1); /* the worker takes the queued job: room */
        ts_join(&c);
        ck_assert_int_eq(c.rc, 0);
        run_until(base, &ts.calls, 1);
        ck_assert_int_eq(ts.ok, 1);
        ck_assert_int_eq(ts.wrong_thread, 0);
        run_until(base, &fp.t.calls, 1);
        run_until(base, &fp.tq.calls, 1);
        ck_assert_uint_eq(pool_stats(fp.pool).submitted, 3);
        ck_assert_int_eq(evexec_pool_free(fp.pool), 0);
        gate_destroy(&fp.g);
    }
}
END_TEST

START_TEST(threadsafe_wait_succeeds_when_resize_makes_room)
{
    struct full_pool fp;
    struct tally ts;
    struct ts_call c;

    full_pool_init(&fp);
    tally_init(&ts);
    ts_start(&c, fp.pool, EVEXEC_WAIT_FOREVER, &ts);
    wait_for(ts_blocked, &c);
    ck_assert_int_eq(evexec_pool_resize(fp.pool, 0, 1, 2), 0);
    ts_join(&c);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_uint_eq(pool_stats(fp.pool).queued, 2);
    full_pool_finish(&fp);
    run_until(base, &ts.calls, 1);
    ck_assert_int_eq(ts.ok, 1);
}
END_TEST

START_TEST(threadsafe_wait_ends_with_eshutdown_on_shutdown)
{
    static const int modes[] = {EVEXEC_DRAIN, EVEXEC_CANCEL};

    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        struct full_pool fp;
        struct tally ts;
        struct ts_call c;

        full_pool_init(&fp);
        tally_init(&ts);
        ts_start(&c, fp.pool, EVEXEC_WAIT_FOREVER, &ts);
        wait_for(ts_blocked, &c);
        ck_assert_int_eq(evexec_pool_shutdown(fp.pool, modes[i]), 0);
        ts_join(&c);
        ck_assert_int_eq(c.rc, -ESHUTDOWN);
        gate_release(&fp.g, 1);
        run_until(base, &fp.t.calls, 1);
        run_until(base, &fp.tq.calls, 1);
        ck_assert_int_eq(fp.tq.calls, 1);
        if (modes[i] == EVEXEC_DRAIN)
            ck_assert_int_eq(fp.tq.ok, 1);
        else
            ck_assert_int_eq(fp.tq.cancelled, 1);
        ck_assert_int_eq(evexec_pool_free(fp.pool), 0);
        gate_destroy(&fp.g);
        run_nonblock(base, 5);
        ck_assert_int_eq(ts.calls, 0);
    }
}
END_TEST

struct ts_from_worker {
    evexec_pool *target;
    struct tally *t;    /* of the job it submits */
    int wait_ms;
    struct tally outer; /* of the job itself: last_result is the rc */
};

static void *rc_threadsafe_work(evexec_job *job, void *arg)
{
    struct ts_from_worker *w = arg;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    (void)job;
    jo.wait_ms = w->wait_ms;
    return (void *)(intptr_t)evexec_submit_threadsafe(port, w->target, echo_work, tally_done,
                                                      w->t, &jo);
}

static void rc_threadsafe_done(int status, void *result, void *arg)
{
    tally_done(status, result, &((struct ts_from_worker *)arg)->outer);
}

START_TEST(threadsafe_wait_is_edeadlk_where_it_would_wait_on_itself)
{
    struct full_pool fp;
    struct tally ts;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    evexec_pool *pool = new_pool(2, 0, 0), *other = new_pool(1, 0, 0);
    struct ts_from_worker w;

    tally_init(&ts);

    /* The port's loop thread, queue full or not. */
    full_pool_init(&fp);
    jo.wait_ms = 10;
    ck_assert_int_eq(evexec_submit_threadsafe(port, fp.pool, echo_work, tally_done, &ts, &jo),
                     -EDEADLK);
    jo.wait_ms = EVEXEC_WAIT_FOREVER;
    ck_assert_int_eq(evexec_submit_threadsafe(port, fp.pool, echo_work, tally_done, &ts, &jo),
                     -EDEADLK);
    ck_assert_int_eq(evexec_submit_threadsafe(port, pool, echo_work, tally_done, &ts, &jo),
                     -EDEADLK);
    full_pool_finish(&fp);

    /* A worker of the target pool, with room in its queue. */
    static const int waits[] = {1000, EVEXEC_WAIT_FOREVER};
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        memset(&w, 0, sizeof w);
        w.target = pool;
        w.t = &ts;
        w.wait_ms = waits[i];
        tally_init(&w.outer);
        ck_assert_int_eq(evexec_submit(port, pool, rc_threadsafe_work, rc_threadsafe_done, &w,
                                       NULL), 0);
        run_until(base, &w.outer.calls, 1);
        ck_assert_int_eq(w.outer.ok, 1);
        ck_assert_int_eq((int)(intptr_t)w.outer.last_result, -EDEADLK);
    }

    /* A worker of another pool may wait for this one. */
    memset(&w, 0, sizeof w);
    w.target = pool;
    w.t = &ts;
    w.wait_ms = 1000;
    tally_init(&w.outer);
    ck_assert_int_eq(evexec_submit(port, other, rc_threadsafe_work, rc_threadsafe_done, &w, NULL),
                     0);
    run_until(base, &w.outer.calls, 1);
    ck_assert_int_eq((int)(intptr_t)w.outer.last_result, 0);
    run_until(base, &ts.calls, 1);
    ck_assert_int_eq(ts.ok, 1);
    ck_assert_int_eq(ts.wrong_thread, 0);
    run_nonblock(base, 5);
    ck_assert_int_eq(ts.calls, 1); /* the refused ones never call back */
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(evexec_pool_free(other), 0);
}
END_TEST

START_TEST(threadsafe_bad_options)
{
    struct tally t;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    evexec_pool *pool = new_pool(1, 0, 0);

    tally_init(&t);
    jo.wait_ms = -2;
    ck_assert_int_eq(evexec_submit_threadsafe(port, pool, echo_work, tally_done, &t, &jo),
                     -EINVAL);
    jo.wait_ms = 0;
    jo.timeout_ms = 100;
    ck_assert_int_eq(evexec_submit_threadsafe(port, pool, echo_work, tally_done, &t, &jo),
                     -EINVAL);
    jo.timeout_ms = 0;
    ck_assert_int_eq(evexec_submit_threadsafe(NULL, pool, echo_work, tally_done, &t, &jo),
                     -EINVAL);
    ck_assert_int_eq(evexec_submit_threadsafe(port, pool, NULL, tally_done, &t, &jo), -EINVAL);
    /* evexec_submit_ex() never blocks: any wait_ms is refused there. */
    jo.wait_ms = 10;
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &jo, NULL), -EINVAL);
    jo.wait_ms = EVEXEC_WAIT_FOREVER;
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &jo, NULL), -EINVAL);
    run_nonblock(base, 5);
    ck_assert_int_eq(t.calls, 0);
    ck_assert_uint_eq(pool_stats(pool).submitted, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST


/* ---------------------------------------------------------------------- */
/* 5. Run-time resize.                                                    */

START_TEST(resize_growing_max_starts_threads_for_queued_jobs)
{
    struct gate g;
    struct tally t;
    evexec_pool *pool = new_pool(1, 0, 0);
    struct evexec_pool_stats s;

    tally_init(&t);
    gate_init(&g, &t);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.threads, 1);
    ck_assert_uint_eq(s.queued, 2);
    ck_assert_uint_eq(s.max_threads, 1);

    ck_assert_int_eq(evexec_pool_resize(pool, 0, 3, 65536), 0);
    gate_wait_entered(&g, 2); /* both queued jobs start, beside the parked one */
    s = pool_stats(pool);
    ck_assert_uint_eq(s.threads, 3);
    ck_assert_uint_eq(s.running, 3);
    ck_assert_uint_eq(s.queued, 0);
    ck_assert_uint_eq(s.max_threads, 3);
    gate_release(&g, 3);
    run_until(base, &t.calls, 3);
    ck_assert_int_eq(t.ok, 3);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

struct threads_want {
    evexec_pool *pool;
    unsigned pool_threads;
    int process_threads;
};

static int threads_are(void *arg)
{
    struct threads_want *w = arg;
    return pool_stats(w->pool).threads == w->pool_threads &&
           (w->process_threads < 0 || count_threads() == w->process_threads);
}

START_TEST(resize_shrinking_interrupts_no_running_job)
{
    struct gate g;
    struct tally t;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;
    struct evexec_pool_stats s;
    int threads0 = threads_base();

    o.max_threads = 4;
    o.idle_timeout_ms = EVEXEC_IDLE_FOREVER; /* only the resize may end threads */
    pool = new_pool_o(&o);
    tally_init(&t);
    gate_init(&g, &t);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(evexec_submit(port, pool, park_work_stop, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 4);
    ck_assert_int_eq(count_threads(), threads0 + 4);

    ck_assert_int_eq(evexec_pool_resize(pool, 0, 1, 65536), 0);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.max_threads, 1);
    ck_assert_uint_eq(s.running, 4); /* nothing interrupted */
    ck_assert_uint_eq(s.threads, 4);
    run_nonblock(base, 5);
    ck_assert_int_eq(t.calls, 0);

    gate_release(&g, 4);
    run_until(base, &t.calls, 4);
    ck_assert_int_eq(t.ok, 4);
    ck_assert_ptr_eq(t.last_result, NULL); /* no stop flag was set */
    struct threads_want w = {pool, 1, threads0 + 1};
    wait_for(threads_are, &w);

    /* The new maximum holds: a second job waits for the one thread. */
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.threads, 1);
    ck_assert_uint_eq(s.running, 1);
    ck_assert_uint_eq(s.queued, 1);
    gate_release(&g, 1);
    gate_wait_entered(&g, 1);
    gate_release(&g, 1);
    run_until(base, &t.calls, 6);
    ck_assert_int_eq(t.ok, 6);
    ck_assert_int_eq(count_threads(), threads0 + 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(count_threads(), threads0);
    gate_destroy(&g);
}
END_TEST

START_TEST(resize_min_threads_starts_and_releases_threads)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;
    struct evexec_pool_stats s;
    int threads0 = threads_base();

    o.max_threads = 4;
    o.idle_timeout_ms = 1;
    pool = new_pool_o(&o);
    ck_assert_uint_eq(pool_stats(pool).threads, 0);
    ck_assert_int_eq(evexec_pool_resize(pool, 3, 4, 65536), 0);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.threads, 3);
    ck_assert_uint_eq(s.min_threads, 3);
    ck_assert_int_eq(count_threads(), threads0 + 3);

    /* Back to 0: the idle timeout reaps them again. */
    ck_assert_int_eq(evexec_pool_resize(pool, 0, 4, 65536), 0);
    struct threads_want w = {pool, 0, threads0};
    wait_for(threads_are, &w);
    ck_assert_uint_eq(pool_stats(pool).min_threads, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

START_TEST(resize_max_queued)
{
    struct gate g;
    struct tally t, tq, tr;
    evexec_pool *pool = new_pool(1, 0, 1);

    tally_init(&t);
    tally_init(&tq);
    tally_init(&tr);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tr, NULL), -EAGAIN);

    /* Raised: the same submit now succeeds. */
    ck_assert_int_eq(evexec_pool_resize(pool, 0, 1, 3), 0);
    ck_assert_uint_eq(pool_stats(pool).max_queued, 3);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tr, NULL), -EAGAIN);

    /* Lowered below the queue: every queued job stays, new ones fail. */
    ck_assert_int_eq(evexec_pool_resize(pool, 0, 1, 1), 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.queued, 3);
    ck_assert_uint_eq(s.max_queued, 1);
    ck_assert_uint_eq(s.cancelled, 0);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tr, NULL), -EAGAIN);
    ck_assert_uint_eq(pool_stats(pool).rejected, 3);

    gate_release(&g, 1);
    run_until(base, &tq.calls, 3);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(tq.ok, 3);
    /* Room again once the queue drained. */
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    run_until(base, &tq.calls, 4);
    run_nonblock(base, 5);
    ck_assert_int_eq(tr.calls, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(stats_report_the_current_limits)
{
    evexec_pool *pool = new_pool(3, 1, 7);
    struct evexec_pool_stats s = pool_stats(pool);

    ck_assert_uint_eq(s.max_threads, 3);
    ck_assert_uint_eq(s.min_threads, 1);
    ck_assert_uint_eq(s.max_queued, 7);
    ck_assert_int_eq(evexec_pool_free(pool), 0);

    pool = new_pool(0, 0, 0); /* the defaults */
    s = pool_stats(pool);
    ck_assert_uint_eq(s.max_threads, 4);
    ck_assert_uint_eq(s.min_threads, 0);
    ck_assert_uint_eq(s.max_queued, 65536);
    ck_assert_int_eq(evexec_pool_resize(pool, 2, 9, 100), 0);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.max_threads, 9);
    ck_assert_uint_eq(s.min_threads, 2);
    ck_assert_uint_eq(s.max_queued, 100);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

struct pool_and_tally {
    evexec_pool *pool;
    struct tally t;
};

static void *resize_from_worker(evexec_job *job, void *arg)
{
    (void)job;
    return (void *)(intptr_t)evexec_pool_resize(((struct pool_and_tally *)arg)->pool, 0, 2, 10);
}

static void pool_and_tally_done(int status, void *result, void *arg)
{
    tally_done(status, result, &((struct pool_and_tally *)arg)->t);
}

START_TEST(resize_errors)
{
    struct pool_and_tally pt;
    evexec_pool *pool = new_pool(2, 1, 5);
    struct evexec_pool_stats s;

    pt.pool = pool;
    tally_init(&pt.t);
    ck_assert_int_eq(evexec_pool_resize(NULL, 0, 1, 1), -EINVAL);
    ck_assert_int_eq(evexec_pool_resize(pool, 3, 2, 5), -EINVAL);   /* min > max */
    ck_assert_int_eq(evexec_pool_resize(pool, 0, 0, 5), -EINVAL);   /* max 0 */
    ck_assert_int_eq(evexec_pool_resize(pool, 0, EVEXEC_MAX_THREADS + 1, 5), -EINVAL);
    ck_assert_int_eq(evexec_pool_resize(pool, 0, 2, 0), -EINVAL);   /* max_queued 0 */
    ck_assert_int_eq(evexec_pool_resize(pool, 0, 2, (size_t)EVEXEC_MAX_QUEUED + 1), -EINVAL);
    s = pool_stats(pool); /* nothing changed */
    ck_assert_uint_eq(s.max_threads, 2);
    ck_assert_uint_eq(s.min_threads, 1);
    ck_assert_uint_eq(s.max_queued, 5);
    /* The bounds themselves are accepted. */
    ck_assert_int_eq(evexec_pool_resize(pool, 0, EVEXEC_MAX_THREADS, EVEXEC_MAX_QUEUED), 0);
    ck_assert_int_eq(evexec_pool_resize(pool, 1, 1, 1), 0);

    /* From one of the pool's own workers. */
    ck_assert_int_eq(evexec_submit(port, pool, resize_from_worker, pool_and_tally_done, &pt,
                                   NULL), 0);
    run_until(base, &pt.t.calls, 1);
    ck_assert_int_eq((int)(intptr_t)pt.t.last_result, 0);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.max_threads, 2);
    ck_assert_uint_eq(s.max_queued, 10);

    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(evexec_pool_resize(pool, 0, 2, 5), -ESHUTDOWN);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* 6. Per-worker state.                                                   */

enum { INIT_OK, INIT_FAIL_ALL, INIT_FAIL_FIRST, INIT_FAIL_AFTER_FIRST, INIT_NULL_STATE };

struct hooks {
    int mode;
    atomic_int init_calls, inits_ok, finis, fini_wrong;
};

struct wstate {
    pthread_t self;
    struct hooks *h;
};

static int hook_init(void *worker_arg, void **state)
{
    struct hooks *h = worker_arg;
    int n = atomic_fetch_add(&h->init_calls, 1) + 1;
    if (*state != NULL)
        return -1; /* "NULL until set" */
    if (h->mode == INIT_FAIL_ALL || (h->mode == INIT_FAIL_FIRST && n == 1) ||
        (h->mode == INIT_FAIL_AFTER_FIRST && n > 1))
        return -1;
    atomic_fetch_add(&h->inits_ok, 1);
    if (h->mode == INIT_NULL_STATE)
        return 0;
    struct wstate *w = malloc(sizeof *w);
    if (!w)
        return -1;
    w->self = pthread_self();
    w->h = h;
    *state = w;
    return 0;
}

static void hook_fini(void *state, void *worker_arg)
{
    struct hooks *h = worker_arg;
    struct wstate *w = state;
    if (h->mode == INIT_NULL_STATE ? w != NULL
                                   : (!w || w->h != h || !pthread_equal(w->self, pthread_self())))
        atomic_fetch_add(&h->fini_wrong, 1);
    atomic_fetch_add(&h->finis, 1);
    free(w);
}

static void hooks_opts(struct evexec_pool_opts *o, struct hooks *h, int mode)
{
    memset(h, 0, sizeof *h);
    h->mode = mode;
    atomic_init(&h->init_calls, 0);
    atomic_init(&h->inits_ok, 0);
    atomic_init(&h->finis, 0);
    atomic_init(&h->fini_wrong, 0);
    o->worker_init = hook_init;
    o->worker_fini = hook_fini;
    o->worker_arg = h;
}

/* What a work function saw of its worker state. */
struct seen {
    struct gate *g;     /* park on it, and count in its tally; or: */
    struct tally *t;    /* count here */
    void *state;
    pthread_t self;
    int state_is_mine;
    const evexec_job *job;
};

static void *state_work(evexec_job *job, void *arg)
{
    struct seen *sn = arg;
    struct wstate *w = evexec_worker_state(job);
    sn->state = w;
    sn->self = pthread_self();
    sn->state_is_mine = w && pthread_equal(w->self, pthread_self());
    sn->job = job;
    if (sn->g)
        park_work(job, sn->g);
    return w;
}

static void seen_done(int status, void *result, void *arg)
{
    struct seen *sn = arg;
    if (sn->g)
        gate_done(status, result, sn->g);
    else
        tally_done(status, result, sn->t);
}

START_TEST(worker_init_and_fini_once_per_thread_with_its_state)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct hooks h;
    struct gate g;
    struct tally t;
    struct seen sn[3];
    evexec_pool *pool;

    o.max_threads = 3;
    o.idle_timeout_ms = EVEXEC_IDLE_FOREVER;
    hooks_opts(&o, &h, INIT_OK);
    pool = new_pool_o(&o);
    tally_init(&t);
    gate_init(&g, &t);
    memset(sn, 0, sizeof sn);
    for (int i = 0; i < 3; i++) {
        sn[i].g = &g;
        ck_assert_int_eq(evexec_submit(port, pool, state_work, seen_done, &sn[i], NULL), 0);
    }
    gate_wait_entered(&g, 3);
    ck_assert_int_eq(atomic_load(&h.inits_ok), 3);
    ck_assert_int_eq(atomic_load(&h.finis), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_nonnull(sn[i].state);
        ck_assert_int_eq(sn[i].state_is_mine, 1);
        for (int j = 0; j < i; j++) {
            ck_assert(!pthread_equal(sn[i].self, sn[j].self));
            ck_assert_ptr_ne(sn[i].state, sn[j].state);
        }
        /* Not the worker running that job: NULL. */
        ck_assert_ptr_null(evexec_worker_state(sn[i].job));
    }
    ck_assert_ptr_null(evexec_worker_state(NULL));
    gate_release(&g, 3);
    run_until(base, &t.calls, 3);
    ck_assert_int_eq(t.ok, 3);

    /* More jobs on the same threads: no new init. */
    static struct seen more[20];
    memset(more, 0, sizeof more);
    for (int i = 0; i < 20; i++) {
        more[i].t = &t;
        ck_assert_int_eq(evexec_submit(port, pool, state_work, seen_done, &more[i], NULL), 0);
    }
    run_until(base, &t.calls, 23);
    ck_assert_int_eq(t.ok, 23);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(more[i].state_is_mine, 1);
        int known = 0;
        for (int j = 0; j < 3; j++)
            known += more[i].state == sn[j].state;
        ck_assert_int_eq(known, 1); /* one of the three threads' states */
    }

    unsigned started = (unsigned)pool_stats(pool).threads_started;
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(atomic_load(&h.init_calls), (int)started);
    ck_assert_int_eq(atomic_load(&h.inits_ok), (int)started);
    ck_assert_int_eq(atomic_load(&h.finis), atomic_load(&h.inits_ok));
    ck_assert_int_eq(atomic_load(&h.fini_wrong), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(fini_runs_when_idle_and_resized_threads_exit)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct hooks h;
    struct gate g;
    struct tally t;
    evexec_pool *pool;

    o.max_threads = 3;
    o.idle_timeout_ms = 1;
    hooks_opts(&o, &h, INIT_OK);
    pool = new_pool_o(&o);
    tally_init(&t);
    gate_init(&g, &t);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 3);
    gate_release(&g, 3);
    run_until(base, &t.calls, 3);
    /* Reaped by the idle timeout: each one's fini ran on its way out. */
    struct threads_want w = {pool, 0, -1};
    wait_for(threads_are, &w);
    ck_assert_int_eq(atomic_load(&h.finis), 3);
    ck_assert_int_eq(atomic_load(&h.fini_wrong), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(atomic_load(&h.finis), atomic_load(&h.inits_ok));
    gate_destroy(&g);
}
END_TEST

START_TEST(worker_state_is_null_without_a_hook_or_a_state)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct hooks h;
    struct tally t;
    evexec_pool *pool;

    struct seen sn;
    tally_init(&t);
    memset(&sn, 0, sizeof sn);
    sn.t = &t;
    pool = new_pool(1, 0, 0);
    ck_assert_int_eq(evexec_submit(port, pool, state_work, seen_done, &sn, NULL), 0);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(t.ok, 1);
    ck_assert_ptr_null(t.last_result);
    ck_assert_int_eq(evexec_pool_free(pool), 0);

    o.max_threads = 1;
    hooks_opts(&o, &h, INIT_NULL_STATE);
    pool = new_pool_o(&o);
    t.last_result = &t;
    ck_assert_int_eq(evexec_submit(port, pool, state_work, seen_done, &sn, NULL), 0);
    run_until(base, &t.calls, 2);
    ck_assert_int_eq(t.ok, 2);
    ck_assert_ptr_null(t.last_result);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(atomic_load(&h.inits_ok), 1);
    ck_assert_int_eq(atomic_load(&h.finis), 1);
    ck_assert_int_eq(atomic_load(&h.fini_wrong), 0);
}
END_TEST

static atomic_int ran_work;
static void *count_work(evexec_job *job, void *arg)
{
    (void)job;
    atomic_fetch_add(&ran_work, 1);
    return arg;
}

struct init_failures_want {
    evexec_pool *pool;
    struct hooks *h;
};

static int all_init_failures_counted(void *arg)
{
    struct init_failures_want *w = arg;
    struct evexec_pool_stats s = pool_stats(w->pool);
    return s.threads == 0 && s.worker_init_failed == (uint64_t)atomic_load(&w->h->init_calls);
}

/* No thread can start: every accepted job is delivered -ECANCELED, none is
 * left in the queue, no work function runs, no fini is called. */
START_TEST(worker_init_failing_everywhere_cancels_queued_jobs)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct hooks h;
    struct tally t;
    evexec_pool *pool;
    int accepted = 0;
    int threads0 = threads_base();

    o.max_threads = 2;
    hooks_opts(&o, &h, INIT_FAIL_ALL);
    pool = new_pool_o(&o);
    tally_init(&t);
    atomic_store(&ran_work, 0);
    ck_assert_int_eq(evexec_submit(port, pool, count_work, tally_done, &t, NULL), 0);
    accepted++;
    for (int i = 0; i < 4; i++) {
        int rc = evexec_submit(port, pool, count_work, tally_done, &t, NULL);
        ck_assert_msg(rc == 0 || rc == -EAGAIN, "submit: %s", evexec_errname(rc));
        accepted += rc == 0;
    }
    run_until(base, &t.calls, accepted);
    ck_assert_int_eq(t.cancelled, accepted);
    ck_assert_ptr_null(t.last_result);
    struct init_failures_want w = {pool, &h};
    wait_for(all_init_failures_counted, &w);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_ge(s.worker_init_failed, 1);
    ck_assert_uint_eq(s.queued, 0);
    ck_assert_uint_eq(s.running, 0);

    /* Later submits are still never stranded. */
    int rc = evexec_submit(port, pool, count_work, tally_done, &t, NULL);
    ck_assert_msg(rc == 0 || rc == -EAGAIN, "submit: %s", evexec_errname(rc));
    accepted += rc == 0;
    run_until(base, &t.calls, accepted);
    ck_assert_int_eq(t.cancelled, accepted);
    run_nonblock(base, 5);
    ck_assert_int_eq(t.calls, accepted);
    ck_assert_int_eq(atomic_load(&ran_work), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(atomic_load(&h.finis), 0);
    ck_assert_int_eq(atomic_load(&h.inits_ok), 0);
    ck_assert_int_eq(count_threads(), threads0);
}
END_TEST

/* With one thread allowed, the first fails: its job is cancelled; the next
 * thread starts fine and runs the next job. */
START_TEST(worker_init_failing_once_then_a_thread_works)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct hooks h;
    struct tally t;
    evexec_pool *pool;

    o.max_threads = 1;
    hooks_opts(&o, &h, INIT_FAIL_FIRST);
    pool = new_pool_o(&o);
    tally_init(&t);
    atomic_store(&ran_work, 0);
    ck_assert_int_eq(evexec_submit(port, pool, count_work, tally_done, &t, NULL), 0);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(t.cancelled, 1);
    ck_assert_int_eq(atomic_load(&ran_work), 0);
    ck_assert_uint_eq(pool_stats(pool).worker_init_failed, 1);

    ck_assert_int_eq(evexec_submit(port, pool, count_work, tally_done, &t, NULL), 0);
    run_until(base, &t.calls, 2);
    ck_assert_int_eq(t.ok, 1);
    ck_assert_int_eq(atomic_load(&ran_work), 1);
    ck_assert_uint_eq(pool_stats(pool).worker_init_failed, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(atomic_load(&h.init_calls), 2);
    ck_assert_int_eq(atomic_load(&h.finis), 1);
    ck_assert_int_eq(atomic_load(&h.fini_wrong), 0);
}
END_TEST

static int one_init_failure(void *arg)
{
    return pool_stats(arg).worker_init_failed >= 1;
}

/* A thread is left: the queued job waits for it instead of being
 * cancelled. */
START_TEST(worker_init_failing_with_a_thread_left_keeps_the_queue)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct hooks h;
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool;

    o.max_threads = 2;
    o.idle_timeout_ms = EVEXEC_IDLE_FOREVER;
    hooks_opts(&o, &h, INIT_FAIL_AFTER_FIRST);
    pool = new_pool_o(&o);
    tally_init(&t);
    tally_init(&tq);
    gate_init(&g, &t);
    atomic_store(&ran_work, 0);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_submit(port, pool, count_work, tally_done, &tq, NULL), 0);
    wait_for(one_init_failure, pool); /* the second thread tried and failed */
    run_nonblock(base, 5);
    ck_assert_int_eq(tq.calls, 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.queued, 1);
    ck_assert_uint_eq(s.cancelled, 0);

    gate_release(&g, 1);
    run_until(base, &tq.calls, 1);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(tq.ok, 1);
    ck_assert_int_eq(atomic_load(&ran_work), 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(atomic_load(&h.inits_ok), 1);
    ck_assert_int_eq(atomic_load(&h.finis), 1);
    ck_assert_int_eq(atomic_load(&h.fini_wrong), 0);
    gate_destroy(&g);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* 7. Counters and histograms.                                            */

START_TEST(stats_count_queued_and_running_per_class)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(3, 0, 0);
    struct evexec_pool_stats s;

    tally_init(&t);
    tally_init(&tq);
    gate_init(&g, &t);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.queued_high + s.queued_normal + s.queued_low, 0);
    ck_assert_uint_eq(s.running_high + s.running_normal + s.running_low, 0);
    ck_assert_uint_eq(s.timed_out, 0);
    ck_assert_uint_eq(s.dropped, 0);
    ck_assert_uint_eq(s.worker_init_failed, 0);

    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_HIGH, park_work, gate_done, &g, NULL), 0);
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_LOW, park_work, gate_done, &g, NULL), 0);
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_LOW, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 3);
    static const int q[] = {EVEXEC_PRIO_HIGH, EVEXEC_PRIO_HIGH, EVEXEC_PRIO_NORMAL,
                            EVEXEC_PRIO_NORMAL, EVEXEC_PRIO_NORMAL, EVEXEC_PRIO_LOW};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        ck_assert_int_eq(submit_prio(pool, q[i], echo_work, tally_done, &tq, NULL), 0);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.running, 3);
    ck_assert_uint_eq(s.running_high, 1);
    ck_assert_uint_eq(s.running_normal, 0);
    ck_assert_uint_eq(s.running_low, 2);
    ck_assert_uint_eq(s.queued, 6);
    ck_assert_uint_eq(s.queued_high, 2);
    ck_assert_uint_eq(s.queued_normal, 3);
    ck_assert_uint_eq(s.queued_low, 1);
    ck_assert_uint_eq(s.timed_out, 0);
    ck_assert_uint_eq(s.dropped, 0);

    gate_release(&g, 3);
    run_until(base, &tq.calls, 6);
    run_until(base, &t.calls, 3);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.queued_high + s.queued_normal + s.queued_low, 0);
    ck_assert_uint_eq(s.running_high + s.running_normal + s.running_low, s.running);
    ck_assert_uint_eq(s.completed, 9);
    ck_assert_uint_eq(s.timed_out, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

/* A struct evexec_pool_stats of the first version (0.1) is still filled. */
struct pool_stats_v1 {
    size_t size;
    unsigned threads, idle, running;
    size_t queued;
    uint64_t submitted, completed, cancelled, rejected, threads_started;
};

START_TEST(stats_of_the_old_size_are_still_filled)
{
    evexec_pool *pool = new_pool(2, 1, 0);
    union {
        struct pool_stats_v1 v1;
        struct evexec_pool_stats full;
    } u;

    memset(&u, 0xa5, sizeof u);
    u.v1.size = sizeof u.v1;
    ck_assert_int_eq(evexec_pool_stats(pool, &u.full), 0);
    ck_assert_uint_eq(u.v1.threads, 1);
    ck_assert_uint_eq(u.v1.submitted, 0);
    /* Bytes past the old size are not written. */
    const unsigned char *tail = (const unsigned char *)&u + sizeof u.v1;
    for (size_t i = 0; i < sizeof u - sizeof u.v1; i++)
        ck_assert_uint_eq(tail[i], 0xa5);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

static uint64_t hist_sum(const uint64_t *h)
{
    uint64_t n = 0;
    for (int i = 0; i < EVEXEC_HIST_BUCKETS; i++)
        n += h[i];
    return n;
}

static struct evexec_pool_histograms hist_of(evexec_pool *pool)
{
    struct evexec_pool_histograms h;
    memset(&h, 0, sizeof h);
    h.size = sizeof h;
    ck_assert_int_eq(evexec_pool_histograms(pool, &h), 0);
    return h;
}

static evexec_pool *hist_pool(unsigned max)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    o.max_threads = max;
    o.flags = EVEXEC_POOL_HISTOGRAMS;
    return new_pool_o(&o);
}

START_TEST(histograms_need_the_flag_and_a_full_size)
{
    struct evexec_pool_histograms h;
    evexec_pool *pool = new_pool(1, 0, 0);

    memset(&h, 0, sizeof h);
    h.size = sizeof h;
    ck_assert_int_eq(evexec_pool_histograms(pool, &h), -ENOTSUP);
    ck_assert_int_eq(evexec_pool_free(pool), 0);

    pool = hist_pool(1);
    ck_assert_int_eq(evexec_pool_histograms(NULL, &h), -EINVAL);
    ck_assert_int_eq(evexec_pool_histograms(pool, NULL), -EINVAL);
    h.size = sizeof h - 1;
    ck_assert_int_eq(evexec_pool_histograms(pool, &h), -EINVAL);
    h.size = 0;
    ck_assert_int_eq(evexec_pool_histograms(pool, &h), -EINVAL);
    h = hist_of(pool); /* a new pool: all zero */
    ck_assert_uint_eq(hist_sum(h.wait), 0);
    ck_assert_uint_eq(hist_sum(h.run), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);

    /* Unknown flags are refused. */
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *p2 = NULL;
    o.flags = 0x80000000u;
    ck_assert_int_eq(evexec_pool_new(&p2, &o), -EINVAL);
    ck_assert_ptr_null(p2);
}
END_TEST

START_TEST(histograms_count_every_job_that_ran_once)
{
    enum { N = 200 };
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = hist_pool(2);
    evexec_job_id ids[4];

    tally_init(&t);
    tally_init(&tq);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    run_until(base, &tq.calls, N);
    struct evexec_pool_histograms h = hist_of(pool);
    ck_assert_uint_eq(hist_sum(h.wait), N);
    ck_assert_uint_eq(hist_sum(h.run), N);

    /* Cancelled jobs never ran and are not counted. */
    ck_assert_int_eq(evexec_pool_resize(pool, 0, 1, 65536), 0);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, &ids[i]), 0);
    ck_assert_int_eq(evexec_cancel(port, ids[1]), 0);
    ck_assert_int_eq(evexec_cancel(port, ids[2]), 0);
    gate_release(&g, 1);
    run_until(base, &tq.calls, N + 4);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(tq.cancelled, 2);
    h = hist_of(pool);
    ck_assert_uint_eq(hist_sum(h.wait), N + 3);
    ck_assert_uint_eq(hist_sum(h.run), N + 3);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

struct timed {
    struct tally t;
    uint64_t inner_ns;  /* the work function's own measure */
};

static void *sleep_work(evexec_job *job, void *arg)
{
    struct timed *tm = arg;
    struct timespec a, b, d = {0, 20 * 1000 * 1000};
    (void)job;
    clock_gettime(CLOCK_MONOTONIC, &a);
    while (nanosleep(&d, &d) < 0 && errno == EINTR)
        ;
    clock_gettime(CLOCK_MONOTONIC, &b);
    tm->inner_ns = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)b.tv_nsec -
                   (uint64_t)a.tv_nsec;
    return NULL;
}

static void timed_done(int status, void *result, void *arg)
{
    tally_done(status, result, &((struct timed *)arg)->t);
}

START_TEST(a_20ms_job_lands_in_the_bucket_of_its_run_time)
{
    struct timed tm;
    evexec_pool *pool = hist_pool(1);

    tally_init(&tm.t);
    tm.inner_ns = 0;
    ck_assert_int_eq(evexec_submit(port, pool, sleep_work, timed_done, &tm, NULL), 0);
    run_until(base, &tm.t.calls, 1);
    ck_assert_int_eq(tm.t.ok, 1);
    uint64_t inner_ns = tm.inner_ns;
    ck_assert_uint_ge(inner_ns, 20000000u);
    struct evexec_pool_histograms h = hist_of(pool);
    ck_assert_uint_eq(hist_sum(h.run), 1);
    int bucket = -1;
    for (int i = 0; i < EVEXEC_HIST_BUCKETS; i++)
        if (h.run[i])
            bucket = i;
    /* The bucket of the time measured inside the work function, or the next
     * one when that time is within 10% of the bucket's upper bound (the
     * pool measures a little more than the function does). */
    int want = 63 - __builtin_clzll(inner_ns);
    ck_assert_msg(bucket == want || (bucket == want + 1 && inner_ns * 10 > (9ull << (want + 1))),
                  "run time %llu ns counted in bucket %d [%llu, %llu) ns",
                  (unsigned long long)inner_ns, bucket,
                  bucket > 0 ? 1ull << bucket : 0ull, 1ull << (bucket + 1));
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* 8. The default pool.                                                   */

static void *name_work(evexec_job *job, void *arg)
{
    char *name = calloc(1, 16);
    (void)job;
    (void)arg;
    if (name && pthread_getname_np(pthread_self(), name, 16) != 0)
        name[0] = '\0';
    return name;
}

static char default_name[16];
static int default_names;
static void name_done(int status, void *result, void *arg)
{
    (void)arg;
    ck_assert_int_eq(status, 0);
    snprintf(default_name, sizeof default_name, "%s", result ? (char *)result : "");
    free(result);
    default_names++;
}

START_TEST(default_pool_is_made_once_and_serves_null_pools)
{
    evexec_pool *dp = NULL, *dp2 = NULL;
    struct tally t;
    struct ts_call c;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want_max = cpus + 4 < 32 ? (unsigned)(cpus + 4) : 32;
    int threads0 = threads_base();

    tally_init(&t);
    ck_assert_int_gt(cpus, 0);
    ck_assert_int_eq(evexec_port_default_pool(port, &dp), 0);
    ck_assert_ptr_nonnull(dp);
    ck_assert_int_eq(evexec_port_default_pool(port, &dp2), 0);
    ck_assert_ptr_eq(dp, dp2);
    struct evexec_pool_stats s = pool_stats(dp);
    ck_assert_uint_eq(s.max_threads, want_max);
    ck_assert_uint_eq(s.min_threads, 0);
    ck_assert_uint_eq(s.max_queued, 65536);
    ck_assert_uint_eq(s.threads, 0); /* none until work arrives */
    ck_assert_uint_eq(s.submitted, 0);

    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(evexec_submit(port, NULL, echo_work, tally_done, &t, NULL), 0);
    ck_assert_int_eq(submit_prio(NULL, EVEXEC_PRIO_LOW, echo_work, tally_done, &t, NULL), 0);
    run_until(base, &t.calls, 6);
    ck_assert_int_eq(t.ok, 6);
    ck_assert_int_eq(t.wrong_thread, 0);
    s = pool_stats(dp);
    ck_assert_uint_eq(s.submitted, 6);
    ck_assert_uint_eq(s.completed, 6);
    ck_assert_uint_ge(s.threads_started, 1);

    /* From a foreign thread too. */
    ts_start(&c, NULL, 0, &t);
    ts_join(&c);
    ck_assert_int_eq(c.rc, 0);
    run_until(base, &t.calls, 7);
    ck_assert_uint_eq(pool_stats(dp).submitted, 7);

    /* Its workers' names. */
    default_names = 0;
    ck_assert_int_eq(evexec_submit(port, NULL, name_work, name_done, NULL, NULL), 0);
    run_until(base, &default_names, 1);
    ck_assert_msg(strncmp(default_name, "evexec-def-", 11) == 0 && default_name[11] >= '1' &&
                      default_name[11] <= '9',
                  "default pool worker named \"%s\"", default_name);

    /* Released with the port: no thread left once the port is gone. */
    ck_assert_int_gt(count_threads(), threads0);
    ck_assert_int_eq(evexec_port_free(port), 0);
    event_base_dispatch(base);
    ck_assert_int_eq(count_threads(), threads0);
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0); /* for teardown */

    /* A new port has a new default pool (it may reuse the address, so
     * compare its counters). */
    ck_assert_int_eq(evexec_port_default_pool(port, &dp), 0);
    ck_assert_uint_eq(pool_stats(dp).submitted, 0);
}
END_TEST

static int late_rc_pool, late_rc_submit, late_calls;
static void late_done(int status, void *result, void *arg)
{
    evexec_pool *p = (evexec_pool *)&late_calls;
    (void)result;
    gate_done(status, result, arg);
    late_rc_pool = evexec_port_default_pool(port, &p);
    ck_assert_ptr_eq(p, (evexec_pool *)&late_calls); /* untouched on error */
    late_rc_submit = evexec_submit(port, NULL, echo_work, NULL, NULL, NULL);
    late_calls++;
}

START_TEST(default_pool_goes_with_a_port_freed_while_it_works)
{
    struct gate g;
    struct tally t;
    evexec_pool *dp;
    int threads0 = threads_base();

    tally_init(&t);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_port_default_pool(port, &dp), 0);
    ck_assert_int_eq(evexec_submit(port, NULL, park_work_stop, late_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    late_calls = 0;
    ck_assert_int_eq(evexec_port_free(port), 0);  /* deferred: a job runs */
    gate_release(&g, 1);
    event_base_dispatch(base);                    /* delivers it, then the port goes */
    ck_assert_int_eq(late_calls, 1);
    ck_assert_int_eq(t.ok, 1);
    ck_assert_ptr_eq(t.last_result, (void *)1);   /* its stop flag was set */
    ck_assert_int_eq(late_rc_pool, -ESHUTDOWN);
    ck_assert_int_eq(late_rc_submit, -ESHUTDOWN);
    ck_assert_int_eq(count_threads(), threads0);
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0); /* for teardown */
    gate_destroy(&g);
}
END_TEST

START_TEST(default_pool_errors)
{
    evexec_pool *dp = (evexec_pool *)&dp;

    ck_assert_int_eq(evexec_port_default_pool(NULL, &dp), -EINVAL);
    ck_assert_ptr_eq(dp, (evexec_pool *)&dp);
    ck_assert_int_eq(evexec_port_default_pool(port, NULL), -EINVAL);
    /* A NULL pool with a NULL port is still a NULL port. */
    ck_assert_int_eq(evexec_submit(NULL, NULL, echo_work, NULL, NULL, NULL), -EINVAL);
    ck_assert_int_eq(evexec_submit(port, NULL, NULL, NULL, NULL, NULL), -EINVAL);
}
END_TEST

/* ---------------------------------------------------------------------- */

static Suite *features_suite(void)
{
    Suite *s = suite_create("features");
    TCase *tc;

    tc = tcase_create("priorities");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, queued_jobs_start_by_class_then_fifo);
    tcase_add_test(tc, a_passed_over_class_goes_next_after_eight);
    tcase_add_test(tc, bad_priority_is_einval_without_callback);
    suite_add_tcase(s, tc);

    tc = tcase_create("class-limits");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, class_limit_caps_running_jobs_of_that_class_only);
    tcase_add_test(tc, class_limits_from_opts_apply_to_each_class);
    tcase_add_test(tc, class_limit_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("overflow");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, overflow_reject_is_the_default);
    tcase_add_test(tc, drop_oldest_cancels_the_oldest_and_takes_the_new);
    tcase_add_test(tc, drop_oldest_picks_the_lowest_class_not_above_the_new_job);
    tcase_add_test(tc, bad_overflow_is_einval);
    suite_add_tcase(s, tc);

    tc = tcase_create("blocking-submit");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, threadsafe_wait_zero_on_a_full_queue_is_eagain);
    tcase_add_test(tc, threadsafe_wait_times_out_on_a_full_queue);
    tcase_add_test(tc, threadsafe_wait_succeeds_when_a_worker_makes_room);
    tcase_add_test(tc, threadsafe_wait_succeeds_when_resize_makes_room);
    tcase_add_test(tc, threadsafe_wait_ends_with_eshutdown_on_shutdown);
    tcase_add_test(tc, threadsafe_wait_is_edeadlk_where_it_would_wait_on_itself);
    tcase_add_test(tc, threadsafe_bad_options);
    suite_add_tcase(s, tc);

    tc = tcase_create("resize");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, resize_growing_max_starts_threads_for_queued_jobs);
    tcase_add_test(tc, resize_shrinking_interrupts_no_running_job);
    tcase_add_test(tc, resize_min_threads_starts_and_releases_threads);
    tcase_add_test(tc, resize_max_queued);
    tcase_add_test(tc, stats_report_the_current_limits);
    tcase_add_test(tc, resize_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("worker-state");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, worker_init_and_fini_once_per_thread_with_its_state);
    tcase_add_test(tc, fini_runs_when_idle_and_resized_threads_exit);
    tcase_add_test(tc, worker_state_is_null_without_a_hook_or_a_state);
    tcase_add_test(tc, worker_init_failing_everywhere_cancels_queued_jobs);
    tcase_add_test(tc, worker_init_failing_once_then_a_thread_works);
    tcase_add_test(tc, worker_init_failing_with_a_thread_left_keeps_the_queue);
    suite_add_tcase(s, tc);

    tc = tcase_create("metrics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, stats_count_queued_and_running_per_class);
    tcase_add_test(tc, stats_of_the_old_size_are_still_filled);
    tcase_add_test(tc, histograms_need_the_flag_and_a_full_size);
    tcase_add_test(tc, histograms_count_every_job_that_ran_once);
    tcase_add_test(tc, a_20ms_job_lands_in_the_bucket_of_its_run_time);
    suite_add_tcase(s, tc);

    tc = tcase_create("default-pool");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, default_pool_is_made_once_and_serves_null_pools);
    tcase_add_test(tc, default_pool_goes_with_a_port_freed_while_it_works);
    tcase_add_test(tc, default_pool_errors);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(features_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
