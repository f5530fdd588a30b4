/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: one table of the error codes evexec returns, so that the names,
 * the sentences and the documentation cannot drift apart; the version; and
 * the one reader of size-versioned structs (options in, stats out), so
 * every part treats an older or newer caller alike.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "error-internal.h"

#define EVEXEC_ERRORS(X)                                                               \
    X(0, "OK", "success")                                                              \
    X(EINVAL, "EINVAL", "invalid argument: a NULL handle or an option out of range")   \
    X(E2BIG, "E2BIG", "options struct is newer than this library and sets options it " \
                      "does not know")                                                 \
    X(ENOMEM, "ENOMEM", "out of memory")                                               \
    X(EAGAIN, "EAGAIN", "the pool's queue is full or no worker thread could be "       \
                        "started; try again later")                                    \
    X(ESHUTDOWN, "ESHUTDOWN", "the pool has been shut down, the port freed or the "    \
                              "loop stopped")                                          \
    X(ECANCELED, "ECANCELED", "cancelled: the job before it ran, or the call or its "  \
                              "future")                                                \
    X(EBUSY, "EBUSY", "the job is already running or has run; its stop flag is set")   \
    X(EALREADY, "EALREADY", "already done: the job already cancelled, the future "     \
                            "already complete, or the pool or loop already stopped")   \
    X(ENOENT, "ENOENT", "no such job: the id is unknown to this port or its callback " \
                        "has already run")                                             \
    X(EPERM, "EPERM", "called from a thread other than the port's or loop's thread")   \
    X(EDEADLK, "EDEADLK", "would deadlock: called from the thread that must do the "   \
                          "work (the pool's own worker, or the loop's own thread)")    \
    X(ETIMEDOUT, "ETIMEDOUT", "timed out: the job's deadline passed, or no room in the " \
                              "queue came in time")                                    \
    X(ENOTSUP, "ENOTSUP", "not enabled for this object (a pool without histograms)")     \
    X(EINPROGRESS, "EINPROGRESS", "in progress: the future is not complete yet, or "   \
                                  "the loop's stop has begun")                         \
    X(EMFILE, "EMFILE", "too many open files in this process (wake fd)")               \
    X(ENFILE, "ENFILE", "too many open files in the system (wake fd)")                \
    /* Process pools' outcomes (include/evexec.h, "Process pools"). */                \
    X(EREMOTEIO, "EREMOTEIO", "the work function in the worker process reported an "  \
                              "error")                                                 \
    X(EOWNERDEAD, "EOWNERDEAD", "the worker process crashed (killed by a signal)")     \
    X(ECHILD, "ECHILD", "the worker process exited during the job")                    \
    X(ETIME, "ETIME", "the job used up its CPU-time limit")                            \
    X(ENOTRECOVERABLE, "ENOTRECOVERABLE", "no worker process could be started (its "   \
                                          "init hook failed), or the pool's fork "     \
                                          "server is gone (make a new pool)")          \
    X(EMSGSIZE, "EMSGSIZE", "the input is larger than the pool's max_payload")         \
    X(EFAULT, "EFAULT", "the work function is not in the fork server's image (loaded " \
                        "after the pool was made)")

/*
 * Every other errno: futures and promises carry whatever a call failed with
 * (-ECONNREFUSED, -EIO...). Both answers must be static strings, safe from
 * any thread: glibc 2.32 has strerrordesc_np() and strerrorname_np(), which
 * return its constant tables (strerror() may format into a buffer that the
 * next call rewrites). Elsewhere, the errnos POSIX names, from a table of
 * our own.
 */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32)) && \
    !defined(EVEXEC_NO_ERRNO_TABLES) /* (to test the fallback) */
#define HAVE_ERRNO_TABLES 1
#endif

