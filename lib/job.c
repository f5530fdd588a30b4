/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: the job — its state diagram (job-internal.h) and the one
 * function that moves it, its one cancel path, and the store that keeps a
 * port's jobs.
 *
 * The store carves 64 KiB aligned chunks (from regions it maps ahead, see
 * chunk_map()) into jobs, recycles them through a free list and gives
 * them back only with the port. Steady state makes no malloc per job, a
 * job finds its home (the port's mailbox) by masking
 * its own address, and an id can always be checked against the slot it
 * names: the slot's submission number must match and the job be in flight,
 * or the id is stale. Only the port's loop thread touches the store.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "job-internal.h"

/* --- states -------------------------------------------------------------- */

/* The moves the diagram allows, as a bit per (from, to). */
#define MOVE(from, to) (1u << ((from) * 5 + (to))) /* five states */
static const unsigned allowed_moves =
    MOVE(JOB_FREE, JOB_QUEUED) | MOVE(JOB_FREE, JOB_RUNNING) | MOVE(JOB_QUEUED, JOB_RUNNING) |
    MOVE(JOB_QUEUED, JOB_CANCELLED) | MOVE(JOB_QUEUED, JOB_FREE) | MOVE(JOB_RUNNING, JOB_FREE) |
    MOVE(JOB_CANCELLED, JOB_FREE) | MOVE(JOB_FREE, JOB_FREE) | MOVE(JOB_RUNNING, JOB_QUEUED) |
    MOVE(JOB_QUEUED, JOB_AHEAD) | MOVE(JOB_AHEAD, JOB_QUEUED) | MOVE(JOB_AHEAD, JOB_RUNNING) |
    MOVE(JOB_AHEAD, JOB_CANCELLED);

void evexec__job_set_state_checked(struct evexec_job *job, enum job_state to)
{
    enum job_state from = job_state(job);
    assert(allowed_moves & MOVE(from, to));
    EVEXEC_UNUSED(from);
    EVEXEC_UNUSED(allowed_moves);
    atomic_store_explicit(&job->state, (uint8_t)to, memory_order_relaxed);
}

int evexec__job_cancel(struct evexec_job *job)
{
    switch (job_state(job)) {
    case JOB_FREE:
        return -ENOENT;
    case JOB_CANCELLED:
        return -EALREADY;
    case JOB_QUEUED:
    case JOB_AHEAD: {
        int rc = job->runner->ops->cancel(job->runner, job);
        if (rc != -EBUSY)
            return rc; /* 0: on its way home as -ECANCELED; -EALREADY */
        /* a worker took it meanwhile */
    }
        /* fall through */
    case JOB_RUNNING:
    default:
        evexec__job_stop(job);
        if (job->runner->ops->stop)
            job->runner->ops->stop(job->runner, job);
        return -EBUSY;
    }
}

int evexec_job_cancelled(const evexec_job *job)
{
    if (!job)
        return 0;
    /* The runner outlives its running jobs. */
    return atomic_load_explicit(&job->stop, memory_order_relaxed) ||
           atomic_load_explicit(&job->runner->stopping, memory_order_relaxed);
}

/* --- the store ----------------------------------------------------------- */

void evexec__jobs_init(struct evexec__jobs *s, struct evexec__mailbox *home, uint32_t salt)
{
    memset(s, 0, sizeof *s);
    s->home = home;
    s->next_seq = salt;
}

void evexec__jobs_fini(struct evexec__jobs *s)
{
    for (uint32_t i = 0; i < s->nchunks; i++) {
        free(s->chunks[i]->ext);
        munmap(s->chunks[i], EVEXEC_CHUNK_SIZE);
    }
    if (s->region_next != s->region_end)
        munmap(s->region_next, (size_t)(s->region_end - s->region_next));
    s->region_next = s->region_end = NULL;
    free(s->chunks);
    s->chunks = NULL;
    s->nchunks = 0;
}

/* Chunks come from regions mapped ahead: one chunk at first, twice as
 * many each time up to REGION_MAX_CHUNKS (2 MiB, aligned to 2 MiB and
 * offered to the kernel for a transparent huge page), so a port that
 * carves many jobs faults a page per 2 MiB, not per 4 KiB, and maps
 * once per 32 chunks. Only the pages touched count against RSS. */
#define REGION_MAX_CHUNKS 32u
#define REGION_HUGE ((size_t)REGION_MAX_CHUNKS * EVEXEC_CHUNK_SIZE)

static char *region_map(size_t len)
{
    size_t align = len >= REGION_HUGE ? REGION_HUGE : EVEXEC_CHUNK_SIZE;
    size_t span = len + align;
    char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = a - (uintptr_t)p;
    if (head)
        munmap(p, head);
    munmap((char *)a + len, span - head - len);
#ifdef MADV_HUGEPAGE
    if (len >= REGION_HUGE)
        madvise((char *)a, len, MADV_HUGEPAGE);
#endif
    return (char *)a;
}

static struct job_chunk *chunk_map(struct evexec__jobs *s)
{
    if (s->region_next == s->region_end) {
        uint32_t n = s->nchunks ? s->nchunks : 1;
        size_t len = (size_t)(n < REGION_MAX_CHUNKS ? n : REGION_MAX_CHUNKS) * EVEXEC_CHUNK_SIZE;
        char *r = region_map(len);
        if (!r)
            return NULL;
        s->region_next = r;
        s->region_end = r + len;
    }
    struct job_chunk *c = (struct job_chunk *)s->region_next;
    s->region_next += EVEXEC_CHUNK_SIZE;
    return c;
}

int evexec__jobs_grow(struct evexec__jobs *s)
{
    if (s->nchunks >= UINT32_MAX / EVEXEC_JOBS_PER_CHUNK - 1)
        return -ENOMEM;
    if (s->nchunks == s->chunks_cap) {
        uint32_t cap = s->chunks_cap ? 2 * s->chunks_cap : 8;
        struct job_chunk **v = realloc(s->chunks, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        s->chunks = v;
        s->chunks_cap = cap;
    }
    struct job_chunk *c = chunk_map(s);
    if (!c)
        return -ENOMEM;
    c->home = s->home;
    c->first_index = s->nchunks * EVEXEC_JOBS_PER_CHUNK;
    s->chunks[s->nchunks++] = c;
    s->bump = chunk_jobs(c);
    s->bump_end = s->bump + EVEXEC_JOBS_PER_CHUNK;
    return 0;
}

struct job_ext *evexec__jobs_ext(struct evexec__jobs *s, struct evexec_job *job)
{
    EVEXEC_UNUSED(s);
    struct job_chunk *c = job_chunk_of(job);
    if (!c->ext && !(c->ext = calloc(EVEXEC_JOBS_PER_CHUNK, sizeof *c->ext)))
        return NULL;
    return c->ext + (job - chunk_jobs(c));
}

evexec_job_id evexec__jobs_id(const struct evexec_job *job)
{
    struct job_chunk *c = job_chunk_of(job);
    uint32_t index = c->first_index + (uint32_t)(job - chunk_jobs(c));
    return ((evexec_job_id)job->seq << 32) | index;
}

struct evexec_job *evexec__jobs_find(const struct evexec__jobs *s, evexec_job_id id)
{
    uint32_t seq = (uint32_t)(id >> 32), index = (uint32_t)id;
    uint32_t n = index / EVEXEC_JOBS_PER_CHUNK;
    if (seq == 0 || n >= s->nchunks)
        return NULL;
    struct evexec_job *job = chunk_jobs(s->chunks[n]) + index % EVEXEC_JOBS_PER_CHUNK;
    if (n == s->nchunks - 1 && job >= s->bump)
        return NULL; /* never carved */
    if (job->seq != seq || job_state(job) == JOB_FREE)
        return NULL;
    return job;
}

void evexec__jobs_each_busy(const struct evexec__jobs *s, void (*fn)(struct evexec_job *, void *),
                            void *arg)
{
    for (uint32_t c = 0; c < s->nchunks; c++) {
        struct evexec_job *job = chunk_jobs(s->chunks[c]);
        struct evexec_job *end = c == s->nchunks - 1 ? s->bump : job + EVEXEC_JOBS_PER_CHUNK;
        for (; job < end; job++)
            if (job_state(job) != JOB_FREE)
                fn(job, arg);
    }
}
