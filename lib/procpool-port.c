/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: all the glue between process pools and ports, in one file: the
 * process pool as a runner (job-internal.h), and its submit.
 *
 * A process job travels as an ordinary port job, submitted through
 * evexec__port_submit(), so priorities, deadlines, groups, ids and the
 * callback contract are the port's. Its work function never runs (the
 * worker process runs the byte-level one); its done is proc_done() below
 * and its arg the struct proc_rec, which is also its result once complete.
 * proc_done() runs the user's callback with the outcome kept in the record
 * and frees the record.
 *
 * The runner ops: enqueue and cancel (a queued job) go to the pool's
 * queue; stop (evexec_cancel() or a deadline on a running job) wakes the
 * supervisor, which kills the job's worker; timed_out counts; release
 * drops the references delivered jobs held on the pool.
 *
 * A deadline delivers -ETIMEDOUT at once, through proc_done() with no
 * result, while the job is still away: if it was taken off the queue
 * (CANCELLED) it comes home with no result and nothing more is called, so
 * the record is freed then; if it runs, it comes home later with the
 * record as its result, which the port hands to the cleanup proc_late().
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base.h"
#include "error-internal.h"
#include "job-internal.h"
#include "port-internal.h"
#include "procpool-internal.h"
#include "thread-internal.h"

/* The port job's done. */
static void proc_done(int status, void *result, void *arg)
{
    struct proc_rec *rec = arg;
    if (status == -ETIMEDOUT && !result) {
        static const struct evexec_proc_result none;
        int away = job_state(rec->job) != JOB_CANCELLED;
        if (rec->done)
            rec->done(-ETIMEDOUT, &none, rec->arg);
        if (!away)
            evexec__procrec_free(rec);
        return; /* else proc_late() frees it when it comes home */
    }
    if (rec->done)
        rec->done(status == -ECANCELED ? -ECANCELED : rec->status, &rec->res, rec->arg);
    evexec__procrec_free(rec);
}

/* A job whose deadline passed comes home. */
static void proc_late(void *result, void *arg)
{
    EVEXEC_UNUSED(arg);
    evexec__procrec_free(result);
}

/* Never called: the worker process runs the job. */
static void *proc_never_runs(evexec_job *job, void *arg)
{
    EVEXEC_UNUSED(job);
    return arg;
}

/* The job options a process pool's job takes (a size-versioned struct);
 * a passed deadline's late job is freed when it comes home. */
static int read_opts(const struct evexec_job_opts *opts, struct evexec_job_opts *o)
{
    int rc = evexec__opts_read(o, sizeof *o, opts,
                               offsetof(struct evexec_job_opts, wait_ms) + sizeof(int));
    o->cleanup = proc_late;
    return rc;
}

/* Submits rec, built by the caller, through port; on error the caller
 * undoes what it built. */
static int submit_rec(evexec_port *port, evexec_procpool *pp, struct proc_rec *rec,
                      const struct evexec_job_opts *o, evexec_job_id *id)
{
    if (o->timeout_ms)
        rec->deadline = evexec__now_ns() + (uint64_t)o->timeout_ms * 1000000u;
    return evexec__port_submit(port, (struct evexec__runner *)pp, proc_never_runs, proc_done, rec,
                               o, id);
}

int evexec_procpool_submit(evexec_port *port, evexec_procpool *pp, evexec_proc_work_fn work,
                           const void *in, size_t in_len, evexec_proc_done_fn done, void *arg,
                           const struct evexec_job_opts *opts, evexec_job_id *id)
{
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    struct proc_rec *rec;
    int rc;

    if (!port || !pp || !work || (!in && in_len))
        return -EINVAL;
    if ((rc = read_opts(opts, &o)) < 0)
        return rc;
    if (!(rec = evexec__procrec_new(pp, work, in, in_len, done, arg, &rc)))
        return rc;
    if ((rc = submit_rec(port, pp, rec, &o, id)) < 0)
        evexec__procrec_free(rec);
    return rc;
}

int evexec_procpool_submit_input(evexec_port *port, evexec_procpool *pp,
                                 evexec_proc_work_fn work, evexec_proc_input *in,
                                 evexec_proc_done_fn done, void *arg,
                                 const struct evexec_job_opts *opts, evexec_job_id *id)
{
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    struct proc_rec *rec;
    int rc;

    if (!port || !pp || !work || !in)
        return -EINVAL;
    if ((rc = read_opts(opts, &o)) < 0)
        return rc;
    rec = evexec__input_rec(in);
    if ((rc = evexec__procrec_arm_input(pp, rec, work, done, arg)) < 0)
        return rc;
    if ((rc = submit_rec(port, pp, rec, &o, id)) < 0)
        evexec__procrec_disarm_input(rec);
    else
        evexec__procrec_input_submitted(pp, rec);
    return rc;
}

int evexec__procport_stop_requested(const struct proc_rec *rec)
{
    if (!rec->job)
        return atomic_load(&rec->fstop);
    return atomic_load_explicit(&rec->job->stop, memory_order_relaxed) != 0;
}

void evexec__procport_complete(struct proc_rec *rec)
{
    if (!rec->job) {
        rec->fcomplete(rec); /* a future's (future-procpool.c) */
        return;
    }
    rec->job->u.result = rec;
    evexec__job_complete(rec->job);
}

/* --- the runner ---------------------------------------------------------- */

static int op_enqueue(struct evexec__runner *r, struct evexec_job *job, int wait_ms)
{
    struct proc_rec *rec = job->arg;
    EVEXEC_UNUSED(wait_ms);
    rec->job = job;
    rec->cls = job_class(job);
    return evexec__procpool_enqueue((struct evexec_procpool *)r, rec);
}

static int op_cancel(struct evexec__runner *r, struct evexec_job *job)
{
    /* A deadline cancels before it says so (op_timed_out()). */
    int deadline = (job->flags & JOB_HAS_EXT) && job_ext(job)->timed_out;
    int rc = evexec__procpool_cancel((struct evexec_procpool *)r, job->arg, deadline);
    if (rc == 0)
        evexec__job_complete(job); /* CANCELLED: home as -ECANCELED */
    return rc;
}

static void op_stop(struct evexec__runner *r, struct evexec_job *job)
{
    EVEXEC_UNUSED(job);
    evexec__procpool_stop((struct evexec_procpool *)r);
}

static void op_timed_out(struct evexec__runner *r, struct evexec_job *job)
{
    evexec__procpool_count_timeout((struct evexec_procpool *)r, job->arg);
}

static void op_release(struct evexec__runner *r, unsigned long n)
{
    evexec__procpool_release((struct evexec_procpool *)r, n);
}

const struct evexec__runner_ops evexec__procpool_ops = {
    .enqueue = op_enqueue,
    .cancel = op_cancel,
    .stop = op_stop,
    .timed_out = op_timed_out,
    .release = op_release,
};
