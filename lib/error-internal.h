/* SPDX-License-Identifier: MIT */
/*
 * Size-versioned structs (error.c): the one way every part reads a
 * caller's options struct or fills a caller's stats struct. Never
 * installed.
 */
#ifndef EVEXEC_ERROR_INTERNAL_H
#define EVEXEC_ERROR_INTERNAL_H

#include <stddef.h>

#include "base.h"

/* Reads a caller's options struct (its first member is its size) over the
 * defaults already in *ours (ours_size bytes). NULL in: the defaults stay.
 * -EINVAL if smaller than min_size (or absurdly large), -E2BIG if larger
 * than ours with non-zero bytes beyond (options this library does not
 * know), else 0. */
int evexec__opts_read(void *ours, size_t ours_size, const void *in, size_t min_size);

/* Copies what this library knows of a stats struct into a caller's (its
 * first member is its size; a newer caller's larger struct gets ours and
 * keeps its tail as it was). -EINVAL if smaller than min_size, else 0. */
int evexec__stats_write(void *out, const void *ours, size_t ours_size, size_t min_size);

#endif /* EVEXEC_ERROR_INTERNAL_H */
