/* SPDX-License-Identifier: MIT */
/*
 * The pool's queue: its bound (a full queue is -EAGAIN at once), priority
 * classes and anti-starvation, per-class limits, overflow policies
 * (reject, drop-oldest) and blocking any-thread submits.
 *
 * Queue states are made deterministic by parking workers on gates; a thread
 * blocked inside evexec_submit_threadsafe() is recognised by its state in
 * /proc (sleeping), never by sleeping ourselves.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

/* ---------------------------------------------------------------------- */
/* Invariant 4: a rejected submission gets no callback.                   */

START_TEST(full_queue_is_eagain_at_once)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(1, 0, 2);

    tally_init(&tq);
    park_n(pool, park_work, &g, &t, 1);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), -EAGAIN);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), -EAGAIN);
    ck_assert_uint_eq(pool_stats(pool).rejected, 2);
    ck_assert_uint_eq(port_stats(fx.port).outstanding, 3);
    gate_release(&g, 1);
    run_until(fx.base, &tq.calls, 2);
    run_until(fx.base, &t.calls, 1);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(tq.calls, 2);
    /* Room again. */
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    run_until(fx.base, &tq.calls, 3);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

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
/* Priorities.                                                            */

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
    park_n(pool, park_work, &g, &t, 1);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(submit_prio(pool, prio[i], rec_work, rec_done, &recs[i + 1], NULL), 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.queued, N);
    ck_assert_uint_eq(s.queued_high, 3);
    ck_assert_uint_eq(s.queued_normal, 3);
    ck_assert_uint_eq(s.queued_low, 3);

    gate_release(&g, 1);
    run_until(fx.base, &recs_delivered, N);
    run_until(fx.base, &t.calls, 1);
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
        park_n(pool, park_work, &g, &t, 1);
        ck_assert_int_eq(submit_prio(pool, pairs[p][0], rec_work, rec_done, &recs[0], NULL), 0);
        for (int i = 1; i <= FLOOD; i++)
            ck_assert_int_eq(submit_prio(pool, pairs[p][1], rec_work, rec_done, &recs[i], NULL),
                             0);
        gate_release(&g, 1);
        run_until(fx.base, &recs_delivered, FLOOD + 1);
        run_until(fx.base, &t.calls, 1);

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
        ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &jo, &id),
                         -EINVAL);
        ck_assert_uint_eq(id, 77); /* untouched on error */
        ck_assert_int_eq(evexec_submit_threadsafe(fx.port, pool, echo_work, tally_done, &t, &jo),
                         -EINVAL);
    }
    /* The three classes are accepted. */
    for (int prio = EVEXEC_PRIO_HIGH; prio <= EVEXEC_PRIO_LOW; prio++)
        ck_assert_int_eq(submit_prio(pool, prio, echo_work, tally_done, &t, NULL), 0);
    run_until(fx.base, &t.calls, 3);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(t.calls, 3);
    ck_assert_int_eq(t.ok, 3);
    ck_assert_uint_eq(pool_stats(pool).submitted, 3);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Per-class limits.                                                      */

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
    ck_assert_int_eq(evexec_submit(fx.port, pool, park_work, gate_done, &gn, NULL), 0);
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
    run_until(fx.base, &t.calls, 1);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.running_low, 1);
    ck_assert_uint_eq(s.queued_low, 2);
    /* The next finishing lets exactly one more start. */
    atomic_store(&low.max, 1);
    gate_release(&low.g, 1);
    gate_wait_entered(&low.g, 1);
    run_until(fx.base, &t.calls, 2);
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
    run_until(fx.base, &t.calls, 4);
    run_until(fx.base, &tn.calls, 1);
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
    run_until(fx.base, &t.calls, 6);
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
/* Overflow.                                                              */

