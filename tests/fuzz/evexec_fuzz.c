/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: a byte string read as a program of evexec calls.
 *
 * Each input is decoded, byte by byte, into calls on up to three pools and
 * two ports of one event_base: creation with valid and invalid options
 * (zero, tiny, absurd and newer-than-known sizes), submit with NULL handles
 * or work, to shut-down pools, with a full queue; cancel of live, cancelled,
 * running, delivered, zero and made-up ids; shutdown with every mode and
 * invalid ones, twice, escalated; pool and port free with work outstanding;
 * stats with every size; strerror() and errname() of any int; work that
 * shuts its own pool down, tries to free it (-EDEADLK), or calls loop-thread
 * functions from the worker (-EPERM); submits through a freed port from its
 * own callbacks (-ESHUTDOWN). Every return value is checked against what the
 * header allows in that state, and at the end every accepted job must have
 * had exactly one callback with a status its history explains. A violation
 * aborts with a message, which libFuzzer reports as a crash.
 *
 * Opcode bytes 0xd0 and up (those below keep their first meaning, so the
 * corpus stays meaningful) reach the API of issue 7: evexec_submit_ex()
 * with good and bad options (priority, deadline of 0, 1-5 ms, 20-60 ms, a
 * minute, above INT_MAX; cleanup; group; wait_ms; every size), where a job
 * with a deadline may end in 0 or -ETIMEDOUT (never before its deadline)
 * and a malloc'd result is freed exactly once, by the done callback or by
 * cleanup; evexec_submit_threadsafe() from the loop thread (a wait is
 * -EDEADLK, a deadline or group -EINVAL); groups of every mode and bad
 * ones, closed, cancelled (also from their callback), with members that
 * finish, time out or are cancelled, each callback checked against its
 * members' statuses and run exactly once; resize and class limits;
 * pool_new with overflow, class limits, flags and worker hooks (a failing
 * worker_init: jobs end -ECANCELED; worker_init and worker_fini balance
 * once the pool is freed; the state reaches the work function);
 * histograms; the default pool (NULL pool). Callbacks, cleanups and group
 * callbacks must run on the loop thread, never inside an evexec call.
 *
 * Opcode bytes 0xfc..0xff (taken from the top of that range) run
 * self-contained hostile ops: ports freed and made again (stale ids,
 * the default pool's free), resize racing a shutdown with failing
 * worker_init, loops with calls of every kind and their futures, and
 * loop_start/port_new with few fds left (see "Hostile use" below).
 *
 * Built two ways: with clang -fsanitize=fuzzer (./configure --enable-fuzz,
 * tests/fuzz/run.sh), and as tests/fuzz/evexec_fuzz_replay (replay.c), which
 * runs the corpus in tests/fuzz/corpus under any compiler, in `make check`.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>
#include <evexec.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NPOOLS 3
#define NPORTS 3
#define MAXJOBS 192
#define MAXGROUPS 16
/* S.pools[NPOOLS + q] models the default pool of port q (NULL pool). */
#define DEFPOOL(q) (NPOOLS + (q))

/* ------------------------------------------------------------------------ */
/* Input                                                                    */

struct input {
    const uint8_t *p, *end;
};

static unsigned u8(struct input *in)
{
    return in->p < in->end ? *in->p++ : 0;
}

static uint32_t u32(struct input *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | u8(in);
    return v;
}

static uint64_t u64(struct input *in)
{
    return (uint64_t)u32(in) << 32 | u32(in);
}

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...);

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "evexec_fuzz: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

#define EXPECT(cond, ...)       \
    do {                        \
        if (!(cond))            \
            fail(__VA_ARGS__);  \
    } while (0)

/* ------------------------------------------------------------------------ */
/* State of one input                                                       */

/* W_N kinds are decoded by the first opcodes (k % W_N); the new ones only
 * by submit_ex and threadsafe submits (k % W_ALL). */
enum {
    W_ECHO, W_SPIN, W_POLL, W_SHUT_DRAIN, W_SHUT_CANCEL, W_FREE_OWN, W_LOOP_CALLS, W_N,
    W_SLEEP = W_N,  /* 2 ms, polling its stop flag: lets deadlines pass */
    W_LOOP_CALLS_EX, /* loop-thread-only calls of the new API: -EPERM, -EDEADLK */
    W_ALL
};

/* The worker_arg of a pool made with hooks (one per pool slot). */
struct hooks {
    int slot;
    int fail;               /* worker_init fails */
    int with_fini;          /* init mallocs the state, fini frees it */
    _Atomic int inits, finis, bad;
};

#define STATE_MAGIC 0x5eedf00du
struct wstate {
    unsigned magic;
    int slot;
};

struct fpool {
    evexec_pool *h;         /* NULL: never made or freed */
    size_t max_queued;
    int shut;               /* 0, 1 DRAIN, 2 CANCEL (as far as we know) */
    int async_shut;         /* a work function may shut it down any time */
    unsigned accepted;      /* every accepted job */
    unsigned with_cb;       /* ... of which with a done callback */
    unsigned delivered;     /* callbacks run */
    /* Options of evexec_pool_new() beyond the first ones: */
    int drop;               /* EVEXEC_OVERFLOW_DROP_OLDEST */
    int hist;               /* EVEXEC_POOL_HISTOGRAMS */
    int hooked;             /* 0 none, 1 init (malloc state) + fini, 2 init only
                               (static state), 3 fini only, 4 init fails */
    unsigned max_threads, min_threads; /* as evexec_pool_stats() must say */
    int is_default;         /* a port's default pool */
    unsigned finished;      /* work known to have returned (status 0 or cleanup) */
    size_t max_queued_hi;   /* the largest max_queued it has had */
    unsigned gen;           /* pools made in this slot so far */
};

struct fport {
    evexec_port *h;         /* kept after free, for submits from its callbacks */
    int freed;
};

struct fjob {
    evexec_job_id id;
    int port, pool, kind;
    int accepted, calls, status;
    int nodone;             /* accepted with no done callback */
    int cancel_ok, cancel_busy;
    evexec_port *port_h;    /* read by W_LOOP_CALLS */
    evexec_pool *pool_h;    /* read by W_SHUT_*, W_FREE_OWN */
    _Atomic int ran;
    _Atomic int bad;        /* a check made on the worker failed */
    /* evexec_submit_ex() and evexec_submit_threadsafe(): */
    unsigned timeout_ms;    /* 0: none */
    uint64_t t_submit;      /* CLOCK_MONOTONIC ns, just before the submit */
    int has_cleanup, mres;  /* cleanup given; result malloc'd (freed by done
                               or cleanup) */
    int group;              /* index in S.groups, or -1 */
    int remote;             /* evexec_submit_threadsafe(): no id */
    int cleanups;
    const void *want_state; /* what evexec_worker_state() must say; (void *)1:
                               a struct wstate of this pool's slot */
    _Atomic(void *) res;    /* the malloc'd result */
    unsigned gen;           /* its pool slot's gen at the submit */
};

struct fgroup {
    evexec_group *h;
    int port, how;
    int has_fn, cancel_in_cb;
    int closed, cancelled;  /* by our calls (cancel closes too) */
    int fired;              /* its callback has run: the handle is gone */
    int calls, status;
    int members, nodone_members;
    int delivered;          /* members whose callback we saw */
    int first_status, first_nonzero;
};

static struct state {
    struct event_base *base;
    struct fpool pools[NPOOLS + NPORTS]; /* then the ports' default pools */
    struct fport ports[NPORTS];
    struct fjob jobs[MAXJOBS];
    int njobs;
    int callbacks;
    int submit_from_freed;  /* next callback of a freed port submits */
    struct fgroup groups[MAXGROUPS];
    int ngroups;
    int in_call;            /* inside an evexec call made by the model */
    pthread_t loop_thread;
    _Atomic long allocs;    /* malloc'd results ... */
    long frees;             /* ... and those freed by done or cleanup */
    struct hooks hooks[NPOOLS];
} S;

/* ------------------------------------------------------------------------ */
/* Work and callbacks                                                       */

static void spin_us(unsigned us)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 < (long)us);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int on_loop_thread(void)
{
    return pthread_equal(S.loop_thread, pthread_self());
}

/* -ECANCELED (or -EALREADY from evexec_cancel()) has an explanation. */
static int could_be_cancelled(const struct fjob *j)
{
    const struct fpool *fp = &S.pools[j->pool];
    const struct fgroup *g = j->group >= 0 ? &S.groups[j->group] : NULL;
    return j->cancel_ok || fp->shut == 2 || fp->async_shut || S.ports[j->port].freed ||
           fp->drop || fp->hooked == 4 ||
           (g && (g->cancelled ||
                  ((g->how & EVEXEC_GROUP_CANCEL_REST) && (g->fired || !g->has_fn))));
}

static int hook_init(void *warg, void **state)
{
    struct hooks *h = warg;
    if (*state != NULL)
        atomic_store(&h->bad, 1);
    if (h->fail)
        return -1;
    atomic_fetch_add(&h->inits, 1);
    if (h->with_fini) {
        struct wstate *w = malloc(sizeof *w);
        if (!w)
            abort();
        w->magic = STATE_MAGIC;
        w->slot = h->slot;
        *state = w;
    } else {
        static struct wstate fixed[NPOOLS];
        fixed[h->slot].magic = STATE_MAGIC;
        fixed[h->slot].slot = h->slot;
        *state = &fixed[h->slot];
    }
    return 0;
}

static void hook_fini(void *state, void *warg)
{
    struct hooks *h = warg;
    struct wstate *w = state;
    atomic_fetch_add(&h->finis, 1);
    if (h->with_fini) {
        if (!w || w->magic != STATE_MAGIC || w->slot != h->slot)
            atomic_store(&h->bad, 2);
        free(w);
    } else if (w) {
        atomic_store(&h->bad, 3); /* fini without init: the state stays NULL */
    }
}

static void pool_freed(int slot);

