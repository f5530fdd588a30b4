/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: the few things every thread evexec starts, and every timed wait
 * it makes, must do the same way; pools (pool.c), loops (loop.c) and
 * futures (future.c) share them from here.
 *
 * - Threads start with every signal blocked, from their first instruction:
 *   the mask is set on the creating thread around pthread_create(), which
 *   the new thread inherits, so signals keep reaching the program's own
 *   threads (and libevent's signal events keep working).
 * - Thread names are cut to the 15 bytes Linux keeps.
 * - Condition variables wait against the monotonic clock where they can;
 *   deadlines are taken from the same clock as the condition variable.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "thread-internal.h"

#ifdef HAVE_PTHREAD_CONDATTR_SETCLOCK
#define COND_CLOCK CLOCK_MONOTONIC
#else
#define COND_CLOCK CLOCK_REALTIME
#endif

int evexec__thread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                          void *arg)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(t, attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

void evexec__thread_name(const char *name)
{
#ifdef HAVE_PTHREAD_SETNAME_NP
    char buf[16]; /* Linux keeps 15 bytes */
    size_t n = strnlen(name, sizeof buf - 1);
    memcpy(buf, name, n);
    buf[n] = '\0';
    pthread_setname_np(pthread_self(), buf);
#else
    EVEXEC_UNUSED(name);
#endif
}

int evexec__cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    int rc;

    if ((rc = pthread_condattr_init(&ca)) != 0)
        return -rc;
#ifdef HAVE_PTHREAD_CONDATTR_SETCLOCK
    pthread_condattr_setclock(&ca, COND_CLOCK);
#endif
    rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return -rc;
}

void evexec__clock_now(struct timespec *ts)
{
    clock_gettime(COND_CLOCK, ts);
}

static void add_ns(struct timespec *ts, time_t sec, long ns)
{
    ts->tv_sec += sec;
    ts->tv_nsec += ns;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void evexec__deadline_after(struct timespec *ts, unsigned ms)
{
    evexec__clock_now(ts);
    add_ns(ts, (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L);
}

void evexec__deadline_after_us(struct timespec *ts, unsigned us)
{
    evexec__clock_now(ts);
    add_ns(ts, (time_t)(us / 1000000), (long)(us % 1000000) * 1000L);
}

uint64_t evexec__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
