/* SPDX-License-Identifier: MIT */
/*
 * resolve: getaddrinfo() for a list of names, each with a deadline.
 *
 *   resolve [--timeout-ms N] [NAME...]
 *
 * getaddrinfo() blocks, for as long as the resolver takes (seconds, with a
 * slow DNS server). Each name is a job of its own with a deadline
 * (evexec_submit_ex(), timeout_ms): a lookup that takes too long is reported
 * as timed out on time, and its late result is released by the cleanup
 * function (freeaddrinfo()), on the loop thread. The lookups run at LOW
 * priority, at most two at a time (evexec_pool_set_class_limit(): slow DNS
 * can never occupy every worker), while a HIGH job (reading
 * /etc/resolv.conf) goes first.
 *
 * Without names it looks up "localhost", this machine's host name and
 * "bad..name.invalid", which fails locally (an empty label: no query is
 * sent). Prints one line per name; exits 0 if every lookup finished, timed
 * out or failed as a line says, 1 on a setup error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <evexec.h>

struct lookup {
    const char *name;
    int *left;           /* jobs whose callback has not run */
    evexec_port *port;
    int gai;             /* getaddrinfo()'s answer */
    struct addrinfo *ai; /* the addresses, when gai is 0 */
};

/* On a worker: a late result of this goes to forget(), not to resolved().
 * The lookup it fills belongs to main(), which outlives every job. */
static void *lookup_name(evexec_job *job, void *arg)
{
    struct lookup *l = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;

    (void)job;
    l->gai = getaddrinfo(l->name, NULL, &hints, &ai);
    return ai; /* NULL on failure */
}

static void finished(int *left, evexec_port *port)
{
    if (--*left == 0)
        evexec_port_free(port); /* the loop runs out of events */
}

/* On the loop. */
static void resolved(int status, void *result, void *arg)
{
    struct lookup *l = arg;
    struct addrinfo *ai = result;
    char addr[INET6_ADDRSTRLEN];

    if (status == -ETIMEDOUT)
        printf("%-24s timed out\n", l->name);
    else if (status < 0)
        printf("%-24s %s\n", l->name, evexec_strerror(status));
    else if (l->gai != 0)
        printf("%-24s failed: %s\n", l->name, gai_strerror(l->gai));
    else {
        printf("%-24s", l->name);
        for (; ai; ai = ai->ai_next) {
            const void *a = ai->ai_family == AF_INET
                                ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                                : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
            printf(" %s", inet_ntop(ai->ai_family, a, addr, sizeof addr));
        }
        printf("\n");
        freeaddrinfo(result);
    }
    finished(l->left, l->port);
}

/* On the loop: the answer of a lookup whose deadline had passed. */
static void forget(void *result, void *arg)
{
    (void)arg;
    freeaddrinfo(result);
}

/* A HIGH job: which resolver the lookups will ask. */
static void *read_resolv_conf(evexec_job *job, void *arg)
{
    char line[256], *ns = NULL;
    FILE *f = fopen("/etc/resolv.conf", "re");

    (void)job;
    (void)arg;
    while (f && !ns && fgets(line, sizeof line, f))
        if (strncmp(line, "nameserver", 10) == 0) {
            line[strcspn(line, "\r\n")] = '\0';
            ns = strdup(line + 10 + strspn(line + 10, " \t"));
        }
    if (f)
        fclose(f);
    return ns;
}

struct resolver {
    int *left;
    evexec_port *port;
};

static void got_resolv_conf(int status, void *result, void *arg)
{
    struct resolver *r = arg;
    printf("%-24s %s\n", "(resolver)", status == 0 && result ? (char *)result : "none configured");
    free(result);
    finished(r->left, r->port);
}

int main(int argc, char **argv)
{
    char host[256] = "localhost";
    const char *defaults[] = {"localhost", host, "bad..name.invalid"};
    const char **names = defaults;
    struct evexec_pool_opts po = EVEXEC_POOL_OPTS_INIT;
    struct evexec_job_opts jo = EVEXEC_JOB_OPTS_INIT;
    struct event_base *base = NULL;
    evexec_pool *pool = NULL;
    evexec_port *port = NULL;
    struct lookup *lookups = NULL;
    struct resolver res;
    unsigned timeout_ms = 2000;
    int n = 3, left = 0, rc, status = 1;

    if (argc > 2 && strcmp(argv[1], "--timeout-ms") == 0) {
        timeout_ms = (unsigned)strtoul(argv[2], NULL, 10);
        argc -= 2;
        argv += 2;
    }
    if (argc > 1) {
        names = (const char **)argv + 1;
        n = argc - 1;
    } else if (gethostname(host, sizeof host - 1) < 0)
        strcpy(host, "localhost");

    if (!(lookups = calloc((size_t)n, sizeof *lookups)) || !(base = event_base_new()))
        goto out;
    po.max_threads = 4;
    po.name = "resolve";
    if ((rc = evexec_pool_new(&pool, &po)) < 0 ||
        (rc = evexec_pool_set_class_limit(pool, EVEXEC_PRIO_LOW, 2)) < 0 ||
        (rc = evexec_port_new(&port, base, NULL)) < 0) {
        fprintf(stderr, "resolve: %s\n", evexec_strerror(rc));
        goto out;
    }

    res.left = &left;
    res.port = port;
    jo.priority = EVEXEC_PRIO_HIGH;
    if ((rc = evexec_submit_ex(port, pool, read_resolv_conf, got_resolv_conf, &res, &jo, NULL)) == 0)
        left++;

    jo.priority = EVEXEC_PRIO_LOW;
    jo.timeout_ms = timeout_ms; /* each name's own deadline */
    jo.cleanup = forget;
    for (int i = 0; i < n; i++) {
        struct lookup *l = &lookups[i];
        l->name = names[i];
        l->left = &left;
        l->port = port;
        if ((rc = evexec_submit_ex(port, pool, lookup_name, resolved, l, &jo, NULL)) < 0)
            printf("%-24s not submitted: %s\n", l->name, evexec_strerror(rc));
        else
            left++;
    }
    if (left == 0) {
        evexec_port_free(port);
        port = NULL;
    }
    event_base_dispatch(base); /* until the last callback frees the port */
    port = NULL;
    status = 0;
out:
    evexec_port_free(port);
    /* Joins the workers: a lookup still blocked in getaddrinfo() past its
     * deadline is waited for here (its result went to forget() already, or
     * will not exist: the loop is done). */
    evexec_pool_free(pool);
    if (base)
        event_base_free(base);
    free(lookups);
    return status;
}
