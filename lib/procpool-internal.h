/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: the private parts of process pools, shared by the fork server
 * and its workers (procpool-server.c), the supervisor (procpool.c) and the glue
 * with ports (procpool-port.c). Never installed.
 *
 * Processes: the daemon's supervisor thread forks one fork server when the
 * pool is made; the server forks every worker. Channels are AF_UNIX
 * SOCK_SEQPACKET socketpairs, so a frame is one packet: a struct
 * proc_frame, then up to PROC_INLINE_MAX bytes of payload, or none and one
 * sealed memfd in SCM_RIGHTS (FRAME_FD) for bigger payloads. A receiver
 * rejects a truncated packet, a payload whose length disagrees with the
 * header, an unexpected fd or a memfd not sealed as below: from a worker,
 * that is the worker's crash.
 *
 * Big payloads: an input goes in one of the daemon's kept input buffers
 * (evexec__proc_inbuf_new(): reused across jobs, sealed against shrinking
 * and against any new writable mapping, so a worker maps it read-only and
 * cannot truncate it under the daemon; at least len bytes). An output goes
 * in a memfd the worker made for that job alone and sealed against writing
 * and resizing before sending it (exactly len bytes): nothing can change
 * the bytes the done callback reads. A worker makes its next output memfd
 * while it waits for a job (struct proc_spare; not with mem_limit or
 * recycle_rss, which it would distort). An input buffer serves jobs of any
 * worker in turn: a worker that keeps its read-only mapping past its job
 * could read later inputs placed in it. Process pools isolate faults, not
 * secrets (workers run as the daemon's user); fresh memfds per input
 * would, at the cost measured in bench/README.md.
 *
 * In-place inputs (evexec_proc_input_new(), evexec_procpool_submit_input(),
 * evexec_procpool_call_input()): the submit's copy is half the cost of a
 * big echo (bench/README.md, "The ceiling"), so the caller may write the
 * input where the worker will read it. evexec_proc_input_new() makes the
 * job's record at once (a struct proc_rec, which is the public handle):
 * above PROC_INLINE_MAX with an input buffer taken from the kept ones as a
 * copying submit takes it, else with rec->in on the heap, which the JOB
 * frame carries inline as for a copying submit. The record holds one
 * reference on its pool (in_pool) until it is submitted or freed, so an
 * input may outlive evexec_procpool_free(). The submit fills in the rest
 * of the record and queues it. Before anything can reach a worker it
 * mprotect()s the daemon's mapping of the buffer read-only (in_ro): the
 * only writable mapping of the memfd (FUTURE_WRITE refuses every later
 * one) then writes nothing, so the bytes a worker reads cannot change
 * while it runs; a stray write by the caller faults instead. That mapping
 * predates the seal, so the kernel lets it be made writable again: when a
 * later input takes the kept buffer (evexec_proc_input_new() or a copying
 * submit), or when the submit fails and the caller keeps the input. (An
 * munmap() instead would make the buffer unusable for the daemon: no new
 * writable mapping of it can ever be made; F_SEAL_WRITE likewise, for
 * good: seals are never removed.)
 *
 *   daemon -> server: SPAWN (seq: slot, code: number; fd: the worker's end
 *                     of its channel), REAP (code: pid)
 *   server -> daemon: SPAWNED (seq: slot, code: pid or -errno),
 *                     EXITED (code: pid, aux: wait status)
 *   daemon -> worker: JOB (seq, payload; code: 0, or its claim: an id
 *                     << 2 | 1 + the index of its claim word, below), EXIT
 *   worker -> daemon: READY (code: pid; fd: its claim words, or none),
 *                     INITFAIL (code: init's return),
 *                     RESULT (seq, code: work's return, payload),
 *                     MEMLIMIT (seq: the job hit the memory limit; sent
 *                     before a RESULT or a crash)
 *
 * Claim words (jobs sent ahead): a worker makes a small memfd of
 * PROC_CLAIMS words, sealed against shrinking, maps it shared and sends it
 * with READY; the daemon maps it too. A JOB frame that names a word is a
 * job sent while the worker may still be busy with an earlier one, so that
 * it finds its next job in its channel instead of waiting a round trip for
 * it. Such a job is not the worker's until it claims it: the daemon gives
 * each such send an id of its own and sets the word to CLAIM(id,
 * CLAIM_SENT) before the send; then exactly one compare-and-swap from that
 * value wins: the worker's, to CLAIM_STARTED, just before it runs the job;
 * or the daemon's, to CLAIM_DROPPED, when the job is cancelled, passes its
 * deadline, is taken over by an idle worker or by a job of a higher
 * priority, or goes back to the queue because its worker died. A worker
 * that loses skips the frame and sends nothing for it. The words carry
 * the send's id, not the job's seq, so neither a word reused for a later
 * send nor the same job sent again (taken back, then sent ahead once
 * more) lets a skipped frame's claim succeed. A worker can only lie about
 * its own jobs, which is the daemon's concern no more than its crashing.
 *
 * The server reaps nothing on its own: it reports each worker's exit with
 * waitid(WNOWAIT), leaving the zombie, and reaps only on REAP. So until the
 * daemon has seen EXITED and sent REAP, the worker's pid (and the process
 * group it leads) cannot be reused, and the daemon may kill(-pid) safely.
 */
#ifndef EVEXEC_PROC_INTERNAL_H
#define EVEXEC_PROC_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "evexec.h"

#define PROC_INLINE_MAX ((size_t)64 * 1024)
#define PROC_MAX_PROCS 256u

enum proc_frame_type {
    F_SPAWN = 1,
    F_REAP,
    F_SPAWNED,
    F_EXITED,
    F_JOB,
    F_EXIT,
    F_READY,
    F_INITFAIL,
    F_RESULT,
    F_MEMLIMIT
};

#define FRAME_FD 0x1u  /* the payload is in the memfd that came with it */

struct proc_frame {
    uint32_t type;
    uint32_t flags;
    uint64_t seq;
    uint64_t len;                  /* payload bytes */
    int64_t code;
    int64_t aux;
};

/* What the fork server and its workers need: copied into the server's
 * image at the fork, never changed. */
struct proc_conf {
    evexec_proc_init_fn init;
    evexec_proc_fini_fn fini;
    void *hook_arg;
    uint64_t mem_limit;
    uint64_t max_payload;
    unsigned cpu_limit_s;
    unsigned nice;
    int no_spare;                  /* recycle_rss is set: a spare output
                                      memfd would count in the worker's RSS */
    char name[16];
};

/* Supervisor thread: forks the fork server, which runs until its channel
 * (chan, the server's end; closed in the caller on return) hangs up.
 * Returns the server's pid, or -errno. */
pid_t evexec__procserver_fork(const struct proc_conf *conf, int chan);

/* Sends a frame with len payload bytes (inline), or, with passfd >= 0, the
 * fd instead. 0 or -errno (-EAGAIN: a non-blocking socket is full). */
int evexec__proc_send(int fd, struct proc_frame *f, const void *data, size_t len, int passfd,
                      int nonblock);
/* Receives one frame into f and its inline payload into buf (cap bytes);
 * *passfd gets the fd that came with it, or -1. 1: a frame; 0: the peer
 * hung up; -EAGAIN: nothing (non-blocking socket); -EPROTO: malformed
 * (truncated, bad lengths, an fd where none belongs); other -errno. */
int evexec__proc_recv(int fd, struct proc_frame *f, void *buf, size_t cap, int *passfd,
                      int nonblock);
/* A sealed memfd holding len bytes from data (data NULL: the caller fills
 * through *map, then calls evexec__proc_memfd_seal()). -errno on error. */
int evexec__proc_memfd(size_t len, void **map);
int evexec__proc_memfd_seal(int fd, void *map, size_t len);

/* A spare: an unsealed memfd made and populated ahead of need (its pages
 * allocated, zeroed and mapped while nothing waits on it), kept by one
 * process, never shown to another until it is used and sealed. */
struct proc_spare {
    int fd;                        /* -1: none */
    void *map;
    size_t len;
};
/* Makes s a spare of len bytes unless it holds one at least as big. */
void evexec__proc_spare_make(struct proc_spare *s, size_t len);
/* Takes s's memfd for a payload of len bytes (trimmed to len), as
 * evexec__proc_memfd() would make it: the fd and *map, or -1 when s holds
 * none big enough (s is then left as it was). */
int evexec__proc_spare_take(struct proc_spare *s, size_t len, void **map);
void evexec__proc_spare_drop(struct proc_spare *s);
/* Maps a received memfd read-only after checking its seals and size.
 * exact (the daemon reading a worker's output): sealed against writing
 * (F_SEAL_WRITE: no writable mapping exists anywhere) and shrinking, and
 * len bytes long. Otherwise (a worker reading the daemon's input buffer):
 * sealed against shrinking and against writes through any new mapping
 * (F_SEAL_WRITE or F_SEAL_FUTURE_WRITE), at least len bytes long.
 * 0 or -EPROTO / -errno. */
int evexec__proc_memfd_map(int fd, size_t len, int exact, const void **map);
/* An input buffer of the daemon: a memfd of cap bytes that the daemon
 * keeps mapped read-write (*map, populated) and reuses across jobs, sealed
 * F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL at once:
 * a worker given its fd can only map it read-only, and can neither
 * truncate it (SIGBUS in the daemon) nor punch holes in it. -errno on
 * error. */
int evexec__proc_inbuf_new(size_t cap, void **map);

/* Claim words: see "Claim words" above. */
#define PROC_CLAIMS 3u               /* its job and two sent ahead */
#define PROC_CLAIMS_BYTES ((size_t)PROC_CLAIMS * sizeof(uint64_t))
enum { CLAIM_SENT = 0, CLAIM_STARTED = 1, CLAIM_DROPPED = 2 };
#define CLAIM(id, st) ((uint64_t)(id) << 2 | (uint64_t)(st))
/* Worker: makes its claim words, mapped shared at *map; the fd (to send
 * with READY, then close) or -errno. */
int evexec__proc_claims_new(_Atomic uint64_t **map);
/* Daemon: maps a worker's claim words after checking that the memfd can
 * neither shrink nor grow and holds them all. 0 or -EPROTO / -errno. */
int evexec__proc_claims_map(int fd, _Atomic uint64_t **map);
void evexec__proc_claims_unmap(_Atomic uint64_t *map);

/* Reads a field of /proc/<pid>/statm (0: size, 1: resident) in bytes; pid
 * 0: self. 0 on error. */
uint64_t evexec__proc_statm(pid_t pid, int field);

/* --- the supervisor's records (procpool.c) and their way home
 *     (procpool-port.c) --------------------------------------------------- */

#ifndef EVEXEC_PROC_NO_POOL
struct evexec_job;
struct evexec_port;
struct proc_worker;

/*
 * One job of a process pool, from submit until its done callback has run:
 * made by evexec_procpool_submit() on the loop thread (with the input
 * inline after it), or by evexec_proc_input_new() on any thread before
 * its submit (see "In-place inputs"); the arg of the port job that
 * carries it (whose done is the glue's trampoline), owned by the pool's
 * queue, then by a worker's slot in the supervisor, then by the port job
 * on its way home, and freed on the loop thread after the user's done
 * callback.
 */
struct proc_rec {
    struct proc_rec *next, *prev;  /* in a queue of the pool (under mu) */
    evexec_proc_work_fn work;
    evexec_proc_done_fn done;
    void *arg;
    struct evexec_job *job;        /* the port job carrying it home, or NULL
                                      for a future's (fut) */
    struct evexec_future *fut;     /* evexec_procpool_call()'s */
    void (*fcomplete)(struct proc_rec *rec); /* completes fut (set by
                                      future-procpool.c; supervisor) */
    _Atomic int fstop;             /* a future's cancel: kill it */
    int queued;                    /* in the pool's queue (under mu) */
    uint64_t seq;
    unsigned claim;                /* sent ahead: 1 + the index of its claim
                                      word; 0: not, or taken back */
    uint64_t claim_id;             /* that send's id */
    struct proc_worker *sent_to;   /* sent ahead to this worker and not yet
                                      its job, else NULL (under mu) */
    uint64_t deadline;             /* monotonic ns; 0: none (the supervisor
                                      kills on time even while the port's
                                      loop thread is busy) */
    unsigned cls;                  /* priority class, 0 (high)..2 */
    int in_fd;                     /* an input buffer (evexec__proc_inbuf_new())
                                      with the input, or -1 */
    void *in_map;                  /* its mapping, in_cap bytes */
    size_t in_cap;
    size_t in_len;
    int in_ro;                     /* in_map is read-only (mprotect()ed at an
                                      in-place submit) */
    struct evexec_procpool *in_pool; /* an unsubmitted in-place input's pool
                                      (one reference held), else NULL */
    int status;                    /* the outcome, once complete */
    _Atomic int timed_out;         /* its port deadline passed */
    struct evexec_proc_result res;
    void *out_heap;                /* an inline output's copy */
    void *out_map;                 /* a memfd output's mapping */
    size_t out_map_len;
    unsigned char in[];            /* an inline input */
};

struct evexec_procpool;

/* procpool.c, for the glue. */
/* Loop thread: a record for a submit, its input copied; NULL and *rc. */
struct proc_rec *evexec__procrec_new(struct evexec_procpool *pp, evexec_proc_work_fn work,
                                     const void *in, size_t in_len, evexec_proc_done_fn done,
                                     void *arg, int *rc);
/* Any thread: a record for an in-place input (evexec_proc_input_new()):
 * its bytes at *data (rec->in inline, or an input buffer's mapping),
 * holding one reference on pp. 0 or -errno. */
int evexec__procrec_new_input(struct evexec_procpool *pp, size_t len, struct proc_rec **out,
                              void **data);
/* An in-place input's record made ready for the queue: pp must be its
 * pool, work in the image; its input buffer made read-only. 0 or -errno
 * (nothing changed). */
int evexec__procrec_arm_input(struct evexec_procpool *pp, struct proc_rec *rec,
                              evexec_proc_work_fn work, evexec_proc_done_fn done, void *arg);
/* After a failed enqueue: the caller owns rec again, writable. */
void evexec__procrec_disarm_input(struct proc_rec *rec);
/* After a successful enqueue: the job owns rec; the input's reference on
 * its pool goes (the job holds its own). */
void evexec__procrec_input_submitted(struct evexec_procpool *pp, struct proc_rec *rec);
/* Frees an unsubmitted in-place input (its buffer kept by its pool). */
void evexec__procrec_free_input(struct proc_rec *rec);
/* The public handle of an in-place input is its record. */
static inline struct proc_rec *evexec__input_rec(evexec_proc_input *in)
{
    return (struct proc_rec *)(void *)in;
}
/* Frees a record and its buffers. Any thread. */
void evexec__procrec_free(struct proc_rec *rec);
/* The runner's enqueue: queues rec (rec->job set, QUEUED). 0, -EAGAIN,
 * -ESHUTDOWN or -ENOTRECOVERABLE (the fork server is gone). */
int evexec__procpool_enqueue(struct evexec_procpool *pp, struct proc_rec *rec);
/* The runner's cancel, for a job seen QUEUED: 0 (taken off the queue,
 * CANCELLED; the caller completes it), -EBUSY or -EALREADY. */
int evexec__procpool_cancel(struct evexec_procpool *pp, struct proc_rec *rec, int deadline);
/* Any thread: a running job's stop flag was set: the supervisor looks. */
void evexec__procpool_stop(struct evexec_procpool *pp);
/* Drops n references (delivered jobs, or the handle). */
void evexec__procpool_release(struct evexec_procpool *pp, unsigned long n);
/* A job's port deadline passed (for the counters). */
void evexec__procpool_count_timeout(struct evexec_procpool *pp, struct proc_rec *rec);

/* procpool-port.c: the only file that knows ports. */
/* Supervisor: 1 if evexec_cancel(), a deadline or evexec_port_free() asked
 * the job to stop. */
int evexec__procport_stop_requested(const struct proc_rec *rec);
/* Supervisor: hands a complete rec (status and res set) to its port. */
void evexec__procport_complete(struct proc_rec *rec);
/* The runner ops of every process pool. */
extern const struct evexec__runner_ops evexec__procpool_ops;
#endif

#endif /* EVEXEC_PROC_INTERNAL_H */
