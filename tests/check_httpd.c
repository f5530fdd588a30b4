/* SPDX-License-Identifier: MIT */
/*
 * Integration test of examples/offload-httpd: each test starts the daemon on
 * 127.0.0.1 with --port 0 (the kernel picks a free port, which the daemon
 * prints) and talks HTTP/1.1 to it over plain blocking sockets.
 *
 * Queue states are made deterministic by polling /stats until the pool shows
 * the expected running and queued counts (never by sleeping and hoping).
 * The daemon is started with PR_SET_PDEATHSIG, so a failed test, which ends
 * its process, never leaves a daemon behind.
 *
 * The daemon is $top_builddir/examples/offload-httpd ('make check' exports
 * top_builddir).
 */
#define _GNU_SOURCE
#include "config.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "helpers.h"

#define IO_TIMEOUT_S 20

/* ------------------------------------------------------------------------ */
/* The daemon as a child process                                             */

struct daemon {
    pid_t pid;
    int out;            /* read end of its stdout+stderr */
    char buf[8192];     /* what it printed so far */
    size_t len;
    unsigned port;
};

static const char *daemon_path(void)
{
    static char path[4096];
    const char *top = getenv("top_builddir");
    ck_assert_msg(top != NULL, "top_builddir is not set (run me through make check)");
    snprintf(path, sizeof path, "%s/examples/offload-httpd", top);
    ck_assert_msg(access(path, X_OK) == 0, "%s is not built", path);
    return path;
}

/* Reads what the daemon printed until `want` appears (or it exits, or
 * `timeout` seconds pass). Returns a pointer into d->buf, or NULL. */
