/* SPDX-License-Identifier: MIT */
/*
 * DESIGN: process pools where they are not built (not Linux: see
 * configure.ac). Every call answers -ENOTSUP, so the library exports the
 * same symbols everywhere.
 */
#include "config.h"

#include <errno.h>

#include "evexec.h"

void *evexec_proc_output(evexec_proc_out *out, size_t len)
{
    (void)out;
    (void)len;
    return NULL;
}

int evexec_procpool_new(evexec_procpool **out, const struct evexec_procpool_opts *opts)
{
    (void)out;
    (void)opts;
    return -ENOTSUP;
}

int evexec_procpool_submit(evexec_port *port, evexec_procpool *pool, evexec_proc_work_fn work,
                           const void *in, size_t in_len, evexec_proc_done_fn done, void *arg,
                           const struct evexec_job_opts *opts, evexec_job_id *id)
{
    (void)port, (void)pool, (void)work, (void)in, (void)in_len, (void)done, (void)arg;
    (void)opts, (void)id;
    return -ENOTSUP;
}

int evexec_proc_input_new(evexec_procpool *pool, size_t len, evexec_proc_input **out,
                          void **data)
{
    (void)pool, (void)len, (void)out, (void)data;
    return -ENOTSUP;
}

void evexec_proc_input_free(evexec_proc_input *in)
{
    (void)in;
}

int evexec_procpool_submit_input(evexec_port *port, evexec_procpool *pool,
                                 evexec_proc_work_fn work, evexec_proc_input *in,
                                 evexec_proc_done_fn done, void *arg,
                                 const struct evexec_job_opts *opts, evexec_job_id *id)
{
    (void)port, (void)pool, (void)work, (void)in, (void)done, (void)arg, (void)opts, (void)id;
    return -ENOTSUP;
}

int evexec_procpool_shutdown(evexec_procpool *pool, int how)
{
    (void)pool, (void)how;
    return -ENOTSUP;
}

void evexec_procpool_free(evexec_procpool *pool)
{
    (void)pool;
}

int evexec_procpool_stats(evexec_procpool *pool, struct evexec_procpool_stats *out)
{
    (void)pool, (void)out;
    return -ENOTSUP;
}
