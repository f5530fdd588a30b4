/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: the calls other threads post into a loop (the loop's thread
 * itself is loop.c's), and their promises.
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
 * sorts it: a call seen for the first time is new (to the backlog, run up
 * to max_batch per wake-up, then a zero timer lets other events in); seen
 * again, it is a cancel notice (run its cancel hook here, on the loop
 * thread); the loop's own stop node is a stop request (loop.c).
 *
 * A call's future (struct loop_call) starts with one reference for the
 * holder's handle (none for a call posted without a future) and one for
 * the loop side, which covers the node in the mailbox and then the promise
 * until it is settled (or until the loop thread ends and releases it). A
 * holder's cancel of a running call takes one more for the cancel notice
 * it posts, so the loop can run the call's cancel hook, on its own thread,
 * even after the holder has freed the future.
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "loop-internal.h"

static struct loop_call *of_future(const struct evexec_future *f)
{
    return (struct loop_call *)(void *)f;
}

static struct loop_call *of_ring(struct evexec__ring *r)
{
    return EVEXEC_CONTAINER(r, struct loop_call, ring);
}

/* Runs and clears a hook of c. */
static void run_hook(struct loop_call *c, evexec_promise_fn *hook, void *arg)
{
    evexec_promise_fn fn = *hook;
    if (fn) {
        *hook = NULL;
        fn((evexec_promise *)c, arg);
    }
}

static void release_promise(struct evexec_loop *loop, struct loop_call *c)
{
    assert(c->live && loop->nlive > 0);
    c->live = 0;
    ring_remove(&c->ring);
    loop->nlive--;
    evexec__future_unref(&c->future); /* the loop side's reference */
}

/* --- the call's future --------------------------------------------------- */

/* Under f's mutex, having just completed it while RUNNING: counts and
 * posts its cancel notice (f holds a reference for it). */
static void post_notice(struct evexec_future *f)
{
    struct evexec_loop *loop = of_future(f)->loop;
    evexec__future_ref(f);
    atomic_fetch_add_explicit(&loop->gate, 2, memory_order_acq_rel);
    evexec__mailbox_post(&loop->mb, &f->link);
}

/* QUEUED: the loop will find it complete and never run it. RUNNING: the
 * loop must run the cancel hook: notify it. */
static int call_cancel(struct evexec_future *f)
{
    return evexec__future_cancel_now(f, post_notice);
}

static int call_waits_for_itself(const struct evexec_future *f)
{
    return evexec__loop_current() == of_future(f)->loop;
}

static const struct evexec__future_ops call_ops = {
    .cancel = call_cancel,
    .waits_for_itself = call_waits_for_itself,
    .destroy = NULL,
};

/* --- the calls ----------------------------------------------------------- */

static void start_call(struct evexec_loop *loop, struct loop_call *c)
{
    if (loop->applied == EVEXEC_CANCEL) {
        evexec__future_settle(&c->future, -ECANCELED, NULL); /* never runs */
        evexec__future_unref(&c->future);
        return;
    }
    if (!evexec__future_start(&c->future)) { /* cancelled while queued */
        evexec__future_unref(&c->future);
        return;
    }
    c->live = 1;
    ring_push_tail(&loop->live, &c->ring);
    loop->nlive++;
    c->fn(loop, (evexec_promise *)c, c->arg); /* c may be gone when it returns */
}

/* Starts up to max_batch calls of the backlog (all of them, cancelled, once
 * a CANCEL stop applies). */
static void run_backlog(struct evexec_loop *loop)
{
    unsigned n = 0;

    while (loop->backlog) {
        if (n == loop->max_batch && loop->applied != EVEXEC_CANCEL) {
            evexec__soon(loop->resume_ev);
            return;
        }
        struct loop_call *c = (struct loop_call *)(void *)loop->backlog;
        loop->backlog = c->future.link.next;
        if (!loop->backlog)
            loop->backlog_tail = NULL;
        n++;
        start_call(loop, c);
    }
}

/* Its holder completed c while in progress: run the cancel hook. */
static void process_notice(struct loop_call *c)
{
    if (c->live)
        run_hook(c, &c->on_cancel, c->cancel_arg);
    evexec__future_unref(&c->future); /* the notice's reference */
}

void evexec__loop_on_mail(int fd, short what, void *arg)
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
        struct loop_call *c = (struct loop_call *)(void *)n;
        taken++;
        if (c->taken) { /* seen before: a cancel notice */
            n->next = notices;
            notices = n;
            continue;
        }
        c->taken = 1;
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
        process_notice((struct loop_call *)(void *)n);
    }
    if (stop)
        evexec__loop_apply_stop(loop);
    run_backlog(loop);
    evexec__loop_finish_check(loop);
}

void evexec__loop_on_resume(int fd, short what, void *arg)
{
    EVEXEC_UNUSED(fd);
    EVEXEC_UNUSED(what);
    run_backlog(arg);
    evexec__loop_finish_check(arg);
}

/* --- live promises during a stop ----------------------------------------- */

/* Visits every live promise; visit may settle any of them (settling
 * unlinks a call from whichever ring it is on). */
