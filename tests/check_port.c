/* SPDX-License-Identifier: MIT */
/*
 * The port: every accepted job gets one done callback on its loop thread with
 * its work function's result (never inside submit, cancel or free), a burst
 * costs one wake-up and arrives in submission order, batches are capped;
 * cancel; freeing a port or a pool from a done callback or with jobs
 * outstanding; one pool serving several loops and one port several pools.
 * Queue states are made deterministic by parking workers on gates
 * (semaphores), never by sleeping.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
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
/* Invariants 1 and 2: one callback per job, on the loop thread, with the */
/* work function's result.                                                */

START_TEST(each_job_one_callback_with_its_result)
{
    enum { N = 500 };
    static int seen[N];
    struct tally t;
    evexec_pool *pool = new_pool(4, 0, 0);

    tally_init(&t);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &t, NULL), 0);
    run_until(fx.base, &t.calls, N);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(t.calls, N);
    ck_assert_int_eq(t.ok, N);
    ck_assert_int_eq(t.wrong_thread, 0);
    ck_assert_ptr_eq(t.last_result, &t);
    ck_assert_uint_eq(port_stats(fx.port).outstanding, 0);
    ck_assert_uint_eq(port_stats(fx.port).delivered, N);
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
    evexec_pool *pool = new_pool(1, 0, 0);
    evexec_job_id id;

    reentered = reentry_calls = 0;
    /* A job that has finished (pushed to the port) before the calls below:
     * a re-entrant library would deliver it from inside them. */
    inside_call = 1;
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, reentry_done, NULL, NULL), 0);
    inside_call = 0;
    while (pool_stats(pool).idle < 1) /* done and pushed */
        sched_yield();
    inside_call = 1;
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, reentry_done, NULL, &id), 0);
    (void)evexec_cancel(fx.port, id);
    ck_assert_int_eq(evexec_port_free(fx.port), 0); /* deferred: jobs outstanding */
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    inside_call = 0;
    ck_assert_int_eq(reentry_calls, 0);
    event_base_dispatch(fx.base); /* delivers both, then the port goes */
    ck_assert_int_eq(reentry_calls, 2);
    ck_assert_int_eq(reentered, 0);
    ck_assert_int_eq(evexec_port_new(&fx.port, fx.base, NULL), 0); /* for teardown */
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Cancel.                                                                */

START_TEST(cancel_queued_job_delivers_ecanceled_later)
{
    struct gate g;
    struct tally t, tc;
    evexec_pool *pool = new_pool(1, 0, 0);
    evexec_job_id ids[3];

    tally_init(&tc);
    park_n(pool, park_work, &g, &t, 1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &tc, &ids[i]), 0);
    ck_assert_uint_eq(pool_stats(pool).queued, 3);

    ck_assert_int_eq(evexec_cancel(fx.port, ids[1]), 0);
    ck_assert_int_eq(tc.calls, 0); /* never inside evexec_cancel */
    ck_assert_uint_eq(pool_stats(pool).queued, 2);
    ck_assert_uint_eq(pool_stats(pool).cancelled, 1);
    /* Delivered while the only worker is still parked: cancel does not
     * wait for a worker to come by. */
    run_until(fx.base, &tc.calls, 1);
    ck_assert_int_eq(tc.cancelled, 1);
    ck_assert_ptr_null(tc.last_result);

    gate_release(&g, 1);
    run_until(fx.base, &tc.calls, 3);
    run_until(fx.base, &t.calls, 1);
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
    evexec_pool *pool = new_pool(1, 0, 0);
    evexec_job_id id;

    tally_init(&t);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(fx.port, pool, park_work_stop, gate_done, &g, &id), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_cancel(fx.port, id), -EBUSY);
    gate_release(&g, 1);
    run_until(fx.base, &t.calls, 1);
    ck_assert_int_eq(t.ok, 1); /* it ran: status 0 */
    ck_assert_ptr_eq(t.last_result, (void *)1); /* and saw its stop flag */

    /* A job not asked to stop sees no flag. */
    ck_assert_int_eq(evexec_submit(fx.port, pool, park_work_stop, gate_done, &g, &id), 0);
    gate_wait_entered(&g, 1);
    gate_release(&g, 1);
    run_until(fx.base, &t.calls, 2);
    ck_assert_ptr_eq(t.last_result, (void *)0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
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
    evexec_pool *pool = new_pool(1, 0, 0);
    struct free_in_cb f = {fx.port, pool, 0, 1};

    park_n(pool, park_work, &g, &t, 1);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, free_port_done, &f, NULL), 0);
    gate_release(&g, 1);
    event_base_dispatch(fx.base); /* returns once the port has released itself */
    ck_assert_int_eq(f.free_rc, 0);
    ck_assert_int_eq(f.calls, 4);
    ck_assert_int_eq(t.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(evexec_port_new(&fx.port, fx.base, NULL), 0);
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
    evexec_pool *pool = new_pool(2, 0, 0);
    struct free_in_cb f = {fx.port, pool, 0, 1};

    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, free_pool_done, &f, NULL), 0);
    run_until(fx.base, &f.calls, 50);
    ck_assert_int_eq(f.free_rc, 0);
    run_nonblock(fx.base, 3);
    ck_assert_int_eq(f.calls, 50);
}
END_TEST

