/* SPDX-License-Identifier: MIT */
/*
 * foreign: submitting from a thread that is not the loop's.
 *
 * A daemon often gets work from threads it does not own: a library's
 * callback thread, a message-queue consumer, an inotify reader. Such a
 * thread cannot call evexec_submit() (loop thread only: -EPERM); it calls
 * evexec_submit_threadsafe(), and the done callback still runs on the
 * port's loop thread. Here a plain pthread (the "producer") submits 40
 * jobs: each squares its number on a worker, and the loop adds the
 * results up. The pool's queue holds only 4 jobs, so the producer waits
 * for room (opts.wait_ms = EVEXEC_WAIT_FOREVER), which only a foreign
 * thread may do: the loop must never block. Every fourth job is HIGH
 * priority and overtakes the queue. Halfway through, the loop grows the
 * pool from 1 thread to 3 (evexec_pool_resize()).
 *
 * The port must outlive every submit call: the loop joins the producer
 * before it frees the port. Exits 0 when the sum is right and every
 * callback ran on the loop thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>
#include <evexec.h>

#define JOBS 40

struct app {
    evexec_pool *pool;
    evexec_port *port;
    pthread_t loop_thread, producer;
    int producer_rc;      /* written by the producer before it exits */
    int delivered, off_loop;
    uint64_t sum;
};

struct item {
    struct app *app;
    unsigned n;
    int high;
    uint64_t square;
};

static void *square(evexec_job *job, void *arg) /* on a worker */
{
    struct item *it = arg;
    (void)job;
    usleep(2000); /* a blocking call */
    it->square = (uint64_t)it->n * it->n;
    return NULL;
}

static void squared(int status, void *result, void *arg) /* on the loop */
{
    struct item *it = arg;
    struct app *a = it->app;

    (void)result;
    if (!pthread_equal(pthread_self(), a->loop_thread))
        a->off_loop++;
    if (status == 0)
        a->sum += it->square;
    free(it);
    if (++a->delivered == JOBS / 2) {
        evexec_pool_resize(a->pool, 0, 3, 4); /* busy: more threads, same queue */
        printf("after %d results: pool resized to 3 threads\n", a->delivered);
    }
    if (a->delivered == JOBS) {
        struct evexec_port_stats ps = {.size = sizeof ps};
        if (evexec_port_stats(a->port, &ps) == 0) /* completions come in bursts */
            printf("port: %llu callbacks run after %llu wake-ups\n",
                   (unsigned long long)ps.delivered, (unsigned long long)ps.wakeups);
        /* Every job was accepted, so the producer has made its last submit
         * call; it may still be returning from it: join it before the port
         * goes (a brief wait at most). */
        pthread_join(a->producer, NULL);
        evexec_port_free(a->port);
    }
}

static void *producer(void *arg) /* a foreign thread */
{
    struct app *a = arg;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;

    jo.wait_ms = EVEXEC_WAIT_FOREVER; /* blocks while the queue is full */
    for (unsigned n = 1; n <= JOBS; n++) {
        struct item *it = malloc(sizeof *it);
        int rc = -ENOMEM;
        if (it) {
            *it = (struct item){.app = a, .n = n, .high = n % 4 == 0};
            jo.priority = it->high ? EVEXEC_PRIO_HIGH : EVEXEC_PRIO_NORMAL;
            rc = evexec_submit_threadsafe(a->port, a->pool, square, squared, it, &jo);
        }
        if (rc < 0) {
            /* No callback will come for it, and the loop waits for JOBS
             * callbacks: with EVEXEC_WAIT_FOREVER this happens only when
             * out of memory or if the pool was shut down. */
            fprintf(stderr, "producer: %s\n", evexec_strerror(rc));
            free(it);
            a->producer_rc = rc;
            return NULL;
        }
    }
    return NULL;
}

int main(void)
{
    struct app a = {0};
    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    struct event_base *base = event_base_new();
    uint64_t want = 0;
    int rc;

    if (!base)
        return 1;
    po.max_threads = 1;
    po.max_queued = 4;
    po.name = "foreign";
    a.loop_thread = pthread_self();
    if ((rc = evexec_pool_new(&a.pool, &po)) < 0 ||
        (rc = evexec_port_new(&a.port, base, NULL)) < 0 ||
        (rc = -pthread_create(&a.producer, NULL, producer, &a)) < 0) {
        fprintf(stderr, "foreign: %s\n", evexec_strerror(rc));
        evexec_port_free(a.port);
        evexec_pool_free(a.pool);
        event_base_free(base);
        return 1;
    }
    event_base_dispatch(base); /* until the last callback frees the port */
    evexec_pool_free(a.pool);
    event_base_free(base);

    for (unsigned n = 1; n <= JOBS; n++)
        want += (uint64_t)n * n;
    printf("%d results from a foreign thread, sum of squares %llu (expected %llu), %d "
           "callbacks off the loop thread\n",
           a.delivered, (unsigned long long)a.sum, (unsigned long long)want, a.off_loop);
    return a.sum == want && a.off_loop == 0 && a.producer_rc == 0 ? 0 : 1;
}
