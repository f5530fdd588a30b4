/* SPDX-License-Identifier: MIT */
/*
 * crashy: isolating a library call that crashes or hangs.
 *
 * A "parser" from a legacy library segfaults on some inputs and loops
 * forever on others. Run in the daemon, either would take the daemon down
 * or freeze it. Run in a process pool, each bad input fails only its own
 * job, with a typed outcome (-EOWNERDEAD and the signal; -ETIMEDOUT after
 * its 200 ms deadline, its worker killed), the worker is replaced, and
 * the daemon keeps serving: its loop ticks throughout and good inputs
 * keep being parsed.
 *
 * Exit status 0 if every input got the outcome expected of it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <evexec.h>

/* The legacy parser: counts the words of its input... unless. */
static int legacy_parse(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    const char *s = in;
    (void)state;
    if (len >= 5 && memcmp(s, "crash", 5) == 0) {
        volatile int *volatile p = NULL;
        return *p; /* a bug on this input */
    }
    if (len >= 4 && memcmp(s, "hang", 4) == 0)
        for (;;) /* another one */
            ;
    int words = 0;
    for (size_t i = 0; i < len; i++)
        words += (s[i] != ' ') && (i == 0 || s[i - 1] == ' ');
    int *o = evexec_proc_output(out, sizeof *o);
    if (!o)
        return ENOMEM;
    *o = words;
    return 0;
}

static const struct {
    const char *text;
    int expect;
} inputs[] = {
    {"the quick brown fox", 0},
    {"crash me", -EOWNERDEAD},
    {"jumps over", 0},
    {"hang forever", -ETIMEDOUT},
    {"the lazy dog", 0},
    {"crash again", -EOWNERDEAD},
    {"still serving", 0},
};
#define NINPUTS (int)(sizeof inputs / sizeof inputs[0])

struct daemon {
    struct event_base *base;
    evexec_port *port;
    evexec_procpool *pool;
    struct event *tick;
    int ticks, done, wrong;
};

struct request {
    struct daemon *d;
    int n;
};

static void on_parsed(int status, const struct evexec_proc_result *res, void *arg)
{
    struct request *r = arg;
    struct daemon *d = r->d;
    int words = 0;
    if (status == 0 && res->out_len == sizeof words)
        memcpy(&words, res->out, sizeof words);
    if (status == 0)
        printf("  \"%s\": %d words (pid %d)\n", inputs[r->n].text, words, res->pid);
    else if (status == -EOWNERDEAD)
        printf("  \"%s\": worker crashed (signal %d, %s); the daemon is fine\n", inputs[r->n].text,
               res->signal, strsignal(res->signal));
    else
        printf("  \"%s\": %s\n", inputs[r->n].text, evexec_strerror(status));
    if (status != inputs[r->n].expect) {
        printf("    unexpected: %s\n", evexec_errname(status));
        d->wrong++;
    }
    free(r);
    if (++d->done == NINPUTS) {
        event_del(d->tick);
        evexec_port_free(d->port);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)fd, (void)what;
    d->ticks++;
}

int main(void)
{
    struct daemon d = {0};
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    struct timeval ms10 = {0, 10000};
    int rc;

    o.max_procs = 2;
    o.name = "parser";
    /* First, while the program has one thread. */
    if ((rc = evexec_procpool_new(&d.pool, &o)) < 0) {
        fprintf(stderr, "evexec_procpool_new: %s\n", evexec_strerror(rc));
        return 1;
    }
    d.base = event_base_new();
    if (!d.base || (rc = evexec_port_new(&d.port, d.base, NULL)) < 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    d.tick = event_new(d.base, -1, EV_PERSIST, on_tick, &d);
    event_add(d.tick, &ms10);
    jo.timeout_ms = 200;
    printf("parsing %d inputs in worker processes, 200 ms deadline each:\n", NINPUTS);
    for (int i = 0; i < NINPUTS; i++) {
        struct request *r = malloc(sizeof *r);
        if (!r)
            return 1;
        r->d = &d;
        r->n = i;
        rc = evexec_procpool_submit(d.port, d.pool, legacy_parse, inputs[i].text,
                                    strlen(inputs[i].text), on_parsed, r, &jo, NULL);
        if (rc < 0) {
            fprintf(stderr, "submit: %s\n", evexec_strerror(rc));
            return 1;
        }
    }
    event_base_dispatch(d.base);

    struct evexec_procpool_stats st = {.size = sizeof st};
    evexec_procpool_stats(d.pool, &st);
    printf("the loop ticked %d times meanwhile; pool: %llu completed, %llu crashed, "
           "%llu past deadline, %llu workers started\n",
           d.ticks, (unsigned long long)st.completed, (unsigned long long)st.crashed,
           (unsigned long long)st.killed_deadline, (unsigned long long)st.spawned);
    evexec_procpool_free(d.pool);
    event_free(d.tick);
    event_base_free(d.base);
    return d.wrong || d.done != NINPUTS ? 1 : 0;
}
