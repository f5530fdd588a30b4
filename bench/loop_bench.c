/* SPDX-License-Identifier: MIT */
/*
 * bench/loop_bench: the loop thread seen from blocking threads.
 *
 * Workloads (the call is a no-op: it resolves its promise with its argument
 * at once, so what is measured is the round trip through evexec):
 *   L1 sync   T threads (1, 4, 16), each posting a call and waiting for its
 *             future before posting the next (one call in flight per
 *             thread, like run_coroutine_threadsafe(...).result());
 *             figure: calls/s, all threads together.
 *   L2 window T threads, each keeping W calls in flight (post W, wait for
 *             them in order, free): what batching on the loop side gives.
 *   L3 latency one thread, one call in flight: 1,000 warm-up round trips,
 *             then N timed ones; figure: p50 / p99 / p99.9 µs.
 * A first untimed burst starts the loop thread's caches and the allocator.
 *
 * Each workload is run R times (--runs, default 5) interleaved (L1, L2, L3,
 * L1, ...) and the median is printed, with the spread (min..max).
 * --machine prints one "key value" line per figure instead, for
 * bench/loop_bench.py --compare.
 *
 *   ./bench/loop_bench [--calls N] [--latency-calls N] [--runs R]
 *                      [--window W] [--machine]
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <evexec.h>

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "loop_bench: %s: %s\n", what, evexec_strerror(rc));
    exit(1);
}

static void echo_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    (void)loop;
    evexec_promise_resolve(p, arg);
}

/* --- L1 / L2 ------------------------------------------------------------- */

struct run {
    evexec_loop *loop;
    unsigned threads, window;
    unsigned long calls_per_thread;
    pthread_barrier_t start;
    _Atomic unsigned long bad;
    _Atomic uint64_t first_start, last_end; /* the span all threads worked */
};

static void *poster(void *arg)
{
    struct run *r = arg;
    evexec_future *f[256];
    void *res;
    int rc;

    pthread_barrier_wait(&r->start);
    /* Each thread times itself: whoever is descheduled after the barrier
     * (main included) cannot shorten the span measured. */
    uint64_t t0 = now_ns(), seen = atomic_load(&r->first_start);
    while (t0 < seen && !atomic_compare_exchange_weak(&r->first_start, &seen, t0))
        ;
    for (unsigned long done = 0; done < r->calls_per_thread;) {
        unsigned n = r->window;
        if (n > r->calls_per_thread - done)
            n = (unsigned)(r->calls_per_thread - done);
        for (unsigned i = 0; i < n; i++)
            if ((rc = evexec_loop_call(r->loop, echo_call, (void *)(uintptr_t)(done + i), &f[i])))
                die("evexec_loop_call", rc);
        for (unsigned i = 0; i < n; i++) {
            if (evexec_future_wait(f[i], EVEXEC_WAIT_FOREVER) != 0 ||
                evexec_future_result(f[i], &res) != 0 || res != (void *)(uintptr_t)(done + i))
                r->bad++;
            evexec_future_free(f[i]);
        }
        done += n;
    }
    uint64_t t1 = now_ns(), last = atomic_load(&r->last_end);
    while (t1 > last && !atomic_compare_exchange_weak(&r->last_end, &last, t1))
        ;
    return NULL;
}

/* Calls per second for `threads` threads keeping `window` calls each in
 * flight, `total` calls in all. */
static double throughput(evexec_loop *loop, unsigned threads, unsigned window, unsigned long total)
{
    struct run r;
    pthread_t th[64];

    memset(&r, 0, sizeof r);
    atomic_init(&r.first_start, UINT64_MAX);
    atomic_init(&r.last_end, 0);
    r.loop = loop;
    r.threads = threads;
    r.window = window;
    r.calls_per_thread = total / threads;
    pthread_barrier_init(&r.start, NULL, threads + 1);
    for (unsigned i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, poster, &r))
            die("pthread_create", -EAGAIN);
    pthread_barrier_wait(&r.start);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r.start);
    uint64_t t0 = atomic_load(&r.first_start), t1 = atomic_load(&r.last_end);
    if (r.bad) {
        fprintf(stderr, "loop_bench: %lu wrong results\n", (unsigned long)r.bad);
        exit(1);
    }
    return (double)(r.calls_per_thread * threads) / ((double)(t1 - t0) / 1e9);
}

