/* SPDX-License-Identifier: MIT */
/*
 * Failure paths of the loop thread and futures: the n-th allocation, thread
 * start or wake-fd creation made by evexec fails, for every n until a whole
 * scenario goes through. Each step must either succeed or return the
 * documented error, leave no fd, thread or memory behind (valgrind and ASan
 * check the memory), and keep every accepted call's promise: exactly one
 * completion.
 *
 * This program links the library's sources itself, with -Wl,--wrap for the
 * calls it makes fail, so only evexec's own calls (and this file's) reach
 * the wrappers; libevent's allocations are left alone. The countdown is
 * armed only around evexec calls: Check's assertions allocate too.
 *
 * Linked with the sources, it also sees the library's private layouts: the
 * tcase "white-box" holds a future's own mutex to stop a completing thread
 * at a chosen point, and so makes a race window as wide as it likes.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#include "../lib/future-internal.h"

/* --- the wrappers -------------------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
int __real_posix_memalign(void **out, size_t align, size_t n);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
int __real_eventfd(unsigned v, int flags);
int __real_pipe2(int fds[2], int flags);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
int __wrap_posix_memalign(void **out, size_t align, size_t n);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
int __wrap_eventfd(unsigned v, int flags);
int __wrap_pipe2(int fds[2], int flags);

static _Atomic long countdown = -1; /* the call that finds 0 fails; <0: off */
static _Atomic int injected;

static int fail_now(void)
{
    long c = atomic_load(&countdown);
    while (c >= 0) {
        if (atomic_compare_exchange_weak(&countdown, &c, c - 1)) {
            if (c == 0) {
                injected++;
                return 1;
            }
            return 0;
        }
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, m);
}

int __wrap_posix_memalign(void **out, size_t align, size_t n)
{
    return fail_now() ? ENOMEM : __real_posix_memalign(out, align, n);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    return fail_now() ? EAGAIN : __real_pthread_create(t, a, fn, arg);
}

int __wrap_eventfd(unsigned v, int flags)
{
    if (fail_now()) {
        errno = EMFILE;
        return -1;
    }
    return __real_eventfd(v, flags);
}

int __wrap_pipe2(int fds[2], int flags)
{
    if (fail_now()) {
        errno = EMFILE;
        return -1;
    }
    return __real_pipe2(fds, flags);
}

static void arm(long n)
{
    injected = 0;
    atomic_store(&countdown, n);
}

static void disarm(void)
{
    atomic_store(&countdown, -1);
}

/* --- scenarios ----------------------------------------------------------- */

static void echo_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    (void)loop;
    evexec_promise_resolve(p, arg);
}

/* Creates the loop's port and offloads one job through it. */
struct offload {
    evexec_pool *pool;
    evexec_promise *p;
};

static void offload_done(int status, void *result, void *arg)
{
    struct offload *o = arg;
    promise_settle(o->p, status, result);
}

static void offload_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct offload *o = arg;
    evexec_port *port;
    int rc = evexec_loop_port(loop, &port);
    o->p = p;
    if (rc == 0)
        rc = evexec_submit(port, o->pool, echo_work, offload_done, o, NULL);
    if (rc < 0)
        evexec_promise_fail(p, rc);
}

static int init_posts(evexec_loop *loop, void *arg)
{
    (void)arg;
    /* A call posted by init, so that a later failure of init has
     * something to cancel; its failure to post is init's failure. */
    return evexec_loop_call(loop, echo_call, NULL, NULL);
}

static int allowed(int rc)
{
    return rc == 0 || rc == -ENOMEM || rc == -EAGAIN || rc == -EMFILE;
}

/* One pass of the scenario with the n-th failable call failing. Returns 1
 * once nothing was injected (the scenario ran through). */
static int scenario(long n, evexec_pool *pool)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    struct offload off = {pool, NULL};
    evexec_loop *loop = NULL;
    evexec_future *f1 = NULL, *f2 = NULL, *f3 = NULL;
    int x, rc_start, rc1 = 1, rc2 = 1, rc3 = 1;
    int fds = count_fds();

    o.init = init_posts;
    arm(n);
    rc_start = evexec_loop_start(&loop, &o);
    if (rc_start == 0) {
        rc1 = evexec_loop_call(loop, echo_call, &x, &f1);
        rc2 = evexec_loop_call(loop, offload_call, &off, &f2);
        rc3 = evexec_pool_call(pool, echo_work, &x, &f3);
    }
    /* Let the loop side finish under the same countdown. */
    if (f1)
        evexec_future_wait(f1, EVEXEC_WAIT_FOREVER);
    if (f2)
        evexec_future_wait(f2, EVEXEC_WAIT_FOREVER);
    if (f3)
        evexec_future_wait(f3, EVEXEC_WAIT_FOREVER);
    int free_rc = evexec_loop_free(loop);
    disarm();
    int did_inject = injected;

    ck_assert_msg(allowed(rc_start), "n=%ld: start %d", n, rc_start);
    ck_assert_int_eq(free_rc, 0);
    if (rc_start < 0) {
        ck_assert_ptr_null(loop);
    } else {
        ck_assert_msg(allowed(rc1) && allowed(rc2) && allowed(rc3), "n=%ld: %d %d %d", n, rc1,
                      rc2, rc3);
        void *r;
        if (rc1 == 0) {
            ck_assert_int_eq(evexec_future_result(f1, &r), 0);
            ck_assert_ptr_eq(r, &x);
        }
        if (rc2 == 0) { /* the port or the submit may have failed */
            int st = evexec_future_result(f2, &r);
            ck_assert_msg(st == 0 || allowed(st), "n=%ld: offload %d", n, st);
            if (st == 0)
                ck_assert_ptr_eq(r, &off);
        }
        if (rc3 == 0) {
            ck_assert_int_eq(evexec_future_result(f3, &r), 0);
            ck_assert_ptr_eq(r, &x);
        }
    }
    evexec_future_free(f1);
    evexec_future_free(f2);
    evexec_future_free(f3);
    ck_assert_msg(count_fds() == fds, "n=%ld: %d fds left", n, count_fds() - fds);
    return !did_inject;
}

