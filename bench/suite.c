/* SPDX-License-Identifier: MIT */
/*
 * The suite: runs every (workload, system) measurement in a child process
 * ("evexec-bench run ..."), interleaved (rep 1 of every system, then rep 2,
 * with the order of the systems rotated each rep), runs W7 as W1 and W4
 * under perf stat (or strace -c -f), then writes the report: a Markdown file
 * with medians, min-max and each system's ratio to evexec's figure from the
 * same rep, the targets of BENCH.md's last table with a verdict, the
 * machine, and a PNG chart drawn by gnuplot.
 *
 * "overhead" runs in one child (the variants of evexec interleaved there);
 * in rep 1 the suite also counts, with callgrind when valgrind is
 * installed, the instructions per job of W1 for each variant: a figure the
 * machine's noise does not move.
 *
 * Exit status: 0 when every measurement ran and delivered every callback
 * on the loop thread, 1 otherwise, 2 on bad usage. Figures are never judged
 * here; the verdicts are information for people.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#ifndef BENCH_CFLAGS
#define BENCH_CFLAGS "?"
#endif
#ifndef BENCH_SRCDIR
#define BENCH_SRCDIR "."
#endif
#ifdef __clang__
#define COMPILER "clang " __clang_version__
#else
#define COMPILER "gcc " __VERSION__
#endif

#define MAXKV 48
#define MAXSYS 16
#define MAXWL 16

struct kv {
    char key[32];
    double val;
};

enum { ST_FAIL = 0, ST_OK = 1, ST_SKIP = 2 };

struct meas {
    char wl[16], sys[24];
    int rep;
    int status;
    char reason[256];
    int nkv;
    struct kv kv[MAXKV];
};

static struct meas *ms;
static size_t nms, capms;

static const char *self_path;
static const char *baseline; /* --baseline: another build's evexec-bench */
static int quick;
static long jobs_override = -1;
static unsigned timeout_s;
static int reps;

static const char *systems[MAXSYS];
static int nsystems;
static const char *workloads[MAXWL];
static int nworkloads;

/* W7's counting tool. */
static enum { TOOL_NONE, TOOL_PERF, TOOL_STRACE } tool;
static char tool_why[256];

/* --- small helpers ------------------------------------------------------- */

static int in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n))
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

static struct meas *new_meas(const char *wl, const char *sys, int rep)
{
    if (nms == capms) {
        capms = capms ? 2 * capms : 256;
        ms = realloc(ms, capms * sizeof *ms);
        if (!ms) {
            perror("realloc");
            exit(2);
        }
    }
    struct meas *m = &ms[nms++];
    memset(m, 0, sizeof *m);
    snprintf(m->wl, sizeof m->wl, "%s", wl);
    snprintf(m->sys, sizeof m->sys, "%s", sys);
    m->rep = rep;
    return m;
}

static void set_kv(struct meas *m, const char *key, double v)
{
    for (int i = 0; i < m->nkv; i++)
        if (!strcmp(m->kv[i].key, key)) {
            m->kv[i].val = v;
            return;
        }
    if (m->nkv < MAXKV) {
        snprintf(m->kv[m->nkv].key, sizeof m->kv[m->nkv].key, "%s", key);
        m->kv[m->nkv++].val = v;
    }
}

static int get_kv(const struct meas *m, const char *key, double *v)
{
    for (int i = 0; i < m->nkv; i++)
        if (!strcmp(m->kv[i].key, key)) {
            *v = m->kv[i].val;
            return 1;
        }
    return 0;
}

static const struct meas *find(const char *wl, const char *sys, int rep)
{
    for (size_t i = 0; i < nms; i++)
        if (ms[i].rep == rep && !strcmp(ms[i].wl, wl) && !strcmp(ms[i].sys, sys))
            return &ms[i];
    return NULL;
}

