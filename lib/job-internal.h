/* SPDX-License-Identifier: MIT */
/*
 * The job (job.c): its layout, its states and the one function that moves
 * it between them, its storage, its one cancel path, and the two narrow
 * interfaces a job crosses. Never installed.
 *
 * Runners and homes. Something runs a job (a runner: the thread pool,
 * pool.c) and something delivers it (its home: a port's mailbox, or, for a
 * future's job, the future itself). They never meet:
 *
 *   - a runner takes jobs through its own submit call and gives each back,
 *     run or cancelled, with evexec__job_complete(), from any thread and
 *     with none of its locks held. It knows nothing of libevent or ports.
 *   - a port receives finished jobs from every runner the same way (its
 *     completion list), and reaches a job's runner only through the
 *     job's struct evexec__runner: to cancel or stop it, to say its
 *     deadline passed, to drop the references delivered jobs held. It
 *     knows nothing of threads or processes.
 *
 * A new kind of runner is a new file that embeds a struct evexec__runner
 * first in its own struct and fills its ops.
 *
 * Ownership: a job's memory belongs to where it was made — a port's job
 * store (chunks of 64 KiB, recycled through a free list, given back with
 * the port), a port's remote-job records (remote.c), or a future
 * (future.c). The runner only borrows it, from its submit until it
 * completes the job. A job is in at most one list at a time, linked
 * through job->link: the store's free list, a runner's queue, its home's
 * completion list.
 */
#ifndef EVEXEC_JOB_INTERNAL_H
#define EVEXEC_JOB_INTERNAL_H

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "deadline-internal.h"
#include "group-internal.h"
#include "mailbox-internal.h"

/* --- runners ------------------------------------------------------------- */

struct evexec__runner;

struct evexec__runner_ops {
    /* Takes a job filled by evexec__job_init(): 0, or a negative errno and
     * the runner keeps no trace of it (see evexec__pool_enqueue()). */
    int (*enqueue)(struct evexec__runner *r, struct evexec_job *job, int wait_ms);
    /* Any thread that knows the runner is alive, for a job seen QUEUED
     * (or AHEAD):
     * takes it off the queue and completes it as CANCELLED: 0; -EBUSY: a
     * worker took it meanwhile; -EALREADY: a concurrent cancel took it and
     * completes it outside the runner's lock (maybe not yet). */
    int (*cancel)(struct evexec__runner *r, struct evexec_job *job);
    /* Optional. Any thread: a running job's stop flag was just set by a
     * cancel (a process runner kills the job's worker). */
    void (*stop)(struct evexec__runner *r, struct evexec_job *job);
    /* A job of this runner passed its deadline (counted in its stats). */
    void (*timed_out)(struct evexec__runner *r, struct evexec_job *job);
    /* n delivered jobs give back the references they held on the runner. */
    void (*release)(struct evexec__runner *r, unsigned long n);
};

/* runner->flags */
#define RUNNER_WANTS_EXT 0x1u  /* every job needs its ext (histograms) */

/* The first member of every runner's struct. */
struct evexec__runner {
    const struct evexec__runner_ops *ops;
    unsigned flags;                /* RUNNER_*; fixed once made */
    _Atomic int stopping;          /* shut down with EVEXEC_CANCEL: every job
                                      it runs reads as asked to stop */
};

/* --- the job ------------------------------------------------------------- */

/* Where a finished job goes, fixed when it is made. */
enum job_kind {
    JOB_KIND_PORT = 0,  /* from a port's store: its mailbox (0: chunks are
                           zeroed memory) */
    JOB_KIND_SINGLE,    /* a struct job_single posted to its home mailbox
                           (evexec_submit_threadsafe()) */
    JOB_KIND_DIRECT     /* a struct job_single completed in place, on the
                           runner's thread (a future's job) */
};

