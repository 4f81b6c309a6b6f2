#!/bin/sh
# Installs the Debian packages the tests need, before `npm test` runs them:
# redis-server (the tests start their own on free ports), chromium (the
# dashboard, demo and browser-client tests), prometheus (its promtool checks
# /metrics and the alert rules) and golang-go (builds and runs
# examples/go-backend as the docs say). No test skips for a missing tool.
# As root it runs apt-get; otherwise it stops at once with the command to run.
set -eu

need=""
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
[ -x /usr/bin/chromium ] || need="$need chromium"
# Tools only: without recommends (prometheus would bring its exporters).
tools=""
command -v promtool >/dev/null 2>&1 || tools="$tools prometheus"
command -v go >/dev/null 2>&1 || tools="$tools golang-go"

[ -z "$need$tools" ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: the tests need:$need$tools" >&2
  echo "test-deps: install them first: sudo apt-get update && sudo apt-get install -y$need$tools" >&2
  exit 1
fi

echo "test-deps: installing$need$tools"
apt-get update -qq
if [ -n "$need" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
if [ -n "$tools" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $tools >/dev/null
fi
