/* SPDX-License-Identifier: MIT */
/*
 * Process pools under a random storm: jobs that succeed, fail, segfault,
 * exit or spin past a deadline; cancels of queued and running jobs;
 * workers killed from outside with SIGKILL, and in a third of the rounds
 * the fork server (every job not finished then ends -ENOTRECOVERABLE, and
 * submits fail so); shutdowns (DRAIN, CANCEL) and frees at random moments. Every accepted job gets exactly one callback,
 * on the loop thread, with a status its kind allows; a rejected one gets
 * none; an echo that succeeds returns its input. After each round: no
 * child process left, no fd leaked.
 *
 * EVEXEC_STRESS_SEED (printed), EVEXEC_PROCPOOL_STRESS_ROUNDS (default 20).
 */
#define _GNU_SOURCE
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "procpool-work.h"

#define MAX_JOBS 400

enum kind { K_ECHO, K_FAIL, K_SEGV, K_EXIT, K_SPIN, NKINDS };

static const evexec_proc_work_fn works[NKINDS] = {w_echo, w_fail, w_segv, w_exit3, w_spin};

struct job {
    struct round *r;
    int kind, calls, status, accepted;
    evexec_job_id id;
    unsigned payload;
};

struct round {
    struct event_base *base;
    evexec_port *port;
    evexec_procpool *pool;
    struct event *timer;
    pthread_t loop;
    unsigned seed;
    struct job jobs[MAX_JOBS];
    int njobs, accepted, done, wrong;
    int step, shutdown_at, free_at, freed;
    int server_kill_at; /* the step that kills the fork server, or -1 */
};

static void on_done(int status, const struct evexec_proc_result *res, void *arg)
{
    struct job *j = arg;
    struct round *r = j->r;
    j->calls++;
    j->status = status;
    r->done++;
    r->wrong |= !pthread_equal(pthread_self(), r->loop);
    if (status == 0 && j->kind == K_ECHO &&
        (res->out_len != sizeof j->payload || memcmp(res->out, &j->payload, sizeof j->payload)))
        r->wrong |= 2;
}

static void submit_some(struct round *r, int n)
{
    for (int i = 0; i < n && r->njobs < MAX_JOBS; i++) {
        struct job *j = &r->jobs[r->njobs++];
        struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
        unsigned pick = rnd(&r->seed, 100);
        j->r = r;
        j->kind = pick < 70 ? K_ECHO : pick < 80 ? K_FAIL : pick < 88 ? K_SEGV
                  : pick < 96 ? K_EXIT : K_SPIN;
        j->payload = rnd(&r->seed, 1u << 30);
        jo.priority = (int)rnd(&r->seed, 3) - 1;
        if (j->kind == K_SPIN || rnd(&r->seed, 10) == 0)
            jo.timeout_ms = 10 + rnd(&r->seed, 40);
        int rc = evexec_procpool_submit(r->port, r->pool, works[j->kind], &j->payload,
                                        sizeof j->payload, on_done, j, &jo, &j->id);
        if (rc == 0) {
            j->accepted = 1;
            r->accepted++;
        } else if (rc != -EAGAIN && rc != -ESHUTDOWN && rc != -ENOTRECOVERABLE) {
            ck_abort_msg("submit: %d", rc);
        }
    }
}

/* Kills a random worker: a grandchild of ours (a child of the server);
 * or, with kill_server set, the fork server itself. */
static void kill_a_worker(struct round *r, int kill_server)
{
    static struct proc_entry all[4096];
    pid_t me = getpid(), server = 0, workers[64];
    int n = 0, na = list_procs(all, 4096);
    for (int i = 0; i < na; i++)
        if (all[i].parent == me && all[i].state != 'Z')
            server = all[i].pid;
    if (kill_server) {
        if (server)
            kill(server, SIGKILL);
        return;
    }
    for (int i = 0; i < na && n < 64; i++)
        if (server && all[i].parent == server && all[i].state != 'Z')
            workers[n++] = all[i].pid;
    if (n)
        kill(workers[rnd(&r->seed, (unsigned)n)], SIGKILL);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct round *r = arg;
    (void)fd, (void)what;
    r->step++;
    if (!r->freed) {
        unsigned act = rnd(&r->seed, 10);
        if (act < 5)
            submit_some(r, 1 + (int)rnd(&r->seed, 20));
        else if (act < 8 && r->njobs) {
            struct job *j = &r->jobs[rnd(&r->seed, (unsigned)r->njobs)];
            if (j->accepted) {
                int rc = evexec_cancel(r->port, j->id);
                ck_assert(rc == 0 || rc == -EBUSY || rc == -EALREADY || rc == -ENOENT);
            }
        } else {
            kill_a_worker(r, 0);
        }
        if (r->step == r->server_kill_at)
            kill_a_worker(r, 1);
        if (r->step == r->shutdown_at)
            evexec_procpool_shutdown(r->pool, (int)rnd(&r->seed, 2));
        if (r->step >= r->free_at) {
            evexec_procpool_free(r->pool);
            r->freed = 1;
        }
    }
    if (r->freed && r->done == r->accepted) {
        event_del(r->timer);
        event_base_loopbreak(r->base); /* the port's event stays */
        return;
    }
    if (r->freed && r->step > r->free_at + 2500) {
        /* Some callbacks never came: name them. */
        for (int i = 0; i < r->njobs; i++)
            if (r->jobs[i].accepted && !r->jobs[i].calls)
                printf("job %d kind %d: no callback\n", i, r->jobs[i].kind);
        ck_abort_msg("%d callbacks missing", r->accepted - r->done);
    }
}

