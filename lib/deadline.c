/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: deadlines, kept on one loop thread: a binary min-heap of entries
 * and a single libevent timer armed for the earliest. An entry taken out
 * before it is due (its job was delivered in time) leaves the heap in
 * O(log n); the timer is not re-armed for that: if it fires for nothing,
 * its owner pops nothing and re-arms it for the new earliest.
 *
 * What a passed deadline means is the owner's business (a port delivers
 * the job -ETIMEDOUT and stops it): this file only keeps time.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include <event2/event.h>

#include "deadline-internal.h"
#include "mailbox-internal.h"
#include "thread-internal.h"

static void heap_set(struct evexec__deadlines *d, size_t i, struct evexec__deadline_entry *e)
{
    d->heap[i] = e;
    e->index = (uint32_t)i;
}

static void heap_sift_up(struct evexec__deadlines *d, size_t i)
{
    struct evexec__deadline_entry *e = d->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (d->heap[parent]->at <= e->at)
            break;
        heap_set(d, i, d->heap[parent]);
        i = parent;
    }
    heap_set(d, i, e);
}

static void heap_sift_down(struct evexec__deadlines *d, size_t i)
{
    struct evexec__deadline_entry *e = d->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= d->len)
            break;
        if (child + 1 < d->len && d->heap[child + 1]->at < d->heap[child]->at)
            child++;
        if (e->at <= d->heap[child]->at)
            break;
        heap_set(d, i, d->heap[child]);
        i = child;
    }
    heap_set(d, i, e);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct evexec__deadlines *d = arg;
    EVEXEC_UNUSED(fd);
    EVEXEC_UNUSED(what);
    d->fire(d->arg);
}

void evexec__deadlines_init(struct evexec__deadlines *d, struct event_base *base, int priority,
                            void (*fire)(void *), void *arg)
{
    d->heap = NULL;
    d->len = d->cap = 0;
    d->ev = NULL;
    d->base = base;
    d->priority = priority;
    d->fire = fire;
    d->arg = arg;
}

void evexec__deadlines_fini(struct evexec__deadlines *d)
{
    if (d->ev)
        event_free(d->ev);
    d->ev = NULL;
    free(d->heap);
    d->heap = NULL;
    d->len = d->cap = 0;
}

void evexec__deadlines_detach(struct evexec__deadlines *d)
{
    if (d->ev)
        event_del(d->ev);
}

void evexec__deadlines_remove(struct evexec__deadlines *d, struct evexec__deadline_entry *e)
{
    size_t i = e->index;
    assert(i < d->len && d->heap[i] == e);
    struct evexec__deadline_entry *last = d->heap[--d->len];
    e->index = DEADLINE_NOT_SET;
    if (last == e)
        return;
    heap_set(d, i, last);
    heap_sift_up(d, i);
    heap_sift_down(d, last->index);
}

struct evexec__deadline_entry *evexec__deadlines_pop_due(struct evexec__deadlines *d, uint64_t now)
{
    if (!d->len || d->heap[0]->at > now)
        return NULL;
    struct evexec__deadline_entry *e = d->heap[0];
    evexec__deadlines_remove(d, e);
    return e;
}

void evexec__deadlines_arm(struct evexec__deadlines *d)
{
    if (!d->len)
        return;
    uint64_t now = evexec__now_ns(), at = d->heap[0]->at;
    uint64_t wait = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(wait / 1000000000u), (suseconds_t)(wait % 1000000000u / 1000u)};
    if (wait % 1000u) /* round up: never fire early */
        tv.tv_usec++;
    evexec__timer_arm(d->ev, &tv); /* no memory: fires now and re-arms */
}

int evexec__deadlines_reserve(struct evexec__deadlines *d)
{
    if (!d->ev) {
        if (!(d->ev = evtimer_new(d->base, on_timer, d)))
            return -ENOMEM;
        if (d->priority >= 0 && event_priority_set(d->ev, d->priority) < 0) {
            event_free(d->ev);
            d->ev = NULL;
            return -EINVAL;
        }
    }
    if (d->len == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        struct evexec__deadline_entry **h = realloc(d->heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        d->heap = h;
        d->cap = cap;
    }
    return 0;
}

void evexec__deadlines_add(struct evexec__deadlines *d, struct evexec__deadline_entry *e,
                           unsigned ms)
{
    e->at = evexec__now_ns() + (uint64_t)ms * 1000000u;
    d->heap[d->len] = e;
    heap_sift_up(d, d->len++);
    if (e->index == 0)
        evexec__deadlines_arm(d);
}
