/* SPDX-License-Identifier: MIT */
/*
 * offload-httpd: a small libevent HTTP daemon that hands its blocking calls
 * to evexec, the way a production daemon would.
 *
 *   GET /fast             answered at once, on the loop thread
 *   GET /hash[?pw=...]    a deliberately costly password hash (SHA-512
 *                         crypt, --hash-rounds rounds): CPU-bound, blocking
 *   GET /file?name=NAME   a file of the --dir directory, read with plain
 *                         read(): blocking file I/O
 *   GET /sleep?ms=N       sleeps N ms (0..--max-sleep-ms): stands in for a
 *                         blocking database call
 *   GET /stats            JSON: the pool's counters and the request counters
 *
 * By default the three blocking endpoints run on an evexec pool and the loop
 * thread stays free for /fast and everything else. With --inline they run on
 * the loop thread itself, as a naive daemon does: then every request, /fast
 * included, waits behind whatever blocking call is in progress. `make demo`
 * measures the difference.
 *
 * The life of one offloaded request (see start_call() and call_done()):
 *  1. on_request() parses and validates it on the loop thread; a bad request
 *     is answered 400 at once and never reaches the pool;
 *  2. evexec_submit() queues the blocking call; a full queue answers 503 with
 *     Retry-After at once (back-pressure: the loop never blocks and nothing
 *     is dropped silently);
 *  3. while the call is queued or running, watch_client() watches the
 *     client's socket: if the client hangs up, the job is cancelled
 *     (evexec_cancel) so the pool does not do work nobody will read;
 *  4. call_done() runs on the loop thread when the call is finished (or was
 *     cancelled) and answers the request, or closes the connection of a
 *     client that went away.
 *
 * Shutdown (on_signal()): the first SIGINT or SIGTERM closes the listening
 * socket, shuts the pool down with EVEXEC_DRAIN and lets every request
 * already accepted finish and be answered; the daemon then exits 0. A second
 * signal escalates to EVEXEC_CANCEL: queued calls come back -ECANCELED and are
 * answered 503, running sleeps stop early, and the daemon exits at once.
 *
 * Build: cc offload-httpd.c $(pkg-config --cflags --libs evexec libevent_extra) -lcrypt
 */
#define _GNU_SOURCE
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <evexec.h>

#define MAX_FILE_BYTES (1024 * 1024) /* /file answers 413 above this */
#define MAX_PASSWORD 128
#define RETRY_AFTER "1"              /* seconds, in every 503 */
#define FLUSH_GRACE_MS 2000          /* at exit, longest wait for replies to be written */

/* ------------------------------------------------------------------------ */
/* Types                                                                    */

struct options {
    const char *addr;
    unsigned port;
    unsigned threads;
    size_t queue;
    const char *dir;
    unsigned long hash_rounds;
    unsigned max_sleep_ms;
    int inline_mode;
};

/* The HTTP status codes this daemon answers with, for /stats. */
static const int status_codes[] = {200, 400, 403, 404, 405, 413, 500, 503};
#define NSTATUS (sizeof status_codes / sizeof status_codes[0])

enum stopping { RUNNING, DRAINING, CANCELLING };

struct daemon {
    struct options opt;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *listener; /* NULL once we stop accepting */
    evexec_pool *pool;                    /* NULL in --inline mode */
    evexec_port *port;                    /* NULL in --inline mode */
    int dirfd;                            /* the --dir directory, or -1 */
    short watch_events;                   /* what watch_client() waits for */
    struct event *sigint, *sigterm;
    struct event *grace;                  /* caps the wait for unsent replies */
    enum stopping stopping;
    int finished;
    unsigned in_flight;                   /* submitted calls not yet done */
    unsigned unsent;                      /* replies not yet written out */
    struct timespec started;
    struct {
        uint64_t received, fast, hash, file, sleep, stats, other;
        uint64_t status[NSTATUS];
        uint64_t queue_full;   /* 503: the pool's queue was full */
        uint64_t client_gone;  /* clients that hung up while their call was pending */
    } n;
};

