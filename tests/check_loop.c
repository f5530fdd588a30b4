/* SPDX-License-Identifier: MIT */
/*
 * The loop thread and futures (evexec_loop_*, evexec_future_*,
 * evexec_promise_*); pool futures (evexec_pool_call()) are check_future's.
 *
 * Queue states are made deterministic without sleeping: a "blocker" call
 * parks the loop thread itself on a semaphore, so calls posted meanwhile
 * stay queued; a "held" call stays in progress until the test writes a byte
 * to its pipe (read by an event on the loop) or cancels it.
 *
 * With EVEXEC_TEST_EVHTTP (libevent_extra found), an evhttp server runs on
 * 127.0.0.1 in one loop and blocking threads fetch from it through an
 * evhttp connection created by another loop's init and closed by its fini.
 *
 * The stress test (tcase "stress") runs EVEXEC_LOOP_STRESS_ROUNDS rounds
 * (default 12) of posters, cancellers and a stop racing each other;
 * EVEXEC_STRESS_SEED replays one.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static void sem_wait_10s(sem_t *s, const char *what)
{
    struct timespec ts;
    int rc;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    while ((rc = sem_timedwait(s, &ts)) < 0 && errno == EINTR)
        ;
    ck_assert_msg(rc == 0, "timed out waiting for %s", what);
}

/* 1 if the semaphore has been posted (taking the post). */
static int sem_posted(sem_t *s)
{
    return sem_trywait(s) == 0;
}

static evexec_loop *start_loop(const struct evexec_loop_opts *o)
{
    evexec_loop *loop = NULL;
    ck_assert_int_eq(evexec_loop_start(&loop, o), 0);
    ck_assert_ptr_nonnull(loop);
    return loop;
}

/* The thread a call runs on, recorded by thread_call. */
static void thread_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    (void)loop;
    *(pthread_t *)arg = pthread_self();
    ck_assert_int_eq(evexec_promise_resolve(p, arg), 0);
}

static pthread_t loop_thread_of(evexec_loop *loop)
{
    pthread_t t;
    evexec_future *f;
    ck_assert_int_eq(evexec_loop_call(loop, thread_call, &t, &f), 0);
    wait_ok(f);
    evexec_future_free(f);
    return t;
}

/* Calls that settle at once. */
static void echo_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    (void)loop;
    ck_assert_int_eq(evexec_promise_resolve(p, arg), 0);
}

static void fail_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    (void)loop;
    ck_assert_int_eq(evexec_promise_fail(p, -(int)(intptr_t)arg), 0);
}

static _Atomic int counted_runs;
static void counted_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    (void)loop;
    counted_runs++;
    evexec_promise_resolve(p, arg);
}

/* Parks the loop thread: calls posted meanwhile stay queued. */
struct blocker {
    sem_t entered, open;
};

static void blocker_init(struct blocker *b)
{
    ck_assert_int_eq(sem_init(&b->entered, 0, 0), 0);
    ck_assert_int_eq(sem_init(&b->open, 0, 0), 0);
}

static void blocker_destroy(struct blocker *b)
{
    sem_destroy(&b->entered);
    sem_destroy(&b->open);
}

static void block_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct blocker *b = arg;
    (void)loop;
    sem_post(&b->entered);
    while (sem_wait(&b->open) < 0 && errno == EINTR)
        ;
    evexec_promise_resolve(p, b);
}

/* Posts a blocker and waits until the loop thread is parked in it. */
static evexec_future *block_loop(evexec_loop *loop, struct blocker *b)
{
    evexec_future *f;
    ck_assert_int_eq(evexec_loop_call(loop, block_call, b, &f), 0);
    sem_wait_10s(&b->entered, "the loop to park");
    return f;
}

/*
 * A call that stays in progress until released (a byte on its pipe, read by
 * an event on the loop: it then resolves with the held struct), cancelled
 * (its cancel hook, if asked for, fails the promise) or stopped (its stop
 * hook, if asked for, resolves it).
 */
struct held {
    int fds[2];
    struct event *ev;
    evexec_promise *p;
    int want_cancel_hook, want_stop_hook;
    sem_t entered, hooked;
    _Atomic int cancel_hooks, stop_hooks, releases;
    _Atomic int settle_rc;
    _Atomic int hook_on_loop;  /* the hook ran on the loop thread */
    evexec_loop *loop;
};

static void held_init(struct held *h, int cancel_hook, int stop_hook)
{
    memset(h, 0, sizeof *h);
    ck_assert_int_eq(pipe(h->fds), 0);
    h->want_cancel_hook = cancel_hook;
    h->want_stop_hook = stop_hook;
    h->settle_rc = 1;
    ck_assert_int_eq(sem_init(&h->entered, 0, 0), 0);
    ck_assert_int_eq(sem_init(&h->hooked, 0, 0), 0);
}

static void held_destroy(struct held *h)
{
    close(h->fds[0]);
    close(h->fds[1]);
    sem_destroy(&h->entered);
    sem_destroy(&h->hooked);
}

static void held_drop_event(struct held *h)
{
    if (h->ev) {
        event_free(h->ev);
        h->ev = NULL;
    }
}

static void held_readable(evutil_socket_t fd, short what, void *arg)
{
    struct held *h = arg;
    char c;
    (void)what;
    ck_assert_int_eq(read(fd, &c, 1), 1);
    held_drop_event(h);
    h->releases++;
    h->settle_rc = evexec_promise_resolve(h->p, h);
}

static void held_cancel_hook(evexec_promise *p, void *arg)
{
    struct held *h = arg;
    h->cancel_hooks++;
    h->hook_on_loop = evexec_loop_base(h->loop) != NULL && evexec_promise_cancelled(p) == 1;
    held_drop_event(h);
    h->settle_rc = evexec_promise_fail(p, -ECANCELED);
    sem_post(&h->hooked);
}

static void held_stop_hook(evexec_promise *p, void *arg)
{
    struct held *h = arg;
    h->stop_hooks++;
    held_drop_event(h);
    h->settle_rc = evexec_promise_resolve(p, h);
    sem_post(&h->hooked);
}

static void held_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct held *h = arg;
    h->p = p;
    h->loop = loop;
    h->ev = event_new(evexec_loop_base(loop), h->fds[0], EV_READ, held_readable, h);
    ck_assert_ptr_nonnull(h->ev);
    ck_assert_int_eq(event_add(h->ev, NULL), 0);
    if (h->want_cancel_hook)
        ck_assert_int_eq(evexec_promise_on_cancel(p, held_cancel_hook, h), 0);
    if (h->want_stop_hook)
        ck_assert_int_eq(evexec_promise_on_stop(p, held_stop_hook, h), 0);
    sem_post(&h->entered);
}

static evexec_future *hold(evexec_loop *loop, struct held *h)
{
    evexec_future *f;
    ck_assert_int_eq(evexec_loop_call(loop, held_call, h, &f), 0);
    sem_wait_10s(&h->entered, "the held call to start");
    return f;
}

static void held_release(struct held *h)
{
    ck_assert_int_eq(write(h->fds[1], "x", 1), 1);
}

/* A call that never settles and holds nothing that needs freeing. */
struct orphan {
    sem_t entered;
    evexec_promise *p;
};

static void orphan_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct orphan *o = arg;
    (void)loop;
    o->p = p;
    sem_post(&o->entered);
}

/* Runs evexec_loop_stop() on a thread of its own. */
struct stopper {
    evexec_loop *loop;
    int how;
    pthread_t th;
    _Atomic int rc;
    _Atomic int returned;
};

static void *stopper_main(void *arg)
{
    struct stopper *s = arg;
    s->rc = evexec_loop_stop(s->loop, s->how);
    s->returned = 1;
    return NULL;
}

static void stop_async(struct stopper *s, evexec_loop *loop, int how)
{
    s->loop = loop;
    s->how = how;
    s->rc = 1;
    s->returned = 0;
    ck_assert_int_eq(pthread_create(&s->th, NULL, stopper_main, s), 0);
}

static int stop_join(struct stopper *s)
{
    pthread_join(s->th, NULL);
    return s->rc;
}

static int loop_stopping(void *arg)
{
    return evexec_loop_stopping(arg);
}

/* --- start, context, init and fini -------------------------------------- */

struct hooks {
    pthread_t init_thread, fini_thread, caller;
    int init_runs, fini_runs;
    int init_rc;
    _Atomic int calls_done;        /* calls completed, counted by the calls */
    int calls_done_at_fini;
    char name[16];
    int context_value;
    int fds_at_init;
    evexec_future *posted_by_init; /* a call init posts */
    _Atomic int posted_ran;
};

static void mark_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct hooks *h = arg;
    (void)loop;
    h->posted_ran++;
    evexec_promise_resolve(p, NULL);
}

static int hooks_init(evexec_loop *loop, void *arg)
{
    struct hooks *h = arg;
    h->init_runs++;
    h->init_thread = pthread_self();
#ifdef HAVE_PTHREAD_SETNAME_NP
    pthread_getname_np(pthread_self(), h->name, sizeof h->name);
#endif
    ck_assert_int_eq(evexec_loop_set_context(loop, &h->context_value), 0);
    if (h->init_rc) {
        /* A call init posted before failing: cancelled, never run. */
        ck_assert_int_eq(evexec_loop_call(loop, mark_call, h, &h->posted_by_init), 0);
        ck_assert_int_eq(evexec_loop_call(loop, mark_call, h, NULL), 0);
    }
    return h->init_rc;
}

static void hooks_fini(evexec_loop *loop, void *arg)
{
    struct hooks *h = arg;
    (void)loop;
    h->fini_runs++;
    h->fini_thread = pthread_self();
    h->calls_done_at_fini = h->calls_done;
}

static void done_counting_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct hooks *h = arg;
    (void)loop;
    h->calls_done++;
    evexec_promise_resolve(p, arg);
}

