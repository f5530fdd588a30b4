/* SPDX-License-Identifier: MIT */
/*
 * evexec, through its public API only: one pool, one port on a plain
 * event_base (no evthread_use_pthreads()), default options except the pool
 * size and the queue bound the workload needs. "evexec-spin" is the same
 * with worker spinning on, where this evexec has the option; "evexec-nice"
 * (W5 only) with the workers at nice 19; "evexec-batch" (W1-W5) with the
 * workers in SCHED_BATCH (EVEXEC_POOL_SCHED_BATCH).
 *
 * The "overhead" benchmark's variants (bench_evexec_variants[]): the same
 * system with one of the executor features (issue 7) in use on every job (or on the pool), to
 * show what each costs and that the plain path did not get slower.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>
#include <evexec.h>

#include "bench.h"

/* Without EVENT_BASE_FLAG_PRECISE_TIMER, libevent reads CLOCK_MONOTONIC_COARSE
 * and its timers fire up to a jiffy (here 4 ms) late; with it, epoll waits
 * on a timerfd, one more syscall per loop iteration: only W5 asks for it. */
static struct event_base *new_base(int precise)
{
    struct event_config *c;
    struct event_base *b;
    if (!precise)
        return event_base_new();
    if (!(c = event_config_new()))
        return NULL;
    event_config_set_flag(c, EVENT_BASE_FLAG_PRECISE_TIMER);
    b = event_base_new_with_config(c);
    event_config_free(c);
    return b;
}

struct bench_sys {
    struct event_base *base;
    evexec_pool *pool;
    evexec_port *port;
    struct event *timer;
    void (*timer_cb)(void *);
    void *timer_arg;
    unsigned threads;
    /* overhead variants */
    struct evexec_job_opts opts;
    evexec_group *group;
    unsigned members;
    int shared_pool;     /* W8: the pool belongs to every loop, not to this one */
};

static void *work(evexec_job *job, void *arg)
{
    (void)job;
    bench_work(arg);
    return NULL;
}

static void done(int status, void *result, void *arg)
{
    (void)status;
    (void)result;
    bench_done(arg);
}

static int init_variant(struct bench_sys **out, const struct bench_cfg *cfg, int spin,
                        unsigned nice, unsigned flags, unsigned limit_normal)
{
    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    struct bench_sys *s = calloc(1, sizeof *s);
    int rc;

    if (!s)
        return -ENOMEM;
    po.max_threads = cfg->threads;
    po.max_queued = cfg->max_queued;
    po.nice = nice;
    po.flags = flags;
    po.max_running_normal = limit_normal;
#ifdef HAVE_STRUCT_EVEXEC_POOL_OPTS_SPIN_US
    po.spin_us = spin ? cfg->spin_us : 0;
#else
    if (spin) {
        free(s);
        return -ENOTSUP;
    }
#endif
    s->threads = cfg->threads;
    if (!(s->base = new_base(cfg->precise_timers))) {
        free(s);
        return -ENOMEM;
    }
    if ((rc = evexec_pool_new(&s->pool, &po)) < 0)
        goto fail;
    if ((rc = evexec_port_new(&s->port, s->base, NULL)) < 0)
        goto fail;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    s->opts = jo;
    *out = s;
    return 0;
fail:
    fprintf(stderr, "evexec: %s\n", evexec_strerror(rc));
    evexec_pool_free(s->pool);
    event_base_free(s->base);
    free(s);
    return rc;
}

static int init_common(struct bench_sys **out, const struct bench_cfg *cfg, int spin, unsigned nice)
{
    return init_variant(out, cfg, spin, nice, 0, 0);
}

static int sys_init(struct bench_sys **out, const struct bench_cfg *cfg)
{
    return init_common(out, cfg, 0, 0);
}

static int sys_init_spin(struct bench_sys **out, const struct bench_cfg *cfg)
{
    return init_common(out, cfg, 1, 0);
}

/* Workers at nice 19: what a daemon with CPU-bound jobs on few cores does
 * to keep its loop (and timers) responsive. */