enum endpoint { EP_HASH, EP_FILE, EP_SLEEP };

/* One blocking call: created on the loop thread, read and written by one
 * worker while its job runs, then handed back to the loop thread by evexec
 * (which orders the memory accesses), never shared by two threads at once. */
struct call {
    struct daemon *d;
    struct evhttp_request *req; /* NULL if libevent freed the connection */
    enum endpoint ep;
    evexec_job_id id;
    struct event *watch;        /* watches the client's socket, or NULL */
    int client_gone;
    /* input: everything the work function reads */
    char arg[NAME_MAX + 1];     /* the password (/hash) or the file name (/file) */
    unsigned long rounds;       /* /hash */
    int dirfd;                  /* /file: the served directory */
    unsigned ms;                /* /sleep */
    /* output, written by the worker */
    int err;                    /* 0 or an errno value */
    int cut_short;              /* /sleep stopped early: the job was cancelled */
    char *data;                 /* the hash or the file's bytes (malloc'd) */
    size_t len;
};

static void maybe_finish(struct daemon *d);

/* ------------------------------------------------------------------------ */
/* Work functions: these run on a pool worker (or, with --inline, on the    */
/* loop thread, with job == NULL). They may block, and touch nothing but   */
/* their struct call: never the event_base, evhttp or struct daemon.        */

static void *hash_work(evexec_job *job, void *arg)
{
    struct call *c = arg;
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd;
    (void)job;

    /* A fresh random salt per hash, from the OS (rbytes NULL). */
    errno = 0;
    if (!crypt_gensalt_rn("$6$", c->rounds, NULL, 0, setting, sizeof setting)) {
        c->err = errno ? errno : EINVAL;
        return c;
    }
    /* struct crypt_data is 32 KiB: kept off the worker's stack. */
    if (!(cd = calloc(1, sizeof *cd))) {
        c->err = ENOMEM;
        return c;
    }
    errno = 0;
    const char *hash = crypt_r(c->arg, setting, cd);
    if (!hash || hash[0] == '*')
        c->err = errno ? errno : EINVAL;
    else if (!(c->data = strdup(hash)))
        c->err = ENOMEM;
    else
        c->len = strlen(c->data);
    free(cd);
    return c;
}

static void *file_work(evexec_job *job, void *arg)
{
    struct call *c = arg;
    struct stat st;
    size_t got = 0;
    (void)job;

    /* The name was checked to be one plain component (no '/', no leading
     * '.'), and O_NOFOLLOW refuses a symbolic link: nothing outside the
     * directory can be reached. */
    int fd = openat(c->dirfd, c->arg, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        c->err = errno;
        return c;
    }
    if (fstat(fd, &st) < 0) {
        c->err = errno;
    } else if (!S_ISREG(st.st_mode)) {
        c->err = EACCES;
    } else if (st.st_size > MAX_FILE_BYTES) {
        c->err = EFBIG;
    } else if (!(c->data = malloc(st.st_size > 0 ? (size_t)st.st_size : 1))) {
        c->err = ENOMEM;
    } else {
        /* Plain blocking read()s; stop at the size fstat() gave (a file
         * growing meanwhile is served as it was). */
        while (got < (size_t)st.st_size) {
            ssize_t r = read(fd, c->data + got, (size_t)st.st_size - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                c->err = errno;
                break;
            }
            if (r == 0)
                break;
            got += (size_t)r;
        }
        c->len = got;
    }
    close(fd);
    return c;
}

