/* SPDX-License-Identifier: MIT */
/*
 * Randomized race/stress of the executor features of 0.2 (priorities,
 * deadlines, groups, thread-safe submits, resizes), all at once, proving
 * invariant 1 (exactly one done callback per accepted job, on the loop
 * thread; none for a rejected submit) while everything races:
 *
 * - the loop thread submits with evexec_submit_ex(): random priorities,
 *   random deadlines (none, or 1..20 ms), random groups (ALL, FIRST,
 *   FIRST|CANCEL_REST; closed or cancelled at random), and cancels random
 *   ids with evexec_cancel();
 * - 2..4 foreign threads submit with evexec_submit_threadsafe(), some
 *   waiting for room (wait_ms, sometimes EVEXEC_WAIT_FOREVER);
 * - work functions sometimes submit a follow-up with
 *   evexec_submit_threadsafe() (and check that a wait there is -EDEADLK);
 * - another thread calls evexec_pool_resize() and
 *   evexec_pool_set_class_limit() at random;
 * - the pool usually drops the oldest job on overflow (small max_queued),
 *   counts worker_init/worker_fini (which must balance), sometimes has a
 *   failing worker_init, sometimes keeps histograms;
 * - each round ends at random: shutdown(CANCEL) from the loop while the
 *   other threads still submit, shutdown(CANCEL) from the resizing thread,
 *   evexec_port_free() with jobs outstanding, or a plain drain.
 *
 * Every work function returns a malloc'd result (or, now and then, NULL):
 * the done callback frees it, and a late result (deadline passed first)
 * must reach the cleanup function exactly once, so ASan and valgrind see a
 * leak or a double free. At the end every record is checked, then the
 * pool's counters against the records.
 *
 * The seed is printed; EVEXEC_STRESS_SEED=<n> replays it as far as thread
 * scheduling allows. Size: EVEXEC_STRESS_FEATURES_ROUNDS (default 8; 4
 * under valgrind), EVEXEC_STRESS_FEATURES_JOBS (loop-thread jobs accepted
 * per round, default 8000; 2000 under valgrind; the other threads add
 * theirs), EVEXEC_STRESS_FEATURES_SECONDS (most seconds of submitting per
 * round, default 3; 20 under valgrind), so a slow checker build stays
 * bounded.
 */
#include "config.h"

#include "helpers.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define HAVE_RUNNING_ON_VALGRIND 1
#endif
#endif

/* --- knobs and small helpers ---------------------------------------------- */

static int under_valgrind(void)
{
#ifdef HAVE_RUNNING_ON_VALGRIND
    if (RUNNING_ON_VALGRIND)
        return 1;
#endif
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload") != NULL;
}

static unsigned long env_knob(const char *name, unsigned long dflt, unsigned long vg,
                              unsigned long min, unsigned long max)
{
    const char *s = getenv(name);
    if (s && *s) {
        unsigned long v = strtoul(s, NULL, 0);
        if (v >= min && v <= max)
            return v;
    }
    return under_valgrind() ? vg : dflt;
}