/*
 * The state diagram; evexec__job_set_state() is the only writer and checks
 * it in debug builds:
 *
 *   FREE --submit--> QUEUED --runner starts it--> RUNNING --delivered--> FREE
 *     \--submit, handed to an idle worker---------^
 *   QUEUED --cancel, shutdown, drop--> CANCELLED --delivered--> FREE
 *   QUEUED --refused after all (no thread could start)--> FREE
 *   RUNNING --never reached a worker (a process pool's send failed)--> QUEUED
 *   QUEUED --taken ahead by a worker--> AHEAD --that worker starts it--> RUNNING
 *   AHEAD --taken back--> QUEUED;  AHEAD --cancel--> CANCELLED
 *
 * QUEUED -> RUNNING and QUEUED -> CANCELLED happen under the runner's lock,
 * so exactly one of them wins. AHEAD -> RUNNING happens without it: the
 * worker that holds the job claims it with an exchange on the slot it
 * holds it in, which a cancel (with the lock) empties with a
 * compare-and-swap, so there too exactly one wins (pool-worker.c, "Jobs
 * taken ahead"). Only a job's owner moves it out of FREE or back into it
 * (a port's store: its loop thread), so an id (submission number + slot)
 * names one submission.
 */
enum job_state {
    JOB_FREE = 0,
    JOB_QUEUED,         /* only here (and AHEAD) can it be cancelled */
    JOB_RUNNING,        /* a worker has it; stays so until delivered,
                           unless it never reached one (back to QUEUED) */
    JOB_CANCELLED,      /* taken off the queue; delivered as -ECANCELED */
    JOB_AHEAD           /* queued still, but held by a worker that will
                           start it after its job: cancellable */
};

/* Priority classes, as queue indexes: EVEXEC_PRIO_HIGH..LOW + 1. */
#define EVEXEC__NCLASSES 3
#define EVEXEC__CLASS_NORMAL 1
/* job->flags */
#define JOB_CLASS_MASK 0x3u  /* the priority class */
#define JOB_HAS_EXT 0x4u     /* job_ext(job) is in use (options, timing) */

/*
 * 56 bytes: at most 64 bytes per queued job, and the store and slot index
 * are found from the address (see struct job_chunk), not stored.
 */
struct evexec_job {
    struct evexec__node link;      /* the one list the job is on */
    union {
        struct evexec_job *prev;   /* while queued: runners link their queue
                                      both ways, so cancel unlinks in O(1) */
        void *result;              /* once run: the work function's return */
    } u;
    struct evexec__runner *runner;
    evexec_work_fn work;
    evexec_done_fn done;
    void *arg;
    uint32_t seq;                  /* submission number: id and batch order */
    _Atomic uint8_t state;         /* enum job_state: evexec__job_set_state() */
    _Atomic uint8_t stop;          /* evexec_job_cancelled() */
    uint8_t kind;                  /* enum job_kind; never changes */
    uint8_t flags;                 /* JOB_*: set by the submitter before the
                                      runner sees the job, cleared once it
                                      is home; only read meanwhile */
};

_Static_assert(sizeof(void *) != 8 || sizeof(struct evexec_job) == 56,
               "struct evexec_job must stay 56 bytes");

static inline struct evexec_job *job_next(const struct evexec_job *job)
{
    return (struct evexec_job *)job->link.next; /* link is the first member */
}

static inline void job_set_next(struct evexec_job *job, struct evexec_job *next)
{
    job->link.next = (struct evexec__node *)next;
}

static inline unsigned job_class(const struct evexec_job *job)
{
    return job->flags & JOB_CLASS_MASK;
}

static inline enum job_state job_state(const struct evexec_job *job)
{
    return (enum job_state)atomic_load_explicit(&job->state, memory_order_relaxed);
}

/* Moves job to state `to`; asserts, in debug builds, that the diagram
 * allows it from the state it is in. The caller holds whatever the
 * diagram's comment says the move needs. */
void evexec__job_set_state_checked(struct evexec_job *job, enum job_state to);
static inline void evexec__job_set_state(struct evexec_job *job, enum job_state to)
{
#ifdef EVEXEC_DEBUG
    evexec__job_set_state_checked(job, to);
#else
    atomic_store_explicit(&job->state, (uint8_t)to, memory_order_relaxed);
#endif
}

/* Fills a job for a submission (the one place that does): runner, work,
 * done, arg, the priority class and flags, and a clear stop flag. */
