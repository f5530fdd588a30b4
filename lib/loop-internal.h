/* SPDX-License-Identifier: MIT */
/*
 * The loop (loop.c, loop-call.c): an event_base run by evexec in a thread
 * of its own, and the calls other threads post into it. One part in two
 * files: loop.c starts, stops and ends the thread; loop-call.c takes,
 * runs and cancels calls and keeps their promises. Other parts see none of
 * this. Never installed.
 */
#ifndef EVEXEC_LOOP_INTERNAL_H
#define EVEXEC_LOOP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "future-internal.h"
#include "mailbox-internal.h"

enum loop_phase {
    LOOP_STARTING = 0, /* init runs */
    LOOP_RUNNING,
    LOOP_FINISHING,    /* stop complete: no stop request may be posted */
    LOOP_EXITED        /* the thread is about to return */
};

struct evexec_loop {
    struct evexec__mailbox mb;     /* calls, cancel notices, stop requests */
    /* Written by every poster: a line of its own. Bit 0: stopping; the
     * rest counts nodes posted and not yet taken. */
    _Alignas(EVEXEC_CACHELINE) _Atomic uint64_t gate;

    _Alignas(EVEXEC_CACHELINE) struct event_base *base;
    struct event *resume_ev;       /* zero timer: go on with a capped batch */
    struct evexec_port *port;      /* created by evexec_loop_port() */
    _Atomic(void *) context;
    pthread_t thread;

    /* The start/stop handshake, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int phase;                     /* enum loop_phase */
    int start_reported;            /* start_rc is final: start may return */
    int start_rc;
    int stop_mode;                 /* -1, EVEXEC_DRAIN, EVEXEC_CANCEL asked */
    int stop_posted;               /* stop_node is in the mailbox */
    unsigned waiting;              /* threads in evexec_loop_stop() waiting
                                      for the end */
    struct evexec__node stop_node;

    /* Loop thread only. */
    int applied;                   /* stop mode acted on, -1 for none */
    int finished;                  /* the event loop is to end */
    int applying;                  /* in apply_stop(): do not finish yet */
    struct evexec__ring live;      /* calls whose promise is unsettled */
    size_t nlive;
    struct evexec__node *backlog, *backlog_tail; /* taken, not started */

    /* Settings. */
    evexec_loop_init_fn init;
    evexec_loop_fini_fn fini;
    void *arg;
    unsigned max_batch;
    char name[64];
};

/* A call's future: the common head, then what only the loop touches. */
struct loop_call {
    struct evexec_future future;   /* first: the evexec_promise * too */
    struct evexec_loop *loop;
    evexec_call_fn fn;
    void *arg;
    struct evexec__ring ring;      /* in loop->live while the promise is */
    evexec_promise_fn on_cancel, on_stop;
    void *cancel_arg, *stop_arg;
    uint8_t taken;                 /* taken from the mailbox once */
    uint8_t live;                  /* promise handed out, not settled */
};

/* loop.c */
/* The loop whose thread the caller is, or NULL. */
struct evexec_loop *evexec__loop_current(void);
/* Loop thread: ends the loop if its stop is complete. */
void evexec__loop_finish_check(struct evexec_loop *loop);
/* Loop thread: acts on the stop mode asked for, if stronger than the one
 * applied (a stop request was taken from the mailbox). */
void evexec__loop_apply_stop(struct evexec_loop *loop);

/* loop-call.c */
/* The mailbox's and the resume timer's events. */
void evexec__loop_on_mail(int fd, short what, void *arg);
void evexec__loop_on_resume(int fd, short what, void *arg);
/* Loop thread: runs the stop hook of every live promise. */
void evexec__loop_calls_stopping(struct evexec_loop *loop);
/* Loop thread: completes every live call as -ECANCELED and runs its
 * cancel hook. */
void evexec__loop_calls_cancel(struct evexec_loop *loop);
/* Loop thread, at the end: releases the promises never settled (their
 * futures complete as -ECANCELED if they had not). */
void evexec__loop_calls_release(struct evexec_loop *loop);

#endif /* EVEXEC_LOOP_INTERNAL_H */
