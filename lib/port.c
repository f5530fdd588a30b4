/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: the port is where a loop thread submits jobs (port-submit.c) and
 * where they come home to be delivered (this file): a job's life on the
 * loop side is these two files.
 *
 * Home: runners post finished jobs to the port's mailbox (mailbox.c: a
 * lock-free list whose wake fd is written only when it was empty and the
 * loop not delivering, so a burst of N completions costs one write and one
 * read). The loop takes the whole list at once, puts the batch back in
 * submission order and runs at most max_batch callbacks; if more remain, a
 * zero timer brings it back once the loop has polled its other events.
 *
 * Delivery is one path, deliver(): recycle the job (its id dies), drop its
 * reference on its runner (once per run of equal runners), run its done
 * callback — or, for a job whose deadline passed and whose callback
 * already ran -ETIMEDOUT, hand a late result to its cleanup — then tell
 * its group. The port's features are files of their own, each with its
 * own data: deadlines (deadline.c, a heap and a timer: when one passes the
 * port delivers -ETIMEDOUT at once and stops the job), groups (group.c)
 * and jobs of other threads with the default pool (remote.c).
 *
 * Looking before sleeping: see port_look(). Gathering under load (the
 * loop left to sleep on a timer, not on its wake fd): see gather_delay().
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
#include <string.h>

#include <event2/event.h>
#ifdef HAVE_SYS_TIMERFD_H
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#endif

#include "error-internal.h"
#include "port-internal.h"
#include "thread-internal.h"

#define MIN_PORT_OPTS_SIZE (offsetof(struct evexec_port_opts, priority) + sizeof(int))

/* Ports made by this process: part of each port's id salt (see
 * evexec_port_new()). The library's only counter shared by every port. */
static _Atomic uint32_t ports_made;

/* Where a port's submission numbers start: the address and the count
 * through a 64-bit finaliser (splitmix64's), so that every bit of both
 * moves every bit of the start. A sum of two spread terms would not do:
 * a port made next a cache line lower can undo the count's step with
 * its address's, and start where the freed port did. */
static uint32_t port_salt(uintptr_t addr, uint32_t made)
{
    uint64_t z = (uint64_t)addr + (uint64_t)made * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

/* fork(): a child that reinitialises an inherited base (event_reinit())
 * and dispatches it would run the inherited ports' events: read the wake
 * fd it shares with the parent (stealing the parent's wake-ups, so the
 * parent's port stalls) and run done callbacks of the parent's jobs. A
 * count of forks, bumped in every child, tells a port that it was made
 * before the fork of the process it now runs in: it then does nothing but
 * take its events off the base. */
static _Atomic unsigned forks_seen;
static pthread_once_t fork_watch_once = PTHREAD_ONCE_INIT;

static void count_fork(void)
{
    atomic_fetch_add_explicit(&forks_seen, 1, memory_order_relaxed);
}

static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, count_fork);
}

/* 1 in a child of fork() for a port made before that fork: its wake fd
 * and its jobs are the parent's. Its events are then taken off the base. */
static int port_inherited(struct evexec_port *port)
{
    if (EVEXEC_LIKELY(port->forks == atomic_load_explicit(&forks_seen, memory_order_relaxed)))
        return 0;
    evexec__mailbox_detach(&port->mb);
    event_del(port->resume_ev);
    if (port->gather_ev)
        event_del(port->gather_ev);
    evexec__deadlines_detach(&port->deadlines);
    return 1;
}

static void port_release(struct evexec_port *port);

/* --- home: taking finished jobs ------------------------------------------ */

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

/* Appends finished jobs (newest first), sorted, to the batch (jobs of
 * other threads, which have no submission number, to the remote list). */
