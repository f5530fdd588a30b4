/* SPDX-License-Identifier: MIT */
/**
 * @file evexec.h
 * @brief Offload blocking calls from a libevent loop to a bounded thread pool.
 *
 * A daemon's loop thread must never block. evexec runs blocking functions
 * (file I/O, getaddrinfo(), a database client, a password hash) on a pool of
 * worker threads and calls you back **on the loop thread** when each one has
 * finished: the C counterpart of Python's loop.run_in_executor().
 *
 * Objects
 * -------
 * - ::evexec_pool: worker threads and a bounded queue of jobs, first in
 *   first out within each of three priority classes. Threads start lazily
 *   up to a maximum and exit after an idle timeout down to a minimum; the
 *   limits can change while the pool runs. One pool may serve any number of
 *   ports.
 * - ::evexec_port: the link between pools and one `event_base`. Workers push
 *   finished jobs on the port's lock-free completion list and write its wake
 *   fd (an eventfd, or a pipe) only when the list goes from empty to
 *   non-empty while the loop is not delivering; the loop then runs the done
 *   callbacks, taking what finishes meanwhile without another wake-up. A
 *   port may receive jobs from any number of pools.
 * - job: one call of a work function. It is identified by an ::evexec_job_id,
 *   which stays safe to pass to evexec_cancel() after the job is gone (the
 *   call then answers -ENOENT).
 * - ::evexec_loop, ::evexec_future, ::evexec_promise: the mirror image, for
 *   programs made of blocking threads: an event_base run by evexec in a
 *   thread of its own, calls posted into it from any thread, and futures to
 *   wait on their results (see sections "Loop thread", "Promises" and
 *   "Futures" below).
 *
 * Reading order
 * -------------
 * This header is the manual, in sections, each name defined before it is
 * used: handles and shared constants, pools, ports, jobs, groups, the loop
 * thread, promises, futures, errors and version. Each function also has a
 * man page (`man evexec_submit`); `man 3 evexec` gives the overview.
 *
 * Threads
 * -------
 * The *loop thread* of a port is the thread that created it with
 * evexec_port_new(); it must be the thread that runs the port's event_base.
 * Unless a function's `Thread:` line says otherwise, it must be called on the
 * loop thread of the port it is given. Calls that can detect the wrong thread
 * return -EPERM. *Any thread* means any thread, workers included. *Worker*
 * means from inside a work function. The loop thread of an ::evexec_loop is
 * the thread evexec_loop_start() created for it.
 *
 * Workers never touch an event_base, so the base needs no
 * evthread_use_pthreads(). Workers block every signal, so signals reach the
 * loop (libevent's signal events keep working).
 *
 * The callback contract
 * ---------------------
 * - A call that takes a callback and fails never runs the callback.
 * - An accepted job runs its done callback exactly once, on its port's loop
 *   thread, from the event loop (never from inside evexec_submit(),
 *   evexec_cancel() or any free function), whatever happens to it: finished,
 *   cancelled, cancelled by a shutdown, dropped, or timed out.
 * - No evexec lock is held while user code runs.
 * - `arg` belongs to the caller: evexec never reads or frees it.
 *
 * Errors
 * ------
 * Every fallible function returns 0 or a negative errno; evexec_strerror()
 * turns one into a sentence and evexec_errname() into its name. Constructors
 * return the new object through an out-parameter, which is left untouched on
 * error. Free functions accept NULL and then do nothing.
 *
 * Order of destruction
 * --------------------
 * Free ports and pools before the event_base they deliver to. A port freed
 * with jobs still outstanding stays on its base until their callbacks have
 * run (see evexec_port_free()), so keep running the loop until
 * event_base_dispatch() returns, then free the base.
 *
 * A loop (evexec_loop_start()) owns its base and its port: stopping it
 * frees them on its thread. Futures may outlive the loop or pool they came
 * from (they are all complete by then) and are freed on their own.
 *
 * fork()
 * ------
 * evexec keeps no global configuration: a child of fork() may create and
 * use new pools and ports, on a new event_base or on the inherited one
 * after event_reinit(). It must not use or free a pool or port inherited from the
 * parent: the child has only the thread that called fork(), none of the
 * parent's workers; a lock of an inherited pool may have been held at the
 * fork; an inherited port's wake fd is shared with the parent. Leave them
 * alone: exec() or exit ends them. evexec's fds are close-on-exec.
 *
 * An inherited port stays inert in a child that dispatches the inherited
 * base: it never reads the wake fd it shares with the parent (the
 * parent's wake-ups stay the parent's) and never runs a callback of the
 * parent's jobs; the first time one of its events fires in the child, it
 * takes its events off the base. Until then they count as events of the
 * base, so end such a dispatch with event_base_loopexit() or
 * event_base_loopbreak() rather than by running out of events. (evexec
 * learns of forks with pthread_atfork().)
 */
#ifndef EVEXEC_H
#define EVEXEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @name Version
 * The version of the headers this program was compiled with; compare with
 * evexec_version() for the library it runs with. */
/**@{*/
/** Major version: changes when the API changes incompatibly. */
#define EVEXEC_VERSION_MAJOR 0
/** Minor version: changes when functions or options are added. */
#define EVEXEC_VERSION_MINOR 4
/** Patch level: changes with fixes only. */
#define EVEXEC_VERSION_PATCH 0
/** Encoded as 0xMMmmpp: major, minor, patch. */
#define EVEXEC_VERSION_NUMBER \
    ((EVEXEC_VERSION_MAJOR << 16) | (EVEXEC_VERSION_MINOR << 8) | EVEXEC_VERSION_PATCH)
/**@}*/

/** Marks the public symbols; the library is built with -fvisibility=hidden. */
#if defined(__GNUC__) && __GNUC__ >= 4
#define EVEXEC_EXPORT __attribute__((visibility("default")))
#else
#define EVEXEC_EXPORT
#endif

/* ------------------------------------------------------------------------ */
/** @name Handles and shared constants
 * The opaque types the sections below use, and the constants that more
 * than one section takes. */
/**@{*/

/** libevent's event loop (`<event2/event.h>`); evexec only keeps pointers. */
struct event_base;

/** A pool of worker threads with a bounded job queue. Opaque. */
typedef struct evexec_pool evexec_pool;
/** The completion port of one event_base. Opaque. */
typedef struct evexec_port evexec_port;
/** A job as seen by its work function. Opaque; valid only during that call. */
typedef struct evexec_job evexec_job;
/**
 * Names a job of one port. Never 0 for a real job. An id stays safe to use
 * after its job has been delivered: evexec_cancel() then answers -ENOENT.
 * (Ids of one port are reused only after 2^32 submissions to it.)
 */
typedef uint64_t evexec_job_id;

/** A group of jobs with one callback for all of them (see evexec_group_new()).
 *  Opaque. */
typedef struct evexec_group evexec_group;

/** A loop: an event_base run by evexec in a thread of its own. Opaque. */
typedef struct evexec_loop evexec_loop;
/** The waiting side of a call (evexec_loop_call()) or of a pool job
 *  (evexec_pool_call()). Opaque. */
typedef struct evexec_future evexec_future;
/** The loop side of a call, settled once by the call's code. Opaque. */
typedef struct evexec_promise evexec_promise;

/** Stop mode of evexec_pool_shutdown() and evexec_loop_stop(): queued jobs
 *  and calls still run. */
#define EVEXEC_DRAIN 0
/** Stop mode of evexec_pool_shutdown() and evexec_loop_stop(): queued jobs
 *  and calls are delivered as -ECANCELED without running. */
#define EVEXEC_CANCEL 1

/** Priority class (evexec_job_opts.priority, evexec_pool_set_class_limit()):
 *  queued jobs of this class start first. */
#define EVEXEC_PRIO_HIGH (-1)
/** Priority class: the default, that of evexec_submit() and
 *  evexec_pool_call(). */
#define EVEXEC_PRIO_NORMAL 0
/** Priority class: queued jobs of this class start last (but do not starve:
 *  see evexec_job_opts.priority). */
#define EVEXEC_PRIO_LOW 1

/** Timeout of evexec_future_wait() and evexec_job_opts.wait_ms: wait until
 *  the future completes, or until there is room in the queue. */
#define EVEXEC_WAIT_FOREVER (-1)
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Pools */
/**@{*/

/**
 * A worker thread's start hook (evexec_pool_opts.worker_init).
 *
 * @param worker_arg  evexec_pool_opts.worker_arg.
 * @param[out] state  the thread's state, NULL until set; reached by its work
 *                    functions through evexec_worker_state().
 * @return 0, or non-zero to make the thread exit without taking a job.
 *
 * Thread: the new worker thread, before its first job.
 */
typedef int (*evexec_worker_init_fn)(void *worker_arg, void **state);

/**
 * A worker thread's exit hook (evexec_pool_opts.worker_fini): releases what
 * worker_init made.
 *
 * Thread: the exiting worker thread, after its last job.
 */
typedef void (*evexec_worker_fini_fn)(void *state, void *worker_arg);

/** Most threads one pool may have. */
#define EVEXEC_MAX_THREADS 1024
/** Largest queue bound one pool may have. */
#define EVEXEC_MAX_QUEUED (1u << 28)
/** idle_timeout_ms value: surplus threads never exit. */
#define EVEXEC_IDLE_FOREVER 0xffffffffu
/** evexec_pool_opts.overflow: a submit to a full queue fails with -EAGAIN. */
#define EVEXEC_OVERFLOW_REJECT 0
/** evexec_pool_opts.overflow: a submit to a full queue drops the oldest
 *  queued job of the lowest priority class (see evexec_pool_opts). */
#define EVEXEC_OVERFLOW_DROP_OLDEST 1
/** evexec_pool_opts.flags: keep histograms of queue wait and run time (see
 *  evexec_pool_histograms()). Costs two clock reads per job. */
#define EVEXEC_POOL_HISTOGRAMS 0x1u
/** evexec_pool_opts.flags: run the workers in SCHED_BATCH (Linux; ignored
 *  elsewhere). Same CPU share, but a worker that wakes up does not preempt
 *  the thread running on its CPU, so the loop thread keeps its CPU through
 *  a burst of submits (far fewer context switches and futex calls). The
 *  price is latency whenever the CPUs are busy: a worker woken from a sleep
 *  or a blocking call waits for the running thread's time slice, up to a
 *  few milliseconds. Off by default; for bursts of short CPU-bound jobs.
 *  bench/README.md has the measurements (W1, W3, W5). */
#define EVEXEC_POOL_SCHED_BATCH 0x2u
/** evexec_pool_opts.flags: workers never yield their CPU between jobs. By
 *  default a worker that has run for 25 microseconds without running out
 *  of work calls sched_yield() before its next job, so that a thread
 *  waiting for its CPU (the loop thread, whose timer fired) runs after at
 *  most one job instead of after the worker's time slice (about a
 *  millisecond); the worker keeps its CPU share. Costs a clock read every
 *  1 to 256 jobs (fewer, the shorter the jobs) and, for busy workers, a
 *  system call every 25 microseconds. Set it for pools whose workers own
 *  their CPUs (no loop thread or other latency-sensitive thread beside
 *  them). bench/README.md "W5" has the figures. (Since 0.4.0.) */
#define EVEXEC_POOL_NO_YIELD 0x4u

/**
 * Options for evexec_pool_new(). Start from ::EVEXEC_POOL_OPTS_INIT so that
 * @c size is set and every other field means "default"; fields added in later
 * versions go at the end, so a program compiled against an older header keeps
 * working.
 */
