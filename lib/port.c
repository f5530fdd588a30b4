/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: the port is where finished jobs come home to one event_base.
 *
 * Workers post finished jobs to the port's mailbox (mailbox.c: a lock-free
 * list whose wake fd is written only when it was empty, so a burst of N
 * completions costs one write and one read). The loop takes the whole list
 * at once, puts the batch back in submission order and runs at most
 * max_batch callbacks; if more remain it arms a zero timer, so the loop
 * polls its other events before going on.
 *
 * The port also owns the memory of its jobs: 64 KiB aligned chunks carved
 * into jobs that are recycled through a free list and given back only when
 * the port goes. Steady state therefore makes no malloc per job, a job finds
 * its port by masking its own address, and a stale job id can always be
 * checked against the slot it names.
 *
 * Release: a port freed with jobs outstanding cancels what it can and
 * releases itself once the last callback has run *and* every wake-fd write
 * owed has been read: a worker that has pushed onto the empty list may not
 * have written yet, and must not find the port gone.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/mman.h>

#include <event2/event.h>

#include "evexec-internal.h"

#define MIN_PORT_OPTS_SIZE (offsetof(struct evexec_port_opts, priority) + sizeof(int))


/* --- job storage --------------------------------------------------------- */

/* An aligned chunk from mmap: only the pages touched count against RSS. */
static struct job_chunk *chunk_map(void)
{
    size_t len = 2 * EVEXEC_CHUNK_SIZE;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t a = ((uintptr_t)p + EVEXEC_CHUNK_SIZE - 1) & ~(uintptr_t)(EVEXEC_CHUNK_SIZE - 1);
    size_t head = a - (uintptr_t)p;
    if (head)
        munmap(p, head);
    munmap((char *)a + EVEXEC_CHUNK_SIZE, EVEXEC_CHUNK_SIZE - head);
    return (struct job_chunk *)a;
}

