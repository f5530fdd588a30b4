/* SPDX-License-Identifier: MIT */
/*
 * libuv's uv_queue_work(). Its pool is process-global and sized once, by
 * UV_THREADPOOL_SIZE read at the first submission: the driver runs each
 * measurement in a fresh process, so setting it in init() works. Each job
 * needs a uv_work_t that lives until its after-work callback; it is
 * malloc'd and freed there, as libuv's own examples do.
 *
 * Timers: libuv keeps loop time in whole milliseconds (from a coarse clock
 * where that is precise enough), so a timer cannot be asked for "1000 µs
 * from now": it is armed for the first loop-time millisecond at or after
 * that instant, which is as close as libuv allows without firing early.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "bench.h"

struct bench_sys {
    uv_loop_t loop;
    uv_timer_t timer;
    int timer_init;
    void (*timer_cb)(void *);
    void *timer_arg;
    unsigned threads;
};

struct req {
    uv_work_t w;
    struct bench_job *job;
};

static void work(uv_work_t *w)
{
    bench_work(((struct req *)w)->job);
}

static void after_work(uv_work_t *w, int status)
{
    struct bench_job *job = ((struct req *)w)->job;
    (void)status;
    free(w);
    bench_done(job);
}

static int loop_new(struct bench_sys **out, const struct bench_cfg *cfg)
{
    struct bench_sys *s = calloc(1, sizeof *s);
    int rc;

    if (!s)
        return -ENOMEM;
    s->threads = cfg->threads;
    if ((rc = uv_loop_init(&s->loop)) < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int sys_init(struct bench_sys **out, const struct bench_cfg *cfg)
{
    char n[16];
    snprintf(n, sizeof n, "%u", cfg->threads);
    setenv("UV_THREADPOOL_SIZE", n, 1);
    return loop_new(out, cfg);
}

static int sys_submit(struct bench_sys *s, struct bench_job *job)
{
    struct req *r = malloc(sizeof *r);
    int rc;
    if (!r)
        return -ENOMEM;
    r->job = job;
    if ((rc = uv_queue_work(&s->loop, &r->w, work, after_work)) < 0)
        free(r);
    return rc;
}

static void sys_run(struct bench_sys *s)
{
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

static void sys_stop(struct bench_sys *s)
{
    uv_stop(&s->loop);
}

static void on_timer(uv_timer_t *t)
{
    struct bench_sys *s = t->data;
    s->timer_cb(s->timer_arg);
}

static int sys_timer(struct bench_sys *s, unsigned delay_us, void (*cb)(void *), void *arg)
{
    if (!s->timer_init) {
        uv_timer_init(&s->loop, &s->timer);
        s->timer.data = s;
        s->timer_init = 1;
    }
    s->timer_cb = cb;
    s->timer_arg = arg;
    uv_update_time(&s->loop);
    uint64_t due_ms = (bench_now_ns() + (uint64_t)delay_us * 1000 + 999999) / 1000000;
    uint64_t now_ms = uv_now(&s->loop);
    return uv_timer_start(&s->timer, on_timer, due_ms > now_ms ? due_ms - now_ms : 0, 0);
}

static unsigned sys_threads(const struct bench_sys *s)
{
    return s->threads;
}

static void sys_fini(struct bench_sys *s)
{
    if (s->timer_init) {
        uv_close((uv_handle_t *)&s->timer, NULL);
        uv_run(&s->loop, UV_RUN_NOWAIT);
    }
    uv_loop_close(&s->loop);
    free(s);
}

static void sys_version(char *buf, size_t n)
{
    snprintf(buf, n, "libuv %s", uv_version_string());
}

const struct bench_ops bench_sys_libuv = {
    "libuv", "libuv uv_queue_work",
    sys_init, sys_submit, sys_run, sys_stop, sys_timer, sys_threads, sys_fini, sys_version,
};

/* W8: libuv's pool is the process's: its size is all the loops share. Each
 * loop thread makes its own uv_loop_t with sys_init(). */
static int multi_shared_new(void **shared, const struct bench_cfg *cfg)
{
    char n[16];
    snprintf(n, sizeof n, "%u", cfg->threads);
    setenv("UV_THREADPOOL_SIZE", n, 1);
    *shared = NULL;
    return 0;
}

static int multi_init(struct bench_sys **out, const struct bench_cfg *cfg, void *shared)
{
    (void)shared;
    return loop_new(out, cfg);
}

static void multi_shared_free(void *shared)
{
    (void)shared;
}

const struct bench_multi bench_multi_libuv = {
    "libuv", &bench_sys_libuv, multi_shared_new, multi_init, multi_shared_free,
};
