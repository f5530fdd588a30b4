/* SPDX-License-Identifier: MIT */
/*
 * Private layouts and cross-file functions of evexec. Never installed.
 *
 * Ownership in one paragraph: a job's memory belongs to the port it was
 * submitted through (ports carve jobs out of 64 KiB aligned chunks and keep
 * them until the port is released). A job is in at most one list at a time,
 * linked through job->next: the port's free list, its pool's queue, the
 * port's completion list. The pool only borrows jobs, from evexec_submit()
 * until a worker (or a cancel) pushes them on their port's completion list.
 */
#ifndef EVEXEC_INTERNAL_H
#define EVEXEC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "evexec.h"

#define EVEXEC_UNUSED(x) ((void)(x))
#define EVEXEC_LIKELY(x) __builtin_expect(!!(x), 1)
#define EVEXEC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define EVEXEC_CACHELINE 64

/* Done callbacks (ports) and calls (loops) run per wake-up by default, and
 * at most. */
#define EVEXEC__DEFAULT_MAX_BATCH 128u
#define EVEXEC__MAX_MAX_BATCH (1u << 20)

/* --- threads (thread.c) -------------------------------------------------- */

/* pthread_create() with every signal blocked in the new thread from its
 * first instruction. 0 or -errno. */
int evexec__thread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                          void *arg);
/* Names the calling thread, cut to the 15 bytes Linux keeps. */
void evexec__thread_name(const char *name);
/* Initialises a condition variable whose timed waits use the clock of
 * evexec__clock_now() (monotonic where possible). 0 or -errno. */
int evexec__cond_init(pthread_cond_t *cv);
void evexec__clock_now(struct timespec *ts);
/* Monotonic nanoseconds (deadlines, histograms). */
uint64_t evexec__now_ns(void);
/* *ts = now + ms, for pthread_cond_timedwait() on evexec__cond_init()'s
 * condition variables. */
void evexec__deadline_after(struct timespec *ts, unsigned ms);

/* A doubly linked ring; a ring head is a node linked to itself. */
struct evexec__ring {
    struct evexec__ring *prev, *next;
};

static inline void ring_init(struct evexec__ring *r)
{
    r->prev = r->next = r;
}

static inline int ring_empty(const struct evexec__ring *r)
{
    return r->next == r;
}

static inline void ring_remove(struct evexec__ring *r)
{
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->prev = r->next = r;
}

static inline void ring_push_tail(struct evexec__ring *head, struct evexec__ring *r)
{
    r->prev = head->prev;
    r->next = head;
    head->prev->next = r;
    head->prev = r;
}

/* --- mailbox links ------------------------------------------------------- */

/* The link of anything posted to a mailbox; first member of its owner. */
struct evexec__node {
    struct evexec__node *next;
};

/* --- jobs ---------------------------------------------------------------- */

/* What completes a job: its port (the common case) or a future. */
enum job_kind {
    JOB_KIND_PORT = 0,  /* port jobs are carved from zeroed memory: 0 */
    JOB_KIND_FUTURE,    /* embedded in a struct evexec_future (future.c) */
    JOB_KIND_REMOTE     /* a struct remote_job: evexec_submit_threadsafe() */
};

/* Priority classes, as queue indexes: EVEXEC_PRIO_HIGH..LOW + 1. */
#define EVEXEC__NCLASSES 3
#define EVEXEC__CLASS_NORMAL 1
/* job->flags */
#define JOB_CLASS_MASK 0x3u  /* the priority class */
#define JOB_HAS_EXT 0x4u     /* job_ext(job) is in use (options, timing) */

enum job_state {
    JOB_FREE = 0,   /* on the port's free list */
    JOB_QUEUED,     /* in a pool's queue; only here can it be cancelled */
    JOB_RUNNING,    /* handed to a worker; stays so until delivered */
    JOB_CANCELLED   /* taken off the queue; delivered as -ECANCELED */
};

/*
 * 56 bytes: W6 asks for at most 64 bytes per queued job, and the port and
 * slot index are found from the address (see struct job_chunk), not stored.
 */