static void *sleep_work(evexec_job *job, void *arg)
{
    struct call *c = arg;
    unsigned left = c->ms;

    /* A blocking call that can be asked to stop: sleep in slices and poll
     * the job's stop flag, which evexec sets on evexec_cancel() of a running
     * job and on a shutdown with EVEXEC_CANCEL. (With --inline, job is NULL
     * and evexec_job_cancelled() answers 0.) */
    while (left > 0) {
        if (evexec_job_cancelled(job)) {
            c->cut_short = 1;
            break;
        }
        unsigned slice = left < 10 ? left : 10;
        struct timespec ts = {0, (long)slice * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        left -= slice;
    }
    return c;
}

static evexec_work_fn const work_of[] = {
    [EP_HASH] = hash_work,
    [EP_FILE] = file_work,
    [EP_SLEEP] = sleep_work,
};

/* ------------------------------------------------------------------------ */
/* Replies. Every answer goes through reply(), which counts it and tracks  */
/* it until libevent has written it out, so that shutdown can wait for     */
/* the last bytes to leave.                                                 */

static void on_reply_written(struct evhttp_request *req, void *arg)
{
    struct daemon *d = arg;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    d->unsent--;
    maybe_finish(d);
}

/* The connection closed before its reply was written (the client went
 * away): libevent does not call on_reply_written() then. */
static void on_close_unsent(struct evhttp_connection *evcon, void *arg)
{
    struct daemon *d = arg;
    (void)evcon;
    d->unsent--;
    maybe_finish(d);
}

static void count_status(struct daemon *d, int code)
{
    for (size_t i = 0; i < NSTATUS; i++)
        if (status_codes[i] == code)
            d->n.status[i]++;
}

/* Sends the answer; evhttp moves the bytes out of body (NULL: no body). */
static void reply_buf(struct daemon *d, struct evhttp_request *req, int code, const char *type,
                      struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);

    count_status(d, code);
    evhttp_add_header(h, "Content-Type", type);
    if (code == 503)
        evhttp_add_header(h, "Retry-After", RETRY_AFTER);
    /* Shutting down: close each connection after its reply, so keep-alive
     * clients go away instead of sending more. */
    if (d->stopping != RUNNING)
        evhttp_add_header(h, "Connection", "close");
    if (evcon) {
        d->unsent++;
        evhttp_request_set_on_complete_cb(req, on_reply_written, d);
        evhttp_connection_set_closecb(evcon, on_close_unsent, d);
    }
    evhttp_send_reply(req, code, NULL, body);
}

static void reply(struct daemon *d, struct evhttp_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sends a text/plain answer: fmt is the body, one line. */
static void reply(struct daemon *d, struct evhttp_request *req, int code, const char *fmt, ...)
{
    struct evbuffer *body = evbuffer_new();
    va_list ap;

    if (body) {
        va_start(ap, fmt);
        evbuffer_add_vprintf(body, fmt, ap);
        va_end(ap);
    }
    reply_buf(d, req, code, "text/plain; charset=utf-8", body);
    if (body)
        evbuffer_free(body);
}

static void free_data(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

/* ------------------------------------------------------------------------ */
/* Watching the client while its call is pending.                           */
/*                                                                          */
/* While a request is being answered, libevent (2.1) stops reading from its */
/* connection, so it would not notice the client hanging up until it tries  */
/* to write the reply. We watch the socket ourselves with a one-shot event: */
/* EV_CLOSED (early close detection, epoll's EPOLLRDHUP) where the backend  */
/* has it, and EV_READ to also catch a reset; a peek tells EOF from data.   */
/* Like nginx (its 499), we take a client's FIN as "gone", although an HTTP */
/* client could in principle half-close and still wait for the answer.      */

static void unwatch_client(struct call *c)
{
    if (c->watch) {
        event_free(c->watch);
        c->watch = NULL;
    }
    if (c->req)
        evhttp_connection_set_closecb(evhttp_request_get_connection(c->req), NULL, NULL);
}

static void client_gone(struct call *c)
{
    struct daemon *d = c->d;

    c->client_gone = 1;
    d->n.client_gone++;
    /* Queued: the job comes back -ECANCELED and never runs. Running: -EBUSY,
     * its stop flag is set, and a cooperative work function (sleep_work)
     * returns early. Either way call_done() still runs exactly once. */
    evexec_cancel(d->port, c->id);
}

static void on_client_event(evutil_socket_t fd, short what, void *arg)
{
    struct call *c = arg;
    char byte;

    if (!(what & EV_CLOSED)) {
        ssize_t r = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            event_add(c->watch, NULL); /* nothing after all: keep watching */
            return;
        }
        if (r > 0)
            return; /* a pipelined request: the client is there; stop watching */
    }
    client_gone(c); /* EOF, a reset or another error */
}

/* Safety net: libevent freed the connection under a pending call (it does
 * not in 2.1, whose reads are off meanwhile, but nothing promises it). The
 * request is gone with it; call_done() must not touch it. */
static void on_close_pending(struct evhttp_connection *evcon, void *arg)
{
    struct call *c = arg;
    (void)evcon;
    if (c->watch) {
        event_free(c->watch); /* before libevent closes its fd */
        c->watch = NULL;
    }
    c->req = NULL;
    if (!c->client_gone)
        client_gone(c);
}

static void watch_client(struct call *c)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;

    if (!evcon)
        return;
    evhttp_connection_set_closecb(evcon, on_close_pending, c);
    if (fd < 0)
        return;
    c->watch = event_new(c->d->base, fd, c->d->watch_events, on_client_event, c);
    if (c->watch && event_add(c->watch, NULL) < 0) {
        event_free(c->watch);
        c->watch = NULL;
    }
}