START_TEST(start_call_stop_free)
{
    evexec_loop *loop = start_loop(NULL);
    evexec_future *f;
    int x;

    ck_assert_ptr_nonnull(evexec_loop_base(loop));
    ck_assert_ptr_null(evexec_loop_context(loop));
    ck_assert_int_eq(evexec_loop_stopping(loop), 0);
    ck_assert_int_eq(evexec_loop_call(loop, echo_call, &x, &f), 0);
    ck_assert_ptr_eq(wait_ok(f), &x);
    /* Waiting again, or reading again, gives the same. */
    ck_assert_ptr_eq(wait_ok(f), &x);
    ck_assert_int_eq(evexec_future_cancel(f), -EALREADY);
    evexec_future_free(f);
    ck_assert(!pthread_equal(loop_thread_of(loop), pthread_self()));

    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(evexec_loop_stopping(loop), 1);
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_DRAIN), -EALREADY);
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_CANCEL), -EALREADY);
    ck_assert_int_eq(evexec_loop_call(loop, echo_call, &x, &f), -ESHUTDOWN);
    ck_assert_int_eq(evexec_loop_free(loop), 0);

    /* Free without a stop drains and joins. */
    loop = start_loop(NULL);
    ck_assert_int_eq(evexec_loop_call(loop, echo_call, &x, NULL), 0);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
}
END_TEST

START_TEST(init_and_fini_run_on_the_loop_thread_around_the_calls)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    struct hooks h;
    evexec_future *f[50];

    memset(&h, 0, sizeof h);
    o.init = hooks_init;
    o.fini = hooks_fini;
    o.arg = &h;
    o.name = "fetcher";
    evexec_loop *loop = start_loop(&o);
    ck_assert_int_eq(h.init_runs, 1); /* before start returned */
    ck_assert_ptr_eq(evexec_loop_context(loop), &h.context_value);
#ifdef HAVE_PTHREAD_SETNAME_NP
    ck_assert_str_eq(h.name, "fetcher");
#endif
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(evexec_loop_call(loop, done_counting_call, &h, &f[i]), 0);
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(h.fini_runs, 1);
    ck_assert_int_eq(h.calls_done_at_fini, 50); /* fini after the last call */
    ck_assert(pthread_equal(h.init_thread, h.fini_thread));
    ck_assert(!pthread_equal(h.init_thread, pthread_self()));
    for (int i = 0; i < 50; i++) {
        ck_assert_ptr_eq(wait_ok(f[i]), &h);
        evexec_future_free(f[i]);
    }
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    ck_assert_int_eq(h.fini_runs, 1);

#ifdef HAVE_PTHREAD_SETNAME_NP
    /* The default name. */
    memset(&h, 0, sizeof h);
    o.name = NULL;
    loop = start_loop(&o);
    ck_assert_str_eq(h.name, "evexec-loop");
    ck_assert_int_eq(evexec_loop_free(loop), 0);
#endif
}
END_TEST

START_TEST(init_failing_leaves_nothing_behind)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    struct hooks h;
    evexec_loop *loop = (evexec_loop *)&h;

    /* Warm up whatever libevent allocates once per process. */
    evexec_loop_free(start_loop(NULL));
    int fds = count_fds();

    memset(&h, 0, sizeof h);
    h.init_rc = -EIO;
    o.init = hooks_init;
    o.fini = hooks_fini;
    o.arg = &h;
    ck_assert_int_eq(evexec_loop_start(&loop, &o), -EIO);
    ck_assert_ptr_eq(loop, (evexec_loop *)&h); /* untouched */
    ck_assert_int_eq(h.init_runs, 1);
    ck_assert_int_eq(h.fini_runs, 0);
    ck_assert_int_eq(count_fds(), fds); /* wake fd, epoll fd: all closed */
    /* What init posted completed as cancelled and never ran. */
    ck_assert_ptr_nonnull(h.posted_by_init);
    ck_assert_int_eq(evexec_future_result(h.posted_by_init, NULL), -ECANCELED);
    ck_assert_int_eq(h.posted_ran, 0);
    evexec_future_free(h.posted_by_init);

    /* A positive errno is negated. Many times over: the failure must be
     * reported whatever the loop thread and the caller race to do. */
    for (int i = 0; i < 200; i++) {
        memset(&h, 0, sizeof h);
        h.init_rc = EADDRINUSE;
        ck_assert_int_eq(evexec_loop_start(&loop, &o), -EADDRINUSE);
        ck_assert_int_eq(h.fini_runs, 0);
        evexec_future_free(h.posted_by_init);
    }
    ck_assert_ptr_eq(loop, (evexec_loop *)&h);
    ck_assert_int_eq(count_fds(), fds);
}
END_TEST

START_TEST(bad_arguments)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    evexec_loop *loop = NULL;
    evexec_future *f = NULL;
    evexec_port *port = NULL;
    char name[80];
    void *r;

    ck_assert_int_eq(evexec_loop_start(NULL, NULL), -EINVAL);
    o.size = 8;
    ck_assert_int_eq(evexec_loop_start(&loop, &o), -EINVAL);
    o.size = sizeof o;
    o.max_batch = (1u << 20) + 1;
    ck_assert_int_eq(evexec_loop_start(&loop, &o), -EINVAL);
    o.max_batch = 0;
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    o.name = name;
    ck_assert_int_eq(evexec_loop_start(&loop, &o), -EINVAL);
    o.name = NULL;
    {
        /* A newer caller's struct: fine if the unknown tail is zero. */
        struct {
            struct evexec_loop_opts o;
            int extra;
        } big;
        memset(&big, 0, sizeof big);
        big.o.size = sizeof big;
        big.extra = 1;
        ck_assert_int_eq(evexec_loop_start(&loop, &big.o), -E2BIG);
        big.extra = 0;
        ck_assert_int_eq(evexec_loop_start(&loop, &big.o), 0);
        ck_assert_int_eq(evexec_loop_free(loop), 0);
    }
    ck_assert_ptr_null(f);

    loop = start_loop(NULL);
    ck_assert_int_eq(evexec_loop_call(NULL, echo_call, NULL, &f), -EINVAL);
    ck_assert_int_eq(evexec_loop_call(loop, NULL, NULL, &f), -EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(evexec_loop_stop(NULL, EVEXEC_DRAIN), -EINVAL);
    ck_assert_int_eq(evexec_loop_stop(loop, 7), -EINVAL);
    ck_assert_int_eq(evexec_loop_set_context(NULL, NULL), -EINVAL);
    ck_assert_int_eq(evexec_loop_port(NULL, &port), -EINVAL);
    ck_assert_int_eq(evexec_loop_port(loop, NULL), -EINVAL);
    ck_assert_ptr_null(evexec_loop_base(NULL));
    ck_assert_ptr_null(evexec_loop_context(NULL));
    ck_assert_int_eq(evexec_loop_stopping(NULL), 0);
    ck_assert_int_eq(evexec_future_wait(NULL, 0), -EINVAL);
    ck_assert_int_eq(evexec_future_result(NULL, &r), -EINVAL);
    ck_assert_int_eq(evexec_future_cancel(NULL), -EINVAL);
    ck_assert_int_eq(evexec_promise_resolve(NULL, NULL), -EINVAL);
    ck_assert_int_eq(evexec_promise_fail(NULL, -EIO), -EINVAL);
    ck_assert_int_eq(evexec_promise_on_cancel(NULL, NULL, NULL), -EINVAL);
    ck_assert_int_eq(evexec_promise_on_stop(NULL, NULL, NULL), -EINVAL);
    ck_assert_int_eq(evexec_promise_cancelled(NULL), 0);
    ck_assert_int_eq(evexec_pool_call(NULL, echo_work, NULL, &f), -EINVAL);
    evexec_future_free(NULL);
    ck_assert_int_eq(evexec_loop_free(NULL), 0);
    /* The codes this part adds have a name and a sentence. */
    ck_assert_str_eq(evexec_errname(-EINPROGRESS), "EINPROGRESS");
    ck_assert_str_ne(evexec_strerror(-EINPROGRESS), "unknown error");
    ck_assert_str_eq(evexec_errname(-ETIMEDOUT), "ETIMEDOUT");
    ck_assert_str_eq(evexec_errname(-EDEADLK), "EDEADLK");

    ck_assert_int_eq(evexec_loop_call(loop, echo_call, NULL, &f), 0);
    ck_assert_int_eq(evexec_future_wait(f, -2), -EINVAL);
    wait_ok(f);
    evexec_future_free(f);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
}
END_TEST

/* Loop-thread functions called from elsewhere answer -EPERM. */
static void check_eperm(struct held *h, evexec_loop *loop)
{
    evexec_port *port = NULL;
    evexec_promise *p = h->p;
    ck_assert_int_eq(evexec_promise_resolve(p, NULL), -EPERM);
    ck_assert_int_eq(evexec_promise_fail(p, -EIO), -EPERM);
    ck_assert_int_eq(evexec_promise_on_cancel(p, NULL, NULL), -EPERM);
    ck_assert_int_eq(evexec_promise_on_stop(p, NULL, NULL), -EPERM);
    ck_assert_int_eq(evexec_loop_set_context(loop, NULL), -EPERM);
    ck_assert_int_eq(evexec_loop_port(loop, &port), -EPERM);
    ck_assert_ptr_null(port);
}

START_TEST(loop_thread_functions_refuse_other_threads)
{
    evexec_loop *loop = start_loop(NULL);
    struct held h;
    held_init(&h, 0, 0);
    evexec_future *f = hold(loop, &h);
    check_eperm(&h, loop);
    held_release(&h);
    ck_assert_ptr_eq(wait_ok(f), &h); /* the promise was still live */
    evexec_future_free(f);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    ck_assert_int_eq(h.settle_rc, 0); /* read once the loop thread is gone */
    held_destroy(&h);
}
END_TEST

/* --- calls and results --------------------------------------------------- */

START_TEST(failures_carry_any_errno)
{
    evexec_loop *loop = start_loop(NULL);
    evexec_future *f;
    void *r = (void *)1;

    /* -ETIMEDOUT as a failure is not a wait timeout: wait says 0. */
    ck_assert_int_eq(evexec_loop_call(loop, fail_call, (void *)(intptr_t)ETIMEDOUT, &f), 0);
    ck_assert_int_eq(evexec_future_wait(f, 10000), 0);
    ck_assert_int_eq(evexec_future_result(f, &r), -ETIMEDOUT);
    ck_assert_ptr_null(r);
    evexec_future_free(f);
    ck_assert_int_eq(evexec_loop_call(loop, fail_call, (void *)(intptr_t)ECONNREFUSED, &f), 0);
    ck_assert_int_eq(wait_status(f), -ECONNREFUSED);
    evexec_future_free(f);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
}
END_TEST

