/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: all the glue between process pools and ports, in one file, so
 * that the rest of the process pool knows nothing of a port's insides.
 *
 * A process job travels home as an ordinary port job: its done is
 * proc_done() below and its arg (and, once complete, its result) the
 * struct proc_rec. The port job is marked RUNNING from the start, because
 * the port must never try to take it off a thread pool's queue: the
 * process pool's supervisor owns it until it completes it. So the port's
 * evexec_cancel() and evexec_port_free() only set the job's stop flag,
 * which the supervisor polls (evexec__procport_stop_requested()) and
 * answers by dropping the job if queued or killing its worker if running,
 * delivering -ECANCELED either way. Each port job holds a reference on
 * "its pool" until delivered; that pool is the process pool's carrier, a
 * thread pool that never starts a thread.
 *
 * When the port's runner interface lands, this file becomes the process
 * pool's runner ops (cancel, timed_out, release) and the carrier goes.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "evexec-internal.h"
#include "proc-internal.h"

/* The port job's done: runs the user's byte-level callback, then frees
 * the record. The port always passes 0: the outcome is in the record. */
static void proc_done(int status, void *result, void *arg)
{
    struct proc_rec *rec = arg;
    EVEXEC_UNUSED(status);
    EVEXEC_UNUSED(result);
    if (rec->done)
        rec->done(rec->status, &rec->res, rec->arg);
    evexec__procrec_free(rec);
}

/* Never called: a carrier's jobs never reach a thread. */
static void *proc_never_runs(evexec_job *job, void *arg)
{
    EVEXEC_UNUSED(job);
    return arg;
}

int evexec__procport_begin(struct evexec_port *port, struct evexec_pool *carrier,
                           struct proc_rec *rec)
{
    int rc;
    struct evexec_job *job;
    if ((rc = evexec__port_check_thread(port)) < 0 || (rc = evexec__port_check_open(port)) < 0)
        return rc;
    if (!(job = evexec__port_job_alloc(port)))
        return -ENOMEM;
    job->pool = carrier;
    job->work = proc_never_runs;
    job->done = proc_done;
    job->arg = rec;
    job->flags = EVEXEC__CLASS_NORMAL;
    atomic_store_explicit(&job->stop, 0, memory_order_relaxed);
    atomic_store_explicit(&job->state, JOB_RUNNING, memory_order_relaxed);
    rec->job = job;
    return 0;
}

void evexec__procport_abort(struct evexec_port *port, struct proc_rec *rec)
{
    evexec__port_job_unalloc(port, rec->job);
    rec->job = NULL;
}

void evexec__procport_accepted(struct evexec_port *port, struct proc_rec *rec, uint64_t *id)
{
    atomic_fetch_add_explicit(&rec->job->pool->refs, 1, memory_order_relaxed);
    port->outstanding++;
    if (id)
        *id = evexec__port_job_id(port, rec->job);
}

int evexec__procport_stop_requested(const struct proc_rec *rec)
{
    return atomic_load_explicit(&rec->job->stop, memory_order_relaxed) != 0;
}

void evexec__procport_complete(struct proc_rec *rec)
{
    rec->job->u.result = rec;
    evexec__job_complete(rec->job);
}

int evexec__procport_carrier_new(struct evexec_pool **out)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    o.max_threads = 1;
    o.max_queued = 1;
    o.name = "evexec-carrier";
    return evexec_pool_new(out, &o);
}

void evexec__procport_carrier_free(struct evexec_pool *carrier)
{
    evexec_pool_free(carrier);
}
