/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

void gate_init(struct gate *g, struct tally *t)
{
    g->tally = t;
    ck_assert_int_eq(sem_init(&g->entered, 0, 0), 0);
    ck_assert_int_eq(sem_init(&g->open, 0, 0), 0);
}

void gate_destroy(struct gate *g)
{
    sem_destroy(&g->entered);
    sem_destroy(&g->open);
}

void gate_wait_entered(struct gate *g, int n)
{
    for (int i = 0; i < n; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 10;
        int rc;
        while ((rc = sem_timedwait(&g->entered, &ts)) < 0 && errno == EINTR)
            ;
        ck_assert_msg(rc == 0, "worker %d of %d never reached the gate", i + 1, n);
    }
}

void gate_release(struct gate *g, int n)
{
    for (int i = 0; i < n; i++)
        sem_post(&g->open);
}

void *park_work(evexec_job *job, void *arg)
{
    struct gate *g = arg;
    (void)job;
    sem_post(&g->entered);
    while (sem_wait(&g->open) < 0 && errno == EINTR)
        ;
    return arg;
}

void *park_work_stop(evexec_job *job, void *arg)
{
    park_work(job, arg);
    return (void *)(intptr_t)evexec_job_cancelled(job);
}

void gate_done(int status, void *result, void *arg)
{
    tally_done(status, result, ((struct gate *)arg)->tally);
}

void *echo_work(evexec_job *job, void *arg)
{
    (void)job;
    return arg;
}

void tally_init(struct tally *t)
{
    memset(t, 0, sizeof *t);
    t->loop = pthread_self();
}

void tally_done(int status, void *result, void *arg)
{
    struct tally *t = arg;
    t->calls++;
    if (!pthread_equal(pthread_self(), t->loop))
        t->wrong_thread++;
    if (status == 0)
        t->ok++;
    else if (status == -ECANCELED)
        t->cancelled++;
    else
        t->other++;
    t->last_result = result;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

void run_until(struct event_base *base, const int *counter, int target)
{
    double deadline = now_s() + 10;
    /* Block briefly for the wake fd instead of spinning, with a timer of
     * our own that we remove (a pending event_base_loopexit() would end a
     * later event_base_dispatch() early). */
    struct event *t = evtimer_new(base, tick, NULL);
    ck_assert_ptr_nonnull(t);
    while (*counter < target) {
        ck_assert_msg(now_s() < deadline, "timed out: %d of %d callbacks", *counter, target);
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (*counter < target) {
            struct timeval tv = {0, 10000};
            evtimer_add(t, &tv);
            event_base_loop(base, EVLOOP_ONCE);
            evtimer_del(t);
        }
    }
    event_free(t);
}

static int fixture_fds;

void port_fixture_setup(struct event_base **base, evexec_port **port)
{
    fixture_fds = count_fds();
    *base = event_base_new();
    ck_assert_ptr_nonnull(*base);
    ck_assert_int_eq(evexec_port_new(port, *base, NULL), 0);
}

void port_fixture_teardown(struct event_base *base, evexec_port *port)
{
    ck_assert_int_eq(evexec_port_free(port), 0);
    event_base_dispatch(base); /* returns once the port has released itself */
    event_base_free(base);
    ck_assert_int_eq(count_fds(), fixture_fds); /* as the test found it */
}

void run_nonblock(struct event_base *base, int rounds)
{
    for (int i = 0; i < rounds; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

void wait_for(int (*fn)(void *), void *arg)
{
    double deadline = now_s() + 10;
    while (!fn(arg)) {
        ck_assert_msg(now_s() < deadline, "condition not reached in 10 s");
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

struct evexec_pool_stats pool_stats(evexec_pool *pool)
{
    struct evexec_pool_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    ck_assert_int_eq(evexec_pool_stats(pool, &s), 0);
    return s;
}

struct evexec_port_stats port_stats(evexec_port *port)
{
    struct evexec_port_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    ck_assert_int_eq(evexec_port_stats(port, &s), 0);
    return s;
}

int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

int count_threads(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int fd_list(int *fds, int max)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL && n < max) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != dirfd(d))
            fds[n++] = fd;
    }
    closedir(d);
    return n;
}

uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

unsigned rnd(unsigned *state, unsigned n)
{
    return (unsigned)rand_r(state) % n;
}

unsigned stress_seed(void)
{
    const char *s = getenv("EVEXEC_STRESS_SEED");
    if (s && *s)
        return (unsigned)strtoul(s, NULL, 0);
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (unsigned)t.tv_sec ^ (unsigned)t.tv_nsec ^ ((unsigned)getpid() << 16);
}
