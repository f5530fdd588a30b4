/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: everything that runs outside the daemon: the fork server and the
 * worker processes, and the framing both ends of a channel share.
 *
 * The fork server is forked by the supervisor thread when the pool is
 * made (a thread that lives as long as the pool, so PR_SET_PDEATHSIG,
 * which fires when the forking *thread* ends, means "the pool or the
 * daemon is gone"). It is single-threaded and runs only this file: a poll
 * over its channel and a signalfd for SIGCHLD. On SPAWN it forks a worker;
 * on a worker's exit it reports the wait status with waitid(WNOWAIT) and
 * keeps the zombie until the daemon's REAP (see procpool-internal.h). When its
 * channel hangs up it kills every worker's process group, reaps them and
 * exits.
 *
 * Each new process (server and worker) first leaves the daemon's state
 * behind: its own process group (a terminal's ^C reaches the daemon only,
 * which decides), a parent-death signal checked against a race with
 * getppid(), every fd but its channel closed (close_range(), or a loop),
 * default dispositions for every signal and none blocked, a name in comm
 * and in argv (ps), and, for workers, the nice value and limits. The
 * server also drops the stdio output the daemon had buffered (__fpurge),
 * so that a worker's printf() does not write it a second time.
 *
 * Memory limit (mem_limit): the soft RLIMIT_AS of a worker is set, once
 * it is ready, to its address space then plus the limit. A job whose
 * VmPeak rose to within PROC_MEM_SLACK of that cap is reported with
 * MEMLIMIT, whether it then returns or crashes: SIGSEGV, SIGBUS and SIGABRT
 * get a handler (alternate stack, async-signal-safe: open/read/send only)
 * that sends MEMLIMIT when the cap was reached and then lets the signal
 * kill the worker as it would have. The worker exits after such a job.
 * CPU limit: the soft RLIMIT_CPU is set before each job to the time used
 * so far plus the limit, and lifted after it; SIGXCPU kills an overrun.
 */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "procpool-internal.h"

#define PROC_MEM_SLACK ((uint64_t)2 << 20)
#define SERVER_MAX_CHILDREN (2 * PROC_MAX_PROCS + 8)
/* How long a worker that has just sent a result looks for its next job
 * (yielding the CPU between looks) before it sleeps: about what waking a
 * sleeping process costs on a virtual machine whose idle CPUs halt (20-40
 * us each way). See "the direct hand-off" in procpool.c. */
#define PROC_POLL_US 50

/* --- framing ------------------------------------------------------------- */

int evexec__proc_send(int fd, struct proc_frame *f, const void *data, size_t len, int passfd,
                      int nonblock)
{
    struct iovec iov[2] = {{f, sizeof *f}, {(void *)data, len}};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};

    f->flags &= ~FRAME_FD;
    if (passfd >= 0) {
        f->flags |= FRAME_FD;
        m.msg_iovlen = 1;
        memset(&u, 0, sizeof u);
        m.msg_control = u.buf;
        m.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &passfd, sizeof(int));
    } else {
        f->len = len;
    }
    for (;;) {
        ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL | (nonblock ? MSG_DONTWAIT : 0));
        if (n >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

int evexec__proc_recv(int fd, struct proc_frame *f, void *buf, size_t cap, int *passfd,
                      int nonblock)
{
    struct iovec iov[2] = {{f, sizeof *f}, {buf, cap}};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2, .msg_control = u.buf,
                       .msg_controllen = sizeof u.buf};
    ssize_t n;

    *passfd = -1;
    /* A peer that closes its end with frames unread in it (a worker that
     * dies with jobs sent ahead) makes our next read fail ECONNRESET once,
     * although frames it sent before are still queued here (Linux reports
     * the socket's error first and clears it): read again, so that none
     * of them is lost; after the last one the read returns 0. */
    int resets = 0;
    do
        n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC | (nonblock ? MSG_DONTWAIT : 0));
    while (n < 0 && (errno == EINTR || (errno == ECONNRESET && resets++ < 1)));
    if (n < 0)
        return errno == ECONNRESET ? 0 : -errno;
    if (n == 0)
        return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int fds[4] = {-1, -1, -1, -1};
            memcpy(fds, CMSG_DATA(c), (nfd < 4 ? nfd : 4) * sizeof(int));
            for (size_t i = 0; i < nfd && i < 4; i++) {
                if (*passfd < 0 && i == 0)
                    *passfd = fds[0];
                else
                    close(fds[i]);
            }
            if (nfd != 1)
                goto bad;
        }
    if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n < sizeof *f)
        goto bad;
    if (f->flags & FRAME_FD) {
        if (*passfd < 0 || (size_t)n != sizeof *f)
            goto bad;
    } else if (*passfd >= 0 || f->len != (size_t)n - sizeof *f) {
        goto bad;
    }
    return 1;
