/* SPDX-License-Identifier: MIT */
/*
 * Liveness and hostile misuse: every call that waits for something another
 * thread must make true returns once that can no longer happen, and the
 * promises of the header hold when the caller does what the header warns
 * about.
 *
 *  - pool_threads: the loops that start threads up to min_threads or
 *    max_threads (evexec_pool_new(), evexec_pool_resize(),
 *    evexec_pool_set_class_limit()) stop when the new threads exit at once
 *    (worker_init failing every time, the pool shut down meanwhile) or
 *    cannot be created; evexec_pool_free(), evexec_future_wait() and a
 *    blocked evexec_submit_threadsafe() return when no thread is left;
 *    threads that exit do not wait on one that is slow to finish.
 *  - loops: evexec_loop_start() and evexec_loop_stop() return when init
 *    fails or a call never settles (a CANCEL ends a DRAIN).
 *  - ids: a stale id of a freed port is never taken for a job of the port
 *    made next at the same address, or a cache line or a page away.
 *  - default_pool: freeing a port's default pool is refused.
 *  - errors: every errno has a text and a name.
 *  - fds: evexec_loop_start() with (almost) no fd left is an error, never
 *    the end of the process.
 *  - fork: a child dispatching an inherited base never runs the inherited
 *    port's callbacks nor steals its parent's wake-ups.
 *  - header: the smaller mismatches between the header and the code.
 *
 * This program links the library's sources with -Wl,--wrap=pthread_create,
 * so a test can act in the middle of a call that starts threads (shut the
 * pool down between two thread starts) or make thread creation fail.
 * Each test case has a timeout: code that loops for ever fails the test.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>
#include <evexec.h>

#include "helpers.h"

/* --- pthread_create hook ------------------------------------------------- */

int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                          void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                          void *arg);

/* While armed, each pthread_create() is counted and hook(n) runs first;
 * a non-zero return fails the creation with that error. */
static _Atomic int armed;
static _Atomic int creates;
static int (*create_hook)(int n);

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    if (atomic_load(&armed)) {
        int n = atomic_fetch_add(&creates, 1) + 1;
        int err = create_hook ? create_hook(n) : 0;
        if (err)
            return err;
    }
    return __real_pthread_create(t, attr, fn, arg);
}

static void arm(int (*hook)(int))
{
    create_hook = hook;
    atomic_store(&creates, 0);
    atomic_store(&armed, 1);
}

static void disarm(void)
{
    atomic_store(&armed, 0);
    create_hook = NULL;
}

/* --- malloc reusing a block ---------------------------------------------- */

/* malloc may hand a freed port's block, or one near it, to the next port.
 * glibc's posix_memalign() seldom does so in a short test, so the test
 * places blocks itself: the next posix_memalign() gets `place` (then
 * place is cleared), and free() leaves [arena, arena_end) alone, so a
 * freed port's block keeps its bytes for the next port placed there. */
int __real_posix_memalign(void **out, size_t align, size_t n);
int __wrap_posix_memalign(void **out, size_t align, size_t n);
void __real_free(void *p);
void __wrap_free(void *p);

static void *place;
static char *arena, *arena_end;

int __wrap_posix_memalign(void **out, size_t align, size_t n)
{
    if (place) {
        *out = place;
        place = NULL;
        return 0;
    }
    return __real_posix_memalign(out, align, n);
}

void __wrap_free(void *p)
{
    if ((char *)p >= arena && (char *)p < arena_end)
        return;
    __real_free(p);
}

/* --- worker_init hooks --------------------------------------------------- */

static _Atomic int inits;
static sem_t init_ran; /* posted by every init_fails() */

static int init_fails(void *arg, void **state)
{
    (void)arg;
    (void)state;
    atomic_fetch_add(&inits, 1);
    sem_post(&init_ran);
    return -1;
}

/* Thread starts one at a time: the n-th waits until the thread before it
 * has run its (failing) init, so at most two threads of the pool exist at
 * once and a loop waiting for more can only end by giving up. Without it
 * such a loop might get there by chance, when creating threads outpaces
 * their exits. */
static int after_previous_init(int n)
{
    if (n >= 2)
        while (sem_wait(&init_ran) < 0 && errno == EINTR)
            ;
    return 0;
}

