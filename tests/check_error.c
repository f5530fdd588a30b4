/* SPDX-License-Identifier: MIT */
/*
 * Bad input and misuse across the API, one test per documented error (the
 * rows of docs/misuse.md): NULL handles, bad options and absurd sizes,
 * calls from the wrong thread (another thread, a work function), use after
 * shutdown, unknown, foreign and repeated cancels, freeing a pool from its
 * own worker, a NULL done callback; the error table (evexec_strerror(),
 * evexec_errname() for any int) and the version macros.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

/* The checked fixture: fx's base and port, and a pool of the defaults. */
static evexec_pool *pool;

static void setup(void)
{
    port_setup();
    ck_assert_int_eq(evexec_pool_new(&pool, NULL), 0);
}

static void teardown(void)
{
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    port_teardown();
}

START_TEST(pool_new_rejects_bad_options)
{
    evexec_pool *p = (evexec_pool *)0x1;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;

    ck_assert_int_eq(evexec_pool_new(NULL, NULL), -EINVAL);

    o.size = 0;
    ck_assert_int_eq(evexec_pool_new(&p, &o), -EINVAL);
    o.size = sizeof(size_t) + 3; /* older than the first version */
    ck_assert_int_eq(evexec_pool_new(&p, &o), -EINVAL);
    o.size = (size_t)-1;
    ck_assert_int_eq(evexec_pool_new(&p, &o), -EINVAL);

    o = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    o.max_threads = EVEXEC_MAX_THREADS + 1;
    ck_assert_int_eq(evexec_pool_new(&p, &o), -EINVAL);
    o = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    o.max_threads = 2;
    o.min_threads = 3;
    ck_assert_int_eq(evexec_pool_new(&p, &o), -EINVAL);
    o = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    o.max_queued = (size_t)EVEXEC_MAX_QUEUED + 1;
    ck_assert_int_eq(evexec_pool_new(&p, &o), -EINVAL);
    o = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    o.stack_size = 1024;
    ck_assert_int_eq(evexec_pool_new(&p, &o), -EINVAL);
    o.stack_size = (size_t)4 << 30;
    ck_assert_int_eq(evexec_pool_new(&p, &o), -EINVAL);
    o = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    o.spin_us = 10001;
    ck_assert_int_eq(evexec_pool_new(&p, &o), -EINVAL);
    o = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    o.nice = 20;
    ck_assert_int_eq(evexec_pool_new(&p, &o), -EINVAL);
    o = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    char longname[80];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    o.name = longname;
    ck_assert_int_eq(evexec_pool_new(&p, &o), -EINVAL);

    /* The out-parameter is untouched on every error. */
    ck_assert_ptr_eq(p, (evexec_pool *)0x1);
}
END_TEST