static int allowed(const struct job *j)
{
    switch (j->status) {
    case -ECANCELED:
    case -EOWNERDEAD:      /* killed from outside */
    case -ETIMEDOUT:
    case -ENOTRECOVERABLE: /* its worker was killed before it was ready,
                              or the fork server was */
        return 1;
    case 0: return j->kind == K_ECHO;
    case -EREMOTEIO: return j->kind == K_FAIL;
    case -ECHILD: return j->kind == K_EXIT;
    default: return 0;
    }
}

START_TEST(test_storm)
{
    unsigned seed = stress_seed() + (unsigned)_i;
    struct round *r = calloc(1, sizeof *r);
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    struct timeval tick = {0, 2000};
    int fds = count_fds();

    printf("check_procpool_stress: round %d seed %u\n", _i, seed);
    r->seed = seed;
    r->loop = pthread_self();
    o.max_procs = 1 + rnd(&r->seed, 4);
    o.min_procs = rnd(&r->seed, o.max_procs + 1);
    o.max_queued = 16 + rnd(&r->seed, 200);
    o.recycle_jobs = rnd(&r->seed, 2) ? 0 : 1 + rnd(&r->seed, 10);
    o.idle_timeout_ms = 5 + rnd(&r->seed, 50);
    r->shutdown_at = 20 + (int)rnd(&r->seed, 100);
    r->free_at = r->shutdown_at + (int)rnd(&r->seed, 100);
    r->server_kill_at = rnd(&r->seed, 3) ? -1 : 1 + (int)rnd(&r->seed, (unsigned)r->free_at);
    ck_assert_ptr_nonnull(r->base = event_base_new());
    ck_assert_int_eq(evexec_port_new(&r->port, r->base, NULL), 0);
    ck_assert_int_eq(evexec_procpool_new(&r->pool, &o), 0);
    r->timer = event_new(r->base, -1, EV_PERSIST, on_timer, r);
    event_add(r->timer, &tick);
    submit_some(r, 30);
    event_base_dispatch(r->base);

    int by[6] = {0}; /* ok, error, cancelled, crashed or exited, deadline, other */
    for (int i = 0; i < r->njobs; i++) {
        int st = r->jobs[i].status;
        if (r->jobs[i].accepted)
            by[st == 0 ? 0 : st == -EREMOTEIO ? 1 : st == -ECANCELED ? 2
               : st == -EOWNERDEAD || st == -ECHILD ? 3 : st == -ETIMEDOUT ? 4 : 5]++;
    }
    printf("  %d jobs accepted of %d: %d ok, %d failed, %d cancelled, %d crashed, "
           "%d past deadline, %d other\n", r->accepted, r->njobs, by[0], by[1], by[2], by[3],
           by[4], by[5]);
    ck_assert_int_eq(r->wrong, 0);
    ck_assert_int_eq(r->done, r->accepted);
    for (int i = 0; i < r->njobs; i++) {
        struct job *j = &r->jobs[i];
        ck_assert_int_eq(j->calls, j->accepted ? 1 : 0);
        if (j->accepted)
            ck_assert_msg(allowed(j), "job %d kind %d: status %d", i, j->kind, j->status);
    }
    event_free(r->timer);
    evexec_port_free(r->port);
    event_base_dispatch(r->base);
    event_base_free(r->base);
    ck_assert_int_eq(count_fds(), fds);
    static struct proc_entry all[4096];
    int na = list_procs(all, 4096);
    ck_assert_int_lt(na, 4096);
    for (int i = 0; i < na; i++)
        ck_assert_msg(all[i].parent != getpid(), "child %d left (state %c)", (int)all[i].pid,
                      all[i].state);
    free(r);
}
END_TEST

int main(void)
{
    const char *e = getenv("EVEXEC_PROCPOOL_STRESS_ROUNDS");
    int rounds = e ? atoi(e) : 20;
    Suite *s = suite_create("procpool_stress");
    TCase *tc = tcase_create("storm");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_storm, 0, rounds);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