struct evexec_pool_opts {
    /** sizeof(struct evexec_pool_opts), set by ::EVEXEC_POOL_OPTS_INIT. */
    size_t size;
    /** Most worker threads, 1..::EVEXEC_MAX_THREADS; 0 means 4. */
    unsigned max_threads;
    /** Threads started at once and never reaped; 0..max_threads. Default 0. */
    unsigned min_threads;
    /** Most jobs waiting in the queue (not counting running ones),
     * 1..::EVEXEC_MAX_QUEUED; 0 means 65536. A submit beyond it fails with
     * -EAGAIN. */
    size_t max_queued;
    /** A thread above min_threads that finds no work for this long exits;
     * 0 means 10000 ms; ::EVEXEC_IDLE_FOREVER means never. */
    unsigned idle_timeout_ms;
    /** Thread name prefix: workers are named "<name>-<n>", n counting from 1.
     * Copied. NULL or "" means "evexec". Linux keeps 15 bytes of a thread
     * name, so keep it to 10 characters for the number to show. At most 63
     * bytes. */
    const char *name;
    /** Worker stack size in bytes; 0 means the system default. Otherwise at
     * least 16 KiB and at most 1 GiB; rounded up to a page. */
    size_t stack_size;
    /** Spinning, 0..10000 µs; 0 (the default) means 50 µs. A worker that
     * finds no job keeps polling for this long before it sleeps, so a job
     * submitted meanwhile starts without waking a sleeping thread (which
     * costs the submitter a syscall and the job tens of microseconds on a
     * virtual machine). A longer spin trades CPU time for latency: worth it
     * for request/response traffic with a job in flight at a time. At most
     * one worker spins at a time, and none on the CPU its submitters last
     * ran on (it would only delay them). */
    unsigned spin_us;
    /** Added to the workers' nice value, 0..19 (Linux, where nice is per
     * thread; ignored elsewhere). Default 0. Workers that keep every CPU
     * busy already let the loop thread in after one job (they yield, see
     * evexec_pool_new(), and ports gather completions under load, see
     * evexec_port_new()); a positive value also gives the rest of the
     * process and the machine precedence over the workers. Niced workers
     * lose CPU time to every other busy thread of their scheduling group
     * (Linux weighs nice values within an autogroup or a CPU cgroup: the
     * daemon's own threads, or the whole machine where neither applies). */
    unsigned nice;
    /** What a submit does when the queue is at max_queued:
     * ::EVEXEC_OVERFLOW_REJECT (0, the default) fails it with -EAGAIN;
     * ::EVEXEC_OVERFLOW_DROP_OLDEST takes the oldest queued job of the
     * lowest priority class not above the new job's off the queue (its done
     * callback runs with -ECANCELED, it counts as cancelled and dropped) and
     * accepts the new one; if every queued job has a higher priority than
     * the new one, the new one is rejected with -EAGAIN. */
    int overflow;
    /** Most jobs of ::EVEXEC_PRIO_HIGH running at once (libuv's cap on
     * slow I/O, per class), 0..::EVEXEC_MAX_THREADS; 0 (the default) means
     * no limit but max_threads. A queued job whose class is at its limit
     * waits while other classes' jobs run, so a flood of slow work (DNS,
     * say) at one priority cannot occupy every worker. Changed at run time
     * with evexec_pool_set_class_limit(). */
    unsigned max_running_high;
    /** Most jobs of ::EVEXEC_PRIO_NORMAL running at once; as
     * max_running_high. */
    unsigned max_running_normal;
    /** Most jobs of ::EVEXEC_PRIO_LOW running at once; as max_running_high. */
    unsigned max_running_low;
    /** ::EVEXEC_POOL_HISTOGRAMS, ::EVEXEC_POOL_SCHED_BATCH,
     * ::EVEXEC_POOL_NO_YIELD, or'ed, or 0 (the default); other bits:
     * -EINVAL. */
    unsigned flags;
    /** Called on each worker thread when it starts, before it takes a job;
     * NULL for none. It may set *state, which the thread's work functions
     * reach with evexec_worker_state() (a database connection per thread,
     * say). A non-zero return makes the thread exit at once without
     * running a job (worker_fini is not called for it); it counts in
     * evexec_pool_stats() as worker_init_failed, and if no thread is left,
     * queued jobs are delivered as -ECANCELED (never stranded). */
    evexec_worker_init_fn worker_init;
    /** Called on each worker thread before it exits (idle timeout, resize,
     * shutdown), with the state its worker_init set; NULL for none. */
    evexec_worker_fini_fn worker_fini;
    /** Passed to worker_init and worker_fini; owned by the caller, who keeps
     * it valid until evexec_pool_free() returns. */
    void *worker_arg;
};

/** Initialiser for struct evexec_pool_opts: all defaults. */
#define EVEXEC_POOL_OPTS_INIT                                                       \
    {                                                                               \
        .size = sizeof(struct evexec_pool_opts), .max_threads = 0, .min_threads = 0, \
        .max_queued = 0, .idle_timeout_ms = 0, .name = NULL, .stack_size = 0,       \
        .spin_us = 0, .nice = 0, .overflow = EVEXEC_OVERFLOW_REJECT,                \
        .max_running_high = 0, .max_running_normal = 0, .max_running_low = 0,       \
        .flags = 0, .worker_init = NULL, .worker_fini = NULL, .worker_arg = NULL    \
    }

/**
 * Creates a pool.
 *
 * Starts min_threads workers at once; the others start when work arrives
 * and no worker is idle. Each minimum worker is started once: one whose
 * worker_init fails exits and is not replaced by this call, which still
 * returns 0 (see evexec_pool_stats() worker_init_failed).
 *
 * Sleeping workers are woken for queued jobs by the workers, not by the
 * submitting thread where it can be helped. A backlog of up to four jobs
 * behind busy workers may wake nobody at once: the busy workers take it
 * when they finish, and one sleeping worker (the watchman) looks again
 * within 0.1 to 1 ms and takes a job if, at the pace the busy workers
 * have been finishing jobs, the backlog would wait longer than about
 * 0.1 ms (they block, or their jobs are long). While such a watchman is
 * about and a worker is busy, a submit wakes nobody either: its job waits
 * for the busy workers or the watchman's next look. So a burst costs the
 * submitting thread no wake-up, a few short jobs run where the CPU is
 * already warm, and jobs queued behind blocking calls wait at most about a
 * millisecond for a worker of their own while one is idle.
 *
 * A worker that takes a job while more wait (at least one per thread)
 * takes up to four more of them ahead, to run one after the other without
 * the pool's lock. They are still queued jobs: evexec_cancel() takes them
 * back (0, never run), stats count them as queued, max_queued counts
 * them, a job of a higher priority or EVEXEC_CANCEL takes them back; and
 * if that worker blocks, the others take them over instead of waiting. A
 * pool of one thread still starts jobs in submission order; with several,
 * a job taken back from a busy worker may start after newer ones.
 *
 * A worker that has run for 25 microseconds without running out of work
 * yields its CPU (sched_yield()) before its next job, so that the loop
 * thread or any other thread waiting for that CPU runs after one job, not
 * after the worker's time slice; it keeps its CPU share (no nice value).
 * ::EVEXEC_POOL_NO_YIELD turns that off.
 *
 * @param[out] out  receives the pool; untouched on error.
 * @param opts      options, or NULL for all defaults. Only read during the call.
 * @return 0, or
 *   - -EINVAL: @p out NULL, opts->size smaller than the first version of the
 *     struct or larger than 4096, or a field out of its documented range;
 *   - -E2BIG: opts->size larger than this library knows (up to 4096), with
 *     non-zero bytes in the part it does not know (a newer option it
 *     cannot honour); a part it does not know that is all zero is accepted
 *     and ignored;
 *   - -ENOMEM: out of memory;
 *   - -EAGAIN (or another error of pthread_create()): a min_threads worker
 *     could not be started.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_pool_new(evexec_pool **out, const struct evexec_pool_opts *opts);

/**
 * Stops a pool from accepting jobs, without waiting.
 *
 * From now on evexec_submit() to this pool returns -ESHUTDOWN. With
 * ::EVEXEC_DRAIN every queued job still runs; with ::EVEXEC_CANCEL every
 * queued job is taken off the queue and delivered as -ECANCELED, and running
 * jobs have their stop flag set (see evexec_job_cancelled()) and finish. In
 * both modes every accepted job still gets its done callback, from its
 * port's loop. Workers exit once the queue is empty.
 *
 * A pool shut down with ::EVEXEC_DRAIN may be shut down again with
 * ::EVEXEC_CANCEL: that cancels what is still queued (a daemon's second
 * SIGINT).
 *
 * Never blocks and never runs a callback.
 *
 * @param pool  the pool.
 * @param how   ::EVEXEC_DRAIN or ::EVEXEC_CANCEL.
 * @return 0, or -EINVAL (NULL pool, or @p how not a mode), or -EALREADY (the
 *   pool was already shut down with this mode or a stronger one).
 *
 * Thread: any thread, including the pool's own workers.
 */
EVEXEC_EXPORT int evexec_pool_shutdown(evexec_pool *pool, int how);

/**
 * Shuts a pool down (::EVEXEC_DRAIN, unless it was already shut down), waits
 * for its queued and running work functions to return, joins its threads and
 * releases the handle.
 *
 * This call blocks until the work is done: shut down with ::EVEXEC_CANCEL
 * first to wait only for running jobs. It does not wait for done callbacks:
 * they are delivered afterwards by their ports' loops, as usual. It may be
 * called from a done callback (the loop is then held up while running work
 * finishes). A work function that waits for the calling thread deadlocks.
 * After it returns 0 the handle must not be used.
 *
 * @param pool  the pool, or NULL.
 * @return 0, or -EDEADLK when called from one of this pool's own workers,
 *   or -EPERM for a port's default pool (evexec_port_default_pool(): its
 *   port frees it); nothing is done then. NULL is a no-op returning 0.
 *
 * Thread: any thread but the pool's own workers.
 */
EVEXEC_EXPORT int evexec_pool_free(evexec_pool *pool);

/** A snapshot of a pool's counters, filled by evexec_pool_stats(). */
struct evexec_pool_stats {
    /** Set by the caller to sizeof(struct evexec_pool_stats). */
    size_t size;
    unsigned threads;    /**< threads alive (busy, idle or starting) */
    unsigned idle;       /**< threads waiting for work */
    unsigned running;    /**< jobs handed to a worker and not finished
                              (busy threads) */
    size_t queued;       /**< jobs waiting (those workers took ahead included) */
    uint64_t submitted;  /**< jobs accepted since creation */
    uint64_t completed;  /**< work functions that have returned */
    uint64_t cancelled;  /**< jobs taken off the queue as cancelled */
    uint64_t rejected;   /**< submits refused (-EAGAIN, -ESHUTDOWN) */
    uint64_t threads_started; /**< threads started since creation */
    /* Added with priorities, deadlines and resizing: */
    size_t queued_high;    /**< of queued, jobs of ::EVEXEC_PRIO_HIGH */
    size_t queued_normal;  /**< of queued, jobs of ::EVEXEC_PRIO_NORMAL */
    size_t queued_low;     /**< of queued, jobs of ::EVEXEC_PRIO_LOW */
    unsigned running_high;   /**< of running, jobs of ::EVEXEC_PRIO_HIGH */
    unsigned running_normal; /**< of running, jobs of ::EVEXEC_PRIO_NORMAL */
    unsigned running_low;    /**< of running, jobs of ::EVEXEC_PRIO_LOW */
    uint64_t timed_out;    /**< jobs whose deadline passed first (delivered
                                as -ETIMEDOUT) */
    uint64_t dropped;      /**< queued jobs dropped by
                                ::EVEXEC_OVERFLOW_DROP_OLDEST (also counted
                                in cancelled) */
    uint64_t worker_init_failed; /**< threads whose worker_init failed */
    unsigned max_threads;  /**< the current max_threads (see evexec_pool_resize()) */
    unsigned min_threads;  /**< the current min_threads */
    size_t max_queued;     /**< the current max_queued */
};

/**
 * Fills @p out with a consistent snapshot of the pool's counters.
 *
 * Set out->size first; only that many bytes are written, so a program built
 * against an older header keeps working.
 *
 * @param pool      the pool.
 * @param[in,out] out  the snapshot; out->size set by the caller.
 * @return 0, or -EINVAL (NULL pointer, or out->size smaller than the first
 *   version of the struct).
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_pool_stats(evexec_pool *pool, struct evexec_pool_stats *out);

/** Buckets of struct evexec_pool_histograms. */
#define EVEXEC_HIST_BUCKETS 48

/**
 * Log-scaled histograms of a pool's jobs, filled by evexec_pool_histograms().
 * Bucket 0 counts durations under 2 ns; bucket i (1..46) counts durations d
 * with 2^i <= d < 2^(i+1) nanoseconds; bucket 47 counts everything longer
 * (2^47 ns is 39 hours). The upper bound of bucket i is 2^(i+1) ns.
 */
struct evexec_pool_histograms {
    /** Set by the caller to sizeof(struct evexec_pool_histograms). */
    size_t size;
    /** Queue wait: from the submit to the start of the work function. */
    uint64_t wait[EVEXEC_HIST_BUCKETS];
    /** Run time of the work function. */
    uint64_t run[EVEXEC_HIST_BUCKETS];
};

