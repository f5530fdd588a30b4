/* SPDX-License-Identifier: MIT */
/* Shared test helpers: parking workers on semaphores, running a loop until a
 * condition holds, counting open fds. */
#ifndef EVEXEC_TEST_HELPERS_H
#define EVEXEC_TEST_HELPERS_H

#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>

#include <check.h>
#include <event2/event.h>
#include <evexec.h>

/* A gate parks work functions: each posts `entered`, then waits on `open`. */
struct tally;
struct gate {
    sem_t entered;
    sem_t open;
    struct tally *tally;    /* for gate_done */
};
void gate_init(struct gate *g, struct tally *t);
void gate_destroy(struct gate *g);
/* Waits until n work functions have entered the gate (fails the test after
 * 10 s). */
void gate_wait_entered(struct gate *g, int n);
/* Lets n parked work functions go. */
void gate_release(struct gate *g, int n);
/* Work function: parks on the gate given as arg, returns arg. */
void *park_work(evexec_job *job, void *arg);
/* Work function: like park_work, but returns (void *)1 if its stop flag was
 * set by the time it was let go. */
void *park_work_stop(evexec_job *job, void *arg);
/* Done callback for gate jobs: counts in the gate's tally. */
void gate_done(int status, void *result, void *arg);

/* Work function: returns arg. */
void *echo_work(evexec_job *job, void *arg);

/* A record of done callbacks. */
struct tally {
    pthread_t loop;         /* the thread callbacks must run on */
    int calls;
    int ok, cancelled, other;
    int wrong_thread;
    void *last_result;
};
void tally_init(struct tally *t);
/* Done callback: arg is a struct tally. */
void tally_done(int status, void *result, void *arg);

/* Runs the base until *counter >= target; fails the test after 10 s. */
void run_until(struct event_base *base, const int *counter, int target);
/* Runs one non-blocking round of the loop, `rounds` times. */
void run_nonblock(struct event_base *base, int rounds);
/* The fixture of the suites built on one port per test: a new base and
 * port; on teardown, the port freed and its callbacks delivered, the base
 * freed, and the fd table checked to be as the test found it. */
void port_fixture_setup(struct event_base **base, evexec_port **port);
void port_fixture_teardown(struct event_base *base, evexec_port *port);

/* Polls fn(arg) every ms until it is true; fails after 10 s. */
void wait_for(int (*fn)(void *), void *arg);

/* Pool counters, for assertions. */
struct evexec_pool_stats pool_stats(evexec_pool *pool);
struct evexec_port_stats port_stats(evexec_port *port);

/* Number of open fds of this process. */
int count_fds(void);
/* Up to max of the fds open now (the listing's own excluded); -1 on error. */
int fd_list(int *fds, int max);
/* Number of threads of this process. */
int count_threads(void);
/* CLOCK_MONOTONIC, in seconds. */
double now_s(void);
/* Monotonic nanoseconds. */
uint64_t now_ns(void);
/* 0..n-1 from a rand_r() state. */
unsigned rnd(unsigned *state, unsigned n);
/* EVEXEC_STRESS_SEED if set, else from the clock and the pid (to print). */
unsigned stress_seed(void);

#endif
