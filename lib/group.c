/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: groups of jobs (asyncio's gather, wait and as_completed), kept
 * entirely on the port's loop thread: no lock, no atomic.
 *
 * A member is a job submitted with evexec_job_opts.group; its ext links it
 * into the group's list of undelivered members (so evexec_group_cancel()
 * can reach them) until the port delivers it. The port tells the group
 * twice per member: evexec__group_unlink() before the member's done
 * callback (its ext is recycled then) and evexec__group_member_done() after
 * it, which is where the group's own callback runs when that member decides
 * the group. A callback decided by evexec_group_close() rather than by a
 * member is "due": the port runs it from the loop (never inside the call
 * that decided it).
 *
 * A group lives until its callback has run and every member has been
 * delivered, whichever comes last; a group of a released port goes with it.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "evexec-internal.h"

struct evexec_group {
    struct evexec_port *port;
    evexec_group_fn fn;
    void *arg;
    int how;
    int status;                    /* ALL: first non-zero member status */
    struct job_ext *members;       /* undelivered, through ext->gnext/gprev */
    size_t pending;                /* members whose callback has not run */
    size_t joined;                 /* members ever */
    uint8_t closed, cancelled;
    uint8_t decided;               /* the callback is due or has run */
    uint8_t fired;                 /* the callback has run */
    uint8_t is_due;                /* on port->due */
    int due_status;
    struct evexec_group *due_next;
    struct evexec__ring ring;      /* in port->groups */
};

static struct evexec_group *group_of(struct evexec__ring *r)
{
    return (struct evexec_group *)((char *)r - offsetof(struct evexec_group, ring));
}

static void group_maybe_free(struct evexec_group *g)
{
    if (g->fired && !g->pending && !g->is_due) {
        ring_remove(&g->ring);
        free(g);
    }
}

static void cancel_members(struct evexec_group *g)
{
    /* Cancelling never delivers synchronously: the list stays as it is. */
    for (struct job_ext *e = g->members; e; e = e->gnext)
        evexec__port_cancel_job(g->port, e->job);
}

/* The callback runs now (from a member's delivery). */
static void group_fire(struct evexec_group *g, int status)
{
    g->decided = 1;
    if ((g->how & EVEXEC_GROUP_CANCEL_REST) && !g->cancelled) {
        g->cancelled = 1;
        cancel_members(g);
    }
    g->fired = 1;
    if (g->fn)
        g->fn(status, g->arg);
}

/* The callback runs from the loop soon (decided by a close). */
static void group_schedule(struct evexec_group *g, int status)
{
    g->decided = 1;
    if (g->how & EVEXEC_GROUP_CANCEL_REST)
        g->cancelled = 1; /* decided: nothing is left to cancel */
    g->is_due = 1;
    g->due_status = status;
    g->due_next = g->port->due;
    g->port->due = g;
    evexec__port_resume(g->port);
}

static void group_close(struct evexec_group *g)
{
    g->closed = 1;
    if (g->decided || g->pending)
        return;
    if (!g->joined)
        group_schedule(g, -ENOENT);
    else /* ALL, every member delivered before the close */
        group_schedule(g, g->status);
}

int evexec__group_check(struct evexec_group *g, struct evexec_port *port)
{
    return g->port != port || g->closed || g->decided ? -EINVAL : 0;
}

void evexec__group_add(struct evexec_group *g, struct job_ext *ext)
{
    ext->group = g;
    ext->gprev = NULL;
    ext->gnext = g->members;
    if (g->members)
        g->members->gprev = ext;
    g->members = ext;
    g->pending++;
    g->joined++;
}

void evexec__group_unlink(struct evexec_group *g, struct job_ext *ext)
{
    if (ext->gprev)
        ext->gprev->gnext = ext->gnext;
    else
        g->members = ext->gnext;
    if (ext->gnext)
        ext->gnext->gprev = ext->gprev;
    ext->group = NULL;
    ext->gnext = ext->gprev = NULL;
}

void evexec__group_member_done(struct evexec_group *g, int status)
{
    g->pending--;
    if (!g->decided) {
        if (g->how & EVEXEC_GROUP_FIRST) {
            group_fire(g, status);
        } else {
            if (!g->status)
                g->status = status;
            if (g->closed && !g->pending)
                group_fire(g, g->status);
        }
    }
    group_maybe_free(g);
}

void evexec__group_run_due(struct evexec_port *port)
{
    struct evexec_group *list = port->due, *g;
    port->due = NULL;
    while ((g = list) != NULL) {
        list = g->due_next;
        g->is_due = 0;
        g->fired = 1;
        if (g->fn)
            g->fn(g->due_status, g->arg);
        group_maybe_free(g);
    }
}

void evexec__group_close_all(struct evexec_port *port)
{
    for (struct evexec__ring *r = port->groups.next; r != &port->groups; r = r->next)
        if (!group_of(r)->closed)
            group_close(group_of(r));
}

void evexec__group_free_all(struct evexec_port *port)
{
    while (!ring_empty(&port->groups)) {
        struct evexec_group *g = group_of(port->groups.next);
        ring_remove(&g->ring);
        free(g);
    }
}

int evexec_group_new(evexec_group **out, evexec_port *port, int how, evexec_group_fn fn,
                     void *arg)
{
    struct evexec_group *g;
    int rc;

    if (!out || !port ||
        (how != EVEXEC_GROUP_ALL && how != EVEXEC_GROUP_FIRST &&
         how != (EVEXEC_GROUP_FIRST | EVEXEC_GROUP_CANCEL_REST)))
        return -EINVAL;
    if ((rc = evexec__port_check_thread(port)) < 0 || (rc = evexec__port_check_open(port)) < 0)
        return rc;
    if (!(g = calloc(1, sizeof *g)))
        return -ENOMEM;
    g->port = port;
    g->how = how;
    g->fn = fn;
    g->arg = arg;
    ring_push_tail(&port->groups, &g->ring);
    *out = g;
    return 0;
}

int evexec_group_close(evexec_group *g)
{
    int rc;
    if (!g)
        return -EINVAL;
    if ((rc = evexec__port_check_thread(g->port)) < 0)
        return rc;
    if (g->closed)
        return -EALREADY;
    group_close(g);
    return 0;
}

int evexec_group_cancel(evexec_group *g)
{
    int rc;
    if (!g)
        return -EINVAL;
    if ((rc = evexec__port_check_thread(g->port)) < 0)
        return rc;
    if (g->cancelled)
        return -EALREADY;
    g->cancelled = 1;
    cancel_members(g);
    if (!g->closed)
        group_close(g);
    return 0;
}
