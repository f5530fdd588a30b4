/* SPDX-License-Identifier: MIT */
/*
 * Groups (EVEXEC_GROUP_ALL, EVEXEC_GROUP_FIRST, CANCEL_REST and
 * evexec_group_cancel()): one group callback after its members, on the loop
 * thread and never inside a call, with the status the header promises.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "helpers.h"

/* ---------------------------------------------------------------------- */
/* Groups of kind ALL.                                                    */

START_TEST(group_all_calls_back_after_every_member_once_closed)
{
    struct gate g;
    struct djob a, b, c;
    struct grec gr;
    evexec_pool *pool = new_pool(2, 0, 0);

    djob_init(&b, NULL, NULL);
    djob_init(&c, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    park_djob(pool, &a, &g, 0, grp);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);
    ck_assert_int_eq(submit_djob(pool, &c, 0, grp, NULL), 0);
    run_until(fx.base, &fx.member_calls, 2);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(b.calls + c.calls, 2);
    ck_assert_int_eq(gr.calls, 0);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    ck_assert_int_eq(gr.calls, 0);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(gr.calls, 0); /* a is still running */
    ck_assert_int_eq(evexec_group_close(grp), -EALREADY);

    gate_release(&g, 1);
    run_until(fx.base, &gr.calls, 1);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(gr.status, 0);
    ck_assert_int_eq(gr.wrong_thread, 0);
    ck_assert_int_gt(gr.seq, a.seq);
    ck_assert_int_gt(gr.seq, b.seq);
    ck_assert_int_gt(gr.seq, c.seq);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(fx.member_calls, 3);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(group_all_waits_for_close_and_never_calls_back_inside_it)
{
    struct djob a, b;
    struct grec gr;
    evexec_pool *pool = new_pool(1, 0, 0);

    djob_init(&a, NULL, NULL);
    djob_init(&b, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    ck_assert_int_eq(submit_djob(pool, &a, 0, grp, NULL), 0);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);
    run_until(fx.base, &fx.member_calls, 2);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(gr.calls, 0); /* every member delivered, not closed */
    ck_assert_int_eq(evexec_group_close(grp), 0);
    ck_assert_int_eq(gr.calls, 0); /* not inside close */
    run_until(fx.base, &gr.calls, 1);
    ck_assert_int_eq(gr.status, 0);
    ck_assert_int_gt(gr.seq, a.seq);
    ck_assert_int_gt(gr.seq, b.seq);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
}
END_TEST

START_TEST(group_all_status_is_the_first_nonzero_member_status)
{
    struct gate g;
    struct djob p, q, r;
    struct grec gr;
    evexec_job_id qid;
    evexec_pool *pool = new_pool(1, 0, 0);

    djob_init(&q, NULL, NULL);
    djob_init(&r, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    park_djob(pool, &p, &g, 0, grp);
    /* Delivered in this order: q (-ECANCELED), r (-ETIMEDOUT), p (0). */
    ck_assert_int_eq(submit_djob(pool, &q, 0, grp, &qid), 0);
    ck_assert_int_eq(evexec_cancel(fx.port, qid), 0);
    run_until(fx.base, &q.calls, 1);
    ck_assert_int_eq(q.status, -ECANCELED);
    ck_assert_int_eq(submit_djob(pool, &r, 20, grp, NULL), 0);
    run_until(fx.base, &r.calls, 1);
    ck_assert_int_eq(r.status, -ETIMEDOUT);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    gate_release(&g, 1);
    run_until(fx.base, &gr.calls, 1);
    ck_assert_int_eq(p.status, 0);
    ck_assert_int_lt(q.seq, r.seq);
    ck_assert_int_lt(r.seq, p.seq);
    ck_assert_int_eq(gr.status, -ECANCELED);
    ck_assert_int_gt(gr.seq, p.seq);
    ck_assert_int_eq(atomic_load(&q.ran) + atomic_load(&r.ran), 0);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(group_closed_with_no_member_calls_back_enoent_later)
{
    struct grec all, first;

    evexec_group *ga = new_group(&all, EVEXEC_GROUP_ALL);
    evexec_group *gf = new_group(&first, EVEXEC_GROUP_FIRST | EVEXEC_GROUP_CANCEL_REST);
    ck_assert_int_eq(evexec_group_close(ga), 0);
    ck_assert_int_eq(evexec_group_close(gf), 0);
    ck_assert_int_eq(all.calls + first.calls, 0); /* never inside close */
    run_until(fx.base, &all.calls, 1);
    run_until(fx.base, &first.calls, 1);
    ck_assert_int_eq(all.status, -ENOENT);
    ck_assert_int_eq(first.status, -ENOENT);
    ck_assert_int_eq(all.wrong_thread + first.wrong_thread, 0);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(all.calls, 1);
    ck_assert_int_eq(first.calls, 1);
}
END_TEST

START_TEST(group_refuses_members_once_closed_or_of_another_port)
{
    struct gate g;
    struct djob a, b;
    struct grec gr, gr2;
    evexec_pool *pool = new_pool(1, 0, 0);
    struct event_base *base2 = event_base_new();
    evexec_port *port2;
    evexec_group *g2;

    ck_assert_ptr_nonnull(base2);
    ck_assert_int_eq(evexec_port_new(&port2, base2, NULL), 0);
    djob_init(&b, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    park_djob(pool, &a, &g, 0, grp);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), -EINVAL);

    /* A group of another port, either way round. */
    memset(&gr2, 0, sizeof gr2);
    ck_assert_int_eq(evexec_group_new(&g2, port2, EVEXEC_GROUP_ALL, grec_fn, &gr2), 0);
    ck_assert_int_eq(submit_djob(pool, &b, 0, g2, NULL), -EINVAL);
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    o.group = grp;
    ck_assert_int_eq(evexec_submit_ex(port2, pool, djob_work, djob_done, &b, &o, NULL), -EINVAL);
    ck_assert_int_eq(evexec_group_close(g2), 0);
    run_until(base2, &gr2.calls, 1);
    ck_assert_int_eq(gr2.status, -ENOENT);
    ck_assert_int_eq(evexec_port_free(port2), 0);
    dispatch_all(base2);
    event_base_free(base2);

    gate_release(&g, 1);
    run_until(fx.base, &gr.calls, 1);
    ck_assert_int_eq(gr.status, 0);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(b.calls, 0);
    ck_assert_int_eq(atomic_load(&b.ran), 0);
    ck_assert_int_eq(fx.member_calls, 1);
    ck_assert_uint_eq(pool_stats(pool).submitted, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

/* Groups of FIRST: a and b run parked on pool1, c and d wait on pool2
 * behind p (no member), so that nothing but the test decides what finishes
 * first. */
struct first_setup {
    struct gate ga, gb, gp;
    struct djob a, b, c, d, p;
    evexec_pool *pool1, *pool2;
};

static void first_setup(struct first_setup *f, evexec_group *grp)
{
    f->pool1 = new_pool(2, 0, 0);
    f->pool2 = new_pool(1, 0, 0);
    gate_init(&f->ga, NULL);
    gate_init(&f->gb, NULL);
    gate_init(&f->gp, NULL);
    djob_init(&f->a, &f->ga, NULL);
    djob_init(&f->b, &f->gb, NULL);
    djob_init(&f->c, NULL, NULL);
    djob_init(&f->d, NULL, NULL);
    djob_init(&f->p, &f->gp, NULL);
    ck_assert_int_eq(submit_djob(f->pool2, &f->p, 0, NULL, NULL), 0);
    gate_wait_entered(&f->gp, 1);
    ck_assert_int_eq(submit_djob(f->pool1, &f->a, 0, grp, NULL), 0);
    gate_wait_entered(&f->ga, 1);
    ck_assert_int_eq(submit_djob(f->pool1, &f->b, 0, grp, NULL), 0);
    gate_wait_entered(&f->gb, 1);
    ck_assert_int_eq(submit_djob(f->pool2, &f->c, 0, grp, NULL), 0);
    ck_assert_int_eq(submit_djob(f->pool2, &f->d, 0, grp, NULL), 0);
}

static void first_teardown(struct first_setup *f)
{
    ck_assert_int_eq(evexec_pool_free(f->pool1), 0);
    ck_assert_int_eq(evexec_pool_free(f->pool2), 0);
    gate_destroy(&f->ga);
    gate_destroy(&f->gb);
    gate_destroy(&f->gp);
}

START_TEST(group_first_calls_back_right_after_the_first_member_rest_run)
{
    struct first_setup f;
    struct grec gr;
    struct djob e;

    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_FIRST);
    first_setup(&f, grp);
    djob_init(&e, NULL, NULL);
    gr.action = GR_SUBMIT; /* into the decided group, from its callback */
    gr.pool = f.pool1;
    gr.d = &e;

    gate_release(&f.gb, 1);
    run_until(fx.base, &gr.calls, 1);
    ck_assert_int_eq(f.b.calls, 1);
    ck_assert_int_eq(gr.seq, f.b.seq + 1);
    ck_assert_int_eq(gr.status, 0);
    ck_assert_int_eq(gr.rc, -EINVAL);
    ck_assert_int_eq(gr.wrong_thread, 0);
    ck_assert_int_eq(f.a.calls + f.c.calls + f.d.calls, 0);

    /* Without CANCEL_REST the others run as usual. */
    gate_release(&f.ga, 1);
    gate_release(&f.gp, 1);
    run_until(fx.base, &fx.member_calls, 5);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(fx.member_calls, 5);
    ck_assert_int_eq(f.a.status, 0);
    ck_assert_int_eq(atomic_load(&f.a.stopped), 0);
    ck_assert_int_eq(f.c.status, 0);
    ck_assert_int_eq(f.d.status, 0);
    ck_assert_int_eq(atomic_load(&f.c.ran) + atomic_load(&f.d.ran), 2);
    ck_assert_int_eq(f.p.status, 0);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(e.calls, 0);
    ck_assert_int_eq(atomic_load(&e.ran), 0);
    first_teardown(&f);
}
END_TEST

START_TEST(group_first_cancel_rest_cancels_queued_and_stops_running)
{
    struct first_setup f;
    struct grec gr;

    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_FIRST | EVEXEC_GROUP_CANCEL_REST);
    first_setup(&f, grp);

    gate_release(&f.gb, 1);
    run_until(fx.base, &gr.calls, 1);
    ck_assert_int_eq(gr.seq, f.b.seq + 1);
    ck_assert_int_eq(gr.status, 0);
    run_until(fx.base, &fx.member_calls, 3); /* b, c, d */
    ck_assert_int_eq(f.c.status, -ECANCELED);
    ck_assert_int_eq(f.d.status, -ECANCELED);
    ck_assert_int_gt(f.c.seq, gr.seq);
    ck_assert_int_gt(f.d.seq, gr.seq);
    ck_assert_int_eq(f.a.calls, 0);
    ck_assert_uint_eq(pool_stats(f.pool2).cancelled, 2);

    gate_release(&f.ga, 1);
    gate_release(&f.gp, 1);
    run_until(fx.base, &fx.member_calls, 5);
    ck_assert_int_eq(f.a.status, 0); /* it ran */
    ck_assert_int_eq(atomic_load(&f.a.stopped), 1);
    ck_assert_int_eq(f.p.status, 0); /* not a member */
    ck_assert_int_eq(atomic_load(&f.p.stopped), 0);
    ck_assert_int_eq(atomic_load(&f.c.ran) + atomic_load(&f.d.ran), 0);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(fx.member_calls, 5);
    first_teardown(&f);
}
END_TEST

START_TEST(group_first_status_is_the_first_member_delivered)
{
    struct first_setup f;
    struct grec gr;
    evexec_job_id cid;

    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_FIRST);
    first_setup(&f, grp);
    /* One more queued member, cancelled by id: the first delivered. */
    struct djob q;
    djob_init(&q, NULL, NULL);
    ck_assert_int_eq(submit_djob(f.pool2, &q, 0, grp, &cid), 0);
    ck_assert_int_eq(evexec_cancel(fx.port, cid), 0);
    run_until(fx.base, &gr.calls, 1);
    ck_assert_int_eq(q.status, -ECANCELED);
    ck_assert_int_eq(gr.status, -ECANCELED);
    ck_assert_int_eq(gr.seq, q.seq + 1);
    gate_release(&f.ga, 1);
    gate_release(&f.gb, 1);
    gate_release(&f.gp, 1);
    run_until(fx.base, &fx.member_calls, 6);
    ck_assert_int_eq(f.a.status + f.b.status + f.c.status + f.d.status, 0);
    ck_assert_int_eq(atomic_load(&f.a.stopped) + atomic_load(&f.b.stopped), 0);
    ck_assert_int_eq(gr.calls, 1);
    first_teardown(&f);
}
END_TEST

START_TEST(group_members_get_their_callbacks_in_completion_order)
{
    struct gate g;
    struct djob a, b;
    struct grec gr;
    evexec_pool *pool = new_pool(2, 0, 0);

    djob_init(&b, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    park_djob(pool, &a, &g, 0, grp);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    run_until(fx.base, &b.calls, 1); /* submitted second, delivered first */
    ck_assert_int_eq(a.calls, 0);
    ck_assert_int_eq(gr.calls, 0);
    gate_release(&g, 1);
    run_until(fx.base, &gr.calls, 1);
    ck_assert_int_lt(b.seq, a.seq);
    ck_assert_int_lt(a.seq, gr.seq);
    ck_assert_int_eq(gr.status, 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(group_cancel_cancels_members_only_and_calls_back_ecanceled)
{
    struct gate g;
    struct djob a, b, c, n, e;
    struct grec gr;
    evexec_pool *pool = new_pool(1, 0, 0);

    djob_init(&b, NULL, NULL);
    djob_init(&c, NULL, NULL);
    djob_init(&n, NULL, NULL);
    djob_init(&e, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    park_djob(pool, &a, &g, 0, grp);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);
    ck_assert_int_eq(submit_djob(pool, &n, 0, NULL, NULL), 0); /* not a member */
    ck_assert_int_eq(submit_djob(pool, &c, 0, grp, NULL), 0);

    ck_assert_int_eq(evexec_group_cancel(grp), 0);
    ck_assert_int_eq(fx.member_calls + gr.calls, 0); /* never inside cancel */
    ck_assert_uint_eq(pool_stats(pool).queued, 1); /* n */
    run_until(fx.base, &fx.member_calls, 2);
    ck_assert_int_eq(b.status, -ECANCELED);
    ck_assert_int_eq(c.status, -ECANCELED);
    ck_assert_int_eq(gr.calls, 0); /* a still runs */
    ck_assert_int_eq(evexec_group_cancel(grp), -EALREADY);
    ck_assert_int_eq(evexec_group_close(grp), -EALREADY); /* cancel closed it */
    ck_assert_int_eq(submit_djob(pool, &e, 0, grp, NULL), -EINVAL);

    gate_release(&g, 1);
    run_until(fx.base, &gr.calls, 1);
    ck_assert_int_eq(a.status, 0);
    ck_assert_int_eq(atomic_load(&a.stopped), 1);
    ck_assert_int_eq(gr.status, -ECANCELED);
    ck_assert_int_gt(gr.seq, a.seq);
    run_until(fx.base, &n.calls, 1);
    ck_assert_int_eq(n.status, 0);
    ck_assert_int_eq(atomic_load(&n.ran), 1);
    ck_assert_int_eq(atomic_load(&n.stopped), 0);
    ck_assert_int_eq(atomic_load(&b.ran) + atomic_load(&c.ran), 0);
    ck_assert_uint_eq(pool_stats(pool).cancelled, 2);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(e.calls, 0);
    ck_assert_int_eq(fx.member_calls, 4);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(group_cancel_from_a_first_groups_callback)
{
    struct first_setup f;
    struct grec gr;

    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_FIRST);
    first_setup(&f, grp);
    gr.action = GR_CANCEL;
    gate_release(&f.gb, 1);
    run_until(fx.base, &gr.calls, 1);
    ck_assert_int_eq(gr.rc, 0);
    ck_assert_int_eq(gr.status, 0);
    run_until(fx.base, &fx.member_calls, 3); /* b, c, d */
    ck_assert_int_eq(f.c.status, -ECANCELED);
    ck_assert_int_eq(f.d.status, -ECANCELED);
    gate_release(&f.ga, 1);
    gate_release(&f.gp, 1);
    run_until(fx.base, &fx.member_calls, 5);
    ck_assert_int_eq(f.a.status, 0);
    ck_assert_int_eq(atomic_load(&f.a.stopped), 1);
    ck_assert_int_eq(atomic_load(&f.c.ran) + atomic_load(&f.d.ran), 0);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(gr.calls, 1);
    first_teardown(&f);
}
END_TEST

START_TEST(group_with_a_member_timing_out)
{
    static int token;
    struct gate g;
    struct djob a, b;
    struct grec gr;
    evexec_pool *pool = new_pool(2, 0, 0);

    gate_init(&g, NULL);
    djob_init(&a, &g, &token);
    djob_init(&b, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    ck_assert_int_eq(submit_djob(pool, &a, 40, grp, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    run_until(fx.base, &gr.calls, 1);
    /* Decided by a's done(-ETIMEDOUT), while its work still runs. */
    ck_assert_int_eq(gr.status, -ETIMEDOUT);
    ck_assert_int_eq(a.status, -ETIMEDOUT);
    ck_assert_int_eq(b.status, 0);
    ck_assert_int_gt(gr.seq, a.seq);
    ck_assert_uint_eq(pool_stats(pool).running, 1);

    gate_release(&g, 1);
    run_until(fx.base, &a.cleanups, 1);
    wait_completed(pool, 2);
    run_nonblock(fx.base, 5);
    ck_assert_ptr_eq(a.cleanup_result, &token);
    ck_assert_int_eq(atomic_load(&a.stopped), 1);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(port_free_cancels_the_members_of_an_unclosed_group)
{
    struct gate g;
    struct djob a, b;
    struct grec gr, empty;
    evexec_pool *pool = new_pool(1, 0, 0);

    gate_init(&g, NULL);
    djob_init(&a, &g, NULL);
    djob_init(&b, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    new_group(&empty, EVEXEC_GROUP_ALL); /* never closed, never used */
    ck_assert_int_eq(submit_djob(pool, &a, 0, grp, NULL), 0);
    gate_wait_entered(&g, 1);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);

    ck_assert_int_eq(evexec_port_free(fx.port), 0);
    ck_assert_int_eq(fx.member_calls + gr.calls + empty.calls, 0);
    ck_assert_uint_eq(pool_stats(pool).queued, 0); /* b cancelled at once */
    gate_release(&g, 1);
    dispatch_all(fx.base); /* returns once the port has gone */
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(a.status, 0);
    ck_assert_int_eq(atomic_load(&a.stopped), 1);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_int_eq(b.status, -ECANCELED);
    ck_assert_int_eq(atomic_load(&b.ran), 0);
    /* "Freeing the port cancels the members, so the callback still runs." */
    ck_assert_int_eq(gr.calls, 1);
    ck_assert_int_eq(gr.status, -ECANCELED);
    ck_assert_int_le(empty.calls, 1);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
    ck_assert_int_eq(evexec_port_new(&fx.port, fx.base, NULL), 0); /* for teardown */
}
END_TEST

/* A member whose submit is refused (a full queue) never joins: the group
 * does not wait for it. */
START_TEST(group_member_refused_by_a_full_queue_does_not_join)
{
    struct gate g;
    struct djob a, b, c;
    struct grec gr;
    evexec_pool *pool = new_pool(1, 0, 1);

    djob_init(&b, NULL, NULL);
    djob_init(&c, NULL, NULL);
    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    park_djob(pool, &a, &g, 0, grp);
    ck_assert_int_eq(submit_djob(pool, &b, 0, grp, NULL), 0);
    ck_assert_int_eq(submit_djob(pool, &c, 0, grp, NULL), -EAGAIN);
    ck_assert_int_eq(evexec_group_close(grp), 0);
    gate_release(&g, 1);
    run_until(fx.base, &gr.calls, 1);
    ck_assert_int_eq(gr.status, 0);
    ck_assert_int_eq(a.calls + b.calls, 2);
    run_nonblock(fx.base, 5);
    ck_assert_int_eq(c.calls, 0);
    ck_assert_int_eq(atomic_load(&c.ran), 0);
    ck_assert_int_eq(evexec_pool_free(pool), 0);
    gate_destroy(&g);
}
END_TEST

static int group_new_call(void *p)
{
    evexec_group *g = NULL;
    (void)p;
    return evexec_group_new(&g, fx.port, EVEXEC_GROUP_ALL, NULL, NULL);
}
static int group_close_call(void *p)
{
    return evexec_group_close(p);
}
static int group_cancel_call(void *p)
{
    return evexec_group_cancel(p);
}
static int submit_into_group_call(void *p)
{
    struct evexec_job_opts o = EVEXEC_JOB_OPTS_INIT;
    o.group = p;
    return evexec_submit_ex(fx.port, NULL, echo_work, NULL, NULL, &o, NULL);
}

START_TEST(group_calls_reject_bad_arguments_and_wrong_threads)
{
    static int sentinel;
    evexec_group *g = (evexec_group *)&sentinel;
    struct grec gr;

    ck_assert_int_eq(evexec_group_new(&g, fx.port, -1, grec_fn, &gr), -EINVAL);
    ck_assert_int_eq(evexec_group_new(&g, fx.port, EVEXEC_GROUP_CANCEL_REST, grec_fn, &gr), -EINVAL);
    ck_assert_int_eq(evexec_group_new(&g, fx.port, 4, grec_fn, &gr), -EINVAL);
    ck_assert_int_eq(evexec_group_new(&g, fx.port, EVEXEC_GROUP_FIRST | 4, grec_fn, &gr), -EINVAL);
    ck_assert_int_eq(evexec_group_new(&g, NULL, EVEXEC_GROUP_ALL, grec_fn, &gr), -EINVAL);
    ck_assert_int_eq(evexec_group_new(NULL, fx.port, EVEXEC_GROUP_ALL, grec_fn, &gr), -EINVAL);
    ck_assert_ptr_eq(g, (evexec_group *)&sentinel); /* untouched on error */
    ck_assert_int_eq(evexec_group_close(NULL), -EINVAL);
    ck_assert_int_eq(evexec_group_cancel(NULL), -EINVAL);
    ck_assert_int_eq(on_other_thread(group_new_call, NULL), -EPERM);

    /* A group with no callback is fine. */
    ck_assert_int_eq(evexec_group_new(&g, fx.port, EVEXEC_GROUP_ALL, NULL, NULL), 0);
    ck_assert_int_eq(evexec_group_close(g), 0);
    run_nonblock(fx.base, 3);

    evexec_group *grp = new_group(&gr, EVEXEC_GROUP_ALL);
    ck_assert_int_eq(on_other_thread(group_close_call, grp), -EPERM);
    ck_assert_int_eq(on_other_thread(group_cancel_call, grp), -EPERM);
    ck_assert_int_eq(on_other_thread(submit_into_group_call, grp), -EPERM);
    /* Nothing of that took effect: the group is open and not cancelled. */
    ck_assert_int_eq(evexec_group_close(grp), 0);
    run_until(fx.base, &gr.calls, 1);
    ck_assert_int_eq(gr.status, -ENOENT);
    ck_assert_int_eq(gr.wrong_thread, 0);
}
END_TEST

static Suite *group_suite(void)
{
    Suite *s = suite_create("group");
    TCase *tc;

    tc = add_tcase(s, "groups", 30, FX_PORT);
    tcase_add_test(tc, group_all_calls_back_after_every_member_once_closed);
    tcase_add_test(tc, group_all_waits_for_close_and_never_calls_back_inside_it);
    tcase_add_test(tc, group_all_status_is_the_first_nonzero_member_status);
    tcase_add_test(tc, group_closed_with_no_member_calls_back_enoent_later);
    tcase_add_test(tc, group_refuses_members_once_closed_or_of_another_port);
    tcase_add_test(tc, group_first_calls_back_right_after_the_first_member_rest_run);
    tcase_add_test(tc, group_first_cancel_rest_cancels_queued_and_stops_running);
    tcase_add_test(tc, group_first_status_is_the_first_member_delivered);
    tcase_add_test(tc, group_members_get_their_callbacks_in_completion_order);
    tcase_add_test(tc, group_cancel_cancels_members_only_and_calls_back_ecanceled);
    tcase_add_test(tc, group_cancel_from_a_first_groups_callback);
    tcase_add_test(tc, group_with_a_member_timing_out);
    tcase_add_test(tc, port_free_cancels_the_members_of_an_unclosed_group);
    tcase_add_test(tc, group_member_refused_by_a_full_queue_does_not_join);
    tcase_add_test(tc, group_calls_reject_bad_arguments_and_wrong_threads);
    return s;
}

int main(void)
{
    return run_suite(group_suite());
}
