/* SPDX-License-Identifier: MIT */
/*
 * The benchmark driver's view of a "system": anything that can run a job on
 * a worker thread and call back on its loop thread. One driver (driver.c)
 * runs the workloads of ../shared/BENCH.md against every system through this
 * interface, so the workloads are identical; suite.c runs the measurements
 * in child processes, interleaved, and writes the report.
 *
 * A job is described by a struct bench_job that many jobs share (the driver
 * never allocates per job): the system's work function calls bench_work()
 * with it on a worker, and its completion calls bench_done() with it on the
 * loop thread. Whatever state a system needs per job is its own business,
 * allocated the way a user of that system would allocate it.
 */
#ifndef EVEXEC_BENCH_H
#define EVEXEC_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum bench_kind {
    BENCH_NOP,    /* returns at once */
    BENCH_SLEEP,  /* usleep(us) */
    BENCH_CPU,    /* spins for about us microseconds of CPU */
    BENCH_GATE    /* parks until the run's gate opens */
};

struct bench_run;

struct bench_job {
    enum bench_kind kind;
    unsigned us;
    struct bench_run *run;
};

/* What every workload shares with the done path (driver.c). */
struct bench_run {
    pthread_t loop;                     /* done callbacks must run here */
    _Atomic unsigned long violations;   /* done callbacks seen elsewhere */
    unsigned long delivered;            /* done callbacks run */
    unsigned long submitted;            /* submits accepted */
    void (*on_done)(struct bench_run *run, struct bench_job *job);
    void *ctx;                          /* the workload's own state */
    /* BENCH_GATE */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    int gate_open;
    _Atomic unsigned parked;
};

/* Options a system is created with. */
struct bench_cfg {
    unsigned threads;     /* pool size */
    size_t max_queued;    /* jobs that may wait at once (where bounded) */
    unsigned spin_us;     /* evexec-spin: worker spin before parking */
    int precise_timers;   /* W5: timers to the microsecond where the loop
                             can (libevent: EVENT_BASE_FLAG_PRECISE_TIMER) */
};

struct bench_sys;   /* a system's state, opaque to the driver */

struct bench_ops {
    const char *name;        /* command-line name */
    const char *label;       /* name in the report */
    /* On the loop thread (the one that will call run()). 0 or -errno. */
    int (*init)(struct bench_sys **out, const struct bench_cfg *cfg);
    /* Loop thread: queues one job. 0 or -errno. */
    int (*submit)(struct bench_sys *s, struct bench_job *job);
    /* Runs the loop until stop() is called from a callback. */
    void (*run)(struct bench_sys *s);
    void (*stop)(struct bench_sys *s);
    /* Loop thread: (re)arms the system's one-shot timer to call cb(arg) on
     * the loop thread no sooner than delay_us from now, by the clock of
     * bench_now_ns(). The system's cached time is refreshed first. */
    int (*timer)(struct bench_sys *s, unsigned delay_us, void (*cb)(void *), void *arg);
    /* Worker threads the system really runs (GTask: always 10). */
    unsigned (*threads)(const struct bench_sys *s);
    /* Loop thread, every job delivered: releases everything. */
    void (*fini)(struct bench_sys *s);
    /* Version of the library behind the system, into buf. */
    void (*version)(char *buf, size_t n);
};

/* The systems built in (NULL where configure did not find the peer). */
extern const struct bench_ops bench_sys_evexec;
extern const struct bench_ops bench_sys_evexec_spin;
extern const struct bench_ops bench_sys_evexec_nice;
extern const struct bench_ops bench_sys_evexec_batch;
extern const struct bench_ops bench_sys_libuv;
extern const struct bench_ops bench_sys_gtask;
extern const struct bench_ops bench_sys_gpool;
extern const struct bench_ops bench_sys_handrolled;
/* sys_evexec.c: the "overhead" benchmark's variants of evexec, the first
 * ("plain", evexec_submit()) being the reference; also runnable alone as
 * system "evexec:<name>" (e.g. evexec-bench run -w W1 -s evexec:group). */
extern const struct bench_ops bench_evexec_variants[];
extern const unsigned bench_evexec_nvariants;

/* W8, many loops sharing one pool: a system whose pool several loops, each on
 * its own thread, can share. shared_new() runs once on the main thread
 * (the pool, or for libuv its size), init() on each loop thread (that
 * loop, on the shared pool: ops->submit, run, stop and fini then work on
 * it, fini leaving the shared pool alone), shared_free() after every
 * loop's fini. */
struct bench_multi {
    const char *name;
    const struct bench_ops *ops;
    int (*shared_new)(void **shared, const struct bench_cfg *cfg);
    int (*init)(struct bench_sys **out, const struct bench_cfg *cfg, void *shared);
    void (*shared_free)(void *shared);
};

/* NULL where the system cannot share a pool among loops. */
const struct bench_multi *bench_find_multi(const char *name);
extern const struct bench_multi bench_multi_evexec;
extern const struct bench_multi bench_multi_libuv;
extern const struct bench_multi bench_multi_handrolled;

/* driver.c: the two ends of every job. */
void bench_work(struct bench_job *job);   /* on a worker */
void bench_done(struct bench_job *job);   /* on the loop thread */

/* CLOCK_MONOTONIC in ns. */
uint64_t bench_now_ns(void);

/* floors.c: the bare-thread floors. Each returns 0 or -errno and fills the
 * samples (ns per round trip) or the elapsed time. place() is called once
 * the threads exist, to pin them like the systems' threads. */
int bench_floor_futex(uint64_t *samples, unsigned warm, unsigned n, void (*place)(void));
int bench_floor_eventfd(uint64_t *samples, unsigned warm, unsigned n, void (*place)(void));
int bench_floor_threads(unsigned threads, unsigned jobs, unsigned us, uint64_t *elapsed_ns);

/* mallocount.c: malloc calls made (by any thread) while counting is on. */
void bench_alloc_count(int on);
unsigned long bench_alloc_calls(void);

/* suite.c */
int bench_suite_main(int argc, char **argv, const char *self);
/* driver.c: one measurement in this process; prints a "result" line. */
int bench_run_main(const char *workload, const char *system, long jobs, int quick,
                   unsigned timeout_s);
const struct bench_ops *bench_find_system(const char *name, const char **why_not);
/* Names, in report order, NULL-terminated. */
extern const char *const bench_workloads[];
extern const char *const bench_systems[];
int bench_applies(const char *workload, const char *system);

#endif
