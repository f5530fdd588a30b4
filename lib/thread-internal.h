/* SPDX-License-Identifier: MIT */
/*
 * Thread and clock helpers (thread.c): every thread evexec starts, and
 * every clock it reads, goes through these. Never installed.
 */
#ifndef EVEXEC_THREAD_INTERNAL_H
#define EVEXEC_THREAD_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "base.h"

/* pthread_create() with every signal blocked in the new thread from its
 * first instruction. 0 or -errno. */
int evexec__thread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                          void *arg);
/* Names the calling thread, cut to the 15 bytes Linux keeps. */
void evexec__thread_name(const char *name);
/* Initialises a condition variable whose timed waits use the clock of
 * evexec__clock_now() (monotonic where possible). 0 or -errno. */
int evexec__cond_init(pthread_cond_t *cv);
void evexec__clock_now(struct timespec *ts);
/* Monotonic nanoseconds (deadlines, histograms). */
uint64_t evexec__now_ns(void);
/* *ts = now + ms, for pthread_cond_timedwait() on evexec__cond_init()'s
 * condition variables. */
void evexec__deadline_after(struct timespec *ts, unsigned ms);
/* The same, us microseconds from now. */
void evexec__deadline_after_us(struct timespec *ts, unsigned us);

/* 1 if a is earlier than b. */
static inline int evexec__timespec_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* In a polling loop: tells the CPU this thread spins (and its sibling
 * hyperthread may have the core). */
static inline void evexec__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif /* EVEXEC_THREAD_INTERNAL_H */