static void fail_with_bad_errno_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    (void)loop;
    (void)arg;
    ck_assert_int_eq(evexec_promise_fail(p, 0), -EINVAL);
    ck_assert_int_eq(evexec_promise_fail(p, EIO), -EINVAL);
    /* It would read as "not complete" from a complete future. */
    ck_assert_int_eq(evexec_promise_fail(p, -EINPROGRESS), -EINVAL);
    /* Still live: settle it for real. */
    ck_assert_int_eq(evexec_promise_cancelled(p), 0);
    ck_assert_int_eq(evexec_promise_resolve(p, (void *)42), 0);
}

START_TEST(fail_with_a_non_negative_errno_is_refused)
{
    evexec_loop *loop = start_loop(NULL);
    evexec_future *f;
    ck_assert_int_eq(evexec_loop_call(loop, fail_with_bad_errno_call, NULL, &f), 0);
    ck_assert_ptr_eq(wait_ok(f), (void *)42);
    evexec_future_free(f);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
}
END_TEST

/* Resolves later, from a timer callback on the loop. */
struct later {
    evexec_promise *p;
    struct event *ev;
    _Atomic int inside_call;
    _Atomic int settled_inside_call;
};

static void later_fire(evutil_socket_t fd, short what, void *arg)
{
    struct later *l = arg;
    (void)fd;
    (void)what;
    if (l->inside_call)
        l->settled_inside_call = 1;
    event_free(l->ev);
    evexec_promise_resolve(l->p, l);
}

static void later_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct later *l = arg;
    struct timeval tv = {0, 2000};
    l->inside_call = 1;
    l->p = p;
    l->ev = evtimer_new(evexec_loop_base(loop), later_fire, l);
    evtimer_add(l->ev, &tv);
    l->inside_call = 0;
}

START_TEST(a_call_settles_later_from_an_io_callback)
{
    evexec_loop *loop = start_loop(NULL);
    struct later l;
    evexec_future *f;
    memset(&l, 0, sizeof l);
    ck_assert_int_eq(evexec_loop_call(loop, later_call, &l, &f), 0);
    ck_assert_ptr_eq(wait_ok(f), &l);
    ck_assert_int_eq(l.settled_inside_call, 0);
    evexec_future_free(f);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
}
END_TEST

/* Each call checks its thread and its order. */
#define RT_THREADS 16
#define RT_CALLS 2000
struct roundtrip {
    evexec_loop *loop;
    pthread_t loop_thread;
    _Atomic int wrong_thread, bad_result, out_of_order;
    unsigned last_seq[RT_THREADS];  /* loop thread only */
    int ready;
};

struct rt_arg {
    struct roundtrip *rt;
    unsigned thread, seq;
};

static void rt_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct rt_arg *a = arg;
    struct roundtrip *rt = a->rt;
    (void)loop;
    if (!pthread_equal(pthread_self(), rt->loop_thread))
        rt->wrong_thread++;
    /* Calls of one thread start in posting order. */
    if (a->seq != rt->last_seq[a->thread] + 1)
        rt->out_of_order++;
    rt->last_seq[a->thread] = a->seq;
    evexec_promise_resolve(p, (void *)(uintptr_t)(a->thread * 1000003u + a->seq));
}

struct rt_thread {
    struct roundtrip *rt;
    unsigned id;
};

static void *rt_main(void *arg)
{
    struct rt_thread *t = arg;
    struct rt_arg a = {t->rt, t->id, 0};
    evexec_future *f;
    void *r;
    for (unsigned i = 1; i <= RT_CALLS; i++) {
        a.seq = i;
        if (evexec_loop_call(t->rt->loop, rt_call, &a, &f) < 0) {
            t->rt->bad_result++;
            return NULL;
        }
        if (evexec_future_wait(f, EVEXEC_WAIT_FOREVER) != 0 || evexec_future_result(f, &r) != 0 ||
            r != (void *)(uintptr_t)(t->id * 1000003u + i))
            t->rt->bad_result++;
        evexec_future_free(f);
    }
    return NULL;
}

START_TEST(round_trip_from_16_threads)
{
    static struct roundtrip rt;
    struct rt_thread t[RT_THREADS];
    pthread_t th[RT_THREADS];

    memset(&rt, 0, sizeof rt);
    rt.loop = start_loop(NULL);
    rt.loop_thread = loop_thread_of(rt.loop);
    for (unsigned i = 0; i < RT_THREADS; i++) {
        t[i].rt = &rt;
        t[i].id = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, rt_main, &t[i]), 0);
    }
    for (unsigned i = 0; i < RT_THREADS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(rt.bad_result, 0);
    ck_assert_int_eq(rt.wrong_thread, 0);
    ck_assert_int_eq(rt.out_of_order, 0);
    for (unsigned i = 0; i < RT_THREADS; i++)
        ck_assert_uint_eq(rt.last_seq[i], RT_CALLS); /* every call ran once */
    ck_assert_int_eq(evexec_loop_free(rt.loop), 0);
}
END_TEST

/* Posting from the loop thread itself never runs the call inside the post. */
struct nested {
    _Atomic int inner_ran;
    int ran_inside_post;
    evexec_future *inner;
    int wait_rc, free_rc, stop_rc;
};

static void inner_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct nested *n = arg;
    (void)loop;
    n->inner_ran++;
    evexec_promise_resolve(p, arg);
}

static void outer_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct nested *n = arg;
    ck_assert_int_eq(evexec_loop_call(loop, inner_call, n, &n->inner), 0);
    n->ran_inside_post = n->inner_ran;
    /* Waiting here for a call of this loop would never end. */
    n->wait_rc = evexec_future_wait(n->inner, EVEXEC_WAIT_FOREVER);
    ck_assert_int_eq(evexec_future_wait(n->inner, 0), -EDEADLK);
    ck_assert_int_eq(evexec_future_result(n->inner, NULL), -EINPROGRESS);
    n->free_rc = evexec_loop_free(loop);
    evexec_promise_resolve(p, NULL);
}

START_TEST(calls_from_the_loop_thread_never_run_inline_and_waiting_there_is_edeadlk)
{
    evexec_loop *loop = start_loop(NULL);
    struct nested n;
    evexec_future *f;
    memset(&n, 0, sizeof n);
    ck_assert_int_eq(evexec_loop_call(loop, outer_call, &n, &f), 0);
    wait_ok(f);
    evexec_future_free(f);
    ck_assert_int_eq(n.ran_inside_post, 0);
    ck_assert_int_eq(n.wait_rc, -EDEADLK);
    ck_assert_int_eq(n.free_rc, -EDEADLK);
    ck_assert_ptr_eq(wait_ok(n.inner), &n); /* it ran afterwards */
    ck_assert_int_eq(n.inner_ran, 1);
    evexec_future_free(n.inner);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
}
END_TEST

/* A complete future of its own loop may be waited on there: nothing to wait for. */
struct waiter_on_done {
    evexec_future *done;
    int rc;
};

static void wait_done_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct waiter_on_done *w = arg;
    (void)loop;
    w->rc = evexec_future_wait(w->done, EVEXEC_WAIT_FOREVER);
    evexec_promise_resolve(p, NULL);
}

START_TEST(waiting_on_the_loop_thread_for_a_complete_future_is_fine)
{
    evexec_loop *loop = start_loop(NULL);
    struct waiter_on_done w = {NULL, 1};
    evexec_future *f;
    ck_assert_int_eq(evexec_loop_call(loop, echo_call, NULL, &w.done), 0);
    wait_ok(w.done);
    ck_assert_int_eq(evexec_loop_call(loop, wait_done_call, &w, &f), 0);
    wait_ok(f);
    ck_assert_int_eq(w.rc, 0);
    evexec_future_free(f);
    evexec_future_free(w.done);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
}
END_TEST

/* --- timeouts and cancel ------------------------------------------------- */

START_TEST(wait_timeout_leaves_the_future_valid)
{
    evexec_loop *loop = start_loop(NULL);
    struct held h;
    held_init(&h, 0, 0);
    evexec_future *f = hold(loop, &h);

    double t0 = now_s();
    ck_assert_int_eq(evexec_future_wait(f, 50), -ETIMEDOUT);
    ck_assert(now_s() - t0 >= 0.045);
    ck_assert_int_eq(evexec_future_wait(f, 0), -ETIMEDOUT);
    ck_assert_int_eq(evexec_future_result(f, NULL), -EINPROGRESS);
    ck_assert_int_eq(evexec_future_wait(f, 1), -ETIMEDOUT);
    held_release(&h);
    ck_assert_int_eq(evexec_future_wait(f, 10000), 0);
    ck_assert_ptr_eq(wait_ok(f), &h);
    evexec_future_free(f);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    ck_assert_int_eq(h.settle_rc, 0); /* read once the loop thread is gone */
    held_destroy(&h);
}
END_TEST

START_TEST(cancel_of_a_queued_call_completes_it_and_it_never_runs)
{
    evexec_loop *loop = start_loop(NULL);
    struct blocker b;
    evexec_future *fb, *f[3];

    counted_runs = 0;
    blocker_init(&b);
    fb = block_loop(loop, &b);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_loop_call(loop, counted_call, NULL, &f[i]), 0);
    ck_assert_int_eq(evexec_future_cancel(f[1]), 0);
    /* Complete at once, while the loop is still parked. */
    ck_assert_int_eq(evexec_future_wait(f[1], 0), 0);
    ck_assert_int_eq(evexec_future_result(f[1], NULL), -ECANCELED);
    ck_assert_int_eq(evexec_future_cancel(f[1]), -EALREADY);
    /* Freed while still queued: cancelled too. */
    evexec_future_free(f[2]);
    sem_post(&b.open);
    wait_ok(fb);
    ck_assert_ptr_null(wait_ok(f[0]));
    ck_assert_int_eq(wait_status(f[1]), -ECANCELED);
    ck_assert_int_eq(loop_stopping(loop), 0);
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(counted_runs, 1); /* only f[0] ran */
    evexec_future_free(fb);
    evexec_future_free(f[0]);
    evexec_future_free(f[1]);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    blocker_destroy(&b);
}
END_TEST

