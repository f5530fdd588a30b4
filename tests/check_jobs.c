/* SPDX-License-Identifier: MIT */
/*
 * The job-side features of issue 7: deadlines (evexec_job_opts.timeout_ms
 * and cleanup), groups (evexec_group_*), and submits from any thread
 * (evexec_submit_threadsafe()). One test per behaviour and per error the
 * header documents. Queue states are made deterministic by parking workers
 * on gates; the loop is run for a fixed time only where a deadline has to
 * pass.
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

static struct event_base *base;
static evexec_port *port;

static void dispatch_all(struct event_base *b);
static pthread_t loop_tid;  /* the fixture's loop thread: this one */
static int seq;             /* order of callbacks on the loop thread */
static int member_calls;    /* djob done callbacks, all jobs together */

static void setup(void)
{
    loop_tid = pthread_self();
    seq = 0;
    member_calls = 0;
    port_fixture_setup(&base, &port);
}

static void teardown(void)
{
    port_fixture_teardown(base, port);
}

static evexec_pool *new_pool(unsigned max, unsigned min, size_t max_queued)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *p = NULL;
    o.max_threads = max;
    o.min_threads = min;
    o.max_queued = max_queued;
    ck_assert_int_eq(evexec_pool_new(&p, &o), 0);
    return p;
}

/* event_base_dispatch() until the base has no event left (and no stale
 * loopexit ended it early). */
static void dispatch_all(struct event_base *b)
{
    ck_assert_int_ge(event_base_dispatch(b), 0);
    ck_assert(!event_base_got_exit(b));
}

/* Runs the fixture's loop until now_s() reaches end (only where a deadline
 * must pass), however many stale loopexits end a dispatch early. */
static void run_until_time(double end)
{
    double left;
    while ((left = end - now_s()) > 0) {
        struct timeval tv = {(time_t)left, (suseconds_t)((left - (time_t)left) * 1e6) + 1};
        ck_assert_int_eq(event_base_loopexit(base, &tv), 0);
        ck_assert_int_ge(event_base_dispatch(base), 0);
    }
}

static void run_for(int ms)
{
    run_until_time(now_s() + ms / 1000.0);
}

/* Runs a job through @p pool and waits for its callback: a pool of one
 * thread has then finished every earlier job, and the port has delivered
 * whatever those pushed before it (late results included). */
static void flush(evexec_pool *pool)
{
    struct tally t;
    tally_init(&t);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &t, NULL), 0);
    run_until(base, &t.calls, 1);
    run_nonblock(base, 3);
    ck_assert_int_eq(t.ok, 1);
}

struct completed_arg {
    evexec_pool *pool;
    uint64_t n;
};
static int completed_reached(void *p)
{
    struct completed_arg *c = p;
    return pool_stats(c->pool).completed >= c->n;
}
/* Waits until n work functions of the pool have returned. */
static void wait_completed(evexec_pool *pool, uint64_t n)
{
    struct completed_arg c = {pool, n};
    wait_for(completed_reached, &c);
}

struct idle_arg {
    evexec_pool *pool;
    unsigned n;
};
static int idle_reached(void *p)
{
    struct idle_arg *a = p;
    return pool_stats(a->pool).idle >= a->n;
}
/* Waits until n threads of the pool wait for work. */
static void wait_idle(evexec_pool *pool, unsigned n)
{
    struct idle_arg a = {pool, n};
    wait_for(idle_reached, &a);
}

/* Runs fn(arg) on a thread of its own and returns what it returned. */
struct thread_call {
    int (*fn)(void *);
    void *arg;
    int rc;
};
static void *thread_call_main(void *p)
{
    struct thread_call *c = p;
    c->rc = c->fn(c->arg);
    return NULL;
}
static int on_other_thread(int (*fn)(void *), void *arg)
{
    struct thread_call c = {fn, arg, 0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, thread_call_main, &c), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    return c.rc;
}

/* ---------------------------------------------------------------------- */
/* A job that records everything that happens to it.                      */

#define DJOB_MAGIC 0x6a6f6273u

struct djob {
    unsigned magic;
    struct gate *gate;      /* park on it if not NULL */
    void *ret;              /* what the work function returns */
    int alloc_ret;          /* return a malloc()ed block; done or cleanup frees it */
    /* worker side */
    atomic_int ran;         /* work function entered */
    atomic_int stopped;     /* evexec_job_cancelled() when it returned */
    /* loop side */
    int calls, status, seq, wrong_thread;
    void *result;
    double at;              /* now_s() of the first done callback */
    int cleanups, cleanup_wrong_thread;
    void *cleanup_result;
    int free_port_in_done;  /* done frees the fixture's port */
    int free_port_rc;
};

static void djob_init(struct djob *d, struct gate *g, void *ret)
{
    memset(d, 0, sizeof *d);
    d->magic = DJOB_MAGIC;
    d->gate = g;
    d->ret = ret;
    atomic_init(&d->ran, 0);
    atomic_init(&d->stopped, 0);
}

static void *djob_work(evexec_job *job, void *arg)
{
    struct djob *d = arg;
    atomic_fetch_add(&d->ran, 1);
    if (d->gate)
        park_work(job, d->gate);
    atomic_store(&d->stopped, evexec_job_cancelled(job));
    return d->alloc_ret ? malloc(64) : d->ret;
}

static void djob_done(int status, void *result, void *arg)
{
    struct djob *d = arg;
    ck_assert_uint_eq(d->magic, DJOB_MAGIC);
    if (!pthread_equal(pthread_self(), loop_tid))
        d->wrong_thread++;
    if (d->calls++ == 0) {
        d->status = status;
        d->result = result;
        d->at = now_s();
        d->seq = ++seq;
    }
    if (d->alloc_ret)
        free(result);
    if (d->free_port_in_done) {
        d->free_port_rc = evexec_port_free(port);
        d->free_port_in_done = 0;
    }
    member_calls++;
}

static void djob_cleanup(void *result, void *arg)
{
    struct djob *d = arg;
    ck_assert_uint_eq(d->magic, DJOB_MAGIC);
    if (!pthread_equal(pthread_self(), loop_tid))
        d->cleanup_wrong_thread++;
    d->cleanups++;
    if (d->alloc_ret)
        free(result);
    else
        d->cleanup_result = result;
}