/**
 * Fills @p out with the histograms of every job that has run so far in a
 * pool created with ::EVEXEC_POOL_HISTOGRAMS.
 *
 * Workers record into counters of their own, without a lock; this call sums
 * them, so a snapshot taken while jobs run may count a job's wait but not
 * yet its run time. Jobs cancelled before they ran are not counted.
 *
 * @param pool      the pool.
 * @param[in,out] out  the histograms; out->size set by the caller.
 * @return 0, or -EINVAL (NULL pointer, or out->size smaller than
 *   sizeof(struct evexec_pool_histograms)), or -ENOTSUP (the pool keeps no
 *   histograms).
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_pool_histograms(evexec_pool *pool, struct evexec_pool_histograms *out);

/**
 * Changes a live pool's thread and queue limits.
 *
 * Growing max_threads starts threads at once for jobs waiting in the queue;
 * growing min_threads starts threads up to it. Each missing thread is
 * started once: one whose worker_init fails is not replaced by this call,
 * and a shutdown meanwhile stops it (-ESHUTDOWN). Shrinking never interrupts a
 * running job: threads above the new max_threads exit when they finish
 * their current job (idle ones at once), and threads above min_threads are
 * reaped by the idle timeout again. A max_queued below the number of jobs
 * already queued keeps them all; new submits fail (or drop, see
 * evexec_pool_opts.overflow) until the queue is below it. Blocked
 * evexec_submit_threadsafe() callers are woken if there is now room.
 *
 * @param pool         the pool.
 * @param min_threads  0..max_threads.
 * @param max_threads  1..::EVEXEC_MAX_THREADS.
 * @param max_queued   1..::EVEXEC_MAX_QUEUED.
 * @return 0, or -EINVAL (NULL pool or a value out of range; nothing
 *   changes), -ESHUTDOWN (the pool was shut down: before the call, and
 *   nothing changes, or while it started threads, and the limits are set),
 *   or the error of pthread_create() when a thread min_threads asks for
 *   could not start (the limits are set all the same).
 *
 * Thread: any thread, including the pool's own workers.
 */
EVEXEC_EXPORT int evexec_pool_resize(evexec_pool *pool, unsigned min_threads,
                                     unsigned max_threads, size_t max_queued);

/**
 * Sets the most jobs of one priority class that may run at once (see
 * evexec_pool_opts.max_running_high), 0 meaning no limit but max_threads.
 * Lowering it below the number running interrupts nothing: jobs of the
 * class simply start again once fewer run. On a pool already shut down the
 * limit is set and no thread is started (0).
 *
 * @param pool      the pool.
 * @param priority  ::EVEXEC_PRIO_HIGH, ::EVEXEC_PRIO_NORMAL or
 *                  ::EVEXEC_PRIO_LOW.
 * @param max_running  the new limit, 0..::EVEXEC_MAX_THREADS; 0 means none
 *                      but max_threads.
 * @return 0, or -EINVAL (NULL pool, a bad priority, or a limit above
 *   ::EVEXEC_MAX_THREADS), or the error of starting a thread that the new
 *   limit calls for (-EAGAIN, -ENOMEM): the limit is set all the same, and
 *   the jobs it lets start wait for a thread.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_pool_set_class_limit(evexec_pool *pool, int priority,
                                              unsigned max_running);

/**
 * The state the worker_init hook of the worker running @p job set (see
 * evexec_pool_opts.worker_init).
 *
 * @param job  the job of the calling work function.
 * @return the state, or NULL: no hook, the hook left it NULL, @p job NULL,
 *   or not called by the worker running @p job.
 *
 * Thread: the worker running @p job (from inside its work function).
 */
EVEXEC_EXPORT void *evexec_worker_state(const evexec_job *job);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Ports */
/**@{*/

/** Options for evexec_port_new(); start from ::EVEXEC_PORT_OPTS_INIT. */
struct evexec_port_opts {
    /** sizeof(struct evexec_port_opts), set by ::EVEXEC_PORT_OPTS_INIT. */
    size_t size;
    /** Most done callbacks run per wake-up before the loop gets to its other
     * events again, 1..1048576; 0 means 128. */
    unsigned max_batch;
    /** libevent priority of the port's events (see
     * event_base_priority_init()); -1 means the base's default. */
    int priority;
    /** Under load, the longest a finished job may wait for the loop to
     * gather it with others, in microseconds, 1..100000; 0 means 200; -1
     * turns gathering off (every completion that finds the loop asleep
     * wakes it at once). See "Gathering under load" at evexec_port_new().
     * (Since 0.4.0; a caller built against an older header gets 0.) */
    int max_delay_us;
};

/** Initialiser for struct evexec_port_opts: all defaults. */
#define EVEXEC_PORT_OPTS_INIT \
    { .size = sizeof(struct evexec_port_opts), .max_batch = 0, .priority = -1, .max_delay_us = 0 }

/**
 * Creates the completion port of an event_base.
 *
 * The calling thread becomes the port's loop thread: it must be the thread
 * that runs @p base. The port opens a wake fd and, on Linux unless
 * max_delay_us is -1, a timer fd for gathering (below), both close-on-exec,
 * and adds a persistent read event for each to @p base, so
 * event_base_dispatch() keeps running while the port exists.
 *
 * CPU: when done callbacks submit jobs (a request's next step), the port
 * looks for their completions for up to 4 microseconds after the last
 * callback before it returns to the loop, instead of sleeping and being
 * woken: a job that a worker on another CPU finishes meanwhile costs no
 * system call, and its callback runs in the same delivery run. A run looks
 * for 16 microseconds in all at most, then lets the loop's other events
 * run (as it does after max_batch callbacks). The look adapts: after looks
 * that find nothing (every thread on one CPU, or longer jobs) it stops,
 * trying again about once every 64 such runs for half a microsecond.
 *
 * Gathering under load: each wake-up costs the loop thread tens of
 * microseconds of CPU on a virtual machine; while workers keep every CPU
 * busy that time is taken from them, and a loop always asking for the CPU
 * is the thread the scheduler makes wait (a late timer, a slow reply). So
 * when at least 16 of the port's jobs are outstanding and each stays away
 * (queued and running) at least 80 microseconds, as Little's law tells
 * from the recent rate of completions (outstanding jobs over completions
 * per second), the loop does not sleep on its wake fd after a delivery
 * run: finished jobs gather, with no system call on the workers' side, and
 * a timer brings the loop back to deliver them in one run after a quarter
 * of the jobs' time away, at most max_delay_us (200 by default). A
 * callback so comes at most a quarter later than its job alone would let
 * it, and never more than max_delay_us late. Gathering stops when a
 * gathering run finds nothing came, or fewer than 16 jobs are outstanding,
 * or their time away drops below 80 microseconds. Completions of jobs
 * submitted by other threads (evexec_submit_threadsafe()) come home the
 * same way. The timer is a timerfd (Linux), the port's second fd; where
 * there is none the port never gathers (evexec_port_stats() counts the
 * runs the timer started).
 *
 * Memory: the port keeps its jobs (56 bytes each on 64-bit Linux) in
 * 64 KiB chunks it maps with mmap(), reuses them and unmaps them only with
 * the port, so only a burst larger than any before costs page faults.
 * Past 32 chunks (about 37,000 jobs) it maps 2 MiB regions at a time and
 * asks for transparent huge pages there (madvise(MADV_HUGEPAGE), where
 * the system allows THP on request): such a burst faults one page per
 * 2 MiB instead of 512. Where the THP defrag setting makes those faults
 * compact memory, the job that first touches a new region may wait for it.
 *
 * @param[out] out  receives the port; untouched on error.
 * @param base      the event_base; it must outlive the port.
 * @param opts      options, or NULL for all defaults. Only read during the call.
 * @return 0, or -EINVAL (NULL @p out or @p base, bad size or field), -E2BIG
 *   (see evexec_pool_new()), -ENOMEM, or the error of eventfd()/pipe() or
 *   timerfd_create() (-EMFILE, -ENFILE).
 *
 * Thread: the thread that will run @p base.
 */
EVEXEC_EXPORT int evexec_port_new(evexec_port **out, struct event_base *base,
                                  const struct evexec_port_opts *opts);

/**
 * Releases a port.
 *
 * With no job outstanding, everything is released at once. Otherwise the
 * port first cancels its queued jobs and sets the stop flag of its running
 * ones; every outstanding job still gets its done callback (queued ones with
 * -ECANCELED), on later iterations of the loop, after which the port
 * releases itself. Until then it keeps its event on the base, so
 * event_base_dispatch() returns only after the last callback. Never runs a
 * callback itself and never blocks.
 *
 * After the call the handle must not be used, except that evexec_submit()
 * through it from a done callback still delivered by it returns -ESHUTDOWN.
 *
 * @param port  the port, or NULL.
 * @return 0, or -EPERM when not called on the loop thread, or when @p port
 *   is a loop's own port (evexec_loop_port(): the loop frees it); nothing
 *   is done then. NULL is a no-op returning 0.
 *
 * Thread: the port's loop thread, including from a done callback.
 */
EVEXEC_EXPORT int evexec_port_free(evexec_port *port);

/** A snapshot of a port's counters, filled by evexec_port_stats(). */
struct evexec_port_stats {
    /** Set by the caller to sizeof(struct evexec_port_stats). */
    size_t size;
    size_t outstanding;   /**< jobs accepted whose callback has not run yet */
    uint64_t delivered;   /**< done callbacks run */
    uint64_t wakeups;     /**< wake-fd writes the loop has read: workers
                               write only when the completion list was
                               empty and the loop not delivering, so one
                               covers a whole burst */
    uint64_t batches;     /**< runs of the delivery loop (each at most
                               max_batch callbacks) */
    uint64_t gathered;    /**< of those, runs that the timer of a
                               gathering under load started (see
                               evexec_port_new()); since 0.4.0 */
};

/**
 * Fills @p out with the port's counters; see evexec_pool_stats() for @c size.
 *
 * @param port      the port.
 * @param[in,out] out  the snapshot; out->size set by the caller.
 * @return 0, or -EINVAL (NULL pointer, bad size), or -EPERM (wrong thread).
 *
 * Thread: the port's loop thread.
 */
EVEXEC_EXPORT int evexec_port_stats(evexec_port *port, struct evexec_port_stats *out);

/**
 * The port's default pool, created on first use: what a NULL pool given to
 * evexec_submit(), evexec_submit_ex() or evexec_submit_threadsafe() means
 * (asyncio's default executor, for callers who do not want to manage a
 * pool).
 *
 * It has min(32, CPUs + 4) threads at most (Python's rule for its default
 * executor: I/O-bound work wants more threads than CPUs), none until work
 * arrives, threads named "evexec-def-<n>", and every other option at its
 * default. It belongs to the port: evexec_port_free() releases it once the
 * port's jobs are all delivered (blocking only if other ports still have
 * work running on it): evexec_pool_free() refuses it (-EPERM). For a pool
 * that must outlive the port, make your own.
 *
 * @param port      the port.
 * @param[out] out  receives the pool; untouched on error.
 * @return 0, or -EINVAL (NULL pointer), -ESHUTDOWN (the port was freed),
 *   -ENOMEM.
 *
 * Thread: any thread (the port must still exist).
 */
EVEXEC_EXPORT int evexec_port_default_pool(evexec_port *port, evexec_pool **out);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Jobs */
/**@{*/

/**
 * The blocking function run on a worker thread.
 *
 * @param job  the job; pass it to evexec_job_cancelled() to learn whether a
 *             stop was requested. Valid until the function returns.
 * @param arg  the caller's pointer given to evexec_submit().
 * @return     a result handed unchanged to the done callback.
 *
 * Thread: a worker of the pool the job was submitted to.
 */
typedef void *(*evexec_work_fn)(evexec_job *job, void *arg);

/**
 * The completion callback, run on the port's loop thread.
 *
 * @param status  0 if the work function ran (its return value is in
 *                @p result), or -ECANCELED if the job was cancelled before it
 *                started (by evexec_cancel(), evexec_group_cancel(),
 *                evexec_pool_shutdown() with ::EVEXEC_CANCEL,
 *                evexec_port_free(), or dropped by
 *                ::EVEXEC_OVERFLOW_DROP_OLDEST), or -ETIMEDOUT if its
 *                deadline (evexec_job_opts.timeout_ms) passed first; @p result
 *                is NULL for both.
 * @param result  what the work function returned.
 * @param arg     the caller's pointer given to evexec_submit().
 *
 * The callback may call any evexec function, including evexec_submit(),
 * evexec_port_free() and evexec_pool_free(). Its job's id is no longer valid.
 *
 * Thread: the loop thread of the port the job was submitted through.
 */
typedef void (*evexec_done_fn)(int status, void *result, void *arg);