struct evexec_job {
    struct evexec__node link;      /* the one list the job is on */
    union {
        struct evexec_job *prev;   /* while queued: the queue is doubly linked
                                      so that cancel unlinks in O(1) */
        void *result;              /* once run: the work function's return */
    } u;
    struct evexec_pool *pool;
    evexec_work_fn work;
    evexec_done_fn done;
    void *arg;
    uint32_t seq;                  /* submission number: id and batch order */
    _Atomic uint8_t state;         /* enum job_state; changes under the pool
                                      mutex while the pool holds the job,
                                      read without it by evexec_cancel() */
    _Atomic uint8_t stop;          /* evexec_job_cancelled() */
    uint8_t kind;                  /* enum job_kind; never changes */
    uint8_t flags;                 /* JOB_*: set by the submitter before the
                                      pool sees the job, cleared once it is
                                      home; only read meanwhile */
};

/* W6: at most 64 bytes per queued job; 56 on LP64, and the kind and flags
 * bytes fit in what was padding. */
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

/*
 * The cold part of a job: what only jobs submitted with options (or to a
 * pool keeping histograms) use, kept out of struct evexec_job so that the
 * common job stays 56 bytes. Port jobs find theirs in an array beside their
 * chunk (allocated on first use); remote jobs and futures embed one.
 * Everything but enqueued is touched by the port's loop thread only.
 */
struct evexec_group;
struct job_ext {
    struct evexec_job *job;
    evexec_cleanup_fn cleanup;
    struct evexec_group *group;    /* a member of it, until delivered */
    struct job_ext *gnext, *gprev; /* the group's undelivered members */
    uint64_t deadline;             /* monotonic ns; 0: none */
    uint64_t enqueued;             /* monotonic ns of the submit (histograms;
                                      written before the pool sees the job) */
    uint32_t heap_index;           /* in the port's deadline heap */
    uint8_t timed_out;             /* delivered as -ETIMEDOUT: the job, once
                                      home, goes to cleanup, not to done */
};
#define EXT_NO_HEAP UINT32_MAX

/* --- chunks of jobs ------------------------------------------------------ */

#define EVEXEC_CHUNK_SIZE ((size_t)64 * 1024)
#define EVEXEC_CHUNK_HDR EVEXEC_CACHELINE

/* Lives in the first cache line of every chunk; a job finds its chunk by
 * masking its address. */
struct job_chunk {
    struct evexec_port *port;
    struct job_ext *ext;           /* one per job, allocated on first use */
    uint32_t first_index;          /* index of the chunk's first job */
};

#define EVEXEC_JOBS_PER_CHUNK \
    ((uint32_t)((EVEXEC_CHUNK_SIZE - EVEXEC_CHUNK_HDR) / sizeof(struct evexec_job)))

static inline struct job_chunk *job_chunk_of(const struct evexec_job *job)
{
    return (struct job_chunk *)((uintptr_t)job & ~(uintptr_t)(EVEXEC_CHUNK_SIZE - 1));
}

static inline struct evexec_port *job_port(const struct evexec_job *job)
{
    return job_chunk_of(job)->port;
}

static inline struct evexec_job *chunk_jobs(const struct job_chunk *c)
{
    return (struct evexec_job *)((char *)c + EVEXEC_CHUNK_HDR);
}

/* Any kind of job: its ext, valid only while JOB_HAS_EXT is set (and for a
 * port job, once its chunk's array exists). */
static inline struct job_ext *job_ext(const struct evexec_job *job);

/* --- mailbox (mailbox.c) ------------------------------------------------ */

struct evexec__wakefd {
    int rfd;
    int wfd;                       /* == rfd for an eventfd */
};

/*
 * A multi-producer, single-consumer mailbox into one loop thread: a
 * lock-free LIFO list of nodes and a wake fd written only when a post finds
 * the list empty. Ports receive finished jobs through one.
 */
struct event_base;
struct event;
struct evexec__mailbox {
    /* Written by every poster: alone on its cache line. */
    _Alignas(EVEXEC_CACHELINE) _Atomic(struct evexec__node *) head;
    _Alignas(EVEXEC_CACHELINE) struct evexec__wakefd wake; /* read by posters */
    struct event *ev;              /* EV_READ|EV_PERSIST on wake.rfd */
    /* Loop thread only. Each take of a non-empty list is owed exactly one
     * wake-fd write (by whoever posted onto the empty list); once every
     * write owed has been read, no poster can still touch the mailbox. */
    uint64_t signals_owed, signals_read;
};

/* Loop thread: opens the wake fd and adds a persistent read event calling
 * cb(fd, what, arg); priority -1 keeps the base's default. 0 or -errno. */
int evexec__mailbox_open(struct evexec__mailbox *mb, struct event_base *base,
                         void (*cb)(int, short, void *), void *arg, int priority);