#ifndef HAVE_ERRNO_TABLES
#define POSIX_ERRNOS(X)                                                                       \
    X(EPERM, "Operation not permitted") X(ENOENT, "No such file or directory")               \
    X(ESRCH, "No such process") X(EINTR, "Interrupted system call") X(EIO, "I/O error")      \
    X(ENXIO, "No such device or address") X(E2BIG, "Argument list too long")                 \
    X(ENOEXEC, "Exec format error") X(EBADF, "Bad file descriptor")                          \
    X(ECHILD, "No child processes") X(EAGAIN, "Resource temporarily unavailable")            \
    X(ENOMEM, "Cannot allocate memory") X(EACCES, "Permission denied")                       \
    X(EFAULT, "Bad address") X(EBUSY, "Device or resource busy") X(EEXIST, "File exists")    \
    X(EXDEV, "Invalid cross-device link") X(ENODEV, "No such device")                        \
    X(ENOTDIR, "Not a directory") X(EISDIR, "Is a directory") X(EINVAL, "Invalid argument")  \
    X(ENFILE, "Too many open files in system") X(EMFILE, "Too many open files")              \
    X(ENOTTY, "Inappropriate ioctl for device") X(ETXTBSY, "Text file busy")                 \
    X(EFBIG, "File too large") X(ENOSPC, "No space left on device")                          \
    X(ESPIPE, "Illegal seek") X(EROFS, "Read-only file system") X(EMLINK, "Too many links")  \
    X(EPIPE, "Broken pipe") X(EDOM, "Numerical argument out of domain")                      \
    X(ERANGE, "Numerical result out of range") X(EDEADLK, "Resource deadlock avoided")       \
    X(ENAMETOOLONG, "File name too long") X(ENOLCK, "No locks available")                    \
    X(ENOSYS, "Function not implemented") X(ENOTEMPTY, "Directory not empty")                \
    X(ELOOP, "Too many levels of symbolic links") X(ENOMSG, "No message of desired type")    \
    X(EIDRM, "Identifier removed") X(ENOLINK, "Link has been severed")                       \
    X(EPROTO, "Protocol error") X(EMULTIHOP, "Multihop attempted")                           \
    X(EBADMSG, "Bad message") X(EOVERFLOW, "Value too large for defined data type")          \
    X(EILSEQ, "Invalid or incomplete multibyte or wide character")                           \
    X(ENOTSOCK, "Socket operation on non-socket") X(EDESTADDRREQ, "Destination address required") \
    X(EMSGSIZE, "Message too long") X(EPROTOTYPE, "Protocol wrong type for socket")          \
    X(ENOPROTOOPT, "Protocol not available") X(EPROTONOSUPPORT, "Protocol not supported")    \
    X(ENOTSUP, "Operation not supported") X(EAFNOSUPPORT, "Address family not supported by protocol") \
    X(EADDRINUSE, "Address already in use") X(EADDRNOTAVAIL, "Cannot assign requested address") \
    X(ENETDOWN, "Network is down") X(ENETUNREACH, "Network is unreachable")                  \
    X(ENETRESET, "Network dropped connection on reset")                                      \
    X(ECONNABORTED, "Software caused connection abort")                                      \
    X(ECONNRESET, "Connection reset by peer") X(ENOBUFS, "No buffer space available")        \
    X(EISCONN, "Transport endpoint is already connected")                                    \
    X(ENOTCONN, "Transport endpoint is not connected") X(ETIMEDOUT, "Connection timed out")  \
    X(ECONNREFUSED, "Connection refused") X(EHOSTUNREACH, "No route to host")                \
    X(EALREADY, "Operation already in progress") X(EINPROGRESS, "Operation now in progress") \
    X(ESTALE, "Stale file handle") X(EDQUOT, "Disk quota exceeded")                          \
    X(ECANCELED, "Operation canceled") X(EOWNERDEAD, "Owner died")                           \
    X(ENOTRECOVERABLE, "State not recoverable")
#endif

static const char *errno_text(int err)
{
#ifdef HAVE_ERRNO_TABLES
    return strerrordesc_np(err); /* NULL if not an errno */
#else
#define X(code, text) if (err == (code)) return text;
    POSIX_ERRNOS(X)
#undef X
    return NULL;
#endif
}

static const char *errno_name(int err)
{
#ifdef HAVE_ERRNO_TABLES
    return strerrorname_np(err);
#else
#define X(code, text) if (err == (code)) return #code;
    POSIX_ERRNOS(X)
#undef X
    return NULL;
#endif
}

const char *evexec_strerror(int err)
{
    const char *text;
    if (err < 0)
        err = err == INT_MIN ? INT_MAX : -err; /* -INT_MIN overflows */
#define X(code, name, text) \
    if (err == (code))      \
        return text;
    EVEXEC_ERRORS(X)
#undef X
    return (text = errno_text(err)) != NULL ? text : "unknown error";
}

const char *evexec_errname(int err)
{
    const char *name;
    if (err < 0)
        err = err == INT_MIN ? INT_MAX : -err; /* -INT_MIN overflows */
#define X(code, name, text) \
    if (err == (code))      \
        return name;
    EVEXEC_ERRORS(X)
#undef X
    return (name = errno_name(err)) != NULL ? name : "UNKNOWN";
}

unsigned evexec_version(void)
{
    return EVEXEC_VERSION_NUMBER;
}

#define STR_(x) #x
#define STR(x) STR_(x)
const char *evexec_version_string(void)
{
    return STR(EVEXEC_VERSION_MAJOR) "." STR(EVEXEC_VERSION_MINOR) "." STR(EVEXEC_VERSION_PATCH);
}

/* -EINVAL if smaller than min_size or absurdly large; -E2BIG if larger than
 * ours_size with non-zero bytes beyond; else 0. */
static int check_size(const void *in, size_t size, size_t min_size, size_t ours_size)
{
    if (size < min_size || size > 4096) /* 4096: surely not a struct of ours */
        return -EINVAL;
    if (size > ours_size) {
        /* A newer caller: fine as long as it leaves the options we do not
         * know at zero, which means "default" for every option. */
        const unsigned char *extra = (const unsigned char *)in + ours_size;
        for (size_t i = 0; i < size - ours_size; i++)
            if (extra[i])
                return -E2BIG;
    }
    return 0;
}

int evexec__opts_read(void *ours, size_t ours_size, const void *in, size_t min_size)
{
    if (!in)
        return 0;
    size_t size = *(const size_t *)in;
    int rc = check_size(in, size, min_size, ours_size);
    if (rc < 0)
        return rc;
    memcpy(ours, in, size < ours_size ? size : ours_size);
    return 0;
}

int evexec__stats_write(void *out, const void *ours, size_t ours_size, size_t min_size)
{
    size_t size = *(const size_t *)out;
    if (size < min_size || size > 4096)
        return -EINVAL;
    memcpy(out, ours, size < ours_size ? size : ours_size);
    *(size_t *)out = size; /* the caller's size stays */
    return 0;
}