START_TEST(pool_new_accepts_newer_struct_only_if_zero)
{
    struct {
        struct evexec_pool_opts o;
        unsigned future_option;
    } big;
    evexec_pool *p = NULL;

    memset(&big, 0, sizeof big);
    big.o.size = sizeof big;
    ck_assert_int_eq(evexec_pool_new(&p, &big.o), 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(evexec_pool_free(p), 0);

    big.future_option = 1;
    p = NULL;
    ck_assert_int_eq(evexec_pool_new(&p, &big.o), -E2BIG);
    ck_assert_ptr_null(p);

    /* The smallest struct we accept: no stack_size was ever optional. */
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    o.stack_size = 64 * 1024;
    o.max_threads = 1;
    o.min_threads = 1;
    ck_assert_int_eq(evexec_pool_new(&p, &o), 0);
    ck_assert_int_eq(evexec_pool_free(p), 0);
}
END_TEST

START_TEST(port_new_rejects_bad_input)
{
    evexec_port *p = (evexec_port *)0x1;
    struct evexec_port_opts o = EVEXEC_PORT_OPTS_INIT;

    ck_assert_int_eq(evexec_port_new(NULL, fx.base, NULL), -EINVAL);
    ck_assert_int_eq(evexec_port_new(&p, NULL, NULL), -EINVAL);
    o.size = 1;
    ck_assert_int_eq(evexec_port_new(&p, fx.base, &o), -EINVAL);
    o = (struct evexec_port_opts)EVEXEC_PORT_OPTS_INIT;
    o.max_batch = (1u << 20) + 1;
    ck_assert_int_eq(evexec_port_new(&p, fx.base, &o), -EINVAL);
    o = (struct evexec_port_opts)EVEXEC_PORT_OPTS_INIT;
    o.priority = -2;
    ck_assert_int_eq(evexec_port_new(&p, fx.base, &o), -EINVAL);
    o.priority = 7; /* the base has one priority only */
    ck_assert_int_eq(evexec_port_new(&p, fx.base, &o), -EINVAL);
    ck_assert_ptr_eq(p, (evexec_port *)0x1);

    o.priority = 0;
    o.max_batch = 1;
    ck_assert_int_eq(evexec_port_new(&p, fx.base, &o), 0);
    ck_assert_int_eq(evexec_port_free(p), 0);
}
END_TEST

START_TEST(submit_rejects_null_handles)
{
    struct tally t;
    tally_init(&t);
    ck_assert_int_eq(evexec_submit(NULL, pool, echo_work, tally_done, &t, NULL), -EINVAL);
    ck_assert_int_eq(evexec_submit(fx.port, pool, NULL, tally_done, &t, NULL), -EINVAL);
    /* A NULL pool means the port's default pool: the other NULLs still
     * fail, before one is made. */
    ck_assert_int_eq(evexec_submit(fx.port, NULL, NULL, tally_done, &t, NULL), -EINVAL);
    ck_assert_int_eq(evexec_submit(NULL, NULL, echo_work, tally_done, &t, NULL), -EINVAL);
    run_nonblock(fx.base, 3);
    ck_assert_int_eq(t.calls, 0);
    ck_assert_uint_eq(pool_stats(pool).submitted, 0);
}
END_TEST

struct foreign_call {
    evexec_port *port;
    evexec_pool *pool;
    struct tally *tally;
    int submit_rc, cancel_rc, free_rc, stats_rc;
};

static void *call_from_foreign_thread(void *arg)
{
    struct foreign_call *c = arg;
    struct evexec_port_stats ps = {.size = sizeof ps};
    c->submit_rc = evexec_submit(c->port, c->pool, echo_work, tally_done, c->tally, NULL);
    c->cancel_rc = evexec_cancel(c->port, 1);
    c->stats_rc = evexec_port_stats(c->port, &ps);
    c->free_rc = evexec_port_free(c->port);
    return NULL;
}

START_TEST(loop_thread_calls_from_another_thread_are_refused)
{
    struct tally t;
    struct foreign_call c = {fx.port, pool, &t, 0, 0, 0, 0};
    pthread_t th;

    tally_init(&t);
    ck_assert_int_eq(pthread_create(&th, NULL, call_from_foreign_thread, &c), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(c.submit_rc, -EPERM);
    ck_assert_int_eq(c.cancel_rc, -EPERM);
    ck_assert_int_eq(c.stats_rc, -EPERM);
    ck_assert_int_eq(c.free_rc, -EPERM);
    /* The port is still usable from its own thread. */
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &t, NULL), 0);
    run_until(fx.base, &t.calls, 1);
    ck_assert_int_eq(t.ok, 1);
}
END_TEST

START_TEST(submit_after_shutdown_is_refused_without_callback)
{
    struct tally t;
    evexec_job_id id = 42;
    tally_init(&t);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &t, &id), -ESHUTDOWN);
    ck_assert_uint_eq(id, 42); /* untouched */
    run_nonblock(fx.base, 3);
    ck_assert_int_eq(t.calls, 0);
    ck_assert_uint_eq(pool_stats(pool).rejected, 1);
}
END_TEST

START_TEST(shutdown_modes_and_repeats)
{
    ck_assert_int_eq(evexec_pool_shutdown(NULL, EVEXEC_DRAIN), -EINVAL);
    ck_assert_int_eq(evexec_pool_shutdown(pool, 2), -EINVAL);
    ck_assert_int_eq(evexec_pool_shutdown(pool, -1), -EINVAL);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_DRAIN), -EALREADY);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_CANCEL), 0); /* escalation */
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_CANCEL), -EALREADY);
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_DRAIN), -EALREADY);
}
END_TEST

