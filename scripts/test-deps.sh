#!/bin/sh
# Installs the Debian packages the tests need, before `npm test` runs them:
# redis-server (the tests start their own on free ports) and chromium (the
# dashboard, demo and browser-client tests). prometheus (promtool checks the
# alert rules) and golang-go (builds examples/go-backend) are optional: the
# tests that use them skip themselves when they are missing.
# As root it runs apt-get; otherwise it stops with the command to run.
set -eu

need=""
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
[ -x /usr/bin/chromium ] || need="$need chromium"
optional=""
command -v promtool >/dev/null 2>&1 || optional="$optional prometheus"
command -v go >/dev/null 2>&1 || optional="$optional golang-go"

[ -z "$need$optional" ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  if [ -n "$need" ]; then
    echo "test-deps: the tests need:$need" >&2
    echo "test-deps: install them first, e.g.: sudo apt-get update && sudo apt-get install -y$need" >&2
    exit 1
  fi
  echo "test-deps: optional, not installed:$optional (their tests will skip)" >&2
  exit 0
fi

apt-get update -qq
if [ -n "$need" ]; then
  echo "test-deps: installing$need"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
if [ -n "$optional" ]; then
  echo "test-deps: installing$optional (optional)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $optional >/dev/null ||
    echo "test-deps:$optional not installed; their tests will skip"
fi
