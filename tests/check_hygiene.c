/* SPDX-License-Identifier: MIT */
/*
 * Process hygiene. Every test here counts /proc/self/fd before and after
 * itself (helpers.c's checked fixture).
 *
 *  - fds: an exec'd child inherits no fd of evexec's (while it
 *    does inherit a control fd opened without O_CLOEXEC, so the test can
 *    tell).
 *  - signals: a storm of process-directed signals, sent while every worker
 *    sleeps in nanosleep(), is handled by libevent's signal events on the
 *    loop thread; no worker's sleep is ever interrupted (EINTR).
 *  - fork: fork() while a pool's workers are busy and jobs are queued. The
 *    child, which has only the forking thread, leaves the inherited handles
 *    alone (they are unusable there) and creates and uses a fresh base, pool
 *    and port; the parent goes on and delivers everything.
 *
 * Run as `check_hygiene --list-fds`, the program prints its open fds: the
 * exec test runs itself that way.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static int contains(const int *v, int n, int x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* fds                                                                      */

static char self_exe[PATH_MAX];

START_TEST(an_execd_child_inherits_no_evexec_fd)
{
    int before[256], after[256], nb, na;
    int port_fds[4], nport = 0, ctl[2], out[2];
    struct event_base *b = event_base_new();
    evexec_pool *pool;
    evexec_port *port;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;

    o.max_threads = 2;
    o.min_threads = 2;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    nb = fd_list(before, 256);
    ck_assert_int_eq(evexec_port_new(&port, b, NULL), 0);
    na = fd_list(after, 256);
    for (int i = 0; i < na; i++)
        if (!contains(before, nb, after[i]) && nport < 4)
            port_fds[nport++] = after[i];
    ck_assert_int_ge(nport, 1);

    /* Control: fds without O_CLOEXEC, which the child must see. */
    ck_assert_int_eq(pipe(ctl), 0);
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO); /* dup2 clears O_CLOEXEC on fd 1 */
        execl(self_exe, self_exe, "--list-fds", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char buf[4096];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof buf - 1 && (r = read(out[0], buf + len, sizeof buf - 1 - len)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        ck_assert_int_gt(r, 0);
        len += (size_t)r;
    }
    buf[len] = '\0';
    close(out[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed: %#x", status);

    int child[256], nc = 0;
    for (char *s = buf, *end; *s && nc < 256; s = end) {
        long v = strtol(s, &end, 10);
        if (end == s)
            break;
        child[nc++] = (int)v;
    }
    ck_assert_msg(contains(child, nc, ctl[0]) && contains(child, nc, ctl[1]),
                  "the child does not list the control fds %d, %d: \"%s\"", ctl[0], ctl[1], buf);
    for (int i = 0; i < nport; i++)
        ck_assert_msg(!contains(child, nc, port_fds[i]), "the port's fd %d leaked into exec: \"%s\"",
                      port_fds[i], buf);
    close(ctl[0]);
    close(ctl[1]);
    ck_assert_int_eq(evexec_port_free(port), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    event_base_dispatch(b);
    event_base_free(b);
}
END_TEST

/* Many ports and pools, created and freed in every order, jobs outstanding
 * at free time: the fixture's count must come back. */
START_TEST(create_and_free_in_every_order_leaves_no_fd)
{
    for (int round = 0; round < 8; round++) {
        struct event_base *b = event_base_new();
        evexec_pool *pool;
        evexec_port *ports[4];
        struct tally t;
        struct gate g;
        tally_init(&t);
        gate_init(&g, &t);
        ck_assert_int_eq(evexec_pool_new(&pool, NULL), 0);
        for (int i = 0; i < 4; i++)
            ck_assert_int_eq(evexec_port_new(&ports[i], b, NULL), 0);
        ck_assert_int_eq(evexec_submit(ports[round % 4], pool, park_work, gate_done, &g, NULL), 0);
        for (int i = 0; i < 4; i++)
            ck_assert_int_eq(evexec_submit(ports[i], pool, echo_work, tally_done, &t, NULL), 0);
        gate_wait_entered(&g, 1);
        if (round & 1) {
            for (int i = 0; i < 4; i++)
                ck_assert_int_eq(evexec_port_free(ports[(i + round) % 4]), 0);
            gate_release(&g, 1);
            ck_assert_int_eq(evexec_pool_free(pool), 0);
        } else {
            ck_assert_int_eq(evexec_pool_shutdown(pool, round & 2 ? EVEXEC_CANCEL : EVEXEC_DRAIN),
                             0);
            gate_release(&g, 1);
            ck_assert_int_eq(evexec_pool_free(pool), 0);
            run_until(b, &t.calls, 5);
            for (int i = 3; i >= 0; i--)
                ck_assert_int_eq(evexec_port_free(ports[i]), 0);
        }
        ck_assert_int_eq(event_base_dispatch(b), 1); /* 1: no events left */
        ck_assert_int_eq(t.calls, 5);
        event_base_free(b);
        gate_destroy(&g);
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* signals                                                                  */

static _Atomic int worker_eintr;
static int usr1, usr2;

static void *sleepy_work(evexec_job *job, void *arg)
{
    (void)job;
    for (int i = 0; i < 20; i++) {
        struct timespec ts = {0, 500000};
        if (nanosleep(&ts, NULL) < 0 && errno == EINTR)
            atomic_fetch_add(&worker_eintr, 1);
    }
    return arg;
}

static void on_usr(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    (void)arg;
    if (sig == SIGUSR1)
        usr1++;
    else
        usr2++;
}

static _Atomic int sender_done;

/* Sends signals to the process from a thread that blocks them: only the
 * loop thread (and any worker that failed to block them) can take them. */
static void *sender_main(void *arg)
{
    sigset_t all;
    (void)arg;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (int i = 0; i < 400; i++) {
        kill(getpid(), i % 2 ? SIGUSR1 : SIGUSR2);
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&sender_done, 1);
    return NULL;
}

START_TEST(a_signal_storm_reaches_the_loop_while_every_worker_sleeps)
{
    struct event_base *b = event_base_new();
    evexec_pool *pool;
    evexec_port *port;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct tally t;
    pthread_t th;
    int submitted = 0;

    tally_init(&t);
    o.max_threads = 4;
    o.min_threads = 4;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    ck_assert_int_eq(evexec_port_new(&port, b, NULL), 0);
    struct event *e1 = evsignal_new(b, SIGUSR1, on_usr, NULL);
    struct event *e2 = evsignal_new(b, SIGUSR2, on_usr, NULL);
    ck_assert_int_eq(event_add(e1, NULL), 0);
    ck_assert_int_eq(event_add(e2, NULL), 0);

    for (int i = 0; i < 8; i++, submitted++) /* every worker busy, more queued */
        ck_assert_int_eq(evexec_submit(port, pool, sleepy_work, tally_done, &t, NULL), 0);
    ck_assert_int_eq(pthread_create(&th, NULL, sender_main, NULL), 0);
    double deadline = now_s() + 30;
    while (!atomic_load(&sender_done)) {
        ck_assert_msg(now_s() < deadline, "the sender never finished");
        /* Keep the workers asleep while the storm lasts. */
        while (submitted - t.calls < 8) {
            ck_assert_int_eq(evexec_submit(port, pool, sleepy_work, tally_done, &t, NULL), 0);
            submitted++;
        }
        event_base_loop(b, EVLOOP_ONCE);
    }
    pthread_join(th, NULL);
    run_until(b, &t.calls, submitted);
    /* Pending signals are delivered by now; let the loop see them. */
    run_nonblock(b, 3);

    printf("check_hygiene: signal storm: %d jobs, SIGUSR1 events %d, SIGUSR2 events %d, "
           "EINTR in workers %d\n",
           submitted, usr1, usr2, atomic_load(&worker_eintr));
    ck_assert_int_eq(atomic_load(&worker_eintr), 0);
    ck_assert_int_gt(usr1, 0);
    ck_assert_int_gt(usr2, 0);
    ck_assert_int_eq(t.ok, submitted);
    ck_assert_int_eq(t.wrong_thread, 0);
    event_free(e1);
    event_free(e2);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(evexec_port_free(port), 0);
    event_base_dispatch(b);
    event_base_free(b);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* fork                                                                     */

static int child_calls;
static void child_done(int status, void *result, void *arg)
{
    (void)result;
    (void)arg;
    if (status == 0)
        child_calls++;
}

/* The forked child: no Check assertions here (they belong to the parent
 * test process); an exit code says what went wrong. */
static int fork_child(void)
{
    if (count_threads() != 1)
        return 10; /* fork() keeps only the calling thread */
    struct event_base *b = event_base_new();
    evexec_pool *pool;
    evexec_port *port;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    o.max_threads = 2;
    if (!b)
        return 11;
    if (evexec_pool_new(&pool, &o) != 0)
        return 12;
    if (evexec_port_new(&port, b, NULL) != 0)
        return 13;
    for (int i = 0; i < 100; i++)
        if (evexec_submit(port, pool, echo_work, child_done, NULL, NULL) != 0)
            return 14;
    double deadline = now_s() + 20;
    while (child_calls < 100) {
        if (now_s() > deadline)
            return 15;
        event_base_loop(b, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    if (evexec_pool_free(pool) != 0 || evexec_port_free(port) != 0)
        return 16;
    if (event_base_dispatch(b) != 1)
        return 17;
    event_base_free(b);
    return 0;
}

START_TEST(fork_while_a_pool_runs)
{
    struct event_base *b = event_base_new();
    evexec_pool *pool;
    evexec_port *port;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    struct tally t;
    struct gate g;

    tally_init(&t);
    gate_init(&g, &t);
    o.max_threads = 3;
    o.min_threads = 3;
    ck_assert_int_eq(evexec_pool_new(&pool, &o), 0);
    ck_assert_int_eq(evexec_port_new(&port, b, NULL), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(evexec_submit(port, pool, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 3);
    for (int i = 0; i < 20; i++) /* queued behind the busy workers */
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &t, NULL), 0);

    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(fork_child());

    /* The parent goes on as if nothing happened. */
    gate_release(&g, 3);
    run_until(b, &t.calls, 23);
    ck_assert_int_eq(t.ok, 23);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(evexec_submit(port, pool, echo_work, tally_done, &t, NULL), 0);
    run_until(b, &t.calls, 33);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the child failed: exit status %d (see fork_child)",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    ck_assert_int_eq(evexec_port_free(port), 0);
    event_base_dispatch(b);
    event_base_free(b);
    gate_destroy(&g);
}
END_TEST

/* ------------------------------------------------------------------------ */

static Suite *hygiene_suite(void)
{
    Suite *s = suite_create("hygiene");
    TCase *tc = add_tcase(s, "fds", 60, FX_FDS);
    tcase_add_test(tc, an_execd_child_inherits_no_evexec_fd);
    tcase_add_test(tc, create_and_free_in_every_order_leaves_no_fd);

    tc = add_tcase(s, "signals", 60, FX_FDS);
    tcase_add_test(tc, a_signal_storm_reaches_the_loop_while_every_worker_sleeps);

    tc = add_tcase(s, "fork", 60, FX_FDS);
    tcase_add_test(tc, fork_while_a_pool_runs);
    return s;
}

static int list_fds(void)
{
    int fds[1024], n = fd_list(fds, 1024);
    if (n < 0)
        return 1;
    for (int i = 0; i < n; i++)
        printf("%d ", fds[i]);
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--list-fds") == 0)
        return list_fds();
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0)
        return EXIT_FAILURE;
    self_exe[n] = '\0';
    return run_suite(hygiene_suite());
}
