/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: a loop is an event_base run by evexec in a thread of its own;
 * other threads post calls into it (future.c holds the futures).
 *
 * Posting: a call's future embeds a mailbox node (mailbox.c, the machinery
 * finished jobs take to their port): one CAS, and a wake-fd write only when
 * the list was empty. A poster first counts its node in `gate` (bit 0 says
 * "stopping", the rest counts nodes posted and not yet taken): a call by a
 * CAS that fails once bit 0 is set, so no call is accepted once a stop has
 * begun; a cancel notice (a holder cancelled a call in progress: the loop
 * must run its cancel hook) unconditionally, under the future's mutex as
 * it completes the future, so a loop that has seen the future complete
 * sees the notice counted. A count of 0: no poster is still on its way.
 *
 * The loop thread, woken, takes the list, puts it back in posting order and
 * sorts it: a future seen for the first time is a new call (to the backlog,
 * run up to max_batch per wake-up, then a zero timer lets other events in);
 * seen again, it is a cancel notice (run its cancel hook here, on the loop
 * thread); the loop's own stop node is a stop request.
 *
 * Stopping (on the loop thread): run the stop hooks of in-progress calls;
 * with CANCEL, complete every in-progress call as -ECANCELED and run its
 * cancel hook, make the loop's port refuse new jobs and cancel its queued
 * ones, and cancel queued calls as they are taken. The loop finishes when
 *   - no posted node is still on its way (gate count 0) and every call
 *     taken has been started or cancelled (backlog empty);
 *   - DRAIN: every promise has been settled (nlive 0);
 *   - the loop's port has delivered every job and is quiet (no worker
 *     still has to write its wake fd);
 *   - no stop request is in flight, and every wake-fd write owed to the
 *     loop's mailbox has been read (evexec__mailbox_quiet).
 * From then on the port refuses jobs, so once fini has run, the port and
 * the base go at once, and any promise still unsettled (CANCEL does not
 * wait for them) is released: no code of the loop can run any more. The
 * thread then ends; evexec_loop_free() joins it.
 *
 * Locks: loop->mu guards the start/stop handshake only (phase, stop mode,
 * the stop node, the threads waiting for the end). It is never held while
 * user code runs, and no other lock is taken while holding it. Every stop
 * from another thread waits under it for the thread's end, counted in
 * `waiting`, and evexec_loop_free() waits for that count to drop to 0
 * before it destroys the loop: a stopper woken by the end may still be
 * re-taking mu.
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "evexec-internal.h"

#define MIN_LOOP_OPTS_SIZE (offsetof(struct evexec_loop_opts, max_batch) + sizeof(unsigned))

enum loop_phase {
    LOOP_STARTING = 0, /* init runs */
    LOOP_RUNNING,
    LOOP_FINISHING,    /* stop complete: no stop request may be posted */
    LOOP_EXITED        /* the thread is about to return */
};

struct evexec_loop {
    struct evexec__mailbox mb;     /* calls, cancel notices, stop requests */
    /* Written by every poster: a line of its own. */
    _Alignas(EVEXEC_CACHELINE) _Atomic uint64_t gate;

    _Alignas(EVEXEC_CACHELINE) struct event_base *base;
    struct event *resume_ev;       /* zero timer: go on with a capped batch */
    struct evexec_port *port;      /* created by evexec_loop_port() */
    _Atomic(void *) context;
    pthread_t thread;

    /* The start/stop handshake, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int phase;                     /* enum loop_phase */
    int start_reported;            /* start_rc is final: start may return */
    int start_rc;
    int stop_mode;                 /* -1, EVEXEC_DRAIN, EVEXEC_CANCEL asked */
    int stop_posted;               /* stop_node is in the mailbox */
    unsigned waiting;              /* threads in evexec_loop_stop() waiting
                                      for the end */
    struct evexec__node stop_node;

    /* Loop thread only. */
    int applied;                   /* stop mode acted on, -1 for none */
    int finished;                  /* the event loop is to end */
    int applying;                  /* in apply_stop(): do not finish yet */
    struct evexec__ring live;      /* calls whose promise is unsettled */
    size_t nlive;
    struct evexec__node *backlog, *backlog_tail; /* taken, not started */

    /* Settings. */
    evexec_loop_init_fn init;
    evexec_loop_fini_fn fini;
    void *arg;
    unsigned max_batch;
    char name[64];
};

static _Thread_local struct evexec_loop *current_loop;

static void finish_check(struct evexec_loop *loop);

static struct evexec_future *ring_future(struct evexec__ring *r)
{
    return (struct evexec_future *)((char *)r - offsetof(struct evexec_future, u.call.ring));
}

