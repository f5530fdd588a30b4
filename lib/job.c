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
#include <limits.h>
#include <string.h>

#include "evexec-internal.h"

#define MIN_JOB_OPTS_SIZE (offsetof(struct evexec_job_opts, wait_ms) + sizeof(int))

int evexec_submit(evexec_port *port, evexec_pool *pool, evexec_work_fn work, evexec_done_fn done,
                  void *arg, evexec_job_id *id)
{
    struct evexec_job *job;
    int rc;

    /* The default pool, or a pool timing its jobs, needs the general path. */
    if (EVEXEC_UNLIKELY(!pool || pool->hist))
        return evexec_submit_ex(port, pool, work, done, arg, NULL, id);
    if (EVEXEC_UNLIKELY(!port || !work))
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
    job->flags = EVEXEC__CLASS_NORMAL;
    atomic_store_explicit(&job->stop, 0, memory_order_relaxed);
    if (EVEXEC_UNLIKELY((rc = evexec__pool_enqueue(pool, job, 0)) < 0)) {
        evexec__port_job_unalloc(port, job);
        return rc;
    }
    port->outstanding++;
    if (id)
        *id = evexec__port_job_id(port, job);
    return 0;
}

/* Copies the caller's options over the defaults and checks them. */
static int read_job_opts(const struct evexec_job_opts *in, struct evexec_job_opts *o)
{
    static const struct evexec_job_opts defaults = EVEXEC_JOB_OPTS_INIT;
    *o = defaults;
    if (!in)
        return 0;
    int rc = evexec__check_opts_size(in, in->size, MIN_JOB_OPTS_SIZE, sizeof *o);
    if (rc < 0)
        return rc;
    memcpy(o, in, in->size < sizeof *o ? in->size : sizeof *o);
    if (o->priority < EVEXEC_PRIO_HIGH || o->priority > EVEXEC_PRIO_LOW ||
        o->timeout_ms > INT_MAX || o->wait_ms < EVEXEC_WAIT_FOREVER)
        return -EINVAL;
    return 0;
}

int evexec_submit_ex(evexec_port *port, evexec_pool *pool, evexec_work_fn work,
                     evexec_done_fn done, void *arg, const struct evexec_job_opts *opts,
                     evexec_job_id *id)
{
    struct evexec_job_opts o;
    struct evexec_job *job;
    struct job_ext *ext = NULL;
    int rc;

    if (!opts && pool && !pool->hist)
        return evexec_submit(port, pool, work, done, arg, id); /* nothing extra */
    if (!port || !work)
        return -EINVAL;
    if ((rc = evexec__port_check_thread(port)) < 0 || (rc = evexec__port_check_open(port)) < 0)
        return rc;
    if ((rc = read_job_opts(opts, &o)) < 0)
        return rc;
    if (o.wait_ms)
        return -EINVAL; /* the loop thread never waits */
    if (o.group && (rc = evexec__group_check(o.group, port)) < 0)
        return rc;
    if (!pool && !(pool = evexec__port_default_pool(port, &rc)))
        return rc;
    if (!(job = evexec__port_job_alloc(port)))
        return -ENOMEM;
    job->pool = pool;
    job->work = work;
    job->done = done;
    job->arg = arg;
    job->flags = (uint8_t)(o.priority + 1);
    atomic_store_explicit(&job->stop, 0, memory_order_relaxed);
    if (o.timeout_ms || o.group || pool->hist) {
        rc = -ENOMEM;
        if (!(ext = evexec__port_job_ext(port, job)) ||
            (o.timeout_ms && (rc = evexec__port_deadline_reserve(port)) < 0)) {
            evexec__port_job_unalloc(port, job);
            return rc;
        }
        memset(ext, 0, sizeof *ext);
        ext->job = job;
        ext->cleanup = o.cleanup;
        ext->heap_index = EXT_NO_HEAP;
        job->flags |= JOB_HAS_EXT;
    }
    if ((rc = evexec__pool_enqueue(pool, job, 0)) < 0) {
        evexec__port_job_unalloc(port, job);
        return rc;
    }
    /* Not delivered before the loop gets back to its events: safe to add
     * after the pool has it. */
    port->outstanding++;
    if (o.timeout_ms)
        evexec__port_deadline_add(port, ext, o.timeout_ms);
    if (o.group)
        evexec__group_add(o.group, ext);
    if (id)
        *id = evexec__port_job_id(port, job);
    return 0;
}

int evexec_submit_threadsafe(evexec_port *port, evexec_pool *pool, evexec_work_fn work,
                             evexec_done_fn done, void *arg, const struct evexec_job_opts *opts)
{
    struct evexec_job_opts o;
    int rc;

    if (!port || !work)
        return -EINVAL;
    if ((rc = read_job_opts(opts, &o)) < 0)
        return rc;
    if (o.timeout_ms || o.group)
        return -EINVAL; /* loop-thread features */
    if (!pool && !(pool = evexec__port_default_pool(port, &rc)))
        return rc;
    if (o.wait_ms && (evexec__port_check_thread(port) == 0 || evexec__pool_current() == pool))
        return -EDEADLK;
    return evexec__port_submit_remote(port, pool, work, done, arg, o.priority, o.wait_ms);
}

int evexec__port_cancel_job(struct evexec_port *port, struct evexec_job *job)
{
    int rc;
    EVEXEC_UNUSED(port);
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
    if (EVEXEC_UNLIKELY(job->flags & JOB_HAS_EXT) && job_ext(job)->timed_out)
        return -ENOENT; /* its callback has run: -ETIMEDOUT */
    return evexec__port_cancel_job(port, job);
}

int evexec_job_cancelled(const evexec_job *job)
{
    return job ? atomic_load_explicit(&job->stop, memory_order_relaxed) : 0;
}
