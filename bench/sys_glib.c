/* SPDX-License-Identifier: MIT */
/*
 * The two GLib ways: g_task_run_in_thread() (GIO's shared pool, whose size
 * GLib fixes at 10 whatever the workload asks: reported as is), and an
 * exclusive GThreadPool of the requested size whose worker hands the
 * completion back with g_main_context_invoke(). Both deliver on the
 * default main context, owned by the loop thread and run with
 * g_main_context_iteration().
 *
 * The loop thread acquires the context for good in init(). Without that,
 * g_main_context_invoke() from a worker while the loop thread is outside
 * g_main_context_iteration() acquires the default context itself and runs
 * the callback right there, on the worker: the driver's loop-thread check
 * caught exactly that (GLib documents it: the callback runs in the calling
 * thread when it can acquire the context).
 *
 * Timer: a GSource with an absolute ready time in g_get_monotonic_time()
 * units (CLOCK_MONOTONIC microseconds), so it is asked for exactly the
 * instant the driver means.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <gio/gio.h>
#include <glib.h>

#include "bench.h"

#define GTASK_POOL_SIZE 10  /* G_TASK_POOL_SIZE inside GLib */

struct bench_sys {
    GMainContext *ctx;
    GThreadPool *pool;       /* gpool only */
    GSource *timer;
    void (*timer_cb)(void *);
    void *timer_arg;
    int stopped;
    unsigned threads;
};

/* --- shared --------------------------------------------------------------- */

static struct bench_sys *new_sys(unsigned threads)
{
    struct bench_sys *s = calloc(1, sizeof *s);
    if (s) {
        s->ctx = g_main_context_default();
        s->threads = threads;
        g_main_context_acquire(s->ctx);
    }
    return s;
}

static void sys_run(struct bench_sys *s)
{
    s->stopped = 0;
    while (!s->stopped)
        g_main_context_iteration(s->ctx, TRUE);
}

static void sys_stop(struct bench_sys *s)
{
    s->stopped = 1;
}

static gboolean timer_dispatch(GSource *src, GSourceFunc cb, gpointer data)
{
    struct bench_sys *s = data;
    (void)cb;
    g_source_set_ready_time(src, -1);
    s->timer_cb(s->timer_arg);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs timer_funcs = {NULL, NULL, timer_dispatch, NULL, NULL, NULL};

static int sys_timer(struct bench_sys *s, unsigned delay_us, void (*cb)(void *), void *arg)
{
    if (!s->timer) {
        s->timer = g_source_new(&timer_funcs, sizeof(GSource));
        g_source_set_callback(s->timer, NULL, s, NULL);
        g_source_attach(s->timer, s->ctx);
    }
    s->timer_cb = cb;
    s->timer_arg = arg;
    g_source_set_ready_time(s->timer, g_get_monotonic_time() + delay_us);
    return 0;
}

static unsigned sys_threads(const struct bench_sys *s)
{
    return s->threads;
}

static void drop_timer(struct bench_sys *s)
{
    if (s->timer) {
        g_source_destroy(s->timer);
        g_source_unref(s->timer);
    }
    g_main_context_release(s->ctx);
}

static void sys_version(char *buf, size_t n)
{
    snprintf(buf, n, "GLib %u.%u.%u", glib_major_version, glib_minor_version, glib_micro_version);
}

/* --- g_task_run_in_thread ------------------------------------------------- */

static void gtask_thread(GTask *task, gpointer source, gpointer data, GCancellable *c)
{
    (void)source;
    (void)c;
    bench_work(data);
    g_task_return_pointer(task, NULL, NULL);
}

static void gtask_ready(GObject *source, GAsyncResult *res, gpointer data)
{
    (void)source;
    (void)res;
    bench_done(data);
}

static int gtask_init(struct bench_sys **out, const struct bench_cfg *cfg)
{
    (void)cfg;
    return (*out = new_sys(GTASK_POOL_SIZE)) ? 0 : -ENOMEM;
}

static int gtask_submit(struct bench_sys *s, struct bench_job *job)
{
    GTask *t = g_task_new(NULL, NULL, gtask_ready, job);
    (void)s;
    g_task_set_task_data(t, job, NULL);
    g_task_run_in_thread(t, gtask_thread);
    g_object_unref(t);
    return 0;
}

static void gtask_fini(struct bench_sys *s)
{
    drop_timer(s);
    free(s);
}

const struct bench_ops bench_sys_gtask = {
    "gtask", "GLib g_task_run_in_thread",
    gtask_init, gtask_submit, sys_run, sys_stop, sys_timer, sys_threads, gtask_fini, sys_version,
};

/* --- GThreadPool + g_main_context_invoke ---------------------------------- */

static gboolean gpool_deliver(gpointer data)
{
    bench_done(data);
    return G_SOURCE_REMOVE;
}

static void gpool_worker(gpointer data, gpointer user)
{
    struct bench_sys *s = user;
    bench_work(data);
    g_main_context_invoke(s->ctx, gpool_deliver, data);
}

static int gpool_init(struct bench_sys **out, const struct bench_cfg *cfg)
{
    GError *err = NULL;
    struct bench_sys *s = new_sys(cfg->threads);
    if (!s)
        return -ENOMEM;
    s->pool = g_thread_pool_new(gpool_worker, s, (gint)cfg->threads, TRUE, &err);
    if (!s->pool) {
        fprintf(stderr, "GThreadPool: %s\n", err ? err->message : "failed");
        g_clear_error(&err);
        g_main_context_release(s->ctx);
        free(s);
        return -EAGAIN;
    }
    *out = s;
    return 0;
}

static int gpool_submit(struct bench_sys *s, struct bench_job *job)
{
    return g_thread_pool_push(s->pool, job, NULL) ? 0 : -EAGAIN;
}

static void gpool_fini(struct bench_sys *s)
{
    g_thread_pool_free(s->pool, FALSE, TRUE);
    drop_timer(s);
    free(s);
}

const struct bench_ops bench_sys_gpool = {
    "gpool", "GLib GThreadPool + g_main_context_invoke",
    gpool_init, gpool_submit, sys_run, sys_stop, sys_timer, sys_threads, gpool_fini, sys_version,
};
