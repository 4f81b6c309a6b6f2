#!/bin/sh
# Raises the open-files limit as far as allowed (10k sockets need 10k+ file
# descriptors in the load generator and in a single-process server), then runs
# the bench. Without root the hard limit is the ceiling.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$@"