/* The same by the pool's count, for a pool that has live threads: the
 * n-th start waits until only `keep_threads` others are left (the thread
 * being created counts already). */
static evexec_pool *hook_pool;
static unsigned keep_threads;
static int after_previous_exit(int n)
{
    if (n >= 2) {
        double deadline = now_s() + 10;
        while (pool_stats(hook_pool).threads > keep_threads + 1) {
            ck_assert_msg(now_s() < deadline, "a thread of the pool did not exit");
            sched_yield();
        }
    }
    return 0;
}

/* The first thread's init succeeds, every later one fails. */
static int init_first_only(void *arg, void **state)
{
    (void)arg;
    (void)state;
    return atomic_fetch_add(&inits, 1) == 0 ? 0 : -1;
}

static evexec_pool *live_pool(unsigned min, unsigned max, evexec_worker_init_fn init)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool = NULL;
    o.min_threads = min;
    o.max_threads = max;
    o.worker_init = init;
    atomic_store(&inits, 0);
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    return pool;
}

/* A base and a port of the test's own; on teardown the port is freed,
 * its callbacks delivered and the base freed. */
static void port_fixture_setup(struct event_base **base, evexec_port **port)
{
    ck_assert_ptr_nonnull(*base = event_base_new());
    ck_assert_int_eq(evexec_port_new(port, *base, NULL), 0);
}

static void port_fixture_teardown(struct event_base *base, evexec_port *port)
{
    ck_assert_int_eq(evexec_port_free(port), 0);
    event_base_dispatch(base); /* returns once the port has released itself */
    event_base_free(base);
}

/* --- pool_threads -------------------------------------------------------- */

START_TEST(pool_new_min_threads_with_failing_init_returns)
{
    /* Stuck for good before: every new thread exits at once, so the count
     * never reached min_threads and pool_new() kept starting threads. */
    sem_init(&init_ran, 0, 0);
    arm(after_previous_init);
    evexec_pool *pool = live_pool(64, 64, init_fails);
    disarm();
    ck_assert_uint_le(pool_stats(pool).threads_started, 64);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_ge(atomic_load(&inits), 1);
    sem_destroy(&init_ran);
}
END_TEST

START_TEST(resize_min_threads_with_failing_init_returns)
{
    sem_init(&init_ran, 0, 0);
    hook_pool = live_pool(0, 4, init_fails);
    keep_threads = 0;
    arm(after_previous_exit);
    ck_assert_int_eq(evexec_pool_resize(hook_pool, 200, 200, 100), 0);
    ck_assert_uint_le(pool_stats(hook_pool).threads_started, 200);
    /* The limits are set all the same, and a second raise returns too. */
    ck_assert_uint_eq(pool_stats(hook_pool).min_threads, 200);
    ck_assert_int_eq(evexec_pool_resize(hook_pool, 200, 200, 100), 0);
    disarm();
    evexec_pool *pool = hook_pool;
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    sem_destroy(&init_ran);
}
END_TEST

static int shutdown_at_second_create(int n)
{
    if (n == 2) /* between two thread starts of the resize */
        ck_assert_int_eq(evexec_pool_shutdown(hook_pool, EVEXEC_DRAIN), 0);
    return after_previous_exit(n);
}

START_TEST(resize_racing_shutdown_returns)
{
    /* The shutdown lands in the middle of the resize's thread starts (it
     * used to loop for ever starting threads that exit at once). */
    hook_pool = live_pool(0, 4, NULL);
    keep_threads = 0;
    arm(shutdown_at_second_create);
    int rc = evexec_pool_resize(hook_pool, 1000, 1000, 100);
    disarm();
    ck_assert_int_eq(rc, -ESHUTDOWN);
    ck_assert_int_le(atomic_load(&creates), 1000);
    ck_assert_int_eq(evexec_pool_resize(hook_pool, 1000, 1000, 100), -ESHUTDOWN);
    ck_assert_int_eq(evexec_pool_free(hook_pool), 0);
}
END_TEST

