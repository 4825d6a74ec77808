#!/bin/sh
# config_exit.sh - the programs' handling of bad and good configurations,
# through the real binaries.
#
#   config_exit.sh PUBLISHER CONSUMER WATCHDOG BAD_CONFIG_DIR CONFIG_DIR
#
# Every file in BAD_CONFIG_DIR must make `PUBLISHER --config FILE
# --print-config` exit 2 with the message its EXPECTED line gives, and
# never echo a planted secret. The shipped example and demo configs must
# load, and --print-config must never print a secret set through the
# environment or a secret file.
set -u

publisher=$1
consumer=$2
watchdog=$3
bad_dir=$4
config_dir=$5
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# A clean environment: the suite's own SENDONCE_* variables must not leak
# into what the configs say.
for var in $(env | sed -n 's/^\(SENDONCE_[A-Za-z0-9_]*\)=.*/\1/p'); do
  unset "$var"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sendonce-config-exit.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

# ---- bad configs ---------------------------------------------------------
listed=0
while IFS='|' read -r file expected; do
  case $file in '' | '#'*) continue ;; esac
  listed=$((listed + 1))
  path=$bad_dir/$file
  [ -f "$path" ] || { fail "$file: listed in EXPECTED but missing"; continue; }
  "$publisher" --config "$path" --print-config >"$tmp/out" 2>"$tmp/err"
  status=$?
  [ "$status" -eq 2 ] || fail "$file: exit status $status, want 2"
  grep -qF -- "$path$expected" "$tmp/err" ||
    fail "$file: stderr lacks '$path$expected'; got: $(cat "$tmp/err")"
  [ -s "$tmp/out" ] && fail "$file: printed a config on stdout"
  grep -q hunter2 "$tmp/out" "$tmp/err" && fail "$file: echoed a secret"
done <"$bad_dir/EXPECTED"
[ "$listed" -ge 10 ] || fail "only $listed bad configs listed, want >= 10"
for path in "$bad_dir"/*.conf; do
  grep -q "^$(basename "$path")|" "$bad_dir/EXPECTED" ||
    fail "$(basename "$path"): not listed in EXPECTED"
done

# ---- good configs load ---------------------------------------------------
for conf in sendonce.conf.example demo.conf; do
  "$publisher" --config "$config_dir/$conf" --print-config >"$tmp/out" \
    2>"$tmp/err" || fail "$conf: does not load: $(cat "$tmp/err")"
done

# ---- secrets are never printed -------------------------------------------
printf 'regSECRET2\n' >"$tmp/registry.password"
printf 'Authorization: Bearer smsSECRET5\n' >"$tmp/sms.auth"
chmod 600 "$tmp/registry.password" "$tmp/sms.auth"
export SENDONCE_BROKER_PASSWORD=brokerSECRET1
export SENDONCE_REGISTRY_PASSWORD_FILE="$tmp/registry.password"
export SENDONCE_WATCHDOG_MGMT_PASSWORD=mgmtSECRET3
export SENDONCE_PROVIDERS_EMAIL_AUTH_HEADER="Authorization: Bearer emailSECRET4"
export SENDONCE_PROVIDERS_SMS_AUTH_HEADER_FILE="$tmp/sms.auth"
for prog in "$publisher" "$consumer" "$watchdog"; do
  "$prog" --config "$config_dir/sendonce.conf.example" --print-config \
    >"$tmp/printed.conf" 2>"$tmp/err"
  status=$?
  [ "$status" -eq 0 ] || fail "$prog: print with secrets: status $status"
  grep -q SECRET "$tmp/printed.conf" "$tmp/err" &&
    fail "$prog: --print-config printed a secret"
  n=$(grep -c '"<redacted>"' "$tmp/printed.conf")
  [ "$n" -eq 5 ] || fail "$prog: $n secrets shown as <redacted>, want 5"
done
# The printed config loads again (secrets still from the environment).
"$publisher" --config "$tmp/printed.conf" --print-config >"$tmp/again.conf" \
  2>"$tmp/err" || fail "printed config does not load: $(cat "$tmp/err")"
unset SENDONCE_BROKER_PASSWORD SENDONCE_REGISTRY_PASSWORD_FILE \
  SENDONCE_WATCHDOG_MGMT_PASSWORD SENDONCE_PROVIDERS_EMAIL_AUTH_HEADER \
  SENDONCE_PROVIDERS_SMS_AUTH_HEADER_FILE

# ---- an environment error names the variable ------------------------------
SENDONCE_REGISTRY_LEASE_TTL_S=1 "$publisher" --print-config \
  >"$tmp/out" 2>"$tmp/err"
status=$?
[ "$status" -eq 2 ] || fail "env override: status $status, want 2"
grep -qF 'env SENDONCE_REGISTRY_LEASE_TTL_S: registry.lease_ttl_s: must be' \
  "$tmp/err" || fail "env override: stderr: $(cat "$tmp/err")"

# ---- the command line -----------------------------------------------------
for prog in "$publisher" "$consumer" "$watchdog"; do
  "$prog" --version >"$tmp/out" 2>&1 || fail "$prog --version failed"
  "$prog" --help >"$tmp/out" 2>&1 || fail "$prog --help failed"
  grep -q '^[ *] run' "$tmp/out" || fail "$prog --help does not list run"
  "$prog" frobnicate >"$tmp/out" 2>"$tmp/err"
  status=$?
  [ "$status" -eq 2 ] || fail "$prog frobnicate: status $status, want 2"
  grep -q "unknown verb 'frobnicate'" "$tmp/err" ||
    fail "$prog frobnicate: stderr: $(cat "$tmp/err")"
  "$prog" >"$tmp/out" 2>"$tmp/err"
  [ $? -eq 2 ] || fail "$prog without a verb: want status 2"
  "$prog" --log-level loud --print-config >"$tmp/out" 2>"$tmp/err"
  [ $? -eq 2 ] || fail "$prog --log-level loud: want status 2"
done
"$publisher" --help >"$tmp/out"
for verb in schedule publish list cancel pause resume run; do
  grep -q "^[ *] $verb" "$tmp/out" || fail "publisher --help lacks $verb"
done
"$watchdog" --help >"$tmp/out"
for verb in run check status replay; do
  grep -q "^[ *] $verb" "$tmp/out" || fail "watchdog --help lacks $verb"
done

if [ "$failures" -ne 0 ]; then
  echo "config_exit: $failures failure(s)" >&2
  exit 1
fi
echo "config_exit: ok"