/* Loop thread: removes the event and closes the fd. */
void evexec__mailbox_close(struct evexec__mailbox *mb);
/* Any thread: posts a node. */
void evexec__mailbox_post(struct evexec__mailbox *mb, struct evexec__node *node);
/* Loop thread: empties the wake fd, then takes every node posted so far,
 * newest first (NULL if none). A caller that does not take on a wake-up
 * leaves the fd readable, so the event fires again. */
struct evexec__node *evexec__mailbox_take(struct evexec__mailbox *mb);
/* Loop thread: no poster can still be touching the mailbox. */
int evexec__mailbox_quiet(const struct evexec__mailbox *mb);
/* Loop thread: wake-fd writes read so far. */
uint64_t evexec__mailbox_signals(const struct evexec__mailbox *mb);

/* --- port (port.c) ------------------------------------------------------- */

struct evexec_port {
    struct evexec__mailbox mb;     /* finished jobs come home here */
    struct event_base *base;
    struct event *resume_ev;       /* zero timer: go on with a capped batch */
    pthread_t owner;               /* the loop thread */
    unsigned max_batch;
    int closing;                   /* evexec_port_free() was called */
    int refusing;                  /* evexec_submit() answers -ESHUTDOWN:
                                      a loop's port, its loop stopping */
    int in_run;                    /* delivering: release must wait */

    /* Job storage (loop thread only). */
    struct job_chunk **chunks;
    uint32_t nchunks, chunks_cap;
    struct evexec_job *free_list;
    struct evexec_job *bump, *bump_end; /* uncarved part of the last chunk */
    uint32_t next_seq;

    /* Delivery (loop thread only). batch[head..len) are completed jobs not
     * yet delivered. batch_cap is the number of jobs carved, so it always
     * has room for every outstanding job. */
    struct evexec_job **batch;
    size_t batch_head, batch_len, batch_cap;
    size_t outstanding;            /* accepted, callback not yet run */
    uint64_t delivered, batches;
    /* Called at the end of a delivery run that left nothing outstanding;
     * set by the loop that owns the port (loop.c) to resume its stop. */
    void (*idle_hook)(void *arg);
    void *idle_arg;

    /* Deadlines (loop thread only): a min-heap of the exts of jobs with a
     * timeout, and one timer armed for the earliest. */
    struct job_ext **heap;
    size_t heap_len, heap_cap;
    struct event *deadline_ev;
    size_t timed_out_away;         /* delivered -ETIMEDOUT, not yet home */
    int ev_priority;               /* of the port's events; -1: default */

    /* Groups (loop thread only): every group not yet released, and those
     * whose callback is due from the loop (evexec_group_close()). */
    struct evexec__ring groups;
    struct evexec_group *due;

    /* Jobs from other threads (evexec_submit_threadsafe()). remote_mu
     * guards the fields below it; remote_count is also read without it. */
    struct evexec_job *remote_head, *remote_tail; /* home, not delivered
                                                     (loop thread only) */
    pthread_mutex_t remote_mu;
    int remote_closed;             /* closing or refusing, seen by others */
    struct remote_job *remote_free;
    struct evexec__ring remote_live;   /* accepted, not yet delivered */
    _Atomic size_t remote_count;
    _Atomic(struct evexec_pool *) default_pool; /* created under remote_mu */
};

/* A job submitted through a port from another thread: allocated by the
 * port (under remote_mu), recycled once delivered, freed with the port. */
struct remote_job {
    struct evexec_job job;         /* first member */
    struct job_ext ext;
    struct evexec_port *port;
    struct evexec__ring live;      /* in port->remote_live */
    struct remote_job *free_next;
};

/* Pushes a job whose work ran or was cancelled onto its port's completion
 * list, and wakes the port if the list was empty. Any thread. */
void evexec__port_complete(struct evexec_job *job);
/* Completes the future a JOB_KIND_FUTURE job is embedded in (future.c). */
void evexec__future_job_complete(struct evexec_job *job);

/* The one way the pool hands back a job that ran or was cancelled. Port
 * jobs (and remote ones, which go home to their port too), the hot path,
 * cost one well-predicted branch more. Any thread;
 * never with the pool's mutex held. */
static inline void evexec__job_complete(struct evexec_job *job)
{
    if (EVEXEC_LIKELY(job->kind != JOB_KIND_FUTURE))
        evexec__port_complete(job);
    else
        evexec__future_job_complete(job);
}

