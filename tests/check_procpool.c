/* SPDX-License-Identifier: MIT */
/*
 * Process pools: every outcome produced on purpose (success, the work's
 * error, cancelled queued and running, deadline, segfault, abort, exit,
 * memory limit returned and crashed, CPU limit, init failure, a kill from
 * outside, a grandchild that must die with its worker), payloads inline
 * and through memfds, the pool serving on after each fault, process and
 * fd hygiene (no daemon fd in any worker, no zombie or orphan, no leaked
 * fd after free), shutdowns, and bad arguments; the same outcomes for
 * jobs handed straight to an idle worker, and a hand-off racing the
 * worker's death; jobs sent ahead to a busy worker (cancelled, past their
 * deadline, moved to a free worker, overtaken by a higher priority, back
 * from a dead worker, with recycling by job count); the fork server
 * killed from outside (idle, with jobs running and queued, with no worker
 * ready, then freed or shut down).
 * Pools are made inside each test (Check forks every test).
 */
#define _GNU_SOURCE
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "procpool-work.h"

/* --- work functions (in the program: in the fork server's image) --------- */

static int w_pid(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)in, (void)len, (void)state;
    int *p = evexec_proc_output(out, sizeof(int));
    *p = (int)getpid();
    return 0;
}

/* Writes its pid (and, with a grandchild, the grandchild's) to the file
 * named by the input, then waits forever. */
static int w_note_and_hang(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)out, (void)state;
    char path[256], tmp[300], buf[64];
    int grandchild = ((const char *)in)[0] == 'G';
    size_t plen = strnlen((const char *)in + 1, len - 1); /* NUL-padded or not */
    if (plen >= sizeof path)
        return 1;
    memcpy(path, (const char *)in + 1, plen);
    path[plen] = '\0';
    pid_t g = 0;
    if (grandchild && (g = fork()) == 0)
        for (;;)
            pause();
    int n = snprintf(buf, sizeof buf, "%d %d\n", (int)getpid(), (int)g);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, buf, (size_t)n) != n)
        return 1;
    close(fd);
    rename(tmp, path); /* appears whole */
    for (;;)
        pause();
}

/* Writes its pid to the file named by the input (as w_note_and_hang), then
 * waits while the file of that name with ".gate" added exists; outputs its
 * pid. */
static int w_note_and_wait(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)state;
    char path[256], tmp[300], buf[32];
    size_t plen = strnlen(in, len);
    if (plen >= sizeof path)
        return 1;
    memcpy(path, in, plen);
    path[plen] = '\0';
    int n = snprintf(buf, sizeof buf, "%d 0\n", (int)getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, buf, (size_t)n) != n)
        return 1;
    close(fd);
    rename(tmp, path);
    snprintf(tmp, sizeof tmp, "%s.gate", path);
    while (access(tmp, F_OK) == 0)
        usleep(1000);
    int *p = evexec_proc_output(out, sizeof(int));
    *p = (int)getpid();
    return 0;
}

/* Where w_hog's blocks escape to: a compiler may otherwise drop a malloc()
 * whose memory nothing reads (clang -O2 does), and the loop never ends. */
static void *volatile hog_sink;

/* Allocates 1 MiB at a time, touching it, until an allocation fails; then
 * returns 5, or with input "crash", dereferences the NULL. */
__attribute__((unused)) static int w_hog(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)out, (void)state;
    for (;;) {
        char *p = malloc(1 << 20);
        hog_sink = p;
        if (!p) {
            if (len && ((const char *)in)[0] == 'c')
                *(volatile char *)p = 1;
            return 5;
        }
        memset(p, 1, 1 << 20);
    }
}

static int w_sleep_pid(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    usleep(5000);
    return w_pid(in, len, out, state);
}

/* The input's length and the sum of its bytes. */
static int w_sum(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)state;
    uint64_t r[2] = {len, 0};
    for (size_t i = 0; i < len; i++)
        r[1] += ((const unsigned char *)in)[i];
    void *p = evexec_proc_output(out, sizeof r);
    if (!p)
        return 99;
    memcpy(p, r, sizeof r);
    return 0;
}

static int init_fails(void *hook_arg, void **state)
{
    (void)state;
    return hook_arg ? 9 : 0;
}

/* --- the daemon side ----------------------------------------------------- */

struct outcome {
    pthread_t loop;
    int calls, status, wrong_thread;
    struct evexec_proc_result res;
    unsigned char out[256];
    size_t out_len;
    int *counter;
};

static void on_done(int status, const struct evexec_proc_result *res, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->status = status;
    o->res = *res;
    o->wrong_thread |= !pthread_equal(pthread_self(), o->loop);
    o->out_len = res->out_len;
    if (res->out_len && res->out_len <= sizeof o->out)
        memcpy(o->out, res->out, res->out_len);
    o->res.out = NULL;
    if (o->counter)
        ++*o->counter;
}

/* When it started (CLOCK_MONOTONIC) and where: start order, whatever
 * order the callbacks run in (a port delivers what came home together in
 * submission order). */
struct stamp {
    uint64_t ns;
    int pid;
};

static int w_stamp(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)in, (void)len, (void)state;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    struct stamp *p = evexec_proc_output(out, sizeof *p);
    p->ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    p->pid = (int)getpid();
    return 0;
}

static struct stamp stamp_of(const struct outcome *oc)
{
    struct stamp st;
    ck_assert_uint_eq(oc->out_len, sizeof st);
    memcpy(&st, oc->out, sizeof st);
    return st;
}

struct env {
    struct event_base *base;
    evexec_port *port;
    evexec_procpool *pool;
    int fds;
    int done;
};

static void env_open(struct env *e, const struct evexec_procpool_opts *o)
{
    e->fds = count_fds();
    e->done = 0;
    ck_assert_ptr_nonnull(e->base = event_base_new());
    ck_assert_int_eq(evexec_port_new(&e->port, e->base, NULL), 0);
    ck_assert_int_eq(evexec_procpool_new(&e->pool, o), 0);
}

static void oc_init(struct outcome *oc, struct env *e)
{
    memset(oc, 0, sizeof *oc);
    oc->loop = pthread_self();
    oc->counter = &e->done;
}

/* Submits and runs the loop until the callback; returns the status. */
static int run_one(struct env *e, evexec_proc_work_fn fn, const void *in, size_t len,
                   const struct evexec_job_opts *jo, struct outcome *oc)
{
    oc_init(oc, e);
    int target = e->done + 1;
    ck_assert_int_eq(evexec_procpool_submit(e->port, e->pool, fn, in, len, on_done, oc, jo, NULL),
                     0);
    run_until(e->base, &e->done, target);
    ck_assert_int_eq(oc->calls, 1);
    ck_assert_int_eq(oc->wrong_thread, 0);
    return oc->status;
}

/* The pool still serves: an echo round trip. */
static void still_serves(struct env *e)
{
    struct outcome oc;
    ck_assert_int_eq(run_one(e, w_echo, "ping", 4, NULL, &oc), 0);
    ck_assert_uint_eq(oc.out_len, 4);
    ck_assert_int_eq(memcmp(oc.out, "ping", 4), 0);
}

/* Processes whose parent is ppid, up to max; returns how many. */
static int children_of(pid_t ppid, pid_t *out, int max)
{
    static struct proc_entry all[4096];
    int n = 0, na = list_procs(all, 4096);
    ck_assert_int_lt(na, 4096);
    for (int i = 0; i < na; i++)
        if (all[i].parent == ppid && n < max)
            out[n++] = all[i].pid;
    return n;
}

/* 1 if pid is gone or a zombie. */
static int dead(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

static int dead_pred(void *arg)
{
    return dead(*(pid_t *)arg);
}

/* The soft RLIMIT_NOFILE of pid. */
static int fd_limit(pid_t pid)
{
    char path[64], line[256];
    int lim = 1 << 20;
    snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Max open files", 14) == 0)
            sscanf(line + 14, "%d", &lim);
    fclose(f);
    return lim;
}

static void env_close(struct env *e)
{
    pid_t kids[16];
    evexec_procpool_free(e->pool);
    /* No zombie, no orphan of ours: the fork server and its workers are
     * reaped. */
    ck_assert_int_eq(children_of(getpid(), kids, 16), 0);
    evexec_port_free(e->port);
    event_base_dispatch(e->base);
    event_base_free(e->base);
    ck_assert_int_eq(count_fds(), e->fds);
}

/* The pool's stats; fails the test if they cannot be read. */
static struct evexec_procpool_stats pp_stats(evexec_procpool *pool)
{
    struct evexec_procpool_stats st = {.size = sizeof st};
    ck_assert_int_eq(evexec_procpool_stats(pool, &st), 0);
    return st;
}

/* --- outcomes ------------------------------------------------------------ */

START_TEST(test_success_and_error)
{
    struct env e;
    struct outcome oc;
    env_open(&e, NULL);
    ck_assert_int_eq(run_one(&e, w_echo, "hello", 5, NULL, &oc), 0);
    ck_assert_uint_eq(oc.out_len, 5);
    ck_assert_int_eq(memcmp(oc.out, "hello", 5), 0);
    ck_assert_int_ne(oc.res.pid, 0);
    ck_assert_int_ne(oc.res.pid, getpid());
    ck_assert_int_eq(run_one(&e, w_echo, NULL, 0, NULL, &oc), 0);
    ck_assert_uint_eq(oc.out_len, 0);
    ck_assert_int_eq(run_one(&e, w_fail, NULL, 0, NULL, &oc), -EREMOTEIO);
    ck_assert_int_eq(oc.res.work_error, 7);
    ck_assert_uint_eq(oc.out_len, 4);
    ck_assert_str_eq((char *)oc.out, "why");
    still_serves(&e);
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_eq(st.submitted, 4);
    ck_assert_uint_eq(st.completed, 4);
    ck_assert_uint_eq(st.crashed, 0);
    env_close(&e);
}
END_TEST

START_TEST(test_crashes)
{
    struct env e;
    struct outcome oc;
    env_open(&e, NULL);
    ck_assert_int_eq(run_one(&e, w_segv, NULL, 0, NULL, &oc), -EOWNERDEAD);
    ck_assert_int_eq(oc.res.signal, SIGSEGV);
    still_serves(&e);
    ck_assert_int_eq(run_one(&e, w_abort, NULL, 0, NULL, &oc), -EOWNERDEAD);
    ck_assert_int_eq(oc.res.signal, SIGABRT);
    still_serves(&e);
    ck_assert_int_eq(run_one(&e, w_exit3, NULL, 0, NULL, &oc), -ECHILD);
    /* Under valgrind --error-exitcode=1 the worker's exit runs a leak check
     * that finds the daemon's memory, which only the daemon's threads
     * reached, and turns the code into 1. */
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload") && oc.res.exit_code == 1)
        oc.res.exit_code = 3;
    ck_assert_int_eq(oc.res.exit_code, 3);
    ck_assert_int_eq(oc.res.signal, 0);
    still_serves(&e);
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_eq(st.crashed, 3);
    ck_assert_uint_ge(st.respawns, 1);
    env_close(&e);
}
END_TEST

static void tmp_path(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/evexec-procpool-%d-%s", (int)getpid(), tag);
    unlink(buf);
}

static int file_exists(void *arg)
{
    return access(arg, F_OK) == 0;
}

/* Submits w_note_and_hang, waits for its note; returns the worker's and
 * grandchild's pids. */
static evexec_job_id start_hang(struct env *e, char mode, const char *path,
                                const struct evexec_job_opts *jo, struct outcome *oc, pid_t *worker,
                                pid_t *grandchild)
{
    char in[256];
    evexec_job_id id;
    in[0] = mode;
    size_t n = strlen(path);
    memcpy(in + 1, path, n);
    oc_init(oc, e);
    ck_assert_int_eq(
        evexec_procpool_submit(e->port, e->pool, w_note_and_hang, in, n + 1, on_done, oc, jo, &id),
        0);
    wait_for(file_exists, (void *)path);
    FILE *f = fopen(path, "r");
    int a = 0, b = 0;
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%d %d", &a, &b), 2);
    fclose(f);
    unlink(path);
    *worker = a;
    if (grandchild)
        *grandchild = b;
    return id;
}

START_TEST(test_deadline_kills_group)
{
    struct env e;
    struct outcome oc;
    char path[128];
    pid_t worker, grandchild;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    env_open(&e, NULL);

    /* A spinning job past its deadline. */
    jo.timeout_ms = 100;
    ck_assert_int_eq(run_one(&e, w_spin, NULL, 0, &jo, &oc), -ETIMEDOUT);
    still_serves(&e);

    /* A job that forked a grandchild and hangs: both die. */
    tmp_path(path, sizeof path, "gc");
    jo.timeout_ms = 300;
    start_hang(&e, 'G', path, &jo, &oc, &worker, &grandchild);
    ck_assert_int_gt(grandchild, 0);
    ck_assert_int_eq(dead(grandchild), 0);
    run_until(e.base, &e.done, e.done + 1);
    ck_assert_int_eq(oc.status, -ETIMEDOUT);
    wait_for(dead_pred, &grandchild);
    wait_for(dead_pred, &worker);
    still_serves(&e);
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_eq(st.killed_deadline, 2);
    env_close(&e);
}
END_TEST

START_TEST(test_cancel)
{
    struct env e;
    struct outcome run, queued;
    char path[128];
    pid_t worker;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    env_open(&e, &o);
    tmp_path(path, sizeof path, "cancel");
    evexec_job_id rid = start_hang(&e, 'H', path, NULL, &run, &worker, NULL);
    evexec_job_id qid;
    oc_init(&queued, &e);
    ck_assert_int_eq(
        evexec_procpool_submit(e.port, e.pool, w_echo, "q", 1, on_done, &queued, NULL, &qid), 0);
    /* Queued behind the hanging job: dropped, never run. */
    ck_assert_int_eq(evexec_cancel(e.port, qid), 0);
    ck_assert_int_eq(evexec_cancel(e.port, qid), -EALREADY);
    run_until(e.base, &e.done, 1);
    ck_assert_int_eq(queued.status, -ECANCELED);
    ck_assert_int_eq(queued.res.pid, 0);
    ck_assert_int_eq(run.calls, 0);
    /* Running: its worker is killed. */
    ck_assert_int_eq(evexec_cancel(e.port, rid), -EBUSY);
    run_until(e.base, &e.done, 2);
    ck_assert_int_eq(run.status, -ECANCELED);
    ck_assert_int_eq(run.res.pid, worker);
    wait_for(dead_pred, &worker);
    ck_assert_int_eq(evexec_cancel(e.port, rid), -ENOENT);
    still_serves(&e);
    env_close(&e);
}
END_TEST

/* Shuts the read side of the worker's own channel (its only socket), so
 * that the pool's next send to it fails, makes the file named by the input
 * with ".cut" added, then returns once the file named by the input
 * exists. */
static int w_cut_channel(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)out, (void)state;
    char path[256];
    size_t plen = strnlen(in, len);
    if (plen >= sizeof path)
        return 1;
    memcpy(path, in, plen);
    path[plen] = '\0';
    int cut = 0;
    for (int fd = 3; fd < 1024; fd++) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && shutdown(fd, SHUT_RD) == 0)
            cut++;
    }
    char note[300];
    snprintf(note, sizeof note, "%s.cut", path);
    int fd = open(note, O_WRONLY | O_CREAT, 0600);
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < 10000 && access(path, F_OK) != 0; i++)
        usleep(1000);
    return cut == 1 ? 0 : 2;
}