START_TEST(cancel_of_a_call_in_progress_runs_its_hook_on_the_loop)
{
    evexec_loop *loop = start_loop(NULL);
    struct held h;
    held_init(&h, 1, 0);
    evexec_future *f = hold(loop, &h);

    ck_assert_int_eq(evexec_future_cancel(f), 0);
    /* Complete at once, whatever the loop does. */
    ck_assert_int_eq(evexec_future_result(f, NULL), -ECANCELED);
    ck_assert_int_eq(evexec_future_cancel(f), -EALREADY);
    sem_wait_10s(&h.hooked, "the cancel hook");
    ck_assert_int_eq(h.cancel_hooks, 1);
    ck_assert_int_eq(h.hook_on_loop, 1);
    ck_assert_int_eq(h.settle_rc, -ECANCELED); /* settling after a cancel */
    ck_assert_int_eq(wait_status(f), -ECANCELED);
    /* The loop goes on. */
    evexec_future *g;
    ck_assert_int_eq(evexec_loop_call(loop, echo_call, &h, &g), 0);
    ck_assert_ptr_eq(wait_ok(g), &h);
    evexec_future_free(g);
    evexec_future_free(f);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    ck_assert_int_eq(h.cancel_hooks, 1);
    held_destroy(&h);
}
END_TEST

START_TEST(free_of_a_call_in_progress_cancels_it)
{
    evexec_loop *loop = start_loop(NULL);
    struct held h;
    held_init(&h, 1, 0);
    evexec_future *f = hold(loop, &h);
    evexec_future_free(f); /* the hook still runs, on the loop */
    sem_wait_10s(&h.hooked, "the cancel hook");
    ck_assert_int_eq(h.settle_rc, -ECANCELED);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    held_destroy(&h);
}
END_TEST

/* With no hook, the call settles later and learns it was cancelled. */
struct late_settle {
    struct held *h;
    int on_cancel_rc, cancelled;
};

static void probe_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct late_settle *l = arg;
    (void)loop;
    l->on_cancel_rc = evexec_promise_on_cancel(l->h->p, held_cancel_hook, l->h);
    l->cancelled = evexec_promise_cancelled(l->h->p);
    evexec_promise_resolve(p, NULL);
}

START_TEST(a_call_cancelled_without_hook_settles_later_with_ecanceled)
{
    evexec_loop *loop = start_loop(NULL);
    struct held h;
    struct late_settle l = {&h, 1, 0};
    evexec_future *f, *g;

    held_init(&h, 0, 0);
    f = hold(loop, &h);
    ck_assert_int_eq(evexec_future_cancel(f), 0);
    ck_assert_int_eq(evexec_loop_call(loop, probe_call, &l, &g), 0);
    wait_ok(g);
    evexec_future_free(g);
    ck_assert_int_eq(l.on_cancel_rc, -ECANCELED); /* too late for a hook */
    ck_assert_int_eq(l.cancelled, 1);
    held_release(&h);
    /* The release resolves: -ECANCELED, the result stays with the loop side. */
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(h.releases, 1);
    ck_assert_int_eq(h.settle_rc, -ECANCELED);
    ck_assert_int_eq(h.cancel_hooks, 0);
    ck_assert_int_eq(wait_status(f), -ECANCELED);
    evexec_future_free(f);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    held_destroy(&h);
}
END_TEST

/* --- stop ---------------------------------------------------------------- */

START_TEST(stop_drain_runs_queued_calls_and_waits_for_those_in_progress)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    struct hooks hk;
    struct blocker b;
    struct held h;
    struct stopper s;
    evexec_future *fb, *fh, *f[10], *late;

    memset(&hk, 0, sizeof hk);
    o.fini = hooks_fini;
    o.arg = &hk;
    evexec_loop *loop = start_loop(&o);
    blocker_init(&b);
    held_init(&h, 0, 0);
    fh = hold(loop, &h);
    fb = block_loop(loop, &b);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(evexec_loop_call(loop, done_counting_call, &hk, &f[i]), 0);
    stop_async(&s, loop, EVEXEC_DRAIN);
    wait_for(loop_stopping, loop);
    ck_assert_int_eq(evexec_loop_call(loop, echo_call, NULL, &late), -ESHUTDOWN);
    sem_post(&b.open);
    for (int i = 0; i < 10; i++)
        ck_assert_ptr_eq(wait_ok(f[i]), &hk); /* queued calls still ran */
    /* The held call is still in progress: no fini, no return. */
    ck_assert_int_eq(evexec_future_wait(fh, 20), -ETIMEDOUT);
    ck_assert_int_eq(hk.fini_runs, 0);
    ck_assert_int_eq(s.returned, 0);
    held_release(&h);
    ck_assert_int_eq(stop_join(&s), 0);
    ck_assert_ptr_eq(wait_ok(fh), &h);
    ck_assert_int_eq(hk.fini_runs, 1);
    ck_assert_int_eq(hk.calls_done_at_fini, 10);
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_DRAIN), -EALREADY);
    for (int i = 0; i < 10; i++)
        evexec_future_free(f[i]);
    evexec_future_free(fb);
    evexec_future_free(fh);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    blocker_destroy(&b);
    held_destroy(&h);
}
END_TEST

static void free_orphan_event(evexec_loop *loop, void *arg)
{
    (void)loop;
    held_drop_event(arg); /* the event of a call that never settled */
}

START_TEST(stop_cancel_completes_everything_as_cancelled)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    struct blocker b;
    struct held h, h_nohook;
    struct orphan orph;
    struct stopper s;
    evexec_future *fb, *fh, *fn, *fo, *f[10];

    counted_runs = 0;
    o.fini = free_orphan_event;
    o.arg = &h_nohook;
    evexec_loop *loop = start_loop(&o);
    blocker_init(&b);
    held_init(&h, 1, 0);
    held_init(&h_nohook, 0, 0);
    ck_assert_int_eq(sem_init(&orph.entered, 0, 0), 0);
    fh = hold(loop, &h);
    fn = hold(loop, &h_nohook);
    ck_assert_int_eq(evexec_loop_call(loop, orphan_call, &orph, &fo), 0);
    sem_wait_10s(&orph.entered, "the orphan call");
    fb = block_loop(loop, &b);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(evexec_loop_call(loop, counted_call, NULL, &f[i]), 0);
    stop_async(&s, loop, EVEXEC_CANCEL);
    wait_for(loop_stopping, loop);
    sem_post(&b.open);
    ck_assert_int_eq(stop_join(&s), 0);
    ck_assert_ptr_eq(wait_ok(fb), &b); /* was running: it settled itself */
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(wait_status(f[i]), -ECANCELED);
    ck_assert_int_eq(counted_runs, 0); /* queued calls never ran */
    ck_assert_int_eq(wait_status(fh), -ECANCELED);
    ck_assert_int_eq(h.cancel_hooks, 1);
    ck_assert_int_eq(h.settle_rc, -ECANCELED);
    /* Never settled by their code: released by evexec, as cancelled. */
    ck_assert_int_eq(wait_status(fn), -ECANCELED);
    ck_assert_int_eq(wait_status(fo), -ECANCELED);
    ck_assert_int_eq(h_nohook.settle_rc, 1);
    for (int i = 0; i < 10; i++)
        evexec_future_free(f[i]);
    evexec_future_free(fb);
    evexec_future_free(fh);
    evexec_future_free(fn);
    evexec_future_free(fo);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    blocker_destroy(&b);
    held_destroy(&h);
    held_destroy(&h_nohook);
    sem_destroy(&orph.entered);
}
END_TEST

START_TEST(stop_cancel_escalates_a_drain)
{
    struct held h, h2;
    struct stopper s1, s2, s3;
    evexec_loop *loop = start_loop(NULL);

    held_init(&h, 1, 0);
    held_init(&h2, 1, 0);
    evexec_future *f = hold(loop, &h);
    evexec_future *f2 = hold(loop, &h2);
    stop_async(&s1, loop, EVEXEC_DRAIN);
    wait_for(loop_stopping, loop);
    ck_assert_int_eq(evexec_future_wait(f, 20), -ETIMEDOUT); /* drain waits */
    ck_assert_int_eq(s1.returned, 0);
    stop_async(&s3, loop, EVEXEC_DRAIN); /* not stronger: waits, -EALREADY */
    stop_async(&s2, loop, EVEXEC_CANCEL);
    ck_assert_int_eq(stop_join(&s2), 0);
    ck_assert_int_eq(stop_join(&s1), 0);
    ck_assert_int_eq(stop_join(&s3), -EALREADY);
    ck_assert_int_eq(wait_status(f), -ECANCELED);
    ck_assert_int_eq(wait_status(f2), -ECANCELED);
    ck_assert_int_eq(h.cancel_hooks + h2.cancel_hooks, 2);
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_CANCEL), -EALREADY);
    evexec_future_free(f);
    evexec_future_free(f2);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    held_destroy(&h);
    held_destroy(&h2);
}
END_TEST

struct self_stop {
    int rc1, rc2, rc3, call_rc, port_rc;
};

static void self_stop_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct self_stop *s = arg;
    evexec_future *f = NULL;
    s->rc1 = evexec_loop_stop(loop, EVEXEC_DRAIN);
    s->rc2 = evexec_loop_stop(loop, EVEXEC_DRAIN);
    s->call_rc = evexec_loop_call(loop, echo_call, NULL, &f);
    s->rc3 = evexec_loop_stop(loop, EVEXEC_CANCEL);
    evexec_promise_resolve(p, NULL);
}