/* Submits a djob with a deadline (0: none) and a group (NULL: none). */
static int submit_djob(evexec_pool *pool, struct djob *d, unsigned timeout_ms, evexec_group *g,
                       evexec_job_id *id)
{
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    o.timeout_ms = timeout_ms;
    o.cleanup = djob_cleanup;
    o.group = g;
    return evexec_submit_ex(port, pool, djob_work, djob_done, d, &o, id);
}

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
    run_until(base, &d.calls, 1);

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
    ck_assert_int_eq(evexec_cancel(port, id), -ENOENT);

    /* The work function sees its stop flag; its late result goes to
     * cleanup, once, on the loop thread, and never to done. */
    gate_release(&g, 1);
    run_until(base, &d.cleanups, 1);
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
    ck_assert_uint_eq(port_stats(port).outstanding, 0);
    ck_assert_int_eq(evexec_cancel(port, id), -ENOENT);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(deadline_late_null_result_is_not_given_to_cleanup)
{
    struct gate g;
    struct djob d;
    evexec_pool *pool = new_pool(1, 0, 0);

    gate_init(&g, NULL);
    djob_init(&d, &g, NULL);
    ck_assert_int_eq(submit_djob(pool, &d, 30, NULL, NULL), 0);
    gate_wait_entered(&g, 1);
    run_until(base, &d.calls, 1);
    ck_assert_int_eq(d.status, -ETIMEDOUT);
    gate_release(&g, 1);
    wait_completed(pool, 1);
    flush(pool);
    ck_assert_int_eq(atomic_load(&d.stopped), 1);
    ck_assert_int_eq(d.cleanups, 0);
    ck_assert_int_eq(d.calls, 1);
    ck_assert_uint_eq(port_stats(port).outstanding, 0);
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
    run_until(base, &q.calls, 1);
    ck_assert_int_eq(q.status, -ETIMEDOUT);
    ck_assert_ptr_null(q.result);
    ck_assert_int_eq(q.wrong_thread, 0);
    ck_assert_msg(q.at - t0 >= 0.045, "timed out after %.3f s, deadline 0.05 s", q.at - t0);
    ck_assert_msg(q.at - t0 < 1.05, "timed out after %.3f s, deadline 0.05 s", q.at - t0);

    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.queued, 0);       /* taken off the queue */
    ck_assert_uint_eq(s.timed_out, 1);
    ck_assert_uint_eq(s.cancelled, 1);    /* "cancelled if still queued" */
    ck_assert_int_eq(evexec_cancel(port, qid), -ENOENT);

    gate_release(&g, 1);
    run_until(base, &p.calls, 1);
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
    run_until(base, &member_calls, 2);
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
    ck_assert_uint_eq(port_stats(port).outstanding, 0);
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
    ck_assert_int_eq(evexec_cancel(port, qid), 0);
    ck_assert_int_eq(evexec_cancel(port, qid), -EALREADY);
    /* Running: -EBUSY sets its stop flag, the deadline still holds. */
    ck_assert_int_eq(evexec_cancel(port, rid), -EBUSY);
    ck_assert_int_eq(q.calls + r.calls, 0);
    run_until(base, &r.calls, 1);
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
    run_until(base, &r.cleanups, 1);
    run_until(base, &p.calls, 1);
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
    ck_assert_int_eq(evexec_port_new(&p1, base, &po), 0);
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
    run_until(base, &member_calls, 2);
    ck_assert_int_eq(q1.status, -ECANCELED);
    ck_assert_int_eq(q2.calls, 1);
    ck_assert_msg(q2.status == -ECANCELED, "cancelled job delivered %s",
                  evexec_errname(q2.status));
    ck_assert_uint_eq(pool_stats(pool).timed_out, 0);
    gate_release(&g, 1);
    run_until(base, &p.calls, 1);
    run_nonblock(base, 3);
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
    ck_assert_int_eq(evexec_cancel(port, *id), 0);
}