/* A worker's init waits while the file named by hook_arg exists. */
static int init_waits(void *hook_arg, void **state)
{
    (void)state;
    for (int i = 0; i < 10000 && access(hook_arg, F_OK) == 0; i++)
        usleep(1000);
    return 0;
}

static char gate_path[128];

/* The job's send failed and its worker went: it is queued again. */
static int requeued(void *arg)
{
    struct evexec_procpool_stats st = pp_stats(arg);
    return st.queued == 1 && st.busy == 0 && st.idle == 0;
}

/* A job whose send to an idle worker fails goes back to the queue, as a
 * queued job: a cancel then takes it out (0, -ECANCELED, never run) instead
 * of answering -EBUSY and killing the next worker it reaches. */
START_TEST(test_failed_send_requeues_a_queued_job)
{
    struct env e;
    struct outcome first, second;
    char go[128];
    evexec_job_id id;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    tmp_path(gate_path, sizeof gate_path, "gate");
    tmp_path(go, sizeof go, "go");
    o.max_procs = 1;
    o.init = init_waits;
    o.hook_arg = gate_path;
    env_open(&e, &o);
    still_serves(&e);
    oc_init(&first, &e);
    ck_assert_int_eq(evexec_procpool_submit(e.port, e.pool, w_cut_channel, go, strlen(go) + 1,
                                            on_done, &first, NULL, NULL),
                     0);
    /* Cut before the second job exists: sent ahead before the cut, it
     * could still be read (and run) by the worker. */
    char cut[160];
    snprintf(cut, sizeof cut, "%s.cut", go);
    wait_for(file_exists, cut);
    oc_init(&second, &e);
    ck_assert_int_eq(
        evexec_procpool_submit(e.port, e.pool, w_echo, "q", 1, on_done, &second, NULL, &id), 0);
    /* The replacement's init waits at the gate: the second job stays
     * queued until the test opens it. */
    int fd = open(gate_path, O_WRONLY | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_ge(fd = open(go, O_WRONLY | O_CREAT, 0600), 0);
    close(fd);
    run_until(e.base, &e.done, e.done + 1);
    ck_assert_int_eq(first.status, 0);
    wait_for(requeued, e.pool);
    ck_assert_int_eq(evexec_cancel(e.port, id), 0);
    run_until(e.base, &e.done, e.done + 1);
    ck_assert_int_eq(second.calls, 1);
    ck_assert_int_eq(second.status, -ECANCELED);
    ck_assert_int_eq(second.res.pid, 0);
    unlink(gate_path);
    unlink(go);
    unlink(cut);
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_eq(st.cancelled, 1);
    still_serves(&e);
    env_close(&e);
}
END_TEST

START_TEST(test_killed_from_outside)
{
    struct env e;
    struct outcome oc;
    char path[128];
    pid_t worker;
    env_open(&e, NULL);
    tmp_path(path, sizeof path, "kill");
    start_hang(&e, 'H', path, NULL, &oc, &worker, NULL);
    ck_assert_int_eq(kill(worker, SIGKILL), 0);
    run_until(e.base, &e.done, 1);
    ck_assert_int_eq(oc.status, -EOWNERDEAD);
    ck_assert_int_eq(oc.res.signal, SIGKILL);
    still_serves(&e);
    env_close(&e);
}
END_TEST

#ifndef EVEXEC_TEST_SANITIZER
START_TEST(test_memory_limit)
{
    struct env e;
    struct outcome oc;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.mem_limit = (uint64_t)64 << 20;
    env_open(&e, &o);
    ck_assert_int_eq(run_one(&e, w_hog, NULL, 0, NULL, &oc), -ENOMEM);
    ck_assert_int_eq(oc.res.work_error, 5);
    still_serves(&e);
    ck_assert_int_eq(run_one(&e, w_hog, "crash", 5, NULL, &oc), -ENOMEM);
    ck_assert_int_eq(oc.res.signal, SIGSEGV);
    still_serves(&e);
    /* Below the limit: nothing to report. */
    char small[4096] = {0};
    ck_assert_int_eq(run_one(&e, w_echo, small, sizeof small, NULL, &oc), 0);
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_eq(st.killed_memory, 2);
    env_close(&e);
}
END_TEST
#endif

START_TEST(test_cpu_limit)
{
    struct env e;
    struct outcome oc;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.cpu_limit_s = 1;
    env_open(&e, &o);
    ck_assert_int_eq(run_one(&e, w_spin, NULL, 0, NULL, &oc), -ETIME);
    ck_assert_int_eq(oc.res.signal, SIGXCPU);
    still_serves(&e);
    env_close(&e);
}
END_TEST

START_TEST(test_init_fails)
{
    struct env e;
    struct outcome oc[4];
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.init = init_fails;
    o.hook_arg = &e; /* non-NULL: fail */
    o.max_procs = 1;
    env_open(&e, &o);
    for (int i = 0; i < 4; i++) {
        oc_init(&oc[i], &e);
        ck_assert_int_eq(
            evexec_procpool_submit(e.port, e.pool, w_echo, "x", 1, on_done, &oc[i], NULL, NULL), 0);
    }
    run_until(e.base, &e.done, 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(oc[i].status, -ENOTRECOVERABLE);
        ck_assert_int_eq(oc[i].res.work_error, 9);
    }
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_ge(st.init_failed, 4);
    ck_assert_int_eq(st.degraded, 1);
    ck_assert_uint_eq(st.crashed, 0);
    env_close(&e);
}
END_TEST

/* --- payloads ------------------------------------------------------------ */

START_TEST(test_big_payloads)
{
    struct env e;
    size_t sizes[] = {64 * 1024, 64 * 1024 + 1, 1 << 20, (size_t)9 << 20};
    env_open(&e, NULL);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        unsigned char *buf = malloc(n);
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)(i * 7 + k);
        struct outcome oc;
        oc_init(&oc, &e);
        ck_assert_int_eq(
            evexec_procpool_submit(e.port, e.pool, w_echo, buf, n, on_done, &oc, NULL, NULL), 0);
        run_until(e.base, &e.done, (int)k + 1);
        ck_assert_int_eq(oc.status, 0);
        ck_assert_uint_eq(oc.out_len, n);
        free(buf);
    }
    env_close(&e);
}
END_TEST

/* Checks the bytes inside the callback (out is valid only there). */
static void on_done_check(int status, const struct evexec_proc_result *res, void *arg)
{
    struct env *e = arg;
    ck_assert_int_eq(status, 0);
    const unsigned char *p = res->out;
    for (size_t i = 0; i < res->out_len; i++)
        if (p[i] != (unsigned char)(i * 13))
            ck_abort_msg("byte %zu differs", i);
    e->done++;
}

START_TEST(test_big_payload_bytes)
{
    struct env e;
    size_t n = (size_t)3 << 20;
    env_open(&e, NULL);
    unsigned char *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i * 13);
    ck_assert_int_eq(
        evexec_procpool_submit(e.port, e.pool, w_echo, buf, n, on_done_check, &e, NULL, NULL), 0);
    memset(buf, 0, n); /* copied at submit */
    run_until(e.base, &e.done, 1);
    free(buf);
    env_close(&e);
}
END_TEST

/* Input buffers are kept and reused: every job of a mix of sizes, several
 * in flight on two workers, gets its own bytes, never an earlier job's. */
struct patterned {
    struct env *e;
    size_t len;
    unsigned seed;
};

static void on_done_pattern(int status, const struct evexec_proc_result *res, void *arg)
{
    struct patterned *pt = arg;
    ck_assert_int_eq(status, 0);
    ck_assert_uint_eq(res->out_len, pt->len);
    const unsigned char *p = res->out;
    for (size_t i = 0; i < res->out_len; i++)
        if (p[i] != (unsigned char)(i * 31 + pt->seed))
            ck_abort_msg("job %u: byte %zu differs", pt->seed, i);
    pt->e->done++;
}

