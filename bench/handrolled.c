/* SPDX-License-Identifier: MIT */
/*
 * The hand-rolled libevent pool: what a user writes without evexec. A
 * mutex+condvar job queue, fixed worker threads started up front, a
 * mutex-protected done list, and one eventfd write per completed job; the
 * loop reads the eventfd, detaches the done list under its mutex and runs
 * the callbacks with no lock held. Each job is a malloc'd node, freed after
 * its callback. Nothing clever on purpose: it is the baseline evexec must
 * beat.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

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

/* --- the pool, as a user would write it ----------------------------------- */

/* Where finished jobs go home: one per loop (W8 shares a pool among four). */
struct hr_port {
    pthread_mutex_t done_mu;       /* guards the done list */
    struct hr_node *done_head, *done_tail;
    int efd;
    struct event *ev;
};

struct hr_node {
    struct hr_node *next;
    struct hr_port *port;
    void (*work)(void *arg);
    void (*done)(void *arg);
    void *arg;
};

struct hr_pool {
    pthread_mutex_t mu;            /* guards the queue and stopping */
    pthread_cond_t cv;
    struct hr_node *head, *tail;
    int stopping;

    pthread_t *threads;
    unsigned nthreads;
};

static void *hr_worker(void *arg)
{
    struct hr_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        struct hr_node *n = p->head;
        if (!n) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        p->head = n->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);

        n->work(n->arg);

        struct hr_port *port = n->port;
        n->next = NULL;
        pthread_mutex_lock(&port->done_mu);
        if (port->done_tail)
            port->done_tail->next = n;
        else
            port->done_head = n;
        port->done_tail = n;
        pthread_mutex_unlock(&port->done_mu);
        uint64_t one = 1;
        if (write(port->efd, &one, sizeof one) < 0)
            perror("handrolled: eventfd write");
    }
}

static void hr_on_done(evutil_socket_t fd, short what, void *arg)
{
    struct hr_port *port = arg;
    uint64_t count;
    (void)what;
    if (read(fd, &count, sizeof count) < 0)
        return;
    pthread_mutex_lock(&port->done_mu);
    struct hr_node *n = port->done_head;
    port->done_head = port->done_tail = NULL;
    pthread_mutex_unlock(&port->done_mu);
    while (n) {
        struct hr_node *next = n->next;
        n->done(n->arg);
        free(n);
        n = next;
    }
}

static int hr_submit(struct hr_pool *p, struct hr_port *port, void (*work)(void *),
                     void (*done)(void *), void *arg)
{
    struct hr_node *n = malloc(sizeof *n);
    if (!n)
        return -ENOMEM;
    n->next = NULL;
    n->port = port;
    n->work = work;
    n->done = done;
    n->arg = arg;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = n;
    else
        p->head = n;
    p->tail = n;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static void hr_free(struct hr_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

static struct hr_pool *hr_new(unsigned nthreads)
{
    struct hr_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (!(p->threads = calloc(nthreads, sizeof *p->threads)))
        goto fail;
    for (; p->nthreads < nthreads; p->nthreads++)
        if (pthread_create(&p->threads[p->nthreads], NULL, hr_worker, p))
            goto fail;
    return p;
fail:
    hr_free(p);
    return NULL;
}

static void hr_port_free(struct hr_port *port)
{
    if (port->ev)
        event_free(port->ev);
    if (port->efd >= 0)
        close(port->efd);
    pthread_mutex_destroy(&port->done_mu);
    free(port);
}

static struct hr_port *hr_port_new(struct event_base *base)
{
    struct hr_port *port = calloc(1, sizeof *port);
    if (!port)
        return NULL;
    pthread_mutex_init(&port->done_mu, NULL);
    port->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (port->efd < 0)
        goto fail;
    port->ev = event_new(base, port->efd, EV_READ | EV_PERSIST, hr_on_done, port);
    if (!port->ev || event_add(port->ev, NULL) < 0)
        goto fail;
    return port;
fail:
    hr_port_free(port);
    return NULL;
}

/* --- the driver's interface ----------------------------------------------- */

struct bench_sys {
    struct event_base *base;
    struct hr_pool *pool;
    struct hr_port *port;
    int shared_pool;       /* W8: the pool is every loop's */
    struct event *timer;
    void (*timer_cb)(void *);
    void *timer_arg;
    unsigned threads;
};

static void work(void *arg)
{
    bench_work(arg);
}

static void done(void *arg)
{
    bench_done(arg);
}

static int sys_init(struct bench_sys **out, const struct bench_cfg *cfg)
{
    struct bench_sys *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->threads = cfg->threads;
    if (!(s->base = new_base(cfg->precise_timers)) || !(s->pool = hr_new(cfg->threads)) ||
        !(s->port = hr_port_new(s->base))) {
        if (s->pool)
            hr_free(s->pool);
        if (s->base)
            event_base_free(s->base);
        free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

static int sys_submit(struct bench_sys *s, struct bench_job *job)
{
    return hr_submit(s->pool, s->port, work, done, job);
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
        hr_free(s->pool); /* its workers are gone: nothing posts to the port now */
    hr_port_free(s->port);
    event_base_free(s->base);
    free(s);
}

static void sys_version(char *buf, size_t n)
{
    snprintf(buf, n, "libevent %s", event_get_version());
}

const struct bench_ops bench_sys_handrolled = {
    "handrolled", "hand-rolled libevent pool",
    sys_init, sys_submit, sys_run, sys_stop, sys_timer, sys_threads, sys_fini, sys_version,
};

/* --- W8: one pool, a port per loop ----------------------------------------- */

static int multi_shared_new(void **shared, const struct bench_cfg *cfg)
{
    struct hr_pool *p = hr_new(cfg->threads);
    *shared = p;
    return p ? 0 : -ENOMEM;
}

static int multi_init(struct bench_sys **out, const struct bench_cfg *cfg, void *shared)
{
    struct bench_sys *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->threads = cfg->threads;
    s->pool = shared;
    s->shared_pool = 1;
    if (!(s->base = event_base_new()) || !(s->port = hr_port_new(s->base))) {
        if (s->base)
            event_base_free(s->base);
        free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

static void multi_shared_free(void *shared)
{
    hr_free(shared);
}

const struct bench_multi bench_multi_handrolled = {
    "handrolled", &bench_sys_handrolled, multi_shared_new, multi_init, multi_shared_free,
};
