/* SPDX-License-Identifier: MIT */
/*
 * examples/fetch: a blocking program that fetches web pages through
 * libevent's asynchronous HTTP client, living on a loop thread.
 *
 * The C counterpart of the "fetcher thread" recipe (an asyncio loop run in a
 * background thread, its coroutines submitted with run_coroutine_threadsafe()
 * and their results collected with future.result()):
 *
 *   - a loop thread owns one evhttp connection: its init hook creates it,
 *     its fini hook closes it after the last request;
 *   - fetch_start() posts a request from the blocking program and returns a
 *     future; fetch_finish() waits for it and takes the page;
 *   - so main() reads like blocking code, while the requests run on the
 *     loop, through the one shared connection.
 *
 * So that no network is needed, the example first starts a small server on
 * 127.0.0.1 (an evhttp server on a loop of its own, on a port chosen by the
 * kernel). Run: ./examples/fetch
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <evexec.h>

/* --- the local server ---------------------------------------------------- */

struct server {
    struct evhttp *http;
    int port;
};

static void serve(struct evhttp_request *req, void *arg)
{
    static const struct {
        const char *path, *body;
    } pages[] = {
        {"/", "Welcome to the local test server."},
        {"/news", "Nothing happened today."},
        {"/weather", "Sunny, 21 degrees."},
        {"/about", "Served by evhttp on a loop thread of evexec."},
    };
    const char *path = evhttp_request_get_uri(req);
    struct evbuffer *body = evbuffer_new();
    (void)arg;
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        if (strcmp(path, pages[i].path) == 0) {
            evbuffer_add_printf(body, "%s", pages[i].body);
            evhttp_send_reply(req, HTTP_OK, "OK", body);
            evbuffer_free(body);
            return;
        }
    }
    evbuffer_add_printf(body, "No page at %s.", path);
    evhttp_send_reply(req, HTTP_NOTFOUND, "Not Found", body);
    evbuffer_free(body);
}

static int server_init(evexec_loop *loop, void *arg)
{
    struct server *s = arg;
    struct evhttp_bound_socket *sock;
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;

    if (!(s->http = evhttp_new(evexec_loop_base(loop))))
        return -ENOMEM;
    evhttp_set_gencb(s->http, serve, s);
    sock = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0); /* any free port */
    if (!sock || getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&sin, &len)) {
        evhttp_free(s->http);
        return -EADDRNOTAVAIL;
    }
    s->port = ntohs(sin.sin_port);
    return 0;
}

static void server_fini(evexec_loop *loop, void *arg)
{
    struct server *s = arg;
    (void)loop;
    evhttp_free(s->http);
}

/* --- the fetcher: one connection, on its loop thread --------------------- */

struct fetcher {
    const char *host;
    int port;
    struct evhttp_connection *conn; /* loop thread only */
    unsigned requests;
};

struct page {
    int status;     /* HTTP status */
    char *body;     /* NUL-terminated */
    size_t len;
};

/* Made by fetch_start(), then owned by the loop side, which frees it once
 * it has settled the promise: after a cancel the holder cannot know when
 * the loop is done with it. */
struct request {
    char *path;
    evexec_promise *promise;
    struct evhttp_request *req;
};

static void request_free(struct request *r)
{
    free(r->path);
    free(r);
}

static int fetcher_init(evexec_loop *loop, void *arg)
{
    struct fetcher *f = arg;
    f->conn = evhttp_connection_base_new(evexec_loop_base(loop), NULL, f->host,
                                         (unsigned short)f->port);
    if (!f->conn)
        return -ENOMEM;
    evhttp_connection_set_timeout(f->conn, 10);
    return evexec_loop_set_context(loop, f); /* what every call will use */
}

static void fetcher_fini(evexec_loop *loop, void *arg)
{
    struct fetcher *f = arg;
    (void)loop;
    printf("[loop] closing the connection after %u requests\n", f->requests);
    evhttp_connection_free(f->conn);
}

