/* SPDX-License-Identifier: MIT */
/*
 * Process hygiene and misuse.
 *
 *  - fds: every test here counts /proc/self/fd before and after itself (a
 *    checked fixture); an exec'd child inherits no fd of evexec's (while it
 *    does inherit a control fd opened without O_CLOEXEC, so the test can
 *    tell).
 *  - signals: a storm of process-directed signals, sent while every worker
 *    sleeps in nanosleep(), is handled by libevent's signal events on the
 *    loop thread; no worker's sleep is ever interrupted (EINTR).
 *  - fork: fork() while a pool's workers are busy and jobs are queued. The
 *    child, which has only the forking thread, leaves the inherited handles
 *    alone (they are unusable there) and creates and uses a fresh base, pool
 *    and port; the parent goes on and delivers everything.
 *  - misuse: the rows of docs/misuse.md that no other suite covers.
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

/* ------------------------------------------------------------------------ */
/* The fd count of every test                                               */

static int fds_before;

static void fd_setup(void)
{
    fds_before = count_fds();
    ck_assert_int_gt(fds_before, 0);
}

static void fd_teardown(void)
{
    ck_assert_msg(count_fds() == fds_before, "fds leaked: %d before the test, %d after",
                  fds_before, count_fds());
}

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
/* misuse (docs/misuse.md)                                                  */

static struct event_base *mb;
static evexec_port *mport;
static evexec_pool *mpool;

static void misuse_setup(void)
{
    fd_setup();
    mb = event_base_new();
    ck_assert_ptr_nonnull(mb);
    ck_assert_int_eq(evexec_pool_new(&mpool, NULL), 0);
    ck_assert_int_eq(evexec_port_new(&mport, mb, NULL), 0);
}

static void misuse_teardown(void)
{
    ck_assert_int_eq(evexec_pool_free(mpool), 0);
    ck_assert_int_eq(evexec_port_free(mport), 0);
    event_base_dispatch(mb);
    event_base_free(mb);
    fd_teardown();
}

/* An id names a job of one port: given to another port, it must not reach
 * that port's job that happens to have the same slot and number. */
START_TEST(an_id_of_another_port_is_enoent)
{
    struct tally t;
    struct gate g;
    evexec_port *other;
    evexec_job_id a = 0, b = 0;
    struct evexec_pool_opts o = EVEXEC_POOL_OPTS_INIT;
    evexec_pool *one;

    tally_init(&t);
    gate_init(&g, &t);
    o.max_threads = 1;
    ck_assert_int_eq(evexec_pool_new(&one, &o), 0);
    ck_assert_int_eq(evexec_port_new(&other, mb, NULL), 0);
    ck_assert_int_eq(evexec_submit(mport, one, park_work, gate_done, &g, NULL), 0);
    gate_wait_entered(&g, 1);
    /* The same history on both ports, all queued behind the parked worker:
     * each port's second job gets the same slot and number. */
    ck_assert_int_eq(evexec_submit(other, one, echo_work, tally_done, &t, NULL), 0);
    ck_assert_int_eq(evexec_submit(mport, one, echo_work, tally_done, &t, &a), 0);
    ck_assert_int_eq(evexec_submit(other, one, echo_work, tally_done, &t, &b), 0);
    int rc = evexec_cancel(other, a);
    gate_release(&g, 1);
    run_until(mb, &t.calls, 4);
    ck_assert_int_eq(evexec_pool_free(one), 0);
    ck_assert_int_eq(evexec_port_free(other), 0);
    gate_destroy(&g);
    ck_assert_msg(rc == -ENOENT, "cancel(other port, an id of this port) = %s (ids %#llx, %#llx)%s",
                  evexec_errname(rc), (unsigned long long)a, (unsigned long long)b,
                  rc == 0 ? ": it cancelled the other port's job" : "");
    ck_assert_int_eq(t.cancelled, 0);
}
END_TEST

struct from_worker {
    evexec_port *port;
    evexec_pool *pool;
    int submit, cancel, port_free, stats;
};

static void *call_loop_functions(evexec_job *job, void *arg)
{
    struct from_worker *w = arg;
    struct evexec_port_stats s;
    (void)job;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    w->submit = evexec_submit(w->port, w->pool, echo_work, NULL, NULL, NULL);
    w->cancel = evexec_cancel(w->port, 1);
    w->stats = evexec_port_stats(w->port, &s);
    w->port_free = evexec_port_free(w->port);
    return w;
}

static int worker_calls_done;
static void count_done(int status, void *result, void *arg)
{
    (void)status;
    (void)result;
    (void)arg;
    worker_calls_done++;
}

START_TEST(loop_thread_calls_from_a_work_function_are_eperm)
{
    struct from_worker w = {mport, mpool, 1, 1, 1, 1};
    worker_calls_done = 0;
    ck_assert_int_eq(evexec_submit(mport, mpool, call_loop_functions, count_done, &w, NULL), 0);
    run_until(mb, &worker_calls_done, 1);
    ck_assert_int_eq(w.submit, -EPERM);
    ck_assert_int_eq(w.cancel, -EPERM);
    ck_assert_int_eq(w.stats, -EPERM);
    ck_assert_int_eq(w.port_free, -EPERM);
    ck_assert_uint_eq(pool_stats(mpool).submitted, 1);
}
END_TEST

