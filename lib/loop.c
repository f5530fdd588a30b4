/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: a loop is an event_base run by evexec in a thread of its own;
 * other threads post calls into it (loop-call.c takes and runs them; the
 * futures are future.c's). This file starts the thread, stops it and ends
 * it.
 *
 * Stopping (on the loop thread): run the stop hooks of in-progress calls;
 * with CANCEL, complete every in-progress call as -ECANCELED and run its
 * cancel hook, make the loop's port refuse new jobs and cancel its queued
 * ones, and cancel queued calls as they are taken. The loop finishes when
 *   - no posted node is still on its way (gate count 0) and every call
 *     taken has been started or cancelled (backlog empty);
 *   - DRAIN: every promise has been settled (nlive 0);
 *   - the loop's port has delivered every job and is quiet (no worker
 *     still has to write its wake fd);
 *   - no stop request is in flight, and every wake-fd write owed to the
 *     loop's mailbox has been read (evexec__mailbox_quiet).
 * From then on the port refuses jobs, so once fini has run, the port and
 * the base go at once, and any promise still unsettled (CANCEL does not
 * wait for them) is released: no code of the loop can run any more. The
 * thread then ends; evexec_loop_free() joins it.
 *
 * Locks: loop->mu guards the start/stop handshake only (phase, stop mode,
 * the stop node, the threads waiting for the end). It is never held while
 * user code runs, and no other lock is taken while holding it. Every stop
 * from another thread waits under it for the thread's end, counted in
 * `waiting`, and evexec_loop_free() waits for that count to drop to 0
 * before it destroys the loop: a stopper woken by the end may still be
 * re-taking mu.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "error-internal.h"
#include "loop-internal.h"
#include "port-internal.h"
#include "thread-internal.h"

#define MIN_LOOP_OPTS_SIZE (offsetof(struct evexec_loop_opts, max_batch) + sizeof(unsigned))

static _Thread_local struct evexec_loop *current_loop;

struct evexec_loop *evexec__loop_current(void)
{
    return current_loop;
}

/* Acts on the stop mode asked for, if stronger than the one applied. */
void evexec__loop_apply_stop(struct evexec_loop *loop)
{
    pthread_mutex_lock(&loop->mu);
    int mode = loop->stop_mode;
    loop->stop_posted = 0;
    pthread_mutex_unlock(&loop->mu);
    if (mode <= loop->applied)
        return;
    int first = loop->applied < 0;
    loop->applied = mode;
    /* A hook that settles its promise checks whether the loop may finish:
     * not before every step below has run. */
    loop->applying = 1;
    if (first)
        evexec__loop_calls_stopping(loop);
    if (mode == EVEXEC_CANCEL) {
        evexec__loop_calls_cancel(loop);
        if (loop->port) {
            /* A done callback that resubmits must not keep the loop alive. */
            evexec__port_refuse(loop->port);
            evexec__port_cancel_all(loop->port);
        }
    }
    loop->applying = 0;
}

void evexec__loop_finish_check(struct evexec_loop *loop)
{
    struct evexec_port *port = loop->port;

    if (loop->applied < 0 || loop->finished || loop->applying)
        return;
    if (atomic_load_explicit(&loop->gate, memory_order_acquire) >> 1)
        return; /* calls or cancel notices still on their way */
    if (loop->backlog || (loop->applied == EVEXEC_DRAIN && loop->nlive))
        return;
    if (port && evexec__port_busy(port))
        return; /* the port's idle hook checks again */
    pthread_mutex_lock(&loop->mu);
    int posted = loop->stop_posted;
    if (!posted)
        loop->phase = LOOP_FINISHING; /* no stop request after this */
    pthread_mutex_unlock(&loop->mu);
    if (posted)
        return; /* an escalation is in the mailbox: take it first */
    if (!evexec__mailbox_quiet(&loop->mb))
        return; /* a poster still has to write the wake fd: wait for it */
    if (port && !evexec__port_seal(port))
        return; /* another thread's job came in meanwhile: deliver it first */
    loop->finished = 1;
    if (port)
        evexec__port_refuse(port); /* fini starts nothing that outlives it */
    event_base_loopbreak(loop->base);
}

static void on_port_idle(void *arg)
{
    evexec__loop_finish_check(arg);
}

/* --- the thread ---------------------------------------------------------- */

/* With loop->mu held: asks for a stop in mode how. 1 if that is more than
 * was asked so far and the thread has not ended. Once the loop is
 * finishing, everything is complete and the port refuses jobs: there is
 * nothing left for a stronger mode to do, and no request is posted. */
static int request_stop_locked(struct evexec_loop *loop, int how)
{
    if (loop->phase == LOOP_EXITED || loop->stop_mode >= how)
        return 0;
    loop->stop_mode = how;
    atomic_fetch_or_explicit(&loop->gate, 1, memory_order_acq_rel);
    if (loop->phase < LOOP_FINISHING && !loop->stop_posted) {
        loop->stop_posted = 1;
        evexec__mailbox_post(&loop->mb, &loop->stop_node);
    }
    return 1;
}