START_TEST(cancel_of_unknown_ids)
{
    struct tally t;
    evexec_job_id id = 0;
    tally_init(&t);

    ck_assert_int_eq(evexec_cancel(NULL, 1), -EINVAL);
    ck_assert_int_eq(evexec_cancel(fx.port, 0), -ENOENT);
    ck_assert_int_eq(evexec_cancel(fx.port, 0xdeadbeefdeadbeefull), -ENOENT);
    ck_assert_int_eq(evexec_cancel(fx.port, ((evexec_job_id)1 << 32) | 5), -ENOENT);

    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &t, &id), 0);
    ck_assert_uint_ne(id, 0);
    run_until(fx.base, &t.calls, 1);
    /* Delivered: the id is dead, even though its slot is reused below. */
    ck_assert_int_eq(evexec_cancel(fx.port, id), -ENOENT);
    evexec_job_id id2 = 0;
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &t, &id2), 0);
    ck_assert_uint_ne(id2, id);
    ck_assert_uint_eq((uint32_t)id2, (uint32_t)id); /* same slot, new number */
    ck_assert_int_eq(evexec_cancel(fx.port, id), -ENOENT);
    run_until(fx.base, &t.calls, 2);
    ck_assert_int_eq(t.ok, 2);

    /* An id of another port, even when both ports have a job in the same
     * slot after as many submissions (two fresh ports). */
    evexec_port *pa, *pb;
    struct gate g;
    evexec_job_id ida, idb;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *p1;
    o.max_threads = 1;
    ck_assert_int_eq(evexec_pool_new(&p1, &o), 0);
    ck_assert_int_eq(evexec_port_new(&pa, fx.base, NULL), 0);
    ck_assert_int_eq(evexec_port_new(&pb, fx.base, NULL), 0);
    gate_init(&g, &t);
    ck_assert_int_eq(evexec_submit(pa, p1, park_work, gate_done, &g, &ida), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_submit(pb, p1, echo_work, tally_done, &t, &idb), 0);
    ck_assert_int_eq(evexec_cancel(pa, idb), -ENOENT);
    ck_assert_int_eq(evexec_cancel(pb, ida), -ENOENT);
    ck_assert_uint_eq(pool_stats(p1).queued, 1); /* pb's job is still queued */
    ck_assert_int_eq(evexec_cancel(pb, idb), 0);  /* and its own id works */
    gate_release(&g, 1);
    run_until(fx.base, &t.calls, 4);
    ck_assert_int_eq(t.ok, 3);
    ck_assert_int_eq(t.cancelled, 1);
    ck_assert_int_eq(evexec_port_free(pa), 0);
    ck_assert_int_eq(evexec_port_free(pb), 0);
    ck_assert_int_eq(evexec_pool_free(p1), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(cancel_twice_is_already)
{
    struct gate g;
    struct tally t;
    evexec_pool *p1;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_job_id id;

    tally_init(&t);
    gate_init(&g, &t);
    o.max_threads = 1;
    ck_assert_int_eq(evexec_pool_new(&p1, &o), 0);
    ck_assert_int_eq(evexec_submit(fx.port, p1, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_submit(fx.port, p1, echo_work, tally_done, &t, &id), 0);
    ck_assert_int_eq(evexec_cancel(fx.port, id), 0);
    ck_assert_int_eq(evexec_cancel(fx.port, id), -EALREADY);
    run_until(fx.base, &t.calls, 1);
    ck_assert_int_eq(t.cancelled, 1);
    ck_assert_int_eq(evexec_cancel(fx.port, id), -ENOENT);
    gate_release(&g, 1);
    run_until(fx.base, &t.calls, 2);
    ck_assert_int_eq(evexec_pool_free(p1), 0);
    gate_destroy(&g);
}
END_TEST

struct own_pool {
    evexec_pool *pool;
    int calls;
    int rc;
};

static void *free_own_pool(evexec_job *job, void *arg)
{
    struct own_pool *o = arg;
    (void)job;
    return (void *)(intptr_t)evexec_pool_free(o->pool);
}

static void record_rc(int status, void *result, void *arg)
{
    struct own_pool *o = arg;
    o->rc = status < 0 ? status : (int)(intptr_t)result;
    o->calls++;
}

START_TEST(pool_free_from_own_worker_returns_edeadlk)
{
    struct own_pool o = {pool, 0, 1};
    ck_assert_int_eq(evexec_submit(fx.port, pool, free_own_pool, record_rc, &o, NULL), 0);
    run_until(fx.base, &o.calls, 1);
    ck_assert_int_eq(o.rc, -EDEADLK);
    /* The pool still works. */
    struct tally t;
    tally_init(&t);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &t, NULL), 0);
    run_until(fx.base, &t.calls, 1);
}
END_TEST