START_TEST(port_free_with_jobs_outstanding)
{
    struct gate g;
    struct tally t, tq;
    evexec_pool *pool = new_pool(1, 0, 0);
    int fds = count_fds();
    evexec_port *p2;

    tally_init(&t);
    tally_init(&tq);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_port_new(&p2, fx.base, NULL), 0);
    ck_assert_int_gt(count_fds(), fds); /* an eventfd, or a pipe's two ends */
    ck_assert_int_eq(evexec_submit(p2, pool, park_work_stop, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(p2, pool, echo_work, tally_done, &tq, NULL), 0);
    ck_assert_int_eq(evexec_port_free(p2), 0);
    ck_assert_int_eq(tq.calls + t.calls, 0);
    ck_assert_uint_eq(pool_stats(pool).queued, 0); /* cancelled at once */
    run_until(fx.base, &tq.calls, 3);
    ck_assert_int_eq(tq.cancelled, 3);
    gate_release(&g, 1);
    run_until(fx.base, &t.calls, 1);
    ck_assert_int_eq(t.ok, 1);
    ck_assert_ptr_eq(t.last_result, (void *)1); /* the running job was asked to stop */
    run_nonblock(fx.base, 3);
    ck_assert_int_eq(count_fds(), fds); /* the port has released itself */
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
    evexec_pool *pool = new_pool(W, 0, 0);
    struct evexec_port_opts po = EVEXEC_PORT_OPTS_INIT;
    evexec_port *p2;

    po.max_batch = 100000;
    ck_assert_int_eq(evexec_port_new(&p2, fx.base, &po), 0);
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
    run_until(fx.base, &norder, N);
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
    evexec_pool *pool = new_pool(1, 0, 0);
    struct evexec_port_opts po = EVEXEC_PORT_OPTS_INIT;
    evexec_port *p2;
    int sv[2];

    po.max_batch = 10;
    ck_assert_int_eq(evexec_port_new(&p2, fx.base, &po), 0);
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
    struct event *ev = event_new(fx.base, sv[0], EV_READ | EV_PERSIST, on_readable, NULL);
    event_add(ev, NULL);
    ck_assert_int_eq(write(sv[1], "x", 1), 1);
    run_until(fx.base, &norder, N);
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

/* A pipeline: each done callback submits the next job, so the port's runs
 * look for completions and may stay open across a turn of the loop
 * (port.c, "Looking before sleeping"). An fd that is always readable must
 * still get a turn at least every max_batch callbacks; every job must come
 * home once and in order; and a port freed from a callback in the middle
 * of the pipeline must deliver the job in flight and release itself. */
static struct {
    evexec_port *port;
    evexec_pool *pool;
    int n, free_at, calls, bad, submit_rc;
    int since_other, most_between, others;
} PL;

static void *numbered_echo(evexec_job *job, void *arg)
{
    (void)job;
    return arg;
}

static void pipeline_done_numbered(int status, void *result, void *arg)
{
    (void)arg;
    if (status != 0 || (intptr_t)result != PL.calls)
        PL.bad++;
    PL.calls++;
    PL.since_other++;
    if (PL.calls < PL.n && PL.calls != PL.free_at + 1 &&
        evexec_submit(PL.port, PL.pool, numbered_echo, pipeline_done_numbered,
                      (void *)(intptr_t)PL.calls, NULL) != 0)
        PL.bad++;
    if (PL.calls == PL.free_at)
        PL.submit_rc = evexec_port_free(PL.port);
}

static void always_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (PL.since_other > PL.most_between)
        PL.most_between = PL.since_other;
    PL.since_other = 0;
    PL.others++;
}