static int value(const char *wl, const char *sys, int rep, const char *key, double *v)
{
    const struct meas *m = find(wl, sys, rep);
    return m && m->status == ST_OK && get_kv(m, key, v);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct stat3 {
    int n;
    double med, min, max;
};

static struct stat3 stats(double *v, int n)
{
    struct stat3 s = {n, 0, 0, 0};
    if (n == 0)
        return s;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    s.min = v[0];
    s.max = v[n - 1];
    s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return s;
}

static struct stat3 stat_of(const char *wl, const char *sys, const char *key)
{
    double v[256];
    int n = 0;
    for (int r = 1; r <= reps && n < 256; r++)
        if (value(wl, sys, r, key, &v[n]))
            n++;
    return stats(v, n);
}

/* Median (min-max) over reps of a's figure divided by b's, same rep. */
static struct stat3 ratio_of(const char *wl, const char *key, const char *a, const char *b)
{
    double v[256], x, y;
    int n = 0;
    for (int r = 1; r <= reps && n < 256; r++)
        if (value(wl, a, r, key, &x) && value(wl, b, r, key, &y) && y != 0)
            v[n++] = x / y;
    return stats(v, n);
}

/* Numbers for people: thousands separators, a few significant digits. */
static const char *fmt(char *buf, size_t n, double v)
{
    double a = v < 0 ? -v : v;
    if (a == 0) {
        snprintf(buf, n, "0");
    } else if (a >= 1000) {
        char digits[64], *o = buf;
        snprintf(digits, sizeof digits, "%.0f", a);
        size_t len = strlen(digits);
        if (v < 0)
            *o++ = '-';
        for (size_t i = 0; i < len && (size_t)(o - buf) < n - 2; i++) {
            if (i && (len - i) % 3 == 0)
                *o++ = ',';
            *o++ = digits[i];
        }
        *o = '\0';
    } else if (a >= 100) {
        snprintf(buf, n, "%.0f", v);
    } else if (a >= 10) {
        snprintf(buf, n, "%.1f", v);
    } else if (a >= 1) {
        snprintf(buf, n, "%.2f", v);
    } else {
        int d = 2;
        while (a * 100 < 10 && d < 9) {
            a *= 10;
            d++;
        }
        snprintf(buf, n, "%.*f", d + 0, v);
    }
    return buf;
}

/* "median (min–max)", or one figure for one rep. */
static const char *cell(char *buf, size_t n, struct stat3 s, const char *suffix)
{
    char a[48], b[48], c[48];
    if (s.n == 0)
        snprintf(buf, n, "—");
    else if (s.n == 1 || s.min == s.max)
        snprintf(buf, n, "%s%s", fmt(a, sizeof a, s.med), suffix);
    else
        snprintf(buf, n, "%s%s (%s–%s)", fmt(a, sizeof a, s.med), suffix, fmt(b, sizeof b, s.min),
                 fmt(c, sizeof c, s.max));
    return buf;
}

/* --- children ------------------------------------------------------------ */

/* Runs argv with its stdout captured into out (and its stderr thrown away
 * if quiet); returns the wait status. */
static int run_capture(char *const argv[], char *out, size_t outsz, int quiet)
{
    int fd[2], status = -1;
    size_t len = 0;
    if (pipe(fd) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        if (quiet) {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0)
                dup2(null, STDERR_FILENO);
        }
        close(fd[0]);
        close(fd[1]);
        execvp(argv[0], argv);
        fprintf(stderr, "bench: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    for (;;) {
        ssize_t r = read(fd[0], out + len, outsz - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == outsz - 1) { /* keep draining, keep the start */
            char sink[4096];
            while (read(fd[0], sink, sizeof sink) > 0)
                ;
            break;
        }
    }
    out[len] = '\0';
    close(fd[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* Parses the last "result ..." line of out into m. */
static void parse_result(struct meas *m, const char *out, int status)
{
    const char *p = NULL, *q = out;
    while ((q = strstr(q, "result ")) != NULL)
        p = q++;
    m->status = ST_FAIL;
    if (!p) {
        if (WIFSIGNALED(status))
            snprintf(m->reason, sizeof m->reason, "killed by signal %d", WTERMSIG(status));
        else
            snprintf(m->reason, sizeof m->reason, "no result (exit status %d)",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return;
    }
    int ok = -1;
    p += strlen("result ");
    while (*p && *p != '\n') {
        while (*p == ' ')
            p++;
        const char *eq = strchr(p, '=');
        const char *end = p + strcspn(p, " \n");
        if (!eq || eq > end) {
            p = end;
            continue;
        }
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
        const char *val = eq + 1;
        if (!strcmp(key, "reason")) {
            size_t l = strcspn(val, "\n");
            snprintf(m->reason, sizeof m->reason, "%.*s", (int)l, val);
            break;
        }
        if (!strcmp(key, "ok")) {
            ok = !strncmp(val, "skip", 4) ? ST_SKIP : atoi(val) == 1 ? ST_OK : ST_FAIL;
        } else if (strcmp(key, "workload") && strcmp(key, "system")) {
            char *e;
            double v = strtod(val, &e);
            if (e == end)
                set_kv(m, key, v);
        }
        p = end;
    }
    if (ok == ST_OK && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        ok = ST_FAIL;
        snprintf(m->reason, sizeof m->reason, "exit status %d after its result",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    if (ok == ST_FAIL && !m->reason[0])
        snprintf(m->reason, sizeof m->reason, "failed");
    m->status = ok < 0 ? ST_FAIL : ok;
    if (ok < 0 && !m->reason[0])
        snprintf(m->reason, sizeof m->reason, "result line incomplete");
}

/* Builds "evexec-bench run -w WL -s SYS [-n N] [--quick] -t T" after prefix. */
static int child_argv_of(const char *bin, char **argv, int n, const char *wl, const char *sys,
                         long jobs, char *jbuf, char *tbuf)
{
    argv[n++] = (char *)bin;
    argv[n++] = (char *)"run";
    argv[n++] = (char *)"-w";
    argv[n++] = (char *)wl;
    argv[n++] = (char *)"-s";
    argv[n++] = (char *)sys;
    if (jobs >= 0) {
        snprintf(jbuf, 24, "%ld", jobs);
        argv[n++] = (char *)"-n";
        argv[n++] = jbuf;
    }
    if (quick)
        argv[n++] = (char *)"--quick";
    snprintf(tbuf, 24, "%u", timeout_s);
    argv[n++] = (char *)"-t";
    argv[n++] = tbuf;
    argv[n] = NULL;
    return n;
}

static int child_argv(char **argv, int n, const char *wl, const char *sys, long jobs, char *jbuf,
                      char *tbuf)
{
    return child_argv_of(self_path, argv, n, wl, sys, jobs, jbuf, tbuf);
}

static char outbuf[1 << 16];

static void measure(const char *wl, const char *sys, int rep)
{
    char *argv[24], jbuf[24], tbuf[24];
    child_argv(argv, 0, wl, sys, jobs_override, jbuf, tbuf);
    struct meas *m = new_meas(wl, sys, rep);
    parse_result(m, outbuf, run_capture(argv, outbuf, sizeof outbuf, 0));
}

/* --- W7 ------------------------------------------------------------------ */

static const char *const perf_events =
    "syscalls:sys_enter_write,syscalls:sys_enter_futex,raw_syscalls:sys_enter,context-switches";

struct counts {
    double write, futex, sys, csw;
};

/* One run of wl with n jobs under the tool; counts of the whole process. */
static int counted_run(const char *wl, const char *sys, long n, struct counts *c, char *why,
                       size_t whysz)
{
    char tmp[] = "/tmp/evexec-bench-XXXXXX";
    char *argv[40], jbuf[24], tbuf[24];
    int k = 0, fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(why, whysz, "mkstemp: %s", strerror(errno));
        return -1;
    }
    close(fd);
    if (tool == TOOL_PERF) {
        argv[k++] = (char *)"perf";
        argv[k++] = (char *)"stat";
        argv[k++] = (char *)"-x";
        argv[k++] = (char *)",";
        argv[k++] = (char *)"-o";
        argv[k++] = tmp;
        argv[k++] = (char *)"-e";
        argv[k++] = (char *)perf_events;
        argv[k++] = (char *)"--";
    } else {
        argv[k++] = (char *)"strace";
        argv[k++] = (char *)"-f";
        argv[k++] = (char *)"-c";
        argv[k++] = (char *)"-o";
        argv[k++] = tmp;
        argv[k++] = (char *)"--";
    }
    child_argv(argv, k, wl, sys, n, jbuf, tbuf);
    struct meas m;
    memset(&m, 0, sizeof m);
    parse_result(&m, outbuf, run_capture(argv, outbuf, sizeof outbuf, 0));
    if (m.status != ST_OK) {
        snprintf(why, whysz, "%.150s", m.reason);
        unlink(tmp);
        return -1;
    }
    memset(c, 0, sizeof *c);
    FILE *f = fopen(tmp, "r");
    char line[512];
    int found = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (tool == TOOL_PERF) {
            char *comma = strchr(line, ',');
            if (line[0] == '#' || !comma)
                continue;
            double v = strtod(line, NULL);
            char *ev = strchr(comma + 1, ',');
            if (!ev)
                continue;
            ev++;
            if (!strncmp(ev, "syscalls:sys_enter_write,", 25))
                c->write = v, found++;
            else if (!strncmp(ev, "syscalls:sys_enter_futex,", 25))
                c->futex = v, found++;
            else if (!strncmp(ev, "raw_syscalls:sys_enter,", 23))
                c->sys = v, found++;
            else if (!strncmp(ev, "context-switches,", 17))
                c->csw = v, found++;
        } else {
            char a[32], b[32], d[32], calls[32], name[64];
            char *last = strrchr(line, ' ');
            if (sscanf(line, "%31s %31s %31s %31s", a, b, d, calls) != 4 || !last ||
                line[0] == '%' || line[0] == '-')
                continue;
            snprintf(name, sizeof name, "%s", last + 1);
            name[strcspn(name, "\n")] = '\0';
            double v = strtod(calls, NULL);
            if (!strcmp(name, "write"))
                c->write = v;
            else if (!strcmp(name, "futex"))
                c->futex = v;
            else if (!strcmp(name, "total"))
                c->sys = v, found = 4;
        }
    }
    if (f)
        fclose(f);
    unlink(tmp);
    if (tool == TOOL_STRACE) {
        double csw;
        c->csw = get_kv(&m, "csw_total", &csw) ? csw : 0;
    }
    if (found < 4) {
        snprintf(why, whysz, "could not read the %s counts", tool == TOOL_PERF ? "perf" : "strace");
        return -1;
    }
    return 0;
}

static void measure_w7(const char *sys, int rep)
{
    static const char *const sub[] = {"W1", "W4"};
    long n = jobs_override >= 0 ? jobs_override
           : quick ? 2000 : tool == TOOL_STRACE ? 20000 : 200000;
    struct meas *m = new_meas("W7", sys, rep);
    if (tool == TOOL_NONE) {
        m->status = ST_SKIP;
        snprintf(m->reason, sizeof m->reason, "%s", tool_why);
        return;
    }
    for (int i = 0; i < 2; i++) {
        struct counts full, base;
        char why[200], key[32];
        if (counted_run(sub[i], sys, n, &full, why, sizeof why) < 0 ||
            counted_run(sub[i], sys, 0, &base, why, sizeof why) < 0) {
            m->status = ST_FAIL;
            snprintf(m->reason, sizeof m->reason, "%s under %s: %s", sub[i],
                     tool == TOOL_PERF ? "perf" : "strace", why);
            return;
        }
#define PER(field, name)                                                        \
    do {                                                                        \
        double d = (full.field - base.field) / (double)(n ? n : 1);            \
        snprintf(key, sizeof key, "%s_%s", i ? "w4" : "w1", name);              \
        set_kv(m, key, d < 0 ? 0 : d);                                          \
    } while (0)
        PER(write, "writes");
        PER(futex, "futex");
        PER(sys, "syscalls");
        PER(csw, "csw");
#undef PER
    }
    set_kv(m, "jobs", (double)n);
    m->status = ST_OK;
}

/* --- overhead: instructions per job under callgrind --------------------- */

/* The instructions a callgrind output file counts in libevexec's own code
 * (self cost of the functions of an object whose name has "libevexec" in
 * it): what the library executes, without libc's locks, libevent or the
 * kernel's wake-ups, whose counts move with the threads' interleaving.
 * Format: "ob=(id) name" (or "ob=(id)" once named) sets the object of the
 * cost lines that follow; a "calls=" line is followed by the inclusive
 * cost of that call, which is not self cost. */
static double library_ir(FILE *f)
{
    char line[1024];
    int lib = 0, skip = 0, ids[4096];
    double sum = 0;
    memset(ids, 0, sizeof ids);
    while (fgets(line, sizeof line, f)) {
        int is_ob = !strncmp(line, "ob=", 3), is_cob = !strncmp(line, "cob=", 4);
        if (is_ob || is_cob) {
            /* A name is given once, with its id, in whichever of ob= and
             * cob= comes first; later lines give the id alone. */
            const char *v = line + (is_ob ? 3 : 4);
            char *end = NULL;
            long id = *v == '(' ? strtol(v + 1, &end, 10) : -1;
            if (id >= 0 && id < 4096 && *end == ')' && end[1] == ' ')
                ids[id] = strstr(end, "libevexec") != NULL;
            if (is_ob)
                lib = id >= 0 && id < 4096 ? ids[id] : strstr(v, "libevexec") != NULL;
        } else if (!strncmp(line, "calls=", 6)) {
            skip = 1;
        } else if ((line[0] >= '0' && line[0] <= '9') || line[0] == '+' || line[0] == '-' ||
                   line[0] == '*') {
            if (skip) {
                skip = 0;
                continue;
            }
            char *p = line;
            strtoul(p + (*p == '+' || *p == '-' || *p == '*'), &p, 10); /* the position */
            if (lib)
                sum += strtod(p, NULL);
        }
    }
    return sum;
}

/* libevexec's instructions in a whole "BIN run -w W1 -s sys -n n" under
 * callgrind: every thread (callgrind runs them one at a time) and every
 * process (a libtool wrapper script, for a --baseline built in its tree,
 * runs none of it). */
static int callgrind_ir(const char *bin, const char *sys, long n, double *ir, char *why,
                        size_t whysz)
{
    char dir[] = "/tmp/evexec-bench-cg-XXXXXX", outopt[96], path[320];
    char *argv[40], jbuf[24], tbuf[24];
    int k = 0, found = 0;
    if (!mkdtemp(dir)) {
        snprintf(why, whysz, "mkdtemp: %s", strerror(errno));
        return -1;
    }
    snprintf(outopt, sizeof outopt, "--callgrind-out-file=%s/cg.%%p", dir);
    argv[k++] = (char *)"valgrind";
    argv[k++] = (char *)"--tool=callgrind";
    argv[k++] = (char *)"--fair-sched=yes"; /* steadier interleaving: ±1 % run to run */
    argv[k++] = (char *)"--trace-children=yes";
    argv[k++] = outopt;
    argv[k++] = (char *)"--";
    child_argv_of(bin, argv, k, "W1", sys, n, jbuf, tbuf);
    struct meas m;
    memset(&m, 0, sizeof m);
    parse_result(&m, outbuf, run_capture(argv, outbuf, sizeof outbuf, 1));
    *ir = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (f) {
            *ir += library_ir(f);
            found = 1;
            fclose(f);
        }
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    if (m.status != ST_OK) {
        snprintf(why, whysz, "%s: %.150s", sys, m.reason);
        return -1;
    }
    if (!found)
        snprintf(why, whysz, "no summary in callgrind's output");
    return found ? 0 : -1;
}

/* Instructions per job of W1 on sys: the median (and range) of IR_RUNS runs
 * of n jobs, less a run of 0, into m as <key>, <key>_min, <key>_max. */
#define IR_RUNS 3

static int ir_per_job(struct meas *m, const char *bin, const char *sys, long n, const char *key,
                      char *why, size_t whysz)
{
    double base, v[IR_RUNS];
    int runs = quick ? 1 : IR_RUNS;
    char k[40];
    if (callgrind_ir(bin, sys, 0, &base, why, whysz) < 0)
        return -1;
    for (int i = 0; i < runs; i++) {
        if (callgrind_ir(bin, sys, n, &v[i], why, whysz) < 0)
            return -1;
        v[i] = (v[i] - base) / (double)(n ? n : 1);
    }
    struct stat3 st = stats(v, runs);
    set_kv(m, key, st.med);
    snprintf(k, sizeof k, "%s_min", key);
    set_kv(m, k, st.min);
    snprintf(k, sizeof k, "%s_max", key);
    set_kv(m, k, st.max);
    return 0;
}

static void measure_ir(int rep)
{
    long n = jobs_override >= 0 ? jobs_override : quick ? 2000 : 20000;
    struct meas *m = new_meas("overhead-ir", "evexec", rep);
    char out[256], why[200], key[32], sys[48];
    char *vargv[] = {(char *)"valgrind", (char *)"--version", NULL};
    int st = run_capture(vargv, out, sizeof out, 1);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        m->status = ST_SKIP;
        snprintf(m->reason, sizeof m->reason,
                 "instructions per job need valgrind (Debian: valgrind)");
        return;
    }
    for (unsigned v = 0; v < bench_evexec_nvariants; v++) {
        snprintf(sys, sizeof sys, "evexec:%s", bench_evexec_variants[v].name);
        snprintf(key, sizeof key, "ir_%s", bench_evexec_variants[v].name);
        if (ir_per_job(m, self_path, sys, n, key, why, sizeof why) < 0) {
            m->status = ST_FAIL;
            snprintf(m->reason, sizeof m->reason, "W1 under callgrind: %s", why);
            return;
        }
    }
    if (baseline && ir_per_job(m, baseline, "evexec", n, "ir_baseline", why, sizeof why) < 0) {
        m->status = ST_FAIL;
        snprintf(m->reason, sizeof m->reason, "baseline W1 under callgrind: %s", why);
        return;
    }
    set_kv(m, "jobs", (double)n);
    m->status = ST_OK;
}

/* --baseline: plain evexec_submit() of another build against this one's,
 * each run in a fresh process, in alternating order, W1 and W4 at the
 * overhead benchmark's sizes. */
static void measure_baseline(int rep)
{
    static const char *const wl[] = {"W1", "W4"};
    struct meas *m = new_meas("overhead-base", "evexec", rep);
    char *argv[24], jbuf[24], tbuf[24], key[32], why[300] = "";
    for (int w = 0; w < 2; w++) {
        long n = jobs_override >= 0 ? jobs_override : w ? (quick ? 5000 : 50000)
                                                        : (quick ? 5000 : 200000);
        double rate[2] = {0, 0};
        for (int i = 0; i < 2; i++) {
            int b = (i + rep + w) % 2; /* 1: the baseline's turn */
            struct meas one;
            memset(&one, 0, sizeof one);
            child_argv_of(b ? baseline : self_path, argv, 0, wl[w], b ? "evexec" : "evexec:plain",
                          n, jbuf, tbuf);
            parse_result(&one, outbuf, run_capture(argv, outbuf, sizeof outbuf, 0));
            if (one.status != ST_OK || !get_kv(&one, "rate", &rate[b])) {
                snprintf(why, sizeof why, "%s %s: %.200s", b ? "baseline" : "this build", wl[w],
                         one.reason[0] ? one.reason : "no rate");
                break;
            }
        }
        if (why[0])
            break;
        snprintf(key, sizeof key, "w%d_base", w ? 4 : 1);
        set_kv(m, key, rate[1]);
        snprintf(key, sizeof key, "w%d_base_x", w ? 4 : 1);
        set_kv(m, key, rate[0] > 0 ? rate[1] / rate[0] : 0);
    }
    m->status = why[0] ? ST_FAIL : ST_OK;
    snprintf(m->reason, sizeof m->reason, "%.*s", (int)sizeof m->reason - 1, why);
}

static void pick_tool(void)
{
    char *argv[] = {(char *)"perf", (char *)"stat", (char *)"-x", (char *)",", (char *)"-e",
                    (char *)perf_events, (char *)"--", (char *)"true", NULL};
    char out[256];
    int st = run_capture(argv, out, sizeof out, 1);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        tool = TOOL_PERF;
        return;
    }
    char *sargv[] = {(char *)"strace", (char *)"-f", (char *)"-c", (char *)"-o", (char *)"/dev/null",
                     (char *)"--", (char *)"true", NULL};
    st = run_capture(sargv, out, sizeof out, 1);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        tool = TOOL_STRACE;
        return;
    }
    tool = TOOL_NONE;
    snprintf(tool_why, sizeof tool_why,
             "neither 'perf stat -e syscalls:*' nor 'strace -c -f' works here "
             "(Debian: linux-perf or strace)");
}

/* --- the machine --------------------------------------------------------- */

struct cpu_times {
    unsigned long long total, steal;
};

static struct cpu_times cpu_times(void)
{
    struct cpu_times t = {0, 0};
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                    &v[4], &v[5], &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++)
            t.total += v[i];
        t.steal = v[7];
    }
    if (f)
        fclose(f);
    return t;
}