/* Loop thread: allocates a job for a submission, or NULL (-ENOMEM). */
struct evexec_job *evexec__port_job_alloc(struct evexec_port *port);
/* Loop thread: returns a job that was never accepted. */
void evexec__port_job_unalloc(struct evexec_port *port, struct evexec_job *job);
/* Loop thread: the job named by id, or NULL. */
struct evexec_job *evexec__port_job_find(struct evexec_port *port, evexec_job_id id);
/* Loop thread: the id of a job allocated by this port. */
evexec_job_id evexec__port_job_id(const struct evexec_port *port, const struct evexec_job *job);
/* Loop thread: the ext of a port job, allocating its chunk's array on first
 * use; NULL: -ENOMEM. */
struct job_ext *evexec__port_job_ext(struct evexec_port *port, struct evexec_job *job);
/* Loop thread: makes room in the deadline heap (and the timer) for one more
 * deadline; 0 or -ENOMEM. Then evexec__port_deadline_add(), which cannot
 * fail, once the job is accepted. */
int evexec__port_deadline_reserve(struct evexec_port *port);
void evexec__port_deadline_add(struct evexec_port *port, struct job_ext *ext, unsigned ms);
/* Loop thread (deadline.c): takes a job delivered in time out of the heap. */
void evexec__port_deadline_remove(struct evexec_port *port, struct job_ext *ext);
/* Loop thread: releases a freed port if nothing can reach it any more. */
void evexec__port_release(struct evexec_port *port);
/* Loop thread (remote.c): a remote job is delivered: back on the free list. */
void evexec__port_remote_recycle(struct evexec_port *port, struct evexec_job *job);
/* Loop thread (remote.c): evexec__port_cancel_all() for remote jobs. */
void evexec__port_cancel_remote(struct evexec_port *port);
/* Loop thread (remote.c): if no job of another thread is outstanding,
 * refuses them from now on and returns 1; else 0. A loop about to finish
 * calls it last, so none can slip in between its check and its end. */
int evexec__port_seal_remote(struct evexec_port *port);
/* Any thread: evexec_submit_threadsafe() once its arguments are checked. */
int evexec__port_submit_remote(struct evexec_port *port, struct evexec_pool *pool,
                               evexec_work_fn work, evexec_done_fn done, void *arg, int priority,
                               int wait_ms);
/* Loop thread: from now on the port refuses new jobs, its own thread's
 * (-ESHUTDOWN from evexec__port_check_open()) and other threads' alike.
 * There is no way back. */
void evexec__port_refuse(struct evexec_port *port);
/* Loop thread: jobs (own or other threads') not yet delivered, or a wake
 * still owed: the port cannot be released yet. */
int evexec__port_busy(struct evexec_port *port);
/* Loop thread: cancels a job of this port as evexec_cancel() does. */
int evexec__port_cancel_job(struct evexec_port *port, struct evexec_job *job);
/* Any thread: the port's default pool, created on first use; NULL: -ENOMEM
 * or -ESHUTDOWN in *rc. */
struct evexec_pool *evexec__port_default_pool(struct evexec_port *port, int *rc);
/* Loop thread (port.c): arms the resume timer, so port_run() runs from the
 * loop soon (for groups whose callback is due). */
void evexec__port_resume(struct evexec_port *port);
/* Checks the caller is on the port's loop thread: 0 or -EPERM. */
int evexec__port_check_thread(const struct evexec_port *port);
/* Loop thread: 0, or -ESHUTDOWN once the port has been freed or set
 * refusing. */
int evexec__port_check_open(const struct evexec_port *port);
/* Loop thread: cancels the port's queued jobs and sets the stop flag of its
 * running ones; each still gets its callback from the loop. */
void evexec__port_cancel_all(struct evexec_port *port);

/* --- pool (pool.c) ------------------------------------------------------- */

struct worker;