static void sleep_us(unsigned us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* --- records ------------------------------------------------------------- */

#define ID_SENTINEL UINT64_C(0xfeedfacecafebeef)
#define RES_MAGIC 0x5e5a1715u
#define MAX_FOREIGN 4
#define WINDOW 128
#define MAX_OPEN_GROUPS 4
#define WATCHDOG_NS (UINT64_C(60) * 1000000000u)

enum origin { O_LOOP = 1, O_FOREIGN, O_FOLLOW };
enum kind { K_NOOP, K_SPIN, K_SLEEP, K_POLL };
enum ending { END_CANCEL_LOOP, END_CANCEL_THREAD, END_PORT_FREE, END_DRAIN, END_COUNT };

/* evexec_cancel() outcomes seen (loop thread) */
#define C_OK 0x01
#define C_BUSY 0x02
#define C_ALREADY 0x04

/*
 * One submission attempt. Who writes what, so that nothing races:
 * - the submitter, before the submit: origin, kind, len_us, prio,
 *   timeout_ms, group (the submit publishes them to the worker and the
 *   loop);
 * - the submitter, after it: accepted, submit_rc (read only at the end,
 *   after every submitting thread is joined);
 * - the worker: ran, null_result, saw_stop, wrong_state (read at the end,
 *   or by the done callback of a job whose work has returned);
 * - the loop thread: calls, status, cleanups, cflags, wpos, bad.
 */
struct rec {
    uint8_t origin, kind, prio_idx;
    uint16_t len_us;
    uint32_t timeout_ms;
    int32_t group;
    uint8_t accepted;
    int16_t submit_rc;
    uint8_t ran, null_result, saw_stop, wrong_state;
    uint8_t calls, cleanups, cflags;
    int16_t status;
    int32_t wpos;
    evexec_job_id id;
};

struct res {
    uint32_t magic;
    struct rec *rec;
};

struct grp {
    evexec_group *h; /* NULL once its callback has returned */
    int how;
    int closed, cancelled, calls, cb_status, target;
    int members, delivered, first_status, first_nonzero;
};

static const int prios[3] = {EVEXEC_PRIO_HIGH, EVEXEC_PRIO_NORMAL, EVEXEC_PRIO_LOW};

struct round {
    unsigned rng;  /* loop thread */
    int round;
    pthread_t loop;
    struct event_base *base;
    evexec_port *port;
    evexec_pool *pool;
    struct event *tick;
    struct event *pump_timer; /* pump()'s bounded wait */
    int ending;
    int init_fail;    /* 1 in N worker_init calls fail (0: never) */
    struct evexec_pool_opts po;
    unsigned nforeign;

    /* records: claimed by any thread */
    struct rec *recs;
    uint32_t cap;
    _Atomic uint32_t nrecs;
    _Atomic uint64_t accepted_total;

    /* loop thread */
    uint64_t callbacks, loop_accepted, target_loop;
    uint64_t t_start, t_budget;
    int phase;         /* 1 submitting, 2 winding down */
    int port_freed, shut_cancel;
    uint32_t win[WINDOW];
    unsigned nwin;
    struct grp *grps;
    unsigned ngrps, capgrps;
    unsigned open[MAX_OPEN_GROUPS];
    unsigned nopen;
    uint64_t group_einval, cancels[4], stale_noent;
    uint64_t cleanups;

    /* the other threads */
    atomic_int stop;          /* foreign threads and the resizer end */
    atomic_int followups_on;  /* work functions may submit follow-ups */
    atomic_int in_followup;   /* ... and how many are inside a submit */
    atomic_int shut_request, shut_done; /* END_CANCEL_THREAD */
    atomic_int shut_any;      /* set before any evexec_pool_shutdown() */
    atomic_int threads_out;
    _Atomic uint64_t wrong_thread;
    _Atomic uint64_t inits, init_failed, finis, state_leaks;
    _Atomic uint64_t resizes, resize_einval, limits;
    _Atomic uint64_t ts_rc[8]; /* threadsafe outcomes: 0 EAGAIN ETIMEDOUT ESHUTDOWN EDEADLK */

    /* first error of any thread */
    pthread_mutex_t err_mu;
    uint64_t errors;
    char first_error[320];
};

static struct round RD;

__attribute__((format(printf, 1, 2))) static void fail_later(const char *fmt, ...)
{
    pthread_mutex_lock(&RD.err_mu);
    if (RD.errors++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(RD.first_error, sizeof RD.first_error, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&RD.err_mu);
}

static int on_loop(void)
{
    if (pthread_equal(pthread_self(), RD.loop))
        return 1;
    atomic_fetch_add(&RD.wrong_thread, 1);
    return 0;
}

/* Claims a record (any thread); NULL when the round's records are used up. */
static struct rec *claim(enum origin o, unsigned *rng)
{
    uint32_t i = atomic_fetch_add(&RD.nrecs, 1);
    if (i >= RD.cap) {
        atomic_fetch_sub(&RD.nrecs, 1);
        return NULL;
    }
    struct rec *r = &RD.recs[i];
    r->origin = (uint8_t)o;
    r->group = -1;
    r->wpos = -1;
    unsigned k = rnd(rng, 100);
    if (k < 60) {
        r->kind = K_NOOP;
    } else if (k < 80) {
        r->kind = K_SPIN;
        r->len_us = (uint16_t)(1 + rnd(rng, 200));
    } else if (k < 90) {
        r->kind = K_SLEEP;
        r->len_us = (uint16_t)(500 + rnd(rng, 4000));
    } else {
        r->kind = K_POLL;
        r->len_us = (uint16_t)(100 + rnd(rng, 5000));
    }
    r->prio_idx = (uint8_t)rnd(rng, 3);
    return r;
}

/* --- worker side ---------------------------------------------------------- */

static int w_init(void *warg, void **state)
{
    (void)warg;
    uint64_t n = atomic_fetch_add(&RD.inits, 1);
    if (*state != NULL)
        fail_later("worker_init: *state not NULL on entry");
    if (RD.init_fail && n % (uint64_t)RD.init_fail == (uint64_t)RD.init_fail - 1) {
        atomic_fetch_add(&RD.init_failed, 1);
        return -1;
    }
    uint64_t *st = malloc(sizeof *st);
    if (!st) {
        atomic_fetch_add(&RD.init_failed, 1);
        return -1;
    }
    *st = RES_MAGIC;
    *state = st;
    return 0;
}

static void w_fini(void *state, void *warg)
{
    (void)warg;
    uint64_t *st = state;
    if (!st || *st != RES_MAGIC)
        fail_later("worker_fini: state %p not worker_init's", state);
    else
        free(st);
    atomic_fetch_add(&RD.finis, 1);
}

static void spin_for_ns(uint64_t ns)
{
    uint64_t end = now_ns() + ns;
    while (now_ns() < end)
        ;
}

static void stress_done(int status, void *result, void *arg);
static void *stress_work(evexec_job *job, void *arg);

/* A follow-up submitted from a work function (a worker of RD.pool). */
static void followup(unsigned *rng)
{
    atomic_fetch_add(&RD.in_followup, 1);
    if (!atomic_load(&RD.followups_on)) {
        atomic_fetch_sub(&RD.in_followup, 1);
        return;
    }
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    int rc;
    if (rnd(rng, 16) == 0) { /* a worker must never wait on its own pool */
        o.wait_ms = 1 + (int)rnd(rng, 5);
        rc = evexec_submit_threadsafe(RD.port, RD.pool, stress_work, stress_done, NULL, &o);
        if (rc != -EDEADLK)
            fail_later("threadsafe submit with wait_ms from a worker: %s, not EDEADLK",
                       evexec_errname(rc));
        atomic_fetch_add(&RD.ts_rc[4], 1);
        o.wait_ms = 0;
    }
    struct rec *r = claim(O_FOLLOW, rng);
    if (r) {
        o.priority = prios[r->prio_idx];
        rc = evexec_submit_threadsafe(RD.port, RD.pool, stress_work, stress_done, r, &o);
        r->submit_rc = (int16_t)rc;
        if (rc == 0) {
            r->accepted = 1;
            atomic_fetch_add(&RD.accepted_total, 1);
        } else if (rc == -EAGAIN || (rc == -ESHUTDOWN && atomic_load(&RD.shut_any))) {
            atomic_fetch_add(&RD.ts_rc[rc == -EAGAIN ? 1 : 3], 1);
        } else {
            fail_later("follow-up submit: %s", evexec_errname(rc));
        }
    }
    atomic_fetch_sub(&RD.in_followup, 1);
}

static void *stress_work(evexec_job *job, void *arg)
{
    struct rec *r = arg;
    unsigned rng = (unsigned)(uintptr_t)r ^ (unsigned)now_ns();
    if (!r) {
        fail_later("a work function ran for a rejected submit");
        return NULL;
    }
    r->ran = 1;
    uint64_t *st = evexec_worker_state(job);
    if (!st || *st != RES_MAGIC)
        r->wrong_state = 1;
    switch (r->kind) {
    case K_SPIN:
        spin_for_ns((uint64_t)r->len_us * 1000);
        break;
    case K_SLEEP:
        sleep_us(r->len_us);
        break;
    case K_POLL: {
        uint64_t end = now_ns() + (uint64_t)r->len_us * 1000;
        while (now_ns() < end) {
            if (evexec_job_cancelled(job)) {
                r->saw_stop = 1;
                break;
            }
            sleep_us(50);
        }
        break;
    }
    default:
        break;
    }
    if (rnd(&rng, 8) == 0)
        followup(&rng);
    if (rnd(&rng, 8) == 0) {
        r->null_result = 1;
        return NULL;
    }
    struct res *res = malloc(sizeof *res);
    if (!res) {
        r->null_result = 1;
        return NULL;
    }
    res->magic = RES_MAGIC;
    res->rec = r;
    return res;
}

/* --- loop side ------------------------------------------------------------ */

static uint32_t rec_index(const struct rec *r)
{
    return (uint32_t)(r - RD.recs);
}

static void grp_member_done(struct rec *r, int status)
{
    struct grp *g = &RD.grps[r->group];
    if (g->delivered++ == 0)
        g->first_status = status;
    if (status != 0 && g->first_nonzero == 0)
        g->first_nonzero = status;
    if (g->delivered > g->members)
        fail_later("group %d: %d members delivered of %d", r->group, g->delivered, g->members);
}

static void group_cb(int status, void *arg)
{
    struct grp *g = arg;
    int gi = (int)(g - RD.grps);
    if (!on_loop())
        return;
    if (++g->calls != 1) {
        fail_later("group %d: callback number %d", gi, g->calls);
        return;
    }
    g->cb_status = status;
    if (g->members == 0) {
        if (status != -ENOENT || !g->closed)
            fail_later("group %d (no member, closed %d): status %s", gi, g->closed,
                       evexec_errname(status));
    } else if ((g->how & EVEXEC_GROUP_FIRST) != 0) {
        if (g->delivered < 1 || status != g->first_status)
            fail_later("group %d FIRST: status %s after %d delivered, first was %s", gi,
                       evexec_errname(status), g->delivered, evexec_errname(g->first_status));
    } else {
        if (!g->closed || g->delivered != g->members || status != g->first_nonzero)
            fail_later("group %d ALL: status %s, closed %d, %d of %d delivered, expected %s", gi,
                       evexec_errname(status), g->closed, g->delivered, g->members,
                       evexec_errname(g->first_nonzero));
    }
    g->h = NULL; /* the handle is gone once this returns */
    for (unsigned i = 0; i < RD.nopen; i++)
        if (RD.open[i] == (unsigned)gi) {
            RD.open[i] = RD.open[--RD.nopen];
            break;
        }
}

static void cleanup_cb(void *result, void *arg)
{
    struct rec *r = arg;
    struct res *res = result;
    if (!on_loop())
        return;
    RD.cleanups++;
    if (!r || r < RD.recs || r >= RD.recs + RD.cap) {
        fail_later("cleanup with arg %p", arg);
        return;
    }
    r->cleanups++;
    if (r->calls != 1 || r->status != -ETIMEDOUT)
        fail_later("job %u: cleanup after %u callbacks with status %s", rec_index(r), r->calls,
                   evexec_errname(r->status));
    if (!res || res->magic != RES_MAGIC || res->rec != r) {
        fail_later("job %u: cleanup of a result not its own (%p)", rec_index(r), result);
        return;
    }
    res->magic = 0;
    free(res);
}

static void window_remove(struct rec *r)
{
    if (r->wpos < 0)
        return;
    unsigned pos = (unsigned)r->wpos, last = --RD.nwin;
    if (pos != last) {
        RD.win[pos] = RD.win[last];
        RD.recs[RD.win[pos]].wpos = (int32_t)pos;
    }
    r->wpos = -1;
}

static void loop_submit(void);
static void loop_cancel(void);

static void stress_done(int status, void *result, void *arg)
{
    struct rec *r = arg;
    if (!on_loop())
        return;
    if (!r) {
        fail_later("a done callback for a rejected submit (arg NULL)");
        return;
    }
    uint32_t idx = rec_index(r);
    if (++r->calls != 1) {
        fail_later("job %u: callback number %u (status %s)", idx, r->calls,
                   evexec_errname(status));
        return;
    }
    RD.callbacks++;
    r->status = (int16_t)status;
    if (status == 0) {
        struct res *res = result;
        if (!r->ran)
            fail_later("job %u: status 0 but its work never ran", idx);
        if (res == NULL) {
            if (!r->null_result)
                fail_later("job %u: NULL result, work returned one", idx);
        } else if (res->magic != RES_MAGIC || res->rec != r) {
            fail_later("job %u: result %p is not its own", idx, result);
        } else {
            res->magic = 0;
            free(res);
        }
    } else if (status == -ECANCELED || status == -ETIMEDOUT) {
        if (result != NULL)
            fail_later("job %u: status %s with result %p", idx, evexec_errname(status), result);
        if (status == -ETIMEDOUT && r->timeout_ms == 0)
            fail_later("job %u: -ETIMEDOUT without a deadline", idx);
    } else {
        fail_later("job %u: status %s", idx, evexec_errname(status));
    }
    if (r->origin == O_LOOP)
        window_remove(r);
    if (r->group >= 0)
        grp_member_done(r, status);

    if (RD.phase == 1 && !RD.port_freed) {
        unsigned k = rnd(&RD.rng, 32);
        if (k < 2)
            loop_cancel();
        for (unsigned n = rnd(&RD.rng, 3); n > 0; n--)
            loop_submit();
    } else if (RD.port_freed && rnd(&RD.rng, 64) == 0) {
        /* From a callback the freed port delivers: -ESHUTDOWN, no callback. */
        evexec_job_id id = ID_SENTINEL;
        int rc = evexec_submit_ex(RD.port, RD.pool, stress_work, stress_done, NULL, NULL, &id);
        if (rc != -ESHUTDOWN || id != ID_SENTINEL)
            fail_later("submit through a freed port: %s", evexec_errname(rc));
    }
}

static struct grp *new_grp(void)
{
    if (RD.nopen >= MAX_OPEN_GROUPS || RD.ngrps >= RD.capgrps)
        return NULL;
    static const int hows[] = {EVEXEC_GROUP_ALL, EVEXEC_GROUP_FIRST,
                               EVEXEC_GROUP_FIRST | EVEXEC_GROUP_CANCEL_REST};
    unsigned gi = RD.ngrps;
    struct grp *g = &RD.grps[gi];
    memset(g, 0, sizeof *g);
    g->how = hows[rnd(&RD.rng, 3)];
    g->target = 1 + (int)rnd(&RD.rng, 12);
    int rc = evexec_group_new(&g->h, RD.port, g->how, group_cb, g);
    if (rc != 0) {
        fail_later("group_new: %s", evexec_errname(rc));
        return NULL;
    }
    RD.ngrps++;
    RD.open[RD.nopen++] = gi;
    return g;
}

/* Closes (or cancels) a group still open; its callback never runs inside. */
static void end_group(unsigned slot, int cancel)
{
    unsigned gi = RD.open[slot];
    struct grp *g = &RD.grps[gi];
    int calls = g->calls, rc;
    if (cancel) {
        rc = evexec_group_cancel(g->h);
        if (rc != 0)
            fail_later("group %u: cancel: %s", gi, evexec_errname(rc));
        g->cancelled = g->closed = 1;
    } else {
        rc = evexec_group_close(g->h);
        if (rc != 0)
            fail_later("group %u: close: %s", gi, evexec_errname(rc));
        g->closed = 1;
    }
    if (g->calls != calls)
        fail_later("group %u: callback ran inside close/cancel", gi);
    RD.open[slot] = RD.open[--RD.nopen];
}

static void loop_submit(void)
{
    if (RD.phase != 1 || RD.nwin >= WINDOW || RD.shut_cancel)
        return;
    struct rec *r = claim(O_LOOP, &RD.rng);
    if (!r)
        return;
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    unsigned k = rnd(&RD.rng, 8);
    o.priority = prios[r->prio_idx];
    if (k < 3) {
        r->timeout_ms = 1 + rnd(&RD.rng, 20);
        o.timeout_ms = r->timeout_ms;
        o.cleanup = cleanup_cb;
    }
    struct grp *g = NULL;
    if (rnd(&RD.rng, 4) == 0) {
        if (RD.nopen && rnd(&RD.rng, 3))
            g = &RD.grps[RD.open[rnd(&RD.rng, RD.nopen)]];
        else
            g = new_grp();
        if (g) {
            o.group = g->h;
            r->group = (int32_t)(g - RD.grps);
        }
    }
    int use_plain = !o.timeout_ms && !g && r->prio_idx == 1 && rnd(&RD.rng, 2);
    evexec_job_id id = ID_SENTINEL;
    int rc = use_plain ? evexec_submit_ex(RD.port, RD.pool, stress_work, stress_done, r, NULL, &id)
                       : evexec_submit_ex(RD.port, RD.pool, stress_work, stress_done, r, &o, &id);
    r->submit_rc = (int16_t)rc;
    if (rc == 0) {
        r->accepted = 1;
        r->id = id;
        if (id == 0 || id == ID_SENTINEL)
            fail_later("job %u: accepted with id %#" PRIx64, rec_index(r), id);
        RD.loop_accepted++;
        atomic_fetch_add(&RD.accepted_total, 1);
        if (!r->calls) { /* never delivered inside the submit */
            r->wpos = (int32_t)RD.nwin;
            RD.win[RD.nwin++] = rec_index(r);
        } else {
            fail_later("job %u: callback ran inside evexec_submit_ex()", rec_index(r));
        }
        if (g) {
            g->members++;
            if (g->members >= g->target && g->h && !g->closed) {
                for (unsigned i = 0; i < RD.nopen; i++)
                    if (&RD.grps[RD.open[i]] == g) {
                        end_group(i, 0);
                        break;
                    }
            }
        }
    } else {
        r->group = -1;
        if (id != ID_SENTINEL)
            fail_later("failed submit (%s) wrote the id", evexec_errname(rc));
        if (rc != -EAGAIN && rc != -ESHUTDOWN)
            fail_later("submit_ex: %s", evexec_errname(rc));
        if (rc == -ESHUTDOWN && !atomic_load(&RD.shut_any))
            fail_later("submit_ex: -ESHUTDOWN before any shutdown");
    }
}

/* A closed group still waiting for its callback refuses new members. */
static void submit_to_closed_group(void)
{
    for (unsigned gi = RD.ngrps; gi-- > 0;) {
        struct grp *g = &RD.grps[gi];
        if (!g->h || !g->closed || g->calls)
            continue;
        struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
        evexec_job_id id = ID_SENTINEL;
        o.group = g->h;
        int rc = evexec_submit_ex(RD.port, RD.pool, stress_work, stress_done, NULL, &o, &id);
        if (rc != -EINVAL || id != ID_SENTINEL)
            fail_later("submit to closed group %u: %s", gi, evexec_errname(rc));
        RD.group_einval++;
        return;
    }
}

static void loop_cancel(void)
{
    if (!RD.nwin || RD.port_freed)
        return;
    struct rec *r = &RD.recs[RD.win[rnd(&RD.rng, RD.nwin)]];
    int rc = evexec_cancel(RD.port, r->id);
    switch (rc) {
    case 0:
        if (r->cflags)
            fail_later("job %u: cancel 0 after an earlier cancel (%#x)", rec_index(r), r->cflags);
        r->cflags |= C_OK;
        RD.cancels[0]++;
        break;
    case -EBUSY:
        if (r->cflags & (C_OK | C_ALREADY))
            fail_later("job %u: -EBUSY after it was cancelled (%#x)", rec_index(r), r->cflags);
        r->cflags |= C_BUSY;
        RD.cancels[1]++;
        break;
    case -EALREADY:
        if (r->cflags & C_BUSY)
            fail_later("job %u: -EALREADY after -EBUSY", rec_index(r));
        r->cflags |= C_ALREADY;
        RD.cancels[2]++;
        break;
    default:
        fail_later("job %u (not delivered): cancel %s", rec_index(r), evexec_errname(rc));
    }
    if (rnd(&RD.rng, 4) == 0) { /* an id delivered long ago, or 0 */
        rc = evexec_cancel(RD.port, 0);
        if (rc != -ENOENT)
            fail_later("cancel of id 0: %s", evexec_errname(rc));
        RD.stale_noent++;
    }
}

static void end_phase1(void)
{
    RD.phase = 2;
    if (RD.ending == END_CANCEL_LOOP) {
        atomic_store(&RD.shut_any, 1);
        int rc = evexec_pool_shutdown(RD.pool, EVEXEC_CANCEL);
        if (rc != 0)
            fail_later("shutdown(CANCEL) from the loop: %s", evexec_errname(rc));
        RD.shut_cancel = 1;
    } else if (RD.ending == END_CANCEL_THREAD) {
        atomic_store(&RD.shut_request, 1);
    }
    event_base_loopbreak(RD.base);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (RD.phase != 1)
        return;
    if (RD.loop_accepted >= RD.target_loop || now_ns() - RD.t_start > RD.t_budget) {
        end_phase1();
        return;
    }
    for (unsigned n = 1 + rnd(&RD.rng, 6); n > 0; n--)
        loop_submit();
    unsigned k = rnd(&RD.rng, 16);
    if (k < 3)
        loop_cancel();
    else if (k == 3 && RD.nopen)
        end_group(rnd(&RD.rng, RD.nopen), 0);
    else if (k == 4 && RD.nopen && rnd(&RD.rng, 3) == 0)
        end_group(rnd(&RD.rng, RD.nopen), 1);
    else if (k == 5)
        submit_to_closed_group();
}

/* --- the other threads ----------------------------------------------------- */

struct foreign {
    int n;
    unsigned rng;
    pthread_t th;
};

static void *foreign_main(void *arg)
{
    struct foreign *f = arg;
    while (!atomic_load(&RD.stop)) {
        struct rec *r = claim(O_FOREIGN, &f->rng);
        if (!r)
            break;
        struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
        o.priority = prios[r->prio_idx];
        unsigned k = rnd(&f->rng, 16);
        o.wait_ms = k < 10 ? 0 : k < 15 ? 1 + (int)rnd(&f->rng, 10) : EVEXEC_WAIT_FOREVER;
        int plain = rnd(&f->rng, 4) == 0 && r->prio_idx == 1;
        if (plain)
            o.wait_ms = 0;
        int rc = evexec_submit_threadsafe(RD.port, RD.pool, stress_work, stress_done, r,
                                          plain ? NULL : &o);
        r->submit_rc = (int16_t)rc;
        if (rc == 0) {
            r->accepted = 1;
            atomic_fetch_add(&RD.accepted_total, 1);
            atomic_fetch_add(&RD.ts_rc[0], 1);
        } else if (rc == -EAGAIN) {
            atomic_fetch_add(&RD.ts_rc[1], 1);
            sched_yield();
        } else if (rc == -ETIMEDOUT && o.wait_ms > 0) {
            atomic_fetch_add(&RD.ts_rc[2], 1);
        } else if (rc == -ESHUTDOWN) {
            atomic_fetch_add(&RD.ts_rc[3], 1);
            if (!atomic_load(&RD.shut_any))
                fail_later("foreign %d: -ESHUTDOWN before any shutdown", f->n);
            sleep_us(200);
        } else {
            fail_later("foreign %d: threadsafe submit (wait_ms %d): %s", f->n, o.wait_ms,
                       evexec_errname(rc));
        }
        if (rnd(&f->rng, 4) == 0)
            sleep_us(20 + rnd(&f->rng, 300));
    }
    atomic_fetch_add(&RD.threads_out, 1);
    return NULL;
}

struct resizer {
    unsigned rng;
    pthread_t th;
};

static void *resizer_main(void *arg)
{
    struct resizer *z = arg;
    int shut = 0;
    while (!atomic_load(&RD.stop)) {
        if (!shut && atomic_load(&RD.shut_request)) {
            atomic_store(&RD.shut_any, 1);
            int rc = evexec_pool_shutdown(RD.pool, EVEXEC_CANCEL);
            if (rc != 0)
                fail_later("shutdown(CANCEL) from the resizer: %s", evexec_errname(rc));
            shut = 1;
            atomic_store(&RD.shut_done, 1);
        }
        unsigned k = rnd(&z->rng, 8);
        if (k < 4) {
            unsigned max = 1 + rnd(&z->rng, 4), min = rnd(&z->rng, max + 1);
            size_t mq = 4 + rnd(&z->rng, 61);
            int bad = rnd(&z->rng, 16) == 0;
            if (bad)
                min = max + 1;
            int rc = evexec_pool_resize(RD.pool, min, max, mq);
            if (bad) {
                if (rc != -EINVAL)
                    fail_later("resize(min %u > max %u): %s", min, max, evexec_errname(rc));
                atomic_fetch_add(&RD.resize_einval, 1);
            } else if (rc == 0 || (rc == -ESHUTDOWN && atomic_load(&RD.shut_any)) ||
                       rc == -EAGAIN) {
                atomic_fetch_add(&RD.resizes, 1);
            } else {
                fail_later("resize(%u, %u, %zu): %s", min, max, mq, evexec_errname(rc));
            }
        } else if (k < 7) {
            int rc = evexec_pool_set_class_limit(RD.pool, prios[rnd(&z->rng, 3)],
                                                 rnd(&z->rng, 4));
            if (rc != 0)
                fail_later("set_class_limit: %s", evexec_errname(rc));
            atomic_fetch_add(&RD.limits, 1);
        } else {
            struct evexec_pool_stats s;
            memset(&s, 0, sizeof s);
            s.size = sizeof s;
            int rc = evexec_pool_stats(RD.pool, &s);
            if (rc != 0)
                fail_later("pool_stats: %s", evexec_errname(rc));
            else if (s.queued != s.queued_high + s.queued_normal + s.queued_low ||
                     s.running != s.running_high + s.running_normal + s.running_low ||
                     s.dropped > s.cancelled)
                fail_later("pool_stats snapshot inconsistent: queued %zu = %zu+%zu+%zu, running "
                           "%u = %u+%u+%u, dropped %" PRIu64 " cancelled %" PRIu64,
                           s.queued, s.queued_high, s.queued_normal, s.queued_low, s.running,
                           s.running_high, s.running_normal, s.running_low, s.dropped,
                           s.cancelled);
        }
        sleep_us(100 + rnd(&z->rng, 1500));
    }
    /* The ending asked for a shutdown from here: it happens even if the
     * stop came first. */
    if (!shut && atomic_load(&RD.shut_request)) {
        atomic_store(&RD.shut_any, 1);
        int rc = evexec_pool_shutdown(RD.pool, EVEXEC_CANCEL);
        if (rc != 0)
            fail_later("shutdown(CANCEL) from the resizer: %s", evexec_errname(rc));
        atomic_store(&RD.shut_done, 1);
    }
    atomic_fetch_add(&RD.threads_out, 1);
    return NULL;
}

/* --- the round ---------------------------------------------------------------- */

/* Runs the loop until cond() holds; fails after the watchdog. */
static void pump(int (*cond)(void), const char *what)
{
    uint64_t end = now_ns() + WATCHDOG_NS;
    while (!cond()) {
        if (now_ns() > end) {
            struct evexec_pool_stats s = pool_stats(RD.pool);
            ck_abort_msg("round %d: stalled waiting for %s: accepted %" PRIu64 ", callbacks %" PRIu64
                         "; pool threads %u running %u queued %zu submitted %" PRIu64
                         " completed %" PRIu64 " cancelled %" PRIu64,
                         RD.round, what, atomic_load(&RD.accepted_total), RD.callbacks, s.threads,
                         s.running, s.queued, s.submitted, s.completed, s.cancelled);
        }
        event_base_loop(RD.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (!cond()) {
            /* Block for at most 1 ms on a timer of our own, removed again:
             * a pending event_base_loopexit() would end the round's last
             * event_base_dispatch() early, before the port is released. */
            struct timeval tv = {0, 1000};
            evtimer_add(RD.pump_timer, &tv);
            event_base_loop(RD.base, EVLOOP_ONCE);
            evtimer_del(RD.pump_timer);
        }
    }
}

static int cond_shut_done(void)
{
    return atomic_load(&RD.shut_done);
}

static int cond_threads_out(void)
{
    return atomic_load(&RD.threads_out) == (int)RD.nforeign + 1;
}

static int cond_no_followup(void)
{
    return atomic_load(&RD.in_followup) == 0;
}

static int cond_all_delivered(void)
{
    return RD.callbacks == atomic_load(&RD.accepted_total);
}

static int cond_pool_idle(void)
{
    struct evexec_pool_stats s = pool_stats(RD.pool);
    /* Every thread idle too: one still starting may be between its
     * worker_init and the pool's count of it. */
    if (s.running == 0 && s.queued == 0 && s.threads == s.idle)
        return 1;
    sleep_us(1000);
    return 0;
}

static const char *ending_name(int e)
{
    static const char *const n[] = {"shutdown(CANCEL) from the loop",
                                    "shutdown(CANCEL) from another thread", "port freed busy",
                                    "drain"};
    return n[e];
}

static void run_round(unsigned seed, int round, uint64_t jobs, uint64_t budget_ns)
{
    memset(&RD, 0, sizeof RD);
    pthread_mutex_init(&RD.err_mu, NULL);
    RD.rng = seed ^ (0x9e3779b9u * (unsigned)(round + 1));
    RD.round = round;
    RD.loop = pthread_self();
    RD.target_loop = jobs;
    RD.t_budget = budget_ns;
    RD.ending = (int)rnd(&RD.rng, END_COUNT);
    RD.nforeign = 2 + rnd(&RD.rng, MAX_FOREIGN - 1);
    RD.cap = (uint32_t)(jobs * 6 + 4096);
    RD.recs = calloc(RD.cap, sizeof *RD.recs);
    ck_assert_ptr_nonnull(RD.recs);
    RD.capgrps = (unsigned)(jobs / 2 + 64);
    RD.grps = calloc(RD.capgrps, sizeof *RD.grps);
    ck_assert_ptr_nonnull(RD.grps);
    RD.base = event_base_new();
    ck_assert_ptr_nonnull(RD.base);

    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    po.max_threads = 1 + rnd(&RD.rng, 4);
    po.min_threads = rnd(&RD.rng, po.max_threads + 1);
    po.max_queued = 4 + rnd(&RD.rng, 61);
    po.idle_timeout_ms = rnd(&RD.rng, 2) ? 1 + rnd(&RD.rng, 5) : 0;
    po.name = "stressF";
    po.overflow = rnd(&RD.rng, 4) ? EVEXEC_OVERFLOW_DROP_OLDEST : EVEXEC_OVERFLOW_REJECT;
    po.max_running_high = rnd(&RD.rng, 3);
    po.max_running_normal = rnd(&RD.rng, 3);
    po.max_running_low = rnd(&RD.rng, 3);
    po.flags = rnd(&RD.rng, 2) ? EVEXEC_POOL_HISTOGRAMS : 0;
    po.worker_init = w_init;
    po.worker_fini = w_fini;
    po.worker_arg = &RD;
    /* Failing worker_init in one round of three; min_threads 0 then, so
     * that a failed start of a min_threads worker cannot fail pool_new. */
    if (rnd(&RD.rng, 3) == 0) {
        RD.init_fail = 5 + (int)rnd(&RD.rng, 20);
        po.min_threads = 0;
    }
    RD.po = po;
    ck_assert_int_eq(evexec_pool_new(&RD.pool, &po), 0);
    struct evexec_port_opts pto = EVEXEC_PORT_OPTS_INIT;
    static const unsigned batches[] = {0, 1, 5, 64};
    pto.max_batch = batches[rnd(&RD.rng, 4)];
    ck_assert_int_eq(evexec_port_new(&RD.port, RD.base, &pto), 0);

    RD.tick = event_new(RD.base, -1, EV_PERSIST, on_tick, NULL);
    RD.pump_timer = evtimer_new(RD.base, noop_event, NULL);
    ck_assert_ptr_nonnull(RD.pump_timer);
    ck_assert_ptr_nonnull(RD.tick);
    struct timeval period = {0, 1000};
    ck_assert_int_eq(event_add(RD.tick, &period), 0);

    atomic_store(&RD.followups_on, 1);
    RD.phase = 1;
    RD.t_start = now_ns();
    struct foreign fr[MAX_FOREIGN];
    struct resizer rz;
    for (unsigned i = 0; i < RD.nforeign; i++) {
        fr[i].n = (int)i;
        fr[i].rng = RD.rng ^ (0x85ebca6bu * (i + 1));
        ck_assert_int_eq(pthread_create(&fr[i].th, NULL, foreign_main, &fr[i]), 0);
    }
    rz.rng = RD.rng ^ 0xc2b2ae35u;
    ck_assert_int_eq(pthread_create(&rz.th, NULL, resizer_main, &rz), 0);

    /* Phase 1: everything races until the tick ends it. */
    for (unsigned n = 0; n < 16; n++)
        loop_submit();
    ck_assert_int_ge(event_base_dispatch(RD.base), 0);
    ck_assert_int_eq(RD.phase, 2);

    /* Phase 2: the shutdown from the other thread (racing the foreign
     * submitters), then the submitters stop, then groups close. */
    if (RD.ending == END_CANCEL_THREAD)
        pump(cond_shut_done, "the resizer's shutdown");
    atomic_store(&RD.stop, 1);
    pump(cond_threads_out, "the threads to end");
    for (unsigned i = 0; i < RD.nforeign; i++)
        ck_assert_int_eq(pthread_join(fr[i].th, NULL), 0);
    ck_assert_int_eq(pthread_join(rz.th, NULL), 0);
    atomic_store(&RD.followups_on, 0);
    pump(cond_no_followup, "follow-up submits to return");
    while (RD.nopen)
        end_group(RD.nopen - 1, rnd(&RD.rng, 4) == 0);

    if (RD.ending == END_PORT_FREE) {
        ck_assert_int_eq(evexec_port_free(RD.port), 0);
        RD.port_freed = 1;
    } else {
        pump(cond_all_delivered, "every callback");
        struct evexec_port_stats ps = port_stats(RD.port);
        ck_assert_uint_eq(ps.delivered, RD.callbacks);
        ck_assert_int_eq(evexec_port_free(RD.port), 0);
        RD.port_freed = 1;
    }
    event_del(RD.tick);
    event_free(RD.tick);
    RD.tick = NULL;
    /* The port releases itself once its last job is delivered (late
     * results included); then the base has nothing left. */
    ck_assert_int_ge(event_base_dispatch(RD.base), 0); /* pump_timer is never left pending */
    ck_assert(!event_base_got_exit(RD.base)); /* ended by the port's release */

    pump(cond_pool_idle, "the pool to be idle");
    struct evexec_pool_stats st = pool_stats(RD.pool);
    struct evexec_pool_histograms h;
    memset(&h, 0, sizeof h);
    h.size = sizeof h;
    int hrc = evexec_pool_histograms(RD.pool, &h);
    ck_assert_int_eq(evexec_pool_free(RD.pool), 0);
    double secs = (double)(now_ns() - RD.t_start) / 1e9;

    /* Every record. */
    uint64_t accepted = 0, rejected = 0, missing = 0, dup = 0, rejected_called = 0;
    uint64_t ok = 0, cancelled = 0, timedout = 0, ran = 0, late = 0, cleanups = 0;
    uint64_t timedout_not_ran = 0, unexplained_cancel = 0, bad = 0, wrong_state = 0;
    uint64_t by_origin[4] = {0};
    char missing_why[200] = "";
    char why[256] = "";
    int shut_cancel = RD.ending == END_CANCEL_LOOP || RD.ending == END_CANCEL_THREAD;
    uint32_t nrecs = atomic_load(&RD.nrecs);
    for (uint32_t i = 0; i < nrecs; i++) {
        const struct rec *r = &RD.recs[i];
        if (!r->origin)
            continue; /* claimed by a thread that then stopped: never submitted */
        if (!r->accepted) {
            rejected++;
            if (r->calls)
                rejected_called++;
            if (r->ran)
                bad++, snprintf(why, sizeof why, "rejected job %u ran", i);
            continue;
        }
        accepted++;
        by_origin[r->origin]++;
        ran += r->ran;
        wrong_state += r->wrong_state;
        if (r->calls == 0) {
            if (!missing++)
                snprintf(missing_why, sizeof missing_why,
                         "first: job %u origin %u kind %u prio %u timeout %u group %d ran %u "
                         "cancel %#x",
                         i, r->origin, r->kind, r->prio_idx, r->timeout_ms, r->group, r->ran,
                         r->cflags);
            continue;
        }
        if (r->calls > 1)
            dup++;
        cleanups += r->cleanups;
        if (r->status == 0) {
            ok++;
            if (r->cflags & (C_OK | C_ALREADY))
                bad++, snprintf(why, sizeof why, "job %u: status 0 after cancel %#x", i, r->cflags);
            if (r->cleanups)
                bad++, snprintf(why, sizeof why, "job %u: status 0 and a cleanup", i);
        } else if (r->status == -ECANCELED) {
            cancelled++;
            if (r->ran)
                bad++, snprintf(why, sizeof why, "job %u: -ECANCELED but its work ran", i);
            if (r->cflags & C_BUSY)
                bad++, snprintf(why, sizeof why, "job %u: -ECANCELED after -EBUSY", i);
            const struct grp *g = r->group >= 0 ? &RD.grps[r->group] : NULL;
            int explained = (r->cflags & (C_OK | C_ALREADY)) || shut_cancel ||
                            RD.ending == END_PORT_FREE ||
                            (g && (g->cancelled || (g->how & EVEXEC_GROUP_CANCEL_REST)));
            if (!explained)
                unexplained_cancel++;
        } else if (r->status == -ETIMEDOUT) {
            timedout++;
            if (r->cflags & C_OK)
                bad++, snprintf(why, sizeof why, "job %u: -ETIMEDOUT after cancel 0", i);
            if (!r->ran)
                timedout_not_ran++;
            if (r->ran && !r->null_result) {
                late++;
                if (r->cleanups != 1)
                    bad++, snprintf(why, sizeof why, "job %u: late result cleaned %u times", i,
                                    r->cleanups);
            } else if (r->cleanups) {
                bad++, snprintf(why, sizeof why, "job %u: cleanup without a late result", i);
            }
        }
        if ((r->cflags & C_BUSY) && !r->ran)
            bad++, snprintf(why, sizeof why, "job %u: cancel said -EBUSY, work never ran", i);
    }
    uint64_t gmissing = 0;
    for (unsigned gi = 0; gi < RD.ngrps; gi++) {
        if (RD.grps[gi].calls != 1)
            gmissing++;
    }

    printf("check_stress_features: round %d: %s; threads %u-%u queued %zu %s%s limits %u/%u/%u "
           "init_fail 1/%d batch %u, %u foreign: accepted %" PRIu64 " (loop %" PRIu64
           " foreign %" PRIu64 " follow-up %" PRIu64 ") rejected %" PRIu64 "; ok %" PRIu64
           " cancelled %" PRIu64 " (dropped %" PRIu64 ") timed out %" PRIu64 " (late %" PRIu64
           "); groups %u; cancel 0/EBUSY/EALREADY %" PRIu64 "/%" PRIu64 "/%" PRIu64
           "; threadsafe 0/EAGAIN/ETIMEDOUT/ESHUTDOWN/EDEADLK %" PRIu64 "/%" PRIu64 "/%" PRIu64
           "/%" PRIu64 "/%" PRIu64 "; resizes %" PRIu64 " limits %" PRIu64 "; workers init %" PRIu64
           " (failed %" PRIu64 ") fini %" PRIu64 "; %.2f s\n",
           round, ending_name(RD.ending), po.min_threads, po.max_threads, po.max_queued,
           po.overflow ? "drop-oldest" : "reject", po.flags ? " histograms" : "",
           po.max_running_high, po.max_running_normal, po.max_running_low, RD.init_fail,
           pto.max_batch, RD.nforeign, accepted, by_origin[O_LOOP], by_origin[O_FOREIGN],
           by_origin[O_FOLLOW], rejected, ok, cancelled, st.dropped, timedout, late, RD.ngrps,
           RD.cancels[0], RD.cancels[1], RD.cancels[2], atomic_load(&RD.ts_rc[0]),
           atomic_load(&RD.ts_rc[1]), atomic_load(&RD.ts_rc[2]), atomic_load(&RD.ts_rc[3]),
           atomic_load(&RD.ts_rc[4]), atomic_load(&RD.resizes), atomic_load(&RD.limits),
           atomic_load(&RD.inits), atomic_load(&RD.init_failed), atomic_load(&RD.finis), secs);
    fflush(stdout);

    ck_assert_msg(RD.errors == 0, "round %d: %" PRIu64 " errors, first: %s", round, RD.errors,
                  RD.first_error);
    ck_assert_uint_eq(atomic_load(&RD.wrong_thread), 0);
    ck_assert_msg(missing == 0, "round %d: %" PRIu64 " accepted jobs never called back (%s)",
                  round, missing, missing_why);
    ck_assert_msg(dup == 0, "round %d: %" PRIu64 " jobs called back twice", round, dup);
    ck_assert_msg(rejected_called == 0, "round %d: %" PRIu64 " rejected jobs called back", round,
                  rejected_called);
    ck_assert_msg(bad == 0, "round %d: %" PRIu64 " bad records, last: %s", round, bad, why);
    ck_assert_uint_eq(RD.callbacks, accepted);
    ck_assert_uint_eq(accepted, atomic_load(&RD.accepted_total));
    ck_assert_uint_eq(ok + cancelled + timedout, accepted);
    ck_assert_uint_eq(cleanups, late);
    ck_assert_uint_eq(RD.cleanups, late);
    ck_assert_uint_eq(wrong_state, 0);
    ck_assert_msg(gmissing == 0, "round %d: %" PRIu64 " of %u groups without exactly one callback",
                  round, gmissing, RD.ngrps);

    /* The pool's counters against the records. */
    ck_assert_uint_eq(st.submitted, accepted);
    ck_assert_uint_eq(st.completed, ran);
    ck_assert_uint_eq(st.submitted, st.completed + st.cancelled);
    ck_assert_uint_eq(st.cancelled, cancelled + timedout_not_ran);
    ck_assert_uint_eq(st.timed_out, timedout);
    ck_assert_uint_le(st.dropped, st.cancelled);
    if (po.overflow == EVEXEC_OVERFLOW_REJECT)
        ck_assert_uint_eq(st.dropped, 0);
    if (!RD.init_fail)
        ck_assert_msg(unexplained_cancel <= st.dropped,
                      "round %d: %" PRIu64 " cancels explained by nothing, %" PRIu64 " dropped",
                      round, unexplained_cancel, st.dropped);
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_uint_eq(st.running, 0);
    ck_assert_uint_eq(st.worker_init_failed, atomic_load(&RD.init_failed));
    ck_assert_uint_eq(st.threads_started, atomic_load(&RD.inits));
    ck_assert_uint_eq(atomic_load(&RD.finis),
                      atomic_load(&RD.inits) - atomic_load(&RD.init_failed));
    if (po.flags & EVEXEC_POOL_HISTOGRAMS) {
        ck_assert_int_eq(hrc, 0);
        uint64_t w = 0, run = 0;
        for (int b = 0; b < EVEXEC_HIST_BUCKETS; b++)
            w += h.wait[b], run += h.run[b];
        ck_assert_uint_eq(w, ran);
        ck_assert_uint_eq(run, ran);
    } else {
        ck_assert_int_eq(hrc, -ENOTSUP);
    }

    event_free(RD.pump_timer);
    RD.pump_timer = NULL;
    event_base_free(RD.base);
    free(RD.grps);
    free(RD.recs);
    pthread_mutex_destroy(&RD.err_mu);
}

START_TEST(test_features_stress)
{
    unsigned seed = stress_seed();
    unsigned long rounds = env_knob("EVEXEC_STRESS_FEATURES_ROUNDS", 8, 4, 1, 100000);
    unsigned long jobs = env_knob("EVEXEC_STRESS_FEATURES_JOBS", 8000, 2000, 16, 100000000);
    unsigned long secs = env_knob("EVEXEC_STRESS_FEATURES_SECONDS", 3, 20, 1, 86400);
    printf("check_stress_features: seed=%u rounds=%lu jobs=%lu seconds=%lu%s (replay: "
           "EVEXEC_STRESS_SEED=%u)\n",
           seed, rounds, jobs, secs, under_valgrind() ? " (valgrind sizes)" : "", seed);
    fflush(stdout);
    uint64_t t0 = now_ns();
    for (unsigned long r = 0; r < rounds; r++)
        run_round(seed, (int)r, jobs, (uint64_t)secs * 1000000000u);
    printf("check_stress_features: %lu rounds in %.2f s\n", rounds,
           (double)(now_ns() - t0) / 1e9);
    fflush(stdout);
}
END_TEST

/* --- hostile mode --------------------------------------------------------- */
/*
 * The executor used the way the header warns about, from several threads at
 * once: a pool whose worker_init fails always, never, every other time or
 * at random, resized to large minimums from one thread while others submit
 * futures and cancel them and a third shuts the pool down at a random
 * moment; meanwhile the test thread frees ports and makes new ones (often
 * at the same address) and cancels the old ports' ids on the new ones.
 * Every call must return (the tcase timeout fails one that loops), every
 * accepted job's future must complete, a job never runs in a pool whose
 * every worker_init fails, and a stale id is always -ENOENT.
 * EVEXEC_STRESS_HOSTILE_SECONDS (default 2; 1..600).
 */
#define HOSTILE_FUTURES 256

struct hostile {
    evexec_pool *pool;
    int init_mode;              /* 0 never fails, 1 always, 2 every other, 3 random */
    _Atomic unsigned inits;
    _Atomic int stop;           /* the shutdown came: submitters end */
    unsigned seed;
    pthread_mutex_t mu;
    evexec_future *futures[HOSTILE_FUTURES];
    int nfutures;
    char bad[160];
};

__attribute__((format(printf, 2, 3))) static void hostile_bad(struct hostile *h,
                                                              const char *fmt, ...);
static void hostile_bad(struct hostile *h, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&h->mu);
    if (!h->bad[0]) {
        va_start(ap, fmt);
        vsnprintf(h->bad, sizeof h->bad, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&h->mu);
}

static int hostile_init(void *arg, void **state)
{
    struct hostile *h = arg;
    unsigned n = atomic_fetch_add(&h->inits, 1);
    (void)state;
    switch (h->init_mode) {
    case 0:
        return 0;
    case 1:
        return -1;
    case 2:
        return (int)(n & 1);
    default:
        return (int)((n * 2654435761u) >> 31);
    }
}

static void *hostile_work(evexec_job *job, void *arg)
{
    struct hostile *h = arg;
    (void)job;
    if (h->init_mode == 1)
        hostile_bad(h, "a job ran in a pool whose every worker_init fails");
    return arg;
}

static void *hostile_resizer(void *arg)
{
    struct hostile *h = arg;
    unsigned seed = h->seed ^ 0x51u;
    for (int i = 0; i < 40; i++) {
        /* Now and then near the most threads a pool may have: the more
         * threads a call must start, the likelier that they exit as fast
         * as they start. */
        unsigned big = under_valgrind() ? 64 : 1000; /* valgrind: 500 threads at most */
        unsigned max = rnd(&seed, 4) ? 1 + rnd(&seed, 64) : big;
        unsigned min = max == big ? big : rnd(&seed, max + 1);
        int rc = evexec_pool_resize(h->pool, min, max, 1 + rnd(&seed, 512));
        if (rc == -ESHUTDOWN)
            break;
        if (rc != 0 && rc != -EAGAIN)
            hostile_bad(h, "pool_resize(%u, %u) = %d", min, max, rc);
    }
    return NULL;
}

static void *hostile_caller(void *arg)
{
    struct hostile *h = arg;
    unsigned seed = h->seed ^ (unsigned)(uintptr_t)pthread_self();
    while (!atomic_load(&h->stop)) {
        evexec_future *f;
        int rc = evexec_pool_call(h->pool, hostile_work, h, &f);
        if (rc == -ESHUTDOWN)
            break;
        if (rc == -EAGAIN)
            continue;
        if (rc != 0) {
            hostile_bad(h, "pool_call = %d", rc);
            break;
        }
        if (rnd(&seed, 4) == 0) {
            rc = evexec_future_cancel(f);
            if (rc != 0 && rc != -EALREADY && rc != -EBUSY)
                hostile_bad(h, "future_cancel = %d", rc);
        }
        pthread_mutex_lock(&h->mu);
        int full = h->nfutures == HOSTILE_FUTURES;
        if (!full)
            h->futures[h->nfutures++] = f;
        pthread_mutex_unlock(&h->mu);
        if (full) {
            evexec_future_free(f); /* cancels it if pending */
            break;
        }
    }
    return NULL;
}

static void *hostile_shutter(void *arg)
{
    struct hostile *h = arg;
    unsigned seed = h->seed ^ 0x5eu;
    for (unsigned i = rnd(&seed, 2000); i > 0; i--)
        sched_yield(); /* a random moment, not an ordering */
    int rc = evexec_pool_shutdown(h->pool, (int)rnd(&seed, 2));
    if (rc != 0)
        hostile_bad(h, "pool_shutdown = %d", rc);
    atomic_store(&h->stop, 1);
    return NULL;
}

static void hostile_pool_round(unsigned seed)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct hostile *h = calloc(1, sizeof *h);
    pthread_t t[4];
    int rc;

    ck_assert_ptr_nonnull(h);
    h->seed = seed;
    h->init_mode = (int)(seed % 4);
    pthread_mutex_init(&h->mu, NULL);
    o.max_threads = under_valgrind() ? 64 : 1000;
    o.min_threads = rnd(&seed, 8) ? rnd(&seed, 65) : o.max_threads;
    o.stack_size = 64 * 1024;
    o.max_queued = 1 + rnd(&seed, 256);
    o.worker_init = hostile_init;
    o.worker_arg = h;
    rc = evexec_pool_new(&h->pool, &o);
    ck_assert_msg(rc == 0 || rc == -EAGAIN, "pool_new(min %u) = %d", o.min_threads, rc);
    if (rc == 0) {
        /* Each minimum thread started once, even when they exit at once
         * (a loop that waited for the count started thousands). */
        uint64_t started = pool_stats(h->pool).threads_started;
        ck_assert_msg(started <= o.min_threads, "pool_new(min %u) started %" PRIu64 " threads",
                      o.min_threads, started);
        ck_assert_int_eq(pthread_create(&t[0], NULL, hostile_resizer, h), 0);
        ck_assert_int_eq(pthread_create(&t[1], NULL, hostile_caller, h), 0);
        ck_assert_int_eq(pthread_create(&t[2], NULL, hostile_caller, h), 0);
        ck_assert_int_eq(pthread_create(&t[3], NULL, hostile_shutter, h), 0);
        for (int i = 0; i < 4; i++)
            ck_assert_int_eq(pthread_join(t[i], NULL), 0);
        /* Every accepted job completes: run, cancelled, or stranded jobs
         * delivered -ECANCELED when no thread is left. */
        for (int i = 0; i < h->nfutures; i++) {
            void *r;
            rc = evexec_future_wait(h->futures[i], 10000);
            ck_assert_msg(rc == 0, "a future of a shut-down pool still pending after 10 s");
            rc = evexec_future_result(h->futures[i], &r);
            ck_assert_msg((rc == 0 && r == h) || (rc == -ECANCELED && !r), "future: %d", rc);
            evexec_future_free(h->futures[i]);
        }
        ck_assert_int_eq(evexec_pool_free(h->pool), 0);
        ck_assert_msg(!h->bad[0], "%s", h->bad);
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
}

static void hostile_count_done(int status, void *result, void *arg)
{
    (void)status;
    (void)result;
    ++*(int *)arg;
}

/* Ports freed and made again on one base: old ids never name new jobs. */
static void hostile_ports_round(unsigned seed, evexec_pool *pool)
{
    struct event_base *base = event_base_new();
    evexec_job_id old[4], id;
    evexec_port *port;
    int calls = 0, want = 0;

    ck_assert_ptr_nonnull(base);
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0);
    for (int k = 0; k < 8; k++) {
        unsigned n = 1 + rnd(&seed, 4);
        for (unsigned i = 0; i < n; i++) {
            ck_assert_int_eq(evexec_submit(port, pool, echo_work, hostile_count_done, &calls,
                                           &old[i]), 0);
            want++;
        }
        if (rnd(&seed, 2))
            run_until(base, &calls, want);
        ck_assert_int_eq(evexec_port_free(port), 0);
        ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0);
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, hostile_count_done, &calls, &id), 0);
        want++;
        for (unsigned i = 0; i < n; i++)
            ck_assert_int_eq(evexec_cancel(port, old[i]), -ENOENT);
    }
    run_until(base, &calls, want);
    ck_assert_int_eq(evexec_port_free(port), 0);
    while (event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED) > 0)
        event_base_loop(base, EVLOOP_ONCE);
    event_base_free(base);
}

