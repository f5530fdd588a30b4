/* SPDX-License-Identifier: MIT */
/*
 * The executor's semantics, one test per invariant of DESIGN.md and per
 * behaviour the header promises. Queue states are made deterministic by
 * parking workers on gates (semaphores), never by sleeping.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
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

static evexec_pool *new_pool(unsigned max, unsigned min, size_t max_queued, const char *name)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *p = NULL;
    o.max_threads = max;
    o.min_threads = min;
    o.max_queued = max_queued;
    o.name = name;
    ck_assert_int_eq(evexec_pool_new(&p, &o), 0);
    return p;
}

/* ---------------------------------------------------------------------- */
/* Invariants 1 and 2: one callback per job, on the loop thread, with the */
/* work function's result.                                                */

START_TEST(each_job_one_callback_with_its_result)
{
    enum { N = 500 };
    static int seen[N];
    struct tally t;
    evexec_pool *pool = new_pool(4, 0, 0, NULL);

    tally_init(&t);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &t, NULL), 0);
    run_until(base, &t.calls, N);
    run_nonblock(base, 5);
    ck_assert_int_eq(t.calls, N);
    ck_assert_int_eq(t.ok, N);
    ck_assert_int_eq(t.wrong_thread, 0);
    ck_assert_ptr_eq(t.last_result, &t);
    ck_assert_uint_eq(port_stats(port).outstanding, 0);
    ck_assert_uint_eq(port_stats(port).delivered, N);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

static int inside_call;
static int reentered;
static int reentry_calls;
static void reentry_done(int status, void *result, void *arg)
{
    (void)status;
    (void)result;
    (void)arg;
    if (inside_call)
        reentered++;
    reentry_calls++;
}

START_TEST(callbacks_never_run_inside_submit_cancel_or_free)
{
    evexec_pool *pool = new_pool(1, 0, 0, NULL);
    evexec_job_id id;

    reentered = reentry_calls = 0;
    /* A job that has finished (pushed to the port) before the calls below:
     * a re-entrant library would deliver it from inside them. */
    inside_call = 1;
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, reentry_done, NULL, NULL), 0);
    inside_call = 0;
    while (pool_stats(pool).idle < 1) /* done and pushed */
        sched_yield();
    inside_call = 1;
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, reentry_done, NULL, &id), 0);
    (void)evexec_cancel(port, id);
    ck_assert_int_eq(evexec_port_free(port), 0); /* deferred: jobs outstanding */
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    inside_call = 0;
    ck_assert_int_eq(reentry_calls, 0);
    event_base_dispatch(base); /* delivers both, then the port goes */
    ck_assert_int_eq(reentry_calls, 2);
    ck_assert_int_eq(reentered, 0);
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0); /* for teardown */
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Cancel.                                                                */