bad:
    if (*passfd >= 0)
        close(*passfd);
    *passfd = -1;
    return -EPROTO;
}

/* --- memfds -------------------------------------------------------------- */

int evexec__proc_memfd(size_t len, void **map)
{
    int fd = (int)syscall(SYS_memfd_create, "evexec-payload", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)len) < 0)
        goto fail;
    /* Populated at once, for writing: far cheaper than a fault per page.
     * MAP_POPULATE would map a shared file's pages read-only, leaving a
     * write fault per page for the copy that follows. */
#ifdef MADV_POPULATE_WRITE
    *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (*map != MAP_FAILED && madvise(*map, len, MADV_POPULATE_WRITE) < 0) {
        munmap(*map, len); /* before Linux 5.14 */
        *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    }
#else
    *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
#endif
    if (*map == MAP_FAILED)
        goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

int evexec__proc_memfd_seal(int fd, void *map, size_t len)
{
    munmap(map, len);
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
        return -errno;
    return 0;
}

static size_t page_up(size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (len + pg - 1) / pg * pg;
}

void evexec__proc_spare_drop(struct proc_spare *s)
{
    if (s->fd >= 0) {
        munmap(s->map, s->len);
        close(s->fd);
    }
    s->fd = -1;
    s->map = NULL;
    s->len = 0;
}

void evexec__proc_spare_make(struct proc_spare *s, size_t len)
{
    if (s->fd >= 0 && s->len >= len)
        return;
    evexec__proc_spare_drop(s);
    void *map;
    int fd = evexec__proc_memfd(len, &map);
    if (fd < 0)
        return;
    /* A child the next work function forks must not hold it writable:
     * sealing it as that job's output would then fail. */
    madvise(map, len, MADV_DONTFORK);
    s->fd = fd;
    s->map = map;
    s->len = len;
}

int evexec__proc_spare_take(struct proc_spare *s, size_t len, void **map)
{
    if (s->fd < 0 || s->len < len || len == 0)
        return -1;
    if (s->len > len) {
        /* Trim: the pages past len go back, and so does their mapping. */
        size_t keep = page_up(len);
        if (ftruncate(s->fd, (off_t)len) < 0) {
            evexec__proc_spare_drop(s);
            return -1;
        }
        if (page_up(s->len) > keep)
            munmap((char *)s->map + keep, page_up(s->len) - keep);
    }
    madvise(s->map, len, MADV_DOFORK); /* an output like any other now */
    int fd = s->fd;
    *map = s->map;
    s->fd = -1;
    s->map = NULL;
    s->len = 0;
    return fd;
}

int evexec__proc_inbuf_new(size_t cap, void **map)
{
    int fd = evexec__proc_memfd(cap, map);
    if (fd < 0)
        return fd;
    /* Sealed with the daemon's writable mapping in place: FUTURE_WRITE
     * keeps that one writable and refuses every later one. And no child
     * inherits it (a fork server made later, a popen()): its copy would
     * be writable. */
    if (madvise(*map, cap, MADV_DONTFORK) < 0) {
        int e = errno;
        munmap(*map, cap);
        close(fd);
        return -e;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) <
        0) {
        int e = errno;
        munmap(*map, cap);
        close(fd);
        return -e;
    }
    return fd;
}