START_TEST(test_big_payload_reuse)
{
    struct env e;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    size_t sizes[] = {(size_t)2 << 20, (size_t)1 << 20, 64 * 1024 + 1, (size_t)3 << 20,
                      (size_t)2 << 20 | 5};
    enum { ROUNDS = 3, N = sizeof sizes / sizeof sizes[0] };
    struct patterned pt[N];
    o.max_procs = 2;
    env_open(&e, &o);
    unsigned char *buf = malloc((size_t)3 << 20);
    for (unsigned r = 0; r < ROUNDS; r++) {
        for (unsigned k = 0; k < N; k++) {
            pt[k] = (struct patterned){&e, sizes[k], r * N + k + 1};
            for (size_t i = 0; i < sizes[k]; i++)
                buf[i] = (unsigned char)(i * 31 + pt[k].seed);
            ck_assert_int_eq(evexec_procpool_submit(e.port, e.pool, w_echo, buf, sizes[k],
                                                    on_done_pattern, &pt[k], NULL, NULL),
                             0);
        }
        run_until(e.base, &e.done, (int)((r + 1) * N));
    }
    free(buf);
    env_close(&e);
}
END_TEST

/* A worker cannot make its input writable (it is sealed against new
 * writable mappings): 0 when mprotect() is refused. */
static int w_write_input(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)len, (void)out, (void)state;
    return mprotect((void *)(uintptr_t)in, 4096, PROT_READ | PROT_WRITE) == 0 ? 1 : 0;
}

START_TEST(test_big_input_read_only)
{
    struct env e;
    struct outcome oc;
    size_t n = (size_t)1 << 20;
    char *buf = calloc(1, n);
    env_open(&e, NULL);
    ck_assert_int_eq(run_one(&e, w_write_input, buf, n, NULL, &oc), 0);
    ck_assert_int_eq(run_one(&e, w_write_input, buf, n, NULL, &oc), 0); /* a kept buffer */
    free(buf);
    env_close(&e);
}
END_TEST

/* A kept input buffer (one fd of the daemon) is released after a second
 * unused: the daemon's fds come back to what they were before the big job
 * (waited for, up to 10 s). */
START_TEST(test_big_input_buffer_released)
{
    struct env e;
    struct outcome oc;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    size_t n = (size_t)1 << 20;
    char *buf = calloc(1, n);
    o.max_procs = 1;
    o.idle_timeout_ms = EVEXEC_IDLE_FOREVER;
    env_open(&e, &o);
    ck_assert_int_eq(run_one(&e, w_echo, buf, 1, NULL, &oc), 0); /* the worker exists */
    int before = count_fds();
    ck_assert_int_eq(run_one(&e, w_echo, buf, n, NULL, &oc), 0);
    for (int waited = 0; count_fds() != before && waited < 10000; waited += 10)
        usleep(10000);
    ck_assert_int_eq(count_fds(), before);
    free(buf);
    env_close(&e);
}
END_TEST

/* Counts this process's writable mappings of payload memfds. */
static int w_payload_maps(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)in, (void)len, (void)state;
    char line[512];
    int n = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "evexec-payload") && line[strcspn(line, " ") + 2] == 'w')
            n++;
    fclose(f);
    int *p = evexec_proc_output(out, sizeof n);
    *p = n;
    return 0;
}

/* The daemon's kept input buffers are not inherited by a pool made later
 * (its workers would hold them writable). */
START_TEST(test_big_input_buffer_not_inherited)
{
    struct env e, e2;
    struct outcome oc;
    size_t n = (size_t)1 << 20;
    char *buf = calloc(1, n);
    env_open(&e, NULL);
    ck_assert_int_eq(run_one(&e, w_echo, buf, n, NULL, &oc), 0); /* a buffer kept */
    env_open(&e2, NULL);
    ck_assert_int_eq(run_one(&e2, w_payload_maps, NULL, 0, NULL, &oc), 0);
    int maps;
    ck_assert_uint_eq(oc.out_len, sizeof maps);
    memcpy(&maps, oc.out, sizeof maps);
    ck_assert_int_eq(maps, 0);
    /* e2 closed by hand: e's fork server is still a child of ours. */
    evexec_procpool_free(e2.pool);
    evexec_port_free(e2.port);
    event_base_dispatch(e2.base);
    event_base_free(e2.base);
    free(buf);
    env_close(&e);
}
END_TEST

/* A work function's child still running when a big output is sealed: the
 * worker's spare output memfd was not inherited writable, so the seal
 * holds. Input "fork": leave a child blocked on a pipe; "reap": kill it. */
static int w_child_then_big(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    static pid_t child;
    static int pipefd[2];
    (void)state;
    if (len == 4 && memcmp(in, "reap", 4) == 0) {
        if (child > 0) {
            kill(child, SIGKILL);
            waitpid(child, NULL, 0);
            close(pipefd[1]);
        }
        return 0;
    }
    if (len == 4 && memcmp(in, "fork", 4) == 0) {
        if (pipe(pipefd) < 0 || (child = fork()) < 0)
            return 1;
        if (child == 0) {
            char c;
            close(pipefd[1]);
            _exit(read(pipefd[0], &c, 1) < 0);
        }
        close(pipefd[0]);
    }
    size_t big = (size_t)1 << 20;
    char *p = evexec_proc_output(out, big);
    if (!p)
        return 2;
    memset(p, 'x', big);
    return 0;
}

START_TEST(test_big_output_with_child_alive)
{
    struct env e;
    struct outcome oc;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    env_open(&e, &o);
    ck_assert_int_eq(run_one(&e, w_child_then_big, "warm", 4, NULL, &oc), 0); /* a spare made */
    ck_assert_int_eq(run_one(&e, w_child_then_big, "fork", 4, NULL, &oc), 0);
    ck_assert_uint_eq(oc.out_len, (size_t)1 << 20);
    ck_assert_int_eq(run_one(&e, w_child_then_big, "reap", 4, NULL, &oc), 0);
    env_close(&e);
}
END_TEST

/* --- hygiene ------------------------------------------------------------- */

START_TEST(test_no_daemon_fds_in_workers)
{
    struct env e;
    struct outcome oc;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* A listening socket without close-on-exec, made before the pool. */
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(ls, 0);
    ck_assert_int_eq(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(ls, 8), 0);
    struct stat lst;
    ck_assert_int_eq(fstat(ls, &lst), 0);
    char want[64];
    snprintf(want, sizeof want, "socket:[%lu]", (unsigned long)lst.st_ino);

    env_open(&e, NULL);
    e.fds--; /* the socket is closed before env_close() checks */
    ck_assert_int_eq(run_one(&e, w_pid, NULL, 0, NULL, &oc), 0);
    pid_t worker = *(int *)oc.out;
    pid_t kids[16];
    int nk = children_of(getpid(), kids, 16);
    ck_assert_int_eq(nk, 1); /* the fork server */
    pid_t procs[3] = {kids[0], worker, 0};
    for (int k = 0; procs[k]; k++) {
        char dir[64];
        snprintf(dir, sizeof dir, "/proc/%d/fd", (int)procs[k]);
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;
        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d)) != NULL) {
            char p[600], link[256];
            if (de->d_name[0] == '.')
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            ssize_t len = readlink(p, link, sizeof link - 1);
            if (len < 0)
                continue;
            link[len] = '\0';
            ck_assert_msg(strcmp(link, want) != 0, "pid %d holds the listening socket",
                          (int)procs[k]);
            /* Only the process's own fds: below its soft limit (valgrind
             * keeps its own above the one it gives the program). */
            if (atoi(de->d_name) > 2 && atoi(de->d_name) < fd_limit(procs[k]))
                n++;
        }
        closedir(d);
        /* The worker: its channel; the server: its channel and signalfd.
         * (Under valgrind its core's own fds show in /proc too: only the
         * listening socket is checked there.) */
        const char *pre = getenv("LD_PRELOAD");
        if (!pre || !strstr(pre, "vgpreload"))
            ck_assert_int_le(n, k == 0 ? 2 : 1);
    }
    /* Named "<prefix>-<n>" */
    char comm[64] = "", path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)worker);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(comm, sizeof comm, f));
    fclose(f);
    ck_assert_int_eq(strncmp(comm, "evexec-proc-", 12), 0);
    close(ls);
    env_close(&e);
}
END_TEST