START_TEST(cancel_queued_job_delivers_ecanceled_later)
{
    struct gate g;
    struct tally t, tc;
    evexec_pool *pool = new_pool(1, 0, 0, NULL);
    evexec_job_id ids[3];

    tally_init(&t);
    tally_init(&tc);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tc, &ids[i]), 0);
    ck_assert_uint_eq(pool_stats(pool).queued, 3);

    ck_assert_int_eq(evexec_cancel(port, ids[1]), 0);
    ck_assert_int_eq(tc.calls, 0); /* never inside evexec_cancel */
    ck_assert_uint_eq(pool_stats(pool).queued, 2);
    ck_assert_uint_eq(pool_stats(pool).cancelled, 1);
    /* Delivered while the only worker is still parked: cancel does not
     * wait for a worker to come by. */
    run_until(base, &tc.calls, 1);
    ck_assert_int_eq(tc.cancelled, 1);
    ck_assert_ptr_null(tc.last_result);

    gate_release(&g, 1);
    run_until(base, &tc.calls, 3);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(tc.ok, 2);
    ck_assert_int_eq(tc.cancelled, 1);
    ck_assert_int_eq(tc.wrong_thread, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(cancel_running_job_is_ebusy_and_sets_stop)
{
    struct gate g;
    struct tally t;
    evexec_pool *pool = new_pool(1, 0, 0, NULL);
    evexec_job_id id;

    tally_init(&t);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, park_work_stop, gate_done, &g, &id), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_cancel(port, id), -EBUSY);
    gate_release(&g, 1);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(t.ok, 1); /* it ran: status 0 */
    ck_assert_ptr_eq(t.last_result, (void *)1); /* and saw its stop flag */

    /* A job not asked to stop sees no flag. */
    ck_assert_int_eq(evexec_submit(port, pool, park_work_stop, gate_done, &g, &id), 0);
    gate_wait_entered(&g, 1);
    gate_release(&g, 1);
    run_until(base, &t.calls, 2);
    ck_assert_ptr_eq(t.last_result, (void *)0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Invariant 4: a rejected submission gets no callback.                   */

START_TEST(full_queue_is_eagain_at_once)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(1, 0, 2, NULL);

    tally_init(&t);
    tally_init(&tq);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), -EAGAIN);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), -EAGAIN);
    ck_assert_uint_eq(pool_stats(pool).rejected, 2);
    ck_assert_uint_eq(port_stats(port).outstanding, 3);
    gate_release(&g, 1);
    run_until(base, &tq.calls, 2);
    run_until(base, &t.calls, 1);
    run_nonblock(base, 5);
    ck_assert_int_eq(tq.calls, 2);
    /* Room again. */
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    run_until(base, &tq.calls, 3);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Shutdown.                                                              */

START_TEST(shutdown_drain_runs_everything_queued)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(2, 0, 0, NULL);

    tally_init(&t);
    tally_init(&tq);
    gate_init(&g, &t);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 2);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), -ESHUTDOWN);
    gate_release(&g, 2);
    run_until(base, &tq.calls, 5);
    run_until(base, &t.calls, 2);
    ck_assert_int_eq(tq.ok, 5);
    ck_assert_int_eq(t.ok, 2);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    run_nonblock(base, 3);
    ck_assert_int_eq(tq.calls, 5);
    gate_destroy(&g);
}
END_TEST

START_TEST(shutdown_cancel_cancels_queued_and_stops_running)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(2, 0, 0, NULL);

    tally_init(&t);
    tally_init(&tq);
    gate_init(&g, &t);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(port, pool, park_work_stop, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 2);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_CANCEL), 0);
    ck_assert_int_eq(tq.calls, 0);
    /* The queued five come back cancelled while both workers are parked. */
    run_until(base, &tq.calls, 5);
    ck_assert_int_eq(tq.cancelled, 5);
    ck_assert_int_eq(t.calls, 0);
    gate_release(&g, 2);
    run_until(base, &t.calls, 2);
    ck_assert_int_eq(t.ok, 2); /* running jobs finish */
    ck_assert_ptr_eq(t.last_result, (void *)1); /* with their stop flag set */
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.submitted, 7);
    ck_assert_uint_eq(s.completed, 2);
    ck_assert_uint_eq(s.cancelled, 5);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

static int idle_one(void *arg)
{
    return pool_stats(arg).idle == 1;
}

START_TEST(shutdown_cancel_stops_a_job_just_handed_to_an_idle_worker)
{
    struct gate g;
    struct tally t;
    evexec_pool *pool = new_pool(1, 1, 0, NULL);

    tally_init(&t);
    gate_init(&g, &t);
    wait_for(idle_one, pool);
    /* Handed straight to the idle worker, which may not have woken yet. */
    ck_assert_int_eq(evexec_submit(port, pool, park_work_stop, gate_done, &g, NULL), 0);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_CANCEL), 0);
    gate_wait_entered(&g, 1);
    gate_release(&g, 1);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(t.ok, 1);
    ck_assert_ptr_eq(t.last_result, (void *)1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(shutdown_drain_then_cancel_escalates)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(1, 0, 0, NULL);

    tally_init(&t);
    tally_init(&tq);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_CANCEL), 0);
    run_until(base, &tq.calls, 3);
    ck_assert_int_eq(tq.cancelled, 3);
    gate_release(&g, 1);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