START_TEST(free_null_is_noop)
{
    ck_assert_int_eq(evexec_pool_free(NULL), 0);
    ck_assert_int_eq(evexec_port_free(NULL), 0);
    ck_assert_int_eq(evexec_job_cancelled(NULL), 0);
}
END_TEST

START_TEST(stats_reject_bad_input)
{
    struct evexec_pool_stats ps;
    struct evexec_port_stats qs;
    memset(&ps, 0, sizeof ps);
    memset(&qs, 0, sizeof qs);
    ck_assert_int_eq(evexec_pool_stats(NULL, &ps), -EINVAL);
    ck_assert_int_eq(evexec_pool_stats(pool, NULL), -EINVAL);
    ps.size = 4;
    ck_assert_int_eq(evexec_pool_stats(pool, &ps), -EINVAL);
    ck_assert_int_eq(evexec_port_stats(NULL, &qs), -EINVAL);
    ck_assert_int_eq(evexec_port_stats(fx.port, NULL), -EINVAL);
    qs.size = 4;
    ck_assert_int_eq(evexec_port_stats(fx.port, &qs), -EINVAL);
    ps.size = sizeof ps;
    ck_assert_int_eq(evexec_pool_stats(pool, &ps), 0);
    ck_assert_uint_eq(ps.size, sizeof ps);
}
END_TEST

START_TEST(error_table_names_every_code)
{
    static const int codes[] = {EINVAL, E2BIG, ENOMEM, EAGAIN, ESHUTDOWN, ECANCELED,
                                EBUSY, EALREADY, ENOENT, EPERM, EDEADLK, EMFILE, ENFILE};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *msg = evexec_strerror(-codes[i]);
        ck_assert_ptr_nonnull(msg);
        ck_assert_str_ne(msg, "unknown error");
        ck_assert_str_eq(msg, evexec_strerror(codes[i]));
        ck_assert_str_ne(evexec_errname(-codes[i]), "UNKNOWN");
    }
    ck_assert_str_eq(evexec_errname(-EINVAL), "EINVAL");
    ck_assert_str_eq(evexec_errname(-ESHUTDOWN), "ESHUTDOWN");
    ck_assert_str_eq(evexec_errname(0), "OK");
    ck_assert_str_eq(evexec_strerror(0), "success");
    ck_assert_str_eq(evexec_strerror(-12345), "unknown error");
    ck_assert_str_eq(evexec_errname(-12345), "UNKNOWN");
}
END_TEST

START_TEST(version_matches_header)
{
    char expect[32];
    ck_assert_uint_eq(evexec_version(), EVEXEC_VERSION_NUMBER);
    snprintf(expect, sizeof expect, "%d.%d.%d", EVEXEC_VERSION_MAJOR, EVEXEC_VERSION_MINOR,
             EVEXEC_VERSION_PATCH);
    ck_assert_str_eq(evexec_version_string(), expect);
    ck_assert_str_eq(evexec_version_string(), PACKAGE_VERSION);
}
END_TEST
/* ------------------------------------------------------------------------ */
/* misuse (docs/misuse.md)                                                  */

/* An id names a job of one port: given to another port, it must not reach
 * that port's job that happens to have the same slot and number. */