START_TEST(class_limit_after_a_failed_minimum_returns)
{
    sem_init(&init_ran, 0, 0);
    arm(after_previous_init);
    evexec_pool *pool = live_pool(8, 8, init_fails);
    disarm();
    hook_pool = pool;
    keep_threads = 0;
    arm(after_previous_exit);
    ck_assert_int_eq(evexec_pool_set_class_limit(pool, EVEXEC_PRIO_NORMAL, 2), 0);
    ck_assert_int_eq(evexec_pool_set_class_limit(pool, EVEXEC_PRIO_NORMAL, 0), 0);
    disarm();
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    sem_destroy(&init_ran);
}
END_TEST

START_TEST(raising_max_with_failing_inits_and_a_busy_thread_returns)
{
    /* One thread runs (its init succeeded) and jobs are queued: raising
     * max_threads starts threads for them, whose inits fail; the queue
     * stays as long as the busy thread lives, so "queued > starting" held
     * for ever before. */
    evexec_pool *pool = live_pool(0, 1, init_first_only);
    struct gate g;
    evexec_future *busy, *queued[2];
    void *r;

    gate_init(&g, NULL);
    ck_assert_int_eq(evexec_pool_call(pool, park_work, &g, &busy), 0);
    gate_wait_entered(&g, 1);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_pool_call(pool, echo_work, &g, &queued[i]), 0);
    hook_pool = pool;
    keep_threads = 1; /* the busy one */
    arm(after_previous_exit);
    ck_assert_int_eq(evexec_pool_resize(pool, 0, 200, 100), 0);
    disarm();
    gate_release(&g, 1);
    ck_assert_int_eq(evexec_future_wait(busy, EVEXEC_WAIT_FOREVER), 0);
    ck_assert_int_eq(evexec_future_result(busy, &r), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(evexec_future_wait(queued[i], EVEXEC_WAIT_FOREVER), 0);
        ck_assert_int_eq(evexec_future_result(queued[i], &r), 0); /* the busy thread ran it */
        evexec_future_free(queued[i]);
    }
    evexec_future_free(busy);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

static int fail_eagain(int n)
{
    (void)n;
    return EAGAIN;
}

START_TEST(thread_creation_failing_stops_the_minimum)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool = (evexec_pool *)&o; /* must stay untouched */
    o.min_threads = 4;
    arm(fail_eagain);
    ck_assert_int_eq(evexec_pool_new(&pool, &o), -EAGAIN);
    ck_assert_ptr_eq(pool, (evexec_pool *)&o);
    disarm();
    pool = live_pool(0, 4, NULL);
    arm(fail_eagain);
    ck_assert_int_eq(evexec_pool_resize(pool, 4, 4, 100), -EAGAIN);
    ck_assert_int_eq(atomic_load(&creates), 1); /* one failure ends it */
    disarm();
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

