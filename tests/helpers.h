/* SPDX-License-Identifier: MIT */
/* Shared test helpers: the checked fixtures and the runner of every suite,
 * parking workers on semaphores, running a loop until a condition holds,
 * pools, jobs that record what happens to them, counting open fds. */
#ifndef EVEXEC_TEST_HELPERS_H
#define EVEXEC_TEST_HELPERS_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
/* event_base_dispatch() until the base has no event left (and no stale
 * loopexit ended it early). */
void dispatch_all(struct event_base *b);
/* An event callback that does nothing: a timer of one's own for bounded
 * blocking waits (a pending event_base_loopexit() would end a later
 * event_base_dispatch() early). */
void noop_event(evutil_socket_t fd, short what, void *arg);

/* The checked fixtures every suite uses (Check forks each test, and fork()
 * keeps only the calling thread: pools are made inside the test or in a
 * checked fixture, never in an unchecked one). Both check that the test
 * left the fd table as it found it. FX_PORT gives each test a new base and
 * port in fx; its teardown frees the port, delivers its callbacks and frees
 * the base. */
enum fixture_kind { FX_NONE, FX_FDS, FX_PORT };
struct fixture {
    struct event_base *base;    /* FX_PORT */
    evexec_port *port;          /* FX_PORT */
    pthread_t loop;             /* the thread done callbacks must run on */
    int seq;                    /* order of djob and grec callbacks */
    int member_calls;           /* djob done callbacks, all jobs together */
    int fds;                    /* open fds when the test began */
};
extern struct fixture fx;
void fds_setup(void);
void fds_teardown(void);
void port_setup(void);
void port_teardown(void);
/* A test case of s with that fixture and timeout (seconds). */
TCase *add_tcase(Suite *s, const char *name, double timeout, enum fixture_kind kind);
/* Runs every test of s; the exit status of a test program. */
int run_suite(Suite *s);

/* A pool of those options or limits (0: the default); fails the test if it
 * cannot be made. */
evexec_pool *new_pool_o(const struct evexec_pool_opts *o);
evexec_pool *new_pool(unsigned max, unsigned min, size_t max_queued);
evexec_pool *new_named_pool(unsigned max, unsigned min, size_t max_queued, const char *name);
/* evexec_submit_ex() through fx.port with a priority only. */
int submit_prio(evexec_pool *pool, int prio, evexec_work_fn work, evexec_done_fn done, void *arg,
                evexec_job_id *id);
/* Inits t and g, submits n jobs of work (park_work or park_work_stop) with
 * gate_done through fx.port and waits until all n are parked on the gate:
 * n workers of the pool are then busy. */
void park_n(evexec_pool *pool, evexec_work_fn work, struct gate *g, struct tally *t, int n);
/* Inits t and g, makes an evexec_pool_call() of work (park_work or
 * park_work_stop) with g and waits until it is parked; returns its future. */
evexec_future *park_call(evexec_pool *pool, evexec_work_fn work, struct gate *g, struct tally *t);

/* Runs fx.base until now_s() reaches end (only where a deadline must
 * pass), however many stale loopexits end a dispatch early. */
void run_until_time(double end);
void run_for(int ms);
/* Runs a job through pool and waits for its callback: a pool of one thread
 * has then finished every earlier job, and the port has delivered whatever
 * those pushed before it (late results included). */
void flush(evexec_pool *pool);
/* Waits until n work functions of the pool have returned. */
void wait_completed(evexec_pool *pool, uint64_t n);
/* Waits until n threads of the pool wait for work. */
void wait_idle(evexec_pool *pool, unsigned n);
/* Runs fn(arg) on a thread of its own and returns what it returned. */
int on_other_thread(int (*fn)(void *), void *arg);

/* A job that records everything that happens to it (deadlines, groups,
 * thread-safe submits). */
