/* SPDX-License-Identifier: MIT */
/*
 * loadgen: a small closed-loop HTTP load generator on libevent's evhttp
 * client, for offload-httpd's demo.
 *
 *   loadgen -p PORT [-a ADDR] [-d SECONDS] [-l LABEL] [-r FILE] CONNS:PATH...
 *
 * Each CONNS:PATH stream opens CONNS keep-alive connections; each connection
 * sends GET PATH, waits for the answer, records its latency and sends the
 * next, for SECONDS seconds. A 503 is back-pressure: that connection pauses
 * for the Retry-After the server gave (at most 5 s) before its next request.
 * While it runs, a progress line shows each stream's rate; at the end a table
 * gives, per stream, the 200 answers, requests per second and latency
 * percentiles (of 200 answers received within the run), and the 503s, other
 * answers and connection errors. -r FILE also writes one line of key=value
 * pairs per stream there, for scripts.
 *
 * Closed loop: a slow server makes the generator send less, so latencies are
 * those of the requests sent, not of a fixed arrival rate (no correction for
 * coordinated omission).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define MAX_CONNS 1000
#define MAX_STREAMS 16
#define ERROR_PAUSE_MS 100     /* after a connection error */
#define MAX_RETRY_AFTER_MS 5000

struct stream {
    char path[256];
    unsigned conns;
    uint64_t ok, s503, other, errors;
    uint64_t ok_at_last_tick;
    uint32_t *lat_us;          /* latencies of the 200 answers, in µs */
    size_t nlat, cap;
};

struct gen;

struct conn {
    struct gen *g;
    struct stream *s;
    struct evhttp_connection *evcon;
    struct event *pause;       /* waits out a 503's Retry-After or an error */
    struct timespec sent;
};

struct gen {
    struct event_base *base;
    const char *addr;
    unsigned port;
    unsigned duration_s;
    const char *label;
    const char *results;
    int progress_tty;
    int stopped;
    struct timespec t0;
    double elapsed_s;
    struct stream streams[MAX_STREAMS];
    unsigned nstreams;
    struct conn *conns;
    unsigned nconns;
    struct event *end, *tick;
    unsigned ticks;
};

static double since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) + (double)(b.tv_nsec - a->tv_nsec) / 1e9;
}

