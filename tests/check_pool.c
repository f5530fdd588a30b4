/* SPDX-License-Identifier: MIT */
/*
 * The pool's threads: lazy start up to the maximum, reuse of idle workers,
 * minimum threads and idle reaping, nice, names and blocked signals;
 * shutdown (drain, cancel, escalation) and free; run-time resize;
 * worker_init/fini and per-worker state; counters and histograms; a port's
 * default pool. Queue states are made deterministic by parking workers on
 * gates (semaphores), never by sleeping.
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
/* Shutdown.                                                              */

START_TEST(shutdown_drain_runs_everything_queued)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(2, 0, 0);

    tally_init(&tq);
    park_n(pool, park_work, &g, &t, 2);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), -ESHUTDOWN);
    gate_release(&g, 2);
    run_until(fx.base, &tq.calls, 5);
    run_until(fx.base, &t.calls, 2);
    ck_assert_int_eq(tq.ok, 5);
    ck_assert_int_eq(t.ok, 2);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    run_nonblock(fx.base, 3);
    ck_assert_int_eq(tq.calls, 5);
    gate_destroy(&g);
}
END_TEST

START_TEST(shutdown_cancel_cancels_queued_and_stops_running)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(2, 0, 0);

    tally_init(&tq);
    park_n(pool, park_work_stop, &g, &t, 2);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_CANCEL), 0);
    ck_assert_int_eq(tq.calls, 0);
    /* The queued five come back cancelled while both workers are parked. */
    run_until(fx.base, &tq.calls, 5);
    ck_assert_int_eq(tq.cancelled, 5);
    ck_assert_int_eq(t.calls, 0);
    gate_release(&g, 2);
    run_until(fx.base, &t.calls, 2);
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
    evexec_pool *pool = new_pool(1, 1, 0);

    tally_init(&t);
    gate_init(&g, &t);
    wait_for(idle_one, pool);
    /* Handed straight to the idle worker, which may not have woken yet. */
    ck_assert_int_eq(evexec_submit(fx.port, pool, park_work_stop, gate_done, &g, NULL), 0);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_CANCEL), 0);
    gate_wait_entered(&g, 1);
    gate_release(&g, 1);
    run_until(fx.base, &t.calls, 1);
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
    evexec_pool *pool = new_pool(1, 0, 0);

    tally_init(&tq);
    park_n(pool, park_work, &g, &t, 1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_CANCEL), 0);
    run_until(fx.base, &tq.calls, 3);
    ck_assert_int_eq(tq.cancelled, 3);
    gate_release(&g, 1);
    run_until(fx.base, &t.calls, 1);
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
    evexec_pool *pool = new_pool(1, 0, 0);
    struct pool_freer f = {pool, 1};
    pthread_t th;

    tally_init(&tq);
    park_n(pool, park_work, &g, &t, 1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(pthread_create(&th, NULL, free_pool_thread, &f), 0);
    gate_release(&g, 1);
    pthread_join(th, NULL);
    ck_assert_int_eq(f.rc, 0);
    /* The pool is gone; its jobs are delivered by the loop as usual. */
    run_until(fx.base, &tq.calls, 3);
    run_until(fx.base, &t.calls, 1);
    ck_assert_int_eq(tq.ok, 3);
    gate_destroy(&g);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Threads: lazy start, hand-off to idle workers, reaping, names.         */

START_TEST(threads_start_lazily_up_to_max)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(3, 0, 0);

    tally_init(&t);
    tally_init(&tq);
    gate_init(&g, &t);
    ck_assert_uint_eq(pool_stats(pool).threads, 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_uint_eq(pool_stats(pool).threads, 1);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 2);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.threads, 3);
    ck_assert_uint_eq(s.threads_started, 3);
    ck_assert_uint_eq(s.running, 3);
    ck_assert_uint_eq(s.queued, 10);
    gate_release(&g, 3);
    run_until(fx.base, &tq.calls, 10);
    run_until(fx.base, &t.calls, 3);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(an_idle_worker_is_reused_not_a_new_thread_started)
{
    struct tally t;
    evexec_pool *pool = new_pool(4, 0, 0);

    tally_init(&t);
    for (int i = 1; i <= 100; i++) {
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &t, NULL), 0);
        run_until(fx.base, &t.calls, i);
        wait_for(idle_one, pool); /* the worker is back waiting */
    }
    ck_assert_uint_eq(pool_stats(pool).threads_started, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

/* Jobs queued behind a worker that blocks must not wait for it. A few of
 * them wake no worker at once when there is a watchman: the watchman must
 * take them (pool-worker.c, "Small backlogs and the watchman"). Blocking
 * jobs and backlogs follow each other at once, so that backlogs find the
 * watchman the earlier ones made; the jobs that block are let go only
 * after the backlogs ran. With a seed: pool size (2..6), backlogs (1..5
 * jobs), the number of jobs that block (up to all workers but one) and
 * spinning at random, round by round; without, 4 workers, 3 and 3. */
static void backlogs_behind_blocked_workers(int rounds, const unsigned *seed)
{
    unsigned st = seed ? *seed : 0;
    for (int round = 1; round <= rounds; round++) {
        struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
        struct gate g;
        struct tally t, quick;
        evexec_pool *pool;
        unsigned n = seed ? 2 + rnd(&st, 5) : 4;
        unsigned blockers = seed ? 1 + rnd(&st, n - 1) : n - 1;

        o.max_threads = o.min_threads = n;
        o.spin_us = seed && rnd(&st, 2) ? 300 : 0;
        ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
        tally_init(&t);
        tally_init(&quick);
        gate_init(&g, &t);
        wait_idle(pool, n);
        for (int again = 0; again < (seed ? 3 : 30); again++) {
            int want = quick.calls;
            for (unsigned blocked = 1; blocked <= blockers; blocked++) {
                unsigned k = seed ? 1 + rnd(&st, 5) : 3;
                ck_assert_int_eq(evexec_submit(fx.port, pool, park_work, gate_done, &g, NULL), 0);
                for (unsigned i = 0; i < k; i++)
                    ck_assert_int_eq(
                        evexec_submit(fx.port, pool, echo_work, tally_done, &quick, NULL), 0);
                want += (int)k;
                run_until(fx.base, &quick.calls, want); /* fails after 10 s */
            }
            ck_assert_int_eq(t.calls, again * (int)blockers); /* still blocked */
            gate_wait_entered(&g, (int)blockers);
            gate_release(&g, (int)blockers);
            run_until(fx.base, &t.calls, (again + 1) * (int)blockers);
        }
        ck_assert_int_eq(quick.ok, quick.calls);
        ck_assert_int_eq(t.ok, t.calls);
        ck_assert_int_eq(evexec_pool_free(pool), 0);
        gate_destroy(&g);
    }
}

START_TEST(a_small_backlog_behind_a_blocked_worker_does_not_wait_for_it)
{
    backlogs_behind_blocked_workers(1, NULL);
}
END_TEST

START_TEST(small_backlogs_behind_blocked_workers_at_random)
{
    unsigned seed = stress_seed();
    fprintf(stderr, "check_pool: backlogs: seed=%u (replay: EVEXEC_STRESS_SEED=%u)\n", seed, seed);
    backlogs_behind_blocked_workers(10, &seed);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Jobs taken ahead (pool-worker.c, "Jobs taken ahead"): a worker that   */
/* takes a job while others wait takes its share of them into slots of   */
/* its own. Made deterministic with gates: a worker let go from its gate */
/* with N jobs queued behind it takes min(4, N / threads) of them ahead.  */

/* Where each job's work function ran, in order. */
struct order {
    _Atomic int n;
    int tag[512];
};

struct tagged {
    struct order *o;
    int tag;
    struct gate *park; /* park here first, if set */
    struct tally *tally;
    int stopped;       /* its stop flag, once let go from the gate */
};

static void tagged_done(int status, void *result, void *arg)
{
    tally_done(status, result, ((struct tagged *)arg)->tally);
}

static void *tagged_work(evexec_job *job, void *arg)
{
    struct tagged *t = arg;
    t->o->tag[atomic_fetch_add(&t->o->n, 1)] = t->tag;
    if (t->park) {
        park_work(job, t->park);
        t->stopped = evexec_job_cancelled(job);
    }
    return arg;
}

/* Submits work tagged `tag`; returns its id. */
static evexec_job_id submit_tagged(evexec_pool *pool, struct tagged *t, struct order *o, int tag,
                                   struct gate *park, struct tally *tl)
{
    evexec_job_id id = 0;
    *t = (struct tagged){o, tag, park, tl, 0};
    ck_assert_int_eq(evexec_submit(fx.port, pool, tagged_work, tagged_done, t, &id), 0);
    return id;
}

/* One thread. ahead_begin(): the gate job P runs; J1 (which parks on gj)
 * and J2..Jn are queued. ahead_start(): P let go, the worker takes J1 and
 * J2..J5 ahead, and runs J1. Tallies: tp for P, t for the Js. */
struct ahead {
    evexec_pool *pool;
    struct gate gp, gj;
    struct tally tp, t;
    struct order o;
    struct tagged tg[8];
    evexec_job_id id[8];
};

static void ahead_begin(struct ahead *a, size_t max_queued, int n)
{
    memset(a, 0, sizeof *a);
    a->pool = new_pool(1, 1, max_queued);
    park_n(a->pool, park_work, &a->gp, &a->tp, 1);
    tally_init(&a->t);
    gate_init(&a->gj, &a->t);
    for (int i = 1; i <= n; i++)
        a->id[i] = submit_tagged(a->pool, &a->tg[i], &a->o, i, i == 1 ? &a->gj : NULL, &a->t);
}

static void ahead_start(struct ahead *a)
{
    gate_release(&a->gp, 1);
    gate_wait_entered(&a->gj, 1);
}

static void ahead_end(struct ahead *a)
{
    ck_assert_int_eq(evexec_pool_free(a->pool), 0);
    gate_destroy(&a->gp);
    gate_destroy(&a->gj);
}

/* A job held ahead is queued for stats and for cancel: evexec_cancel()
 * takes it back (0, it never runs, -ECANCELED); the others run in order
 * after J1. */
START_TEST(a_job_taken_ahead_is_cancelled_and_never_runs)
{
    struct ahead a;
    ahead_begin(&a, 0, 5);
    ahead_start(&a);
    struct evexec_pool_stats st = pool_stats(a.pool);
    ck_assert_uint_eq(st.queued, 4);
    ck_assert_uint_eq(st.queued_normal, 4);
    ck_assert_uint_eq(st.running, 1);
    ck_assert_int_eq(evexec_cancel(fx.port, a.id[3]), 0);
    ck_assert_int_eq(evexec_cancel(fx.port, a.id[3]), -EALREADY);
    ck_assert_int_eq(evexec_cancel(fx.port, a.id[1]), -EBUSY);
    ck_assert_uint_eq(pool_stats(a.pool).queued, 3);
    run_until(fx.base, &a.t.calls, 1);
    ck_assert_int_eq(a.t.cancelled, 1);
    gate_release(&a.gj, 1);
    run_until(fx.base, &a.t.calls, 5);
    run_until(fx.base, &a.tp.calls, 1);
    ck_assert_int_eq(a.t.cancelled, 1);
    ck_assert_int_eq(a.t.ok, 4);
    int want[] = {1, 2, 4, 5};
    ck_assert_int_eq(atomic_load(&a.o.n), 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(a.o.tag[i], want[i]);
    ck_assert_uint_eq(pool_stats(a.pool).queued, 0);
    ahead_end(&a);
}
END_TEST

/* A job of a higher priority queued while normal ones are held ahead
 * starts before them; they keep their order. */
START_TEST(a_higher_priority_job_overtakes_jobs_taken_ahead)
{
    struct ahead a;
    ahead_begin(&a, 0, 5);
    ahead_start(&a);
    a.tg[6] = (struct tagged){&a.o, 6, NULL, &a.t, 0};
    ck_assert_int_eq(submit_prio(a.pool, EVEXEC_PRIO_HIGH, tagged_work, tagged_done, &a.tg[6], NULL),
                     0);
    ck_assert_uint_eq(pool_stats(a.pool).queued, 5);
    gate_release(&a.gj, 1);
    run_until(fx.base, &a.t.calls, 6);
    ck_assert_int_eq(a.t.ok, 6);
    int want[] = {1, 6, 2, 3, 4, 5};
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(a.o.tag[i], want[i]);
    ahead_end(&a);
}
END_TEST

/* max_queued counts jobs held ahead until their worker starts them. */
START_TEST(jobs_taken_ahead_count_against_max_queued)
{
    struct ahead a;
    ahead_begin(&a, 4, 4);
    ck_assert_int_eq(evexec_submit(fx.port, a.pool, echo_work, tally_done, &a.t, NULL), -EAGAIN);
    ahead_start(&a); /* J1 runs, J2..J4 held ahead: 3 waiting */
    ck_assert_uint_eq(pool_stats(a.pool).queued, 3);
    submit_tagged(a.pool, &a.tg[5], &a.o, 5, NULL, &a.t);
    ck_assert_int_eq(evexec_submit(fx.port, a.pool, echo_work, tally_done, &a.t, NULL), -EAGAIN);
    gate_release(&a.gj, 1);
    run_until(fx.base, &a.t.calls, 5);
    ck_assert_int_eq(a.t.ok, 5);
    /* Claimed and run: their places are free again. */
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(evexec_submit(fx.port, a.pool, echo_work, tally_done, &a.t, NULL), 0);
    run_until(fx.base, &a.t.calls, 9);
    ahead_end(&a);
}
END_TEST

/* EVEXEC_CANCEL cancels jobs held ahead (never run) and stops the job
 * their worker runs. */
START_TEST(shutdown_cancel_cancels_jobs_taken_ahead)
{
    struct ahead a;
    ahead_begin(&a, 0, 5);
    ahead_start(&a);
    ck_assert_uint_eq(pool_stats(a.pool).queued, 4);
    ck_assert_int_eq(evexec_pool_shutdown(a.pool, EVEXEC_CANCEL), 0);
    run_until(fx.base, &a.t.calls, 4);
    ck_assert_int_eq(a.t.cancelled, 4);
    gate_release(&a.gj, 1);
    run_until(fx.base, &a.t.calls, 5);
    ck_assert_int_eq(a.tg[1].stopped, 1);
    ck_assert_int_eq(atomic_load(&a.o.n), 1); /* J1 only */
    ahead_end(&a);
}
END_TEST

/* Two threads. Worker A takes J1, which blocks, and J2..J5 ahead; then
 * worker B gets a long queue. Jobs held by a worker that claims none must
 * not wait for it: held that long (over 20 us), B takes them back before
 * anything newer, and all run while J1 still blocks. */
START_TEST(jobs_taken_ahead_by_a_blocked_worker_run_elsewhere)
{
    enum { QUEUE = 100 };
    evexec_pool *pool = new_pool(2, 2, 0);
    struct gate ga, gb, gj;
    struct tally ta, tb, tj, t;
    static struct tagged tg[QUEUE + 6];
    struct order *o = calloc(1, sizeof *o);

    park_n(pool, park_work, &ga, &ta, 1);
    tally_init(&tb);
    gate_init(&gb, &tb);
    ck_assert_int_eq(evexec_submit(fx.port, pool, park_work, gate_done, &gb, NULL), 0);
    gate_wait_entered(&gb, 1); /* both workers parked */
    tally_init(&tj);
    tally_init(&t);
    gate_init(&gj, &tj);
    submit_tagged(pool, &tg[1], o, 1, &gj, &tj);
    for (int i = 2; i < QUEUE + 6; i++)
        submit_tagged(pool, &tg[i], o, i, NULL, &t);
    gate_release(&ga, 1);
    gate_wait_entered(&gj, 1); /* A runs J1 and holds J2..J5 */
    ck_assert_uint_eq(pool_stats(pool).queued, QUEUE + 4);
    run_for(1);
    gate_release(&gb, 1);
    run_until(fx.base, &t.calls, QUEUE + 4); /* all of them, J1 blocked */
    ck_assert_int_eq(t.ok, QUEUE + 4);
    ck_assert_int_eq(tj.calls, 0);
    for (int i = 0; i <= 5; i++) /* J1, then J2..J5 before anything newer */
        ck_assert_int_eq(o->tag[i], i + 1);
    gate_release(&gj, 1);
    run_until(fx.base, &tj.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&ga);
    gate_destroy(&gb);
    gate_destroy(&gj);
    free(o);
}
END_TEST

/* A submit that finds a watchman on duty and a worker busy wakes nobody
 * and leaves its job to them ("Submits that wake nobody"): if the busy
 * worker blocks, the watchman's next look must find the job. Two threads:
 * A blocks; a job handed to B while A is busy asks for a watchman, which
 * B becomes once idle; then jobs are submitted one by one, each must run
 * while A still blocks. */
START_TEST(a_job_left_to_a_blocked_worker_is_taken_by_the_watchman)
{
    evexec_pool *pool = new_pool(2, 2, 0);
    struct gate ga;
    struct tally ta, t;

    wait_idle(pool, 2);
    park_n(pool, park_work, &ga, &ta, 1);
    tally_init(&t);
    for (int i = 1; i <= 20; i++) {
        wait_idle(pool, 1);
        run_for(1); /* B done searching: parked, the watchman after the first */
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &t, NULL), 0);
        run_until(fx.base, &t.calls, i);
    }
    ck_assert_int_eq(t.ok, 20);
    ck_assert_int_eq(ta.calls, 0);
    gate_release(&ga, 1);
    run_until(fx.base, &ta.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&ga);
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
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &t, NULL), 0);
        if (i % 3 == 0) /* sometimes two in flight */
            ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &t, NULL), 0);
        run_until(fx.base, &t.calls, i + i / 3);
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
    ck_assert_int_eq(evexec_submit(fx.port, pool, report_nice, tally_done, &t, NULL), 0);
    run_until(fx.base, &t.calls, 1);
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
        ck_assert_int_eq(evexec_submit(fx.port, pool, report_policy, tally_done, &t, NULL), 0);
        run_until(fx.base, &t.calls, 1);
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
        ck_assert_int_eq(evexec_submit(fx.port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 4);
    ck_assert_uint_eq(pool_stats(pool).threads, 4);
    gate_release(&g, 4);
    run_until(fx.base, &t.calls, 4);
    wait_for(down_to_one, pool);
    /* And the pool grows again on demand. */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 3);
    ck_assert_uint_eq(pool_stats(pool).threads, 3);
    gate_release(&g, 3);
    run_until(fx.base, &t.calls, 7);
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
    evexec_pool *pool = new_named_pool(2, 0, 0, "tst");

    nnames = 0;
    gate_init(&g, NULL);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, report_name, name_done, &g, NULL), 0);
    gate_wait_entered(&g, 2);
    gate_release(&g, 2);
    run_until(fx.base, &nnames, 2);
    ck_assert(strcmp(names[0], "tst-1") == 0 || strcmp(names[0], "tst-2") == 0);
    ck_assert(strcmp(names[1], "tst-1") == 0 || strcmp(names[1], "tst-2") == 0);
    ck_assert_str_ne(names[0], names[1]);
    ck_assert_int_eq(evexec_pool_free(pool), 0);

    /* A long prefix is cut to the kernel's 15 bytes, not refused. */
    pool = new_named_pool(1, 0, 0, "averyveryverylongprefix");
    nnames = 0;
    ck_assert_int_eq(evexec_submit(fx.port, pool, report_name, name_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    gate_release(&g, 1);
    run_until(fx.base, &nnames, 1);
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
    evexec_pool *pool = new_pool(2, 0, 0);

    tally_init(&t);
    tally_init(&ts);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(fx.port, pool, report_sigmask, tally_done, &ts, NULL), 0);
    run_until(fx.base, &ts.calls, 1);
    ck_assert_msg(ts.last_result == NULL, "signal %d not blocked in a worker",
                  (int)(intptr_t)ts.last_result);

    /* Both workers busy; the signal must reach the loop thread. */
    got_signal = 0;
    struct event *sev = evsignal_new(fx.base, SIGUSR1, on_signal, NULL);
    ck_assert_int_eq(event_add(sev, NULL), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 2);
    ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
    run_until(fx.base, &got_signal, 1);
    gate_release(&g, 2);
    run_until(fx.base, &t.calls, 2);
    event_free(sev);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

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

/* ---------------------------------------------------------------------- */
/* Run-time resize.                                                       */

START_TEST(resize_growing_max_starts_threads_for_queued_jobs)
{
    struct gate g;
    struct tally t;
    evexec_pool *pool = new_pool(1, 0, 0);
    struct evexec_pool_stats s;

    tally_init(&t);
    gate_init(&g, &t);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, park_work, gate_done, &g, NULL), 0);
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
    run_until(fx.base, &t.calls, 3);
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
    park_n(pool, park_work_stop, &g, &t, 4);
    ck_assert_int_eq(count_threads(), threads0 + 4);

    ck_assert_int_eq(evexec_pool_resize(pool, 0, 1, 65536), 0);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.max_threads, 1);
    ck_assert_uint_eq(s.running, 4); /* nothing interrupted */
    ck_assert_uint_eq(s.threads, 4);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(t.calls, 0);

    gate_release(&g, 4);
    run_until(fx.base, &t.calls, 4);
    ck_assert_int_eq(t.ok, 4);
    ck_assert_ptr_eq(t.last_result, NULL); /* no stop flag was set */
    struct threads_want w = {pool, 1, threads0 + 1};
    wait_for(threads_are, &w);

    /* The new maximum holds: a second job waits for the one thread. */
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    s = pool_stats(pool);
    ck_assert_uint_eq(s.threads, 1);
    ck_assert_uint_eq(s.running, 1);
    ck_assert_uint_eq(s.queued, 1);
    gate_release(&g, 1);
    gate_wait_entered(&g, 1);
    gate_release(&g, 1);
    run_until(fx.base, &t.calls, 6);
    ck_assert_int_eq(t.ok, 6);
    ck_assert_int_eq(count_threads(), threads0 + 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    wait_threads(threads0);
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

    tally_init(&tq);
    tally_init(&tr);
    park_n(pool, park_work, &g, &t, 1);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tr, NULL), -EAGAIN);

    /* Raised: the same submit now succeeds. */
    ck_assert_int_eq(evexec_pool_resize(pool, 0, 1, 3), 0);
    ck_assert_uint_eq(pool_stats(pool).max_queued, 3);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tr, NULL), -EAGAIN);

    /* Lowered below the queue: every queued job stays, new ones fail. */
    ck_assert_int_eq(evexec_pool_resize(pool, 0, 1, 1), 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.queued, 3);
    ck_assert_uint_eq(s.max_queued, 1);
    ck_assert_uint_eq(s.cancelled, 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tr, NULL), -EAGAIN);
    ck_assert_uint_eq(pool_stats(pool).rejected, 3);

    gate_release(&g, 1);
    run_until(fx.base, &tq.calls, 3);
    run_until(fx.base, &t.calls, 1);
    ck_assert_int_eq(tq.ok, 3);
    /* Room again once the queue drained. */
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    run_until(fx.base, &tq.calls, 4);
    run_nonblock(fx.base, 5);
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
    ck_assert_int_eq(evexec_submit(fx.port, pool, resize_from_worker, pool_and_tally_done, &pt,
                                   NULL), 0);
    run_until(fx.base, &pt.t.calls, 1);
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
/* Per-worker state.                                                      */

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
        ck_assert_int_eq(evexec_submit(fx.port, pool, state_work, seen_done, &sn[i], NULL), 0);
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
    run_until(fx.base, &t.calls, 3);
    ck_assert_int_eq(t.ok, 3);

    /* More jobs on the same threads: no new init. */
    static struct seen more[20];
    memset(more, 0, sizeof more);
    for (int i = 0; i < 20; i++) {
        more[i].t = &t;
        ck_assert_int_eq(evexec_submit(fx.port, pool, state_work, seen_done, &more[i], NULL), 0);
    }
    run_until(fx.base, &t.calls, 23);
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