START_TEST(overflow_reject_is_the_default)
{
    struct gate g;
    struct tally t, tq, tr;
    evexec_pool *pool = new_pool(1, 0, 2);
    struct evexec_pool_stats s;

    tally_init(&tq);
    tally_init(&tr);
    park_n(pool, park_work, &g, &t, 1);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tr, NULL), -EAGAIN);
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_HIGH, echo_work, tally_done, &tr, NULL),
                     -EAGAIN);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.rejected, 2);
    ck_assert_uint_eq(s.dropped, 0);
    ck_assert_uint_eq(s.cancelled, 0);
    ck_assert_uint_eq(s.queued, 2);
    gate_release(&g, 1);
    run_until(fx.base, &tq.calls, 2);
    run_until(fx.base, &t.calls, 1);
    run_nonblock(fx.base, 5);
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
    park_n(pool, park_work, &g, &t, 1);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, rec_work, rec_done, &recs[i], NULL), 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, rec_work, rec_done, &recs[4], NULL), 0);
    ck_assert_int_eq(recs_delivered, 0); /* never inside the submit */
    s = pool_stats(pool);
    ck_assert_uint_eq(s.queued, 3);
    ck_assert_uint_eq(s.dropped, 1);
    ck_assert_uint_eq(s.cancelled, 1);
    ck_assert_uint_eq(s.rejected, 0);
    ck_assert_uint_eq(s.submitted, 5);
    /* Delivered while the only worker is still parked. */
    run_until(fx.base, &recs_delivered, 1);
    ck_assert_int_eq(recs[1].delivered, 1);
    ck_assert_int_eq(recs[1].status, -ECANCELED);
    ck_assert_ptr_null(recs[1].result);

    gate_release(&g, 1);
    run_until(fx.base, &recs_delivered, 4);
    run_until(fx.base, &t.calls, 1);
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
    park_n(pool, park_work, &g, &t, 1);
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_HIGH, rec_work, rec_done, &recs[H1], NULL), 0);
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_LOW, rec_work, rec_done, &recs[L1], NULL), 0);
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_NORMAL, rec_work, rec_done, &recs[N1], NULL),
                     0);
    /* Full: [H1 L1 N1]. A NORMAL job drops the LOW one, the lowest class. */
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_NORMAL, rec_work, rec_done, &recs[N2], NULL),
                     0);
    run_until(fx.base, &recs_delivered, 1);
    ck_assert_int_eq(recs[L1].status, -ECANCELED);
    /* [H1 N1 N2]: every queued job is above LOW: a LOW job is refused. */
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_LOW, rec_work, rec_done, &recs[L2], NULL),
                     -EAGAIN);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.rejected, 1);
    ck_assert_uint_eq(s.dropped, 1);
    /* A HIGH job drops the oldest of the lowest class queued: N1. */
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_HIGH, rec_work, rec_done, &recs[H2], NULL), 0);
    run_until(fx.base, &recs_delivered, 2);
    ck_assert_int_eq(recs[N1].status, -ECANCELED);
    /* [H1 N2 H2]: a NORMAL job drops N2, not a HIGH one. */
    ck_assert_int_eq(submit_prio(pool, EVEXEC_PRIO_NORMAL, rec_work, rec_done, &recs[N3], NULL),
                     0);
    run_until(fx.base, &recs_delivered, 3);
    ck_assert_int_eq(recs[N2].status, -ECANCELED);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.dropped, 3);
    ck_assert_uint_eq(s.cancelled, 3);
    ck_assert_uint_eq(s.queued_high, 2);
    ck_assert_uint_eq(s.queued_normal, 1);
    ck_assert_uint_eq(s.queued_low, 0);

    gate_release(&g, 1);
    run_until(fx.base, &recs_delivered, 6);
    run_until(fx.base, &t.calls, 1);
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
/* Blocking submits from any thread.                                      */

/* 1 once the thread sleeps in the kernel (blocked in the submit). */
static int ts_blocked(void *arg)
{
    struct ts_waiter *c = arg;
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
    ck_assert_int_eq(evexec_submit(fx.port, fp->pool, park_work, gate_done, &fp->g, NULL), 0);
    gate_wait_entered(&fp->g, 1);
    ck_assert_int_eq(evexec_submit(fx.port, fp->pool, echo_work, tally_done, &fp->tq, NULL), 0);
    ck_assert_uint_eq(pool_stats(fp->pool).queued, 1);
}

static void full_pool_finish(struct full_pool *fp)
{
    gate_release(&fp->g, 1);
    run_until(fx.base, &fp->t.calls, 1);
    run_until(fx.base, &fp->tq.calls, 1);
    ck_assert_int_eq(evexec_pool_free(fp->pool), 0);
    gate_destroy(&fp->g);
}