static void *fuzz_work(evexec_job *job, void *arg)
{
    struct fjob *j = arg;
    atomic_store(&j->ran, 1);
    void *st = evexec_worker_state(job);
    if (j->want_state == (const void *)1) {
        const struct wstate *w = st;
        if (!w || w->magic != STATE_MAGIC || w->slot != j->pool)
            atomic_store(&j->bad, 4);
    } else if (st != j->want_state) {
        atomic_store(&j->bad, 5);
    }
    switch (j->kind) {
    case W_SPIN:
        spin_us(20);
        break;
    case W_POLL:
        for (int i = 0; i < 200 && !evexec_job_cancelled(job); i++)
            spin_us(1);
        break;
    case W_SLEEP:
        for (int i = 0; i < 20 && !evexec_job_cancelled(job); i++) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
        break;
    case W_SHUT_DRAIN:
    case W_SHUT_CANCEL: {
        int rc = evexec_pool_shutdown(j->pool_h, j->kind == W_SHUT_DRAIN ? EVEXEC_DRAIN
                                                                          : EVEXEC_CANCEL);
        if (rc != 0 && rc != -EALREADY)
            atomic_store(&j->bad, 1);
        break;
    }
    case W_FREE_OWN:
        if (evexec_pool_free(j->pool_h) != -EDEADLK)
            atomic_store(&j->bad, 2);
        break;
    case W_LOOP_CALLS: {
        struct evexec_port_stats s;
        memset(&s, 0, sizeof s);
        s.size = sizeof s;
        if (evexec_submit(j->port_h, j->pool_h, fuzz_work, NULL, NULL, NULL) != -EPERM ||
            evexec_cancel(j->port_h, 1) != -EPERM ||
            evexec_port_stats(j->port_h, &s) != -EPERM || evexec_port_free(j->port_h) != -EPERM)
            atomic_store(&j->bad, 3);
        break;
    }
    case W_LOOP_CALLS_EX: {
        /* The port exists while its job runs. A worker of the job's pool
         * (the default pool for a NULL pool) may not wait for room in it. */
        struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
        evexec_group *g = (evexec_group *)(uintptr_t)1;
        if (evexec_submit_ex(j->port_h, j->pool_h, fuzz_work, NULL, NULL, &o, NULL) != -EPERM ||
            evexec_group_new(&g, j->port_h, EVEXEC_GROUP_ALL, NULL, NULL) != -EPERM ||
            g != (evexec_group *)(uintptr_t)1)
            atomic_store(&j->bad, 6);
        o.wait_ms = j->t_submit & 1 ? EVEXEC_WAIT_FOREVER : 5;
        int rc = evexec_submit_threadsafe(j->port_h, j->pool_h, fuzz_work, NULL, NULL, &o);
        /* -ESHUTDOWN: a freed port has no default pool to give. */
        if (rc != -EDEADLK && !(rc == -ESHUTDOWN && !j->pool_h))
            atomic_store(&j->bad, 7);
        break;
    }
    default:
        break;
    }
    if (j->mres) {
        void **r = malloc(sizeof *r);
        if (!r)
            abort();
        *r = j;
        atomic_fetch_add(&S.allocs, 1);
        atomic_store(&j->res, (void *)r);
        return r;
    }
    return j;
}

static void group_member_delivered(struct fjob *j, int status)
{
    struct fgroup *g = &S.groups[j->group];
    EXPECT(!g->fired || (g->how & EVEXEC_GROUP_FIRST),
           "group %d (ALL): a member delivered after the group's callback", j->group);
    if (g->delivered++ == 0)
        g->first_status = status;
    if (!g->first_nonzero)
        g->first_nonzero = status;
}

static void fuzz_done(int status, void *result, void *arg)
{
    struct fjob *j = arg;
    struct fpool *fp = &S.pools[j->pool];
    EXPECT(j->accepted, "callback for a refused submit");
    EXPECT(++j->calls == 1, "job %d: callback number %d", (int)(j - S.jobs), j->calls);
    EXPECT(S.in_call == 0, "job %d: callback run from inside an evexec call", (int)(j - S.jobs));
    EXPECT(on_loop_thread(), "job %d: callback off the loop thread", (int)(j - S.jobs));
    j->status = status;
    S.callbacks++;
    fp->delivered++;
    EXPECT(!atomic_load(&j->bad), "job %d (kind %d): a check in its work failed (%d)",
           (int)(j - S.jobs), j->kind, atomic_load(&j->bad));
    if (status == 0) {
        EXPECT(atomic_load(&j->ran), "status 0 but the work never ran");
        EXPECT(result == (j->mres ? atomic_load(&j->res) : (void *)j), "wrong result");
        EXPECT(!j->cancel_ok, "cancel returned 0 but the job ran");
        EXPECT(fp->hooked != 4, "job %d ran on a pool whose worker_init always fails",
               (int)(j - S.jobs));
        fp->finished++;
        if (j->mres) {
            free(result);
            S.frees++;
        }
    } else if (status == -ETIMEDOUT) {
        uint64_t waited = now_ns() - j->t_submit;
        EXPECT(j->timeout_ms, "job %d: -ETIMEDOUT without a deadline", (int)(j - S.jobs));
        EXPECT(waited >= (uint64_t)j->timeout_ms * 1000000u,
               "job %d: -ETIMEDOUT after %llu ns, deadline %u ms", (int)(j - S.jobs),
               (unsigned long long)waited, j->timeout_ms);
        EXPECT(result == NULL, "timed out with a result");
        EXPECT(!j->cancel_ok, "-ETIMEDOUT after cancel returned 0");
    } else {
        EXPECT(status == -ECANCELED, "status %d", status);
        EXPECT(result == NULL, "cancelled with a result");
        EXPECT(!atomic_load(&j->ran), "-ECANCELED but the work ran");
        EXPECT(!j->cancel_busy, "-ECANCELED after cancel said -EBUSY");
        EXPECT(could_be_cancelled(j), "job %d: -ECANCELED but nothing cancelled it",
               (int)(j - S.jobs));
    }
    if (j->group >= 0)
        group_member_delivered(j, status);
    /* A port being released may still be asked for work: -ESHUTDOWN. */
    if (S.ports[j->port].freed && S.submit_from_freed) {
        for (int p = 0; p < NPOOLS; p++) {
            if (!S.pools[p].h)
                continue;
            evexec_job_id id = 7;
            S.submit_from_freed = 0;
            S.in_call++;
            int rc = evexec_submit(S.ports[j->port].h, S.pools[p].h, fuzz_work, fuzz_done, NULL,
                                   &id);
            S.in_call--;
            EXPECT(rc == -ESHUTDOWN && id == 7, "submit through a freed port: %d", rc);
            break;
        }
    }
}

/* Releases a result whose job's deadline passed first. */
static void fuzz_cleanup(void *result, void *arg)
{
    struct fjob *j = arg;
    EXPECT(S.in_call == 0, "job %d: cleanup run from inside an evexec call", (int)(j - S.jobs));
    EXPECT(on_loop_thread(), "job %d: cleanup off the loop thread", (int)(j - S.jobs));
    EXPECT(j->has_cleanup && j->timeout_ms, "job %d: cleanup it was not given",
           (int)(j - S.jobs));
    EXPECT(++j->cleanups == 1, "job %d: cleanup number %d", (int)(j - S.jobs), j->cleanups);
    EXPECT(atomic_load(&j->ran), "job %d: cleanup but the work never ran", (int)(j - S.jobs));
    EXPECT(j->nodone || (j->calls == 1 && j->status == -ETIMEDOUT),
           "job %d: cleanup after %d callbacks, status %d", (int)(j - S.jobs), j->calls,
           j->status);
    EXPECT(result == (j->mres ? atomic_load(&j->res) : (void *)j), "cleanup: wrong result");
    if (S.pools[j->pool].gen == j->gen)
        S.pools[j->pool].finished++; /* not a late result of an older pool of the slot */
    if (j->mres) {
        free(result);
        S.frees++;
    }
}

static void fuzz_group_cb(int status, void *arg)
{
    struct fgroup *g = arg;
    int gi = (int)(g - S.groups);
    EXPECT(S.in_call == 0, "group %d: callback run from inside an evexec call", gi);
    EXPECT(on_loop_thread(), "group %d: callback off the loop thread", gi);
    EXPECT(++g->calls == 1, "group %d: callback number %d", gi, g->calls);
    EXPECT(g->has_fn, "group %d: a callback it was not given", gi);
    g->status = status;
    g->fired = 1;
    int exact = g->nodone_members == 0; /* every member's delivery is seen */
    if (g->members == 0) {
        EXPECT(status == -ENOENT, "group %d: closed with no member, status %d", gi, status);
        EXPECT(g->closed || S.ports[g->port].freed, "group %d: memberless and never closed",
               gi);
    } else if (g->how & EVEXEC_GROUP_FIRST) {
        if (exact) {
            EXPECT(g->delivered == 1, "group %d (FIRST): callback after %d members", gi,
                   g->delivered);
            EXPECT(status == g->first_status, "group %d (FIRST): status %d, first member's %d",
                   gi, status, g->first_status);
        }
    } else {
        EXPECT(g->closed || S.ports[g->port].freed, "group %d (ALL): callback before a close",
               gi);
        EXPECT(g->delivered == g->members - g->nodone_members,
               "group %d (ALL): callback after %d of %d members", gi, g->delivered, g->members);
        if (exact)
            EXPECT(status == g->first_nonzero, "group %d (ALL): status %d, expected %d", gi,
                   status, g->first_nonzero);
    }
    if (status != -ENOENT)
        EXPECT(status == 0 || status == -ECANCELED || status == -ETIMEDOUT,
               "group %d: status %d", gi, status);
    if (g->cancel_in_cb && !S.ports[g->port].freed) {
        /* Allowed from the group's own callback. */
        S.in_call++;
        int rc = evexec_group_cancel(g->h);
        S.in_call--;
        int already = g->cancelled || (g->how & EVEXEC_GROUP_CANCEL_REST);
        EXPECT(rc == (already ? -EALREADY : 0), "group %d: cancel from its callback = %d", gi,
               rc);
        g->cancelled = g->closed = 1;
    }
    if (g->how & EVEXEC_GROUP_CANCEL_REST)
        g->cancelled = 1;
    g->h = NULL; /* the handle is evexec's from now on */
}

/* ------------------------------------------------------------------------ */
/* Calls                                                                    */

/* ext: evexec_pool_new() with the options added with issue 7, decoded
 * from more bytes after those of the first version. */