/* Runs and clears a hook of f's call. */
static void run_hook(struct evexec_future *f, evexec_promise_fn *hook, void *arg)
{
    evexec_promise_fn fn = *hook;
    if (fn) {
        *hook = NULL;
        fn((evexec_promise *)f, arg);
    }
}

/* --- for future.c -------------------------------------------------------- */

struct evexec_loop *evexec__loop_current(void)
{
    return current_loop;
}

int evexec__loop_stop_applied(const struct evexec_loop *loop)
{
    return loop->applied >= 0;
}

void evexec__loop_post_notice(struct evexec_loop *loop, struct evexec_future *f)
{
    atomic_fetch_add_explicit(&loop->gate, 2, memory_order_acq_rel);
    evexec__mailbox_post(&loop->mb, &f->link);
}

static void release_promise(struct evexec_loop *loop, struct evexec_future *f)
{
    f->u.call.live = 0;
    ring_remove(&f->u.call.ring);
    loop->nlive--;
    evexec__future_unref(f); /* the loop side's reference */
}

void evexec__loop_promise_released(struct evexec_loop *loop, struct evexec_future *f)
{
    release_promise(loop, f);
    finish_check(loop);
}

/* --- the calls ----------------------------------------------------------- */

static void start_call(struct evexec_loop *loop, struct evexec_future *f)
{
    struct future_call *c = &f->u.call;
    uint8_t st;

    if (loop->applied == EVEXEC_CANCEL) {
        evexec__future_settle(f, -ECANCELED, NULL); /* never runs */
        evexec__future_unref(f);
        return;
    }
    pthread_mutex_lock(&f->mu);
    st = atomic_load_explicit(&f->state, memory_order_relaxed);
    if (st == FUTURE_QUEUED)
        atomic_store_explicit(&f->state, FUTURE_RUNNING, memory_order_relaxed);
    pthread_mutex_unlock(&f->mu);
    if (st != FUTURE_QUEUED) { /* cancelled while queued */
        evexec__future_unref(f);
        return;
    }
    c->live = 1;
    ring_push_tail(&loop->live, &c->ring);
    loop->nlive++;
    c->fn(loop, (evexec_promise *)f, c->arg); /* f may be gone when it returns */
}

/* Starts up to max_batch calls of the backlog (all of them, cancelled, once
 * a CANCEL stop applies). */
static void run_backlog(struct evexec_loop *loop)
{
    unsigned n = 0;

    while (loop->backlog) {
        if (n == loop->max_batch && loop->applied != EVEXEC_CANCEL) {
            static const struct timeval zero = {0, 0};
            event_add(loop->resume_ev, &zero);
            return;
        }
        struct evexec_future *f = (struct evexec_future *)loop->backlog;
        loop->backlog = f->link.next;
        if (!loop->backlog)
            loop->backlog_tail = NULL;
        n++;
        start_call(loop, f);
    }
}

/* Its holder completed f while in progress: run the cancel hook. */
static void process_notice(struct evexec_future *f)
{
    struct future_call *c = &f->u.call;

    if (c->live)
        run_hook(f, &c->on_cancel, c->cancel_arg);
    evexec__future_unref(f); /* the notice's reference */
}

/* Visits every live promise; visit may settle any of them (settling
 * unlinks a call from whichever ring it is on). */
static void each_live(struct evexec_loop *loop, void (*visit)(struct evexec_future *))
{
    struct evexec__ring todo;

    if (ring_empty(&loop->live))
        return;
    todo.next = loop->live.next;
    todo.prev = loop->live.prev;
    todo.next->prev = &todo;
    todo.prev->next = &todo;
    ring_init(&loop->live);
    while (!ring_empty(&todo)) {
        struct evexec__ring *r = todo.next;
        struct evexec_future *f = ring_future(r);
        ring_remove(r);
        ring_push_tail(&loop->live, r);
        evexec__future_ref(f);
        visit(f);
        evexec__future_unref(f);
    }
}

static void visit_stop(struct evexec_future *f)
{
    if (f->u.call.live)
        run_hook(f, &f->u.call.on_stop, f->u.call.stop_arg);
}

static void visit_cancel(struct evexec_future *f)
{
    /* Completed by its holder first: the hook comes with the notice. */
    if (f->u.call.live && evexec__future_settle(f, -ECANCELED, NULL))
        run_hook(f, &f->u.call.on_cancel, f->u.call.cancel_arg);
}