START_TEST(a_pipeline_shares_the_loop_and_survives_a_free)
{
    enum { N = 20000, CAP = 64 };
    int sv[2];
    struct event_base *b = event_base_new();
    struct evexec_port_opts po = EVEXEC_PORT_OPTS_INIT;
    ck_assert_ptr_nonnull(b);
    memset(&PL, 0, sizeof PL);
    PL.pool = new_pool(1, 1, 0);
    PL.n = N;
    PL.free_at = N / 2;
    po.max_batch = CAP;
    ck_assert_int_eq(evexec_port_new(&PL.port, b, &po), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(write(sv[1], "x", 1), 1); /* never read: always ready */
    struct event *ev = event_new(b, sv[0], EV_READ | EV_PERSIST, always_readable, NULL);
    ck_assert_ptr_nonnull(ev);
    ck_assert_int_eq(event_add(ev, NULL), 0);
    ck_assert_int_eq(evexec_submit(PL.port, PL.pool, numbered_echo, pipeline_done_numbered,
                                   (void *)(intptr_t)0, NULL), 0);
    /* The free at free_at leaves the job submitted just before it in
     * flight; nothing is submitted after it. */
    while (PL.calls < PL.free_at + 1)
        ck_assert_int_ge(event_base_loop(b, EVLOOP_ONCE), 0);
    event_free(ev); /* now only the freed port keeps the loop going */
    ck_assert_int_ge(event_base_dispatch(b), 0); /* returns once it released itself */
    printf("check_port: pipeline: %d callbacks, the other fd ran %d times, at most %d "
           "callbacks between its turns\n", PL.calls, PL.others, PL.most_between);
    fflush(stdout);
    ck_assert_int_eq(PL.submit_rc, 0);
    ck_assert_int_eq(PL.bad, 0);
    ck_assert_int_eq(PL.calls, PL.free_at + 1);
    ck_assert_int_gt(PL.others, 0);
    ck_assert_int_le(PL.most_between, CAP);
    close(sv[0]);
    close(sv[1]);
    event_base_free(b);
    ck_assert_int_eq(evexec_pool_free(PL.pool), 0);
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
    evexec_pool *pool = new_pool(3, 0, 1000);

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
    evexec_pool *fast = new_named_pool(2, 0, 0, "f");
    evexec_pool *slow = new_named_pool(1, 0, 0, "s");
    struct pool_check cf = {'f', pthread_self(), 0, 0, 0};
    struct pool_check cs = {'s', pthread_self(), 0, 0, 0};

    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(evexec_submit(fx.port, fast, name_prefix_work, pool_check_done, &cf, NULL), 0);
        ck_assert_int_eq(evexec_submit(fx.port, slow, name_prefix_work, pool_check_done, &cs, NULL), 0);
    }
    run_until(fx.base, &cf.calls, 200);
    run_until(fx.base, &cs.calls, 200);
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
    evexec_pool *pool = new_pool(2, 2, 0);

    /* Remember the fds before, then find the port's. */
    d = opendir("/proc/self/fd");
    while ((e = readdir(d)) && nseen < 64)
        if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
            seen[nseen++] = atoi(e->d_name);
    closedir(d);
    ck_assert_int_eq(evexec_port_new(&p2, fx.base, NULL), 0);
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

/* ---------------------------------------------------------------------- */
/* Gathering under load: with many jobs away, each for much longer than   */
/* the delay, the loop sleeps on a timer and finished jobs come home       */
/* without wake-fd writes; it never gathers with few jobs away or when     */
/* asked not to, stops when the flow stops, and a port freed meanwhile     */
/* still delivers every callback.                                          */

enum { FLOW_JOB_US = 100, FLOW_MAX = 64 };

struct flow;
struct flow_job {
    struct flow *f;
    double ended; /* now_s() as the work function returned */
};
struct flow {
    evexec_port *port;
    evexec_pool *pool;
    int target, submitted, done, ok, cancelled, wrong_thread, free_at;
    double home[2048]; /* seconds from work's end to the callback */
    int nhome;
    struct flow_job jobs[FLOW_MAX];
};

static void *flow_work(evexec_job *job, void *arg)
{
    struct flow_job *j = arg;
    struct timespec ts = {0, FLOW_JOB_US * 1000};
    (void)job;
    /* A sleep, not a spin: under valgrind, which runs one thread at a
     * time, spinning workers would leave the loop thread tens of
     * milliseconds between runs, and a port does not gather then. */
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    j->ended = now_s();
    return j;
}

static void flow_done(int status, void *result, void *arg)
{
    struct flow_job *j = arg;
    struct flow *f = j->f;
    f->done++;
    f->wrong_thread += !pthread_equal(pthread_self(), fx.loop);
    if (status == -ECANCELED) {
        f->cancelled++;
        return;
    }
    ck_assert_int_eq(status, 0);
    ck_assert_ptr_eq(result, j);
    f->ok++;
    if (f->nhome < (int)(sizeof f->home / sizeof f->home[0]))
        f->home[f->nhome++] = now_s() - j->ended;
    if (f->free_at && f->done == f->free_at) {
        ck_assert_int_eq(evexec_port_free(f->port), 0);
        f->port = NULL;
    }
    if (f->port && f->submitted < f->target) {
        ck_assert_int_eq(evexec_submit(f->port, f->pool, flow_work, flow_done, j, NULL), 0);
        f->submitted++;
    }
}

/* Keeps `flight` jobs of FLOW_JOB_US in flight on a pool of two until
 * `target` have run, through a port of its own on fx.base. */
static struct flow *flow_run(int flight, int target, int max_delay_us, int free_at,
                             struct evexec_port_stats *st)
{
    static struct flow f;
    struct evexec_port_opts o = EVEXEC_PORT_OPTS_INIT;
    memset(&f, 0, sizeof f);
    o.max_delay_us = max_delay_us;
    ck_assert_int_eq(evexec_port_new(&f.port, fx.base, &o), 0);
    f.pool = new_pool(2, 2, 0);
    f.target = target;
    f.free_at = free_at;
    for (int i = 0; i < flight; i++) {
        f.jobs[i].f = &f;
        ck_assert_int_eq(evexec_submit(f.port, f.pool, flow_work, flow_done, &f.jobs[i], NULL), 0);
        f.submitted++;
    }
    /* The pool's two workers: run until every submitted job is home. */
    while (f.done < f.submitted)
        run_until(fx.base, &f.done, f.submitted);
    ck_assert_int_eq(f.wrong_thread, 0);
    if (f.port)
        *st = port_stats(f.port);
    return &f;
}

#ifdef HAVE_SYS_TIMERFD_H
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
#endif

/* The fds opened since `before` was listed, up to max. */
static int new_fds(const int *before, int nbefore, int *out, int max)
{
    int now[256], n = fd_list(now, 256), k = 0;
    for (int i = 0; i < n; i++) {
        int old = 0;
        for (int j = 0; j < nbefore; j++)
            old |= before[j] == now[i];
        if (!old && k < max)
            out[k++] = now[i];
    }
    return k;
}

START_TEST(under_load_completions_gather_without_wake_fd_writes)
{
    struct evexec_port_stats st;
    int before[256], nbefore = fd_list(before, 256), opened[8];
    struct flow *f = flow_run(32, 800, 0, 0, &st);

    ck_assert_int_eq(f->ok, 800);
    ck_assert_uint_eq(st.delivered, 800);
#ifdef HAVE_SYS_TIMERFD_H
    /* 32 jobs of 100-150 us on two workers: each away about 2 ms, so the
     * loop gathers for 200 us at a time, some 250 times in 50 ms. */
    ck_assert_msg(st.gathered >= 20, "%llu gathering runs", (unsigned long long)st.gathered);
    ck_assert_msg(st.wakeups * 4 <= st.delivered, "%llu wake-fd reads for %llu callbacks",
                  (unsigned long long)st.wakeups, (unsigned long long)st.delivered);
    /* The timer brings the loop back in time: half the jobs home within
     * 20 ms of their end whatever the machine (200 us where it is idle). */
    qsort(f->home, (size_t)f->nhome, sizeof f->home[0], cmp_double);
    ck_assert_msg(f->home[f->nhome / 2] < 0.020, "median time home %.6f s",
                  f->home[f->nhome / 2]);
#else
    ck_assert_uint_eq(st.gathered, 0); /* no timerfd: never */
#endif
    /* Nothing away: no more gathering runs, whatever time passes. */
    uint64_t gathered = port_stats(f->port).gathered;
    run_for(30);
    ck_assert_uint_eq(port_stats(f->port).gathered, gathered);
    /* A job now comes home through the wake fd. */
    int calls = f->done;
    f->target = f->submitted + 1;
    ck_assert_int_eq(evexec_submit(f->port, f->pool, flow_work, flow_done, &f->jobs[0], NULL), 0);
    f->submitted++;
    run_until(fx.base, &f->done, calls + 1);
    ck_assert_uint_eq(port_stats(f->port).gathered, gathered);
    ck_assert_uint_gt(port_stats(f->port).wakeups, st.wakeups);
    /* The port's fds (the wake fd, its timer fd): close-on-exec and
     * non-blocking, and gone with the port. */
    int n = new_fds(before, nbefore, opened, 8);
    ck_assert_int_ge(n, 1);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(fcntl(opened[i], F_GETFD) & FD_CLOEXEC, "fd %d lacks FD_CLOEXEC", opened[i]);
        ck_assert_msg(fcntl(opened[i], F_GETFL) & O_NONBLOCK, "fd %d is blocking", opened[i]);
    }
    ck_assert_int_eq(evexec_port_free(f->port), 0);
    ck_assert_int_eq(evexec_pool_free(f->pool), 0);
    run_nonblock(fx.base, 3);
    ck_assert_int_eq(new_fds(before, nbefore, opened, 8), 0);
}
END_TEST

