/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: a job's life, joining the port (which owns its memory and
 * delivers it) to the pool (which runs it):
 *
 *   FREE --submit--> QUEUED --worker pops--> RUNNING --delivered--> FREE
 *          \--submit, idle worker--> RUNNING        ^
 *   QUEUED --cancel / CANCEL shutdown--> CANCELLED --'
 *
 * QUEUED -> RUNNING and QUEUED -> CANCELLED happen under the pool's mutex,
 * so exactly one of them wins. Only the port's loop thread moves a job out
 * of FREE or back into it, so an id (submission number + slot) names one
 * submission: a stale id finds a FREE slot or another number, and
 * evexec_cancel() answers -ENOENT.
 */
#include "config.h"

#include <errno.h>

#include "evexec-internal.h"

int evexec_submit(evexec_port *port, evexec_pool *pool, evexec_work_fn work, evexec_done_fn done,
                  void *arg, evexec_job_id *id)
{
    struct evexec_job *job;
    int rc;

    if (EVEXEC_UNLIKELY(!port || !pool || !work))
        return -EINVAL;
    if (EVEXEC_UNLIKELY((rc = evexec__port_check_thread(port)) < 0 ||
                        (rc = evexec__port_check_open(port)) < 0))
        return rc;
    if (EVEXEC_UNLIKELY(!(job = evexec__port_job_alloc(port))))
        return -ENOMEM;
    job->pool = pool;
    job->work = work;
    job->done = done;
    job->arg = arg;
    atomic_store_explicit(&job->stop, 0, memory_order_relaxed);
    if (EVEXEC_UNLIKELY((rc = evexec__pool_enqueue(pool, job)) < 0)) {
        evexec__port_job_unalloc(port, job);
        return rc;
    }
    port->outstanding++;
    if (id)
        *id = evexec__port_job_id(port, job);
    return 0;
}

int evexec_cancel(evexec_port *port, evexec_job_id id)
{
    struct evexec_job *job;
    int rc;

    if (!port)
        return -EINVAL;
    if ((rc = evexec__port_check_thread(port)) < 0)
        return rc;
    if (!(job = evexec__port_job_find(port, id)))
        return -ENOENT;
    switch (atomic_load_explicit(&job->state, memory_order_relaxed)) {
    case JOB_CANCELLED:
        return -EALREADY;
    case JOB_QUEUED:
        rc = evexec__pool_cancel(job->pool, job);
        if (rc != -EBUSY)
            return rc;
        /* a worker took it meanwhile */
        /* fall through */
    default:
        atomic_store_explicit(&job->stop, 1, memory_order_relaxed);
        return -EBUSY;
    }
}

int evexec_job_cancelled(const evexec_job *job)
{
    return job ? atomic_load_explicit(&job->stop, memory_order_relaxed) : 0;
}