/**
 * Submits a job: @p work runs on a worker of @p pool, then @p done runs on
 * the loop thread of @p port.
 *
 * Never blocks: an idle worker is handed the job directly, unless busy
 * workers are left to take it (see evexec_pool_new()); otherwise the job
 * is queued and, if the pool may grow, a thread is started. Jobs start in
 * submission order (within a priority class: see evexec_submit_ex(); with
 * several workers, see evexec_pool_new() for jobs taken ahead). Done
 * callbacks run in batches; within a batch, in submission order.
 *
 * @param port  the port whose loop thread runs @p done.
 * @param pool  the pool whose worker runs @p work; NULL for the port's
 *              default pool (evexec_port_default_pool()).
 * @param work  the blocking function; must not be NULL.
 * @param done  the completion callback, or NULL for none.
 * @param arg   passed to both; owned by the caller.
 * @param[out] id  receives the job's id, or NULL if not wanted. Untouched on
 *   error.
 * @return 0 (@p done will run exactly once), or, with no callback ever:
 *   - -EINVAL: @p port or @p work is NULL;
 *   - -EPERM: not called on the port's loop thread;
 *   - -EAGAIN: the queue is at max_queued, or no worker thread exists and
 *     none could be started (jobs other loops had queued, counting on a
 *     thread that then failed to start, are then delivered as
 *     -ECANCELED: accepted jobs are never left without a thread);
 *   - -ESHUTDOWN: the pool was shut down, or the port freed, or the port
 *     is a loop's (evexec_loop_port()) and the loop is being stopped with
 *     ::EVEXEC_CANCEL or is finishing (see evexec_loop_stop());
 *   - -ENOMEM: out of memory.
 *
 * Thread: the port's loop thread.
 */
EVEXEC_EXPORT int evexec_submit(evexec_port *port, evexec_pool *pool, evexec_work_fn work,
                                evexec_done_fn done, void *arg, evexec_job_id *id);

/**
 * Releases a result that came too late: the work function of a job whose
 * deadline had passed returned @p result after its done callback had
 * already run with -ETIMEDOUT.
 *
 * Thread: the port's loop thread.
 */
typedef void (*evexec_cleanup_fn)(void *result, void *arg);

/**
 * Per-job options for evexec_submit_ex() and evexec_submit_threadsafe();
 * start from ::EVEXEC_JOB_OPTS_INIT.
 */
struct evexec_job_opts {
    /** sizeof(struct evexec_job_opts), set by ::EVEXEC_JOB_OPTS_INIT. */
    size_t size;
    /** ::EVEXEC_PRIO_HIGH, ::EVEXEC_PRIO_NORMAL (0, the default) or
     * ::EVEXEC_PRIO_LOW. Queued jobs start highest class first, oldest first
     * within a class, except that a class passed over 8 times in a row while
     * it had jobs waiting goes next, so no class starves. Per-class limits
     * on running jobs: evexec_pool_opts.max_running_high. */
    int priority;
    /** Deadline in milliseconds from the submit; 0 (the default) means none.
     * If the done callback has not run by then, it runs with -ETIMEDOUT on
     * the loop thread, and the job is cancelled if still queued or has its
     * stop flag set if running. When such a job's work function returns
     * later, its result goes to @c cleanup (never to the done callback). At
     * most 2^31 - 1. Loop thread only: evexec_submit_ex(). */
    unsigned timeout_ms;
    /** Releases a late result (see timeout_ms); NULL if results need no
     * release (or are released by the work function itself). Called with
     * the job's arg, on the loop thread, only for a non-NULL result. */
    evexec_cleanup_fn cleanup;
    /** Makes the job a member of this group (evexec_group_new()); NULL for
     * none. Loop thread only: evexec_submit_ex(). */
    evexec_group *group;
    /** evexec_submit_threadsafe() only: how long to wait for room when the
     * queue is full, in milliseconds; 0 (the default) fails at once with
     * -EAGAIN, ::EVEXEC_WAIT_FOREVER waits until there is room or the pool
     * is shut down. */
    int wait_ms;
};

/** Initialiser for struct evexec_job_opts: all defaults. */
#define EVEXEC_JOB_OPTS_INIT                                                      \
    {                                                                             \
        .size = sizeof(struct evexec_job_opts), .priority = EVEXEC_PRIO_NORMAL,   \
        .timeout_ms = 0, .cleanup = NULL, .group = NULL, .wait_ms = 0             \
    }

/**
 * evexec_submit() with options: a priority, a deadline, a group.
 *
 * Everything evexec_submit() says holds. With opts NULL (or all defaults)
 * it is evexec_submit().
 *
 * @param port  as evexec_submit().
 * @param pool  as evexec_submit(); NULL for the port's default pool.
 * @param work  as evexec_submit().
 * @param done  as evexec_submit().
 * @param arg   as evexec_submit().
 * @param opts  options, or NULL; only read during the call.
 * @param[out] id  as evexec_submit().
 * @return as evexec_submit(), and
 *   - -EINVAL also for: a bad opts->size, a priority not a class, a
 *     timeout_ms above 2^31 - 1, a non-zero wait_ms (the loop thread must
 *     never block), a group of another port, or a group already closed or
 *     done (see evexec_group_close());
 *   - -E2BIG: see evexec_pool_new().
 *
 * Thread: the port's loop thread.
 */
EVEXEC_EXPORT int evexec_submit_ex(evexec_port *port, evexec_pool *pool, evexec_work_fn work,
                                   evexec_done_fn done, void *arg,
                                   const struct evexec_job_opts *opts, evexec_job_id *id);

/**
 * Submits a job from any thread, a worker or a foreign thread, with @p done
 * run on the loop thread of @p port, as for evexec_submit(). libuv has no
 * equivalent: there, only the loop thread may queue work.
 *
 * The job gets no id: it is cancelled by evexec_port_free() or
 * evexec_pool_shutdown() with ::EVEXEC_CANCEL, like any job. Options other
 * than priority and wait_ms must be left at their defaults (deadlines and
 * groups live on the loop thread). Each call takes a lock of the port's
 * for a moment; the port keeps the jobs' memory for reuse.
 *
 * The port must exist for the whole call: stop the threads that submit to
 * a port before freeing it (for a loop's port, evexec_loop_port(), before
 * stopping the loop; a thread that cannot know when the loop stops should
 * post with evexec_loop_call() instead, whose futures keep what they need
 * alive). Between evexec_port_free() and the port's release, submits
 * return -ESHUTDOWN; a submit already waiting for room (wait_ms) when the
 * port is freed goes on waiting until room comes, its wait_ms passes or the
 * pool is shut down, and keeps the port from being released meanwhile (its
 * job, if accepted, is delivered as usual). A work function may always
 * submit follow-up work
 * through the port of its own job: the port cannot go while that job is
 * outstanding.
 *
 * @param port   the port whose loop thread runs @p done; it must exist for
 *               the whole call (see above).
 * @param pool   as evexec_submit(); NULL for the port's default pool.
 * @param work   the blocking function; must not be NULL.
 * @param done   the completion callback, or NULL for none.
 * @param arg    passed to both; owned by the caller.
 * @param opts   options, or NULL; only read during the call.
 * @return 0 (@p done will run exactly once, on the loop thread), or, with
 *   no callback ever:
 *   - -EINVAL: @p port or @p work NULL; bad opts (as evexec_submit_ex()),
 *     a timeout_ms, cleanup or group set, or a wait_ms below
 *     ::EVEXEC_WAIT_FOREVER;
 *   - -EDEADLK: a non-zero wait_ms on the port's own loop thread or on a
 *     worker of @p pool (either would wait on itself);
 *   - -EAGAIN: the queue is full (and wait_ms is 0), or no worker could
 *     be started;
 *   - -ETIMEDOUT: the queue stayed full for wait_ms;
 *   - -ESHUTDOWN: the pool was shut down (also while waiting) or the port
 *     freed, or is a stopping loop's;
 *   - -ENOMEM, -E2BIG.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_submit_threadsafe(evexec_port *port, evexec_pool *pool,
                                           evexec_work_fn work, evexec_done_fn done, void *arg,
                                           const struct evexec_job_opts *opts);

/**
 * Cancels a job.
 *
 * A queued job is taken off its queue and its done callback runs with
 * -ECANCELED on a later iteration of the loop (never inside this call). A job
 * already handed to a worker cannot be taken back: its stop flag is set, so a
 * cooperative work function that polls evexec_job_cancelled() may return
 * early, and the callback runs as usual with status 0.
 *
 * @param port  the port the job was submitted through.
 * @param id    the job's id from evexec_submit().
 * @return 0 (cancelled), or
 *   - -EBUSY: the job is running or has run; its stop flag is now set;
 *   - -EALREADY: the job was already cancelled and awaits its callback;
 *   - -ENOENT: no such job: 0, an id of another port (a freed one
 *     included, even when this port was made at its address), or a job
 *     whose callback has already run;
 *   - -EINVAL: @p port is NULL;
 *   - -EPERM: not called on the port's loop thread.
 *
 * Thread: the port's loop thread.
 */
EVEXEC_EXPORT int evexec_cancel(evexec_port *port, evexec_job_id id);

/**
 * Tells a work function whether it was asked to stop: by evexec_cancel()
 * while running, evexec_pool_shutdown() with ::EVEXEC_CANCEL, or
 * evexec_port_free(). A long work function polls it and returns early.
 *
 * @param job  the job of the calling work function.
 * @return 1 if a stop was requested, 0 if not or if @p job is NULL.
 *
 * Thread: the worker running @p job (from inside its work function).
 */
EVEXEC_EXPORT int evexec_job_cancelled(const evexec_job *job);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Groups */
/**@{*/

/** evexec_group_new() mode: the callback runs once every member's done
 *  callback has run (asyncio.gather). */
#define EVEXEC_GROUP_ALL 0
/** evexec_group_new() mode: the callback runs right after the first
 *  member's done callback (asyncio.wait with FIRST_COMPLETED). */
#define EVEXEC_GROUP_FIRST 1
/** Flag for ::EVEXEC_GROUP_FIRST: then cancel the other members, as
 *  evexec_group_cancel() does. */
#define EVEXEC_GROUP_CANCEL_REST 2

/**
 * A group's callback.
 *
 * @param status  for ::EVEXEC_GROUP_ALL, 0 if every member's status was 0,
 *                else the first non-zero member status in delivery order
 *                (-ECANCELED, -ETIMEDOUT); for ::EVEXEC_GROUP_FIRST, the
 *                status of the first member delivered; -ENOENT if the group
 *                was closed with no member.
 * @param arg     the pointer given to evexec_group_new().
 *
 * Thread: the port's loop thread.
 */
typedef void (*evexec_group_fn)(int status, void *arg);

/**
 * Creates a group of jobs on a port: jobs join it through
 * evexec_job_opts.group at submit, each still gets its own done callback
 * (in the order the loop sees them complete: asyncio.as_completed), and
 * the group's callback runs once, after the member callback that decides
 * it:
 * - ::EVEXEC_GROUP_ALL: after the last member's, once the group is closed
 *   (evexec_group_close(): no more members can join);
 * - ::EVEXEC_GROUP_FIRST: after the first member's; add
 *   ::EVEXEC_GROUP_CANCEL_REST to cancel the others then (their done
 *   callbacks still run, queued ones with -ECANCELED).
 *
 * Ownership: the handle is the caller's until the group's callback has
 * returned; evexec releases the group after that, once every member is
 * delivered. evexec_port_free() closes every group of the port and cancels
 * their members, so every group's callback still runs (-ENOENT for one
 * that never had a member) before the port is released.
 *
 * @param[out] out  receives the group; untouched on error.
 * @param port  the port whose jobs may join the group.
 * @param how   ::EVEXEC_GROUP_ALL, ::EVEXEC_GROUP_FIRST, or
 *              ::EVEXEC_GROUP_FIRST | ::EVEXEC_GROUP_CANCEL_REST.
 * @param fn    the group's callback; NULL for none.
 * @param arg   passed to @p fn; owned by the caller.
 * @return 0, or -EINVAL (NULL @p out or @p port, a bad @p how), -EPERM
 *   (wrong thread), -ESHUTDOWN (the port was freed), -ENOMEM.
 *
 * Thread: the port's loop thread.
 */
EVEXEC_EXPORT int evexec_group_new(evexec_group **out, evexec_port *port, int how,
                                   evexec_group_fn fn, void *arg);

/**
 * Closes a group: no more members may join (evexec_submit_ex() then
 * answers -EINVAL). An ::EVEXEC_GROUP_ALL group's callback can run only
 * once it is closed; if every member has been delivered already (or there
 * was none), it runs on a later iteration of the loop, never inside this
 * call.
 *
 * @param group  the group.
 * @return 0, or -EINVAL (NULL), -EALREADY (already closed), -EPERM (wrong
 *   thread).
 *
 * Thread: the port's loop thread.
 */
EVEXEC_EXPORT int evexec_group_close(evexec_group *group);

/**
 * Cancels every member of a group, and closes it: queued members are
 * delivered as -ECANCELED, running ones have their stop flag set. The
 * group's callback runs once the members are delivered (for
 * ::EVEXEC_GROUP_ALL its status is then normally -ECANCELED), never inside
 * this call.
 *
 * It may be called from the group's own callback (to cancel the rest of
 * an ::EVEXEC_GROUP_FIRST group by hand).
 *
 * @param group  the group.
 * @return 0, or -EINVAL (NULL), -EPERM (wrong thread), -EALREADY (already
 *   cancelled, which includes an ::EVEXEC_GROUP_CANCEL_REST group once its
 *   callback is due).
 *
 * Thread: the port's loop thread.
 */
