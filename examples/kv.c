/* SPDX-License-Identifier: MIT */
/*
 * kv: a small HTTP key-value service on libevent's evhttp, stored in SQLite
 * (default) or PostgreSQL, with every database call on an evexec pool.
 *
 *   kv [--db FILE | --pg CONNINFO] [--port N] [--threads N] [--queue N]
 *      [--timeout-ms N] [--seed N] [--inline]
 *
 *   GET    /kv/KEY     the value (200) or 404; priority HIGH
 *   PUT    /kv/KEY     stores the request body (204); priority NORMAL
 *   DELETE /kv/KEY     204, or 404
 *   POST   /import     body of "key<TAB>value" lines, one transaction;
 *                      priority LOW, at most one LOW job running at a time
 *   GET    /report     keys and bytes stored: a full scan (a slow query);
 *                      priority LOW
 *   GET    /stats      JSON: the pool's counters and its queue-wait and
 *                      run-time percentiles (evexec_pool_histograms())
 *
 * Any request takes ?timeout_ms=N (its deadline, default --timeout-ms) and
 * ?delay_ms=N (the worker sleeps that long first: a slow query, for tests).
 *
 * What it shows:
 * - one database connection per worker thread: the pool's worker_init opens
 *   it, work functions reach it with evexec_worker_state(), worker_fini
 *   closes it (SQLite in WAL mode, so readers never wait for the writer);
 * - per-request deadlines: evexec_submit_ex() with timeout_ms answers 504 on
 *   time even if the query hangs, and cleanup takes the late result;
 * - priorities and a class limit: reads go first, bulk imports are LOW and
 *   never take more than one worker;
 * - back-pressure: a full queue (-EAGAIN) is an immediate 503;
 * - SIGINT/SIGTERM: stop accepting, drain, answer everything, exit 0;
 * - --inline: the same service with the queries on the loop thread, the
 *   naive way, for comparison (one connection, no deadlines).
 *
 * A job that timed out before it started may still be handed to a worker
 * (evexec cannot take back a job a worker has just dequeued), and no
 * cleanup runs for it if it never starts; so its task is kept on a list
 * and freed once the pool has nothing queued or running (then it can no
 * longer start), or by cleanup if it did start.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <evexec.h>
#include <sqlite3.h>
#ifdef HAVE_LIBPQ
#include <libpq-fe.h>
#endif

#define MAX_KEY 128
#define MAX_BODY (4u << 20)
#define MAX_DELAY_MS 60000

/* ------------------------------------------------------------------------ */
/* Storage: one connection, used by one thread at a time.                   */

enum { FOUND = 0, NOT_FOUND = 1 }; /* or a negative error */

struct conn {
    sqlite3 *db;
    sqlite3_stmt *get, *put, *del, *report;
#ifdef HAVE_LIBPQ
    PGconn *pg;
#endif
    char err[160];
};

static const char schema_sqlite[] =
    "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB NOT NULL)";
static const char sql_get[] = "SELECT v FROM kv WHERE k = $1";
static const char sql_put[] =
    "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v";
static const char sql_del[] = "DELETE FROM kv WHERE k = $1";
static const char sql_report[] = "SELECT count(*), coalesce(sum(length(v)), 0) FROM kv";

struct options {
    const char *db, *pg;
    unsigned port, threads, timeout_ms, seed;
    size_t queue;
    int inline_mode;
};

static void conn_close(struct conn *c)
{
    if (!c)
        return;
    sqlite3_finalize(c->get);
    sqlite3_finalize(c->put);
    sqlite3_finalize(c->del);
    sqlite3_finalize(c->report);
    sqlite3_close(c->db);
#ifdef HAVE_LIBPQ
    if (c->pg)
        PQfinish(c->pg);
#endif
    free(c);
}

static int sqlite_fail(struct conn *c, const char *what)
{
    snprintf(c->err, sizeof c->err, "%s: %s", what, c->db ? sqlite3_errmsg(c->db) : "no memory");
    return -EIO;
}

#ifdef HAVE_LIBPQ
static int pg_fail(struct conn *c, const char *what, PGresult *res)
{
    snprintf(c->err, sizeof c->err, "%s: %s", what, PQerrorMessage(c->pg));
    c->err[strcspn(c->err, "\n")] = '\0';
    PQclear(res);
    return -EIO;
}

