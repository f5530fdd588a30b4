/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: a process pool's daemon side: its queue, its supervisor thread
 * and its public calls.
 *
 * Submitters (a port's loop thread) put records on the queue under mu and
 * wake the supervisor through an eventfd, written only when the
 * supervisor was not already owed a wake-up -- unless a worker is idle
 * (the direct hand-off below). The supervisor is a thread of the pool
 * running its own epoll loop (never a port's event_base) over that
 * eventfd, its channel to the fork server and one channel per worker. It
 * alone touches the worker slots (but for the two fields of the hand-off,
 * under mu); mu guards the queue, the shutdown state and the counters that
 * evexec_procpool_stats() reads.
 *
 * The direct hand-off: a round trip through the supervisor was four
 * hand-offs (loop thread -> supervisor -> worker -> supervisor -> loop
 * thread), and on a virtual machine whose idle CPUs halt each one that
 * wakes a sleeping thread costs 20-40 us. So the supervisor lends its idle
 * workers to submitters: a stack under mu (pp->idle, the worker that
 * finished last on top; a worker is lent when it becomes idle, before its
 * result goes home, so the done callback's next submit finds it). A
 * submit that finds the queue empty and a worker lent pops it and sends
 * the JOB frame on the worker's channel itself, under mu, recording the
 * record as the worker's handed job (before the send: the RESULT may
 * reach the supervisor first); the supervisor is not woken. The worker,
 * for its part, polls its channel for PROC_POLL_US after each result
 * (procpool-server.c), so a job that follows at once needs no wake-up
 * either. What stays is worker -> supervisor -> loop thread, and the
 * supervisor too looks for frames for SUP_POLL_US after a result went home
 * before it sleeps in epoll_wait(), calling sched_yield() between looks:
 * the loop thread it has just woken usually lands on the supervisor's CPU
 * (the other one runs the polling worker) and must get it at once (without
 * the yield, polling made round trips slower: 113 us against 24). So a
 * done callback that submits the next job at once costs one wake-up of a
 * sleeping thread per round trip, not four (P1 in bench/README.md). The
 * polls cost up to 50 us of CPU after each result in the worker and in
 * the supervisor, when no job follows.
 *
 * The supervisor collects a handed job (makes it the worker's job, BUSY)
 * before it looks at that worker for any reason: a RESULT or MEMLIMIT
 * with no job (a job's frames may come before anything else woke it), the
 * worker's EXITED (a crash just after the hand-off is the job's crash), a
 * kill or retirement (unlend), closing its channel (no submitter may send
 * on the fd after that), and at the top of each round for shutdowns,
 * cancels and deadlines. A submit with a deadline wakes it, so it kills on
 * time. A failed send (a dying worker) leaves the job to the queue, as
 * before. The hand-off overtakes no job: it happens only with the queue
 * empty, and the supervisor takes a worker back (unlend) before it
 * dispatches queued jobs to it.
 *
 * With every worker busy, the supervisor sends each its next jobs ahead
 * (see "jobs sent ahead" below): the worker's channel then holds the job
 * it runs and up to two more, and a job ends the same whichever path it
 * took.
 *
 * A worker slot goes FREE -> SPAWNING (SPAWN sent) -> STARTING (SPAWNED
 * got) -> IDLE (READY got) <-> BUSY -> EXITING (asked to exit, or killed)
 * -> FREE on the fork server's EXITED, which alone ends a worker: only
 * then is its outcome known (the wait status), its process group killed
 * (grandchildren included) and the server told to reap it. A worker's
 * frames are all read before its EXITED is acted on (the channel holds
 * what the worker sent before dying), so a RESULT or MEMLIMIT is never
 * lost to the race between the two sockets.
 *
 * Every record ends exactly once, through finish(): from a RESULT, from
 * its worker's EXITED, or from the queue (cancelled, deadline, init
 * failures, shutdown). Stops asked by ports (evexec_cancel(),
 * evexec_port_free()) and deadlines are checked every TICK_MS while jobs
 * are outstanding. A worker that dies before it is ready, or at once
 * after (within EARLY_MS, its first job unfinished, not killed by us),
 * counts as a failure: spawning then backs off, doubling from 10 ms up to
 * 5 s, and the pool is reported degraded from the third in a row until a
 * job succeeds.
 */
#define _GNU_SOURCE
#include "config.h"

#include <dlfcn.h>
#include <sched.h>
#include <errno.h>
#include <link.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "error-internal.h"
#include "job-internal.h"
#include "procpool-internal.h"
#include "thread-internal.h"

#define TICK_MS 10
/* How long the supervisor looks for more frames after a result went home,
 * yielding the CPU between looks: see "the direct hand-off". */
#define SUP_POLL_US 50
#define EARLY_MS 100
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 5000
#define FREE_GRACE_MS 2000
#define DEFAULT_MAX_PROCS 4
#define DEFAULT_MAX_QUEUED 65536
#define DEFAULT_IDLE_MS 10000
#define DEFAULT_MAX_PAYLOAD ((uint64_t)64 << 20)
#define MAX_PAYLOAD ((uint64_t)1 << 40)
#define NCLASSES 3
#define PROC_INBUF_CACHE 4
#define INBUF_KEEP_MS 1000         /* kept input buffers unused this long go */
/* Jobs sent ahead to a busy worker at most: with one, a worker still
 * waited for the supervisor after half its jobs under a stream of small
 * ones (bench/README.md, P2); three did no better than two. */
#define PROC_AHEAD (PROC_CLAIMS - 1)

/* An executable segment loaded when the pool was made: [lo, hi). */
struct proc_range {
    uintptr_t lo, hi;
};

enum wstate { W_FREE = 0, W_SPAWNING, W_STARTING, W_IDLE, W_BUSY, W_EXITING };

struct proc_worker {
    int fd;                        /* the daemon's end of its channel, or -1 */
    pid_t pid;                     /* 0 until known */
    enum wstate st;
    unsigned number;
    struct proc_rec *job;          /* BUSY (or killed while BUSY) */
    _Atomic uint64_t *claims;      /* its claim words, or NULL: no job is
                                      sent ahead to it */
    uint64_t ready_ns, idle_ns;
    uint64_t jobs;
    int ready;                     /* READY was received */
    int init_failed, init_code;    /* INITFAIL was received */
    int kill_reason;               /* the outcome our kill gives its job */
    int memlimit;                  /* MEMLIMIT received for its job */
    int retiring;                  /* asked to exit: not a failure */
    /* Under mu (the direct hand-off): */
    int lent;                      /* on the pool's idle stack */
    struct proc_rec *handed;       /* a job a submitter sent it, not yet
                                      collected by the supervisor */
    struct proc_rec *ahead[PROC_AHEAD]; /* jobs sent ahead behind job, the
                                      oldest first, not yet its job (see
                                      "jobs sent ahead") */
    unsigned nahead;
};

/* An idle worker lent to submitters (struct evexec_procpool's idle). */
struct proc_lent {
    unsigned slot;
    int fd;
    pid_t pid;
};

struct evexec_procpool {
    struct evexec__runner runner;  /* first: ports reach the pool by it */
    /* One for the handle, one per job accepted and not yet delivered. */
    _Atomic unsigned long refs;
    pthread_mutex_t mu;
    /* Guarded by mu: */
    struct proc_rec *qhead[NCLASSES], *qtail[NCLASSES];
    size_t nqueued;
    size_t ndeadlines;             /* queued jobs with a deadline */
    int closed;                    /* 0, EVEXEC_DRAIN + 1, EVEXEC_CANCEL + 1 */
    int freeing;
    int wake_owed;
    int broken;                    /* the fork server is gone */
    int scan_owed;                 /* a running job was asked to stop */
    /* Idle workers lent to submitters, the last one lent on top (it may
     * still be polling for its next job): see "direct hand-off". */
    struct proc_lent idle[PROC_MAX_PROCS];
    unsigned nidle;
    unsigned nahead;               /* jobs sent ahead, all workers */
    uint64_t claim_ids;            /* the last id a job sent ahead took */
    _Atomic unsigned nhanded;      /* jobs handed and not yet collected
                                      (written under mu; read without it
                                      by the supervisor, as a hint) */
    uint64_t next_seq;
    struct evexec_procpool_stats st;
    /* Input buffers no job holds (the biggest kept), for the next big
     * inputs: a submit copies into warm pages instead of new ones. */
    struct proc_inbuf { int fd; void *map; size_t cap; int ro; } inbufs[PROC_INBUF_CACHE];
    unsigned ninbufs;
    uint64_t inbuf_used_ns;        /* one was last taken or kept */
    int inbufs_owed;               /* under mu: a thread other than the
                                      supervisor kept one (evexec_proc_input_free()):
                                      the supervisor's inbufs_kept is owed */
    int inbufs_kept;               /* supervisor only: one may be kept (no
                                      lock taken to look otherwise) */

    /* Set at creation, then read only: */
    struct proc_conf conf;
    unsigned max_procs, min_procs, idle_ms, recycle_age_ms;
    uint64_t recycle_jobs, recycle_rss;
    size_t max_queued;
    struct proc_range *code;       /* executable segments of the server's image */
    size_t ncode;
    int wake_fd;

    /* Supervisor thread only: */
    pthread_t thread;
    int epfd, srv_fd;
    pid_t srv_pid;
    struct proc_worker w[PROC_MAX_PROCS];
    unsigned next_number;
    unsigned fails;                /* early deaths in a row */
    unsigned owed_respawns;
    uint64_t next_spawn_ns, last_scan_ns, free_since_ns;
    int delivered;                 /* a result went home this round:
                                      poll before sleeping */
    void *rxbuf;

    /* Creation handshake. */
    pthread_cond_t cv;
    int started;                   /* 1: running; < 0: -errno */
};

/* --- records ------------------------------------------------------------- */

void evexec__procrec_free(struct proc_rec *rec)
{
    if (!rec)
        return;
    if (rec->in_fd >= 0) {
        munmap(rec->in_map, rec->in_cap);
        close(rec->in_fd);
    }
    if (rec->out_map)
        munmap(rec->out_map, rec->out_map_len);
    free(rec->out_heap);
    free(rec);
}

static void wake(struct evexec_procpool *pp)
{
    /* With mu held. */
    if (!pp->wake_owed && pp->wake_fd >= 0) {
        uint64_t one = 1;
        pp->wake_owed = 1;
        while (write(pp->wake_fd, &one, sizeof one) < 0 && errno == EINTR)
            ;
    }
}

/* With mu held: keeps b for the next big input; when the cache is full,
 * the smallest buffer goes: returned for the caller to drop (fd -1:
 * none). */
static struct proc_inbuf inbuf_keep(struct evexec_procpool *pp, struct proc_inbuf b,
                                     int supervisor)
{
    struct proc_inbuf drop = {.fd = -1};
    pp->inbuf_used_ns = evexec__now_ns();
    if (supervisor) {
        pp->inbufs_kept = 1;
    } else if (!pp->inbufs_owed) {
        /* So that it goes after its second unused. */
        pp->inbufs_owed = 1;
        wake(pp);
    }
    if (pp->ninbufs < PROC_INBUF_CACHE) {
        pp->inbufs[pp->ninbufs++] = b;
        return drop;
    }
    unsigned small = 0;
    for (unsigned i = 1; i < pp->ninbufs; i++)
        if (pp->inbufs[i].cap < pp->inbufs[small].cap)
            small = i;
    drop = b;
    if (pp->inbufs[small].cap < b.cap) {
        drop = pp->inbufs[small];
        pp->inbufs[small] = b;
    }
    return drop;
}

static void inbuf_drop(struct proc_inbuf b)
{
    if (b.fd >= 0) {
        munmap(b.map, b.cap);
        close(b.fd);
    }
}

/* Any thread, no lock held: an input buffer of at least len bytes, mapped
 * writable: a kept one when one is big enough (the smallest such, its
 * pages already there; made writable again if an in-place submit made it
 * read-only), else a new one. fd -1 and *rc on error. */
static struct proc_inbuf inbuf_take(struct evexec_procpool *pp, size_t len, int *rc)
{
    struct proc_inbuf b = {.fd = -1};
    unsigned best = PROC_INBUF_CACHE;
    pthread_mutex_lock(&pp->mu);
    for (unsigned i = 0; i < pp->ninbufs; i++)
        if (pp->inbufs[i].cap >= len &&
            (best == PROC_INBUF_CACHE || pp->inbufs[i].cap < pp->inbufs[best].cap))
            best = i;
    if (best < PROC_INBUF_CACHE) {
        b = pp->inbufs[best];
        pp->inbufs[best] = pp->inbufs[--pp->ninbufs];
        pp->inbuf_used_ns = evexec__now_ns();
    }
    pthread_mutex_unlock(&pp->mu);
    if (b.fd >= 0 && b.ro) {
        /* The daemon's mapping was made before the seal, so it may be
         * writable again (FUTURE_WRITE refuses only new ones). */
        if (mprotect(b.map, b.cap, PROT_READ | PROT_WRITE) == 0) {
            b.ro = 0;
        } else {
            inbuf_drop(b);
            b.fd = -1;
        }
    }
    if (b.fd < 0) {
        b.cap = len;
        b.ro = 0;
        if ((b.fd = evexec__proc_inbuf_new(len, &b.map)) < 0) {
            *rc = b.fd;
            b.fd = -1;
        }
    }
    return b;
}

/* With mu held: the job is the supervisor's from now on; the port can no
 * longer take it back. A job pushed back after a failed dispatch is
 * RUNNING already. */
static void take(struct proc_rec *rec)
{
    if (rec->job && job_state(rec->job) == JOB_QUEUED)
        evexec__job_set_state(rec->job, JOB_RUNNING);
}

/* Ends a record: the one place, so exactly once. Supervisor, no lock. */
static void finish(struct evexec_procpool *pp, struct proc_rec *rec, int status)
{
    struct proc_inbuf drop = {.fd = -1};
    rec->status = status;
    pthread_mutex_lock(&pp->mu);
    take(rec); /* one sent ahead is QUEUED to its port until it ends */
    if (rec->in_fd >= 0) {
        /* Its worker has replied or is dead (or never had it): the buffer
         * serves the next big input. */
        struct proc_inbuf b = {rec->in_fd, rec->in_map, rec->in_cap, rec->in_ro};
        rec->in_fd = -1;
        rec->in_map = NULL;
        drop = inbuf_keep(pp, b, 1);
    }
    switch (status) {
    case 0:
    case -EREMOTEIO: pp->st.completed++; break;
    case -ECANCELED:
        if (atomic_load(&rec->timed_out)) /* stopped by its port deadline */
            pp->st.killed_deadline++;
        else
            pp->st.cancelled++;
        break;
    case -ETIMEDOUT: pp->st.killed_deadline++; break;
    case -ENOMEM: pp->st.killed_memory++; break;
    case -ETIME: pp->st.killed_cpu++; break;
    case -EOWNERDEAD:
    case -ECHILD: pp->st.crashed++; break;
    default: break;
    }
    pthread_mutex_unlock(&pp->mu);
    inbuf_drop(drop);
    evexec__procport_complete(rec);
}

/* --- the queue (mu held) ------------------------------------------------- */

static void q_push(struct evexec_procpool *pp, struct proc_rec *rec, int front)
{
    unsigned c = rec->cls;
    rec->next = rec->prev = NULL;
    if (!pp->qhead[c]) {
        pp->qhead[c] = pp->qtail[c] = rec;
    } else if (front) {
        rec->next = pp->qhead[c];
        pp->qhead[c]->prev = rec;
        pp->qhead[c] = rec;
    } else {
        rec->prev = pp->qtail[c];
        pp->qtail[c]->next = rec;
        pp->qtail[c] = rec;
    }
    pp->nqueued++;
    pp->ndeadlines += rec->deadline != 0;
    rec->queued = 1;
}

static void q_unlink(struct evexec_procpool *pp, struct proc_rec *rec)
{
    unsigned c = rec->cls;
    if (rec->prev)
        rec->prev->next = rec->next;
    else
        pp->qhead[c] = rec->next;
    if (rec->next)
        rec->next->prev = rec->prev;
    else
        pp->qtail[c] = rec->prev;
    rec->next = rec->prev = NULL;
    pp->nqueued--;
    pp->ndeadlines -= rec->deadline != 0;
    rec->queued = 0;
}

/* Undoes take() for a job that never reached a worker: at the front of its
 * queue again, and as cancellable as before. */
static void untake(struct evexec_procpool *pp, struct proc_rec *rec)
{
    if (rec->job && job_state(rec->job) == JOB_RUNNING)
        evexec__job_set_state(rec->job, JOB_QUEUED);
    q_push(pp, rec, 1);
}

/* The first queued job, off the queue but still QUEUED to its port. */
static struct proc_rec *q_first(struct evexec_procpool *pp)
{
    for (unsigned c = 0; c < NCLASSES; c++)
        if (pp->qhead[c]) {
            struct proc_rec *rec = pp->qhead[c];
            q_unlink(pp, rec);
            return rec;
        }
    return NULL;
}

static struct proc_rec *q_pop(struct evexec_procpool *pp)
{
    struct proc_rec *rec = q_first(pp);
    if (rec)
        take(rec);
    return rec;
}

/* Sends rec's JOB frame on fd (non-blocking). 0 or -errno. */
static int send_job(int fd, struct proc_rec *rec)
{
    struct proc_frame f = {.type = F_JOB, .seq = rec->seq, .len = rec->in_len,
                           .code = rec->claim ? (int64_t)(rec->claim_id << 2 | rec->claim) : 0,
                           .aux = (int64_t)(uintptr_t)rec->work};
    return rec->in_fd >= 0 ? evexec__proc_send(fd, &f, NULL, 0, rec->in_fd, 1)
                           : evexec__proc_send(fd, &f, rec->in, rec->in_len, -1, 1);
}

/* --- the direct hand-off (mu held) ---------------------------------------- */

/* Supervisor: lends an idle worker to submitters (on top: the next job
 * goes to the worker that finished last, which may still be polling). */
static void lend(struct evexec_procpool *pp, struct proc_worker *w)
{
    if (w->lent || w->handed || w->st != W_IDLE || w->fd < 0 || w->retiring)
        return;
    w->lent = 1;
    pp->idle[pp->nidle++] = (struct proc_lent){(unsigned)(w - pp->w), w->fd, w->pid};
}

/* Supervisor: a job a submitter handed w becomes w's job. */
static void collect(struct evexec_procpool *pp, struct proc_worker *w)
{
    if (!w->handed)
        return;
    w->job = w->handed;
    w->handed = NULL;
    w->st = W_BUSY;
    atomic_fetch_sub(&pp->nhanded, 1);
}

/* Supervisor: takes w back from submitters (off the idle stack, its
 * handed job collected). Returns 1 if w is still idle. */
static int unlend(struct evexec_procpool *pp, struct proc_worker *w)
{
    if (w->lent) {
        for (unsigned i = 0; i < pp->nidle; i++)
            if (pp->idle[i].slot == (unsigned)(w - pp->w)) {
                memmove(&pp->idle[i], &pp->idle[i + 1], (pp->nidle - i - 1) * sizeof pp->idle[0]);
                pp->nidle--;
                break;
            }
        w->lent = 0;
    }
    collect(pp, w);
    return w->st == W_IDLE;
}

/* Supervisor: a frame of w's job may come before the job is collected. */
static void collect_locked(struct evexec_procpool *pp, struct proc_worker *w)
{
    pthread_mutex_lock(&pp->mu);
    collect(pp, w);
    pthread_mutex_unlock(&pp->mu);
}

static int unlend_locked(struct evexec_procpool *pp, struct proc_worker *w)
{
    pthread_mutex_lock(&pp->mu);
    int idle = unlend(pp, w);
    pthread_mutex_unlock(&pp->mu);
    return idle;
}

/* Submitter: sends rec straight to the idle worker lent last, when no job
 * is queued (none overtaken). 1: handed (the supervisor collects it);
 * 0: none idle or the send failed (the caller queues rec). */
static int hand_off(struct evexec_procpool *pp, struct proc_rec *rec)
{
    if (!pp->nidle || pp->nqueued)
        return 0;
    struct proc_lent l = pp->idle[--pp->nidle];
    struct proc_worker *w = &pp->w[l.slot];
    w->lent = 0;
    /* Handed before the send: the worker's RESULT may reach the
     * supervisor before this thread returns from sendmsg(). */
    w->handed = rec;
    atomic_fetch_add(&pp->nhanded, 1);
    if (send_job(l.fd, rec) < 0) {
        /* A dying worker (or a full channel): the supervisor finds out;
         * the job is queued as usual. */
        w->handed = NULL;
        atomic_fetch_sub(&pp->nhanded, 1);
        return 0;
    }
    rec->res.pid = l.pid;
    return 1;
}

/* --- worker slots (supervisor) ------------------------------------------- */

static void count_states(struct evexec_procpool *pp)
{
    unsigned procs = 0, busy = 0, idle = 0;
    for (unsigned i = 0; i < PROC_MAX_PROCS; i++) {
        enum wstate s = pp->w[i].st;
        procs += s != W_FREE;
        busy += s == W_BUSY;
        idle += s == W_IDLE;
    }
    pthread_mutex_lock(&pp->mu);
    pp->st.procs = procs;
    pp->st.busy = busy;
    pp->st.idle = idle;
    pthread_mutex_unlock(&pp->mu);
}

static void backoff(struct evexec_procpool *pp, uint64_t now)
{
    uint64_t ms = BACKOFF_MIN_MS;
    for (unsigned i = 1; i < pp->fails && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    pp->fails++;
    pp->next_spawn_ns = now + ms * 1000000u;
    if (pp->fails >= 3) {
        pthread_mutex_lock(&pp->mu);
        pp->st.degraded = 1;
        pthread_mutex_unlock(&pp->mu);
    }
}

static int spawn(struct evexec_procpool *pp)
{
    struct proc_worker *w = NULL;
    int sv[2];
    for (unsigned i = 0; i < pp->max_procs && !w; i++)
        if (pp->w[i].st == W_FREE)
            w = &pp->w[i];
    if (!w)
        return -EAGAIN;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
        return -errno;
    unsigned slot = (unsigned)(w - pp->w);
    struct proc_frame f = {.type = F_SPAWN, .seq = slot, .code = ++pp->next_number};
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 2 + slot};
    int rc = evexec__proc_send(pp->srv_fd, &f, NULL, 0, sv[1], 0);
    close(sv[1]);
    if (rc == 0 && epoll_ctl(pp->epfd, EPOLL_CTL_ADD, sv[0], &ev) < 0)
        rc = -errno;
    if (rc < 0) {
        close(sv[0]);
        return rc;
    }
    memset(w, 0, sizeof *w);
    w->fd = sv[0];
    w->st = W_SPAWNING;
    w->number = (unsigned)f.code;
    pthread_mutex_lock(&pp->mu);
    pp->st.spawned++;
    if (pp->owed_respawns) {
        pp->owed_respawns--;
        pp->st.respawns++;
    }
    pthread_mutex_unlock(&pp->mu);
    return 0;
}

static void close_chan(struct evexec_procpool *pp, struct proc_worker *w)
{
    unlend_locked(pp, w); /* no submitter may send on the fd after this */
    if (w->fd >= 0) {
        epoll_ctl(pp->epfd, EPOLL_CTL_DEL, w->fd, NULL);
        close(w->fd);
        w->fd = -1;
    }
}

/* Makes w a free slot again (its jobs ended or given back). */
static void slot_free(struct proc_worker *w)
{
    evexec__proc_claims_unmap(w->claims);
    memset(w, 0, sizeof *w);
    w->fd = -1;
    w->st = W_FREE;
}

/* Kills a worker and its process group; reason: what its job becomes. */
static void kill_worker(struct evexec_procpool *pp, struct proc_worker *w, int reason)
{
    unlend_locked(pp, w); /* a job handed to it meanwhile dies with it */
    if (!w->kill_reason)
        w->kill_reason = reason;
    w->retiring = 1;
    w->st = W_EXITING;
    if (w->pid > 0)
        kill(-w->pid, SIGKILL);
}

static void retire(struct evexec_procpool *pp, struct proc_worker *w)
{
    struct proc_frame f = {.type = F_EXIT};
    unlend_locked(pp, w);
    w->retiring = 1;
    w->st = W_EXITING;
    if (w->fd < 0 || evexec__proc_send(w->fd, &f, NULL, 0, -1, 1) < 0)
        kill_worker(pp, w, 0);
}

/* A job taken back from a worker that never ran it: to the front of its
 * queue, as cancellable as before, unless a stop came for it meanwhile
 * (its cancel found it taken). Supervisor, no lock. */
static void requeue(struct evexec_procpool *pp, struct proc_rec *rec)
{
    if (evexec__procport_stop_requested(rec)) {
        finish(pp, rec, -ECANCELED);
        return;
    }
    pthread_mutex_lock(&pp->mu);
    untake(pp, rec);
    pthread_mutex_unlock(&pp->mu);
}

/* Sends a job to an idle worker. */
static void dispatch(struct evexec_procpool *pp, struct proc_worker *w, struct proc_rec *rec)
{
    if (send_job(w->fd, rec) < 0) {
        /* Not the job's fault: the worker goes, and the job back. */
        kill_worker(pp, w, 0);
        requeue(pp, rec);
        return;
    }
    rec->res.pid = w->pid;
    w->job = rec;
    w->st = W_BUSY;
}

/* --- jobs sent ahead -------------------------------------------------------
 *
 * While jobs are queued and the pool is at its size with every worker
 * busy, each busy worker is sent its next jobs (up to PROC_AHEAD) behind
 * the one it runs (w->ahead), each guarded by a claim word
 * (procpool-internal.h, "Claim words"): it finds them in its channel when
 * it finishes, instead of sleeping until the supervisor has read its
 * result and answered. Under a stream of small jobs that saves most
 * wake-ups of the workers and of the supervisor (bench/README.md, P2). A
 * job sent ahead is not its worker's until the
 * worker claims it; until then it stays QUEUED to its port and is taken
 * back (unclaim()) rather than made to wait or die with another job:
 * evexec_cancel() and a port's deadline take it back as from the queue (0,
 * never run); a worker that goes idle runs it (ahead_steal()); a queued job
 * of a higher priority takes its place; if its worker dies or is recycled,
 * it goes back to the front of the queue; the supervisor's own deadline
 * check ends it without a kill. So a job waits behind others only while
 * no worker is free, PROC_AHEAD at most per worker, and a priority is
 * overtaken at most by the jobs workers have claimed. Jobs may start in
 * another order than queued (each worker claims its own), as they may
 * finish in any order.
 * Recycling is checked after each job, before the next: nothing is sent
 * ahead to a worker whose job count is up after its job, nor in a pool
 * that recycles by age or size (which the job might pass).
 *
 * w->ahead, the counts and rec->sent_to are under mu: the daemon's side of a
 * claim word is only ever changed under mu, by the supervisor or by a
 * port's cancel. Once the result before it has been read, the job becomes
 * its worker's job (w->job, RUNNING, the supervisor's alone); unclaimed,
 * it can still end without a kill (scan()) or go back to the queue when
 * its worker dies.
 */

/* Takes back rec, sent ahead to w, if w has not claimed it: 1 if taken
 * (w will skip its frame); 0: w has it, or it was not sent ahead. For a job
 * still w->ahead, with mu held. */
static int unclaim(struct proc_worker *w, struct proc_rec *rec)
{
    if (!rec->claim || !w->claims)
        return 0;
    uint64_t sent = CLAIM(rec->claim_id, CLAIM_SENT);
    if (!atomic_compare_exchange_strong(&w->claims[rec->claim - 1], &sent,
                                        CLAIM(rec->claim_id, CLAIM_DROPPED)))
        return 0;
    rec->claim = 0;
    rec->res.pid = 0; /* it never ran */
    return 1;
}

/* mu held: w's job sent ahead at k (0: the oldest), no longer sent ahead
 * (taken back, or now w's job). */
static struct proc_rec *ahead_remove(struct evexec_procpool *pp, struct proc_worker *w,
                                     unsigned k)
{
    struct proc_rec *rec = w->ahead[k];
    memmove(&w->ahead[k], &w->ahead[k + 1], (w->nahead - k - 1) * sizeof w->ahead[0]);
    w->nahead--;
    pp->nahead--;
    rec->sent_to = NULL;
    return rec;
}

/* mu held: w's oldest job sent ahead, taken off, or NULL. */
static struct proc_rec *ahead_first(struct evexec_procpool *pp, struct proc_worker *w)
{
    return w->nahead ? ahead_remove(pp, w, 0) : NULL;
}

/* mu held (a port's cancel may take rec back from the moment it is sent
 * ahead): sends rec, just off the queue, to busy w behind its jobs, with a
 * claim word that none of them uses, set first. A failed send (a full
 * channel, or a dying worker, which the supervisor learns of anyway) puts
 * it back: w never saw it. */
static void send_ahead(struct evexec_procpool *pp, struct proc_worker *w, struct proc_rec *rec)
{
    unsigned used = w->job->claim ? 1u << (w->job->claim - 1) : 0, i = 0;
    for (unsigned k = 0; k < w->nahead; k++)
        used |= 1u << (w->ahead[k]->claim - 1);
    while (used & (1u << i))
        i++;
    rec->claim_id = ++pp->claim_ids;
    atomic_store(&w->claims[i], CLAIM(rec->claim_id, CLAIM_SENT));
    rec->claim = i + 1;
    if (send_job(w->fd, rec) < 0) {
        rec->claim = 0;
        q_push(pp, rec, 1);
        return;
    }
    rec->res.pid = w->pid;
    rec->sent_to = w;
    w->ahead[w->nahead++] = rec;
    pp->nahead++;
}

/* mu held, for an idle worker: the oldest job sent ahead, if its worker
 * has not claimed it, taken back and RUNNING; NULL if none. */
static struct proc_rec *ahead_steal(struct evexec_procpool *pp)
{
    struct proc_worker *best = NULL;
    unsigned bk = 0;
    for (unsigned i = 0; i < pp->max_procs && pp->nahead; i++) {
        struct proc_worker *w = &pp->w[i];
        for (unsigned k = 0; k < w->nahead; k++)
            if (!best || w->ahead[k]->seq < best->ahead[bk]->seq) {
                best = w;
                bk = k;
            }
    }
    if (!best || !unclaim(best, best->ahead[bk]))
        return NULL;
    struct proc_rec *rec = ahead_remove(pp, best, bk);
    take(rec);
    return rec;
}

/* The class of the first queued job, or NCLASSES. mu held. */
static unsigned q_first_class(const struct evexec_procpool *pp)
{
    unsigned c = 0;
    while (c < NCLASSES && !pp->qhead[c])
        c++;
    return c;
}

/* Sends up to n queued jobs ahead to busy workers, one to each in turn;
 * jobs sent ahead and not claimed give their places to a queued one of a
 * higher priority (back to the front of the queue, in their order).
 * Supervisor. */
static void send_ahead_all(struct evexec_procpool *pp, size_t n)
{
    pthread_mutex_lock(&pp->mu);
    for (unsigned depth = 1; depth <= PROC_AHEAD; depth++)
        for (unsigned i = 0; i < pp->max_procs && n; i++) {
            struct proc_worker *w = &pp->w[i];
            unsigned c = q_first_class(pp);
            if (c == NCLASSES)
                goto out;
            if (w->st != W_BUSY || !w->job || !w->claims || w->fd < 0 ||
                (pp->recycle_jobs && w->jobs + w->nahead + 1 >= pp->recycle_jobs) ||
                pp->recycle_age_ms || pp->recycle_rss)
                continue;
            while (w->nahead && c < w->ahead[w->nahead - 1]->cls &&
                   unclaim(w, w->ahead[w->nahead - 1]))
                q_push(pp, ahead_remove(pp, w, w->nahead - 1), 1);
            if (w->nahead < depth) {
                send_ahead(pp, w, q_first(pp));
                n--;
            }
        }
out:
    pthread_mutex_unlock(&pp->mu);
}

/* w should be replaced now that a job ended (checked between jobs). */
static int recycle_due(struct evexec_procpool *pp, struct proc_worker *w, uint64_t now)
{
    return (pp->recycle_jobs && w->jobs >= pp->recycle_jobs) ||
           (pp->recycle_age_ms && now - w->ready_ns >= (uint64_t)pp->recycle_age_ms * 1000000u) ||
           (pp->recycle_rss && evexec__proc_statm(w->pid, 1) > pp->recycle_rss);
}

static void on_result(struct evexec_procpool *pp, struct proc_worker *w, struct proc_frame *f,
                      int fd)
{
    if (!w->job)
        collect_locked(pp, w); /* a job a submitter handed it */
    struct proc_rec *rec = w->job;
    if (!rec || f->seq != rec->seq || f->len > pp->conf.max_payload) {
        if (fd >= 0)
            close(fd);
        kill_worker(pp, w, -EOWNERDEAD);
        return;
    }
    if (fd >= 0) {
        const void *map;
        int rc = evexec__proc_memfd_map(fd, (size_t)f->len, 1, &map);
        close(fd);
        if (rc < 0) {
            kill_worker(pp, w, -EOWNERDEAD);
            return;
        }
        rec->out_map = (void *)(uintptr_t)map;
        rec->out_map_len = (size_t)f->len;
        rec->res.out = map;
    } else if (f->len) {
        if (!(rec->out_heap = malloc((size_t)f->len))) {
            kill_worker(pp, w, -ENOMEM);
            return;
        }
        memcpy(rec->out_heap, pp->rxbuf, (size_t)f->len);
        rec->res.out = rec->out_heap;
    }
    rec->res.out_len = (size_t)f->len;
    rec->res.work_error = (int)f->code;
    w->job = NULL;
    w->jobs++;
    int status = f->code ? -EREMOTEIO : 0;
    if (w->memlimit) {
        status = -ENOMEM; /* the worker exits after it */
        w->retiring = 1;
        w->st = W_EXITING;
    } else {
        pp->fails = 0;
    }
    pthread_mutex_lock(&pp->mu);
    if (!w->memlimit)
        pp->st.degraded = pp->broken;
    /* The oldest job sent ahead is next in its channel (or runs already):
     * now its job, even if the worker is to go (then it goes back to the
     * queue if unclaimed, see on_exited()). Never one due for recycling:
     * see "jobs sent ahead". */
    if ((w->job = ahead_first(pp, w)) != NULL)
        take(w->job);
    pthread_mutex_unlock(&pp->mu);
    if (w->st == W_BUSY && !w->job) {
        uint64_t now = evexec__now_ns();
        w->st = W_IDLE;
        w->idle_ns = now;
        if (recycle_due(pp, w, now)) {
            pthread_mutex_lock(&pp->mu);
            pp->st.recycled++;
            pthread_mutex_unlock(&pp->mu);
            retire(pp, w);
        } else {
            /* Lent before the callback can submit the next job: that one
             * then goes straight to this worker, still polling for it.
             * Not while jobs wait, queued or sent ahead: it takes one of
             * those (housekeeping()), which a new job must not overtake. */
            pthread_mutex_lock(&pp->mu);
            if (!pp->nqueued && !pp->nahead && !pp->closed)
                lend(pp, w);
            pthread_mutex_unlock(&pp->mu);
        }
    }
    pp->delivered = 1;
    finish(pp, rec, status);
}

/* Reads what a worker sent: one frame (epoll, level-triggered, reports
 * the rest: no EAGAIN read per job), or with drain everything until the
 * channel is empty or hangs up (closed then). */
static void read_worker(struct evexec_procpool *pp, struct proc_worker *w, int drain)
{
    for (int n = 0; w->fd >= 0 && (drain || n < 1); n++) {
        struct proc_frame f;
        int fd;
        int rc = evexec__proc_recv(w->fd, &f, pp->rxbuf, PROC_INLINE_MAX, &fd, 1);
        if (rc == -EAGAIN)
            return;
        if (rc <= 0) {
            if (rc == -EPROTO)
                kill_worker(pp, w, -EOWNERDEAD);
            close_chan(pp, w);
            return;
        }
        switch (f.type) {
        case F_READY:
            if (w->ready)
                goto bad;
            /* Its claim words: without them (none to be had), no job is
             * sent ahead to it. */
            if (fd >= 0 && evexec__proc_claims_map(fd, &w->claims) == -EPROTO)
                goto bad;
            w->ready = 1;
            if (!w->pid)
                w->pid = (pid_t)f.code;
            w->ready_ns = w->idle_ns = evexec__now_ns();
            if (w->st == W_SPAWNING || w->st == W_STARTING)
                w->st = W_IDLE;
            break;
        case F_INITFAIL:
            w->init_failed = 1;
            w->init_code = (int)f.code;
            break;
        case F_MEMLIMIT:
            if (!w->job)
                collect_locked(pp, w);
            if (w->job && f.seq == w->job->seq)
                w->memlimit = 1;
            break;
        case F_RESULT:
            on_result(pp, w, &f, fd);
            fd = -1;
            break;
        default:
            goto bad;
        }
        if (fd >= 0)
            close(fd);
        continue;
    bad:
        if (fd >= 0)
            close(fd);
        kill_worker(pp, w, -EOWNERDEAD);
    }
}

/* Fails the oldest queued job when no worker can be made ready. */
static void fail_one_queued(struct evexec_procpool *pp, int status, int code)
{
    for (unsigned i = 0; i < pp->max_procs; i++)
        if (pp->w[i].st == W_IDLE || pp->w[i].st == W_BUSY)
            return;
    pthread_mutex_lock(&pp->mu);
    struct proc_rec *rec = q_pop(pp);
    pthread_mutex_unlock(&pp->mu);
    if (rec) {
        rec->res.work_error = code;
        finish(pp, rec, status);
    }
}

static void on_exited(struct evexec_procpool *pp, pid_t pid, int status)
{
    struct proc_worker *w = NULL;
    for (unsigned i = 0; i < pp->max_procs && !w; i++)
        if (pp->w[i].st != W_FREE && pp->w[i].pid == pid)
            w = &pp->w[i];
    struct proc_frame f = {.type = F_REAP, .code = pid};
    if (pid > 0)
        kill(-pid, SIGKILL); /* whatever it started */
    evexec__proc_send(pp->srv_fd, &f, NULL, 0, -1, 0);
    if (!w)
        return;
    unlend_locked(pp, w); /* a job handed to it died with it */
    read_worker(pp, w, 1); /* what it sent before it died */
    close_chan(pp, w);

    uint64_t now = evexec__now_ns();
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    /* Jobs it never claimed go back to the front of the queue, in their
     * order; what it ran died with it (more than one job only from a
     * worker that claimed jobs it never reached). */
    struct proc_rec *died[1 + PROC_AHEAD];
    unsigned ndied = 0;
    pthread_mutex_lock(&pp->mu);
    while (w->nahead) {
        struct proc_rec *r = ahead_remove(pp, w, w->nahead - 1);
        if (unclaim(w, r))
            q_push(pp, r, 1);
        else
            died[ndied++] = r;
    }
    pthread_mutex_unlock(&pp->mu);
    if (w->job && unclaim(w, w->job))
        requeue(pp, w->job);
    else if (w->job)
        died[ndied++] = w->job;
    w->job = NULL;
    int early = !w->kill_reason && !w->retiring &&
                (!w->ready || (w->jobs == 0 && ndied && now - w->ready_ns < EARLY_MS * 1000000u));
    if (ndied) {
        int st;
        if (w->kill_reason)
            st = w->kill_reason;
        else if (w->memlimit)
            st = -ENOMEM;
        else if (sig == SIGXCPU)
            st = -ETIME;
        else if (sig)
            st = -EOWNERDEAD;
        else
            st = -ECHILD;
        for (unsigned k = 0; k < ndied; k++) {
            struct proc_rec *r = died[k];
            r->res.signal = sig;
            r->res.core_dumped = WIFSIGNALED(status) && WCOREDUMP(status);
            r->res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
            finish(pp, r, st);
        }
    }
    if (!w->retiring || ndied) {
        pthread_mutex_lock(&pp->mu);
        if (!w->ready)
            pp->st.init_failed++;
        pthread_mutex_unlock(&pp->mu);
        pp->owed_respawns++;
    }
    int was_ready = w->ready, init_code = w->init_failed ? w->init_code : 0;
    slot_free(w);
    if (early)
        backoff(pp, now);
    if (!was_ready)
        fail_one_queued(pp, -ENOTRECOVERABLE, init_code);
}

static void read_server(struct evexec_procpool *pp)
{
    while (pp->srv_fd >= 0) {
        struct proc_frame f;
        int fd;
        int rc = evexec__proc_recv(pp->srv_fd, &f, NULL, 0, &fd, 1);
        if (rc == -EAGAIN)
            return;
        if (fd >= 0)
            close(fd);
        if (rc < 0 && rc == -EPROTO)
            continue;
        if (rc <= 0) {
            /* The fork server is gone, and its workers with it. */
            epoll_ctl(pp->epfd, EPOLL_CTL_DEL, pp->srv_fd, NULL);
            close(pp->srv_fd);
            pp->srv_fd = -1;
            /* For good: nothing may fork a new one (the daemon's threads
             * run now), so the pool says so until it is freed. */
            pthread_mutex_lock(&pp->mu);
            pp->broken = 1;
            pp->st.degraded = 1;
            pthread_mutex_unlock(&pp->mu);
            for (unsigned i = 0; i < pp->max_procs; i++) {
                struct proc_worker *w = &pp->w[i];
                if (w->st == W_FREE)
                    continue;
                if (w->pid > 0)
                    kill(-w->pid, SIGKILL);
                close_chan(pp, w);
                /* Not the job's crash: the pool's failure, as for queued
                 * jobs (a kill of ours keeps its reason). */
                if (w->job) {
                    unclaim(w, w->job); /* pid 0 if it never ran */
                    finish(pp, w->job, w->kill_reason ? w->kill_reason : -ENOTRECOVERABLE);
                }
                for (;;) {
                    pthread_mutex_lock(&pp->mu);
                    struct proc_rec *next = ahead_first(pp, w);
                    if (next)
                        unclaim(w, next); /* pid 0: never ran */
                    pthread_mutex_unlock(&pp->mu);
                    if (!next)
                        break;
                    finish(pp, next, -ENOTRECOVERABLE);
                }
                slot_free(w);
            }
            /* Reaped now, not left a zombie until the pool is freed: it
             * has closed its channel, so it is exiting (or exits as it
             * sees ours closed). */
            if (pp->srv_pid > 0)
                waitpid(pp->srv_pid, NULL, 0);
            pp->srv_pid = 0;
            return;
        }
        if (f.type == F_SPAWNED && f.seq < pp->max_procs) {
            struct proc_worker *w = &pp->w[f.seq];
            if (f.code > 0) {
                if (!w->pid)
                    w->pid = (pid_t)f.code;
                if (w->st == W_SPAWNING)
                    w->st = W_STARTING;
            } else if (w->st == W_SPAWNING) {
                close_chan(pp, w);
                slot_free(w);
                backoff(pp, evexec__now_ns());
            }
        } else if (f.type == F_EXITED) {
            on_exited(pp, (pid_t)f.code, (int)f.aux);
        }
    }
}

/* Stops asked by ports (a cancel, a deadline, a port's free) of running
 * jobs: their workers are killed. Queued jobs the port takes back itself
 * (evexec__procpool_cancel()). */
static int stop_reason(const struct proc_rec *rec, uint64_t now)
{
    if (rec->deadline && now >= rec->deadline)
        return -ETIMEDOUT;
    return evexec__procport_stop_requested(rec) ? -ECANCELED : 0;
}

static void scan(struct evexec_procpool *pp, uint64_t now)
{
    for (unsigned i = 0; i < pp->max_procs; i++) {
        struct proc_worker *w = &pp->w[i];
        struct proc_rec *gone = NULL;
        int why = 0, kill = 0;
        if (w->st != W_BUSY || !w->job)
            continue;
        /* Jobs not claimed end without a kill. A job sent ahead and
         * claimed runs: the ones before it have ended, their RESULTs on
         * the way (read before the worker's EXITED). */
        struct proc_rec *ended[PROC_AHEAD];
        int ended_why[PROC_AHEAD];
        unsigned nended = 0;
        pthread_mutex_lock(&pp->mu);
        for (unsigned k = 0; k < w->nahead && !kill;) {
            if ((why = stop_reason(w->ahead[k], now)) == 0) {
                k++;
            } else if (unclaim(w, w->ahead[k])) {
                ended_why[nended] = why;
                ended[nended++] = ahead_remove(pp, w, k);
            } else {
                kill = why;
            }
        }
        pthread_mutex_unlock(&pp->mu);
        for (unsigned k = 0; k < nended; k++)
            finish(pp, ended[k], ended_why[k]);
        if (!kill && (why = stop_reason(w->job, now)) != 0) {
            gone = w->job;
            if (unclaim(w, gone)) {
                pthread_mutex_lock(&pp->mu);
                if ((w->job = ahead_first(pp, w)) != NULL)
                    take(w->job);
                pthread_mutex_unlock(&pp->mu);
                if (!w->job) {
                    w->st = W_IDLE;
                    w->idle_ns = now;
                }
                finish(pp, gone, why);
            } else {
                kill = why;
            }
        }
        if (kill)
            kill_worker(pp, w, kill);
    }
    /* Queued jobs past their deadline, when the port's loop is too busy
     * to take them back itself. */
    struct proc_rec *late = NULL;
    pthread_mutex_lock(&pp->mu);
    for (unsigned c = 0; c < NCLASSES && pp->ndeadlines; c++)
        for (struct proc_rec *rec = pp->qhead[c], *next; rec; rec = next) {
            next = rec->next;
            if (rec->deadline && now >= rec->deadline) {
                q_unlink(pp, rec);
                take(rec);
                rec->next = late;
                late = rec;
            }
        }
    pthread_mutex_unlock(&pp->mu);
    while (late) {
        struct proc_rec *rec = late;
        late = rec->next;
        finish(pp, rec, -ETIMEDOUT);
    }
}

/* Kept input buffers nobody took for INBUF_KEEP_MS (or all, once
 * freeing): their memory goes. Returns timeout, shortened to when the
 * next may go. Supervisor. */
static int release_inbufs(struct evexec_procpool *pp, uint64_t now, int freeing, int timeout)
{
    struct proc_inbuf drop[PROC_INBUF_CACHE];
    unsigned ndrop = 0;
    if (!pp->inbufs_kept)
        return timeout;
    pthread_mutex_lock(&pp->mu);
    pp->inbufs_kept = pp->ninbufs != 0;
    if (pp->ninbufs) {
        uint64_t due = pp->inbuf_used_ns + (uint64_t)INBUF_KEEP_MS * 1000000u;
        if (now >= due || freeing) {
            ndrop = pp->ninbufs;
            memcpy(drop, pp->inbufs, ndrop * sizeof drop[0]);
            pp->ninbufs = 0;
            pp->inbufs_kept = 0;
        } else {
            uint64_t ms = (due - now) / 1000000u + 1;
            if (timeout < 0 || ms < (uint64_t)timeout)
                timeout = (int)ms;
        }
    }
    pthread_mutex_unlock(&pp->mu);
    for (unsigned i = 0; i < ndrop; i++) {
        munmap(drop[i].map, drop[i].cap);
        close(drop[i].fd);
    }
    return timeout;
}

/* Everything but I/O, after each wake-up. Returns the epoll timeout, or
 * -2 when the supervisor may stop. */
static int housekeeping(struct evexec_procpool *pp)
{
    uint64_t now = evexec__now_ns();
    int timeout = -1;

    pthread_mutex_lock(&pp->mu);
    int closed = pp->closed, freeing = pp->freeing, broken = pp->broken;
    int scan_owed = pp->scan_owed;
    pp->scan_owed = 0;
    if (pp->inbufs_owed) {
        pp->inbufs_owed = 0;
        pp->inbufs_kept = 1;
    }
    /* Jobs submitters handed to idle workers: the supervisor's now (to
     * kill on shutdown, deadline or cancel). After closed was read: no
     * hand-off follows a shutdown. */
    if (atomic_load(&pp->nhanded))
        for (unsigned i = 0; i < pp->max_procs; i++)
            collect(pp, &pp->w[i]);
    struct proc_rec *cancel = NULL;
    if (closed == EVEXEC_CANCEL + 1 || broken) {
        cancel = NULL;
        struct proc_rec *rec;
        while ((rec = q_pop(pp)) != NULL) {
            rec->next = cancel;
            cancel = rec;
        }
    }
    pthread_mutex_unlock(&pp->mu);
    while (cancel) {
        struct proc_rec *rec = cancel;
        cancel = rec->next;
        finish(pp, rec, broken ? -ENOTRECOVERABLE : -ECANCELED);
    }
    if (closed == EVEXEC_CANCEL + 1)
        for (unsigned i = 0; i < pp->max_procs; i++)
            if (pp->w[i].st == W_BUSY)
                kill_worker(pp, &pp->w[i], -ECANCELED);

    if (scan_owed || now - pp->last_scan_ns >= TICK_MS * 1000000u) {
        pp->last_scan_ns = now;
        scan(pp, now);
    }

    /* Dispatch to idle workers: queued jobs, else jobs sent ahead to busy
     * ones. */
    unsigned alive = 0, busy = 0, starting = 0;
    for (unsigned i = 0; i < pp->max_procs; i++) {
        struct proc_worker *w = &pp->w[i];
        if (w->st == W_IDLE) {
            struct proc_rec *rec = NULL;
            pthread_mutex_lock(&pp->mu);
            collect(pp, w);
            if (w->st == W_IDLE && (pp->nqueued || pp->nahead)) {
                unlend(pp, w);
                if (w->st == W_IDLE && !(rec = q_pop(pp)))
                    rec = ahead_steal(pp);
            }
            if (!rec && !pp->closed)
                lend(pp, w);
            pthread_mutex_unlock(&pp->mu);
            if (rec)
                dispatch(pp, w, rec);
        }
        alive += w->st != W_FREE;
        busy += w->st == W_BUSY;
        starting += w->st == W_SPAWNING || w->st == W_STARTING;
    }

    pthread_mutex_lock(&pp->mu);
    size_t queued = pp->nqueued, ahead = pp->nahead;
    pthread_mutex_unlock(&pp->mu);

    /* Spawn: for queued jobs (and jobs sent ahead: a worker freed or made
     * takes them) no starting worker will take, and up to min. */
    if (!broken) {
        while (alive < pp->max_procs &&
               (queued + ahead > starting || (!freeing && alive < pp->min_procs))) {
            if (now < pp->next_spawn_ns) {
                uint64_t ms = (pp->next_spawn_ns - now) / 1000000u + 1;
                timeout = (int)(ms < INT32_MAX ? ms : INT32_MAX);
                break;
            }
            if (spawn(pp) < 0) {
                backoff(pp, now);
                break;
            }
            alive++;
            starting++;
        }
    }
    /* A pool at its size sends what starting workers will not take ahead. */
    if (alive >= pp->max_procs && queued > starting) {
        send_ahead_all(pp, queued - starting);
        pthread_mutex_lock(&pp->mu);
        queued = pp->nqueued;
        pthread_mutex_unlock(&pp->mu);
    }

    /* Idle workers above min_procs, or all of them once freeing. */
    for (unsigned i = 0; i < pp->max_procs; i++) {
        struct proc_worker *w = &pp->w[i];
        if (w->st != W_IDLE)
            continue;
        /* A worker lent to submitters is taken back before it goes: one
         * that was handed a job meanwhile is busy, not idle. */
        if (freeing && !queued) {
            if (unlend_locked(pp, w))
                retire(pp, w);
            else
                busy++;
            continue;
        }
        if (pp->idle_ms == EVEXEC_IDLE_FOREVER || alive <= pp->min_procs)
            continue;
        uint64_t due = w->idle_ns + (uint64_t)pp->idle_ms * 1000000u;
        if (now >= due) {
            if (unlend_locked(pp, w)) {
                retire(pp, w);
                alive--;
            } else {
                busy++;
            }
        } else {
            uint64_t ms = (due - now) / 1000000u + 1;
            if (timeout < 0 || ms < (uint64_t)timeout)
                timeout = (int)ms;
        }
    }
    timeout = release_inbufs(pp, now, freeing, timeout);
    if (freeing && !queued) {
        if (!pp->free_since_ns)
            pp->free_since_ns = now;
        for (unsigned i = 0; i < pp->max_procs; i++) {
            struct proc_worker *w = &pp->w[i];
            /* Starting ones may be in their init; then the grace ends. */
            if ((w->st == W_STARTING || w->st == W_SPAWNING ||
                 (w->st == W_EXITING && now - pp->free_since_ns > FREE_GRACE_MS * 1000000u)) &&
                w->pid > 0)
                kill_worker(pp, w, 0);
        }
        int any = 0;
        for (unsigned i = 0; i < pp->max_procs; i++)
            any |= pp->w[i].st != W_FREE;
        if (!any)
            return -2;
        if (timeout < 0 || timeout > TICK_MS)
            timeout = TICK_MS;
    }
    count_states(pp);
    if (busy || queued) {
        if (timeout < 0 || timeout > TICK_MS)
            timeout = TICK_MS;
    }
    return timeout;
}

static void *supervisor(void *arg)
{
    struct evexec_procpool *pp = arg;
    int sv[2];
    int rc = 0;

    evexec__thread_name("evexec-procsup");
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        rc = -errno;
    } else {
        pid_t pid = evexec__procserver_fork(&pp->conf, sv[1]);
        close(sv[1]);
        if (pid < 0) {
            rc = pid;
            close(sv[0]);
        } else {
            pp->srv_pid = pid;
            pp->srv_fd = sv[0];
            struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
            struct epoll_event ew = {.events = EPOLLIN, .data.u64 = 0};
            if (epoll_ctl(pp->epfd, EPOLL_CTL_ADD, pp->srv_fd, &ev) < 0 ||
                epoll_ctl(pp->epfd, EPOLL_CTL_ADD, pp->wake_fd, &ew) < 0) {
                rc = -errno;
                /* The server ends when its channel closes: reap it. */
                close(pp->srv_fd);
                pp->srv_fd = -1;
                waitpid(pp->srv_pid, NULL, 0);
            }
        }
    }
    pthread_mutex_lock(&pp->mu);
    pp->started = rc < 0 ? rc : 1;
    pthread_cond_broadcast(&pp->cv);
    pthread_mutex_unlock(&pp->mu);
    if (rc < 0)
        return NULL;

    for (;;) {
        int timeout = housekeeping(pp);
        if (timeout == -2)
            break;
        struct epoll_event evs[32];
        int n = 0;
        if (pp->delivered) {
            uint64_t until = evexec__now_ns() + SUP_POLL_US * 1000u;
            while ((n = epoll_wait(pp->epfd, evs, 32, 0)) == 0 && evexec__now_ns() < until)
                sched_yield();
        }
        pp->delivered = 0;
        if (n == 0)
            n = epoll_wait(pp->epfd, evs, 32, timeout);
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            if (tag == 0) {
                /* Read, then clear: a wake() between the two writes
                 * again (a spare wake-up); cleared first, one could be
                 * read here and the flag stay set with nothing to read. */
                uint64_t v;
                while (read(pp->wake_fd, &v, sizeof v) < 0 && errno == EINTR)
                    ;
                pthread_mutex_lock(&pp->mu);
                pp->wake_owed = 0;
                pthread_mutex_unlock(&pp->mu);
            } else if (tag == 1) {
                read_server(pp);
            } else if (tag - 2 < pp->max_procs) {
                read_worker(pp, &pp->w[tag - 2], 0);
            }
        }
    }
    /* Every worker is reaped: the server may go. */
    if (pp->srv_fd >= 0) {
        close(pp->srv_fd);
        pp->srv_fd = -1;
    }
    if (pp->srv_pid > 0) /* 0: reaped when it died */
        waitpid(pp->srv_pid, NULL, 0); /* ECHILD if the program reaped it */
    return NULL;
}