static void port_add(struct evexec_port *port, struct evexec_job *list)
{
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
        } else { /* newest first, so prepending restores order */
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

/* How port_run() takes from its mailbox: its first take starts a run
 * (reading the wake fd if the run came from it), later ones need no
 * system call; see "Runs" in mailbox.c. */
enum { TAKE_BEGIN, TAKE_BEGIN_WOKEN, TAKE_MORE };

/* Takes every finished job that came home since the last take. */
static void port_grab(struct evexec_port *port, int *how)
{
    struct evexec__node *list =
        *how == TAKE_MORE ? evexec__mailbox_more(&port->mb)
                          : evexec__mailbox_begin(&port->mb, *how == TAKE_BEGIN_WOKEN);
    *how = TAKE_MORE;
    port_add(port, (struct evexec_job *)list);
}

/* The next finished job to deliver once the batch is empty: the jobs of
 * other threads, then whatever came home meanwhile. */
static struct evexec_job *port_next_slow(struct evexec_port *port, int *how)
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
        port_grab(port, how);
    }
}

/* --- delivery: the one path ---------------------------------------------- */

/* References that delivered jobs give back to their runner, dropped once
 * per run of jobs of the same runner. */
struct runner_refs {
    struct evexec__runner *runner;
    unsigned long n;
};

static inline void refs_flush(struct runner_refs *refs)
{
    if (refs->n)
        refs->runner->ops->release(refs->runner, refs->n);
    refs->n = 0;
}

static inline void refs_add(struct runner_refs *refs, struct evexec__runner *runner)
{
    if (runner != refs->runner) {
        refs_flush(refs);
        refs->runner = runner;
    }
    refs->n++;
}

/*
 * Delivers one job that came home: recycles it before the callback (its
 * id is dead, and a submit from the callback reuses it while it is still
 * in cache), then runs its done callback and tells its group. A job whose
 * callback already ran -ETIMEDOUT is only recycled, its late result going
 * to cleanup. Returns 1 if it counts against max_batch.
 */
static inline int deliver(struct evexec_port *port, struct evexec_job *job,
                          struct runner_refs *refs)
{
    assert(job_state(job) == JOB_RUNNING || job_state(job) == JOB_CANCELLED ||
           job->kind == JOB_KIND_SINGLE);
    int status = job_status(job);
    void *result = job_result(job);
    evexec_done_fn done = job->done;
    evexec_cleanup_fn late = NULL;
    struct evexec_group *group = NULL;
    void *arg = job->arg;

    if (EVEXEC_UNLIKELY(job->flags & JOB_HAS_EXT)) {
        if (job->kind == JOB_KIND_SINGLE && evexec__remote_is_notice(job)) {
            evexec__remote_recycle(&port->remote, job);
            return 0;
        }
        struct job_ext *ext = job_ext(job);
        if (ext->timed_out) {
            assert(port->timed_out_away > 0);
            port->timed_out_away--;
            late = result ? ext->cleanup : NULL;
            done = NULL;
        } else {
            if (evexec__deadline_is_set(&ext->deadline))
                evexec__deadlines_remove(&port->deadlines, &ext->deadline);
            if (evexec__group_of(&ext->group))
                group = evexec__group_unlink(&ext->group);
            port->delivered++;
        }
    } else {
        port->delivered++;
    }
    refs_add(refs, job->runner);
    if (EVEXEC_LIKELY(job->kind == JOB_KIND_PORT)) {
        assert(port->outstanding > 0);
        evexec__jobs_free(&port->jobs, job);
        port->outstanding--;
    } else {
        evexec__remote_recycle(&port->remote, job);
    }
    if (late)
        late(result, arg);
    else if (done)
        done(status, result, arg);
    if (group)
        evexec__group_member_done(group, status);
    return 1;
}

