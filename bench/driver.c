/* SPDX-License-Identifier: MIT */
/*
 * The benchmark driver: one measurement of one workload (../shared/BENCH.md,
 * W1-W6) on one system, in this process, printed as one "result" line of
 * key=value pairs. suite.c runs the driver once per measurement, each in a
 * fresh process (libuv's and GLib's pools are process-global, and W6 reads
 * the process's RSS), and W7 by running W1 and W4 under perf or strace.
 *
 * Every workload starts with an untimed burst of 1,000 no-op jobs, so that
 * lazily started threads exist, then pins the threads if the workload says
 * so (W2-split, W2-1cpu), then measures. Every done callback checks that it
 * runs on the loop thread; a callback seen elsewhere, a job never delivered
 * or a submit refused fails the measurement (ok=0), and so does the time
 * limit (SIGALRM), which reports how many callbacks had arrived.
 *
 * "overhead" is the exception to one system per process: it runs W1 and W4
 * on each variant of evexec (bench_evexec_variants[]: plain evexec_submit(),
 * evexec_submit_ex() with NULL or default options, a priority, a deadline
 * or a group on every job, a pool with histograms or a class limit), each
 * on a fresh pool and port, all in this process, interleaved rep by rep
 * with the order rotated, and prints the medians and each variant's
 * median ratio to plain evexec_submit() of the same rep.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define WARM_BURST 1000u

const char *const bench_workloads[] = {
    "W1", "W2", "W2-split", "W2-1cpu", "W3", "W4", "W5", "W6", "W7", "W8", "overhead", NULL,
};

const char *const bench_systems[] = {
    "evexec", "evexec-spin", "evexec-nice", "evexec-batch", "libuv", "gtask", "gpool", "handrolled",
    "floor-futex", "floor-eventfd", "floor-threads", NULL,
};

/* --- systems ------------------------------------------------------------- */

static int is_floor(const char *system)
{
    return strncmp(system, "floor-", 6) == 0;
}

const struct bench_ops *bench_find_system(const char *name, const char **why_not)
{
    *why_not = NULL;
    if (!strcmp(name, "evexec"))
        return &bench_sys_evexec;
    if (!strcmp(name, "evexec-spin")) {
#ifdef HAVE_STRUCT_EVEXEC_POOL_OPTS_SPIN_US
        return &bench_sys_evexec_spin;
#else
        *why_not = "this evexec has no worker-spin option (struct evexec_pool_opts.spin_us)";
        return NULL;
#endif
    }
    if (!strcmp(name, "evexec-nice"))
        return &bench_sys_evexec_nice;
    if (!strcmp(name, "evexec-batch"))
        return &bench_sys_evexec_batch;
    if (!strcmp(name, "libuv")) {
#ifdef BENCH_HAVE_LIBUV
        return &bench_sys_libuv;
#else
        *why_not = "libuv not found by ./configure (Debian: libuv1-dev; then re-run ./configure)";
        return NULL;
#endif
    }
    if (!strcmp(name, "gtask") || !strcmp(name, "gpool")) {
#ifdef BENCH_HAVE_GLIB
        return name[1] == 't' ? &bench_sys_gtask : &bench_sys_gpool;
#else
        *why_not = "GLib/GIO not found by ./configure (Debian: libglib2.0-dev; then re-run "
                   "./configure)";
        return NULL;
#endif
    }
    if (!strcmp(name, "handrolled"))
        return &bench_sys_handrolled;
    if (!strncmp(name, "evexec:", 7))
        for (unsigned i = 0; i < bench_evexec_nvariants; i++)
            if (!strcmp(name + 7, bench_evexec_variants[i].name))
                return &bench_evexec_variants[i];
    *why_not = "no such system";
    return NULL;
}

const struct bench_multi *bench_find_multi(const char *name)
{
    if (!strcmp(name, "evexec"))
        return &bench_multi_evexec;
#ifdef BENCH_HAVE_LIBUV
    if (!strcmp(name, "libuv"))
        return &bench_multi_libuv;
#endif
    if (!strcmp(name, "handrolled"))
        return &bench_multi_handrolled;
    return NULL;
}

int bench_applies(const char *workload, const char *system)
{
    if (!strcmp(workload, "W8")) /* systems whose pool several loops can share */
        return !strcmp(system, "evexec") || !strcmp(system, "libuv") ||
               !strcmp(system, "handrolled");
    if (!strcmp(system, "floor-futex") || !strcmp(system, "floor-eventfd"))
        return !strncmp(workload, "W2", 2);
    if (!strcmp(system, "floor-threads"))
        return !strcmp(workload, "W3");
    if (!strcmp(system, "evexec-nice")) /* the option is for W5's situation */
        return !strcmp(workload, "W5");
    if (!strcmp(system, "evexec-batch")) /* what SCHED_BATCH does to bursts and latency */
        return !strcmp(workload, "W5") || !strncmp(workload, "W2", 2) || !strcmp(workload, "W1") || !strcmp(workload, "W3") ||
               !strcmp(workload, "W4");
    if (!strcmp(workload, "overhead")) /* evexec against itself */
        return !strcmp(system, "evexec");
    return 1;
}