EVEXEC_EXPORT int evexec_group_cancel(evexec_group *group);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Loop thread
 *
 * The mirror image of pools and ports, for programs made of plain blocking
 * threads (a thread-per-request server, a command-line tool, a framework
 * with no event loop) that want libevent's asynchronous clients: evhttp,
 * evdns, bufferevents. evexec runs an event_base in a thread of its own (a
 * *loop*); any thread posts calls into it and waits on their results:
 * Python's loop-in-a-thread with run_coroutine_threadsafe(...).result().
 *
 * - evexec_loop_start() creates the base and its thread, runs an optional
 *   init hook there (to create what every call shares: an HTTP connection,
 *   a DNS base, a client session) and returns once the loop runs.
 * - evexec_loop_call() posts fn(loop, promise, arg) to the loop thread and
 *   gives the caller an ::evexec_future. The function settles its promise
 *   exactly once, with evexec_promise_resolve() or evexec_promise_fail():
 *   before it returns, or later from a callback of the I/O it started.
 * - The caller waits with evexec_future_wait(), reads the outcome with
 *   evexec_future_result(), may cancel with evexec_future_cancel(), and
 *   releases the handle with evexec_future_free() (section "Futures").
 * - evexec_loop_stop() drains (or cancels) what is pending, runs the fini
 *   hook on the loop thread, and waits for the thread to end;
 *   evexec_loop_free() joins it and releases the handle.
 *
 * Calls reach the loop through the same machinery as finished jobs reach a
 * port: a lock-free list and a wake fd written only when the list was
 * empty, so a burst of calls costs one wake-up. The same future type serves
 * jobs submitted to a pool from any thread with evexec_pool_call(). Unlike
 * a port's jobs, each call and each pool future is one allocation (with a
 * mutex and a condition variable of its own), made by evexec_loop_call()
 * or evexec_pool_call() and released when both sides are done with it.
 *
 * The life of a call: *queued* (posted, not yet started), *in progress*
 * (fn was called, the promise is not settled), *complete* (resolved,
 * failed or cancelled). Every accepted call completes exactly once,
 * including when the loop is stopped, and a waiter is woken when it does.
 *
 * Ownership: the caller of evexec_loop_call() owns the future handle and
 * frees it once. The loop side owns the promise handle from the moment fn
 * is called until it settles it. Only a stop with ::EVEXEC_CANCEL lets the
 * loop thread end with promises unsettled (a drain waits for every one,
 * however long their I/O takes); evexec then releases them once fini has
 * run, so their code must not use them afterwards. A
 * result pointer belongs to whoever holds it: the loop side until
 * evexec_promise_resolve() returns 0, the future's holder after that. The
 * call's `arg` may be used by the call's code until it settles its promise,
 * which, after a cancel, happens later than the future's completion: a
 * caller that may cancel either hands `arg` over to the call (which frees
 * it once settled, as examples/fetch.c does) or waits for a sign from the
 * call's code before freeing it.
 *
 * Background tasks: a call whose promise stays unsettled is a task that
 * runs on the loop until it decides to end, e.g. a poller re-arming a timer
 * and pushing messages. It registers evexec_promise_on_stop() to learn that
 * the loop is stopping, then ends its work and settles its promise (a stop
 * with ::EVEXEC_DRAIN waits for that). Start one from init or from any
 * thread with evexec_loop_call(), with a NULL future if nobody waits for
 * it:
 * @code
 * struct poller { struct event *tick; evexec_promise *p; unsigned n; };
 *
 * static void poller_stop(evexec_promise *p, void *arg)   // loop thread
 * {
 *     struct poller *po = arg;
 *     event_free(po->tick);               // no more ticks
 *     evexec_promise_resolve(p, NULL);    // the task is over
 * }
 * static void poller_tick(evutil_socket_t fd, short what, void *arg)
 * {
 *     struct poller *po = arg;
 *     po->n++;                            // poll something, push messages
 * }
 * static void poller_start(evexec_loop *loop, evexec_promise *p, void *arg)
 * {
 *     struct poller *po = arg;
 *     struct timeval every = {0, 100000};
 *     po->tick = event_new(evexec_loop_base(loop), -1, EV_PERSIST, poller_tick, po);
 *     event_add(po->tick, &every);
 *     evexec_promise_on_stop(p, poller_stop, po);
 * }
 * // from init, or from any thread:
 * evexec_loop_call(loop, poller_start, &poller, NULL);
 * @endcode
 * evexec_loop_stopping() answers the same question for code that polls.
 */
/**@{*/

/**
 * A call, run on the loop thread.
 *
 * It starts its work (an evhttp request, a DNS lookup, a pool job through
 * evexec_loop_port()...) and settles @p promise exactly once, with
 * evexec_promise_resolve() or evexec_promise_fail(): before returning, or
 * later from a callback on the loop thread. Until then the call is in
 * progress, and a stop with ::EVEXEC_DRAIN waits for it. A call that can be
 * aborted registers evexec_promise_on_cancel().
 *
 * @param loop     the loop; evexec_loop_context() gives its shared context.
 * @param promise  the call's promise, owned by the call until settled.
 * @param arg      the pointer given to evexec_loop_call().
 *
 * Thread: the loop thread.
 */
typedef void (*evexec_call_fn)(evexec_loop *loop, evexec_promise *promise, void *arg);

/**
 * A hook of a promise: see evexec_promise_on_cancel() and
 * evexec_promise_on_stop(). It may settle the promise.
 *
 * Thread: the loop thread.
 */
typedef void (*evexec_promise_fn)(evexec_promise *promise, void *arg);

/**
 * The init hook of a loop, run on the loop thread before any call is run.
 *
 * It creates what calls share (see evexec_loop_set_context()) and may post
 * calls itself, for instance to start background tasks. If it fails, it
 * must release what it made: no fini hook runs.
 *
 * @return 0, or a negative errno that evexec_loop_start() returns (a
 *   positive value is negated).
 *
 * Thread: the loop thread.
 */
typedef int (*evexec_loop_init_fn)(evexec_loop *loop, void *arg);

/**
 * The fini hook of a loop, run on the loop thread once the stop is
 * complete: the last call has completed and the loop's port has delivered
 * its last job. It releases what init made. The event loop does not run
 * any more, before or after it: nothing fini starts will call back (a
 * synchronous call like evhttp_connection_free() is fine; waiting for a
 * callback is not), and the loop's port refuses new jobs (-ESHUTDOWN).
 * The base is freed as soon as fini returns, so a port the program made on
 * it with evexec_port_new() must have been freed, with no job outstanding,
 * by then. Promises still unsettled (only a stop with ::EVEXEC_CANCEL
 * leaves any) may be settled here; evexec releases the others when fini
 * returns.
 *
 * Thread: the loop thread.
 */
typedef void (*evexec_loop_fini_fn)(evexec_loop *loop, void *arg);

/** Options for evexec_loop_start(); start from ::EVEXEC_LOOP_OPTS_INIT. */
struct evexec_loop_opts {
    /** sizeof(struct evexec_loop_opts), set by ::EVEXEC_LOOP_OPTS_INIT. */
    size_t size;
    /** Run on the loop thread before any call; NULL for none. */
    evexec_loop_init_fn init;
    /** Run on the loop thread after the last call; NULL for none. */
    evexec_loop_fini_fn fini;
    /** Passed to init and fini. */
    void *arg;
    /** Name of the loop thread. Copied. NULL or "" means "evexec-loop".
     * Linux keeps 15 bytes. At most 63 bytes. */
    const char *name;
    /** Most calls started per wake-up before the loop gets to its other
     * events again, 1..1048576; 0 means 128. */
    unsigned max_batch;
};

/** Initialiser for struct evexec_loop_opts: no hooks, all defaults. */
#define EVEXEC_LOOP_OPTS_INIT                                                     \
    {                                                                             \
        .size = sizeof(struct evexec_loop_opts), .init = NULL, .fini = NULL,      \
        .arg = NULL, .name = NULL, .max_batch = 0                                 \
    }

/**
 * Starts a loop: creates an event_base and a thread that runs it, runs the
 * init hook on that thread, and returns once the loop runs.
 *
 * The loop thread blocks every signal, like pool workers, so signals keep
 * reaching the program's own threads (and a write to a closed socket on the
 * loop thread returns EPIPE instead of raising SIGPIPE). The base is
 * created without evthread_use_pthreads(): only the loop thread may touch
 * it.
 *
 * @param[out] out  receives the loop; untouched on error.
 * @param opts      options, or NULL for all defaults. Only read during the
 *                  call (@c name is copied).
 * @return 0, or, with nothing left behind (no thread, no fd, no memory):
 *   - -EINVAL: @p out NULL, opts->size smaller than the first version of
 *     the struct, or a field out of range;
 *   - -E2BIG: see evexec_pool_new();
 *   - -ENOMEM: out of memory, or event_base_new() failed;
 *   - -EAGAIN (or another error of pthread_create()): no thread;
 *   - -EMFILE, -ENFILE: fewer than the 4 fds the loop needs are free (its
 *     base's backend and signal pipe, its wake fd). libevent ends the
 *     process when it cannot make the signal pipe, so this is checked
 *     first; only another thread taking the last fds at that very moment
 *     can still defeat the check;
 *   - the error init returned: the loop thread has then cancelled the
 *     calls init posted (they complete as -ECANCELED, never run), freed the
 *     base and ended, and fini was not run.
 *
 * Thread: any thread. It blocks while init runs.
 */
EVEXEC_EXPORT int evexec_loop_start(evexec_loop **out, const struct evexec_loop_opts *opts);

/**
 * Stops a loop: no new calls, then pending ones drained or cancelled, then
 * fini, then the thread ends.
 *
 * From the moment it is called, evexec_loop_call() returns -ESHUTDOWN.
 * Then, on the loop thread: the stop hooks of in-progress calls run
 * (evexec_promise_on_stop()), and
 * - with ::EVEXEC_DRAIN, queued calls still run and the loop goes on until
 *   every call has settled its promise and the loop's port (if any) has
 *   delivered every job. The port still accepts jobs meanwhile, so a done
 *   callback that submits again (a retry or poll loop) holds the drain up,
 *   like a call that never settles its promise: have it check
 *   evexec_loop_stopping(), or escalate to ::EVEXEC_CANCEL;
 * - with ::EVEXEC_CANCEL, queued calls complete as -ECANCELED without
 *   running; in-progress calls complete as -ECANCELED at once (their
 *   waiters wake) and their cancel hooks run (evexec_promise_on_cancel());
 *   the loop's port refuses new jobs from then on (evexec_submit() returns
 *   -ESHUTDOWN), its queued jobs are cancelled, and the loop waits only for
 *   its running jobs to be delivered. Calls that never settle do not hold
 *   it up.
 * Then the port refuses jobs in either mode, fini runs, the port and the
 * base are freed, promises still unsettled are released by evexec, and the
 * thread ends.
 *
 * Called from any other thread, it returns once the loop thread has ended
 * (evexec_loop_free() joins it), whatever it returns: a first stop, a stop
 * with ::EVEXEC_CANCEL while one with ::EVEXEC_DRAIN is under way (an
 * escalation: a daemon's second Ctrl-C), even when it comes too late to
 * cancel anything, and a repeated stop alike. It blocks the thread it is
 * called on (called on another loop's thread, that loop waits too). On a
 * worker running a job submitted through this loop's port, a drain never
 * ends: it waits for that job.
 *
 * Called on the loop thread (from a call, a hook, init, fini or a callback
 * of the base), it only begins the stop (or escalates it), which proceeds
 * once the current callback returns, and returns -EINPROGRESS.
 *
 * Not async-signal-safe (it takes a mutex and may block): a daemon's
 * signal handler must not call it. Catch the signal with a libevent signal
 * event on the program's own loop, or in a thread of its own that waits
 * with sigwait(), and call it from there (the loop thread itself blocks
 * every signal).
 *
 * @param loop  the loop.
 * @param how   ::EVEXEC_DRAIN or ::EVEXEC_CANCEL.
 * @return 0 (this call began or escalated the stop, and the thread has
 *   ended), or
 *   - -EINPROGRESS: called on the loop thread; the stop (or its
 *     escalation) has begun;
 *   - -EALREADY: already stopped, or being stopped, with this mode or a
 *     stronger one; or the loop thread has already ended, whatever the
 *     mode (::EVEXEC_CANCEL after a completed ::EVEXEC_DRAIN: nothing is
 *     left to cancel); from another thread, once the thread has ended;
 *   - -EINVAL: @p loop NULL or @p how not a mode.
 *
 * Thread: any thread. Blocks, except on the loop thread.
 */