/* Acts on the stop mode asked for, if stronger than the one applied. */
static void apply_stop(struct evexec_loop *loop)
{
    pthread_mutex_lock(&loop->mu);
    int mode = loop->stop_mode;
    loop->stop_posted = 0;
    pthread_mutex_unlock(&loop->mu);
    if (mode <= loop->applied)
        return;
    int first = loop->applied < 0;
    loop->applied = mode;
    /* A hook that settles its promise checks whether the loop may finish:
     * not before every step below has run. */
    loop->applying = 1;
    if (first)
        each_live(loop, visit_stop);
    if (mode == EVEXEC_CANCEL) {
        each_live(loop, visit_cancel);
        if (loop->port) {
            /* A done callback that resubmits must not keep the loop alive. */
            evexec__port_refuse(loop->port);
            evexec__port_cancel_all(loop->port);
        }
    }
    loop->applying = 0;
}

static void finish_check(struct evexec_loop *loop)
{
    struct evexec_port *port = loop->port;

    if (loop->applied < 0 || loop->finished || loop->applying)
        return;
    if (atomic_load_explicit(&loop->gate, memory_order_acquire) >> 1)
        return; /* calls or cancel notices still on their way */
    if (loop->backlog || (loop->applied == EVEXEC_DRAIN && loop->nlive))
        return;
    if (port && evexec__port_busy(port))
        return; /* the port's idle hook checks again */
    pthread_mutex_lock(&loop->mu);
    int posted = loop->stop_posted;
    if (!posted)
        loop->phase = LOOP_FINISHING; /* no stop request after this */
    pthread_mutex_unlock(&loop->mu);
    if (posted)
        return; /* an escalation is in the mailbox: take it first */
    if (!evexec__mailbox_quiet(&loop->mb))
        return; /* a poster still has to write the wake fd: wait for it */
    if (port && !evexec__port_seal_remote(port))
        return; /* another thread's job came in meanwhile: deliver it first */
    loop->finished = 1;
    if (port)
        evexec__port_refuse(port); /* fini starts nothing that outlives it */
    event_base_loopbreak(loop->base);
}

static void on_mail(evutil_socket_t fd, short what, void *arg)
{
    struct evexec_loop *loop = arg;
    struct evexec__node *list, *fifo = NULL, *notices = NULL, *n, *next;
    uint64_t taken = 0;
    int stop = 0;

    EVEXEC_UNUSED(fd);
    EVEXEC_UNUSED(what);
    for (list = evexec__mailbox_take(&loop->mb); list; list = next) {
        next = list->next; /* newest first: reverse to posting order */
        list->next = fifo;
        fifo = list;
    }
    for (n = fifo; n; n = next) {
        next = n->next;
        if (n == &loop->stop_node) {
            stop = 1;
            continue;
        }
        struct evexec_future *f = (struct evexec_future *)n;
        taken++;
        if (f->u.call.taken) { /* seen before: a cancel notice */
            n->next = notices;
            notices = n;
            continue;
        }
        f->u.call.taken = 1;
        n->next = NULL;
        if (loop->backlog_tail)
            loop->backlog_tail->next = n;
        else
            loop->backlog = n;
        loop->backlog_tail = n;
    }
    if (taken)
        atomic_fetch_sub_explicit(&loop->gate, taken << 1, memory_order_acq_rel);
    for (n = notices; n; n = next) {
        next = n->next;
        process_notice((struct evexec_future *)n);
    }
    if (stop)
        apply_stop(loop);
    run_backlog(loop);
    finish_check(loop);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    EVEXEC_UNUSED(fd);
    EVEXEC_UNUSED(what);
    run_backlog(arg);
    finish_check(arg);
}

static void on_port_idle(void *arg)
{
    finish_check(arg);
}

/* --- the thread ---------------------------------------------------------- */

/* With loop->mu held: asks for a stop in mode how. 1 if that is more than
 * was asked so far and the thread has not ended. Once the loop is
 * finishing, everything is complete and the port refuses jobs: there is
 * nothing left for a stronger mode to do, and no request is posted. */
static int request_stop_locked(struct evexec_loop *loop, int how)
{
    if (loop->phase == LOOP_EXITED || loop->stop_mode >= how)
        return 0;
    loop->stop_mode = how;
    atomic_fetch_or_explicit(&loop->gate, 1, memory_order_acq_rel);
    if (loop->phase < LOOP_FINISHING && !loop->stop_posted) {
        loop->stop_posted = 1;
        evexec__mailbox_post(&loop->mb, &loop->stop_node);
    }
    return 1;
}