static void op_pool_new(struct input *in, int ext)
{
    int slot = (int)(u8(in) % NPOOLS);
    struct {
        struct evexec_pool_opts o;
        unsigned char extra[16];
    } big;
    struct evexec_pool_opts *o = &big.o;
    static char longname[80];
    int valid = 1;

    struct fpool *fp = &S.pools[slot];
    if (fp->h || fp->delivered != fp->with_cb)
        return; /* in use, or its last pool's callbacks still to come */
    memset(&big, 0, sizeof big);
    *o = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    unsigned variant = u8(in) % 8;
    unsigned t = u8(in);
    o->max_threads = t < 200 ? t % 4 : t < 250 ? 16 : EVEXEC_MAX_THREADS + 1;
    o->min_threads = u8(in) % 4;
    unsigned q = u8(in);
    o->max_queued = q < 128 ? q % 9 : q < 250 ? 0 : (size_t)EVEXEC_MAX_QUEUED + 1;
    unsigned idle = u8(in) % 4;
    o->idle_timeout_ms = idle == 3 ? EVEXEC_IDLE_FOREVER : idle;
    unsigned nm = u8(in) % 4;
    memset(longname, 'n', sizeof longname - 1);
    o->name = nm == 0 ? NULL : nm == 1 ? "" : nm == 2 ? "fz" : longname;
    unsigned st = u8(in) % 4;
    o->stack_size = st == 0 ? 0 : st == 1 ? 1024 : st == 2 ? 64 * 1024 : (size_t)8 << 30;

    unsigned eff_max = o->max_threads ? o->max_threads : 4;
    if (eff_max > EVEXEC_MAX_THREADS || o->min_threads > eff_max ||
        o->max_queued > EVEXEC_MAX_QUEUED || nm == 3 || st == 1 || st == 3)
        valid = 0;

    int expect = valid ? 0 : -EINVAL;
    const struct evexec_pool_opts *arg = o;
    evexec_pool *h = (evexec_pool *)(uintptr_t)1;
    evexec_pool **out = &h;
    switch (variant) {
    case 0:
        arg = NULL; /* all defaults */
        expect = 0;
        break;
    case 1:
        o->size = 0;
        expect = -EINVAL;
        break;
    case 2:
        o->size = sizeof(size_t) + 1;
        expect = -EINVAL;
        break;
    case 3:
        o->size = SIZE_MAX;
        expect = -EINVAL;
        break;
    case 4:
        o->size = sizeof big; /* from a newer header, unknown part zero */
        break;
    case 5:
        o->size = sizeof big; /* ... with an option this library lacks */
        big.extra[u8(in) % sizeof big.extra] = 1;
        expect = -E2BIG;
        break;
    case 6:
        out = NULL;
        expect = -EINVAL;
        break;
    default:
        break;
    }
    int drop = 0, hist = 0, hooked = 0;
    if (ext) {
        unsigned ov = u8(in) % 4, fl = u8(in) % 4, hk = u8(in) % 5, old = u8(in);
        unsigned mr[3];
        for (int c = 0; c < 3; c++) {
            unsigned m = u8(in);
            mr[c] = m < 200 ? m % 4 : m < 250 ? EVEXEC_MAX_THREADS : EVEXEC_MAX_THREADS + 1;
        }
        o->overflow = ov == 0 ? EVEXEC_OVERFLOW_REJECT
                      : ov == 1 ? EVEXEC_OVERFLOW_DROP_OLDEST
                      : ov == 2 ? 2 : -1;
        o->flags = fl == 0   ? 0u
                   : fl == 1 ? EVEXEC_POOL_HISTOGRAMS | EVEXEC_POOL_NO_YIELD
                   : fl == 2 ? 8u /* the first bit no flag uses */
                             : 0x80000001u;
        o->max_running_high = mr[0];
        o->max_running_normal = mr[1];
        o->max_running_low = mr[2];
        struct hooks *hs = &S.hooks[slot];
        memset(hs, 0, sizeof *hs);
        hs->slot = slot;
        hs->with_fini = hk == 1;
        hs->fail = hk == 4;
        o->worker_init = hk == 1 || hk == 2 || hk == 4 ? hook_init : NULL;
        o->worker_fini = hk == 1 || hk == 3 || hk == 4 ? hook_fini : NULL;
        o->worker_arg = hs;
        int bad_ext = ov >= 2 || fl >= 2 || mr[0] > EVEXEC_MAX_THREADS ||
                      mr[1] > EVEXEC_MAX_THREADS || mr[2] > EVEXEC_MAX_THREADS;
        if (old % 4 == 0 && arg && o->size == sizeof *o) {
            /* A program built against the first header: what follows its
             * struct is not read, however wrong it would be. */
            o->size = offsetof(struct evexec_pool_opts, overflow);
        } else if (arg && (expect == 0 || expect == -EINVAL) && variant != 6 && variant != 1 &&
                   variant != 2 && variant != 3) {
            if (bad_ext)
                expect = -EINVAL;
            drop = ov == 1;
            hist = fl == 1;
            hooked = (int)hk;
        }
    }
    int rc = evexec_pool_new(out, arg);
    EXPECT(rc == expect, "pool_new (variant %u, threads %u/%u, queue %zu, stack %zu, ext %d) = "
                         "%d, expected %d",
           variant, o->min_threads, o->max_threads, o->max_queued, o->stack_size, ext, rc,
           expect);
    if (rc != 0) {
        EXPECT(h == (evexec_pool *)(uintptr_t)1, "pool_new wrote out on error");
        return;
    }
    unsigned gen = fp->gen + 1;
    memset(fp, 0, sizeof *fp);
    fp->gen = gen;
    fp->h = h;
    fp->max_queued = !arg || !o->max_queued ? 65536 : o->max_queued;
    fp->max_queued_hi = fp->max_queued;
    fp->max_threads = !arg || !o->max_threads ? 4 : o->max_threads;
    fp->min_threads = arg ? o->min_threads : 0;
    fp->drop = drop;
    fp->hist = hist;
    fp->hooked = hooked;
}

/* The model of a new port's default pool: not made until asked for. */
static void default_pool_slot(int port)
{
    struct fpool *fp = &S.pools[DEFPOOL(port)];
    memset(fp, 0, sizeof *fp);
    fp->is_default = 1;
    fp->max_queued = fp->max_queued_hi = 65536;
}

static void op_port_new(struct input *in)
{
    int slot = (int)(u8(in) % NPORTS);
    struct {
        struct evexec_port_opts o;
        unsigned char extra[8];
    } big;
    unsigned variant = u8(in) % 8;
    if (S.ports[slot].h)
        return;
    memset(&big, 0, sizeof big);
    big.o = (struct evexec_port_opts)EVEXEC_PORT_OPTS_INIT;
    unsigned mb = u8(in);
    big.o.max_batch = mb < 240 ? mb % 5 : (1u << 20) + mb;
    unsigned pr = u8(in) % 4;
    big.o.priority = pr == 0 ? -1 : pr == 1 ? 0 : pr == 2 ? 5 : -7;
    unsigned dl = u8(in) % 6; /* max_delay_us: 0, off, the bounds, past them */
    big.o.max_delay_us = dl == 0 ? 0 : dl == 1 ? -1 : dl == 2 ? 1 : dl == 3 ? 100000 : dl == 4 ? 100001 : -2;
    int expect = mb >= 240 || pr >= 2 || dl >= 4 ? -EINVAL : 0; /* the base has one priority */
    const struct evexec_port_opts *arg = &big.o;
    evexec_port *h = (evexec_port *)(uintptr_t)1;
    int rc;
    switch (variant) {
    case 0:
        arg = NULL;
        expect = 0;
        break;
    case 1:
        big.o.size = 1;
        expect = -EINVAL;
        break;
    case 2:
        big.o.size = SIZE_MAX;
        expect = -EINVAL;
        break;
    case 3:
        big.o.size = sizeof big;
        big.extra[u8(in) % sizeof big.extra] = 9;
        expect = -E2BIG;
        break;
    case 4:
        rc = evexec_port_new(&h, NULL, arg);
        EXPECT(rc == -EINVAL, "port_new(NULL base) = %d", rc);
        return;
    case 5:
        rc = evexec_port_new(NULL, S.base, arg);
        EXPECT(rc == -EINVAL, "port_new(NULL out) = %d", rc);
        return;
    default:
        break;
    }
    rc = evexec_port_new(&h, S.base, arg);
    EXPECT(rc == expect, "port_new (variant %u) = %d, expected %d", variant, rc, expect);
    if (rc != 0) {
        EXPECT(h == (evexec_port *)(uintptr_t)1, "port_new wrote out on error");
        return;
    }
    S.ports[slot].h = h;
    S.ports[slot].freed = 0;
    default_pool_slot(slot);
}

static void op_submit(struct input *in)
{
    unsigned a = u8(in), b = u8(in), k = u8(in);
    int port = (int)(a % NPORTS), pool = (int)(b % NPOOLS);
    int null_port = a >= 250, null_work = k >= 250;
    /* A NULL pool alone names the port's default pool (a valid submit the
     * model does not track): it is tried only beside another NULL. */
    int null_pool = b >= 250 && (null_port || null_work);
    int kind = (int)(k % W_N);
    struct fport *fq = &S.ports[port];
    struct fpool *fp = &S.pools[pool];
    evexec_job_id id = 0;

    if (S.njobs >= MAXJOBS)
        return;
    if ((!fq->h || fq->freed) && !null_port)
        return; /* no live port in that slot: its handle would be dead */
    if (!fp->h && !null_pool)
        return;
    struct fjob *j = &S.jobs[S.njobs];
    memset(j, 0, sizeof *j);
    j->port = port;
    j->pool = pool;
    j->kind = kind;
    j->port_h = null_port ? NULL : fq->h;
    j->pool_h = null_pool ? NULL : fp->h;
    j->group = -1;
    j->want_state = fp->hooked == 1 || fp->hooked == 2 ? (const void *)1 : NULL;
    evexec_done_fn done = u8(in) % 8 == 0 ? NULL : fuzz_done;
    S.in_call++;
    int rc = evexec_submit(j->port_h, j->pool_h, null_work ? NULL : fuzz_work, done, j, &id);
    S.in_call--;
    if (null_port || null_pool || null_work) {
        EXPECT(rc == -EINVAL, "submit with a NULL handle = %d", rc);
        EXPECT(id == 0, "a refused submit wrote the id");
        return;
    }
    if (rc == 0) {
        EXPECT(fp->shut == 0, "submit accepted by a shut-down pool");
        EXPECT(id != 0, "id 0 for an accepted job");
        S.njobs++;
        j->id = id;
        fp->accepted++;
        if (kind == W_SHUT_DRAIN || kind == W_SHUT_CANCEL)
            fp->async_shut = 1;
        if (!done) {
            j->nodone = 1; /* no callback: we never learn when it is gone */
            return;
        }
        j->accepted = 1;
        fp->with_cb++;
        return;
    }
    EXPECT(id == 0, "a refused submit wrote the id");
    if (rc == -ESHUTDOWN)
        EXPECT(fp->shut || fp->async_shut, "-ESHUTDOWN from a pool never shut down");
    else if (rc == -EAGAIN)
        EXPECT(fp->accepted - fp->delivered >= fp->max_queued,
               "-EAGAIN with %u outstanding, max_queued %zu", fp->accepted - fp->delivered,
               fp->max_queued);
    else
        fail("submit: unexpected %d", rc);
}

