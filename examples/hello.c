/* SPDX-License-Identifier: MIT */
/*
 * hello: the C counterpart of Python's classic run_in_executor() demo.
 *
 * Six blocking jobs (each sleeps 300 ms, standing in for a disk read or a
 * database call) run on a pool of three workers. Each logs the thread it runs
 * on; the results come back to the loop thread, which keeps ticking a
 * 100 ms timer all the while to show that it never blocks. With three workers
 * the six jobs take two rounds: about 600 ms, not 1800.
 *
 * With --processes, the same six jobs run on three worker *processes* of
 * an evexec_procpool (Python's ProcessPoolExecutor demo): each logs its
 * PID, and its result comes back to the loop thread as bytes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <evexec.h>

#define NJOBS 6
#define NWORKERS 3
#define JOB_MS 300

struct demo {
    struct event_base *base;
    evexec_port *port;
    evexec_pool *pool;
    evexec_procpool *procs;        /* --processes */
    struct event *tick;
    pthread_t loop_thread;
    struct timespec t0;
    int results[NJOBS];
    int ndone;
    int ticks;
};

struct task {
    struct demo *demo;
    int n;
};

static double elapsed_ms(const struct demo *d)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - d->t0.tv_sec) * 1e3 + (t.tv_nsec - d->t0.tv_nsec) / 1e6;
}

static const char *thread_name(char *buf, size_t len)
{
    if (pthread_getname_np(pthread_self(), buf, len) != 0)
        snprintf(buf, len, "?");
    return buf;
}

/* Runs on a worker: a plain blocking call. */
static void *blocking_io(evexec_job *job, void *arg)
{
    struct task *t = arg;
    char name[16];
    (void)job;
    printf("%7.1f ms  job %d: running on worker thread %s\n", elapsed_ms(t->demo), t->n,
           thread_name(name, sizeof name));
    fflush(stdout);
    usleep(JOB_MS * 1000);
    return (void *)(intptr_t)(t->n * t->n);
}

/* Runs on the loop thread. */
static void on_done(int status, void *result, void *arg)
{
    struct task *t = arg;
    struct demo *d = t->demo;
    char name[16];

    if (!pthread_equal(pthread_self(), d->loop_thread)) {
        fprintf(stderr, "BUG: callback off the loop thread\n");
        exit(1);
    }
    if (status == 0)
        d->results[t->n] = (int)(intptr_t)result;
    printf("%7.1f ms  job %d: %s, result %d, collected on loop thread %s\n", elapsed_ms(d), t->n,
           status == 0 ? "done" : evexec_strerror(status), d->results[t->n],
           thread_name(name, sizeof name));
    free(t);
    if (++d->ndone == NJOBS) {
        /* Everything is back: tidy up, and the loop runs out of events. */
        event_del(d->tick);
        evexec_pool_free(d->pool);
        evexec_port_free(d->port);
    }
}

/* --processes: the input of a job, as bytes. */
struct proc_task {
    int n;
    struct timespec t0;            /* CLOCK_MONOTONIC is the same in every process */
};

