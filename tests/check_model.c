/* SPDX-License-Identifier: MIT */
/*
 * Model-based randomized stress test.
 *
 * Several loop threads (each its own event_base and port) share several
 * pools and, for a bounded time, do random things at random moments:
 * submit work of random kind and length (nothing, a spin, a sleep, a
 * cooperative loop that polls its stop flag, a pool shutdown or a forbidden
 * pool free from inside the work), cancel live jobs and stale ids, shut a
 * pool down (DRAIN, CANCEL, or one then the other) from a loop, a worker or
 * the controlling thread, free a pool (from a loop's tick or done callback,
 * or from the controller), free a port with jobs outstanding and open a new
 * one on the same base. Time is cut into epochs; each ends by stopping the
 * submissions, shutting down and freeing every pool, freeing every port and
 * the bases, and checking that nothing is left (fds, threads).
 *
 * A reference model follows every call and says what evexec may answer:
 *  - submit: 0 only if no shutdown of that pool had returned before the
 *    call; -ESHUTDOWN only if one had begun; -EAGAIN only if the jobs
 *    outstanding in that pool could fill its queue; nothing else;
 *  - cancel: 0 only for a job never cancelled, -EBUSY only for one not
 *    cancelled, -EALREADY only for one cancelled (by cancel or by a CANCEL
 *    shutdown), -ENOENT for every delivered or unknown id and never for a
 *    live one;
 *  - shutdown: one 0 per mode and pool, -EALREADY only when another call
 *    got there first; pool free from its own worker: -EDEADLK;
 *  - each accepted job: exactly one callback, on its loop's thread; status
 *    0 iff its work ran (with its result), -ECANCELED only if a cancel
 *    returned 0 for it, its pool was shut down with CANCEL, or its port was
 *    freed, and never after a cancel said -EBUSY; its stop flag seen only
 *    after a cancel, a CANCEL shutdown or its port's free; no callback for
 *    a refused job; a port's outstanding count equal to the model's;
 *  - each pool, once everything is delivered: submitted, completed,
 *    cancelled and rejected equal to the model's counts, nothing queued or
 *    running.
 *
 * The seed is printed. EVEXEC_MODEL_SEED=<n> replays the random decisions
 * (thread scheduling is not replayed); EVEXEC_MODEL_SECONDS=<s> runs for s
 * seconds (default 3; CI's bounded mode) instead, the long mode.
 */
#include "config.h"

#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NLOOPS 3
#define NPOOLS 3
#define MAX_RECS 60000   /* submissions per loop and epoch */
#define MAX_PORTS 64     /* ports per loop and epoch */
#define WIN_MAX 256
#define NSTALE 16

/* ------------------------------------------------------------------------ */
/* Random numbers, time                                                     */

static unsigned xs_rnd(unsigned *s, unsigned n)
{
    /* xorshift32: the same sequence everywhere, for a given seed */
    unsigned x = *s ? *s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return n ? x % n : 0;
}