/* ------------------------------------------------------------------------ */
/* Offloaded calls                                                          */

/* Answers a finished call. Runs on the loop thread: the done callback of
 * evexec (status 0 or -ECANCELED), or called directly with --inline. */
static void call_done(int status, void *result, void *arg)
{
    struct call *c = arg;
    struct daemon *d = c->d;
    struct evhttp_request *req = c->req;
    (void)result; /* == c: every work function returns its call */

    if (d->port)
        d->in_flight--;
    unwatch_client(c);

    if (!req) {
        /* The connection is gone already: nothing to answer. */
    } else if (c->client_gone) {
        /* The client hung up: like nginx's 499, close without answering.
         * This frees the request too. */
        evhttp_connection_free(evhttp_request_get_connection(req));
    } else if (status == -ECANCELED || c->cut_short) {
        reply(d, req, 503, "cancelled: the server is shutting down\n");
    } else if (status < 0) {
        reply(d, req, 500, "%s\n", evexec_strerror(status));
    } else if (c->ep == EP_SLEEP) {
        reply(d, req, 200, "slept %u ms\n", c->ms);
    } else if (c->err == ENOENT) {
        reply(d, req, 404, "no such file: %s\n", c->arg);
    } else if (c->err == ELOOP || c->err == EACCES || c->err == EPERM) {
        reply(d, req, 403, "forbidden: %s is a symbolic link, not a regular file, or unreadable\n",
              c->arg);
    } else if (c->err == EFBIG) {
        reply(d, req, 413, "file larger than %d bytes: %s\n", MAX_FILE_BYTES, c->arg);
    } else if (c->err) {
        reply(d, req, 500, "%s failed: %s\n", c->ep == EP_HASH ? "hash" : "read", strerror(c->err));
    } else {
        struct evbuffer *body = evbuffer_new();
        /* The body takes the worker's buffer without copying it. */
        if (!body || evbuffer_add_reference(body, c->data, c->len, free_data, NULL) < 0) {
            reply(d, req, 500, "out of memory\n");
        } else {
            c->data = NULL;
            if (c->ep == EP_HASH)
                evbuffer_add(body, "\n", 1);
            reply_buf(d, req, 200,
                      c->ep == EP_HASH ? "text/plain; charset=utf-8" : "application/octet-stream",
                      body);
        }
        if (body)
            evbuffer_free(body);
    }
    free(c->data);
    free(c);
    maybe_finish(d);
}

/* Runs a validated call: offloads it, or with --inline runs it right here. */
static void start_call(struct call *c)
{
    struct daemon *d = c->d;
    int rc;

    if (d->opt.inline_mode) {
        /* The naive daemon: the loop thread blocks, and every other client
         * (/fast included) waits until this returns. */
        call_done(0, work_of[c->ep](NULL, c), c);
        return;
    }

    rc = evexec_submit(d->port, d->pool, work_of[c->ep], call_done, c, &c->id);
    if (rc == 0) {
        d->in_flight++;
        watch_client(c);
        return;
    }
    /* Refused: no callback will come, so answer now. */
    if (rc == -EAGAIN) {
        d->n.queue_full++;
        reply(d, c->req, 503, "busy: the work queue is full (%zu queued), retry later\n",
              d->opt.queue);
    } else if (rc == -ESHUTDOWN) {
        reply(d, c->req, 503, "the server is shutting down\n");
    } else {
        reply(d, c->req, 500, "cannot offload: %s\n", evexec_strerror(rc));
    }
    free(c);
}