struct pool_freer {
    evexec_pool *pool;
    int rc;
};
static void *free_pool_thread(void *arg)
{
    struct pool_freer *f = arg;
    f->rc = evexec_pool_free(f->pool);
    return NULL;
}

START_TEST(pool_free_waits_for_queued_work_then_delivers)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(1, 0, 0, NULL);
    struct pool_freer f = {pool, 1};
    pthread_t th;

    tally_init(&t);
    tally_init(&tq);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(pthread_create(&th, NULL, free_pool_thread, &f), 0);
    gate_release(&g, 1);
    pthread_join(th, NULL);
    ck_assert_int_eq(f.rc, 0);
    /* The pool is gone; its jobs are delivered by the loop as usual. */
    run_until(base, &tq.calls, 3);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(tq.ok, 3);
    gate_destroy(&g);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Freeing from callbacks and with jobs outstanding.                      */

struct free_in_cb {
    evexec_port *port;
    evexec_pool *pool;
    int calls;
    int free_rc;
};
static void free_port_done(int status, void *result, void *arg)
{
    struct free_in_cb *f = arg;
    (void)status;
    (void)result;
    if (f->calls++ == 0)
        f->free_rc = evexec_port_free(f->port);
}

START_TEST(port_free_inside_callback_still_delivers_the_rest)
{
    struct gate g;
    struct tally t;
    evexec_pool *pool = new_pool(1, 0, 0, NULL);
    struct free_in_cb f = {port, pool, 0, 1};

    tally_init(&t);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, free_port_done, &f, NULL), 0);
    gate_release(&g, 1);
    event_base_dispatch(base); /* returns once the port has released itself */
    ck_assert_int_eq(f.free_rc, 0);
    ck_assert_int_eq(f.calls, 4);
    ck_assert_int_eq(t.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0);
    gate_destroy(&g);
}
END_TEST

static void free_pool_done(int status, void *result, void *arg)
{
    struct free_in_cb *f = arg;
    (void)status;
    (void)result;
    if (f->calls++ == 0)
        f->free_rc = evexec_pool_free(f->pool);
}

START_TEST(pool_free_inside_callback)
{
    evexec_pool *pool = new_pool(2, 0, 0, NULL);
    struct free_in_cb f = {port, pool, 0, 1};

    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, free_pool_done, &f, NULL), 0);
    run_until(base, &f.calls, 50);
    ck_assert_int_eq(f.free_rc, 0);
    run_nonblock(base, 3);
    ck_assert_int_eq(f.calls, 50);
}
END_TEST

START_TEST(port_free_with_jobs_outstanding)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(1, 0, 0, NULL);
    int fds = count_fds();
    evexec_port *p2;

    tally_init(&t);
    tally_init(&tq);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_port_new(&p2, base, NULL), 0);
    ck_assert_int_gt(count_fds(), fds); /* an eventfd, or a pipe's two ends */
    ck_assert_int_eq(evexec_submit(p2, pool, park_work_stop, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(p2, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_port_free(p2), 0);
    ck_assert_int_eq(tq.calls + t.calls, 0);
    ck_assert_uint_eq(pool_stats(pool).queued, 0); /* cancelled at once */
    run_until(base, &tq.calls, 3);
    ck_assert_int_eq(tq.cancelled, 3);
    gate_release(&g, 1);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(t.ok, 1);
    ck_assert_ptr_eq(t.last_result, (void *)1); /* the running job was asked to stop */
    run_nonblock(base, 3);
    ck_assert_int_eq(count_fds(), fds); /* the port has released itself */
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Threads: lazy start, hand-off to idle workers, reaping, names.         */

START_TEST(threads_start_lazily_up_to_max)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(3, 0, 0, NULL);

    tally_init(&t);
    tally_init(&tq);
    gate_init(&g, &t);
    ck_assert_uint_eq(pool_stats(pool).threads, 0);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_uint_eq(pool_stats(pool).threads, 1);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 2);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &tq, NULL), 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.threads, 3);
    ck_assert_uint_eq(s.threads_started, 3);
    ck_assert_uint_eq(s.running, 3);
    ck_assert_uint_eq(s.queued, 10);
    gate_release(&g, 3);
    run_until(base, &tq.calls, 10);
    run_until(base, &t.calls, 3);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

