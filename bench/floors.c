/* SPDX-License-Identifier: MIT */
/*
 * The floors: what the machine allows with no library at all.
 *
 * - futex ping-pong: two threads hand a token back and forth through two
 *   futex words (a sequence number each), waiting in FUTEX_WAIT and waking
 *   with FUTEX_WAKE: the cheapest sleeping hand-off there is.
 * - eventfd ping-pong: the same through two blocking eventfds (one read and
 *   one write per hand-off), the primitive evexec's completions use.
 * - bare threads: N threads sleeping through the jobs with no queue, for W3.
 *
 * The main thread plays the loop thread: round trips are timed there, like
 * a system's submit-to-callback round trip.
 */
#include "config.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

/* --- futex --------------------------------------------------------------- */

struct fx {
    _Atomic uint32_t req;   /* bumped by the loop side */
    _Atomic uint32_t rep;   /* set to req by the worker side */
    unsigned total;
};

static long futex(_Atomic uint32_t *w, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)w, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

static void *fx_worker(void *arg)
{
    struct fx *f = arg;
    uint32_t seen = 0;
    for (unsigned i = 0; i < f->total; i++) {
        uint32_t r;
        while ((r = atomic_load(&f->req)) == seen)
            futex(&f->req, FUTEX_WAIT, seen);
        seen = r;
        atomic_store(&f->rep, seen);
        futex(&f->rep, FUTEX_WAKE, 1);
    }
    return NULL;
}

int bench_floor_futex(uint64_t *samples, unsigned warm, unsigned n, void (*place)(void))
{
    struct fx f = {0, 0, warm + n};
    pthread_t t;
    int rc;

    if ((rc = pthread_create(&t, NULL, fx_worker, &f)) != 0)
        return -rc;
    if (place)
        place();
    for (unsigned i = 0; i < warm + n; i++) {
        uint64_t t0 = bench_now_ns();
        uint32_t seq = i + 1, r;
        atomic_store(&f.req, seq);
        futex(&f.req, FUTEX_WAKE, 1);
        while ((r = atomic_load(&f.rep)) != seq)
            futex(&f.rep, FUTEX_WAIT, r);
        if (i >= warm)
            samples[i - warm] = bench_now_ns() - t0;
    }
    pthread_join(t, NULL);
    return 0;
}

/* --- eventfd ------------------------------------------------------------- */

struct efp {
    int to_worker, to_loop;
    unsigned total;
};

static void *efd_worker(void *arg)
{
    struct efp *e = arg;
    uint64_t v;
    for (unsigned i = 0; i < e->total; i++) {
        if (read(e->to_worker, &v, sizeof v) != sizeof v)
            return NULL;
        v = 1;
        if (write(e->to_loop, &v, sizeof v) != sizeof v)
            return NULL;
    }
    return NULL;
}

int bench_floor_eventfd(uint64_t *samples, unsigned warm, unsigned n, void (*place)(void))
{
    struct efp e = {eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC), warm + n};
    pthread_t t;
    int rc = 0;

    if (e.to_worker < 0 || e.to_loop < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = -pthread_create(&t, NULL, efd_worker, &e)) < 0)
        goto out;
    if (place)
        place();
    for (unsigned i = 0; i < warm + n; i++) {
        uint64_t t0 = bench_now_ns(), v = 1;
        if (write(e.to_worker, &v, sizeof v) != sizeof v ||
            read(e.to_loop, &v, sizeof v) != sizeof v) {
            rc = -EIO;
            break;
        }
        if (i >= warm)
            samples[i - warm] = bench_now_ns() - t0;
    }
    if (rc == 0)
        pthread_join(t, NULL);
out:
    if (e.to_worker >= 0)
        close(e.to_worker);
    if (e.to_loop >= 0)
        close(e.to_loop);
    return rc;
}

/* --- bare threads -------------------------------------------------------- */

struct sleepers {
    pthread_barrier_t start;
    _Atomic unsigned next;
    unsigned jobs, us;
};

static void *sleeper(void *arg)
{
    struct sleepers *s = arg;
    pthread_barrier_wait(&s->start);
    while (atomic_fetch_add(&s->next, 1) < s->jobs)
        usleep(s->us);
    return NULL;
}

int bench_floor_threads(unsigned threads, unsigned jobs, unsigned us, uint64_t *elapsed_ns)
{
    static struct sleepers s; /* one call per process; outlives a failure */
    pthread_t *t = calloc(threads, sizeof *t);
    unsigned started = 0;
    int rc;

    if (!t)
        return -ENOMEM;
    atomic_init(&s.next, 0);
    s.jobs = jobs;
    s.us = us;
    pthread_barrier_init(&s.start, NULL, threads + 1);
    for (; started < threads; started++)
        if ((rc = -pthread_create(&t[started], NULL, sleeper, &s)) < 0)
            return rc; /* the started ones stay parked: the process is failing */
    pthread_barrier_wait(&s.start);
    uint64_t t0 = bench_now_ns();
    for (unsigned i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    *elapsed_ns = bench_now_ns() - t0;
    pthread_barrier_destroy(&s.start);
    free(t);
    return 0;
}