static int three_finis(void *arg)
{
    struct hooks *h = arg;
    return atomic_load(&h->finis) >= 3;
}

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
    park_n(pool, park_work, &g, &t, 3);
    gate_release(&g, 3);
    run_until(fx.base, &t.calls, 3);
    /* Reaped by the idle timeout: each one's fini runs on its way out
     * (after the thread has left the count: wait for them). */
    struct threads_want w = {pool, 0, -1};
    wait_for(threads_are, &w);
    wait_for(three_finis, &h);
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
    ck_assert_int_eq(evexec_submit(fx.port, pool, state_work, seen_done, &sn, NULL), 0);
    run_until(fx.base, &t.calls, 1);
    ck_assert_int_eq(t.ok, 1);
    ck_assert_ptr_null(t.last_result);
    ck_assert_int_eq(evexec_pool_free(pool), 0);

    o.max_threads = 1;
    hooks_opts(&o, &h, INIT_NULL_STATE);
    pool = new_pool_o(&o);
    t.last_result = &t;
    ck_assert_int_eq(evexec_submit(fx.port, pool, state_work, seen_done, &sn, NULL), 0);
    run_until(fx.base, &t.calls, 2);
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
    ck_assert_int_eq(evexec_submit(fx.port, pool, count_work, tally_done, &t, NULL), 0);
    accepted++;
    for (int i = 0; i < 4; i++) {
        int rc = evexec_submit(fx.port, pool, count_work, tally_done, &t, NULL);
        ck_assert_msg(rc == 0 || rc == -EAGAIN, "submit: %s", evexec_errname(rc));
        accepted += rc == 0;
    }
    run_until(fx.base, &t.calls, accepted);
    ck_assert_int_eq(t.cancelled, accepted);
    ck_assert_ptr_null(t.last_result);
    struct init_failures_want w = {pool, &h};
    wait_for(all_init_failures_counted, &w);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_ge(s.worker_init_failed, 1);
    ck_assert_uint_eq(s.queued, 0);
    ck_assert_uint_eq(s.running, 0);

    /* Later submits are still never stranded. */
    int rc = evexec_submit(fx.port, pool, count_work, tally_done, &t, NULL);
    ck_assert_msg(rc == 0 || rc == -EAGAIN, "submit: %s", evexec_errname(rc));
    accepted += rc == 0;
    run_until(fx.base, &t.calls, accepted);
    ck_assert_int_eq(t.cancelled, accepted);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(t.calls, accepted);
    ck_assert_int_eq(atomic_load(&ran_work), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(atomic_load(&h.finis), 0);
    ck_assert_int_eq(atomic_load(&h.inits_ok), 0);
    wait_threads(threads0);
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
    ck_assert_int_eq(evexec_submit(fx.port, pool, count_work, tally_done, &t, NULL), 0);
    run_until(fx.base, &t.calls, 1);
    ck_assert_int_eq(t.cancelled, 1);
    ck_assert_int_eq(atomic_load(&ran_work), 0);
    ck_assert_uint_eq(pool_stats(pool).worker_init_failed, 1);

    ck_assert_int_eq(evexec_submit(fx.port, pool, count_work, tally_done, &t, NULL), 0);
    run_until(fx.base, &t.calls, 2);
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
    ck_assert_int_eq(evexec_submit(fx.port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_submit(fx.port, pool, count_work, tally_done, &tq, NULL), 0);
    wait_for(one_init_failure, pool); /* the second thread tried and failed */
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(tq.calls, 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.queued, 1);
    ck_assert_uint_eq(s.cancelled, 0);

    gate_release(&g, 1);
    run_until(fx.base, &tq.calls, 1);
    run_until(fx.base, &t.calls, 1);
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
/* Counters and histograms.                                               */

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
    run_until(fx.base, &tq.calls, 6);
    run_until(fx.base, &t.calls, 3);
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
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, NULL), 0);
    run_until(fx.base, &tq.calls, N);
    struct evexec_pool_histograms h = hist_of(pool);
    ck_assert_uint_eq(hist_sum(h.wait), N);
    ck_assert_uint_eq(hist_sum(h.run), N);

    /* Cancelled jobs never ran and are not counted. */
    ck_assert_int_eq(evexec_pool_resize(pool, 0, 1, 65536), 0);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(fx.port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tq, &ids[i]), 0);
    ck_assert_int_eq(evexec_cancel(fx.port, ids[1]), 0);
    ck_assert_int_eq(evexec_cancel(fx.port, ids[2]), 0);
    gate_release(&g, 1);
    run_until(fx.base, &tq.calls, N + 4);
    run_until(fx.base, &t.calls, 1);
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
    ck_assert_int_eq(evexec_submit(fx.port, pool, sleep_work, timed_done, &tm, NULL), 0);
    run_until(fx.base, &tm.t.calls, 1);
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
/* The default pool.                                                      */

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
static void default_name_done(int status, void *result, void *arg)
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
    struct ts_waiter c;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want_max = cpus + 4 < 32 ? (unsigned)(cpus + 4) : 32;
    int threads0 = threads_base();

    tally_init(&t);
    ck_assert_int_gt(cpus, 0);
    ck_assert_int_eq(evexec_port_default_pool(fx.port, &dp), 0);
    ck_assert_ptr_nonnull(dp);
    ck_assert_int_eq(evexec_port_default_pool(fx.port, &dp2), 0);
    ck_assert_ptr_eq(dp, dp2);
    struct evexec_pool_stats s = pool_stats(dp);
    ck_assert_uint_eq(s.max_threads, want_max);
    ck_assert_uint_eq(s.min_threads, 0);
    ck_assert_uint_eq(s.max_queued, 65536);
    ck_assert_uint_eq(s.threads, 0); /* none until work arrives */
    ck_assert_uint_eq(s.submitted, 0);

    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(evexec_submit(fx.port, NULL, echo_work, tally_done, &t, NULL), 0);
    ck_assert_int_eq(submit_prio(NULL, EVEXEC_PRIO_LOW, echo_work, tally_done, &t, NULL), 0);
    run_until(fx.base, &t.calls, 6);
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
    run_until(fx.base, &t.calls, 7);
    ck_assert_uint_eq(pool_stats(dp).submitted, 7);

    /* Its workers' names. */
    default_names = 0;
    ck_assert_int_eq(evexec_submit(fx.port, NULL, name_work, default_name_done, NULL, NULL), 0);
    run_until(fx.base, &default_names, 1);
    ck_assert_msg(strncmp(default_name, "evexec-def-", 11) == 0 && default_name[11] >= '1' &&
                      default_name[11] <= '9',
                  "default pool worker named \"%s\"", default_name);

    /* Released with the port: no thread left once the port is gone. */
    ck_assert_int_gt(count_threads(), threads0);
    ck_assert_int_eq(evexec_port_free(fx.port), 0);
    event_base_dispatch(fx.base);
    wait_threads(threads0);
    ck_assert_int_eq(evexec_port_new(&fx.port, fx.base, NULL), 0); /* for teardown */

    /* A new port has a new default pool (it may reuse the address, so
     * compare its counters). */
    ck_assert_int_eq(evexec_port_default_pool(fx.port, &dp), 0);
    ck_assert_uint_eq(pool_stats(dp).submitted, 0);
}
END_TEST