START_TEST(no_gathering_with_few_jobs_away_or_when_off)
{
    struct evexec_port_stats st;
    /* Eight away: below the sixteen gathering needs. */
    struct flow *f = flow_run(8, 400, 0, 0, &st);
    ck_assert_int_eq(f->ok, 400);
    ck_assert_uint_eq(st.gathered, 0);
    ck_assert_int_eq(evexec_port_free(f->port), 0);
    ck_assert_int_eq(evexec_pool_free(f->pool), 0);
    /* Thirty-two away, gathering off. */
    f = flow_run(32, 800, -1, 0, &st);
    ck_assert_int_eq(f->ok, 800);
    ck_assert_uint_eq(st.gathered, 0);
    ck_assert_uint_gt(st.wakeups, 0);
    ck_assert_int_eq(evexec_port_free(f->port), 0);
    ck_assert_int_eq(evexec_pool_free(f->pool), 0);
    run_nonblock(fx.base, 3);
}
END_TEST

START_TEST(a_port_freed_while_gathering_delivers_every_callback)
{
    struct evexec_port_stats st;
    int before = count_fds();
    struct flow *f = flow_run(32, 100000, 0, 400, &st);
    /* Freed from its 400th callback, deep in a gathering: the jobs away
     * then still come home, run or cancelled, and nothing more is sent. */
    ck_assert_int_eq(f->done, f->submitted);
    ck_assert_int_ge(f->ok, 400);
    ck_assert_int_eq(f->ok + f->cancelled, f->submitted);
    ck_assert_int_eq(evexec_pool_free(f->pool), 0);
    run_nonblock(fx.base, 3);
    ck_assert_int_eq(count_fds(), before);
}
END_TEST