static void cpu_model(char *buf, size_t n)
{
    char line[4096];
    int vm = 0, named = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    snprintf(buf, n, "?");
    while (f && fgets(line, sizeof line, f)) {
        if (!named && !strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                c += 1 + strspn(c + 1, " \t");
                c[strcspn(c, "\n")] = '\0';
                snprintf(buf, n, "%s", c);
                named = 1;
            }
        } else if (!strncmp(line, "flags", 5) && strstr(line, " hypervisor")) {
            vm = 1;
        }
        if (named && vm)
            break;
    }
    if (f)
        fclose(f);
    if (vm)
        strncat(buf, " (virtual machine)", n - strlen(buf) - 1);
}

/* The source tree's commit, as git describes it, or "?". */
static void source_version(char *buf, size_t n)
{
    char cmd[4200];
    FILE *p;
    snprintf(buf, n, "?");
    snprintf(cmd, sizeof cmd, "git -C '%s' describe --always --dirty 2>/dev/null", BENCH_SRCDIR);
    if ((p = popen(cmd, "r")) != NULL) {
        if (fgets(buf, (int)n, p))
            buf[strcspn(buf, "\n")] = '\0';
        else
            snprintf(buf, n, "? (not a git checkout)");
        pclose(p);
    }
}

static void loadavg(char *buf, size_t n)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double a = 0, b = 0, c = 0;
    if (f && fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(buf, n, "%.2f %.2f %.2f", a, b, c);
    else
        snprintf(buf, n, "?");
    if (f)
        fclose(f);
}

