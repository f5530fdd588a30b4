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
 * - ::evexec_pool: worker threads and a bounded FIFO queue of jobs. Threads
 *   start lazily up to a maximum and exit after an idle timeout down to a
 *   minimum. One pool may serve any number of ports.
 * - ::evexec_port: the link between pools and one `event_base`. Workers push
 *   finished jobs on the port's lock-free completion list and write its wake
 *   fd (an eventfd, or a pipe) only when the list goes from empty to
 *   non-empty; the loop then runs the done callbacks. A port may receive jobs
 *   from any number of pools.
 * - job: one call of a work function. It is identified by an ::evexec_job_id,
 *   which stays safe to pass to evexec_cancel() after the job is gone (the
 *   call then answers -ENOENT).
 *
 * Threads
 * -------
 * The *loop thread* of a port is the thread that created it with
 * evexec_port_new(); it must be the thread that runs the port's event_base.
 * Unless a function's `Thread:` line says otherwise, it must be called on the
 * loop thread of the port it is given. Calls that can detect the wrong thread
 * return -EPERM. *Any thread* means any thread, workers included. *Worker*
 * means from inside a work function.
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
 *   cancelled, or cancelled by a shutdown.
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
#define EVEXEC_VERSION_MAJOR 0
#define EVEXEC_VERSION_MINOR 1
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
 *                started (by evexec_cancel(), evexec_pool_shutdown() with
 *                ::EVEXEC_CANCEL, or evexec_port_free()); @p result is then
 *                NULL.
 * @param result  what the work function returned.
 * @param arg     the caller's pointer given to evexec_submit().
 *
 * The callback may call any evexec function, including evexec_submit(),
 * evexec_port_free() and evexec_pool_free(). Its job's id is no longer valid.
 *
 * Thread: the loop thread of the port the job was submitted through.
 */
typedef void (*evexec_done_fn)(int status, void *result, void *arg);

/* ------------------------------------------------------------------------ */
/** @name Pools */
/**@{*/

/** Most threads one pool may have. */
#define EVEXEC_MAX_THREADS 1024
/** Largest queue bound one pool may have. */
#define EVEXEC_MAX_QUEUED (1u << 28)
/** idle_timeout_ms value: surplus threads never exit. */
#define EVEXEC_IDLE_FOREVER 0xffffffffu

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
    /** Spinning, 0..10000 µs; 0 (the default) means off. A worker that
     * finds no job keeps polling for this long before it sleeps, so a job
     * submitted meanwhile starts without waking a sleeping thread (which
     * costs tens of microseconds on a virtual machine). Trades CPU time for
     * latency: worth it for request/response traffic with a job in flight
     * at a time. At most one worker spins at a time, and none that may run
     * on one CPU only (it would only delay the submitter). */
    unsigned spin_us;
    /** Added to the workers' nice value, 0..19 (Linux, where nice is per
     * thread; ignored elsewhere). Default 0. With CPU-bound jobs on few
     * cores, a positive value keeps the loop thread (and its timers)
     * responsive while the workers are busy. */
    unsigned nice;
};

/** Initialiser for struct evexec_pool_opts: all defaults. */
#define EVEXEC_POOL_OPTS_INIT { sizeof(struct evexec_pool_opts), 0, 0, 0, 0, NULL, 0, 0, 0 }

/**
 * Creates a pool.
 *
 * Starts min_threads workers at once; the others start when work arrives
 * and no worker is idle.
 *
 * @param[out] out  receives the pool; untouched on error.
 * @param opts      options, or NULL for all defaults. Only read during the call.
 * @return 0, or
 *   - -EINVAL: @p out NULL, opts->size smaller than the first version of the
 *     struct, or a field out of its documented range;
 *   - -E2BIG: opts->size larger than this library knows, with non-zero bytes
 *     in the part it does not know (a newer option it cannot honour);
 *   - -ENOMEM: out of memory;
 *   - -EAGAIN (or another error of pthread_create()): a min_threads worker
 *     could not be started.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_pool_new(evexec_pool **out, const struct evexec_pool_opts *opts);

/** evexec_pool_shutdown() mode: queued jobs still run. */
#define EVEXEC_DRAIN 0
/** evexec_pool_shutdown() mode: queued jobs are delivered as -ECANCELED. */
#define EVEXEC_CANCEL 1

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
 * @return 0, or -EDEADLK when called from one of this pool's own workers
 *   (nothing is done). NULL is a no-op returning 0.
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
    unsigned running;    /**< jobs whose work function is running */
    size_t queued;       /**< jobs waiting in the queue */
    uint64_t submitted;  /**< jobs accepted since creation */
    uint64_t completed;  /**< work functions that have returned */
    uint64_t cancelled;  /**< jobs taken off the queue as cancelled */
    uint64_t rejected;   /**< submits refused (-EAGAIN, -ESHUTDOWN) */
    uint64_t threads_started; /**< threads started since creation */
};

