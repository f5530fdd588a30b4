#!/bin/sh
# SPDX-License-Identifier: MIT
# examples/kv against SQLite: see tests/kv.sh.
exec bash "$(dirname "$0")/kv.sh" sqlite