/* --- the report ---------------------------------------------------------- */

struct col {
    const char *key;
    const char *label;
    int ratio;     /* also print the ratio to evexec */
};

struct table {
    const char *wl;
    const char *title, *title_end; /* around the size, read from nkey */
    const char *nkey;
    const char *note;
    struct col cols[8];
};

static const struct table tables[] = {
    {"W1", "W1 burst: ", " no-op jobs submitted at once, pool of 4", "jobs",
     "jobs/s: higher is better; × evexec > 1 means faster than evexec. submit µs/job: the "
     "loop thread's time in the submit call, per job (the submits run before the loop does).",
     {{"rate", "jobs/s", 1}, {"submit_us_per_job", "submit µs/job", 1},
      {"cpu_us_per_job", "CPU µs/job", 0}, {"csw_per_job", "ctx sw/job", 0}}},
    {"W2", "W2 ping-pong, no pinning: one job in flight, ", " timed round trips, pool of 4",
     "round_trips",
     "µs per round trip: lower is better; × evexec < 1 means faster than evexec. "
     "CPU µs/rt is the process's CPU time (every thread) per round trip.",
     {{"p50_us", "p50 µs", 1}, {"p99_us", "p99 µs", 1}, {"p999_us", "p99.9 µs", 0},
      {"cpu_us_per_rt", "CPU µs/rt", 1}}},
    {"W2-split", "W2-split: W2 with the loop thread on CPU 0, every other thread on CPU 1", "",
     NULL,
     "Every hand-off is a cross-CPU wake-up.",
     {{"p50_us", "p50 µs", 1}, {"p99_us", "p99 µs", 1}, {"p999_us", "p99.9 µs", 0},
      {"cpu_us_per_rt", "CPU µs/rt", 1}}},
    {"W2-1cpu", "W2-1cpu: W2 with every thread on CPU 0", "", NULL,
     "Every hand-off is a same-CPU switch.",
     {{"p50_us", "p50 µs", 1}, {"p99_us", "p99 µs", 1}, {"p999_us", "p99.9 µs", 0},
      {"cpu_us_per_rt", "CPU µs/rt", 1}}},
    {"W3", "W3 blocking: ", " jobs of usleep(1000) on 16 workers", "jobs",
     "floor/achieved: the 16 bare threads' time over the system's, same rep (1 = the floor). "
     "GTask's pool is fixed at 10 threads by GLib.",
     {{"time_ms", "ms", 1}, {"floor_ratio", "floor/achieved", 0}}},
    {"W4", "W4 fan-in: 4 jobs kept in flight, ", " in all, pool of 4", "jobs",
     "jobs/s: higher is better.",
     {{"rate", "jobs/s", 1}, {"cpu_us_per_job", "CPU µs/job", 0}, {"csw_per_job", "ctx sw/job", 0}}},
    {"W5", "W5 loop lag: a 1 ms timer on the loop (",
     " ticks) while 4 workers run 50 µs CPU jobs, 64 kept in flight", "ticks",
     "Timer lateness in µs (fire time minus due time, by CLOCK_MONOTONIC): lower is better. "
     "libuv keeps loop time in whole milliseconds, so its timer fires on a millisecond "
     "boundary: its figures include that rounding. GTask runs 10 workers, not 4.",
     {{"late_p50_us", "p50 µs", 0}, {"late_p99_us", "p99 µs", 1}, {"late_max_us", "max µs", 0},
      {"jobs_per_s", "jobs/s", 0}}},
    {"W6", "W6 memory: ", " jobs queued behind parked workers", "queued",
     "RSS growth per queued job, and malloc calls per job (any thread) in steady state "
     "(4 in flight). libuv's figures include the uv_work_t each job needs (malloc'd, as "
     "libuv's examples do); the hand-rolled pool mallocs a node per job. GLib 2.74 "
     "allocates small objects from its slice allocator, which mallocs in chunks. "
     "\"submit µs/job, workers parked\": the loop thread's submit cost with no worker "
     "contending for the queue (page faults of the growing queue included).",
     {{"bytes_per_job", "bytes/job", 1}, {"mallocs_per_job", "malloc/job", 0},
      {"queue_submit_us_per_job", "submit µs/job, workers parked", 1},
      {"threads_parked", "workers parked", 0}}},
    {"W7", "W7 syscalls: W1 and W4 (", " jobs each), counted for the whole process, per job",
     "jobs",
     "Counted by the tool named above over a run of N jobs minus a run of 0 jobs (same "
     "warm-up and teardown), divided by N. writes = write(2) calls (eventfd writes; the "
     "benchmark itself writes nothing in between).",
     {{"w1_writes", "W1 writes", 0}, {"w1_futex", "W1 futex", 0}, {"w1_csw", "W1 ctx sw", 0},
      {"w1_syscalls", "W1 syscalls", 0}, {"w4_writes", "W4 writes", 0}, {"w4_futex", "W4 futex", 0},
      {"w4_csw", "W4 ctx sw", 0}, {"w4_syscalls", "W4 syscalls", 0}}},
    {"W8", "W8 many loops, one pool: 4 loop threads, each with its own port, submit bursts of ",
     " no-op jobs in all to one pool of 4", "jobs",
     "jobs/s over all loops: higher is better. libuv: 4 uv_loop_t on 4 threads sharing its "
     "global pool (UV_THREADPOOL_SIZE=4); hand-rolled: one queue, a done list and eventfd per loop.",
     {{"rate", "jobs/s", 1}, {"cpu_us_per_job", "CPU µs/job", 0}, {"csw_per_job", "ctx sw/job", 0}}},
};

static const char *label_of(const char *sys)
{
    const char *why;
    if (!strcmp(sys, "floor-futex"))
        return "floor: futex ping-pong";
    if (!strcmp(sys, "floor-eventfd"))
        return "floor: eventfd ping-pong";
    if (!strcmp(sys, "floor-threads"))
        return "floor: 16 bare threads";
    const struct bench_ops *o = bench_find_system(sys, &why);
    return o ? o->label : sys;
}

static int selected_wl(const char *wl)
{
    for (int i = 0; i < nworkloads; i++)
        if (!strcmp(workloads[i], wl))
            return 1;
    return 0;
}

static int ran(const char *wl, const char *sys)
{
    for (size_t i = 0; i < nms; i++)
        if (!strcmp(ms[i].wl, wl) && !strcmp(ms[i].sys, sys))
            return 1;
    return 0;
}