START_TEST(test_hostile_stress)
{
    unsigned seed = stress_seed();
    unsigned long secs = env_knob("EVEXEC_STRESS_HOSTILE_SECONDS", 2, 2, 1, 600);
    evexec_pool *pool;
    unsigned long rounds = 0;

    printf("check_stress_features: hostile seed=%u seconds=%lu\n", seed, secs);
    fflush(stdout);
    ck_assert_int_eq(evexec_pool_new(&pool, NULL), 0);
    uint64_t end = now_ns() + (uint64_t)secs * 1000000000u;
    do {
        unsigned s = seed + (unsigned)rounds * 0x9E3779B9u;
        hostile_pool_round(s);
        hostile_ports_round(s, pool);
        rounds++;
    } while (now_ns() < end);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    printf("check_stress_features: hostile: %lu rounds in %lu s\n", rounds, secs);
    fflush(stdout);
}
END_TEST

static Suite *features_suite(void)
{
    Suite *s = suite_create("stress_features");
    TCase *tc = add_tcase(s, "features", 900, FX_FDS);
    tcase_add_test(tc, test_features_stress);
    /* A timeout fails a call that loops for ever. */
    tc = add_tcase(s, "hostile",
                   (double)env_knob("EVEXEC_STRESS_HOSTILE_SECONDS", 2, 2, 1, 600) + 60, FX_FDS);
    tcase_add_test(tc, test_hostile_stress);
    return s;
}

int main(void)
{
    return run_suite(features_suite());
}