/* ------------------------------------------------------------------------ */
/* Request parsing                                                          */

/* Parses a decimal number in 0..max; 0 on success. */
static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

/* A file name is one path component of [A-Za-z0-9._-], not starting with a
 * dot: no "..", no "/", no hidden files. */
static int valid_file_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX || s[0] == '.')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static struct call *new_call(struct daemon *d, struct evhttp_request *req, enum endpoint ep)
{
    struct call *c = calloc(1, sizeof *c);
    if (!c) {
        reply(d, req, 503, "out of memory\n");
        return NULL;
    }
    c->d = d;
    c->req = req;
    c->ep = ep;
    return c;
}

static void do_hash(struct daemon *d, struct evhttp_request *req, struct evkeyvalq *q)
{
    const char *pw = evhttp_find_header(q, "pw");
    struct call *c;

    if (!pw)
        pw = "correct horse battery staple";
    if (strlen(pw) > MAX_PASSWORD) {
        reply(d, req, 400, "bad request: pw longer than %d bytes\n", MAX_PASSWORD);
        return;
    }
    if ((c = new_call(d, req, EP_HASH))) {
        snprintf(c->arg, sizeof c->arg, "%s", pw);
        c->rounds = d->opt.hash_rounds;
        start_call(c);
    }
}

static void do_file(struct daemon *d, struct evhttp_request *req, struct evkeyvalq *q)
{
    const char *name = evhttp_find_header(q, "name");
    struct call *c;

    if (d->dirfd < 0) {
        reply(d, req, 404, "no directory is served (start with --dir)\n");
        return;
    }
    if (!name) {
        reply(d, req, 400, "bad request: /file needs ?name=FILE\n");
        return;
    }
    if (!valid_file_name(name)) {
        reply(d, req, 400,
              "bad request: name must be a plain file name ([A-Za-z0-9._-], "
              "no '/', not starting with '.')\n");
        return;
    }
    if ((c = new_call(d, req, EP_FILE))) {
        snprintf(c->arg, sizeof c->arg, "%s", name);
        c->dirfd = d->dirfd;
        start_call(c);
    }
}

static void do_sleep(struct daemon *d, struct evhttp_request *req, struct evkeyvalq *q)
{
    unsigned long ms;
    struct call *c;

    if (parse_uint(evhttp_find_header(q, "ms"), d->opt.max_sleep_ms, &ms) < 0) {
        reply(d, req, 400, "bad request: /sleep needs ?ms=N with N an integer in 0..%u\n",
              d->opt.max_sleep_ms);
        return;
    }
    if ((c = new_call(d, req, EP_SLEEP))) {
        c->ms = (unsigned)ms;
        start_call(c);
    }
}