static void write_table(FILE *f, const struct table *t)
{
    char a[128];
    int ncols = 0;
    while (ncols < 8 && t->cols[ncols].key)
        ncols++;
    char size[48] = "";
    for (size_t i = 0; t->nkey && i < nms && !size[0]; i++) {
        double n;
        if (!strcmp(ms[i].wl, t->wl) && ms[i].status == ST_OK && get_kv(&ms[i], t->nkey, &n))
            fmt(size, sizeof size, n);
    }
    fprintf(f, "### %s%s%s\n\n", t->title, t->nkey ? (size[0] ? size : "N") : "", t->title_end);
    fprintf(f, "| system |");
    for (int c = 0; c < ncols; c++) {
        fprintf(f, " %s |", t->cols[c].label);
        if (t->cols[c].ratio)
            fprintf(f, " %s × evexec |", t->cols[c].label);
    }
    fprintf(f, "\n|---|");
    for (int c = 0; c < ncols; c++)
        fprintf(f, "%s", t->cols[c].ratio ? "---:|---:|" : "---:|");
    fprintf(f, "\n");
    for (int s = 0; s < nsystems; s++) {
        const char *sys = systems[s];
        if (!ran(t->wl, sys))
            continue;
        fprintf(f, "| %s |", label_of(sys));
        struct stat3 any = {0, 0, 0, 0};
        for (int c = 0; c < ncols; c++) {
            struct stat3 st = stat_of(t->wl, sys, t->cols[c].key);
            any.n += st.n;
            fprintf(f, " %s |", cell(a, sizeof a, st, ""));
            if (t->cols[c].ratio) {
                if (!strcmp(sys, "evexec"))
                    fprintf(f, " 1 |");
                else
                    fprintf(f, " %s |",
                            cell(a, sizeof a, ratio_of(t->wl, t->cols[c].key, sys, "evexec"), "×"));
            }
        }
        fprintf(f, "\n");
        /* Why a row is empty. */
        if (!any.n)
            for (size_t i = 0; i < nms; i++)
                if (!strcmp(ms[i].wl, t->wl) && !strcmp(ms[i].sys, sys) && ms[i].status != ST_OK) {
                    fprintf(f, "| ↳ %s: %s |%*s\n", ms[i].status == ST_SKIP ? "skipped" : "FAILED",
                            ms[i].reason, 0, "");
                    break;
                }
    }
    fprintf(f, "\n%s\n\n", t->note);
}

/* A target line: figure, verdict. */
struct verdict {
    int known, met;
    struct stat3 s;
};

static struct verdict judge(struct stat3 s, int at_most, double bound)
{
    struct verdict v = {s.n > 0, 0, s};
    if (v.known)
        v.met = at_most ? s.med <= bound : s.med >= bound;
    return v;
}

static void target_row(FILE *f, const char *wl, const char *target, const char *what,
                       struct verdict v, const char *suffix)
{
    char a[128];
    fprintf(f, "| %s | %s | %s: %s | %s |\n", wl, target, what, cell(a, sizeof a, v.s, suffix),
            !v.known ? "not measured" : v.met ? "met" : "**missed**");
}

static struct stat3 inverse(struct stat3 s)
{
    struct stat3 r = s;
    if (s.n) {
        r.med = s.med ? 1 / s.med : 0;
        r.min = s.max ? 1 / s.max : 0;
        r.max = s.min ? 1 / s.min : 0;
    }
    return r;
}

static void write_targets(FILE *f)
{
    fprintf(f, "## Targets (bench/README.md)\n\n"
               "Each figure is the median over reps of a ratio taken within one rep "
               "(min–max in brackets), except W5-W7, which are evexec's own figures.\n\n"
               "| workload | target | measured | verdict |\n|---|---|---|---|\n");
    target_row(f, "W1", "≥ 3 × libuv", "evexec / libuv jobs/s",
               judge(ratio_of("W1", "rate", "evexec", "libuv"), 0, 3), "×");
    target_row(f, "W1", "≥ 2 × the hand-rolled pool", "evexec / hand-rolled jobs/s",
               judge(ratio_of("W1", "rate", "evexec", "handrolled"), 0, 2), "×");
    target_row(f, "W2-split p50", "≤ 1.05 × futex floor", "evexec / floor",
               judge(ratio_of("W2-split", "p50_us", "evexec", "floor-futex"), 1, 1.05), "×");
    target_row(f, "W2-split p50, spinning", "≤ 0.6 × futex floor", "evexec-spin / floor",
               judge(ratio_of("W2-split", "p50_us", "evexec-spin", "floor-futex"), 1, 0.6), "×");
    target_row(f, "W2-1cpu p50", "≤ 1.3 × futex floor", "evexec / floor",
               judge(ratio_of("W2-1cpu", "p50_us", "evexec", "floor-futex"), 1, 1.3), "×");
    target_row(f, "W2-1cpu p50, spinning", "no worse than default", "evexec-spin / evexec",
               judge(ratio_of("W2-1cpu", "p50_us", "evexec-spin", "evexec"), 1, 1.05), "×");
    target_row(f, "W2 p99", "≤ libuv's p99", "evexec / libuv",
               judge(ratio_of("W2", "p99_us", "evexec", "libuv"), 1, 1), "×");
    target_row(f, "W2-split p99", "≤ libuv's p99", "evexec / libuv",
               judge(ratio_of("W2-split", "p99_us", "evexec", "libuv"), 1, 1), "×");
    target_row(f, "W2-1cpu p99", "≤ libuv's p99", "evexec / libuv",
               judge(ratio_of("W2-1cpu", "p99_us", "evexec", "libuv"), 1, 1), "×");
    target_row(f, "W3", "≥ 0.99 of the floor", "floor / evexec time",
               judge(inverse(ratio_of("W3", "time_ms", "evexec", "floor-threads")), 0, 0.99), "");
    target_row(f, "W4", "≥ 3 × libuv", "evexec / libuv jobs/s",
               judge(ratio_of("W4", "rate", "evexec", "libuv"), 0, 3), "×");
    target_row(f, "W4", "≥ 1.5 × the hand-rolled pool", "evexec / hand-rolled jobs/s",
               judge(ratio_of("W4", "rate", "evexec", "handrolled"), 0, 1.5), "×");
    target_row(f, "W5", "p99 lateness ≤ 200 µs", "evexec p99",
               judge(stat_of("W5", "evexec", "late_p99_us"), 1, 200), " µs");
    target_row(f, "W5, workers at nice 19", "p99 lateness ≤ 200 µs", "evexec-nice p99",
               judge(stat_of("W5", "evexec-nice", "late_p99_us"), 1, 200), " µs");
    target_row(f, "W5, workers in SCHED_BATCH", "p99 lateness ≤ 200 µs", "evexec-batch p99",
               judge(stat_of("W5", "evexec-batch", "late_p99_us"), 1, 200), " µs");
    target_row(f, "W6", "0 malloc per job", "evexec malloc/job",
               judge(stat_of("W6", "evexec", "mallocs_per_job"), 1, 0), "");
    target_row(f, "W6", "≤ 64 bytes per queued job", "evexec bytes/job",
               judge(stat_of("W6", "evexec", "bytes_per_job"), 1, 64), " B");
    target_row(f, "W7", "W1 ≤ 0.001 eventfd writes per job", "evexec writes/job",
               judge(stat_of("W7", "evexec", "w1_writes"), 1, 0.001), "");
    target_row(f, "W7", "W1 ≤ 0.01 futex calls per job", "evexec futex/job",
               judge(stat_of("W7", "evexec", "w1_futex"), 1, 0.01), "");
    target_row(f, "W8", "≥ 3 × libuv", "evexec / libuv jobs/s",
               judge(ratio_of("W8", "rate", "evexec", "libuv"), 0, 3), "×");
    fprintf(f, "\n");
}

/* The chart: for each peer, how many times better evexec is on each main
 * figure (throughput: evexec/peer; latency, time, memory: peer/evexec). */
struct metric {
    const char *label, *wl, *key;
    int higher_better;
};

static const struct metric metrics[] = {
    {"W1 jobs/s", "W1", "rate", 1},
    {"W2 p50", "W2", "p50_us", 0},
    {"W2-split p50", "W2-split", "p50_us", 0},
    {"W2-split p99", "W2-split", "p99_us", 0},
    {"W2-1cpu p50", "W2-1cpu", "p50_us", 0},
    {"W2-1cpu p99", "W2-1cpu", "p99_us", 0},
    {"W3 time", "W3", "time_ms", 0},
    {"W4 jobs/s", "W4", "rate", 1},
    {"W5 p99 lateness", "W5", "late_p99_us", 0},
    {"W6 bytes/job", "W6", "bytes_per_job", 0},
    {"W8 jobs/s", "W8", "rate", 1},
};