START_TEST(future_and_free_return_when_every_init_fails)
{
    /* The job is accepted for a thread that then leaves without taking
     * it: it comes back cancelled instead of waiting for ever. */
    evexec_pool *pool = live_pool(0, 2, init_fails);
    evexec_future *f;
    void *r = &r;
    int rc = evexec_pool_call(pool, echo_work, NULL, &f);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(evexec_future_wait(f, EVEXEC_WAIT_FOREVER), 0);
    ck_assert_int_eq(evexec_future_result(f, &r), -ECANCELED);
    ck_assert_ptr_null(r);
    evexec_future_free(f);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

struct waiting_submit {
    evexec_port *port;
    evexec_pool *pool;
    int rc;
};

static void *submit_waiting(void *arg)
{
    struct waiting_submit *ws = arg;
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    o.wait_ms = EVEXEC_WAIT_FOREVER;
    ws->rc = evexec_submit_threadsafe(ws->port, ws->pool, echo_work, NULL, NULL, &o);
    return NULL;
}

START_TEST(blocked_threadsafe_submit_returns_on_shutdown)
{
    struct event_base *base;
    evexec_port *port;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;
    evexec_future *busy, *queued;
    struct gate g;
    pthread_t t;

    port_fixture_setup(&base, &port);
    o.max_threads = 1;
    o.max_queued = 1;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    gate_init(&g, NULL);
    ck_assert_int_eq(evexec_pool_call(pool, park_work, &g, &busy), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_pool_call(pool, echo_work, NULL, &queued), 0); /* full */
    struct waiting_submit ws = {port, pool, 1};
    ck_assert_int_eq(pthread_create(&t, NULL, submit_waiting, &ws), 0);
    /* Whether it waits already or not yet, the answer is -ESHUTDOWN. */
    ck_assert_int_eq(evexec_pool_shutdown(pool, EVEXEC_CANCEL), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(ws.rc, -ESHUTDOWN);
    gate_release(&g, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(evexec_future_result(queued, NULL), -ECANCELED);
    evexec_future_free(queued);
    evexec_future_free(busy);
    gate_destroy(&g);
    port_fixture_teardown(base, port);
}
END_TEST

/* --- loops --------------------------------------------------------------- */

static void never_settles(evexec_loop *loop, evexec_promise *p, void *arg)
{
    (void)loop;
    (void)p;
    sem_post(arg);
}

static void *stop_drain(void *arg)
{
    return (void *)(intptr_t)evexec_loop_stop(arg, EVEXEC_DRAIN);
}

START_TEST(drain_held_by_an_unsettled_call_ends_on_cancel)
{
    evexec_loop *loop;
    evexec_future *f;
    sem_t started;
    pthread_t t;
    void *rc;

    sem_init(&started, 0, 0);
    ck_assert_int_eq(evexec_loop_start(&loop, NULL), 0);
    ck_assert_int_eq(evexec_loop_call(loop, never_settles, &started, &f), 0);
    ck_assert_int_eq(sem_wait(&started), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, stop_drain, loop), 0);
    /* Whether the drain has begun or not, the cancel ends the loop. */
    int c = evexec_loop_stop(loop, EVEXEC_CANCEL);
    ck_assert(c == 0 || c == -EALREADY);
    ck_assert_int_eq(pthread_join(t, &rc), 0);
    ck_assert((intptr_t)rc == 0 || (intptr_t)rc == -EALREADY);
    ck_assert_int_eq(evexec_future_result(f, NULL), -ECANCELED);
    evexec_future_free(f);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    sem_destroy(&started);
}
END_TEST

static int init_refuses(evexec_loop *loop, void *arg)
{
    (void)arg;
    /* A call it posted is cancelled, not waited for. */
    ck_assert_int_eq(evexec_loop_call(loop, never_settles, NULL, NULL), 0);
    return -ECONNREFUSED;
}

START_TEST(loop_start_returns_when_init_fails)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    evexec_loop *loop = NULL;
    int fds = count_fds();
    o.init = init_refuses;
    ck_assert_int_eq(evexec_loop_start(&loop, &o), -ECONNREFUSED);
    ck_assert_ptr_null(loop);
    ck_assert_int_eq(count_fds(), fds);
}
END_TEST

/* --- ids ----------------------------------------------------------------- */


/* Two ports made one after the other, the second at `step` bytes from the
 * freed first (0: in its very block, as malloc often does); no stale id of
 * the first may name a job of the second. */
static void stale_ids_at(size_t at, ptrdiff_t step)
{
    struct event_base *base = event_base_new();
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;
    evexec_port *old, *port;
    evexec_job_id stale[2], now[2];
    struct tally t;
    struct gate g;
    void *mem;

    tally_init(&t);
    gate_init(&g, &t);
    o.max_threads = 1;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    ck_assert_int_eq(posix_memalign(&mem, 4096, 1 << 16), 0);
    arena = mem;
    arena_end = arena + (1 << 16);
    place = arena + at;
    ck_assert_int_eq(evexec_port_new(&old, base, NULL), 0);
    ck_assert_ptr_eq(old, arena + at);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(evexec_submit(old, pool, echo_work, tally_done, &t, &stale[i]), 0);
    run_until(base, &t.calls, 2);
    ck_assert_int_eq(evexec_port_free(old), 0);

    place = arena + at + step;
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0);
    ck_assert_ptr_eq(port, arena + at + step);
    ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, &now[0]), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &t, &now[1]), 0);
    for (int i = 1; i >= 0; i--) {
        ck_assert_int_eq(evexec_cancel(port, stale[i]), -ENOENT);
        ck_assert(stale[i] != now[0] && stale[i] != now[1]);
    }
    gate_release(&g, 1);
    run_until(base, &t.calls, 4);
    ck_assert_int_eq(t.ok, 4);
    ck_assert_int_eq(evexec_port_free(port), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    event_base_free(base);
    gate_destroy(&g);
    arena = arena_end = NULL;
    free(mem);
}