static int sys_init_nice(struct bench_sys **out, const struct bench_cfg *cfg)
{
    return init_common(out, cfg, 0, 19);
}

/* Workers in SCHED_BATCH (EVEXEC_POOL_SCHED_BATCH): what it buys in W1 and
 * W4 (no worker preempting the loop mid-burst) and costs in W2, W3, W5. */
static int sys_init_batch(struct bench_sys **out, const struct bench_cfg *cfg)
{
#ifdef EVEXEC_POOL_SCHED_BATCH
    return init_variant(out, cfg, 0, 0, EVEXEC_POOL_SCHED_BATCH, 0);
#else
    (void)out;
    (void)cfg;
    return -ENOTSUP; /* an evexec without the option */
#endif
}

static int sys_submit(struct bench_sys *s, struct bench_job *job)
{
    return evexec_submit(s->port, s->pool, work, done, job, NULL);
}

/* --- the overhead variants ---------------------------------------------- */

static int sys_submit_ex_null(struct bench_sys *s, struct bench_job *job)
{
    return evexec_submit_ex(s->port, s->pool, work, done, job, NULL, NULL);
}

/* opts as set by init (all defaults) or by the variant's init. */
static int sys_submit_ex_opts(struct bench_sys *s, struct bench_job *job)
{
    return evexec_submit_ex(s->port, s->pool, work, done, job, &s->opts, NULL);
}

static int sys_init_prio(struct bench_sys **out, const struct bench_cfg *cfg)
{
    int rc = init_common(out, cfg, 0, 0);
    if (rc == 0)
        (*out)->opts.priority = EVEXEC_PRIO_HIGH;
    return rc;
}

/* A deadline far beyond the run: the timer is armed and disarmed per job,
 * never fires. */
static int sys_init_timeout(struct bench_sys **out, const struct bench_cfg *cfg)
{
    int rc = init_common(out, cfg, 0, 0);
    if (rc == 0)
        (*out)->opts.timeout_ms = 60000;
    return rc;
}

/* Groups of GROUP_SIZE members (asyncio.gather of a batch): each group is
 * closed when the next one opens; the last one is released with the port. */
#define GROUP_SIZE 256

static int sys_submit_group(struct bench_sys *s, struct bench_job *job)
{
    int rc;
    if (!s->group || s->members == GROUP_SIZE) {
        if (s->group && (rc = evexec_group_close(s->group)) < 0)
            return rc;
        s->group = NULL;
        if ((rc = evexec_group_new(&s->group, s->port, EVEXEC_GROUP_ALL, NULL, NULL)) < 0)
            return rc;
        s->members = 0;
        s->opts.group = s->group;
    }
    rc = evexec_submit_ex(s->port, s->pool, work, done, job, &s->opts, NULL);
    if (rc == 0)
        s->members++;
    return rc;
}

static int sys_init_hist(struct bench_sys **out, const struct bench_cfg *cfg)
{
    return init_variant(out, cfg, 0, 0, EVEXEC_POOL_HISTOGRAMS, 0);
}

/* A class limit that never binds (the pool's size): its bookkeeping only. */
static int sys_init_limit(struct bench_sys **out, const struct bench_cfg *cfg)
{
    return init_variant(out, cfg, 0, 0, 0, cfg->threads);
}

static void sys_run(struct bench_sys *s)
{
    event_base_dispatch(s->base);
}

static void sys_stop(struct bench_sys *s)
{
    event_base_loopbreak(s->base);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct bench_sys *s = arg;
    (void)fd;
    (void)what;
    s->timer_cb(s->timer_arg);
}

static int sys_timer(struct bench_sys *s, unsigned delay_us, void (*cb)(void *), void *arg)
{
    struct timeval tv = {(time_t)(delay_us / 1000000), (suseconds_t)(delay_us % 1000000)};
    if (!s->timer && !(s->timer = evtimer_new(s->base, on_timer, s)))
        return -ENOMEM;
    s->timer_cb = cb;
    s->timer_arg = arg;
    event_base_update_cache_time(s->base);
    return evtimer_add(s->timer, &tv) < 0 ? -EINVAL : 0;
}