/*
 * Looking before sleeping. A done callback that submits a job (a request's
 * next step, a pipeline) often has it back within a microsecond or two when
 * a worker is awake on another CPU; ending the run first costs this thread
 * a wake-up, tens of microseconds where an idle vCPU halts. So a run whose
 * callbacks submitted jobs, with jobs outstanding, looks at its list for up
 * to look_ns before it ends, as an idle worker searches for work
 * (pool-worker.c) -- no system call, the list's head word only. The budget
 * adapts, as an adaptive mutex's spin does: a look that finds a job sets
 * it back to LOOK_MAX_NS, one that finds nothing halves it (down to none:
 * every thread on one CPU, where the worker cannot run while we look, or
 * jobs that take longer); with none left, every LOOK_PROBE-th such run
 * tries LOOK_MIN_NS again. So a look that never pays costs a few
 * microseconds once, then about nothing.
 *
 * The loop's other events: a run looks for LOOK_RUN_NS in all at most,
 * whatever max_batch is, so a pipeline whose every look succeeds gives the
 * loop back after that much looking (a few dozen round trips) as well as
 * after max_batch callbacks.
 */
#define LOOK_MAX_NS 4000u
#define LOOK_MIN_NS 500u
#define LOOK_PROBE 64u
#define LOOK_RUN_NS 16000u

/* 1 if a job came home within the budget; *left: the run's looking time
 * left, in ns. */
static int port_look(struct evexec_port *port, unsigned *left)
{
    unsigned budget = port->look_ns;
    if (!budget) {
        if (++port->look_idle < LOOK_PROBE)
            return 0;
        budget = LOOK_MIN_NS;
    }
    if (*left < budget) {
        *left = 0; /* the run has looked enough: not a failed look */
        return 0;
    }
    port->look_idle = 0;
    uint64_t start = evexec__now_ns(), now = start;
    for (unsigned i = 1;; i++) {
        if (evexec__mailbox_posted(&port->mb)) {
            port->look_ns = LOOK_MAX_NS;
            now = evexec__now_ns();
            break;
        }
        evexec__cpu_relax();
        if (i % 16 == 0 && (now = evexec__now_ns()) - start >= budget) {
            port->look_ns = budget / 2 >= LOOK_MIN_NS ? budget / 2 : 0;
            *left -= budget;
            return 0;
        }
    }
    uint64_t spent = now - start;
    *left = spent >= *left ? 0 : *left - (unsigned)spent;
    return 1;
}

/*
 * Gathering under load (see evexec_port_new()). A run that ends puts the
 * loop to sleep on its wake fd, and the next completion that finds it
 * asleep costs a worker a write and the loop a wake-up: under a steady
 * flow, one wake-up for every few jobs, each tens of microseconds of CPU
 * on a virtual machine, taken from busy workers and making the loop the
 * thread the scheduler keeps waiting. When the jobs the port waits for
 * each stay away much longer than a short delay, the run stays open
 * instead (mailbox.c, "Runs": posts write nothing) and a timer brings the
 * loop back to deliver what gathered meanwhile.
 *
 * The jobs' time away comes from Little's law: outstanding jobs over the
 * rate at which they come home, the rate counted over windows of at least
 * GATHER_WINDOW_NS at the ends of runs (one clock read per run, and only
 * with GATHER_MIN jobs outstanding: a pipeline of a few jobs never pays
 * it). The delay is a quarter of that time, capped at max_delay_us, and
 * not worth a timer below GATHER_MIN_DELAY_NS: a callback comes at most a
 * quarter later than its job alone would let it. A gathering run that
 * finds nothing ends the gathering (the flow stopped), and so does a
 * window with no run for GATHER_STALE_NS.
 */
#define GATHER_MIN 16u
#define GATHER_DEFAULT_NS 200000u
#define GATHER_WINDOW_NS 1000000u
#define GATHER_STALE_NS 20000000u
#define GATHER_MIN_DELAY_NS 20000u

/* The delay to gather for at the end of a run, in ns; 0: sleep on the
 * wake fd. */