START_TEST(stale_id_of_a_freed_port_is_enoent_on_its_successor)
{
    stale_ids_at(1 << 15, 0); /* at the same address */
}
END_TEST

START_TEST(stale_id_of_a_freed_port_is_enoent_on_a_port_nearby)
{
    /* A cache line or a page below or above (as malloc may place aligned
     * blocks), at 16 places: a weak start may collide at some addresses
     * only. */
    static const ptrdiff_t steps[] = {-64, 64, -128, 128, -4096, 4096};
    for (size_t at = 0; at < 16; at++)
        for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
            stale_ids_at((1 << 15) + at * 64, steps[i]);
}
END_TEST

/* --- default_pool -------------------------------------------------------- */

START_TEST(freeing_the_default_pool_is_eperm)
{
    struct event_base *base;
    evexec_port *port;
    evexec_pool *dflt;
    struct tally t;

    tally_init(&t);
    port_fixture_setup(&base, &port);
    ck_assert_int_eq(evexec_port_default_pool(port, &dflt), 0);
    ck_assert_int_eq(evexec_submit(port, NULL, echo_work, tally_done, &t, NULL), 0);
    ck_assert_int_eq(evexec_pool_free(dflt), -EPERM);
    run_until(base, &t.calls, 1);
    ck_assert_int_eq(evexec_pool_free(dflt), -EPERM);
    ck_assert_int_eq(evexec_submit(port, NULL, echo_work, tally_done, &t, NULL), 0);
    run_until(base, &t.calls, 2);
    ck_assert_int_eq(t.ok, 2);
    port_fixture_teardown(base, port); /* frees it, once */
}
END_TEST

/* --- errors -------------------------------------------------------------- */

static void *strerror_all(void *arg)
{
    (void)arg;
    for (int round = 0; round < 200; round++)
        for (int e = 1; e < 134; e++)
            if (evexec_strerror(-e) != evexec_strerror(e) || evexec_errname(-e) != evexec_errname(e))
                return (void *)1;
    return NULL;
}

START_TEST(every_errno_has_a_text_and_a_name)
{
    static const struct { int e; const char *name; } named[] = {
        {ECONNREFUSED, "ECONNREFUSED"}, {EIO, "EIO"}, {ENOSPC, "ENOSPC"}, {EPIPE, "EPIPE"},
        {ECONNRESET, "ECONNRESET"}, {EHOSTUNREACH, "EHOSTUNREACH"}, {EACCES, "EACCES"},
        {ENOENT, "ENOENT"}, {EINTR, "EINTR"}, {EBADF, "EBADF"}, {EEXIST, "EEXIST"},
        {ETIMEDOUT, "ETIMEDOUT"}, {EINVAL, "EINVAL"},
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        ck_assert_str_eq(evexec_errname(-named[i].e), named[i].name);
        ck_assert_str_ne(evexec_strerror(-named[i].e), "unknown error");
    }
    ck_assert_str_eq(evexec_strerror(-ECONNREFUSED), "Connection refused");
    /* Every code the C library knows has a text and a name: E1..E133 on
     * Linux, minus the few numbers no errno uses. */
    int known = 0;
    for (int e = 1; e < 134; e++) {
        if (strncmp(strerror(e), "Unknown error", 13) == 0)
            continue; /* not an errno */
        known++;
        ck_assert_msg(strcmp(evexec_strerror(-e), "unknown error") != 0, "no text for %d", e);
        ck_assert_msg(evexec_errname(-e)[0] == 'E', "no name for %d: %s", e, evexec_errname(-e));
    }
    ck_assert_int_ge(known, 100);
    /* What is not an errno stays unknown; 0 is OK. */
    ck_assert_str_eq(evexec_strerror(-100000), "unknown error");
    ck_assert_str_eq(evexec_errname(-100000), "UNKNOWN");
    ck_assert_str_eq(evexec_errname(0), "OK");
    ck_assert_str_eq(evexec_errname(INT_MIN), "UNKNOWN");
    /* Static strings: the same pointer from every thread, at any time. */
    pthread_t t[4];
    void *bad;
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, strerror_all, NULL), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(t[i], &bad), 0);
        ck_assert_ptr_null(bad);
    }
}
END_TEST