/* pool->slow */
#define SLOW_LIMITED 0x1u  /* a class has a limit: running_c is kept up to
                              date (else stats count the workers' jobs) */
#define SLOW_SHRINK 0x2u   /* more threads than max_threads: busy ones exit */
#define SLOW_CLASSES 0x4u  /* a job of a class other than normal is queued */
#define SLOW_WAITERS 0x8u  /* a submitter waits for a queue slot */

struct job_queue {
    struct evexec_job *head, *tail;
    size_t n;                      /* not kept for the normal class */
};

struct evexec_pool {
    pthread_mutex_t mu;
    /* Everything below is guarded by mu, except refs, timed_out and the
     * settings that never change after creation. */
    struct job_queue q[EVEXEC__NCLASSES]; /* one FIFO per priority class */
    size_t nqueued;                /* in all of them */
    unsigned class_max[EVEXEC__NCLASSES]; /* running jobs per class at most;
                                             UINT_MAX: no limit */
    unsigned slow;                 /* SLOW_*: what the common path can skip */
    unsigned running_c[EVEXEC__NCLASSES]; /* running jobs per class */
    unsigned skipped[EVEXEC__NCLASSES];   /* pops that passed a waiting class */
    pthread_cond_t space_cv;       /* a queue slot freed, for space_waiters */
    unsigned space_waiters;
    struct worker *idle;           /* idle workers, most recent first */
    struct worker *all;            /* every worker struct, alive or not */
    unsigned nthreads;             /* alive, including starting */
    unsigned nstarting;            /* created, not yet looking for work */
    unsigned nidle;
    int closed;                    /* 0, or EVEXEC_DRAIN + 1, EVEXEC_CANCEL + 1 */
    pthread_cond_t exit_cv;        /* nthreads reached 0 */
    pthread_t zombie;              /* last exited thread, not yet joined */
    int has_zombie;
    unsigned next_number;          /* for thread names */
    uint64_t submitted, completed, cancelled, rejected, threads_started;
    uint64_t dropped, init_failed;
    _Atomic uint64_t timed_out;    /* counted by ports */

    /* One reference for the handle, one per job accepted and not yet
     * delivered: evexec_cancel() may lock mu until the job is delivered. */
    _Atomic unsigned long refs;

    /* Settings; max_threads, min_threads and max_queued change under mu. */
    unsigned max_threads, min_threads, idle_ms, spin_us, nice;
    int overflow;                  /* EVEXEC_OVERFLOW_* */
    int hist;                      /* EVEXEC_POOL_HISTOGRAMS */
    int sched_batch;               /* EVEXEC_POOL_SCHED_BATCH */
    int enqueue_prep;              /* spin_us or hist: a submit has more to do */
    evexec_worker_init_fn worker_init;
    evexec_worker_fini_fn worker_fini;
    void *worker_arg;
    unsigned nsearching;           /* idle workers awake or woken, looking (mu) */
    _Atomic int submit_cpu;        /* CPU of the last submit (a hint) */
    size_t max_queued;
    pthread_attr_t attr;
    char name[64];
};

/* Hands the job (pool, work, done, arg, kind, flags filled) to the pool:
 * from the loop thread of the job's port, or from any thread for a future's
 * or a remote job. With a full queue, waits up to wait_ms for room (0: not
 * at all; EVEXEC_WAIT_FOREVER). 0 or -EAGAIN/-ETIMEDOUT/-ESHUTDOWN/-ENOMEM;
 * on error the pool keeps no trace of the job. On success the job holds a
 * reference on the pool (see refs). */
int evexec__pool_enqueue(struct evexec_pool *pool, struct evexec_job *job, int wait_ms);
/* Counts a job whose deadline passed. Any thread. */
void evexec__pool_count_timeout(struct evexec_pool *pool);
/* Any thread that knows the pool is alive: cancels a job seen QUEUED.
 * 0 (now CANCELLED and completed), -EBUSY (a worker took it) or -EALREADY
 * (a concurrent EVEXEC_CANCEL shutdown or cancel took it, and completes it
 * outside the pool's mutex: maybe not yet). */
int evexec__pool_cancel(struct evexec_pool *pool, struct evexec_job *job);
/* Drops n references that delivered jobs held on their pool; frees it when
 * none remains. Any thread. */
void evexec__pool_unref(struct evexec_pool *pool, unsigned long n);
/* The pool whose worker the calling thread is, or NULL. */
struct evexec_pool *evexec__pool_current(void);

/* --- futures (future.c) and loops (loop.c) ------------------------------ */

enum future_state {
    FUTURE_QUEUED = 0,  /* posted / in the pool, not started */
    FUTURE_RUNNING,     /* a call's fn has run, its promise is unsettled */
    FUTURE_DONE         /* status and result are final */
};

enum future_kind {
    FUTURE_CALL = 0,    /* evexec_loop_call() */
    FUTURE_JOB          /* evexec_pool_call() */
};

/* The part of a call's future that only its loop thread touches. */
struct future_call {
    struct evexec_loop *loop;
    evexec_call_fn fn;
    void *arg;
    struct evexec__ring ring;      /* in loop->live while the promise is */
    evexec_promise_fn on_cancel, on_stop;
    void *cancel_arg, *stop_arg;
    uint8_t taken;                 /* taken from the mailbox once */
    uint8_t live;                  /* promise handed out, not settled */
};

/*
 * A future, and (for calls) its promise: an evexec_promise * is the same
 * pointer. Reference counted: the holder's handle, the loop side (the
 * posted node, then the promise) or the pool side (the job), and a cancel
 * notice in flight. A call's link is posted to its loop's mailbox as the
 * call, and at most once more as a cancel notice, after it was taken.
 */
struct evexec_future {
    struct evexec__node link;      /* first member: see struct evexec__node */
    struct job_ext ext;            /* a pool future's job's (histograms) */
    _Atomic uint8_t state;         /* enum future_state; changes under mu */
    uint8_t kind;                  /* enum future_kind */
    _Atomic unsigned refs;
    unsigned waiters;              /* under mu */
    int status;                    /* under mu until DONE, then final */
    void *result;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    union {
        struct future_call call;
        struct evexec_job job;
    } u;
};

static inline struct job_ext *job_ext(const struct evexec_job *job)
{
    if (EVEXEC_LIKELY(job->kind == JOB_KIND_PORT)) {
        struct job_chunk *c = job_chunk_of(job);
        return c->ext + (job - chunk_jobs(c));
    }
    if (job->kind == JOB_KIND_REMOTE)
        return &((struct remote_job *)job)->ext;
    return &((struct evexec_future *)((char *)job - offsetof(struct evexec_future, u.job)))->ext;
}

/* --- groups (group.c) ---------------------------------------------------- */

/* Loop thread: makes ext (of a job being submitted) a member of g. 0, or
 * -EINVAL (another port's group, closed or done). */
int evexec__group_check(struct evexec_group *g, struct evexec_port *port);
void evexec__group_add(struct evexec_group *g, struct job_ext *ext);
/* Loop thread: a member is about to be delivered: takes it off the
 * group's list (its ext is recycled before the done callback). */
void evexec__group_unlink(struct evexec_group *g, struct job_ext *ext);
/* Loop thread: after the member's done callback ran with status: counts it
 * and runs the group's callback if that decides it. */
void evexec__group_member_done(struct evexec_group *g, int status);
/* Loop thread (port_run): runs the callbacks of the port's due groups. */
void evexec__group_run_due(struct evexec_port *port);
/* Loop thread: evexec_port_free(): closes every group of the port. */
void evexec__group_close_all(struct evexec_port *port);
/* Loop thread: port release: frees what is left of the port's groups. */
void evexec__group_free_all(struct evexec_port *port);

/* future.c */
/* Allocates a future with refs references, state QUEUED. NULL: -ENOMEM. */
struct evexec_future *evexec__future_new(enum future_kind kind, unsigned refs);
void evexec__future_ref(struct evexec_future *f);
void evexec__future_unref(struct evexec_future *f);
/* Completes f (under its mutex) unless already DONE; wakes its waiters.
 * Returns 1 if this call completed it. */
int evexec__future_settle(struct evexec_future *f, int status, void *result);

/* loop.c */
/* The loop whose thread the caller is, or NULL. */
struct evexec_loop *evexec__loop_current(void);
/* Loop thread: the promise of f has just been settled. Drops the loop
 * side's reference. */
void evexec__loop_promise_released(struct evexec_loop *loop, struct evexec_future *f);
/* Loop thread: 1 once the stop has begun on the loop thread. */
int evexec__loop_stop_applied(const struct evexec_loop *loop);
/* Any thread, with f->mu held, having just completed f while RUNNING:
 * counts and posts f's cancel notice (f holds a reference for it). Under
 * f->mu, so a loop that sees f complete also sees the notice coming. */
void evexec__loop_post_notice(struct evexec_loop *loop, struct evexec_future *f);

/* --- options (error.c) --------------------------------------------------- */

/* Checks a caller's size-versioned struct: -EINVAL if smaller than minsize,
 * -E2BIG if larger than ours with non-zero bytes beyond, else 0. */
int evexec__check_opts_size(const void *opts, size_t size, size_t minsize, size_t oursize);

#endif /* EVEXEC_INTERNAL_H */