static void run(struct evexec_loop *loop)
{
    while (!loop->finished) {
        if (event_base_loop(loop->base, EVLOOP_NO_EXIT_ON_EMPTY) < 0) {
            /* The backend failed: nothing sensible to do but retry without
             * burning the CPU. */
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    }
}

/* On the loop thread, once finished (or when start fails). */
static void teardown(struct evexec_loop *loop, int run_fini)
{
    if (run_fini && loop->fini)
        loop->fini(loop, loop->arg);
    if (loop->port) {
        /* Idle, quiet and refusing since the loop finished: released at
         * once. */
        evexec__port_set_idle_hook(loop->port, NULL, NULL);
        evexec_port_free(loop->port);
        loop->port = NULL;
    }
    evexec__mailbox_close(&loop->mb);
    if (loop->resume_ev)
        event_free(loop->resume_ev);
    loop->resume_ev = NULL;
    /* loop->base stays as it was: evexec_loop_base() reads it unlocked. */
    if (loop->base)
        event_base_free(loop->base);
    /* No code of the loop can run any more: release the promises it never
     * settled (their futures complete as -ECANCELED if they had not). */
    evexec__loop_calls_release(loop);
}

/* Moves the phase on and, the first time, reports how the start went:
 * rc is final then (a failed start runs the loop before it reports, and
 * the phase alone would say "finishing" too early). */
static void set_phase(struct evexec_loop *loop, int phase, int rc)
{
    pthread_mutex_lock(&loop->mu);
    if (loop->phase < phase)
        loop->phase = phase;
    if (!loop->start_reported) {
        loop->start_rc = rc;
        loop->start_reported = 1;
    }
    pthread_cond_broadcast(&loop->cv);
    pthread_mutex_unlock(&loop->mu);
}

/*
 * libevent treats a failure to make its signal pipe inside event_base_new()
 * as fatal: it calls exit(1) (event_sock_err()), which would end the
 * program that asked for a loop. The base needs 3 fds (the epoll fd, which
 * it can do without, and that pipe) and the loop a 4th (its wake fd): make
 * sure 4 can be had first, and answer -EMFILE (-ENFILE) if not.
 *
 * libevent offers no sound way out of the exit: event_set_fatal_callback()
 * is process-wide (it would replace the program's own, with no way to
 * restore it) and its callback must not return, so leaving it means a
 * longjmp out of a half-built base, leaking it and any lock libevent
 * holds. The check leaves one window: another thread that takes the last
 * fds between it and event_base_new() still makes libevent exit.
 */
static int fds_available(void)
{
    int fd[4], n, rc = 0;

    /* /dev/null: no pipe or eventfd of its own to make, close-on-exec at
     * once. If it cannot be opened for another reason (a chroot without
     * it), the check is skipped. */
    for (n = 0; n < 4; n++)
        if ((fd[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
            if (errno == EMFILE || errno == ENFILE)
                rc = -errno;
            break;
        }
    while (n > 0)
        close(fd[--n]);
    return rc;
}

static void *loop_main(void *arg)
{
    struct evexec_loop *loop = arg;
    int rc;

    current_loop = loop;
    evexec__thread_name(loop->name);
    if ((rc = fds_available()) < 0)
        goto fail;
    rc = -ENOMEM;
    if (!(loop->base = event_base_new()))
        goto fail;
    if (!(loop->resume_ev = evtimer_new(loop->base, evexec__loop_on_resume, loop)))
        goto fail;
    if ((rc = evexec__mailbox_open(&loop->mb, loop->base, evexec__loop_on_mail, loop, -1)) < 0)
        goto fail;
    if (loop->init && (rc = loop->init(loop, loop->arg)) != 0) {
        if (rc > 0)
            rc = -rc;
        /* Cancel what init posted or submitted, then go, without fini. */
        pthread_mutex_lock(&loop->mu);
        request_stop_locked(loop, EVEXEC_CANCEL);
        pthread_mutex_unlock(&loop->mu);
        run(loop);
        goto fail;
    }
    set_phase(loop, LOOP_RUNNING, 0);
    run(loop);
    teardown(loop, 1);
    set_phase(loop, LOOP_EXITED, 0);
    return NULL;

fail:
    teardown(loop, 0);
    set_phase(loop, LOOP_EXITED, rc);
    return NULL;
}

/* --- public -------------------------------------------------------------- */

static void loop_destroy(struct evexec_loop *loop)
{
    pthread_cond_destroy(&loop->cv);
    pthread_mutex_destroy(&loop->mu);
    free(loop);
}

int evexec_loop_start(evexec_loop **out, const struct evexec_loop_opts *opts)
{
    struct evexec_loop_opts o = EVEXEC_LOOP_OPTS_INIT;
    struct evexec_loop *loop;
    int rc;

    if (!out)
        return -EINVAL;
    if ((rc = evexec__opts_read(&o, sizeof o, opts, MIN_LOOP_OPTS_SIZE)) < 0)
        return rc;
    if (!o.name || !o.name[0])
        o.name = "evexec-loop";
    if (o.max_batch > EVEXEC__MAX_MAX_BATCH || strnlen(o.name, 64) >= 64)
        return -EINVAL;

    if (posix_memalign((void **)&loop, EVEXEC_CACHELINE, sizeof *loop))
        return -ENOMEM;
    memset(loop, 0, sizeof *loop);
    evexec__mailbox_init(&loop->mb);
    atomic_init(&loop->gate, 0);
    atomic_init(&loop->context, NULL);
    loop->stop_mode = loop->applied = -1;
    ring_init(&loop->live);
    loop->init = o.init;
    loop->fini = o.fini;
    loop->arg = o.arg;
    loop->max_batch = o.max_batch ? o.max_batch : EVEXEC__DEFAULT_MAX_BATCH;
    strcpy(loop->name, o.name);
    if ((rc = -pthread_mutex_init(&loop->mu, NULL)) < 0) {
        free(loop);
        return rc;
    }
    if ((rc = -pthread_cond_init(&loop->cv, NULL)) < 0) {
        pthread_mutex_destroy(&loop->mu);
        free(loop);
        return rc;
    }
    /* Like workers, the thread starts with every signal blocked. */
    if ((rc = evexec__thread_create(&loop->thread, NULL, loop_main, loop)) < 0) {
        loop_destroy(loop);
        return rc;
    }
    pthread_mutex_lock(&loop->mu);
    while (!loop->start_reported)
        pthread_cond_wait(&loop->cv, &loop->mu);
    rc = loop->start_rc;
    pthread_mutex_unlock(&loop->mu);
    if (rc < 0) {
        pthread_join(loop->thread, NULL);
        loop_destroy(loop);
        return rc;
    }
    *out = loop;
    return 0;
}

int evexec_loop_stop(evexec_loop *loop, int how)
{
    if (!loop || (how != EVEXEC_DRAIN && how != EVEXEC_CANCEL))
        return -EINVAL;
    int here = current_loop == loop;
    pthread_mutex_lock(&loop->mu);
    int asked = request_stop_locked(loop, how);
    if (!here) {
        loop->waiting++;
        while (loop->phase != LOOP_EXITED)
            pthread_cond_wait(&loop->cv, &loop->mu);
        if (--loop->waiting == 0)
            pthread_cond_broadcast(&loop->cv); /* a free may wait for us */
    }
    pthread_mutex_unlock(&loop->mu);
    if (here)
        return asked ? -EINPROGRESS : -EALREADY;
    return asked ? 0 : -EALREADY;
}

int evexec_loop_free(evexec_loop *loop)
{
    if (!loop)
        return 0;
    if (current_loop == loop)
        return -EDEADLK;
    pthread_mutex_lock(&loop->mu);
    request_stop_locked(loop, EVEXEC_DRAIN);
    /* Stoppers woken by the end still have to re-take mu: wait for them. */
    while (loop->phase != LOOP_EXITED || loop->waiting)
        pthread_cond_wait(&loop->cv, &loop->mu);
    pthread_mutex_unlock(&loop->mu);
    pthread_join(loop->thread, NULL);
    loop_destroy(loop);
    return 0;
}

struct event_base *evexec_loop_base(evexec_loop *loop)
{
    return loop ? loop->base : NULL;
}

int evexec_loop_set_context(evexec_loop *loop, void *context)
{
    if (!loop)
        return -EINVAL;
    if (current_loop != loop)
        return -EPERM;
    atomic_store_explicit(&loop->context, context, memory_order_release);
    return 0;
}

void *evexec_loop_context(evexec_loop *loop)
{
    return loop ? atomic_load_explicit(&loop->context, memory_order_acquire) : NULL;
}

int evexec_loop_port(evexec_loop *loop, evexec_port **out)
{
    int rc;

    if (!loop || !out)
        return -EINVAL;
    if (current_loop != loop)
        return -EPERM;
    if (!loop->port) {
        if ((rc = evexec_port_new(&loop->port, loop->base, NULL)) < 0)
            return rc;
        evexec__port_set_idle_hook(loop->port, on_port_idle, loop);
        /* Made during a CANCEL stop, or by fini: refuses like the old one. */
        if (loop->applied == EVEXEC_CANCEL || loop->finished)
            evexec__port_refuse(loop->port);
    }
    *out = loop->port;
    return 0;
}

int evexec_loop_stopping(evexec_loop *loop)
{
    return loop ? (int)(atomic_load_explicit(&loop->gate, memory_order_relaxed) & 1) : 0;
}
