#!/bin/sh
# bad_configs_run.sh - every bad config in tests/data/bad-configs stops
# each of the three DAEMONS (the `run` verb, not just --print-config, which
# tests/config_exit.sh covers for the publisher) before they touch a server:
# exit status 2, the EXPECTED "file:line: key: message" on stderr, no
# sanitizer report (a leak or crash under ASan/UBSan changes the status or
# prints one), no planted secret echoed, and within 20 s.
#
#   bad_configs_run.sh PUBLISHER CONSUMER WATCHDOG BAD_CONFIG_DIR
set -u
publisher=$1
consumer=$2
watchdog=$3
bad_dir=$4
failures=0
checked=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

for var in $(env | sed -n 's/^\(SENDONCE_[A-Za-z0-9_]*\)=.*/\1/p'); do
  unset "$var"
done
# Leaks are reported and change the exit status (never 2).
export ASAN_OPTIONS=detect_leaks=1:exitcode=66
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sendonce-badconf-run.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

while IFS='|' read -r file expected; do
  case $file in '' | '#'*) continue ;; esac
  path=$bad_dir/$file
  [ -f "$path" ] || continue
  for prog in "$publisher" "$consumer" "$watchdog"; do
    checked=$((checked + 1))
    name=$(basename "$prog")
    timeout -s KILL 20 "$prog" --config "$path" run >"$tmp/out" 2>"$tmp/err"
    status=$?
    [ "$status" -eq 2 ] ||
      fail "$name run $file: exit status $status, want 2; stderr: $(head -c 600 "$tmp/err")"
    grep -qF -- "$path$expected" "$tmp/err" ||
      fail "$name run $file: stderr lacks '$path$expected'; got: $(head -c 600 "$tmp/err")"
    grep -qE 'Sanitizer|runtime error|Segmentation' "$tmp/err" &&
      fail "$name run $file: sanitizer report: $(grep -m 3 -E 'Sanitizer|runtime error' "$tmp/err")"
    grep -q hunter2 "$tmp/out" "$tmp/err" && fail "$name run $file: echoed a secret"
  done
done <"$bad_dir/EXPECTED"

[ "$checked" -ge 30 ] || fail "only $checked program/config pairs checked, want >= 30"
if [ "$failures" -ne 0 ]; then
  echo "bad_configs_run: $failures failure(s) of $checked" >&2
  exit 1
fi
echo "bad_configs_run: ok ($checked program/config pairs)"
