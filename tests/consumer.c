/* SPDX-License-Identifier: MIT */
/*
 * tests/consumer.c: a minimal program using an *installed* evexec, the way a
 * user would build it:
 *
 *     cc $(pkg-config --cflags evexec) consumer.c $(pkg-config --libs evexec)
 *
 * tests/install.sh builds and runs it against a DESTDIR installation. It
 * checks the run-time library's version against the header's, runs three jobs
 * on a pool, collects their results in done callbacks on the loop thread,
 * frees everything and prints "consumer: ok". Any problem: a message on
 * stderr and a non-zero exit status.
 */
#include <evexec.h>
#include <event2/event.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NJOBS 3
#define TIMEOUT_SECONDS 30

struct task {
    unsigned input;       /* what the work function computes from */
    evexec_job_id id;     /* from evexec_submit() */
    int ran;              /* set by the work function (worker thread) */
    int done;             /* times the done callback ran */
    int status;           /* as given to the done callback */
    uintptr_t result;     /* as given to the done callback */
};

static struct task tasks[NJOBS];
static int ndone;
static int failures;
static int submitting;          /* set around evexec_submit() */
static _Thread_local int on_main_thread;  /* 1 only on the loop thread */

static evexec_port *port;
static struct event *timeout_ev;

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void problem(const char *fmt, ...)
{
    va_list ap;

    fputs("consumer: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    failures++;
}

static void check_rc(const char *call, int rc)
{
    if (rc != 0)
        problem("%s failed: %d (%s: %s)", call, rc, evexec_errname(rc), evexec_strerror(rc));
}

static uintptr_t expected(unsigned input)
{
    return (uintptr_t)input * input + 1u;
}

/* Runs on a worker of the pool. */
static void *work(evexec_job *job, void *arg)
{
    struct task *t = arg;

    t->ran = !on_main_thread && !evexec_job_cancelled(job) ? 1 : -1;
    return (void *)expected(t->input);
}

/* Runs on the loop thread, from event_base_dispatch(). */
static void done(int status, void *result, void *arg)
{
    struct task *t = arg;

    if (!on_main_thread)
        problem("a done callback ran off the loop thread");
    if (submitting)
        problem("a done callback ran from inside evexec_submit()");
    t->done++;
    t->status = status;
    t->result = (uintptr_t)result;

    if (++ndone == NJOBS) {
        /* Everything is in: release the port, which takes its event off the
         * base, so event_base_dispatch() returns. */
        event_del(timeout_ev);
        check_rc("evexec_port_free", evexec_port_free(port));
        port = NULL;
    }
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    fprintf(stderr, "consumer: timed out after %d s with %d of %d jobs done\n",
            TIMEOUT_SECONDS, ndone, NJOBS);
    exit(2);
}

int main(void)
{
    struct event_base *base;
    evexec_pool *pool = NULL;
    struct evexec_pool_opts popts = EVEXEC_POOL_OPTS_INIT;
    struct evexec_pool_stats pstats;
    struct timeval tv = { TIMEOUT_SECONDS, 0 };
    char want[32];
    const char *vs;
    int i, rc;

    on_main_thread = 1;

    /* The library we run with is the one we were compiled against. */
    if (evexec_version() != (unsigned)EVEXEC_VERSION_NUMBER) {
        problem("evexec_version() is 0x%06x, the header's EVEXEC_VERSION_NUMBER 0x%06x",
                evexec_version(), (unsigned)EVEXEC_VERSION_NUMBER);
        return 1;
    }
    snprintf(want, sizeof want, "%d.%d.%d", EVEXEC_VERSION_MAJOR,
             EVEXEC_VERSION_MINOR, EVEXEC_VERSION_PATCH);
    vs = evexec_version_string();
    if (vs == NULL || strcmp(vs, want) != 0) {
        problem("evexec_version_string() is \"%s\", the header's version \"%s\"",
                vs ? vs : "(null)", want);
        return 1;
    }

    base = event_base_new();
    if (base == NULL) {
        problem("event_base_new() failed");
        return 1;
    }
    timeout_ev = evtimer_new(base, on_timeout, NULL);
    if (timeout_ev == NULL || evtimer_add(timeout_ev, &tv) != 0) {
        problem("cannot arm the timeout");
        return 1;
    }

    popts.max_threads = 2;
    popts.name = "consumer";
    rc = evexec_pool_new(&pool, &popts);
    check_rc("evexec_pool_new", rc);
    rc = rc ? rc : evexec_port_new(&port, base, NULL);
    check_rc("evexec_port_new", rc);
    if (rc != 0)
        return 1;

    for (i = 0; i < NJOBS; i++) {
        tasks[i].input = (unsigned)i + 2;
        submitting = 1;
        rc = evexec_submit(port, pool, work, done, &tasks[i], &tasks[i].id);
        submitting = 0;
        check_rc("evexec_submit", rc);
        if (rc != 0)
            return 1;
        if (tasks[i].id == 0)
            problem("evexec_submit() gave job id 0");
        if (i > 0 && tasks[i].id == tasks[i - 1].id)
            problem("evexec_submit() gave two jobs the same id");
    }

    /* Returns 1 once no event is left: the port is gone, the timer deleted. */
    if (event_base_dispatch(base) < 0)
        problem("event_base_dispatch() failed");
    if (port != NULL)
        problem("event_base_dispatch() returned before every job was done");

    for (i = 0; i < NJOBS; i++) {
        const struct task *t = &tasks[i];

        if (t->ran != 1)
            problem("job %d: work function %s", i,
                    t->ran ? "ran on the loop thread or saw a stop" : "never ran");
        if (t->done != 1)
            problem("job %d: done callback ran %d times", i, t->done);
        if (t->status != 0)
            problem("job %d: status %d (%s)", i, t->status, evexec_errname(t->status));
        if (t->result != expected(t->input))
            problem("job %d: result %lu, expected %lu", i, (unsigned long)t->result,
                    (unsigned long)expected(t->input));
    }

    memset(&pstats, 0, sizeof pstats);
    pstats.size = sizeof pstats;
    check_rc("evexec_pool_stats", evexec_pool_stats(pool, &pstats));
    if (pstats.submitted != NJOBS || pstats.completed != NJOBS)
        problem("pool stats: %lu submitted, %lu completed, expected %d of each",
                (unsigned long)pstats.submitted, (unsigned long)pstats.completed, NJOBS);

    check_rc("evexec_pool_free", evexec_pool_free(pool));
    event_free(timeout_ev);
    event_base_free(base);

    if (failures != 0) {
        fprintf(stderr, "consumer: %d problem(s)\n", failures);
        return 1;
    }
    printf("consumer: ok\n");
    return 0;
}