static struct fjob *find_live(int port, evexec_job_id id, int *nodone)
{
    *nodone = 0;
    for (int i = 0; i < S.njobs; i++) {
        if (S.jobs[i].port != port || S.jobs[i].id != id || id == 0)
            continue;
        if (S.jobs[i].nodone)
            *nodone = 1; /* may be live or gone: any answer */
        else if (S.jobs[i].accepted && S.jobs[i].calls == 0)
            return &S.jobs[i];
    }
    return NULL;
}

static void op_cancel(struct input *in)
{
    unsigned a = u8(in), how = u8(in) % 4;
    int port = (int)(a % NPORTS);
    evexec_job_id id;
    if (a >= 250) {
        int rc = evexec_cancel(NULL, 1);
        EXPECT(rc == -EINVAL, "cancel(NULL) = %d", rc);
        return;
    }
    if (!S.ports[port].h || S.ports[port].freed)
        return;
    if (how == 0)
        id = 0;
    else if (how == 1)
        id = u64(in);
    else if (S.njobs)
        id = S.jobs[u8(in) % S.njobs].id;
    else
        id = 1;
    int nodone;
    struct fjob *j = find_live(port, id, &nodone);
    S.in_call++;
    int rc = evexec_cancel(S.ports[port].h, id);
    S.in_call--;
    if (nodone)
        return;
    if (!j) {
        EXPECT(rc == -ENOENT, "cancel of an id with no live job = %d", rc);
        return;
    }
    if (rc == 0) {
        EXPECT(!j->cancel_ok && !j->cancel_busy, "cancel = 0 twice");
        j->cancel_ok = 1;
    } else if (rc == -EBUSY) {
        EXPECT(!j->cancel_ok, "-EBUSY after cancel = 0");
        j->cancel_busy = 1;
    } else if (rc == -EALREADY) {
        EXPECT(could_be_cancelled(j), "-EALREADY, never cancelled");
    } else {
        fail("cancel of a live job = %d", rc);
    }
}

static void op_shutdown(struct input *in)
{
    unsigned a = u8(in), m = u8(in);
    int pool = (int)(a % NPOOLS);
    int how = m < 200 ? (int)(m % 2) : m < 228 ? -1 : m < 250 ? 2 : INT_MIN;
    if (a >= 250) {
        int rc = evexec_pool_shutdown(NULL, EVEXEC_DRAIN);
        EXPECT(rc == -EINVAL, "shutdown(NULL) = %d", rc);
        return;
    }
    struct fpool *fp = &S.pools[pool];
    if (!fp->h)
        return;
    S.in_call++;
    int rc = evexec_pool_shutdown(fp->h, how);
    S.in_call--;
    if (how != EVEXEC_DRAIN && how != EVEXEC_CANCEL) {
        EXPECT(rc == -EINVAL, "shutdown with mode %d = %d", how, rc);
        return;
    }
    int expect = fp->shut >= how + 1 ? -EALREADY : 0;
    EXPECT(rc == expect || (fp->async_shut && (rc == 0 || rc == -EALREADY)),
           "shutdown(%d) in state %d = %d", how, fp->shut, rc);
    if (fp->shut < how + 1)
        fp->shut = how + 1;
}

static void op_pool_free(struct input *in)
{
    unsigned a = u8(in);
    if (a >= 250) {
        EXPECT(evexec_pool_free(NULL) == 0, "pool_free(NULL)");
        return;
    }
    struct fpool *fp = &S.pools[a % NPOOLS];
    if (!fp->h)
        return;
    S.in_call++;
    int rc = evexec_pool_free(fp->h);
    S.in_call--;
    EXPECT(rc == 0, "pool_free = %d", rc);
    fp->h = NULL;
    pool_freed(a % NPOOLS);
    if (fp->shut == 0)
        fp->shut = 1;
}

static void op_port_free(struct input *in)
{
    unsigned a = u8(in);
    if (a >= 250) {
        EXPECT(evexec_port_free(NULL) == 0, "port_free(NULL)");
        return;
    }
    struct fport *fq = &S.ports[a % NPORTS];
    if (!fq->h || fq->freed)
        return;
    S.in_call++;
    int rc = evexec_port_free(fq->h);
    S.in_call--;
    EXPECT(rc == 0, "port_free = %d", rc);
    fq->freed = 1;
    S.submit_from_freed = (int)(a & 1);
}

/* A pool_stats snapshot of size bytes (first version or more). */
static void check_pool_stats(const struct fpool *fp, const struct evexec_pool_stats *st,
                             size_t size)
{
    const unsigned char *raw = (const unsigned char *)st;
    EXPECT(st->queued <= fp->max_queued_hi, "more queued than max_queued");
    if (size < sizeof *st) {
        for (size_t i = size; i < sizeof *st; i++)
            EXPECT(raw[i] == 0xa5, "pool_stats(size %zu) wrote byte %zu", size, i);
        return;
    }
    EXPECT(st->queued_high + st->queued_normal + st->queued_low == st->queued,
           "queued %zu = %zu + %zu + %zu?", st->queued, st->queued_high, st->queued_normal,
           st->queued_low);
    EXPECT(st->running_high + st->running_normal + st->running_low == st->running,
           "running %u = %u + %u + %u?", st->running, st->running_high, st->running_normal,
           st->running_low);
    EXPECT(st->dropped <= st->cancelled, "dropped %llu > cancelled %llu",
           (unsigned long long)st->dropped, (unsigned long long)st->cancelled);
    EXPECT(fp->drop || st->dropped == 0, "dropped jobs without DROP_OLDEST");
    EXPECT(fp->hooked == 4 || st->worker_init_failed == 0, "worker_init failed %llu times",
           (unsigned long long)st->worker_init_failed);
    EXPECT(st->max_queued == fp->max_queued, "max_queued %zu, expected %zu", st->max_queued,
           fp->max_queued);
    if (fp->max_threads)
        EXPECT(st->max_threads == fp->max_threads && st->min_threads == fp->min_threads,
               "threads %u..%u, expected %u..%u", st->min_threads, st->max_threads,
               fp->min_threads, fp->max_threads);
}

static void op_stats(struct input *in)
{
    unsigned a = u8(in), sz = u8(in);
    union {
        struct evexec_pool_stats p;
        struct evexec_port_stats q;
        unsigned char raw[4200];
    } buf;
    size_t size = sz < 64 ? sz : sz < 128 ? 4096 : sz < 192 ? 4097 : sz < 250 ? SIZE_MAX : 0;
    memset(&buf, 0xa5, sizeof buf);
    if (a % 2 == 0) {
        struct fpool *fp = &S.pools[(a / 2) % NPOOLS];
        if (!fp->h)
            return;
        buf.p.size = size;
        int rc = evexec_pool_stats(a >= 250 ? NULL : fp->h, &buf.p);
        size_t min = offsetof(struct evexec_pool_stats, threads_started) + sizeof(uint64_t);
        int expect = a >= 250 || size < min || size > 4096 ? -EINVAL : 0;
        EXPECT(rc == expect, "pool_stats(size %zu) = %d", size, rc);
        if (rc == 0)
            check_pool_stats(fp, &buf.p, size);
    } else {
        struct fport *fq = &S.ports[(a / 2) % NPORTS];
        if (!fq->h || fq->freed)
            return;
        buf.q.size = size;
        int rc = evexec_port_stats(a >= 250 ? NULL : fq->h, &buf.q);
        size_t min = offsetof(struct evexec_port_stats, batches) + sizeof(uint64_t);
        int expect = a >= 250 || size < min || size > 4096 ? -EINVAL : 0;
        EXPECT(rc == expect, "port_stats(size %zu) = %d", size, rc);
    }
}

static void op_errors(struct input *in)
{
    int e = (int)u32(in);
    const char *m = evexec_strerror(e), *n = evexec_errname(e);
    EXPECT(m && n && *m && *n, "strerror/errname(%d)", e);
    EXPECT((strcmp(m, "unknown error") == 0) == (strcmp(n, "UNKNOWN") == 0),
           "strerror and errname disagree on %d", e);
    EXPECT(evexec_job_cancelled(NULL) == 0, "job_cancelled(NULL)");
}

/* ------------------------------------------------------------------------ */
/* Calls of the issue-7 API                                                 */

static const int bad_prios[4] = {2, -2, INT_MIN, INT_MAX};

static int decode_prio(unsigned pr)
{
    return pr < 240 ? (int)(pr % 3) - 1 : bad_prios[pr % 4];
}

/* A group handle the model may still pass to evexec: its callback has not
 * run (afterwards evexec owns it), its port is not freed, and, for a group
 * with no callback, nothing may have decided it unseen. */
static int group_usable(const struct fgroup *g)
{
    if (!g->h || g->fired || S.ports[g->port].freed)
        return 0;
    if (g->has_fn)
        return 1;
    if (g->how & EVEXEC_GROUP_FIRST)
        return !g->closed && !g->delivered && !g->nodone_members;
    return !g->closed;
}

/* A pool of ours was freed: its threads are joined, so its worker hooks
 * have all run. */
static void pool_freed(int slot)
{
    struct hooks *hs = &S.hooks[slot];
    struct fpool *fp = &S.pools[slot];
    EXPECT(!atomic_load(&hs->bad), "pool %d: a worker hook check failed (%d)", slot,
           atomic_load(&hs->bad));
    switch (fp->hooked) {
    case 1:
        EXPECT(atomic_load(&hs->inits) == atomic_load(&hs->finis),
               "pool %d: %d worker_init, %d worker_fini", slot, atomic_load(&hs->inits),
               atomic_load(&hs->finis));
        break;
    case 2:
        EXPECT(atomic_load(&hs->finis) == 0, "pool %d: worker_fini it was not given", slot);
        break;
    case 3:
    case 4:
        EXPECT(atomic_load(&hs->inits) == 0, "pool %d: a worker_init succeeded", slot);
        if (fp->hooked == 4)
            EXPECT(atomic_load(&hs->finis) == 0, "pool %d: worker_fini after a failed init",
                   slot);
        break;
    default:
        break;
    }
}

