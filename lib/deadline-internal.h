/* SPDX-License-Identifier: MIT */
/*
 * Deadlines (deadline.c): a min-heap of entries, each a deadline in
 * monotonic nanoseconds, and one libevent timer armed for the earliest. It
 * knows nothing of jobs: a port embeds an entry in each job that has a
 * deadline and is called back when the timer fires. Loop thread only.
 * Never installed.
 */
#ifndef EVEXEC_DEADLINE_INTERNAL_H
#define EVEXEC_DEADLINE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define DEADLINE_NOT_SET UINT32_MAX

/* Embedded in what has a deadline. */
struct evexec__deadline_entry {
    uint64_t at;                   /* monotonic ns */
    uint32_t index;                /* in the heap; DEADLINE_NOT_SET: none */
};

struct event_base;
struct event;

struct evexec__deadlines {
    struct evexec__deadline_entry **heap;
    size_t len, cap;
    struct event *ev;              /* made on first use */
    struct event_base *base;
    int priority;                  /* of ev; -1: the base's default */
    void (*fire)(void *arg);       /* the timer fired: pop what is due */
    void *arg;
};

/* Sets up an empty set whose timer (made on first use) calls fire(arg). */
void evexec__deadlines_init(struct evexec__deadlines *d, struct event_base *base, int priority,
                            void (*fire)(void *), void *arg);
void evexec__deadlines_fini(struct evexec__deadlines *d);
/* Makes room for one more entry (and the timer); 0 or -ENOMEM. Then
 * evexec__deadlines_add(), which cannot fail. */
int evexec__deadlines_reserve(struct evexec__deadlines *d);
/* Adds e, due ms from now, and arms the timer if it is the earliest. */
void evexec__deadlines_add(struct evexec__deadlines *d, struct evexec__deadline_entry *e,
                           unsigned ms);
/* Takes e out (it must be in). */
void evexec__deadlines_remove(struct evexec__deadlines *d, struct evexec__deadline_entry *e);
/* e is in a heap. */
static inline int evexec__deadline_is_set(const struct evexec__deadline_entry *e)
{
    return e->index != DEADLINE_NOT_SET;
}
/* Takes out and returns the earliest entry due by now, or NULL. */
struct evexec__deadline_entry *evexec__deadlines_pop_due(struct evexec__deadlines *d,
                                                         uint64_t now);
/* Takes the timer off its base for good (a forked child's copy). */
void evexec__deadlines_detach(struct evexec__deadlines *d);
/* Arms the timer for the earliest entry left, if any. */
void evexec__deadlines_arm(struct evexec__deadlines *d);

#endif /* EVEXEC_DEADLINE_INTERNAL_H */
