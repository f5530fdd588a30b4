/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: a mailbox carries nodes from any thread into one loop thread.
 *
 * Posters push onto a lock-free LIFO list (one CAS) and write the wake fd
 * only when the list was empty, so a burst of N posts costs one write and
 * one read. The loop, woken, first empties the wake fd, then takes the whole
 * list with one atomic exchange: reading first means a post made after the
 * exchange always finds the list empty and writes again, so no wake-up is
 * lost.
 *
 * Also here, as the base's other piece of libevent glue: the one way a
 * port or a loop arms a timer, which never lets a failed event_add() (no
 * memory for libevent's timer heap) strand work.
 *
 * The wake fd is an eventfd where there is one (one fd, an 8-byte counter)
 * and a non-blocking pipe elsewhere or with ./configure --disable-eventfd.
 * Both ends are non-blocking and close-on-exec. A write that would block
 * means the fd is already readable, which is all a signal needs, so EAGAIN
 * is not an error; EINTR is retried.
 *
 * A poster that found the list empty touches the mailbox once more, to
 * write the wake fd, after its node may already have been taken. The loop
 * counts the writes it is owed (one per non-empty take) and the writes it
 * has read; the owner may release the mailbox only when they match.
 *
 * Runs: a port takes again and again in one wake-up (its done callbacks
 * submit jobs that finish while it delivers), so it brackets those takes
 * in a run. The list's head word carries MAILBOX_RUNNING meanwhile, and a
 * post sees the flag in the same compare-and-swap that pushes its node: a
 * post onto an empty list writes the wake fd only if the flag is clear,
 * and a post made while it is set never touches the mailbox again. The
 * run's first take (begin) swaps in the flag: the nodes it takes were
 * posted without it, and the oldest one's poster writes, as before (one
 * write owed). Later takes (more) and the end, which clears the flag and
 * takes what came since in one exchange, take only nodes posted under
 * the flag: nothing to read, nothing owed. So a completion that lands
 * while the port delivers costs no system call on either side.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <event2/event.h>
#ifdef EVEXEC_USE_EVENTFD
#include <sys/eventfd.h>
#endif

#include "mailbox-internal.h"

#if !defined(EVEXEC_USE_EVENTFD) && !defined(HAVE_PIPE2)
static int set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}
#endif

static int evexec__wakefd_open(struct evexec__wakefd *w)
{
#ifdef EVEXEC_USE_EVENTFD
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    w->rfd = w->wfd = fd;
    return 0;
#else
    int fds[2];
#ifdef HAVE_PIPE2
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
#else
    int rc;
    if (pipe(fds) < 0)
        return -errno;
    if ((rc = set_flags(fds[0])) < 0 || (rc = set_flags(fds[1])) < 0) {
        close(fds[0]);
        close(fds[1]);
        return rc;
    }
#endif
    w->rfd = fds[0];
    w->wfd = fds[1];
    return 0;
#endif
}

static void evexec__wakefd_close(struct evexec__wakefd *w)
{
    if (w->wfd != w->rfd && w->wfd >= 0)
        close(w->wfd);
    if (w->rfd >= 0)
        close(w->rfd);
    w->rfd = w->wfd = -1;
}

static void evexec__wakefd_signal(const struct evexec__wakefd *w)
{
#ifdef EVEXEC_USE_EVENTFD
    const uint64_t one = 1;
    while (write(w->wfd, &one, sizeof one) < 0 && errno == EINTR)
        ;
#else
    const char one = 1;
    while (write(w->wfd, &one, 1) < 0 && errno == EINTR)
        ;
#endif
}

