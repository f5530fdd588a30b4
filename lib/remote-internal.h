/* SPDX-License-Identifier: MIT */
/*
 * Jobs submitted through a port from other threads (remote.c), and the
 * port's default pool: what of a port other threads may touch, under its
 * own lock. A port embeds one struct evexec__remote. Never installed.
 */
#ifndef EVEXEC_REMOTE_INTERNAL_H
#define EVEXEC_REMOTE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "job-internal.h"

/* A job of another thread: allocated under mu, recycled once delivered,
 * freed with the port. */
struct remote_job {
    struct job_single single;      /* first member: the job */
    struct evexec__ring live;      /* in remote->live */
    struct remote_job *free_next;
};

struct evexec__remote {
    pthread_mutex_t mu;            /* guards the fields below it; count
                                      is also read without it */
    int closed;                    /* the port refuses other threads' jobs */
    struct remote_job *free;
    struct evexec__ring live;      /* accepted, not yet delivered */
    _Atomic size_t count;          /* accepted, not yet delivered */
    _Atomic(struct evexec_pool *) default_pool; /* created under mu */
    struct evexec__mailbox *home;  /* the port's */
};

/* 0 or -errno. */
int evexec__remote_init(struct evexec__remote *r, struct evexec__mailbox *home);
/* Frees the records and the default pool (once every job is delivered). */
void evexec__remote_fini(struct evexec__remote *r);
/* Any thread: evexec_submit_threadsafe() once its arguments are checked. */
int evexec__remote_submit(struct evexec__remote *r, struct evexec_pool *pool, evexec_work_fn work,
                          evexec_done_fn done, void *arg, int priority, int wait_ms);
/* Loop thread: a job that came home is a refused job's notice (no
 * callback: only its record goes back). */
static inline int evexec__remote_is_notice(const struct evexec_job *job)
{
    return job_state(job) == JOB_FREE;
}
/* Loop thread: a remote job is delivered (or a notice is home): its record
 * goes back on the free list. */
void evexec__remote_recycle(struct evexec__remote *r, struct evexec_job *job);
/* Loop thread: refuses other threads' jobs from now on, for good. */
void evexec__remote_refuse(struct evexec__remote *r);
/* Loop thread: if no job of another thread is outstanding, refuses them
 * from now on and returns 1; else 0. A loop about to finish calls it
 * last, so none can slip in between its check and its end. */
int evexec__remote_seal(struct evexec__remote *r);
/* Any thread: 1 once refusing. */
int evexec__remote_closed(struct evexec__remote *r);
/* Loop thread: cancels every remote job (the one cancel path). */
void evexec__remote_cancel_all(struct evexec__remote *r);
/* Accepted jobs of other threads not yet delivered. */
static inline size_t evexec__remote_count(struct evexec__remote *r)
{
    return atomic_load_explicit(&r->count, memory_order_relaxed);
}
/* Any thread: the default pool, created on first use; NULL: -ENOMEM or
 * -ESHUTDOWN in *rc. */
struct evexec_pool *evexec__remote_default_pool(struct evexec__remote *r, int *rc);
/* The default pool if it was made, else NULL. */
static inline struct evexec_pool *evexec__remote_default_pool_if_made(struct evexec__remote *r)
{
    return atomic_load_explicit(&r->default_pool, memory_order_acquire);
}

#endif /* EVEXEC_REMOTE_INTERNAL_H */
