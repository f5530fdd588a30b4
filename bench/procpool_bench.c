/* SPDX-License-Identifier: MIT */
/*
 * bench/procpool_bench: the process-pool workloads, on evexec and on the
 * naive C approach (fork one child per job, result through a pipe):
 *
 *   P1 round trip: 64 bytes in and out, one job in flight, pool of 4:
 *      p50/p99 in µs and jobs/s;
 *   P2 throughput: many small jobs submitted at once: jobs/s;
 *   P3 payload echo, 1 MiB and 64 MiB: MB/s of the copying submit and of
 *      an input written in place (evexec_procpool_submit_input()), and a
 *      plain memcpy() of the same bytes in one process for scale;
 *   P4 crash recovery, pool of 1: ms from a crash's callback to the
 *      callback of the job submitted in it (the worker is replaced first).
 *
 * Prints "key value" lines; bench/procpool_bench.py runs Python's
 * ProcessPoolExecutor through run_in_executor() on the same workloads and
 * prints the table with same-run ratios. --quick: small sizes (CI).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <evexec.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int echo(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)state;
    void *p = evexec_proc_output(out, len);
    if (!p)
        return ENOMEM;
    memcpy(p, in, len);
    return 0;
}

static int crash(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)in, (void)len, (void)out, (void)state;
    volatile int *volatile p = NULL;
    return *p;
}

struct bench {
    struct event_base *base;
    evexec_port *port;
    evexec_procpool *pool;
    int done, errors, target;
    double t_last;
    unsigned char buf[64];
};

static void on_done(int status, const struct evexec_proc_result *res, void *arg)
{
    struct bench *b = arg;
    (void)res;
    b->errors += status != 0;
    b->t_last = now_us();
    if (++b->done >= b->target)
        event_base_loopbreak(b->base);
}

static void setup(struct bench *b, unsigned procs)
{
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    memset(b, 0, sizeof *b);
    o.max_procs = procs;
    o.min_procs = procs;
    o.max_queued = 1u << 20;
    o.idle_timeout_ms = EVEXEC_IDLE_FOREVER;
    o.max_payload = (uint64_t)128 << 20;
    if (evexec_procpool_new(&b->pool, &o) < 0)
        exit(1);
    b->base = event_base_new();
    if (!b->base || evexec_port_new(&b->port, b->base, NULL) < 0)
        exit(1);
}

static void teardown(struct bench *b)
{
    evexec_procpool_free(b->pool);
    evexec_port_free(b->port);
    event_base_dispatch(b->base);
    event_base_free(b->base);
}

static void run(struct bench *b, int target)
{
    b->target = target;
    while (b->done < b->target)
        event_base_loop(b->base, EVLOOP_ONCE);
}

static void p1(int n)
{
    struct bench b;
    double *lat = malloc(sizeof *lat * (size_t)n);
    setup(&b, 4);
    for (int i = 0; i < 200; i++) { /* warm: every worker started */
        evexec_procpool_submit(b.port, b.pool, echo, b.buf, 64, on_done, &b, NULL, NULL);
        run(&b, b.done + 1);
    }
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        double t = now_us();
        evexec_procpool_submit(b.port, b.pool, echo, b.buf, 64, on_done, &b, NULL, NULL);
        run(&b, b.done + 1);
        lat[i] = b.t_last - t;
    }
    double total = now_us() - t0;
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    printf("P1_evexec_p50_us %.1f\nP1_evexec_p99_us %.1f\nP1_evexec_jobs_s %.0f\n", lat[n / 2],
           lat[n * 99 / 100], n / total * 1e6);
    printf("P1_evexec_errors %d\n", b.errors);
    teardown(&b);
    free(lat);
}

static void p2(int n)
{
    struct bench b;
    setup(&b, 4);
    for (int i = 0; i < 100; i++)
        evexec_procpool_submit(b.port, b.pool, echo, b.buf, 64, on_done, &b, NULL, NULL);
    run(&b, 100);
    b.done = 0;
    double t0 = now_us();
    for (int i = 0; i < n; i++)
        if (evexec_procpool_submit(b.port, b.pool, echo, b.buf, 64, on_done, &b, NULL, NULL) < 0)
            b.errors++;
    run(&b, n);
    double total = now_us() - t0;
    printf("P2_evexec_jobs_s %.0f\nP2_evexec_errors %d\n", n / total * 1e6, b.errors);
    teardown(&b);
}

