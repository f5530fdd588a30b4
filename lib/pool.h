/* SPDX-License-Identifier: MIT */
/*
 * The thread pool as the rest of lib/ sees it: a runner (job-internal.h)
 * that takes jobs through evexec__pool_enqueue(). Its layout is private
 * to pool.c and pool-worker.c (pool-internal.h). Never installed.
 */
#ifndef EVEXEC_POOL_H
#define EVEXEC_POOL_H

#include "job-internal.h"

/* The pool's runner: struct evexec_pool begins with it. */
static inline struct evexec__runner *evexec__pool_runner(struct evexec_pool *pool)
{
    return (struct evexec__runner *)(void *)pool;
}

/* Hands the job (filled by evexec__job_init()) to the pool: from the loop
 * thread of the job's port, or from any thread for a single or direct
 * job. With a full queue, waits up to wait_ms for room (0: not at all;
 * EVEXEC_WAIT_FOREVER). 0 or -EAGAIN/-ETIMEDOUT/-ESHUTDOWN/-ENOMEM; on
 * error the pool keeps no trace of the job. On success the job holds a
 * reference on the pool until it is delivered (the runner's release). */
int evexec__pool_enqueue(struct evexec_pool *pool, struct evexec_job *job, int wait_ms);
/* The pool whose worker the calling thread is, or NULL. */
struct evexec_pool *evexec__pool_current(void);
/* A port's default pool: evexec_pool_free() refuses it (-EPERM) from now
 * on; its port frees it with evexec__pool_free_owned(). Before the pool is
 * shared with any other thread. */
void evexec__pool_set_port_owned(struct evexec_pool *pool);
int evexec__pool_free_owned(struct evexec_pool *pool);

#endif /* EVEXEC_POOL_H */