START_TEST(test_shutdown_cancel)
{
    struct env e;
    struct outcome run, q[3], late;
    char path[128];
    pid_t worker;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    env_open(&e, &o);
    tmp_path(path, sizeof path, "shut");
    start_hang(&e, 'H', path, NULL, &run, &worker, NULL);
    for (int i = 0; i < 3; i++) {
        oc_init(&q[i], &e);
        ck_assert_int_eq(
            evexec_procpool_submit(e.port, e.pool, w_echo, "q", 1, on_done, &q[i], NULL, NULL), 0);
    }
    ck_assert_int_eq(evexec_procpool_shutdown(e.pool, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(evexec_procpool_shutdown(e.pool, EVEXEC_DRAIN), -EALREADY);
    oc_init(&late, &e);
    ck_assert_int_eq(
        evexec_procpool_submit(e.port, e.pool, w_echo, "q", 1, on_done, &late, NULL, NULL),
        -ESHUTDOWN);
    ck_assert_int_eq(evexec_procpool_shutdown(e.pool, EVEXEC_CANCEL), 0);
    run_until(e.base, &e.done, 4);
    ck_assert_int_eq(run.status, -ECANCELED);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(q[i].status, -ECANCELED);
    ck_assert_int_eq(late.calls, 0);
    env_close(&e);
}
END_TEST

START_TEST(test_drain_on_free)
{
    /* Free drains: every queued job runs, then every process is reaped. */
    struct env e;
    struct outcome oc[8];
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 2;
    env_open(&e, &o);
    for (int i = 0; i < 8; i++) {
        oc_init(&oc[i], &e);
        ck_assert_int_eq(
            evexec_procpool_submit(e.port, e.pool, w_pid, NULL, 0, on_done, &oc[i], NULL, NULL), 0);
    }
    evexec_procpool_free(e.pool);
    pid_t kids[4];
    ck_assert_int_eq(children_of(getpid(), kids, 4), 0);
    run_until(e.base, &e.done, 8);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(oc[i].status, 0);
    evexec_port_free(e.port);
    event_base_dispatch(e.base);
    event_base_free(e.base);
    ck_assert_int_eq(count_fds(), e.fds);
}
END_TEST

START_TEST(test_recycle)
{
    struct env e;
    struct outcome oc;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    o.recycle_jobs = 2;
    env_open(&e, &o);
    int pids[4];
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(run_one(&e, w_pid, NULL, 0, NULL, &oc), 0);
        pids[i] = *(int *)oc.out;
    }
    ck_assert_int_eq(pids[0], pids[1]);
    ck_assert_int_ne(pids[1], pids[2]);
    ck_assert_int_eq(pids[2], pids[3]);
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_ge(st.recycled, 1);
    env_close(&e);
}
END_TEST

START_TEST(test_bad_arguments)
{
    struct env e;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    evexec_procpool *p = NULL;
    o.max_procs = 1000;
    ck_assert_int_eq(evexec_procpool_new(&p, &o), -EINVAL);
    o.max_procs = 0;
    o.name = "much-too-long-a-name";
    ck_assert_int_eq(evexec_procpool_new(&p, &o), -EINVAL);
    o.name = NULL;
    o.size = 8;
    ck_assert_int_eq(evexec_procpool_new(&p, &o), -EINVAL);
    ck_assert_int_eq(evexec_procpool_new(NULL, NULL), -EINVAL);
    ck_assert_ptr_null(p);
    o.size = sizeof o;
    o.max_payload = 100;
    env_open(&e, &o);
    char big[101] = {0};
    ck_assert_int_eq(
        evexec_procpool_submit(e.port, e.pool, w_echo, big, 101, on_done, NULL, NULL, NULL),
        -EMSGSIZE);
    ck_assert_int_eq(
        evexec_procpool_submit(e.port, e.pool, NULL, big, 1, on_done, NULL, NULL, NULL), -EINVAL);
    ck_assert_int_eq(
        evexec_procpool_submit(e.port, e.pool, w_echo, NULL, 1, on_done, NULL, NULL, NULL),
        -EINVAL);
    jo.wait_ms = 5;
    ck_assert_int_eq(
        evexec_procpool_submit(e.port, e.pool, w_echo, big, 1, on_done, NULL, &jo, NULL), -EINVAL);
    ck_assert_int_eq(evexec_procpool_shutdown(e.pool, 7), -EINVAL);
    ck_assert_int_eq(evexec_procpool_shutdown(NULL, EVEXEC_DRAIN), -EINVAL);
    struct evexec_procpool_stats st = {.size = 4};
    ck_assert_int_eq(evexec_procpool_stats(e.pool, &st), -EINVAL);
    evexec_procpool_free(NULL);
    env_close(&e);
}
END_TEST

START_TEST(test_recycle_age_rss)
{
    struct env e;
    struct outcome oc;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    int a, b;
    o.max_procs = 1;
    o.recycle_age_ms = 1; /* a 5 ms job outlives it */
    env_open(&e, &o);
    ck_assert_int_eq(run_one(&e, w_sleep_pid, NULL, 0, NULL, &oc), 0);
    a = *(int *)oc.out;
    ck_assert_int_eq(run_one(&e, w_pid, NULL, 0, NULL, &oc), 0);
    b = *(int *)oc.out;
    ck_assert_int_ne(a, b);
    env_close(&e);

    o.recycle_age_ms = 0;
    o.recycle_rss = 1; /* every worker is above a byte */
    env_open(&e, &o);
    ck_assert_int_eq(run_one(&e, w_pid, NULL, 0, NULL, &oc), 0);
    a = *(int *)oc.out;
    ck_assert_int_eq(run_one(&e, w_pid, NULL, 0, NULL, &oc), 0);
    b = *(int *)oc.out;
    ck_assert_int_ne(a, b);
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_ge(st.recycled, 1);
    env_close(&e);
}
END_TEST

static evexec_procpool *stats_pool;
static int want_procs, want_idle;

static int procs_are(void *arg)
{
    struct evexec_procpool_stats st = pp_stats(stats_pool);
    (void)arg;
    return (int)st.procs == want_procs && (int)st.idle == want_idle;
}

START_TEST(test_min_and_idle)
{
    struct env e;
    struct outcome oc;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 3;
    o.min_procs = 2;
    o.idle_timeout_ms = 1;
    env_open(&e, &o);
    stats_pool = e.pool;
    want_procs = want_idle = 2; /* started at once, kept when idle */
    wait_for(procs_are, NULL);
    env_close(&e);

    o.min_procs = 0;
    env_open(&e, &o);
    stats_pool = e.pool;
    ck_assert_int_eq(run_one(&e, w_pid, NULL, 0, NULL, &oc), 0);
    want_procs = want_idle = 0; /* idle past 1 ms: gone */
    wait_for(procs_are, NULL);
    still_serves(&e);
    env_close(&e);
}
END_TEST

START_TEST(test_work_not_in_image)
{
    struct env e;
    /* A library loaded after the pool was made: not in the fork server. */
    ck_assert_ptr_null(dlopen("libresolv.so.2", RTLD_NOW | RTLD_NOLOAD));
    env_open(&e, NULL);
    void *h = dlopen("libresolv.so.2", RTLD_NOW);
    ck_assert_ptr_nonnull(h);
    void *sym = dlsym(h, "__b64_ntop");
    ck_assert_ptr_nonnull(sym);
    evexec_proc_work_fn fn;
    memcpy(&fn, &sym, sizeof fn);
    ck_assert_int_eq(evexec_procpool_submit(e.port, e.pool, fn, NULL, 0, on_done, NULL, NULL, NULL),
                     -EFAULT);
    still_serves(&e);
    env_close(&e);
    dlclose(h);
}
END_TEST

struct caller {
    evexec_procpool *pool;
    int status;
    char out[16];
    size_t out_len;
    int signal;
};

/* A foreign thread: calls, waits, reads. */
static void *call_thread(void *arg)
{
    struct caller *c = arg;
    evexec_future *f;
    const struct evexec_proc_result *res = NULL;
    void *result = NULL;
    ck_assert_int_eq(evexec_procpool_call(c->pool, w_echo, "abc", 3, &f), 0);
    ck_assert_int_eq(evexec_future_wait(f, EVEXEC_WAIT_FOREVER), 0);
    c->status = evexec_future_result(f, &result);
    res = result;
    c->out_len = res->out_len;
    memcpy(c->out, res->out, res->out_len);
    evexec_future_free(f);
    return NULL;
}

START_TEST(test_futures)
{
    struct env e;
    struct caller c = {0};
    pthread_t t;
    char path[128];
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    env_open(&e, &o);
    c.pool = e.pool;
    ck_assert_int_eq(pthread_create(&t, NULL, call_thread, &c), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(c.status, 0);
    ck_assert_uint_eq(c.out_len, 3);
    ck_assert_int_eq(memcmp(c.out, "abc", 3), 0);

    /* A crash, as a status. */
    evexec_future *f, *hang, *queued;
    void *result;
    ck_assert_int_eq(evexec_procpool_call(e.pool, w_segv, NULL, 0, &f), 0);
    ck_assert_int_eq(evexec_future_wait(f, EVEXEC_WAIT_FOREVER), 0);
    ck_assert_int_eq(evexec_future_result(f, &result), -EOWNERDEAD);
    ck_assert_int_eq(((const struct evexec_proc_result *)result)->signal, SIGSEGV);
    evexec_future_free(f);

    /* Cancel: a running job (its worker killed) and a queued one. */
    tmp_path(path, sizeof path, "fut");
    char in[256];
    in[0] = 'H';
    memcpy(in + 1, path, strlen(path));
    ck_assert_int_eq(evexec_procpool_call(e.pool, w_note_and_hang, in, strlen(path) + 1, &hang), 0);
    wait_for(file_exists, path);
    unlink(path);
    ck_assert_int_eq(evexec_procpool_call(e.pool, w_echo, "q", 1, &queued), 0);
    ck_assert_int_eq(evexec_future_cancel(queued), 0);
    ck_assert_int_eq(evexec_future_result(queued, NULL), -ECANCELED);
    ck_assert_int_eq(evexec_future_wait(hang, 0), -ETIMEDOUT);
    ck_assert_int_eq(evexec_future_cancel(hang), 0);
    ck_assert_int_eq(evexec_future_result(hang, NULL), -ECANCELED);
    ck_assert_int_eq(evexec_future_cancel(hang), -EALREADY);
    evexec_future_free(queued);
    evexec_future_free(hang);
    still_serves(&e);
    ck_assert_int_eq(evexec_procpool_call(NULL, w_echo, NULL, 0, &f), -EINVAL);
    ck_assert_int_eq(evexec_procpool_call(e.pool, w_echo, NULL, 0, NULL), -EINVAL);
    env_close(&e);
}
END_TEST

/* --- the direct hand-off -------------------------------------------------- */

/* Each test below first runs a job on a pool of one worker: that worker is
 * lent to submitters before its result goes home, so the next submit
 * sends its job to it straight from the loop thread (lib/procpool.c,
 * "direct hand-off"), the supervisor learning of it only later. Every
 * outcome must be the same as through the supervisor. */
static pid_t warm_one(struct env *e)
{
    struct outcome oc;
    ck_assert_int_eq(run_one(e, w_pid, NULL, 0, NULL, &oc), 0);
    return *(int *)oc.out;
}

static int stats_busy(void *arg)
{
    struct evexec_procpool_stats st = pp_stats(arg);
    return st.busy == 1 && st.idle == 0 && st.procs == 1;
}

START_TEST(test_handoff_cancel_deadline_crash)
{
    struct env e;
    struct outcome oc;
    char path[128];
    pid_t worker, warm;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    env_open(&e, &o);

    /* Cancelled while it runs: its worker is killed. */
    warm = warm_one(&e);
    tmp_path(path, sizeof path, "hcancel");
    evexec_job_id id = start_hang(&e, 'H', path, NULL, &oc, &worker, NULL);
    ck_assert_int_eq(worker, warm);
    wait_for(stats_busy, e.pool); /* counted busy, collected or not */
    ck_assert_int_eq(evexec_cancel(e.port, id), -EBUSY);
    run_until(e.base, &e.done, e.done + 1);
    ck_assert_int_eq(oc.status, -ECANCELED);
    ck_assert_int_eq(oc.res.pid, warm);
    wait_for(dead_pred, &worker);

    /* Past its deadline: killed by the supervisor, which a handed job
     * with a deadline wakes. */
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    jo.timeout_ms = 50;
    warm = warm_one(&e);
    tmp_path(path, sizeof path, "hdeadline");
    start_hang(&e, 'H', path, &jo, &oc, &worker, NULL);
    ck_assert_int_eq(worker, warm);
    run_until(e.base, &e.done, e.done + 1);
    ck_assert_int_eq(oc.status, -ETIMEDOUT);
    wait_for(dead_pred, &worker);

    /* Crashes. */
    warm = warm_one(&e);
    ck_assert_int_eq(run_one(&e, w_segv, NULL, 0, NULL, &oc), -EOWNERDEAD);
    ck_assert_int_eq(oc.res.signal, SIGSEGV);
    ck_assert_int_eq(oc.res.pid, warm);
    warm = warm_one(&e);
    ck_assert_int_eq(run_one(&e, w_abort, NULL, 0, NULL, &oc), -EOWNERDEAD);
    ck_assert_int_eq(oc.res.signal, SIGABRT);
    ck_assert_int_eq(oc.res.pid, warm);

    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_uint_eq(st.killed_deadline, 1);
    ck_assert_uint_eq(st.crashed, 2);
    still_serves(&e);
    env_close(&e);
}
END_TEST

/* The worker dies (killed from outside) just as a job is handed to it:
 * the job either reaches it first and dies with it (-EOWNERDEAD, SIGKILL,
 * its pid), or finds it gone and runs on its replacement; either way one
 * callback, and the pool serves on. */
START_TEST(test_handoff_races_a_death)
{
    struct env e;
    struct outcome oc;
    int died = 0, ran = 0;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    env_open(&e, &o);
    for (int i = 0; i < 20; i++) {
        pid_t warm = warm_one(&e);
        ck_assert_int_eq(kill(warm, SIGKILL), 0);
        int st = run_one(&e, w_pid, NULL, 0, NULL, &oc);
        if (st == 0) {
            ck_assert_int_ne(*(int *)oc.out, warm);
            ran++;
        } else {
            ck_assert_int_eq(st, -EOWNERDEAD);
            ck_assert_int_eq(oc.res.signal, SIGKILL);
            ck_assert_int_eq(oc.res.pid, warm);
            died++;
        }
    }
    ck_assert_int_eq(died + ran, 20);
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_eq(st.crashed, (unsigned)died);
    still_serves(&e);
    env_close(&e);
}
END_TEST

/* Shutdowns and free with a handed job running, and a future's cancel. */
START_TEST(test_handoff_shutdown_and_futures)
{
    struct env e;
    struct outcome oc, q;
    char path[128];
    pid_t worker, warm;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    env_open(&e, &o);

    /* A future's job handed to the idle worker, cancelled while it runs. */
    warm = warm_one(&e);
    tmp_path(path, sizeof path, "hfut");
    char in[256];
    in[0] = 'H';
    memcpy(in + 1, path, strlen(path));
    evexec_future *hang;
    ck_assert_int_eq(evexec_procpool_call(e.pool, w_note_and_hang, in, strlen(path) + 1, &hang), 0);
    wait_for(file_exists, path);
    unlink(path);
    ck_assert_int_eq(evexec_future_cancel(hang), 0);
    ck_assert_int_eq(evexec_future_result(hang, NULL), -ECANCELED);
    evexec_future_free(hang);
    wait_for(dead_pred, &warm);

    /* Shut down with CANCEL: the handed job is killed, the queued one
     * dropped. */
    warm = warm_one(&e);
    tmp_path(path, sizeof path, "hshut");
    start_hang(&e, 'H', path, NULL, &oc, &worker, NULL);
    ck_assert_int_eq(worker, warm);
    oc_init(&q, &e);
    ck_assert_int_eq(evexec_procpool_submit(e.port, e.pool, w_echo, "q", 1, on_done, &q, NULL, NULL),
                     0);
    ck_assert_int_eq(evexec_procpool_shutdown(e.pool, EVEXEC_CANCEL), 0);
    run_until(e.base, &e.done, e.done + 2);
    ck_assert_int_eq(oc.status, -ECANCELED);
    ck_assert_int_eq(q.status, -ECANCELED);
    wait_for(dead_pred, &worker);
    env_close(&e);

    /* Free drains: a handed job still runs to its end. */
    env_open(&e, &o);
    warm = warm_one(&e);
    oc_init(&oc, &e);
    ck_assert_int_eq(
        evexec_procpool_submit(e.port, e.pool, w_sleep_pid, NULL, 0, on_done, &oc, NULL, NULL), 0);
    evexec_procpool_free(e.pool);
    pid_t kids[4];
    ck_assert_int_eq(children_of(getpid(), kids, 4), 0);
    run_until(e.base, &e.done, e.done + 1);
    ck_assert_int_eq(oc.status, 0);
    ck_assert_int_eq(*(int *)oc.out, warm);
    evexec_port_free(e.port);
    event_base_dispatch(e.base);
    event_base_free(e.base);
    ck_assert_int_eq(count_fds(), e.fds);
}
END_TEST

/* Big inputs in a kept buffer the worker keeps mapped: each job sees its
 * own bytes, of its own length, however the buffer was used before. */
START_TEST(test_handoff_big_inputs_reused_mapping)
{
    struct env e;
    struct outcome oc;
    size_t big = (size_t)1 << 20;
    unsigned char *in = malloc(big);
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    ck_assert_ptr_nonnull(in);
    env_open(&e, &o);
    for (int i = 0; i < 6; i++) {
        size_t len = big - (size_t)i * 4099;
        memset(in, 'a' + i, len);
        ck_assert_int_eq(run_one(&e, w_sum, in, len, NULL, &oc), 0);
        ck_assert_uint_eq(oc.out_len, 2 * sizeof(uint64_t));
        uint64_t got[2];
        memcpy(got, oc.out, sizeof got);
        ck_assert_uint_eq(got[0], len);
        ck_assert_uint_eq(got[1], (uint64_t)len * (uint64_t)('a' + i));
    }
    env_close(&e);
    free(in);
}
END_TEST

/* The payload memfds pid maps (any mode): its kept input mappings. */
static int payload_maps_of(pid_t pid)
{
    char path[64], line[512];
    int n = 0;
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        n += strstr(line, "evexec-payload") != NULL;
    fclose(f);
    return n;
}

struct busy_worker {
    struct env *e;
    pid_t pid;
};

/* Runs a small job on the worker, then looks at its mappings. */
static int kept_mapping_gone(void *arg)
{
    struct busy_worker *b = arg;
    struct outcome oc;
    ck_assert_int_eq(run_one(b->e, w_pid, NULL, 0, NULL, &oc), 0);
    ck_assert_int_eq(*(int *)oc.out, b->pid);
    return payload_maps_of(b->pid) == 0;
}

static int idle_mapping_gone(void *arg)
{
    return payload_maps_of(*(pid_t *)arg) == 0;
}

/* A worker keeps its mapping of a big input's buffer for the next big
 * input, and lets it go once unused for a while, whether it keeps running
 * small jobs or waits. */
START_TEST(test_handoff_big_input_mapping_expires)
{
    struct env e;
    struct outcome oc;
    size_t big = (size_t)1 << 20;
    unsigned char *in = calloc(1, big);
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    o.idle_timeout_ms = EVEXEC_IDLE_FOREVER;
    ck_assert_ptr_nonnull(in);
    env_open(&e, &o);
    struct busy_worker b = {&e, warm_one(&e)};
    ck_assert_int_eq(run_one(&e, w_sum, in, big, NULL, &oc), 0);
    ck_assert_int_eq(payload_maps_of(b.pid), 1); /* kept */
    wait_for(kept_mapping_gone, &b);
    ck_assert_int_eq(run_one(&e, w_sum, in, big, NULL, &oc), 0);
    ck_assert_int_eq(payload_maps_of(b.pid), 1);
    wait_for(idle_mapping_gone, &b.pid);
    env_close(&e);
    free(in);
}
END_TEST

/* --- inputs written in place ---------------------------------------------- */

/* Fills an in-place input of pt->len bytes with pt's pattern. */
static evexec_proc_input *input_patterned(struct env *e, struct patterned *pt)
{
    evexec_proc_input *in = NULL;
    void *data = NULL;
    ck_assert_int_eq(evexec_proc_input_new(e->pool, pt->len, &in, &data), 0);
    ck_assert_ptr_nonnull(in);
    if (pt->len)
        ck_assert_ptr_nonnull(data);
    else
        ck_assert_ptr_null(data);
    for (size_t i = 0; i < pt->len; i++)
        ((unsigned char *)data)[i] = (unsigned char)(i * 31 + pt->seed);
    return in;
}

/* The permissions of the mapping holding addr in /proc/self/maps
 * ("rw-s"...), or "" if none does. */
static void map_perms(const void *addr, char perms[5])
{
    char line[512];
    uintptr_t a = (uintptr_t)addr;
    FILE *f = fopen("/proc/self/maps", "r");
    perms[0] = '\0';
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, p) == 3 && a >= lo && a < hi) {
            memcpy(perms, p, 5);
            break;
        }
    }
    fclose(f);
}

