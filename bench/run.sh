#!/usr/bin/env bash
# The load test of `make bench` (docs/benchmarks.md): one Caddy process built
# with the plugin serves the same files through a plain site and through
# pkce_auth sites (cookie mode; Redis mode against a redis-server it starts),
# and wrk drives each in alternating rounds on 127.0.0.1.
#
#   bench/run.sh [-short] path/to/caddy
#
# -short is the smoke mode of `make bench-smoke`: one round of one second
# per case. LOADTEST_* variables (bench/loadtest_test.go) tune the full run;
# LOADTEST_OUT=file also writes the table as Markdown.
#
# wrk and redis-server come from Debian's packages; as root the script
# installs them when they are missing.
set -euo pipefail

short=""
if [[ "${1:-}" == "-short" ]]; then
	short="-short"
	shift
fi
if [[ $# -ne 1 ]]; then
	echo "usage: bench/run.sh [-short] path/to/caddy" >&2
	exit 2
fi
caddy="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
cd "$(dirname "$0")/.."

# need COMMAND PACKAGE: install PACKAGE with apt-get when COMMAND is missing.
need() {
	command -v "$1" >/dev/null 2>&1 && return
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		echo "bench: $1 is missing; install Debian's $2 package (apt-get install $2)" >&2
		exit 1
	fi
	echo "bench: installing $2 (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq --no-install-recommends "$2" >/dev/null; then
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "$2" >/dev/null
	fi
}
need wrk wrk
need redis-server redis-server

timeout=30m
if [[ -n "$short" ]]; then
	timeout=5m
fi
LOADTEST_CADDY="$caddy" ${GO:-go} test -tags loadtest $short -count=1 -timeout "$timeout" -run '^TestLoad$' -v ./bench
