/* SPDX-License-Identifier: MIT */
/*
 * The process pools' framing (lib/procpool-server.c), built into this
 * program: what a reader gets from a channel whose peer has gone. A
 * worker that dies with frames unread in its end (jobs sent ahead to it)
 * makes Linux report ECONNRESET on the daemon's next read although the
 * frames it sent before dying are still queued: none of them may be lost.
 */
#define _GNU_SOURCE
#include "config.h"

#include <check.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"
#include "procpool-internal.h"

static void send_one(int fd, uint64_t seq, const char *text)
{
    struct proc_frame f = {.type = F_RESULT, .seq = seq};
    ck_assert_int_eq(evexec__proc_send(fd, &f, text, strlen(text), -1, 0), 0);
}

static void expect_frame(int fd, uint64_t seq, const char *text, int nonblock)
{
    struct proc_frame f;
    char buf[64];
    int passfd;
    ck_assert_int_eq(evexec__proc_recv(fd, &f, buf, sizeof buf, &passfd, nonblock), 1);
    ck_assert_int_eq(passfd, -1);
    ck_assert_uint_eq(f.seq, seq);
    ck_assert_uint_eq(f.len, strlen(text));
    ck_assert_int_eq(memcmp(buf, text, f.len), 0);
}

static void expect_hangup(int fd, int nonblock)
{
    struct proc_frame f;
    char buf[64];
    int passfd;
    ck_assert_int_eq(evexec__proc_recv(fd, &f, buf, sizeof buf, &passfd, nonblock), 0);
}

/* The peer sent two frames, left one of ours unread and closed: both of
 * its frames, then the hang-up. */
START_TEST(test_frames_before_a_reset_are_read)
{
    for (int nonblock = 0; nonblock < 2; nonblock++) {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        send_one(sv[1], 1, "result");
        send_one(sv[1], 2, "another");
        send_one(sv[0], 3, "job sent ahead"); /* never read by the peer */
        close(sv[1]);
        expect_frame(sv[0], 1, "result", nonblock);
        expect_frame(sv[0], 2, "another", nonblock);
        expect_hangup(sv[0], nonblock);
        close(sv[0]);
    }
}
END_TEST

/* Nothing sent before the peer closed with a frame of ours unread: the
 * hang-up at once. */
START_TEST(test_reset_with_nothing_queued_is_a_hangup)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    send_one(sv[0], 3, "job sent ahead");
    close(sv[1]);
    expect_hangup(sv[0], 1);
    close(sv[0]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("procframe");
    TCase *tc = tcase_create("hang-up");
    tcase_add_test(tc, test_frames_before_a_reset_are_read);
    tcase_add_test(tc, test_reset_with_nothing_queued_is_a_hangup);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
