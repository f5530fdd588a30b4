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
 * Built two ways: with clang -fsanitize=fuzzer (./configure --enable-fuzz,
 * tests/fuzz/run.sh), and as tests/fuzz/evexec_fuzz_replay (replay.c), which
 * runs the corpus in tests/fuzz/corpus under any compiler, in `make check`.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <evexec.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NPOOLS 3
#define NPORTS 3
#define MAXJOBS 192

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

enum { W_ECHO, W_SPIN, W_POLL, W_SHUT_DRAIN, W_SHUT_CANCEL, W_FREE_OWN, W_LOOP_CALLS, W_N };

struct fpool {
    evexec_pool *h;         /* NULL: never made or freed */
    size_t max_queued;
    int shut;               /* 0, 1 DRAIN, 2 CANCEL (as far as we know) */
    int async_shut;         /* a work function may shut it down any time */
    unsigned accepted;      /* every accepted job */
    unsigned with_cb;       /* ... of which with a done callback */
    unsigned delivered;     /* callbacks run */
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
};

static struct state {
    struct event_base *base;
    struct fpool pools[NPOOLS];
    struct fport ports[NPORTS];
    struct fjob jobs[MAXJOBS];
    int njobs;
    int callbacks;
    int submit_from_freed;  /* next callback of a freed port submits */
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

static void *fuzz_work(evexec_job *job, void *arg)
{
    struct fjob *j = arg;
    atomic_store(&j->ran, 1);
    switch (j->kind) {
    case W_SPIN:
        spin_us(20);
        break;
    case W_POLL:
        for (int i = 0; i < 200 && !evexec_job_cancelled(job); i++)
            spin_us(1);
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
    default:
        break;
    }
    return j;
}

static void fuzz_done(int status, void *result, void *arg)
{
    struct fjob *j = arg;
    struct fpool *fp = &S.pools[j->pool];
    EXPECT(j->accepted, "callback for a refused submit");
    EXPECT(++j->calls == 1, "job %d: callback number %d", (int)(j - S.jobs), j->calls);
    j->status = status;
    S.callbacks++;
    fp->delivered++;
    EXPECT(!atomic_load(&j->bad), "job %d (kind %d): a check in its work failed (%d)",
           (int)(j - S.jobs), j->kind, atomic_load(&j->bad));
    if (status == 0) {
        EXPECT(atomic_load(&j->ran), "status 0 but the work never ran");
        EXPECT(result == j, "wrong result");
        EXPECT(!j->cancel_ok, "cancel returned 0 but the job ran");
    } else {
        EXPECT(status == -ECANCELED, "status %d", status);
        EXPECT(result == NULL, "cancelled with a result");
        EXPECT(!atomic_load(&j->ran), "-ECANCELED but the work ran");
        EXPECT(!j->cancel_busy, "-ECANCELED after cancel said -EBUSY");
        EXPECT(j->cancel_ok || fp->shut == 2 || fp->async_shut || S.ports[j->port].freed,
               "-ECANCELED but nothing cancelled it");
    }
    /* A port being released may still be asked for work: -ESHUTDOWN. */
    if (S.ports[j->port].freed && S.submit_from_freed) {
        for (int p = 0; p < NPOOLS; p++) {
            if (!S.pools[p].h)
                continue;
            evexec_job_id id = 7;
            S.submit_from_freed = 0;
            int rc = evexec_submit(S.ports[j->port].h, S.pools[p].h, fuzz_work, fuzz_done, NULL,
                                   &id);
            EXPECT(rc == -ESHUTDOWN && id == 7, "submit through a freed port: %d", rc);
            break;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Calls                                                                    */

static void op_pool_new(struct input *in)
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
    int rc = evexec_pool_new(out, arg);
    EXPECT(rc == expect, "pool_new (variant %u, threads %u/%u, queue %zu, stack %zu) = %d, "
                         "expected %d",
           variant, o->min_threads, o->max_threads, o->max_queued, o->stack_size, rc, expect);
    if (rc != 0) {
        EXPECT(h == (evexec_pool *)(uintptr_t)1, "pool_new wrote out on error");
        return;
    }
    memset(fp, 0, sizeof *fp);
    fp->h = h;
    fp->max_queued = !arg || !o->max_queued ? 65536 : o->max_queued;
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
    int expect = mb >= 240 || pr >= 2 ? -EINVAL : 0; /* the base has one priority */
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
    evexec_done_fn done = u8(in) % 8 == 0 ? NULL : fuzz_done;
    int rc = evexec_submit(j->port_h, j->pool_h, null_work ? NULL : fuzz_work, done, j, &id);
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
    int rc = evexec_cancel(S.ports[port].h, id);
    if (nodone)
        return;
    if (!j) {
        EXPECT(rc == -ENOENT, "cancel of an id with no live job = %d", rc);
        return;
    }
    struct fpool *fp = &S.pools[j->pool];
    if (rc == 0) {
        EXPECT(!j->cancel_ok && !j->cancel_busy, "cancel = 0 twice");
        j->cancel_ok = 1;
    } else if (rc == -EBUSY) {
        EXPECT(!j->cancel_ok, "-EBUSY after cancel = 0");
        j->cancel_busy = 1;
    } else if (rc == -EALREADY) {
        EXPECT(j->cancel_ok || fp->shut == 2 || fp->async_shut, "-EALREADY, never cancelled");
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
    int rc = evexec_pool_shutdown(fp->h, how);
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
    int rc = evexec_pool_free(fp->h);
    EXPECT(rc == 0, "pool_free = %d", rc);
    fp->h = NULL;
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
    int rc = evexec_port_free(fq->h);
    EXPECT(rc == 0, "port_free = %d", rc);
    fq->freed = 1;
    S.submit_from_freed = (int)(a & 1);
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
    memset(&buf, 0, sizeof buf);
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
            EXPECT(buf.p.queued <= fp->max_queued, "more queued than max_queued");
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
    S.pools[0].max_queued = 65536;

    while (in.p < in.end) {
        switch (u8(&in) % 12) {
        case 0:
            op_pool_new(&in);
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
        }
    run_all();
    for (int q = 0; q < NPORTS; q++)
        if (S.ports[q].h && !S.ports[q].freed) {
            EXPECT(evexec_port_free(S.ports[q].h) == 0, "final port_free");
            S.ports[q].freed = 1;
        }
    for (int n = 0; event_base_get_num_events(S.base, EVENT_BASE_COUNT_ADDED) > 0; n++) {
        EXPECT(n < 100000, "a freed port never released itself");
        run_once();
    }
    for (int i = 0; i < S.njobs; i++)
        EXPECT(!S.jobs[i].accepted || S.jobs[i].calls == 1, "job %d: %d callbacks", i,
               S.jobs[i].calls);
    event_base_free(S.base);
    return 0;
}
