/* SPDX-License-Identifier: MIT */
/*
 * Pool futures (evexec_pool_call()): calls from foreign threads, cancel of a
 * queued and a running call, shutdown and free completing them, waiting
 * from a pool's own worker, and a full queue.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

struct pc_thread {
    evexec_pool *pool;
    unsigned id;
    _Atomic int *bad;
};

static void *square_work(evexec_job *job, void *arg)
{
    (void)job;
    uintptr_t v = (uintptr_t)arg;
    return (void *)(v * v);
}

static void *pc_main(void *arg)
{
    struct pc_thread *t = arg;
    for (uintptr_t i = 1; i <= 500; i++) {
        evexec_future *f;
        void *r;
        uintptr_t v = t->id * 1000 + i;
        if (evexec_pool_call(t->pool, square_work, (void *)v, &f) < 0) {
            (*t->bad)++;
            continue;
        }
        if (evexec_future_wait(f, EVEXEC_WAIT_FOREVER) != 0 || evexec_future_result(f, &r) != 0 ||
            (uintptr_t)r != v * v)
            (*t->bad)++;
        evexec_future_free(f);
    }
    return NULL;
}

START_TEST(pool_futures_from_foreign_threads)
{
    evexec_pool *pool = new_pool(4, 0, 0);
    struct pc_thread t[8];
    pthread_t th[8];
    _Atomic int bad = 0;
    for (unsigned i = 0; i < 8; i++) {
        t[i] = (struct pc_thread){pool, i, &bad};
        ck_assert_int_eq(pthread_create(&th[i], NULL, pc_main, &t[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(bad, 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.submitted, 8 * 500);
    ck_assert_uint_eq(s.completed, 8 * 500);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

START_TEST(pool_future_cancel_queued_and_running)
{
    evexec_pool *pool = new_pool(1, 0, 0);
    struct gate g;
    struct tally t;
    evexec_future *running, *queued, *freed, *later;
    void *r;

    running = park_call(pool, park_work_stop, &g, &t);
    ck_assert_int_eq(evexec_pool_call(pool, echo_work, &t, &queued), 0);
    ck_assert_int_eq(evexec_pool_call(pool, echo_work, &t, &freed), 0);
    ck_assert_int_eq(evexec_pool_call(pool, echo_work, &t, &later), 0);
    ck_assert_uint_eq(pool_stats(pool).queued, 3);

    ck_assert_int_eq(evexec_future_cancel(queued), 0);
    ck_assert_int_eq(evexec_future_result(queued, NULL), -ECANCELED);
    ck_assert_int_eq(evexec_future_cancel(queued), -EALREADY);
    evexec_future_free(freed); /* queued: cancelled, never runs */
    ck_assert_uint_eq(pool_stats(pool).queued, 1);
    ck_assert_int_eq(evexec_future_cancel(running), -EBUSY);
    ck_assert_int_eq(evexec_future_wait(running, 10), -ETIMEDOUT);
    gate_release(&g, 1);
    ck_assert_int_eq(evexec_future_wait(running, 10000), 0);
    ck_assert_int_eq(evexec_future_result(running, &r), 0);
    ck_assert_ptr_eq(r, (void *)1); /* it saw its stop flag */
    ck_assert_ptr_eq(wait_ok(later), &t);
    ck_assert_int_eq(evexec_future_cancel(running), -EALREADY);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.cancelled, 2);
    ck_assert_uint_eq(s.completed, 2);
    evexec_future_free(running);
    evexec_future_free(queued);
    evexec_future_free(later);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(pool_shutdown_and_free_complete_pool_futures)
{
    evexec_pool *pool = new_pool(1, 0, 0);
    struct gate g;
    struct tally t;
    evexec_future *running, *q[3], *after;

    running = park_call(pool, park_work, &g, &t);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_pool_call(pool, echo_work, &t, &q[i]), 0);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_CANCEL), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(wait_status(q[i]), -ECANCELED); /* while the worker is parked */
    ck_assert_int_eq(evexec_pool_call(pool, echo_work, &t, &after), -ESHUTDOWN);
    ck_assert_int_eq(evexec_future_cancel(q[0]), -EALREADY);
    gate_release(&g, 1);
    /* The pool goes before its futures: they keep its memory, not its threads. */
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_ptr_eq(wait_ok(running), &g);
    for (int i = 0; i < 3; i++)
        evexec_future_free(q[i]);
    evexec_future_free(running);
    gate_destroy(&g);
}
END_TEST

struct worker_waits {
    evexec_pool *pool;
    int rc;
};

static void *wait_in_worker(evexec_job *job, void *arg)
{
    struct worker_waits *w = arg;
    evexec_future *f;
    (void)job;
    if (evexec_pool_call(w->pool, echo_work, NULL, &f) < 0) {
        w->rc = 99;
        return NULL;
    }
    w->rc = evexec_future_wait(f, EVEXEC_WAIT_FOREVER);
    evexec_future_free(f); /* cancels it if still queued */
    return NULL;
}

START_TEST(waiting_on_a_pool_future_from_its_own_worker_is_edeadlk)
{
    evexec_pool *pool = new_pool(1, 0, 0);
    struct worker_waits w = {pool, 1};
    evexec_future *f;
    ck_assert_int_eq(evexec_pool_call(pool, wait_in_worker, &w, &f), 0);
    wait_ok(f);
    evexec_future_free(f);
    ck_assert_int_eq(w.rc, -EDEADLK);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

START_TEST(a_full_pool_queue_refuses_pool_calls)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;
    struct gate g;
    struct tally t;
    evexec_future *running, *q, *refused = NULL;

    o.max_threads = 1;
    o.max_queued = 1;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    running = park_call(pool, park_work, &g, &t);
    ck_assert_int_eq(evexec_pool_call(pool, echo_work, NULL, &q), 0);
    ck_assert_int_eq(evexec_pool_call(pool, echo_work, NULL, &refused), -EAGAIN);
    ck_assert_ptr_null(refused);
    ck_assert_int_eq(evexec_pool_call(pool, echo_work, NULL, NULL), -EINVAL);
    ck_assert_int_eq(evexec_pool_call(pool, NULL, NULL, &refused), -EINVAL);
    gate_release(&g, 1);
    wait_ok(running);
    wait_ok(q);
    evexec_future_free(running);
    evexec_future_free(q);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

static Suite *future_suite(void)
{
    Suite *s = suite_create("future");
    TCase *tc;

    tc = add_tcase(s, "pool-futures", 60, FX_FDS);
    tcase_add_test(tc, pool_futures_from_foreign_threads);
    tcase_add_test(tc, pool_future_cancel_queued_and_running);
    tcase_add_test(tc, pool_shutdown_and_free_complete_pool_futures);
    tcase_add_test(tc, waiting_on_a_pool_future_from_its_own_worker_is_edeadlk);
    tcase_add_test(tc, a_full_pool_queue_refuses_pool_calls);
    return s;
}

int main(void)
{
    return run_suite(future_suite());
}