static int port_add_chunk(struct evexec_port *port)
{
    if (port->nchunks >= UINT32_MAX / EVEXEC_JOBS_PER_CHUNK - 1)
        return -ENOMEM;
    if (port->nchunks == port->chunks_cap) {
        uint32_t cap = port->chunks_cap ? 2 * port->chunks_cap : 8;
        struct job_chunk **v = realloc(port->chunks, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        port->chunks = v;
        port->chunks_cap = cap;
    }
    /* The batch array must hold every job that could be outstanding. */
    size_t bcap = (size_t)(port->nchunks + 1) * EVEXEC_JOBS_PER_CHUNK;
    struct evexec_job **b = realloc(port->batch, bcap * sizeof *b);
    if (!b)
        return -ENOMEM;
    port->batch = b;
    port->batch_cap = bcap;

    struct job_chunk *c = chunk_map();
    if (!c)
        return -ENOMEM;
    c->port = port;
    c->first_index = port->nchunks * EVEXEC_JOBS_PER_CHUNK;
    port->chunks[port->nchunks++] = c;
    port->bump = chunk_jobs(c);
    port->bump_end = port->bump + EVEXEC_JOBS_PER_CHUNK;
    return 0;
}

struct evexec_job *evexec__port_job_alloc(struct evexec_port *port)
{
    struct evexec_job *job = port->free_list;
    if (EVEXEC_LIKELY(job != NULL)) {
        port->free_list = job_next(job);
    } else {
        if (port->bump == port->bump_end && port_add_chunk(port) < 0)
            return NULL;
        job = port->bump++;
    }
    if (EVEXEC_UNLIKELY(++port->next_seq == 0)) /* 0 would make id 0 */
        port->next_seq = 1;
    job->seq = port->next_seq;
    return job;
}

struct job_ext *evexec__port_job_ext(struct evexec_port *port, struct evexec_job *job)
{
    EVEXEC_UNUSED(port);
    struct job_chunk *c = job_chunk_of(job);
    if (!c->ext && !(c->ext = calloc(EVEXEC_JOBS_PER_CHUNK, sizeof *c->ext)))
        return NULL;
    return c->ext + (job - chunk_jobs(c));
}

void evexec__port_job_unalloc(struct evexec_port *port, struct evexec_job *job)
{
    job->flags = 0;
    atomic_store_explicit(&job->state, JOB_FREE, memory_order_relaxed);
    job_set_next(job, port->free_list);
    port->free_list = job;
}

evexec_job_id evexec__port_job_id(const struct evexec_port *port, const struct evexec_job *job)
{
    EVEXEC_UNUSED(port);
    struct job_chunk *c = job_chunk_of(job);
    uint32_t index = c->first_index + (uint32_t)(job - chunk_jobs(c));
    return ((evexec_job_id)job->seq << 32) | index;
}

struct evexec_job *evexec__port_job_find(struct evexec_port *port, evexec_job_id id)
{
    uint32_t seq = (uint32_t)(id >> 32), index = (uint32_t)id;
    uint32_t n = index / EVEXEC_JOBS_PER_CHUNK;
    if (seq == 0 || n >= port->nchunks)
        return NULL;
    struct evexec_job *job = chunk_jobs(port->chunks[n]) + index % EVEXEC_JOBS_PER_CHUNK;
    if (n == port->nchunks - 1 && job >= port->bump)
        return NULL; /* never carved */
    if (job->seq != seq || atomic_load_explicit(&job->state, memory_order_relaxed) == JOB_FREE)
        return NULL;
    return job;
}

/* --- completion ---------------------------------------------------------- */

void evexec__port_complete(struct evexec_job *job)
{
    struct evexec_port *port = EVEXEC_LIKELY(job->kind == JOB_KIND_PORT)
                                   ? job_port(job)
                                   : ((struct remote_job *)job)->port;
    evexec__mailbox_post(&port->mb, &job->link);
}

static inline int seq_before(const struct evexec_job *a, const struct evexec_job *b)
{
    return (int32_t)(a->seq - b->seq) < 0;
}

static void sift_down(struct evexec_job **a, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && seq_before(a[child], a[child + 1]))
            child++;
        if (!seq_before(a[root], a[child]))
            return;
        struct evexec_job *t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

/* Completion order is nearly submission order (jobs start in FIFO order, so
 * a job can only overtake those running beside it): insertion sort costs
 * O(n) then. A port fed by a fast and a slow pool can see far more disorder;
 * past a budget of moves, heapsort bounds the work at O(n log n) with no
 * allocation. */
static void sort_by_seq(struct evexec_job **a, size_t n)
{
    size_t budget = 8 * n + 64;
    for (size_t i = 1; i < n; i++) {
        struct evexec_job *x = a[i];
        size_t j = i;
        while (j > 0 && seq_before(x, a[j - 1])) {
            a[j] = a[j - 1];
            j--;
            if (--budget == 0) {
                a[j] = x;
                goto heapsort;
            }
        }
        a[j] = x;
    }
    return;
heapsort:
    for (size_t i = n / 2; i-- > 0;)
        sift_down(a, i, n);
    for (size_t end = n; end-- > 1;) {
        struct evexec_job *t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(a, 0, end);
    }
}

/* Takes every finished job and appends them, sorted, to the batch. */
static void port_grab(struct evexec_port *port)
{
    struct evexec_job *list = (struct evexec_job *)evexec__mailbox_take(&port->mb);
    if (!list)
        return;
    size_t pending = port->batch_len - port->batch_head;
    if (port->batch_cap - port->batch_len < port->outstanding - pending) {
        memmove(port->batch, port->batch + port->batch_head, pending * sizeof *port->batch);
        port->batch_head = 0;
        port->batch_len = pending;
    }
    /* No pointer into the batch before a port job is seen: a port that has
     * only had jobs from other threads has no batch array yet. */
    size_t first = port->batch_len, n = 0;
    struct evexec_job *remote = NULL, *remote_last = NULL, *next;
    for (; list; list = next) {
        next = job_next(list);
        if (EVEXEC_LIKELY(list->kind == JOB_KIND_PORT)) {
            port->batch[first + n++] = list;
        } else { /* JOB_KIND_REMOTE: newest first, so prepending restores order */
            if (!remote)
                remote_last = list;
            job_set_next(list, remote);
            remote = list;
        }
    }
    if (remote) {
        if (port->remote_tail)
            job_set_next(port->remote_tail, remote);
        else
            port->remote_head = remote;
        port->remote_tail = remote_last;
    }
    if (!n)
        return;
    struct evexec_job **a = port->batch + first;
    /* LIFO to completion order, then to submission order. */
    for (size_t i = 0, j = n - 1; i < j; i++, j--) {
        struct evexec_job *t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    sort_by_seq(a, n);
    port->batch_len += n;
}

/* --- delivery ------------------------------------------------------------ */

/* The next finished job to deliver once the batch is empty: the jobs of
 * other threads, then whatever came home meanwhile. */
static struct evexec_job *port_next_slow(struct evexec_port *port)
{
    struct evexec_job *job;
    for (int grabbed = 0;; grabbed = 1) {
        if (port->batch_head < port->batch_len)
            return port->batch[port->batch_head++];
        if (port->remote_head) {
            job = port->remote_head;
            if (!(port->remote_head = job_next(job)))
                port->remote_tail = NULL;
            return job;
        }
        if (grabbed)
            return NULL;
        port->batch_head = port->batch_len = 0;
        port_grab(port);
    }
}

/* Delivers a job with options (JOB_HAS_EXT), or one of another thread. It
 * may have been delivered already, as -ETIMEDOUT: it is then only
 * recycled, its late result going to cleanup. Returns 1 if it counts
 * against max_batch. */
static int deliver_ext(struct evexec_port *port, struct evexec_job *job,
                       struct evexec_pool **pool, unsigned long *pool_refs)
{
    struct job_ext *ext = job_ext(job);
    int cancelled = atomic_load_explicit(&job->state, memory_order_relaxed) == JOB_CANCELLED;
    int status = cancelled ? -ECANCELED : 0;
    void *result = cancelled ? NULL : job->u.result;
    evexec_done_fn done = job->done;
    evexec_cleanup_fn cleanup = NULL;
    struct evexec_group *group = NULL;
    void *arg = job->arg;

    if (job->kind == JOB_KIND_REMOTE &&
        atomic_load_explicit(&job->state, memory_order_relaxed) == JOB_FREE) {
        evexec__port_remote_recycle(port, job); /* a refused job's notice */
        return 0;
    }
    if (ext->timed_out) {
        port->timed_out_away--;
        cleanup = result ? ext->cleanup : NULL;
        done = NULL;
    } else {
        if (ext->heap_index != EXT_NO_HEAP)
            evexec__port_deadline_remove(port, ext);
        if ((group = ext->group) != NULL)
            evexec__group_unlink(group, ext);
        port->delivered++;
    }

    if (job->pool != *pool) {
        if (*pool_refs)
            evexec__pool_unref(*pool, *pool_refs);
        *pool = job->pool;
        *pool_refs = 0;
    }
    ++*pool_refs;
    if (job->kind == JOB_KIND_PORT) {
        evexec__port_job_unalloc(port, job);
        port->outstanding--;
    } else {
        evexec__port_remote_recycle(port, job);
    }
    if (cleanup)
        cleanup(result, arg);
    else if (done)
        done(status, result, arg);
    if (group)
        evexec__group_member_done(group, status);
    return 1;
}

/*
 * Runs up to max_batch done callbacks, taking more finished jobs whenever
 * the batch runs out. It takes only then: while the completion list is not
 * empty, workers post to it without writing the wake fd, so a long burst
 * costs a few writes, not one per batch. If the cap stops it with jobs
 * left, a zero timer brings it back after the loop's other events.
 */
static void port_run(struct evexec_port *port)
{
    struct evexec_pool *pool = NULL;
    unsigned long pool_refs = 0;
    unsigned n = 0;
    struct evexec_job *job;

    port->batches++;
    port->in_run++;
    if (EVEXEC_UNLIKELY(port->due != NULL))
        evexec__group_run_due(port);
    while (n < port->max_batch) {
        if (EVEXEC_LIKELY(port->batch_head < port->batch_len))
            job = port->batch[port->batch_head++];
        else if (!(job = port_next_slow(port)))
            break;
        if (EVEXEC_UNLIKELY(job->flags & JOB_HAS_EXT)) {
            n += deliver_ext(port, job, &pool, &pool_refs);
            continue;
        }
        int cancelled = atomic_load_explicit(&job->state, memory_order_relaxed) == JOB_CANCELLED;
        int status = cancelled ? -ECANCELED : 0;
        void *result = cancelled ? NULL : job->u.result;
        evexec_done_fn done = job->done;
        void *arg = job->arg;

        /* Pool references are dropped once per run of equal pools. */
        if (job->pool != pool) {
            if (pool_refs)
                evexec__pool_unref(pool, pool_refs);
            pool = job->pool;
            pool_refs = 0;
        }
        pool_refs++;

        /* Recycle before the callback: its id is dead, and a submit from
         * the callback reuses the job while it is still in cache. */
        evexec__port_job_unalloc(port, job);
        port->outstanding--;
        port->delivered++;
        n++;
        if (done)
            done(status, result, arg);
    }
    if (pool_refs)
        evexec__pool_unref(pool, pool_refs);
    port->in_run--;
    if (EVEXEC_UNLIKELY(port->idle_hook != NULL) && port->outstanding == 0 &&
        atomic_load_explicit(&port->remote_count, memory_order_relaxed) == 0)
        port->idle_hook(port->idle_arg);
    if (port->batch_head != port->batch_len || port->remote_head)
        evexec__port_resume(port);
    if (EVEXEC_UNLIKELY(port->closing))
        evexec__port_release(port);
}

void evexec__port_resume(struct evexec_port *port)
{
    /* The zero timer may need memory (libevent's timer heap): if none can
     * be had, go on at the next iteration rather than strand the rest. */
    static const struct timeval zero = {0, 0};
    if (event_add(port->resume_ev, &zero) < 0)
        event_active(port->resume_ev, EV_TIMEOUT, 1);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    EVEXEC_UNUSED(fd);
    EVEXEC_UNUSED(what);
    port_run(arg);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    EVEXEC_UNUSED(fd);
    EVEXEC_UNUSED(what);
    port_run(arg);
}

/* --- lifetime ------------------------------------------------------------ */

static void port_destroy(struct evexec_port *port)
{
    struct evexec_pool *dflt = atomic_load_explicit(&port->default_pool, memory_order_relaxed);
    evexec__group_free_all(port);
    evexec__mailbox_close(&port->mb);
    if (port->resume_ev)
        event_free(port->resume_ev);
    if (port->deadline_ev)
        event_free(port->deadline_ev);
    for (uint32_t i = 0; i < port->nchunks; i++) {
        free(port->chunks[i]->ext);
        munmap(port->chunks[i], EVEXEC_CHUNK_SIZE);
    }
    while (port->remote_free) {
        struct remote_job *rj = port->remote_free;
        port->remote_free = rj->free_next;
        free(rj);
    }
    pthread_mutex_destroy(&port->remote_mu);
    free(port->chunks);
    free(port->batch);
    free(port->heap);
    free(port);
    /* Its jobs from this port are all delivered; its threads exit at once
     * unless other ports' work still runs on it. */
    evexec_pool_free(dflt);
}

int evexec__port_busy(struct evexec_port *port)
{
    return port->outstanding || atomic_load_explicit(&port->remote_count, memory_order_relaxed) ||
           port->due || !evexec__mailbox_quiet(&port->mb);
}

/* Releases a freed port once nothing can reach it any more: every job
 * delivered, every group callback run, and no wake-fd write still owed (a
 * worker that has pushed onto the empty list may not have written yet). */
void evexec__port_release(struct evexec_port *port)
{
    if (!port->closing || port->in_run || evexec__port_busy(port))
        return;
    port_destroy(port);
}

int evexec__port_check_thread(const struct evexec_port *port)
{
    return pthread_equal(port->owner, pthread_self()) ? 0 : -EPERM;
}

int evexec__port_check_open(const struct evexec_port *port)
{
    return port->closing || port->refusing ? -ESHUTDOWN : 0;
}

int evexec_port_new(evexec_port **out, struct event_base *base, const struct evexec_port_opts *opts)
{
    struct evexec_port_opts o = EVEXEC_PORT_OPTS_INIT;
    struct evexec_port *port;
    int rc;

    if (!out || !base)
        return -EINVAL;
    if (opts) {
        rc = evexec__check_opts_size(opts, opts->size, MIN_PORT_OPTS_SIZE, sizeof o);
        if (rc < 0)
            return rc;
        memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
    }
    if (o.max_batch > EVEXEC__MAX_MAX_BATCH || o.priority < -1)
        return -EINVAL;

    if (posix_memalign((void **)&port, EVEXEC_CACHELINE, sizeof *port))
        return -ENOMEM;
    memset(port, 0, sizeof *port);
    port->base = base;
    port->owner = pthread_self();
    port->max_batch = o.max_batch ? o.max_batch : EVEXEC__DEFAULT_MAX_BATCH;
    /* Ids are (submission number << 32 | slot). Starting each port's
     * numbers at a point derived from its address keeps two live ports'
     * ids apart, so an id given to the wrong port is recognised (-ENOENT)
     * rather than naming one of its jobs; they would meet only after
     * billions of submissions. */
    port->next_seq = (uint32_t)(((uintptr_t)port >> 6) * 0x9E3779B97F4A7C15ull >> 32);
    port->mb.wake.rfd = port->mb.wake.wfd = -1;
    port->ev_priority = o.priority;
    ring_init(&port->groups);
    ring_init(&port->remote_live);
    if ((rc = -pthread_mutex_init(&port->remote_mu, NULL)) < 0) {
        free(port);
        return rc;
    }

    rc = -ENOMEM;
    if (!(port->resume_ev = evtimer_new(base, on_resume, port)))
        goto fail;
    rc = -EINVAL;
    if (o.priority >= 0 && event_priority_set(port->resume_ev, o.priority) < 0)
        goto fail;
    if ((rc = evexec__mailbox_open(&port->mb, base, on_wake, port, o.priority)) < 0)
        goto fail;
    *out = port;
    return 0;

fail:
    port_destroy(port); /* frees what was made, closes what was opened */
    return rc;
}

int evexec_port_free(evexec_port *port)
{
    if (!port)
        return 0;
    int rc = evexec__port_check_thread(port);
    if (rc < 0)
        return rc;
    if (port->idle_hook)
        return -EPERM; /* a loop's port (evexec_loop_port()): the loop frees it */
    if (port->closing)
        return 0;
    port->closing = 1;
    evexec__port_refuse(port); /* other threads too */
    evexec__port_cancel_all(port);
    evexec__group_close_all(port);
    evexec__port_release(port);
    return 0;
}

void evexec__port_cancel_all(struct evexec_port *port)
{
    /* Cancel what is queued, ask what runs to stop; each still gets its
     * callback from the loop. */
    for (uint32_t c = 0; c < port->nchunks && port->outstanding; c++) {
        struct evexec_job *job = chunk_jobs(port->chunks[c]);
        struct evexec_job *end = c == port->nchunks - 1 ? port->bump : job + EVEXEC_JOBS_PER_CHUNK;
        for (; job < end; job++) {
            uint8_t st = atomic_load_explicit(&job->state, memory_order_relaxed);
            if (st == JOB_QUEUED && evexec__pool_cancel(job->pool, job) != -EBUSY)
                continue; /* cancelled, by us or by a shutdown */
            if (st == JOB_QUEUED || st == JOB_RUNNING)
                atomic_store_explicit(&job->stop, 1, memory_order_relaxed);
        }
    }
    evexec__port_cancel_remote(port);
}

int evexec_port_stats(evexec_port *port, struct evexec_port_stats *out)
{
    if (!port || !out)
        return -EINVAL;
    int rc = evexec__check_opts_size(out, out->size, offsetof(struct evexec_port_stats, batches) +
                                                         sizeof(uint64_t), sizeof *out);
    if (rc == -E2BIG)
        rc = 0; /* a newer caller: fill what we know */
    if (rc < 0)
        return rc;
    if ((rc = evexec__port_check_thread(port)) < 0)
        return rc;
    struct evexec_port_stats s;
    memset(&s, 0, sizeof s);
    s.size = out->size;
    s.outstanding = port->outstanding - port->timed_out_away +
                    atomic_load_explicit(&port->remote_count, memory_order_relaxed);
    s.delivered = port->delivered;
    s.wakeups = evexec__mailbox_signals(&port->mb);
    s.batches = port->batches;
    memcpy(out, &s, out->size < sizeof s ? out->size : sizeof s);
    return 0;
}