/* --- fds ----------------------------------------------------------------- */

START_TEST(loop_start_without_fds_is_an_error)
{
    struct rlimit old, lim;
    int fds = count_fds();
    int nheld = 0, fd, open_now[256], top = 0, cap;
    int n = fd_list(open_now, 256);
    int *held;

    ck_assert_int_gt(n, 0);
    for (int i = 0; i < n; i++)
        top = open_now[i] > top ? open_now[i] : top;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)top + 41; /* 40 more above the highest open fd */
    cap = top + 41;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
        /* valgrind keeps the limit to itself: fill up to the one it gives */
        ck_assert_uint_le(old.rlim_cur, 1u << 20);
        cap = (int)old.rlim_cur;
    }
    ck_assert_ptr_nonnull(held = malloc((size_t)cap * sizeof *held));
    /* The descriptors above the highest open one are what is left. */
    while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0) {
        ck_assert_int_lt(nheld, cap);
        held[nheld++] = fd;
    }
    ck_assert_int_eq(errno, EMFILE);

    /* With 0, 1, 2 or 3 fds free, libevent's base needs more than there
     * are; that used to end the process with exit(1). */
    for (int freed = 0; freed <= 8; freed++) {
        for (int i = 0; i < freed; i++)
            close(held[--nheld]);
        int before = count_fds();
        evexec_loop *loop = NULL;
        int rc = evexec_loop_start(&loop, NULL);
        if (freed <= 3) {
            ck_assert_msg(rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM,
                          "%d fds free: %d", freed, rc);
            ck_assert_ptr_null(loop);
        }
        if (freed == 8)
            ck_assert_int_eq(rc, 0);
        if (rc == 0)
            ck_assert_int_eq(evexec_loop_free(loop), 0);
        ck_assert_int_eq(count_fds(), before); /* nothing left behind */
        while (nheld < cap && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
            held[nheld++] = fd;
    }
    while (nheld)
        close(held[--nheld]);
    free(held);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_int_eq(count_fds(), fds);
}
END_TEST

/* --- fork ---------------------------------------------------------------- */

static int child_ran;
static void count_child(int status, void *result, void *arg)
{
    (void)status;
    (void)result;
    (void)arg;
    child_ran++;
}

/* The child of fork_child_dispatching_the_inherited_base: reinit the base
 * as the header allows, say it is ready, run one blocking iteration (the
 * parent's wake-up makes the inherited fd readable here too), and report
 * by exit code whether a callback of the parent's ran here. */
static int fork_child(struct event_base *base, int ready_fd, int go_fd)
{
    char c = 0;
    if (event_reinit(base) != 0)
        return 20;
    if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1)
        return 21;
    if (event_base_loop(base, EVLOOP_ONCE) < 0)
        return 22;
    /* And again without blocking: the inherited port must stay quiet. */
    event_base_loop(base, EVLOOP_NONBLOCK);
    return child_ran ? 23 : 0;
}

START_TEST(fork_child_dispatching_the_inherited_base)
{
    struct event_base *base = event_base_new();
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;
    evexec_port *port;
    struct gate g;
    struct tally t;
    int ready[2], go[2], status;
    char c = 0;

    tally_init(&t);
    gate_init(&g, &t);
    o.max_threads = 1;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0);
    /* An in-flight job of the parent, whose done callback the child
     * inherits too (count_child: it must run in the parent only). */
    ck_assert_int_eq(evexec_submit(port, pool, park_work, count_child, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(fork_child(base, ready[1], go[0]));
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    /* The job finishes: its worker writes the wake fd parent and child
     * share, while the child waits in its loop for it. */
    ck_assert_int_eq(write(go[1], &c, 1), 1);
    gate_release(&g, 1);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0); /* 23: it ran our callback */
    /* The parent's chain goes on: it got its wake-up (it stalled before). */
    run_until(base, &child_ran, 1);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &t, NULL), 0);
        run_until(base, &t.calls, i + 1);
    }
    ck_assert_int_eq(t.ok, 20);
    for (int i = 0; i < 2; i++) {
        close(ready[i]);
        close(go[i]);
    }
    ck_assert_int_eq(evexec_port_free(port), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    event_base_free(base);
    gate_destroy(&g);
}
END_TEST