/* The checks of evexec__proc_memfd_map(); *st gets the file's stat. */
static int memfd_check(int fd, size_t len, int exact, struct stat *st)
{
    int seals = fcntl(fd, F_GET_SEALS);
    /* Unsealed, the sender could shrink the file under our mapping (SIGBUS
     * in the daemon), or, for an output, change the bytes while the done
     * callback reads them. */
    if (seals < 0 || !(seals & F_SEAL_SHRINK) ||
        !(seals & (exact ? F_SEAL_WRITE : F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)))
        return -EPROTO;
    if (fstat(fd, st) < 0 || len == 0 || (uint64_t)st->st_size < len ||
        (exact && (uint64_t)st->st_size != len))
        return -EPROTO;
    return 0;
}

int evexec__proc_memfd_map(int fd, size_t len, int exact, const void **map)
{
    struct stat st;
    int rc = memfd_check(fd, len, exact, &st);
    if (rc < 0)
        return rc;
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    *map = p;
    return 0;
}

int evexec__proc_claims_new(_Atomic uint64_t **map)
{
    int fd = (int)syscall(SYS_memfd_create, "evexec-claims", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    void *p = MAP_FAILED;
    if (ftruncate(fd, (off_t)PROC_CLAIMS_BYTES) < 0 ||
        (p = mmap(NULL, PROC_CLAIMS_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
            MAP_FAILED ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        int e = errno;
        if (p != MAP_FAILED)
            munmap(p, PROC_CLAIMS_BYTES);
        close(fd);
        return -e;
    }
    madvise(p, PROC_CLAIMS_BYTES, MADV_DONTFORK); /* not the work's children */
    *map = p;
    return fd;
}

int evexec__proc_claims_map(int fd, _Atomic uint64_t **map)
{
    struct stat st;
    int seals = fcntl(fd, F_GET_SEALS);
    /* Shrinking it would SIGBUS the daemon on its next look at a word. */
    if (seals < 0 || !(seals & F_SEAL_SHRINK) || fstat(fd, &st) < 0 ||
        (uint64_t)st.st_size < PROC_CLAIMS_BYTES)
        return -EPROTO;
    void *p = mmap(NULL, PROC_CLAIMS_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    *map = p;
    return 0;
}

void evexec__proc_claims_unmap(_Atomic uint64_t *map)
{
    if (map)
        munmap((void *)map, PROC_CLAIMS_BYTES);
}

/* --- /proc, async-signal-safe -------------------------------------------- */

static ssize_t read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

static uint64_t parse_u64(const char **pp)
{
    const char *p = *pp;
    uint64_t v = 0;
    while (*p == ' ' || *p == '\t')
        p++;
    while (*p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    *pp = p;
    return v;
}

uint64_t evexec__proc_statm(pid_t pid, int field)
{
    char path[64], buf[256];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    else
        memcpy(path, "/proc/self/statm", sizeof "/proc/self/statm");
    if (read_file(path, buf, sizeof buf) <= 0)
        return 0;
    const char *p = buf;
    uint64_t v = 0;
    for (int i = 0; i <= field; i++)
        v = parse_u64(&p);
    return v * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* VmPeak of the calling process in bytes; async-signal-safe. */
static uint64_t vm_peak(void)
{
    char buf[2048];
    if (read_file("/proc/self/status", buf, sizeof buf) <= 0)
        return 0;
    for (const char *p = buf; *p; p++)
        if ((p == buf || p[-1] == '\n') && strncmp(p, "VmPeak:", 7) == 0) {
            p += 7;
            return parse_u64(&p) * 1024;
        }
    return 0;
}

/* --- a new process leaves the daemon's state behind ---------------------- */

static void close_fds_from(int lowest)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lowest, ~0u, 0u) == 0)
        return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 1 << 20)
        max = 1 << 20;
    for (int fd = lowest; fd < max; fd++)
        close(fd);
}

/* Moves chan to fd 3 and closes every other fd above 2. */
static int keep_only(int chan)
{
    if (chan != 3) {
        if (dup2(chan, 3) < 0)
            return -1;
    } else {
        fcntl(3, F_SETFD, 0);
    }
    close_fds_from(4);
    return 3;
}

static void default_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            sigaction(s, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Names the process in comm and, as ps shows it, argv: the bytes from the
 * arg_start to the arg_end fields of /proc/self/stat. */
static void set_name(const char *name)
{
    char buf[1024];
    prctl(PR_SET_NAME, name, 0, 0, 0);
    if (read_file("/proc/self/stat", buf, sizeof buf) <= 0)
        return;
    const char *p = strrchr(buf, ')');
    if (!p)
        return;
    p++;
    uint64_t start = 0, end = 0;
    /* Field 3 follows ")"; arg_start and arg_end are fields 48 and 49. */
    for (int field = 3; field <= 49 && *p; field++) {
        while (*p == ' ')
            p++;
        const char *q = p;
        uint64_t v = parse_u64(&q);
        if (field == 48)
            start = v;
        if (field == 49)
            end = v;
        while (*p && *p != ' ')
            p++;
    }
    if (!start || end <= start + 1 || end - start > 1 << 20)
        return;
    char *argv0 = (char *)(uintptr_t)start;
    size_t room = (size_t)(end - start);
    size_t n = strlen(name);
    if (n >= room)
        n = room - 1;
    memset(argv0, 0, room);
    memcpy(argv0, name, n);
}

/* Common first steps of a new process. 0, or -1: the parent is already
 * gone (or the setup failed): _exit. */
static int new_process(pid_t parent, int sig)
{
    setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) < 0 || getppid() != parent)
        return -1;
    default_signals();
    return 0;
}

/* --- workers ------------------------------------------------------------- */

struct evexec_proc_out {
    uint64_t max;
    void *inline_buf;              /* PROC_INLINE_MAX bytes, reused */
    void *map;                     /* a memfd's mapping, or NULL */
    int fd;
    size_t len;
    int set;
    struct proc_spare spare;       /* the next big output's memfd, made
                                      while the worker waits for a job */
};

static const char zero_bytes[1];

static uint64_t mono_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

void *evexec_proc_output(evexec_proc_out *out, size_t len)
{
    if (!out || len > out->max)
        return NULL;
    if (out->map) {
        munmap(out->map, out->len);
        close(out->fd);
        out->map = NULL;
        out->fd = -1;
    }
    out->set = 1;
    out->len = len;
    if (len == 0)
        return (void *)zero_bytes;
    if (len <= PROC_INLINE_MAX)
        return out->inline_buf;
    int fd = evexec__proc_spare_take(&out->spare, len, &out->map);
    if (fd < 0)
        fd = evexec__proc_memfd(len, &out->map);
    if (fd < 0) {
        out->map = NULL;
        out->set = 0;
        out->len = 0;
        return NULL;
    }
    out->fd = fd;
    return out->map;
}

/* The memory-limit state of the worker, for its signal handler. */
static struct {
    int chan;
    uint64_t cap;                  /* 0: no limit */
    _Atomic uint64_t seq;          /* the job running, or 0 */
    int reported;
} wl;

static int mem_limit_reached(void)
{
    return wl.cap && vm_peak() + PROC_MEM_SLACK >= wl.cap;
}

static void send_memlimit(uint64_t seq)
{
    struct proc_frame f = {.type = F_MEMLIMIT, .seq = seq};
    if (!wl.reported && evexec__proc_send(wl.chan, &f, NULL, 0, -1, 0) == 0)
        wl.reported = 1;
}

static void on_fatal(int sig)
{
    int saved = errno;
    uint64_t seq = atomic_load(&wl.seq);
    if (seq && mem_limit_reached())
        send_memlimit(seq);
    /* SA_RESETHAND made the disposition the default again: the signal,
     * pending until we return, kills the worker as it would have. */
    raise(sig);
    errno = saved;
}

static void limit_memory(const struct proc_conf *c, int chan)
{
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGABRT};
    struct rlimit rl;
    wl.chan = chan;
    if (!c->mem_limit || getrlimit(RLIMIT_AS, &rl) < 0)
        return;
    wl.cap = evexec__proc_statm(0, 0) + c->mem_limit;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < wl.cap ? rl.rlim_max : wl.cap;
    setrlimit(RLIMIT_AS, &rl);

    stack_t ss = {.ss_size = 64 * 1024};
    ss.ss_sp = mmap(NULL, ss.ss_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ss.ss_sp != MAP_FAILED)
        sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal;
    sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        sigaction(fatal[i], &sa, NULL);
}