static int chart(const char *dir, const char *stem)
{
    static const char *const series[] = {"libuv", "gtask", "gpool", "handrolled", "floor-futex",
                                         "floor-threads", "evexec-spin"};
    const int nseries = (int)(sizeof series / sizeof *series);
    char dat[1024], gp[1024], png[1024];
    int used[16] = {0};
    snprintf(dat, sizeof dat, "%s/%s.dat", dir, stem);
    snprintf(gp, sizeof gp, "%s/%s.gp", dir, stem);
    snprintf(png, sizeof png, "%s/%s.png", dir, stem);

    FILE *f = fopen(dat, "w");
    if (!f)
        return -1;
    fprintf(f, "# metric");
    for (int s = 0; s < nseries; s++)
        fprintf(f, "\t%s", series[s]);
    fprintf(f, "\n");
    for (size_t m = 0; m < sizeof metrics / sizeof *metrics; m++) {
        if (!selected_wl(metrics[m].wl))
            continue;
        fprintf(f, "\"%s\"", metrics[m].label);
        for (int s = 0; s < nseries; s++) {
            struct stat3 r = metrics[m].higher_better
                                 ? ratio_of(metrics[m].wl, metrics[m].key, "evexec", series[s])
                                 : ratio_of(metrics[m].wl, metrics[m].key, series[s], "evexec");
            if (r.n && r.med > 0) {
                fprintf(f, "\t%.4f", r.med);
                used[s] = 1;
            } else {
                fprintf(f, "\t?");
            }
        }
        fprintf(f, "\n");
    }
    fclose(f);

    if (!(f = fopen(gp, "w")))
        return -1;
    fprintf(f,
            "set terminal pngcairo size 1000,620 noenhanced font 'sans,10'\n"
            "set output '%s'\n"
            "set datafile separator '\\t'\n"
            "set datafile missing '?'\n"
            "set title 'How many times better evexec is than each system, same run "
            "(median of %d rep%s; above 1 = evexec ahead)'\n"
            "set style data histograms\n"
            "set style histogram clustered gap 1\n"
            "set style fill solid 0.85 border -1\n"
            "set logscale y 2\n"
            "set yrange [0.0625:64]\n"
            "set ytics ('1/16' 0.0625, '1/8' 0.125, '1/4' 0.25, '1/2' 0.5, '1' 1, '2' 2, "
            "'4' 4, '8' 8, '16' 16, '32' 32, '64' 64)\n"
            "set grid ytics\n"
            "set key below horizontal\n"
            "set xtics rotate by -30\n"
            "set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb 'black'\n"
            "plot ",
            png, reps, reps == 1 ? "" : "s");
    int first = 1;
    for (int s = 0; s < nseries; s++) {
        if (!used[s])
            continue;
        fprintf(f, "%s'%s' using %d%s title '%s'", first ? "" : ", ", dat, s + 2,
                first ? ":xtic(1)" : "", label_of(series[s]));
        first = 0;
    }
    fprintf(f, "\n");
    fclose(f);
    if (first) {
        unlink(dat);
        unlink(gp);
        return -2; /* nothing to draw: no peer ran beside evexec */
    }
    char *argv[] = {(char *)"gnuplot", gp, NULL};
    char out[1024];
    int st = run_capture(argv, out, sizeof out, 0);
    unlink(dat);
    unlink(gp);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int copy_file(const char *from, const char *to)
{
    char buf[65536];
    size_t n;
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    int rc = a && b ? 0 : -1;
    while (!rc && (n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n)
            rc = -1;
    if (a)
        fclose(a);
    if (b && fclose(b) != 0)
        rc = -1;
    return rc;
}

static int mkdir_p(const char *dir)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0777);
            *p = '/';
        }
    return mkdir(tmp, 0777) < 0 && errno != EEXIST ? -1 : 0;
}

/* Instructions per job: median (min-max) of the callgrind runs of rep 1. */
static struct stat3 ir_stat(const char *key)
{
    struct stat3 s = {0, 0, 0, 0};
    char k[40];
    if (!value("overhead-ir", "evexec", 1, key, &s.med))
        return s;
    s.n = quick ? 1 : IR_RUNS;
    snprintf(k, sizeof k, "%s_min", key);
    value("overhead-ir", "evexec", 1, k, &s.min);
    snprintf(k, sizeof k, "%s_max", key);
    value("overhead-ir", "evexec", 1, k, &s.max);
    return s;
}

/* The overhead table: one row per variant of evexec, not per system. */
static void write_overhead(FILE *f)
{
    char a[128], n1[48] = "N", n4[48] = "N", nir[48] = "N";
    double v;
    for (size_t i = 0; i < nms; i++) {
        if (ms[i].status != ST_OK)
            continue;
        if (!strcmp(ms[i].wl, "overhead") && get_kv(&ms[i], "jobs", &v))
            fmt(n1, sizeof n1, v);
        if (!strcmp(ms[i].wl, "overhead") && get_kv(&ms[i], "w4_jobs", &v))
            fmt(n4, sizeof n4, v);
        if (!strcmp(ms[i].wl, "overhead-ir") && get_kv(&ms[i], "jobs", &v))
            fmt(nir, sizeof nir, v);
    }
    fprintf(f, "### Overhead of the executor features: W1 (%s jobs) and W4 (%s jobs), pool of 4, "
               "every variant in one process\n\n", n1, n4);
    fprintf(f, "| evexec variant | W1 jobs/s | W1 × plain | W4 jobs/s | W4 × plain | "
               "W1 library instructions/job | × plain |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (unsigned k = 0; k < bench_evexec_nvariants; k++) {
        const char *nm = bench_evexec_variants[k].name;
        char key[32];
        fprintf(f, "| %s |", bench_evexec_variants[k].label);
        for (int w = 0; w < 2; w++) {
            snprintf(key, sizeof key, "w%d_%s", w ? 4 : 1, nm);
            fprintf(f, " %s |", cell(a, sizeof a, stat_of("overhead", "evexec", key), ""));
            snprintf(key, sizeof key, "w%d_%s_x", w ? 4 : 1, nm);
            fprintf(f, " %s |", k == 0 ? "1" : cell(a, sizeof a, stat_of("overhead", "evexec", key),
                                                     "×"));
        }
        snprintf(key, sizeof key, "ir_%s", nm);
        struct stat3 ir = ir_stat(key);
        fprintf(f, " %s |", cell(a, sizeof a, ir, ""));
        double x, p;
        if (k == 0)
            fprintf(f, " %s |\n", ir.n ? "1" : "—");
        else if (value("overhead-ir", "evexec", 1, key, &x) &&
                 value("overhead-ir", "evexec", 1, "ir_plain", &p) && p > 0)
            fprintf(f, " %s× |\n", fmt(a, sizeof a, x / p));
        else
            fprintf(f, " — |\n");
    }
    if (baseline) {
        struct stat3 ir = ir_stat("ir_baseline");
        double x, p;
        fprintf(f, "| evexec_submit(), baseline build (`%s`) |", baseline);
        fprintf(f, " %s |", cell(a, sizeof a, stat_of("overhead-base", "evexec", "w1_base"), ""));
        fprintf(f, " %s |", cell(a, sizeof a, stat_of("overhead-base", "evexec", "w1_base_x"), "×"));
        fprintf(f, " %s |", cell(a, sizeof a, stat_of("overhead-base", "evexec", "w4_base"), ""));
        fprintf(f, " %s |", cell(a, sizeof a, stat_of("overhead-base", "evexec", "w4_base_x"), "×"));
        fprintf(f, " %s |", cell(a, sizeof a, ir, ""));
        if (value("overhead-ir", "evexec", 1, "ir_baseline", &x) &&
            value("overhead-ir", "evexec", 1, "ir_plain", &p) && p > 0)
            fprintf(f, " %s× |\n", fmt(a, sizeof a, x / p));
        else
            fprintf(f, " — |\n");
    }
    for (size_t i = 0; i < nms; i++)
        if (!strncmp(ms[i].wl, "overhead", 8) && ms[i].status != ST_OK)
            fprintf(f, "\n%s: %s\n", ms[i].status == ST_SKIP ? "Skipped" : "FAILED", ms[i].reason);
    fprintf(f, "\nEach variant runs on a pool and a port of its own, created for the rep; "
               "the variants take turns in one process (order rotated each rep) and each "
               "cell is the median over the process's reps (then over the suite's reps, "
               "min–max). × plain: the variant's jobs/s over plain evexec_submit()'s in the "
               "same rep (1: as fast; below 1: slower); the first three rows are the hot "
               "path with no feature in use. Instructions/job: the instructions executed "
               "in libevexec's own code (not libc's locks, libevent or the kernel) in W1 of "
               "%s jobs under callgrind (`--fair-sched=yes`; every thread and process), "
               "minus a run of 0 jobs, divided by the jobs; median (min–max) of %d runs. "
               "No clock is involved; what still moves them a little is the threads' "
               "interleaving (how many jobs are handed over rather than queued, how far "
               "completions come back out of order).%s\n\n", nir, quick ? 1 : IR_RUNS,
            baseline ? " Baseline row: plain evexec_submit() of the build given with "
                       "--baseline; its jobs/s come from W1 and W4 run in fresh processes, "
                       "taking turns with this build's plain variant (same sizes), and its "
                       "× plain is the baseline's figure over this build's, same rep: jobs/s "
                       "above 1, or instructions below 1, mean this build's plain path is "
                       "slower than the baseline's." : "");
}