/* A submit refused with rc: does the model explain it? */
static void check_refusal(const char *what, struct fpool *fp, int rc)
{
    if (rc == -ESHUTDOWN)
        EXPECT(fp->shut || fp->async_shut, "%s: -ESHUTDOWN from a pool never shut down", what);
    else if (rc == -EAGAIN)
        EXPECT(fp->hooked == 4 || fp->accepted - fp->delivered >= fp->max_queued,
               "%s: -EAGAIN with %u outstanding, max_queued %zu", what,
               fp->accepted - fp->delivered, fp->max_queued);
    else
        fail("%s: unexpected %d", what, rc);
}

/* Fills job options from the input. Returns the error they must give
 * (0 if good); *alt is another acceptable one, where the header does not
 * say which check comes first. */
struct job_opts_buf {
    struct evexec_job_opts o;
    unsigned char extra[8];
};

static const struct evexec_job_opts *decode_job_opts(struct input *in, struct job_opts_buf *b,
                                                     int *size_err)
{
    unsigned ov = u8(in) % 16;
    memset(b, 0, sizeof *b);
    b->o = (struct evexec_job_opts)EVEXEC_JOB_OPTS_INIT;
    b->o.priority = decode_prio(u8(in));
    *size_err = 0;
    switch (ov) {
    case 0:
        return NULL;
    case 1:
        b->o.size = 0;
        *size_err = -EINVAL;
        break;
    case 2:
        b->o.size = offsetof(struct evexec_job_opts, wait_ms); /* a field short */
        *size_err = -EINVAL;
        break;
    case 3:
        b->o.size = sizeof *b; /* a newer header's, unknown part zero */
        break;
    case 4:
        b->o.size = sizeof *b;
        b->extra[ov % sizeof b->extra] = 3;
        *size_err = -E2BIG;
        break;
    case 5:
        b->o.size = SIZE_MAX;
        *size_err = -EINVAL;
        break;
    default:
        break;
    }
    return &b->o;
}

static struct fjob *new_job(int port, int pool, int kind, int null_pool)
{
    struct fjob *j = &S.jobs[S.njobs];
    memset(j, 0, sizeof *j);
    j->port = port;
    j->pool = pool;
    /* The default pool is the port's to shut down and free. */
    j->kind = null_pool && (kind == W_SHUT_DRAIN || kind == W_SHUT_CANCEL || kind == W_FREE_OWN)
                  ? W_SPIN : kind;
    j->group = -1;
    j->port_h = S.ports[port].h;
    j->pool_h = null_pool ? NULL : S.pools[pool].h;
    int hk = S.pools[pool].hooked;
    j->gen = S.pools[pool].gen;
    j->want_state = hk == 1 || hk == 2 ? (const void *)1 : NULL;
    return j;
}

static void job_accepted(struct fjob *j, struct fpool *fp, evexec_done_fn done)
{
    S.njobs++;
    fp->accepted++;
    if (j->kind == W_SHUT_DRAIN || j->kind == W_SHUT_CANCEL)
        fp->async_shut = 1;
    if (!done) {
        j->nodone = 1;
        return;
    }
    j->accepted = 1;
    fp->with_cb++;
}

static void op_submit_ex(struct input *in)
{
    unsigned a = u8(in), b = u8(in), k = u8(in), d = u8(in);
    int port = (int)(a % NPORTS);
    int null_port = a >= 250, null_work = k >= 250, null_pool = b >= 200;
    int pool = null_pool ? DEFPOOL(port) : (int)(b % NPOOLS);
    int kind = (int)(k % W_ALL);
    struct job_opts_buf ob;
    int size_err;
    const struct evexec_job_opts *opts = decode_job_opts(in, &ob, &size_err);
    unsigned to = u8(in), cl = u8(in), gr = u8(in), wm = u8(in);
    struct evexec_job_opts *o = &ob.o;
    static const int waits[4] = {1, EVEXEC_WAIT_FOREVER, -2, INT_MIN};

    o->timeout_ms = to < 112 ? 0u
                    : to < 192 ? 1 + to % 5
                    : to < 232 ? 20 + to % 40
                    : to < 248 ? 60000u
                    : to < 252 ? (unsigned)INT_MAX
                    : to < 254 ? (unsigned)INT_MAX + 1 : UINT_MAX;
    o->cleanup = cl & 1 ? fuzz_cleanup : NULL;
    o->wait_ms = wm < 240 ? 0 : waits[wm % 4];
    int gi = -1;
    if (gr >= 128 && S.ngroups) {
        gi = (int)(gr % (unsigned)S.ngroups);
        if (group_usable(&S.groups[gi]))
            o->group = S.groups[gi].h;
        else
            gi = -1;
    }
    if (S.njobs >= MAXJOBS)
        return;
    struct fport *fq = &S.ports[port];
    if ((!fq->h || fq->freed) && !null_port)
        return;
    if (!null_pool && !S.pools[pool].h)
        return;
    struct fjob *j = new_job(port, pool, kind, null_pool);
    if (null_port)
        j->port_h = NULL;
    evexec_done_fn done = d % 8 == 0 ? NULL : fuzz_done;
    struct fgroup *g = gi >= 0 ? &S.groups[gi] : NULL;
    if (opts) {
        j->timeout_ms = o->timeout_ms;
        j->has_cleanup = o->cleanup != NULL;
    } else {
        g = NULL;
        gi = -1;
    }
    /* A malloc'd result needs an owner whatever happens: the done
     * callback, or cleanup if the deadline may pass first. */
    j->mres = done && (cl & 2) && (!j->timeout_ms || j->has_cleanup);

    /* What the header says it must answer. A usable group (one with a
     * callback we have not seen run) is decided only once closed. */
    int field_bad = o->priority < EVEXEC_PRIO_HIGH || o->priority > EVEXEC_PRIO_LOW ||
                    o->timeout_ms > INT_MAX || o->wait_ms != 0 ||
                    (g && (g->port != port || g->closed));
    int expect, alt;
    if (null_port || null_work) {
        expect = alt = -EINVAL;
    } else if (!opts) {
        expect = alt = 0;
    } else if (size_err) {
        expect = size_err;
        alt = field_bad && size_err == -E2BIG ? -EINVAL : expect;
    } else {
        expect = alt = field_bad ? -EINVAL : 0;
    }
    evexec_job_id id = 0;
    j->t_submit = now_ns();
    S.in_call++;
    int rc = evexec_submit_ex(j->port_h, j->pool_h, null_work ? NULL : fuzz_work, done, j, opts,
                              &id);
    S.in_call--;
    if (expect != 0 || alt != 0) {
        EXPECT(rc == expect || rc == alt, "submit_ex (port %d pool %d opts %s prio %d timeout %u "
                                          "wait %d group %d) = %d, expected %d",
               null_port ? -1 : port, null_pool ? -1 : pool, opts ? "set" : "NULL",
               o->priority, o->timeout_ms, o->wait_ms, gi, rc, expect);
        EXPECT(id == 0, "submit_ex: a refused submit wrote the id");
        return;
    }
    struct fpool *fp = &S.pools[pool];
    if (rc != 0) {
        EXPECT(id == 0, "submit_ex: a refused submit wrote the id");
        check_refusal("submit_ex", fp, rc);
        return;
    }
    EXPECT(fp->shut == 0, "submit_ex accepted by a shut-down pool");
    EXPECT(id != 0, "id 0 for an accepted job");
    j->id = id;
    if (g) {
        j->group = gi;
        g->members++;
        if (!done)
            g->nodone_members++;
    }
    job_accepted(j, fp, done);
}

static void op_threadsafe(struct input *in)
{
    unsigned a = u8(in), b = u8(in), k = u8(in), d = u8(in);
    int port = (int)(a % NPORTS);
    int null_port = a >= 250, null_work = k >= 250, null_pool = b >= 200;
    int pool = null_pool ? DEFPOOL(port) : (int)(b % NPOOLS);
    struct job_opts_buf ob;
    int size_err;
    const struct evexec_job_opts *opts = decode_job_opts(in, &ob, &size_err);
    unsigned x = u8(in);
    struct evexec_job_opts *o = &ob.o;

    if (x & 1)
        o->timeout_ms = 5;
    if ((x & 2) && S.ngroups && group_usable(&S.groups[x % (unsigned)S.ngroups]))
        o->group = S.groups[x % (unsigned)S.ngroups].h;
    unsigned w = (x >> 2) % 4;
    o->wait_ms = w < 2 ? 0 : w == 2 ? (x & 16 ? EVEXEC_WAIT_FOREVER : 7) : -2;
    if (S.njobs >= MAXJOBS)
        return;
    struct fport *fq = &S.ports[port];
    if ((!fq->h || fq->freed) && !null_port)
        return;
    if (!null_pool && !S.pools[pool].h)
        return;
    struct fjob *j = new_job(port, pool, (int)(k % W_ALL), null_pool);
    if (null_port)
        j->port_h = NULL;
    evexec_done_fn done = d % 8 == 0 ? NULL : fuzz_done;
    j->remote = 1;
    j->mres = done && (d & 1);

    int invalid = o->priority < EVEXEC_PRIO_HIGH || o->priority > EVEXEC_PRIO_LOW ||
                  o->wait_ms < EVEXEC_WAIT_FOREVER;
    int loop_only = o->timeout_ms || o->group;  /* -EINVAL here */
    int deadlk = o->wait_ms != 0; /* on the loop thread, it would wait on itself */
    int expect, alt;
    if (null_port || null_work) {
        expect = alt = -EINVAL;
    } else if (!opts) {
        expect = alt = 0;
    } else if (size_err) {
        /* Which check comes first is unsaid: the size, or a field. */
        expect = size_err;
        alt = size_err == -E2BIG && (invalid || loop_only) ? -EINVAL
              : size_err == -E2BIG && deadlk              ? -EDEADLK
                                                          : expect;
    } else if (invalid) {
        expect = alt = -EINVAL;
    } else if (loop_only) {
        expect = -EINVAL;
        alt = deadlk ? -EDEADLK : expect; /* with a wait too: either */
    } else {
        expect = alt = deadlk ? -EDEADLK : 0;
    }
    S.in_call++;
    int rc = evexec_submit_threadsafe(j->port_h, j->pool_h, null_work ? NULL : fuzz_work, done,
                                      j, opts);
    S.in_call--;
    if (expect != 0 || alt != 0) {
        EXPECT(rc == expect || rc == alt, "submit_threadsafe (opts %s prio %d timeout %u wait %d "
                                          "group %d) = %d, expected %d",
               opts ? "set" : "NULL", o->priority, o->timeout_ms, o->wait_ms, o->group != NULL,
               rc, expect);
        return;
    }
    struct fpool *fp = &S.pools[pool];
    if (rc != 0) {
        check_refusal("submit_threadsafe", fp, rc);
        return;
    }
    EXPECT(fp->shut == 0, "submit_threadsafe accepted by a shut-down pool");
    job_accepted(j, fp, done);
}

