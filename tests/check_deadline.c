/* SPDX-License-Identifier: MIT */
/*
 * Deadlines (evexec_job_opts.timeout_ms): a job timing out while queued or
 * running gets one callback with -ETIMEDOUT and its late result goes to
 * the cleanup function; deadlines against cancels, port frees and each
 * other; evexec_submit_ex()'s bad options.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "helpers.h"

/* ---------------------------------------------------------------------- */
/* Deadlines.                                                             */

START_TEST(deadline_running_job_times_out_then_cleanup_takes_the_result)
{
    static int token;
    struct gate g;
    struct djob d;
    evexec_job_id id = 0;
    evexec_pool *pool = new_pool(1, 0, 0);

    gate_init(&g, NULL);
    djob_init(&d, &g, &token);
    double t0 = now_s();
    ck_assert_int_eq(submit_djob(pool, &d, 100, NULL, &id), 0);
    ck_assert(id != 0);
    gate_wait_entered(&g, 1);
    run_until(fx.base, &d.calls, 1);

    /* done(-ETIMEDOUT, NULL) on the loop thread, at about the deadline,
     * while the work function is still parked. */
    ck_assert_int_eq(d.status, -ETIMEDOUT);
    ck_assert_ptr_null(d.result);
    ck_assert_int_eq(d.wrong_thread, 0);
    ck_assert_msg(d.at - t0 >= 0.095, "timed out after %.3f s, before its 0.1 s deadline",
                  d.at - t0);
    ck_assert_msg(d.at - t0 < 1.1, "timed out after %.3f s, deadline 0.1 s", d.at - t0);
    ck_assert_uint_eq(pool_stats(pool).running, 1);
    ck_assert_int_eq(d.cleanups, 0);
    ck_assert_uint_eq(pool_stats(pool).timed_out, 1);
    ck_assert_uint_eq(pool_stats(pool).cancelled, 0); /* it was not queued */
    /* Its callback has run: the id is gone. */
    ck_assert_int_eq(evexec_cancel(fx.port, id), -ENOENT);

    /* The work function sees its stop flag; its late result goes to
     * cleanup, once, on the loop thread, and never to done. */
    gate_release(&g, 1);
    run_until(fx.base, &d.cleanups, 1);
    ck_assert_int_eq(atomic_load(&d.stopped), 1);
    ck_assert_ptr_eq(d.cleanup_result, &token);
    ck_assert_int_eq(d.cleanup_wrong_thread, 0);
    flush(pool);
    run_for(50);
    ck_assert_int_eq(d.calls, 1);
    ck_assert_int_eq(d.cleanups, 1);
    ck_assert_int_eq(atomic_load(&d.ran), 1);
    ck_assert_uint_eq(pool_stats(pool).timed_out, 1);
    ck_assert_uint_eq(pool_stats(pool).completed, 2);
    ck_assert_uint_eq(port_stats(fx.port).outstanding, 0);
    ck_assert_int_eq(evexec_cancel(fx.port, id), -ENOENT);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(deadline_late_null_result_is_not_given_to_cleanup)
{
    struct gate g;
    struct djob d;
    evexec_pool *pool = new_pool(1, 0, 0);

    park_djob(pool, &d, &g, 30, NULL);
    run_until(fx.base, &d.calls, 1);
    ck_assert_int_eq(d.status, -ETIMEDOUT);
    gate_release(&g, 1);
    wait_completed(pool, 1);
    flush(pool);
    ck_assert_int_eq(atomic_load(&d.stopped), 1);
    ck_assert_int_eq(d.cleanups, 0);
    ck_assert_int_eq(d.calls, 1);
    ck_assert_uint_eq(port_stats(fx.port).outstanding, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(deadline_queued_job_times_out_and_never_runs)
{
    struct gate g;
    struct djob p, q;
    evexec_job_id qid;
    evexec_pool *pool = new_pool(1, 0, 0);

    gate_init(&g, NULL);
    djob_init(&p, &g, NULL);
    djob_init(&q, NULL, &q);
    ck_assert_int_eq(submit_djob(pool, &p, 0, NULL, NULL), 0);
    gate_wait_entered(&g, 1);
    double t0 = now_s();
    ck_assert_int_eq(submit_djob(pool, &q, 50, NULL, &qid), 0);
    ck_assert_uint_eq(pool_stats(pool).queued, 1);
    run_until(fx.base, &q.calls, 1);
    ck_assert_int_eq(q.status, -ETIMEDOUT);
    ck_assert_ptr_null(q.result);
    ck_assert_int_eq(q.wrong_thread, 0);
    ck_assert_msg(q.at - t0 >= 0.045, "timed out after %.3f s, deadline 0.05 s", q.at - t0);
    ck_assert_msg(q.at - t0 < 1.05, "timed out after %.3f s, deadline 0.05 s", q.at - t0);

    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.queued, 0);       /* taken off the queue */
    ck_assert_uint_eq(s.timed_out, 1);
    ck_assert_uint_eq(s.cancelled, 1);    /* "cancelled if still queued" */
    ck_assert_int_eq(evexec_cancel(fx.port, qid), -ENOENT);

    gate_release(&g, 1);
    run_until(fx.base, &p.calls, 1);
    flush(pool);
    ck_assert_int_eq(p.status, 0);
    ck_assert_int_eq(atomic_load(&q.ran), 0);
    ck_assert_int_eq(q.calls, 1);
    ck_assert_int_eq(q.cleanups, 0);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.completed, 2);    /* p and the flush job */
    ck_assert_uint_eq(s.timed_out, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(deadline_not_reached_gives_status_0_and_no_timeout_later)
{
    static int token;
    struct gate g;
    struct djob quick, parked;
    evexec_pool *pool = new_pool(2, 0, 0);

    gate_init(&g, NULL);
    djob_init(&quick, NULL, &token);
    djob_init(&parked, &g, &token);
    double t0 = now_s();
    ck_assert_int_eq(submit_djob(pool, &quick, 400, NULL, NULL), 0);
    ck_assert_int_eq(submit_djob(pool, &parked, 400, NULL, NULL), 0);
    gate_wait_entered(&g, 1);
    gate_release(&g, 1);
    run_until(fx.base, &fx.member_calls, 2);
    ck_assert_msg(now_s() - t0 < 0.4, "too slow to test: %.3f s", now_s() - t0);
    ck_assert_int_eq(quick.status, 0);
    ck_assert_ptr_eq(quick.result, &token);
    ck_assert_int_eq(parked.status, 0);
    ck_assert_ptr_eq(parked.result, &token);
    ck_assert_int_eq(atomic_load(&parked.stopped), 0);
    /* Well past the deadline: nothing more. */
    run_until_time(t0 + 0.55);
    ck_assert_int_eq(quick.calls, 1);
    ck_assert_int_eq(parked.calls, 1);
    ck_assert_int_eq(quick.cleanups + parked.cleanups, 0);
    ck_assert_uint_eq(pool_stats(pool).timed_out, 0);
    ck_assert_uint_eq(port_stats(fx.port).outstanding, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(deadline_cancel_before_it_passes_gives_one_callback)
{
    static int token;
    struct gate g;
    struct djob p, q, r;
    evexec_job_id qid, rid;
    evexec_pool *pool = new_pool(2, 0, 0);

    gate_init(&g, NULL);
    djob_init(&p, &g, NULL);
    djob_init(&r, &g, &token);
    djob_init(&q, NULL, NULL);
    ck_assert_int_eq(submit_djob(pool, &p, 0, NULL, NULL), 0);
    ck_assert_int_eq(submit_djob(pool, &r, 80, NULL, &rid), 0);
    gate_wait_entered(&g, 2);
    ck_assert_int_eq(submit_djob(pool, &q, 60, NULL, &qid), 0);

    /* Queued: cancelled before its deadline, delivered -ECANCELED once. */
    ck_assert_int_eq(evexec_cancel(fx.port, qid), 0);
    ck_assert_int_eq(evexec_cancel(fx.port, qid), -EALREADY);
    /* Running: -EBUSY sets its stop flag, the deadline still holds. */
    ck_assert_int_eq(evexec_cancel(fx.port, rid), -EBUSY);
    ck_assert_int_eq(q.calls + r.calls, 0);
    run_until(fx.base, &r.calls, 1);
    ck_assert_int_eq(r.status, -ETIMEDOUT);
    run_for(100); /* past both deadlines */
    ck_assert_int_eq(q.calls, 1);
    ck_assert_int_eq(q.status, -ECANCELED);
    ck_assert_int_eq(atomic_load(&q.ran), 0);
    ck_assert_int_eq(r.calls, 1);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.timed_out, 1);
    ck_assert_uint_eq(s.cancelled, 1);

    gate_release(&g, 2);
    run_until(fx.base, &r.cleanups, 1);
    run_until(fx.base, &p.calls, 1);
    wait_completed(pool, 2);
    run_for(20);
    ck_assert_int_eq(atomic_load(&r.stopped), 1);
    ck_assert_ptr_eq(r.cleanup_result, &token);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.cleanups, 1);
    ck_assert_int_eq(q.calls, 1);
    ck_assert_int_eq(p.status, 0);
    ck_assert_int_eq(atomic_load(&p.stopped), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

/* A job cancelled while queued is delivered -ECANCELED, even when its
 * deadline passes before the loop gets to deliver it (here: a port that
 * delivers one callback per wake-up, so the cancelled job waits for the
 * next round while its deadline timer is due in this one). */
START_TEST(deadline_passing_after_a_cancel_keeps_ecanceled)
{
    struct gate g;
    struct djob p, q1, q2;
    evexec_job_id id1, id2;
    evexec_port *p1;
    struct evexec_port_opts po = EVEXEC_PORT_OPTS_INIT;
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    evexec_pool *pool = new_pool(1, 0, 0);

    po.max_batch = 1;
    ck_assert_int_eq(evexec_port_new(&p1, fx.base, &po), 0);
    gate_init(&g, NULL);
    djob_init(&p, &g, NULL);
    djob_init(&q1, NULL, NULL);
    djob_init(&q2, NULL, NULL);
    ck_assert_int_eq(evexec_submit_ex(p1, pool, djob_work, djob_done, &p, NULL, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_submit_ex(p1, pool, djob_work, djob_done, &q1, NULL, &id1), 0);
    o.timeout_ms = 20;
    ck_assert_int_eq(evexec_submit_ex(p1, pool, djob_work, djob_done, &q2, &o, &id2), 0);
    ck_assert_int_eq(evexec_cancel(p1, id1), 0);
    ck_assert_int_eq(evexec_cancel(p1, id2), 0);
    /* The deadline passes before the loop runs again: a deadline must pass. */
    struct timespec ts = {0, 40 * 1000000};
    nanosleep(&ts, NULL);
    run_until(fx.base, &fx.member_calls, 2);
    ck_assert_int_eq(q1.status, -ECANCELED);
    ck_assert_int_eq(q2.calls, 1);
    ck_assert_msg(q2.status == -ECANCELED, "cancelled job delivered %s",
                  evexec_errname(q2.status));
    ck_assert_uint_eq(pool_stats(pool).timed_out, 0);
    gate_release(&g, 1);
    run_until(fx.base, &p.calls, 1);
    run_nonblock(fx.base, 3);
    ck_assert_int_eq(q2.calls, 1);
    ck_assert_int_eq(evexec_port_free(p1), 0); /* idle: released at once */
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

/* The same with default options: the program's own timer cancels a queued
 * job in the loop iteration in which the job's deadline is due too. */
static void cancel_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    evexec_job_id *id = arg;
    (void)fd;
    (void)what;
    ck_assert_int_eq(evexec_cancel(fx.port, *id), 0);
}

START_TEST(cancel_from_a_timer_as_the_deadline_passes_keeps_ecanceled)
{
    struct gate g;
    struct djob p, q;
    evexec_job_id qid;
    evexec_pool *pool = new_pool(1, 0, 0);

    djob_init(&q, NULL, NULL);
    park_djob(pool, &p, &g, 0, NULL);
    ck_assert_int_eq(submit_djob(pool, &q, 20, NULL, &qid), 0);
    struct timeval tv = {0, 10000};
    ck_assert_int_eq(event_base_once(fx.base, -1, EV_TIMEOUT, cancel_timer_cb, &qid, &tv), 0);
    /* The loop comes late: the timer and the deadline are both due. */
    struct timespec ts = {0, 40 * 1000000};
    nanosleep(&ts, NULL);
    run_until(fx.base, &q.calls, 1);
    ck_assert_msg(q.status == -ECANCELED, "cancelled job delivered %s",
                  evexec_errname(q.status));
    ck_assert_uint_eq(pool_stats(pool).timed_out, 0);
    gate_release(&g, 1);
    run_until(fx.base, &p.calls, 1);
    run_nonblock(fx.base, 3);
    ck_assert_int_eq(q.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(deadlines_are_delivered_in_deadline_order)
{
    enum { N = 10 };
    /* Submission order differs from deadline order; the first two jobs
     * run (parked), the others wait in the queue. */
    static const unsigned timeout[N] = {70, 20, 110, 40, 90, 30, 100, 50, 80, 60};
    static int token;
    struct gate g;
    struct djob d[N];
    evexec_pool *pool = new_pool(2, 2, 0);

    wait_idle(pool, 2); /* both threads idle: the first two jobs run */
    gate_init(&g, NULL);
    for (int i = 0; i < N; i++) {
        djob_init(&d[i], &g, &token);
        ck_assert_int_eq(submit_djob(pool, &d[i], timeout[i], NULL, NULL), 0);
    }
    gate_wait_entered(&g, 2);
    run_until(fx.base, &fx.member_calls, N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(d[i].calls, 1);
        ck_assert_int_eq(d[i].status, -ETIMEDOUT);
        for (int j = 0; j < N; j++)
            if (timeout[i] < timeout[j])
                ck_assert_msg(d[i].seq < d[j].seq,
                              "deadline %u ms delivered after deadline %u ms", timeout[i],
                              timeout[j]);
    }
    ck_assert_int_eq(atomic_load(&d[0].ran) + atomic_load(&d[1].ran), 2);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.timed_out, N);
    ck_assert_uint_eq(s.cancelled, N - 2);
    ck_assert_uint_eq(s.queued, 0);

    gate_release(&g, 2);
    run_until(fx.base, &d[0].cleanups, 1);
    run_until(fx.base, &d[1].cleanups, 1);
    wait_completed(pool, 2);
    run_nonblock(fx.base, 3);
    int ran = 0, cleanups = 0;
    for (int i = 0; i < N; i++) {
        ran += atomic_load(&d[i].ran);
        cleanups += d[i].cleanups;
        ck_assert_int_eq(d[i].calls, 1);
    }
    ck_assert_int_eq(ran, 2);
    ck_assert_int_eq(cleanups, 2);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

static void release_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gate_release(arg, 2);
}

START_TEST(port_free_waits_for_timed_out_jobs_still_running)
{
    struct gate g;
    struct djob d[3];
    evexec_pool *pool = new_pool(2, 0, 0);

    gate_init(&g, NULL);
    for (int i = 0; i < 3; i++) {
        djob_init(&d[i], &g, NULL);
        d[i].alloc_ret = 1;    /* a leak if cleanup is not called */
    }
    ck_assert_int_eq(submit_djob(pool, &d[0], 30, NULL, NULL), 0);
    ck_assert_int_eq(submit_djob(pool, &d[1], 30, NULL, NULL), 0);
    gate_wait_entered(&g, 2);
    ck_assert_int_eq(submit_djob(pool, &d[2], 30, NULL, NULL), 0); /* queued */
    run_until(fx.base, &fx.member_calls, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(d[i].status, -ETIMEDOUT);
    ck_assert_uint_eq(pool_stats(pool).running, 2);
    ck_assert_uint_eq(pool_stats(pool).timed_out, 3);

    /* Free the port with both work functions still parked; they are let go
     * 50 ms into the loop. The port must stay until their results are
     * cleaned up. */
    ck_assert_int_eq(evexec_port_free(fx.port), 0);
    struct timeval tv = {0, 50000};
    ck_assert_int_eq(event_base_once(fx.base, -1, EV_TIMEOUT, release_cb, &g, &tv), 0);
    dispatch_all(fx.base);
    ck_assert_int_eq(d[0].cleanups, 1);
    ck_assert_int_eq(d[1].cleanups, 1);
    ck_assert_int_eq(d[2].cleanups, 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(d[i].calls, 1);
        ck_assert_int_eq(d[i].cleanup_wrong_thread, 0);
    }
    ck_assert_int_eq(atomic_load(&d[2].ran), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
    ck_assert_int_eq(evexec_port_new(&fx.port, fx.base, NULL), 0); /* for teardown */
}
END_TEST

/* A deadline that passes after evexec_port_free(), while the job runs:
 * still exactly one callback (-ETIMEDOUT), and the late result is cleaned
 * up before the port goes. */
START_TEST(deadline_passing_after_port_free_still_one_callback)
{
    struct gate g;
    struct djob d;
    evexec_pool *pool = new_pool(1, 0, 0);

    gate_init(&g, NULL);
    djob_init(&d, &g, NULL);
    d.alloc_ret = 1;
    ck_assert_int_eq(submit_djob(pool, &d, 30, NULL, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_port_free(fx.port), 0);
    struct timeval tv = {0, 80000}; /* let it go well after its deadline */
    ck_assert_int_eq(event_base_once(fx.base, -1, EV_TIMEOUT, release_cb, &g, &tv), 0);
    dispatch_all(fx.base);
    ck_assert_int_eq(d.calls, 1);
    ck_assert_int_eq(d.status, -ETIMEDOUT);
    ck_assert_int_eq(d.cleanups, 1);
    ck_assert_int_eq(atomic_load(&d.stopped), 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
    ck_assert_int_eq(evexec_port_new(&fx.port, fx.base, NULL), 0); /* for teardown */
}
END_TEST

/* The first of two jobs timing out at once frees the port from its done
 * callback: the second still gets its callback, the port goes after. */
START_TEST(port_free_from_a_timeout_callback)
{
    struct gate g;
    struct djob p, q1, q2;
    evexec_pool *pool = new_pool(1, 0, 0);

    gate_init(&g, NULL);
    djob_init(&p, &g, NULL);
    djob_init(&q1, NULL, NULL);
    djob_init(&q2, NULL, NULL);
    q1.free_port_in_done = 1;
    ck_assert_int_eq(submit_djob(pool, &p, 0, NULL, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(submit_djob(pool, &q1, 20, NULL, NULL), 0);
    ck_assert_int_eq(submit_djob(pool, &q2, 20, NULL, NULL), 0);
    struct timespec ts = {0, 40 * 1000000}; /* both deadlines pass */
    nanosleep(&ts, NULL);
    run_until(fx.base, &fx.member_calls, 2);
    ck_assert_int_eq(q1.free_port_rc, 0);
    ck_assert_int_eq(q1.status, -ETIMEDOUT);
    /* q2 was still queued when the port was freed: its deadline or the
     * free's cancel may deliver it, once. */
    ck_assert_msg(q2.status == -ETIMEDOUT || q2.status == -ECANCELED, "q2 delivered %s",
                  evexec_errname(q2.status));
    ck_assert_int_eq(p.calls, 0);
    gate_release(&g, 1);
    dispatch_all(fx.base); /* p delivered, then the port goes */
    ck_assert_int_eq(p.calls, 1);
    ck_assert_int_eq(p.status, 0);
    ck_assert_int_eq(atomic_load(&p.stopped), 1); /* the port's free asked it */
    ck_assert_int_eq(q1.calls + q2.calls, 2);
    ck_assert_int_eq(atomic_load(&q1.ran) + atomic_load(&q2.ran), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
    ck_assert_int_eq(evexec_port_new(&fx.port, fx.base, NULL), 0); /* for teardown */
}
END_TEST

/* ---------------------------------------------------------------------- */
/* evexec_submit_ex(): errors.                                             */

struct big_opts {
    struct evexec_job_opts o;
    unsigned char newer[16];
};

struct submit_call {
    evexec_pool *pool;
    struct tally *t;
    struct evexec_job_opts o;
};
static int submit_ex_call(void *p)
{
    struct submit_call *c = p;
    return evexec_submit_ex(fx.port, c->pool, echo_work, tally_done, c->t, &c->o, NULL);
}

START_TEST(submit_ex_rejects_bad_options_without_callback)
{
    struct tally t;
    evexec_pool *pool = new_pool(1, 0, 0);
    evexec_job_id id = 12345;
    int accepted = 0;

    tally_init(&t);
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    o.timeout_ms = (unsigned)INT_MAX + 1u;
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &o, &id), -EINVAL);
    o.timeout_ms = UINT_MAX;
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &o, &id), -EINVAL);
    ck_assert(id == 12345); /* untouched on error */
    /* 2^31 - 1 is allowed (a deadline 24 days away). */
    o.timeout_ms = INT_MAX;
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &o, &id), 0);
    ck_assert(id != 12345 && id != 0);
    accepted++;

    struct evexec_job_opts bad = EVEXEC_JOB_OPTS_INIT;
    bad.size = 0;
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &bad, NULL), -EINVAL);
    bad.size = 1;
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &bad, NULL), -EINVAL);
    bad = (struct evexec_job_opts)EVEXEC_JOB_OPTS_INIT;
    bad.wait_ms = 10; /* the loop thread never blocks */
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &bad, NULL), -EINVAL);
    bad.wait_ms = EVEXEC_WAIT_FOREVER;
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &bad, NULL), -EINVAL);
    bad.wait_ms = 0;
    bad.priority = 2;
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &bad, NULL), -EINVAL);
    bad.priority = -2;
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &bad, NULL), -EINVAL);

    /* A newer, larger struct: accepted while the part this library does
     * not know is zero, -E2BIG once it is not. */
    struct big_opts big;
    memset(&big, 0, sizeof big);
    big.o = (struct evexec_job_opts)EVEXEC_JOB_OPTS_INIT;
    big.o.size = sizeof big;
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &big.o, NULL), 0);
    accepted++;
    big.newer[5] = 1;
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, &big.o, NULL), -E2BIG);

    o = (struct evexec_job_opts)EVEXEC_JOB_OPTS_INIT;
    ck_assert_int_eq(evexec_submit_ex(NULL, pool, echo_work, tally_done, &t, &o, NULL), -EINVAL);
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, NULL, tally_done, &t, &o, NULL), -EINVAL);
    /* opts NULL: evexec_submit(). */
    ck_assert_int_eq(evexec_submit_ex(fx.port, pool, echo_work, tally_done, &t, NULL, NULL), 0);
    accepted++;

    /* Wrong thread. */
    struct submit_call c = {pool, &t, EVEXEC_JOB_OPTS_INIT};
    ck_assert_int_eq(on_other_thread(submit_ex_call, &c), -EPERM);
    c.o.timeout_ms = 100;
    ck_assert_int_eq(on_other_thread(submit_ex_call, &c), -EPERM);

    run_until(fx.base, &t.calls, accepted);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(t.calls, accepted);
    ck_assert_int_eq(t.ok, accepted);
    ck_assert_int_eq(t.wrong_thread, 0);
    ck_assert_uint_eq(pool_stats(pool).submitted, accepted);
    ck_assert_uint_eq(pool_stats(pool).timed_out, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

static Suite *deadline_suite(void)
{
    Suite *s = suite_create("deadline");
    TCase *tc;

    tc = add_tcase(s, "deadlines", 30, FX_PORT);
    tcase_add_test(tc, deadline_running_job_times_out_then_cleanup_takes_the_result);
    tcase_add_test(tc, deadline_late_null_result_is_not_given_to_cleanup);
    tcase_add_test(tc, deadline_queued_job_times_out_and_never_runs);
    tcase_add_test(tc, deadline_not_reached_gives_status_0_and_no_timeout_later);
    tcase_add_test(tc, deadline_cancel_before_it_passes_gives_one_callback);
    tcase_add_test(tc, deadline_passing_after_a_cancel_keeps_ecanceled);
    tcase_add_test(tc, cancel_from_a_timer_as_the_deadline_passes_keeps_ecanceled);
    tcase_add_test(tc, deadlines_are_delivered_in_deadline_order);
    tcase_add_test(tc, port_free_waits_for_timed_out_jobs_still_running);
    tcase_add_test(tc, deadline_passing_after_port_free_still_one_callback);
    tcase_add_test(tc, port_free_from_a_timeout_callback);
    tcase_add_test(tc, submit_ex_rejects_bad_options_without_callback);
    return s;
}

int main(void)
{
    return run_suite(deadline_suite());
}
