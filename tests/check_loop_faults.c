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
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

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
    if (status == 0)
        evexec_promise_resolve(o->p, result);
    else
        evexec_promise_fail(o->p, status);
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

int main(void)
{
    Suite *s = suite_create("loop-faults");
    TCase *tc = tcase_create("injected");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, every_failable_call_fails_in_turn);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