static inline void evexec__job_init(struct evexec_job *job, struct evexec__runner *runner,
                                    evexec_work_fn work, evexec_done_fn done, void *arg,
                                    unsigned flags)
{
    job->runner = runner;
    job->work = work;
    job->done = done;
    job->arg = arg;
    job->flags = (uint8_t)flags;
    atomic_store_explicit(&job->stop, 0, memory_order_relaxed);
}

/* Asks a running job to stop (evexec_job_cancelled() turns true). */
static inline void evexec__job_stop(struct evexec_job *job)
{
    atomic_store_explicit(&job->stop, 1, memory_order_relaxed);
}

/* The status and result a finished job is delivered with. */
static inline int job_status(const struct evexec_job *job)
{
    return job_state(job) == JOB_CANCELLED ? -ECANCELED : 0;
}

static inline void *job_result(const struct evexec_job *job)
{
    return job_state(job) == JOB_CANCELLED ? NULL : job->u.result;
}

/* The one cancel path. A QUEUED (or AHEAD) job is taken back from its runner (0: it
 * comes home as -ECANCELED); one that runs, or that a worker took
 * meanwhile, gets its stop flag (-EBUSY); -EALREADY: already cancelled;
 * -ENOENT: FREE. The runner must be alive (the job holds a reference). */
int evexec__job_cancel(struct evexec_job *job);

/* --- the cold part ------------------------------------------------------- */

/*
 * What only jobs submitted with options (or to a pool keeping histograms)
 * use, kept out of struct evexec_job so that the common job stays 56
 * bytes. Port jobs find theirs in an array beside their chunk (allocated
 * on first use); single jobs embed one. Everything but enqueued is touched
 * by the port's loop thread only.
 */
struct job_ext {
    struct evexec_job *job;
    evexec_cleanup_fn cleanup;
    struct evexec__group_link group;     /* group.c's */
    struct evexec__deadline_entry deadline; /* deadline.c's */
    uint64_t enqueued;             /* monotonic ns of the submit (histograms;
                                      written by the runner before it queues) */
    uint8_t timed_out;             /* delivered as -ETIMEDOUT: the job, once
                                      home, goes to cleanup, not to done */
};

/* Clears ext for a job being submitted with options. */
static inline void evexec__job_ext_init(struct job_ext *ext, struct evexec_job *job,
                                        evexec_cleanup_fn cleanup)
{
    *ext = (struct job_ext){.job = job, .cleanup = cleanup};
    ext->deadline.index = DEADLINE_NOT_SET;
}

/* A job made one at a time, with its ext beside it. */
struct job_single {
    struct evexec_job job;         /* first member */
    struct job_ext ext;
    union {
        struct evexec__mailbox *home;          /* JOB_KIND_SINGLE */
        void (*complete)(struct evexec_job *); /* JOB_KIND_DIRECT */
    } to;
};

/* --- the store: a port's jobs -------------------------------------------- */

#define EVEXEC_CHUNK_SIZE ((size_t)64 * 1024)
#define EVEXEC_CHUNK_HDR EVEXEC_CACHELINE

/* Lives in the first cache line of every chunk; a job finds its chunk by
 * masking its address. */
struct job_chunk {
    struct evexec__mailbox *home;  /* where its jobs go once finished */
    struct job_ext *ext;           /* one per job, allocated on first use */
    uint32_t first_index;          /* index of the chunk's first job */
};

#define EVEXEC_JOBS_PER_CHUNK \
    ((uint32_t)((EVEXEC_CHUNK_SIZE - EVEXEC_CHUNK_HDR) / sizeof(struct evexec_job)))

/* The jobs of one port, touched by its loop thread only. */
struct evexec__jobs {
    struct evexec__mailbox *home;
    struct job_chunk **chunks;
    uint32_t nchunks, chunks_cap;
    struct evexec_job *free_list;
    struct evexec_job *bump, *bump_end; /* uncarved part of the last chunk */
    char *region_next, *region_end;     /* mapped, not yet made chunks */
    uint32_t next_seq;
};

static inline struct job_chunk *job_chunk_of(const struct evexec_job *job)
{
    return (struct job_chunk *)((uintptr_t)job & ~(uintptr_t)(EVEXEC_CHUNK_SIZE - 1));
}

