/* SPDX-License-Identifier: MIT */
/*
 * Fault injection: what evexec does when the system says no.
 *
 * How. This program is linked with the library's own sources (not with
 * libevexec.so) and with -Wl,--wrap=<f> for malloc, calloc, realloc,
 * posix_memalign, mmap, pthread_create, write, read, eventfd and pipe2, so
 * every call the library makes to them goes through __wrap_<f> below, which
 * passes it on or fails it on purpose. libevent's allocations are routed
 * here too, through event_set_mem_functions(), so the event_new() and
 * event_add() calls the library makes fail as well. Unlike replacing malloc
 * in the executable (check_alloc.c), wrapping changes only the calls made by
 * the objects of this link, so it composes with AddressSanitizer,
 * ThreadSanitizer and valgrind, which then check the error paths too.
 *
 * What is asserted, for every fault: the call that met it returns a clear
 * negative errno or retries transparently; every accepted job still gets
 * exactly one callback, on its loop thread; a rejected one gets none; the
 * port releases itself and every fd is closed again.
 *
 *  - alloc: fail the Nth allocation of a scenario (pool, port, 1500 jobs
 *    over two job chunks, cancels, delivery in capped batches, recycled jobs,
 *    shutdown, free) for N = 1, 2, ... until a run meets no failure, so each
 *    allocation site, in the library and in the libevent calls it makes,
 *    fails once; then again with every allocation from the Nth on failing.
 *  - threads: pthread_create() failing for the kth of min_threads, for every
 *    thread, for all but the first, and while another loop's thread start is
 *    still in flight.
 *  - wakefd: EINTR on the wake fd's writes and reads, and a wake fd that is
 *    really full, so that a worker's write meets a genuine EAGAIN; and, not
 *    a fault, a job finishing while the port delivers, which must cost no
 *    write and still be delivered when the run ends before taking it; and
 *    a worker's write held while a resumed run takes its job and the port
 *    is freed, which must wait for that write.
 *  - fds: eventfd()/pipe2() failing, and a real RLIMIT_NOFILE exhaustion.
 *  - inbox: not a fault but a schedule: sched_getcpu() (wrapped too) holds
 *    a worker between its last look at the queue and its going idle, while
 *    a submit pushes on the pool's inbox without the lock.
 *
 * Each test prints how many faults it injected ("faults injected: N").
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#ifdef EVEXEC_USE_EVENTFD
#include <sys/eventfd.h>
#endif

#include "helpers.h"
#include "port-internal.h" /* the runs test looks at the port's mailbox */

/* ========================================================================= */
/* The wrappers                                                              */
/* ========================================================================= */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **out, size_t align, size_t n);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                          void *arg);
ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __real_read(int fd, void *buf, size_t n);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
int __wrap_posix_memalign(void **out, size_t align, size_t n);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                          void *arg);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
ssize_t __wrap_read(int fd, void *buf, size_t n);

/* --- allocations --------------------------------------------------------- */

enum akind { A_MALLOC, A_CALLOC, A_REALLOC, A_MEMALIGN, A_MMAP, A_EV_MALLOC, A_EV_REALLOC, A_N };
static const char *const akind_name[A_N] = {
    "malloc", "calloc", "realloc", "posix_memalign", "mmap", "libevent malloc", "libevent realloc",
};

/* Only allocations made while armed are counted and may fail; the test
 * itself makes none then (no ck_assert: Check allocates to report). */
static struct {
    _Atomic int armed;
    _Atomic long seen;   /* allocations counted while armed */
    long fail_at;        /* fail allocation number fail_at (1-based)... */
    int sustained;       /* ...and, if set, every one after it */
    _Atomic long failed;
    int first_kind;      /* what the first failure hit, and during which call */
    const char *first_op;
} AF;

/* The evexec call (or phase) running, to name where a fault hit. Written by
 * the test thread only. */
static const char *current_op = "";

static int alloc_fails(enum akind kind)
{
    if (!atomic_load(&AF.armed))
        return 0;
    long n = atomic_fetch_add(&AF.seen, 1) + 1;
    if (AF.fail_at == 0 || n < AF.fail_at || (!AF.sustained && n != AF.fail_at))
        return 0;
    if (atomic_fetch_add(&AF.failed, 1) == 0) {
        AF.first_kind = (int)kind;
        AF.first_op = current_op;
    }
    return 1;
}