/* --- time, rusage, memory ------------------------------------------------ */

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct usage {
    double cpu_us;          /* user + system, every thread */
    double csw;             /* voluntary + involuntary context switches */
};

static struct usage usage_now(void)
{
    struct rusage ru;
    struct usage u;
    getrusage(RUSAGE_SELF, &ru);
    u.cpu_us = (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
               (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
    u.csw = (double)ru.ru_nvcsw + (double)ru.ru_nivcsw;
    return u;
}

static long rss_bytes(void)
{
    long pages_total = 0, pages_rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages_total, &pages_rss) != 2)
        pages_rss = -1;
    fclose(f);
    return pages_rss < 0 ? -1 : pages_rss * sysconf(_SC_PAGESIZE);
}

/* --- placement ----------------------------------------------------------- */

enum placement { PLACE_NONE, PLACE_SPLIT, PLACE_ONECPU };

static enum placement placement;
static pid_t loop_tid;

static pid_t my_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

static int pin(pid_t tid, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(tid, sizeof set, &set);
}

static int wanted_cpu(pid_t tid)
{
    return tid == loop_tid ? 0 : placement == PLACE_SPLIT ? 1 : 0;
}

/* Calls fn on every thread of the process; returns how many it failed for. */
static unsigned each_thread(int (*fn)(pid_t tid))
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    unsigned bad = 0;
    if (!d)
        return 1;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (fn((pid_t)atoi(e->d_name)) != 0)
            bad++;
    }
    closedir(d);
    return bad;
}

static int pin_one(pid_t tid)
{
    return pin(tid, wanted_cpu(tid)) < 0 && errno != ESRCH;
}

static int check_one(pid_t tid)
{
    cpu_set_t set;
    if (sched_getaffinity(tid, sizeof set, &set) < 0)
        return 0; /* gone */
    return !(CPU_COUNT(&set) == 1 && CPU_ISSET(wanted_cpu(tid), &set));
}

static int count_one(pid_t tid)
{
    (void)tid;
    return 1;
}

/* Pins every thread that exists now: the loop thread to CPU 0, the others
 * to CPU 1 (split) or CPU 0 (one CPU). The same method for every system. */
static void place_threads(void)
{
    if (placement != PLACE_NONE && each_thread(pin_one))
        fprintf(stderr, "bench: could not pin every thread\n");
}

static unsigned misplaced_threads(void)
{
    return placement == PLACE_NONE ? 0 : each_thread(check_one);
}

/* Threads of the process other than the loop thread. */
static unsigned other_threads(void)
{
    unsigned n = each_thread(count_one);
    return n ? n - 1 : 0;
}

/* --- the run: shared by every job ---------------------------------------- */

static struct bench_run R;
static const struct bench_ops *ops;
static struct bench_sys *sys;
static double spins_per_us;
static const char *cur_workload = "?", *cur_system = "?";

void bench_work(struct bench_job *job)
{
    switch (job->kind) {
    case BENCH_NOP:
        break;
    case BENCH_SLEEP:
        usleep(job->us);
        break;
    case BENCH_CPU: {
        unsigned long n = (unsigned long)(spins_per_us * job->us);
        for (unsigned long i = 0; i < n; i++)
            __asm__ __volatile__("" ::: "memory");
        break;
    }
    case BENCH_GATE:
        atomic_fetch_add(&job->run->parked, 1);
        pthread_mutex_lock(&job->run->gate_mu);
        while (!job->run->gate_open)
            pthread_cond_wait(&job->run->gate_cv, &job->run->gate_mu);
        pthread_mutex_unlock(&job->run->gate_mu);
        break;
    }
}

void bench_done(struct bench_job *job)
{
    struct bench_run *run = job->run;
    if (!pthread_equal(pthread_self(), run->loop))
        atomic_fetch_add(&run->violations, 1);
    run->delivered++;
    if (run->on_done)
        run->on_done(run, job);
}

static void calibrate_cpu(void)
{
    const unsigned long n = 200000;
    uint64_t best = UINT64_MAX;
    for (int rep = 0; rep < 7; rep++) {
        uint64_t t0 = bench_now_ns();
        for (unsigned long i = 0; i < n; i++)
            __asm__ __volatile__("" ::: "memory");
        uint64_t dt = bench_now_ns() - t0;
        if (dt < best)
            best = dt;
    }
    spins_per_us = (double)n * 1000.0 / (double)(best ? best : 1);
}

/* --- failures ------------------------------------------------------------ */