static _Atomic int ran_without_done;
static void *note_run(evexec_job *job, void *arg)
{
    (void)job;
    atomic_fetch_add(&ran_without_done, 1);
    return arg;
}

static int port_idle(void *arg)
{
    (void)arg;
    event_base_loop(mb, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    return port_stats(mport).outstanding == 0;
}

START_TEST(a_null_done_callback_runs_the_work_and_calls_nothing)
{
    atomic_store(&ran_without_done, 0);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(evexec_submit(mport, mpool, note_run, NULL, NULL, NULL), 0);
    ck_assert_uint_eq(port_stats(mport).outstanding, 10);
    wait_for(port_idle, NULL);
    ck_assert_int_eq(atomic_load(&ran_without_done), 10);
    ck_assert_uint_eq(port_stats(mport).delivered, 10);
}
END_TEST

START_TEST(any_int_has_a_message_and_a_name)
{
    static const int odd[] = {INT_MIN, INT_MIN + 1, -1, 1, 9999, INT_MAX, -EWOULDBLOCK};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        ck_assert_ptr_nonnull(evexec_strerror(odd[i]));
        ck_assert_ptr_nonnull(evexec_errname(odd[i]));
    }
    ck_assert_str_eq(evexec_strerror(INT_MIN), "unknown error");
    ck_assert_str_eq(evexec_errname(INT_MIN), "UNKNOWN");
    ck_assert_str_eq(evexec_errname(INT_MAX), "UNKNOWN");
}
END_TEST

START_TEST(absurd_sizes_are_einval)
{
    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    struct evexec_port_opts qo = EVEXEC_PORT_OPTS_INIT;
    struct evexec_pool_stats ps;
    struct evexec_port_stats qs;
    evexec_pool *p = NULL;
    evexec_port *q = NULL;

    po.size = SIZE_MAX;
    ck_assert_int_eq(evexec_pool_new(&p, &po), -EINVAL);
    po = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    po.max_queued = SIZE_MAX;
    ck_assert_int_eq(evexec_pool_new(&p, &po), -EINVAL);
    po = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    po.stack_size = SIZE_MAX;
    ck_assert_int_eq(evexec_pool_new(&p, &po), -EINVAL);
    po = (struct evexec_pool_opts)EVEXEC_POOL_OPTS_INIT;
    po.max_threads = UINT_MAX;
    ck_assert_int_eq(evexec_pool_new(&p, &po), -EINVAL);
    qo.size = SIZE_MAX;
    ck_assert_int_eq(evexec_port_new(&q, mb, &qo), -EINVAL);
    qo = (struct evexec_port_opts)EVEXEC_PORT_OPTS_INIT;
    qo.max_batch = UINT_MAX;
    ck_assert_int_eq(evexec_port_new(&q, mb, &qo), -EINVAL);
    qo.max_batch = 0;
    qo.priority = INT_MAX;
    ck_assert_int_eq(evexec_port_new(&q, mb, &qo), -EINVAL);
    ck_assert_ptr_null(p);
    ck_assert_ptr_null(q);
    memset(&ps, 0, sizeof ps);
    memset(&qs, 0, sizeof qs);
    ps.size = SIZE_MAX;
    qs.size = SIZE_MAX;
    ck_assert_int_eq(evexec_pool_stats(mpool, &ps), -EINVAL);
    ck_assert_int_eq(evexec_port_stats(mport, &qs), -EINVAL);
    ck_assert_int_eq(evexec_pool_shutdown(mpool, INT_MIN), -EINVAL);
    ck_assert_int_eq(evexec_pool_shutdown(mpool, INT_MAX), -EINVAL);
    ck_assert_int_eq(evexec_cancel(mport, UINT64_MAX), -ENOENT);
}
END_TEST

/* ------------------------------------------------------------------------ */

static Suite *hygiene_suite(void)
{
    Suite *s = suite_create("hygiene");
    TCase *tc = tcase_create("fds");
    tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, an_execd_child_inherits_no_evexec_fd);
    tcase_add_test(tc, create_and_free_in_every_order_leaves_no_fd);
    suite_add_tcase(s, tc);

    tc = tcase_create("signals");
    tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_signal_storm_reaches_the_loop_while_every_worker_sleeps);
    suite_add_tcase(s, tc);

    tc = tcase_create("fork");
    tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fork_while_a_pool_runs);
    suite_add_tcase(s, tc);

    tc = tcase_create("misuse");
    tcase_add_checked_fixture(tc, misuse_setup, misuse_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, an_id_of_another_port_is_enoent);
    tcase_add_test(tc, loop_thread_calls_from_a_work_function_are_eperm);
    tcase_add_test(tc, a_null_done_callback_runs_the_work_and_calls_nothing);
    tcase_add_test(tc, any_int_has_a_message_and_a_name);
    tcase_add_test(tc, absurd_sizes_are_einval);
    suite_add_tcase(s, tc);
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
    SRunner *sr = srunner_create(hygiene_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