static unsigned sys_threads(const struct bench_sys *s)
{
    return s->threads;
}

static void sys_fini(struct bench_sys *s)
{
    if (s->timer)
        event_free(s->timer);
    if (!s->shared_pool)
        evexec_pool_free(s->pool);
    evexec_port_free(s->port);
    event_base_free(s->base);
    free(s);
}

static void sys_version(char *buf, size_t n)
{
    snprintf(buf, n, "evexec %s, libevent %s", evexec_version_string(), event_get_version());
}

const struct bench_ops bench_sys_evexec = {
    "evexec", "evexec",
    sys_init, sys_submit, sys_run, sys_stop, sys_timer, sys_threads, sys_fini, sys_version,
};

const struct bench_ops bench_sys_evexec_spin = {
    "evexec-spin", "evexec, worker spinning on",
    sys_init_spin, sys_submit, sys_run, sys_stop, sys_timer, sys_threads, sys_fini, sys_version,
};

const struct bench_ops bench_sys_evexec_nice = {
    "evexec-nice", "evexec, workers at nice 19",
    sys_init_nice, sys_submit, sys_run, sys_stop, sys_timer, sys_threads, sys_fini, sys_version,
};

/* --- W8: one pool, a port per loop -------------------------------------- */

static int multi_shared_new(void **shared, const struct bench_cfg *cfg)
{
    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *pool;
    po.max_threads = cfg->threads;
    po.max_queued = cfg->max_queued;
    int rc = evexec_pool_new(&pool, &po);
    if (rc == 0)
        *shared = pool;
    return rc;
}

static int multi_init(struct bench_sys **out, const struct bench_cfg *cfg, void *shared)
{
    struct bench_sys *s = calloc(1, sizeof *s);
    int rc;
    if (!s)
        return -ENOMEM;
    s->threads = cfg->threads;
    s->pool = shared;
    s->shared_pool = 1;
    if (!(s->base = event_base_new())) {
        free(s);
        return -ENOMEM;
    }
    if ((rc = evexec_port_new(&s->port, s->base, NULL)) < 0) {
        event_base_free(s->base);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static void multi_shared_free(void *shared)
{
    evexec_pool_free(shared);
}

const struct bench_multi bench_multi_evexec = {
    "evexec", &bench_sys_evexec, multi_shared_new, multi_init, multi_shared_free,
};

const struct bench_ops bench_sys_evexec_batch = {
    "evexec-batch", "evexec, workers in SCHED_BATCH",
    sys_init_batch, sys_submit, sys_run, sys_stop, sys_timer, sys_threads, sys_fini, sys_version,
};

#define VARIANT(name, label, init, submit) \
    {name, label, init, submit, sys_run, sys_stop, sys_timer, sys_threads, sys_fini, sys_version}

const struct bench_ops bench_evexec_variants[] = {
    VARIANT("plain", "evexec_submit()", sys_init, sys_submit),
    VARIANT("ex-null", "evexec_submit_ex(), opts NULL", sys_init, sys_submit_ex_null),
    VARIANT("ex-default", "evexec_submit_ex(), default opts", sys_init, sys_submit_ex_opts),
    VARIANT("prio-high", "priority HIGH on every job", sys_init_prio, sys_submit_ex_opts),
    VARIANT("timeout", "60 s deadline on every job", sys_init_timeout, sys_submit_ex_opts),
    VARIANT("group", "every job in a group (ALL, 256 members)", sys_init, sys_submit_group),
    VARIANT("histograms", "pool with EVEXEC_POOL_HISTOGRAMS", sys_init_hist, sys_submit),
    VARIANT("class-limit", "pool with max_running_normal = 4", sys_init_limit, sys_submit),
};
const unsigned bench_evexec_nvariants = sizeof bench_evexec_variants / sizeof *bench_evexec_variants;