static void run(struct evexec_loop *loop)
{
    while (!loop->finished) {
        if (event_base_loop(loop->base, EVLOOP_NO_EXIT_ON_EMPTY) < 0) {
            /* The backend failed: nothing sensible to do but retry without
             * burning the CPU. */
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    }
}

/* On the loop thread, once finished (or when start fails). */
static void teardown(struct evexec_loop *loop, int run_fini)
{
    if (run_fini && loop->fini)
        loop->fini(loop, loop->arg);
    if (loop->port) {
        /* Idle, quiet and refusing since the loop finished: released at
         * once. */
        loop->port->idle_hook = NULL;
        evexec_port_free(loop->port);
        loop->port = NULL;
    }
    evexec__mailbox_close(&loop->mb);
    if (loop->resume_ev)
        event_free(loop->resume_ev);
    loop->resume_ev = NULL;
    /* loop->base stays as it was: evexec_loop_base() reads it unlocked. */
    if (loop->base)
        event_base_free(loop->base);
    /* No code of the loop can run any more: release the promises it never
     * settled (their futures complete as -ECANCELED if they had not). */
    while (!ring_empty(&loop->live)) {
        struct evexec_future *f = ring_future(loop->live.next);
        evexec__future_settle(f, -ECANCELED, NULL);
        release_promise(loop, f);
    }
}

/* Moves the phase on and, the first time, reports how the start went:
 * rc is final then (a failed start runs the loop before it reports, and
 * the phase alone would say "finishing" too early). */
static void set_phase(struct evexec_loop *loop, int phase, int rc)
{
    pthread_mutex_lock(&loop->mu);
    if (loop->phase < phase)
        loop->phase = phase;
    if (!loop->start_reported) {
        loop->start_rc = rc;
        loop->start_reported = 1;
    }
    pthread_cond_broadcast(&loop->cv);
    pthread_mutex_unlock(&loop->mu);
}

static void *loop_main(void *arg)
{
    struct evexec_loop *loop = arg;
    int rc = -ENOMEM;

    current_loop = loop;
    evexec__thread_name(loop->name);
    if (!(loop->base = event_base_new()))
        goto fail;
    if (!(loop->resume_ev = evtimer_new(loop->base, on_resume, loop)))
        goto fail;
    if ((rc = evexec__mailbox_open(&loop->mb, loop->base, on_mail, loop, -1)) < 0)
        goto fail;
    if (loop->init && (rc = loop->init(loop, loop->arg)) != 0) {
        if (rc > 0)
            rc = -rc;
        /* Cancel what init posted or submitted, then go, without fini. */
        pthread_mutex_lock(&loop->mu);
        request_stop_locked(loop, EVEXEC_CANCEL);
        pthread_mutex_unlock(&loop->mu);
        run(loop);
        goto fail;
    }
    set_phase(loop, LOOP_RUNNING, 0);
    run(loop);
    teardown(loop, 1);
    set_phase(loop, LOOP_EXITED, 0);
    return NULL;

fail:
    teardown(loop, 0);
    set_phase(loop, LOOP_EXITED, rc);
    return NULL;
}

/* --- public -------------------------------------------------------------- */

static void loop_destroy(struct evexec_loop *loop)
{
    pthread_cond_destroy(&loop->cv);
    pthread_mutex_destroy(&loop->mu);
    free(loop);
}

int evexec_loop_start(evexec_loop **out, const struct evexec_loop_opts *opts)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    struct evexec_loop *loop;
    int rc;

    if (!out)
        return -EINVAL;
    if (opts) {
        rc = evexec__check_opts_size(opts, opts->size, MIN_LOOP_OPTS_SIZE, sizeof o);
        if (rc < 0)
            return rc;
        memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
    }
    if (!o.name || !o.name[0])
        o.name = "evexec-loop";
    if (o.max_batch > EVEXEC__MAX_MAX_BATCH || strnlen(o.name, 64) >= 64)
        return -EINVAL;

    if (posix_memalign((void **)&loop, EVEXEC_CACHELINE, sizeof *loop))
        return -ENOMEM;
    memset(loop, 0, sizeof *loop);
    loop->mb.wake.rfd = loop->mb.wake.wfd = -1;
    atomic_init(&loop->gate, 0);
    atomic_init(&loop->context, NULL);
    loop->stop_mode = loop->applied = -1;
    ring_init(&loop->live);
    loop->init = o.init;
    loop->fini = o.fini;
    loop->arg = o.arg;
    loop->max_batch = o.max_batch ? o.max_batch : EVEXEC__DEFAULT_MAX_BATCH;
    strcpy(loop->name, o.name);
    if ((rc = -pthread_mutex_init(&loop->mu, NULL)) < 0) {
        free(loop);
        return rc;
    }
    if ((rc = -pthread_cond_init(&loop->cv, NULL)) < 0) {
        pthread_mutex_destroy(&loop->mu);
        free(loop);
        return rc;
    }
    /* Like workers, the thread starts with every signal blocked. */
    if ((rc = evexec__thread_create(&loop->thread, NULL, loop_main, loop)) < 0) {
        loop_destroy(loop);
        return rc;
    }
    pthread_mutex_lock(&loop->mu);
    while (!loop->start_reported)
        pthread_cond_wait(&loop->cv, &loop->mu);
    rc = loop->start_rc;
    pthread_mutex_unlock(&loop->mu);
    if (rc < 0) {
        pthread_join(loop->thread, NULL);
        loop_destroy(loop);
        return rc;
    }
    *out = loop;
    return 0;
}