static void op_group(struct input *in)
{
    unsigned sub = u8(in) % 5, a = u8(in), c = u8(in);
    if (sub < 2) {
        static const int hows[8] = {EVEXEC_GROUP_ALL,
                                    EVEXEC_GROUP_FIRST,
                                    EVEXEC_GROUP_FIRST | EVEXEC_GROUP_CANCEL_REST,
                                    EVEXEC_GROUP_ALL,
                                    EVEXEC_GROUP_FIRST,
                                    EVEXEC_GROUP_CANCEL_REST,
                                    -1,
                                    7};
        int port = (int)(a % NPORTS), how = hows[c % 8];
        unsigned fl = u8(in);
        int null_port = a >= 250, null_out = fl >= 240;
        if (S.ngroups >= MAXGROUPS)
            return;
        if (!null_port && (!S.ports[port].h || S.ports[port].freed))
            return;
        struct fgroup *g = &S.groups[S.ngroups];
        memset(g, 0, sizeof *g);
        g->port = port;
        g->how = how;
        g->has_fn = fl % 8 != 0;
        g->cancel_in_cb = (fl & 8) != 0;
        evexec_group *h = (evexec_group *)(uintptr_t)1;
        int valid = how == EVEXEC_GROUP_ALL || how == EVEXEC_GROUP_FIRST ||
                    how == (EVEXEC_GROUP_FIRST | EVEXEC_GROUP_CANCEL_REST);
        int rc = evexec_group_new(null_out ? NULL : &h, null_port ? NULL : S.ports[port].h, how,
                                  g->has_fn ? fuzz_group_cb : NULL, g);
        int expect = null_out || null_port || !valid ? -EINVAL : 0;
        EXPECT(rc == expect, "group_new(how %d) = %d, expected %d", how, rc, expect);
        if (rc != 0) {
            EXPECT(h == (evexec_group *)(uintptr_t)1, "group_new wrote out on error");
            return;
        }
        g->h = h;
        S.ngroups++;
        return;
    }
    if (a >= 250) {
        int rc = sub == 4 ? evexec_group_cancel(NULL) : evexec_group_close(NULL);
        EXPECT(rc == -EINVAL, "group close/cancel(NULL) = %d", rc);
        return;
    }
    if (!S.ngroups)
        return;
    struct fgroup *g = &S.groups[a % (unsigned)S.ngroups];
    if (!group_usable(g))
        return;
    S.in_call++;
    int rc = sub == 4 ? evexec_group_cancel(g->h) : evexec_group_close(g->h);
    S.in_call--;
    if (sub == 4) {
        EXPECT(rc == (g->cancelled ? -EALREADY : 0), "group_cancel = %d (cancelled %d)", rc,
               g->cancelled);
        g->cancelled = g->closed = 1;
    } else {
        EXPECT(rc == (g->closed ? -EALREADY : 0), "group_close = %d (closed %d)", rc, g->closed);
        g->closed = 1;
        /* Closed with no member: decided now, so a CANCEL_REST group has
         * nothing left to cancel (-EALREADY from now on). */
        if ((g->how & EVEXEC_GROUP_CANCEL_REST) && g->members == 0)
            g->cancelled = 1;
    }
}

/* A pool byte: one of our pools, a port's default pool (once asked for),
 * or NULL (>= 250). Returns the slot, -1 for NULL, -2 for none. */
static int pick_pool(unsigned a)
{
    if (a >= 250)
        return -1;
    int slot = (int)(a % (NPOOLS + NPORTS));
    if (!S.pools[slot].h)
        return -2;
    if (slot >= NPOOLS && S.ports[slot - NPOOLS].freed)
        return -2; /* went with its port */
    return slot;
}

static void op_resize(struct input *in)
{
    unsigned a = u8(in), mn = u8(in), mx = u8(in), mq = u8(in);
    unsigned min = mn < 200 ? mn % 4 : 2000;
    unsigned max = mx < 200 ? 1 + mx % 8 : mx < 225 ? 0 : mx < 250 ? EVEXEC_MAX_THREADS + 1
                                                                 : EVEXEC_MAX_THREADS;
    size_t maxq = mq < 128 ? 1 + mq % 8 : mq < 200 ? 65536 : mq < 225 ? 0
                                                       : (size_t)EVEXEC_MAX_QUEUED + 1;
    int slot = pick_pool(a);
    if (slot == -2)
        return;
    struct fpool *fp = slot >= 0 ? &S.pools[slot] : NULL;
    int valid = max >= 1 && max <= EVEXEC_MAX_THREADS && min <= max && maxq >= 1 &&
                maxq <= EVEXEC_MAX_QUEUED;
    S.in_call++;
    int rc = evexec_pool_resize(fp ? fp->h : NULL, min, max, maxq);
    S.in_call--;
    if (!fp || !valid) {
        EXPECT(rc == -EINVAL, "pool_resize(%u, %u, %zu) = %d", min, max, maxq, rc);
        return;
    }
    if (fp->shut)
        EXPECT(rc == -ESHUTDOWN, "pool_resize of a shut-down pool = %d", rc);
    else
        EXPECT(rc == 0 || (fp->async_shut && rc == -ESHUTDOWN), "pool_resize(%u, %u, %zu) = %d",
               min, max, maxq, rc);
    if (rc == 0) {
        fp->min_threads = min;
        fp->max_threads = max;
        fp->max_queued = maxq;
        if (maxq > fp->max_queued_hi)
            fp->max_queued_hi = maxq;
    }
}

static void op_class_limit(struct input *in)
{
    unsigned a = u8(in), pr = u8(in), l = u8(in);
    int prio = decode_prio(pr);
    unsigned lim = l < 200 ? l % 4 : l < 225 ? EVEXEC_MAX_THREADS
                                   : l < 250 ? EVEXEC_MAX_THREADS + 1 : UINT_MAX;
    int slot = pick_pool(a);
    if (slot == -2)
        return;
    int rc = evexec_pool_set_class_limit(slot >= 0 ? S.pools[slot].h : NULL, prio, lim);
    int valid = slot >= 0 && prio >= EVEXEC_PRIO_HIGH && prio <= EVEXEC_PRIO_LOW &&
                lim <= EVEXEC_MAX_THREADS;
    EXPECT(rc == (valid ? 0 : -EINVAL), "pool_set_class_limit(%d, %u) = %d", prio, lim, rc);
}

static void op_histograms(struct input *in)
{
    unsigned a = u8(in), sz = u8(in) % 8;
    struct {
        struct evexec_pool_histograms h;
        unsigned char extra[8];
    } buf;
    int slot = pick_pool(a);
    if (slot == -2)
        return;
    struct fpool *fp = slot >= 0 ? &S.pools[slot] : NULL;
    memset(&buf, 0xa5, sizeof buf);
    buf.h.size = sz == 1 ? sizeof buf.h - 1 : sz == 2 ? 0 : sz == 3 ? sizeof buf : sizeof buf.h;
    int rc = evexec_pool_histograms(fp ? fp->h : NULL, sz == 4 ? NULL : &buf.h);
    int bad = !fp || sz == 1 || sz == 2 || sz == 4;
    if (bad) {
        EXPECT(rc == -EINVAL || (fp && !fp->hist && rc == -ENOTSUP),
               "pool_histograms(size variant %u) = %d", sz, rc);
        return;
    }
    if (!fp->hist) {
        EXPECT(rc == -ENOTSUP, "pool_histograms without the flag = %d", rc);
        return;
    }
    EXPECT(rc == 0, "pool_histograms = %d", rc);
    for (size_t i = 0; i < sizeof buf.extra; i++)
        EXPECT(buf.extra[i] == 0xa5, "pool_histograms wrote past its struct");
    uint64_t wait = 0, run = 0;
    for (int i = 0; i < EVEXEC_HIST_BUCKETS; i++) {
        wait += buf.h.wait[i];
        run += buf.h.run[i];
    }
    struct evexec_pool_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    EXPECT(evexec_pool_stats(fp->h, &st) == 0, "pool_stats");
    EXPECT(wait <= st.submitted && run <= st.submitted,
           "histograms count %llu waits and %llu runs of %llu jobs", (unsigned long long)wait,
           (unsigned long long)run, (unsigned long long)st.submitted);
    EXPECT(run >= fp->finished, "histograms count %llu runs, %u jobs are known to have run",
           (unsigned long long)run, fp->finished);
}

static void op_default_pool(struct input *in)
{
    unsigned a = u8(in), v = u8(in) % 4;
    int port = (int)(a % NPORTS);
    evexec_pool *h = (evexec_pool *)(uintptr_t)1;
    if (a >= 250 || v == 0) {
        int rc = evexec_port_default_pool(a >= 250 ? NULL : S.ports[port].h, v == 0 ? NULL : &h);
        EXPECT(rc == -EINVAL && h == (evexec_pool *)(uintptr_t)1, "port_default_pool(NULL) = %d",
               rc);
        return;
    }
    if (!S.ports[port].h || S.ports[port].freed)
        return;
    struct fpool *fp = &S.pools[DEFPOOL(port)];
    int rc = evexec_port_default_pool(S.ports[port].h, &h);
    EXPECT(rc == 0, "port_default_pool = %d", rc);
    EXPECT(!fp->h || fp->h == h, "port_default_pool: another pool the second time");
    fp->h = h;
    struct evexec_pool_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    EXPECT(evexec_pool_stats(h, &st) == 0, "pool_stats of a default pool");
    if (!fp->max_threads) {
        EXPECT(st.max_threads >= 5 && st.max_threads <= 32 && st.min_threads == 0,
               "default pool: %u..%u threads", st.min_threads, st.max_threads);
        fp->max_threads = st.max_threads;
    }
    EXPECT(st.max_queued == fp->max_queued, "default pool: max_queued %zu, expected %zu",
           st.max_queued, fp->max_queued);
}

