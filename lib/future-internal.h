/* SPDX-License-Identifier: MIT */
/*
 * Futures (future.c): the waiting side of a call posted to a loop or of a
 * job run by a pool for any thread. This header gives the future's common
 * head and the calls its makers use; what a kind adds (a loop's call, a
 * pool's job) lives in the maker's own struct, which begins with the
 * head, and in its ops. future.c knows no loop. Never installed.
 */
#ifndef EVEXEC_FUTURE_INTERNAL_H
#define EVEXEC_FUTURE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "base.h"

enum future_state {
    FUTURE_QUEUED = 0,  /* posted / in the pool, not started */
    FUTURE_RUNNING,     /* a call's fn has run, its promise is unsettled */
    FUTURE_DONE         /* status and result are final */
};

struct evexec_future;

/* What differs between kinds of future. */
struct evexec__future_ops {
    /* evexec_future_cancel() */
    int (*cancel)(struct evexec_future *f);
    /* Would waiting on the calling thread wait for itself? */
    int (*waits_for_itself)(const struct evexec_future *f);
    /* The last reference is going (optional): let go of what the kind
     * holds before the memory is freed. */
    void (*destroy)(struct evexec_future *f);
};

/*
 * The head of every future, the first member of its maker's struct (an
 * evexec_promise * is the same pointer, for calls). Reference counted:
 * the holder's handle, the maker's side, and a cancel notice in flight.
 * Every change of state happens under mu, so exactly one completion wins.
 * The state is also an atomic, stored with release after status and
 * result, so a completed future is read without the lock.
 */
struct evexec_future {
    struct evexec__node link;      /* first: a call is posted by it */
    const struct evexec__future_ops *ops;
    _Atomic uint8_t state;         /* enum future_state; changes under mu */
    _Atomic unsigned refs;
    unsigned waiters;              /* under mu */
    int status;                    /* under mu until DONE, then final */
    void *result;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* Allocates size bytes (a maker's struct that begins with the head), zeroed,
 * with refs references and state QUEUED. NULL: -ENOMEM. */
struct evexec_future *evexec__future_new(size_t size, const struct evexec__future_ops *ops,
                                         unsigned refs);
/* Frees a future that was never handed out. */
void evexec__future_discard(struct evexec_future *f);
void evexec__future_ref(struct evexec_future *f);
void evexec__future_unref(struct evexec_future *f);
/* Completes f unless already DONE; wakes its waiters. 1 if this call
 * completed it. */
int evexec__future_settle(struct evexec_future *f, int status, void *result);
/* QUEUED -> RUNNING: 1, or 0 if it was completed first (cancelled). */
int evexec__future_start(struct evexec_future *f);
/* The holder cancels: completes f as -ECANCELED unless DONE; if it was
 * RUNNING, calls running(f) under f's mutex (a loop posts its cancel
 * notice there, so a loop that sees f complete sees the notice coming).
 * 0, or -EALREADY if it was DONE. */
int evexec__future_cancel_now(struct evexec_future *f, void (*running)(struct evexec_future *));
/* Blocks until f is DONE (no timeout). */
void evexec__future_wait_done(struct evexec_future *f);

static inline int evexec__future_is_done(const struct evexec_future *f)
{
    return atomic_load_explicit(&f->state, memory_order_acquire) == FUTURE_DONE;
}

#endif /* EVEXEC_FUTURE_INTERNAL_H */
