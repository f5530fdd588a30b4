/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/syscall.h>
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

void noop_event(evutil_socket_t fd, short what, void *arg)
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
    struct event *t = evtimer_new(base, noop_event, NULL);
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

static int threads_now_are(void *arg)
{
    return count_threads() == *(const int *)arg;
}

void wait_threads(int n)
{
    wait_for(threads_now_are, &n);
}

void promise_settle(evexec_promise *p, int status, void *result)
{
    if (status == 0)
        evexec_promise_resolve(p, result);
    else
        evexec_promise_fail(p, status);
}

void *wait_ok(evexec_future *f)
{
    void *r = (void *)1;
    ck_assert_int_eq(evexec_future_wait(f, EVEXEC_WAIT_FOREVER), 0);
    ck_assert_int_eq(evexec_future_result(f, &r), 0);
    return r;
}

int wait_status(evexec_future *f)
{
    ck_assert_int_eq(evexec_future_wait(f, EVEXEC_WAIT_FOREVER), 0);
    return evexec_future_result(f, NULL);
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

/* Entries of a /proc directory, its "." and ".." aside; -1 on error. */
static int count_entries(const char *path)
{
    int n = 0;
    DIR *d = opendir(path);
    struct dirent *e;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int count_fds(void)
{
    int n = count_entries("/proc/self/fd");
    return n < 0 ? n : n - 1; /* the DIR's own fd */
}

int count_threads(void)
{
    return count_entries("/proc/self/task");
}

int list_procs(struct proc_entry *out, int max)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d)) != NULL && n < max) {
        char path[300], buf[512];
        int pid = atoi(de->d_name), parent;
        char state;
        if (pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t got = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[got] = '\0';
        char *p = strrchr(buf, ')');
        if (p && sscanf(p + 1, " %c %d", &state, &parent) == 2)
            out[n++] = (struct proc_entry){pid, parent, state};
    }
    if (d)
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

/* ---------------------------------------------------------------------- */
/* Checked fixtures and the runner.                                       */

struct fixture fx;

void fds_setup(void)
{
    memset(&fx, 0, sizeof fx);
    fx.loop = pthread_self();
    fx.fds = count_fds();
    ck_assert_int_gt(fx.fds, 0);
}

void fds_teardown(void)
{
    ck_assert_msg(count_fds() == fx.fds, "fds leaked: %d before the test, %d after", fx.fds,
                  count_fds());
}

void port_setup(void)
{
    fds_setup();
    fx.base = event_base_new();
    ck_assert_ptr_nonnull(fx.base);
    ck_assert_int_eq(evexec_port_new(&fx.port, fx.base, NULL), 0);
}

void port_teardown(void)
{
    ck_assert_int_eq(evexec_port_free(fx.port), 0);
    event_base_dispatch(fx.base); /* returns once the port has released itself */
    event_base_free(fx.base);
    fds_teardown();
}

TCase *add_tcase(Suite *s, const char *name, double timeout, enum fixture_kind kind)
{
    TCase *tc = tcase_create(name);
    if (kind == FX_FDS)
        tcase_add_checked_fixture(tc, fds_setup, fds_teardown);
    else if (kind == FX_PORT)
        tcase_add_checked_fixture(tc, port_setup, port_teardown);
    tcase_set_timeout(tc, timeout);
    suite_add_tcase(s, tc);
    return tc;
}

int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---------------------------------------------------------------------- */
/* Pools and submits.                                                     */

evexec_pool *new_pool_o(const struct evexec_pool_opts *o)
{
    evexec_pool *p = NULL;
    ck_assert_int_eq(evexec_pool_new(&p, o), 0);
    ck_assert_ptr_nonnull(p);
    return p;
}

evexec_pool *new_named_pool(unsigned max, unsigned min, size_t max_queued, const char *name)
{
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    o.max_threads = max;
    o.min_threads = min;
    o.max_queued = max_queued;
    o.name = name;
    return new_pool_o(&o);
}

evexec_pool *new_pool(unsigned max, unsigned min, size_t max_queued)
{
    return new_named_pool(max, min, max_queued, NULL);
}

int submit_prio(evexec_pool *pool, int prio, evexec_work_fn work, evexec_done_fn done, void *arg,
                evexec_job_id *id)
{
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    jo.priority = prio;
    return evexec_submit_ex(fx.port, pool, work, done, arg, &jo, id);
}

void park_n(evexec_pool *pool, evexec_work_fn work, struct gate *g, struct tally *t, int n)
{
    tally_init(t);
    gate_init(g, t);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(evexec_submit(fx.port, pool, work, gate_done, g, NULL), 0);
    gate_wait_entered(g, n);
}

evexec_future *park_call(evexec_pool *pool, evexec_work_fn work, struct gate *g, struct tally *t)
{
    evexec_future *f = NULL;
    tally_init(t);
    gate_init(g, t);
    ck_assert_int_eq(evexec_pool_call(pool, work, g, &f), 0);
    gate_wait_entered(g, 1);
    return f;
}

/* ---------------------------------------------------------------------- */
/* Running the fixture's loop, waiting on a pool.                         */

void dispatch_all(struct event_base *b)
{
    ck_assert_int_ge(event_base_dispatch(b), 0);
    ck_assert(!event_base_got_exit(b));
}

void run_until_time(double end)
{
    double left;
    while ((left = end - now_s()) > 0) {
        struct timeval tv = {(time_t)left, (suseconds_t)((left - (time_t)left) * 1e6) + 1};
        ck_assert_int_eq(event_base_loopexit(fx.base, &tv), 0);
        ck_assert_int_ge(event_base_dispatch(fx.base), 0);
    }
}

void run_for(int ms)
{
    run_until_time(now_s() + ms / 1000.0);
}

void flush(evexec_pool *pool)
{
    struct tally t;
    tally_init(&t);
    ck_assert_int_eq(evexec_submit(fx.port, pool, echo_work, tally_done, &t, NULL), 0);
    run_until(fx.base, &t.calls, 1);
    run_nonblock(fx.base, 3);
    ck_assert_int_eq(t.ok, 1);
}

/* What wait_completed() and wait_idle() wait for. */
struct pool_count {
    evexec_pool *pool;
    uint64_t n;
    int idle; /* count idle threads, else completed jobs */
};

static int count_reached(void *p)
{
    struct pool_count *c = p;
    struct evexec_pool_stats s = pool_stats(c->pool);
    return (c->idle ? s.idle : s.completed) >= c->n;
}

void wait_completed(evexec_pool *pool, uint64_t n)
{
    struct pool_count c = {pool, n, 0};
    wait_for(count_reached, &c);
}

void wait_idle(evexec_pool *pool, unsigned n)
{
    struct pool_count c = {pool, n, 1};
    wait_for(count_reached, &c);
}

struct thread_call {
    int (*fn)(void *);
    void *arg;
    int rc;
};

static void *thread_call_main(void *p)
{
    struct thread_call *c = p;
    c->rc = c->fn(c->arg);
    return NULL;
}

int on_other_thread(int (*fn)(void *), void *arg)
{
    struct thread_call c = {fn, arg, 0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, thread_call_main, &c), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    return c.rc;
}

/* ---------------------------------------------------------------------- */
/* djob, grec, ts_waiter.                                                 */

void djob_init(struct djob *d, struct gate *g, void *ret)
{
    memset(d, 0, sizeof *d);
    d->magic = DJOB_MAGIC;
    d->gate = g;
    d->ret = ret;
    atomic_init(&d->ran, 0);
    atomic_init(&d->stopped, 0);
}

void *djob_work(evexec_job *job, void *arg)
{
    struct djob *d = arg;
    atomic_fetch_add(&d->ran, 1);
    if (d->gate)
        park_work(job, d->gate);
    atomic_store(&d->stopped, evexec_job_cancelled(job));
    return d->alloc_ret ? malloc(64) : d->ret;
}

void djob_done(int status, void *result, void *arg)
{
    struct djob *d = arg;
    ck_assert_uint_eq(d->magic, DJOB_MAGIC);
    if (!pthread_equal(pthread_self(), fx.loop))
        d->wrong_thread++;
    if (d->calls++ == 0) {
        d->status = status;
        d->result = result;
        d->at = now_s();
        d->seq = ++fx.seq;
    }
    if (d->alloc_ret)
        free(result);
    if (d->free_port_in_done) {
        d->free_port_rc = evexec_port_free(fx.port);
        d->free_port_in_done = 0;
    }
    fx.member_calls++;
}

void djob_cleanup(void *result, void *arg)
{
    struct djob *d = arg;
    ck_assert_uint_eq(d->magic, DJOB_MAGIC);
    if (!pthread_equal(pthread_self(), fx.loop))
        d->cleanup_wrong_thread++;
    d->cleanups++;
    if (d->alloc_ret)
        free(result);
    else
        d->cleanup_result = result;
}

int submit_djob(evexec_pool *pool, struct djob *d, unsigned timeout_ms, evexec_group *g,
                evexec_job_id *id)
{
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    o.timeout_ms = timeout_ms;
    o.cleanup = djob_cleanup;
    o.group = g;
    return evexec_submit_ex(fx.port, pool, djob_work, djob_done, d, &o, id);
}

void park_djob(evexec_pool *pool, struct djob *d, struct gate *g, unsigned timeout_ms,
               evexec_group *grp)
{
    gate_init(g, NULL);
    djob_init(d, g, NULL);
    ck_assert_int_eq(submit_djob(pool, d, timeout_ms, grp, NULL), 0);
    gate_wait_entered(g, 1);
}

void grec_fn(int status, void *arg)
{
    struct grec *r = arg;
    if (!pthread_equal(pthread_self(), fx.loop))
        r->wrong_thread++;
    if (r->calls++ == 0) {
        r->status = status;
        r->seq = ++fx.seq;
    }
    if (r->action == GR_CANCEL)
        r->rc = evexec_group_cancel(r->g);
    else if (r->action == GR_SUBMIT)
        r->rc = submit_djob(r->pool, r->d, 0, r->g, NULL);
}

evexec_group *new_group(struct grec *r, int how)
{
    memset(r, 0, sizeof *r);
    ck_assert_int_eq(evexec_group_new(&r->g, fx.port, how, grec_fn, r), 0);
    ck_assert_ptr_nonnull(r->g);
    return r->g;
}

static void *ts_thread(void *a)
{
    struct ts_waiter *c = a;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    jo.wait_ms = c->wait_ms;
    atomic_store(&c->tid, (int)syscall(SYS_gettid));
    double t0 = now_s();
    c->rc = evexec_submit_threadsafe(fx.port, c->pool, echo_work, c->done, c->arg, &jo);
    c->elapsed = now_s() - t0;
    return NULL;
}

void ts_start(struct ts_waiter *c, evexec_pool *pool, int wait_ms, struct tally *t)
{
    memset(c, 0, sizeof *c);
    atomic_init(&c->tid, 0);
    c->pool = pool;
    c->done = tally_done;
    c->arg = t;
    c->wait_ms = wait_ms;
    ck_assert_int_eq(pthread_create(&c->th, NULL, ts_thread, c), 0);
}

void ts_join(struct ts_waiter *c)
{
    ck_assert_int_eq(pthread_join(c->th, NULL), 0);
}