START_TEST(a_gathering_that_finds_nothing_ends)
{
    /* Twenty jobs away that will not come home for a while (two parked,
     * eighteen queued behind them) and a quick job now and then on another
     * pool: once the rate says jobs stay away long, a run gathers; the
     * gathering finds nothing and ends, and the loop sleeps on its wake fd
     * instead of coming back every 200 us. */
    struct gate g;
    struct tally t, tq;
    evexec_pool *slow = new_pool(2, 2, 0), *quick = new_pool(1, 1, 0);
    park_n(slow, park_work, &g, &t, 2);
    for (int i = 0; i < 18; i++)
        ck_assert_int_eq(evexec_submit(fx.port, slow, park_work, gate_done, &g, NULL), 0);
    tally_init(&tq);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(evexec_submit(fx.port, quick, echo_work, tally_done, &tq, NULL), 0);
        run_until(fx.base, &tq.calls, i + 1);
        run_for(3);
    }
    uint64_t gathered = port_stats(fx.port).gathered;
#ifdef HAVE_SYS_TIMERFD_H
    ck_assert_uint_ge(gathered, 1);
#else
    ck_assert_uint_eq(gathered, 0);
#endif
    run_for(30);
    ck_assert_uint_le(port_stats(fx.port).gathered, gathered + 1);
    gate_release(&g, 20);
    run_until(fx.base, &t.calls, 20);
    ck_assert_int_eq(t.ok, 20);
    ck_assert_int_eq(evexec_pool_free(slow), 0);
    ck_assert_int_eq(evexec_pool_free(quick), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(max_delay_out_of_range_is_einval)
{
    struct evexec_port_opts o = EVEXEC_PORT_OPTS_INIT;
    evexec_port *p = NULL;
    int bad[] = {-2, 100001, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.max_delay_us = bad[i];
        ck_assert_int_eq(evexec_port_new(&p, fx.base, &o), -EINVAL);
        ck_assert_ptr_null(p);
    }
    int good[] = {-1, 0, 1, 100000};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        o.max_delay_us = good[i];
        ck_assert_int_eq(evexec_port_new(&p, fx.base, &o), 0);
        ck_assert_int_eq(evexec_port_free(p), 0);
        p = NULL;
    }
}
END_TEST