START_TEST(test_input_round_trip)
{
    struct env e;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    size_t sizes[] = {0, 1, 100, 64 * 1024, 64 * 1024 + 1, (size_t)3 << 20, (size_t)1 << 20};
    enum { N = sizeof sizes / sizeof sizes[0] };
    struct patterned pt[N];
    o.max_procs = 2;
    env_open(&e, &o);
    /* Several in flight, each with its own bytes. */
    for (unsigned k = 0; k < N; k++) {
        pt[k] = (struct patterned){&e, sizes[k], k + 1};
        evexec_proc_input *in = input_patterned(&e, &pt[k]);
        ck_assert_int_eq(evexec_procpool_submit_input(e.port, e.pool, w_echo, in, on_done_pattern,
                                                      &pt[k], NULL, NULL),
                         0);
    }
    run_until(e.base, &e.done, N);
    /* The worker reads exactly the bytes written (a kept buffer may be
     * bigger than the input). */
    struct outcome oc;
    evexec_proc_input *in;
    void *data;
    size_t n = (size_t)1 << 20 | 3;
    ck_assert_int_eq(evexec_proc_input_new(e.pool, n, &in, &data), 0);
    memset(data, 2, n);
    oc_init(&oc, &e);
    ck_assert_int_eq(
        evexec_procpool_submit_input(e.port, e.pool, w_sum, in, on_done, &oc, NULL, NULL), 0);
    run_until(e.base, &e.done, N + 1);
    ck_assert_int_eq(oc.status, 0);
    uint64_t r[2];
    memcpy(r, oc.out, sizeof r);
    ck_assert_uint_eq(r[0], n);
    ck_assert_uint_eq(r[1], 2 * (uint64_t)n);
    env_close(&e);
}
END_TEST

/* Bad arguments and refusals: the caller keeps the input, unchanged and
 * writable, and a later submit of it succeeds. */
struct input_submitter {
    evexec_port *port;
    evexec_procpool *pool;
    evexec_proc_input *in;
    int rc;
};

static void *submit_input_thread(void *arg)
{
    struct input_submitter *s = arg;
    s->rc = evexec_procpool_submit_input(s->port, s->pool, w_echo, s->in, on_done, NULL, NULL,
                                         NULL);
    return NULL;
}