/* --- public -------------------------------------------------------------- */

/* Notes the executable segments of every object loaded now: what the fork
 * server's image holds. (Segments, not the objects' base addresses: a
 * program built without PIE has a load bias of 0, which dladdr()'s base
 * address never matches.) */
static int note_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct evexec_procpool *pp = arg;
    EVEXEC_UNUSED(size);
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        struct proc_range *grown = realloc(pp->code, (pp->ncode + 1) * sizeof *grown);
        if (!grown)
            return 1;
        pp->code = grown;
        pp->code[pp->ncode].lo = (uintptr_t)(info->dlpi_addr + ph->p_vaddr);
        pp->code[pp->ncode].hi = pp->code[pp->ncode].lo + (uintptr_t)ph->p_memsz;
        pp->ncode++;
    }
    return 0;
}

static int in_image(const struct evexec_procpool *pp, evexec_proc_work_fn work)
{
    Dl_info di;
    uintptr_t a = (uintptr_t)work;
    if (!dladdr((void *)a, &di))
        return 1; /* not in any object we can name: cannot tell */
    for (size_t i = 0; i < pp->ncode; i++)
        if (a >= pp->code[i].lo && a < pp->code[i].hi)
            return 1;
    return 0;
}

static void pool_destroy(struct evexec_procpool *pp)
{
    if (pp->epfd >= 0)
        close(pp->epfd);
    if (pp->wake_fd >= 0)
        close(pp->wake_fd);
    pthread_cond_destroy(&pp->cv);
    pthread_mutex_destroy(&pp->mu);
    free(pp->code);
    free(pp->rxbuf);
    for (unsigned i = 0; i < pp->ninbufs; i++) {
        munmap(pp->inbufs[i].map, pp->inbufs[i].cap);
        close(pp->inbufs[i].fd);
    }
    free(pp);
}

