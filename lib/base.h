/* SPDX-License-Identifier: MIT */
/*
 * The base every part of lib/ builds on: a few macros, the doubly linked
 * ring and the mailbox node. Nothing here knows any other part. Never
 * installed.
 *
 * The layers of lib/ (each includes only the ones below it):
 *
 *   mirror    loop.c loop-call.c  (loop-internal.h)   the loop thread
 *             future.c future-procpool.c (future-internal.h) futures
 *   executor  port-submit.c port.c (port-internal.h) submit, delivery
 *             remote.c deadline.c group.c             the port's features
 *             pool.c pool-worker.c (pool-internal.h)  the thread pool
 *             procpool*.c (procpool-internal.h)       the process pool
 *             job.c               (job-internal.h)    the job, its store,
 *                                                     states and runners
 *   base      mailbox.c thread.c error.c, base.h
 */
#ifndef EVEXEC_BASE_H
#define EVEXEC_BASE_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "evexec.h"

#define EVEXEC_UNUSED(x) ((void)(x))
#define EVEXEC_LIKELY(x) __builtin_expect(!!(x), 1)
#define EVEXEC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define EVEXEC_CACHELINE 64

/* The struct that contains member m at address p. */
#define EVEXEC_CONTAINER(p, type, m) ((type *)(void *)((char *)(p) - offsetof(type, m)))

/* Done callbacks (ports) and calls (loops) run per wake-up by default, and
 * at most. */
#define EVEXEC__DEFAULT_MAX_BATCH 128u
#define EVEXEC__MAX_MAX_BATCH (1u << 20)

/* The link of anything posted to a mailbox; first member of its owner. */
struct evexec__node {
    struct evexec__node *next;
};

/* A doubly linked ring; a ring head is a node linked to itself. */
struct evexec__ring {
    struct evexec__ring *prev, *next;
};

static inline void ring_init(struct evexec__ring *r)
{
    r->prev = r->next = r;
}

static inline int ring_empty(const struct evexec__ring *r)
{
    return r->next == r;
}

static inline void ring_remove(struct evexec__ring *r)
{
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->prev = r->next = r;
}

static inline void ring_push_tail(struct evexec__ring *head, struct evexec__ring *r)
{
    r->prev = head->prev;
    r->next = head;
    head->prev->next = r;
    head->prev = r;
}

#endif /* EVEXEC_BASE_H */