/* The yardstick: a plain memcpy() of the same bytes (best kept in *best). */
static void yardstick(unsigned char *dst, const unsigned char *src, size_t size, double *best)
{
    double t = now_us();
    memcpy(dst, src, size);
    __asm__ volatile("" ::"r"(dst) : "memory");
    if (now_us() - t < *best)
        *best = now_us() - t;
}

static void keep_min(double *best, double v)
{
    if (v < *best)
        *best = v;
}

/* One echo of size bytes through evexec_procpool_submit(): src written
 * first (the caller's own making of its input: timed into *fill, not into
 * the result), then timed from the submit to the done callback. */
static double job_copying(struct bench *b, unsigned char *src, size_t size, int v, double *fill)
{
    double t = now_us();
    memset(src, v, size);
    __asm__ volatile("" ::"r"(src) : "memory");
    keep_min(fill, now_us() - t);
    t = now_us();
    if (evexec_procpool_submit(b->port, b->pool, echo, src, size, on_done, b, NULL, NULL) < 0) {
        b->errors++;
        return 1e30;
    }
    run(b, b->done + 1);
    return b->t_last - t;
}

/* The same with the input written in place: timed from
 * evexec_proc_input_new() to the done callback, leaving out the writing
 * of the input (timed into *fill) as job_copying() leaves out src's. */
static double job_in_place(struct bench *b, size_t size, int v, double *fill)
{
    evexec_proc_input *in;
    void *data;
    double t = now_us();
    if (evexec_proc_input_new(b->pool, size, &in, &data) < 0) {
        b->errors++;
        return 1e30;
    }
    double t_new = now_us() - t;
    t = now_us();
    memset(data, v, size);
    __asm__ volatile("" ::"r"(data) : "memory");
    keep_min(fill, now_us() - t);
    t = now_us();
    if (evexec_procpool_submit_input(b->port, b->pool, echo, in, on_done, b, NULL, NULL) < 0) {
        evexec_proc_input_free(in);
        b->errors++;
        return 1e30;
    }
    run(b, b->done + 1);
    return t_new + b->t_last - t;
}

/* How long a worker is left idle before a job timed "after an idle
 * worker": enough for it to make its next output memfd of size bytes
 * after its last result (25-33 ms for 64 MiB on the machines of
 * bench/README.md: 1.5 us per KiB allowed). */
static unsigned p3_idle_us(size_t size)
{
    return (unsigned)(size / 1024 * 3 / 2);
}

/*
 * P3: each rep times, in turns, a memcpy() of the bytes (the yardstick),
 * a copying submit after p3_idle_us() of idle, a second one at once (back
 * to back), the yardstick again, an in-place submit after p3_idle_us() and
 * a second one at once; best of reps each. After an idle worker, the
 * worker has made its next output memfd (lib/procpool-internal.h, struct
 * proc_spare) since its last result; back to back, a job finds that still
 * under way, as in a stream of jobs. The copying path hides most of it
 * behind its own copy; the in-place path has nothing to hide it behind.
 * fill_*: the writing of the input into src and into the in-place buffer,
 * left out of both paths' times (the in-place buffer must be no slower to
 * write, or leaving it out would flatter that path).
 */
