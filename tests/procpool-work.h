/* SPDX-License-Identifier: MIT */
/*
 * Work functions the process-pool tests share: each runs in a worker
 * process (a function of the test program: in the fork server's image).
 * Static inline, so that a program that uses only some of them builds
 * without warnings.
 */
#ifndef EVEXEC_TESTS_PROCPOOL_WORK_H
#define EVEXEC_TESTS_PROCPOOL_WORK_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <evexec.h>

/* Returns its input as output. */
static inline int w_echo(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)state;
    void *p = evexec_proc_output(out, len);
    if (!p)
        return 99;
    if (len)
        memcpy(p, in, len);
    return 0;
}

/* Fails: code 7, output "why". */
static inline int w_fail(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)in, (void)len, (void)state;
    memcpy(evexec_proc_output(out, 4), "why", 4);
    return 7;
}

static inline int w_segv(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)in, (void)len, (void)out, (void)state;
    volatile int *volatile p = NULL;
    *p = 1;
    return 0;
}

static inline int w_abort(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)in, (void)len, (void)out, (void)state;
    abort();
}

static inline int w_exit3(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)in, (void)len, (void)out, (void)state;
    _exit(3);
}

/* Never returns: for deadlines and kills. */
static inline int w_spin(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)in, (void)len, (void)out, (void)state;
    for (volatile unsigned long i = 0;; i++)
        ;
    return 0;
}

#endif