static int late_rc_pool, late_rc_submit, late_calls;
static void late_done(int status, void *result, void *arg)
{
    evexec_pool *p = (evexec_pool *)&late_calls;
    (void)result;
    gate_done(status, result, arg);
    late_rc_pool = evexec_port_default_pool(fx.port, &p);
    ck_assert_ptr_eq(p, (evexec_pool *)&late_calls); /* untouched on error */
    late_rc_submit = evexec_submit(fx.port, NULL, echo_work, NULL, NULL, NULL);
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
    ck_assert_int_eq(evexec_port_default_pool(fx.port, &dp), 0);
    ck_assert_int_eq(evexec_submit(fx.port, NULL, park_work_stop, late_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    late_calls = 0;
    ck_assert_int_eq(evexec_port_free(fx.port), 0);  /* deferred: a job runs */
    gate_release(&g, 1);
    event_base_dispatch(fx.base);                    /* delivers it, then the port goes */
    ck_assert_int_eq(late_calls, 1);
    ck_assert_int_eq(t.ok, 1);
    ck_assert_ptr_eq(t.last_result, (void *)1);   /* its stop flag was set */
    ck_assert_int_eq(late_rc_pool, -ESHUTDOWN);
    ck_assert_int_eq(late_rc_submit, -ESHUTDOWN);
    wait_threads(threads0);
    ck_assert_int_eq(evexec_port_new(&fx.port, fx.base, NULL), 0); /* for teardown */
    gate_destroy(&g);
}
END_TEST

START_TEST(default_pool_errors)
{
    evexec_pool *dp = (evexec_pool *)&dp;

    ck_assert_int_eq(evexec_port_default_pool(NULL, &dp), -EINVAL);
    ck_assert_ptr_eq(dp, (evexec_pool *)&dp);
    ck_assert_int_eq(evexec_port_default_pool(fx.port, NULL), -EINVAL);
    /* A NULL pool with a NULL port is still a NULL port. */
    ck_assert_int_eq(evexec_submit(NULL, NULL, echo_work, NULL, NULL, NULL), -EINVAL);
    ck_assert_int_eq(evexec_submit(fx.port, NULL, NULL, NULL, NULL, NULL), -EINVAL);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Giving way: a worker that runs for 25 us without running out of work   */
/* yields its CPU between jobs, unless the pool says EVEXEC_POOL_NO_YIELD; */
/* one that runs out of work between jobs starts its stretch again.        */
/* sched_yield() is interposed here: the library's calls come to it.       */

static _Thread_local int on_worker; /* set by way_work on its worker */
static atomic_int worker_yields;

int sched_yield(void)
{
    if (on_worker)
        atomic_fetch_add(&worker_yields, 1);
    return (int)syscall(SYS_sched_yield);
}

enum { WAY_SPIN_US = 20 };

static void *way_work(evexec_job *job, void *arg)
{
    uint64_t end = now_ns() + WAY_SPIN_US * 1000u;
    (void)job;
    on_worker = 1;
    while (now_ns() < end)
        ;
    return arg;
}

/* n jobs of WAY_SPIN_US queued at once on a pool of one worker with those
 * flags: the yields its worker made meanwhile. */
static int yields_in_a_backlog(unsigned flags, int n)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct tally t;
    o.max_threads = o.min_threads = 1;
    o.flags = flags;
    evexec_pool *pool = new_pool_o(&o);
    tally_init(&t);
    atomic_store(&worker_yields, 0);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, way_work, tally_done, &t, NULL), 0);
    run_until(fx.base, &t.calls, n);
    ck_assert_int_eq(t.ok, n);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    return atomic_load(&worker_yields);
}

