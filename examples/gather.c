/* SPDX-License-Identifier: MIT */
/*
 * gather: one callback for many jobs (groups), Python's asyncio.gather()
 * and asyncio.wait(FIRST_COMPLETED) in C.
 *
 * 1. gather: counting the primes below 200,000 is split into 8 jobs that
 *    join an EVEXEC_GROUP_ALL group. Each job's own callback runs as it
 *    completes (asyncio.as_completed()); the group's callback runs once,
 *    after the last one, and prints the total (17984).
 * 2. first: three jobs stand for the same request sent to three mirrors
 *    (they sleep 100, 2000 and 4000 ms, polling their stop flag). They join
 *    an EVEXEC_GROUP_FIRST | EVEXEC_GROUP_CANCEL_REST group: its callback
 *    runs after the first answer, and the other two are stopped at once
 *    (queued ones would be delivered as -ECANCELED).
 *
 * The pool keeps histograms (EVEXEC_POOL_HISTOGRAMS); at the end the program
 * prints its jobs' run times from evexec_pool_histograms(). Exits 0 when
 * both groups ended as described.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>
#include <evexec.h>

#define LIMIT 200000u
#define CHUNKS 8
#define MIRRORS 3

struct app {
    evexec_pool *pool;
    evexec_port *port;
    uint64_t primes;     /* sum of the chunks' counts */
    int chunks_done;
    int mirrors_done, mirrors_stopped, winner;
    int gather_status, first_status;
    int ok;
};

struct chunk {
    struct app *app;
    unsigned from, to;   /* [from, to) */
    uint64_t count;
};

struct mirror {
    struct app *app;
    int n;
    unsigned ms;
    int stopped;
};

static int is_prime(unsigned n)
{
    if (n < 2)
        return 0;
    for (unsigned d = 2; d * d <= n; d++)
        if (n % d == 0)
            return 0;
    return 1;
}

static void *count_primes(evexec_job *job, void *arg) /* on a worker */
{
    struct chunk *c = arg;
    (void)job;
    for (unsigned n = c->from; n < c->to; n++)
        c->count += (uint64_t)is_prime(n);
    return NULL;
}

static void *ask_mirror(evexec_job *job, void *arg) /* on a worker */
{
    struct mirror *m = arg;
    for (unsigned t = 0; t < m->ms; t += 10) {
        if (evexec_job_cancelled(job)) { /* another mirror answered first */
            m->stopped = 1;
            return NULL;
        }
        usleep(10000);
    }
    return NULL;
}

static void print_histogram(struct app *a)
{
    struct evexec_pool_histograms h = {.size = sizeof h};
    if (evexec_pool_histograms(a->pool, &h) < 0)
        return;
    printf("run times of the pool's jobs (evexec_pool_histograms):\n");
    for (int i = 0; i < EVEXEC_HIST_BUCKETS; i++)
        if (h.run[i])
            printf("  under %10.3f ms: %" PRIu64 "\n", (double)(UINT64_C(2) << i) / 1e6, h.run[i]);
}

static void maybe_end(struct app *a)
{
    if (a->mirrors_done < MIRRORS || a->winner < 0)
        return;
    print_histogram(a);
    a->ok = a->gather_status == 0 && a->primes == 17984 && a->first_status == 0;
    evexec_port_free(a->port); /* the loop runs out of events */
}

/* ---- 2. the first of three mirrors -------------------------------------- */

static void mirror_done(int status, void *result, void *arg) /* each member */
{
    struct mirror *m = arg;
    struct app *a = m->app;
    (void)result;
    if (status == -ECANCELED || m->stopped) {
        a->mirrors_stopped++;
        printf("mirror %d: stopped (%s)\n", m->n, status ? "never started" : "while running");
    } else if (status == 0) {
        printf("mirror %d: answered after %u ms\n", m->n, m->ms);
        if (a->winner < 0)
            a->winner = m->n;
    }
    free(m);
    a->mirrors_done++;
    maybe_end(a);
}