static void record(struct stream *s, double seconds)
{
    if (s->nlat == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        uint32_t *p = realloc(s->lat_us, cap * sizeof *p);
        if (!p)
            return; /* a sample lost, not the run */
        s->lat_us = p;
        s->cap = cap;
    }
    double us = seconds * 1e6;
    s->lat_us[s->nlat++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

static void send_next(struct conn *c);

static void pause_conn(struct conn *c, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(c->pause, &tv);
}

static void on_pause_over(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    send_next(arg);
}

static void on_response(struct evhttp_request *req, void *arg)
{
    struct conn *c = arg;
    struct stream *s = c->s;
    double took = since(&c->sent);
    int code = req ? evhttp_request_get_response_code(req) : 0;

    if (c->g->stopped)
        return;
    if (code == 200) {
        s->ok++;
        record(s, took);
        send_next(c);
    } else if (code == 503) {
        /* Back-pressure: honour Retry-After (seconds), bounded. */
        const char *ra = evhttp_find_header(evhttp_request_get_input_headers(req), "Retry-After");
        unsigned long ms = ra ? strtoul(ra, NULL, 10) * 1000 : 1000;
        s->s503++;
        pause_conn(c, ms > MAX_RETRY_AFTER_MS ? MAX_RETRY_AFTER_MS : (unsigned)ms);
    } else if (code == 0) {
        s->errors++; /* connection refused, reset, timed out... */
        pause_conn(c, ERROR_PAUSE_MS);
    } else {
        s->other++;
        send_next(c);
    }
}

static void send_next(struct conn *c)
{
    struct evhttp_request *req;

    if (c->g->stopped)
        return;
    if (!(req = evhttp_request_new(on_response, c))) {
        c->s->errors++;
        pause_conn(c, ERROR_PAUSE_MS);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", c->g->addr);
    clock_gettime(CLOCK_MONOTONIC, &c->sent);
    /* On failure evhttp_make_request() frees the request itself. */
    if (evhttp_make_request(c->evcon, req, EVHTTP_REQ_GET, c->s->path) < 0) {
        c->s->errors++;
        pause_conn(c, ERROR_PAUSE_MS);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct gen *g = arg;
    uint64_t n503 = 0;
    (void)fd;
    (void)what;

    g->ticks++;
    /* Not a terminal (a log): a line every other second is enough. */
    if (!g->progress_tty && g->ticks % 2)
        goto reset;
    fprintf(stderr, "%s  [%s] %2u/%u s:", g->progress_tty ? "\r" : "", g->label, g->ticks,
            g->duration_s);
    for (unsigned i = 0; i < g->nstreams; i++) {
        struct stream *s = &g->streams[i];
        unsigned secs = g->progress_tty ? 1 : 2;
        fprintf(stderr, "  %s %.0f/s", s->path, (double)(s->ok - s->ok_at_last_tick) / secs);
        n503 += s->s503;
    }
    fprintf(stderr, "  (503s: %" PRIu64 ")%s", n503, g->progress_tty ? "   " : "\n");
reset:
    for (unsigned i = 0; i < g->nstreams; i++)
        if (g->progress_tty || g->ticks % 2 == 0)
            g->streams[i].ok_at_last_tick = g->streams[i].ok;
}

static void on_end(evutil_socket_t fd, short what, void *arg)
{
    struct gen *g = arg;
    (void)fd;
    (void)what;

    g->elapsed_s = since(&g->t0);
    g->stopped = 1;
    if (g->progress_tty)
        fprintf(stderr, "\n");
    /* Close every connection: requests still in flight are abandoned (the
     * server sees its clients hang up) and not counted. */
    for (unsigned i = 0; i < g->nconns; i++) {
        event_del(g->conns[i].pause);
        evhttp_connection_free(g->conns[i].evcon);
        g->conns[i].evcon = NULL;
    }
    event_del(g->tick);
    event_base_loopexit(g->base, NULL);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile, in ms. */
static double pct_ms(const struct stream *s, double p)
{
    if (s->nlat == 0)
        return 0;
    size_t rank = (size_t)(p / 100 * (double)s->nlat + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > s->nlat)
        rank = s->nlat;
    return s->lat_us[rank - 1] / 1000.0;
}

static void report(struct gen *g)
{
    FILE *rf = NULL;

    if (g->results && !(rf = fopen(g->results, "a")))
        fprintf(stderr, "loadgen: %s: %s\n", g->results, strerror(errno));
    printf("loadgen [%s]: %.1f s against %s:%u\n", g->label, g->elapsed_s, g->addr, g->port);
    printf("  %-18s %5s %8s %9s %9s %9s %9s %6s %6s %6s\n", "path", "conns", "200", "req/s",
           "p50 ms", "p99 ms", "max ms", "503", "other", "errors");
    for (unsigned i = 0; i < g->nstreams; i++) {
        struct stream *s = &g->streams[i];
        qsort(s->lat_us, s->nlat, sizeof *s->lat_us, cmp_u32);
        double rps = (double)s->ok / g->elapsed_s;
        double p50 = pct_ms(s, 50), p99 = pct_ms(s, 99), max = pct_ms(s, 100);
        printf("  %-18s %5u %8" PRIu64 " %9.1f %9.2f %9.2f %9.2f %6" PRIu64 " %6" PRIu64
               " %6" PRIu64 "\n",
               s->path, s->conns, s->ok, rps, p50, p99, max, s->s503, s->other, s->errors);
        if (rf)
            fprintf(rf,
                    "label=%s path=%s conns=%u seconds=%.2f ok=%" PRIu64 " rps=%.1f p50_ms=%.2f "
                    "p99_ms=%.2f max_ms=%.2f s503=%" PRIu64 " other=%" PRIu64 " errors=%" PRIu64
                    "\n",
                    g->label, s->path, s->conns, g->elapsed_s, s->ok, rps, p50, p99, max,
                    s->s503, s->other, s->errors);
    }
    if (rf)
        fclose(rf);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: loadgen -p PORT [-a ADDR] [-d SECONDS] [-l LABEL] [-r FILE] "
               "CONNS:PATH...\n"
               "  e.g. loadgen -p 8080 -d 8 2:/fast 4:/hash 12:/sleep?ms=50\n");
}

static int parse_stream(struct gen *g, const char *spec)
{
    struct stream *s = &g->streams[g->nstreams];
    char *end;
    unsigned long n;

    if (g->nstreams == MAX_STREAMS) {
        fprintf(stderr, "loadgen: at most %d streams\n", MAX_STREAMS);
        return -1;
    }
    errno = 0;
    n = strtoul(spec, &end, 10);
    if (errno || end == spec || *end != ':' || end[1] != '/' || n == 0 ||
        g->nconns + n > MAX_CONNS || strlen(end + 1) >= sizeof s->path) {
        fprintf(stderr, "loadgen: bad stream '%s' (want CONNS:/path, at most %d connections in "
                        "all)\n", spec, MAX_CONNS);
        return -1;
    }
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", end + 1);
    s->conns = (unsigned)n;
    g->nconns += (unsigned)n;
    g->nstreams++;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"addr", required_argument, NULL, 'a'},
        {"duration", required_argument, NULL, 'd'},
        {"label", required_argument, NULL, 'l'},
        {"results", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct gen g = {.addr = "127.0.0.1", .duration_s = 8, .label = "run"};
    unsigned long v;
    char *end;
    int ch, status = 1;

    while ((ch = getopt_long(argc, argv, "p:a:d:l:r:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
        case 'd':
            errno = 0;
            v = strtoul(optarg, &end, 10);
            if (errno || *end || end == optarg || v == 0 || v > (ch == 'p' ? 65535 : 3600)) {
                fprintf(stderr, "loadgen: bad value '%s' for -%c\n", optarg, ch);
                return 2;
            }
            if (ch == 'p')
                g.port = (unsigned)v;
            else
                g.duration_s = (unsigned)v;
            break;
        case 'a':
            g.addr = optarg;
            break;
        case 'l':
            g.label = optarg;
            break;
        case 'r':
            g.results = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (g.port == 0 || optind == argc) {
        usage(stderr);
        return 2;
    }
    for (int i = optind; i < argc; i++)
        if (parse_stream(&g, argv[i]) < 0)
            return 2;

    signal(SIGPIPE, SIG_IGN);
    g.progress_tty = isatty(STDERR_FILENO);
    if (!(g.base = event_base_new()) || !(g.conns = calloc(g.nconns, sizeof *g.conns))) {
        fprintf(stderr, "loadgen: out of memory\n");
        goto out;
    }
    for (unsigned i = 0, k = 0; i < g.nstreams; i++) {
        for (unsigned j = 0; j < g.streams[i].conns; j++, k++) {
            struct conn *c = &g.conns[k];
            c->g = &g;
            c->s = &g.streams[i];
            /* No evdns base: the address is numeric. */
            c->evcon = evhttp_connection_base_new(g.base, NULL, g.addr, (ev_uint16_t)g.port);
            c->pause = evtimer_new(g.base, on_pause_over, c);
            if (!c->evcon || !c->pause) {
                fprintf(stderr, "loadgen: cannot create connection %u\n", k);
                goto out;
            }
            evhttp_connection_set_timeout(c->evcon, 60);
        }
    }
    g.end = evtimer_new(g.base, on_end, &g);
    g.tick = event_new(g.base, -1, EV_PERSIST, on_tick, &g);
    if (!g.end || !g.tick)
        goto out;

    struct timeval dur = {(time_t)g.duration_s, 0}, sec = {1, 0};
    clock_gettime(CLOCK_MONOTONIC, &g.t0);
    event_add(g.end, &dur);
    event_add(g.tick, &sec);
    for (unsigned k = 0; k < g.nconns; k++)
        send_next(&g.conns[k]);
    event_base_dispatch(g.base);

    if (g.stopped) {
        report(&g);
        status = 0;
    }
out:
    for (unsigned k = 0; g.conns && k < g.nconns; k++) {
        if (g.conns[k].evcon)
            evhttp_connection_free(g.conns[k].evcon);
        if (g.conns[k].pause)
            event_free(g.conns[k].pause);
    }
    free(g.conns);
    for (unsigned i = 0; i < g.nstreams; i++)
        free(g.streams[i].lat_us);
    if (g.end)
        event_free(g.end);
    if (g.tick)
        event_free(g.tick);
    if (g.base)
        event_base_free(g.base);
    return status;
}