static uint64_t evexec__wakefd_drain(const struct evexec__wakefd *w)
{
#ifdef EVEXEC_USE_EVENTFD
    uint64_t n;
    for (;;) {
        ssize_t r = read(w->rfd, &n, sizeof n);
        if (r == (ssize_t)sizeof n)
            return n;
        if (r < 0 && errno == EINTR)
            continue;
        return 0; /* EAGAIN: nothing was signalled */
    }
#else
    uint64_t total = 0;
    char buf[256];
    for (;;) {
        ssize_t r = read(w->rfd, buf, sizeof buf);
        if (r > 0) {
            total += (uint64_t)r;
            if ((size_t)r < sizeof buf)
                return total;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else {
            return total;
        }
    }
#endif
}

void evexec__mailbox_init(struct evexec__mailbox *mb)
{
    atomic_init(&mb->head, 0);
    mb->signals_owed = mb->signals_read = 0;
    mb->ev = NULL;
    mb->wake.rfd = mb->wake.wfd = -1;
}

int evexec__mailbox_open(struct evexec__mailbox *mb, struct event_base *base,
                         void (*cb)(int, short, void *), void *arg, int priority)
{
    int rc;

    evexec__mailbox_init(mb);
    if ((rc = evexec__wakefd_open(&mb->wake)) < 0)
        return rc;
    /* Level-triggered: the loop reads the fd on every take, and a reader
     * that cannot take yet leaves it readable, so the loop comes back. (An
     * edge-triggered eventfd would save that read, but any read outside a
     * take then swallows a wake-up, and a full counter can never signal
     * again: not worth one syscall.) */
    rc = -ENOMEM;
    if (!(mb->ev = event_new(base, mb->wake.rfd, EV_READ | EV_PERSIST, cb, arg)))
        goto fail;
    rc = -EINVAL;
    if (priority >= 0 && event_priority_set(mb->ev, priority) < 0)
        goto fail;
    rc = -ENOMEM;
    if (event_add(mb->ev, NULL) < 0)
        goto fail;
    return 0;
fail:
    evexec__mailbox_close(mb);
    return rc;
}

void evexec__mailbox_close(struct evexec__mailbox *mb)
{
    if (mb->ev)
        event_free(mb->ev);
    mb->ev = NULL;
    evexec__wakefd_close(&mb->wake);
}

void evexec__mailbox_detach(struct evexec__mailbox *mb)
{
    if (mb->ev)
        event_del(mb->ev);
}

_Static_assert(_Alignof(struct evexec__node) > 1, "a node's address leaves bit 0 free");

static inline struct evexec__node *list_of(uintptr_t head)
{
    return (struct evexec__node *)(head & ~MAILBOX_RUNNING);
}

void evexec__mailbox_post(struct evexec__mailbox *mb, struct evexec__node *node)
{
    uintptr_t old = atomic_load_explicit(&mb->head, memory_order_relaxed);
    do
        node->next = list_of(old);
    while (!atomic_compare_exchange_weak_explicit(&mb->head, &old,
                                                  (uintptr_t)node | (old & MAILBOX_RUNNING),
                                                  memory_order_release, memory_order_relaxed));
    if (old == 0) /* empty, and the loop in no run */
        evexec__wakefd_signal(&mb->wake);
}

uint64_t evexec__mailbox_signals(const struct evexec__mailbox *mb)
{
    return mb->signals_read;
}

int evexec__mailbox_quiet(const struct evexec__mailbox *mb)
{
    return mb->signals_read >= mb->signals_owed;
}

/* Reads the wake fd. Every write read was made by a post that a take has
 * taken or is about to take (and count as owed), so read <= owed once it
 * is counted. Only a wake fd that something else filled (a full eventfd
 * counter reads as 2^64-2) reads more: the caller clamps, so the
 * accounting neither wraps nor runs ahead. */
static void read_wake(struct evexec__mailbox *mb)
{
    mb->signals_read += evexec__wakefd_drain(&mb->wake);
}

static void clamp_read(struct evexec__mailbox *mb)
{
    if (mb->signals_read > mb->signals_owed)
        mb->signals_read = mb->signals_owed;
}

/* A take of nodes posted outside a run: reads the wake fd first if asked,
 * and leaves the head word at next (0, or MAILBOX_RUNNING to start a run). */
static struct evexec__node *take_owed(struct evexec__mailbox *mb, int read, uintptr_t next)
{
    if (read)
        read_wake(mb);
    struct evexec__node *list =
        list_of(atomic_exchange_explicit(&mb->head, next, memory_order_acquire));
    if (list)
        mb->signals_owed++;
    clamp_read(mb);
    return list;
}

void evexec__mailbox_read(struct evexec__mailbox *mb)
{
    read_wake(mb); /* in a run: every write was owed by an earlier take */
    clamp_read(mb);
}

struct evexec__node *evexec__mailbox_take(struct evexec__mailbox *mb)
{
    return take_owed(mb, 1, 0);
}

struct evexec__node *evexec__mailbox_begin(struct evexec__mailbox *mb, int woken)
{
    return take_owed(mb, woken, MAILBOX_RUNNING);
}

struct evexec__node *evexec__mailbox_more(struct evexec__mailbox *mb)
{
    if (atomic_load_explicit(&mb->head, memory_order_relaxed) == MAILBOX_RUNNING)
        return NULL;
    return list_of(atomic_exchange_explicit(&mb->head, MAILBOX_RUNNING, memory_order_acquire));
}

struct evexec__node *evexec__mailbox_end(struct evexec__mailbox *mb)
{
    uintptr_t running = MAILBOX_RUNNING;
    if (atomic_compare_exchange_strong_explicit(&mb->head, &running, 0, memory_order_relaxed,
                                                memory_order_relaxed))
        return NULL;
    return list_of(atomic_exchange_explicit(&mb->head, 0, memory_order_acquire));
}

/* --- timers -------------------------------------------------------------- */

void evexec__timer_arm(struct event *ev, const struct timeval *tv)
{
    if (event_add(ev, tv) < 0)
        event_active(ev, EV_TIMEOUT, 1);
}

void evexec__soon(struct event *ev)
{
    static const struct timeval zero = {0, 0};
    evexec__timer_arm(ev, &zero);
}