void evexec__procpool_release(struct evexec_procpool *pp, unsigned long n)
{
    if (atomic_fetch_sub_explicit(&pp->refs, n, memory_order_acq_rel) == n)
        pool_destroy(pp);
}

int evexec_procpool_new(evexec_procpool **out, const struct evexec_procpool_opts *opts)
{
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    struct evexec_procpool *pp;
    int rc;

    if (!out)
        return -EINVAL;
    if ((rc = evexec__opts_read(&o, sizeof o, opts, sizeof o)) < 0)
        return rc;
    if (!o.max_procs)
        o.max_procs = DEFAULT_MAX_PROCS;
    if (!o.max_queued)
        o.max_queued = DEFAULT_MAX_QUEUED;
    if (!o.idle_timeout_ms)
        o.idle_timeout_ms = DEFAULT_IDLE_MS;
    if (!o.max_payload)
        o.max_payload = DEFAULT_MAX_PAYLOAD;
    if (!o.name || !o.name[0])
        o.name = "evexec-proc";
    if (o.max_procs > PROC_MAX_PROCS || o.min_procs > o.max_procs ||
        o.max_queued > EVEXEC_MAX_QUEUED || o.nice > 19 || o.max_payload > MAX_PAYLOAD ||
        (o.mem_limit && o.mem_limit < ((uint64_t)4 << 20)) || strlen(o.name) > 15)
        return -EINVAL;

    if (!(pp = calloc(1, sizeof *pp)))
        return -ENOMEM;
    pp->runner.ops = &evexec__procpool_ops;
    atomic_init(&pp->refs, 1);
    pp->epfd = pp->wake_fd = pp->srv_fd = -1;
    pp->conf.init = o.init;
    pp->conf.fini = o.fini;
    pp->conf.hook_arg = o.hook_arg;
    pp->conf.mem_limit = o.mem_limit;
    pp->conf.max_payload = o.max_payload;
    pp->conf.cpu_limit_s = o.cpu_limit_s;
    pp->conf.nice = o.nice;
    pp->conf.no_spare = o.recycle_rss != 0;
    memcpy(pp->conf.name, o.name, strlen(o.name) + 1);
    pp->max_procs = o.max_procs;
    pp->min_procs = o.min_procs;
    pp->idle_ms = o.idle_timeout_ms;
    pp->recycle_jobs = o.recycle_jobs;
    pp->recycle_age_ms = o.recycle_age_ms;
    pp->recycle_rss = o.recycle_rss;
    pp->max_queued = o.max_queued;
    for (unsigned i = 0; i < PROC_MAX_PROCS; i++)
        pp->w[i].fd = -1;
    if (pthread_mutex_init(&pp->mu, NULL) != 0) {
        free(pp);
        return -ENOMEM;
    }
    if ((rc = evexec__cond_init(&pp->cv)) < 0) {
        pthread_mutex_destroy(&pp->mu);
        free(pp);
        return rc;
    }
    if (!(pp->rxbuf = malloc(PROC_INLINE_MAX))) {
        rc = -ENOMEM;
        goto fail;
    }
    /* An incomplete list would refuse work functions of the objects left
     * out (-EFAULT): fail now instead. */
    if (dl_iterate_phdr(note_object, pp) != 0) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((pp->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
        (pp->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = evexec__thread_create(&pp->thread, NULL, supervisor, pp)) < 0)
        goto fail;
    pthread_mutex_lock(&pp->mu);
    while (!pp->started)
        pthread_cond_wait(&pp->cv, &pp->mu);
    rc = pp->started < 0 ? pp->started : 0;
    pthread_mutex_unlock(&pp->mu);
    if (rc < 0) {
        pthread_join(pp->thread, NULL);
        goto fail;
    }
    *out = pp;
    return 0;
fail:
    pool_destroy(pp);
    return rc;
}

struct proc_rec *evexec__procrec_new(struct evexec_procpool *pp, evexec_proc_work_fn work,
                                     const void *in, size_t in_len, evexec_proc_done_fn done,
                                     void *arg, int *rc)
{
    struct proc_rec *rec;
    if (in_len > pp->conf.max_payload) {
        *rc = -EMSGSIZE;
        return NULL;
    }
    if (!in_image(pp, work)) {
        *rc = -EFAULT;
        return NULL;
    }
    int big = in_len > PROC_INLINE_MAX;
    if (!(rec = malloc(sizeof *rec + (big ? 0 : in_len)))) {
        *rc = -ENOMEM;
        return NULL;
    }
    memset(rec, 0, sizeof *rec);
    rec->in_fd = -1;
    rec->work = work;
    rec->done = done;
    rec->arg = arg;
    rec->in_len = in_len;
    if (big) {
        /* One copy, into an input buffer the worker maps read-only. */
        struct proc_inbuf b = inbuf_take(pp, in_len, rc);
        if (b.fd < 0) {
            free(rec);
            return NULL;
        }
        memcpy(b.map, in, in_len);
        rec->in_map = b.map;
        rec->in_cap = b.cap;
        rec->in_fd = b.fd;
    } else if (in_len) {
        memcpy(rec->in, in, in_len);
    }
    return rec;
}

/* In-place inputs (evexec_proc_input_new()): the record is made first,
 * with the buffer the caller writes into; the submit fills in the rest and
 * queues it, with no copy. See "In-place inputs" in procpool-internal.h. */
int evexec__procrec_new_input(struct evexec_procpool *pp, size_t len, struct proc_rec **out,
                              void **data)
{
    struct proc_rec *rec;
    int rc = 0;
    if (len > pp->conf.max_payload)
        return -EMSGSIZE;
    pthread_mutex_lock(&pp->mu);
    if (pp->closed || pp->broken)
        rc = pp->closed ? -ESHUTDOWN : -ENOTRECOVERABLE;
    pthread_mutex_unlock(&pp->mu);
    if (rc < 0)
        return rc;
    int big = len > PROC_INLINE_MAX;
    if (!(rec = malloc(sizeof *rec + (big ? 0 : len))))
        return -ENOMEM;
    memset(rec, 0, sizeof *rec);
    rec->in_fd = -1;
    rec->in_len = len;
    if (big) {
        struct proc_inbuf b = inbuf_take(pp, len, &rc);
        if (b.fd < 0) {
            free(rec);
            return rc;
        }
        rec->in_map = b.map;
        rec->in_cap = b.cap;
        rec->in_fd = b.fd;
    }
    atomic_fetch_add_explicit(&pp->refs, 1, memory_order_relaxed);
    rec->in_pool = pp;
    *out = rec;
    *data = big ? rec->in_map : len ? rec->in : NULL;
    return 0;
}

int evexec__procrec_arm_input(struct evexec_procpool *pp, struct proc_rec *rec,
                              evexec_proc_work_fn work, evexec_proc_done_fn done, void *arg)
{
    if (rec->in_pool != pp)
        return -EINVAL;
    if (!in_image(pp, work))
        return -EFAULT;
    /* Read-only before any worker can see it: a write through the
     * caller's pointer after the submit faults instead of changing bytes
     * a worker may be reading. */
    if (rec->in_fd >= 0 && !rec->in_ro) {
        if (mprotect(rec->in_map, rec->in_cap, PROT_READ) < 0)
            return -errno;
        rec->in_ro = 1;
    }
    /* What an earlier failed submit may have left. */
    rec->next = rec->prev = NULL;
    rec->job = NULL;
    rec->fut = NULL;
    rec->fcomplete = NULL;
    atomic_store(&rec->fstop, 0);
    atomic_store(&rec->timed_out, 0);
    rec->queued = 0;
    rec->seq = 0;
    rec->deadline = 0;
    rec->cls = 0;
    rec->status = 0;
    memset(&rec->res, 0, sizeof rec->res);
    rec->work = work;
    rec->done = done;
    rec->arg = arg;
    return 0;
}

void evexec__procrec_disarm_input(struct proc_rec *rec)
{
    if (rec->in_fd >= 0 && rec->in_ro &&
        mprotect(rec->in_map, rec->in_cap, PROT_READ | PROT_WRITE) == 0)
        rec->in_ro = 0;
    rec->job = NULL;
    rec->fut = NULL;
}

void evexec__procrec_input_submitted(struct evexec_procpool *pp, struct proc_rec *rec)
{
    rec->in_pool = NULL;
    evexec__procpool_release(pp, 1); /* the job holds its own */
}

void evexec__procrec_free_input(struct proc_rec *rec)
{
    struct evexec_procpool *pp = rec->in_pool;
    struct proc_inbuf drop = {.fd = -1};
    if (rec->in_fd >= 0) {
        struct proc_inbuf b = {rec->in_fd, rec->in_map, rec->in_cap, rec->in_ro};
        pthread_mutex_lock(&pp->mu);
        if (pp->freeing)
            drop = b; /* no submit will take it, no supervisor time it out */
        else
            drop = inbuf_keep(pp, b, 0);
        pthread_mutex_unlock(&pp->mu);
    }
    free(rec);
    inbuf_drop(drop);
    evexec__procpool_release(pp, 1);
}

int evexec_proc_input_new(evexec_procpool *pp, size_t len, evexec_proc_input **out, void **data)
{
    struct proc_rec *rec;
    int rc;
    if (!pp || !out || !data)
        return -EINVAL;
    if ((rc = evexec__procrec_new_input(pp, len, &rec, data)) < 0)
        return rc;
    *out = (evexec_proc_input *)(void *)rec;
    return 0;
}

void evexec_proc_input_free(evexec_proc_input *in)
{
    if (in)
        evexec__procrec_free_input(evexec__input_rec(in));
}

int evexec__procpool_enqueue(struct evexec_procpool *pp, struct proc_rec *rec)
{
    int rc = 0;
    pthread_mutex_lock(&pp->mu);
    if (pp->closed || pp->broken)
        rc = pp->closed ? -ESHUTDOWN : -ENOTRECOVERABLE; /* the pool's own failure */
    else if (pp->nqueued + pp->nahead >= pp->max_queued)
        rc = -EAGAIN;
    if (rc == 0) {
        rec->seq = ++pp->next_seq;
        pp->st.submitted++;
        atomic_fetch_add_explicit(&pp->refs, 1, memory_order_relaxed);
        if (hand_off(pp, rec)) {
            if (rec->job)
                evexec__job_set_state(rec->job, JOB_RUNNING);
            /* The supervisor kills on time only the jobs it knows of. */
            if (rec->deadline)
                wake(pp);
        } else {
            if (rec->job)
                evexec__job_set_state(rec->job, JOB_QUEUED);
            q_push(pp, rec, 0);
            wake(pp);
        }
    }
    pthread_mutex_unlock(&pp->mu);
    return rc;
}

int evexec__procpool_cancel(struct evexec_procpool *pp, struct proc_rec *rec, int deadline)
{
    pthread_mutex_lock(&pp->mu);
    enum job_state st = rec->job                  ? job_state(rec->job)
                        : rec->queued || rec->sent_to ? JOB_QUEUED
                                                    : JOB_RUNNING;
    if (st == JOB_QUEUED && rec->sent_to) {
        /* Sent ahead: taken back, unless its worker claimed it. */
        struct proc_worker *w = rec->sent_to;
        unsigned k = 0;
        while (w->ahead[k] != rec)
            k++;
        if (unclaim(w, rec))
            ahead_remove(pp, w, k);
        else
            st = JOB_RUNNING;
    } else if (st == JOB_QUEUED) {
        q_unlink(pp, rec);
    }
    if (st == JOB_QUEUED) {
        if (rec->job)
            evexec__job_set_state(rec->job, JOB_CANCELLED);
        if (deadline)
            pp->st.killed_deadline++;
        else
            pp->st.cancelled++;
    }
    pthread_mutex_unlock(&pp->mu);
    return st == JOB_QUEUED ? 0 : st == JOB_CANCELLED ? -EALREADY : -EBUSY;
}

void evexec__procpool_stop(struct evexec_procpool *pp)
{
    pthread_mutex_lock(&pp->mu);
    pp->scan_owed = 1;
    wake(pp);
    pthread_mutex_unlock(&pp->mu);
}

void evexec__procpool_count_timeout(struct evexec_procpool *pp, struct proc_rec *rec)
{
    EVEXEC_UNUSED(pp);
    atomic_store(&rec->timed_out, 1);
}

int evexec_procpool_shutdown(evexec_procpool *pp, int how)
{
    if (!pp || (how != EVEXEC_DRAIN && how != EVEXEC_CANCEL))
        return -EINVAL;
    pthread_mutex_lock(&pp->mu);
    int rc = 0;
    if (pp->closed >= how + 1)
        rc = -EALREADY;
    else {
        pp->closed = how + 1;
        wake(pp);
    }
    pthread_mutex_unlock(&pp->mu);
    return rc;
}

void evexec_procpool_free(evexec_procpool *pp)
{
    if (!pp)
        return;
    pthread_mutex_lock(&pp->mu);
    if (!pp->closed)
        pp->closed = EVEXEC_DRAIN + 1;
    pp->freeing = 1;
    wake(pp);
    pthread_mutex_unlock(&pp->mu);
    pthread_join(pp->thread, NULL);
    /* The fds go now; the memory when the last job is delivered (a port
     * may still ask a delivered-late job to stop: wake() then finds -1). */
    pthread_mutex_lock(&pp->mu);
    int wfd = pp->wake_fd;
    pp->wake_fd = -1;
    pthread_mutex_unlock(&pp->mu);
    close(wfd);
    close(pp->epfd);
    pp->epfd = -1;
    evexec__procpool_release(pp, 1);
}

int evexec_procpool_stats(evexec_procpool *pp, struct evexec_procpool_stats *out)
{
    if (!pp || !out)
        return -EINVAL;
    pthread_mutex_lock(&pp->mu);
    struct evexec_procpool_stats s = pp->st;
    s.queued = pp->nqueued + pp->nahead; /* jobs sent ahead wait too */
    /* Jobs handed to idle workers run, though the supervisor has not
     * collected them yet. */
    unsigned handed = atomic_load(&pp->nhanded);
    handed = handed < s.idle ? handed : s.idle;
    s.busy += handed;
    s.idle -= handed;
    pthread_mutex_unlock(&pp->mu);
    s.size = sizeof s;
    return evexec__stats_write(out, &s, sizeof s,
                               offsetof(struct evexec_procpool_stats, degraded) + sizeof(int));
}
