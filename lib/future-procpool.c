/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: evexec_procpool_call(): a process pool's job for any thread,
 * with a future instead of a port (evexec_pool_call()'s counterpart).
 *
 * The record has no port job: the supervisor completes the future itself
 * (through the record's fcomplete, future_complete() here), with the record's outcome as the status
 * and a pointer to its struct evexec_proc_result as the result, valid
 * until the future is freed. References: the holder's handle and the
 * pool's side (dropped once the supervisor has completed the record); the
 * future keeps the pool's memory (one pool reference) until it is freed.
 *
 * Cancel: a queued job is taken off the queue; a running one is killed
 * (its record's fstop, which the supervisor answers like a port's stop):
 * the future completes as -ECANCELED at once either way.
 */
#include "config.h"

#ifdef EVEXEC_HAVE_PROCPOOL

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base.h"
#include "future-internal.h"
#include "procpool-internal.h"

struct proc_future {
    struct evexec_future head;     /* first */
    struct proc_rec *rec;
    struct evexec_procpool *pp;
};

static struct proc_future *of(const struct evexec_future *f)
{
    return (struct proc_future *)(void *)f;
}

static void future_complete(struct proc_rec *rec)
{
    struct evexec_future *f = rec->fut;
    evexec__future_settle(f, rec->status, &rec->res);
    evexec__future_unref(f); /* the pool's side */
}

static int pf_cancel(struct evexec_future *f)
{
    struct proc_future *pf = of(f);
    if (evexec__future_is_done(f))
        return -EALREADY;
    if (evexec__procpool_cancel(pf->pp, pf->rec, 0) == 0) {
        /* Off the queue: the supervisor will never see it again. */
        int rc = evexec__future_settle(f, -ECANCELED, NULL) ? 0 : -EALREADY;
        evexec__future_unref(f);
        return rc;
    }
    int rc = evexec__future_cancel_now(f, NULL);
    if (rc == 0) {
        atomic_store(&pf->rec->fstop, 1);
        evexec__procpool_stop(pf->pp);
    }
    return rc;
}

static int pf_waits_for_itself(const struct evexec_future *f)
{
    EVEXEC_UNUSED(f);
    return 0; /* no thread of the daemon runs the work */
}

static void pf_destroy(struct evexec_future *f)
{
    struct proc_future *pf = of(f);
    evexec__procrec_free(pf->rec);
    evexec__procpool_release(pf->pp, 1);
}

static const struct evexec__future_ops proc_future_ops = {
    .cancel = pf_cancel,
    .waits_for_itself = pf_waits_for_itself,
    .destroy = pf_destroy,
};

/* Makes a future of rec, built by the caller, and enqueues it; on error
 * (-ENOMEM, or the pool's refusal) the caller undoes what it built. */
static int call_rec(evexec_procpool *pp, struct proc_rec *rec, evexec_future **out)
{
    struct proc_future *pf;
    int rc;

    if (!(pf = (struct proc_future *)evexec__future_new(sizeof *pf, &proc_future_ops, 2)))
        return -ENOMEM;
    pf->rec = rec;
    pf->pp = pp;
    rec->fut = &pf->head;
    rec->fcomplete = future_complete;
    rec->cls = 1; /* normal */
    if ((rc = evexec__procpool_enqueue(pp, rec)) < 0) {
        pf->pp = NULL;
        pf->rec = NULL;
        evexec__future_discard(&pf->head);
        return rc;
    }
    *out = &pf->head;
    return 0;
}

int evexec_procpool_call(evexec_procpool *pp, evexec_proc_work_fn work, const void *in,
                         size_t in_len, evexec_future **out)
{
    struct proc_rec *rec;
    int rc;

    if (!pp || !work || !out || (!in && in_len))
        return -EINVAL;
    if (!(rec = evexec__procrec_new(pp, work, in, in_len, NULL, NULL, &rc)))
        return rc;
    if ((rc = call_rec(pp, rec, out)) < 0)
        evexec__procrec_free(rec);
    return rc;
}

int evexec_procpool_call_input(evexec_procpool *pp, evexec_proc_work_fn work,
                               evexec_proc_input *in, evexec_future **out)
{
    struct proc_rec *rec;
    int rc;

    if (!pp || !work || !in || !out)
        return -EINVAL;
    rec = evexec__input_rec(in);
    if ((rc = evexec__procrec_arm_input(pp, rec, work, NULL, NULL)) < 0)
        return rc;
    if ((rc = call_rec(pp, rec, out)) < 0)
        evexec__procrec_disarm_input(rec);
    else
        evexec__procrec_input_submitted(pp, rec);
    return rc;
}

#else /* no process pools here: lib/procpool-stub.c answers the rest */

#include <errno.h>

#include "base.h"

int evexec_procpool_call(evexec_procpool *pool, evexec_proc_work_fn work, const void *in,
                         size_t in_len, evexec_future **out)
{
    EVEXEC_UNUSED(pool);
    EVEXEC_UNUSED(work);
    EVEXEC_UNUSED(in);
    EVEXEC_UNUSED(in_len);
    EVEXEC_UNUSED(out);
    return -ENOTSUP;
}

int evexec_procpool_call_input(evexec_procpool *pool, evexec_proc_work_fn work,
                               evexec_proc_input *in, evexec_future **out)
{
    EVEXEC_UNUSED(pool);
    EVEXEC_UNUSED(work);
    EVEXEC_UNUSED(in);
    EVEXEC_UNUSED(out);
    return -ENOTSUP;
}

#endif /* EVEXEC_HAVE_PROCPOOL */