static char fail_reason[256];

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    if (!fail_reason[0]) {
        va_start(ap, fmt);
        vsnprintf(fail_reason, sizeof fail_reason, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Async-signal-safe: appends the decimal of v. */
static char *put_ul(char *p, unsigned long v)
{
    char tmp[24];
    int n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_s(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

static void on_alarm(int sig)
{
    char buf[512], *p = buf;
    (void)sig;
    p = put_s(p, "result workload=");
    p = put_s(p, cur_workload);
    p = put_s(p, " system=");
    p = put_s(p, cur_system);
    p = put_s(p, " ok=0 submitted=");
    p = put_ul(p, R.submitted);
    p = put_s(p, " delivered=");
    p = put_ul(p, R.delivered);
    p = put_s(p, " reason=time limit reached");
    if (R.submitted) {
        p = put_s(p, ": ");
        p = put_ul(p, R.submitted - R.delivered);
        p = put_s(p, " callbacks missing");
    }
    p = put_s(p, "\n");
    if (write(STDOUT_FILENO, buf, (size_t)(p - buf)) < 0)
        _exit(4);
    _exit(3);
}

/* --- helpers for the workloads ------------------------------------------- */

static int submit(struct bench_job *job)
{
    int rc = ops->submit(sys, job);
    if (rc < 0)
        return fail("submit refused (%d) after %lu accepted", rc, R.submitted);
    R.submitted++;
    return 0;
}

static unsigned long target;

static void done_until_target(struct bench_run *run, struct bench_job *job)
{
    (void)job;
    if (run->delivered >= target)
        ops->stop(sys);
}

/* Submits n jobs at once and runs the loop until all are delivered; the
 * time the submits took goes to *submit_ns if wanted. */
static int burst(struct bench_job *job, unsigned long n, uint64_t *submit_ns)
{
    if (n == 0)
        return 0;
    R.on_done = done_until_target;
    target = R.delivered + n;
    uint64_t t0 = bench_now_ns();
    for (unsigned long i = 0; i < n; i++)
        if (submit(job) < 0)
            return -1;
    if (submit_ns)
        *submit_ns = bench_now_ns() - t0;
    ops->run(sys);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)sorted[i < n ? i : n - 1];
}

static void print_latency(const char *prefix, uint64_t *s, size_t n)
{
    qsort(s, n, sizeof *s, cmp_u64);
    printf(" %sp50_us=%.3f %sp99_us=%.3f %sp999_us=%.3f %smax_us=%.3f", prefix,
           pct(s, n, 0.50) / 1e3, prefix, pct(s, n, 0.99) / 1e3, prefix, pct(s, n, 0.999) / 1e3,
           prefix, n ? (double)s[n - 1] / 1e3 : 0.0);
}

/* --- W1, W3: a burst; W4: a few in flight -------------------------------- */

static int w_burst(unsigned long n, enum bench_kind kind, unsigned us)
{
    struct bench_job job = {kind, us, &R};
    uint64_t sub = 0;
    struct usage u0 = usage_now();
    uint64_t t0 = bench_now_ns();
    if (burst(&job, n, &sub) < 0)
        return -1;
    uint64_t dt = bench_now_ns() - t0;
    struct usage u1 = usage_now();
    double per = n ? 1.0 / (double)n : 0;
    printf(" jobs=%lu time_ms=%.3f rate=%.1f submit_us_per_job=%.4f cpu_us_per_job=%.4f"
           " csw_per_job=%.4f",
           n, (double)dt / 1e6, n ? (double)n * 1e9 / (double)dt : 0.0, (double)sub / 1e3 * per,
           (u1.cpu_us - u0.cpu_us) * per, (u1.csw - u0.csw) * per);
    return 0;
}

static unsigned long to_submit;

static void done_refill(struct bench_run *run, struct bench_job *job)
{
    if (run->submitted < to_submit) {
        if (submit(job) < 0)
            ops->stop(sys);
    } else if (run->delivered >= target) {
        ops->stop(sys);
    }
}

/* Keeps `inflight` jobs going until n more have been delivered. */
static int refill(struct bench_job *job, unsigned inflight, unsigned long n)
{
    if (n == 0)
        return 0;
    R.on_done = done_refill;
    target = R.delivered + n;
    to_submit = R.submitted + n;
    for (unsigned i = 0; i < inflight && R.submitted < to_submit; i++)
        if (submit(job) < 0)
            return -1;
    ops->run(sys);
    return fail_reason[0] ? -1 : 0;
}

static int w4(unsigned long n, unsigned inflight)
{
    struct bench_job job = {BENCH_NOP, 0, &R};
    struct usage u0 = usage_now();
    uint64_t t0 = bench_now_ns();
    if (refill(&job, inflight, n) < 0)
        return -1;
    uint64_t dt = bench_now_ns() - t0;
    struct usage u1 = usage_now();
    double per = n ? 1.0 / (double)n : 0;
    printf(" jobs=%lu time_ms=%.3f rate=%.1f cpu_us_per_job=%.4f csw_per_job=%.4f", n,
           (double)dt / 1e6, n ? (double)n * 1e9 / (double)dt : 0.0, (u1.cpu_us - u0.cpu_us) * per,
           (u1.csw - u0.csw) * per);
    return 0;
}

/* --- W2: ping-pong ------------------------------------------------------- */

static struct {
    uint64_t *samples;
    unsigned warm, n, i;
    uint64_t t_sub;
} pp;

static void done_pingpong(struct bench_run *run, struct bench_job *job)
{
    uint64_t t = bench_now_ns();
    (void)run;
    if (pp.i >= pp.warm)
        pp.samples[pp.i - pp.warm] = t - pp.t_sub;
    if (++pp.i < pp.warm + pp.n) {
        pp.t_sub = bench_now_ns();
        if (submit(job) < 0)
            ops->stop(sys);
    } else {
        ops->stop(sys);
    }
}

static int w2(unsigned warm, unsigned n)
{
    struct bench_job job = {BENCH_NOP, 0, &R};
    if (!(pp.samples = malloc((n ? n : 1) * sizeof *pp.samples)))
        return fail("out of memory");
    pp.warm = warm;
    pp.n = n;
    pp.i = 0;
    struct usage u0 = usage_now();
    if (warm + n) {
        R.on_done = done_pingpong;
        pp.t_sub = bench_now_ns();
        if (submit(&job) < 0)
            return -1;
        ops->run(sys);
        if (fail_reason[0])
            return -1;
    }
    struct usage u1 = usage_now();
    double per = warm + n ? 1.0 / (warm + n) : 0;
    printf(" round_trips=%u", n);
    print_latency("", pp.samples, n);
    printf(" cpu_us_per_rt=%.3f csw_per_rt=%.3f", (u1.cpu_us - u0.cpu_us) * per,
           (u1.csw - u0.csw) * per);
    free(pp.samples);
    return 0;
}

static int w2_floor(const char *system, unsigned warm, unsigned n)
{
    uint64_t *s = malloc((n ? n : 1) * sizeof *s);
    int rc;
    if (!s)
        return fail("out of memory");
    struct usage u0 = usage_now();
    if (!strcmp(system, "floor-futex"))
        rc = bench_floor_futex(s, warm, n, place_threads);
    else
        rc = bench_floor_eventfd(s, warm, n, place_threads);
    struct usage u1 = usage_now();
    if (rc < 0) {
        free(s);
        return fail("%s: %s", system, strerror(-rc));
    }
    double per = warm + n ? 1.0 / (warm + n) : 0;
    printf(" round_trips=%u", n);
    print_latency("", s, n);
    printf(" cpu_us_per_rt=%.3f csw_per_rt=%.3f", (u1.cpu_us - u0.cpu_us) * per,
           (u1.csw - u0.csw) * per);
    free(s);
    return 0;
}

/* --- W5: timer lateness under load --------------------------------------- */

#define W5_PERIOD_US 1000u
#define W5_WARM_TICKS 10u

static struct {
    uint64_t *late;
    unsigned ticks, k;
    uint64_t due;
    int stopping;
    unsigned long jobs_at_start;
    uint64_t t_start, t_end;
} tm;

static void w5_tick(void *arg)
{
    uint64_t now = bench_now_ns();
    (void)arg;
    if (tm.k == W5_WARM_TICKS) {
        tm.t_start = now;
        tm.jobs_at_start = R.delivered;
    }
    if (tm.k >= W5_WARM_TICKS)
        tm.late[tm.k - W5_WARM_TICKS] = now > tm.due ? now - tm.due : 0;
    if (++tm.k < W5_WARM_TICKS + tm.ticks) {
        tm.due = bench_now_ns() + W5_PERIOD_US * 1000ull;
        if (ops->timer(sys, W5_PERIOD_US, w5_tick, NULL) < 0) {
            fail("timer refused");
            ops->stop(sys);
        }
    } else {
        tm.t_end = now;
        tm.stopping = 1;
        if (R.delivered == R.submitted)
            ops->stop(sys);
    }
}

static void done_w5(struct bench_run *run, struct bench_job *job)
{
    if (!tm.stopping) {
        if (submit(job) < 0) {
            tm.stopping = 1;
            ops->stop(sys);
        }
    } else if (run->delivered == run->submitted) {
        ops->stop(sys);
    }
}

static int w5(unsigned ticks, unsigned inflight, unsigned job_us)
{
    struct bench_job job = {BENCH_CPU, job_us, &R};
    if (!(tm.late = malloc((ticks ? ticks : 1) * sizeof *tm.late)))
        return fail("out of memory");
    tm.ticks = ticks;
    R.on_done = done_w5;
    for (unsigned i = 0; i < inflight; i++)
        if (submit(&job) < 0)
            return -1;
    tm.due = bench_now_ns() + W5_PERIOD_US * 1000ull;
    if (ops->timer(sys, W5_PERIOD_US, w5_tick, NULL) < 0)
        return fail("timer refused");
    ops->run(sys);
    if (fail_reason[0])
        return -1;
    double secs = (double)(tm.t_end - tm.t_start) / 1e9;
    printf(" ticks=%u inflight=%u job_us=%u", ticks, inflight, job_us);
    print_latency("late_", tm.late, ticks);
    printf(" jobs_per_s=%.1f", secs > 0 ? (double)(R.delivered - tm.jobs_at_start) / secs : 0.0);
    free(tm.late);
    return 0;
}

/* --- W6: memory ---------------------------------------------------------- */

static int w6(unsigned long queued, unsigned long steady)
{
    struct bench_job nop = {BENCH_NOP, 0, &R};
    struct bench_job gate = {BENCH_GATE, 0, &R};
    unsigned threads = ops->threads(sys);

    /* malloc calls per job, 4 in flight, after 1,000 more warm-up jobs. */
    if (refill(&nop, 4, 1000) < 0)
        return -1;
    bench_alloc_count(1);
    int rc = refill(&nop, 4, steady);
    bench_alloc_count(0);
    if (rc < 0)
        return -1;
    unsigned long allocs = bench_alloc_calls();

    /* Park every worker, then queue. */
    for (unsigned i = 0; i < threads; i++)
        if (submit(&gate) < 0)
            return -1;
    uint64_t limit = bench_now_ns() + 10000000000ull;
    while (atomic_load(&R.parked) < threads) {
        if (bench_now_ns() > limit)
            return fail("only %u of %u workers parked", atomic_load(&R.parked), threads);
        usleep(200);
    }
    long rss0 = rss_bytes();
    uint64_t t0 = bench_now_ns();
    for (unsigned long i = 0; i < queued; i++)
        if (submit(&nop) < 0)
            return -1;
    uint64_t submit_ns = bench_now_ns() - t0;
    long rss1 = rss_bytes();
    unsigned seen = other_threads();

    pthread_mutex_lock(&R.gate_mu);
    R.gate_open = 1;
    pthread_cond_broadcast(&R.gate_cv);
    pthread_mutex_unlock(&R.gate_mu);
    R.on_done = done_until_target;
    target = R.submitted;
    ops->run(sys);

    printf(" queued=%lu rss_before=%ld rss_after=%ld bytes_per_job=%.2f queue_submit_us_per_job=%.4f"
           " steady_jobs=%lu mallocs=%lu mallocs_per_job=%.4f threads_parked=%u threads_seen=%u",
           queued, rss0, rss1, queued ? (double)(rss1 - rss0) / (double)queued : 0.0,
           queued ? (double)submit_ns / 1e3 / (double)queued : 0.0, steady, allocs,
           steady ? (double)allocs / (double)steady : 0.0, threads, seen);
    return 0;
}

/* --- one measurement ----------------------------------------------------- */

struct sizes {
    unsigned long w1, w2, w2_warm, w3, w4, w5, w6, w6_steady;
    unsigned long ovh_w1, ovh_w4, ovh_reps;
    unsigned long w8, w8_bursts;    /* jobs per burst per loop, bursts */
};

static const struct sizes full = {200000, 50000, 1000, 2000, 200000, 2000, 1000000, 20000,
                                  200000, 50000, 5, 50000, 4};
static const struct sizes quick_sizes = {5000, 1000, 100, 160, 5000, 100, 20000, 2000,
                                         5000, 5000, 2, 2000, 1};

static int inflight = -1; /* --inflight: W4 and W5 (-1: their default) */

/* --- overhead: the variants of evexec, interleaved in this process ------- */

#define OVH_MAXVAR 16
#define OVH_MAXREPS 64

static double median(double *v, unsigned n)
{
    for (unsigned i = 1; i < n; i++) /* insertion sort: n is tiny */
        for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int w_overhead(long jobs, const struct sizes *z)
{
    static double r1[OVH_MAXVAR][OVH_MAXREPS], r4[OVH_MAXVAR][OVH_MAXREPS];
    struct bench_job nop = {BENCH_NOP, 0, &R};
    struct bench_cfg cfg = {4, 65536, 0, 0};
    unsigned nv = bench_evexec_nvariants, reps = (unsigned)z->ovh_reps;
    unsigned long n1 = jobs >= 0 ? (unsigned long)jobs : z->ovh_w1;
    unsigned long n4 = jobs >= 0 ? (unsigned long)jobs : z->ovh_w4;
    unsigned in4 = inflight > 0 ? (unsigned)inflight : 4;
    int rc;

    if (nv > OVH_MAXVAR || reps > OVH_MAXREPS)
        return fail("overhead: too many variants or reps");
    if (n1 + 2 * WARM_BURST > cfg.max_queued)
        cfg.max_queued = n1 + 2 * WARM_BURST;
    for (unsigned rep = 0; rep < reps; rep++) {
        for (unsigned k = 0; k < nv; k++) {
            unsigned v = (k + rep) % nv; /* rotated: no variant always goes first */
            ops = &bench_evexec_variants[v];
            if ((rc = ops->init(&sys, &cfg)) < 0)
                return fail("overhead: %s: init failed (%d)", ops->name, rc);
            if (burst(&nop, WARM_BURST, NULL) < 0)
                return -1;
            uint64_t t0 = bench_now_ns();
            if (burst(&nop, n1, NULL) < 0)
                return -1;
            uint64_t t1 = bench_now_ns();
            if (refill(&nop, in4, n4) < 0)
                return -1;
            uint64_t t2 = bench_now_ns();
            ops->fini(sys);
            sys = NULL;
            r1[v][rep] = t1 > t0 ? (double)n1 * 1e9 / (double)(t1 - t0) : 0;
            r4[v][rep] = t2 > t1 ? (double)n4 * 1e9 / (double)(t2 - t1) : 0;
        }
    }
    printf(" reps=%u jobs=%lu w4_jobs=%lu inflight=%u", reps, n1, n4, in4);
    for (unsigned v = 0; v < nv; v++) {
        double a[OVH_MAXREPS], b[OVH_MAXREPS], ra[OVH_MAXREPS], rb[OVH_MAXREPS];
        for (unsigned rep = 0; rep < reps; rep++) {
            a[rep] = r1[v][rep];
            b[rep] = r4[v][rep];
            ra[rep] = r1[0][rep] > 0 ? r1[v][rep] / r1[0][rep] : 0;
            rb[rep] = r4[0][rep] > 0 ? r4[v][rep] / r4[0][rep] : 0;
        }
        const char *nm = bench_evexec_variants[v].name;
        printf(" w1_%s=%.1f w1_%s_x=%.4f w4_%s=%.1f w4_%s_x=%.4f", nm, median(a, reps), nm,
               median(ra, reps), nm, median(b, reps), nm, median(rb, reps));
    }
    ops = NULL;
    return 0;
}

/* --- W8: many loops, one pool -------------------------------------------- */

#define W8_LOOPS 4u

struct w8_loop {
    pthread_t thread;
    const struct bench_multi *m;
    void *shared;
    struct bench_cfg cfg;
    struct bench_sys *sys;
    struct bench_run run;
    unsigned long per_burst, bursts, target;
    pthread_barrier_t *start, *end;
    int rc;
};

static void w8_done(struct bench_run *run, struct bench_job *job)
{
    struct w8_loop *l = run->ctx;
    (void)job;
    if (run->delivered >= l->target)
        l->m->ops->stop(l->sys);
}

/* On loop thread l: submits n jobs at once, runs its loop until every one
 * is delivered. */
static int w8_burst(struct w8_loop *l, struct bench_job *job, unsigned long n)
{
    l->target = l->run.delivered + n;
    for (unsigned long i = 0; i < n; i++) {
        if (l->m->ops->submit(l->sys, job) < 0)
            return -1;
        l->run.submitted++;
    }
    l->m->ops->run(l->sys);
    return l->run.delivered == l->target ? 0 : -1;
}

static void *w8_thread(void *arg)
{
    struct w8_loop *l = arg;
    struct bench_job job = {BENCH_NOP, 0, &l->run};
    l->run.loop = pthread_self();
    l->run.on_done = w8_done;
    l->run.ctx = l;
    l->rc = l->m->init(&l->sys, &l->cfg, l->shared);
    if (l->rc == 0 && w8_burst(l, &job, WARM_BURST) < 0)
        l->rc = -EIO;
    pthread_barrier_wait(l->start);
    for (unsigned long b = 0; b < l->bursts && l->rc == 0; b++)
        if (w8_burst(l, &job, l->per_burst) < 0)
            l->rc = -EIO;
    pthread_barrier_wait(l->end);
    if (l->sys)
        l->m->ops->fini(l->sys);
    return NULL;
}

static int w8(const char *system, unsigned long per_burst, unsigned long bursts)
{
    static struct w8_loop loops[W8_LOOPS];
    const struct bench_multi *m = bench_find_multi(system);
    struct bench_cfg cfg = {4, W8_LOOPS * (per_burst + 2 * WARM_BURST), 0, 0};
    pthread_barrier_t start, end;
    void *shared = NULL;
    unsigned started = 0;
    int rc;

    if (!m)
        return fail("W8: %s cannot share a pool among loops", system);
    if ((rc = m->shared_new(&shared, &cfg)) < 0)
        return fail("W8: %s: the shared pool failed (%d)", system, rc);
    pthread_barrier_init(&start, NULL, W8_LOOPS + 1);
    pthread_barrier_init(&end, NULL, W8_LOOPS + 1);
    for (unsigned i = 0; i < W8_LOOPS; i++) {
        struct w8_loop *l = &loops[i];
        memset(l, 0, sizeof *l);
        l->m = m;
        l->shared = shared;
        l->cfg = cfg;
        l->per_burst = per_burst;
        l->bursts = bursts;
        l->start = &start;
        l->end = &end;
        if (pthread_create(&l->thread, NULL, w8_thread, l) != 0)
            break;
        started++;
    }
    if (started < W8_LOOPS) { /* the barriers would never open: give up at once */
        fprintf(stderr, "bench: W8: could not start the loop threads\n");
        _exit(5);
    }
    pthread_barrier_wait(&start);
    struct usage u0 = usage_now();
    uint64_t t0 = bench_now_ns();
    pthread_barrier_wait(&end);
    uint64_t dt = bench_now_ns() - t0;
    struct usage u1 = usage_now();
    for (unsigned i = 0; i < W8_LOOPS; i++) {
        pthread_join(loops[i].thread, NULL);
        R.submitted += loops[i].run.submitted;
        R.delivered += loops[i].run.delivered;
        atomic_fetch_add(&R.violations, atomic_load(&loops[i].run.violations));
        if (loops[i].rc < 0)
            fail("W8: loop %u failed (%d)", i, loops[i].rc);
    }
    m->shared_free(shared);
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&end);
    unsigned long n = W8_LOOPS * per_burst * bursts;
    double per = n ? 1.0 / (double)n : 0;
    printf(" loops=%u jobs=%lu bursts=%lu time_ms=%.3f rate=%.1f cpu_us_per_job=%.4f"
           " csw_per_job=%.4f",
           W8_LOOPS, n, bursts, (double)dt / 1e6, n ? (double)n * 1e9 / (double)dt : 0.0,
           (u1.cpu_us - u0.cpu_us) * per, (u1.csw - u0.csw) * per);
    return fail_reason[0] ? -1 : 0;
}

static int run_system(const char *workload, long jobs, const struct sizes *z)
{
    struct bench_job nop = {BENCH_NOP, 0, &R};
    struct bench_cfg cfg = {4, 65536, 500, 0}; /* evexec-spin: 10 x the default */
    unsigned long n = 0;
    int rc;

    if (!strcmp(workload, "W3"))
        cfg.threads = 16;
    n = !strcmp(workload, "W1") ? z->w1 : !strcmp(workload, "W3") ? z->w3
      : !strcmp(workload, "W4") ? z->w4 : !strcmp(workload, "W5") ? z->w5
      : !strcmp(workload, "W6") ? z->w6 : z->w2;
    if (jobs >= 0)
        n = (unsigned long)jobs;
    if (n + 2 * WARM_BURST > cfg.max_queued)
        cfg.max_queued = n + 2 * WARM_BURST;
    if (!strcmp(workload, "W5")) {
        calibrate_cpu();
        cfg.precise_timers = 1;
    }

    if ((rc = ops->init(&sys, &cfg)) < 0)
        return fail("%s: init failed (%d)", ops->name, rc);
    if (burst(&nop, WARM_BURST, NULL) < 0)
        return -1;
    place_threads();

    if (!strcmp(workload, "W1"))
        rc = w_burst(n, BENCH_NOP, 0);
    else if (!strcmp(workload, "W3"))
        rc = w_burst(n, BENCH_SLEEP, 1000);
    else if (!strcmp(workload, "W4"))
        rc = w4(n, inflight > 0 ? (unsigned)inflight : 4);
    else if (!strncmp(workload, "W2", 2))
        rc = w2((unsigned)z->w2_warm, (unsigned)n);
    else if (!strcmp(workload, "W5"))
        rc = w5((unsigned)n, inflight >= 0 ? (unsigned)inflight : 64, 50);
    else
        rc = w6(n, z->w6_steady);
    if (rc < 0)
        return -1;
    printf(" threads_seen=%u misplaced=%u", other_threads(), misplaced_threads());
    ops->fini(sys);
    return 0;
}

int bench_run_main(const char *workload, const char *system, long jobs, int quick,
                   unsigned timeout_s)
{
    const struct sizes *z = quick ? &quick_sizes : &full;
    const char *why;
    cpu_set_t avail;
    int rc;

    cur_workload = workload;
    cur_system = system;
    if (!bench_applies(workload, system)) {
        fprintf(stderr, "bench: %s does not apply to %s\n", system, workload);
        return 2;
    }
    if (!strcmp(workload, "W7")) {
        fprintf(stderr, "bench: W7 runs W1 and W4 under perf or strace: use the suite, "
                        "e.g. evexec-bench -w W7 -s %s\n", system);
        return 2;
    }
    ops = is_floor(system) ? NULL : bench_find_system(system, &why);
    if (!is_floor(system) && !ops) {
        fprintf(stderr, "bench: %s: %s\n", system, why);
        return 2;
    }

    placement = !strcmp(workload, "W2-split") ? PLACE_SPLIT
              : !strcmp(workload, "W2-1cpu") ? PLACE_ONECPU : PLACE_NONE;
    sched_getaffinity(0, sizeof avail, &avail);
    if (placement == PLACE_SPLIT && !(CPU_ISSET(0, &avail) && CPU_ISSET(1, &avail))) {
        printf("result workload=%s system=%s ok=skip reason=needs CPUs 0 and 1\n", workload,
               system);
        return 0;
    }
    if (placement == PLACE_ONECPU && !CPU_ISSET(0, &avail)) {
        printf("result workload=%s system=%s ok=skip reason=needs CPU 0\n", workload, system);
        return 0;
    }
    loop_tid = my_tid();
    if (placement != PLACE_NONE)
        pin(0, 0);

    R.loop = pthread_self();
    pthread_mutex_init(&R.gate_mu, NULL);
    pthread_cond_init(&R.gate_cv, NULL);
    signal(SIGALRM, on_alarm);
    if (timeout_s)
        alarm(timeout_s);

    /* Stays in stdout's buffer until the line is complete: a time limit
     * prints its own whole line instead. */
    printf("result workload=%s system=%s", workload, system);
    if (!strcmp(system, "floor-threads")) {
        uint64_t ns;
        unsigned long n = jobs >= 0 ? (unsigned long)jobs : z->w3;
        rc = bench_floor_threads(16, (unsigned)n, 1000, &ns);
        if (rc < 0)
            fail("threads: %s", strerror(-rc));
        else
            printf(" jobs=%lu time_ms=%.3f", n, (double)ns / 1e6);
    } else if (is_floor(system)) {
        unsigned long n = jobs >= 0 ? (unsigned long)jobs : z->w2;
        rc = w2_floor(system, (unsigned)z->w2_warm, (unsigned)n);
        if (rc == 0)
            printf(" misplaced=%u", misplaced_threads());
    } else if (!strcmp(workload, "overhead")) {
        rc = w_overhead(jobs, z);
    } else if (!strcmp(workload, "W8")) {
        rc = w8(system, jobs >= 0 ? (unsigned long)jobs : z->w8, z->w8_bursts);
    } else {
        rc = run_system(workload, jobs, z);
    }
    alarm(0);

    unsigned long violations = atomic_load(&R.violations);
    if (rc == 0 && R.delivered != R.submitted)
        fail("%lu of %lu callbacks never ran", R.submitted - R.delivered, R.submitted);
    if (rc == 0 && violations)
        fail("%lu done callbacks ran off the loop thread", violations);
    struct usage u = usage_now();
    printf(" submitted=%lu delivered=%lu violations=%lu csw_total=%.0f ok=%d", R.submitted,
           R.delivered, violations, u.csw, fail_reason[0] ? 0 : 1);
    if (fail_reason[0])
        printf(" reason=%s", fail_reason);
    printf("\n");
    fflush(stdout);
    return fail_reason[0] ? 1 : 0;
}

/* --- command line -------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: evexec-bench [suite] [options]   run the suite and write the report\n"
            "       evexec-bench run -w WORKLOAD -s SYSTEM [-n N] [--quick]\n"
            "                                        one measurement, one result line\n"
            "       evexec-bench list                workloads and systems\n"
            "options:\n"
            "  -w, --workloads LIST  comma-separated workloads (default: all)\n"
            "  -s, --systems LIST    comma-separated systems (default: every one built)\n"
            "  -r, --reps N          interleaved repetitions (default 3; quick: 1)\n"
            "  -q, --quick           small sizes, one rep: checks every benchmark runs and\n"
            "                        delivers every callback (also BENCH_QUICK=1)\n"
            "  -n, --jobs N          jobs (W2: round trips; W5: timer ticks; W6: jobs queued;\n"
            "                        overhead: W1's and W4's)\n"
            "  -o, --out DIR         report directory (default bench/results)\n"
            "  -t, --timeout S       time limit per measurement (default 300; quick 60)\n"
            "  -i, --inflight N      (run) jobs kept in flight in W4 (default 4) and W5 (64)\n"
            "      --no-chart        do not draw the PNG chart\n"
            "      --baseline BIN    overhead: also run plain evexec_submit() of another\n"
            "                        build's evexec-bench (e.g. the last release's)\n"
            "See bench/README.md.\n");
}

static void list(void)
{
    const char *why;
    printf("workloads:");
    for (int i = 0; bench_workloads[i]; i++)
        printf(" %s", bench_workloads[i]);
    printf("\nsystems:\n");
    for (int i = 0; bench_systems[i]; i++) {
        const char *s = bench_systems[i];
        if (is_floor(s)) {
            printf("  %-14s (%s)\n", s, strcmp(s, "floor-threads") ? "W2, W2-split, W2-1cpu" : "W3");
            continue;
        }
        const struct bench_ops *o = bench_find_system(s, &why);
        char v[128] = "";
        if (o)
            o->version(v, sizeof v);
        printf("  %-14s %s\n", s, o ? v : why);
    }
    printf("variants of evexec (workload overhead; alone: -s evexec:NAME):\n");
    for (unsigned i = 0; i < bench_evexec_nvariants; i++)
        printf("  %-14s %s\n", bench_evexec_variants[i].name, bench_evexec_variants[i].label);
}

int main(int argc, char **argv)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        perror("readlink /proc/self/exe");
        return 2;
    }
    self[len] = '\0';
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);

    if (argc > 1 && !strcmp(argv[1], "list")) {
        list();
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "run")) {
        static const struct option lo[] = {
            {"workloads", required_argument, NULL, 'w'}, {"systems", required_argument, NULL, 's'},
            {"jobs", required_argument, NULL, 'n'},      {"quick", no_argument, NULL, 'q'},
            {"timeout", required_argument, NULL, 't'},   {"help", no_argument, NULL, 'h'},
            {"inflight", required_argument, NULL, 'i'},  {NULL, 0, NULL, 0},
        };
        const char *w = NULL, *s = NULL, *env = getenv("BENCH_QUICK");
        long jobs = -1;
        int quick = env && *env && strcmp(env, "0") != 0, c;
        unsigned timeout = 0;
        optind = 2;
        while ((c = getopt_long(argc, argv, "w:s:n:qt:i:h", lo, NULL)) != -1) {
            switch (c) {
            case 'w': w = optarg; break;
            case 's': s = optarg; break;
            case 'n': jobs = atol(optarg); break;
            case 'q': quick = 1; break;
            case 't': timeout = (unsigned)atoi(optarg); break;
            case 'i': inflight = atoi(optarg); break;
            case 'h': usage(stdout); return 0;
            default: usage(stderr); return 2;
            }
        }
        if (!w || !s || strchr(w, ',') || strchr(s, ',')) {
            fprintf(stderr, "bench: run takes one workload (-w) and one system (-s)\n");
            return 2;
        }
        return bench_run_main(w, s, jobs, quick, timeout ? timeout : quick ? 60 : 300);
    }
    if (argc > 1 && !strcmp(argv[1], "suite")) {
        argv[1] = argv[0];
        return bench_suite_main(argc - 1, argv + 1, self);
    }
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    return bench_suite_main(argc, argv, self);
}