static void do_stats(struct daemon *d, struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();
    struct timespec now;
    const char *sep = "";

    if (!b) {
        reply(d, req, 503, "out of memory\n");
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    evbuffer_add_printf(b, "{\"mode\":\"%s\",\"stopping\":%d,\"uptime_ms\":%" PRId64 ",\n",
                        d->opt.inline_mode ? "inline" : "evexec", (int)d->stopping,
                        (int64_t)(now.tv_sec - d->started.tv_sec) * 1000 +
                            (now.tv_nsec - d->started.tv_nsec) / 1000000);
    if (d->pool) {
        struct evexec_pool_stats s = {.size = sizeof s};
        evexec_pool_stats(d->pool, &s);
        evbuffer_add_printf(b,
                            " \"pool\":{\"threads\":%u,\"max_threads\":%u,\"idle\":%u,"
                            "\"running\":%u,\"queued\":%zu,\"max_queued\":%zu,"
                            "\"submitted\":%" PRIu64 ",\"completed\":%" PRIu64
                            ",\"cancelled\":%" PRIu64 ",\"rejected\":%" PRIu64 "},\n",
                            s.threads, d->opt.threads, s.idle, s.running, s.queued, d->opt.queue,
                            s.submitted, s.completed, s.cancelled, s.rejected);
    } else {
        evbuffer_add_printf(b, " \"pool\":null,\n");
    }
    evbuffer_add_printf(b,
                        " \"requests\":{\"received\":%" PRIu64 ",\"fast\":%" PRIu64
                        ",\"hash\":%" PRIu64 ",\"file\":%" PRIu64 ",\"sleep\":%" PRIu64
                        ",\"stats\":%" PRIu64 ",\"other\":%" PRIu64 ",\"in_flight\":%u,"
                        "\"queue_full\":%" PRIu64 ",\"client_gone\":%" PRIu64 ",\n  \"status\":{",
                        d->n.received, d->n.fast, d->n.hash, d->n.file, d->n.sleep, d->n.stats,
                        d->n.other, d->in_flight, d->n.queue_full, d->n.client_gone);
    for (size_t i = 0; i < NSTATUS; i++, sep = ",")
        evbuffer_add_printf(b, "%s\"%d\":%" PRIu64, sep, status_codes[i], d->n.status[i]);
    evbuffer_add_printf(b, "}}}\n");
    reply_buf(d, req, 200, "application/json", b);
    evbuffer_free(b);
}

/* Every request arrives here, on the loop thread. */
static void on_request(struct evhttp_request *req, void *arg)
{
    struct daemon *d = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq q;

    d->n.received++;
    if (!path) {
        d->n.other++;
        reply(d, req, 400, "bad request: cannot parse the URI\n");
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        d->n.other++;
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
        reply(d, req, 405, "method not allowed: only GET\n");
        return;
    }
    /* Always parsed (an empty string for none): it initialises q. */
    if (evhttp_parse_query_str(query ? query : "", &q) < 0) {
        d->n.other++;
        evhttp_clear_headers(&q);
        reply(d, req, 400, "bad request: cannot parse the query string\n");
        return;
    }

    if (strcmp(path, "/fast") == 0) {
        d->n.fast++;
        reply(d, req, 200, "ok\n"); /* no blocking call: answered on the loop */
    } else if (strcmp(path, "/hash") == 0) {
        d->n.hash++;
        do_hash(d, req, &q);
    } else if (strcmp(path, "/file") == 0) {
        d->n.file++;
        do_file(d, req, &q);
    } else if (strcmp(path, "/sleep") == 0) {
        d->n.sleep++;
        do_sleep(d, req, &q);
    } else if (strcmp(path, "/stats") == 0) {
        d->n.stats++;
        do_stats(d, req);
    } else {
        d->n.other++;
        reply(d, req, 404, "not found: try /fast, /hash, /file?name=, /sleep?ms=, /stats\n");
    }
    evhttp_clear_headers(&q);
}

/* ------------------------------------------------------------------------ */
/* Shutdown                                                                 */

static void finish(struct daemon *d)
{
    if (d->finished)
        return;
    d->finished = 1;
    printf("offload-httpd: every accepted request answered; exiting\n");
    fflush(stdout);
    event_base_loopexit(d->base, NULL);
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)fd;
    (void)what;
    printf("offload-httpd: %u replies still unwritten after %d ms (clients not reading)\n",
           d->unsent, FLUSH_GRACE_MS);
    finish(d);
}

/* Called whenever a call or a reply completes: once stopping, exits when
 * nothing is pending any more. */
