/* SPDX-License-Identifier: MIT */
/*
 * evexec_submit_threadsafe(): submits from foreign threads, from work
 * functions and into a loop thread's port; every done callback once, on
 * the loop; priorities, bad arguments, and -ESHUTDOWN once the port or the
 * pool is gone.
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
    start_submitters(th, s, TS_THREADS, &bar, fx.port, pool, TS_PER_THREAD);
    run_until(fx.base, &ts_calls, TS_JOBS); /* the loop runs while they submit */
    join_submitters(th, s, TS_THREADS, &bar);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(ts_calls, TS_JOBS);
    for (int i = 0; i < TS_JOBS; i++)
        ck_assert_msg(ts_seen[i] == 1, "job %d: %d callbacks", i, ts_seen[i]);
    ck_assert_int_eq(ts_wrong_thread, 0);
    ck_assert_int_eq(ts_bad_result, 0);
    ck_assert_int_eq(ts_not_ok, 0);
    struct evexec_pool_stats ps = pool_stats(pool);
    ck_assert_uint_eq(ps.submitted, TS_JOBS);
    ck_assert_uint_eq(ps.completed, TS_JOBS);
    struct evexec_port_stats pt = port_stats(fx.port);
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
    if (status != 0 || !pthread_equal(pthread_self(), fx.loop))
        c->wrong_thread++;
    c->calls++;
}
static void *chain_work(evexec_job *job, void *arg)
{
    struct chain *c = arg;
    (void)job;
    if (atomic_fetch_add(&c->links, 1) + 1 < CHAIN) {
        int rc = evexec_submit_threadsafe(fx.port, c->pool, chain_work, chain_done, c, NULL);
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
    ck_assert_int_eq(evexec_submit(fx.port, c.pool, chain_work, chain_done, &c, NULL), 0);
    run_until(fx.base, &c.calls, CHAIN);
    run_nonblock(fx.base, 5);
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
    if (!pthread_equal(pthread_self(), fx.loop))
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
    return evexec_submit_threadsafe(fx.port, ps->pool, order_work, order_done,
                                    (void *)(intptr_t)ps->tag, &o);
}

START_TEST(threadsafe_honours_priority)
{
    struct gate g;
    struct djob p;
    evexec_pool *pool = new_pool(1, 0, 0);

    atomic_store(&start_next, 0);
    order_calls = order_not_ok = order_wrong_thread = 0;
    park_djob(pool, &p, &g, 0, NULL);
    /* Queued in this order: LOW 1 (foreign thread), NORMAL 2 and 3 (loop
     * thread, evexec_submit()), HIGH 4 (foreign thread). */
    struct prio_submit low = {pool, EVEXEC_PRIO_LOW, 1};
    struct prio_submit high = {pool, EVEXEC_PRIO_HIGH, 4};
    ck_assert_int_eq(on_other_thread(prio_submit_call, &low), 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, order_work, order_done, (void *)2, NULL), 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, order_work, order_done, (void *)3, NULL), 0);
    ck_assert_int_eq(on_other_thread(prio_submit_call, &high), 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.queued_low, 1);
    ck_assert_uint_eq(s.queued_normal, 2);
    ck_assert_uint_eq(s.queued_high, 1);
    gate_release(&g, 1);
    run_until(fx.base, &order_calls, 4);
    run_until(fx.base, &p.calls, 1);
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
    struct ts_call c = {fx.port, pool, echo_work, EVEXEC_JOB_OPTS_INIT, 1};

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
    c.port = fx.port;
    c.work = NULL;
    ck_assert_int_eq(on_other_thread(ts_call, &c), -EINVAL);
    c.work = echo_work;
    /* The defaults, with opts or without, are accepted. */
    ck_assert_int_eq(on_other_thread(ts_call, &c), 0);
    c.use_opts = 0;
    ck_assert_int_eq(on_other_thread(ts_call, &c), 0);

    run_until(fx.base, &ts_calls, 2);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(ts_calls, 2);
    ck_assert_int_eq(ts_not_ok, 0);
    ck_assert_int_eq(ts_wrong_thread, 0);
    ck_assert_uint_eq(pool_stats(pool).submitted, 2);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    run_until(fx.base, &gr.calls, 1);
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
    a->ts_rc = evexec_submit_threadsafe(fx.port, a->pool, echo_work, NULL, NULL, NULL);
    a->ex_rc = evexec_submit_ex(fx.port, a->pool, echo_work, NULL, NULL, NULL, NULL);
    a->sub_rc = evexec_submit(fx.port, a->pool, echo_work, NULL, NULL, NULL);
    a->group_rc = evexec_group_new(&g, fx.port, EVEXEC_GROUP_ALL, NULL, NULL);
}

