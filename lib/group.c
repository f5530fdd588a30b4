/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: groups of jobs (asyncio's gather, wait and as_completed), kept
 * entirely on the port's loop thread: no lock, no atomic.
 *
 * A member is a job submitted with evexec_job_opts.group; its link (in the
 * job's ext) puts it on the group's list of undelivered members, so
 * evexec_group_cancel() can reach them, until the port delivers it. The
 * port tells the group twice per member: evexec__group_unlink() before the
 * member's done callback (its ext is recycled then) and
 * evexec__group_member_done() after it, which is where the group's own
 * callback runs when that member decides the group. A callback decided by
 * evexec_group_close() rather than by a member is "due": the port runs it
 * from the loop (never inside the call that decided it), which this file
 * asks for through the set's kick callback.
 *
 * A group lives until its callback has run and every member has been
 * delivered, whichever comes last; a group of a released port goes with it.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "group-internal.h"

struct evexec_group {
    struct evexec__groups *set;
    evexec_group_fn fn;
    void *arg;
    int how;
    int status;                    /* ALL: first non-zero member status */
    struct evexec__group_link *members; /* undelivered */
    size_t pending;                /* members whose callback has not run */
    size_t joined;                 /* members ever */
    uint8_t closed, cancelled;
    uint8_t decided;               /* the callback is due or has run */
    uint8_t fired;                 /* the callback has run */
    uint8_t is_due;                /* on set->due */
    int due_status;
    struct evexec_group *due_next;
    struct evexec__ring ring;      /* in set->all */
};

static struct evexec_group *group_of(struct evexec__ring *r)
{
    return EVEXEC_CONTAINER(r, struct evexec_group, ring);
}

static int check_thread(const struct evexec_group *g)
{
    return pthread_equal(g->set->owner, pthread_self()) ? 0 : -EPERM;
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
    for (struct evexec__group_link *m = g->members; m; m = m->next)
        g->set->cancel(m, g->set->arg);
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
    g->due_next = g->set->due;
    g->set->due = g;
    g->set->kick(g->set->arg);
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

/* --- for the port -------------------------------------------------------- */

void evexec__groups_init(struct evexec__groups *set, pthread_t owner, void (*kick)(void *),
                         void (*cancel)(struct evexec__group_link *, void *), void *arg)
{
    ring_init(&set->all);
    set->due = NULL;
    set->owner = owner;
    set->kick = kick;
    set->cancel = cancel;
    set->arg = arg;
}

int evexec__group_new(struct evexec__groups *set, struct evexec_group **out, int how,
                      evexec_group_fn fn, void *arg)
{
    struct evexec_group *g;

    if (!evexec__group_how_valid(how))
        return -EINVAL;
    if (!(g = calloc(1, sizeof *g)))
        return -ENOMEM;
    g->set = set;
    g->how = how;
    g->fn = fn;
    g->arg = arg;
    ring_push_tail(&set->all, &g->ring);
    *out = g;
    return 0;
}

int evexec__group_check(const struct evexec__groups *set, const struct evexec_group *g)
{
    return g->set != set || g->closed || g->decided ? -EINVAL : 0;
}

void evexec__group_add(struct evexec_group *g, struct evexec__group_link *link)
{
    link->group = g;
    link->prev = NULL;
    link->next = g->members;
    if (g->members)
        g->members->prev = link;
    g->members = link;
    g->pending++;
    g->joined++;
}

struct evexec_group *evexec__group_unlink(struct evexec__group_link *link)
{
    struct evexec_group *g = link->group;
    if (!g)
        return NULL;
    if (link->prev)
        link->prev->next = link->next;
    else
        g->members = link->next;
    if (link->next)
        link->next->prev = link->prev;
    link->group = NULL;
    link->next = link->prev = NULL;
    return g;
}

void evexec__group_member_done(struct evexec_group *g, int status)
{
    assert(g->pending > 0);
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

void evexec__groups_run_due(struct evexec__groups *set)
{
    struct evexec_group *list = set->due, *g;
    set->due = NULL;
    while ((g = list) != NULL) {
        list = g->due_next;
        g->is_due = 0;
        g->fired = 1;
        if (g->fn)
            g->fn(g->due_status, g->arg);
        group_maybe_free(g);
    }
}

void evexec__groups_close_all(struct evexec__groups *set)
{
    for (struct evexec__ring *r = set->all.next; r != &set->all; r = r->next)
        if (!group_of(r)->closed)
            group_close(group_of(r));
}

void evexec__groups_fini(struct evexec__groups *set)
{
    while (!ring_empty(&set->all)) {
        struct evexec_group *g = group_of(set->all.next);
        ring_remove(&g->ring);
        free(g);
    }
}

/* --- public -------------------------------------------------------------- */

int evexec_group_close(evexec_group *g)
{
    int rc;
    if (!g)
        return -EINVAL;
    if ((rc = check_thread(g)) < 0)
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
    if ((rc = check_thread(g)) < 0)
        return rc;
    if (g->cancelled)
        return -EALREADY;
    g->cancelled = 1;
    cancel_members(g);
    if (!g->closed)
        group_close(g);
    return 0;
}