static void sleep_us(unsigned us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------------------------------ */
/* The model                                                                */

enum kind { K_NOOP, K_SPIN, K_SLEEP, K_POLL, K_SHUTDOWN, K_FREE_OWN };

/* Record flags. */
#define F_ACCEPTED 0x01
#define F_CANCEL_OK 0x02
#define F_CANCEL_BUSY 0x04
#define F_CANCEL_ALREADY 0x08

/* One submission. The loop thread writes everything but ran and saw_stop,
 * which the worker writes (distinct bytes: no race); the worker reads
 * kind, len and pool, written before the submit. */
struct mjob {
    evexec_job_id id;
    int16_t status;
    uint8_t gen;      /* which port of its loop (index in ports[]) */
    uint8_t pool;
    uint8_t kind;
    uint8_t arg8;     /* DRAIN/CANCEL for K_SHUTDOWN */
    uint16_t len_us;
    uint8_t flags;
    uint8_t calls;
    uint8_t ran;      /* worker: the work function started */
    uint8_t saw_stop; /* worker: it saw its stop flag */
    int16_t wpos;     /* index in the loop's window while live, else -1 */
};

struct mpool {
    evexec_pool *h;
    pthread_rwlock_t rw;     /* held (read) around every use of h by a
                                loop or the controller; freeing takes it
                                for writing. Workers need no lock: a pool
                                is not freed while its work runs. */
    int freed;               /* under rw */
    size_t max_queued;
    _Atomic int drain_begun, drain_done, drain_ok;
    _Atomic int cancel_begun, cancel_done, cancel_ok;
    _Atomic uint64_t accepted, delivered, rejected, cb_ok, cb_cancelled;
};

struct mloop {
    int idx;
    pthread_t self;
    unsigned rng;
    struct event_base *base;
    struct event *tick;
    evexec_port *ports[MAX_PORTS];
    int nports;               /* ports[nports-1] is the current one */
    int freed_ports;          /* ports[0..freed_ports) are freed */
    size_t live[MAX_PORTS];   /* accepted, not yet delivered, per port */
    uint64_t delivered_by[MAX_PORTS];

    struct mjob *recs;
    int nrecs;
    int win[WIN_MAX];
    unsigned nwin, winmax;
    evexec_job_id stale[NSTALE];
    unsigned nstale;
    int submitting, acked_stop, reported_drained, finishing, finished;

    /* totals for the report */
    uint64_t accepted, rej_again, rej_shutdown, callbacks, cb_ok, cb_cancelled;
    uint64_t c_ok, c_busy, c_already, c_noent, port_frees, pool_frees, shutdowns, stops;
};

struct model {
    unsigned seed;
    int epoch;
    struct mpool pools[NPOOLS];
    struct mloop loops[NLOOPS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int acked_stop, drained, finish;
    _Atomic int stop_submitting;
    _Atomic uint64_t errors;
    char first_error[512];
    /* totals over epochs */
    uint64_t t_accepted, t_rejected, t_callbacks, t_ok, t_cancelled, t_cancels, t_port_frees,
        t_pool_frees, t_shutdowns, t_stops, t_epochs;
};

static struct model M;
/* Each loop's records, set once before any thread starts: callbacks find
 * their loop here, not in M.loops, which the controller rewrites at each
 * epoch while other loops may already run. */
static struct mjob *recs_of[NLOOPS];

__attribute__((format(printf, 1, 2))) static void model_error(const char *fmt, ...)
{
    if (atomic_fetch_add(&M.errors, 1) == 0) {
        char buf[400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        pthread_mutex_lock(&M.mu);
        snprintf(M.first_error, sizeof M.first_error, "seed %u epoch %d: %s", M.seed, M.epoch, buf);
        pthread_mutex_unlock(&M.mu);
    }
}

static const char *name(int rc)
{
    return evexec_errname(rc);
}

/* ------------------------------------------------------------------------ */
/* Shutdown and free, checked against the model (any thread)                */

static void checked_shutdown(int p, int how, const char *who)
{
    struct mpool *mp = &M.pools[p];
    _Atomic int *begun = how == EVEXEC_DRAIN ? &mp->drain_begun : &mp->cancel_begun;
    atomic_fetch_add(begun, 1);
    int rc = evexec_pool_shutdown(mp->h, how);
    if (rc == 0) {
        int n = atomic_fetch_add(how == EVEXEC_DRAIN ? &mp->drain_ok : &mp->cancel_ok, 1);
        if (n != 0)
            model_error("pool %d: a second shutdown(%s) returned 0 (%s)", p,
                        how == EVEXEC_DRAIN ? "DRAIN" : "CANCEL", who);
        if (how == EVEXEC_DRAIN && atomic_load(&mp->cancel_done))
            model_error("pool %d: shutdown(DRAIN) returned 0 after a CANCEL one (%s)", p, who);
    } else if (rc == -EALREADY) {
        int others = how == EVEXEC_DRAIN
                         ? atomic_load(&mp->drain_begun) - 1 + atomic_load(&mp->cancel_begun)
                         : atomic_load(&mp->cancel_begun) - 1;
        if (others < 1)
            model_error("pool %d: shutdown(%s) = -EALREADY, but no one else shut it down (%s)", p,
                        how == EVEXEC_DRAIN ? "DRAIN" : "CANCEL", who);
    } else {
        model_error("pool %d: shutdown: %s (%s)", p, name(rc), who);
    }
    atomic_store(how == EVEXEC_DRAIN ? &mp->drain_done : &mp->cancel_done, 1);
}

/* Frees pool p unless freed already. Returns 1 if this call freed it. */
static int checked_pool_free(int p)
{
    struct mpool *mp = &M.pools[p];
    int did = 0;
    pthread_rwlock_wrlock(&mp->rw);
    if (!mp->freed) {
        /* evexec_pool_free() begins with a shutdown(DRAIN) of its own: a
         * worker's shutdown racing it may find the pool shut down. */
        atomic_fetch_add(&mp->drain_begun, 1);
        int rc = evexec_pool_free(mp->h);
        if (rc != 0)
            model_error("pool %d: pool_free: %s", p, name(rc));
        mp->freed = 1;
        did = 1;
    }
    pthread_rwlock_unlock(&mp->rw);
    return did;
}

/* ------------------------------------------------------------------------ */
/* Work                                                                     */

static void *model_work(evexec_job *job, void *arg)
{
    struct mjob *j = arg;
    uint64_t end;
    j->ran = 1;
    switch (j->kind) {
    case K_SPIN:
        end = now_ns() + (uint64_t)j->len_us * 1000;
        while (now_ns() < end)
            ;
        break;
    case K_SLEEP:
        sleep_us(j->len_us);
        break;
    case K_POLL:
        end = now_ns() + (uint64_t)j->len_us * 1000;
        do {
            if (evexec_job_cancelled(job)) {
                j->saw_stop = 1;
                break;
            }
        } while (now_ns() < end);
        break;
    case K_SHUTDOWN:
        checked_shutdown(j->pool, j->arg8, "from a worker");
        break;
    case K_FREE_OWN: {
        int rc = evexec_pool_free(M.pools[j->pool].h);
        if (rc != -EDEADLK)
            model_error("pool_free from its own worker: %s", name(rc));
        break;
    }
    default:
        break;
    }
    return j;
}

/* ------------------------------------------------------------------------ */
/* Loop threads                                                             */

static void model_done(int status, void *result, void *arg);

static void set_kind(struct mloop *l, struct mjob *j)
{
    unsigned k = xs_rnd(&l->rng, 100000);
    if (k < 55000) {
        j->kind = K_NOOP;
    } else if (k < 80000) {
        j->kind = K_SPIN;
        j->len_us = (uint16_t)(1 + xs_rnd(&l->rng, 50));
    } else if (k < 88000) {
        j->kind = K_SLEEP;
        j->len_us = (uint16_t)(20 + xs_rnd(&l->rng, 480));
    } else if (k < 99990) {
        j->kind = K_POLL;
        j->len_us = (uint16_t)(20 + xs_rnd(&l->rng, 1980));
    } else if (k < 99995) {
        j->kind = K_SHUTDOWN;
        j->arg8 = (uint8_t)xs_rnd(&l->rng, 2);
    } else {
        j->kind = K_FREE_OWN;
    }
}

/* One submission attempt through the current port: 1 if accepted. */
static int try_submit(struct mloop *l)
{
    if (!l->submitting || atomic_load(&M.stop_submitting) || l->nwin >= l->winmax ||
        l->nrecs >= MAX_RECS)
        return 0;
    int p = (int)xs_rnd(&l->rng, NPOOLS);
    struct mpool *mp = &M.pools[p];
    pthread_rwlock_rdlock(&mp->rw);
    if (mp->freed) {
        pthread_rwlock_unlock(&mp->rw);
        return 0;
    }
    int idx = l->nrecs++;
    struct mjob *j = &l->recs[idx];
    memset(j, 0, sizeof *j);
    j->wpos = -1;
    j->gen = (uint8_t)(l->nports - 1);
    j->pool = (uint8_t)p;
    set_kind(l, j);

    int closed_before = atomic_load(&mp->drain_done) || atomic_load(&mp->cancel_done);
    uint64_t del_before = atomic_load(&mp->delivered);
    evexec_job_id id = 0;
    int rc = evexec_submit(l->ports[l->nports - 1], mp->h, model_work, model_done, j, &id);
    if (rc == 0) {
        atomic_fetch_add(&mp->accepted, 1);
        pthread_rwlock_unlock(&mp->rw);
        j->flags = F_ACCEPTED;
        j->id = id;
        j->wpos = (int16_t)l->nwin;
        l->win[l->nwin++] = idx;
        l->live[j->gen]++;
        l->accepted++;
        if (closed_before)
            model_error("loop %d: submit to pool %d accepted after its shutdown returned", l->idx,
                        p);
        if (id == 0)
            model_error("loop %d: submit returned id 0", l->idx);
        return 1;
    }
    atomic_fetch_add(&mp->rejected, 1);
    uint64_t acc_after = atomic_load(&mp->accepted);
    int begun = atomic_load(&mp->drain_begun) || atomic_load(&mp->cancel_begun);
    pthread_rwlock_unlock(&mp->rw);
    if (id != 0)
        model_error("loop %d: a refused submit wrote the id", l->idx);
    if (rc == -ESHUTDOWN) {
        l->rej_shutdown++;
        if (!begun)
            model_error("loop %d: submit to pool %d: -ESHUTDOWN, but no shutdown began", l->idx,
                        p);
    } else if (rc == -EAGAIN) {
        l->rej_again++;
        /* At most one accepted job per other loop is not yet counted. */
        if (acc_after + NLOOPS - 1 < del_before + mp->max_queued)
            model_error("loop %d: submit to pool %d: -EAGAIN with at most %" PRIu64
                        " jobs outstanding, max_queued %zu",
                        l->idx, p, acc_after + NLOOPS - 1 - del_before, mp->max_queued);
    } else {
        model_error("loop %d: submit: unexpected %s", l->idx, name(rc));
    }
    return 0;
}

static void cancel_live(struct mloop *l)
{
    if (!l->nwin)
        return;
    int idx = l->win[xs_rnd(&l->rng, l->nwin)];
    struct mjob *j = &l->recs[idx];
    if (j->gen != l->nports - 1)
        return; /* its port is freed: that handle is dead */
    struct mpool *mp = &M.pools[j->pool];
    int cancel_done_before = atomic_load(&mp->cancel_done);
    int rc = evexec_cancel(l->ports[j->gen], j->id);
    switch (rc) {
    case 0:
        if (j->flags & (F_CANCEL_OK | F_CANCEL_BUSY | F_CANCEL_ALREADY))
            model_error("loop %d job %d: cancel = 0 after an earlier cancel (flags %#x)", l->idx,
                        idx, j->flags);
        if (cancel_done_before)
            model_error("loop %d job %d: cancel = 0 after its pool's CANCEL shutdown returned",
                        l->idx, idx);
        j->flags |= F_CANCEL_OK;
        l->c_ok++;
        break;
    case -EBUSY:
        if (j->flags & (F_CANCEL_OK | F_CANCEL_ALREADY))
            model_error("loop %d job %d: -EBUSY for a cancelled job", l->idx, idx);
        j->flags |= F_CANCEL_BUSY;
        l->c_busy++;
        break;
    case -EALREADY:
        if ((j->flags & F_CANCEL_BUSY) ||
            (!(j->flags & F_CANCEL_OK) && !atomic_load(&mp->cancel_begun)))
            model_error("loop %d job %d: -EALREADY for a job never cancelled (flags %#x)", l->idx,
                        idx, j->flags);
        j->flags |= F_CANCEL_ALREADY;
        l->c_already++;
        break;
    default:
        model_error("loop %d job %d: cancel of a live job: %s", l->idx, idx, name(rc));
    }
}

static void cancel_stale(struct mloop *l)
{
    unsigned n = l->nstale < NSTALE ? l->nstale : NSTALE;
    evexec_job_id id = n ? l->stale[xs_rnd(&l->rng, n)] : 0;
    int rc = evexec_cancel(l->ports[l->nports - 1], id);
    if (rc != -ENOENT)
        model_error("loop %d: cancel of a stale id: %s", l->idx, name(rc));
    l->c_noent++;
}

static void check_port_stats(struct mloop *l)
{
    struct evexec_port_stats s;
    int g = l->nports - 1;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    int rc = evexec_port_stats(l->ports[g], &s);
    if (rc != 0)
        model_error("loop %d: port_stats: %s", l->idx, name(rc));
    else if (s.outstanding != l->live[g] || s.delivered != l->delivered_by[g])
        model_error("loop %d port %d: outstanding %zu delivered %" PRIu64
                    ", the model says %zu and %" PRIu64,
                    l->idx, g, s.outstanding, s.delivered, l->live[g], l->delivered_by[g]);
}

/* Frees the current port (jobs may be outstanding) and opens a new one. */
static void renew_port(struct mloop *l)
{
    if (l->nports >= MAX_PORTS)
        return;
    int g = l->nports - 1;
    check_port_stats(l);
    int rc = evexec_port_free(l->ports[g]);
    if (rc != 0)
        model_error("loop %d: port_free: %s", l->idx, name(rc));
    l->freed_ports = l->nports;
    l->port_frees++;
    l->nstale = 0; /* ids are per port: keep only the new port's */
    struct evexec_port_opts o = EVEXEC_PORT_OPTS_INIT;
    static const unsigned batch[] = {0, 1, 2, 7, 64};
    o.max_batch = batch[xs_rnd(&l->rng, 5)];
    rc = evexec_port_new(&l->ports[l->nports], l->base, &o);
    if (rc != 0) {
        model_error("loop %d: port_new: %s", l->idx, name(rc));
        return;
    }
    l->nports++;
}

/* Random operations, from the tick and from done callbacks. */
static void random_ops(struct mloop *l, unsigned n)
{
    for (; n > 0 && !l->finishing; n--) {
        unsigned k = xs_rnd(&l->rng, 100000);
        if (k < 70000) {
            try_submit(l);
        } else if (k < 85000) {
            cancel_live(l);
        } else if (k < 88000) {
            cancel_stale(l);
        } else if (k < 88020 && l->submitting) {
            renew_port(l);
        } else if (k < 88025) {
            int p = (int)xs_rnd(&l->rng, NPOOLS);
            pthread_rwlock_rdlock(&M.pools[p].rw);
            if (!M.pools[p].freed) {
                checked_shutdown(p, (int)xs_rnd(&l->rng, 2), "from a loop");
                l->shutdowns++;
            }
            pthread_rwlock_unlock(&M.pools[p].rw);
        } else if (k < 88027) {
            /* Blocks this loop while the pool's work finishes. */
            l->pool_frees += checked_pool_free((int)xs_rnd(&l->rng, NPOOLS));
        } else if (k < 89000) {
            check_port_stats(l);
        } else {
            try_submit(l);
        }
    }
}

static void loop_report(struct mloop *l, int *flag, int *count)
{
    if (*flag)
        return;
    *flag = 1;
    pthread_mutex_lock(&M.mu);
    (*count)++;
    pthread_cond_broadcast(&M.cv);
    pthread_mutex_unlock(&M.mu);
}

static size_t live_total(const struct mloop *l)
{
    size_t n = 0;
    for (int g = 0; g < l->nports; g++)
        n += l->live[g];
    return n;
}

static void finish_loop(struct mloop *l)
{
    l->finishing = 1;
    check_port_stats(l);
    int rc = evexec_port_free(l->ports[l->nports - 1]);
    if (rc != 0)
        model_error("loop %d: final port_free: %s", l->idx, name(rc));
    l->freed_ports = l->nports;
    event_del(l->tick);
    l->finished = 1;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct mloop *l = arg;
    (void)fd;
    (void)what;
    if (l->finished)
        return;
    if (atomic_load(&M.stop_submitting) && l->submitting) {
        l->submitting = 0;
        loop_report(l, &l->acked_stop, &M.acked_stop);
    }
    if (!l->submitting && live_total(l) == 0)
        loop_report(l, &l->reported_drained, &M.drained);
    pthread_mutex_lock(&M.mu);
    int finish = M.finish;
    pthread_mutex_unlock(&M.mu);
    if (finish) {
        finish_loop(l);
        return;
    }
    random_ops(l, 1 + xs_rnd(&l->rng, 24));
}

static void model_done(int status, void *result, void *arg)
{
    struct mjob *j = arg;
    struct mloop *l = NULL;
    for (int i = 0; i < NLOOPS; i++)
        if (j >= recs_of[i] && j < recs_of[i] + MAX_RECS)
            l = &M.loops[i];
    if (!l) {
        model_error("callback with an unknown arg %p", arg);
        return;
    }
    int idx = (int)(j - l->recs);
    if (!pthread_equal(pthread_self(), l->self)) {
        model_error("loop %d job %d: callback on another thread", l->idx, idx);
        return; /* touching l here would race */
    }
    if (++j->calls != 1) {
        model_error("loop %d job %d: callback number %u", l->idx, idx, j->calls);
        return;
    }
    struct mpool *mp = &M.pools[j->pool];
    atomic_fetch_add(&mp->delivered, 1);
    j->status = (int16_t)status;
    l->callbacks++;
    if (!(j->flags & F_ACCEPTED))
        model_error("loop %d job %d: callback for a refused submit", l->idx, idx);
    int port_freed = j->gen < l->freed_ports;
    int pool_cancel = atomic_load(&mp->cancel_begun) != 0;
    if (status == 0) {
        l->cb_ok++;
        atomic_fetch_add(&mp->cb_ok, 1);
        if (!j->ran)
            model_error("loop %d job %d: status 0 but its work never ran", l->idx, idx);
        if (result != j)
            model_error("loop %d job %d: result %p, not %p", l->idx, idx, result, arg);
        if (j->flags & (F_CANCEL_OK | F_CANCEL_ALREADY))
            model_error("loop %d job %d: ran although cancelled (flags %#x)", l->idx, idx,
                        j->flags);
    } else if (status == -ECANCELED) {
        l->cb_cancelled++;
        atomic_fetch_add(&mp->cb_cancelled, 1);
        if (j->ran)
            model_error("loop %d job %d: -ECANCELED but its work ran", l->idx, idx);
        if (result != NULL)
            model_error("loop %d job %d: cancelled with result %p", l->idx, idx, result);
        if (j->flags & F_CANCEL_BUSY)
            model_error("loop %d job %d: -ECANCELED after cancel said -EBUSY", l->idx, idx);
        if (!(j->flags & F_CANCEL_OK) && !pool_cancel && !port_freed)
            model_error("loop %d job %d: -ECANCELED, but nothing cancelled it", l->idx, idx);
    } else {
        model_error("loop %d job %d: status %s", l->idx, idx, name(status));
    }
    if (j->saw_stop && !(j->flags & F_CANCEL_BUSY) && !pool_cancel && !port_freed)
        model_error("loop %d job %d: its work saw a stop flag no one set", l->idx, idx);
    l->stops += j->saw_stop;

    l->live[j->gen]--;
    l->delivered_by[j->gen]++;
    if (j->wpos < 0 || (unsigned)j->wpos >= l->nwin || l->win[j->wpos] != idx) {
        model_error("loop %d job %d: not in the window", l->idx, idx);
    } else {
        unsigned pos = (unsigned)j->wpos, last = --l->nwin;
        if (j->gen == l->nports - 1) /* ids name jobs of one port only */
            l->stale[l->nstale++ % NSTALE] = j->id;
        if (pos != last) {
            l->win[pos] = l->win[last];
            l->recs[l->win[pos]].wpos = (int16_t)pos;
        }
        j->wpos = -1;
    }

    /* A freed port still delivering: submitting through it is refused
     * (and does not reach the pool). */
    if (port_freed && xs_rnd(&l->rng, 8) == 0) {
        pthread_rwlock_rdlock(&mp->rw);
        if (!mp->freed) {
            evexec_job_id id = 0;
            int rc = evexec_submit(l->ports[j->gen], mp->h, model_work, model_done, j, &id);
            if (rc != -ESHUTDOWN || id != 0)
                model_error("loop %d: submit through a freed port: %s", l->idx, name(rc));
        }
        pthread_rwlock_unlock(&mp->rw);
    }
    if (!l->finishing)
        random_ops(l, xs_rnd(&l->rng, 4));
}

static void *loop_main(void *arg)
{
    struct mloop *l = arg;
    struct evexec_port_opts o = EVEXEC_PORT_OPTS_INIT;
    static const unsigned batch[] = {0, 1, 3, 16, 128};
    static const struct timeval tick = {0, 500};

    l->self = pthread_self();
    o.max_batch = batch[xs_rnd(&l->rng, 5)];
    int rc = evexec_port_new(&l->ports[0], l->base, &o);
    if (rc != 0) {
        model_error("loop %d: port_new: %s", l->idx, name(rc));
        return NULL;
    }
    l->nports = 1;
    l->tick = event_new(l->base, -1, EV_PERSIST, on_tick, l);
    event_add(l->tick, &tick);
    event_base_dispatch(l->base); /* returns once every port is released */
    event_free(l->tick);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The controller                                                           */

static void wait_count(int *count, int target, int *deadline_hit)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    pthread_mutex_lock(&M.mu);
    while (*count < target)
        if (pthread_cond_timedwait(&M.cv, &M.mu, &ts) == ETIMEDOUT) {
            *deadline_hit = 1;
            break;
        }
    pthread_mutex_unlock(&M.mu);
}

static void check_pool_stats(int p)
{
    struct mpool *mp = &M.pools[p];
    struct evexec_pool_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    if (evexec_pool_stats(mp->h, &s) != 0) {
        model_error("pool %d: pool_stats failed", p);
        return;
    }
    uint64_t acc = atomic_load(&mp->accepted), ok = atomic_load(&mp->cb_ok),
             canc = atomic_load(&mp->cb_cancelled), rej = atomic_load(&mp->rejected);
    if (s.submitted != acc || s.completed != ok || s.cancelled != canc || s.rejected != rej ||
        s.queued != 0 || s.running != 0)
        model_error("pool %d: stats submitted/completed/cancelled/rejected/queued/running "
                    "%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%zu/%u, model %" PRIu64
                    "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/0/0",
                    p, s.submitted, s.completed, s.cancelled, s.rejected, s.queued, s.running, acc,
                    ok, canc, rej);
}

static void run_epoch(unsigned *rng, uint64_t epoch_ns)
{
    pthread_t th[NLOOPS];
    int fds0 = count_fds(), threads0 = count_threads();
    int hung = 0;

    M.acked_stop = M.drained = M.finish = 0;
    atomic_store(&M.stop_submitting, 0);
    for (int p = 0; p < NPOOLS; p++) {
        struct mpool *mp = &M.pools[p];
        struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
        pthread_rwlockattr_t ra;
        memset(mp, 0, sizeof *mp);
        pthread_rwlockattr_init(&ra);
        pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&mp->rw, &ra);
        pthread_rwlockattr_destroy(&ra);
        o.max_threads = 1 + xs_rnd(rng, 4);
        o.min_threads = xs_rnd(rng, o.max_threads + 1);
        o.max_queued = xs_rnd(rng, 3) ? 4 + xs_rnd(rng, 200) : 0;
        o.idle_timeout_ms = xs_rnd(rng, 2) ? 1 + xs_rnd(rng, 5) : 0;
        o.name = "model";
        int rc = evexec_pool_new(&mp->h, &o);
        ck_assert_int_eq(rc, 0);
        mp->max_queued = o.max_queued ? o.max_queued : 65536;
    }
    for (int i = 0; i < NLOOPS; i++) {
        struct mloop *l = &M.loops[i];
        struct mjob *recs = l->recs;
        memset(l, 0, sizeof *l);
        l->recs = recs;
        l->idx = i;
        l->rng = M.seed ^ (0x9e3779b9u * (unsigned)(M.epoch * NLOOPS + i + 1));
        l->winmax = 4 + xs_rnd(rng, WIN_MAX - 4);
        l->submitting = 1;
        l->base = event_base_new();
        ck_assert_ptr_nonnull(l->base);
        ck_assert_int_eq(pthread_create(&th[i], NULL, loop_main, l), 0);
    }

    /* While the loops run: a shutdown from here, now and then. */
    uint64_t end = now_ns() + epoch_ns;
    while (now_ns() < end) {
        sleep_us(500 + xs_rnd(rng, 20000));
        if (xs_rnd(rng, 40) == 0) {
            int p = (int)xs_rnd(rng, NPOOLS);
            pthread_rwlock_rdlock(&M.pools[p].rw);
            if (!M.pools[p].freed)
                checked_shutdown(p, (int)xs_rnd(rng, 2), "from the controller");
            pthread_rwlock_unlock(&M.pools[p].rw);
        }
    }

    /* Stop submitting; shut every pool down; wait for every callback. */
    atomic_store(&M.stop_submitting, 1);
    wait_count(&M.acked_stop, NLOOPS, &hung);
    for (int p = 0; p < NPOOLS; p++) {
        pthread_rwlock_rdlock(&M.pools[p].rw);
        if (!M.pools[p].freed) {
            switch (xs_rnd(rng, 3)) {
            case 0:
                checked_shutdown(p, EVEXEC_DRAIN, "at the end");
                break;
            case 1:
                checked_shutdown(p, EVEXEC_CANCEL, "at the end");
                break;
            default:
                checked_shutdown(p, EVEXEC_DRAIN, "at the end");
                checked_shutdown(p, EVEXEC_CANCEL, "at the end");
            }
        }
        pthread_rwlock_unlock(&M.pools[p].rw);
    }
    wait_count(&M.drained, NLOOPS, &hung);
    if (hung)
        model_error("epoch %d: the loops never got every callback (accepted jobs lost?)",
                    M.epoch);
    for (int p = 0; p < NPOOLS; p++) {
        pthread_rwlock_rdlock(&M.pools[p].rw);
        if (!M.pools[p].freed && !hung)
            check_pool_stats(p);
        pthread_rwlock_unlock(&M.pools[p].rw);
    }
    int first = (int)xs_rnd(rng, NPOOLS);
    for (int i = 0; i < NPOOLS; i++)
        M.t_pool_frees += checked_pool_free((first + i) % NPOOLS);

    pthread_mutex_lock(&M.mu);
    M.finish = 1;
    pthread_mutex_unlock(&M.mu);
    for (int i = 0; i < NLOOPS; i++)
        pthread_join(th[i], NULL);

    /* Every record: accepted ones called back once, refused ones never. */
    for (int i = 0; i < NLOOPS; i++) {
        struct mloop *l = &M.loops[i];
        uint64_t rejected = 0;
        for (int r = 0; r < l->nrecs; r++) {
            const struct mjob *j = &l->recs[r];
            if ((j->flags & F_ACCEPTED) && j->calls != 1)
                model_error("loop %d job %d: %u callbacks", i, r, j->calls);
            if (!(j->flags & F_ACCEPTED)) {
                rejected++;
                if (j->calls)
                    model_error("loop %d job %d: refused, yet called back", i, r);
            }
        }
        if (l->callbacks != l->accepted)
            model_error("loop %d: %" PRIu64 " accepted, %" PRIu64 " callbacks", i, l->accepted,
                        l->callbacks);
        event_base_free(l->base);
        M.t_accepted += l->accepted;
        M.t_rejected += rejected;
        M.t_callbacks += l->callbacks;
        M.t_ok += l->cb_ok;
        M.t_cancelled += l->cb_cancelled;
        M.t_cancels += l->c_ok + l->c_busy + l->c_already + l->c_noent;
        M.t_port_frees += l->port_frees + 1;
        M.t_pool_frees += l->pool_frees;
        M.t_shutdowns += l->shutdowns;
        M.t_stops += l->stops;
    }
    for (int p = 0; p < NPOOLS; p++)
        pthread_rwlock_destroy(&M.pools[p].rw);
    int fds = count_fds(), threads = count_threads();
    for (int i = 0; i < 1000 && threads != threads0; i++) {
        sleep_us(1000); /* a joined thread may linger in /proc a moment */
        threads = count_threads();
    }
    if (fds != fds0)
        model_error("epoch %d: %d fds before, %d after", M.epoch, fds0, fds);
    if (threads != threads0)
        model_error("epoch %d: %d threads before, %d after", M.epoch, threads0, threads);
    M.t_epochs++;
}

static void *warm_up(void *arg)
{
    return arg;
}

START_TEST(model_based_stress)
{
    const char *s = getenv("EVEXEC_MODEL_SEED");
    const char *sec = getenv("EVEXEC_MODEL_SECONDS");
    double seconds = sec && *sec ? strtod(sec, NULL) : 3.0;
    unsigned seed;
    if (s && *s) {
        seed = (unsigned)strtoul(s, NULL, 0);
    } else {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        seed = (unsigned)t.tv_sec ^ (unsigned)t.tv_nsec ^ ((unsigned)getpid() << 16);
    }
    ck_assert_msg(seconds > 0, "EVEXEC_MODEL_SECONDS must be positive");
    printf("check_model: seed=%u seconds=%g (replay: EVEXEC_MODEL_SEED=%u)\n", seed, seconds,
           seed);
    fflush(stdout);

    memset(&M, 0, sizeof M);
    M.seed = seed;
    pthread_mutex_init(&M.mu, NULL);
    pthread_cond_init(&M.cv, NULL);
    for (int i = 0; i < NLOOPS; i++) {
        recs_of[i] = M.loops[i].recs = calloc(MAX_RECS, sizeof(struct mjob));
        ck_assert_ptr_nonnull(M.loops[i].recs);
    }
    /* A thread first, so that helper threads a runtime starts lazily (the
     * ThreadSanitizer's) are there before the epochs count theirs. */
    pthread_t warm;
    ck_assert_int_eq(pthread_create(&warm, NULL, warm_up, NULL), 0);
    pthread_join(warm, NULL);
    unsigned rng = seed ? seed : 1;
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(seconds * 1e9);
    while (now_ns() < deadline && atomic_load(&M.errors) == 0) {
        uint64_t left = deadline - now_ns();
        uint64_t len = (uint64_t)(50 + xs_rnd(&rng, 400)) * 1000000u;
        run_epoch(&rng, len < left ? len : left);
        M.epoch++;
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;
    printf("check_model: %" PRIu64 " epochs in %.2f s; jobs accepted %" PRIu64
           ", refused %" PRIu64 ", callbacks %" PRIu64 " (ok %" PRIu64 ", cancelled %" PRIu64
           "); cancel calls %" PRIu64 "; stop flags seen by work %" PRIu64
           "; shutdowns from loops %" PRIu64 "; ports freed %" PRIu64 "; pools freed %" PRIu64
           "\n",
           M.t_epochs, elapsed, M.t_accepted, M.t_rejected, M.t_callbacks, M.t_ok, M.t_cancelled,
           M.t_cancels, M.t_stops, M.t_shutdowns, M.t_port_frees, M.t_pool_frees);
    printf("check_model: lost %" PRIu64 ", duplicated 0 (a second callback is an error), "
           "errors %" PRIu64 "\n",
           M.t_accepted - M.t_callbacks, atomic_load(&M.errors));
    fflush(stdout);
    for (int i = 0; i < NLOOPS; i++)
        free(M.loops[i].recs);
    ck_assert_msg(atomic_load(&M.errors) == 0, "%" PRIu64 " model violations; first: %s",
                  atomic_load(&M.errors), M.first_error);
    ck_assert_uint_eq(M.t_accepted, M.t_callbacks);
    ck_assert_uint_gt(M.t_accepted, 0);
    pthread_cond_destroy(&M.cv);
    pthread_mutex_destroy(&M.mu);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    const char *sec = getenv("EVEXEC_MODEL_SECONDS");
    double seconds = sec && *sec ? strtod(sec, NULL) : 3.0;
    /* The epochs' teardown comes on top of the time asked for. */
    tcase_add_test(add_tcase(s, "model", seconds + 120, FX_FDS), model_based_stress);
    return run_suite(s);
}