/* Runs in a worker process. */
static int blocking_in_process(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    struct proc_task t;
    struct timespec now;
    char name[16] = "?";
    FILE *f = fopen("/proc/self/comm", "r");
    (void)state;
    if (len != sizeof t)
        return EINVAL;
    memcpy(&t, in, sizeof t);
    if (f) {
        if (fgets(name, sizeof name, f))
            name[strcspn(name, "\n")] = '\0';
        fclose(f);
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    printf("%7.1f ms  job %d: running in worker process %d (%s)\n",
           (now.tv_sec - t.t0.tv_sec) * 1e3 + (now.tv_nsec - t.t0.tv_nsec) / 1e6, t.n,
           (int)getpid(), name);
    fflush(stdout);
    usleep(JOB_MS * 1000);
    int *result = evexec_proc_output(out, sizeof *result);
    if (!result)
        return ENOMEM;
    *result = t.n * t.n;
    return 0;
}

/* Runs on the loop thread. */
static void on_proc_done(int status, const struct evexec_proc_result *res, void *arg)
{
    struct task *t = arg;
    struct demo *d = t->demo;

    if (!pthread_equal(pthread_self(), d->loop_thread)) {
        fprintf(stderr, "BUG: callback off the loop thread\n");
        exit(1);
    }
    if (status == 0 && res->out_len == sizeof(int))
        memcpy(&d->results[t->n], res->out, sizeof(int));
    printf("%7.1f ms  job %d: %s, result %d from pid %d, collected on the loop thread\n",
           elapsed_ms(d), t->n, status == 0 ? "done" : evexec_strerror(status), d->results[t->n],
           res->pid);
    free(t);
    if (++d->ndone == NJOBS) {
        event_del(d->tick);
        evexec_procpool_free(d->procs);
        evexec_port_free(d->port);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct demo *d = arg;
    (void)fd;
    (void)what;
    d->ticks++;
    printf("%7.1f ms  loop: tick %d (the loop is free while the jobs block)\n", elapsed_ms(d),
           d->ticks);
}

int main(int argc, char **argv)
{
    struct demo d;
    struct evexec_pool_opts opts = EVEXEC_POOL_OPTS_INIT;
    struct evexec_procpool_opts popts = EVEXEC_PROCPOOL_OPTS_INIT;
    int processes = argc > 1 && strcmp(argv[1], "--processes") == 0;
    struct timeval period = {0, 100 * 1000};
    int rc;

    memset(&d, 0, sizeof d);
    pthread_setname_np(pthread_self(), "loop");
    d.loop_thread = pthread_self();
    if (argc > 1 && !processes) {
        fprintf(stderr, "usage: %s [--processes]\n", argv[0]);
        return 2;
    }
    printf("evexec %s: %d blocking jobs of %d ms on %d worker %s\n", evexec_version_string(),
           NJOBS, JOB_MS, NWORKERS, processes ? "processes" : "threads");
    /* A process pool is made first, while the program has one thread. */
    popts.max_procs = NWORKERS;
    popts.name = "worker";
    if (processes && (rc = evexec_procpool_new(&d.procs, &popts)) < 0) {
        fprintf(stderr, "evexec_procpool_new: %s\n", evexec_strerror(rc));
        return 1;
    }

    if (!(d.base = event_base_new())) {
        fprintf(stderr, "event_base_new failed\n");
        return 1;
    }
    opts.max_threads = NWORKERS;
    opts.name = "worker";
    if ((!processes && (rc = evexec_pool_new(&d.pool, &opts)) < 0) ||
        (rc = evexec_port_new(&d.port, d.base, NULL)) < 0) {
        fprintf(stderr, "evexec: %s\n", evexec_strerror(rc));
        return 1;
    }
    d.tick = event_new(d.base, -1, EV_PERSIST, on_tick, &d);
    event_add(d.tick, &period);

    clock_gettime(CLOCK_MONOTONIC, &d.t0);
    for (int i = 0; i < NJOBS; i++) {
        struct task *t = malloc(sizeof *t);
        if (!t)
            return 1;
        t->demo = &d;
        t->n = i;
        if (processes) {
            struct proc_task in = {i, d.t0};
            rc = evexec_procpool_submit(d.port, d.procs, blocking_in_process, &in, sizeof in,
                                        on_proc_done, t, NULL, NULL);
        } else {
            rc = evexec_submit(d.port, d.pool, blocking_io, on_done, t, NULL);
        }
        if (rc < 0) {
            fprintf(stderr, "submit: %s\n", evexec_strerror(rc));
            return 1;
        }
    }
    event_base_dispatch(d.base);

    double total = elapsed_ms(&d);
    printf("results:");
    for (int i = 0; i < NJOBS; i++)
        printf(" %d", d.results[i]);
    printf("\nall %d jobs in %.0f ms (%d ms of blocking calls run %d at a time); "
           "the loop ticked %d times meanwhile\n",
           NJOBS, total, NJOBS * JOB_MS, NWORKERS, d.ticks);
    event_free(d.tick);
    event_base_free(d.base);
    return d.ndone == NJOBS ? 0 : 1;
}