START_TEST(an_id_of_another_port_is_enoent)
{
    struct tally t;
    struct gate g;
    evexec_port *other;
    evexec_job_id a = 0, b = 0;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *one;

    tally_init(&t);
    gate_init(&g, &t);
    o.max_threads = 1;
    ck_assert_int_eq(evexec_pool_new(&one, &o), 0);
    ck_assert_int_eq(evexec_port_new(&other, fx.base, NULL), 0);
    ck_assert_int_eq(evexec_submit(fx.port, one, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    /* The same history on both ports, all queued behind the parked worker:
     * each port's second job gets the same slot and number. */
    ck_assert_int_eq(evexec_submit(other, one, echo_work, tally_done, &t, NULL), 0);
    ck_assert_int_eq(evexec_submit(fx.port, one, echo_work, tally_done, &t, &a), 0);
    ck_assert_int_eq(evexec_submit(other, one, echo_work, tally_done, &t, &b), 0);
    int rc = evexec_cancel(other, a);
    gate_release(&g, 1);
    run_until(fx.base, &t.calls, 4);
    ck_assert_int_eq(evexec_pool_free(one), 0);
    ck_assert_int_eq(evexec_port_free(other), 0);
    gate_destroy(&g);
    ck_assert_msg(rc == -ENOENT, "cancel(other port, an id of this port) = %s (ids %#llx, %#llx)%s",
                  evexec_errname(rc), (unsigned long long)a, (unsigned long long)b,
                  rc == 0 ? ": it cancelled the other port's job" : "");
    ck_assert_int_eq(t.cancelled, 0);
}
END_TEST

struct from_worker {
    evexec_port *port;
    evexec_pool *pool;
    int submit, cancel, port_free, stats;
};

static void *call_loop_functions(evexec_job *job, void *arg)
{
    struct from_worker *w = arg;
    struct evexec_port_stats s;
    (void)job;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    w->submit = evexec_submit(w->port, w->pool, echo_work, NULL, NULL, NULL);
    w->cancel = evexec_cancel(w->port, 1);
    w->stats = evexec_port_stats(w->port, &s);
    w->port_free = evexec_port_free(w->port);
    return w;
}

static int worker_calls_done;
static void count_done(int status, void *result, void *arg)
{
    (void)status;
    (void)result;
    (void)arg;
    worker_calls_done++;
}

START_TEST(loop_thread_calls_from_a_work_function_are_eperm)
{
    struct from_worker w = {fx.port, pool, 1, 1, 1, 1};
    worker_calls_done = 0;
    ck_assert_int_eq(evexec_submit(fx.port, pool, call_loop_functions, count_done, &w, NULL), 0);
    run_until(fx.base, &worker_calls_done, 1);
    ck_assert_int_eq(w.submit, -EPERM);
    ck_assert_int_eq(w.cancel, -EPERM);
    ck_assert_int_eq(w.stats, -EPERM);
    ck_assert_int_eq(w.port_free, -EPERM);
    ck_assert_uint_eq(pool_stats(pool).submitted, 1);
}
END_TEST

static _Atomic int ran_without_done;
static void *note_run(evexec_job *job, void *arg)
{
    (void)job;
    atomic_fetch_add(&ran_without_done, 1);
    return arg;
}

static int port_idle(void *arg)
{
    (void)arg;
    event_base_loop(fx.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    return port_stats(fx.port).outstanding == 0;
}

START_TEST(a_null_done_callback_runs_the_work_and_calls_nothing)
{
    atomic_store(&ran_without_done, 0);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, note_run, NULL, NULL, NULL), 0);
    ck_assert_uint_eq(port_stats(fx.port).outstanding, 10);
    wait_for(port_idle, NULL);
    ck_assert_int_eq(atomic_load(&ran_without_done), 10);
    ck_assert_uint_eq(port_stats(fx.port).delivered, 10);
}
END_TEST

START_TEST(any_int_has_a_message_and_a_name)
{
    static const int odd[] = {INT_MIN, INT_MIN + 1, -1, 1, 9999, INT_MAX, -EWOULDBLOCK};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        ck_assert_ptr_nonnull(evexec_strerror(odd[i]));
        ck_assert_ptr_nonnull(evexec_errname(odd[i]));
    }
    ck_assert_str_eq(evexec_strerror(INT_MIN), "unknown error");
    ck_assert_str_eq(evexec_errname(INT_MIN), "UNKNOWN");
    ck_assert_str_eq(evexec_errname(INT_MAX), "UNKNOWN");
}
END_TEST