static int pg_exec(struct conn *c, const char *sql)
{
    PGresult *res = PQexec(c->pg, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return pg_fail(c, sql, res);
    PQclear(res);
    return 0;
}
#endif

/* Opens a connection; with @p create, also creates the table. */
static int conn_open(const struct options *o, int create, struct conn **out, char *err, size_t len)
{
    struct conn *c = calloc(1, sizeof *c);
    int rc = -EIO;

    if (!c) {
        snprintf(err, len, "out of memory");
        return -ENOMEM;
    }
#ifdef HAVE_LIBPQ
    if (o->pg) {
        PGresult *res;
        c->pg = PQconnectdb(o->pg);
        if (PQstatus(c->pg) != CONNECTION_OK) {
            rc = pg_fail(c, "connect", NULL);
            goto fail;
        }
        if (create && (rc = pg_exec(c, "CREATE TABLE IF NOT EXISTS kv "
                                       "(k text PRIMARY KEY, v bytea NOT NULL)")) < 0)
            goto fail;
        const char *names[] = {"get", "put", "del", "report"},
                   *sql[] = {sql_get, sql_put, sql_del, sql_report};
        for (int i = 0; i < 4; i++) {
            res = PQprepare(c->pg, names[i], sql[i], 0, NULL);
            if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                rc = pg_fail(c, "prepare", res);
                goto fail;
            }
            PQclear(res);
        }
        *out = c;
        return 0;
    }
#endif
    if (sqlite3_open_v2(o->db, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                           SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        rc = sqlite_fail(c, o->db);
        goto fail;
    }
    sqlite3_busy_timeout(c->db, 5000); /* writers take turns */
    if (sqlite3_exec(c->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", NULL, NULL,
                     NULL) != SQLITE_OK ||
        (create && sqlite3_exec(c->db, schema_sqlite, NULL, NULL, NULL) != SQLITE_OK) ||
        sqlite3_prepare_v2(c->db, sql_get, -1, &c->get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, sql_put, -1, &c->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, sql_del, -1, &c->del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, sql_report, -1, &c->report, NULL) != SQLITE_OK) {
        rc = sqlite_fail(c, o->db);
        goto fail;
    }
    *out = c;
    return 0;
fail:
    snprintf(err, len, "%s", c->err);
    conn_close(c);
    return rc;
}

/* FOUND with a malloc()ed copy of the value in *val, NOT_FOUND, or an error. */
static int db_get(struct conn *c, const char *key, char **val, size_t *len)
{
#ifdef HAVE_LIBPQ
    if (c->pg) {
        const char *params[1] = {key};
        PGresult *res = PQexecPrepared(c->pg, "get", 1, params, NULL, NULL, 1);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            return pg_fail(c, "get", res);
        int rc = NOT_FOUND;
        if (PQntuples(res) == 1) {
            *len = (size_t)PQgetlength(res, 0, 0);
            if ((*val = malloc(*len + 1)) != NULL) {
                memcpy(*val, PQgetvalue(res, 0, 0), *len);
                rc = FOUND;
            } else
                rc = -ENOMEM;
        }
        PQclear(res);
        return rc;
    }
#endif
    int rc = NOT_FOUND, step;
    sqlite3_bind_text(c->get, 1, key, -1, SQLITE_STATIC);
    if ((step = sqlite3_step(c->get)) == SQLITE_ROW) {
        *len = (size_t)sqlite3_column_bytes(c->get, 0);
        if ((*val = malloc(*len + 1)) != NULL) {
            memcpy(*val, sqlite3_column_blob(c->get, 0), *len);
            rc = FOUND;
        } else
            rc = -ENOMEM;
    } else if (step != SQLITE_DONE)
        rc = sqlite_fail(c, "get");
    sqlite3_reset(c->get);
    sqlite3_clear_bindings(c->get);
    return rc;
}

static int db_put(struct conn *c, const char *key, const char *val, size_t len)
{
#ifdef HAVE_LIBPQ
    if (c->pg) {
        const char *params[2] = {key, val};
        int lens[2] = {0, (int)len}, formats[2] = {0, 1};
        PGresult *res = PQexecPrepared(c->pg, "put", 2, params, lens, formats, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            return pg_fail(c, "put", res);
        PQclear(res);
        return 0;
    }
#endif
    sqlite3_bind_text(c->put, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(c->put, 2, len ? val : "", (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(c->put) == SQLITE_DONE ? 0 : sqlite_fail(c, "put");
    sqlite3_reset(c->put);
    sqlite3_clear_bindings(c->put);
    return rc;
}

static int db_del(struct conn *c, const char *key)
{
#ifdef HAVE_LIBPQ
    if (c->pg) {
        const char *params[1] = {key};
        PGresult *res = PQexecPrepared(c->pg, "del", 1, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            return pg_fail(c, "delete", res);
        int rc = strcmp(PQcmdTuples(res), "0") == 0 ? NOT_FOUND : FOUND;
        PQclear(res);
        return rc;
    }
#endif
    sqlite3_bind_text(c->del, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(c->del) == SQLITE_DONE
                 ? (sqlite3_changes(c->db) ? FOUND : NOT_FOUND)
                 : sqlite_fail(c, "delete");
    sqlite3_reset(c->del);
    sqlite3_clear_bindings(c->del);
    return rc;
}

static int db_report(struct conn *c, unsigned long long *keys, unsigned long long *bytes)
{
#ifdef HAVE_LIBPQ
    if (c->pg) {
        PGresult *res = PQexecPrepared(c->pg, "report", 0, NULL, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
            return pg_fail(c, "report", res);
        *keys = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        *bytes = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
        PQclear(res);
        return 0;
    }
#endif
    int rc = 0;
    if (sqlite3_step(c->report) == SQLITE_ROW) {
        *keys = (unsigned long long)sqlite3_column_int64(c->report, 0);
        *bytes = (unsigned long long)sqlite3_column_int64(c->report, 1);
    } else
        rc = sqlite_fail(c, "report");
    sqlite3_reset(c->report);
    return rc;
}

static int db_exec(struct conn *c, const char *sql)
{
#ifdef HAVE_LIBPQ
    if (c->pg)
        return pg_exec(c, sql);
#endif
    return sqlite3_exec(c->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : sqlite_fail(c, sql);
}

static int valid_key(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > MAX_KEY)
        return 0;
    return strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* Lines "key<TAB>value" (body NUL-terminated), all in one transaction. */
static int db_import(struct conn *c, char *body, unsigned *n)
{
    int rc = db_exec(c, c->db ? "BEGIN IMMEDIATE" : "BEGIN");
    char *save = NULL;

    *n = 0;
    for (char *line = strtok_r(body, "\n", &save); rc == 0 && line;
         line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t');
        if (!tab || (*tab = '\0', !valid_key(line))) {
            snprintf(c->err, sizeof c->err, "line %u: not key<TAB>value", *n + 1);
            rc = -EINVAL;
        } else if ((rc = db_put(c, line, tab + 1, strlen(tab + 1))) == 0)
            ++*n;
    }
    if (rc == 0)
        return db_exec(c, "COMMIT");
    db_exec(c, "ROLLBACK");
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Requests.                                                                */

enum op { OP_GET, OP_PUT, OP_DEL, OP_IMPORT, OP_REPORT };

#define T_STARTED 1u   /* the work function began */
#define T_TIMED_OUT 2u /* the done callback ran with -ETIMEDOUT */

struct server;

struct task {
    struct server *s;
    struct evhttp_request *req; /* NULL once answered or the client is gone */
    enum op op;
    char key[MAX_KEY + 1];
    char *body; /* PUT value or import lines, NUL-terminated */
    size_t body_len;
    unsigned delay_ms;
    _Atomic unsigned state;
    /* results, written by the work function */
    int rc;
    char *val;
    size_t val_len;
    unsigned imported;
    unsigned long long keys, bytes; /* OP_REPORT */
    char err[160];
    struct task *prev, *next; /* on the server's list of timed-out tasks */
};

struct server {
    struct options o;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *listener;
    struct event *sigint, *sigterm;
    evexec_pool *pool;
    evexec_port *port;
    struct conn *inline_conn;
    unsigned outstanding; /* jobs whose done callback has not run */
    unsigned unsent;      /* replies libevent has not finished writing */
    int stopping, finishing;
    struct task *timed_out; /* timed out before starting: see the top */
    uint64_t n_503, n_504;
};

static void maybe_finish(struct server *s);

static void task_free(struct task *t)
{
    free(t->body);
    free(t->val);
    free(t);
}

static void unlink_timed_out(struct task *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        t->s->timed_out = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

/* Frees the timed-out tasks that can no longer start: once the pool has
 * nothing queued or running, no work function can begin with them. */
static void sweep_timed_out(struct server *s)
{
    struct evexec_pool_stats st = {.size = sizeof st};
    if (!s->timed_out || evexec_pool_stats(s->pool, &st) < 0 || st.queued || st.running)
        return;
    for (struct task *t = s->timed_out, *next; t; t = next) {
        next = t->next;
        if (!(atomic_load(&t->state) & T_STARTED)) { /* else cleanup frees it */
            unlink_timed_out(t);
            task_free(t);
        }
    }
}

static void on_reply_written(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    s->unsent--;
    maybe_finish(s);
}

static void on_close_unsent(struct evhttp_connection *evcon, void *arg)
{
    struct server *s = arg;
    (void)evcon;
    s->unsent--;
    maybe_finish(s);
}

/* Sends the answer (body: a string, or len bytes). */
static void reply(struct server *s, struct evhttp_request *req, int code, const char *body,
                  size_t len)
{
    struct evbuffer *b = evbuffer_new();
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    if (code == 503) {
        s->n_503++;
        evhttp_add_header(h, "Retry-After", "1");
    }
    if (code == 504)
        s->n_504++;
    if (s->stopping)
        evhttp_add_header(h, "Connection", "close");
    if (b && body)
        evbuffer_add(b, body, len == (size_t)-1 ? strlen(body) : len);
    if (evcon) {
        s->unsent++;
        evhttp_request_set_on_complete_cb(req, on_reply_written, s);
        evhttp_connection_set_closecb(evcon, on_close_unsent, s);
    }
    evhttp_send_reply(req, code, NULL, b);
    if (b)
        evbuffer_free(b);
}

/* The blocking part: the same for a worker and for --inline. */
static void run_task(struct conn *c, struct task *t, const evexec_job *job)
{
    for (unsigned ms = 0; ms < t->delay_ms && !evexec_job_cancelled(job); ms += 10)
        usleep(10000); /* a slow query */
    if (evexec_job_cancelled(job)) {
        t->rc = -ECANCELED;
        return;
    }
    c->err[0] = '\0';
    switch (t->op) {
    case OP_GET: t->rc = db_get(c, t->key, &t->val, &t->val_len); break;
    case OP_PUT: t->rc = db_put(c, t->key, t->body, t->body_len); break;
    case OP_DEL: t->rc = db_del(c, t->key); break;
    case OP_IMPORT: t->rc = db_import(c, t->body, &t->imported); break;
    case OP_REPORT: t->rc = db_report(c, &t->keys, &t->bytes); break;
    }
    snprintf(t->err, sizeof t->err, "%s", c->err);
}

/* On a worker. Always returns the task, so a late one reaches cleanup. */
static void *kv_work(evexec_job *job, void *arg)
{
    struct task *t = arg;
    struct conn *c = evexec_worker_state(job); /* this thread's connection */

    if (atomic_fetch_or(&t->state, T_STARTED) & T_TIMED_OUT)
        return t; /* answered 504 already */
    run_task(c, t, job);
    return t;
}

static void answer(struct task *t)
{
    struct server *s = t->s;
    char msg[200];

    if (!t->req)
        return; /* the client went away */
    evhttp_connection_set_closecb(evhttp_request_get_connection(t->req), NULL, NULL);
    if (t->rc == NOT_FOUND)
        reply(s, t->req, 404, "no such key\n", (size_t)-1);
    else if (t->rc == -ECANCELED)
        reply(s, t->req, 503, "shutting down\n", (size_t)-1);
    else if (t->rc == -EINVAL) {
        snprintf(msg, sizeof msg, "%s\n", t->err);
        reply(s, t->req, 400, msg, (size_t)-1);
    } else if (t->rc < 0) {
        snprintf(msg, sizeof msg, "database: %s\n", t->err);
        reply(s, t->req, 500, msg, (size_t)-1);
    } else if (t->op == OP_GET)
        reply(s, t->req, 200, t->val, t->val_len);
    else if (t->op == OP_IMPORT) {
        snprintf(msg, sizeof msg, "imported %u\n", t->imported);
        reply(s, t->req, 200, msg, (size_t)-1);
    } else if (t->op == OP_REPORT) {
        snprintf(msg, sizeof msg, "{\"keys\":%llu,\"bytes\":%llu}\n", t->keys, t->bytes);
        reply(s, t->req, 200, msg, (size_t)-1);
    } else
        reply(s, t->req, 204, NULL, 0);
    t->req = NULL;
}

/* On the loop: exactly once per accepted job. */
static void kv_done(int status, void *result, void *arg)
{
    struct task *t = arg;
    struct server *s = t->s;

    (void)result; /* t itself */
    s->outstanding--;
    if (status == -ETIMEDOUT) {
        if (t->req) {
            evhttp_connection_set_closecb(evhttp_request_get_connection(t->req), NULL, NULL);
            reply(s, t->req, 504, "deadline passed\n", (size_t)-1);
            t->req = NULL;
        }
        if (!(atomic_fetch_or(&t->state, T_TIMED_OUT) & T_STARTED)) {
            t->next = s->timed_out; /* may still start: see the top */
            if (t->next)
                t->next->prev = t;
            s->timed_out = t;
        } /* else the work function returns it late, to kv_cleanup */
    } else {
        if (status == -ECANCELED)
            t->rc = -ECANCELED;
        answer(t);
        task_free(t);
    }
    sweep_timed_out(s);
    maybe_finish(s);
}

/* On the loop: the late result of a job whose deadline passed. */
static void kv_cleanup(void *result, void *arg)
{
    struct task *t = result;
    (void)arg;
    if (!(atomic_load(&t->state) & T_STARTED))
        return; /* not reached: a late result means the work ran */
    for (struct task *z = t->s->timed_out; z; z = z->next)
        if (z == t) {
            unlink_timed_out(t);
            break;
        }
    task_free(t);
}

/* The connection closed while the job was pending. */
static void on_close_pending(struct evhttp_connection *evcon, void *arg)
{
    struct task *t = arg;
    (void)evcon;
    t->req = NULL;
}

static int query_uint(struct evkeyvalq *q, const char *name, unsigned max, unsigned *out)
{
    const char *v = evhttp_find_header(q, name);
    char *end;
    unsigned long n;

    if (!v)
        return 0;
    errno = 0;
    n = strtoul(v, &end, 10);
    if (errno || end == v || *end || n > max)
        return -1;
    *out = (unsigned)n;
    return 0;
}

static void submit(struct server *s, struct evhttp_request *req, struct task *t, int priority,
                   unsigned timeout_ms)
{
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    int rc;

    if (s->o.inline_mode) { /* the naive way: the loop waits */
        run_task(s->inline_conn, t, NULL);
        answer(t);
        task_free(t);
        return;
    }
    jo.priority = priority;
    jo.timeout_ms = timeout_ms;
    jo.cleanup = kv_cleanup;
    rc = evexec_submit_ex(s->port, s->pool, kv_work, kv_done, t, &jo, NULL);
    if (rc < 0) { /* no callback will come */
        t->rc = rc == -EAGAIN || rc == -ESHUTDOWN ? -ECANCELED : -EIO;
        snprintf(t->err, sizeof t->err, "%s", evexec_strerror(rc));
        answer(t); /* 503: queue full (-EAGAIN), or shutting down */
        task_free(t);
        return;
    }
    s->outstanding++;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_close_pending, t);
}

static void percentiles(const uint64_t *h, double *p50, double *p99)
{
    uint64_t total = 0, sum = 0;
    for (int i = 0; i < EVEXEC_HIST_BUCKETS; i++)
        total += h[i];
    *p50 = *p99 = 0;
    for (int i = 0; i < EVEXEC_HIST_BUCKETS && total; i++) {
        sum += h[i];
        double upper_us = (double)(UINT64_C(2) << i) / 1e3; /* bucket i: below 2^(i+1) ns */
        if (*p50 == 0 && sum * 2 >= total)
            *p50 = upper_us;
        if (sum * 100 >= total * 99) {
            *p99 = upper_us;
            break;
        }
    }
}

static void do_stats(struct server *s, struct evhttp_request *req)
{
    struct evexec_pool_stats st = {.size = sizeof st};
    struct evexec_pool_histograms h = {.size = sizeof h};
    double w50 = 0, w99 = 0, r50 = 0, r99 = 0;
    char buf[1024];

    if (s->o.inline_mode) {
        snprintf(buf, sizeof buf, "{\"mode\":\"inline\",\"503\":%" PRIu64 "}\n", s->n_503);
        reply(s, req, 200, buf, (size_t)-1);
        return;
    }
    evexec_pool_stats(s->pool, &st);
    if (evexec_pool_histograms(s->pool, &h) == 0) {
        percentiles(h.wait, &w50, &w99);
        percentiles(h.run, &r50, &r99);
    }
    snprintf(buf, sizeof buf,
             "{\"threads\":%u,\"idle\":%u,\"running\":%u,\"queued\":%zu,"
             "\"queued_high\":%zu,\"queued_normal\":%zu,\"queued_low\":%zu,"
             "\"submitted\":%" PRIu64 ",\"completed\":%" PRIu64 ",\"cancelled\":%" PRIu64 ",\"rejected\":%" PRIu64
             ",\"timed_out\":%" PRIu64 ",\"worker_init_failed\":%" PRIu64
             ",\"503\":%" PRIu64 ",\"504\":%" PRIu64 ",\n"
             " \"wait_us\":{\"p50\":%.0f,\"p99\":%.0f},\"run_us\":{\"p50\":%.0f,\"p99\":%.0f}}\n",
             st.threads, st.idle, st.running, st.queued, st.queued_high, st.queued_normal,
             st.queued_low, st.submitted, st.completed, st.cancelled, st.rejected, st.timed_out,
             st.worker_init_failed, s->n_503, s->n_504, w50, w99, r50, r99);
    reply(s, req, 200, buf, (size_t)-1);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = evhttp_uri_get_path(uri), *query = evhttp_uri_get_query(uri);
    struct evkeyvalq q = {0};
    struct task *t = NULL;
    unsigned timeout_ms = s->o.timeout_ms;
    int priority = EVEXEC_PRIO_NORMAL;

    if (!path)
        path = "/";
    if (s->stopping) {
        reply(s, req, 503, "shutting down\n", (size_t)-1);
        return;
    }
    if (strcmp(path, "/stats") == 0 && cmd == EVHTTP_REQ_GET) {
        do_stats(s, req);
        return;
    }
    if (!(t = calloc(1, sizeof *t))) {
        reply(s, req, 500, "out of memory\n", (size_t)-1);
        return;
    }
    t->s = s;
    t->req = req;
    if (query && evhttp_parse_query_str(query, &q) < 0)
        goto bad;
    if (query_uint(&q, "timeout_ms", INT32_MAX, &timeout_ms) < 0 ||
        query_uint(&q, "delay_ms", MAX_DELAY_MS, &t->delay_ms) < 0)
        goto bad;
    evhttp_clear_headers(&q);
    if (strncmp(path, "/kv/", 4) == 0 && valid_key(path + 4)) {
        snprintf(t->key, sizeof t->key, "%s", path + 4);
        if (cmd == EVHTTP_REQ_GET) {
            t->op = OP_GET;
            priority = EVEXEC_PRIO_HIGH; /* reads first */
        } else if (cmd == EVHTTP_REQ_PUT)
            t->op = OP_PUT;
        else if (cmd == EVHTTP_REQ_DELETE)
            t->op = OP_DEL;
        else
            goto bad;
    } else if (strcmp(path, "/import") == 0 && cmd == EVHTTP_REQ_POST) {
        t->op = OP_IMPORT;
        priority = EVEXEC_PRIO_LOW; /* bulk: after everything else */
    } else if (strcmp(path, "/report") == 0 && cmd == EVHTTP_REQ_GET) {
        t->op = OP_REPORT;
        priority = EVEXEC_PRIO_LOW;
    } else {
        reply(s, req, 404, "unknown endpoint\n", (size_t)-1);
        task_free(t);
        return;
    }
    if (t->op == OP_PUT || t->op == OP_IMPORT) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        t->body_len = evbuffer_get_length(in);
        if (!(t->body = malloc(t->body_len + 1))) {
            reply(s, req, 500, "out of memory\n", (size_t)-1);
            task_free(t);
            return;
        }
        evbuffer_remove(in, t->body, t->body_len);
        t->body[t->body_len] = '\0';
    }
    submit(s, req, t, priority, timeout_ms);
    return;
bad:
    evhttp_clear_headers(&q);
    reply(s, req, 400, "bad request\n", (size_t)-1);
    task_free(t);
}

/* ------------------------------------------------------------------------ */
/* The pool's worker hooks: one connection per thread.                      */

static int worker_init(void *worker_arg, void **state)
{
    const struct options *o = worker_arg;
    struct conn *c;
    char err[200];

    if (conn_open(o, 0, &c, err, sizeof err) < 0) {
        fprintf(stderr, "kv: worker: %s\n", err);
        return -1; /* the thread exits; see worker_init_failed in /stats */
    }
    *state = c;
    return 0;
}

static void worker_fini(void *state, void *worker_arg)
{
    (void)worker_arg;
    conn_close(state);
}

/* ------------------------------------------------------------------------ */
/* Start and stop.                                                          */

/* Runs from the loop itself, not from inside evhttp's callbacks, which
 * must not free the evhttp they run for. */
static void finish(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    (void)fd;
    (void)what;
    evhttp_free(s->http); /* closes idle keep-alive connections */
    s->http = NULL;
    event_del(s->sigint);
    event_del(s->sigterm);
    /* Nothing is outstanding: the port goes at once. (Freed earlier, it
     * would cancel the queued jobs and stop the running ones.) */
    evexec_port_free(s->port);
    s->port = NULL;
}

/* The end, once stopping: every job delivered and every reply written. */
static void maybe_finish(struct server *s)
{
    static const struct timeval now = {0, 0};
    if (!s->stopping || s->outstanding || s->unsent || s->finishing)
        return;
    s->finishing = 1;
    if (event_base_once(s->base, -1, EV_TIMEOUT, finish, s, &now) < 0)
        finish(-1, 0, s);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    (void)what;
    if (s->stopping) { /* a second signal: cancel what is queued */
        if (s->pool)
            evexec_pool_shutdown(s->pool, EVEXEC_CANCEL);
        return;
    }
    fprintf(stderr, "kv: signal %d: stopping\n", (int)sig);
    s->stopping = 1;
    evhttp_del_accept_socket(s->http, s->listener); /* 1. accept nothing more */
    if (s->pool)
        evexec_pool_shutdown(s->pool, EVEXEC_DRAIN); /* 2. queued jobs still run */
    maybe_finish(s); /* 3. once every callback ran and every reply left */
}

static int seed(struct server *s, struct conn *c)
{
    char key[32], val[64];
    int rc = db_exec(c, c->db ? "BEGIN IMMEDIATE" : "BEGIN");

    for (unsigned i = 0; rc == 0 && i < s->o.seed; i++) {
        snprintf(key, sizeof key, "k%u", i);
        snprintf(val, sizeof val, "value of k%u", i);
        rc = db_put(c, key, val, strlen(val));
    }
    return rc == 0 ? db_exec(c, "COMMIT") : rc;
}

static void usage(FILE *f)
{
#ifdef HAVE_LIBPQ
    fprintf(f, "usage: kv [--db FILE | --pg CONNINFO] [--port N] [--threads N] [--queue N]\n"
#else
    fprintf(f, "usage: kv [--db FILE] [--port N] [--threads N] [--queue N]\n"
#endif
               "          [--timeout-ms N] [--seed N] [--inline]\n");
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},        {"pg", required_argument, NULL, 'g'},
        {"port", required_argument, NULL, 'p'},      {"threads", required_argument, NULL, 't'},
        {"queue", required_argument, NULL, 'q'},     {"timeout-ms", required_argument, NULL, 'T'},
        {"seed", required_argument, NULL, 's'},      {"inline", no_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0}};
    int ch;

    while ((ch = getopt_long(argc, argv, "d:g:p:t:q:T:s:ih", longopts, NULL)) != -1) {
        unsigned long v = 0;
        char *end = NULL;
        if (ch == 'p' || ch == 't' || ch == 'q' || ch == 'T' || ch == 's') {
            errno = 0;
            v = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || v > 100000000) {
                fprintf(stderr, "kv: bad number '%s'\n", optarg);
                return -1;
            }
        }
        switch (ch) {
        case 'd': o->db = optarg; break;
        case 'g': o->pg = optarg; break;
        case 'p': o->port = (unsigned)v; break;
        case 't': o->threads = (unsigned)v; break;
        case 'q': o->queue = v; break;
        case 'T': o->timeout_ms = (unsigned)v; break;
        case 's': o->seed = (unsigned)v; break;
        case 'i': o->inline_mode = 1; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
#ifndef HAVE_LIBPQ
    if (o->pg) {
        fprintf(stderr, "kv: built without libpq: --pg is not available\n");
        return -1;
    }
#endif
    if (optind != argc || o->port > 65535 || !o->threads || !o->queue) {
        usage(stderr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct server s = {.o = {.db = "kv.db", .port = 8080, .threads = 4, .queue = 64,
                             .timeout_ms = 1000}};
    struct conn *c = NULL;
    char err[200];
    int rc, status = 1;

    if (parse_options(argc, argv, &s.o) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN); /* a client gone: EPIPE, not death */

    /* The schema and the seed rows, then this connection serves --inline. */
    if (conn_open(&s.o, 1, &c, err, sizeof err) < 0 || (s.o.seed && seed(&s, c) < 0)) {
        fprintf(stderr, "kv: %s\n", c ? c->err : err);
        goto out;
    }
    if (s.o.inline_mode) {
        s.inline_conn = c;
        c = NULL;
    } else {
        conn_close(c);
        c = NULL;
    }
    if (!(s.base = event_base_new()))
        goto out;
    if (!s.o.inline_mode) {
        struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
        po.max_threads = s.o.threads;
        po.max_queued = s.o.queue;
        po.max_running_low = 1; /* one import at a time: reads keep their workers */
        po.flags = EVEXEC_POOL_HISTOGRAMS;
        po.worker_init = worker_init;
        po.worker_fini = worker_fini;
        po.worker_arg = &s.o;
        po.name = "kv";
        if ((rc = evexec_pool_new(&s.pool, &po)) < 0 ||
            (rc = evexec_port_new(&s.port, s.base, NULL)) < 0) {
            fprintf(stderr, "kv: evexec: %s\n", evexec_strerror(rc));
            goto out;
        }
    }
    if (!(s.http = evhttp_new(s.base)))
        goto out;
    evhttp_set_gencb(s.http, on_request, &s);
    evhttp_set_allowed_methods(s.http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                           EVHTTP_REQ_POST);
    evhttp_set_max_body_size(s.http, MAX_BODY);
    evhttp_set_timeout(s.http, 30);
    if (!(s.listener = evhttp_bind_socket_with_handle(s.http, "127.0.0.1", (ev_uint16_t)s.o.port))) {
        fprintf(stderr, "kv: cannot listen on port %u\n", s.o.port);
        goto out;
    }
    s.sigint = evsignal_new(s.base, SIGINT, on_signal, &s);
    s.sigterm = evsignal_new(s.base, SIGTERM, on_signal, &s);
    if (!s.sigint || !s.sigterm || event_add(s.sigint, NULL) < 0 || event_add(s.sigterm, NULL) < 0)
        goto out;
    {
        struct sockaddr_in sin;
        socklen_t len = sizeof sin;
        getsockname(evhttp_bound_socket_get_fd(s.listener), (struct sockaddr *)&sin, &len);
        printf("kv: listening on http://127.0.0.1:%u/ (%s, %s)\n", ntohs(sin.sin_port),
               s.o.pg ? "PostgreSQL" : "SQLite",
               s.o.inline_mode ? "inline: queries on the loop thread" : "evexec pool");
        fflush(stdout);
    }
    event_base_dispatch(s.base); /* returns once stopped and every callback ran */
    status = 0;
out:
    if (s.http)
        evhttp_free(s.http);
    evexec_port_free(s.port); /* only on an early error: stopping frees it */
    if (s.port && s.base)
        event_base_dispatch(s.base);
    evexec_pool_free(s.pool); /* joins the workers (worker_fini closes their connections) */
    while (s.timed_out) {     /* none can start now */
        struct task *t = s.timed_out;
        unlink_timed_out(t);
        task_free(t);
    }
    if (s.sigint)
        event_free(s.sigint);
    if (s.sigterm)
        event_free(s.sigterm);
    if (s.base)
        event_base_free(s.base);
    conn_close(c);
    conn_close(s.inline_conn);
    return status;
}