static unsigned gather_delay(struct evexec_port *port)
{
    if (!port->gather_max_ns || port->outstanding < GATHER_MIN || port->closing)
        return 0;
    uint64_t now = evexec__now_ns(), dt = now - port->rate_t0;
    if (!port->rate_t0 || dt >= GATHER_STALE_NS) {
        port->rate_t0 = now;
        port->rate_n0 = port->delivered;
        port->away_ns = 0; /* no estimate until a window has passed */
        return 0;
    }
    if (dt >= GATHER_WINDOW_NS) {
        uint64_t n = port->delivered - port->rate_n0;
        /* outstanding * dt fits: dt < 2^25 ns, outstanding < 2^32. */
        port->away_ns = n ? (uint64_t)port->outstanding * dt / n : UINT64_MAX;
        port->rate_t0 = now;
        port->rate_n0 = port->delivered;
    }
    uint64_t delay = port->away_ns / 4;
    if (delay < GATHER_MIN_DELAY_NS)
        return 0;
    return delay < port->gather_max_ns ? (unsigned)delay : port->gather_max_ns;
}

/* What started a run: the zero timer, the wake fd, the gathering's timer. */
enum { RUN_RESUMED, RUN_WOKEN, RUN_GATHERED };

static void port_run(struct evexec_port *port, int from);

#ifdef HAVE_SYS_TIMERFD_H

static void on_gather(evutil_socket_t fd, short what, void *arg)
{
    uint64_t expirations;
    EVEXEC_UNUSED(what);
    /* Level-triggered: read it, or the loop comes straight back. */
    while (read(fd, &expirations, sizeof expirations) < 0 && errno == EINTR)
        ;
    ((struct evexec_port *)arg)->gathered++;
    port_run(arg, RUN_GATHERED);
}

/* The timerfd and its event, made with the port: a port that first
 * gathers in steady state must allocate nothing then. */
static int gather_open(struct evexec_port *port)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct event *ev = event_new(port->base, fd, EV_READ | EV_PERSIST, on_gather, port);
    if (ev && (port->ev_priority < 0 || event_priority_set(ev, port->ev_priority) == 0) &&
        event_add(ev, NULL) == 0) {
        port->gather_ev = ev;
        return 0;
    }
    if (ev)
        event_free(ev);
    close(fd);
    return -ENOMEM;
}

/* 0 once the timer runs; else the port stops gathering for good. */
static int gather_arm(struct evexec_port *port, unsigned ns)
{
    struct itimerspec its = {{0, 0}, {0, (long)ns}}; /* ns < 1 s */
    if (timerfd_settime(event_get_fd(port->gather_ev), 0, &its, NULL) == 0)
        return 0;
    port->gather_max_ns = 0;
    return -1;
}

static void gather_close(struct evexec_port *port)
{
    if (port->gather_ev) {
        int fd = event_get_fd(port->gather_ev);
        event_free(port->gather_ev);
        close(fd);
    }
}
#else
static int gather_open(struct evexec_port *port)
{
    EVEXEC_UNUSED(port);
    return 0;
}

static int gather_arm(struct evexec_port *port, unsigned ns)
{
    EVEXEC_UNUSED(ns);
    port->gather_max_ns = 0;
    return -1;
}

static void gather_close(struct evexec_port *port)
{
    EVEXEC_UNUSED(port);
}
#endif

/*
 * Runs up to max_batch done callbacks, taking more finished jobs whenever
 * the batch runs out: the takes of one run, with no wake-fd write or read
 * for what comes home meanwhile (mailbox.c, "Runs"), then, under load, a
 * gathering (above), else a look before it ends (above). If the cap stops
 * it with jobs left, or the run's end takes some, the zero timer brings it
 * back after the loop's other events.
 */
