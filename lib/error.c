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
                                          "init hook failed)")                         \
    X(EMSGSIZE, "EMSGSIZE", "the input is larger than the pool's max_payload")         \
    X(EFAULT, "EFAULT", "the work function is not in the fork server's image (loaded " \
                        "after the pool was made)")

const char *evexec_strerror(int err)
{
    if (err < 0)
        err = err == INT_MIN ? INT_MAX : -err; /* -INT_MIN overflows */
#define X(code, name, text) \
    if (err == (code))      \
        return text;
    EVEXEC_ERRORS(X)
#undef X
    return "unknown error";
}

const char *evexec_errname(int err)
{
    if (err < 0)
        err = err == INT_MIN ? INT_MAX : -err; /* -INT_MIN overflows */
#define X(code, name, text) \
    if (err == (code))      \
        return name;
    EVEXEC_ERRORS(X)
#undef X
    return "UNKNOWN";
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
