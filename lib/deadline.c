/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: deadlines of a port's jobs (evexec_job_opts.timeout_ms), kept on
 * its loop thread: a binary min-heap of the exts of jobs that have one, and
 * a single libevent timer armed for the earliest. A job delivered in time
 * leaves the heap (O(log n)); the timer is not re-armed for that: if it
 * fires for nothing it simply re-arms for the new earliest.
 *
 * When a deadline passes first, the job's callback runs at once with
 * -ETIMEDOUT and the job is stopped (taken off its queue, or its stop flag
 * set). It still belongs to the pool until a worker or the cancel sends it
 * home; the port then recycles it without a second callback and hands a
 * late result to the job's cleanup function (port.c, deliver_ext()).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include <event2/event.h>

#include "evexec-internal.h"

static void heap_set(struct evexec_port *port, size_t i, struct job_ext *e)
{
    port->heap[i] = e;
    e->heap_index = (uint32_t)i;
}

static void heap_sift_up(struct evexec_port *port, size_t i)
{
    struct job_ext *e = port->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (port->heap[parent]->deadline <= e->deadline)
            break;
        heap_set(port, i, port->heap[parent]);
        i = parent;
    }
    heap_set(port, i, e);
}

static void heap_sift_down(struct evexec_port *port, size_t i)
{
    struct job_ext *e = port->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= port->heap_len)
            break;
        if (child + 1 < port->heap_len &&
            port->heap[child + 1]->deadline < port->heap[child]->deadline)
            child++;
        if (e->deadline <= port->heap[child]->deadline)
            break;
        heap_set(port, i, port->heap[child]);
        i = child;
    }
    heap_set(port, i, e);
}

void evexec__port_deadline_remove(struct evexec_port *port, struct job_ext *e)
{
    size_t i = e->heap_index;
    struct job_ext *last = port->heap[--port->heap_len];
    e->heap_index = EXT_NO_HEAP;
    if (last == e)
        return;
    heap_set(port, i, last);
    heap_sift_up(port, i);
    heap_sift_down(port, last->heap_index);
}

/* Arms the deadline timer for the earliest deadline. A timer left armed
 * for a deadline whose job was delivered meanwhile fires for nothing and
 * re-arms: cheaper than re-arming on every delivery. */
static void deadline_arm(struct evexec_port *port)
{
    if (!port->heap_len)
        return;
    uint64_t now = evexec__now_ns(), at = port->heap[0]->deadline;
    uint64_t wait = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(wait / 1000000000u), (suseconds_t)(wait % 1000000000u / 1000u)};
    if (wait % 1000u) /* round up: never fire early */
        tv.tv_usec++;
    if (event_add(port->deadline_ev, &tv) < 0)
        event_active(port->deadline_ev, EV_TIMEOUT, 1); /* no memory: try again soon */
}

/* The deadline of a job passed before it came home: its callback runs now
 * with -ETIMEDOUT; the job is stopped and, once home, recycled without a
 * second callback (its late result goes to cleanup). */
static void deadline_expire(struct evexec_port *port, struct job_ext *ext)
{
    struct evexec_job *job = ext->job;
    struct evexec_group *g = ext->group;

    uint8_t st = atomic_load_explicit(&job->state, memory_order_relaxed);
    if (st == JOB_CANCELLED)
        return; /* cancelled first: on its way home, delivered -ECANCELED */
    ext->timed_out = 1;
    port->timed_out_away++;
    if (st != JOB_QUEUED || evexec__pool_cancel(job->pool, job) == -EBUSY)
        atomic_store_explicit(&job->stop, 1, memory_order_relaxed);
    evexec__pool_count_timeout(job->pool);
    if (g)
        evexec__group_unlink(g, ext);
    port->delivered++;
    if (job->done)
        job->done(-ETIMEDOUT, NULL, job->arg);
    if (g)
        evexec__group_member_done(g, -ETIMEDOUT);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct evexec_port *port = arg;
    EVEXEC_UNUSED(fd);
    EVEXEC_UNUSED(what);

    uint64_t now = evexec__now_ns();
    port->in_run++;
    while (port->heap_len && port->heap[0]->deadline <= now) {
        struct job_ext *ext = port->heap[0];
        evexec__port_deadline_remove(port, ext);
        deadline_expire(port, ext); /* may submit, cancel, free the port */
    }
    port->in_run--;
    deadline_arm(port);
    if (EVEXEC_UNLIKELY(port->closing))
        evexec__port_release(port);
}

int evexec__port_deadline_reserve(struct evexec_port *port)
{
    if (!port->deadline_ev) {
        if (!(port->deadline_ev = evtimer_new(port->base, on_deadline, port)))
            return -ENOMEM;
        if (port->ev_priority >= 0)
            event_priority_set(port->deadline_ev, port->ev_priority);
    }
    if (port->heap_len == port->heap_cap) {
        size_t cap = port->heap_cap ? 2 * port->heap_cap : 64;
        struct job_ext **h = realloc(port->heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        port->heap = h;
        port->heap_cap = cap;
    }
    return 0;
}

void evexec__port_deadline_add(struct evexec_port *port, struct job_ext *ext, unsigned ms)
{
    ext->deadline = evexec__now_ns() + (uint64_t)ms * 1000000u;
    port->heap[port->heap_len] = ext;
    heap_sift_up(port, port->heap_len++);
    if (ext->heap_index == 0)
        deadline_arm(port);
}
