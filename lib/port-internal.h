/* SPDX-License-Identifier: MIT */
/*
 * The port (port-submit.c, port.c): one per event_base, where jobs are
 * submitted and where finished jobs come home and are delivered on the
 * loop thread. One part in two files; only they read or write this layout; a loop (loop.c) that owns a
 * port uses the few calls at the end. Never installed.
 */
#ifndef EVEXEC_PORT_INTERNAL_H
#define EVEXEC_PORT_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "deadline-internal.h"
#include "group-internal.h"
#include "job-internal.h"
#include "mailbox-internal.h"
#include "remote-internal.h"

struct evexec_port {
    struct evexec__mailbox mb;     /* the completion list: finished jobs
                                      of every runner come home here */
    struct event_base *base;
    struct event *resume_ev;       /* zero timer: go on with a capped batch */
    pthread_t owner;               /* the loop thread */
    unsigned max_batch;
    int ev_priority;               /* of the port's events; -1: default */
    int closing;                   /* evexec_port_free() was called */
    int refusing;                  /* evexec_submit() answers -ESHUTDOWN */
    int in_run;                    /* delivering: release must wait */
    unsigned forks;                /* forks seen when it was made (port.c) */

    struct evexec__jobs jobs;      /* the port's own jobs (loop thread) */

    /* Delivery (loop thread only). batch[head..len) are finished jobs not
     * yet delivered; batch_cap is at least the number of jobs carved, so
     * it always has room for every outstanding job. Jobs of other threads
     * wait in remote_head..remote_tail, delivered after the batch. */
    struct evexec_job **batch;
    size_t batch_head, batch_len, batch_cap;
    struct evexec_job *remote_head, *remote_tail;
    size_t outstanding;            /* own jobs accepted, callback not run */
    unsigned look_ns, look_idle;   /* port_look()'s budget (port.c) */
    int run_open;                  /* a run goes on at the next resume */
    /* Gathering under load (port.c): the timer that ends a gathering, the
     * longest delay asked for, and the rate window behind the estimate
     * of the jobs' time away. */
    struct event *gather_ev;       /* EV_READ on its timerfd (made with
                                      the port), or NULL: never gathers */
    unsigned gather_max_ns;        /* 0: never gathers */
    uint64_t rate_t0, rate_n0;     /* window start: time, port->delivered */
    uint64_t away_ns;              /* last estimate; 0: none yet */
    size_t timed_out_away;         /* delivered -ETIMEDOUT, not yet home */
    uint64_t delivered, batches, gathered;
    /* Called at the end of a delivery run that left nothing outstanding
     * (the loop that owns the port resumes its stop). */
    void (*idle_hook)(void *arg);
    void *idle_arg;

    struct evexec__deadlines deadlines; /* loop thread only */
    struct evexec__groups groups;  /* loop thread only */
    struct evexec__remote remote;  /* what other threads touch */
};

/* 0 on the port's loop thread, else -EPERM. */
static inline int port_check_thread(const struct evexec_port *port)
{
    return pthread_equal(port->owner, pthread_self()) ? 0 : -EPERM;
}

/* 0, or -ESHUTDOWN once the port was freed or made to refuse jobs. */
static inline int port_check_open(const struct evexec_port *port)
{
    return port->closing || port->refusing ? -ESHUTDOWN : 0;
}

/* Loop thread: submits a job to any runner (a runner's own submit call
 * on a port, e.g. a process pool's), as evexec_submit_ex() does for a
 * thread pool: the same checks, options, id and callback contract. 0 or
 * a negative errno (and no callback). */
int evexec__port_submit(struct evexec_port *port, struct evexec__runner *runner,
                        evexec_work_fn work, evexec_done_fn done, void *arg,
                        const struct evexec_job_opts *opts, evexec_job_id *id);
/* Loop thread: a loop's own port: fn(arg) runs after every delivery run
 * that leaves nothing outstanding; evexec_port_free() answers -EPERM. NULL
 * fn makes it an ordinary port again. */
void evexec__port_set_idle_hook(struct evexec_port *port, void (*fn)(void *), void *arg);
/* Loop thread: jobs (own or other threads') not yet delivered, a group
 * callback due, or a wake still owed: the port cannot be released yet. */
int evexec__port_busy(struct evexec_port *port);
/* Loop thread: from now on the port refuses new jobs, its own thread's
 * (-ESHUTDOWN) and other threads' alike. There is no way back. */
void evexec__port_refuse(struct evexec_port *port);
/* Loop thread: cancels the port's queued jobs and sets the stop flag of
 * its running ones; each still gets its callback from the loop. */
void evexec__port_cancel_all(struct evexec_port *port);
/* Loop thread: if no job of another thread is outstanding, refuses them
 * from now on and returns 1; else 0 (see evexec__remote_seal()). */
int evexec__port_seal(struct evexec_port *port);

#endif /* EVEXEC_PORT_INTERNAL_H */