/* ------------------------------------------------------------------------ */
/* Hostile use, loops and futures (opcode bytes 0xfc..0xff)                 */
/*
 * Each of these ops is self-contained: it makes its own pools, ports and
 * loops and frees them before it returns, so the model above is untouched.
 * What they check is that every call returns (a call that loops for ever
 * is a libFuzzer timeout) with an answer the header allows:
 *  - a port freed and made again: old ids are -ENOENT on the new port, its
 *    default pool refuses evexec_pool_free() (-EPERM);
 *  - evexec_pool_resize() with a large min_threads racing
 *    evexec_pool_shutdown() from another thread, optionally with a
 *    worker_init that always fails; evexec_pool_new() with such an init;
 *  - a loop with calls that resolve, fail with any errno, stay unsettled
 *    (with or without a stop hook), stop the loop from inside, offload to
 *    a pool; futures waited on, polled, cancelled, freed early; the loop
 *    stopped from another thread with either mode, or escalated;
 *  - evexec_loop_start() and evexec_port_new() with 0..7 fds free.
 */
static int hostile_init_fail(void *arg, void **state)
{
    (void)arg;
    (void)state;
    return 1;
}

static void *hostile_echo(evexec_job *job, void *arg)
{
    (void)job;
    return arg;
}

static void hostile_count(int status, void *result, void *arg)
{
    (void)status;
    (void)result;
    ++*(int *)arg;
}

static void hostile_drain(struct event_base *base, const int *count, int want)
{
    for (int n = 0; *count < want; n++) {
        EXPECT(n < 200000, "hostile: %d of %d callbacks", *count, want);
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (n > 100) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}

static void hostile_release(struct event_base *base)
{
    /* Freed ports leave the base once their last wake-up is read. */
    for (int n = 0; event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED) > 0; n++) {
        EXPECT(n < 200000, "hostile: a freed port never released itself");
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (n > 100) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}

static void op_port_remade(struct input *in)
{
    unsigned n = 1 + u8(in) % 3, use_default = u8(in) & 1;
    struct event_base *base = event_base_new();
    evexec_pool *pool = NULL, *dflt;
    evexec_port *port;
    evexec_job_id old[3], now;
    int calls = 0, rc;

    EXPECT(base != NULL, "event_base_new");
    if (!use_default)
        EXPECT(evexec_pool_new(&pool, NULL) == 0, "hostile pool_new");
    EXPECT(evexec_port_new(&port, base, NULL) == 0, "hostile port_new");
    for (unsigned i = 0; i < n; i++)
        EXPECT(evexec_submit(port, pool, hostile_echo, hostile_count, &calls, &old[i]) == 0,
               "hostile submit");
    hostile_drain(base, &calls, (int)n);
    if (use_default) {
        EXPECT(evexec_port_default_pool(port, &dflt) == 0, "default pool");
        rc = evexec_pool_free(dflt);
        EXPECT(rc == -EPERM, "pool_free of a port's default pool = %d", rc);
    }
    EXPECT(evexec_port_free(port) == 0, "hostile port_free");
    hostile_release(base);
    /* A new port, at the same address or not: the old ids name nothing. */
    EXPECT(evexec_port_new(&port, base, NULL) == 0, "hostile port_new again");
    for (unsigned i = 0; i < n; i++)
        EXPECT(evexec_submit(port, pool, hostile_echo, hostile_count, &calls, &now) == 0,
               "hostile submit again");
    for (unsigned i = 0; i < n; i++) {
        rc = evexec_cancel(port, old[i]);
        EXPECT(rc == -ENOENT, "cancel of a freed port's id on its successor = %d", rc);
    }
    hostile_drain(base, &calls, 2 * (int)n);
    EXPECT(evexec_port_free(port) == 0, "hostile port_free again");
    hostile_release(base);
    EXPECT(evexec_pool_free(pool) == 0, "hostile pool_free");
    event_base_free(base);
}

static void *hostile_shutdown(void *arg)
{
    int rc = evexec_pool_shutdown(arg, (int)(uintptr_t)0);
    return (void *)(intptr_t)rc;
}

static void op_resize_race(struct input *in)
{
    unsigned a = u8(in), min = u8(in) % 65;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;
    evexec_future *f = NULL;
    pthread_t t;
    void *r;
    int rc;

    o.max_threads = 64;
    if (a & 1)
        o.worker_init = hostile_init_fail;
    if (a & 2)
        o.min_threads = min;
    rc = evexec_pool_new(&pool, &o);
    EXPECT(rc == 0 || rc == -EAGAIN, "pool_new(min %u, init %s) = %d", o.min_threads,
           (a & 1) ? "failing" : "none", rc);
    if (rc != 0)
        return;
    if (a & 4) {
        rc = evexec_pool_call(pool, hostile_echo, pool, &f);
        EXPECT(rc == 0 || rc == -EAGAIN, "pool_call = %d", rc);
    }
    int racing = (a & 8) != 0;
    if (racing)
        EXPECT(pthread_create(&t, NULL, hostile_shutdown, pool) == 0, "pthread_create");
    rc = evexec_pool_resize(pool, min, 64, 100);
    EXPECT(rc == 0 || rc == -EAGAIN || (racing && rc == -ESHUTDOWN), "pool_resize(%u) = %d", min,
           rc);
    if (racing) {
        pthread_join(t, &r);
        EXPECT((intptr_t)r == 0, "pool_shutdown = %d", (int)(intptr_t)r);
    }
    if (f) {
        EXPECT(evexec_future_wait(f, EVEXEC_WAIT_FOREVER) == 0, "future_wait");
        rc = evexec_future_result(f, &r);
        EXPECT(rc == 0 ? r == pool : rc == -ECANCELED && r == NULL, "pool future = %d", rc);
        EXPECT(!(a & 1) || rc == -ECANCELED, "a job ran with every worker_init failing");
        evexec_future_free(f);
    }
    EXPECT(evexec_pool_free(pool) == 0, "pool_free after resize");
}

/* --- loop and futures ---------------------------------------------------- */

enum { LC_RESOLVE, LC_FAIL, LC_HOLD_STOP, LC_HOLD, LC_STOP_INSIDE, LC_OFFLOAD, LC_N };

struct lcall {
    int kind, err;
    evexec_future *f;
    evexec_promise *p;      /* held */
    int settled;            /* by us: the promise is gone */
    int on_stop_rc, stop_rc;
    evexec_pool *pool;
};

static void lc_settle_on_stop(evexec_promise *p, void *arg)
{
    struct lcall *c = arg;
    EXPECT(p == c->p && !c->settled, "stop hook of another promise");
    c->settled = 1;
    int rc = evexec_promise_resolve(p, c);
    EXPECT(rc == 0 || rc == -ECANCELED, "resolve from the stop hook = %d", rc);
}

static void lc_on_cancel(evexec_promise *p, void *arg)
{
    struct lcall *c = arg;
    EXPECT(p == c->p, "cancel hook of another promise");
    if (!c->settled) {
        c->settled = 1;
        int rc = evexec_promise_fail(p, -ECANCELED);
        EXPECT(rc == -ECANCELED, "fail after a cancel = %d", rc);
    }
}

static void lc_offload_done(int status, void *result, void *arg)
{
    struct lcall *c = arg;
    EXPECT(status == 0 || status == -ECANCELED, "offloaded job status %d", status);
    if (!c->settled) {
        c->settled = 1;
        int rc = status ? evexec_promise_fail(c->p, status) : evexec_promise_resolve(c->p, result);
        EXPECT(rc == 0 || rc == -ECANCELED, "settle from a done callback = %d", rc);
    }
}

static void lc_run(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct lcall *c = arg;
    evexec_port *port;
    int rc;

    c->p = p;
    switch (c->kind) {
    case LC_RESOLVE:
        c->settled = 1;
        rc = evexec_promise_resolve(p, c);
        EXPECT(rc == 0 || rc == -ECANCELED, "resolve = %d", rc);
        break;
    case LC_FAIL:
        c->settled = 1;
        rc = evexec_promise_fail(p, c->err);
        EXPECT(rc == 0 || rc == -ECANCELED, "fail(%d) = %d", c->err, rc);
        break;
    case LC_HOLD_STOP:
        rc = evexec_promise_on_stop(p, lc_settle_on_stop, c);
        EXPECT(rc == 0 || rc == -ESHUTDOWN, "on_stop = %d", rc);
        if (rc == -ESHUTDOWN) {
            c->settled = 1;
            evexec_promise_resolve(p, c);
            break;
        }
        EXPECT(evexec_promise_on_cancel(p, lc_on_cancel, c) == 0 || evexec_promise_cancelled(p),
               "on_cancel");
        break;
    case LC_HOLD: /* settled only by its cancel hook: a drain waits for it */
        rc = evexec_promise_on_cancel(p, lc_on_cancel, c);
        if (rc == -ECANCELED) {
            c->settled = 1;
            EXPECT(evexec_promise_fail(p, -ECANCELED) == -ECANCELED, "fail after cancel");
        } else {
            EXPECT(rc == 0, "on_cancel = %d", rc);
        }
        break;
    case LC_STOP_INSIDE:
        c->stop_rc = evexec_loop_stop(loop, EVEXEC_DRAIN);
        EXPECT(c->stop_rc == -EINPROGRESS || c->stop_rc == -EALREADY, "stop on the loop = %d",
               c->stop_rc);
        rc = evexec_promise_on_stop(p, lc_settle_on_stop, c);
        EXPECT(rc == -ESHUTDOWN, "on_stop once a stop has begun = %d", rc);
        c->settled = 1;
        evexec_promise_resolve(p, NULL);
        break;
    default: /* LC_OFFLOAD */
        rc = evexec_loop_port(loop, &port);
        EXPECT(rc == 0, "loop_port = %d", rc);
        rc = evexec_submit(port, c->pool, hostile_echo, lc_offload_done, c, NULL);
        EXPECT(rc == 0 || rc == -ESHUTDOWN || rc == -EAGAIN, "submit through a loop's port = %d",
               rc);
        if (rc != 0) {
            c->settled = 1;
            evexec_promise_fail(p, rc);
        }
        break;
    }
}

struct lstop {
    evexec_loop *loop;
    int how, rc;
};

static void *lc_stopper(void *arg)
{
    struct lstop *s = arg;
    s->rc = evexec_loop_stop(s->loop, s->how);
    return NULL;
}

static int lc_init_err;
static int lc_init(evexec_loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
    return lc_init_err;
}

#define NLCALLS 12
static void op_loop(struct input *in)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    struct lcall calls[NLCALLS];
    evexec_loop *loop;
    evexec_pool *pool;
    unsigned a = u8(in), n = u8(in) % (NLCALLS + 1);
    int holds = 0, rc;

    memset(calls, 0, sizeof calls);
    if (a % 8 == 7) { /* init fails with some errno: start returns it */
        lc_init_err = -(int)(1 + u8(in) % 133);
        o.init = lc_init;
        loop = NULL;
        rc = evexec_loop_start(&loop, &o);
        EXPECT(rc == lc_init_err && loop == NULL, "loop_start with init %d = %d", lc_init_err,
               rc);
        return;
    }
    o.max_batch = a & 8 ? 1 : 0;
    EXPECT(evexec_pool_new(&pool, NULL) == 0, "pool_new for a loop");
    rc = evexec_loop_start(&loop, &o);
    EXPECT(rc == 0, "loop_start = %d", rc);
    for (unsigned i = 0; i < n; i++) {
        struct lcall *c = &calls[i];
        unsigned k = u8(in);
        c->kind = (int)(k % LC_N);
        c->err = -(int)(1 + (k >> 3) % 133);
        if (c->err == -EINPROGRESS)
            c->err = -EIO;
        c->pool = pool;
        holds += c->kind == LC_HOLD;
        rc = evexec_loop_call(loop, lc_run, c, (k & 0x80) && c->kind != LC_HOLD ? NULL : &c->f);
        EXPECT(rc == 0 || rc == -ESHUTDOWN, "loop_call = %d", rc);
        if (rc != 0)
            c->f = NULL;
        if (c->f && (k & 0x40)) {
            rc = evexec_future_wait(c->f, 0);
            EXPECT(rc == 0 || rc == -ETIMEDOUT, "future_wait(0) = %d", rc);
        }
        if (c->f && (k & 0x20)) {
            rc = evexec_future_cancel(c->f);
            EXPECT(rc == 0 || rc == -EALREADY, "future_cancel = %d", rc);
        }
    }
    /* The stop: a drain cannot end while a held call waits for a cancel. */
    unsigned s = u8(in);
    int how = holds || (s & 1) ? EVEXEC_CANCEL : EVEXEC_DRAIN;
    if (s & 2) { /* a drain from one thread, escalated from another */
        struct lstop st = {loop, EVEXEC_DRAIN, 1};
        pthread_t t;
        if (!holds) {
            EXPECT(pthread_create(&t, NULL, lc_stopper, &st) == 0, "pthread_create");
            rc = evexec_loop_stop(loop, how);
            pthread_join(t, NULL);
            EXPECT(st.rc == 0 || st.rc == -EALREADY, "stop(DRAIN) = %d", st.rc);
        } else {
            rc = evexec_loop_stop(loop, how);
        }
    } else {
        rc = evexec_loop_stop(loop, how);
    }
    EXPECT(rc == 0 || rc == -EALREADY, "loop_stop(%d) = %d", how, rc);
    rc = evexec_loop_stop(loop, EVEXEC_CANCEL);
    EXPECT(rc == -EALREADY, "loop_stop once ended = %d", rc);
    for (unsigned i = 0; i < n; i++) {
        struct lcall *c = &calls[i];
        if (!c->f)
            continue;
        void *r;
        rc = evexec_future_result(c->f, &r);
        EXPECT(rc != -EINPROGRESS, "a future still pending once its loop has stopped");
        if (rc == 0)
            EXPECT(c->kind != LC_FAIL, "a failed call resolved");
        else if (c->kind == LC_FAIL && rc != -ECANCELED)
            EXPECT(rc == c->err && strcmp(evexec_errname(rc), "UNKNOWN") != 0,
                   "call failed with %d, future says %d (%s)", c->err, rc, evexec_errname(rc));
        evexec_future_free(c->f);
    }
    EXPECT(evexec_loop_free(loop) == 0, "loop_free");
    EXPECT(evexec_pool_free(pool) == 0, "pool_free after a loop");
}