static void port_run(struct evexec_port *port, int from)
{
    struct runner_refs refs = {NULL, 0};
    unsigned n = 0, gather = 0;
    int how = from == RUN_WOKEN ? TAKE_BEGIN_WOKEN : TAKE_BEGIN;
    uint32_t seq = port->jobs.next_seq; /* moves with every submit */
    unsigned look_left = LOOK_RUN_NS;
    int submitted = 0; /* by this run's callbacks: worth a look */
    struct evexec_job *job;

    if (EVEXEC_UNLIKELY(port_inherited(port)))
        return; /* the parent's: see forks_seen */
    if (port->run_open) { /* a run that gave the loop a turn goes on */
        port->run_open = 0;
        how = TAKE_MORE;
        submitted = 1;
        if (from == RUN_WOKEN) /* a write owed from before the run: read it */
            evexec__mailbox_read(&port->mb);
    }
    port->batches++;
    port->in_run++;
    if (EVEXEC_UNLIKELY(evexec__groups_have_due(&port->groups)))
        evexec__groups_run_due(&port->groups);
    for (;;) {
        while (n < port->max_batch) {
            if (EVEXEC_LIKELY(port->batch_head < port->batch_len))
                job = port->batch[port->batch_head++];
            else if (!(job = port_next_slow(port, &how)))
                break;
            n += (unsigned)deliver(port, job, &refs);
        }
        if (n >= port->max_batch || how != TAKE_MORE || !port->outstanding)
            break;
        /* Out of jobs, with jobs away: gather under load (unless this
         * gathering found nothing), else look if callbacks submitted. */
        if ((from != RUN_GATHERED || n) && (gather = gather_delay(port)) != 0)
            break;
        submitted |= port->jobs.next_seq != seq;
        if (!submitted || !look_left || !port_look(port, &look_left))
            break;
        seq = port->jobs.next_seq;
        submitted = 0;
    }
    if (how == TAKE_MORE && port->outstanding && !port->closing &&
        (gather ? gather_arm(port, gather) == 0 : !look_left)) {
        /* Gathering, or looked its fill and its looks paid: the loop's
         * other events get a turn, but the run stays open (posts still
         * write nothing) and a timer brings it back: the gathering's, or
         * the zero timer, so the loop does not sleep on a job that is
         * microseconds away. */
        port->run_open = 1;
        if (!gather)
            evexec__soon(port->resume_ev);
    } else if (how == TAKE_MORE) {
        /* What came home after the last take waits for the resume below. */
        if (port->batch_head == port->batch_len)
            port->batch_head = port->batch_len = 0;
        port_add(port, (struct evexec_job *)evexec__mailbox_end(&port->mb));
    }
    refs_flush(&refs);
    port->in_run--;
    if (EVEXEC_UNLIKELY(port->idle_hook != NULL) && port->outstanding == 0 &&
        evexec__remote_count(&port->remote) == 0)
        port->idle_hook(port->idle_arg);
    if (port->batch_head != port->batch_len || port->remote_head)
        evexec__soon(port->resume_ev);
    if (EVEXEC_UNLIKELY(port->closing))
        port_release(port);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    EVEXEC_UNUSED(fd);
    EVEXEC_UNUSED(what);
    port_run(arg, RUN_WOKEN);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    EVEXEC_UNUSED(fd);
    EVEXEC_UNUSED(what);
    port_run(arg, RUN_RESUMED);
}

/* A deadline passed before the job came home: its callback runs now with
 * -ETIMEDOUT and the job is stopped (taken off its queue, or its stop flag
 * set); once home it is only recycled (deliver()). A job cancelled first
 * is on its way home and keeps -ECANCELED. */
static void expire(struct evexec_port *port, struct job_ext *ext)
{
    struct evexec_job *job = ext->job;

    if (job_state(job) == JOB_CANCELLED)
        return;
    ext->timed_out = 1;
    port->timed_out_away++;
    (void)evexec__job_cancel(job);
    job->runner->ops->timed_out(job->runner, job);
    struct evexec_group *group = NULL;
    if (evexec__group_of(&ext->group))
        group = evexec__group_unlink(&ext->group);
    port->delivered++;
    if (job->done)
        job->done(-ETIMEDOUT, NULL, job->arg);
    if (group)
        evexec__group_member_done(group, -ETIMEDOUT);
}