static void first_answer(int status, void *arg) /* the group, once */
{
    struct app *a = arg;
    a->first_status = status;
    printf("first answer: status %s; the other mirrors are being stopped\n",
           status == 0 ? "0" : evexec_errname(status));
}

static void ask_mirrors(struct app *a)
{
    evexec_group *g;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    static const unsigned ms[MIRRORS] = {100, 2000, 4000};
    int rc = evexec_group_new(&g, a->port, EVEXEC_GROUP_FIRST | EVEXEC_GROUP_CANCEL_REST,
                              first_answer, a);
    if (rc < 0) {
        fprintf(stderr, "group: %s\n", evexec_strerror(rc));
        evexec_port_free(a->port);
        return;
    }
    jo.group = g;
    for (int i = 0; i < MIRRORS; i++) {
        struct mirror *m = calloc(1, sizeof *m);
        rc = -ENOMEM;
        if (m) {
            *m = (struct mirror){.app = a, .n = i + 1, .ms = ms[i]};
            rc = evexec_submit_ex(a->port, a->pool, ask_mirror, mirror_done, m, &jo, NULL);
        }
        if (rc < 0) {
            fprintf(stderr, "mirror %d: %s\n", i + 1, evexec_strerror(rc));
            free(m);
            a->mirrors_done++; /* counts as over */
        }
    }
    evexec_group_close(g); /* no more members */
}

/* ---- 1. gather the prime counts ------------------------------------------ */

static void chunk_done(int status, void *result, void *arg) /* each member */
{
    struct chunk *c = arg;
    (void)result;
    if (status == 0) {
        c->app->primes += c->count;
        printf("primes in [%6u, %6u): %" PRIu64 "\n", c->from, c->to, c->count);
    }
    c->app->chunks_done++;
    free(c);
}

static void all_counted(int status, void *arg) /* the group, once, after all */
{
    struct app *a = arg;
    a->gather_status = status;
    printf("gathered %d chunks: %" PRIu64 " primes below %u (status %s)\n", a->chunks_done,
           a->primes, LIMIT, status == 0 ? "0" : evexec_errname(status));
    ask_mirrors(a);
}

int main(void)
{
    struct app a = {.winner = -1, .gather_status = -1, .first_status = -1};
    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    struct event_base *base = event_base_new();
    evexec_group *g;
    int rc;

    if (!base)
        return 1;
    po.max_threads = 4;
    po.flags = EVEXEC_POOL_HISTOGRAMS;
    po.name = "gather";
    if ((rc = evexec_pool_new(&a.pool, &po)) < 0 ||
        (rc = evexec_port_new(&a.port, base, NULL)) < 0 ||
        (rc = evexec_group_new(&g, a.port, EVEXEC_GROUP_ALL, all_counted, &a)) < 0) {
        fprintf(stderr, "gather: %s\n", evexec_strerror(rc));
        evexec_port_free(a.port);
        evexec_pool_free(a.pool);
        event_base_free(base);
        return 1;
    }
    jo.group = g;
    for (unsigned i = 0; i < CHUNKS; i++) {
        struct chunk *c = calloc(1, sizeof *c);
        rc = -ENOMEM;
        if (c) {
            *c = (struct chunk){.app = &a, .from = LIMIT / CHUNKS * i,
                                .to = LIMIT / CHUNKS * (i + 1)};
            rc = evexec_submit_ex(a.port, a.pool, count_primes, chunk_done, c, &jo, NULL);
        }
        if (rc < 0) { /* the group's status will not be 0 then: see the total */
            fprintf(stderr, "chunk %u: %s\n", i, evexec_strerror(rc));
            free(c);
            a.gather_status = rc;
        }
    }
    evexec_group_close(g); /* the group's callback can run once all are in */
    event_base_dispatch(base);
    evexec_pool_free(a.pool);
    event_base_free(base);
    return a.ok ? 0 : 1;
}