void *__wrap_malloc(size_t n)
{
    if (alloc_fails(A_MALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    if (alloc_fails(A_CALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (alloc_fails(A_REALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_realloc(p, n);
}

int __wrap_posix_memalign(void **out, size_t align, size_t n)
{
    if (alloc_fails(A_MEMALIGN))
        return ENOMEM;
    return __real_posix_memalign(out, align, n);
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if ((flags & MAP_ANONYMOUS) && alloc_fails(A_MMAP)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return __real_mmap(addr, len, prot, flags, fd, off);
}

/* libevent's allocator (event_set_mem_functions): it has no calloc of its
 * own, it calls malloc and clears. */
static void *ev_malloc(size_t n)
{
    if (alloc_fails(A_EV_MALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_malloc(n);
}

static void *ev_realloc(void *p, size_t n)
{
    if (alloc_fails(A_EV_REALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_realloc(p, n);
}

static void ev_free(void *p)
{
    free(p);
}

static void af_arm(long fail_at, int sustained)
{
    atomic_store(&AF.seen, 0);
    atomic_store(&AF.failed, 0);
    AF.fail_at = fail_at;
    AF.sustained = sustained;
    AF.first_kind = -1;
    AF.first_op = NULL;
    atomic_store(&AF.armed, 1);
}

static void af_disarm(void)
{
    atomic_store(&AF.armed, 0);
}

/* --- sched_getcpu --------------------------------------------------------- */

/* Armed: every call says CPU 0 (so no idle worker searches: it would share
 * the submitter's CPU), and the first call made by a worker thread of the
 * pool named SC_POOL posts `held` and waits for `go`. */
#define SC_POOL "inboxrace"
int __real_sched_getcpu(void);
int __wrap_sched_getcpu(void);
static struct {
    _Atomic int armed, hold;
    sem_t held, go;
} SC;

int __wrap_sched_getcpu(void)
{
    if (!atomic_load(&SC.armed))
        return __real_sched_getcpu();
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    if (!strncmp(name, SC_POOL "-", sizeof SC_POOL) && atomic_exchange(&SC.hold, 0)) {
        sem_post(&SC.held);
        while (sem_wait(&SC.go) < 0 && errno == EINTR)
            ;
    }
    return 0;
}

/* --- threads ------------------------------------------------------------- */

/* pthread_create() calls made while armed are numbered from 1; policy(n)
 * says which errno call n fails with (0: it goes through). Call block_at
 * first posts `blocked` and waits for `go`. */
static struct {
    _Atomic int armed;
    _Atomic int calls;
    int (*policy)(int n);
    int block_at;
    sem_t blocked, go;
    _Atomic int failed;
} TC;

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    if (atomic_load(&TC.armed)) {
        int n = atomic_fetch_add(&TC.calls, 1) + 1;
        if (n == TC.block_at) {
            sem_post(&TC.blocked);
            while (sem_wait(&TC.go) < 0 && errno == EINTR)
                ;
        }
        int err = TC.policy ? TC.policy(n) : 0;
        if (err) {
            atomic_fetch_add(&TC.failed, 1);
            return err;
        }
    }
    return __real_pthread_create(t, attr, fn, arg);
}

static void tc_arm(int (*policy)(int), int block_at)
{
    atomic_store(&TC.calls, 0);
    atomic_store(&TC.failed, 0);
    TC.policy = policy;
    TC.block_at = block_at;
    sem_init(&TC.blocked, 0, 0);
    sem_init(&TC.go, 0, 0);
    atomic_store(&TC.armed, 1);
}

static void tc_disarm(void)
{
    atomic_store(&TC.armed, 0);
}

/* --- the wake fd --------------------------------------------------------- */

static struct {
    _Atomic int fd_a, fd_b;      /* the port's wake fd(s); -1: none watched */
    _Atomic int write_eintr;     /* fail this many writes with EINTR */
    _Atomic int read_eintr;      /* fail this many reads with EINTR */
    _Atomic int write_eagain;    /* genuine EAGAINs the library's writes met */
    _Atomic int open_errno;      /* eventfd()/pipe2() fail with this */
    _Atomic long injected;
    _Atomic long writes;         /* writes that reached a watched fd */
    _Atomic int writing;         /* writers inside __wrap_write, not yet counted */
} FD = {-1, -1, 0, 0, 0, 0, 0, 0, 0};

static int take_one(_Atomic int *n)
{
    int v = atomic_load(n);
    while (v > 0)
        if (atomic_compare_exchange_weak(n, &v, v - 1))
            return 1;
    return 0;
}

static int watched(int fd)
{
    return fd >= 0 && (fd == atomic_load(&FD.fd_a) || fd == atomic_load(&FD.fd_b));
}

/* Makes the wake fd full: an eventfd's counter at its maximum, or a pipe's
 * buffer, so that the next write genuinely fails with EAGAIN. */
static void fill_wake_fd(void)
{
    int fd = atomic_load(&FD.fd_a);
#ifndef EVEXEC_USE_EVENTFD
    if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_WRONLY)
        fd = atomic_load(&FD.fd_b);
#endif
    atomic_fetch_add(&FD.injected, 1);
#ifdef EVEXEC_USE_EVENTFD
    for (uint64_t v = UINT64_C(0xfffffffffffffffe); v; v >>= 1)
        while (__real_write(fd, &v, sizeof v) == (ssize_t)sizeof v)
            ;
#else
    static const char block[4096];
    while (__real_write(fd, block, sizeof block) > 0)
        ;
    while (__real_write(fd, block, 1) == 1)
        ;
#endif
}

/* Holds the next write to a watched fd before it is made, until let go. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int armed, parked, go;
    _Atomic int ebadf; /* writes that found the fd closed */
} WH = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};

static void write_hold(void)
{
    pthread_mutex_lock(&WH.mu);
    if (WH.armed) {
        WH.armed = 0;
        WH.parked = 1;
        pthread_cond_broadcast(&WH.cv);
        while (!WH.go)
            pthread_cond_wait(&WH.cv, &WH.mu);
        WH.parked = 0;
    }
    pthread_mutex_unlock(&WH.mu);
}

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    if (watched(fd)) {
        write_hold();
        if (take_one(&FD.write_eintr)) {
            atomic_fetch_add(&FD.injected, 1);
            errno = EINTR;
            return -1;
        }
        /* The loop may read this write before it is counted below: a
         * count taken "after every write was read" waits for writing == 0. */
        atomic_fetch_add(&FD.writing, 1);
        ssize_t r = __real_write(fd, buf, n);
        int e = errno;
        if (r < 0 && e == EAGAIN)
            atomic_fetch_add(&FD.write_eagain, 1);
        if (r < 0 && e == EBADF)
            atomic_fetch_add(&WH.ebadf, 1);
        if (r > 0)
            atomic_fetch_add(&FD.writes, 1);
        atomic_fetch_sub(&FD.writing, 1);
        errno = e;
        return r;
    }
    return __real_write(fd, buf, n);
}

ssize_t __wrap_read(int fd, void *buf, size_t n)
{
    if (watched(fd)) {
        if (take_one(&FD.read_eintr)) {
            atomic_fetch_add(&FD.injected, 1);
            errno = EINTR;
            return -1;
        }
    }
    return __real_read(fd, buf, n);
}

#ifdef EVEXEC_USE_EVENTFD
int __real_eventfd(unsigned int initval, int flags);
int __wrap_eventfd(unsigned int initval, int flags);
int __wrap_eventfd(unsigned int initval, int flags)
{
    int e = atomic_load(&FD.open_errno);
    if (e) {
        atomic_fetch_add(&FD.injected, 1);
        errno = e;
        return -1;
    }
    return __real_eventfd(initval, flags);
}
#elif defined(HAVE_PIPE2)
int __real_pipe2(int fds[2], int flags);
int __wrap_pipe2(int fds[2], int flags);
int __wrap_pipe2(int fds[2], int flags)
{
    int e = atomic_load(&FD.open_errno);
    if (e) {
        atomic_fetch_add(&FD.injected, 1);
        errno = e;
        return -1;
    }
    return __real_pipe2(fds, flags);
}
#endif
#if !defined(EVEXEC_USE_EVENTFD) && defined(EVEXEC_HAVE_PROCPOOL)
/* Where ports wake through pipes, the process pool's supervisor still wakes
 * through an eventfd of its own: passed through, not failed (this program
 * injects failures into ports and pools, not process pools). */
int __real_eventfd(unsigned int initval, int flags);
int __wrap_eventfd(unsigned int initval, int flags);
int __wrap_eventfd(unsigned int initval, int flags)
{
    return __real_eventfd(initval, flags);
}
#endif

/* ========================================================================= */
/* Helpers                                                                   */
/* ========================================================================= */

static void nap_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/* Runs the loop without blocking (no timer, hence no allocation) until
 * *counter reaches target: 0, or -1 after secs. */
static int pump_until(struct event_base *b, const int *counter, int target, double secs)
{
    double end = now_s() + secs;
    while (*counter < target) {
        if (now_s() > end)
            return -1;
        event_base_loop(b, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (*counter < target)
            nap_us(100);
    }
    return 0;
}

/* Runs the loop until no event is left on the base (every freed port has
 * released itself): 0, or -1 after secs. */
static int pump_until_empty(struct event_base *b, double secs)
{
    double end = now_s() + secs;
    while (event_base_get_num_events(b, EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE) > 0) {
        if (now_s() > end)
            return -1;
        event_base_loop(b, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        nap_us(100);
    }
    return 0;
}

/* Threads exit a moment after they are joined by the kernel's count. */
static int threads_back_to(int n)
{
    for (int i = 0; i < 2000 && count_threads() != n; i++)
        nap_us(1000);
    return count_threads();
}

/* 1 if fd is a timerfd (a port's gathering timer, not a wake fd). */
static int is_timerfd(int fd)
{
    char path[64], target[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(path, target, sizeof target - 1);
    if (len < 0)
        return 0;
    target[len] = 0;
    return strstr(target, "timerfd") != NULL;
}

/* Watches the wake fd(s) of a port created between two fd_list() calls. */
static void watch_new_fds(const int *before, int nbefore)
{
    int now[256], n = fd_list(now, 256), k = 0;
    int found[2] = {-1, -1};
    for (int i = 0; i < n; i++) {
        int old = 0;
        for (int j = 0; j < nbefore; j++)
            old |= before[j] == now[i];
        if (!old && !is_timerfd(now[i]) && k < 2)
            found[k++] = now[i];
    }
#ifdef EVEXEC_USE_EVENTFD
    ck_assert_int_eq(k, 1);
#else
    ck_assert_int_eq(k, 2);
#endif
    atomic_store(&FD.fd_a, found[0]);
    atomic_store(&FD.fd_b, found[1]);
}

static void unwatch(void)
{
    atomic_store(&FD.fd_a, -1);
    atomic_store(&FD.fd_b, -1);
}

/* Work functions park here while `held`, so that jobs pile up queued. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int held;
} H = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void hold_set(int held)
{
    pthread_mutex_lock(&H.mu);
    H.held = held;
    pthread_cond_broadcast(&H.cv);
    pthread_mutex_unlock(&H.mu);
}

static void *hold_work(evexec_job *job, void *arg)
{
    (void)job;
    pthread_mutex_lock(&H.mu);
    while (H.held)
        pthread_cond_wait(&H.cv, &H.mu);
    pthread_mutex_unlock(&H.mu);
    return arg;
}

/* One submission: its fate, as the test saw it. */
struct rec {
    evexec_job_id id;
    int rc;          /* of evexec_submit(); 1: never submitted */
    int cancel_rc;   /* of evexec_cancel(), if tried; 1 if not */
    int calls, status, wrong_thread, bad_result;
    pthread_t loop;  /* where its callback must run */
    int *counter;    /* callbacks of its loop */
};

static void rec_init(struct rec *r, int *counter)
{
    memset(r, 0, sizeof *r);
    r->cancel_rc = 1;
    r->loop = pthread_self();
    r->counter = counter;
}

static void rec_done(int status, void *result, void *arg)
{
    struct rec *r = arg;
    r->calls++;
    r->status = status;
    if (!pthread_equal(pthread_self(), r->loop))
        r->wrong_thread = 1;
    if (status == 0 && result != arg)
        r->bad_result = 1;
    (*r->counter)++;
}

/* Checks every record: exactly one callback per accepted job, with a status
 * its cancel explains; none for a rejected one, whose error must be one of
 * `allowed` (0-terminated). Returns the number of violations and describes
 * the first in msg. */
static int check_recs(const struct rec *r, int n, const int *allowed, char *msg, size_t len)
{
    int bad = 0;
    msg[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *why = NULL;
        if (r[i].rc == 1) {
            if (r[i].calls)
                why = "never submitted, yet called back";
        } else if (r[i].rc == 0) {
            if (r[i].calls == 0)
                why = "accepted, no callback (lost)";
            else if (r[i].calls > 1)
                why = "more than one callback";
            else if (r[i].wrong_thread)
                why = "callback off the loop thread";
            else if (r[i].bad_result)
                why = "wrong result";
            else if (r[i].status != 0 && r[i].status != -ECANCELED)
                why = "bad status";
            else if (r[i].cancel_rc == 0 && r[i].status != -ECANCELED)
                why = "cancel returned 0 but the job ran";
            else if (r[i].cancel_rc == -EBUSY && r[i].status != 0)
                why = "cancel said -EBUSY but the job was cancelled";
        } else {
            int ok = 0;
            for (const int *a = allowed; *a; a++)
                ok |= r[i].rc == *a;
            if (r[i].calls)
                why = "rejected, yet called back";
            else if (!ok)
                why = "rejected with an unexpected error";
        }
        if (why && bad++ == 0)
            snprintf(msg, len, "job %d: %s (submit %s, cancel %s, calls %d, status %s)", i, why,
                     evexec_errname(r[i].rc), r[i].cancel_rc == 1 ? "-" : evexec_errname(r[i].cancel_rc),
                     r[i].calls, evexec_errname(r[i].status));
    }
    return bad;
}

/* ========================================================================= */
/* alloc: every allocation site fails                                        */
/* ========================================================================= */

#define SC_JOBS 1500 /* more than one 64 KiB chunk of 56-byte jobs */
#define SC_EXTRA 100
#define SC_N (SC_JOBS + SC_EXTRA)

struct outcome {
    long allocs, failed;
    int kind;
    const char *op;
    int rc_pool, rc_port;
    int accepted, rejected, delivered;
    int stalled_delivery, stalled_release, fd_delta;
    int violations;
    char first[200];
};

static struct rec sc[SC_N];

static int callbacks;

static void sc_submit(evexec_port *port, evexec_pool *pool, int i, struct outcome *o)
{
    rec_init(&sc[i], &callbacks);
    sc[i].rc = evexec_submit(port, pool, hold_work, rec_done, &sc[i], &sc[i].id);
    if (sc[i].rc == 0)
        o->accepted++;
    else
        o->rejected++;
}

static void scenario(long fail_at, int sustained, struct outcome *o)
{
    static const int allowed[] = {-ENOMEM, 0};
    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    struct evexec_port_opts pto = EVEXEC_PORT_OPTS_INIT;
    evexec_pool *pool = NULL;
    evexec_port *port = NULL;

    memset(o, 0, sizeof *o);
    memset(sc, 0, sizeof sc);
    for (int i = 0; i < SC_N; i++)
        sc[i].rc = 1;
    callbacks = 0;
    int fds0 = count_fds();
    struct event_base *b = event_base_new();
    ck_assert_ptr_nonnull(b);
    po.max_threads = 3;
    po.min_threads = 1;
    po.idle_timeout_ms = EVEXEC_IDLE_FOREVER;
    pto.max_batch = 64; /* so that delivery goes on from the resume timer */

    hold_set(1);
    af_arm(fail_at, sustained);
    current_op = "evexec_pool_new";
    o->rc_pool = evexec_pool_new(&pool, &po);
    if (o->rc_pool == 0) {
        current_op = "evexec_port_new";
        o->rc_port = evexec_port_new(&port, b, &pto);
    }
    if (port) {
        current_op = "evexec_submit";
        for (int i = 0; i < SC_JOBS; i++)
            sc_submit(port, pool, i, o);
        current_op = "evexec_cancel";
        for (int i = 0; i < SC_JOBS; i += 7)
            if (sc[i].rc == 0)
                sc[i].cancel_rc = evexec_cancel(port, sc[i].id);
        hold_set(0);
        current_op = "delivery";
        if (pump_until(b, &callbacks, o->accepted, 3.0) < 0)
            o->stalled_delivery = 1;
        current_op = "evexec_submit (recycled jobs)";
        for (int i = SC_JOBS; i < SC_N && !o->stalled_delivery; i++)
            sc_submit(port, pool, i, o);
        current_op = "delivery";
        if (!o->stalled_delivery && pump_until(b, &callbacks, o->accepted, 3.0) < 0)
            o->stalled_delivery = 1;
    }
    hold_set(0);
    current_op = "evexec_pool_free";
    int rc_free = evexec_pool_free(pool);
    current_op = "evexec_port_free";
    int rc_pfree = evexec_port_free(port);
    current_op = "release";
    if (pump_until_empty(b, 3.0) < 0)
        o->stalled_release = 1;
    af_disarm();
    current_op = "";

    o->allocs = atomic_load(&AF.seen);
    o->failed = atomic_load(&AF.failed);
    o->kind = AF.first_kind;
    o->op = AF.first_op;
    o->delivered = callbacks;
    event_base_free(b);
    o->fd_delta = count_fds() - fds0;
    o->violations = check_recs(sc, SC_N, allowed, o->first, sizeof o->first);
    if (o->rc_pool != 0 && o->rc_pool != -ENOMEM && o->violations++ == 0)
        snprintf(o->first, sizeof o->first, "evexec_pool_new: %s", evexec_errname(o->rc_pool));
    if (o->rc_port != 0 && o->rc_port != -ENOMEM && o->violations++ == 0)
        snprintf(o->first, sizeof o->first, "evexec_port_new: %s", evexec_errname(o->rc_port));
    if ((rc_free || rc_pfree) && o->violations++ == 0)
        snprintf(o->first, sizeof o->first, "free: pool %s port %s", evexec_errname(rc_free),
                 evexec_errname(rc_pfree));
}

static void sweep(int sustained)
{
    const char *mode = sustained ? "from the Nth on" : "the Nth only";
    int kinds = 0, runs = 0, bad_runs = 0, stalls = 0;
    long injected = 0;
    char first_bad[400] = "";
    struct outcome o;

    for (long n = 1;; n++) {
        ck_assert_msg(n < 5000, "the scenario never ran without a failure");
        scenario(n, sustained, &o);
        runs++;
        injected += o.failed;
        if (o.failed == 0) {
            /* The clean run: everything accepted, delivered and released. */
            printf("check_faults: alloc (%s): N=%ld: no failure left (%ld allocations): "
                   "accepted %d, delivered %d\n",
                   mode, n, o.allocs, o.accepted, o.delivered);
            ck_assert_int_eq(o.accepted, SC_N);
            ck_assert_int_eq(o.delivered, SC_N);
            ck_assert_int_eq(o.violations, 0);
            ck_assert_int_eq(o.stalled_release, 0);
            ck_assert_int_eq(o.fd_delta, 0);
            break;
        }
        kinds |= 1 << o.kind;
        int bad = o.violations || o.stalled_delivery || o.stalled_release || o.fd_delta;
        stalls += o.stalled_delivery || o.stalled_release;
        printf("check_faults: alloc (%s): N=%ld: %s in %s -> pool_new %s, port_new %s; "
               "accepted %d rejected %d delivered %d%s%s%s%s%s\n",
               mode, n, akind_name[o.kind], o.op ? o.op : "?", evexec_errname(o.rc_pool),
               evexec_errname(o.rc_port), o.accepted, o.rejected, o.delivered,
               o.stalled_delivery ? "; DELIVERY STALLED" : "",
               o.stalled_release ? "; PORT NEVER RELEASED" : "", o.fd_delta ? "; FDS LEAKED" : "",
               o.violations ? "; " : "", o.violations ? o.first : "");
        if (bad && bad_runs++ == 0)
            snprintf(first_bad, sizeof first_bad,
                     "N=%ld (%s in %s): stalled delivery %d, port not released %d, fds %+d, "
                     "%d violations: %s",
                     n, akind_name[o.kind], o.op ? o.op : "?", o.stalled_delivery,
                     o.stalled_release, o.fd_delta, o.violations, o.first);
    }
    printf("check_faults: alloc (%s): %d runs, faults injected: %ld, failing runs %d "
           "(%d stalled)\n",
           mode, runs, injected, bad_runs, stalls);
    fflush(stdout);
    /* The wrappers must have seen every kind of allocation the library
     * makes, or this sweep proves nothing. */
    ck_assert_msg(kinds & (1 << A_CALLOC), "no calloc failed");
    ck_assert_msg(kinds & (1 << A_REALLOC), "no realloc failed");
    ck_assert_msg(kinds & (1 << A_MEMALIGN), "no posix_memalign failed");
    ck_assert_msg(kinds & (1 << A_MMAP), "no mmap failed");
    ck_assert_msg(kinds & (1 << A_EV_MALLOC), "no libevent allocation failed");
    ck_assert_msg(bad_runs == 0, "%d of %d runs went wrong; first: %s", bad_runs, runs, first_bad);
}

START_TEST(every_allocation_fails_once)
{
    sweep(0);
}
END_TEST

START_TEST(every_allocation_from_the_nth_on_fails)
{
    sweep(1);
}
END_TEST

/* ========================================================================= */
/* threads                                                                   */
/* ========================================================================= */

static int fail_call_k_k;
static int fail_call_k(int n)
{
    return n == fail_call_k_k ? EAGAIN : 0;
}
static int fail_all(int n)
{
    (void)n;
    return EAGAIN;
}
static int fail_all_eperm(int n)
{
    (void)n;
    return EPERM;
}
static int fail_all_but_first(int n)
{
    return n == 1 ? 0 : EAGAIN;
}

/* Records its thread id, so that the caller can wait for it to go. */
static void *warm_up(void *arg)
{
    *(pid_t *)arg = (pid_t)syscall(SYS_gettid);
    return arg;
}

/* A joined thread can stay listed in /proc/self/task a moment longer:
 * waits (2 s at most) until tid is gone. */
static void wait_task_gone(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d", (int)tid);
    for (int i = 0; i < 2000 && access(path, F_OK) == 0; i++)
        nap_us(1000);
    ck_assert_msg(access(path, F_OK) != 0, "thread %d still listed 2 s after its join", (int)tid);
}

START_TEST(pool_new_fails_cleanly_when_a_min_thread_cannot_start)
{
    /* A thread first, so that helper threads a runtime starts lazily (the
     * ThreadSanitizer's) are counted in threads0. */
    pthread_t warm;
    pid_t warm_tid = 0;
    ck_assert_int_eq(__real_pthread_create(&warm, NULL, warm_up, &warm_tid), 0);
    pthread_join(warm, NULL);
    wait_task_gone(warm_tid);
    int threads0 = count_threads(), fds0 = count_fds();
    long injected = 0;
    for (int k = 1; k <= 3; k++) {
        struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
        evexec_pool *pool = (evexec_pool *)0x1;
        o.max_threads = 4;
        o.min_threads = 3;
        fail_call_k_k = k;
        tc_arm(fail_call_k, 0);
        int rc = evexec_pool_new(&pool, &o);
        tc_disarm();
        int failed = atomic_load(&TC.failed), calls = atomic_load(&TC.calls);
        injected += failed;
        ck_assert_int_eq(failed, 1);
        ck_assert_int_eq(calls, k);
        ck_assert_int_eq(rc, -EAGAIN);
        ck_assert_ptr_eq(pool, (evexec_pool *)0x1);
        /* The threads that did start were stopped and joined. */
        ck_assert_int_eq(threads_back_to(threads0), threads0);
    }
    ck_assert_int_eq(count_fds(), fds0);
    printf("check_faults: min_threads: faults injected: %ld\n", injected);
}
END_TEST

START_TEST(no_thread_can_start_submit_fails_then_recovers)
{
    struct event_base *b = event_base_new();
    evexec_port *port;
    evexec_pool *pool;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct tally t;
    evexec_job_id id = 7;
    long injected = 0;

    tally_init(&t);
    o.max_threads = 2;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    ck_assert_int_eq(evexec_port_new(&port, b, NULL), 0);

    /* pthread_create() says EAGAIN, then EPERM: both are -EAGAIN to the
     * caller, who gets no callback. */
    tc_arm(fail_all, 0);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &t, &id), -EAGAIN);
    tc_disarm();
    injected += atomic_load(&TC.failed);
    tc_arm(fail_all_eperm, 0);
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &t, &id), -EAGAIN);
    tc_disarm();
    injected += atomic_load(&TC.failed);
    ck_assert_uint_eq(id, 7);
    run_nonblock(b, 3);
    ck_assert_int_eq(t.calls, 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.threads, 0);
    ck_assert_uint_eq(s.queued, 0);
    ck_assert_uint_eq(s.submitted, 0);
    ck_assert_uint_eq(s.rejected, 2);
    ck_assert_uint_eq(port_stats(port).outstanding, 0);

    /* Threads can start again: the pool works. */
    ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &t, &id), 0);
    run_until(b, &t.calls, 1);
    ck_assert_int_eq(t.ok, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(evexec_port_free(port), 0);
    event_base_dispatch(b);
    event_base_free(b);
    printf("check_faults: no thread: faults injected: %ld\n", injected);
}
END_TEST

START_TEST(only_one_thread_starts_every_job_still_runs)
{
    enum { N = 200 };
    static struct rec r[N];
    static const int none[] = {0};
    struct event_base *b = event_base_new();
    evexec_port *port;
    evexec_pool *pool;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    char msg[200];

    int calls = 0;
    o.max_threads = 4;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    ck_assert_int_eq(evexec_port_new(&port, b, NULL), 0);

    hold_set(1);
    tc_arm(fail_all_but_first, 0);
    for (int i = 0; i < N; i++) {
        rec_init(&r[i], &calls);
        r[i].rc = evexec_submit(port, pool, hold_work, rec_done, &r[i], &r[i].id);
    }
    tc_disarm();
    long injected = atomic_load(&TC.failed);
    hold_set(0);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(r[i].rc, 0); /* one thread exists: the queue is served */
    ck_assert_int_gt(injected, 0);
    run_until(b, &calls, N);
    ck_assert_int_eq(check_recs(r, N, none, msg, sizeof msg), 0);
    struct evexec_pool_stats s = pool_stats(pool);
    ck_assert_uint_eq(s.threads_started, 1);
    ck_assert_uint_eq(s.completed, N);

    /* With thread creation back, the pool grows again. */
    struct gate g;
    struct tally t;
    tally_init(&t);
    gate_init(&g, &t);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 3);
    ck_assert_uint_ge(pool_stats(pool).threads, 3);
    gate_release(&g, 3);
    run_until(b, &t.calls, 3);
    gate_destroy(&g);

    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(evexec_port_free(port), 0);
    event_base_dispatch(b);
    event_base_free(b);
    printf("check_faults: one thread: faults injected: %ld\n", injected);
}
END_TEST

/* Two loop threads submit to one empty pool at once. The racer's thread
 * start is still in flight (held in pthread_create(), and then failing)
 * when the main loop submits: with max_threads 2 the main loop's own start
 * fails at once; with max_threads 1 it cannot start one. Whatever each
 * submit answers, an accepted job must run and be delivered, and a refused
 * one must say -EAGAIN. The racer's start is let go (to fail) as soon as
 * the main submit has returned, or after 300 ms if that submit waits for
 * the outcome of the start in flight (a correct answer too). */
struct racer {
    evexec_pool *pool;
    struct rec r;
    int calls;
    sem_t submitted;
    int delivered_in_time;
};

static int fail_first_two(int n)
{
    return n <= 2 ? EAGAIN : 0;
}

static void *racer_main(void *arg)
{
    struct racer *x = arg;
    struct event_base *b = event_base_new();
    evexec_port *port = NULL;

    if (!b || evexec_port_new(&port, b, NULL) < 0)
        abort();
    rec_init(&x->r, &x->calls);
    /* Held in pthread_create() until the main loop has submitted. */
    x->r.rc = evexec_submit(port, x->pool, echo_work, rec_done, &x->r, &x->r.id);
    sem_post(&x->submitted);
    x->delivered_in_time = x->r.rc != 0 || pump_until(b, &x->calls, 1, 3.0) == 0;
    evexec_port_free(port);
    pump_until_empty(b, 3.0);
    event_base_free(b);
    return NULL;
}

static sem_t main_submitted;

static void *releaser_main(void *arg)
{
    struct timespec ts;
    (void)arg;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 300 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (sem_timedwait(&main_submitted, &ts) < 0 && errno == EINTR)
        ;
    sem_post(&TC.go);
    return NULL;
}

START_TEST(two_loops_race_a_failing_thread_start)
{
    static const int eagain[] = {-EAGAIN, 0};
    unsigned max_threads = (unsigned)_i;
    struct event_base *b = event_base_new();
    evexec_port *port;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct racer x;
    struct rec r;
    int calls = 0;
    pthread_t th, rel;
    char msg[200];

    memset(&x, 0, sizeof x);
    sem_init(&x.submitted, 0, 0);
    sem_init(&main_submitted, 0, 0);
    o.max_threads = max_threads;
    o.idle_timeout_ms = EVEXEC_IDLE_FOREVER;
    ck_assert_int_eq(evexec_pool_new(&x.pool, &o), 0);
    ck_assert_int_eq(evexec_port_new(&port, b, NULL), 0);

    tc_arm(fail_first_two, 1);
    ck_assert_int_eq(__real_pthread_create(&th, NULL, racer_main, &x), 0);
    while (sem_wait(&TC.blocked) < 0 && errno == EINTR)
        ; /* the racer's job is queued, its thread start in flight */
    ck_assert_int_eq(__real_pthread_create(&rel, NULL, releaser_main, NULL), 0);
    rec_init(&r, &calls);
    r.rc = evexec_submit(port, x.pool, echo_work, rec_done, &r, &r.id);
    sem_post(&main_submitted);
    while (sem_wait(&x.submitted) < 0 && errno == EINTR)
        ;
    pthread_join(rel, NULL);
    tc_disarm(); /* from now on threads start again */
    int injected = atomic_load(&TC.failed);
    printf("check_faults: thread-start race, max_threads %u: main submit %s, racer submit %s; "
           "faults injected: %d\n",
           max_threads, evexec_errname(r.rc), evexec_errname(x.r.rc), injected);
    fflush(stdout);
    ck_assert_int_eq(injected, max_threads == 1 ? 1 : 2);

    int in_time = r.rc != 0 || pump_until(b, &calls, 1, 3.0) == 0;
    pthread_join(th, NULL);
    ck_assert_msg(in_time, "main loop's job was accepted (submit returned 0) but never ran: "
                           "no thread left to run it");
    ck_assert_msg(x.delivered_in_time, "racer's job was accepted but never ran");
    ck_assert_int_eq(check_recs(&r, 1, eagain, msg, sizeof msg), 0);
    ck_assert_int_eq(check_recs(&x.r, 1, eagain, msg, sizeof msg), 0);

    ck_assert_int_eq(evexec_pool_free(x.pool), 0);
    ck_assert_int_eq(evexec_port_free(port), 0);
    ck_assert_int_eq(pump_until_empty(b, 3.0), 0);
    event_base_free(b);
    sem_destroy(&x.submitted);
    sem_destroy(&main_submitted);
}
END_TEST

/* ========================================================================= */
/* wakefd: EINTR, EAGAIN, a full wake fd                                     */
/* ========================================================================= */

struct wake_env {
    struct event_base *b;
    evexec_port *port;
    evexec_pool *pool;
    int fds0;
};

static void wake_env_new_batch(struct wake_env *w, unsigned max_batch)
{
    int before[256], n;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct evexec_port_opts po = EVEXEC_PORT_OPTS_INIT;
    w->fds0 = count_fds();
    w->b = event_base_new();
    ck_assert_ptr_nonnull(w->b);
    o.max_threads = 2;
    ck_assert_int_eq(evexec_pool_new(&w->pool, &o), 0);
    n = fd_list(before, 256);
    po.max_batch = max_batch;
    ck_assert_int_eq(evexec_port_new(&w->port, w->b, &po), 0);
    watch_new_fds(before, n);
    atomic_store(&FD.injected, 0);
    atomic_store(&FD.write_eagain, 0);
}

static void wake_env_new(struct wake_env *w)
{
    wake_env_new_batch(w, 0);
}

/* Runs n jobs one after the other, each delivered before the next. */
static void one_by_one(struct wake_env *w, int n)
{
    for (int i = 0; i < n; i++) {
        struct tally t;
        tally_init(&t);
        ck_assert_int_eq(evexec_submit(w->port, w->pool, echo_work, tally_done, &t, NULL), 0);
        run_until(w->b, &t.calls, 1);
        ck_assert_int_eq(t.ok, 1);
    }
}

/* Frees everything; the port, with one job still outstanding, must still
 * deliver it and then release itself. */
static void wake_env_free(struct wake_env *w)
{
    struct tally t;
    tally_init(&t);
    hold_set(1);
    ck_assert_int_eq(evexec_submit(w->port, w->pool, hold_work, tally_done, &t, NULL), 0);
    ck_assert_int_eq(evexec_port_free(w->port), 0);
    hold_set(0);
    int rc = pump_until_empty(w->b, 3.0);
    unwatch();
    ck_assert_int_eq(t.calls, 1);
    ck_assert_msg(rc == 0, "the freed port never released itself (its event stays on the base)");
    ck_assert_int_eq(evexec_pool_free(w->pool), 0);
    event_base_free(w->b);
    ck_assert_int_eq(count_fds(), w->fds0);
}

/* Posters write the wake fd; the loop reads it on wake-ups, or (with an
 * edge-triggered eventfd) only to settle its accounts, at the latest when a
 * freed port releases itself. Each EINTR must be retried wherever it hits. */
START_TEST(eintr_on_the_wake_fd_is_retried)
{
    struct wake_env w;
    struct tally t;
    wake_env_new(&w);
    atomic_store(&FD.write_eintr, 3);
    atomic_store(&FD.read_eintr, 2);
    one_by_one(&w, 1);
    int left_w = atomic_load(&FD.write_eintr);
    ck_assert_int_eq(left_w, 0);
    /* Again, with a burst. */
    atomic_store(&FD.write_eintr, 1);
    tally_init(&t);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(evexec_submit(w.port, w.pool, echo_work, tally_done, &t, NULL), 0);
    run_until(w.b, &t.calls, 100);
    ck_assert_int_eq(t.ok, 100);
    wake_env_free(&w); /* the port must release itself: every read done */
    int left_r = atomic_load(&FD.read_eintr);
    long injected = atomic_load(&FD.injected);
    printf("check_faults: EINTR: faults injected: %ld\n", injected);
    ck_assert_int_eq(left_r, 0);
    ck_assert_int_eq(injected, 6);
}
END_TEST

/* A worker's write meets a real EAGAIN: the wake fd is full (an eventfd's
 * counter at 2^64-2, or a pipe's buffer). The fd is readable, so the job
 * must be delivered; the port must then go on working and, once freed,
 * release itself. The loop does not run between the filling and the write,
 * so it cannot empty the fd first. */
static int write_met_eagain(void *arg)
{
    (void)arg;
    return atomic_load(&FD.write_eagain) >= 1;
}

START_TEST(a_full_wake_fd_loses_nothing)
{
    struct wake_env w;
    struct tally t;
    wake_env_new(&w);
    tally_init(&t);
    fill_wake_fd();
    ck_assert_int_eq(evexec_submit(w.port, w.pool, echo_work, tally_done, &t, NULL), 0);
    wait_for(write_met_eagain, NULL);
    run_until(w.b, &t.calls, 1);
    ck_assert_int_eq(t.ok, 1);
    one_by_one(&w, 3);
    long injected = atomic_load(&FD.injected);
    int eagain = atomic_load(&FD.write_eagain);
    printf("check_faults: full wake fd: %d genuine EAGAIN; faults injected: %ld\n", eagain,
           injected);
    fflush(stdout);
    ck_assert_int_eq(eagain, 1);
    wake_env_free(&w);
}
END_TEST

/* Runs (mailbox.c): a job that finishes while the port delivers is taken
 * without the wake fd. Job A's done callback lets job B go and returns only
 * once B's completion is on the port's list, posted during the run: the
 * worker must not write the wake fd for it. With max_batch 1 the run ends
 * right after A's callback, and B, taken by the run's end, must still be
 * delivered (after the loop's other events), with no write either. */
struct run_probe {
    struct wake_env *w;
    struct tally *b;
    long writes_before; /* watched-fd writes before A was submitted */
    long writes_at_a;   /* ...once A's own write had landed */
    int posted;         /* B's completion was on the list before A returned */
};

/* A's completion, posted with the loop outside a run, writes once; its
 * worker may still be on its way to that write when the loop, awake for
 * another reason, delivers A. */
static int a_has_written(void *arg)
{
    const struct run_probe *p = arg;
    return atomic_load(&FD.writes) > p->writes_before;
}

static int port_list_nonempty(void *arg)
{
    evexec_port *port = arg;
    return evexec__mailbox_posted(&port->mb);
}

static void a_done_lets_b_finish(int status, void *result, void *arg)
{
    struct run_probe *p = arg;
    (void)result;
    ck_assert_int_eq(status, 0);
    wait_for(a_has_written, p);
    p->writes_at_a = atomic_load(&FD.writes);
    hold_set(0);
    wait_for(port_list_nonempty, p->w->port);
    p->posted = 1;
}

static void wait_settled(struct wake_env *w)
{
    double deadline = now_s() + 10;
    while (!evexec__mailbox_quiet(&w->port->mb) || atomic_load(&FD.writing) > 0) {
        ck_assert_msg(now_s() < deadline, "a wake-fd write owed was never read");
        event_base_loop(w->b, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static void completion_during_a_run(unsigned max_batch)
{
    struct wake_env w;
    struct tally tb;
    struct run_probe p = {&w, &tb, 0, 0, 0};
    wake_env_new_batch(&w, max_batch);
    one_by_one(&w, 2); /* both threads started */
    /* The worker of the last of those may still be on its way to its write
     * (the loop can deliver a job first), or past it but yet to count it:
     * wait until every write owed has been read and counted, so that the
     * count below starts from a settled fd. */
    wait_settled(&w);
    tally_init(&tb);
    hold_set(1);
    ck_assert_int_eq(evexec_submit(w.port, w.pool, hold_work, tally_done, &tb, NULL), 0);
    p.writes_before = atomic_load(&FD.writes);
    ck_assert_int_eq(evexec_submit(w.port, w.pool, echo_work, a_done_lets_b_finish, &p, NULL), 0);
    run_until(w.b, &tb.calls, 1);
    long writes = atomic_load(&FD.writes);
    printf("check_faults: runs, max_batch %u: %ld wake-fd writes for B (0 expected)\n", max_batch,
           writes - p.writes_at_a);
    fflush(stdout);
    ck_assert_msg(p.posted, "B's completion never reached the port's list");
    ck_assert_int_eq(p.writes_at_a, p.writes_before + 1);
    ck_assert_int_eq(tb.ok, 1);
    ck_assert_msg(writes == p.writes_at_a,
                  "a completion posted during a run wrote the wake fd (%ld writes)",
                  writes - p.writes_at_a);
    one_by_one(&w, 2); /* and the port still wakes up for later ones */
    wake_env_free(&w);
}

START_TEST(a_completion_during_a_run_costs_no_write)
{
    completion_during_a_run(0);
}
END_TEST

START_TEST(a_completion_the_run_ends_on_is_delivered)
{
    completion_during_a_run(1);
}
END_TEST

/* Runs and release: a run that a zero timer resumes (not the wake fd) reads
 * nothing, and may take a node whose poster has yet to write. Three jobs
 * come home in one list; with max_batch 2 the woken run delivers two and
 * the third waits for the resume. That callback lets job J finish, whose
 * worker pushes onto the empty list (no run: it owes a write) and is held
 * before its write. The resumed run then takes J without reading, and J's
 * callback frees the port: the port must not release itself (close its
 * wake fd, free the mailbox) until that write has come and been read. */
struct owed_probe {
    struct wake_env *w;
    int x_calls, j_calls;
};

static int write_parked(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&WH.mu);
    int parked = WH.parked;
    pthread_mutex_unlock(&WH.mu);
    return parked;
}

static void x_done(int status, void *result, void *arg)
{
    struct owed_probe *p = arg;
    (void)result;
    ck_assert_int_eq(status, 0);
    if (++p->x_calls == 3) { /* the resumed run, before its first take */
        hold_set(0);
        wait_for(write_parked, NULL);
    }
}

static void j_done(int status, void *result, void *arg)
{
    struct owed_probe *p = arg;
    (void)result;
    ck_assert_int_eq(status, 0);
    p->j_calls++;
    ck_assert_int_eq(evexec_port_free(p->w->port), 0);
}

/* The held write has been made (or found the fd closed). */
static int held_write_made(void *arg)
{
    const long *writes_before = arg;
    return atomic_load(&FD.writes) > *writes_before || atomic_load(&WH.ebadf) > 0;
}

struct x_home {
    evexec_pool *pool;
    uint64_t completed;
};

/* The jobs ahead of J all ran and their worker, idle, has posted them. */
static int xs_home(void *arg)
{
    const struct x_home *h = arg;
    struct evexec_pool_stats s = pool_stats(h->pool);
    return s.completed >= h->completed && s.idle >= 1;
}

START_TEST(a_write_owed_to_a_resumed_run_keeps_a_freed_port)
{
    struct wake_env w;
    struct owed_probe p = {&w, 0, 0};
    wake_env_new_batch(&w, 2);
    one_by_one(&w, 2);
    wait_settled(&w); /* `writes` below must not count a late write of these */
    struct x_home h = {w.pool, pool_stats(w.pool).completed + 3};
    hold_set(1);
    ck_assert_int_eq(evexec_submit(w.port, w.pool, hold_work, j_done, &p, NULL), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(w.port, w.pool, echo_work, x_done, &p, NULL), 0);
    wait_for(xs_home, &h);
    pthread_mutex_lock(&WH.mu);
    WH.armed = 1;
    WH.go = 0;
    pthread_mutex_unlock(&WH.mu);
    atomic_store(&WH.ebadf, 0);
    long writes = atomic_load(&FD.writes);
    run_until(w.b, &p.j_calls, 1);
    ck_assert_int_eq(p.x_calls, 3);
    /* J is delivered and the port freed; J's worker has not written yet. */
    int alive = fcntl(atomic_load(&FD.fd_a), F_GETFD) != -1;
    pthread_mutex_lock(&WH.mu);
    WH.go = 1;
    pthread_cond_broadcast(&WH.cv);
    pthread_mutex_unlock(&WH.mu);
    wait_for(held_write_made, &writes);
    int rc = pump_until_empty(w.b, 3.0);
    int still_open = fcntl(atomic_load(&FD.fd_a), F_GETFD) != -1;
    unwatch();
    ck_assert_msg(alive, "the freed port released itself with a wake-fd write still owed");
    ck_assert_int_eq(atomic_load(&WH.ebadf), 0);
    ck_assert_msg(rc == 0 && !still_open, "the freed port never released itself");
    ck_assert_int_eq(evexec_pool_free(w.pool), 0);
    event_base_free(w.b);
    ck_assert_int_eq(count_fds(), w.fds0);
}
END_TEST

/* ========================================================================= */
/* fds                                                                       */
/* ========================================================================= */

START_TEST(wake_fd_creation_failure_is_reported)
{
    static const int errs[] = {EMFILE, ENFILE, ENOMEM};
    struct event_base *b = event_base_new();
    int fds0 = count_fds();
    long injected = 0;
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        evexec_port *port = (evexec_port *)0x1;
        atomic_store(&FD.injected, 0);
        atomic_store(&FD.open_errno, errs[i]);
        int rc = evexec_port_new(&port, b, NULL);
        atomic_store(&FD.open_errno, 0);
        long n = atomic_load(&FD.injected);
        injected += n;
        ck_assert_int_eq(n, 1);
        ck_assert_int_eq(rc, -errs[i]);
        ck_assert_ptr_eq(port, (evexec_port *)0x1);
        ck_assert_int_eq(count_fds(), fds0);
        ck_assert_int_eq(event_base_get_num_events(b, EVENT_BASE_COUNT_ADDED), 0);
    }
    event_base_free(b);
    printf("check_faults: wake fd creation: faults injected: %ld\n", injected);
}
END_TEST

START_TEST(running_out_of_fds_is_emfile)
{
    enum { MAX = 64 };
    int fds0 = count_fds();
    struct event_base *b = event_base_new();
    evexec_port *ports[MAX];
    struct rlimit old, lim;
    int n = 0, rc = 0;

    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    /* Room for a few ports, whatever the wake fd is. */
    lim = old;
    lim.rlim_cur = (rlim_t)count_fds() + 7;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    while (n < MAX && (rc = evexec_port_new(&ports[n], b, NULL)) == 0)
        n++;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    printf("check_faults: RLIMIT_NOFILE: %d ports, then %s\n", n, evexec_errname(rc));
    ck_assert_int_ge(n, 1);
    ck_assert_int_lt(n, MAX);
    ck_assert_int_eq(rc, -EMFILE);

    /* The ports made still work, and all go. */
    evexec_pool *pool;
    struct tally t;
    tally_init(&t);
    ck_assert_int_eq(evexec_pool_new(&pool, NULL), 0);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(evexec_submit(ports[i], pool, echo_work, tally_done, &t, NULL), 0);
    run_until(b, &t.calls, n);
    ck_assert_int_eq(t.ok, n);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(evexec_port_free(ports[i]), 0);
    event_base_dispatch(b);
    event_base_free(b);
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* ========================================================================= */

/* ========================================================================= */
/* inbox: a push while a worker goes idle                                    */
/* ========================================================================= */

static void *plus_one_work(evexec_job *job, void *arg)
{
    (void)job;
    return (void *)((uintptr_t)arg + 1);
}

/* The worker has found the queue and the inbox empty and is held before it
 * counts itself idle; a submit then pushes on the inbox, sees no idle
 * worker and none searching, and wakes nobody. Let go, the worker must look
 * at the inbox once more before it sleeps: else the call waits for ever. */
START_TEST(a_push_while_a_worker_goes_idle_is_not_stranded)
{
    evexec_pool *pool = new_named_pool(1, 1, 0, SC_POOL);
    evexec_future *f1, *f2;
    void *r;
    wait_idle(pool, 1);
    sem_init(&SC.held, 0, 0);
    sem_init(&SC.go, 0, 0);
    atomic_store(&SC.hold, 0);
    atomic_store(&SC.armed, 1);
    /* The first call wakes the parked worker; the hold waits for its next
     * sched_getcpu(), as it goes idle after the job. */
    atomic_store(&SC.hold, 1);
    ck_assert_int_eq(evexec_pool_call(pool, plus_one_work, (void *)1, &f1), 0);
    ck_assert_int_eq(evexec_future_wait(f1, 10000), 0);
    while (sem_wait(&SC.held) < 0 && errno == EINTR)
        ;
    ck_assert_int_eq(evexec_pool_call(pool, plus_one_work, (void *)2, &f2), 0);
    sem_post(&SC.go);
    int rc = evexec_future_wait(f2, 5000);
    atomic_store(&SC.armed, 0);
    ck_assert_msg(rc == 0, "the call pushed while the worker went idle never ran (%d)", rc);
    ck_assert_int_eq(evexec_future_result(f2, &r), 0);
    ck_assert_ptr_eq(r, (void *)3);
    evexec_future_free(f1);
    evexec_future_free(f2);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    sem_destroy(&SC.held);
    sem_destroy(&SC.go);
}
END_TEST

static Suite *faults_suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = add_tcase(s, "alloc", 600, FX_FDS);
    tcase_add_test(tc, every_allocation_fails_once);
    tcase_add_test(tc, every_allocation_from_the_nth_on_fails);

    tc = add_tcase(s, "threads", 60, FX_FDS);
    tcase_add_test(tc, pool_new_fails_cleanly_when_a_min_thread_cannot_start);
    tcase_add_test(tc, no_thread_can_start_submit_fails_then_recovers);
    tcase_add_test(tc, only_one_thread_starts_every_job_still_runs);
    tcase_add_loop_test(tc, two_loops_race_a_failing_thread_start, 1, 3);

    tc = add_tcase(s, "wakefd", 60, FX_FDS);
    tcase_add_test(tc, eintr_on_the_wake_fd_is_retried);
    tcase_add_test(tc, a_full_wake_fd_loses_nothing);
    tcase_add_test(tc, a_completion_during_a_run_costs_no_write);
    tcase_add_test(tc, a_completion_the_run_ends_on_is_delivered);
    tcase_add_test(tc, a_write_owed_to_a_resumed_run_keeps_a_freed_port);

    tc = add_tcase(s, "inbox", 60, FX_FDS);
    tcase_add_test(tc, a_push_while_a_worker_goes_idle_is_not_stranded);

    tc = add_tcase(s, "fds", 60, FX_FDS);
    tcase_add_test(tc, wake_fd_creation_failure_is_reported);
    tcase_add_test(tc, running_out_of_fds_is_emfile);
    return s;
}

int main(void)
{
    /* Before any libevent call: its allocations go through ev_malloc & co. */
    event_set_mem_functions(ev_malloc, ev_realloc, ev_free);
    return run_suite(faults_suite());
}