START_TEST(threadsafe_wait_zero_on_a_full_queue_is_eagain)
{
    struct full_pool fp;
    struct tally ts;
    struct ts_waiter c;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;

    full_pool_init(&fp);
    tally_init(&ts);
    ts_start(&c, fp.pool, 0, &ts);
    ts_join(&c);
    ck_assert_int_eq(c.rc, -EAGAIN);
    /* On the loop thread too: wait_ms 0 never blocks, so it is allowed. */
    ck_assert_int_eq(evexec_submit_threadsafe(fx.port, fp.pool, echo_work, tally_done, &ts, &jo),
                     -EAGAIN);
    ck_assert_int_eq(evexec_submit_threadsafe(fx.port, fp.pool, echo_work, tally_done, &ts, NULL),
                     -EAGAIN);
    ck_assert_uint_eq(pool_stats(fp.pool).rejected, 3);
    full_pool_finish(&fp);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(ts.calls, 0);
}
END_TEST

START_TEST(threadsafe_wait_times_out_on_a_full_queue)
{
    struct full_pool fp;
    struct tally ts;
    struct ts_waiter c;

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
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(ts.calls, 0);
}
END_TEST

START_TEST(threadsafe_wait_succeeds_when_a_worker_makes_room)
{
    static const int waits[] = {EVEXEC_WAIT_FOREVER, 10000};

    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        struct full_pool fp;
        struct tally ts;
        struct ts_waiter c;

        full_pool_init(&fp);
        tally_init(&ts);
        ts_start(&c, fp.pool, waits[i], &ts);
        wait_for(ts_blocked, &c);
        ck_assert_int_eq(ts.calls, 0);
        gate_release(&fp.g, 1); /* the worker takes the queued job: room */
        ts_join(&c);
        ck_assert_int_eq(c.rc, 0);
        run_until(fx.base, &ts.calls, 1);
        ck_assert_int_eq(ts.ok, 1);
        ck_assert_int_eq(ts.wrong_thread, 0);
        run_until(fx.base, &fp.t.calls, 1);
        run_until(fx.base, &fp.tq.calls, 1);
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
    struct ts_waiter c;

    full_pool_init(&fp);
    tally_init(&ts);
    ts_start(&c, fp.pool, EVEXEC_WAIT_FOREVER, &ts);
    wait_for(ts_blocked, &c);
    ck_assert_int_eq(evexec_pool_resize(fp.pool, 0, 1, 2), 0);
    ts_join(&c);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_uint_eq(pool_stats(fp.pool).queued, 2);
    full_pool_finish(&fp);
    run_until(fx.base, &ts.calls, 1);
    ck_assert_int_eq(ts.ok, 1);
}
END_TEST