/* --- fd exhaustion ------------------------------------------------------- */

static void op_fds(struct input *in)
{
    unsigned spare = u8(in) % 8;
    struct rlimit old, lim;
    int top = -1, fd, nheld = 0, *held;
    struct event_base *base = event_base_new(); /* made while fds are left */

    EXPECT(base != NULL, "event_base_new");

    /* The highest fd open now; the limit goes just above it plus 32. */
    for (fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            top = fd;
    if (getrlimit(RLIMIT_NOFILE, &old) != 0 || (rlim_t)top + 33 > old.rlim_cur) {
        event_base_free(base);
        return;
    }
    lim = old;
    lim.rlim_cur = (rlim_t)top + 33;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) { /* valgrind keeps it */
        event_base_free(base);
        return;
    }
    held = malloc(((size_t)top + 33) * sizeof *held);
    EXPECT(held != NULL, "malloc");
    while (nheld < top + 33 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        held[nheld++] = fd;
    for (unsigned i = 0; i < spare && nheld; i++)
        close(held[--nheld]);
    evexec_loop *loop = NULL;
    int rc = evexec_loop_start(&loop, NULL);
    EXPECT(rc == 0 || rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM,
           "loop_start with %u fds free = %d", spare, rc);
    EXPECT(rc != 0 || spare >= 4, "loop_start with %u fds free", spare);
    if (rc == 0)
        EXPECT(evexec_loop_free(loop) == 0, "loop_free");
    evexec_port *port = NULL;
    rc = evexec_port_new(&port, base, NULL);
    EXPECT(rc == 0 || rc == -EMFILE || rc == -ENFILE, "port_new with %u fds free = %d", spare, rc);
    if (rc == 0) {
        EXPECT(evexec_port_free(port) == 0, "port_free");
        hostile_release(base);
    }
    while (nheld)
        close(held[--nheld]);
    free(held);
    setrlimit(RLIMIT_NOFILE, &old);
    event_base_free(base);
}

static void op_hostile(unsigned op, struct input *in)
{
    switch (op & 3) {
    case 0:
        op_port_remade(in);
        break;
    case 1:
        op_resize_race(in);
        break;
    case 2:
        op_loop(in);
        break;
    default:
        op_fds(in);
        break;
    }
}

static void run_once(void)
{
    event_base_loop(S.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* Runs the loop until every accepted job is delivered (bounded). */
static void run_all(void)
{
    int want = 0;
    for (int i = 0; i < S.njobs; i++)
        want += S.jobs[i].accepted && !S.jobs[i].nodone;
    for (int n = 0; S.callbacks < want; n++) {
        EXPECT(n < 200000, "%d of %d callbacks, and no more coming", S.callbacks, want);
        run_once();
        if (S.callbacks < want && n > 100) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, data + size};

    memset(&S, 0, sizeof S);
    S.base = event_base_new();
    if (!S.base)
        abort();
    /* Most inputs want a pool and a port: start with one of each. */
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    o.max_threads = 2;
    if (evexec_pool_new(&S.pools[0].h, &o) != 0 || evexec_port_new(&S.ports[0].h, S.base, NULL))
        abort();
    S.pools[0].max_queued = S.pools[0].max_queued_hi = 65536;
    S.pools[0].max_threads = 2;
    S.loop_thread = pthread_self();
    default_pool_slot(0);

    while (in.p < in.end) {
        unsigned op = u8(&in);
        if (op >= 0xfc) { /* hostile use, loops and futures (see there) */
            op_hostile(op, &in);
            continue;
        }
        if (op >= 0xd0) {
            /* The issue-7 API: bytes 0xd0.. (bytes below keep the meaning
             * they had before it, for the corpus). */
            switch ((op - 0xd0) % 12) {
            case 0:
                op_pool_new(&in, 1);
                break;
            case 1:
            case 2:
            case 3:
                op_submit_ex(&in);
                break;
            case 4:
            case 5:
                op_threadsafe(&in);
                break;
            case 6:
            case 7:
                op_group(&in);
                break;
            case 8:
                op_resize(&in);
                break;
            case 9:
                op_class_limit(&in);
                break;
            case 10:
                op_histograms(&in);
                break;
            default:
                op_default_pool(&in);
                break;
            }
            continue;
        }
        switch (op % 12) {
        case 0:
            op_pool_new(&in, 0);
            break;
        case 1:
            op_port_new(&in);
            break;
        case 2:
        case 3:
            op_submit(&in);
            break;
        case 4:
            op_cancel(&in);
            break;
        case 5:
            op_shutdown(&in);
            break;
        case 6:
            op_pool_free(&in);
            break;
        case 7:
            op_port_free(&in);
            break;
        case 8:
            op_stats(&in);
            break;
        case 9:
            op_errors(&in);
            break;
        case 10:
            run_once();
            break;
        default:
            run_all();
            break;
        }
    }

    /* Tear down: every pool freed, every port freed, every job delivered,
     * nothing left on the base. */
    for (int p = 0; p < NPOOLS; p++)
        if (S.pools[p].h) {
            EXPECT(evexec_pool_free(S.pools[p].h) == 0, "final pool_free");
            S.pools[p].h = NULL;
            pool_freed(p);
        }
    run_all();
    for (int q = 0; q < NPORTS; q++)
        if (S.ports[q].h && !S.ports[q].freed) {
            EXPECT(evexec_port_free(S.ports[q].h) == 0, "final port_free");
            S.ports[q].freed = 1;
        }
    for (int n = 0; event_base_get_num_events(S.base, EVENT_BASE_COUNT_ADDED) > 0; n++) {
        /* Bounded by time (10 s and more), not by turns of a busy loop: a
         * worker of a loaded machine may be off its CPU for a while. */
        EXPECT(n < 200000, "a freed port never released itself");
        run_once();
        if (n > 100) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
    for (int i = 0; i < S.njobs; i++) {
        const struct fjob *j = &S.jobs[i];
        EXPECT(!j->accepted || j->calls == 1, "job %d: %d callbacks", i, j->calls);
        /* A late result goes to cleanup before the port is released. */
        if (j->accepted && j->status == -ETIMEDOUT && j->has_cleanup && atomic_load(&j->ran))
            EXPECT(j->cleanups == 1, "job %d: timed out, ran, %d cleanups", i, j->cleanups);
    }
    EXPECT(atomic_load(&S.allocs) == S.frees, "%ld results malloc'd, %ld freed",
           atomic_load(&S.allocs), S.frees);
    for (int i = 0; i < S.ngroups; i++) {
        const struct fgroup *g = &S.groups[i];
        if (g->has_fn && (g->closed || g->members))
            EXPECT(g->calls == 1, "group %d (how %d, %d members, closed %d): %d callbacks", i,
                   g->how, g->members, g->closed, g->calls);
    }
    event_base_free(S.base);
    return 0;
}
