/* SPDX-License-Identifier: MIT */
/*
 * Invariant 5: steady state makes no malloc per job. This program replaces
 * malloc and friends with counting versions (the library's calls bind to the
 * executable's definitions), warms a pool and a port up, then counts the
 * allocations made while many more jobs go through.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static _Atomic unsigned long allocations;

void *malloc(size_t n)
{
    allocations++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    allocations++;
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    allocations++;
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    allocations++;
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    allocations++;
    return __libc_memalign(align, n);
}

/* Check's assertions allocate, so none is made while counting. */
static int run_jobs(struct event_base *base, evexec_port *port, evexec_pool *pool, int n)
{
    struct tally t;
    int submitted = 0;
    tally_init(&t);
    /* Keep 64 in flight, refilled from the loop, as a busy daemon would. */
    while (t.calls < n) {
        while (submitted < n && submitted - t.calls < 64) {
            if (evexec_submit(port, pool, echo_work, tally_done, &t, NULL) < 0)
                return -1;
            submitted++;
        }
        event_base_loop(base, EVLOOP_ONCE);
    }
    return t.ok == n && t.wrong_thread == 0 ? 0 : -1;
}

START_TEST(no_malloc_per_job_in_steady_state)
{
    struct event_base *base = event_base_new();
    evexec_port *port;
    evexec_pool *pool;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;

    o.max_threads = 2;
    o.min_threads = 2;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    ck_assert_int_eq(evexec_port_new(&port, base, NULL), 0);
    ck_assert_int_eq(run_jobs(base, port, pool, 5000), 0); /* warm-up: chunk, batch array */

    unsigned long before = allocations;
    int rc = run_jobs(base, port, pool, 50000);
    unsigned long during = allocations - before;
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(during == 0, "%lu allocations for 50000 jobs", during);

    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(evexec_port_free(port), 0);
    event_base_dispatch(base);
    event_base_free(base);
}
END_TEST

START_TEST(the_counter_sees_the_library_allocate)
{
    /* Guards the test above against a counter that counts nothing. */
    unsigned long before = allocations;
    evexec_pool *pool;
    ck_assert_int_eq(evexec_pool_new(&pool, NULL), 0);
    ck_assert_uint_gt(allocations, before);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = add_tcase(s, "steady-state", 120, FX_FDS);
    tcase_add_test(tc, the_counter_sees_the_library_allocate);
    tcase_add_test(tc, no_malloc_per_job_in_steady_state);
    return run_suite(s);
}
