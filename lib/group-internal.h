/* SPDX-License-Identifier: MIT */
/*
 * Groups (group.c): gather, wait and as_completed over a port's jobs. A
 * port keeps one struct evexec__groups; each job that joins a group
 * embeds a struct evexec__group_link. The group part knows nothing of
 * jobs or ports: the port tells it when a member is delivered, and it asks
 * the port, through the callbacks given at init, to cancel a member or to
 * run the port soon. Loop thread only. Never installed.
 */
#ifndef EVEXEC_GROUP_INTERNAL_H
#define EVEXEC_GROUP_INTERNAL_H

#include <pthread.h>

#include "base.h"

/* A member's place in its group, until the member is delivered. */
struct evexec__group_link {
    struct evexec_group *group;
    struct evexec__group_link *next, *prev;
};

/* Every group of one port. */
struct evexec__groups {
    struct evexec__ring all;       /* every group not yet released */
    struct evexec_group *due;      /* callbacks due from the loop */
    pthread_t owner;               /* the port's loop thread */
    void (*kick)(void *arg);       /* run evexec__groups_run_due() soon */
    void (*cancel)(struct evexec__group_link *member, void *arg);
    void *arg;
};

void evexec__groups_init(struct evexec__groups *set, pthread_t owner, void (*kick)(void *),
                         void (*cancel)(struct evexec__group_link *, void *), void *arg);
/* A valid `how` for evexec_group_new(). */
static inline int evexec__group_how_valid(int how)
{
    return how == EVEXEC_GROUP_ALL || how == EVEXEC_GROUP_FIRST ||
           how == (EVEXEC_GROUP_FIRST | EVEXEC_GROUP_CANCEL_REST);
}
/* A new group of the set (evexec_group_new() once the port checked its
 * side). 0, -EINVAL or -ENOMEM. */
int evexec__group_new(struct evexec__groups *set, struct evexec_group **out, int how,
                      evexec_group_fn fn, void *arg);
/* 0 if a job being submitted may join g: a group of this set, neither
 * closed nor decided; else -EINVAL. */
int evexec__group_check(const struct evexec__groups *set, const struct evexec_group *g);
/* Makes link (of a job just accepted) a member of g. */
void evexec__group_add(struct evexec_group *g, struct evexec__group_link *link);
/* A member is about to be delivered: takes it off its group's list and
 * returns the group (NULL if it had none). Then, after the member's done
 * callback ran, evexec__group_member_done(g, status): counts it and runs
 * the group's callback if that decides it. */
struct evexec_group *evexec__group_unlink(struct evexec__group_link *link);
/* The group link's member belongs to, or NULL. */
static inline struct evexec_group *evexec__group_of(const struct evexec__group_link *link)
{
    return link->group;
}
void evexec__group_member_done(struct evexec_group *g, int status);
/* 1 if a group callback is due: call evexec__groups_run_due(). */
static inline int evexec__groups_have_due(const struct evexec__groups *set)
{
    return set->due != NULL;
}
void evexec__groups_run_due(struct evexec__groups *set);
/* The port closes: closes every group, so every callback runs. */
void evexec__groups_close_all(struct evexec__groups *set);
/* The port is released: frees what is left. */
void evexec__groups_fini(struct evexec__groups *set);

#endif /* EVEXEC_GROUP_INTERNAL_H */