static int one_idle(void *arg)
{
    return pool_stats(arg).idle == 1;
}

START_TEST(an_idle_worker_is_reused_not_a_new_thread_started)
{
    struct tally t;
    evexec_pool *pool = new_pool(4, 0, 0, NULL);

    tally_init(&t);
    for (int i = 1; i <= 100; i++) {
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &t, NULL), 0);
        run_until(base, &t.calls, i);
        wait_for(one_idle, pool); /* the worker is back waiting */
    }
    ck_assert_uint_eq(pool_stats(pool).threads_started, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

/* With spinning on, a worker that has just finished polls for the next job
 * instead of sleeping; submits that find it spinning hand the job over
 * without a signal. Ping-pong through such a worker must lose nothing. */
START_TEST(spinning_workers_take_handoffs_without_losing_any)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct tally t;
    evexec_pool *pool;

    o.max_threads = 2;
    o.spin_us = 2000;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    tally_init(&t);
    for (int i = 1; i <= 2000; i++) {
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &t, NULL), 0);
        if (i % 3 == 0) /* sometimes two in flight */
            ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &t, NULL), 0);
        run_until(base, &t.calls, i + i / 3);
    }
    ck_assert_int_eq(t.ok, 2000 + 2000 / 3);
    ck_assert_int_eq(t.wrong_thread, 0);
    /* Idle spinning workers still sleep, time out and exit as usual. */
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_CANCEL), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

static void *report_nice(evexec_job *job, void *arg)
{
    (void)job;
    (void)arg;
    errno = 0;
    int n = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    return (void *)(intptr_t)(errno ? -100 : n);
}

START_TEST(nice_applies_to_workers_only)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct tally t;
    evexec_pool *pool;
    int before = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));

    o.nice = 7;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    tally_init(&t);
    ck_assert_int_eq(evexec_submit(port, pool, report_nice, tally_done, &t, NULL), 0);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq((int)(intptr_t)t.last_result, before + 7 > 19 ? 19 : before + 7);
    ck_assert_int_eq(getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid)), before);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

static void *report_policy(evexec_job *job, void *arg)
{
    (void)job;
    (void)arg;
    return (void *)(intptr_t)sched_getscheduler(0);
}

/* Workers keep the loop thread's policy by default; with
 * EVEXEC_POOL_SCHED_BATCH they run in SCHED_BATCH (Linux), the loop thread
 * keeping its own. */
START_TEST(workers_batch_only_when_asked)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct tally t;
    evexec_pool *pool;
    int before = sched_getscheduler(0);

    for (int batch = 0; batch < 2; batch++) {
        o.flags = batch ? EVEXEC_POOL_SCHED_BATCH : 0;
        ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
        tally_init(&t);
        ck_assert_int_eq(evexec_submit(port, pool, report_policy, tally_done, &t, NULL), 0);
        run_until(base, &t.calls, 1);
#if defined(__linux__) && defined(SCHED_BATCH)
        ck_assert_int_eq((int)(intptr_t)t.last_result, batch ? SCHED_BATCH : before);
#else
        ck_assert_int_eq((int)(intptr_t)t.last_result, before);
#endif
        ck_assert_int_eq(sched_getscheduler(0), before);
        ck_assert_int_eq(evexec_pool_free(pool), 0);
    }
}
END_TEST

static int idle_pool(void *arg)
{
    struct evexec_pool_stats s = pool_stats(arg);
    return s.idle == s.threads;
}

START_TEST(min_threads_start_at_once_and_stay)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;
    o.max_threads = 4;
    o.min_threads = 2;
    o.idle_timeout_ms = 1;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    ck_assert_uint_eq(pool_stats(pool).threads, 2);
    wait_for(idle_pool, pool);
    /* Well past the idle timeout, the minimum is still there. */
    usleep(50 * 1000);
    ck_assert_uint_eq(pool_stats(pool).threads, 2);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