static inline struct evexec_job *chunk_jobs(const struct job_chunk *c)
{
    return (struct evexec_job *)((char *)c + EVEXEC_CHUNK_HDR);
}

/* Any kind of job: its ext, valid only while JOB_HAS_EXT is set (and for a
 * port job, once its chunk's array exists). */
static inline struct job_ext *job_ext(const struct evexec_job *job)
{
    if (EVEXEC_LIKELY(job->kind == JOB_KIND_PORT)) {
        struct job_chunk *c = job_chunk_of(job);
        return c->ext + (job - chunk_jobs(c));
    }
    return &EVEXEC_CONTAINER(job, struct job_single, job)->ext;
}

/* The runner stamps the time it took the job (histograms). */
static inline void job_set_enqueued(struct evexec_job *job, uint64_t ns)
{
    job_ext(job)->enqueued = ns;
}

/* An empty store whose jobs go home to `home`; salt makes its ids its own. */
void evexec__jobs_init(struct evexec__jobs *s, struct evexec__mailbox *home, uint32_t salt);
/* Unmaps every chunk. */
void evexec__jobs_fini(struct evexec__jobs *s);
/* Jobs carved so far: none can be outstanding beyond that. */
static inline size_t evexec__jobs_carved(const struct evexec__jobs *s)
{
    return (size_t)s->nchunks * EVEXEC_JOBS_PER_CHUNK;
}
/* Carves one more chunk; 0 or -ENOMEM. */
int evexec__jobs_grow(struct evexec__jobs *s);
/* A FREE job with a new submission number, or NULL if the store must grow
 * first. */
static inline struct evexec_job *evexec__jobs_alloc(struct evexec__jobs *s)
{
    struct evexec_job *job = s->free_list;
    if (EVEXEC_LIKELY(job != NULL))
        s->free_list = job_next(job);
    else if (s->bump != s->bump_end)
        job = s->bump++;
    else
        return NULL;
    assert(job_state(job) == JOB_FREE);
    if (EVEXEC_UNLIKELY(++s->next_seq == 0)) /* 0 would make id 0 */
        s->next_seq = 1;
    job->seq = s->next_seq;
    return job;
}
/* Puts a job back on the free list (delivered, or never accepted). */
static inline void evexec__jobs_free(struct evexec__jobs *s, struct evexec_job *job)
{
    job->flags = 0;
    evexec__job_set_state(job, JOB_FREE);
    job_set_next(job, s->free_list);
    s->free_list = job;
}
/* The ext of a port job, allocating its chunk's array on first use; NULL:
 * -ENOMEM. */
struct job_ext *evexec__jobs_ext(struct evexec__jobs *s, struct evexec_job *job);
/* The id of a job of this store, and back: NULL for an id that names no
 * job of this store in flight. */
evexec_job_id evexec__jobs_id(const struct evexec_job *job);
struct evexec_job *evexec__jobs_find(const struct evexec__jobs *s, evexec_job_id id);
/* Calls fn(job, arg) for every job carved that is not FREE. */
void evexec__jobs_each_busy(const struct evexec__jobs *s, void (*fn)(struct evexec_job *, void *),
                            void *arg);

/* --- completion: the one way back ---------------------------------------- */

/*
 * A runner hands back a job that ran or was cancelled. Port jobs (the hot
 * path) go to their chunk's mailbox; single jobs to theirs; a direct job is
 * completed here by its maker's function. Any thread; never with a runner's lock held.
 */
static inline void evexec__job_complete(struct evexec_job *job)
{
    if (EVEXEC_LIKELY(job->kind == JOB_KIND_PORT))
        evexec__mailbox_post(job_chunk_of(job)->home, &job->link);
    else if (job->kind == JOB_KIND_SINGLE)
        evexec__mailbox_post(EVEXEC_CONTAINER(job, struct job_single, job)->to.home, &job->link);
    else
        EVEXEC_CONTAINER(job, struct job_single, job)->to.complete(job);
}

#endif /* EVEXEC_JOB_INTERNAL_H */
