/* SPDX-License-Identifier: MIT */
/*
 * readfiles: read whole files off the loop thread, on the port's default
 * pool (Python's asyncio.to_thread(): no pool to create or size).
 *
 *   readfiles [--threads N] FILE...
 *
 * Each file is read with plain open()/read() by a job submitted with a NULL
 * pool, which means the port's default pool (evexec_port_default_pool():
 * min(32, CPUs + 4) threads, made on first use, released with the port).
 * --threads N resizes that pool first (evexec_pool_resize()). The loop
 * prints each file's size and line count as it arrives, then the pool's
 * counters. Exits 0 if every file was read, 1 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <evexec.h>

struct file {
    const char *path;
    int err;        /* 0, or the errno of open()/read() */
    char *data;     /* the contents, malloc()ed */
    size_t len;
};

struct reader {
    evexec_port *port;
    int left, failed;
};

struct job {
    struct reader *r;
    struct file f;
};

/* On a worker of the default pool. */
static void *read_file(evexec_job *job, void *arg)
{
    struct file *f = &((struct job *)arg)->f;
    size_t cap = 0;
    ssize_t n;
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);

    (void)job;
    if (fd < 0) {
        f->err = errno;
        return NULL;
    }
    for (;;) {
        if (f->len == cap) {
            char *bigger = realloc(f->data, cap = cap ? cap * 2 : 4096);
            if (!bigger) {
                f->err = ENOMEM;
                break;
            }
            f->data = bigger;
        }
        n = read(fd, f->data + f->len, cap - f->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0)
                f->err = errno;
            break;
        }
        f->len += (size_t)n;
    }
    close(fd);
    return NULL;
}

/* On the loop. */
static void file_read(int status, void *result, void *arg)
{
    struct job *j = arg;
    struct reader *r = j->r;
    size_t lines = 0;

    (void)result;
    if (status < 0 || j->f.err) {
        printf("%s: %s\n", j->f.path, status < 0 ? evexec_strerror(status) : strerror(j->f.err));
        r->failed = 1;
    } else {
        for (size_t i = 0; i < j->f.len; i++)
            lines += j->f.data[i] == '\n';
        printf("%s: %zu bytes, %zu lines\n", j->f.path, j->f.len, lines);
    }
    free(j->f.data);
    free(j);
    if (--r->left == 0) {
        evexec_pool *def;
        struct evexec_pool_stats st = {.size = sizeof st};
        if (evexec_port_default_pool(r->port, &def) == 0 && evexec_pool_stats(def, &st) == 0)
            printf("default pool: %u threads at most, %" PRIu64 " started, %" PRIu64
                   " jobs completed\n",
                   st.max_threads, st.threads_started, st.completed);
        evexec_port_free(r->port); /* also releases its default pool */
    }
}

int main(int argc, char **argv)
{
    struct reader r = {0};
    struct event_base *base;
    unsigned threads = 0;
    int rc, first = 1;

    if (argc > 2 && strcmp(argv[1], "--threads") == 0) {
        threads = (unsigned)strtoul(argv[2], NULL, 10);
        first = 3;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: readfiles [--threads N] FILE...\n");
        return 2;
    }
    if (!(base = event_base_new()))
        return 1;
    if ((rc = evexec_port_new(&r.port, base, NULL)) < 0) {
        fprintf(stderr, "readfiles: %s\n", evexec_strerror(rc));
        event_base_free(base);
        return 1;
    }
    if (threads) {
        evexec_pool *def;
        if ((rc = evexec_port_default_pool(r.port, &def)) < 0 ||
            (rc = evexec_pool_resize(def, 0, threads, 1024)) < 0)
            fprintf(stderr, "readfiles: resize: %s\n", evexec_strerror(rc));
    }
    for (int i = first; i < argc; i++) {
        struct job *j = calloc(1, sizeof *j);
        rc = -ENOMEM;
        if (j) {
            j->r = &r;
            j->f.path = argv[i];
            rc = evexec_submit(r.port, NULL, read_file, file_read, j, NULL); /* NULL: default pool */
        }
        if (rc < 0) {
            fprintf(stderr, "%s: not submitted: %s\n", argv[i], evexec_strerror(rc));
            free(j);
            r.failed = 1;
            continue;
        }
        r.left++;
    }
    if (r.left == 0)
        evexec_port_free(r.port);
    event_base_dispatch(base); /* until the last callback frees the port */
    event_base_free(base);
    return r.failed;
}