static int down_to_one(void *arg)
{
    return pool_stats(arg).threads == 1;
}

START_TEST(idle_threads_are_reaped_down_to_min)
{
    struct gate g;
    struct tally t;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;

    tally_init(&t);
    gate_init(&g, &t);
    o.max_threads = 4;
    o.min_threads = 1;
    o.idle_timeout_ms = 20;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 4);
    ck_assert_uint_eq(pool_stats(pool).threads, 4);
    gate_release(&g, 4);
    run_until(base, &t.calls, 4);
    wait_for(down_to_one, pool);
    /* And the pool grows again on demand. */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 3);
    ck_assert_uint_eq(pool_stats(pool).threads, 3);
    gate_release(&g, 3);
    run_until(base, &t.calls, 7);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

static void *report_name(evexec_job *job, void *arg)
{
    char *name = malloc(16);
    (void)job;
    if (name && pthread_getname_np(pthread_self(), name, 16) != 0)
        name[0] = '\0';
    park_work(job, arg);
    return name;
}

static char names[2][16];
static int nnames;
static void name_done(int status, void *result, void *arg)
{
    (void)status;
    (void)arg;
    snprintf(names[nnames++], 16, "%s", (char *)result);
    free(result);
}

START_TEST(workers_carry_their_names)
{
    struct gate g;
    evexec_pool *pool = new_pool(2, 0, 0, "tst");

    nnames = 0;
    gate_init(&g, NULL);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(port, pool, report_name, name_done, &g, NULL), 0);
    gate_wait_entered(&g, 2);
    gate_release(&g, 2);
    run_until(base, &nnames, 2);
    ck_assert(strcmp(names[0], "tst-1") == 0 || strcmp(names[0], "tst-2") == 0);
    ck_assert(strcmp(names[1], "tst-1") == 0 || strcmp(names[1], "tst-2") == 0);
    ck_assert_str_ne(names[0], names[1]);
    ck_assert_int_eq(evexec_pool_free(pool), 0);

    /* A long prefix is cut to the kernel's 15 bytes, not refused. */
    pool = new_pool(1, 0, 0, "averyveryverylongprefix");
    nnames = 0;
    ck_assert_int_eq(evexec_submit(port, pool, report_name, name_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    gate_release(&g, 1);
    run_until(base, &nnames, 1);
    ck_assert_str_eq(names[0], "averyveryverylo");
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Invariant 8: workers block every signal; libevent signal events work.  */

static void *report_sigmask(evexec_job *job, void *arg)
{
    sigset_t set;
    (void)job;
    (void)arg;
    pthread_sigmask(SIG_BLOCK, NULL, &set);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP || (sig >= 32 && sig < SIGRTMIN))
            continue; /* cannot be blocked, or reserved by libc */
        if (sigismember(&set, sig) != 1)
            return (void *)(intptr_t)sig;
    }
    return NULL;
}

static int got_signal;
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    got_signal++;
}

START_TEST(workers_block_signals_and_signal_events_fire)
{
    struct gate g;
    struct tally t, ts;
    evexec_pool *pool = new_pool(2, 0, 0, NULL);

    tally_init(&t);
    tally_init(&ts);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(port, pool, report_sigmask, tally_done, &ts, NULL), 0);
    run_until(base, &ts.calls, 1);
    ck_assert_msg(ts.last_result == NULL, "signal %d not blocked in a worker",
                  (int)(intptr_t)ts.last_result);

    /* Both workers busy; the signal must reach the loop thread. */
    got_signal = 0;
    struct event *sev = evsignal_new(base, SIGUSR1, on_signal, NULL);
    ck_assert_int_eq(event_add(sev, NULL), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 2);
    ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
    run_until(base, &got_signal, 1);
    gate_release(&g, 2);
    run_until(base, &t.calls, 2);
    event_free(sev);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Delivery: one wake-up per burst, submission order, bounded batches.    */

static int order_log[2000];
static int norder;
static void order_done(int status, void *result, void *arg)
{
    (void)status;
    (void)arg;
    order_log[norder++] = (int)(intptr_t)result;
}
static void *number_work(evexec_job *job, void *arg)
{
    (void)job;
    return arg;
}