/* What one syscall costs on this VM (it differs between VMs of one kind,
 * 0.2-1 us, and every wake-up a pool makes pays it): the median of 5 runs
 * of 20,000 calls. futex: a FUTEX_WAKE of a word nobody waits on, what a
 * needless wake-up costs its caller at least. */
static double syscall_cost_ns(int futex)
{
    double v[5];
    static unsigned word;
    for (int r = 0; r < 5; r++) {
        uint64_t t0 = bench_now_ns();
        for (int i = 0; i < 20000; i++) {
            if (futex)
                syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
            else
                syscall(SYS_getppid);
        }
        v[r] = (double)(bench_now_ns() - t0) / 20000.0;
    }
    for (int i = 1; i < 5; i++) /* insertion sort */
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[2];
}

struct info {
    char host[256], date[32], load0[64], load1[64];
    double elapsed, steal;
    double syscall_ns, futex_ns;   /* this VM's syscall cost */
    const char *sys_list;
};

static int write_report(const char *path, const struct info *in, const char *pngname)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char model[256], vers[1024] = "", v[128];
    struct utsname un;
    cpu_model(model, sizeof model);
    uname(&un);
    /* evexec's own version first, then the peers'. */
    for (int pass = 0; pass < 2; pass++)
        for (int s = 0; s < nsystems; s++) {
            const char *why;
            const struct bench_ops *o = bench_find_system(systems[s], &why);
            if (!o || (pass == 0) != !strncmp(systems[s], "evexec", 6))
                continue;
            o->version(v, sizeof v);
            if (!strstr(vers, v))
                snprintf(vers + strlen(vers), sizeof vers - strlen(vers), "%s%s",
                         vers[0] ? ", " : "", v);
        }

    fprintf(f, "# evexec benchmarks: %s on %s\n\n", in->date, in->host);
    fprintf(f, "%s, %d rep%s interleaved (rep 1 of every system, then rep 2, ...), "
               "each measurement in a fresh process; %.0f s in all. "
               "Workloads, targets and how to read this: bench/README.md.\n\n",
            quick ? "**Quick mode** (small sizes: the figures mean nothing)" : "Full suite", reps,
            reps == 1 ? "" : "s", in->elapsed);
    fprintf(f, "| machine | |\n|---|---|\n");
    fprintf(f, "| CPUs (nproc) | %ld |\n", sysconf(_SC_NPROCESSORS_ONLN));
    fprintf(f, "| CPU | %s |\n", model);
    fprintf(f, "| kernel | %s %s |\n", un.sysname, un.release);
    fprintf(f, "| compiler | %s, CFLAGS `%s` |\n", COMPILER, BENCH_CFLAGS);
    fprintf(f, "| libraries | %s |\n", vers);
    source_version(v, sizeof v);
    fprintf(f, "| evexec source | %s |\n", v);
    fprintf(f, "| load average | %s at the start, %s at the end |\n", in->load0, in->load1);
    fprintf(f, "| host steal time | %.1f %% of CPU time during the run |\n", in->steal);
    fprintf(f, "| syscall cost | %.0f ns (getppid(), median of 5 × 20,000 calls, at the start); "
               "a futex wake with no waiter: %.0f ns |\n", in->syscall_ns, in->futex_ns);
    fprintf(f, "| W7 counted with | %s |\n\n",
            tool == TOOL_PERF ? "perf stat (syscalls tracepoints, context-switches)"
            : tool == TOOL_STRACE ? "strace -c -f (context switches from getrusage)"
                                  : tool_why[0] ? tool_why : "not run");
    if (pngname)
        fprintf(f, "![How many times better evexec is than each peer](%s)\n\n", pngname);
    write_targets(f);
    fprintf(f, "## Figures\n\nEach cell: median over reps (min–max). "
               "\"× evexec\": the system's figure over evexec's from the same rep, "
               "median over reps (min–max).\n\n");
    for (size_t t = 0; t < sizeof tables / sizeof *tables; t++)
        if (selected_wl(tables[t].wl))
            write_table(f, &tables[t]);
    if (selected_wl("overhead"))
        write_overhead(f);

    int nfail = 0;
    for (size_t i = 0; i < nms; i++)
        if (ms[i].status == ST_FAIL)
            nfail++;
    fprintf(f, "## Failures and notes\n\n");
    if (!nfail)
        fprintf(f, "Every measurement ran and delivered every callback on its loop thread.\n");
    for (size_t i = 0; i < nms; i++)
        if (ms[i].status == ST_FAIL)
            fprintf(f, "- FAILED: %s on %s, rep %d: %s\n", ms[i].wl, ms[i].sys, ms[i].rep,
                    ms[i].reason);
    for (size_t i = 0; i < nms; i++) {
        double mis;
        if (ms[i].status == ST_OK && get_kv(&ms[i], "misplaced", &mis) && mis > 0)
            fprintf(f, "- %s on %s, rep %d: %.0f thread(s) not where the placement wanted them "
                       "at the end (started after pinning)\n",
                    ms[i].wl, ms[i].sys, ms[i].rep, mis);
    }
    for (int i = 0; bench_systems[i]; i++) {
        const char *why;
        if ((!in->sys_list || in_list(in->sys_list, bench_systems[i])) &&
            strncmp(bench_systems[i], "floor-", 6) && !bench_find_system(bench_systems[i], &why))
            fprintf(f, "- skipped: %s: %s\n", bench_systems[i], why);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* --- main ---------------------------------------------------------------- */

int bench_suite_main(int argc, char **argv, const char *self)
{
    static const struct option lo[] = {
        {"workloads", required_argument, NULL, 'w'}, {"systems", required_argument, NULL, 's'},
        {"reps", required_argument, NULL, 'r'},      {"quick", no_argument, NULL, 'q'},
        {"jobs", required_argument, NULL, 'n'},      {"out", required_argument, NULL, 'o'},
        {"timeout", required_argument, NULL, 't'},   {"no-chart", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},            {"baseline", required_argument, NULL, 'B'},
        {NULL, 0, NULL, 0},
    };
    const char *wl_list = NULL, *sys_list = NULL, *outdir = "bench/results";
    const char *env = getenv("BENCH_QUICK");
    int c, want_chart = 1, failures = 0;

    self_path = self;
    quick = env && *env && strcmp(env, "0") != 0;
    reps = -1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "w:s:r:qn:o:t:h", lo, NULL)) != -1) {
        switch (c) {
        case 'w': wl_list = optarg; break;
        case 's': sys_list = optarg; break;
        case 'r': reps = atoi(optarg); break;
        case 'q': quick = 1; break;
        case 'n': jobs_override = atol(optarg); break;
        case 'o': outdir = optarg; break;
        case 't': timeout_s = (unsigned)atoi(optarg); break;
        case 'C': want_chart = 0; break;
        case 'B': baseline = optarg; break;
        case 'h':
            printf("see: evexec-bench run --help, and bench/README.md\n");
            return 0;
        default: return 2;
        }
    }
    if (reps < 0)
        reps = quick ? 1 : 3;
    if (reps < 1 || reps > 200) {
        fprintf(stderr, "bench: --reps must be 1..200\n");
        return 2;
    }
    if (!timeout_s)
        timeout_s = quick ? 60 : 300;

    for (int i = 0; bench_workloads[i]; i++)
        if (!wl_list || in_list(wl_list, bench_workloads[i]))
            workloads[nworkloads++] = bench_workloads[i];
    if (!nworkloads) {
        fprintf(stderr, "bench: no such workload in '%s' (see: evexec-bench list)\n", wl_list);
        return 2;
    }
    fprintf(stderr, "evexec-bench: %s, %d rep%s, interleaved\n", quick ? "quick mode" : "full suite",
            reps, reps == 1 ? "" : "s");
    for (int i = 0; bench_systems[i]; i++) {
        const char *s = bench_systems[i], *why = NULL;
        if (sys_list && !in_list(sys_list, s))
            continue;
        if (strncmp(s, "floor-", 6) && !bench_find_system(s, &why)) {
            fprintf(stderr, "  skipped: %-12s %s\n", s, why);
            continue;
        }
        systems[nsystems++] = s;
    }
    if (!nsystems) {
        fprintf(stderr, "bench: no system to run\n");
        return 2;
    }
    if (selected_wl("W7")) {
        pick_tool();
        if (tool == TOOL_NONE)
            fprintf(stderr, "  skipped: W7           %s\n", tool_why);
        else
            fprintf(stderr, "  W7 counts with:       %s\n",
                    tool == TOOL_PERF ? "perf stat (syscall tracepoints)" : "strace -c -f");
    }

    struct cpu_times t0 = cpu_times();
    char load0[64], load1[64];
    double syscall_ns = syscall_cost_ns(0), futex_ns = syscall_cost_ns(1);
    fprintf(stderr, "  syscall cost:          %.0f ns (futex wake, no waiter: %.0f ns)\n",
            syscall_ns, futex_ns);
    loadavg(load0, sizeof load0);
    uint64_t start = bench_now_ns();

    for (int rep = 1; rep <= reps; rep++) {
        for (int w = 0; w < nworkloads; w++) {
            const char *wl = workloads[w];
            for (int k = 0; k < nsystems; k++) {
                const char *sys = systems[(k + rep - 1) % nsystems];
                if (!bench_applies(wl, sys) || (!strcmp(wl, "W7") && !strncmp(sys, "floor-", 6)))
                    continue;
                uint64_t t = bench_now_ns();
                if (!strcmp(wl, "W7"))
                    measure_w7(sys, rep);
                else
                    measure(wl, sys, rep);
                const struct meas *m = &ms[nms - 1];
                char a[48];
                double v;
                const char *key = !strcmp(wl, "W1") || !strcmp(wl, "W4") || !strcmp(wl, "W8")
                                      ? "rate"
                                : !strncmp(wl, "W2", 2) ? "p50_us"
                                : !strcmp(wl, "W3") ? "time_ms"
                                : !strcmp(wl, "W5") ? "late_p99_us"
                                : !strcmp(wl, "W6") ? "bytes_per_job"
                                : !strcmp(wl, "overhead") ? "w1_ex-null_x" : "w1_writes";
                fprintf(stderr, "[rep %d/%d] %-9s %-14s %s %s (%.1f s)%s%s\n", rep, reps, wl, sys,
                        key, m->status == ST_OK && get_kv(m, key, &v) ? fmt(a, sizeof a, v) : "-",
                        (double)(bench_now_ns() - t) / 1e9,
                        m->status == ST_OK ? "" : m->status == ST_SKIP ? "  skipped: " : "  FAILED: ",
                        m->status == ST_OK ? "" : m->reason);
                if (m->status == ST_FAIL)
                    failures++;
                if (!strcmp(wl, "overhead") && baseline) {
                    t = bench_now_ns();
                    measure_baseline(rep);
                    m = &ms[nms - 1];
                    fprintf(stderr, "[rep %d/%d] %-9s %-14s %s %s (%.1f s)%s%s\n", rep, reps,
                            "overhead", "baseline", "w1_base_x",
                            m->status == ST_OK && get_kv(m, "w1_base_x", &v) ? fmt(a, sizeof a, v)
                                                                             : "-",
                            (double)(bench_now_ns() - t) / 1e9,
                            m->status == ST_OK ? "" : "  FAILED: ", m->reason);
                    if (m->status == ST_FAIL)
                        failures++;
                }
                if (!strcmp(wl, "overhead") && rep == 1) {
                    t = bench_now_ns();
                    measure_ir(rep);
                    m = &ms[nms - 1];
                    fprintf(stderr, "[rep %d/%d] %-9s %-14s %s %s (%.1f s)%s%s\n", rep, reps,
                            "overhead", "callgrind", "ir_plain",
                            m->status == ST_OK && get_kv(m, "ir_plain", &v) ? fmt(a, sizeof a, v)
                                                                            : "-",
                            (double)(bench_now_ns() - t) / 1e9,
                            m->status == ST_OK ? "" : m->status == ST_SKIP ? "  skipped: "
                                                                            : "  FAILED: ",
                            m->status == ST_OK ? "" : m->reason);
                    if (m->status == ST_FAIL)
                        failures++;
                }
            }
        }
    }
    double elapsed = (double)(bench_now_ns() - start) / 1e9;
    struct cpu_times t1 = cpu_times();
    loadavg(load1, sizeof load1);

    /* W3's floor ratio, per rep. */
    for (size_t i = 0; i < nms; i++) {
        double mine, floor;
        if (strcmp(ms[i].wl, "W3") || ms[i].status != ST_OK || !get_kv(&ms[i], "time_ms", &mine))
            continue;
        if (value("W3", "floor-threads", ms[i].rep, "time_ms", &floor) && mine > 0)
            set_kv(&ms[i], "floor_ratio", floor / mine);
    }

    /* The report. */
    struct info in;
    memset(&in, 0, sizeof in);
    time_t now = time(NULL);
    struct tm tmv;
    snprintf(in.host, sizeof in.host, "host");
    gethostname(in.host, sizeof in.host - 1);
    in.host[strcspn(in.host, ".")] = '\0';
    strftime(in.date, sizeof in.date, "%Y-%m-%d", gmtime_r(&now, &tmv));
    snprintf(in.load0, sizeof in.load0, "%s", load0);
    snprintf(in.load1, sizeof in.load1, "%s", load1);
    in.elapsed = elapsed;
    in.syscall_ns = syscall_ns;
    in.futex_ns = futex_ns;
    in.steal = t1.total > t0.total
                   ? 100.0 * (double)(t1.steal - t0.steal) / (double)(t1.total - t0.total)
                   : 0;
    in.sys_list = sys_list;

    char stem[320], path[1024], png[1024], latest[1024];
    snprintf(stem, sizeof stem, "%s-%s", in.date, in.host);
    if (mkdir_p(outdir) < 0) {
        fprintf(stderr, "bench: cannot create %s: %s\n", outdir, strerror(errno));
        return 2;
    }
    int crc = want_chart ? chart(outdir, stem) : -2;
    int have_chart = crc == 0;
    if (crc == -1)
        fprintf(stderr, "bench: no chart drawn (is gnuplot installed? Debian: gnuplot-nox)\n");
    snprintf(path, sizeof path, "%s/%s.md", outdir, stem);
    snprintf(png, sizeof png, "%s/%s.png", outdir, stem);
    snprintf(latest, sizeof latest, "%s/latest.png", outdir);
    if (have_chart && copy_file(png, latest) < 0)
        fprintf(stderr, "bench: cannot write %s\n", latest);
    snprintf(png, sizeof png, "%s.png", stem);
    int rc = write_report(path, &in, have_chart ? png : NULL);
    snprintf(latest, sizeof latest, "%s/latest.md", outdir);
    rc |= write_report(latest, &in, have_chart ? "latest.png" : NULL);
    if (rc < 0)
        return 2;
    fprintf(stderr, "evexec-bench: report %s (and latest.md)%s; %d failure%s; %.0f s\n", path,
            have_chart ? ", chart .png beside it" : "", failures, failures == 1 ? "" : "s",
            elapsed);
    return failures ? 1 : 0;
}