/* --- header -------------------------------------------------------------- */

struct stop_probe {
    evexec_promise *held;
    int stop_rc, on_stop_rc;
};

static void hold(evexec_loop *loop, evexec_promise *p, void *arg)
{
    (void)loop;
    ((struct stop_probe *)arg)->held = p;
}

static void never(evexec_promise *p, void *arg)
{
    (void)p;
    (void)arg;
}

static void stop_then_register(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct stop_probe *sp = arg;
    sp->stop_rc = evexec_loop_stop(loop, EVEXEC_DRAIN);
    sp->on_stop_rc = evexec_promise_on_stop(sp->held, never, NULL);
    evexec_promise_resolve(sp->held, NULL);
    evexec_promise_resolve(p, NULL);
}

START_TEST(on_stop_after_a_stop_has_begun_is_eshutdown)
{
    struct stop_probe sp = {NULL, 0, 0};
    evexec_loop *loop;
    evexec_future *a, *b;

    ck_assert_int_eq(evexec_loop_start(&loop, NULL), 0);
    ck_assert_int_eq(evexec_loop_call(loop, hold, &sp, &a), 0);
    ck_assert_int_eq(evexec_loop_call(loop, stop_then_register, &sp, &b), 0);
    ck_assert_int_eq(evexec_future_wait(b, EVEXEC_WAIT_FOREVER), 0);
    ck_assert_int_eq(sp.stop_rc, -EINPROGRESS);
    ck_assert_int_eq(sp.on_stop_rc, -ESHUTDOWN);
    ck_assert_int_eq(evexec_future_result(a, NULL), 0);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    evexec_future_free(a);
    evexec_future_free(b);
}
END_TEST

static void cleanup_nothing(void *result, void *arg)
{
    (void)result;
    (void)arg;
}

START_TEST(threadsafe_submit_with_cleanup_is_einval)
{
    struct event_base *base;
    evexec_port *port;
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    struct tally t;

    tally_init(&t);
    port_fixture_setup(&base, &port);
    o.cleanup = cleanup_nothing;
    ck_assert_int_eq(evexec_submit_threadsafe(port, NULL, echo_work, tally_done, &t, &o),
                     -EINVAL);
    run_nonblock(base, 3);
    ck_assert_int_eq(t.calls, 0);
    port_fixture_teardown(base, port);
}
END_TEST

START_TEST(options_larger_than_known)
{
    /* A zero tail is accepted up to 4096 bytes; beyond: -EINVAL. */
    unsigned char buf[4096 + 64];
    struct evexec_pool_opts init = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool = NULL;

    memset(buf, 0, sizeof buf);
    memcpy(buf, &init, sizeof init);
    ((struct evexec_pool_opts *)(void *)buf)->size = sizeof init + 64;
    ck_assert_int_eq(evexec_pool_new(&pool, (void *)buf), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ((struct evexec_pool_opts *)(void *)buf)->size = 4096;
    ck_assert_int_eq(evexec_pool_new(&pool, (void *)buf), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    pool = NULL;
    ((struct evexec_pool_opts *)(void *)buf)->size = 4097;
    ck_assert_int_eq(evexec_pool_new(&pool, (void *)buf), -EINVAL);
    ck_assert_ptr_null(pool);
    buf[sizeof init + 8] = 1;
    ((struct evexec_pool_opts *)(void *)buf)->size = sizeof init + 64;
    ck_assert_int_eq(evexec_pool_new(&pool, (void *)buf), -E2BIG);
}
END_TEST

START_TEST(cancel_after_a_completed_drain_is_ealready)
{
    evexec_loop *loop;
    ck_assert_int_eq(evexec_loop_start(&loop, NULL), 0);
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_DRAIN), 0);
    /* The thread has ended: nothing is left to cancel. */
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_CANCEL), -EALREADY);
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_DRAIN), -EALREADY);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
}
END_TEST

/* Threads that exit while an earlier one is slow to finish (its
 * worker_fini blocks) must not pile up waiting on each other: each exiting
 * thread joins the one before it, and a chain of such joins kept every
 * exited thread alive until the slow one finished (hundreds under load,
 * beyond valgrind's limit of 500 threads). */