EVEXEC_EXPORT int evexec_loop_stop(evexec_loop *loop, int how);

/**
 * Stops the loop with ::EVEXEC_DRAIN unless it was stopped, waits for its
 * thread to end (see evexec_loop_stop()), joins it and releases the handle.
 *
 * Futures of the loop's calls stay valid (all complete by then) and must
 * still be freed. Calls of evexec_loop_stop() already under way on other
 * threads are waited for (a signal thread's escalation may race with the
 * main thread's free); no other call on the handle may begin once
 * evexec_loop_free() may have been called. Not async-signal-safe (see
 * evexec_loop_stop()).
 *
 * @param loop  the loop, or NULL.
 * @return 0, or -EDEADLK when called on the loop's own thread (nothing is
 *   done). NULL is a no-op returning 0.
 *
 * Thread: any thread but the loop thread. Blocks.
 */
EVEXEC_EXPORT int evexec_loop_free(evexec_loop *loop);

/**
 * Posts a call: @p fn runs on the loop thread, on a later iteration of the
 * loop (never inside this function, even on the loop thread). Calls start
 * in the order they were posted from one thread.
 *
 * Never blocks.
 *
 * @param loop  the loop.
 * @param fn    the call; must not be NULL.
 * @param arg   passed to @p fn; owned by the caller.
 * @param[out] out  receives the call's future, or NULL for a call nobody
 *   waits for (its result is then dropped). Untouched on error.
 * @return 0 (the call will complete exactly once), or, with no call made:
 *   - -EINVAL: @p loop or @p fn NULL;
 *   - -ESHUTDOWN: the loop is stopping or stopped;
 *   - -ENOMEM: out of memory.
 *
 * Thread: any thread, the loop thread included.
 */
EVEXEC_EXPORT int evexec_loop_call(evexec_loop *loop, evexec_call_fn fn, void *arg,
                                   evexec_future **out);

/**
 * Gives the event_base the loop thread runs.
 *
 * @param loop  the loop.
 * @return the loop's event_base, or NULL if @p loop is NULL. Only the loop
 *   thread may use the base; it is freed when the loop thread ends, after
 *   fini. A port made on it with evexec_port_new() (rather than
 *   evexec_loop_port()) is the program's: free it, idle, by the end of
 *   fini.
 *
 * Thread: any thread (the base itself: the loop thread only).
 */
EVEXEC_EXPORT struct event_base *evexec_loop_base(evexec_loop *loop);

/**
 * Sets the loop's context: a pointer every call can fetch with
 * evexec_loop_context(), typically set by init to the objects it created.
 * evexec never reads or frees it.
 *
 * @param loop     the loop.
 * @param context  the new context; owned by the caller.
 * @return 0, or -EINVAL (@p loop NULL), or -EPERM (not on the loop thread).
 *
 * Thread: the loop thread.
 */
EVEXEC_EXPORT int evexec_loop_set_context(evexec_loop *loop, void *context);

/**
 * Reads the loop's context (see evexec_loop_set_context()).
 *
 * @param loop  the loop.
 * @return the loop's context (NULL until set, or if @p loop is NULL).
 *
 * Thread: any thread. A value set by init is visible to every thread once
 * evexec_loop_start() has returned; a later change, only on the loop
 * thread.
 */
EVEXEC_EXPORT void *evexec_loop_context(evexec_loop *loop);

/**
 * Gives the loop's completion port, created on first use: calls use it to
 * offload blocking work to a pool with evexec_submit(), and settle their
 * promise from the done callback. The port belongs to the loop, which
 * frees it after fini: evexec_port_free() refuses it (-EPERM). A stop
 * waits for its jobs to be delivered; it refuses new ones once a stop
 * with ::EVEXEC_CANCEL has begun, and from fini on (see
 * evexec_loop_stop()).
 *
 * @param loop      the loop.
 * @param[out] out  receives the port; untouched on error.
 * @return 0, or -EINVAL (NULL pointer), -EPERM (not on the loop thread),
 *   or an error of evexec_port_new() (-ENOMEM, -EMFILE, -ENFILE).
 *
 * Thread: the loop thread.
 */
EVEXEC_EXPORT int evexec_loop_port(evexec_loop *loop, evexec_port **out);

/**
 * Tells whether the loop is stopping: for calls and background tasks that
 * poll rather than register evexec_promise_on_stop().
 *
 * @param loop  the loop.
 * @return 1 once a stop of the loop has begun (evexec_loop_call() then
 *   returns -ESHUTDOWN), else 0; 0 for NULL.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_loop_stopping(evexec_loop *loop);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Promises */
/**@{*/

/**
 * Settles a promise with a result: the call's future completes with status
 * 0 and @p result, and its waiters wake.
 *
 * Exactly one of evexec_promise_resolve() and evexec_promise_fail() is
 * called once per promise, also after a cancel. Once it has returned 0 or
 * -ECANCELED the promise handle is released and must not be used again.
 *
 * @param promise  the promise given to the call.
 * @param result   handed to the future's holder, who owns it from now on.
 * @return 0 (delivered), or
 *   - -ECANCELED: the future had been cancelled meanwhile: @p result was
 *     not delivered and still belongs to the caller (free it); the promise
 *     is released all the same;
 *   - -EINVAL: @p promise NULL, not a call's, or (as far as can still be
 *     told: its memory may be gone) already settled; nothing is done;
 *   - -EPERM: not on the loop thread (nothing is done).
 *
 * Thread: the loop thread of the promise's loop.
 */
EVEXEC_EXPORT int evexec_promise_resolve(evexec_promise *promise, void *result);

/**
 * Settles a promise with a failure: the call's future completes with
 * status @p err, and its waiters wake. See evexec_promise_resolve() for the
 * rules.
 *
 * @param promise  the promise given to the call.
 * @param err      a negative errno, e.g. -ECONNREFUSED or -ETIMEDOUT
 *                 (evexec_future_result() returns it as is), but not
 *                 -EINPROGRESS, which means "not complete" there.
 * @return 0 (delivered), -ECANCELED (the future had been cancelled; the
 *   promise is released all the same), -EINVAL (@p err not negative, or
 *   -EINPROGRESS, or as for evexec_promise_resolve(): nothing is done, the
 *   promise stays live), -EPERM (not on the loop thread: nothing is done).
 *
 * Thread: the loop thread of the promise's loop.
 */
EVEXEC_EXPORT int evexec_promise_fail(evexec_promise *promise, int err);

/**
 * Registers the cancel hook of an in-progress call: @p fn(promise, arg)
 * runs on the loop thread, once, if the future is cancelled while the call
 * is in progress (by evexec_future_cancel(), evexec_future_free() or a stop
 * with ::EVEXEC_CANCEL). The future has then already completed as
 * -ECANCELED; the hook aborts the work (e.g. evhttp_cancel_request()) and,
 * if nothing else will, settles the promise (which returns -ECANCELED).
 * It never runs inside evexec_future_cancel() or from another thread.
 *
 * A new registration replaces the previous one; @p fn NULL removes it.
 *
 * @param promise  the promise of the calling, in-progress call.
 * @param fn       the hook, or NULL to remove it.
 * @param arg      passed to @p fn; owned by the caller.
 * @return 0, or
 *   - -ECANCELED: the future is already cancelled; @p fn is not
 *     registered and will not run: abort now;
 *   - -EINVAL: @p promise NULL or settled;
 *   - -EPERM: not on the loop thread.
 *
 * Thread: the loop thread of the promise's loop.
 */
EVEXEC_EXPORT int evexec_promise_on_cancel(evexec_promise *promise, evexec_promise_fn fn,
                                           void *arg);

/**
 * Registers the stop hook of an in-progress call: @p fn(promise, arg) runs
 * on the loop thread, once, when a stop of the loop begins (either mode),
 * before queued calls are drained or cancelled. This is how a background
 * task (see above) learns that it must end: the hook stops its work and
 * settles its promise, now or soon (a drain waits for it).
 *
 * A new registration replaces the previous one; @p fn NULL removes it.
 *
 * @param promise  the promise of the calling, in-progress call.
 * @param fn       the hook, or NULL to remove it.
 * @param arg      passed to @p fn; owned by the caller.
 * @return 0, or
 *   - -ESHUTDOWN: the stop has already begun; @p fn is not registered:
 *     end now;
 *   - -EINVAL: @p promise NULL or settled;
 *   - -EPERM: not on the loop thread.
 *
 * Thread: the loop thread of the promise's loop.
 */
EVEXEC_EXPORT int evexec_promise_on_stop(evexec_promise *promise, evexec_promise_fn fn,
                                         void *arg);

/**
 * Tells a call in progress whether its future was cancelled, for code that
 * polls rather than registers evexec_promise_on_cancel().
 *
 * @param promise  the promise of the call.
 * @return 1 if the promise's future was cancelled (a result would not be
 *   delivered), 0 if not or if @p promise is NULL.
 *
 * Thread: the loop thread of the promise's loop.
 */
EVEXEC_EXPORT int evexec_promise_cancelled(const evexec_promise *promise);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Futures */
/**@{*/

/**
 * Waits until a future completes, or until @p timeout_ms have passed.
 *
 * Does not consume anything: read the outcome with evexec_future_result(),
 * and wait again as often as wanted. Several threads may wait on one
 * future at once.
 *
 * It blocks the calling thread, whatever it is: called on the thread of a
 * loop (evexec's or the program's own), it holds that whole loop up until
 * the future completes. There, poll with evexec_future_result() instead,
 * or give a timeout of 0.
 *
 * @param future      the future.
 * @param timeout_ms  most milliseconds to wait; 0 does not block;
 *                    ::EVEXEC_WAIT_FOREVER (-1) waits until it completes.
 * @return 0 (complete), or
 *   - -ETIMEDOUT: still pending after @p timeout_ms; the future stays valid;
 *   - -EDEADLK: the future is pending and the caller is a thread it may
 *     need, so the wait might never end: the loop thread of the call's
 *     loop (which must run the call), or any worker of the job's pool
 *     (refused even when other workers could run the job: they might all
 *     be waiting too). Nothing is waited for; poll with
 *     evexec_future_result() there;
 *   - -EINVAL: @p future NULL or @p timeout_ms < -1.
 *
 * Thread: any thread (see -EDEADLK). Blocks.
 */
EVEXEC_EXPORT int evexec_future_wait(evexec_future *future, int timeout_ms);

/**
 * Reads the outcome of a future, without blocking: the poll.
 *
 * The status of a failure is whatever the call gave evexec_promise_fail(),
 * so it can be any negative errno, -ETIMEDOUT included: that is why
 * waiting and reading are two functions.
 *
 * @param future       the future.
 * @param[out] result  receives the result when the outcome is 0 (NULL
 *   otherwise), or NULL if not wanted. Reading it again gives the same
 *   pointer: the future does not own it.
 * @return the outcome: 0 (resolved; a pool job's work function returned),
 *   the negative errno the call failed with, -ECANCELED (cancelled, by
 *   evexec_future_cancel() or a stop), or
 *   - -EINPROGRESS: not complete yet;
 *   - -EINVAL: @p future NULL.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_future_result(evexec_future *future, void **result);

/**
 * Cancels the call or job behind a future.
 *
 * - A queued call never runs; the future completes as -ECANCELED.
 * - A call in progress: the future completes as -ECANCELED at once (its
 *   waiters wake); the call's cancel hook runs later on the loop thread
 *   (evexec_promise_on_cancel()), and its settling returns -ECANCELED.
 *   Until it has settled, the call's code may still use its `arg` (see
 *   "Ownership" above).
 * - A queued pool job is taken off the queue and never runs; the future
 *   completes as -ECANCELED.
 * - A pool job already running cannot be taken back: -EBUSY; its stop flag
 *   is set (evexec_job_cancelled()), and the future completes with its
 *   result when it returns.
 *
 * Never runs a callback and never blocks for long: a pool job that a
 * concurrent evexec_pool_shutdown() with ::EVEXEC_CANCEL (or another
 * thread's cancel) has just taken off the queue is waited for until that
 * call has completed it, which it does at once.
 *
 * @param future  the future.
 * @return 0 (the future is now complete as -ECANCELED), or
 *   - -EALREADY: the future is complete, and was not completed by this
 *     call (read its outcome: a result delivered before the cancel is
 *     still yours to free);
 *   - -EBUSY: a pool job is running (see above);
 *   - -EINVAL: @p future NULL.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_future_cancel(evexec_future *future);

/**
 * Releases a future handle.
 *
 * A pending future is cancelled first (see evexec_future_cancel()); a pool
 * job that is running finishes, and its result is then dropped. A result
 * already delivered is not freed: read it first if it needs freeing. No
 * other thread may be waiting on the future or use it afterwards.
 *
 * @param future  the future, or NULL (a no-op).
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT void evexec_future_free(evexec_future *future);

/**
 * Submits a job to a pool from any thread, with a future instead of a port:
 * @p work runs on a worker and its return value completes the future
 * directly, from the worker (no loop is involved).
 *
 * Never blocks. The job has the normal priority; jobs start in submission
 * order, mixed with the port jobs of the pool. evexec_pool_shutdown() and evexec_pool_free() treat them like
 * any job (a cancelled one completes as -ECANCELED). The future keeps the
 * pool's memory (not its threads) alive until it is freed.
 *
 * @param pool  the pool whose worker runs @p work.
 * @param work  the blocking function; must not be NULL. Its @c job
 *              argument works with evexec_job_cancelled().
 * @param arg   passed to @p work; owned by the caller.
 * @param[out] out  receives the future; must not be NULL. Untouched on
 *   error.
 * @return 0, or, with no job made:
 *   - -EINVAL: @p pool, @p work or @p out NULL;
 *   - -EAGAIN: the queue is at max_queued, or no worker could be started;
 *   - -ESHUTDOWN: the pool was shut down;
 *   - -ENOMEM: out of memory.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_pool_call(evexec_pool *pool, evexec_work_fn work, void *arg,
                                   evexec_future **out);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Errors and version */