START_TEST(every_failable_call_fails_in_turn)
{
    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;
    long n;

    po.min_threads = 1; /* started before any injection */
    ck_assert_int_eq(evexec_pool_new(&pool, &po), 0);
    for (n = 0; n < 500; n++)
        if (scenario(n, pool))
            break;
    ck_assert_msg(n > 3 && n < 500, "the scenario ran through after %ld failures", n);
    printf("check_loop_faults: %ld failure points, each failed once, all clean\n", n);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

/* --- white-box races ----------------------------------------------------- */

struct canceller {
    evexec_future *f;
    _Atomic int cancel_rc, result_rc, returned;
};

static void *cancel_main(void *arg)
{
    struct canceller *c = arg;
    c->cancel_rc = evexec_future_cancel(c->f);
    c->result_rc = evexec_future_result(c->f, NULL); /* read at once */
    c->returned = 1;
    return NULL;
}

static void *shutdown_cancel_main(void *arg)
{
    evexec_pool_shutdown(arg, EVEXEC_CANCEL);
    return NULL;
}

static int complete(void *arg)
{
    return evexec_future_result(arg, NULL) != -EINPROGRESS;
}

/* The canceller returned, or waits on its future's condition variable. */
static int returned_or_waiting(void *arg)
{
    struct canceller *c = arg;
    pthread_mutex_lock(&c->f->mu);
    int waiting = c->f->waiters > 0;
    pthread_mutex_unlock(&c->f->mu);
    return c->returned || waiting;
}

/*
 * evexec_pool_shutdown(EVEXEC_CANCEL) marks every queued job cancelled
 * under the pool's mutex, then completes them one by one outside it. A
 * cancel of a pool future caught in between must not answer -EALREADY
 * ("already complete") while the future still reads as pending. Holding
 * q[1]'s mutex parks the shutdown between q[0] and q[1]: q[2] is then
 * marked and not complete, for as long as the test likes.
 */
START_TEST(cancel_of_a_pool_future_a_shutdown_is_completing)
{
    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;
    evexec_future *running, *q[3];
    struct canceller c;
    struct gate g;
    struct tally t;
    pthread_t shut, th;

    po.max_threads = 1;
    ck_assert_int_eq(evexec_pool_new(&pool, &po), 0);
    running = park_call(pool, park_work, &g, &t);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_pool_call(pool, echo_work, NULL, &q[i]), 0);

    pthread_mutex_lock(&q[1]->mu);
    ck_assert_int_eq(pthread_create(&shut, NULL, shutdown_cancel_main, pool), 0);
    wait_for(complete, q[0]); /* the shutdown is past q[0], parked at q[1] */
    ck_assert_int_eq(evexec_future_result(q[2], NULL), -EINPROGRESS);
    memset(&c, 0, sizeof c);
    c.f = q[2];
    ck_assert_int_eq(pthread_create(&th, NULL, cancel_main, &c), 0);
    wait_for(returned_or_waiting, &c);
    pthread_mutex_unlock(&q[1]->mu);
    pthread_join(th, NULL);
    pthread_join(shut, NULL);
    ck_assert_int_eq(c.cancel_rc, -EALREADY);
    ck_assert_int_eq(c.result_rc, -ECANCELED); /* complete, as -EALREADY says */

    gate_release(&g, 1);
    ck_assert_int_eq(evexec_future_wait(running, EVEXEC_WAIT_FOREVER), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    evexec_future_free(running);
    for (int i = 0; i < 3; i++)
        evexec_future_free(q[i]);
    gate_destroy(&g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loop-faults");
    TCase *tc = add_tcase(s, "injected", 120, FX_FDS);
    tcase_add_test(tc, every_failable_call_fails_in_turn);
    tc = add_tcase(s, "white-box", 60, FX_FDS);
    tcase_add_test(tc, cancel_of_a_pool_future_a_shutdown_is_completing);
    return run_suite(s);
}
