#!/bin/sh
# install_check.sh CMAKE BUILD_DIR CONFIG SOURCE_DIR
#
# `cmake --install` into staging directories (DESTDIR), as a package build
# does: with --prefix /usr the programs land in usr/bin, the example config
# in etc/sendonce/sendonce.conf (not usr/etc: where a Debian admin and the
# systemd units look), the units in usr/lib/systemd/system; with another
# prefix everything stays under it. Nothing else is installed.
set -eu

cmake_bin=$1
build=$2
config=${3:-}
src=$4
programs="sendonce-publisher sendonce-consumer sendonce-watchdog"
units="sendonce-publisher.service sendonce-consumer.service sendonce-watchdog.service"

stage=$(mktemp -d "${TMPDIR:-/tmp}/sendonce-install.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# install PREFIX DIR: stage an install of the build with PREFIX into DIR.
install_into() {
  set -- "$1" "$2"
  if [ -n "$config" ]; then
    DESTDIR=$2 "$cmake_bin" --install "$build" --prefix "$1" --config "$config" >"$2.log" 2>&1
  else
    DESTDIR=$2 "$cmake_bin" --install "$build" --prefix "$1" >"$2.log" 2>&1
  fi || { cat "$2.log" >&2; fail "cmake --install --prefix $1 failed"; return 1; }
}

# check_tree DIR BIN ETC UNITS: exactly the expected files, with content.
check_tree() {
  dir=$1 bin=$2 etc=$3 unitdir=$4
  expected=""
  for p in $programs; do
    f="$dir/$bin/$p"
    [ -f "$f" ] || { fail "missing $bin/$p"; continue; }
    [ -x "$f" ] || fail "$bin/$p is not executable"
    expected="$expected $bin/$p"
  done
  conf="$dir/$etc/sendonce/sendonce.conf"
  if [ -f "$conf" ]; then
    cmp -s "$conf" "$src/config/sendonce.conf.example" ||
      fail "$etc/sendonce/sendonce.conf differs from config/sendonce.conf.example"
  else
    fail "missing $etc/sendonce/sendonce.conf"
  fi
  expected="$expected $etc/sendonce/sendonce.conf"
  for u in $units; do
    f="$dir/$unitdir/$u"
    if [ -f "$f" ]; then
      cmp -s "$f" "$src/config/systemd/$u" || fail "$unitdir/$u differs"
      grep -q '^NoNewPrivileges=yes' "$f" || fail "$u: no NoNewPrivileges=yes"
      grep -q '^User=sendonce' "$f" || fail "$u: no dedicated User="
    else
      fail "missing $unitdir/$u"
    fi
    expected="$expected $unitdir/$u"
  done
  # Nothing but what we expect (no test binaries, no sink, no headers).
  actual=$(cd "$dir" && find . -type f | sed 's|^\./||' | sort)
  want=$(for f in $expected; do echo "$f"; done | sort)
  if [ "$actual" != "$want" ]; then
    fail "unexpected files in $dir:"
    echo "$actual" | grep -vxF "$want" >&2 || true
  fi
}

# A package build: --prefix /usr.
if install_into /usr "$stage/usr-root"; then
  check_tree "$stage/usr-root" usr/bin etc usr/lib/systemd/system
  [ -e "$stage/usr-root/usr/etc" ] && fail "config installed under usr/etc"
  # The staged program runs (it is the real binary, not a stub).
  out=$("$stage/usr-root/usr/bin/sendonce-publisher" --version 2>&1) ||
    fail "installed sendonce-publisher --version failed: $out"
  case "$out" in
    *[0-9].[0-9]*) ;;
    *) fail "installed sendonce-publisher --version printed: $out" ;;
  esac
fi

# A local build: everything under the prefix, config in <prefix>/etc.
if install_into /opt/sendonce "$stage/opt-root"; then
  check_tree "$stage/opt-root" opt/sendonce/bin opt/sendonce/etc \
    opt/sendonce/lib/systemd/system
fi

if [ "$failures" -ne 0 ]; then
  echo "install_check: $failures failure(s)" >&2
  exit 1
fi
echo "install_check: ok"