static void p3(size_t size, int reps, const char *tag)
{
    struct bench b;
    unsigned char *src = malloc(size), *dst = malloc(size);
    memset(src, 7, size);
    memset(dst, 1, size);
    setup(&b, 1);
    evexec_procpool_submit(b.port, b.pool, echo, src, size, on_done, &b, NULL, NULL);
    run(&b, 1); /* warm */
    double copying = 1e30, copying_b2b = 1e30, in_place = 1e30, in_place_b2b = 1e30;
    double copy = 1e30, fill_src = 1e30, fill_in = 1e30;
    for (int r = 0; r < reps; r++) {
        yardstick(dst, src, size, &copy);
        usleep(p3_idle_us(size));
        keep_min(&copying, job_copying(&b, src, size, 7 + r, &fill_src));
        keep_min(&copying_b2b, job_copying(&b, src, size, 8 + r, &fill_src));
        yardstick(dst, src, size, &copy);
        usleep(p3_idle_us(size));
        keep_min(&in_place, job_in_place(&b, size, 7 + r, &fill_in));
        keep_min(&in_place_b2b, job_in_place(&b, size, 8 + r, &fill_in));
    }
    printf("P3_%s_evexec_MBs %.0f\nP3_%s_evexec_b2b_MBs %.0f\n"
           "P3_%s_inplace_MBs %.0f\nP3_%s_inplace_b2b_MBs %.0f\nP3_%s_memcpy_MBs %.0f\n"
           "P3_%s_fill_src_MBs %.0f\nP3_%s_fill_inplace_MBs %.0f\nP3_%s_evexec_errors %d\n",
           tag, size / copying, tag, size / copying_b2b, tag, size / in_place, tag,
           size / in_place_b2b, tag, size / copy, tag, size / fill_src, tag, size / fill_in, tag,
           b.errors);
    teardown(&b);
    free(src);
    free(dst);
}

static void p4(int reps)
{
    struct bench b;
    double *ms = malloc(sizeof *ms * (size_t)reps);
    setup(&b, 1);
    evexec_procpool_submit(b.port, b.pool, echo, b.buf, 64, on_done, &b, NULL, NULL);
    run(&b, 1);
    for (int r = 0; r < reps; r++) {
        b.done = 0;
        b.errors = 0;
        evexec_procpool_submit(b.port, b.pool, crash, NULL, 0, on_done, &b, NULL, NULL);
        run(&b, 1);
        double t = b.t_last;
        evexec_procpool_submit(b.port, b.pool, echo, b.buf, 64, on_done, &b, NULL, NULL);
        run(&b, 2);
        ms[r] = (b.t_last - t) / 1e3;
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp_double);
    printf("P4_evexec_ms %.2f\n", ms[reps / 2]);
    teardown(&b);
    free(ms);
}

/* The naive approach: one fork() per job, 64 bytes back through a pipe. */
static double fork_job(void)
{
    int fds[2];
    unsigned char buf[64] = {0};
    double t = now_us();
    if (pipe(fds) < 0)
        exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        ssize_t w = write(fds[1], buf, sizeof buf);
        _exit(w == sizeof buf ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], buf, sizeof buf);
    close(fds[0]);
    waitpid(pid, NULL, 0);
    if (got != sizeof buf)
        exit(1);
    return now_us() - t;
}

static void forks(int n)
{
    double *lat = malloc(sizeof *lat * (size_t)n);
    double t0 = now_us();
    for (int i = 0; i < n; i++)
        lat[i] = fork_job();
    double total = now_us() - t0;
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    printf("P1_fork_p50_us %.1f\nP1_fork_p99_us %.1f\nP1_fork_jobs_s %.0f\n", lat[n / 2],
           lat[n * 99 / 100], n / total * 1e6);
    /* P2 with four children at a time. */
    t0 = now_us();
    int running = 0, started = 0, finished = 0;
    while (finished < n) {
        while (running < 4 && started < n) {
            pid_t pid = fork();
            if (pid == 0)
                _exit(0);
            running++;
            started++;
        }
        if (wait(NULL) > 0) {
            running--;
            finished++;
        }
    }
    printf("P2_fork_jobs_s %.0f\n", n / (now_us() - t0) * 1e6);
    free(lat);
}

int main(int argc, char **argv)
{
    int quick = 0;
    const char *only = NULL; /* --only=P3: one workload (profiling) */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strncmp(argv[i], "--only=", 7) == 0)
            only = argv[i] + 7;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("quick %d\n", quick);
#define WANT(w) (!only || strcmp(only, w) == 0)
    if (WANT("P1"))
        p1(quick ? 2000 : 20000);
    if (WANT("P2"))
        p2(quick ? 10000 : 100000);
    if (WANT("P3")) {
        p3((size_t)1 << 20, quick ? 3 : 10, "1MiB");
        p3((size_t)64 << 20, quick ? 2 : 5, "64MiB");
    }
    if (WANT("P4"))
        p4(quick ? 5 : 21);
    if (WANT("fork"))
        forks(quick ? 500 : 5000);
    return 0;
}