START_TEST(threadsafe_wait_ends_with_eshutdown_on_shutdown)
{
    static const int modes[] = {EVEXEC_DRAIN, EVEXEC_CANCEL};

    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        struct full_pool fp;
        struct tally ts;
        struct ts_waiter c;

        full_pool_init(&fp);
        tally_init(&ts);
        ts_start(&c, fp.pool, EVEXEC_WAIT_FOREVER, &ts);
        wait_for(ts_blocked, &c);
        ck_assert_int_eq(evexec_pool_shutdown(fp.pool, modes[i]), 0);
        ts_join(&c);
        ck_assert_int_eq(c.rc, -ESHUTDOWN);
        gate_release(&fp.g, 1);
        run_until(fx.base, &fp.t.calls, 1);
        run_until(fx.base, &fp.tq.calls, 1);
        ck_assert_int_eq(fp.tq.calls, 1);
        if (modes[i] == EVEXEC_DRAIN)
            ck_assert_int_eq(fp.tq.ok, 1);
        else
            ck_assert_int_eq(fp.tq.cancelled, 1);
        ck_assert_int_eq(evexec_pool_free(fp.pool), 0);
        gate_destroy(&fp.g);
        run_nonblock(fx.base, 5);
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
    return (void *)(intptr_t)evexec_submit_threadsafe(fx.port, w->target, echo_work, tally_done,
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
    ck_assert_int_eq(evexec_submit_threadsafe(fx.port, fp.pool, echo_work, tally_done, &ts, &jo),
                     -EDEADLK);
    jo.wait_ms = EVEXEC_WAIT_FOREVER;
    ck_assert_int_eq(evexec_submit_threadsafe(fx.port, fp.pool, echo_work, tally_done, &ts, &jo),
                     -EDEADLK);
    ck_assert_int_eq(evexec_submit_threadsafe(fx.port, pool, echo_work, tally_done, &ts, &jo),
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
        ck_assert_int_eq(evexec_submit(fx.port, pool, rc_threadsafe_work, rc_threadsafe_done, &w,
                                       NULL), 0);
        run_until(fx.base, &w.outer.calls, 1);
        ck_assert_int_eq(w.outer.ok, 1);
        ck_assert_int_eq((int)(intptr_t)w.outer.last_result, -EDEADLK);
    }

    /* A worker of another pool may wait for this one. */
    memset(&w, 0, sizeof w);
    w.target = pool;
    w.t = &ts;
    w.wait_ms = 1000;
    tally_init(&w.outer);
    ck_assert_int_eq(evexec_submit(fx.port, other, rc_threadsafe_work, rc_threadsafe_done, &w, NULL),
                     0);
    run_until(fx.base, &w.outer.calls, 1);
    ck_assert_int_eq((int)(intptr_t)w.outer.last_result, 0);
    run_until(fx.base, &ts.calls, 1);
    ck_assert_int_eq(ts.ok, 1);
    ck_assert_int_eq(ts.wrong_thread, 0);
    run_nonblock(fx.base, 5);
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
    ck_assert_int_eq(evexec_submit_threadsafe(fx.port, pool, echo_work, tally_done, &t, &jo),
                     -EINVAL);
    jo.wait_ms = 0;
    jo.timeout_ms = 100;
    ck_assert_int_eq(evexec_submit_threadsafe(fx.port, pool, echo_work, tally_done, &t, &jo),
                     -EINVAL);
    jo.timeout_ms = 0;
    ck_assert_int_eq(evexec_submit_threadsafe(NULL, pool, echo_work, tally_done, &t, &jo),
                     -EINVAL);
    ck_assert_int_eq(evexec_submit_threadsafe(fx.port, pool, NULL, tally_done, &t, &jo), -EINVAL);
    /* evexec_submit_ex() never blocks: any wait_ms is refused there. */
    jo.wait_ms = 10;
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &jo, NULL), -EINVAL);
    jo.wait_ms = EVEXEC_WAIT_FOREVER;
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &jo, NULL), -EINVAL);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(t.calls, 0);
    ck_assert_uint_eq(pool_stats(pool).submitted, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

static Suite *queue_suite(void)
{
    Suite *s = suite_create("queue");
    TCase *tc;

    tc = add_tcase(s, "bound", 30, FX_PORT);
    tcase_add_test(tc, full_queue_is_eagain_at_once);

    tc = add_tcase(s, "priorities", 30, FX_PORT);
    tcase_add_test(tc, queued_jobs_start_by_class_then_fifo);
    tcase_add_test(tc, a_passed_over_class_goes_next_after_eight);
    tcase_add_test(tc, bad_priority_is_einval_without_callback);

    tc = add_tcase(s, "class-limits", 30, FX_PORT);
    tcase_add_test(tc, class_limit_caps_running_jobs_of_that_class_only);
    tcase_add_test(tc, class_limits_from_opts_apply_to_each_class);
    tcase_add_test(tc, class_limit_errors);

    tc = add_tcase(s, "overflow", 30, FX_PORT);
    tcase_add_test(tc, overflow_reject_is_the_default);
    tcase_add_test(tc, drop_oldest_cancels_the_oldest_and_takes_the_new);
    tcase_add_test(tc, drop_oldest_picks_the_lowest_class_not_above_the_new_job);
    tcase_add_test(tc, bad_overflow_is_einval);

    tc = add_tcase(s, "blocking-submit", 30, FX_PORT);
    tcase_add_test(tc, threadsafe_wait_zero_on_a_full_queue_is_eagain);
    tcase_add_test(tc, threadsafe_wait_times_out_on_a_full_queue);
    tcase_add_test(tc, threadsafe_wait_succeeds_when_a_worker_makes_room);
    tcase_add_test(tc, threadsafe_wait_succeeds_when_resize_makes_room);
    tcase_add_test(tc, threadsafe_wait_ends_with_eshutdown_on_shutdown);
    tcase_add_test(tc, threadsafe_wait_is_edeadlk_where_it_would_wait_on_itself);
    tcase_add_test(tc, threadsafe_bad_options);
    return s;
}

int main(void)
{
    return run_suite(queue_suite());
}