/* A worker pushes its last job on the port before it goes idle: once n
 * workers are idle, everything they ran is on the completion list. */
struct idle_n {
    evexec_pool *pool;
    unsigned n;
};
static int idle_reached(void *arg)
{
    struct idle_n *c = arg;
    return pool_stats(c->pool).idle >= c->n;
}

struct numbered_gate {
    struct gate g;
    int n;
};
static void *park_number(evexec_job *job, void *arg)
{
    struct numbered_gate *ng = arg;
    park_work(job, &ng->g);
    return (void *)(intptr_t)ng->n;
}

START_TEST(a_burst_costs_one_wakeup_and_arrives_in_submission_order)
{
    enum { N = 1000, W = 4 };
    struct numbered_gate ng[W];
    evexec_pool *pool = new_pool(W, 0, 0, NULL);
    struct evexec_port_opts po = EVEXEC_PORT_OPTS_INIT;
    evexec_port *p2;

    po.max_batch = 100000;
    ck_assert_int_eq(evexec_port_new(&p2, base, &po), 0);
    norder = 0;
    /* Jobs 0..3 park, one worker each, each on its own gate. */
    for (int i = 0; i < W; i++) {
        gate_init(&ng[i].g, NULL);
        ng[i].n = i;
        ck_assert_int_eq(evexec_submit(p2, pool, park_number, order_done, &ng[i], NULL), 0);
        gate_wait_entered(&ng[i].g, 1);
    }
    for (int i = W; i < N; i++)
        ck_assert_int_eq(
            evexec_submit(p2, pool, number_work, order_done, (void *)(intptr_t)i, NULL), 0);
    uint64_t wake0 = port_stats(p2).wakeups;

    /* Without running the loop, make them complete in the order
     * 3, 4, 5, ..., N-1, 2, 1, 0: let job 3 go and wait for its worker to
     * run the whole queue, then let 2, 1 and 0 go one after another. */
    struct idle_n c = {pool, 1};
    gate_release(&ng[W - 1].g, 1);
    wait_for(idle_reached, &c);
    ck_assert_uint_eq(pool_stats(pool).completed, N - W + 1);
    for (int i = W - 2; i >= 0; i--) {
        gate_release(&ng[i].g, 1);
        c.n++;
        wait_for(idle_reached, &c);
    }
    ck_assert_uint_eq(pool_stats(pool).completed, N);
    ck_assert_int_eq(norder, 0);
    run_until(base, &norder, N);
    /* One burst: one wake-up. */
    ck_assert_uint_eq(port_stats(p2).wakeups - wake0, 1);
    /* And delivered in submission order, not completion order. */
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(order_log[i], i);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(evexec_port_free(p2), 0);
    for (int i = 0; i < W; i++)
        gate_destroy(&ng[i].g);
}
END_TEST

static int fd_events;
static int done_at_fd_event;
static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    char b;
    (void)what;
    (void)arg;
    if (read(fd, &b, 1) == 1 && fd_events++ == 0)
        done_at_fd_event = norder;
}

