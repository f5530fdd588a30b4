#!/bin/sh
# SPDX-License-Identifier: MIT
# examples/kv against PostgreSQL: see tests/kv.sh.
exec bash "$(dirname "$0")/kv.sh" pg
