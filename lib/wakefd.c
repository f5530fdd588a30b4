/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: the wake fd is how a worker tells a port's loop "the completion
 * list is no longer empty". It is an eventfd where there is one (one fd, an
 * 8-byte counter) and a non-blocking pipe elsewhere or with
 * ./configure --disable-eventfd. Both ends are non-blocking and
 * close-on-exec. A write that would block means the fd is already readable,
 * which is all a signal needs, so EAGAIN is not an error; EINTR is retried.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#ifdef EVEXEC_USE_EVENTFD
#include <sys/eventfd.h>
#endif

#include "evexec-internal.h"

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

int evexec__wakefd_open(struct evexec__wakefd *w)
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

void evexec__wakefd_close(struct evexec__wakefd *w)
{
    if (w->wfd != w->rfd && w->wfd >= 0)
        close(w->wfd);
    if (w->rfd >= 0)
        close(w->rfd);
    w->rfd = w->wfd = -1;
}

void evexec__wakefd_signal(const struct evexec__wakefd *w)
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

uint64_t evexec__wakefd_drain(const struct evexec__wakefd *w)
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