/* On the loop thread, when the response (or a failure) arrives. */
static void on_response(struct evhttp_request *req, void *arg)
{
    struct request *r = arg;
    struct page *pg;

    if (!req || evhttp_request_get_response_code(req) == 0) {
        evexec_promise_fail(r->promise, -ECONNREFUSED);
        request_free(r);
        return;
    }
    if (!(pg = malloc(sizeof *pg))) {
        evexec_promise_fail(r->promise, -ENOMEM);
        request_free(r);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    pg->status = evhttp_request_get_response_code(req);
    pg->len = evbuffer_get_length(in);
    if (!(pg->body = malloc(pg->len + 1))) {
        free(pg);
        evexec_promise_fail(r->promise, -ENOMEM);
        request_free(r);
        return;
    }
    evbuffer_remove(in, pg->body, pg->len);
    pg->body[pg->len] = '\0';
    if (evexec_promise_resolve(r->promise, pg) < 0) { /* cancelled meanwhile */
        free(pg->body);
        free(pg);
    }
    request_free(r);
}

/* On the loop thread, if the program cancels a request in flight. */
static void on_cancel(evexec_promise *p, void *arg)
{
    struct request *r = arg;
    evhttp_cancel_request(r->req); /* on_response will not run */
    evexec_promise_fail(p, -ECANCELED);
    request_free(r);
}

/* The call posted by fetch_start(): runs on the loop thread. */
static void fetch_call(evexec_loop *loop, evexec_promise *p, void *arg)
{
    struct fetcher *f = evexec_loop_context(loop);
    struct request *r = arg;

    r->promise = p;
    r->req = evhttp_request_new(on_response, r);
    if (!r->req) {
        evexec_promise_fail(p, -ENOMEM);
        request_free(r);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Host", f->host);
    if (evhttp_make_request(f->conn, r->req, EVHTTP_REQ_GET, r->path) < 0) {
        evexec_promise_fail(p, -EIO); /* libevent freed the request */
        request_free(r);
        return;
    }
    f->requests++;
    if (evexec_promise_on_cancel(p, on_cancel, r) == -ECANCELED)
        on_cancel(p, r); /* cancelled while we were starting it: abort now */
}

/* --- the blocking side: what the program calls --------------------------- */

/* Starts fetching path; any thread. NULL if it could not be posted. */
static evexec_future *fetch_start(evexec_loop *fetcher, const char *path)
{
    struct request *r = calloc(1, sizeof *r);
    evexec_future *f;
    int rc;

    if (!r || !(r->path = strdup(path))) {
        free(r);
        return NULL;
    }
    if ((rc = evexec_loop_call(fetcher, fetch_call, r, &f)) < 0) {
        fprintf(stderr, "fetch %s: %s\n", path, evexec_strerror(rc));
        request_free(r); /* never posted: still ours */
        return NULL;
    }
    return f; /* r now belongs to the loop side */
}

/* Waits for a fetch at most timeout_ms, then frees the future: 0 and the
 * page in *out, or a negative errno. */
static int fetch_finish(evexec_future *f, int timeout_ms, struct page **out)
{
    void *result = NULL;
    if (evexec_future_wait(f, timeout_ms) == -ETIMEDOUT)
        evexec_future_cancel(f); /* give up; too late if it just arrived */
    int rc = evexec_future_result(f, &result); /* complete either way */
    evexec_future_free(f);
    if (rc == 0)
        *out = result;
    return rc;
}

int main(void)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    static const char *paths[] = {"/", "/news", "/weather", "/about", "/missing"};
    enum { N = sizeof paths / sizeof paths[0] };
    struct server srv = {0};
    struct fetcher fet = {0};
    evexec_future *fx[N];
    evexec_loop *server, *fetcher;
    int rc, failures = 0;

    o.init = server_init;
    o.fini = server_fini;
    o.arg = &srv;
    o.name = "httpd";
    if ((rc = evexec_loop_start(&server, &o)) < 0) {
        fprintf(stderr, "server: %s\n", evexec_strerror(rc));
        return 1;
    }
    printf("[main] local server on http://127.0.0.1:%d/\n", srv.port);

    fet.host = "127.0.0.1";
    fet.port = srv.port;
    o.init = fetcher_init;
    o.fini = fetcher_fini;
    o.arg = &fet;
    o.name = "fetcher";
    if ((rc = evexec_loop_start(&fetcher, &o)) < 0) {
        fprintf(stderr, "fetcher: %s\n", evexec_strerror(rc));
        evexec_loop_free(server);
        return 1;
    }

    /* Post every request first, then collect: they are all in flight while
     * main blocks on the first. */
    for (int i = 0; i < N; i++)
        fx[i] = fetch_start(fetcher, paths[i]);
    for (int i = 0; i < N; i++) {
        struct page *pg = NULL;
        if (!fx[i]) {
            failures++;
            continue;
        }
        rc = fetch_finish(fx[i], 5000, &pg);
        if (rc < 0) {
            printf("[main] GET %-9s failed: %s\n", paths[i], evexec_strerror(rc));
            failures++;
            continue;
        }
        printf("[main] GET %-9s -> %d, %2zu bytes: %s\n", paths[i], pg->status, pg->len, pg->body);
        if (pg->status != (strcmp(paths[i], "/missing") == 0 ? 404 : 200))
            failures++;
        free(pg->body);
        free(pg);
    }

    /* Drain: the fetcher's fini closes the connection after the last
     * request; then the server goes. */
    evexec_loop_free(fetcher);
    evexec_loop_free(server);
    printf("[main] %s\n", failures ? "FAILED" : "done");
    return failures ? 1 : 0;
}