START_TEST(threadsafe_eshutdown_once_the_port_is_freed)
{
    struct gate g;
    struct after_free a;
    evexec_pool *pool = new_pool(1, 0, 0);
    struct ts_call c = {fx.port, pool, echo_work, EVEXEC_JOB_OPTS_INIT, 0};

    ts_reset(pthread_self());
    gate_init(&g, NULL);
    memset(&a, 0, sizeof a);
    a.gate = &g;
    a.pool = pool;
    ck_assert_int_eq(evexec_submit(fx.port, pool, after_free_work, after_free_done, &a, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_port_free(fx.port), 0);
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
    dispatch_all(fx.base);
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
    ck_assert_int_eq(evexec_port_new(&fx.port, fx.base, NULL), 0); /* for teardown */
}
END_TEST

START_TEST(threadsafe_eshutdown_after_pool_shutdown)
{
    evexec_pool *pool = new_pool(1, 0, 0);
    struct ts_call c = {fx.port, pool, echo_work, EVEXEC_JOB_OPTS_INIT, 0};

    ts_reset(pthread_self());
    ck_assert_int_eq(on_other_thread(ts_call, &c), 0);
    run_until(fx.base, &ts_calls, 1);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(on_other_thread(ts_call, &c), -ESHUTDOWN);
    ck_assert_int_eq(ts_call(&c), -ESHUTDOWN);
    c.use_opts = 1;
    c.o.priority = EVEXEC_PRIO_HIGH;
    ck_assert_int_eq(on_other_thread(ts_call, &c), -ESHUTDOWN);
    ck_assert_uint_eq(pool_stats(pool).rejected, 3);
    run_nonblock(fx.base, 5);
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
        if (evexec_submit_threadsafe(fx.port, b->pool, counted_work, ts_done, &ts_seen[i], NULL))
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
    park_djob(pool, &p, &g, 0, NULL);
    ck_assert_int_eq(on_other_thread(ts_batch_call, &b), 0);
    ck_assert_int_eq(b.failures, 0);
    ck_assert_uint_eq(pool_stats(pool).queued, N);
    ck_assert_int_eq(evexec_port_free(fx.port), 0);
    ck_assert_uint_eq(pool_stats(pool).queued, 0);
    ck_assert_int_eq(ts_calls, 0); /* never inside free */
    gate_release(&g, 1);
    dispatch_all(fx.base);
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
    ck_assert_int_eq(evexec_port_new(&fx.port, fx.base, NULL), 0); /* for teardown */
}
END_TEST

START_TEST(threadsafe_with_the_default_pool)
{
    struct ts_call c = {fx.port, NULL, echo_work, EVEXEC_JOB_OPTS_INIT, 0};

    ts_reset(pthread_self());
    ck_assert_int_eq(on_other_thread(ts_call, &c), 0);
    run_until(fx.base, &ts_calls, 1);
    ck_assert_int_eq(ts_not_ok, 0);
    ck_assert_int_eq(ts_bad_result, 0);
    ck_assert_int_eq(ts_wrong_thread, 0);
    evexec_pool *def = NULL;
    ck_assert_int_eq(evexec_port_default_pool(fx.port, &def), 0);
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

static Suite *remote_suite(void)
{
    Suite *s = suite_create("remote");
    TCase *tc;

    tc = add_tcase(s, "threadsafe", 60, FX_PORT);
    tcase_add_test(tc, threadsafe_from_four_threads_every_done_once_on_the_loop);
    tcase_add_test(tc, threadsafe_from_a_work_function);
    tcase_add_test(tc, threadsafe_honours_priority);
    tcase_add_test(tc, threadsafe_rejects_bad_arguments_without_callback);
    tcase_add_test(tc, threadsafe_eshutdown_once_the_port_is_freed);
    tcase_add_test(tc, threadsafe_eshutdown_after_pool_shutdown);
    tcase_add_test(tc, port_free_cancels_queued_threadsafe_jobs);
    tcase_add_test(tc, threadsafe_with_the_default_pool);
    tcase_add_test(tc, threadsafe_into_a_loops_port_from_foreign_threads);
    return s;
}

int main(void)
{
    return run_suite(remote_suite());
}
