/* SPDX-License-Identifier: MIT */
/*
 * Process pools in a program built without PIE (linked with -no-pie, run
 * by a path): its own work functions are in the fork server's image and
 * must be accepted. The program's load bias is then 0, so a check that
 * compared it with the address dladdr() gives refused them (-EFAULT).
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "evexec.h"

static int w_echo(const void *in, size_t len, evexec_proc_out *out, void *state)
{
    (void)state;
    void *p = evexec_proc_output(out, len);
    if (!p)
        return 99;
    memcpy(p, in, len);
    return 0;
}

START_TEST(work_of_a_program_without_pie_is_accepted)
{
    evexec_procpool *pool;
    evexec_future *f;
    void *result = NULL;
    ck_assert_int_eq(evexec_procpool_new(&pool, NULL), 0);
    ck_assert_int_eq(evexec_procpool_call(pool, w_echo, "abc", 3, &f), 0);
    ck_assert_int_eq(evexec_future_wait(f, EVEXEC_WAIT_FOREVER), 0);
    ck_assert_int_eq(evexec_future_result(f, &result), 0);
    const struct evexec_proc_result *res = result;
    ck_assert_uint_eq(res->out_len, 3);
    ck_assert_int_eq(memcmp(res->out, "abc", 3), 0);
    evexec_future_free(f);
    evexec_procpool_free(pool);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("procpool_nopie");
    TCase *tc = tcase_create("image");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, work_of_a_program_without_pie_is_accepted);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
