/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: jobs submitted through a port from other threads
 * (evexec_submit_threadsafe()), and the port's default pool.
 *
 * The port's own jobs live in chunks only its loop thread may touch, so
 * jobs from other threads are separate records (struct remote_job), kept
 * on a free list under the port's remote_mu and recycled by the loop
 * thread once delivered. They go home through the same mailbox as the
 * port's own jobs; the port delivers them after its batch (they have no
 * submission number to sort by).
 *
 * remote_mu also guards what other threads must see of the port's state:
 * remote_closed (the port was freed or its loop is stopping), the list of
 * accepted remote jobs (which evexec_port_free() cancels), and their count,
 * which keeps the port alive until each is delivered. Only the loop thread
 * lowers the count, so a freed port cannot miss the last delivery: a submit
 * refused by the pool after the port was freed sends its job home as a
 * notice instead (state FREE, no callback).
 *
 * Lock order: remote_mu before a pool's mutex (evexec__port_cancel_remote()
 * cancels under remote_mu); nothing takes remote_mu with a pool's mutex
 * held.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "evexec-internal.h"

int evexec__port_submit_remote(struct evexec_port *port, struct evexec_pool *pool,
                               evexec_work_fn work, evexec_done_fn done, void *arg, int priority,
                               int wait_ms)
{
    struct remote_job *rj;
    int rc;

    pthread_mutex_lock(&port->remote_mu);
    if (port->remote_closed) {
        pthread_mutex_unlock(&port->remote_mu);
        return -ESHUTDOWN;
    }
    if ((rj = port->remote_free) != NULL) {
        port->remote_free = rj->free_next;
    } else if (!(rj = calloc(1, sizeof *rj))) {
        pthread_mutex_unlock(&port->remote_mu);
        return -ENOMEM;
    }
    /* Filled under the lock: evexec__port_cancel_all() reads it there. */
    struct evexec_job *job = &rj->job;
    job->kind = JOB_KIND_REMOTE;
    job->flags = (uint8_t)((unsigned)(priority + 1) | JOB_HAS_EXT);
    job->pool = pool;
    job->work = work;
    job->done = done;
    job->arg = arg;
    atomic_store_explicit(&job->state, JOB_FREE, memory_order_relaxed);
    atomic_store_explicit(&job->stop, 0, memory_order_relaxed);
    rj->ext.job = job;
    rj->ext.heap_index = EXT_NO_HEAP;
    rj->port = port;
    ring_push_tail(&port->remote_live, &rj->live);
    atomic_fetch_add_explicit(&port->remote_count, 1, memory_order_relaxed);
    pthread_mutex_unlock(&port->remote_mu);

    if ((rc = evexec__pool_enqueue(pool, job, wait_ms)) == 0)
        return 0;
    /* Refused: no trace in the pool (a job refused after a failed thread
     * start may still say QUEUED). */
    atomic_store_explicit(&job->state, JOB_FREE, memory_order_relaxed);
    pthread_mutex_lock(&port->remote_mu);
    if (port->remote_closed) {
        /* The port may be waiting for this very job to release itself:
         * send it home as a notice (state FREE: no callback) to wake it. */
        pthread_mutex_unlock(&port->remote_mu);
        evexec__mailbox_post(&port->mb, &job->link);
        return rc;
    }
    ring_remove(&rj->live);
    rj->free_next = port->remote_free;
    port->remote_free = rj;
    atomic_fetch_sub_explicit(&port->remote_count, 1, memory_order_relaxed);
    pthread_mutex_unlock(&port->remote_mu);
    return rc;
}

/* Loop thread: a remote job is home and delivered: back on the free list. */
void evexec__port_remote_recycle(struct evexec_port *port, struct evexec_job *job)
{
    struct remote_job *rj = (struct remote_job *)job;
    pthread_mutex_lock(&port->remote_mu);
    ring_remove(&rj->live);
    rj->free_next = port->remote_free;
    port->remote_free = rj;
    atomic_fetch_sub_explicit(&port->remote_count, 1, memory_order_relaxed);
    pthread_mutex_unlock(&port->remote_mu);
}

void evexec__port_refuse(struct evexec_port *port)
{
    port->refusing = 1;
    pthread_mutex_lock(&port->remote_mu);
    port->remote_closed = 1;
    pthread_mutex_unlock(&port->remote_mu);
}

int evexec__port_seal_remote(struct evexec_port *port)
{
    pthread_mutex_lock(&port->remote_mu);
    int idle = atomic_load_explicit(&port->remote_count, memory_order_relaxed) == 0;
    if (idle)
        port->remote_closed = 1;
    pthread_mutex_unlock(&port->remote_mu);
    return idle;
}

struct evexec_pool *evexec__port_default_pool(struct evexec_port *port, int *rc)
{
    struct evexec_pool *pool = atomic_load_explicit(&port->default_pool, memory_order_acquire);
    if (EVEXEC_LIKELY(pool != NULL))
        return pool;
    pthread_mutex_lock(&port->remote_mu);
    pool = atomic_load_explicit(&port->default_pool, memory_order_relaxed);
    if (!pool) {
        struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        o.max_threads = (unsigned)(cpus < 1 ? 1 : cpus > 28 ? 28 : cpus) + 4;
        o.name = "evexec-def";
        if (port->remote_closed)
            *rc = -ESHUTDOWN;
        else if ((*rc = evexec_pool_new(&pool, &o)) == 0)
            atomic_store_explicit(&port->default_pool, pool, memory_order_release);
    }
    pthread_mutex_unlock(&port->remote_mu);
    return pool;
}

void evexec__port_cancel_remote(struct evexec_port *port)
{
    /* Their fields were written under remote_mu. */
    pthread_mutex_lock(&port->remote_mu);
    for (struct evexec__ring *r = port->remote_live.next; r != &port->remote_live; r = r->next) {
        struct remote_job *rj = (struct remote_job *)((char *)r - offsetof(struct remote_job, live));
        struct evexec_job *job = &rj->job;
        uint8_t st = atomic_load_explicit(&job->state, memory_order_relaxed);
        if (st == JOB_QUEUED && evexec__pool_cancel(job->pool, job) != -EBUSY)
            continue;
        if (st == JOB_QUEUED || st == JOB_RUNNING)
            atomic_store_explicit(&job->stop, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&port->remote_mu);
}

int evexec_port_default_pool(evexec_port *port, evexec_pool **out)
{
    int rc = 0;
    if (!port || !out)
        return -EINVAL;
    pthread_mutex_lock(&port->remote_mu);
    int closed = port->remote_closed;
    pthread_mutex_unlock(&port->remote_mu);
    if (closed)
        return -ESHUTDOWN;
    struct evexec_pool *pool = evexec__port_default_pool(port, &rc);
    if (!pool)
        return rc;
    *out = pool;
    return 0;
}