START_TEST(stop_from_the_loop_thread_begins_and_a_later_stop_waits_for_the_end)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    struct hooks hk;
    struct self_stop s;
    evexec_future *f;

    memset(&hk, 0, sizeof hk);
    o.fini = hooks_fini;
    o.arg = &hk;
    evexec_loop *loop = start_loop(&o);
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(evexec_loop_call(loop, self_stop_call, &s, &f), 0);
    wait_ok(f);
    evexec_future_free(f);
    ck_assert_int_eq(s.rc1, -EINPROGRESS);
    ck_assert_int_eq(s.rc2, -EALREADY);
    ck_assert_int_eq(s.call_rc, -ESHUTDOWN);
    ck_assert_int_eq(s.rc3, -EINPROGRESS); /* escalated */
    ck_assert_int_eq(evexec_loop_stopping(loop), 1);
    /* Begun already: waits for the end all the same. */
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_DRAIN), -EALREADY);
    ck_assert_int_eq(hk.fini_runs, 1);
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_CANCEL), -EALREADY); /* ended */
    ck_assert_int_eq(evexec_loop_free(loop), 0);

    /* And free alone waits and joins too. */
    loop = start_loop(NULL);
    ck_assert_int_eq(evexec_loop_call(loop, self_stop_call, &s, NULL), 0);
    wait_for(loop_stopping, loop);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
}
END_TEST

/* --- background tasks ---------------------------------------------------- */

struct poller {
    struct event *tick;
    _Atomic unsigned ticks;
    _Atomic int stop_hooks;
    _Atomic int stopped_before_fini;
    int fini_saw_stopped;
    evexec_promise *p;
    int on_stop_rc;
};

static void poller_tick(evutil_socket_t fd, short what, void *arg)
{
    struct poller *po = arg;
    (void)fd;
    (void)what;
    po->ticks++; /* a real task would poll a source and push messages */
}

static void poller_stop(evexec_promise *p, void *arg)
{
    struct poller *po = arg;
    po->stop_hooks++;
    event_free(po->tick);
    po->tick = NULL;
    po->stopped_before_fini = 1;
    evexec_promise_resolve(p, (void *)(uintptr_t)po->ticks);
}

static void poller_start(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct poller *po = arg;
    struct timeval every = {0, 1000};
    po->p = p;
    po->tick = event_new(evexec_loop_base(loop), -1, EV_PERSIST, poller_tick, po);
    event_add(po->tick, &every);
    po->on_stop_rc = evexec_promise_on_stop(p, poller_stop, po);
}

static int task_init(evexec_loop *loop, void *arg)
{
    /* A task started by init, with nobody waiting for it. */
    return evexec_loop_call(loop, poller_start, arg, NULL);
}

static void task_fini(evexec_loop *loop, void *arg)
{
    struct poller *po = arg;
    (void)loop;
    po->fini_saw_stopped = po->stopped_before_fini;
}

static int ticked(void *arg)
{
    return ((struct poller *)arg)->ticks >= 3;
}

START_TEST(background_tasks_end_when_the_loop_stops)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    struct poller po, po2;
    evexec_future *f2;

    memset(&po, 0, sizeof po);
    memset(&po2, 0, sizeof po2);
    o.init = task_init;
    o.fini = task_fini;
    o.arg = &po;
    evexec_loop *loop = start_loop(&o);
    /* A second task started by a call, with a future to collect its end. */
    ck_assert_int_eq(evexec_loop_call(loop, poller_start, &po2, &f2), 0);
    wait_for(ticked, &po);
    wait_for(ticked, &po2);
    ck_assert_int_eq(evexec_future_result(f2, NULL), -EINPROGRESS);
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(po.on_stop_rc, 0);
    ck_assert_int_eq(po.stop_hooks, 1);
    ck_assert_int_eq(po2.stop_hooks, 1);
    ck_assert_int_eq(po.fini_saw_stopped, 1); /* hooks before fini */
    void *r = wait_ok(f2);
    ck_assert_uint_ge((uintptr_t)r, 3); /* its final tick count */
    evexec_future_free(f2);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
}
END_TEST

struct late_task {
    struct blocker *b;
    int on_stop_rc;
};

static void late_task_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct late_task *t = arg;
    (void)loop;
    t->on_stop_rc = evexec_promise_on_stop(p, poller_stop, NULL);
    evexec_promise_resolve(p, NULL);
}

START_TEST(on_stop_after_the_stop_began_is_eshutdown)
{
    evexec_loop *loop = start_loop(NULL);
    struct blocker b;
    struct late_task t = {&b, 1};
    struct stopper s;
    evexec_future *fb, *f;

    blocker_init(&b);
    fb = block_loop(loop, &b);
    ck_assert_int_eq(evexec_loop_call(loop, late_task_call, &t, &f), 0);
    stop_async(&s, loop, EVEXEC_DRAIN);
    wait_for(loop_stopping, loop);
    sem_post(&b.open);
    ck_assert_int_eq(stop_join(&s), 0);
    wait_ok(f);
    ck_assert_int_eq(t.on_stop_rc, -ESHUTDOWN);
    evexec_future_free(f);
    evexec_future_free(fb);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    blocker_destroy(&b);
}
END_TEST

/* --- the loop's port: offloading from a call ----------------------------- */

struct offload {
    evexec_pool *pool;
    evexec_promise *p;
    struct gate *g;
    int submit_rc, free_rc;
    _Atomic int delivered;
};

static void offload_done(int status, void *result, void *arg)
{
    struct offload *o = arg;
    o->delivered++;
    if (o->p)
        promise_settle(o->p, status, result);
}

static void offload_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct offload *o = arg;
    evexec_port *port;
    ck_assert_int_eq(evexec_loop_port(loop, &port), 0);
    o->free_rc = evexec_port_free(port); /* the loop's: not ours to free */
    o->p = p;
    o->submit_rc = evexec_submit(port, o->pool, echo_work, offload_done, o, NULL);
    if (o->submit_rc < 0)
        evexec_promise_fail(p, o->submit_rc);
}

static void *park_offload_work(evexec_job *job, void *arg)
{
    return park_work(job, ((struct offload *)arg)->g);
}

static void count_delivery(int status, void *result, void *arg)
{
    (void)status;
    (void)result;
    ((struct offload *)arg)->delivered++;
}

/* Submits a job parked on o->g, whose callback settles nothing. */
static void fire_and_forget_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct offload *o = arg;
    evexec_port *port;
    ck_assert_int_eq(evexec_loop_port(loop, &port), 0);
    o->p = NULL;
    o->submit_rc = evexec_submit(port, o->pool, park_offload_work, count_delivery, o, NULL);
    evexec_promise_resolve(p, NULL);
}

/* fini may use the loop's port, but it starts nothing that outlives it. */
static void offload_fini(evexec_loop *loop, void *arg)
{
    struct offload *o = arg;
    evexec_port *port;
    ck_assert_int_eq(evexec_loop_port(loop, &port), 0);
    o->submit_rc = evexec_submit(port, o->pool, echo_work, count_delivery, o, NULL);
}

START_TEST(calls_offload_through_the_loop_port_and_stop_waits_for_its_jobs)
{
    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    struct evexec_loop_opts lo = EVEXEC_LOOP_OPTS_INIT;
    struct offload o, o2;
    struct gate g;
    struct tally t;
    struct stopper s;
    evexec_future *f;

    po.max_threads = 1;
    memset(&o, 0, sizeof o);
    memset(&o2, 0, sizeof o2);
    ck_assert_int_eq(evexec_pool_new(&o.pool, &po), 0);
    o2.pool = o.pool;
    tally_init(&t);
    gate_init(&g, &t);
    o2.g = &g;

    lo.fini = offload_fini;
    lo.arg = &o2;
    evexec_loop *loop = start_loop(&lo);
    ck_assert_int_eq(evexec_loop_call(loop, offload_call, &o, &f), 0);
    ck_assert_ptr_eq(wait_ok(f), &o); /* echo_work's result, via the port */
    evexec_future_free(f);
    ck_assert_int_eq(o.free_rc, -EPERM);

    /* A job parked on a worker, whose callback settles nothing. */
    ck_assert_int_eq(evexec_loop_call(loop, fire_and_forget_call, &o2, &f), 0);
    wait_ok(f);
    evexec_future_free(f);
    ck_assert_int_eq(o2.submit_rc, 0);
    gate_wait_entered(&g, 1);
    stop_async(&s, loop, EVEXEC_DRAIN);
    wait_for(loop_stopping, loop);
    struct timespec ms20 = {0, 20000000};
    nanosleep(&ms20, NULL); /* not synchronisation: room for a wrong early return */
    ck_assert_int_eq(s.returned, 0); /* the drain waits for the port's job */
    ck_assert_int_eq(o2.delivered, 0);
    gate_release(&g, 1);
    ck_assert_int_eq(stop_join(&s), 0);
    ck_assert_int_eq(o2.delivered, 1); /* delivered before the loop ended */
    ck_assert_int_eq(o2.submit_rc, -ESHUTDOWN); /* refused to fini */
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    ck_assert_int_eq(evexec_pool_free(o.pool), 0);
    gate_destroy(&g);
}
END_TEST

/* A job whose done callback submits it again through the loop's port: a
 * retry or poll loop that nothing else ends. */
struct resubmit {
    evexec_pool *pool;
    evexec_port *port;          /* loop thread */
    _Atomic unsigned rounds, mark;
    _Atomic int refused;        /* what the refused submit returned */
};

static void resubmit_done(int status, void *result, void *arg)
{
    struct resubmit *r = arg;
    (void)status;
    (void)result;
    int rc = evexec_submit(r->port, r->pool, echo_work, resubmit_done, r, NULL);
    if (rc == 0)
        r->rounds++;
    else
        r->refused = rc;
}

static void resubmit_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct resubmit *r = arg;
    ck_assert_int_eq(evexec_loop_port(loop, &r->port), 0);
    ck_assert_int_eq(evexec_submit(r->port, r->pool, echo_work, resubmit_done, r, NULL), 0);
    evexec_promise_resolve(p, NULL); /* only the jobs go on */
}

static int resubmitted_past_mark(void *arg)
{
    struct resubmit *r = arg;
    return r->rounds >= r->mark;
}

static int stopper_returned(void *arg)
{
    return ((struct stopper *)arg)->returned;
}