#define DJOB_MAGIC 0x6a6f6273u
struct djob {
    unsigned magic;
    struct gate *gate;      /* park on it if not NULL */
    void *ret;              /* what the work function returns */
    int alloc_ret;          /* return a malloc()ed block; done or cleanup frees it */
    /* worker side */
    atomic_int ran;         /* work function entered */
    atomic_int stopped;     /* evexec_job_cancelled() when it returned */
    /* loop side */
    int calls, status, seq, wrong_thread;
    void *result;
    double at;              /* now_s() of the first done callback */
    int cleanups, cleanup_wrong_thread;
    void *cleanup_result;
    int free_port_in_done;  /* done frees the fixture's port */
    int free_port_rc;
};
void djob_init(struct djob *d, struct gate *g, void *ret);
void *djob_work(evexec_job *job, void *arg);
void djob_done(int status, void *result, void *arg);
void djob_cleanup(void *result, void *arg);
/* Submits a djob through fx.port with a deadline (0: none) and a group
 * (NULL: none). */
int submit_djob(evexec_pool *pool, struct djob *d, unsigned timeout_ms, evexec_group *g,
                evexec_job_id *id);
/* Inits g and d (parked on g), submits d with submit_djob() and waits
 * until its work function is parked: one worker of the pool is then busy. */
void park_djob(evexec_pool *pool, struct djob *d, struct gate *g, unsigned timeout_ms,
               evexec_group *grp);

/* A group's record: what its callback saw, and what it does then. */
enum { GR_NONE, GR_CANCEL, GR_SUBMIT };
struct grec {
    int calls, status, seq, wrong_thread;
    int action;             /* what the callback does then */
    int rc;                 /* what that returned */
    evexec_group *g;
    evexec_pool *pool;      /* GR_SUBMIT: submit d into g */
    struct djob *d;
};
/* Group callback: records into the struct grec given as arg, then acts. */
void grec_fn(int status, void *arg);
/* A group of fx.port calling back into r. */
evexec_group *new_group(struct grec *r, int how);

/* A thread making one evexec_submit_threadsafe() of echo_work through
 * fx.port with wait_ms (it may block). */
struct ts_waiter {
    evexec_pool *pool;
    evexec_done_fn done;
    void *arg;
    int wait_ms;
    int rc;
    double elapsed;
    atomic_int tid;
    pthread_t th;
};
void ts_start(struct ts_waiter *c, evexec_pool *pool, int wait_ms, struct tally *t);
void ts_join(struct ts_waiter *c);

/* Polls fn(arg) every ms until it is true; fails after 10 s. */
void wait_for(int (*fn)(void *), void *arg);
/* Waits (up to 10 s) until the process has n threads: a thread that
 * pthread_join() has just returned for may stay listed in /proc/self/task
 * for a moment (the kernel wakes the joiner before it removes the task).
 * A thread really left running still fails the test. */
void wait_threads(int n);

/* Resolves p with result if status is 0, else fails it with status. */
void promise_settle(evexec_promise *p, int status, void *result);
/* Waits for a future (forever) and returns its result; the outcome must
 * be 0. */
void *wait_ok(evexec_future *f);
/* Waits for a future (forever) and returns its outcome. */
int wait_status(evexec_future *f);

/* Pool counters, for assertions. */
struct evexec_pool_stats pool_stats(evexec_pool *pool);
struct evexec_port_stats port_stats(evexec_port *port);

/* Number of open fds of this process. */
int count_fds(void);
/* Up to max of the fds open now (the listing's own excluded); -1 on error. */
int fd_list(int *fds, int max);
/* Number of threads of this process. */
int count_threads(void);
/* A process of the system, as /proc/<pid>/stat shows it. */
struct proc_entry {
    pid_t pid, parent;
    char state; /* R, S, D, Z, ... */
};
/* Up to max of the processes of the system; returns how many. */
int list_procs(struct proc_entry *out, int max);
/* CLOCK_MONOTONIC, in seconds. */
double now_s(void);
/* Monotonic nanoseconds. */
uint64_t now_ns(void);
/* 0..n-1 from a rand_r() state. */
unsigned rnd(unsigned *state, unsigned n);
/* EVEXEC_STRESS_SEED if set, else from the clock and the pid (to print). */
unsigned stress_seed(void);

#endif