/**
 * Fills @p out with a consistent snapshot of the pool's counters.
 *
 * Set out->size first; only that many bytes are written, so a program built
 * against an older header keeps working.
 *
 * @return 0, or -EINVAL (NULL pointer, or out->size smaller than the first
 *   version of the struct).
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT int evexec_pool_stats(evexec_pool *pool, struct evexec_pool_stats *out);
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
};

/** Initialiser for struct evexec_port_opts: all defaults. */
#define EVEXEC_PORT_OPTS_INIT { sizeof(struct evexec_port_opts), 0, -1 }

/**
 * Creates the completion port of an event_base.
 *
 * The calling thread becomes the port's loop thread: it must be the thread
 * that runs @p base. The port opens one wake fd (close-on-exec) and adds one
 * persistent read event to @p base, so event_base_dispatch() keeps running
 * while the port exists.
 *
 * @param[out] out  receives the port; untouched on error.
 * @param base      the event_base; it must outlive the port.
 * @param opts      options, or NULL for all defaults. Only read during the call.
 * @return 0, or -EINVAL (NULL @p out or @p base, bad size or field), -E2BIG
 *   (see evexec_pool_new()), -ENOMEM, or the error of eventfd()/pipe()
 *   (-EMFILE, -ENFILE).
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
 * @return 0, or -EPERM when not called on the loop thread (nothing is done).
 *   NULL is a no-op returning 0.
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
                               empty, so one covers a whole burst */
    uint64_t batches;     /**< runs of the delivery loop (each at most
                               max_batch callbacks) */
};

/**
 * Fills @p out with the port's counters; see evexec_pool_stats() for @c size.
 *
 * @return 0, or -EINVAL (NULL pointer, bad size), or -EPERM (wrong thread).
 *
 * Thread: the port's loop thread.
 */
EVEXEC_EXPORT int evexec_port_stats(evexec_port *port, struct evexec_port_stats *out);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Jobs */
/**@{*/

/**
 * Submits a job: @p work runs on a worker of @p pool, then @p done runs on
 * the loop thread of @p port.
 *
 * Never blocks: an idle worker is handed the job directly; otherwise the job
 * is queued and, if the pool may grow, a thread is started. Jobs start in
 * submission order. Done callbacks run in batches; within a batch, in
 * submission order.
 *
 * @param port  the port whose loop thread runs @p done.
 * @param pool  the pool whose worker runs @p work.
 * @param work  the blocking function; must not be NULL.
 * @param done  the completion callback, or NULL for none.
 * @param arg   passed to both; owned by the caller.
 * @param[out] id  receives the job's id, or NULL if not wanted. Untouched on
 *   error.
 * @return 0 (@p done will run exactly once), or, with no callback ever:
 *   - -EINVAL: @p port, @p pool or @p work is NULL;
 *   - -EPERM: not called on the port's loop thread;
 *   - -EAGAIN: the queue is at max_queued, or no worker thread exists and
 *     none could be started;
 *   - -ESHUTDOWN: the pool was shut down, or the port freed;
 *   - -ENOMEM: out of memory.
 *
 * Thread: the port's loop thread.
 */
EVEXEC_EXPORT int evexec_submit(evexec_port *port, evexec_pool *pool, evexec_work_fn work,
                                evexec_done_fn done, void *arg, evexec_job_id *id);

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
 *   - -ENOENT: no such job: 0, an id of another port, or a job whose
 *     callback has already run;
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
 * @return 1 if a stop was requested, 0 if not or if @p job is NULL.
 *
 * Thread: the worker running @p job (from inside its work function).
 */
EVEXEC_EXPORT int evexec_job_cancelled(const evexec_job *job);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Errors and version */
/**@{*/

/**
 * Describes an error code returned by evexec.
 *
 * @param err  a negative errno as returned by an evexec function (a positive
 *   one is accepted too).
 * @return a static, constant English sentence; "unknown error" for codes
 *   evexec does not use. Never NULL.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT const char *evexec_strerror(int err);

/**
 * Names an error code: "EINVAL" for -EINVAL, "OK" for 0.
 *
 * @return a static string; "UNKNOWN" for codes evexec does not use.
 *
 * Thread: any thread.
 */
EVEXEC_EXPORT const char *evexec_errname(int err);

/** @return the library's version as ::EVEXEC_VERSION_NUMBER encodes it.
 *  Thread: any thread. */
EVEXEC_EXPORT unsigned evexec_version(void);

/** @return the library's version as "major.minor.patch", e.g. "0.1.0".
 *  Static. Thread: any thread. */
EVEXEC_EXPORT const char *evexec_version_string(void);
/**@}*/

#ifdef __cplusplus
}
#endif

#endif /* EVEXEC_H */