START_TEST(a_busy_worker_gives_way_between_jobs)
{
    /* 400 jobs of 20 us back to back: 8 ms without running out, a yield
     * every 25 us of it, some 300 (fewer only if the clock is read less
     * often than every job: never more than every four here). */
    int y = yields_in_a_backlog(0, 400);
    ck_assert_msg(y >= 40, "%d yields in 8 ms of running", y);
    ck_assert_msg(y <= 400, "%d yields for 400 jobs", y);
}
END_TEST

START_TEST(no_yield_pools_never_give_way)
{
    int y = yields_in_a_backlog(EVEXEC_POOL_NO_YIELD, 400);
    ck_assert_int_eq(y, 0);
}
END_TEST

START_TEST(a_worker_that_goes_idle_between_jobs_does_not_yield)
{
    /* One job in flight: the worker runs out of work after each 20 us job
     * (the next is submitted after the callback, and a worker sends a job
     * home only once it finds the queue empty), so no stretch reaches
     * 25 us. */
    struct tally t;
    evexec_pool *pool = new_pool(1, 1, 0);
    atomic_store(&worker_yields, 0);
    for (int i = 0; i < 300; i++) {
        tally_init(&t);
        ck_assert_int_eq(evexec_submit(fx.port, pool, way_work, tally_done, &t, NULL), 0);
        run_until(fx.base, &t.calls, 1);
        ck_assert_int_eq(t.ok, 1);
    }
    ck_assert_int_eq(atomic_load(&worker_yields), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

static Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc;

    tc = add_tcase(s, "threads", 60, FX_PORT);
    tcase_add_test(tc, threads_start_lazily_up_to_max);
    tcase_add_test(tc, an_idle_worker_is_reused_not_a_new_thread_started);
    tcase_add_test(tc, spinning_workers_take_handoffs_without_losing_any);
    tcase_add_test(tc, nice_applies_to_workers_only);
    tcase_add_test(tc, workers_batch_only_when_asked);
    tcase_add_test(tc, min_threads_start_at_once_and_stay);
    tcase_add_test(tc, idle_threads_are_reaped_down_to_min);
    tcase_add_test(tc, workers_carry_their_names);
    tcase_add_test(tc, workers_block_signals_and_signal_events_fire);

    tc = add_tcase(s, "give-way", 60, FX_PORT);
    tcase_add_test(tc, a_busy_worker_gives_way_between_jobs);
    tcase_add_test(tc, no_yield_pools_never_give_way);
    tcase_add_test(tc, a_worker_that_goes_idle_between_jobs_does_not_yield);

    tc = add_tcase(s, "backlog", 60, FX_PORT);
    tcase_add_test(tc, a_small_backlog_behind_a_blocked_worker_does_not_wait_for_it);
    tcase_add_test(tc, small_backlogs_behind_blocked_workers_at_random);

    tc = add_tcase(s, "ahead", 60, FX_PORT);
    tcase_add_test(tc, a_job_taken_ahead_is_cancelled_and_never_runs);
    tcase_add_test(tc, a_higher_priority_job_overtakes_jobs_taken_ahead);
    tcase_add_test(tc, jobs_taken_ahead_count_against_max_queued);
    tcase_add_test(tc, shutdown_cancel_cancels_jobs_taken_ahead);
    tcase_add_test(tc, jobs_taken_ahead_by_a_blocked_worker_run_elsewhere);
    tcase_add_test(tc, a_job_left_to_a_blocked_worker_is_taken_by_the_watchman);

    tc = add_tcase(s, "shutdown-and-free", 60, FX_PORT);
    tcase_add_test(tc, shutdown_drain_runs_everything_queued);
    tcase_add_test(tc, shutdown_cancel_cancels_queued_and_stops_running);
    tcase_add_test(tc, shutdown_cancel_stops_a_job_just_handed_to_an_idle_worker);
    tcase_add_test(tc, shutdown_drain_then_cancel_escalates);
    tcase_add_test(tc, pool_free_waits_for_queued_work_then_delivers);

    tc = add_tcase(s, "resize", 30, FX_PORT);
    tcase_add_test(tc, resize_growing_max_starts_threads_for_queued_jobs);
    tcase_add_test(tc, resize_shrinking_interrupts_no_running_job);
    tcase_add_test(tc, resize_min_threads_starts_and_releases_threads);
    tcase_add_test(tc, resize_max_queued);
    tcase_add_test(tc, stats_report_the_current_limits);
    tcase_add_test(tc, resize_errors);

    tc = add_tcase(s, "worker-state", 30, FX_PORT);
    tcase_add_test(tc, worker_init_and_fini_once_per_thread_with_its_state);
    tcase_add_test(tc, fini_runs_when_idle_and_resized_threads_exit);
    tcase_add_test(tc, worker_state_is_null_without_a_hook_or_a_state);
    tcase_add_test(tc, worker_init_failing_everywhere_cancels_queued_jobs);
    tcase_add_test(tc, worker_init_failing_once_then_a_thread_works);
    tcase_add_test(tc, worker_init_failing_with_a_thread_left_keeps_the_queue);

    tc = add_tcase(s, "metrics", 30, FX_PORT);
    tcase_add_test(tc, stats_count_queued_and_running_per_class);
    tcase_add_test(tc, stats_of_the_old_size_are_still_filled);
    tcase_add_test(tc, histograms_need_the_flag_and_a_full_size);
    tcase_add_test(tc, histograms_count_every_job_that_ran_once);
    tcase_add_test(tc, a_20ms_job_lands_in_the_bucket_of_its_run_time);

    tc = add_tcase(s, "default-pool", 30, FX_PORT);
    tcase_add_test(tc, default_pool_is_made_once_and_serves_null_pools);
    tcase_add_test(tc, default_pool_goes_with_a_port_freed_while_it_works);
    tcase_add_test(tc, default_pool_errors);
    return s;
}

int main(void)
{
    return run_suite(pool_suite());
}