/**@{*/

/**
 * Describes an error code returned by evexec.
 *
 * @param err  a negative errno as returned by an evexec function, or any
 *   errno a future or promise carries (-ECONNREFUSED, -EIO...); a positive
 *   one is accepted too.
 * @return a static, constant English sentence: evexec's own for the codes
 *   it returns, the C library's for every other errno (never a buffer
 *   that another call rewrites); "unknown error" for a number that is not
 *   an errno. Never NULL.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT const char *evexec_strerror(int err);

/**
 * Names an error code: "EINVAL" for -EINVAL, "ECONNREFUSED" for
 * -ECONNREFUSED, "OK" for 0.
 *
 * @param err  a negative errno (a positive one is accepted too).
 * @return a static string; "UNKNOWN" for a number that is not an errno.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT const char *evexec_errname(int err);

/**
 * Gives the version of the library the program runs with (the header's is
 * ::EVEXEC_VERSION_NUMBER).
 *
 * @return the version, encoded as ::EVEXEC_VERSION_NUMBER encodes it.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT unsigned evexec_version(void);

/**
 * Gives the version of the library the program runs with, as text.
 *
 * @return a static string of the form major.minor.patch, e.g. "0.4.0".
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT const char *evexec_version_string(void);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Process pools (Linux)
 *
 * The same submit and done-callback contract as thread pools, with the
 * work run in worker processes: a crash, a hang, a leak or a lock held
 * forever by a library call ends only its own job. Use a process pool for
 * code you cannot trust to return (a parser of hostile input, a legacy
 * library) or for CPU-bound work that must be killable; use a thread pool
 * for everything else (a round trip costs tens of microseconds instead of
 * a few).
 *
 * How it works: evexec_procpool_new() forks a small single-threaded
 * *fork server*; the server forks the workers, so the daemon's threads
 * never matter to a child. Each worker keeps only its own channel to the
 * daemon (no other fd of the daemon's: no listening socket), default
 * signal dispositions with no signal blocked, its own process group, and
 * the name "<name>-<n>" (in ps, top and `/proc/<pid>/comm`). Workers and the
 * server die with the daemon. A *supervisor* thread of the pool hands jobs
 * to idle workers, kills workers whose job passed its deadline or was
 * cancelled (with every process they started: the whole process group),
 * replaces dead workers, and hands finished jobs to their port like a
 * thread worker does.
 *
 * While every worker of a pool at max_procs is busy and jobs are queued,
 * each busy worker may be sent up to two queued jobs ahead, so that it
 * starts the next as soon as it finishes the one it runs, without waiting
 * for the supervisor (most of the throughput of small jobs). Such a job is
 * still a queued job until its worker starts it: a worker that goes idle
 * first takes it over, a queued job of a higher priority takes its place,
 * evexec_cancel() and deadlines end it as a queued job (0, never run, no
 * worker killed), and if its worker dies it goes back to the front of the
 * queue; the stats count it as queued. Queued jobs may thus start in
 * another order than they were queued, as they may end in any order. A
 * pool that recycles workers by age or size sends no job ahead (the
 * check comes after each job); by job count, not past the count.
 *
 * The work function runs in a child of the fork server, so it must exist
 * in the server's memory image: a function of the program or of a library
 * loaded before evexec_procpool_new(), never of one dlopen()ed later
 * (evexec_procpool_submit() checks with dladdr() and answers -EFAULT).
 * Everything else the worker sees is a copy of the daemon as it was when
 * the pool was made: create process pools early, before other threads
 * start (a lock another thread held at that moment stays held in every
 * worker).
 *
 * Inputs and outputs are bytes: the input is copied at submit, and the
 * output is valid during the done callback. Payloads above 64 KiB travel in
 * a sealed memfd (no copy through the socket). To skip the copy at submit,
 * write the input in place: evexec_proc_input_new(), then
 * evexec_procpool_submit_input() (or evexec_procpool_call_input()).
 *
 * Outcomes: the status of the done callback, one class each:
 *
 * | status            | outcome                          | details |
 * |-------------------|----------------------------------|---------|
 * | 0                 | the work function returned 0     | output |
 * | -EREMOTEIO        | the work function returned non-zero | work_error: its value; output |
 * | -ECANCELED        | cancelled (queued: never ran; running: killed) or shut down | |
 * | -ETIMEDOUT        | deadline passed: worker killed, or never started | none (delivered at the deadline) |
 * | -EOWNERDEAD       | worker crashed: killed by a signal, or sent a malformed message | signal, core_dumped |
 * | -ECHILD           | worker exited during the job      | exit_code |
 * | -ENOMEM           | memory limit hit (mem_limit)     | |
 * | -ETIME            | CPU-time limit hit (cpu_limit_s) | signal (SIGXCPU) |
 * | -ENOTRECOVERABLE  | no worker could be started: worker_init failed; or the fork server is gone (queued and running jobs) | work_error: init's value (0 when the server is gone) |
 *
 * If the fork server dies (killed from outside: the OOM killer, an
 * operator), the pool cannot heal: a fork server forked then would copy
 * the daemon as it is at that moment, its threads running, not as it was
 * when the pool was made. Its workers die with it, with their process
 * groups (nothing could reap them or learn how their jobs ended). Every
 * job not finished, running or queued, is delivered -ENOTRECOVERABLE;
 * submits fail with -ENOTRECOVERABLE; evexec_procpool_stats() reports
 * degraded (and no process) for good. Free the pool (nothing is left
 * behind: no zombie, no orphan, no fd) and make a new one, which copies
 * the daemon as it is then.
 *
 * Threads: as for thread pools; the supervisor is a thread of the pool
 * and never runs user code. Hooks and work functions run in the workers.
 *
 * Elsewhere than on Linux the functions of this section exist but do
 * nothing: each returns -ENOTSUP (evexec_proc_output() NULL, and
 * evexec_procpool_free() nothing).
 */
/**@{*/

/** A process pool. Opaque. */
typedef struct evexec_procpool evexec_procpool;

/** Where a work function puts its output (see evexec_proc_output()). */
typedef struct evexec_proc_out evexec_proc_out;

/**
 * A work function, run in a worker process.
 *
 * @param in      the job's input bytes (read only), valid during the call;
 *                NULL when @p in_len is 0.
 * @param in_len  their length.
 * @param out     pass to evexec_proc_output() to produce output bytes.
 * @param state   what the worker's init hook set (NULL without one).
 * @return 0 (status 0), or any other value: the job fails with -EREMOTEIO
 *   and the value in evexec_proc_result.work_error.
 *
 * Thread: worker process.
 */
typedef int (*evexec_proc_work_fn)(const void *in, size_t in_len, evexec_proc_out *out,
                                   void *state);

/**
 * Gives a work function a buffer of @p len bytes for its output; the bytes
 * it writes there reach the done callback. A later call replaces the
 * output (the earlier buffer is then invalid).
 *
 * @param out  the work function's @c out argument.
 * @param len  the size of the output in bytes, 0..max_payload.
 * @return the buffer (writable until the work function returns), or NULL
 *   when @p out is NULL, @p len exceeds the pool's max_payload (the earlier
 *   output, if any, stays), or memory is short (the job then has no
 *   output). A @p len of 0 returns a non-NULL pointer to no bytes.
 *
 * Thread: worker process, inside the work function owning @p out.
 */
EVEXEC_EXPORT void *evexec_proc_output(evexec_proc_out *out, size_t len);

/**
 * Runs once in each worker process before its first job; NULL for none.
 * May set *state, given to every work function of that worker. A non-zero
 * return makes the worker exit; while no worker gets ready, each such
 * failure fails the oldest queued job with -ENOTRECOVERABLE (the value in
 * work_error), so jobs are never stranded, and spawning backs off.
 *
 * Thread: worker process.
 */
typedef int (*evexec_proc_init_fn)(void *hook_arg, void **state);
/** Runs in a worker process that exits in order (idle, recycled, shut
 *  down; not when killed). Thread: worker process. */
typedef void (*evexec_proc_fini_fn)(void *state, void *hook_arg);

/**
 * Options for evexec_procpool_new(); start from ::EVEXEC_PROCPOOL_OPTS_INIT.
 * 0 means the default in every field.
 */
struct evexec_procpool_opts {
    /** sizeof(struct evexec_procpool_opts), set by ::EVEXEC_PROCPOOL_OPTS_INIT. */
    size_t size;
    /** Most worker processes, 1..256; 0 means 4. */
    unsigned max_procs;
    /** Workers started at once and kept when idle, 0..max_procs; default 0. */
    unsigned min_procs;
    /** Most jobs waiting (not counting running ones), 1..2^28; 0 means
     * 65536. A submit beyond it fails with -EAGAIN. */
    size_t max_queued;
    /** Name prefix: the fork server is "<name>-srv", workers "<name>-<n>",
     * n from 1. Copied; at most 15 bytes; NULL or "" means "evexec-proc"
     * cut to fit. */
    const char *name;
    /** A worker above min_procs idle this long exits; 0 means 10000 ms,
     * ::EVEXEC_IDLE_FOREVER never. */
    unsigned idle_timeout_ms;
    /** Run in each worker before its first job (see evexec_proc_init_fn);
     * NULL for none. */
    evexec_proc_init_fn init;
    /** Run in a worker that exits in order (see evexec_proc_fini_fn); NULL
     * for none. */
    evexec_proc_fini_fn fini;
    /** Passed to init and fini (a copy of the pointer in each worker). */
    void *hook_arg;
    /** Recycling, checked after each job: a worker that has run this many
     * jobs exits in order and is replaced. 0: no such limit. */
    uint64_t recycle_jobs;
    /** Recycling, checked after each job: a worker ready for this many
     * milliseconds or more exits in order and is replaced. 0: no such
     * limit. */
    unsigned recycle_age_ms;
    /** Recycling, checked after each job: a worker whose resident set
     * exceeds this many bytes exits in order and is replaced. 0: no such
     * limit. */
    uint64_t recycle_rss;
    /** Hard limit on the memory jobs may add to a worker's address space
     * beyond what it had once ready, in bytes (at least 4 MiB); 0 means
     * none. Enforced during the job: allocations beyond it fail (the soft
     * RLIMIT_AS). A job whose worker's address space came within 2 MiB of
     * the limit fails with -ENOMEM, whether its work function then returns
     * or crashes (SIGSEGV, SIGBUS, SIGABRT: caught on an alternate stack,
     * reported, then let kill the worker); the worker is then replaced. A
     * single allocation far beyond the limit fails without the space
     * coming near it: the job then ends as its code makes it. Not under a
     * sanitizer's runtime (which reserves terabytes of address space). */
    uint64_t mem_limit;
    /** CPU-time limit per job, in whole seconds (the kernel counts in
     * seconds: a job may run up to one more); 0 means none. A job over it
     * is killed by SIGXCPU and fails with -ETIME. */
    unsigned cpu_limit_s;
    /** Nice value added in the workers, 0..19; default 0. */
    unsigned nice;
    /** Largest input or output in bytes, 1..2^40; 0 means 64 MiB. A bigger
     * input: -EMSGSIZE at submit; a bigger output: evexec_proc_output()
     * returns NULL. */
    uint64_t max_payload;
};

/** Initialiser for struct evexec_procpool_opts: all defaults. */
#define EVEXEC_PROCPOOL_OPTS_INIT { .size = sizeof(struct evexec_procpool_opts) }