static void each_live(struct evexec_loop *loop, void (*visit)(struct loop_call *))
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
        struct loop_call *c = of_ring(r);
        ring_remove(r);
        ring_push_tail(&loop->live, r);
        evexec__future_ref(&c->future);
        visit(c);
        evexec__future_unref(&c->future);
    }
}

static void visit_stop(struct loop_call *c)
{
    if (c->live)
        run_hook(c, &c->on_stop, c->stop_arg);
}

static void visit_cancel(struct loop_call *c)
{
    /* Completed by its holder first: the hook comes with the notice. */
    if (c->live && evexec__future_settle(&c->future, -ECANCELED, NULL))
        run_hook(c, &c->on_cancel, c->cancel_arg);
}

void evexec__loop_calls_stopping(struct evexec_loop *loop)
{
    each_live(loop, visit_stop);
}

void evexec__loop_calls_cancel(struct evexec_loop *loop)
{
    each_live(loop, visit_cancel);
}

void evexec__loop_calls_release(struct evexec_loop *loop)
{
    while (!ring_empty(&loop->live)) {
        struct loop_call *c = of_ring(loop->live.next);
        evexec__future_settle(&c->future, -ECANCELED, NULL);
        release_promise(loop, c);
    }
}

/* --- public: calls ------------------------------------------------------- */

int evexec_loop_call(evexec_loop *loop, evexec_call_fn fn, void *arg, evexec_future **out)
{
    struct loop_call *c;
    uint64_t g;

    if (EVEXEC_UNLIKELY(!loop || !fn))
        return -EINVAL;
    c = (struct loop_call *)evexec__future_new(sizeof *c, &call_ops, 1 + (out != NULL));
    if (EVEXEC_UNLIKELY(!c))
        return -ENOMEM;
    c->loop = loop;
    c->fn = fn;
    c->arg = arg;
    ring_init(&c->ring);
    g = atomic_load_explicit(&loop->gate, memory_order_relaxed);
    do {
        if (EVEXEC_UNLIKELY(g & 1)) {
            evexec__future_discard(&c->future);
            return -ESHUTDOWN;
        }
    } while (!atomic_compare_exchange_weak_explicit(&loop->gate, &g, g + 2, memory_order_acq_rel,
                                                    memory_order_relaxed));
    evexec__mailbox_post(&loop->mb, &c->future.link);
    if (out)
        *out = &c->future;
    return 0;
}

/* --- public: promises ---------------------------------------------------- */

/* A promise the caller may use: a call's, on its loop's thread, not yet
 * settled. */
static int check_promise(const evexec_promise *p)
{
    const struct evexec_future *f = (const struct evexec_future *)p;
    if (!f || f->ops != &call_ops)
        return -EINVAL;
    const struct loop_call *c = of_future(f);
    if (evexec__loop_current() != c->loop)
        return -EPERM;
    return c->live ? 0 : -EINVAL;
}

static int settle(evexec_promise *p, int status, void *result)
{
    int rc = check_promise(p);
    if (rc < 0)
        return rc;
    struct loop_call *c = (struct loop_call *)p;
    struct evexec_loop *loop = c->loop;
    int lost = !evexec__future_settle(&c->future, status, result);
    release_promise(loop, c);
    evexec__loop_finish_check(loop);
    return lost ? -ECANCELED : 0;
}

int evexec_promise_resolve(evexec_promise *p, void *result)
{
    return settle(p, 0, result);
}

int evexec_promise_fail(evexec_promise *p, int err)
{
    /* -EINPROGRESS would read as "not complete" from a complete future. */
    if (p && (err >= 0 || err == -EINPROGRESS))
        return -EINVAL;
    return settle(p, err, NULL);
}

int evexec_promise_on_cancel(evexec_promise *p, evexec_promise_fn fn, void *arg)
{
    int rc = check_promise(p);
    if (rc < 0)
        return rc;
    struct loop_call *c = (struct loop_call *)p;
    if (evexec__future_is_done(&c->future))
        return -ECANCELED; /* a live promise's future completes only by a cancel */
    c->on_cancel = fn;
    c->cancel_arg = arg;
    return 0;
}

int evexec_promise_on_stop(evexec_promise *p, evexec_promise_fn fn, void *arg)
{
    int rc = check_promise(p);
    if (rc < 0)
        return rc;
    struct loop_call *c = (struct loop_call *)p;
    /* Asked for counts too: a stop begun on the loop thread (-EINPROGRESS)
     * is applied only on the loop's next turn. */
    if (c->loop->applied >= 0 || evexec_loop_stopping(c->loop))
        return -ESHUTDOWN;
    c->on_stop = fn;
    c->stop_arg = arg;
    return 0;
}

int evexec_promise_cancelled(const evexec_promise *p)
{
    const struct evexec_future *f = (const struct evexec_future *)p;
    if (!f || f->ops != &call_ops)
        return 0;
    /* Settled by its own code it is released; live and DONE means cancelled. */
    return of_future(f)->live && evexec__future_is_done(f);
}