static void on_deadlines(void *arg)
{
    struct evexec_port *port = arg;
    struct evexec__deadline_entry *e;
    if (EVEXEC_UNLIKELY(port_inherited(port)))
        return; /* a forked child's copy of its parent's port */
    uint64_t now = evexec__now_ns();

    port->in_run++;
    while ((e = evexec__deadlines_pop_due(&port->deadlines, now)) != NULL)
        expire(port, EVEXEC_CONTAINER(e, struct job_ext, deadline)); /* may submit, cancel,
                                                                        free the port */
    port->in_run--;
    evexec__deadlines_arm(&port->deadlines);
    if (EVEXEC_UNLIKELY(port->closing))
        port_release(port);
}

/* --- groups and cancelling ----------------------------------------------- */

static void kick(void *arg)
{
    struct evexec_port *port = arg;
    evexec__soon(port->resume_ev); /* port_run() runs the due groups */
}

static void cancel_member(struct evexec__group_link *member, void *arg)
{
    EVEXEC_UNUSED(arg);
    (void)evexec__job_cancel(EVEXEC_CONTAINER(member, struct job_ext, group)->job);
}

static void cancel_one(struct evexec_job *job, void *arg)
{
    EVEXEC_UNUSED(arg);
    (void)evexec__job_cancel(job);
}

void evexec__port_cancel_all(struct evexec_port *port)
{
    /* Cancel what is queued, ask what runs to stop; each still gets its
     * callback from the loop. */
    if (port->outstanding)
        evexec__jobs_each_busy(&port->jobs, cancel_one, NULL);
    evexec__remote_cancel_all(&port->remote);
}

/* --- lifetime ------------------------------------------------------------ */

static void port_destroy(struct evexec_port *port)
{
    assert(!port->in_run);
    evexec__groups_fini(&port->groups);
    evexec__mailbox_close(&port->mb);
    if (port->resume_ev)
        event_free(port->resume_ev);
    gather_close(port);
    evexec__deadlines_fini(&port->deadlines);
    evexec__jobs_fini(&port->jobs);
    evexec__remote_fini(&port->remote);
    free(port->batch);
    free(port);
}

int evexec__port_busy(struct evexec_port *port)
{
    return port->outstanding || evexec__remote_count(&port->remote) ||
           evexec__groups_have_due(&port->groups) || !evexec__mailbox_quiet(&port->mb);
}

/* Releases a freed port once nothing can reach it any more: every job
 * delivered, every group callback run, and no wake-fd write still owed (a
 * worker that has pushed onto the empty list may not have written yet). */
static void port_release(struct evexec_port *port)
{
    if (!port->closing || port->in_run || evexec__port_busy(port))
        return;
    port_destroy(port);
}

void evexec__port_refuse(struct evexec_port *port)
{
    port->refusing = 1;
    evexec__remote_refuse(&port->remote);
}

int evexec__port_seal(struct evexec_port *port)
{
    return evexec__remote_seal(&port->remote);
}

void evexec__port_set_idle_hook(struct evexec_port *port, void (*fn)(void *), void *arg)
{
    port->idle_hook = fn;
    port->idle_arg = arg;
}