START_TEST(cancel_from_a_timer_as_the_deadline_passes_keeps_ecanceled)
{
    struct gate g;
    struct djob p, q;
    evexec_job_id qid;
    evexec_pool *pool = new_pool(1, 0, 0);

    gate_init(&g, NULL);
    djob_init(&p, &g, NULL);
    djob_init(&q, NULL, NULL);
    ck_assert_int_eq(submit_djob(pool, &p, 0, NULL, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(submit_djob(pool, &q, 20, NULL, &qid), 0);
    struct timeval tv = {0, 10000};
    ck_assert_int_eq(event_base_once(base, -1, EV_TIMEOUT, cancel_timer_cb, &qid, &tv), 0);
    /* The loop comes late: the timer and the deadline are both due. */
    struct timespec ts = {0, 40 * 1000000};
    nanosleep(&ts, NULL);
    run_until(base, &q.calls, 1);
    ck_assert_msg(q.status == -ECANCELED, "cancelled job delivered %s",
                  evexec_errname(q.status));
    ck_assert_uint_eq(pool_stats(pool).timed_out, 0);
    gate_release(&g, 1);
    run_until(base, &p.calls, 1);
    run_nonblock(base, 3);
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
    run_until(base, &member_calls, N);
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
    run_until(base, &d[0].cleanups, 1);
    run_until(base, &d[1].cleanups, 1);
    wait_completed(pool, 2);
    run_nonblock(base, 3);
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
    run_until(base, &member_calls, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(d[i].status, -ETIMEDOUT);
    ck_assert_uint_eq(pool_stats(pool).running, 2);
    ck_assert_uint_eq(pool_stats(pool).timed_out, 3);

    /* Free the port with both work functions still parked; they are let go
     * 50 ms into the loop. The port must stay until their results are
     * cleaned up. */
    ck_assert_int_eq(evexec_port_free(port), 0);
    struct timeval tv = {0, 50000};
    ck_assert_int_eq(event_base_once(base, -1, EV_TIMEOUT, release_cb, &g, &tv), 0);
    dispatch_all(base);
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
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0); /* for teardown */
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
    ck_assert_int_eq(evexec_port_free(port), 0);
    struct timeval tv = {0, 80000}; /* let it go well after its deadline */
    ck_assert_int_eq(event_base_once(base, -1, EV_TIMEOUT, release_cb, &g, &tv), 0);
    dispatch_all(base);
    ck_assert_int_eq(d.calls, 1);
    ck_assert_int_eq(d.status, -ETIMEDOUT);
    ck_assert_int_eq(d.cleanups, 1);
    ck_assert_int_eq(atomic_load(&d.stopped), 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0); /* for teardown */
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
    run_until(base, &member_calls, 2);
    ck_assert_int_eq(q1.free_port_rc, 0);
    ck_assert_int_eq(q1.status, -ETIMEDOUT);
    /* q2 was still queued when the port was freed: its deadline or the
     * free's cancel may deliver it, once. */
    ck_assert_msg(q2.status == -ETIMEDOUT || q2.status == -ECANCELED, "q2 delivered %s",
                  evexec_errname(q2.status));
    ck_assert_int_eq(p.calls, 0);
    gate_release(&g, 1);
    dispatch_all(base); /* p delivered, then the port goes */
    ck_assert_int_eq(p.calls, 1);
    ck_assert_int_eq(p.status, 0);
    ck_assert_int_eq(atomic_load(&p.stopped), 1); /* the port's free asked it */
    ck_assert_int_eq(q1.calls + q2.calls, 2);
    ck_assert_int_eq(atomic_load(&q1.ran) + atomic_load(&q2.ran), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0); /* for teardown */
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
    return evexec_submit_ex(port, c->pool, echo_work, tally_done, c->t, &c->o, NULL);
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
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &o, &id), -EINVAL);
    o.timeout_ms = UINT_MAX;
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &o, &id), -EINVAL);
    ck_assert(id == 12345); /* untouched on error */
    /* 2^31 - 1 is allowed (a deadline 24 days away). */
    o.timeout_ms = INT_MAX;
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &o, &id), 0);
    ck_assert(id != 12345 && id != 0);
    accepted++;

    struct evexec_job_opts bad = EVEXEC_JOB_OPTS_INIT;
    bad.size = 0;
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &bad, NULL), -EINVAL);
    bad.size = 1;
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &bad, NULL), -EINVAL);
    bad = (struct evexec_job_opts)EVEXEC_JOB_OPTS_INIT;
    bad.wait_ms = 10; /* the loop thread never blocks */
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &bad, NULL), -EINVAL);
    bad.wait_ms = EVEXEC_WAIT_FOREVER;
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &bad, NULL), -EINVAL);
    bad.wait_ms = 0;
    bad.priority = 2;
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &bad, NULL), -EINVAL);
    bad.priority = -2;
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &bad, NULL), -EINVAL);

    /* A newer, larger struct: accepted while the part this library does
     * not know is zero, -E2BIG once it is not. */
    struct big_opts big;
    memset(&big, 0, sizeof big);
    big.o = (struct evexec_job_opts)EVEXEC_JOB_OPTS_INIT;
    big.o.size = sizeof big;
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &big.o, NULL), 0);
    accepted++;
    big.newer[5] = 1;
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, &big.o, NULL), -E2BIG);

    o = (struct evexec_job_opts)EVEXEC_JOB_OPTS_INIT;
    ck_assert_int_eq(evexec_submit_ex(NULL, pool, echo_work, tally_done, &t, &o, NULL), -EINVAL);
    ck_assert_int_eq(evexec_submit_ex(port, pool, NULL, tally_done, &t, &o, NULL), -EINVAL);
    /* opts NULL: evexec_submit(). */
    ck_assert_int_eq(evexec_submit_ex(port, pool, echo_work, tally_done, &t, NULL, NULL), 0);
    accepted++;

    /* Wrong thread. */
    struct submit_call c = {pool, &t, EVEXEC_JOB_OPTS_INIT};
    ck_assert_int_eq(on_other_thread(submit_ex_call, &c), -EPERM);
    c.o.timeout_ms = 100;
    ck_assert_int_eq(on_other_thread(submit_ex_call, &c), -EPERM);

    run_until(base, &t.calls, accepted);
    run_nonblock(base, 5);
    ck_assert_int_eq(t.calls, accepted);
    ck_assert_int_eq(t.ok, accepted);
    ck_assert_int_eq(t.wrong_thread, 0);
    ck_assert_uint_eq(pool_stats(pool).submitted, accepted);
    ck_assert_uint_eq(pool_stats(pool).timed_out, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Groups.                                                                */

enum { GR_NONE, GR_CANCEL, GR_SUBMIT };

struct grec {
    int calls, status, seq, wrong_thread;
    int action;             /* what the callback does then */
    int rc;                 /* what that returned */
    evexec_group *g;
    evexec_pool *pool;      /* GR_SUBMIT: submit d into g */
    struct djob *d;
};

static void grec_fn(int status, void *arg)
{
    struct grec *r = arg;
    if (!pthread_equal(pthread_self(), loop_tid))
        r->wrong_thread++;
    if (r->calls++ == 0) {
        r->status = status;
        r->seq = ++seq;
    }
    if (r->action == GR_CANCEL)
        r->rc = evexec_group_cancel(r->g);
    else if (r->action == GR_SUBMIT)
        r->rc = submit_djob(r->pool, r->d, 0, r->g, NULL);
}

static evexec_group *new_group(struct grec *r, int how)
{
    memset(r, 0, sizeof *r);
    ck_assert_int_eq(evexec_group_new(&r->g, port, how, grec_fn, r), 0);
    ck_assert_ptr_nonnull(r->g);
    return r->g;
}

START_TEST(group_all_calls_back_after_every_member_once_closed)
{
    struct gate g;
    struct djob a, b, c;
    struct grec gr;
    evexec_pool *pool = new_pool(2, 0, 0);

    gate_init(&g, NULL);
    djob_init(&a, &g, NULL);
    djob_init(&b, NULL, NULL);
    djob_init(&c, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    ck_assert_int_eq(submit_djob(pool, &a, 0, grp, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);
    ck_assert_int_eq(submit_djob(pool, &c, 0, grp, NULL), 0);
    run_until(base, &member_calls, 2);
    run_nonblock(base, 5);
    ck_assert_int_eq(b.calls + c.calls, 2);
    ck_assert_int_eq(gr.calls, 0);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    ck_assert_int_eq(gr.calls, 0);
    run_nonblock(base, 5);
    ck_assert_int_eq(gr.calls, 0); /* a is still running */
    ck_assert_int_eq(evexec_group_close(grp), -EALREADY);

    gate_release(&g, 1);
    run_until(base, &gr.calls, 1);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(gr.status, 0);
    ck_assert_int_eq(gr.wrong_thread, 0);
    ck_assert_int_gt(gr.seq, a.seq);
    ck_assert_int_gt(gr.seq, b.seq);
    ck_assert_int_gt(gr.seq, c.seq);
    run_nonblock(base, 5);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(member_calls, 3);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(group_all_waits_for_close_and_never_calls_back_inside_it)
{
    struct djob a, b;
    struct grec gr;
    evexec_pool *pool = new_pool(1, 0, 0);

    djob_init(&a, NULL, NULL);
    djob_init(&b, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    ck_assert_int_eq(submit_djob(pool, &a, 0, grp, NULL), 0);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);
    run_until(base, &member_calls, 2);
    run_nonblock(base, 5);
    ck_assert_int_eq(gr.calls, 0); /* every member delivered, not closed */
    ck_assert_int_eq(evexec_group_close(grp), 0);
    ck_assert_int_eq(gr.calls, 0); /* not inside close */
    run_until(base, &gr.calls, 1);
    ck_assert_int_eq(gr.status, 0);
    ck_assert_int_gt(gr.seq, a.seq);
    ck_assert_int_gt(gr.seq, b.seq);
    run_nonblock(base, 5);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

START_TEST(group_all_status_is_the_first_nonzero_member_status)
{
    struct gate g;
    struct djob p, q, r;
    struct grec gr;
    evexec_job_id qid;
    evexec_pool *pool = new_pool(1, 0, 0);

    gate_init(&g, NULL);
    djob_init(&p, &g, NULL);
    djob_init(&q, NULL, NULL);
    djob_init(&r, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    ck_assert_int_eq(submit_djob(pool, &p, 0, grp, NULL), 0);
    gate_wait_entered(&g, 1);
    /* Delivered in this order: q (-ECANCELED), r (-ETIMEDOUT), p (0). */
    ck_assert_int_eq(submit_djob(pool, &q, 0, grp, &qid), 0);
    ck_assert_int_eq(evexec_cancel(port, qid), 0);
    run_until(base, &q.calls, 1);
    ck_assert_int_eq(q.status, -ECANCELED);
    ck_assert_int_eq(submit_djob(pool, &r, 20, grp, NULL), 0);
    run_until(base, &r.calls, 1);
    ck_assert_int_eq(r.status, -ETIMEDOUT);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    gate_release(&g, 1);
    run_until(base, &gr.calls, 1);
    ck_assert_int_eq(p.status, 0);
    ck_assert_int_lt(q.seq, r.seq);
    ck_assert_int_lt(r.seq, p.seq);
    ck_assert_int_eq(gr.status, -ECANCELED);
    ck_assert_int_gt(gr.seq, p.seq);
    ck_assert_int_eq(atomic_load(&q.ran) + atomic_load(&r.ran), 0);
    run_nonblock(base, 5);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(group_closed_with_no_member_calls_back_enoent_later)
{
    struct grec all, first;

    evexec_group *ga = new_group(&all, EVEXEC_GROUP_ALL);
    evexec_group *gf = new_group(&first, EVEXEC_GROUP_FIRST | EVEXEC_GROUP_CANCEL_REST);
    ck_assert_int_eq(evexec_group_close(ga), 0);
    ck_assert_int_eq(evexec_group_close(gf), 0);
    ck_assert_int_eq(all.calls + first.calls, 0); /* never inside close */
    run_until(base, &all.calls, 1);
    run_until(base, &first.calls, 1);
    ck_assert_int_eq(all.status, -ENOENT);
    ck_assert_int_eq(first.status, -ENOENT);
    ck_assert_int_eq(all.wrong_thread + first.wrong_thread, 0);
    run_nonblock(base, 5);
    ck_assert_int_eq(all.calls, 1);
    ck_assert_int_eq(first.calls, 1);
}
END_TEST

START_TEST(group_refuses_members_once_closed_or_of_another_port)
{
    struct gate g;
    struct djob a, b;
    struct grec gr, gr2;
    evexec_pool *pool = new_pool(1, 0, 0);
    struct event_base *base2 = event_base_new();
    evexec_port *port2;
    evexec_group *g2;

    ck_assert_ptr_nonnull(base2);
    ck_assert_int_eq(evexec_port_new(&port2, base2, NULL), 0);
    gate_init(&g, NULL);
    djob_init(&a, &g, NULL);
    djob_init(&b, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    ck_assert_int_eq(submit_djob(pool, &a, 0, grp, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), -EINVAL);

    /* A group of another port, either way round. */
    memset(&gr2, 0, sizeof gr2);
    ck_assert_int_eq(evexec_group_new(&g2, port2, EVEXEC_GROUP_ALL, grec_fn, &gr2), 0);
    ck_assert_int_eq(submit_djob(pool, &b, 0, g2, NULL), -EINVAL);
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    o.group = grp;
    ck_assert_int_eq(evexec_submit_ex(port2, pool, djob_work, djob_done, &b, &o, NULL), -EINVAL);
    ck_assert_int_eq(evexec_group_close(g2), 0);
    run_until(base2, &gr2.calls, 1);
    ck_assert_int_eq(gr2.status, -ENOENT);
    ck_assert_int_eq(evexec_port_free(port2), 0);
    dispatch_all(base2);
    event_base_free(base2);

    gate_release(&g, 1);
    run_until(base, &gr.calls, 1);
    ck_assert_int_eq(gr.status, 0);
    run_nonblock(base, 5);
    ck_assert_int_eq(b.calls, 0);
    ck_assert_int_eq(atomic_load(&b.ran), 0);
    ck_assert_int_eq(member_calls, 1);
    ck_assert_uint_eq(pool_stats(pool).submitted, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

/* Groups of FIRST: a and b run parked on pool1, c and d wait on pool2
 * behind p (no member), so that nothing but the test decides what finishes
 * first. */
struct first_setup {
    struct gate ga, gb, gp;
    struct djob a, b, c, d, p;
    evexec_pool *pool1, *pool2;
};

static void first_setup(struct first_setup *f, evexec_group *grp)
{
    f->pool1 = new_pool(2, 0, 0);
    f->pool2 = new_pool(1, 0, 0);
    gate_init(&f->ga, NULL);
    gate_init(&f->gb, NULL);
    gate_init(&f->gp, NULL);
    djob_init(&f->a, &f->ga, NULL);
    djob_init(&f->b, &f->gb, NULL);
    djob_init(&f->c, NULL, NULL);
    djob_init(&f->d, NULL, NULL);
    djob_init(&f->p, &f->gp, NULL);
    ck_assert_int_eq(submit_djob(f->pool2, &f->p, 0, NULL, NULL), 0);
    gate_wait_entered(&f->gp, 1);
    ck_assert_int_eq(submit_djob(f->pool1, &f->a, 0, grp, NULL), 0);
    gate_wait_entered(&f->ga, 1);
    ck_assert_int_eq(submit_djob(f->pool1, &f->b, 0, grp, NULL), 0);
    gate_wait_entered(&f->gb, 1);
    ck_assert_int_eq(submit_djob(f->pool2, &f->c, 0, grp, NULL), 0);
    ck_assert_int_eq(submit_djob(f->pool2, &f->d, 0, grp, NULL), 0);
}

static void first_teardown(struct first_setup *f)
{
    ck_assert_int_eq(evexec_pool_free(f->pool1), 0);
    ck_assert_int_eq(evexec_pool_free(f->pool2), 0);
    gate_destroy(&f->ga);
    gate_destroy(&f->gb);
    gate_destroy(&f->gp);
}

START_TEST(group_first_calls_back_right_after_the_first_member_rest_run)
{
    struct first_setup f;
    struct grec gr;
    struct djob e;

    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_FIRST);
    first_setup(&f, grp);
    djob_init(&e, NULL, NULL);
    gr.action = GR_SUBMIT; /* into the decided group, from its callback */
    gr.pool = f.pool1;
    gr.d = &e;

    gate_release(&f.gb, 1);
    run_until(base, &gr.calls, 1);
    ck_assert_int_eq(f.b.calls, 1);
    ck_assert_int_eq(gr.seq, f.b.seq + 1);
    ck_assert_int_eq(gr.status, 0);
    ck_assert_int_eq(gr.rc, -EINVAL);
    ck_assert_int_eq(gr.wrong_thread, 0);
    ck_assert_int_eq(f.a.calls + f.c.calls + f.d.calls, 0);

    /* Without CANCEL_REST the others run as usual. */
    gate_release(&f.ga, 1);
    gate_release(&f.gp, 1);
    run_until(base, &member_calls, 5);
    run_nonblock(base, 5);
    ck_assert_int_eq(member_calls, 5);
    ck_assert_int_eq(f.a.status, 0);
    ck_assert_int_eq(atomic_load(&f.a.stopped), 0);
    ck_assert_int_eq(f.c.status, 0);
    ck_assert_int_eq(f.d.status, 0);
    ck_assert_int_eq(atomic_load(&f.c.ran) + atomic_load(&f.d.ran), 2);
    ck_assert_int_eq(f.p.status, 0);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(e.calls, 0);
    ck_assert_int_eq(atomic_load(&e.ran), 0);
    first_teardown(&f);
}
END_TEST

START_TEST(group_first_cancel_rest_cancels_queued_and_stops_running)
{
    struct first_setup f;
    struct grec gr;

    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_FIRST | EVEXEC_GROUP_CANCEL_REST);
    first_setup(&f, grp);

    gate_release(&f.gb, 1);
    run_until(base, &gr.calls, 1);
    ck_assert_int_eq(gr.seq, f.b.seq + 1);
    ck_assert_int_eq(gr.status, 0);
    run_until(base, &member_calls, 3); /* b, c, d */
    ck_assert_int_eq(f.c.status, -ECANCELED);
    ck_assert_int_eq(f.d.status, -ECANCELED);
    ck_assert_int_gt(f.c.seq, gr.seq);
    ck_assert_int_gt(f.d.seq, gr.seq);
    ck_assert_int_eq(f.a.calls, 0);
    ck_assert_uint_eq(pool_stats(f.pool2).cancelled, 2);

    gate_release(&f.ga, 1);
    gate_release(&f.gp, 1);
    run_until(base, &member_calls, 5);
    ck_assert_int_eq(f.a.status, 0); /* it ran */
    ck_assert_int_eq(atomic_load(&f.a.stopped), 1);
    ck_assert_int_eq(f.p.status, 0); /* not a member */
    ck_assert_int_eq(atomic_load(&f.p.stopped), 0);
    ck_assert_int_eq(atomic_load(&f.c.ran) + atomic_load(&f.d.ran), 0);
    run_nonblock(base, 5);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(member_calls, 5);
    first_teardown(&f);
}
END_TEST

START_TEST(group_first_status_is_the_first_member_delivered)
{
    struct first_setup f;
    struct grec gr;
    evexec_job_id cid;

    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_FIRST);
    first_setup(&f, grp);
    /* One more queued member, cancelled by id: the first delivered. */
    struct djob q;
    djob_init(&q, NULL, NULL);
    ck_assert_int_eq(submit_djob(f.pool2, &q, 0, grp, &cid), 0);
    ck_assert_int_eq(evexec_cancel(port, cid), 0);
    run_until(base, &gr.calls, 1);
    ck_assert_int_eq(q.status, -ECANCELED);
    ck_assert_int_eq(gr.status, -ECANCELED);
    ck_assert_int_eq(gr.seq, q.seq + 1);
    gate_release(&f.ga, 1);
    gate_release(&f.gb, 1);
    gate_release(&f.gp, 1);
    run_until(base, &member_calls, 6);
    ck_assert_int_eq(f.a.status + f.b.status + f.c.status + f.d.status, 0);
    ck_assert_int_eq(atomic_load(&f.a.stopped) + atomic_load(&f.b.stopped), 0);
    ck_assert_int_eq(gr.calls, 1);
    first_teardown(&f);
}
END_TEST

START_TEST(group_members_get_their_callbacks_in_completion_order)
{
    struct gate g;
    struct djob a, b;
    struct grec gr;
    evexec_pool *pool = new_pool(2, 0, 0);

    gate_init(&g, NULL);
    djob_init(&a, &g, NULL);
    djob_init(&b, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    ck_assert_int_eq(submit_djob(pool, &a, 0, grp, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    run_until(base, &b.calls, 1); /* submitted second, delivered first */
    ck_assert_int_eq(a.calls, 0);
    ck_assert_int_eq(gr.calls, 0);
    gate_release(&g, 1);
    run_until(base, &gr.calls, 1);
    ck_assert_int_lt(b.seq, a.seq);
    ck_assert_int_lt(a.seq, gr.seq);
    ck_assert_int_eq(gr.status, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(group_cancel_cancels_members_only_and_calls_back_ecanceled)
{
    struct gate g;
    struct djob a, b, c, n, e;
    struct grec gr;
    evexec_pool *pool = new_pool(1, 0, 0);

    gate_init(&g, NULL);
    djob_init(&a, &g, NULL);
    djob_init(&b, NULL, NULL);
    djob_init(&c, NULL, NULL);
    djob_init(&n, NULL, NULL);
    djob_init(&e, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    ck_assert_int_eq(submit_djob(pool, &a, 0, grp, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);
    ck_assert_int_eq(submit_djob(pool, &n, 0, NULL, NULL), 0); /* not a member */
    ck_assert_int_eq(submit_djob(pool, &c, 0, grp, NULL), 0);

    ck_assert_int_eq(evexec_group_cancel(grp), 0);
    ck_assert_int_eq(member_calls + gr.calls, 0); /* never inside cancel */
    ck_assert_uint_eq(pool_stats(pool).queued, 1); /* n */
    run_until(base, &member_calls, 2);
    ck_assert_int_eq(b.status, -ECANCELED);
    ck_assert_int_eq(c.status, -ECANCELED);
    ck_assert_int_eq(gr.calls, 0); /* a still runs */
    ck_assert_int_eq(evexec_group_cancel(grp), -EALREADY);
    ck_assert_int_eq(evexec_group_close(grp), -EALREADY); /* cancel closed it */
    ck_assert_int_eq(submit_djob(pool, &e, 0, grp, NULL), -EINVAL);

    gate_release(&g, 1);
    run_until(base, &gr.calls, 1);
    ck_assert_int_eq(a.status, 0);
    ck_assert_int_eq(atomic_load(&a.stopped), 1);
    ck_assert_int_eq(gr.status, -ECANCELED);
    ck_assert_int_gt(gr.seq, a.seq);
    run_until(base, &n.calls, 1);
    ck_assert_int_eq(n.status, 0);
    ck_assert_int_eq(atomic_load(&n.ran), 1);
    ck_assert_int_eq(atomic_load(&n.stopped), 0);
    ck_assert_int_eq(atomic_load(&b.ran) + atomic_load(&c.ran), 0);
    ck_assert_uint_eq(pool_stats(pool).cancelled, 2);
    run_nonblock(base, 5);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(e.calls, 0);
    ck_assert_int_eq(member_calls, 4);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(group_cancel_from_a_first_groups_callback)
{
    struct first_setup f;
    struct grec gr;

    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_FIRST);
    first_setup(&f, grp);
    gr.action = GR_CANCEL;
    gate_release(&f.gb, 1);
    run_until(base, &gr.calls, 1);
    ck_assert_int_eq(gr.rc, 0);
    ck_assert_int_eq(gr.status, 0);
    run_until(base, &member_calls, 3); /* b, c, d */
    ck_assert_int_eq(f.c.status, -ECANCELED);
    ck_assert_int_eq(f.d.status, -ECANCELED);
    gate_release(&f.ga, 1);
    gate_release(&f.gp, 1);
    run_until(base, &member_calls, 5);
    ck_assert_int_eq(f.a.status, 0);
    ck_assert_int_eq(atomic_load(&f.a.stopped), 1);
    ck_assert_int_eq(atomic_load(&f.c.ran) + atomic_load(&f.d.ran), 0);
    run_nonblock(base, 5);
    ck_assert_int_eq(gr.calls, 1);
    first_teardown(&f);
}
END_TEST

START_TEST(group_with_a_member_timing_out)
{
    static int token;
    struct gate g;
    struct djob a, b;
    struct grec gr;
    evexec_pool *pool = new_pool(2, 0, 0);

    gate_init(&g, NULL);
    djob_init(&a, &g, &token);
    djob_init(&b, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    ck_assert_int_eq(submit_djob(pool, &a, 40, grp, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    run_until(base, &gr.calls, 1);
    /* Decided by a's done(-ETIMEDOUT), while its work still runs. */
    ck_assert_int_eq(gr.status, -ETIMEDOUT);
    ck_assert_int_eq(a.status, -ETIMEDOUT);
    ck_assert_int_eq(b.status, 0);
    ck_assert_int_gt(gr.seq, a.seq);
    ck_assert_uint_eq(pool_stats(pool).running, 1);

    gate_release(&g, 1);
    run_until(base, &a.cleanups, 1);
    wait_completed(pool, 2);
    run_nonblock(base, 5);
    ck_assert_ptr_eq(a.cleanup_result, &token);
    ck_assert_int_eq(atomic_load(&a.stopped), 1);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(port_free_cancels_the_members_of_an_unclosed_group)
{
    struct gate g;
    struct djob a, b;
    struct grec gr, empty;
    evexec_pool *pool = new_pool(1, 0, 0);

    gate_init(&g, NULL);
    djob_init(&a, &g, NULL);
    djob_init(&b, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    new_group(&empty, EVEXEC_GROUP_ALL); /* never closed, never used */
    ck_assert_int_eq(submit_djob(pool, &a, 0, grp, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);

    ck_assert_int_eq(evexec_port_free(port), 0);
    ck_assert_int_eq(member_calls + gr.calls + empty.calls, 0);
    ck_assert_uint_eq(pool_stats(pool).queued, 0); /* b cancelled at once */
    gate_release(&g, 1);
    dispatch_all(base); /* returns once the port has gone */
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(a.status, 0);
    ck_assert_int_eq(atomic_load(&a.stopped), 1);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_int_eq(b.status, -ECANCELED);
    ck_assert_int_eq(atomic_load(&b.ran), 0);
    /* "Freeing the port cancels the members, so the callback still runs." */
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(gr.status, -ECANCELED);
    ck_assert_int_le(empty.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0); /* for teardown */
}
END_TEST

/* A member whose submit is refused (a full queue) never joins: the group
 * does not wait for it. */
START_TEST(group_member_refused_by_a_full_queue_does_not_join)
{
    struct gate g;
    struct djob a, b, c;
    struct grec gr;
    evexec_pool *pool = new_pool(1, 0, 1);

    gate_init(&g, NULL);
    djob_init(&a, &g, NULL);
    djob_init(&b, NULL, NULL);
    djob_init(&c, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    ck_assert_int_eq(submit_djob(pool, &a, 0, grp, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);
    ck_assert_int_eq(submit_djob(pool, &c, 0, grp, NULL), -EAGAIN);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    gate_release(&g, 1);
    run_until(base, &gr.calls, 1);
    ck_assert_int_eq(gr.status, 0);
    ck_assert_int_eq(a.calls + b.calls, 2);
    run_nonblock(base, 5);
    ck_assert_int_eq(c.calls, 0);
    ck_assert_int_eq(atomic_load(&c.ran), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

static int group_new_call(void *p)
{
    evexec_group *g = NULL;
    (void)p;
    return evexec_group_new(&g, port, EVEXEC_GROUP_ALL, NULL, NULL);
}
static int group_close_call(void *p)
{
    return evexec_group_close(p);
}
static int group_cancel_call(void *p)
{
    return evexec_group_cancel(p);
}
static int submit_into_group_call(void *p)
{
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    o.group = p;
    return evexec_submit_ex(port, NULL, echo_work, NULL, NULL, &o, NULL);
}

START_TEST(group_calls_reject_bad_arguments_and_wrong_threads)
{
    static int sentinel;
    evexec_group *g = (evexec_group *)&sentinel;
    struct grec gr;

    ck_assert_int_eq(evexec_group_new(&g, port, -1, grec_fn, &gr), -EINVAL);
    ck_assert_int_eq(evexec_group_new(&g, port, EVEXEC_GROUP_CANCEL_REST, grec_fn, &gr), -EINVAL);
    ck_assert_int_eq(evexec_group_new(&g, port, 4, grec_fn, &gr), -EINVAL);
    ck_assert_int_eq(evexec_group_new(&g, port, EVEXEC_GROUP_FIRST | 4, grec_fn, &gr), -EINVAL);
    ck_assert_int_eq(evexec_group_new(&g, NULL, EVEXEC_GROUP_ALL, grec_fn, &gr), -EINVAL);
    ck_assert_int_eq(evexec_group_new(NULL, port, EVEXEC_GROUP_ALL, grec_fn, &gr), -EINVAL);
    ck_assert_ptr_eq(g, (evexec_group *)&sentinel); /* untouched on error */
    ck_assert_int_eq(evexec_group_close(NULL), -EINVAL);
    ck_assert_int_eq(evexec_group_cancel(NULL), -EINVAL);
    ck_assert_int_eq(on_other_thread(group_new_call, NULL), -EPERM);

    /* A group with no callback is fine. */
    ck_assert_int_eq(evexec_group_new(&g, port, EVEXEC_GROUP_ALL, NULL, NULL), 0);
    ck_assert_int_eq(evexec_group_close(g), 0);
    run_nonblock(base, 3);

    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    ck_assert_int_eq(on_other_thread(group_close_call, grp), -EPERM);
    ck_assert_int_eq(on_other_thread(group_cancel_call, grp), -EPERM);
    ck_assert_int_eq(on_other_thread(submit_into_group_call, grp), -EPERM);
    /* Nothing of that took effect: the group is open and not cancelled. */
    ck_assert_int_eq(evexec_group_close(grp), 0);
    run_until(base, &gr.calls, 1);
    ck_assert_int_eq(gr.status, -ENOENT);
    ck_assert_int_eq(gr.wrong_thread, 0);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* evexec_submit_threadsafe().                                            */

enum { TS_THREADS = 4, TS_PER_THREAD = 10000, TS_JOBS = TS_THREADS * TS_PER_THREAD };
static int ts_seen[TS_JOBS];    /* done callbacks per job */
static int ts_calls, ts_wrong_thread, ts_bad_result, ts_not_ok;
static pthread_t ts_loop;       /* the thread done callbacks must run on */

static void ts_reset(pthread_t loop)
{
    memset(ts_seen, 0, sizeof ts_seen);
    ts_calls = ts_wrong_thread = ts_bad_result = ts_not_ok = 0;
    ts_loop = loop;
}

static void ts_done(int status, void *result, void *arg)
{
    int *slot = arg;
    if (!pthread_equal(pthread_self(), ts_loop))
        ts_wrong_thread++;
    if (result != arg && status == 0)
        ts_bad_result++;
    if (status != 0)
        ts_not_ok++;
    (*slot)++;
    ts_calls++;
}

struct submitter {
    pthread_barrier_t *start;
    evexec_port *port;
    evexec_pool *pool;
    const struct evexec_job_opts *opts;
    int first, n;
    int failures, last_error;
};

static void *submitter_main(void *p)
{
    struct submitter *s = p;
    if (s->start)
        pthread_barrier_wait(s->start);
    for (int i = 0; i < s->n; i++) {
        int rc = evexec_submit_threadsafe(s->port, s->pool, echo_work, ts_done,
                                          &ts_seen[s->first + i], s->opts);
        if (rc != 0) {
            s->failures++;
            s->last_error = rc;
        }
    }
    return NULL;
}

static void start_submitters(pthread_t *th, struct submitter *s, int nthreads,
                             pthread_barrier_t *bar, evexec_port *p, evexec_pool *pool,
                             int per_thread)
{
    ck_assert_int_eq(pthread_barrier_init(bar, NULL, nthreads), 0);
    for (int i = 0; i < nthreads; i++) {
        memset(&s[i], 0, sizeof s[i]);
        s[i].start = bar;
        s[i].port = p;
        s[i].pool = pool;
        s[i].first = i * per_thread;
        s[i].n = per_thread;
        ck_assert_int_eq(pthread_create(&th[i], NULL, submitter_main, &s[i]), 0);
    }
}

static void join_submitters(pthread_t *th, struct submitter *s, int nthreads,
                            pthread_barrier_t *bar)
{
    for (int i = 0; i < nthreads; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_msg(s[i].failures == 0, "submitter %d: %d failures, last %s", i,
                      s[i].failures, evexec_errname(s[i].last_error));
    }
    pthread_barrier_destroy(bar);
}

START_TEST(threadsafe_from_four_threads_every_done_once_on_the_loop)
{
    pthread_t th[TS_THREADS];
    struct submitter s[TS_THREADS];
    pthread_barrier_t bar;
    evexec_pool *pool = new_pool(4, 0, 0);

    ts_reset(pthread_self());
    start_submitters(th, s, TS_THREADS, &bar, port, pool, TS_PER_THREAD);
    run_until(base, &ts_calls, TS_JOBS); /* the loop runs while they submit */
    join_submitters(th, s, TS_THREADS, &bar);
    run_nonblock(base, 5);
    ck_assert_int_eq(ts_calls, TS_JOBS);
    for (int i = 0; i < TS_JOBS; i++)
        ck_assert_msg(ts_seen[i] == 1, "job %d: %d callbacks", i, ts_seen[i]);
    ck_assert_int_eq(ts_wrong_thread, 0);
    ck_assert_int_eq(ts_bad_result, 0);
    ck_assert_int_eq(ts_not_ok, 0);
    struct evexec_pool_stats ps = pool_stats(pool);
    ck_assert_uint_eq(ps.submitted, TS_JOBS);
    ck_assert_uint_eq(ps.completed, TS_JOBS);
    struct evexec_port_stats pt = port_stats(port);
    ck_assert_uint_eq(pt.delivered, TS_JOBS);
    ck_assert_uint_eq(pt.outstanding, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

/* A work function that submits the next link of a chain from its worker. */
enum { CHAIN = 50 };
struct chain {
    evexec_pool *pool;
    atomic_int links, errors;
    int last_error;
    int calls, wrong_thread;
};
static void chain_done(int status, void *result, void *arg)
{
    struct chain *c = arg;
    (void)result;
    if (status != 0 || !pthread_equal(pthread_self(), loop_tid))
        c->wrong_thread++;
    c->calls++;
}
static void *chain_work(evexec_job *job, void *arg)
{
    struct chain *c = arg;
    (void)job;
    if (atomic_fetch_add(&c->links, 1) + 1 < CHAIN) {
        int rc = evexec_submit_threadsafe(port, c->pool, chain_work, chain_done, c, NULL);
        if (rc != 0) {
            c->last_error = rc;
            atomic_fetch_add(&c->errors, 1);
        }
    }
    return NULL;
}

START_TEST(threadsafe_from_a_work_function)
{
    struct chain c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.links, 0);
    atomic_init(&c.errors, 0);
    c.pool = new_pool(1, 0, 0); /* the worker submits to its own pool */
    ck_assert_int_eq(evexec_submit(port, c.pool, chain_work, chain_done, &c, NULL), 0);
    run_until(base, &c.calls, CHAIN);
    run_nonblock(base, 5);
    ck_assert_msg(atomic_load(&c.errors) == 0, "%d submits from a worker failed: %s",
                  atomic_load(&c.errors), evexec_errname(c.last_error));
    ck_assert_int_eq(c.calls, CHAIN);
    ck_assert_int_eq(atomic_load(&c.links), CHAIN);
    ck_assert_int_eq(c.wrong_thread, 0);
    ck_assert_uint_eq(pool_stats(c.pool).submitted, CHAIN);
    ck_assert_int_eq(evexec_pool_free(c.pool), 0);
}
END_TEST

/* Records the order in which work functions start; arg is a tag. */
static atomic_int start_next;
static atomic_int start_order[8];
static int order_calls, order_not_ok, order_wrong_thread;
static void *order_work(evexec_job *job, void *arg)
{
    (void)job;
    int i = atomic_fetch_add(&start_next, 1);
    if (i < 8)
        atomic_store(&start_order[i], (int)(intptr_t)arg);
    return arg;
}
static void order_done(int status, void *result, void *arg)
{
    (void)result;
    (void)arg;
    if (status != 0)
        order_not_ok++;
    if (!pthread_equal(pthread_self(), loop_tid))
        order_wrong_thread++;
    order_calls++;
}

struct prio_submit {
    evexec_pool *pool;
    int priority;
    int tag;
};
static int prio_submit_call(void *p)
{
    struct prio_submit *ps = p;
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    o.priority = ps->priority;
    return evexec_submit_threadsafe(port, ps->pool, order_work, order_done,
                                    (void *)(intptr_t)ps->tag, &o);
}

START_TEST(threadsafe_honours_priority)
{
    struct gate g;
    struct djob p;
    evexec_pool *pool = new_pool(1, 0, 0);

    atomic_store(&start_next, 0);
    order_calls = order_not_ok = order_wrong_thread = 0;
    gate_init(&g, NULL);
    djob_init(&p, &g, NULL);
    ck_assert_int_eq(submit_djob(pool, &p, 0, NULL, NULL), 0);
    gate_wait_entered(&g, 1);
    /* Queued in this order: LOW 1 (foreign thread), NORMAL 2 and 3 (loop
     * thread, evexec_submit()), HIGH 4 (foreign thread). */
    struct prio_submit low = {pool, EVEXEC_PRIO_LOW, 1};
    struct prio_submit high = {pool, EVEXEC_PRIO_HIGH, 4};
    ck_assert_int_eq(on_other_thread(prio_submit_call, &low), 0);
    ck_assert_int_eq(evexec_submit(port, pool, order_work, order_done, (void *)2, NULL), 0);
    ck_assert_int_eq(evexec_submit(port, pool, order_work, order_done, (void *)3, NULL), 0);
    ck_assert_int_eq(on_other_thread(prio_submit_call, &high), 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.queued_low, 1);
    ck_assert_uint_eq(s.queued_normal, 2);
    ck_assert_uint_eq(s.queued_high, 1);
    gate_release(&g, 1);
    run_until(base, &order_calls, 4);
    run_until(base, &p.calls, 1);
    ck_assert_int_eq(order_not_ok, 0);
    ck_assert_int_eq(order_wrong_thread, 0);
    ck_assert_int_eq(atomic_load(&start_next), 4);
    ck_assert_int_eq(atomic_load(&start_order[0]), 4);
    ck_assert_int_eq(atomic_load(&start_order[1]), 2);
    ck_assert_int_eq(atomic_load(&start_order[2]), 3);
    ck_assert_int_eq(atomic_load(&start_order[3]), 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

struct ts_call {
    evexec_port *port;
    evexec_pool *pool;
    evexec_work_fn work;
    struct evexec_job_opts o;
    int use_opts;
};
static int ts_call(void *p)
{
    struct ts_call *c = p;
    return evexec_submit_threadsafe(c->port, c->pool, c->work, ts_done, &ts_seen[0],
                                    c->use_opts ? &c->o : NULL);
}

START_TEST(threadsafe_rejects_bad_arguments_without_callback)
{
    struct grec gr;
    evexec_pool *pool = new_pool(1, 0, 0);
    struct ts_call c = {port, pool, echo_work, EVEXEC_JOB_OPTS_INIT, 1};

    ts_reset(pthread_self());
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);

    c.o.timeout_ms = 100; /* deadlines live on the loop thread */
    ck_assert_int_eq(on_other_thread(ts_call, &c), -EINVAL);
    ck_assert_int_eq(ts_call(&c), -EINVAL); /* even there */
    c.o.timeout_ms = 0;
    c.o.group = grp; /* so do groups */
    ck_assert_int_eq(on_other_thread(ts_call, &c), -EINVAL);
    ck_assert_int_eq(ts_call(&c), -EINVAL);
    c.o.group = NULL;
    c.o.priority = 2;
    ck_assert_int_eq(on_other_thread(ts_call, &c), -EINVAL);
    c.o.priority = 0;
    c.o.size = 0;
    ck_assert_int_eq(on_other_thread(ts_call, &c), -EINVAL);
    c.o.size = sizeof c.o;
    c.port = NULL;
    ck_assert_int_eq(on_other_thread(ts_call, &c), -EINVAL);
    c.port = port;
    c.work = NULL;
    ck_assert_int_eq(on_other_thread(ts_call, &c), -EINVAL);
    c.work = echo_work;
    /* The defaults, with opts or without, are accepted. */
    ck_assert_int_eq(on_other_thread(ts_call, &c), 0);
    c.use_opts = 0;
    ck_assert_int_eq(on_other_thread(ts_call, &c), 0);

    run_until(base, &ts_calls, 2);
    run_nonblock(base, 5);
    ck_assert_int_eq(ts_calls, 2);
    ck_assert_int_eq(ts_not_ok, 0);
    ck_assert_int_eq(ts_wrong_thread, 0);
    ck_assert_uint_eq(pool_stats(pool).submitted, 2);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    run_until(base, &gr.calls, 1);
    ck_assert_int_eq(gr.status, -ENOENT); /* no member joined */
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

/* A parked job whose done callback, delivered after evexec_port_free(),
 * tries every way of submitting through the port: each must answer
 * -ESHUTDOWN. */
struct after_free {
    struct gate *gate;
    evexec_pool *pool;
    int calls, status, ts_rc, ex_rc, sub_rc, group_rc;
};
static void *after_free_work(evexec_job *job, void *arg)
{
    struct after_free *a = arg;
    park_work(job, a->gate);
    return NULL;
}
static void after_free_done(int status, void *result, void *arg)
{
    struct after_free *a = arg;
    evexec_group *g = NULL;
    (void)result;
    a->calls++;
    a->status = status;
    a->ts_rc = evexec_submit_threadsafe(port, a->pool, echo_work, NULL, NULL, NULL);
    a->ex_rc = evexec_submit_ex(port, a->pool, echo_work, NULL, NULL, NULL, NULL);
    a->sub_rc = evexec_submit(port, a->pool, echo_work, NULL, NULL, NULL);
    a->group_rc = evexec_group_new(&g, port, EVEXEC_GROUP_ALL, NULL, NULL);
}

START_TEST(threadsafe_eshutdown_once_the_port_is_freed)
{
    struct gate g;
    struct after_free a;
    evexec_pool *pool = new_pool(1, 0, 0);
    struct ts_call c = {port, pool, echo_work, EVEXEC_JOB_OPTS_INIT, 0};

    ts_reset(pthread_self());
    gate_init(&g, NULL);
    memset(&a, 0, sizeof a);
    a.gate = &g;
    a.pool = pool;
    ck_assert_int_eq(evexec_submit(port, pool, after_free_work, after_free_done, &a, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_port_free(port), 0);
    /* The port is still alive (a job is outstanding): submits from any
     * thread are refused. */
    ck_assert_int_eq(on_other_thread(ts_call, &c), -ESHUTDOWN);
    ck_assert_int_eq(ts_call(&c), -ESHUTDOWN);
    c.pool = NULL; /* the default pool, which the port has not made */
    ck_assert_int_eq(on_other_thread(ts_call, &c), -ESHUTDOWN);
    c.use_opts = 1;
    c.o.priority = EVEXEC_PRIO_LOW;
    ck_assert_int_eq(on_other_thread(ts_call, &c), -ESHUTDOWN);
    gate_release(&g, 1);
    dispatch_all(base);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(a.status, 0);
    ck_assert_int_eq(a.ts_rc, -ESHUTDOWN);
    ck_assert_int_eq(a.ex_rc, -ESHUTDOWN);
    ck_assert_int_eq(a.sub_rc, -ESHUTDOWN);
    ck_assert_int_eq(a.group_rc, -ESHUTDOWN);
    ck_assert_int_eq(ts_calls, 0);
    ck_assert_uint_eq(pool_stats(pool).submitted, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0); /* for teardown */
}
END_TEST

START_TEST(threadsafe_eshutdown_after_pool_shutdown)
{
    evexec_pool *pool = new_pool(1, 0, 0);
    struct ts_call c = {port, pool, echo_work, EVEXEC_JOB_OPTS_INIT, 0};

    ts_reset(pthread_self());
    ck_assert_int_eq(on_other_thread(ts_call, &c), 0);
    run_until(base, &ts_calls, 1);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(on_other_thread(ts_call, &c), -ESHUTDOWN);
    ck_assert_int_eq(ts_call(&c), -ESHUTDOWN);
    c.use_opts = 1;
    c.o.priority = EVEXEC_PRIO_HIGH;
    ck_assert_int_eq(on_other_thread(ts_call, &c), -ESHUTDOWN);
    ck_assert_uint_eq(pool_stats(pool).rejected, 3);
    run_nonblock(base, 5);
    ck_assert_int_eq(ts_calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

/* Work that counts its runs: the cancelled jobs must never get here. */
static atomic_int counted_runs;
static void *counted_work(evexec_job *job, void *arg)
{
    (void)job;
    atomic_fetch_add(&counted_runs, 1);
    return arg;
}
struct ts_batch {
    evexec_pool *pool;
    int n, failures;
};
static int ts_batch_call(void *p)
{
    struct ts_batch *b = p;
    for (int i = 0; i < b->n; i++)
        if (evexec_submit_threadsafe(port, b->pool, counted_work, ts_done, &ts_seen[i], NULL))
            b->failures++;
    return 0;
}

START_TEST(port_free_cancels_queued_threadsafe_jobs)
{
    enum { N = 100 };
    struct gate g;
    struct djob p;
    evexec_pool *pool = new_pool(1, 0, 0);
    struct ts_batch b = {pool, N, 0};

    ts_reset(pthread_self());
    atomic_store(&counted_runs, 0);
    gate_init(&g, NULL);
    djob_init(&p, &g, NULL);
    ck_assert_int_eq(submit_djob(pool, &p, 0, NULL, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(on_other_thread(ts_batch_call, &b), 0);
    ck_assert_int_eq(b.failures, 0);
    ck_assert_uint_eq(pool_stats(pool).queued, N);
    ck_assert_int_eq(evexec_port_free(port), 0);
    ck_assert_uint_eq(pool_stats(pool).queued, 0);
    ck_assert_int_eq(ts_calls, 0); /* never inside free */
    gate_release(&g, 1);
    dispatch_all(base);
    ck_assert_int_eq(ts_calls, N);
    ck_assert_int_eq(ts_not_ok, N);
    ck_assert_int_eq(ts_wrong_thread, 0);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(ts_seen[i], 1);
    ck_assert_int_eq(atomic_load(&counted_runs), 0);
    ck_assert_int_eq(p.calls, 1);
    ck_assert_int_eq(p.status, 0);
    ck_assert_int_eq(atomic_load(&p.stopped), 1);
    ck_assert_uint_eq(pool_stats(pool).cancelled, N);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0); /* for teardown */
}
END_TEST

START_TEST(threadsafe_with_the_default_pool)
{
    struct ts_call c = {port, NULL, echo_work, EVEXEC_JOB_OPTS_INIT, 0};

    ts_reset(pthread_self());
    ck_assert_int_eq(on_other_thread(ts_call, &c), 0);
    run_until(base, &ts_calls, 1);
    ck_assert_int_eq(ts_not_ok, 0);
    ck_assert_int_eq(ts_bad_result, 0);
    ck_assert_int_eq(ts_wrong_thread, 0);
    evexec_pool *def = NULL;
    ck_assert_int_eq(evexec_port_default_pool(port, &def), 0);
    ck_assert_uint_eq(pool_stats(def).submitted, 1);
    /* The port frees it (teardown). */
}
END_TEST

/* A loop of evexec's own, fed from foreign threads. */
struct loop_port {
    evexec_port *port;
    pthread_t tid;
};
static void get_loop_port(evexec_loop *loop, evexec_promise *promise, void *arg)
{
    struct loop_port *lp = arg;
    lp->tid = pthread_self();
    int rc = evexec_loop_port(loop, &lp->port);
    if (rc)
        evexec_promise_fail(promise, rc);
    else
        evexec_promise_resolve(promise, lp->port);
}

START_TEST(threadsafe_into_a_loops_port_from_foreign_threads)
{
    enum { THREADS = 2, PER = 5000 };
    pthread_t th[THREADS];
    struct submitter s[THREADS];
    pthread_barrier_t bar;
    evexec_loop *loop = NULL;
    evexec_future *fut = NULL;
    struct loop_port lp;
    void *res = NULL;
    evexec_pool *pool = new_pool(2, 0, 0);

    memset(&lp, 0, sizeof lp);
    ck_assert_int_eq(evexec_loop_start(&loop, NULL), 0);
    ck_assert_int_eq(evexec_loop_call(loop, get_loop_port, &lp, &fut), 0);
    ck_assert_int_eq(evexec_future_wait(fut, EVEXEC_WAIT_FOREVER), 0);
    ck_assert_int_eq(evexec_future_result(fut, &res), 0);
    ck_assert_ptr_eq(res, lp.port);
    evexec_future_free(fut);
    ck_assert(!pthread_equal(lp.tid, pthread_self()));

    ts_reset(lp.tid);
    start_submitters(th, s, THREADS, &bar, lp.port, pool, PER);
    join_submitters(th, s, THREADS, &bar);
    /* A drain waits for the port to deliver every job. */
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    ck_assert_int_eq(ts_calls, THREADS * PER);
    for (int i = 0; i < THREADS * PER; i++)
        ck_assert_msg(ts_seen[i] == 1, "job %d: %d callbacks", i, ts_seen[i]);
    ck_assert_int_eq(ts_wrong_thread, 0);
    ck_assert_int_eq(ts_not_ok, 0);
    ck_assert_int_eq(ts_bad_result, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

/* ---------------------------------------------------------------------- */

static Suite *jobs_suite(void)
{
    Suite *s = suite_create("jobs");
    TCase *tc;

    tc = tcase_create("deadlines");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
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
    suite_add_tcase(s, tc);

    tc = tcase_create("groups");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, group_all_calls_back_after_every_member_once_closed);
    tcase_add_test(tc, group_all_waits_for_close_and_never_calls_back_inside_it);
    tcase_add_test(tc, group_all_status_is_the_first_nonzero_member_status);
    tcase_add_test(tc, group_closed_with_no_member_calls_back_enoent_later);
    tcase_add_test(tc, group_refuses_members_once_closed_or_of_another_port);
    tcase_add_test(tc, group_first_calls_back_right_after_the_first_member_rest_run);
    tcase_add_test(tc, group_first_cancel_rest_cancels_queued_and_stops_running);
    tcase_add_test(tc, group_first_status_is_the_first_member_delivered);
    tcase_add_test(tc, group_members_get_their_callbacks_in_completion_order);
    tcase_add_test(tc, group_cancel_cancels_members_only_and_calls_back_ecanceled);
    tcase_add_test(tc, group_cancel_from_a_first_groups_callback);
    tcase_add_test(tc, group_with_a_member_timing_out);
    tcase_add_test(tc, port_free_cancels_the_members_of_an_unclosed_group);
    tcase_add_test(tc, group_member_refused_by_a_full_queue_does_not_join);
    tcase_add_test(tc, group_calls_reject_bad_arguments_and_wrong_threads);
    suite_add_tcase(s, tc);

    tc = tcase_create("threadsafe");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, threadsafe_from_four_threads_every_done_once_on_the_loop);
    tcase_add_test(tc, threadsafe_from_a_work_function);
    tcase_add_test(tc, threadsafe_honours_priority);
    tcase_add_test(tc, threadsafe_rejects_bad_arguments_without_callback);
    tcase_add_test(tc, threadsafe_eshutdown_once_the_port_is_freed);
    tcase_add_test(tc, threadsafe_eshutdown_after_pool_shutdown);
    tcase_add_test(tc, port_free_cancels_queued_threadsafe_jobs);
    tcase_add_test(tc, threadsafe_with_the_default_pool);
    tcase_add_test(tc, threadsafe_into_a_loops_port_from_foreign_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jobs_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