START_TEST(absurd_sizes_are_einval)
{
    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    struct evexec_port_opts qo = EVEXEC_PORT_OPTS_INIT;
    struct evexec_pool_stats ps;
    struct evexec_port_stats qs;
    evexec_pool *p = NULL;
    evexec_port *q = NULL;

    po.size = SIZE_MAX;
    ck_assert_int_eq(evexec_pool_new(&p, &po), -EINVAL);
    po = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    po.max_queued = SIZE_MAX;
    ck_assert_int_eq(evexec_pool_new(&p, &po), -EINVAL);
    po = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    po.stack_size = SIZE_MAX;
    ck_assert_int_eq(evexec_pool_new(&p, &po), -EINVAL);
    po = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    po.max_threads = UINT_MAX;
    ck_assert_int_eq(evexec_pool_new(&p, &po), -EINVAL);
    qo.size = SIZE_MAX;
    ck_assert_int_eq(evexec_port_new(&q, fx.base, &qo), -EINVAL);
    qo = (struct evexec_port_opts)EVEXEC_PORT_OPTS_INIT;
    qo.max_batch = UINT_MAX;
    ck_assert_int_eq(evexec_port_new(&q, fx.base, &qo), -EINVAL);
    qo.max_batch = 0;
    qo.priority = INT_MAX;
    ck_assert_int_eq(evexec_port_new(&q, fx.base, &qo), -EINVAL);
    ck_assert_ptr_null(p);
    ck_assert_ptr_null(q);
    memset(&ps, 0, sizeof ps);
    memset(&qs, 0, sizeof qs);
    ps.size = SIZE_MAX;
    qs.size = SIZE_MAX;
    ck_assert_int_eq(evexec_pool_stats(pool, &ps), -EINVAL);
    ck_assert_int_eq(evexec_port_stats(fx.port, &qs), -EINVAL);
    ck_assert_int_eq(evexec_pool_shutdown(pool, INT_MIN), -EINVAL);
    ck_assert_int_eq(evexec_pool_shutdown(pool, INT_MAX), -EINVAL);
    ck_assert_int_eq(evexec_cancel(fx.port, UINT64_MAX), -ENOENT);
}
END_TEST

static Suite *error_suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc;

    tc = add_tcase(s, "bad-input", 30, FX_NONE);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, pool_new_rejects_bad_options);
    tcase_add_test(tc, pool_new_accepts_newer_struct_only_if_zero);
    tcase_add_test(tc, port_new_rejects_bad_input);
    tcase_add_test(tc, submit_rejects_null_handles);
    tcase_add_test(tc, loop_thread_calls_from_another_thread_are_refused);
    tcase_add_test(tc, submit_after_shutdown_is_refused_without_callback);
    tcase_add_test(tc, shutdown_modes_and_repeats);
    tcase_add_test(tc, cancel_of_unknown_ids);
    tcase_add_test(tc, cancel_twice_is_already);
    tcase_add_test(tc, pool_free_from_own_worker_returns_edeadlk);
    tcase_add_test(tc, free_null_is_noop);
    tcase_add_test(tc, stats_reject_bad_input);
    tcase_add_test(tc, error_table_names_every_code);
    tcase_add_test(tc, version_matches_header);
    tc = add_tcase(s, "misuse", 60, FX_NONE);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, an_id_of_another_port_is_enoent);
    tcase_add_test(tc, loop_thread_calls_from_a_work_function_are_eperm);
    tcase_add_test(tc, a_null_done_callback_runs_the_work_and_calls_nothing);
    tcase_add_test(tc, any_int_has_a_message_and_a_name);
    tcase_add_test(tc, absurd_sizes_are_einval);
    return s;
}

int main(void)
{
    return run_suite(error_suite());
}