static void limit_cpu(unsigned limit_s, int on)
{
    struct rlimit rl;
    struct rusage ru;
    if (!limit_s || getrlimit(RLIMIT_CPU, &rl) < 0)
        return;
    if (on) {
        if (getrusage(RUSAGE_SELF, &ru) < 0)
            return;
        rlim_t used = (rlim_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1;
        rl.rlim_cur = used + limit_s;
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
            rl.rlim_cur = rl.rlim_max;
    } else {
        rl.rlim_cur = rl.rlim_max;
    }
    setrlimit(RLIMIT_CPU, &rl);
}

/*
 * DESIGN: a worker keeps its read-only mappings of the daemon's input
 * buffers between jobs (up to PROC_INMAPS, the least recently used
 * replaced; each dropped once unused for PROC_INMAP_KEEP_MS, whether the
 * worker runs other jobs meanwhile or waits, as the daemon drops its
 * buffers: the pages of a buffer go with the last mapping). The
 * daemon reuses its buffers (evexec__proc_inbuf_new()), so the next big
 * input usually arrives in a buffer this worker has mapped already: no
 * new mapping with its pages populated (1.5 ms for 64 MiB) and no munmap
 * per job. A mapping is known by the file's device and inode, which
 * cannot be reused while the mapping holds the file. Not with mem_limit
 * (the mappings would count in the address space the limit caps) nor
 * recycle_rss (nor in the RSS read). What it gives up is what kept input
 * buffers gave up already (procpool-internal.h): the worker can read the
 * later inputs placed in a buffer it has mapped; children it forks do not
 * inherit the mappings (MADV_DONTFORK).
 */
#define PROC_INMAPS 4
#define PROC_INMAP_KEEP_MS 1000

static struct inmap {
    dev_t dev;
    ino_t ino;
    void *map;                     /* NULL: a free entry */
    size_t len;                    /* the file's size, all mapped */
    uint64_t used;                 /* mono_us() when last used */
} inmaps[PROC_INMAPS];

/* Drops the mappings unused for PROC_INMAP_KEEP_MS; returns the ms until
 * the next one is due, or -1 when none is left. */
static int inmaps_expire(void)
{
    uint64_t now = mono_us(), keep = (uint64_t)PROC_INMAP_KEEP_MS * 1000u;
    int next = -1;
    for (unsigned i = 0; i < PROC_INMAPS; i++) {
        struct inmap *m = &inmaps[i];
        if (!m->map)
            continue;
        if (now - m->used >= keep) {
            munmap(m->map, m->len);
            m->map = NULL;
        } else {
            int ms = (int)((m->used + keep - now) / 1000u) + 1;
            if (next < 0 || ms < next)
                next = ms;
        }
    }
    return next;
}

/* Maps an input buffer (checked as evexec__proc_memfd_map() does), or
 * finds it mapped. 0 or -errno. */
static int inmap_get(int fd, size_t len, const void **map)
{
    struct stat st;
    int rc = memfd_check(fd, len, 0, &st);
    if (rc < 0)
        return rc;
    struct inmap *e = &inmaps[0];
    for (unsigned i = 0; i < PROC_INMAPS; i++) {
        struct inmap *m = &inmaps[i];
        if (m->map && m->dev == st.st_dev && m->ino == st.st_ino && m->len == (size_t)st.st_size) {
            m->used = mono_us();
            *map = m->map;
            return 0;
        }
        if (!m->map || (e->map && m->used < e->used))
            e = m;
    }
    size_t size = (size_t)st.st_size;
    void *p = mmap(NULL, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    madvise(p, size, MADV_DONTFORK);
    if (e->map)
        munmap(e->map, e->len);
    *e = (struct inmap){st.st_dev, st.st_ino, p, size, mono_us()};
    *map = p;
    return 0;
}

static int run_job(const struct proc_conf *c, int chan, struct proc_frame *f, void *inbuf,
                   int infd, struct evexec_proc_out *out, void *state)
{
    int keep = !wl.cap && !c->no_spare; /* input mappings kept */
    const void *in = inbuf;
    size_t in_len = (size_t)f->len;
    uint64_t seq = f->seq;
    int stop = 0;

    if (infd >= 0) {
        int rc = keep ? inmap_get(infd, in_len, &in) : evexec__proc_memfd_map(infd, in_len, 0, &in);
        close(infd);
        if (rc < 0)
            return -1; /* the daemon sent garbage: leave */
    } else if (!in_len) {
        in = NULL;
    }
    out->set = 0;
    out->len = 0;
    uint64_t peak0 = wl.cap ? vm_peak() : 0;
    limit_cpu(c->cpu_limit_s, 1);
    atomic_store(&wl.seq, seq);
    /* The call: the point of it all. */
    int rc = ((evexec_proc_work_fn)(uintptr_t)f->aux)(in, in_len, out, state);
    atomic_store(&wl.seq, 0);
    limit_cpu(c->cpu_limit_s, 0);
    if (infd >= 0 && !keep)
        munmap((void *)(uintptr_t)in, in_len);
    if (wl.cap && vm_peak() > peak0 && mem_limit_reached()) {
        send_memlimit(seq);
        stop = 1;
    }

    struct proc_frame r = {.type = F_RESULT, .seq = seq, .code = rc};
    int sent;
    if (out->map) {
        r.len = out->len;
        if (evexec__proc_memfd_seal(out->fd, out->map, out->len) < 0)
            _exit(71);
        out->map = NULL;
        sent = evexec__proc_send(chan, &r, NULL, 0, out->fd, 0);
        close(out->fd);
        out->fd = -1;
        /* The next output of this size costs a copy only: its pages are
         * made now, while the daemon reads this one. Not under a memory
         * limit, which the spare would count against, nor with
         * recycle_rss, whose reading of the RSS it would inflate. */
        if (sent == 0 && !stop && !wl.cap && !c->no_spare)
            evexec__proc_spare_make(&out->spare, out->len);
    } else {
        sent = evexec__proc_send(chan, &r, out->inline_buf, out->set ? out->len : 0, -1, 0);
    }
    return sent < 0 || stop ? -1 : 0;
}

static void worker_main(const struct proc_conf *c, int chan, unsigned number)
{
    char name[32];
    void *state = NULL;
    struct evexec_proc_out out = {.max = c->max_payload, .fd = -1, .spare = {.fd = -1}};

    snprintf(name, sizeof name, "%s-%u", c->name, number);
    set_name(name);
    fcntl(chan, F_SETFL, 0); /* the pair was made non-blocking for the daemon */
    if (c->nice)
        setpriority(PRIO_PROCESS, 0, (int)c->nice + getpriority(PRIO_PROCESS, 0));

    int rc = c->init ? c->init(c->hook_arg, &state) : 0;
    if (rc) {
        struct proc_frame f = {.type = F_INITFAIL, .code = rc};
        evexec__proc_send(chan, &f, NULL, 0, -1, 0);
        _exit(0);
    }
    void *inbuf = malloc(PROC_INLINE_MAX);
    out.inline_buf = malloc(PROC_INLINE_MAX);
    if (!inbuf || !out.inline_buf) {
        struct proc_frame f = {.type = F_INITFAIL, .code = -ENOMEM};
        evexec__proc_send(chan, &f, NULL, 0, -1, 0);
        _exit(0);
    }
    /* Without claim words (no memfd to be had) it is sent no job ahead.
     * Made before the memory limit, which counts from what is mapped. */
    _Atomic uint64_t *claims = NULL;
    int cfd = evexec__proc_claims_new(&claims);
    limit_memory(c, chan);
    struct proc_frame f = {.type = F_READY, .code = getpid()};
    rc = evexec__proc_send(chan, &f, NULL, 0, cfd, 0);
    if (cfd >= 0)
        close(cfd);
    if (rc < 0)
        _exit(0);

    for (int polled = 1;;) {
        int fd;
        /* After a job, the next one often follows within a round trip:
         * look for it for a while before sleeping (see PROC_POLL_US). */
        rc = -EAGAIN;
        if (!polled) {
            inmaps_expire(); /* a worker kept busy by small jobs too */
            uint64_t until = mono_us() + PROC_POLL_US;
            do {
                rc = evexec__proc_recv(chan, &f, inbuf, PROC_INLINE_MAX, &fd, 1);
                if (rc == -EAGAIN)
                    sched_yield(); /* to whatever else wants this CPU */
            } while (rc == -EAGAIN && mono_us() < until);
        }
        /* Kept input mappings go once unused a while, waiting or not. */
        for (int ms; rc == -EAGAIN && (ms = inmaps_expire()) >= 0;) {
            struct pollfd p = {chan, POLLIN, 0};
            if (poll(&p, 1, ms) != 0)
                break;
        }
        if (rc == -EAGAIN)
            rc = evexec__proc_recv(chan, &f, inbuf, PROC_INLINE_MAX, &fd, 0);
        polled = 0;
        if (rc <= 0 || f.type != F_JOB) {
            if (fd >= 0)
                close(fd);
            break;
        }
        if (f.code) {
            /* A job sent ahead: it is ours only if we claim it first (see
             * "Claim words"); else the daemon has taken it back. */
            uint64_t id = (uint64_t)f.code >> 2, sent = CLAIM(id, CLAIM_SENT);
            unsigned word = (unsigned)(f.code & 3);
            if (!claims || f.code < 0 || word < 1 || word > PROC_CLAIMS)
                _exit(0); /* the daemon sent garbage: leave */
            if (!atomic_compare_exchange_strong(&claims[word - 1], &sent,
                                                CLAIM(id, CLAIM_STARTED))) {
                if (fd >= 0)
                    close(fd);
                continue;
            }
        }
        if (run_job(c, chan, &f, inbuf, fd, &out, state) < 0)
            _exit(0); /* after a memory-limit report: be replaced */
    }
    if (c->fini)
        c->fini(state, c->hook_arg);
    _exit(0);
}

/* --- the fork server ----------------------------------------------------- */

struct child {
    pid_t pid;
    int reported;
};

static int add_child(struct child *kids, pid_t pid)
{
    for (unsigned i = 0; i < SERVER_MAX_CHILDREN; i++)
        if (!kids[i].pid) {
            kids[i].pid = pid;
            kids[i].reported = 0;
            return 0;
        }
    return -1;
}

static void spawn(const struct proc_conf *c, int chan, struct child *kids, struct proc_frame *req,
                  int wfd)
{
    struct proc_frame rep = {.type = F_SPAWNED, .seq = req->seq};
    pid_t me = getpid();
    pid_t pid = wfd < 0 ? -1 : fork();
    if (pid == 0) {
        if (new_process(me, SIGKILL) < 0)
            _exit(0);
        worker_main(c, keep_only(wfd), (unsigned)req->code);
    }
    if (pid > 0) {
        setpgid(pid, pid); /* as the child does: no window without it */
        if (add_child(kids, pid) < 0) {
            kill(-pid, SIGKILL);
            waitpid(pid, NULL, 0);
            pid = -1;
            errno = EAGAIN;
        }
    }
    rep.code = pid > 0 ? pid : -(wfd < 0 ? EPROTO : errno);
    if (wfd >= 0)
        close(wfd);
    evexec__proc_send(chan, &rep, NULL, 0, -1, 0);
}

static void report_exits(int chan, struct child *kids)
{
    for (unsigned i = 0; i < SERVER_MAX_CHILDREN; i++) {
        siginfo_t si;
        if (!kids[i].pid || kids[i].reported)
            continue;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)kids[i].pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
            si.si_pid != kids[i].pid)
            continue;
        int status = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8
                     : si.si_code == CLD_DUMPED ? (si.si_status & 0x7f) | 0x80
                                                : si.si_status & 0x7f;
        struct proc_frame f = {.type = F_EXITED, .code = kids[i].pid, .aux = status};
        kids[i].reported = 1;
        evexec__proc_send(chan, &f, NULL, 0, -1, 0);
    }
}