int evexec_loop_stop(evexec_loop *loop, int how)
{
    if (!loop || (how != EVEXEC_DRAIN && how != EVEXEC_CANCEL))
        return -EINVAL;
    int here = current_loop == loop;
    pthread_mutex_lock(&loop->mu);
    int asked = request_stop_locked(loop, how);
    if (!here) {
        loop->waiting++;
        while (loop->phase != LOOP_EXITED)
            pthread_cond_wait(&loop->cv, &loop->mu);
        if (--loop->waiting == 0)
            pthread_cond_broadcast(&loop->cv); /* a free may wait for us */
    }
    pthread_mutex_unlock(&loop->mu);
    if (here)
        return asked ? -EINPROGRESS : -EALREADY;
    return asked ? 0 : -EALREADY;
}

int evexec_loop_free(evexec_loop *loop)
{
    if (!loop)
        return 0;
    if (current_loop == loop)
        return -EDEADLK;
    pthread_mutex_lock(&loop->mu);
    request_stop_locked(loop, EVEXEC_DRAIN);
    /* Stoppers woken by the end still have to re-take mu: wait for them. */
    while (loop->phase != LOOP_EXITED || loop->waiting)
        pthread_cond_wait(&loop->cv, &loop->mu);
    pthread_mutex_unlock(&loop->mu);
    pthread_join(loop->thread, NULL);
    loop_destroy(loop);
    return 0;
}

int evexec_loop_call(evexec_loop *loop, evexec_call_fn fn, void *arg, evexec_future **out)
{
    struct evexec_future *f;
    uint64_t g;

    if (EVEXEC_UNLIKELY(!loop || !fn))
        return -EINVAL;
    if (EVEXEC_UNLIKELY(!(f = evexec__future_new(FUTURE_CALL, 1 + (out != NULL)))))
        return -ENOMEM;
    f->u.call.loop = loop;
    f->u.call.fn = fn;
    f->u.call.arg = arg;
    g = atomic_load_explicit(&loop->gate, memory_order_relaxed);
    do {
        if (EVEXEC_UNLIKELY(g & 1)) {
            atomic_store_explicit(&f->refs, 1, memory_order_relaxed);
            evexec__future_unref(f);
            return -ESHUTDOWN;
        }
    } while (!atomic_compare_exchange_weak_explicit(&loop->gate, &g, g + 2, memory_order_acq_rel,
                                                    memory_order_relaxed));
    evexec__mailbox_post(&loop->mb, &f->link);
    if (out)
        *out = f;
    return 0;
}

struct event_base *evexec_loop_base(evexec_loop *loop)
{
    return loop ? loop->base : NULL;
}

int evexec_loop_set_context(evexec_loop *loop, void *context)
{
    if (!loop)
        return -EINVAL;
    if (current_loop != loop)
        return -EPERM;
    atomic_store_explicit(&loop->context, context, memory_order_release);
    return 0;
}

void *evexec_loop_context(evexec_loop *loop)
{
    return loop ? atomic_load_explicit(&loop->context, memory_order_acquire) : NULL;
}

int evexec_loop_port(evexec_loop *loop, evexec_port **out)
{
    int rc;

    if (!loop || !out)
        return -EINVAL;
    if (current_loop != loop)
        return -EPERM;
    if (!loop->port) {
        if ((rc = evexec_port_new(&loop->port, loop->base, NULL)) < 0)
            return rc;
        loop->port->idle_hook = on_port_idle;
        loop->port->idle_arg = loop;
        /* Made during a CANCEL stop, or by fini: refuses like the old one. */
        if (loop->applied == EVEXEC_CANCEL || loop->finished)
            evexec__port_refuse(loop->port);
    }
    *out = loop->port;
    return 0;
}

int evexec_loop_stopping(evexec_loop *loop)
{
    return loop ? (int)(atomic_load_explicit(&loop->gate, memory_order_relaxed) & 1) : 0;
}