/* --- L3 ------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct lat {
    double p50, p99, p999;
};

static struct lat latency(evexec_loop *loop, unsigned long n)
{
    uint64_t *ns = malloc(n * sizeof *ns);
    evexec_future *f;
    struct lat l;
    int rc;

    if (!ns)
        die("malloc", -ENOMEM);
    for (unsigned long i = 0; i < 1000 + n; i++) {
        uint64_t t0 = now_ns();
        if ((rc = evexec_loop_call(loop, echo_call, NULL, &f)))
            die("evexec_loop_call", rc);
        evexec_future_wait(f, EVEXEC_WAIT_FOREVER);
        uint64_t t1 = now_ns();
        evexec_future_free(f);
        if (i >= 1000)
            ns[i - 1000] = t1 - t0;
    }
    qsort(ns, n, sizeof *ns, cmp_u64);
    l.p50 = ns[n / 2] / 1e3;
    l.p99 = ns[n * 99 / 100] / 1e3;
    l.p999 = ns[n * 999 / 1000] / 1e3;
    free(ns);
    return l;
}

/* --- main ---------------------------------------------------------------- */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    static const unsigned tcounts[] = {1, 4, 16};
    enum { NT = 3, MAXRUNS = 99 };
    unsigned long calls = 200000, lat_calls = 50000;
    unsigned window = 64;
    int runs = 5, machine = 0;
    evexec_loop *loop;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--calls") && i + 1 < argc)
            calls = strtoul(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--latency-calls") && i + 1 < argc)
            lat_calls = strtoul(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--window") && i + 1 < argc)
            window = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--machine"))
            machine = 1;
        else {
            fprintf(stderr, "usage: %s [--calls N] [--latency-calls N] [--runs R] "
                            "[--window W] [--machine]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > MAXRUNS || window < 1 || window > 256 || calls < 1000 ||
        lat_calls < 100) {
        fprintf(stderr, "loop_bench: runs 1..%d, window 1..256, calls >= 1000, "
                        "latency-calls >= 100\n", MAXRUNS);
        return 2;
    }

    if ((rc = evexec_loop_start(&loop, NULL)))
        die("evexec_loop_start", rc);
    throughput(loop, 4, 16, 20000); /* warm-up, untimed */

    static double sync_cps[NT][MAXRUNS], win_cps[NT][MAXRUNS];
    static double p50[MAXRUNS], p99[MAXRUNS], p999[MAXRUNS];
    for (int r = 0; r < runs; r++) {
        for (int t = 0; t < NT; t++) {
            sync_cps[t][r] = throughput(loop, tcounts[t], 1, calls);
            win_cps[t][r] = throughput(loop, tcounts[t], window, calls);
        }
        struct lat l = latency(loop, lat_calls);
        p50[r] = l.p50;
        p99[r] = l.p99;
        p999[r] = l.p999;
    }

    if (machine) {
        for (int t = 0; t < NT; t++) {
            printf("sync_calls_per_s_%u %.0f\n", tcounts[t], median(sync_cps[t], runs));
            printf("window_calls_per_s_%u %.0f\n", tcounts[t], median(win_cps[t], runs));
        }
        printf("rtt_p50_us %.1f\nrtt_p99_us %.1f\nrtt_p999_us %.1f\n", median(p50, runs),
               median(p99, runs), median(p999, runs));
    } else {
        printf("evexec loop thread, no-op calls; medians of %d interleaved runs (min..max)\n",
               runs);
        printf("L1 sync   (one call in flight per thread), %lu calls:\n", calls);
        for (int t = 0; t < NT; t++) {
            double m = median(sync_cps[t], runs);
            printf("  %2u threads: %10.0f calls/s  (%.0f..%.0f)\n", tcounts[t], m, sync_cps[t][0],
                   sync_cps[t][runs - 1]);
        }
        printf("L2 window (%u calls in flight per thread), %lu calls:\n", window, calls);
        for (int t = 0; t < NT; t++) {
            double m = median(win_cps[t], runs);
            printf("  %2u threads: %10.0f calls/s  (%.0f..%.0f)\n", tcounts[t], m, win_cps[t][0],
                   win_cps[t][runs - 1]);
        }
        double m50 = median(p50, runs), m99 = median(p99, runs), m999 = median(p999, runs);
        printf("L3 round trip, 1 thread, %lu calls: p50 %.1f us  p99 %.1f us  p99.9 %.1f us\n",
               lat_calls, m50, m99, m999);
    }
    if ((rc = evexec_loop_free(loop)))
        die("evexec_loop_free", rc);
    return 0;
}