static void reap(struct child *kids, pid_t pid)
{
    for (unsigned i = 0; i < SERVER_MAX_CHILDREN; i++)
        if (kids[i].pid == pid && pid > 0) {
            kill(-pid, SIGKILL); /* what is left of its group */
            waitpid(pid, NULL, 0);
            kids[i].pid = 0;
        }
}

static void server_main(const struct proc_conf *conf, int chan)
{
    static struct child kids[SERVER_MAX_CHILDREN];
    struct proc_conf c = *conf;
    char name[32];
    sigset_t chld;

    snprintf(name, sizeof name, "%s-srv", c.name);
    set_name(name);
    /* Output the daemon had buffered but not written is the daemon's to
     * write: a worker flushing it would print it again. */
    __fpurge(stdout);
    __fpurge(stderr);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        _exit(1);

    for (;;) {
        struct pollfd p[2] = {{chan, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            report_exits(chan, kids);
        }
        if (p[0].revents) {
            struct proc_frame f;
            int fd;
            int rc = evexec__proc_recv(chan, &f, NULL, 0, &fd, 0);
            if (rc == 0 || (rc < 0 && rc != -EPROTO))
                break;
            if (rc < 0)
                continue;
            if (f.type == F_SPAWN)
                spawn(&c, chan, kids, &f, fd);
            else {
                if (fd >= 0)
                    close(fd);
                if (f.type == F_REAP)
                    reap(kids, (pid_t)f.code);
            }
            /* A worker may have exited while we forked: SIGCHLD stays
             * pending in the signalfd, so nothing is missed. */
        }
    }
    for (unsigned i = 0; i < SERVER_MAX_CHILDREN; i++)
        if (kids[i].pid)
            kill(-kids[i].pid, SIGKILL);
    for (unsigned i = 0; i < SERVER_MAX_CHILDREN; i++)
        if (kids[i].pid)
            waitpid(kids[i].pid, NULL, 0);
    _exit(0);
}

pid_t evexec__procserver_fork(const struct proc_conf *conf, int chan)
{
    pid_t me = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        if (new_process(me, SIGKILL) < 0)
            _exit(0);
        server_main(conf, keep_only(chan));
    }
    return pid;
}