START_TEST(test_input_errors)
{
    struct env e;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    evexec_procpool *other;
    evexec_proc_input *in = NULL, *small = NULL;
    void *data = NULL, *sdata = NULL;
    size_t n = (size_t)1 << 20;
    o.max_payload = n;
    env_open(&e, &o);
    ck_assert_int_eq(evexec_procpool_new(&other, NULL), 0);

    ck_assert_int_eq(evexec_proc_input_new(NULL, 1, &in, &data), -EINVAL);
    ck_assert_int_eq(evexec_proc_input_new(e.pool, 1, NULL, &data), -EINVAL);
    ck_assert_int_eq(evexec_proc_input_new(e.pool, 1, &in, NULL), -EINVAL);
    ck_assert_int_eq(evexec_proc_input_new(e.pool, n + 1, &in, &data), -EMSGSIZE);
    ck_assert_ptr_null(in);
    ck_assert_ptr_null(data);
    evexec_proc_input_free(NULL);

    /* Freed without a submit, small and big. */
    ck_assert_int_eq(evexec_proc_input_new(e.pool, 10, &small, &sdata), 0);
    evexec_proc_input_free(small);
    ck_assert_int_eq(evexec_proc_input_new(e.pool, n, &in, &data), 0);
    memset(data, 1, n);
    evexec_proc_input_free(in);

    ck_assert_int_eq(evexec_proc_input_new(e.pool, n, &in, &data), 0);
    memset(data, 5, n);
    ck_assert_int_eq(evexec_proc_input_new(e.pool, 10, &small, &sdata), 0);
    memset(sdata, 6, 10);
    evexec_proc_input *both[] = {in, small};
    for (unsigned k = 0; k < 2; k++) {
        evexec_proc_input *x = both[k];
        ck_assert_int_eq(
            evexec_procpool_submit_input(NULL, e.pool, w_echo, x, on_done, NULL, NULL, NULL),
            -EINVAL);
        ck_assert_int_eq(
            evexec_procpool_submit_input(e.port, NULL, w_echo, x, on_done, NULL, NULL, NULL),
            -EINVAL);
        ck_assert_int_eq(
            evexec_procpool_submit_input(e.port, e.pool, NULL, x, on_done, NULL, NULL, NULL),
            -EINVAL);
        ck_assert_int_eq(
            evexec_procpool_submit_input(e.port, e.pool, w_echo, NULL, on_done, NULL, NULL, NULL),
            -EINVAL);
        jo.wait_ms = 5;
        ck_assert_int_eq(
            evexec_procpool_submit_input(e.port, e.pool, w_echo, x, on_done, NULL, &jo, NULL),
            -EINVAL);
        /* Made for another pool. */
        ck_assert_int_eq(
            evexec_procpool_submit_input(e.port, other, w_echo, x, on_done, NULL, NULL, NULL),
            -EINVAL);
        evexec_future *f = NULL;
        ck_assert_int_eq(evexec_procpool_call_input(other, w_echo, x, &f), -EINVAL);
        ck_assert_int_eq(evexec_procpool_call_input(e.pool, w_echo, x, NULL), -EINVAL);
        ck_assert_int_eq(evexec_procpool_call_input(e.pool, NULL, x, &f), -EINVAL);
        ck_assert_int_eq(evexec_procpool_call_input(e.pool, w_echo, NULL, &f), -EINVAL);
        ck_assert_ptr_null(f);
        /* Not on the port's loop thread. */
        struct input_submitter s = {e.port, e.pool, x, 0};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, submit_input_thread, &s), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_int_eq(s.rc, -EPERM);
    }
    /* Still the caller's: writable (the big one was made read-only during
     * the refused submits, and writable again) and as written. */
    char perms[5];
    map_perms(data, perms);
    ck_assert_str_eq(perms, "rw-s");
    ((unsigned char *)data)[n - 1] = 5;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char *)data)[i] != 5)
            ck_abort_msg("byte %zu changed", i);
    /* The retries succeed. */
    struct outcome oc, soc;
    oc_init(&oc, &e);
    oc_init(&soc, &e);
    ck_assert_int_eq(
        evexec_procpool_submit_input(e.port, e.pool, w_sum, in, on_done, &oc, NULL, NULL), 0);
    ck_assert_int_eq(
        evexec_procpool_submit_input(e.port, e.pool, w_echo, small, on_done, &soc, NULL, NULL), 0);
    run_until(e.base, &e.done, 2);
    ck_assert_int_eq(oc.status, 0);
    uint64_t r[2];
    memcpy(r, oc.out, sizeof r);
    ck_assert_uint_eq(r[0], n);
    ck_assert_uint_eq(r[1], 5 * (uint64_t)n);
    ck_assert_int_eq(soc.status, 0);
    ck_assert_uint_eq(soc.out_len, 10);
    ck_assert_int_eq(memcmp(soc.out, "\6\6\6\6\6\6\6\6\6\6", 10), 0);

    /* A shut-down pool: refused, the input still the caller's. */
    ck_assert_int_eq(evexec_proc_input_new(other, n, &in, &data), 0);
    ck_assert_int_eq(evexec_procpool_shutdown(other, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(
        evexec_procpool_submit_input(e.port, other, w_echo, in, on_done, NULL, NULL, NULL),
        -ESHUTDOWN);
    evexec_future *f = NULL;
    ck_assert_int_eq(evexec_procpool_call_input(other, w_echo, in, &f), -ESHUTDOWN);
    ck_assert_int_eq(evexec_proc_input_new(other, 1, &small, &sdata), -ESHUTDOWN);
    memset(data, 0, n);
    /* Freed after the pool: it holds the pool's memory until then. */
    evexec_procpool_free(other);
    evexec_proc_input_free(in);
    env_close(&e);
}
END_TEST

/* Cancel (queued and running) and deadlines of jobs with in-place inputs,
 * small and big. */
START_TEST(test_input_cancel_deadline)
{
    struct env e;
    struct outcome run, queued, late;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    char path[128];
    evexec_proc_input *in;
    void *data;
    evexec_job_id rid, qid;
    o.max_procs = 1;
    env_open(&e, &o);
    tmp_path(path, sizeof path, "input");
    for (int big = 0; big < 2; big++) {
        size_t n = big ? (size_t)1 << 20 : strlen(path) + 1;
        int base = e.done;
        /* Running: hangs until cancelled (its input: 'H' and the path, a
         * NUL and padding). */
        ck_assert_int_eq(evexec_proc_input_new(e.pool, n, &in, &data), 0);
        memset(data, 0, n);
        ((char *)data)[0] = 'H';
        memcpy((char *)data + 1, path, strlen(path));
        oc_init(&run, &e);
        ck_assert_int_eq(evexec_procpool_submit_input(e.port, e.pool, w_note_and_hang, in, on_done,
                                                      &run, NULL, &rid),
                         0);
        wait_for(file_exists, path);
        unlink(path);
        /* Queued behind it, then cancelled. */
        ck_assert_int_eq(evexec_proc_input_new(e.pool, n, &in, &data), 0);
        memset(data, 'q', n);
        oc_init(&queued, &e);
        ck_assert_int_eq(
            evexec_procpool_submit_input(e.port, e.pool, w_echo, in, on_done, &queued, NULL, &qid),
            0);
        ck_assert_int_eq(evexec_cancel(e.port, qid), 0);
        run_until(e.base, &e.done, base + 1);
        ck_assert_int_eq(queued.status, -ECANCELED);
        ck_assert_int_eq(queued.res.pid, 0);
        ck_assert_int_eq(evexec_cancel(e.port, rid), -EBUSY);
        run_until(e.base, &e.done, base + 2);
        ck_assert_int_eq(run.status, -ECANCELED);
        /* Past its deadline: killed. */
        ck_assert_int_eq(evexec_proc_input_new(e.pool, n, &in, &data), 0);
        memset(data, 0, n);
        jo.timeout_ms = 100;
        oc_init(&late, &e);
        ck_assert_int_eq(
            evexec_procpool_submit_input(e.port, e.pool, w_spin, in, on_done, &late, &jo, NULL), 0);
        run_until(e.base, &e.done, base + 3);
        ck_assert_int_eq(late.status, -ETIMEDOUT);
        still_serves(&e);
    }
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_eq(st.killed_deadline, 2);
    ck_assert_uint_eq(st.cancelled, 4);
    env_close(&e);
}
END_TEST

/* A big in-place input: the daemon's mapping is read-only from the submit
 * on, the worker cannot make its own writable either, and once the job
 * has ended the buffer serves the next input (the same pages, writable
 * again). */
START_TEST(test_input_read_only_and_reused)
{
    struct env e;
    struct outcome oc;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    evexec_proc_input *in;
    void *data, *first = NULL;
    char perms[5];
    size_t n = (size_t)2 << 20;
    o.max_procs = 1;
    env_open(&e, &o);
    for (int round = 0; round < 3; round++) {
        ck_assert_int_eq(evexec_proc_input_new(e.pool, n - (size_t)round, &in, &data), 0);
        if (round == 0)
            first = data;
        else
            ck_assert_ptr_eq(data, first); /* the kept buffer */
        map_perms(data, perms);
        ck_assert_str_eq(perms, "rw-s");
        memset(data, round, n - (size_t)round);
        oc_init(&oc, &e);
        ck_assert_int_eq(evexec_procpool_submit_input(e.port, e.pool, w_write_input, in, on_done,
                                                      &oc, NULL, NULL),
                         0);
        map_perms(data, perms);
        ck_assert_str_eq(perms, "r--s");
        run_until(e.base, &e.done, round + 1);
        ck_assert_int_eq(oc.status, 0);
    }
    /* An ordinary big submit takes the kept buffer too (writable again). */
    char *buf = calloc(1, n);
    ck_assert_int_eq(run_one(&e, w_write_input, buf, n, NULL, &oc), 0);
    free(buf);
    /* An input freed unsubmitted gives its buffer back as well. */
    ck_assert_int_eq(evexec_proc_input_new(e.pool, n, &in, &data), 0);
    ck_assert_ptr_eq(data, first);
    evexec_proc_input_free(in);
    ck_assert_int_eq(evexec_proc_input_new(e.pool, n, &in, &data), 0);
    ck_assert_ptr_eq(data, first);
    evexec_proc_input_free(in);
    env_close(&e);
}
END_TEST

/* An input freed unsubmitted leaves its buffer to the pool, which releases
 * it after a second unused like any kept buffer, though no job woke its
 * supervisor since (waited for, up to 10 s). */
START_TEST(test_input_freed_buffer_released)
{
    struct env e;
    struct outcome oc;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    evexec_proc_input *in;
    void *data;
    o.max_procs = 1;
    o.idle_timeout_ms = EVEXEC_IDLE_FOREVER;
    env_open(&e, &o);
    ck_assert_int_eq(run_one(&e, w_echo, "x", 1, NULL, &oc), 0); /* the worker exists */
    int before = count_fds();
    ck_assert_int_eq(evexec_proc_input_new(e.pool, (size_t)1 << 20, &in, &data), 0);
    ck_assert_int_eq(count_fds(), before + 1);
    evexec_proc_input_free(in);
    for (int waited = 0; count_fds() != before && waited < 10000; waited += 10)
        usleep(10000);
    ck_assert_int_eq(count_fds(), before);
    env_close(&e);
}
END_TEST

/* Futures with in-place inputs, from a thread of their own. */
static void *call_input_thread(void *arg)
{
    struct caller *c = arg;
    evexec_proc_input *in;
    evexec_future *f;
    void *data, *result;
    size_t n = (size_t)1 << 20;
    ck_assert_int_eq(evexec_proc_input_new(c->pool, n, &in, &data), 0);
    memset(data, 3, n);
    ck_assert_int_eq(evexec_procpool_call_input(c->pool, w_sum, in, &f), 0);
    ck_assert_int_eq(evexec_future_wait(f, EVEXEC_WAIT_FOREVER), 0);
    c->status = evexec_future_result(f, &result);
    const struct evexec_proc_result *res = result;
    c->out_len = res->out_len;
    memcpy(c->out, res->out, res->out_len);
    evexec_future_free(f);
    return NULL;
}

START_TEST(test_input_futures)
{
    struct env e;
    struct caller c = {0};
    pthread_t t;
    env_open(&e, NULL);
    c.pool = e.pool;
    ck_assert_int_eq(pthread_create(&t, NULL, call_input_thread, &c), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(c.status, 0);
    ck_assert_uint_eq(c.out_len, 16);
    uint64_t r[2];
    memcpy(r, c.out, sizeof r);
    ck_assert_uint_eq(r[0], (size_t)1 << 20);
    ck_assert_uint_eq(r[1], 3 * ((uint64_t)1 << 20));
    /* A small one, and a cancelled crash-free one. */
    evexec_proc_input *in;
    evexec_future *f;
    void *data, *result;
    ck_assert_int_eq(evexec_proc_input_new(e.pool, 3, &in, &data), 0);
    memcpy(data, "xyz", 3);
    ck_assert_int_eq(evexec_procpool_call_input(e.pool, w_echo, in, &f), 0);
    ck_assert_int_eq(evexec_future_wait(f, EVEXEC_WAIT_FOREVER), 0);
    ck_assert_int_eq(evexec_future_result(f, &result), 0);
    ck_assert_uint_eq(((const struct evexec_proc_result *)result)->out_len, 3);
    ck_assert_int_eq(memcmp(((const struct evexec_proc_result *)result)->out, "xyz", 3), 0);
    evexec_future_free(f);
    ck_assert_int_eq(evexec_proc_input_new(e.pool, 0, &in, &data), 0);
    ck_assert_int_eq(evexec_procpool_call_input(e.pool, w_spin, in, &f), 0);
    ck_assert_int_eq(evexec_future_cancel(f), 0);
    ck_assert_int_eq(evexec_future_result(f, NULL), -ECANCELED);
    evexec_future_free(f);
    still_serves(&e);
    env_close(&e);
}
END_TEST

/* --- the fork server's death ----------------------------------------------- */

/* The fork server forks every worker and reports their exits; nothing can
 * replace it (a fork server forked later would copy the daemon as it is
 * then, threads running, not as it was when the pool was made). Killed
 * from outside, it takes its workers and their children with it, and the
 * pool fails what it cannot serve: every accepted job still gets exactly
 * one callback, never a hang, and free reaps everything. */

#define SRV_NAME "srvdeath"

static int init_hangs(void *hook_arg, void **state)
{
    (void)state;
    while (hook_arg)
        pause();
    return 0;
}

/* 1 if pid's /proc comm is name. */
static int comm_is(pid_t pid, const char *name)
{
    char path[64], buf[32] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (!fgets(buf, sizeof buf, f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return strcmp(buf, name) == 0;
}

static int find_server(void *arg)
{
    pid_t kids[16], *srv = arg;
    int n = children_of(getpid(), kids, 16);
    *srv = 0;
    for (int i = 0; i < n; i++)
        if (comm_is(kids[i], SRV_NAME "-srv")) {
            ck_assert_int_eq(*srv, 0);
            *srv = kids[i];
        }
    return *srv != 0;
}

/* The pool's fork server: our child named SRV_NAME "-srv" (the test has no
 * other pool), once it has taken that name. */
static pid_t server_pid(void)
{
    pid_t srv;
    wait_for(find_server, &srv);
    return srv;
}

static int srv_ready(void *arg)
{
    struct evexec_procpool_stats st = pp_stats(arg);
    return st.procs == 2 && st.idle == 2;
}

static int srv_starting_queued(void *arg)
{
    struct evexec_procpool_stats st = pp_stats(arg);
    return st.procs == 1 && st.idle == 0 && st.busy == 0 && st.queued == 3;
}

static int srv_all_dead(void *arg)
{
    pid_t *pids = arg;
    for (int i = 0; pids[i]; i++)
        if (!dead(pids[i]))
            return 0;
    return 1;
}

static int srv_no_procs(void *arg)
{
    struct evexec_procpool_stats st = pp_stats(arg);
    return st.procs == 0 && st.idle == 0 && st.busy == 0;
}

static int srv_one_idle(void *arg)
{
    struct evexec_procpool_stats st = pp_stats(arg);
    return st.procs == 1 && st.idle == 1 && st.busy == 0;
}

static void srv_opts(struct evexec_procpool_opts *o, unsigned max, unsigned min)
{
    *o = (struct evexec_procpool_opts)EVEXEC_PROCPOOL_OPTS_INIT;
    o->name = SRV_NAME;
    o->max_procs = max;
    o->min_procs = min;
    o->idle_timeout_ms = EVEXEC_IDLE_FOREVER;
}

/* Idle workers do not outlive their server (they die with it: nothing
 * could reap them or learn how they ended), and the pool, which cannot
 * fork again, refuses new jobs. */
START_TEST(test_server_killed_idle)
{
    struct env e;
    struct outcome oc;
    struct evexec_procpool_opts o;
    pid_t workers[4] = {0};
    srv_opts(&o, 2, 2);
    env_open(&e, &o);
    wait_for(srv_ready, e.pool);
    still_serves(&e);
    pid_t srv = server_pid();
    ck_assert_int_eq(children_of(srv, workers, 3), 2);

    ck_assert_int_eq(kill(srv, SIGKILL), 0);
    wait_for(srv_all_dead, workers);
    wait_for(srv_no_procs, e.pool);
    ck_assert_int_eq(pp_stats(e.pool).degraded, 1); /* for good */
    /* The server is reaped at once, not left a zombie until free. */
    pid_t kids[4];
    ck_assert_int_eq(children_of(getpid(), kids, 4), 0);
    /* Refused with the errno the pool's failed jobs get: not -ESHUTDOWN,
     * which the daemon's own shutdown gives. */
    oc_init(&oc, &e);
    ck_assert_int_eq(
        evexec_procpool_submit(e.port, e.pool, w_echo, "x", 1, on_done, &oc, NULL, NULL),
        -ENOTRECOVERABLE);
    ck_assert_int_eq(oc.calls, 0);
    evexec_future *f = NULL;
    ck_assert_int_eq(evexec_procpool_call(e.pool, w_echo, "x", 1, &f), -ENOTRECOVERABLE);
    ck_assert_ptr_null(f);
    evexec_proc_input *in = NULL;
    void *data = NULL;
    ck_assert_int_eq(evexec_proc_input_new(e.pool, 8, &in, &data), -ENOTRECOVERABLE);
    ck_assert_ptr_null(in);
    ck_assert_str_eq(evexec_strerror(-ENOTRECOVERABLE),
                     "no worker process could be started (its init hook failed), or the "
                     "pool's fork server is gone (make a new pool)");
    /* A shutdown of the daemon's own says so from then on. */
    ck_assert_int_eq(evexec_procpool_shutdown(e.pool, EVEXEC_DRAIN), 0);
    ck_assert_int_eq(
        evexec_procpool_submit(e.port, e.pool, w_echo, "x", 1, on_done, &oc, NULL, NULL),
        -ESHUTDOWN);
    env_close(&e);
}
END_TEST

/* A job handed to an idle worker (one that never ends), and the server
 * killed at once, before the pool's supervisor has taken note of the
 * hand-off: the job ends once, -ENOTRECOVERABLE, and no process is left. */
START_TEST(test_server_killed_after_a_hand_off)
{
    struct env e;
    struct outcome oc;
    struct evexec_procpool_opts o;
    srv_opts(&o, 1, 1);
    env_open(&e, &o);
    still_serves(&e);
    wait_for(srv_one_idle, e.pool); /* lent: the next submit goes to it */
    pid_t srv = server_pid();
    oc_init(&oc, &e);
    ck_assert_int_eq(
        evexec_procpool_submit(e.port, e.pool, w_spin, NULL, 0, on_done, &oc, NULL, NULL), 0);
    ck_assert_int_eq(kill(srv, SIGKILL), 0);
    run_until(e.base, &e.done, e.done + 1);
    ck_assert_int_eq(oc.calls, 1);
    ck_assert_int_eq(oc.status, -ENOTRECOVERABLE);
    wait_for(srv_no_procs, e.pool);
    env_close(&e);
}
END_TEST

/* A job submitted at once after the kill, before the pool can know: taken
 * or refused, never lost. */
START_TEST(test_server_killed_submit_races)
{
    struct env e;
    struct outcome oc;
    struct evexec_procpool_opts o;
    srv_opts(&o, 1, 1);
    env_open(&e, &o);
    still_serves(&e); /* the worker is lent: the next submit goes to it */
    ck_assert_int_eq(kill(server_pid(), SIGKILL), 0);
    oc_init(&oc, &e);
    int rc = evexec_procpool_submit(e.port, e.pool, w_echo, "x", 1, on_done, &oc, NULL, NULL);
    if (rc == 0) {
        run_until(e.base, &e.done, e.done + 1);
        ck_assert_int_eq(oc.calls, 1); /* it ran, or it failed */
    } else {
        ck_assert_int_lt(rc, 0);
        ck_assert_int_eq(oc.calls, 0);
    }
    env_close(&e);
}
END_TEST

/* A running job (its worker's child too) and queued ones: each gets one
 * callback, with a status that says the pool failed, not the job. */
START_TEST(test_server_killed_with_jobs)
{
    struct env e;
    struct outcome run, q[3];
    char path[128];
    pid_t procs[3] = {0};
    struct evexec_procpool_opts o;
    srv_opts(&o, 1, 0);
    env_open(&e, &o);
    tmp_path(path, sizeof path, "srvjobs");
    start_hang(&e, 'G', path, NULL, &run, &procs[0], &procs[1]);
    for (int i = 0; i < 3; i++) {
        oc_init(&q[i], &e);
        ck_assert_int_eq(
            evexec_procpool_submit(e.port, e.pool, w_echo, "q", 1, on_done, &q[i], NULL, NULL), 0);
    }
    ck_assert_uint_eq(pp_stats(e.pool).queued, 3);

    ck_assert_int_eq(kill(server_pid(), SIGKILL), 0);
    run_until(e.base, &e.done, 4);
    ck_assert_int_eq(run.calls, 1);
    ck_assert_int_eq(run.status, -ENOTRECOVERABLE); /* not the job's crash */
    ck_assert_int_eq(run.res.pid, procs[0]);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(q[i].calls, 1);
        ck_assert_int_eq(q[i].status, -ENOTRECOVERABLE);
        ck_assert_int_eq(q[i].res.pid, 0);
    }
    wait_for(srv_all_dead, procs); /* the worker and its grandchild */
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_uint_eq(st.submitted, 4);
    ck_assert_int_eq(st.degraded, 1);
    ck_assert_uint_eq(st.crashed, 0);
    env_close(&e);
}
END_TEST

/* Jobs queued while no worker is ready (the only one is still in its init
 * hook), one of them a future's: all fail at once. */
START_TEST(test_server_killed_none_ready)
{
    struct env e;
    struct outcome q[2];
    struct evexec_procpool_opts o;
    static int hang = 1;
    srv_opts(&o, 1, 0);
    o.init = init_hangs;
    o.hook_arg = &hang;
    env_open(&e, &o);
    for (int i = 0; i < 2; i++) {
        oc_init(&q[i], &e);
        ck_assert_int_eq(
            evexec_procpool_submit(e.port, e.pool, w_echo, "q", 1, on_done, &q[i], NULL, NULL), 0);
    }
    evexec_future *f;
    ck_assert_int_eq(evexec_procpool_call(e.pool, w_echo, "f", 1, &f), 0);
    wait_for(srv_starting_queued, e.pool);

    ck_assert_int_eq(kill(server_pid(), SIGKILL), 0);
    run_until(e.base, &e.done, 2);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(q[i].status, -ENOTRECOVERABLE);
    ck_assert_int_eq(evexec_future_wait(f, EVEXEC_WAIT_FOREVER), 0);
    ck_assert_int_eq(evexec_future_result(f, NULL), -ENOTRECOVERABLE);
    evexec_future_free(f);
    wait_for(srv_no_procs, e.pool);
    ck_assert_int_eq(pp_stats(e.pool).degraded, 1);
    env_close(&e);
}
END_TEST

/* Free at once after the kill, the pool not yet aware, with a job
 * running: no hang; the job is delivered; nothing left behind. */
START_TEST(test_server_killed_then_free)
{
    struct env e;
    struct outcome run;
    char path[128];
    pid_t procs[3] = {0};
    struct evexec_procpool_opts o;
    srv_opts(&o, 2, 2);
    env_open(&e, &o);
    tmp_path(path, sizeof path, "srvfree");
    start_hang(&e, 'G', path, NULL, &run, &procs[0], &procs[1]);
    ck_assert_int_eq(kill(server_pid(), SIGKILL), 0);
    evexec_procpool_free(e.pool);
    pid_t kids[4];
    ck_assert_int_eq(children_of(getpid(), kids, 4), 0);
    run_until(e.base, &e.done, 1);
    ck_assert_int_eq(run.status, -ENOTRECOVERABLE);
    wait_for(srv_all_dead, procs);
    evexec_port_free(e.port);
    event_base_dispatch(e.base);
    event_base_free(e.base);
    ck_assert_int_eq(count_fds(), e.fds);
}
END_TEST

/* Shutdowns after the pool knows: no hang, nothing left behind. */
START_TEST(test_server_killed_then_shutdown)
{
    struct env e;
    struct evexec_procpool_opts o;
    for (int how = EVEXEC_DRAIN; how <= EVEXEC_CANCEL; how++) {
        srv_opts(&o, 1, 0);
        env_open(&e, &o);
        ck_assert_int_eq(kill(server_pid(), SIGKILL), 0);
        /* The pool knows once a submit is refused or its job failed
         * (no worker: it needed one forked). */
        struct outcome oc;
        oc_init(&oc, &e);
        if (evexec_procpool_submit(e.port, e.pool, w_echo, "x", 1, on_done, &oc, NULL, NULL) == 0) {
            run_until(e.base, &e.done, 1);
            ck_assert_int_lt(oc.status, 0);
        }
        ck_assert_int_eq(evexec_procpool_shutdown(e.pool, how), 0);
        env_close(&e);
    }
}
END_TEST

/* --- jobs sent ahead -------------------------------------------------------
 * While every worker is busy, a queued job may already wait in a busy
 * worker's channel (procpool.c, "jobs sent ahead"); it must behave as a
 * queued job in every way. Each test leaves the supervisor AHEAD_SETTLE_US
 * after the submit to send it there (it does so within microseconds of
 * the submit's wake-up), so the job is sent ahead, not merely queued. */
#define AHEAD_SETTLE_US 30000

/* Starts w_note_and_wait behind a gate; returns its id and worker's pid. */
static evexec_job_id start_gated(struct env *e, const char *path,
                                 const struct evexec_job_opts *jo, struct outcome *oc,
                                 pid_t *worker)
{
    char gate[160];
    evexec_job_id id;
    snprintf(gate, sizeof gate, "%s.gate", path);
    int fd = open(gate, O_WRONLY | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    oc_init(oc, e);
    ck_assert_int_eq(evexec_procpool_submit(e->port, e->pool, w_note_and_wait, path,
                                            strlen(path) + 1, on_done, oc, jo, &id),
                     0);
    wait_for(file_exists, (void *)path);
    FILE *f = fopen(path, "r");
    int a = 0, b = 0;
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%d %d", &a, &b), 2);
    fclose(f);
    unlink(path);
    *worker = a;
    return id;
}

static void open_gate(const char *path)
{
    char gate[160];
    snprintf(gate, sizeof gate, "%s.gate", path);
    ck_assert_int_eq(unlink(gate), 0);
}

static evexec_job_id submit_stamp(struct env *e, struct outcome *oc, int priority, int timeout_ms)
{
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    evexec_job_id id;
    jo.priority = priority;
    jo.timeout_ms = timeout_ms;
    oc_init(oc, e);
    ck_assert_int_eq(
        evexec_procpool_submit(e->port, e->pool, w_stamp, NULL, 0, on_done, oc, &jo, &id), 0);
    return id;
}

/* Cancelled, or past its deadline, in a busy worker's channel: it ends as a
 * queued job does (0 from evexec_cancel(), never run), and the worker and
 * the job it runs are untouched. */
START_TEST(test_ahead_cancel_and_deadline_spare_the_worker)
{
    struct env e;
    struct outcome run, cancelled, late;
    char path[128];
    pid_t worker;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    env_open(&e, &o);
    tmp_path(path, sizeof path, "ahead-cancel");
    start_gated(&e, path, NULL, &run, &worker);

    evexec_job_id id = submit_stamp(&e, &cancelled, EVEXEC_PRIO_NORMAL, 0);
    usleep(AHEAD_SETTLE_US);
    ck_assert_int_eq(evexec_cancel(e.port, id), 0);
    ck_assert_int_eq(evexec_cancel(e.port, id), -EALREADY);
    run_until(e.base, &e.done, 1);
    ck_assert_int_eq(cancelled.status, -ECANCELED);
    ck_assert_int_eq(cancelled.res.pid, 0);

    submit_stamp(&e, &late, EVEXEC_PRIO_NORMAL, 100);
    run_until(e.base, &e.done, 2);
    ck_assert_int_eq(late.status, -ETIMEDOUT);
    ck_assert_int_eq(run.calls, 0);
    ck_assert_int_eq(dead(worker), 0);

    open_gate(path);
    run_until(e.base, &e.done, 3);
    ck_assert_int_eq(run.status, 0);
    ck_assert_int_eq(*(int *)run.out, worker);
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_eq(st.spawned, 1);
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_uint_eq(st.killed_deadline, 1);
    ck_assert_uint_eq(st.completed, 1);
    still_serves(&e);
    env_close(&e);
}
END_TEST

/* A job waiting in a busy worker's channel runs on the first worker that
 * goes idle, not after the job before it. */
START_TEST(test_ahead_job_moves_to_a_free_worker)
{
    struct env e;
    struct outcome slow, hung, next;
    char slow_path[128], hung_path[128];
    pid_t slow_worker, hung_worker;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 2;
    env_open(&e, &o);
    tmp_path(slow_path, sizeof slow_path, "ahead-slow");
    tmp_path(hung_path, sizeof hung_path, "ahead-hung");
    start_gated(&e, slow_path, NULL, &slow, &slow_worker);
    evexec_job_id hung_id = start_hang(&e, 'H', hung_path, NULL, &hung, &hung_worker, NULL);
    submit_stamp(&e, &next, EVEXEC_PRIO_NORMAL, 0);
    usleep(AHEAD_SETTLE_US);
    /* Its worker killed and replaced: the replacement, idle, takes the
     * job waiting behind the gated one (or the job comes back from the
     * dead worker's channel). */
    ck_assert_int_eq(evexec_cancel(e.port, hung_id), -EBUSY);
    run_until(e.base, &e.done, 2);
    ck_assert_int_eq(hung.status, -ECANCELED);
    ck_assert_int_eq(next.status, 0);
    ck_assert_int_ne(stamp_of(&next).pid, slow_worker);
    ck_assert_int_ne(stamp_of(&next).pid, hung_worker);
    ck_assert_int_eq(next.res.pid, stamp_of(&next).pid);
    ck_assert_int_eq(slow.calls, 0);
    open_gate(slow_path);
    run_until(e.base, &e.done, 3);
    ck_assert_int_eq(slow.status, 0);
    still_serves(&e);
    env_close(&e);
}
END_TEST

/* A job of a higher priority queued while jobs of a lower priority wait
 * in the busy worker's channel starts before them, and they keep their
 * order. */
START_TEST(test_ahead_gives_way_to_a_higher_priority)
{
    struct env e;
    struct outcome run, low[2], high;
    char path[128];
    pid_t worker;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    env_open(&e, &o);
    tmp_path(path, sizeof path, "ahead-prio");
    start_gated(&e, path, NULL, &run, &worker);
    submit_stamp(&e, &low[0], EVEXEC_PRIO_LOW, 0);
    submit_stamp(&e, &low[1], EVEXEC_PRIO_LOW, 0);
    usleep(AHEAD_SETTLE_US);
    submit_stamp(&e, &high, EVEXEC_PRIO_HIGH, 0);
    usleep(AHEAD_SETTLE_US);
    open_gate(path);
    run_until(e.base, &e.done, 4);
    ck_assert_int_eq(run.status, 0);
    ck_assert_int_eq(low[0].status, 0);
    ck_assert_int_eq(low[1].status, 0);
    ck_assert_int_eq(high.status, 0);
    ck_assert_uint_lt(stamp_of(&high).ns, stamp_of(&low[0]).ns);
    ck_assert_uint_lt(stamp_of(&low[0]).ns, stamp_of(&low[1]).ns);
    ck_assert_int_eq(stamp_of(&low[1]).pid, worker); /* nobody died */
    env_close(&e);
}
END_TEST

/* A job waiting in the channel of a worker that dies goes back to the
 * queue and runs on the replacement: it was never the dead worker's. */
START_TEST(test_ahead_requeued_when_its_worker_dies)
{
    struct env e;
    struct outcome run, next;
    char path[128];
    pid_t worker;
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    env_open(&e, &o);
    tmp_path(path, sizeof path, "ahead-dies");
    start_hang(&e, 'H', path, NULL, &run, &worker, NULL);
    submit_stamp(&e, &next, EVEXEC_PRIO_NORMAL, 0);
    usleep(AHEAD_SETTLE_US);
    ck_assert_int_eq(kill(worker, SIGKILL), 0);
    run_until(e.base, &e.done, 2);
    ck_assert_int_eq(run.status, -EOWNERDEAD);
    ck_assert_int_eq(run.res.signal, SIGKILL);
    ck_assert_int_eq(next.status, 0);
    ck_assert_int_ne(stamp_of(&next).pid, worker);
    struct evexec_procpool_stats st = pp_stats(e.pool);
    ck_assert_uint_eq(st.crashed, 1);
    ck_assert_uint_eq(st.completed, 1);
    env_close(&e);
}
END_TEST

/* Recycling by job count stays exact with jobs queued behind each other:
 * a worker runs its recycle_jobs jobs, no more. */
START_TEST(test_ahead_recycle_jobs_exact)
{
    struct env e;
    struct outcome oc[6];
    struct evexec_procpool_opts o = EVEXEC_PROCPOOL_OPTS_INIT;
    o.max_procs = 1;
    o.recycle_jobs = 2;
    env_open(&e, &o);
    for (int i = 0; i < 6; i++)
        submit_stamp(&e, &oc[i], EVEXEC_PRIO_NORMAL, 0);
    run_until(e.base, &e.done, 6);
    struct stamp by_start[6];
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(oc[i].status, 0);
        struct stamp st = stamp_of(&oc[i]);
        int k = i;
        for (; k > 0 && by_start[k - 1].ns > st.ns; k--)
            by_start[k] = by_start[k - 1];
        by_start[k] = st;
    }
    for (int k = 0; k < 6; k += 2) {
        ck_assert_int_eq(by_start[k].pid, by_start[k + 1].pid);
        if (k > 0)
            ck_assert_int_ne(by_start[k].pid, by_start[k - 1].pid);
    }
    env_close(&e);
}
END_TEST

static Suite *procpool_suite(void)
{
    Suite *s = suite_create("procpool");
    TCase *tc = tcase_create("outcomes");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_success_and_error);
    tcase_add_test(tc, test_crashes);
    tcase_add_test(tc, test_deadline_kills_group);
    tcase_add_test(tc, test_cancel);
    tcase_add_test(tc, test_failed_send_requeues_a_queued_job);
    tcase_add_test(tc, test_killed_from_outside);
#ifndef EVEXEC_TEST_SANITIZER
    tcase_add_test(tc, test_memory_limit); /* RLIMIT_AS: see Makefile.am */
#endif
    tcase_add_test(tc, test_cpu_limit);
    tcase_add_test(tc, test_init_fails);
    suite_add_tcase(s, tc);
    tc = tcase_create("payloads");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_big_payloads);
    tcase_add_test(tc, test_big_payload_bytes);
    tcase_add_test(tc, test_big_payload_reuse);
    tcase_add_test(tc, test_big_input_read_only);
    tcase_add_test(tc, test_big_input_buffer_released);
    tcase_add_test(tc, test_big_input_buffer_not_inherited);
    tcase_add_test(tc, test_big_output_with_child_alive);
    suite_add_tcase(s, tc);
    tc = tcase_create("lifecycle");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_no_daemon_fds_in_workers);
    tcase_add_test(tc, test_shutdown_cancel);
    tcase_add_test(tc, test_drain_on_free);
    tcase_add_test(tc, test_recycle);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_recycle_age_rss);
    tcase_add_test(tc, test_min_and_idle);
    tcase_add_test(tc, test_work_not_in_image);
    tcase_add_test(tc, test_futures);
    suite_add_tcase(s, tc);
    tc = tcase_create("handoff");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_handoff_cancel_deadline_crash);
    tcase_add_test(tc, test_handoff_races_a_death);
    tcase_add_test(tc, test_handoff_shutdown_and_futures);
    tcase_add_test(tc, test_handoff_big_inputs_reused_mapping);
    tcase_add_test(tc, test_handoff_big_input_mapping_expires);
    suite_add_tcase(s, tc);
    tc = tcase_create("sent ahead");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ahead_cancel_and_deadline_spare_the_worker);
    tcase_add_test(tc, test_ahead_job_moves_to_a_free_worker);
    tcase_add_test(tc, test_ahead_gives_way_to_a_higher_priority);
    tcase_add_test(tc, test_ahead_requeued_when_its_worker_dies);
    tcase_add_test(tc, test_ahead_recycle_jobs_exact);
    suite_add_tcase(s, tc);
    tc = tcase_create("inputs in place");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_input_round_trip);
    tcase_add_test(tc, test_input_errors);
    tcase_add_test(tc, test_input_cancel_deadline);
    tcase_add_test(tc, test_input_read_only_and_reused);
    tcase_add_test(tc, test_input_futures);
    tcase_add_test(tc, test_input_freed_buffer_released);
    suite_add_tcase(s, tc);
    tc = tcase_create("server");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_server_killed_idle);
    tcase_add_test(tc, test_server_killed_submit_races);
    tcase_add_test(tc, test_server_killed_after_a_hand_off);
    tcase_add_test(tc, test_server_killed_with_jobs);
    tcase_add_test(tc, test_server_killed_none_ready);
    tcase_add_test(tc, test_server_killed_then_free);
    tcase_add_test(tc, test_server_killed_then_shutdown);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(procpool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
