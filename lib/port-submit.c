/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: submitting jobs through a port, on its loop thread (and, for
 * evexec_submit_threadsafe(), from any thread): take a job from the port's
 * store (job.c), fill it with evexec__job_init(), hand it to its runner
 * (pool.c for threads, through the runner's ops for any other). A failed
 * submit leaves no trace and runs no callback. Delivery is port.c's.
 *
 * The store grows by chunks; the port's batch (port.c) must always have
 * room for every job that can be outstanding, so it grows here with it,
 * where a failure is still a plain -ENOMEM for the submitter.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "error-internal.h"
#include "pool.h"
#include "port-internal.h"

#define MIN_JOB_OPTS_SIZE (offsetof(struct evexec_job_opts, wait_ms) + sizeof(int))

/* One more chunk of jobs, and room in the batch for every job it adds. */
static int port_grow(struct evexec_port *port)
{
    size_t bcap = evexec__jobs_carved(&port->jobs) + EVEXEC_JOBS_PER_CHUNK;
    if (bcap > port->batch_cap) {
        struct evexec_job **b = realloc(port->batch, bcap * sizeof *b);
        if (!b)
            return -ENOMEM;
        port->batch = b;
        port->batch_cap = bcap;
    }
    return evexec__jobs_grow(&port->jobs);
}

static inline struct evexec_job *port_job_alloc(struct evexec_port *port)
{
    struct evexec_job *job = evexec__jobs_alloc(&port->jobs);
    if (EVEXEC_UNLIKELY(!job) && port_grow(port) == 0)
        job = evexec__jobs_alloc(&port->jobs);
    return job;
}

int evexec_submit(evexec_port *port, evexec_pool *pool, evexec_work_fn work, evexec_done_fn done,
                  void *arg, evexec_job_id *id)
{
    struct evexec_job *job;
    int rc;

    /* The default pool, or a pool timing its jobs, needs the general path. */
    if (EVEXEC_UNLIKELY(!pool || (evexec__pool_runner(pool)->flags & RUNNER_WANTS_EXT)))
        return evexec_submit_ex(port, pool, work, done, arg, NULL, id);
    if (EVEXEC_UNLIKELY(!port || !work))
        return -EINVAL;
    if (EVEXEC_UNLIKELY((rc = port_check_thread(port)) < 0 || (rc = port_check_open(port)) < 0))
        return rc;
    if (EVEXEC_UNLIKELY(!(job = port_job_alloc(port))))
        return -ENOMEM;
    evexec__job_init(job, evexec__pool_runner(pool), work, done, arg, EVEXEC__CLASS_NORMAL);
    if (EVEXEC_UNLIKELY((rc = evexec__pool_enqueue(pool, job, 0)) < 0)) {
        evexec__jobs_free(&port->jobs, job);
        return rc;
    }
    port->outstanding++;
    if (id)
        *id = evexec__jobs_id(job);
    return 0;
}

/* Reads and checks a caller's job options (both submits). */
static int read_job_opts(const struct evexec_job_opts *in, struct evexec_job_opts *o)
{
    static const struct evexec_job_opts defaults = EVEXEC_JOB_OPTS_INIT;
    *o = defaults;
    int rc = evexec__opts_read(o, sizeof *o, in, MIN_JOB_OPTS_SIZE);
    if (rc < 0)
        return rc;
    if (o->priority < EVEXEC_PRIO_HIGH || o->priority > EVEXEC_PRIO_LOW ||
        o->timeout_ms > INT_MAX || o->wait_ms < EVEXEC_WAIT_FOREVER)
        return -EINVAL;
    return 0;
}

/* The checks of a submit with options, before any runner is chosen. */
static int submit_prepare(struct evexec_port *port, const struct evexec_job_opts *opts,
                          struct evexec_job_opts *o)
{
    int rc;
    if ((rc = port_check_thread(port)) < 0 || (rc = port_check_open(port)) < 0)
        return rc;
    if ((rc = read_job_opts(opts, o)) < 0)
        return rc;
    if (o->wait_ms)
        return -EINVAL; /* the loop thread never waits */
    if (o->group && (rc = evexec__group_check(&port->groups, o->group)) < 0)
        return rc;
    return 0;
}

/* Submits a job with checked options to any runner. */
static int port_submit(struct evexec_port *port, struct evexec__runner *runner,
                       evexec_work_fn work, evexec_done_fn done, void *arg,
                       const struct evexec_job_opts *o, evexec_job_id *id)
{
    struct evexec_job *job;
    struct job_ext *ext = NULL;
    unsigned flags = (unsigned)(o->priority + 1);
    int rc;

    if (!(job = port_job_alloc(port)))
        return -ENOMEM;
    if (o->timeout_ms || o->group || (runner->flags & RUNNER_WANTS_EXT)) {
        rc = -ENOMEM;
        if (!(ext = evexec__jobs_ext(&port->jobs, job)) ||
            (o->timeout_ms && (rc = evexec__deadlines_reserve(&port->deadlines)) < 0)) {
            evexec__jobs_free(&port->jobs, job);
            return rc;
        }
        evexec__job_ext_init(ext, job, o->cleanup);
        flags |= JOB_HAS_EXT;
    }
    evexec__job_init(job, runner, work, done, arg, flags);
    if ((rc = runner->ops->enqueue(runner, job, 0)) < 0) {
        evexec__jobs_free(&port->jobs, job);
        return rc;
    }
    /* Not delivered before the loop gets back to its events: safe to add
     * after the runner has it. */
    port->outstanding++;
    if (o->timeout_ms)
        evexec__deadlines_add(&port->deadlines, &ext->deadline, o->timeout_ms);
    if (o->group)
        evexec__group_add(o->group, &ext->group);
    if (id)
        *id = evexec__jobs_id(job);
    return 0;
}

int evexec_submit_ex(evexec_port *port, evexec_pool *pool, evexec_work_fn work,
                     evexec_done_fn done, void *arg, const struct evexec_job_opts *opts,
                     evexec_job_id *id)
{
    struct evexec_job_opts o;
    int rc;

    if (!opts && pool && !(evexec__pool_runner(pool)->flags & RUNNER_WANTS_EXT))
        return evexec_submit(port, pool, work, done, arg, id); /* nothing extra */
    if (!port || !work)
        return -EINVAL;
    if ((rc = submit_prepare(port, opts, &o)) < 0)
        return rc;
    if (!pool && !(pool = evexec__remote_default_pool(&port->remote, &rc)))
        return rc;
    return port_submit(port, evexec__pool_runner(pool), work, done, arg, &o, id);
}

int evexec__port_submit(struct evexec_port *port, struct evexec__runner *runner,
                        evexec_work_fn work, evexec_done_fn done, void *arg,
                        const struct evexec_job_opts *opts, evexec_job_id *id)
{
    struct evexec_job_opts o;
    int rc;

    if (!port || !runner || !work)
        return -EINVAL;
    if ((rc = submit_prepare(port, opts, &o)) < 0)
        return rc;
    return port_submit(port, runner, work, done, arg, &o, id);
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
    if (o.timeout_ms || o.group || o.cleanup)
        return -EINVAL; /* loop-thread features */
    if (o.wait_ms && port_check_thread(port) == 0)
        return -EDEADLK; /* the loop thread never waits */
    if (!pool && !(pool = evexec__remote_default_pool(&port->remote, &rc)))
        return rc;
    if (o.wait_ms && evexec__pool_current() == pool)
        return -EDEADLK; /* it would wait for room that only it can make */
    return evexec__remote_submit(&port->remote, pool, work, done, arg, o.priority, o.wait_ms);
}

int evexec_cancel(evexec_port *port, evexec_job_id id)
{
    struct evexec_job *job;
    int rc;

    if (!port)
        return -EINVAL;
    if ((rc = port_check_thread(port)) < 0)
        return rc;
    if (!(job = evexec__jobs_find(&port->jobs, id)))
        return -ENOENT;
    if (EVEXEC_UNLIKELY(job->flags & JOB_HAS_EXT) && job_ext(job)->timed_out)
        return -ENOENT; /* its callback has run: -ETIMEDOUT */
    return evexec__job_cancel(job);
}

int evexec_group_new(evexec_group **out, evexec_port *port, int how, evexec_group_fn fn,
                     void *arg)
{
    int rc;
    if (!out || !port || !evexec__group_how_valid(how))
        return -EINVAL;
    if ((rc = port_check_thread(port)) < 0 || (rc = port_check_open(port)) < 0)
        return rc;
    return evexec__group_new(&port->groups, out, how, fn, arg);
}

int evexec_port_default_pool(evexec_port *port, evexec_pool **out)
{
    int rc = 0;
    if (!port || !out)
        return -EINVAL;
    if (evexec__remote_closed(&port->remote))
        return -ESHUTDOWN;
    struct evexec_pool *pool = evexec__remote_default_pool(&port->remote, &rc);
    if (!pool)
        return rc;
    *out = pool;
    return 0;
}