int evexec_port_new(evexec_port **out, struct event_base *base, const struct evexec_port_opts *opts)
{
    struct evexec_port_opts o = EVEXEC_PORT_OPTS_INIT;
    struct evexec_port *port;
    int rc;

    if (!out || !base)
        return -EINVAL;
    if ((rc = evexec__opts_read(&o, sizeof o, opts, MIN_PORT_OPTS_SIZE)) < 0)
        return rc;
    if (o.max_batch > EVEXEC__MAX_MAX_BATCH || o.priority < -1 || o.max_delay_us < -1 ||
        o.max_delay_us > 100000)
        return -EINVAL;

    if (posix_memalign((void **)&port, EVEXEC_CACHELINE, sizeof *port))
        return -ENOMEM;
    memset(port, 0, sizeof *port);
    port->base = base;
    port->owner = pthread_self();
    pthread_once(&fork_watch_once, watch_forks);
    port->forks = atomic_load_explicit(&forks_seen, memory_order_relaxed);
    port->max_batch = o.max_batch ? o.max_batch : EVEXEC__DEFAULT_MAX_BATCH;
    port->look_ns = LOOK_MAX_NS;
    port->ev_priority = o.priority;
#ifdef HAVE_SYS_TIMERFD_H
    port->gather_max_ns = o.max_delay_us < 0 ? 0u
                          : o.max_delay_us ? (unsigned)o.max_delay_us * 1000u
                                           : GATHER_DEFAULT_NS;
#endif
    evexec__mailbox_init(&port->mb);
    /* Ids are (submission number << 32 | slot). Starting each port's
     * numbers at a point derived from its address keeps two live ports'
     * ids apart, so an id given to the wrong port is recognised (-ENOENT)
     * rather than naming one of its jobs; they would meet only after
     * billions of submissions. The address alone is not enough: malloc
     * often gives a freed port's memory to the next port, whose ids would
     * then be the old one's. So the start mixes the address with a count
     * of the ports made in this process (port_salt()). */
    uint32_t made = atomic_fetch_add_explicit(&ports_made, 1, memory_order_relaxed);
    evexec__jobs_init(&port->jobs, &port->mb, port_salt((uintptr_t)port, made));
    evexec__deadlines_init(&port->deadlines, base, o.priority, on_deadlines, port);
    evexec__groups_init(&port->groups, port->owner, kick, cancel_member, port);
    if ((rc = evexec__remote_init(&port->remote, &port->mb)) < 0) {
        free(port);
        return rc;
    }

    rc = -ENOMEM;
    if (!(port->resume_ev = evtimer_new(base, on_resume, port)))
        goto fail;
    rc = -EINVAL;
    if (o.priority >= 0 && event_priority_set(port->resume_ev, o.priority) < 0)
        goto fail;
    /* Its place in the base's timer heap, taken now: the first batch that
     * must resume then allocates nothing (no malloc in steady state). */
    static const struct timeval zero = {0, 0};
    rc = -ENOMEM;
    if (event_add(port->resume_ev, &zero) < 0)
        goto fail;
    event_del(port->resume_ev);
    if ((rc = evexec__mailbox_open(&port->mb, base, on_wake, port, o.priority)) < 0)
        goto fail;
    if (port->gather_max_ns && (rc = gather_open(port)) < 0)
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
    int rc = port_check_thread(port);
    if (rc < 0)
        return rc;
    if (port->idle_hook)
        return -EPERM; /* a loop's port (evexec_loop_port()): the loop frees it */
    if (port->closing)
        return 0;
    port->closing = 1;
    evexec__port_refuse(port); /* other threads too */
    evexec__port_cancel_all(port);
    evexec__groups_close_all(&port->groups);
    port_release(port);
    return 0;
}

int evexec_port_stats(evexec_port *port, struct evexec_port_stats *out)
{
    int rc;
    if (!port || !out)
        return -EINVAL;
    if (out->size < offsetof(struct evexec_port_stats, batches) + sizeof(uint64_t))
        return -EINVAL;
    if ((rc = port_check_thread(port)) < 0)
        return rc;
    struct evexec_port_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    s.outstanding = port->outstanding - port->timed_out_away + evexec__remote_count(&port->remote);
    s.delivered = port->delivered;
    s.wakeups = evexec__mailbox_signals(&port->mb);
    s.batches = port->batches;
    s.gathered = port->gathered;
    return evexec__stats_write(out, &s, sizeof s,
                               offsetof(struct evexec_port_stats, batches) + sizeof(uint64_t));
}