START_TEST(batches_are_capped_so_other_events_run)
{
    enum { N = 1000 };
    struct gate g;
    struct tally t;
    evexec_pool *pool = new_pool(1, 0, 0, NULL);
    struct evexec_port_opts po = EVEXEC_PORT_OPTS_INIT;
    evexec_port *p2;
    int sv[2];

    po.max_batch = 10;
    ck_assert_int_eq(evexec_port_new(&p2, base, &po), 0);
    tally_init(&t);
    gate_init(&g, &t);
    norder = fd_events = 0;
    done_at_fd_event = -1;
    ck_assert_int_eq(evexec_submit(p2, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(
            evexec_submit(p2, pool, number_work, order_done, (void *)(intptr_t)i, NULL), 0);
    gate_release(&g, 1);
    struct idle_n c = {pool, 1};
    wait_for(idle_reached, &c);

    /* An fd that is readable from the start: it must get its turn long
     * before a thousand callbacks have run. */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct event *ev = event_new(base, sv[0], EV_READ | EV_PERSIST, on_readable, NULL);
    event_add(ev, NULL);
    ck_assert_int_eq(write(sv[1], "x", 1), 1);
    run_until(base, &norder, N);
    ck_assert_int_eq(fd_events, 1);
    ck_assert_int_ge(done_at_fd_event, 0);
    ck_assert_int_le(done_at_fd_event, 20);
    ck_assert_uint_ge(port_stats(p2).batches, N / 10);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(order_log[i], i);
    event_free(ev);
    close(sv[0]);
    close(sv[1]);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(evexec_port_free(p2), 0);
    gate_destroy(&g);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Topologies: one pool, four loops; one port, two pools.                 */

struct loop_thread {
    evexec_pool *pool;
    pthread_t self;
    int calls, wrong;
    int submit_failures;
};

static void multi_done(int status, void *result, void *arg)
{
    struct loop_thread *l = arg;
    (void)result;
    if (!pthread_equal(pthread_self(), l->self) || status != 0)
        l->wrong++;
    l->calls++;
}

static void *loop_main(void *arg)
{
    enum { N = 5000 };
    struct loop_thread *l = arg;
    struct event_base *b = event_base_new();
    evexec_port *p;

    l->self = pthread_self();
    if (!b || evexec_port_new(&p, b, NULL) < 0) {
        l->submit_failures = -1;
        return NULL;
    }
    for (int i = 0; i < N; i++) {
        /* A full queue may hold only other loops' jobs: nothing would wake
         * this loop, so poll rather than block. */
        while (evexec_submit(p, l->pool, echo_work, multi_done, l, NULL) == -EAGAIN) {
            event_base_loop(b, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            sched_yield();
        }
        if (i % 64 == 0)
            event_base_loop(b, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    while (l->calls < N)
        event_base_loop(b, EVLOOP_ONCE);
    evexec_port_free(p);
    event_base_dispatch(b);
    event_base_free(b);
    return NULL;
}

START_TEST(one_pool_serves_four_loops)
{
    struct loop_thread l[4];
    pthread_t th[4];
    evexec_pool *pool = new_pool(3, 0, 1000, NULL);

    memset(l, 0, sizeof l);
    for (int i = 0; i < 4; i++) {
        l[i].pool = pool;
        ck_assert_int_eq(pthread_create(&th[i], NULL, loop_main, &l[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(l[i].submit_failures, 0);
        ck_assert_int_eq(l[i].calls, 5000);
        ck_assert_int_eq(l[i].wrong, 0);
    }
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.submitted, 20000);
    ck_assert_uint_eq(s.completed, 20000);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

struct pool_check {
    char prefix;
    pthread_t loop;
    int calls, on_own_pool, wrong_thread;
};

static void *name_prefix_work(evexec_job *job, void *arg)
{
    struct pool_check *c = arg;
    char name[16] = "";
    (void)job;
    pthread_getname_np(pthread_self(), name, sizeof name);
    return (void *)(intptr_t)(name[0] == c->prefix && name[1] == '-');
}

static void pool_check_done(int status, void *result, void *arg)
{
    struct pool_check *c = arg;
    c->calls++;
    c->on_own_pool += status == 0 && result == (void *)1;
    c->wrong_thread += !pthread_equal(pthread_self(), c->loop);
}

START_TEST(one_port_takes_jobs_from_two_pools)
{
    evexec_pool *fast = new_pool(2, 0, 0, "f");
    evexec_pool *slow = new_pool(1, 0, 0, "s");
    struct pool_check cf = {'f', pthread_self(), 0, 0, 0};
    struct pool_check cs = {'s', pthread_self(), 0, 0, 0};

    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(evexec_submit(port, fast, name_prefix_work, pool_check_done, &cf, NULL), 0);
        ck_assert_int_eq(evexec_submit(port, slow, name_prefix_work, pool_check_done, &cs, NULL), 0);
    }
    run_until(base, &cf.calls, 200);
    run_until(base, &cs.calls, 200);
    ck_assert_int_eq(cf.on_own_pool, 200);
    ck_assert_int_eq(cs.on_own_pool, 200);
    ck_assert_int_eq(cf.wrong_thread + cs.wrong_thread, 0);
    ck_assert_int_eq(evexec_pool_free(fast), 0);
    ck_assert_int_eq(evexec_pool_free(slow), 0);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Process hygiene.                                                       */

START_TEST(ports_and_pools_leave_no_fds_and_use_cloexec)
{
    int before = count_fds();
    int seen[64], nseen = 0;
    DIR *d;
    struct dirent *e;
    evexec_port *p2;
    evexec_pool *pool = new_pool(2, 2, 0, NULL);

    /* Remember the fds before, then find the port's. */
    d = opendir("/proc/self/fd");
    while ((e = readdir(d)) && nseen < 64)
        if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
            seen[nseen++] = atoi(e->d_name);
    closedir(d);
    ck_assert_int_eq(evexec_port_new(&p2, base, NULL), 0);
    int found = 0;
    d = opendir("/proc/self/fd");
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name), old = 0;
        if (e->d_name[0] == '.' || fd == dirfd(d))
            continue;
        for (int i = 0; i < nseen; i++)
            old |= seen[i] == fd;
        if (old)
            continue;
        found++;
        ck_assert_msg(fcntl(fd, F_GETFD) & FD_CLOEXEC, "fd %d lacks FD_CLOEXEC", fd);
        ck_assert_msg(fcntl(fd, F_GETFL) & O_NONBLOCK, "fd %d is blocking", fd);
    }
    closedir(d);
    ck_assert_int_ge(found, 1);
    ck_assert_int_eq(evexec_port_free(p2), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(count_fds(), before);
}
END_TEST

static Suite *exec_suite(void)
{
    Suite *s = suite_create("exec");
    TCase *tc;

    tc = tcase_create("delivery");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, each_job_one_callback_with_its_result);
    tcase_add_test(tc, callbacks_never_run_inside_submit_cancel_or_free);
    tcase_add_test(tc, a_burst_costs_one_wakeup_and_arrives_in_submission_order);
    tcase_add_test(tc, batches_are_capped_so_other_events_run);
    suite_add_tcase(s, tc);

    tc = tcase_create("cancel-and-shutdown");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cancel_queued_job_delivers_ecanceled_later);
    tcase_add_test(tc, cancel_running_job_is_ebusy_and_sets_stop);
    tcase_add_test(tc, full_queue_is_eagain_at_once);
    tcase_add_test(tc, shutdown_drain_runs_everything_queued);
    tcase_add_test(tc, shutdown_cancel_cancels_queued_and_stops_running);
    tcase_add_test(tc, shutdown_cancel_stops_a_job_just_handed_to_an_idle_worker);
    tcase_add_test(tc, shutdown_drain_then_cancel_escalates);
    tcase_add_test(tc, pool_free_waits_for_queued_work_then_delivers);
    tcase_add_test(tc, port_free_inside_callback_still_delivers_the_rest);
    tcase_add_test(tc, pool_free_inside_callback);
    tcase_add_test(tc, port_free_with_jobs_outstanding);
    suite_add_tcase(s, tc);

    tc = tcase_create("threads");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, threads_start_lazily_up_to_max);
    tcase_add_test(tc, an_idle_worker_is_reused_not_a_new_thread_started);
    tcase_add_test(tc, spinning_workers_take_handoffs_without_losing_any);
    tcase_add_test(tc, nice_applies_to_workers_only);
    tcase_add_test(tc, workers_batch_only_when_asked);
    tcase_add_test(tc, min_threads_start_at_once_and_stay);
    tcase_add_test(tc, idle_threads_are_reaped_down_to_min);
    tcase_add_test(tc, workers_carry_their_names);
    tcase_add_test(tc, workers_block_signals_and_signal_events_fire);
    tcase_add_test(tc, one_pool_serves_four_loops);
    tcase_add_test(tc, one_port_takes_jobs_from_two_pools);
    tcase_add_test(tc, ports_and_pools_leave_no_fds_and_use_cloexec);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(exec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