static void maybe_finish(struct daemon *d)
{
    if (d->stopping == RUNNING || d->in_flight > 0)
        return;
    if (d->unsent == 0) {
        finish(d);
    } else if (!event_pending(d->grace, EV_TIMEOUT, NULL)) {
        /* Everything is answered; give the last replies a bounded time to be
         * written to clients that are slow to read them. */
        struct timeval tv = {FLUSH_GRACE_MS / 1000, (FLUSH_GRACE_MS % 1000) * 1000};
        event_add(d->grace, &tv);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    (void)what;

    if (d->stopping == RUNNING) {
        d->stopping = DRAINING;
        /* Stop accepting: close the listening socket. Open connections stay
         * and are answered (with "Connection: close"). */
        if (d->listener) {
            evhttp_del_accept_socket(d->http, d->listener);
            d->listener = NULL;
        }
        /* Queued and running calls still run; new submits get -ESHUTDOWN. */
        if (d->pool)
            evexec_pool_shutdown(d->pool, EVEXEC_DRAIN);
        printf("offload-httpd: %s: stopped accepting; draining %u requests "
               "(signal again to cancel them)\n",
               strsignal((int)sig), d->in_flight);
    } else if (d->stopping == DRAINING) {
        d->stopping = CANCELLING;
        /* Queued calls come back -ECANCELED (answered 503); running ones
         * have their stop flag set. */
        if (d->pool)
            evexec_pool_shutdown(d->pool, EVEXEC_CANCEL);
        printf("offload-httpd: %s again: cancelling %u requests\n", strsignal((int)sig),
               d->in_flight);
    } else {
        printf("offload-httpd: %s: already cancelling\n", strsignal((int)sig));
    }
    fflush(stdout);
    maybe_finish(d);
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: offload-httpd [options]\n"
            "  -p, --port N          TCP port (default 8080; 0 picks a free one)\n"
            "  -a, --addr ADDR       address to listen on (default 127.0.0.1)\n"
            "  -t, --threads N       most worker threads (default 4)\n"
            "  -q, --queue N         most calls waiting for a worker; beyond it, 503\n"
            "                        (default 64)\n"
            "  -d, --dir DIR         directory /file serves (default: none)\n"
            "  -r, --hash-rounds N   SHA-512 crypt rounds of /hash (default 100000)\n"
            "  -m, --max-sleep-ms N  largest ms /sleep accepts (default 10000)\n"
            "  -i, --inline          run blocking calls on the loop thread (the naive way)\n"
            "  -h, --help\n");
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"addr", required_argument, NULL, 'a'},
        {"threads", required_argument, NULL, 't'},
        {"queue", required_argument, NULL, 'q'},
        {"dir", required_argument, NULL, 'd'},
        {"hash-rounds", required_argument, NULL, 'r'},
        {"max-sleep-ms", required_argument, NULL, 'm'},
        {"inline", no_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned long v;
    int ch;

    while ((ch = getopt_long(argc, argv, "p:a:t:q:d:r:m:ih", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            if (parse_uint(optarg, 65535, &v) < 0)
                goto bad;
            o->port = (unsigned)v;
            break;
        case 'a':
            o->addr = optarg;
            break;
        case 't':
            if (parse_uint(optarg, EVEXEC_MAX_THREADS, &v) < 0 || v == 0)
                goto bad;
            o->threads = (unsigned)v;
            break;
        case 'q':
            if (parse_uint(optarg, EVEXEC_MAX_QUEUED, &v) < 0 || v == 0)
                goto bad;
            o->queue = v;
            break;
        case 'd':
            o->dir = optarg;
            break;
        case 'r':
            /* SHA-512 crypt's own range. */
            if (parse_uint(optarg, 999999999, &v) < 0 || v < 1000)
                goto bad;
            o->hash_rounds = v;
            break;
        case 'm':
            if (parse_uint(optarg, 3600 * 1000, &v) < 0)
                goto bad;
            o->max_sleep_ms = (unsigned)v;
            break;
        case 'i':
            o->inline_mode = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "offload-httpd: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "offload-httpd: bad value '%s' for -%c (see --help)\n", optarg, ch);
    return -1;
}

static unsigned bound_port(struct evhttp_bound_socket *listener)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    evutil_socket_t fd = evhttp_bound_socket_get_fd(listener);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

int main(int argc, char **argv)
{
    struct daemon d = {
        .opt = {.addr = "127.0.0.1", .port = 8080, .threads = 4, .queue = 64,
                .hash_rounds = 100000, .max_sleep_ms = 10000},
        .dirfd = -1,
    };
    int rc, status = 1;

    if (parse_options(argc, argv, &d.opt) < 0)
        return 2;
    clock_gettime(CLOCK_MONOTONIC, &d.started);

    /* A client that resets its connection must not kill us with SIGPIPE
     * when we write its reply: get EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);

    if (d.opt.dir && (d.dirfd = open(d.opt.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "offload-httpd: %s: %s\n", d.opt.dir, strerror(errno));
        return 1;
    }
    /* No evthread_use_pthreads(): the base is only ever touched by this
     * thread; evexec's workers never touch it. */
    if (!(d.base = event_base_new())) {
        fprintf(stderr, "offload-httpd: event_base_new failed\n");
        goto out;
    }
    d.watch_events = EV_READ;
    if (event_base_get_features(d.base) & EV_FEATURE_EARLY_CLOSE)
        d.watch_events |= EV_CLOSED;

    if (!d.opt.inline_mode) {
        struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
        po.max_threads = d.opt.threads;
        po.max_queued = d.opt.queue;
        po.name = "httpd"; /* workers show up as httpd-1, httpd-2... in top -H */
        if ((rc = evexec_pool_new(&d.pool, &po)) < 0 ||
            (rc = evexec_port_new(&d.port, d.base, NULL)) < 0) {
            fprintf(stderr, "offload-httpd: evexec: %s\n", evexec_strerror(rc));
            goto out;
        }
    }

    if (!(d.http = evhttp_new(d.base))) {
        fprintf(stderr, "offload-httpd: evhttp_new failed\n");
        goto out;
    }
    evhttp_set_gencb(d.http, on_request, &d);
    evhttp_set_timeout(d.http, 30);               /* idle keep-alive connections */
    evhttp_set_max_headers_size(d.http, 8192);
    evhttp_set_max_body_size(d.http, 4096);       /* GET only: no bodies expected */
    if (!(d.listener = evhttp_bind_socket_with_handle(d.http, d.opt.addr, (ev_uint16_t)d.opt.port))) {
        fprintf(stderr, "offload-httpd: cannot listen on %s port %u: %s\n", d.opt.addr, d.opt.port,
                strerror(errno));
        goto out;
    }

    /* Signals arrive as ordinary loop events: evexec's workers block every
     * signal, so the kernel delivers them to this thread. */
    d.sigint = evsignal_new(d.base, SIGINT, on_signal, &d);
    d.sigterm = evsignal_new(d.base, SIGTERM, on_signal, &d);
    d.grace = evtimer_new(d.base, on_grace_over, &d);
    if (!d.sigint || !d.sigterm || !d.grace || event_add(d.sigint, NULL) < 0 ||
        event_add(d.sigterm, NULL) < 0) {
        fprintf(stderr, "offload-httpd: cannot set up signal events\n");
        goto out;
    }

    if (d.opt.inline_mode)
        printf("offload-httpd: listening on http://%s:%u/ (inline: blocking calls on the loop "
               "thread)\n",
               d.opt.addr, bound_port(d.listener));
    else
        printf("offload-httpd: listening on http://%s:%u/ (evexec %s: %u threads, queue %zu)\n",
               d.opt.addr, bound_port(d.listener), evexec_version_string(), d.opt.threads,
               d.opt.queue);
    fflush(stdout);

    event_base_dispatch(d.base);
    status = d.finished ? 0 : 1;

out:
    /* Order: the HTTP server (closes the remaining idle connections), the
     * pool (joins its threads: no work is left), the port, then the base. */
    if (d.http)
        evhttp_free(d.http);
    evexec_pool_free(d.pool);
    evexec_port_free(d.port);
    if (d.sigint)
        event_free(d.sigint);
    if (d.sigterm)
        event_free(d.sigterm);
    if (d.grace)
        event_free(d.grace);
    if (d.base)
        event_base_free(d.base);
    if (d.dirfd >= 0)
        close(d.dirfd);
    return status;
}