static Suite *port_suite(void)
{
    Suite *s = suite_create("port");
    TCase *tc;

    tc = add_tcase(s, "delivery", 60, FX_PORT);
    tcase_add_test(tc, each_job_one_callback_with_its_result);
    tcase_add_test(tc, callbacks_never_run_inside_submit_cancel_or_free);
    tcase_add_test(tc, a_burst_costs_one_wakeup_and_arrives_in_submission_order);
    tcase_add_test(tc, batches_are_capped_so_other_events_run);
    tcase_add_test(tc, a_pipeline_shares_the_loop_and_survives_a_free);

    tc = add_tcase(s, "cancel-and-free", 60, FX_PORT);
    tcase_add_test(tc, cancel_queued_job_delivers_ecanceled_later);
    tcase_add_test(tc, cancel_running_job_is_ebusy_and_sets_stop);
    tcase_add_test(tc, port_free_inside_callback_still_delivers_the_rest);
    tcase_add_test(tc, pool_free_inside_callback);
    tcase_add_test(tc, port_free_with_jobs_outstanding);

    tc = add_tcase(s, "loops-and-pools", 60, FX_PORT);
    tcase_add_test(tc, one_pool_serves_four_loops);
    tcase_add_test(tc, one_port_takes_jobs_from_two_pools);
    tcase_add_test(tc, ports_and_pools_leave_no_fds_and_use_cloexec);

    tc = add_tcase(s, "gathering", 60, FX_PORT);
    tcase_add_test(tc, under_load_completions_gather_without_wake_fd_writes);
    tcase_add_test(tc, no_gathering_with_few_jobs_away_or_when_off);
    tcase_add_test(tc, a_port_freed_while_gathering_delivers_every_callback);
    tcase_add_test(tc, a_gathering_that_finds_nothing_ends);
    tcase_add_test(tc, max_delay_out_of_range_is_einval);
    return s;
}

int main(void)
{
    return run_suite(port_suite());
}