START_TEST(stop_cancel_ends_jobs_that_resubmit_themselves)
{
    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    struct resubmit r;
    struct stopper drain, cancel;
    evexec_future *f;

    memset(&r, 0, sizeof r);
    po.max_threads = 1;
    ck_assert_int_eq(evexec_pool_new(&r.pool, &po), 0);
    evexec_loop *loop = start_loop(NULL);
    ck_assert_int_eq(evexec_loop_call(loop, resubmit_call, &r, &f), 0);
    wait_ok(f);
    evexec_future_free(f);

    /* A drain waits for the port's jobs, and these never end. */
    stop_async(&drain, loop, EVEXEC_DRAIN);
    wait_for(loop_stopping, loop);
    r.mark = r.rounds + 100;
    wait_for(resubmitted_past_mark, &r);
    ck_assert_int_eq(drain.returned, 0);
    ck_assert_int_eq(r.refused, 0);

    /* A cancel makes the port refuse them: the stop ends. */
    stop_async(&cancel, loop, EVEXEC_CANCEL);
    wait_for(stopper_returned, &cancel);
    ck_assert_int_eq(stop_join(&cancel), 0);
    ck_assert_int_eq(stop_join(&drain), 0);
    ck_assert_int_eq(r.refused, -ESHUTDOWN);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    ck_assert_int_eq(evexec_pool_free(r.pool), 0);
}
END_TEST

/* A fini that takes its time (it is not synchronisation: the test passes
 * whatever the duration, but an escalation that does not wait for the end
 * returns long before it). */
struct slow_fini {
    sem_t entered;
    _Atomic int done;
};

static void slow_fini(evexec_loop *loop, void *arg)
{
    struct slow_fini *sf = arg;
    struct timespec ms200 = {0, 200000000};
    (void)loop;
    sem_post(&sf->entered);
    nanosleep(&ms200, NULL);
    sf->done = 1;
}

START_TEST(an_escalation_while_fini_runs_returns_once_the_thread_has_ended)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    struct slow_fini sf;
    struct stopper drain;

    memset(&sf, 0, sizeof sf);
    ck_assert_int_eq(sem_init(&sf.entered, 0, 0), 0);
    o.fini = slow_fini;
    o.arg = &sf;
    evexec_loop *loop = start_loop(&o);
    stop_async(&drain, loop, EVEXEC_DRAIN);
    sem_wait_10s(&sf.entered, "fini");
    /* Too late to cancel anything, but stronger than the drain: like any
     * escalation, it returns 0 once the thread has ended. */
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_CANCEL), 0);
    ck_assert_int_eq(sf.done, 1);
    ck_assert_int_eq(stop_join(&drain), 0);
    ck_assert_int_eq(evexec_loop_stop(loop, EVEXEC_CANCEL), -EALREADY);
    ck_assert_int_eq(evexec_loop_free(loop), 0);
    sem_destroy(&sf.entered);
}
END_TEST

/* The daemon's pattern: one thread stops with DRAIN and frees; another (a
 * second Ctrl-C) escalates meanwhile. The free must wait until the
 * escalating thread is out of evexec_loop_stop(), woken by the end (ASan
 * catches it touching the freed loop otherwise). */
struct drain_free {
    evexec_loop *loop;
    _Atomic int stop_rc, free_rc;
};

static void *drain_then_free(void *arg)
{
    struct drain_free *d = arg;
    d->stop_rc = evexec_loop_stop(d->loop, EVEXEC_DRAIN);
    d->free_rc = evexec_loop_free(d->loop);
    return NULL;
}

START_TEST(stop_and_free_on_one_thread_while_another_escalates)
{
    for (int i = 0; i < 1000; i++) {
        struct drain_free d = {NULL, 1, 1};
        struct orphan orph;
        struct stopper esc;
        pthread_t a;

        ck_assert_int_eq(sem_init(&orph.entered, 0, 0), 0);
        d.loop = start_loop(NULL);
        /* Holds the drain until the cancel (evexec releases its promise). */
        ck_assert_int_eq(evexec_loop_call(d.loop, orphan_call, &orph, NULL), 0);
        sem_wait_10s(&orph.entered, "the orphan call");
        ck_assert_int_eq(pthread_create(&a, NULL, drain_then_free, &d), 0);
        while (!evexec_loop_stopping(d.loop)) /* alive: the drain needs the cancel */
            sched_yield();
        stop_async(&esc, d.loop, EVEXEC_CANCEL);
        /* d.loop may be gone from now on. */
        pthread_join(a, NULL);
        ck_assert_int_eq(stop_join(&esc), 0);
        ck_assert_int_eq(d.stop_rc, 0);
        ck_assert_int_eq(d.free_rc, 0);
        sem_destroy(&orph.entered);
    }
}
END_TEST

/* --- evhttp: a real asynchronous client inside the loop ------------------ */

#ifdef EVEXEC_TEST_EVHTTP
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct server {
    struct evhttp *http;
    int port;
    _Atomic int requests;
    sem_t hang_entered;
};

static void serve(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    const char *uri = evhttp_request_get_uri(req);
    s->requests++;
    if (strncmp(uri, "/hang", 5) == 0) {
        sem_post(&s->hang_entered); /* never answered: the client cancels */
        return;
    }
    struct evbuffer *body = evbuffer_new();
    evbuffer_add_printf(body, "page %s", uri);
    evhttp_send_reply(req, 200, "OK", body);
    evbuffer_free(body);
}

static int server_init(evexec_loop *loop, void *arg)
{
    struct server *s = arg;
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    struct evhttp_bound_socket *sock;

    if (!(s->http = evhttp_new(evexec_loop_base(loop))))
        return -ENOMEM;
    evhttp_set_gencb(s->http, serve, s);
    if (!(sock = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0)) ||
        getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&sin, &len) < 0) {
        evhttp_free(s->http);
        return -EADDRNOTAVAIL;
    }
    s->port = ntohs(sin.sin_port);
    return 0;
}

static void server_fini(evexec_loop *loop, void *arg)
{
    struct server *s = arg;
    (void)loop;
    evhttp_free(s->http);
}

struct client {
    int port;
    struct evhttp_connection *conn;
    _Atomic int completed;          /* responses received */
    int completed_at_fini;
    int fini_runs;
};

static int client_init(evexec_loop *loop, void *arg)
{
    struct client *c = arg;
    c->conn = evhttp_connection_base_new(evexec_loop_base(loop), NULL, "127.0.0.1",
                                         (unsigned short)c->port);
    if (!c->conn)
        return -ENOMEM;
    return evexec_loop_set_context(loop, c);
}

static void client_fini(evexec_loop *loop, void *arg)
{
    struct client *c = arg;
    (void)loop;
    c->fini_runs++;
    c->completed_at_fini = c->completed;
    evhttp_connection_free(c->conn);
}

struct fetch {
    const char *path;
    evexec_promise *p;
    struct evhttp_request *req;
    struct client *c;
    sem_t cancelled;
};

static void fetch_done(struct evhttp_request *req, void *arg)
{
    struct fetch *fr = arg;
    if (!req || evhttp_request_get_response_code(req) != 200) {
        evexec_promise_fail(fr->p, -EIO);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *body = malloc(n + 1);
    ck_assert_ptr_nonnull(body);
    evbuffer_remove(in, body, n);
    body[n] = '\0';
    fr->c->completed++;
    if (evexec_promise_resolve(fr->p, body) < 0)
        free(body); /* cancelled meanwhile: still ours */
}

static void fetch_cancel(evexec_promise *p, void *arg)
{
    struct fetch *fr = arg;
    evhttp_cancel_request(fr->req); /* its callback will not run */
    ck_assert_int_eq(evexec_promise_fail(p, -ECANCELED), -ECANCELED);
    sem_post(&fr->cancelled);
}

static void fetch_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct fetch *fr = arg;
    struct client *c = evexec_loop_context(loop);
    fr->c = c;
    fr->p = p;
    fr->req = evhttp_request_new(fetch_done, fr);
    evhttp_add_header(evhttp_request_get_output_headers(fr->req), "Host", "127.0.0.1");
    if (evhttp_make_request(c->conn, fr->req, EVHTTP_REQ_GET, fr->path) < 0) {
        evexec_promise_fail(p, -EIO);
        return;
    }
    if (evexec_promise_on_cancel(p, fetch_cancel, fr) == -ECANCELED)
        fetch_cancel(p, fr); /* cancelled while starting: abort now */
}

#define HTTP_THREADS 16
#define HTTP_FETCHES 25
struct http_thread {
    evexec_loop *client;
    unsigned id;
    _Atomic int *bad;
};

static void *http_main(void *arg)
{
    struct http_thread *t = arg;
    for (unsigned i = 0; i < HTTP_FETCHES; i++) {
        char path[64], expect[80];
        struct fetch fr;
        evexec_future *f;
        void *body;
        memset(&fr, 0, sizeof fr);
        snprintf(path, sizeof path, "/t%u/%u", t->id, i);
        snprintf(expect, sizeof expect, "page %s", path);
        fr.path = path;
        if (evexec_loop_call(t->client, fetch_call, &fr, &f) < 0) {
            (*t->bad)++;
            continue;
        }
        if (evexec_future_wait(f, 30000) != 0 || evexec_future_result(f, &body) != 0) {
            (*t->bad)++;
        } else {
            if (strcmp(body, expect) != 0)
                (*t->bad)++;
            free(body);
        }
        evexec_future_free(f);
    }
    return NULL;
}

static evexec_loop *start_server(struct server *s)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    memset(s, 0, sizeof *s);
    ck_assert_int_eq(sem_init(&s->hang_entered, 0, 0), 0);
    o.init = server_init;
    o.fini = server_fini;
    o.arg = s;
    o.name = "httpd";
    return start_loop(&o);
}

static evexec_loop *start_client(struct client *c, int port)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    memset(c, 0, sizeof *c);
    c->port = port;
    o.init = client_init;
    o.fini = client_fini;
    o.arg = c;
    o.name = "fetcher";
    return start_loop(&o);
}

