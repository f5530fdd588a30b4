/* SPDX-License-Identifier: MIT */
/*
 * The mailbox (mailbox.c): how anything reaches a loop thread from another
 * thread — finished jobs their port, calls and notices their loop. Also
 * the one way evexec arms a "run soon" timer. Never installed.
 */
#ifndef EVEXEC_MAILBOX_INTERNAL_H
#define EVEXEC_MAILBOX_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "base.h"

struct event_base;
struct event;

struct evexec__wakefd {
    int rfd;
    int wfd;                       /* == rfd for an eventfd */
};

/*
 * A multi-producer, single-consumer mailbox into one loop thread: a
 * lock-free LIFO list of nodes and a wake fd written only when a post finds
 * the list empty and the loop outside a run (mailbox.c).
 */
struct evexec__mailbox {
    /* Written by every poster: alone on its cache line. The newest node,
     * or'ed with MAILBOX_RUNNING while the loop is in a run. */
    _Alignas(EVEXEC_CACHELINE) _Atomic uintptr_t head;
    _Alignas(EVEXEC_CACHELINE) struct evexec__wakefd wake; /* read by posters */
    struct event *ev;              /* EV_READ|EV_PERSIST on wake.rfd */
    /* Loop thread only. Each take (or run's begin) of a non-empty list is
     * owed exactly one wake-fd write (by whoever posted onto the empty
     * list; a run's later takes are owed none); once every write owed has
     * been read, no poster can still touch the mailbox. */
    uint64_t signals_owed, signals_read;
};

/* In the head word while the loop is in a run (node addresses are even). */
#define MAILBOX_RUNNING ((uintptr_t)1)

/* Before open: a mailbox that close may be called on. */
void evexec__mailbox_init(struct evexec__mailbox *mb);
/* Loop thread: opens the wake fd and adds a persistent read event calling
 * cb(fd, what, arg); priority -1 keeps the base's default. 0 or -errno. */
int evexec__mailbox_open(struct evexec__mailbox *mb, struct event_base *base,
                         void (*cb)(int, short, void *), void *arg, int priority);
/* Loop thread: removes the event and closes the fd. */
void evexec__mailbox_close(struct evexec__mailbox *mb);
/* Takes the event off its base, leaving the fd alone (a forked child's
 * copy of its parent's mailbox must never read the parent's wake fd). */
void evexec__mailbox_detach(struct evexec__mailbox *mb);
/* Any thread: posts a node. */
void evexec__mailbox_post(struct evexec__mailbox *mb, struct evexec__node *node);
/* Loop thread: empties the wake fd, then takes every node posted so far,
 * newest first (NULL if none). A caller that does not take on a wake-up
 * leaves the fd readable, so the event fires again. Not for a mailbox
 * whose owner uses runs (below). */
struct evexec__node *evexec__mailbox_take(struct evexec__mailbox *mb);
/*
 * Runs, for an owner that takes many times per wake-up (a port): between
 * evexec__mailbox_begin() and evexec__mailbox_end() the loop is known to
 * look again, so posts write nothing and later takes read nothing.
 * begin: starts a run and takes every node posted so far (emptying the
 *   wake fd first if woken: the call comes from the fd's event);
 * more: in a run, takes what was posted since the last take, no syscall;
 * end: ends the run and returns what was posted since the last take, for
 *   the owner to deliver later (the run is over either way).
 * Each returns nodes newest first, or NULL.
 */
struct evexec__node *evexec__mailbox_begin(struct evexec__mailbox *mb, int woken);
/* Loop thread, in a run: 1 if something was posted since the last take. */
static inline int evexec__mailbox_posted(struct evexec__mailbox *mb)
{
    return atomic_load_explicit(&mb->head, memory_order_relaxed) > MAILBOX_RUNNING;
}
struct evexec__node *evexec__mailbox_more(struct evexec__mailbox *mb);
/* Loop thread, in a run: empties the wake fd (a write owed by a take before
 * the run), taking nothing. */
void evexec__mailbox_read(struct evexec__mailbox *mb);
struct evexec__node *evexec__mailbox_end(struct evexec__mailbox *mb);
/* Loop thread: no poster can still be touching the mailbox. */
int evexec__mailbox_quiet(const struct evexec__mailbox *mb);
/* Loop thread: wake-fd writes read so far. */
uint64_t evexec__mailbox_signals(const struct evexec__mailbox *mb);

/* Loop thread: makes the timer event ev run as soon as the loop has polled
 * its other events. A zero timer may need memory (libevent's timer heap):
 * if none can be had, the event is made active instead, so whatever it
 * resumes is never stranded. */
void evexec__soon(struct event *ev);
/* Loop thread: arms the timer event ev for tv from now, or, failing that,
 * makes it active now (it re-arms itself when it finds nothing due). */
void evexec__timer_arm(struct event *ev, const struct timeval *tv);

#endif /* EVEXEC_MAILBOX_INTERNAL_H */