/**
 * Creates a process pool: forks its fork server (and min_procs workers,
 * without waiting for them) and starts its supervisor thread.
 *
 * @param[out] out  receives the pool; untouched on error.
 * @param opts      options, or NULL for defaults; only read during the call.
 * @return 0, or
 *   - -EINVAL: @p out NULL, a bad opts->size or a field out of range;
 *   - -E2BIG: see evexec_pool_new();
 *   - -ENOMEM, -EMFILE, -ENFILE, -EAGAIN: out of memory, fds, processes or
 *     threads;
 *   - -ENOTSUP: not Linux (see "Process pools").
 *
 * Thread: any thread (best: early, before the program starts others).
 */
EVEXEC_EXPORT int evexec_procpool_new(evexec_procpool **out,
                                      const struct evexec_procpool_opts *opts);

/** How a job ended, for the done callback; see the table above. */
struct evexec_proc_result {
    /** The output bytes (valid during the done callback only; NULL when
     * out_len is 0). Set for status 0 and -EREMOTEIO. */
    const void *out;
    /** The number of output bytes at @c out (0 for other statuses). */
    size_t out_len;
    /** The work function's or init hook's non-zero return value. */
    int work_error;
    /** The signal that killed the worker (-EOWNERDEAD, -ETIME; also the
     * SIGKILL of a deadline, a cancel or a memory limit), or 0. */
    int signal;
    /** 1 if the worker dumped core. */
    int core_dumped;
    /** The worker's exit code (-ECHILD), or 0. */
    int exit_code;
    /** The worker's pid, or 0 if the job never started. */
    int pid;
};

/**
 * The done callback of a process pool's job.
 *
 * @param status  0 or a negative errno (see the table above).
 * @param res     the details; valid during the call only.
 * @param arg     the submit's arg.
 *
 * Thread: the port's loop thread.
 */
typedef void (*evexec_proc_done_fn)(int status, const struct evexec_proc_result *res,
                                    void *arg);

/**
 * Submits a job to a process pool; @p done runs exactly once, on the
 * port's loop thread, with one of the outcomes of the table above.
 *
 * Never blocks (for an input above 64 KiB it copies the bytes into a
 * memfd). @p in is copied: the caller's buffer is free on return.
 * Options, as for thread pools: priority; timeout_ms, the deadline: the
 * callback runs with -ETIMEDOUT then, and the job's worker is killed with
 * its process group (a queued job never runs); the pool's supervisor
 * kills on time even while the loop thread is busy; group. opts->cleanup
 * is not used (outputs need no release) and wait_ms must be 0.
 * evexec_cancel(port, id) cancels the job: a queued one is taken off the
 * queue (0), a running one is killed (-EBUSY); either way it is delivered
 * -ECANCELED. evexec_port_free() cancels the port's jobs the same way.
 *
 * @param port  the port whose loop thread runs @p done.
 * @param pool  the process pool.
 * @param work  the work function (see "Process pools": a function of the
 *              program or of a library loaded before the pool).
 * @param in, in_len  the input; @p in may be NULL when @p in_len is 0.
 * @param done  the callback, or NULL.
 * @param arg   passed to @p done; owned by the caller.
 * @param opts  options, or NULL.
 * @param[out] id  receives the job's id for evexec_cancel(), or NULL.
 * @return 0, or, with no callback ever:
 *   - -EINVAL: a NULL @p port, @p pool or @p work, @p in NULL with a
 *     non-zero length, bad opts (as evexec_submit_ex()), or a wait_ms;
 *   - -EFAULT: @p work is not in the fork server's image (a library
 *     loaded after the pool was made);
 *   - -EMSGSIZE: @p in_len above max_payload;
 *   - -EPERM: not on the port's loop thread;
 *   - -EAGAIN: the queue is at max_queued;
 *   - -ESHUTDOWN: the pool was shut down, or the port freed;
 *   - -ENOTRECOVERABLE: the pool's fork server is gone (see "Process
 *     pools");
 *   - -ENOMEM, -EMFILE: out of memory or fds.
 *
 * Thread: the port's loop thread.
 */
EVEXEC_EXPORT int evexec_procpool_submit(evexec_port *port, evexec_procpool *pool,
                                         evexec_proc_work_fn work, const void *in, size_t in_len,
                                         evexec_proc_done_fn done, void *arg,
                                         const struct evexec_job_opts *opts, evexec_job_id *id);

/**
 * Submits a job to a process pool from any thread, with a future instead
 * of a port (the counterpart of evexec_pool_call()): wait on it with
 * evexec_future_wait(), read it with evexec_future_result().
 *
 * The outcome is the status of the table above; the result is a
 * `const struct evexec_proc_result *` with the output and the details,
 * valid until evexec_future_free(). evexec_future_cancel() takes a queued
 * job off the queue or kills a running one's worker; either way the future
 * completes as -ECANCELED at once (0). The job has the normal priority and
 * no deadline (wait with a timeout, then cancel). The future keeps the
 * pool's memory (not its processes) until it is freed.
 *
 * @param pool, work, in, in_len  as evexec_procpool_submit().
 * @param[out] out  receives the future; untouched on error.
 * @return 0, or -EINVAL (a NULL @p pool, @p work or @p out, or @p in NULL
 *   with a length), -EFAULT, -EMSGSIZE, -EAGAIN, -ESHUTDOWN,
 *   -ENOTRECOVERABLE, -ENOMEM, -EMFILE (as evexec_procpool_submit()).
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_procpool_call(evexec_procpool *pool, evexec_proc_work_fn work,
                                       const void *in, size_t in_len, evexec_future **out);

/**
 * An input written in place, for one job (evexec_proc_input_new()). Opaque.
 */
typedef struct evexec_proc_input evexec_proc_input;

/**
 * Makes a writable buffer of @p len bytes for one job's input, which
 * evexec_procpool_submit_input() then hands to a worker with no copy.
 *
 * Above 64 KiB the buffer is one of the pool's kept input buffers (a
 * sealed memfd, its pages already present when one big enough is free;
 * else a new one): the worker maps it read-only. Up to 64 KiB it is a heap
 * buffer sent through the worker's socket at submit (inline, as
 * evexec_procpool_submit() sends small inputs). Its bytes start
 * unspecified (a kept buffer holds an earlier input).
 *
 * The caller owns @p *out until a successful submit, or frees it with
 * evexec_proc_input_free(); @p *data is valid as long as it owns it. An
 * input holds the pool's memory (not its processes), so it may still be
 * freed after evexec_procpool_free() (but no longer submitted).
 *
 * @param pool      the process pool.
 * @param len       the input's length, 0..max_payload.
 * @param[out] out  receives the input; untouched on error.
 * @param[out] data receives its @p len writable bytes (NULL when @p len is
 *                  0); untouched on error.
 * @return 0, or
 *   - -EINVAL: a NULL @p pool, @p out or @p data;
 *   - -EMSGSIZE: @p len above max_payload;
 *   - -ESHUTDOWN: the pool was shut down;
 *   - -ENOTRECOVERABLE: the pool's fork server is gone;
 *   - -ENOMEM, -EMFILE: out of memory or fds.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_proc_input_new(evexec_procpool *pool, size_t len,
                                        evexec_proc_input **out, void **data);

/**
 * Submits a job whose input was written in place: evexec_procpool_submit()
 * without its copy. Everything else (options, cancel, deadlines, outcomes,
 * exactly one callback) is as for evexec_procpool_submit().
 *
 * On success the pool owns @p in: its bytes must no longer be touched.
 * Above 64 KiB the pool makes the daemon's mapping of the buffer read-only
 * before a worker can see it, so the bytes a worker reads cannot change
 * under it (a write through the data pointer then faults: SIGSEGV); the
 * buffer is kept for later inputs once the job ends. On error the caller
 * still owns @p in, writable and unchanged: submit it again, or free it.
 *
 * @param port, pool, work, done, arg, opts, id  as evexec_procpool_submit().
 * @param in    from evexec_proc_input_new() on this @p pool, not submitted.
 * @return 0, or, with no callback ever and @p in still the caller's:
 *   - -EINVAL: a NULL @p port, @p pool, @p work or @p in, @p in made for
 *     another pool, bad opts (as evexec_submit_ex()), or a wait_ms;
 *   - -EFAULT, -EPERM, -EAGAIN, -ESHUTDOWN, -ENOTRECOVERABLE, -ENOMEM: as
 *     evexec_procpool_submit().
 *
 * Thread: the port's loop thread.
 */
EVEXEC_EXPORT int evexec_procpool_submit_input(evexec_port *port, evexec_procpool *pool,
                                               evexec_proc_work_fn work, evexec_proc_input *in,
                                               evexec_proc_done_fn done, void *arg,
                                               const struct evexec_job_opts *opts,
                                               evexec_job_id *id);

/**
 * evexec_procpool_call() with an input written in place: no copy. @p in
 * changes hands as with evexec_procpool_submit_input(): the pool's on
 * success, still the caller's on error.
 *
 * @param pool, work  as evexec_procpool_call().
 * @param in          from evexec_proc_input_new() on this @p pool.
 * @param[out] out    receives the future; untouched on error.
 * @return 0, or -EINVAL (a NULL argument, or @p in made for another pool),
 *   -EFAULT, -EAGAIN, -ESHUTDOWN, -ENOTRECOVERABLE, -ENOMEM (as
 *   evexec_procpool_call()).
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_procpool_call_input(evexec_procpool *pool, evexec_proc_work_fn work,
                                             evexec_proc_input *in, evexec_future **out);

/**
 * Frees an input that was never submitted (or whose submits all failed);
 * its buffer may serve a later input of the pool.
 *
 * @param in  the input, or NULL (a no-op).
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT void evexec_proc_input_free(evexec_proc_input *in);

/**
 * Stops the pool from accepting jobs, without waiting. ::EVEXEC_DRAIN:
 * queued and running jobs still run. ::EVEXEC_CANCEL: queued jobs are
 * delivered -ECANCELED and running ones are killed and delivered
 * -ECANCELED (a process can be stopped, unlike a thread). A DRAIN may be
 * followed by a CANCEL. Never blocks and never runs a callback.
 *
 * @param pool  the process pool.
 * @param how   ::EVEXEC_DRAIN or ::EVEXEC_CANCEL.
 * @return 0, -EINVAL (NULL pool or bad @p how) or -EALREADY (already shut
 *   down this way or more strongly).
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_procpool_shutdown(evexec_procpool *pool, int how);

/**
 * Shuts the pool down (::EVEXEC_DRAIN unless already shut down), waits
 * until every job has been handed to its port, stops the workers, the fork
 * server (all reaped: no zombie, no orphan) and the supervisor, and
 * releases the handle. Done callbacks run afterwards from their ports'
 * loops, as usual. Blocks while jobs run: shut down with ::EVEXEC_CANCEL
 * first to wait for nothing. After it returns the handle must not be
 * used; futures of evexec_procpool_call() stay valid until freed.
 *
 * @param pool  the process pool, or NULL (a no-op).
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT void evexec_procpool_free(evexec_procpool *pool);

/** Counters of a process pool (evexec_procpool_stats()). */
struct evexec_procpool_stats {
    /** Set by the caller to sizeof(struct evexec_procpool_stats). */
    size_t size;
    unsigned procs;        /**< worker processes alive (starting, idle or busy) */
    unsigned busy;         /**< running a job */
    unsigned idle;         /**< ready, waiting for a job */
    size_t queued;         /**< jobs waiting (those sent ahead included) */
    uint64_t submitted;    /**< jobs accepted */
    uint64_t completed;    /**< jobs whose work function returned (0 or not) */
    uint64_t cancelled;    /**< jobs delivered -ECANCELED */
    uint64_t crashed;      /**< jobs whose worker crashed or exited */
    uint64_t killed_deadline; /**< jobs whose deadline passed (running ones
                                   killed, queued ones dropped) */
    uint64_t killed_memory;   /**< jobs over the memory limit */
    uint64_t killed_cpu;      /**< jobs over the CPU-time limit */
    uint64_t init_failed;  /**< workers whose init hook failed or that died
                                before they were ready */
    uint64_t recycled;     /**< workers retired by a recycle limit */
    uint64_t respawns;     /**< workers started to replace one that died */
    uint64_t spawned;      /**< workers started in all */
    int degraded;          /**< 1 while workers keep dying at once: the pool
                                backs off (doubling up to 5 s) before it forks
                                again; 0 once a worker runs a job. 1 for good
                                once the fork server is gone (see "Process
                                pools"): make a new pool */
};

/**
 * Fills @p out with a snapshot of the pool's counters (out->size bytes).
 *
 * @param pool         the process pool.
 * @param[in,out] out  the snapshot; out->size set by the caller.
 * @return 0, or -EINVAL (NULL pointer, or out->size smaller than the first
 *   version of the struct).
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_procpool_stats(evexec_procpool *pool, struct evexec_procpool_stats *out);
/**@}*/

#ifdef __cplusplus
}
#endif

#endif /* EVEXEC_H */