START_TEST(evhttp_fetches_from_16_blocking_threads)
{
    struct server s;
    struct client c;
    struct http_thread t[HTTP_THREADS];
    pthread_t th[HTTP_THREADS];
    _Atomic int bad = 0;

    evexec_loop *server = start_server(&s);
    evexec_loop *client = start_client(&c, s.port);
    for (unsigned i = 0; i < HTTP_THREADS; i++) {
        t[i] = (struct http_thread){client, i, &bad};
        ck_assert_int_eq(pthread_create(&th[i], NULL, http_main, &t[i]), 0);
    }
    for (int i = 0; i < HTTP_THREADS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(evexec_loop_stop(client, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(c.fini_runs, 1);
    ck_assert_int_eq(c.completed_at_fini, HTTP_THREADS * HTTP_FETCHES); /* fini after the last */
    ck_assert_int_eq(s.requests, HTTP_THREADS * HTTP_FETCHES);
    ck_assert_int_eq(evexec_loop_free(client), 0);
    ck_assert_int_eq(evexec_loop_free(server), 0);
    sem_destroy(&s.hang_entered);
}
END_TEST

START_TEST(evhttp_fetch_in_progress_is_cancelled_through_its_hook)
{
    struct server s;
    struct client c;
    struct fetch hang, ok;
    evexec_future *f, *g;
    void *body;

    evexec_loop *server = start_server(&s);
    evexec_loop *client = start_client(&c, s.port);
    memset(&hang, 0, sizeof hang);
    memset(&ok, 0, sizeof ok);
    ck_assert_int_eq(sem_init(&hang.cancelled, 0, 0), 0);
    hang.path = "/hang";
    ck_assert_int_eq(evexec_loop_call(client, fetch_call, &hang, &f), 0);
    sem_wait_10s(&s.hang_entered, "the server to receive /hang");
    ck_assert_int_eq(evexec_future_wait(f, 20), -ETIMEDOUT);
    ck_assert_int_eq(evexec_future_cancel(f), 0);
    ck_assert_int_eq(evexec_future_result(f, NULL), -ECANCELED);
    sem_wait_10s(&hang.cancelled, "the cancel hook");
    /* The connection is reset and reused. */
    ok.path = "/after";
    ck_assert_int_eq(evexec_loop_call(client, fetch_call, &ok, &g), 0);
    ck_assert_int_eq(evexec_future_wait(g, 30000), 0);
    ck_assert_int_eq(evexec_future_result(g, &body), 0);
    ck_assert_str_eq(body, "page /after");
    free(body);
    evexec_future_free(f);
    evexec_future_free(g);
    ck_assert_int_eq(evexec_loop_free(client), 0);
    ck_assert_int_eq(evexec_loop_free(server), 0);
    sem_destroy(&hang.cancelled);
    sem_destroy(&s.hang_entered);
}
END_TEST

START_TEST(evhttp_stop_cancel_with_a_fetch_in_progress)
{
    struct server s;
    struct client c;
    struct fetch hang;
    evexec_future *f;

    evexec_loop *server = start_server(&s);
    evexec_loop *client = start_client(&c, s.port);
    memset(&hang, 0, sizeof hang);
    ck_assert_int_eq(sem_init(&hang.cancelled, 0, 0), 0);
    hang.path = "/hang";
    ck_assert_int_eq(evexec_loop_call(client, fetch_call, &hang, &f), 0);
    sem_wait_10s(&s.hang_entered, "the server to receive /hang");
    ck_assert_int_eq(evexec_loop_stop(client, EVEXEC_CANCEL), 0);
    ck_assert_int_eq(wait_status(f), -ECANCELED);
    ck_assert(sem_posted(&hang.cancelled)); /* the hook ran before the end */
    ck_assert_int_eq(c.fini_runs, 1);
    evexec_future_free(f);
    ck_assert_int_eq(evexec_loop_free(client), 0);
    ck_assert_int_eq(evexec_loop_free(server), 0);
    sem_destroy(&hang.cancelled);
    sem_destroy(&s.hang_entered);
}
END_TEST
#endif /* EVEXEC_TEST_EVHTTP */

/* --- stress: posters, cancellers and a stop racing ----------------------- */

enum { K_NOW, K_LATER, K_HOLD, K_FAIL, K_KINDS };

struct srec {
    int kind;
    _Atomic int runs;          /* fn called */
    _Atomic int settles;       /* settle calls that returned 0 or -ECANCELED */
    _Atomic int delivered;     /* settle returned 0 */
    _Atomic int cancel_hooks, stop_hooks;
    struct event *ev;          /* K_LATER, K_HOLD: loop thread */
    evexec_promise *p;
    _Atomic int outcome;       /* seen by the holder; OUTCOME_NONE if not */
    int on_cancel_rc;
};

#define OUTCOME_NONE 1

struct sround {
    evexec_loop *loop;
    struct srec *recs;
    _Atomic unsigned next;
    unsigned nrecs;
    _Atomic int errors;
    _Atomic int accepted, refused, fire_and_forget;
    char msg[256];
    unsigned seed;
};

static void stress_error(struct sround *r, const char *what, int idx, int v)
{
    if (r->errors++ == 0)
        snprintf(r->msg, sizeof r->msg, "seed %u: rec %d: %s (%d)", r->seed, idx, what, v);
}

static void srec_settle(struct sround *r, struct srec *s, int fail)
{
    int rc = fail ? evexec_promise_fail(s->p, -EIO) : evexec_promise_resolve(s->p, s);
    if (rc == 0)
        s->delivered++;
    else if (rc != -ECANCELED)
        stress_error(r, "settle", (int)(s - r->recs), rc);
    s->settles++;
}

static struct sround *cur_round; /* for the callbacks below */

static void srec_drop_ev(struct srec *s)
{
    if (s->ev) {
        event_free(s->ev);
        s->ev = NULL;
    }
}

static void srec_fire(evutil_socket_t fd, short what, void *arg)
{
    struct srec *s = arg;
    (void)fd;
    (void)what;
    srec_drop_ev(s);
    srec_settle(cur_round, s, 0);
}

static void srec_cancel_hook(evexec_promise *p, void *arg)
{
    struct srec *s = arg;
    (void)p;
    s->cancel_hooks++;
    srec_drop_ev(s);
    srec_settle(cur_round, s, 1);
}

static void srec_stop_hook(evexec_promise *p, void *arg)
{
    struct srec *s = arg;
    (void)p;
    s->stop_hooks++;
    srec_drop_ev(s);
    srec_settle(cur_round, s, 0);
}

static void srec_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct srec *s = arg;
    struct timeval tv = {0, 100};
    if (s->runs++ != 0)
        stress_error(cur_round, "ran twice", (int)(s - cur_round->recs), 0);
    s->p = p;
    switch (s->kind) {
    case K_NOW:
        srec_settle(cur_round, s, 0);
        break;
    case K_FAIL:
        srec_settle(cur_round, s, 1);
        break;
    case K_LATER:
        s->ev = evtimer_new(evexec_loop_base(loop), srec_fire, s);
        evtimer_add(s->ev, &tv);
        if ((s->on_cancel_rc = evexec_promise_on_cancel(p, srec_cancel_hook, s)) == -ECANCELED) {
            /* Cancelled while we ran: no hook will come, abort now. */
            srec_drop_ev(s);
            srec_settle(cur_round, s, 1);
        }
        break;
    case K_HOLD: /* ends only by a cancel or a stop */
        s->ev = evtimer_new(evexec_loop_base(loop), srec_fire, s); /* never added */
        if (evexec_promise_on_cancel(p, srec_cancel_hook, s) == -ECANCELED ||
            evexec_promise_on_stop(p, srec_stop_hook, s) == -ESHUTDOWN) {
            srec_drop_ev(s);
            srec_settle(cur_round, s, 0);
        }
        break;
    }
}

struct sposter {
    struct sround *r;
    unsigned seed;
};

/* Checked now: what the future alone tells. The rest, once the loop has
 * ended (its side may still be running now): see stress_round(). */
static void check_outcome(struct sround *r, struct srec *s, evexec_future *f)
{
    void *res = NULL;
    int st = evexec_future_result(f, &res);
    int idx = (int)(s - r->recs);
    s->outcome = st;
    if (st == 0) {
        if (res != s || s->runs != 1)
            stress_error(r, "resolved, but not by its call", idx, s->runs);
    } else if (st == -EIO) {
        if (s->kind != K_FAIL || s->runs != 1)
            stress_error(r, "failed, but not by its call", idx, s->kind);
    } else if (st != -ECANCELED) {
        stress_error(r, "unexpected outcome", idx, st);
    }
}

static void *sposter_main(void *arg)
{
    struct sposter *sp = arg;
    struct sround *r = sp->r;
    evexec_future *mine[64];
    struct srec *recs[64];
    int n = 0;

    for (;;) {
        unsigned i = r->next++;
        if (i >= r->nrecs)
            break;
        struct srec *s = &r->recs[i];
        s->outcome = OUTCOME_NONE;
        s->kind = (int)(rand_r(&sp->seed) % K_KINDS);
        unsigned action = (unsigned)rand_r(&sp->seed) % 8;
        evexec_future *f = NULL;
        int rc = evexec_loop_call(r->loop, srec_call, s, action == 0 ? NULL : &f);
        if (rc == -ESHUTDOWN) {
            r->refused++;
            break;
        }
        if (rc != 0) {
            stress_error(r, "call", (int)i, rc);
            break;
        }
        r->accepted++;
        if (!f) {
            r->fire_and_forget++;
            continue;
        }
        if (action == 1) {
            evexec_future_free(f); /* at once: usually cancels it queued */
        } else if (action == 2 || action == 3) {
            int c = evexec_future_cancel(f);
            if (c != 0 && c != -EALREADY)
                stress_error(r, "cancel", (int)i, c);
            if (evexec_future_result(f, NULL) == -EINPROGRESS)
                stress_error(r, "pending after cancel", (int)i, 0);
            check_outcome(r, s, f);
            evexec_future_free(f);
        } else if (action == 4 && s->kind != K_HOLD) {
            if (evexec_future_wait(f, EVEXEC_WAIT_FOREVER) != 0)
                stress_error(r, "wait", (int)i, 0);
            check_outcome(r, s, f);
            evexec_future_free(f);
        } else {
            mine[n] = f;
            recs[n++] = s;
            if (n == 64 || (rand_r(&sp->seed) % 16) == 0) {
                /* Settle the batch: cancel the holds, wait for the rest. */
                for (int k = 0; k < n; k++) {
                    if (recs[k]->kind == K_HOLD || rand_r(&sp->seed) % 4 == 0)
                        (void)evexec_future_cancel(mine[k]);
                    int w = evexec_future_wait(mine[k], 10000);
                    if (w != 0)
                        stress_error(r, "batch wait", (int)(recs[k] - r->recs), w);
                    check_outcome(r, recs[k], mine[k]);
                    evexec_future_free(mine[k]);
                }
                n = 0;
            }
        }
    }
    /* Leftovers complete once the loop stops: wait for them then. */
    for (int k = 0; k < n; k++) {
        if (evexec_future_wait(mine[k], 30000) != 0)
            stress_error(r, "leftover wait", (int)(recs[k] - r->recs), 0);
        check_outcome(r, recs[k], mine[k]);
        evexec_future_free(mine[k]);
    }
    return NULL;
}

static void self_stopping_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    int rc = evexec_loop_stop(loop, (int)(intptr_t)arg);
    if (rc != -EINPROGRESS)
        stress_error(cur_round, "stop from the loop thread", -1, rc);
    evexec_promise_resolve(p, NULL);
}

static unsigned env_uint(const char *name, unsigned def)
{
    const char *s = getenv(name);
    return s && *s ? (unsigned)strtoul(s, NULL, 0) : def;
}

static void stress_round(unsigned seed)
{
    enum { POSTERS = 6 };
    struct sround r;
    struct sposter sp[POSTERS];
    pthread_t th[POSTERS];
    unsigned rs = seed;

    memset(&r, 0, sizeof r);
    r.seed = seed;
    r.nrecs = 3000 + (unsigned)rand_r(&rs) % 3000;
    r.recs = calloc(r.nrecs, sizeof *r.recs);
    ck_assert_ptr_nonnull(r.recs);
    for (unsigned i = 0; i < r.nrecs; i++)
        r.recs[i].outcome = OUTCOME_NONE; /* also those never posted */
    cur_round = &r;
    r.loop = start_loop(NULL);
    for (int i = 0; i < POSTERS; i++) {
        sp[i].r = &r;
        sp[i].seed = seed * 31 + (unsigned)i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, sposter_main, &sp[i]), 0);
    }
    /* Stop at a random point, in a random way: DRAIN or CANCEL from here;
     * DRAIN from a thread escalated to CANCEL from here; or begun by a call
     * on the loop thread, then waited for from here. */
    unsigned at = (unsigned)rand_r(&rs) % r.nrecs;
    while (r.next < at && r.next < r.nrecs)
        sched_yield();
    int way = rand_r(&rs) % 4, how, rc, rc2 = 0;
    struct stopper st;
    switch (way) {
    case 0:
    case 1:
        how = way ? EVEXEC_CANCEL : EVEXEC_DRAIN;
        rc = evexec_loop_stop(r.loop, how);
        break;
    case 2:
        how = EVEXEC_CANCEL;
        stop_async(&st, r.loop, EVEXEC_DRAIN);
        for (unsigned spin = (unsigned)rand_r(&rs) % 2000; spin; spin--)
            sched_yield();
        rc = evexec_loop_stop(r.loop, EVEXEC_CANCEL);
        rc2 = stop_join(&st);
        /* Both return once the thread has ended. An escalation that comes
         * after the end, or a drain after the cancel, says -EALREADY. */
        if ((rc == 0 && rc2 == -EALREADY) || (rc == -EALREADY && rc2 == 0))
            rc = rc2 = 0;
        break;
    default:
        how = rand_r(&rs) % 2 ? EVEXEC_CANCEL : EVEXEC_DRAIN;
        rc = evexec_loop_call(r.loop, self_stopping_call, (void *)(intptr_t)how, NULL);
        if (rc == 0) {
            wait_for(loop_stopping, r.loop); /* begun by the call */
            /* Begun already: waits for the end, then says so. */
            rc = evexec_loop_stop(r.loop, EVEXEC_DRAIN);
            ck_assert_msg(rc == -EALREADY, "seed %u: stop after a self-stop: %d", seed, rc);
            rc = 0;
        }
        break;
    }
    for (int i = 0; i < POSTERS; i++)
        pthread_join(th[i], NULL);
    ck_assert_msg(rc == 0 && rc2 == 0, "seed %u, way %d: stop: %d, %d", seed, way, rc, rc2);
    ck_assert_msg(r.errors == 0, "%s (%d errors)", r.msg, (int)r.errors);
    /* Exactly once, for every call that ran: one settle, no more. */
    for (unsigned i = 0; i < r.nrecs; i++) {
        struct srec *s = &r.recs[i];
        ck_assert_msg(s->runs <= 1, "seed %u: rec %u ran %d times", seed, i, (int)s->runs);
        ck_assert_msg(s->settles <= 1, "seed %u: rec %u settled %d times", seed, i,
                      (int)s->settles);
        ck_assert_msg(s->cancel_hooks + s->stop_hooks <= 1, "seed %u: rec %u: %d hooks", seed, i,
                      (int)(s->cancel_hooks + s->stop_hooks));
        ck_assert_msg(s->ev == NULL,
                      "seed %u (%s): rec %u (kind %d) left its event: runs %d settles %d "
                      "hooks %d/%d outcome %d on_cancel %d",
                      seed, how == EVEXEC_DRAIN ? "DRAIN" : "CANCEL", i, s->kind, (int)s->runs,
                      (int)s->settles, (int)s->cancel_hooks, (int)s->stop_hooks, (int)s->outcome,
                      s->on_cancel_rc);
        /* The outcome its holder saw agrees with what its code did. */
        if (s->outcome == 0 || s->outcome == -EIO)
            ck_assert_msg(s->delivered == 1, "seed %u: rec %u: outcome %d, delivered %d", seed, i,
                          (int)s->outcome, (int)s->delivered);
        else if (s->outcome == -ECANCELED)
            ck_assert_msg(s->delivered == 0, "seed %u: rec %u: cancelled, yet delivered", seed, i);
        /* Whatever ran was settled by its own code, once: every kind here
         * settles at once, from its timer, or from its cancel or stop hook,
         * which the loop runs before it ends, in both modes. */
        ck_assert_msg(s->runs == s->settles, "seed %u (%s): rec %u: ran %d, settled %d", seed,
                      how == EVEXEC_DRAIN ? "DRAIN" : "CANCEL", i, (int)s->runs, (int)s->settles);
    }
    ck_assert_int_eq(evexec_loop_free(r.loop), 0);
    cur_round = NULL;
    free(r.recs);
}