static sem_t slow_fini_entered, slow_fini_go;
static _Atomic int slow_fini_first;

static int plain_init(void *arg, void **state)
{
    (void)arg;
    *state = NULL;
    return 0;
}

static void slow_first_fini(void *state, void *arg)
{
    (void)state;
    (void)arg;
    if (atomic_exchange(&slow_fini_first, 0)) {
        sem_post(&slow_fini_entered);
        while (sem_wait(&slow_fini_go) < 0 && errno == EINTR)
            ;
    }
}

START_TEST(exiting_threads_do_not_wait_on_a_slow_one)
{
    enum { N = 8 };
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;
    sem_init(&slow_fini_entered, 0, 0);
    sem_init(&slow_fini_go, 0, 0);
    o.max_threads = N;
    o.min_threads = N;
    o.worker_init = plain_init;
    o.worker_fini = slow_first_fini;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    wait_idle(pool, N);
    /* Counted with the pool's threads up: a runtime's own helper thread
     * (ThreadSanitizer's) has started by then. */
    int base = count_threads() - N;
    /* One thread leaves and blocks in its worker_fini. */
    atomic_store(&slow_fini_first, 1);
    ck_assert_int_eq(evexec_pool_resize(pool, N - 1, N - 1, 16), 0);
    while (sem_wait(&slow_fini_entered) < 0 && errno == EINTR)
        ;
    /* Six more leave: one joins the slow one and waits; the others must
     * be gone (a chain would keep all six alive). */
    ck_assert_int_eq(evexec_pool_resize(pool, 1, 1, 16), 0);
    int live = -1;
    for (int i = 0; i < 500; i++) { /* up to 5 s */
        live = count_threads() - base;
        if (live <= 3 && pool_stats(pool).threads == 1)
            break;
        usleep(10000);
    }
    /* The slow one, its joiner, the one that stays (a chain of joins keeps
     * all 8). */
    ck_assert_msg(live <= 3, "%d pool threads alive while one exit is slow (want 3)", live);
    sem_post(&slow_fini_go);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    wait_threads(base);
    sem_destroy(&slow_fini_entered);
    sem_destroy(&slow_fini_go);
}
END_TEST

/* ------------------------------------------------------------------------ */

static Suite *liveness_suite(void)
{
    Suite *s = suite_create("liveness");
    TCase *tc;

    tc = tcase_create("pool_threads");
    tcase_add_test(tc, pool_new_min_threads_with_failing_init_returns);
    tcase_add_test(tc, resize_min_threads_with_failing_init_returns);
    tcase_add_test(tc, resize_racing_shutdown_returns);
    tcase_add_test(tc, class_limit_after_a_failed_minimum_returns);
    tcase_add_test(tc, raising_max_with_failing_inits_and_a_busy_thread_returns);
    tcase_add_test(tc, thread_creation_failing_stops_the_minimum);
    tcase_add_test(tc, future_and_free_return_when_every_init_fails);
    tcase_add_test(tc, blocked_threadsafe_submit_returns_on_shutdown);
    tcase_add_test(tc, exiting_threads_do_not_wait_on_a_slow_one);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("loops");
    tcase_add_test(tc, drain_held_by_an_unsettled_call_ends_on_cancel);
    tcase_add_test(tc, loop_start_returns_when_init_fails);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("ids");
    tcase_add_test(tc, stale_id_of_a_freed_port_is_enoent_on_its_successor);
    tcase_add_test(tc, stale_id_of_a_freed_port_is_enoent_on_a_port_nearby);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("default_pool");
    tcase_add_test(tc, freeing_the_default_pool_is_eperm);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, every_errno_has_a_text_and_a_name);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("fds");
    tcase_add_test(tc, loop_start_without_fds_is_an_error);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("fork");
    tcase_add_test(tc, fork_child_dispatching_the_inherited_base);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("header");
    tcase_add_test(tc, on_stop_after_a_stop_has_begun_is_eshutdown);
    tcase_add_test(tc, threadsafe_submit_with_cleanup_is_einval);
    tcase_add_test(tc, options_larger_than_known);
    tcase_add_test(tc, cancel_after_a_completed_drain_is_ealready);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(liveness_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
