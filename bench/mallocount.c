/* SPDX-License-Identifier: MIT */
/*
 * W6 counts malloc calls per job: the benchmark binary defines malloc and
 * its siblings, so every library it links (evexec, libevent, libuv, GLib)
 * calls these, which count while counting is on and hand the call to
 * glibc's own allocator. Off, they cost one relaxed load.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "bench.h"

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

/* Also replaced: memalign (old interface, declared in malloc.h). */
void *memalign(size_t align, size_t n);

static _Atomic int counting;
static _Atomic unsigned long calls;

static inline void count(void)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
}

void *malloc(size_t n)
{
    count();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    count();
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    count();
    return __libc_realloc(p, n);
}

void *memalign(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    count();
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void bench_alloc_count(int on)
{
    if (on)
        atomic_store(&calls, 0);
    atomic_store(&counting, on);
}

unsigned long bench_alloc_calls(void)
{
    return atomic_load(&calls);
}