START_TEST(stress_posters_cancels_and_stop)
{
    unsigned seed = env_uint("EVEXEC_STRESS_SEED", 0);
    unsigned rounds = env_uint("EVEXEC_LOOP_STRESS_ROUNDS", 12);
    if (!seed) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        seed = (unsigned)t.tv_nsec ^ (unsigned)getpid();
    }
    printf("check_loop stress: seed %u, %u rounds (EVEXEC_STRESS_SEED=%u replays)\n", seed, rounds,
           seed);
    fflush(stdout);
    for (unsigned i = 0; i < rounds; i++)
        stress_round(seed + i);
}
END_TEST

/* ---------------------------------------------------------------------- */

static Suite *loop_suite(void)
{
    Suite *s = suite_create("loop");
    TCase *tc;

    tc = add_tcase(s, "lifecycle", 60, FX_FDS);
    tcase_add_test(tc, start_call_stop_free);
    tcase_add_test(tc, init_and_fini_run_on_the_loop_thread_around_the_calls);
    tcase_add_test(tc, init_failing_leaves_nothing_behind);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, loop_thread_functions_refuse_other_threads);

    tc = add_tcase(s, "calls", 60, FX_FDS);
    tcase_add_test(tc, failures_carry_any_errno);
    tcase_add_test(tc, fail_with_a_non_negative_errno_is_refused);
    tcase_add_test(tc, a_call_settles_later_from_an_io_callback);
    tcase_add_test(tc, round_trip_from_16_threads);
    tcase_add_test(tc, calls_from_the_loop_thread_never_run_inline_and_waiting_there_is_edeadlk);
    tcase_add_test(tc, waiting_on_the_loop_thread_for_a_complete_future_is_fine);

    tc = add_tcase(s, "timeout-and-cancel", 60, FX_FDS);
    tcase_add_test(tc, wait_timeout_leaves_the_future_valid);
    tcase_add_test(tc, cancel_of_a_queued_call_completes_it_and_it_never_runs);
    tcase_add_test(tc, cancel_of_a_call_in_progress_runs_its_hook_on_the_loop);
    tcase_add_test(tc, free_of_a_call_in_progress_cancels_it);
    tcase_add_test(tc, a_call_cancelled_without_hook_settles_later_with_ecanceled);

    tc = add_tcase(s, "stop", 60, FX_FDS);
    tcase_add_test(tc, stop_drain_runs_queued_calls_and_waits_for_those_in_progress);
    tcase_add_test(tc, stop_cancel_completes_everything_as_cancelled);
    tcase_add_test(tc, stop_cancel_escalates_a_drain);
    tcase_add_test(tc, stop_from_the_loop_thread_begins_and_a_later_stop_waits_for_the_end);
    tcase_add_test(tc, background_tasks_end_when_the_loop_stops);
    tcase_add_test(tc, on_stop_after_the_stop_began_is_eshutdown);
    tcase_add_test(tc, calls_offload_through_the_loop_port_and_stop_waits_for_its_jobs);
    tcase_add_test(tc, stop_cancel_ends_jobs_that_resubmit_themselves);
    tcase_add_test(tc, an_escalation_while_fini_runs_returns_once_the_thread_has_ended);
    tcase_add_test(tc, stop_and_free_on_one_thread_while_another_escalates);

#ifdef EVEXEC_TEST_EVHTTP
    tc = add_tcase(s, "evhttp", 60, FX_FDS);
    tcase_add_test(tc, evhttp_fetches_from_16_blocking_threads);
    tcase_add_test(tc, evhttp_fetch_in_progress_is_cancelled_through_its_hook);
    tcase_add_test(tc, evhttp_stop_cancel_with_a_fetch_in_progress);
#endif

    tc = add_tcase(s, "stress", 300, FX_FDS);
    tcase_add_test(tc, stress_posters_cancels_and_stop);
    return s;
}

int main(void)
{
    /* A write to a socket the server reset must not kill the test. */
    signal(SIGPIPE, SIG_IGN);
#ifndef EVEXEC_TEST_EVHTTP
    printf("check_loop: built without libevent_extra: the evhttp tests are left out\n");
#endif
    return run_suite(loop_suite());
}
