/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: jobs submitted through a port from other threads
 * (evexec_submit_threadsafe()), and the port's default pool.
 *
 * The port's own jobs live in a store only its loop thread may touch, so
 * jobs from other threads are records of their own (struct remote_job),
 * kept on a free list under mu and recycled by the loop thread once
 * delivered. They go home through the same mailbox as the port's own jobs;
 * the port delivers them after its batch (they have no submission number
 * to sort by).
 *
 * mu also guards what other threads must see of the port's state: closed
 * (the port was freed or its loop is stopping), the list of accepted
 * remote jobs (which evexec_port_free() cancels), and their count, which
 * keeps the port alive until each is delivered. Only the loop thread
 * lowers the count, so a freed port cannot miss the last delivery: a
 * submit refused by the pool after the port was freed sends its job home
 * as a notice instead (state FREE, no callback).
 *
 * Lock order: mu before a pool's mutex (evexec__remote_cancel_all()
 * cancels under mu); nothing takes mu with a pool's mutex held.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "pool.h"
#include "remote-internal.h"

static struct remote_job *of_job(struct evexec_job *job)
{
    return (struct remote_job *)(void *)job; /* single, then job: first members */
}

int evexec__remote_init(struct evexec__remote *r, struct evexec__mailbox *home)
{
    int rc = -pthread_mutex_init(&r->mu, NULL);
    if (rc < 0)
        return rc;
    r->closed = 0;
    r->free = NULL;
    ring_init(&r->live);
    atomic_init(&r->count, 0);
    atomic_init(&r->default_pool, NULL);
    r->home = home;
    return 0;
}

void evexec__remote_fini(struct evexec__remote *r)
{
    struct evexec_pool *dflt = atomic_load_explicit(&r->default_pool, memory_order_relaxed);
    while (r->free) {
        struct remote_job *rj = r->free;
        r->free = rj->free_next;
        free(rj);
    }
    pthread_mutex_destroy(&r->mu);
    /* Its jobs from this port are all delivered; its threads exit at once
     * unless other ports' work still runs on it. */
    evexec__pool_free_owned(dflt);
}

/* With mu held: a record back on the free list. */
static void recycle_locked(struct evexec__remote *r, struct remote_job *rj)
{
    ring_remove(&rj->live);
    rj->free_next = r->free;
    r->free = rj;
    atomic_fetch_sub_explicit(&r->count, 1, memory_order_relaxed);
}

int evexec__remote_submit(struct evexec__remote *r, struct evexec_pool *pool, evexec_work_fn work,
                          evexec_done_fn done, void *arg, int priority, int wait_ms)
{
    struct remote_job *rj;
    int rc;

    pthread_mutex_lock(&r->mu);
    if (r->closed) {
        pthread_mutex_unlock(&r->mu);
        return -ESHUTDOWN;
    }
    if ((rj = r->free) != NULL) {
        r->free = rj->free_next;
    } else if (!(rj = calloc(1, sizeof *rj))) {
        pthread_mutex_unlock(&r->mu);
        return -ENOMEM;
    }
    /* Filled under the lock: evexec__remote_cancel_all() reads it there. */
    struct evexec_job *job = &rj->single.job;
    job->kind = JOB_KIND_SINGLE;
    evexec__job_init(job, evexec__pool_runner(pool), work, done, arg,
                     (unsigned)(priority + 1) | JOB_HAS_EXT);
    evexec__job_set_state(job, JOB_FREE);
    evexec__job_ext_init(&rj->single.ext, job, NULL);
    rj->single.to.home = r->home;
    ring_push_tail(&r->live, &rj->live);
    atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
    pthread_mutex_unlock(&r->mu);

    if ((rc = evexec__pool_enqueue(pool, job, wait_ms)) == 0)
        return 0;
    /* Refused: no trace in the pool (a job refused after a failed thread
     * start may still say QUEUED). */
    evexec__job_set_state(job, JOB_FREE);
    pthread_mutex_lock(&r->mu);
    if (r->closed) {
        /* The port may be waiting for this very job to release itself:
         * send it home as a notice (state FREE: no callback) to wake it. */
        pthread_mutex_unlock(&r->mu);
        evexec__mailbox_post(r->home, &job->link);
        return rc;
    }
    recycle_locked(r, rj);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void evexec__remote_recycle(struct evexec__remote *r, struct evexec_job *job)
{
    pthread_mutex_lock(&r->mu);
    recycle_locked(r, of_job(job));
    pthread_mutex_unlock(&r->mu);
}

void evexec__remote_refuse(struct evexec__remote *r)
{
    pthread_mutex_lock(&r->mu);
    r->closed = 1;
    pthread_mutex_unlock(&r->mu);
}

int evexec__remote_seal(struct evexec__remote *r)
{
    pthread_mutex_lock(&r->mu);
    int idle = atomic_load_explicit(&r->count, memory_order_relaxed) == 0;
    if (idle)
        r->closed = 1;
    pthread_mutex_unlock(&r->mu);
    return idle;
}

int evexec__remote_closed(struct evexec__remote *r)
{
    pthread_mutex_lock(&r->mu);
    int closed = r->closed;
    pthread_mutex_unlock(&r->mu);
    return closed;
}

struct evexec_pool *evexec__remote_default_pool(struct evexec__remote *r, int *rc)
{
    struct evexec_pool *pool = atomic_load_explicit(&r->default_pool, memory_order_acquire);
    if (EVEXEC_LIKELY(pool != NULL))
        return pool;
    pthread_mutex_lock(&r->mu);
    pool = atomic_load_explicit(&r->default_pool, memory_order_relaxed);
    if (!pool) {
        struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        o.max_threads = (unsigned)(cpus < 1 ? 1 : cpus > 28 ? 28 : cpus) + 4;
        o.name = "evexec-def";
        if (r->closed)
            *rc = -ESHUTDOWN;
        else if ((*rc = evexec_pool_new(&pool, &o)) == 0) {
            evexec__pool_set_port_owned(pool); /* before anyone can see it */
            atomic_store_explicit(&r->default_pool, pool, memory_order_release);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return pool;
}

void evexec__remote_cancel_all(struct evexec__remote *r)
{
    /* Their fields were written under mu. */
    pthread_mutex_lock(&r->mu);
    for (struct evexec__ring *l = r->live.next; l != &r->live; l = l->next)
        (void)evexec__job_cancel(&EVEXEC_CONTAINER(l, struct remote_job, live)->single.job);
    pthread_mutex_unlock(&r->mu);
}