static const char *daemon_wait_for(struct daemon *d, const char *want, double timeout)
{
    double end = now_s() + timeout;
    for (;;) {
        const char *hit;
        d->buf[d->len] = '\0';
        if ((hit = strstr(d->buf, want)))
            return hit;
        double left = end - now_s();
        if (left <= 0 || d->len + 1 >= sizeof d->buf)
            return NULL;
        struct pollfd p = {.fd = d->out, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        ssize_t r = read(d->out, d->buf + d->len, sizeof d->buf - 1 - d->len);
        if (r <= 0)
            return NULL; /* EOF: it exited */
        d->len += (size_t)r;
    }
}

/* Starts the daemon with --port 0 and the given options, ended by (char *)NULL. */
static void daemon_start(struct daemon *d, ...)
{
    const char *argv[32];
    int n = 0, pipefd[2];
    const char *arg, *line;
    va_list ap;
    pid_t parent = getpid();

    memset(d, 0, sizeof *d);
    argv[n++] = daemon_path();
    argv[n++] = "--port";
    argv[n++] = "0";
    va_start(ap, d);
    while ((arg = va_arg(ap, const char *)) && n < 31)
        argv[n++] = arg;
    va_end(ap);
    argv[n] = NULL;

    ck_assert_int_eq(pipe(pipefd), 0);
    d->pid = fork();
    ck_assert_int_ge(d->pid, 0);
    if (d->pid == 0) {
#ifdef __linux__
        /* Dies with the test process, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
#endif
        (void)parent;
        dup2(pipefd[1], STDOUT_FILENO);
        dup2(pipefd[1], STDERR_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    d->out = pipefd[0];
    line = daemon_wait_for(d, "listening on http://127.0.0.1:", 10);
    ck_assert_msg(line != NULL, "the daemon did not start; it said: %s", d->buf);
    d->port = (unsigned)strtoul(line + strlen("listening on http://127.0.0.1:"), NULL, 10);
    ck_assert_msg(d->port > 0 && d->port < 65536, "bad port in: %s", line);
}

/* Waits (at most `timeout` s) for the daemon to exit; returns its wait
 * status, or -1 if it is still running. */
static int daemon_wait_exit(struct daemon *d, double timeout)
{
    double end = now_s() + timeout;
    int status;
    for (;;) {
        pid_t r = waitpid(d->pid, &status, WNOHANG);
        if (r == d->pid) {
            daemon_wait_for(d, "\x01", 0.2); /* collect what it printed last */
            close(d->out);
            d->pid = 0;
            return status;
        }
        if (now_s() > end)
            return -1;
        struct pollfd p = {.fd = d->out, .events = POLLIN};
        if (poll(&p, 1, 5) > 0 && d->len + 1 < sizeof d->buf) {
            ssize_t k = read(d->out, d->buf + d->len, sizeof d->buf - 1 - d->len);
            if (k > 0)
                d->len += (size_t)k;
        }
    }
}

/* SIGTERM, then checks the daemon exits 0 within `timeout` seconds. */
static void daemon_stop(struct daemon *d, double timeout)
{
    ck_assert_int_eq(kill(d->pid, SIGTERM), 0);
    int status = daemon_wait_exit(d, timeout);
    ck_assert_msg(status != -1, "the daemon did not exit within %.0f s of SIGTERM", timeout);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the daemon ended with wait status 0x%x; it said: %s", status, d->buf);
    d->buf[d->len] = '\0';
    ck_assert_msg(strstr(d->buf, "every accepted request answered"), "it said: %s", d->buf);
}

/* ------------------------------------------------------------------------ */
/* A minimal blocking HTTP/1.1 client                                        */

struct resp {
    int status;
    char head[4096];    /* status line and headers */
    char body[64 * 1024 + 4096];
    size_t len;
};

static int connect_port(unsigned port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {IO_TIMEOUT_S, 0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Sends one request on fd; close_it asks for "Connection: close". */
static void http_send_on(int fd, const char *method, const char *target, int close_it)
{
    char req[2048];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", method, target,
                     close_it ? "Connection: close\r\n" : "");
    ck_assert_int_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
}

/* Connects and sends a request; returns the socket to read the answer on. */
static int http_send(unsigned port, const char *method, const char *target)
{
    int fd = connect_port(port);
    ck_assert_msg(fd >= 0, "connect to port %u: %s", port, strerror(errno));
    http_send_on(fd, method, target, 1);
    return fd;
}

/* Reads one answer (headers, then Content-Length bytes) from fd. */
static void http_recv(int fd, struct resp *r)
{
    size_t got = 0, need = 0;
    char *eoh = NULL;
    static char raw[sizeof r->head + sizeof r->body];

    memset(r, 0, sizeof *r);
    for (;;) {
        if (!eoh && (eoh = memmem(raw, got, "\r\n\r\n", 4))) {
            size_t hlen = (size_t)(eoh - raw);
            const char *cl;
            ck_assert_uint_lt(hlen, sizeof r->head);
            memcpy(r->head, raw, hlen);
            r->head[hlen] = '\0';
            ck_assert_msg(sscanf(r->head, "HTTP/1.%*d %d", &r->status) == 1, "bad status line: %s",
                          r->head);
            cl = strcasestr(r->head, "\r\nContent-Length:");
            ck_assert_msg(cl != NULL, "no Content-Length in: %s", r->head);
            need = hlen + 4 + strtoul(cl + 17, NULL, 10);
            ck_assert_uint_le(need, sizeof raw);
        }
        if (eoh && got >= need)
            break;
        ssize_t k = recv(fd, raw + got, sizeof raw - got, 0);
        ck_assert_msg(k > 0, "connection %s before a full answer (%zu bytes: %.*s)",
                      k == 0 ? "closed" : strerror(errno), got, (int)got, raw);
        got += (size_t)k;
    }
    r->len = need - (size_t)(eoh + 4 - raw);
    memcpy(r->body, eoh + 4, r->len);
    r->body[r->len] = '\0';
}

static void http_get(unsigned port, const char *target, struct resp *r)
{
    int fd = http_send(port, "GET", target);
    http_recv(fd, r);
    close(fd);
}

/* GET target; checks the status, and returns the body. */
static const char *expect(unsigned port, const char *target, int status)
{
    static struct resp r;
    http_get(port, target, &r);
    ck_assert_msg(r.status == status, "GET %s: got %d, want %d (%s)", target, r.status, status,
                  r.body);
    return r.body;
}

/* A counter of /stats: the number after "key": (keys are unique there). */
static long long stat_of(unsigned port, const char *key)
{
    char pat[64];
    const char *body = expect(port, "/stats", 200), *at;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    at = strstr(body, pat);
    ck_assert_msg(at != NULL, "no %s in /stats: %s", key, body);
    return strtoll(at + strlen(pat), NULL, 10);
}

/* Polls /stats until key == want; fails after 10 s. */
static void wait_stat(unsigned port, const char *key, long long want)
{
    double end = now_s() + 10;
    long long v;
    while ((v = stat_of(port, key)) != want) {
        ck_assert_msg(now_s() < end, "/stats %s stayed %lld, want %lld", key, v, want);
        usleep(2000);
    }
}

static int has_header(const struct resp *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

/* ------------------------------------------------------------------------ */
/* A directory for /file                                                     */

static char dir[256];

static void write_file(const char *name, const char *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void make_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[512];
    static char big[1024 * 1024 + 1];

    snprintf(dir, sizeof dir, "%s/evexec-httpd.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    write_file("hello.txt", "hello, file\n", 12);
    write_file("empty", "", 0);
    memset(big, 'x', sizeof big);
    write_file("big.bin", big, sizeof big);
    write_file(".hidden", "secret\n", 7);
    snprintf(path, sizeof path, "%s/link", dir);
    ck_assert_int_eq(symlink("hello.txt", path), 0);
    snprintf(path, sizeof path, "%s/sub", dir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
}

static void remove_dir(void)
{
    static const char *names[] = {"hello.txt", "empty", "big.bin", ".hidden", "link"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/sub", dir);
    rmdir(path);
    rmdir(dir);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */

START_TEST(endpoints_answer)
{
    struct daemon d;
    struct resp r;
    char target[512], pw[200];
    int n400 = 0, n404 = 0, n403 = 0, n200 = 0;
    const char *body;

    make_dir();
    daemon_start(&d, "--dir", dir, "--hash-rounds", "2000", (char *)NULL);

    ck_assert_str_eq(expect(d.port, "/fast", 200), "ok\n");
    n200++;

    /* /hash: a real SHA-512 crypt of pw, with a fresh salt: check it. */
    body = expect(d.port, "/hash?pw=s3cr%20t", 200);
    n200++;
    ck_assert_msg(strncmp(body, "$6$rounds=2000$", 15) == 0, "hash: %s", body);
    {
        char hash[256];
        struct crypt_data cd;
        size_t len = strcspn(body, "\n");
        ck_assert_uint_lt(len, sizeof hash);
        memcpy(hash, body, len);
        hash[len] = '\0';
        memset(&cd, 0, sizeof cd);
        const char *again = crypt_r("s3cr t", hash, &cd);
        ck_assert_ptr_nonnull(again);
        ck_assert_str_eq(again, hash);
    }
    memset(pw, 'a', 129);
    pw[129] = '\0';
    snprintf(target, sizeof target, "/hash?pw=%s", pw);
    ck_assert_ptr_nonnull(strstr(expect(d.port, target, 400), "pw longer than"));
    n400++;

    /* /file */
    ck_assert_str_eq(expect(d.port, "/file?name=hello.txt", 200), "hello, file\n");
    ck_assert_str_eq(expect(d.port, "/file?name=empty", 200), "");
    n200 += 2;
    expect(d.port, "/file?name=big.bin", 413);
    expect(d.port, "/file?name=nothing-here", 404);
    n404++;
    expect(d.port, "/file?name=link", 403);   /* a symbolic link, even to a file inside */
    expect(d.port, "/file?name=sub", 403);    /* not a regular file */
    n403 += 2;
    static const char *traversal[] = {
        "/file?name=../hello.txt", "/file?name=..", "/file?name=%2e%2e%2fhello.txt",
        "/file?name=sub/../hello.txt", "/file?name=sub%2f..%2fhello.txt", "/file?name=.hidden",
        "/file?name=%2fetc%2fpasswd", "/file?name=", "/file", "/file?other=hello.txt",
    };
    for (size_t i = 0; i < sizeof traversal / sizeof traversal[0]; i++, n400++)
        ck_assert_ptr_nonnull(strstr(expect(d.port, traversal[i], 400), "bad request"));

    /* /sleep */
    ck_assert_str_eq(expect(d.port, "/sleep?ms=20", 200), "slept 20 ms\n");
    ck_assert_str_eq(expect(d.port, "/sleep?ms=0", 200), "slept 0 ms\n");
    n200 += 2;
    static const char *bad_sleep[] = {"/sleep", "/sleep?ms=", "/sleep?ms=abc", "/sleep?ms=-1",
                                      "/sleep?ms=10001", "/sleep?ms=5x", "/sleep?ms=+5",
                                      "/sleep?ms=99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_sleep / sizeof bad_sleep[0]; i++, n400++)
        ck_assert_ptr_nonnull(strstr(expect(d.port, bad_sleep[i], 400), "0..10000"));

    /* Others */
    expect(d.port, "/nope", 404);
    n404++;
    int fd = http_send(d.port, "POST", "/fast");
    http_recv(fd, &r);
    close(fd);
    ck_assert_int_eq(r.status, 405);
    ck_assert(has_header(&r, "\r\nAllow: GET"));

    /* /stats counts all of that (this request is counted before it is
     * answered, so it is in "received" and "stats" but not yet in status). */
    http_get(d.port, "/stats", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(has_header(&r, "\r\nContent-Type: application/json"));
    ck_assert_ptr_nonnull(strstr(r.body, "\"mode\":\"evexec\""));
    int total = n200 + n400 + n403 + n404 + 1 /* 413 */ + 1 /* 405 */;
    char want[64];
    snprintf(want, sizeof want, "\"received\":%d,", total + 1);
    ck_assert_msg(strstr(r.body, want), "want %s in %s", want, r.body);
    snprintf(want, sizeof want, "\"200\":%d,", n200);
    ck_assert_msg(strstr(r.body, want), "want %s in %s", want, r.body);
    snprintf(want, sizeof want, "\"400\":%d,", n400);
    ck_assert_msg(strstr(r.body, want), "want %s in %s", want, r.body);
    snprintf(want, sizeof want, "\"403\":%d,", n403);
    ck_assert_msg(strstr(r.body, want), "want %s in %s", want, r.body);
    snprintf(want, sizeof want, "\"404\":%d,", n404);
    ck_assert_msg(strstr(r.body, want), "want %s in %s", want, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "\"413\":1,"));
    ck_assert_ptr_nonnull(strstr(r.body, "\"405\":1,"));
    ck_assert_ptr_nonnull(strstr(r.body, "\"503\":0}"));
    /* Only the valid blocking requests reached the pool: 1 hash, 6 files, 2 sleeps. */
    ck_assert_ptr_nonnull(strstr(r.body, "\"submitted\":9,"));
    ck_assert_ptr_nonnull(strstr(r.body, "\"completed\":9,"));
    ck_assert_ptr_nonnull(strstr(r.body, "\"rejected\":0}"));
    ck_assert_ptr_nonnull(strstr(r.body, "\"in_flight\":0,"));

    daemon_stop(&d, 10);
    remove_dir();
}
END_TEST

START_TEST(inline_mode_answers_on_the_loop)
{
    struct daemon d;
    struct resp r;

    daemon_start(&d, "--inline", "--hash-rounds", "1000", (char *)NULL);
    ck_assert_str_eq(expect(d.port, "/fast", 200), "ok\n");
    ck_assert_str_eq(expect(d.port, "/sleep?ms=10", 200), "slept 10 ms\n");
    ck_assert_ptr_nonnull(strstr(expect(d.port, "/hash", 200), "$6$rounds=1000$"));
    expect(d.port, "/sleep?ms=x", 400);
    expect(d.port, "/file?name=a", 404); /* no --dir */
    http_get(d.port, "/stats", &r);
    ck_assert_ptr_nonnull(strstr(r.body, "\"mode\":\"inline\""));
    ck_assert_ptr_nonnull(strstr(r.body, "\"pool\":null"));
    daemon_stop(&d, 10);
}
END_TEST

START_TEST(full_queue_answers_503_at_once)
{
    struct daemon d;
    struct resp r;
    int running, queued;
    double t;

    daemon_start(&d, "--threads", "1", "--queue", "1", (char *)NULL);
    running = http_send(d.port, "GET", "/sleep?ms=1000");
    wait_stat(d.port, "running", 1);
    queued = http_send(d.port, "GET", "/sleep?ms=10");
    wait_stat(d.port, "queued", 1);

    /* The queue is full: 503 with Retry-After, at once. */
    t = now_s();
    http_get(d.port, "/sleep?ms=10", &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert(has_header(&r, "\r\nRetry-After: 1"));
    ck_assert_ptr_nonnull(strstr(r.body, "queue is full"));
    http_get(d.port, "/hash", &r);
    ck_assert_int_eq(r.status, 503);
    /* The loop is free meanwhile. */
    ck_assert_str_eq(expect(d.port, "/fast", 200), "ok\n");
    ck_assert_msg(now_s() - t < 0.5, "503s and /fast took %.3f s", now_s() - t);

    ck_assert_int_eq(stat_of(d.port, "rejected"), 2);
    ck_assert_int_eq(stat_of(d.port, "queue_full"), 2);
    ck_assert_int_eq(stat_of(d.port, "503"), 2);

    /* The accepted ones are still answered. */
    http_recv(running, &r);
    ck_assert_int_eq(r.status, 200);
    http_recv(queued, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "slept 10 ms\n");
    close(running);
    close(queued);
    ck_assert_int_eq(stat_of(d.port, "completed"), 2);
    daemon_stop(&d, 10);
}
END_TEST

START_TEST(client_hangup_cancels_its_job)
{
    struct daemon d;
    struct resp r;
    int running, gone;
    double t;

    daemon_start(&d, "--threads", "1", "--queue", "4", (char *)NULL);
    running = http_send(d.port, "GET", "/sleep?ms=1000");
    wait_stat(d.port, "running", 1);

    /* A queued request whose client hangs up: its job is cancelled, never run. */
    gone = http_send(d.port, "GET", "/sleep?ms=1000");
    wait_stat(d.port, "queued", 1);
    close(gone);
    wait_stat(d.port, "client_gone", 1);
    wait_stat(d.port, "cancelled", 1);
    ck_assert_int_eq(stat_of(d.port, "queued"), 0);

    http_recv(running, &r);
    ck_assert_int_eq(r.status, 200);
    close(running);

    /* A running one: its stop flag is set and the sleep ends early. */
    gone = http_send(d.port, "GET", "/sleep?ms=8000");
    wait_stat(d.port, "running", 1);
    t = now_s();
    close(gone);
    wait_stat(d.port, "client_gone", 2);
    wait_stat(d.port, "running", 0);
    ck_assert_msg(now_s() - t < 4, "the cancelled sleep took %.1f s to stop", now_s() - t);
    wait_stat(d.port, "in_flight", 0);
    ck_assert_int_eq(stat_of(d.port, "completed"), 2);

    /* Still serving. */
    ck_assert_str_eq(expect(d.port, "/sleep?ms=1", 200), "slept 1 ms\n");
    daemon_stop(&d, 10);
}
END_TEST

START_TEST(sigterm_drains_every_accepted_request)
{
    struct daemon d;
    struct resp r;
    int fds[3], idle;

    daemon_start(&d, "--threads", "1", "--queue", "4", "--hash-rounds", "1000", (char *)NULL);
    /* An idle keep-alive connection must not hold the exit up. */
    idle = connect_port(d.port);
    ck_assert_int_ge(idle, 0);
    http_send_on(idle, "GET", "/fast", 0);
    http_recv(idle, &r);
    ck_assert_int_eq(r.status, 200);

    fds[0] = http_send(d.port, "GET", "/sleep?ms=500");
    wait_stat(d.port, "running", 1);
    fds[1] = http_send(d.port, "GET", "/sleep?ms=50");
    fds[2] = http_send(d.port, "GET", "/hash?pw=x");
    wait_stat(d.port, "queued", 2);

    ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
    ck_assert_msg(daemon_wait_for(&d, "stopped accepting; draining 3 requests", 10),
                  "it said: %s", d.buf);
    /* No new connections... */
    int fd = connect_port(d.port);
    ck_assert_msg(fd < 0 && errno == ECONNREFUSED, "connect after SIGTERM: fd %d, %s", fd,
                  strerror(errno));
    /* ...but every accepted request is answered, queued ones included. */
    http_recv(fds[0], &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "slept 500 ms\n");
    ck_assert(has_header(&r, "\r\nConnection: close"));
    http_recv(fds[1], &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "slept 50 ms\n");
    http_recv(fds[2], &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "$6$rounds=1000$"));
    for (int i = 0; i < 3; i++)
        close(fds[i]);

    int status = daemon_wait_exit(&d, 10);
    ck_assert_msg(status != -1, "the daemon did not exit after draining");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wait status 0x%x: %s", status,
                  d.buf);
    ck_assert_ptr_nonnull(strstr(d.buf, "every accepted request answered"));
    /* The idle connection was closed by the daemon. */
    char c;
    ck_assert_int_eq(recv(idle, &c, 1, 0), 0);
    close(idle);
}
END_TEST

START_TEST(second_signal_cancels_and_exits_promptly)
{
    struct daemon d;
    struct resp r;
    int running, queued;
    double t;

    daemon_start(&d, "--threads", "1", "--queue", "4", (char *)NULL);
    running = http_send(d.port, "GET", "/sleep?ms=10000");
    wait_stat(d.port, "running", 1);
    queued = http_send(d.port, "GET", "/sleep?ms=10000");
    wait_stat(d.port, "queued", 1);

    t = now_s();
    ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
    ck_assert_ptr_nonnull(daemon_wait_for(&d, "draining 2 requests", 10));
    ck_assert_int_eq(kill(d.pid, SIGINT), 0);
    ck_assert_msg(daemon_wait_for(&d, "again: cancelling 2 requests", 10), "it said: %s", d.buf);

    /* Both answered 503: the queued one was cancelled, the running one
     * stopped early. */
    http_recv(running, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert(has_header(&r, "\r\nRetry-After: 1"));
    ck_assert_ptr_nonnull(strstr(r.body, "cancelled"));
    http_recv(queued, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_ptr_nonnull(strstr(r.body, "cancelled"));
    close(running);
    close(queued);

    int status = daemon_wait_exit(&d, 10);
    ck_assert_msg(status != -1, "the daemon did not exit after the second signal");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wait status 0x%x: %s", status,
                  d.buf);
    /* 20 s of sleeps were pending; the exit took a fraction of that. */
    ck_assert_msg(now_s() - t < 3, "exit took %.1f s after the signals", now_s() - t);
}
END_TEST

START_TEST(bad_options_exit_2)
{
    static const char *bad[][3] = {
        {"--threads", "0", NULL}, {"--queue", "0", NULL}, {"--port", "70000", NULL},
        {"--hash-rounds", "10", NULL}, {"--max-sleep-ms", "x", NULL}, {"extra", NULL, NULL},
    };
    const char *path = daemon_path();

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            execl(path, path, bad[i][0], bad[i][1], (char *)NULL);
            _exit(127);
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 2, "%s %s: wait status 0x%x",
                      bad[i][0], bad[i][1] ? bad[i][1] : "", status);
    }
}
END_TEST

static Suite *httpd_suite(void)
{
    Suite *s = suite_create("offload-httpd");
    TCase *tc = add_tcase(s, "integration", 60, FX_FDS);
    tcase_add_test(tc, endpoints_answer);
    tcase_add_test(tc, inline_mode_answers_on_the_loop);
    tcase_add_test(tc, full_queue_answers_503_at_once);
    tcase_add_test(tc, client_hangup_cancels_its_job);
    tcase_add_test(tc, sigterm_drains_every_accepted_request);
    tcase_add_test(tc, second_signal_cancels_and_exits_promptly);
    tcase_add_test(tc, bad_options_exit_2);
    return s;
}

int main(void)
{
    return run_suite(httpd_suite());
}
