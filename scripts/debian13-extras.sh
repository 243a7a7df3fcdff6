#!/usr/bin/env bash
# Debian 13 programs that some tests run from the Debian 13 root
# (scripts/debian13-root.sh) without installing them there, so that the
# root's package set stays what the other tests expect: each is downloaded
# with the root's own apt and unpacked under ROOT/opt/doorman-NAME-VERSION.
#
#   scripts/debian13-extras.sh     # unpacks what is missing; reuses the rest
#
#   nginx 1.26 with its mail module  → ROOT/opt/doorman-nginx-1.26 (test/helpers/nginx.ts)
#   HAProxy 3.0 with the libraries the root lacks (jemalloc, opentracing)
#                                    → ROOT/opt/doorman-haproxy-3.0 (test/helpers/haproxy.ts),
#                                      run with LD_LIBRARY_PATH=/opt/doorman-haproxy-3.0/usr/lib/<triplet>
set -euo pipefail

ROOT="${DOORMAN_DEBIAN13_ROOT:-/var/cache/doorman/debian13}"
ROOT="${ROOT%/}"
die() { echo "debian13-extras: FAILED: $*" >&2; exit 1; }
say() { echo "debian13-extras: $*"; }

[ -f "$ROOT/.doorman-stamp" ] || die "no Debian 13 root at $ROOT (run scripts/debian13-root.sh first)"
[ "$(id -u)" -eq 0 ] || die "must run as root (chroot)"

# unpack NAME CHECK PACKAGE...: downloads the packages in the root and unpacks
# them into ROOT/opt/NAME, through NAME.partial so that a crash leaves nothing
# half made. CHECK (a function, or true) is given the partial dir before it is
# renamed: a tree that cannot run is never reused.
unpack() {
  local name=$1 check=$2 dir="$ROOT/opt/$1" dl="/tmp/doorman-dl-$1"
  shift 2
  if [ -f "$dir/.doorman-packages" ]; then
    say "reusing /opt/$name: $(tr '\n' ' ' < "$dir/.doorman-packages")"
    return
  fi
  rm -rf "$dir.partial" "$ROOT$dl"
  mkdir -p "$ROOT$dl" "$dir.partial"
  if ! chroot "$ROOT" sh -c "cd $dl && apt-get download $*" >/dev/null 2>&1; then
    say "apt-get download failed; updating the root's package lists once"
    chroot "$ROOT" apt-get update -q >/dev/null || die "apt-get update in $ROOT"
    chroot "$ROOT" sh -c "cd $dl && apt-get download $*" >/dev/null || die "apt-get download $* in $ROOT"
  fi
  for deb in "$ROOT$dl"/*.deb; do
    dpkg-deb -x "$deb" "$dir.partial"
    echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >> "$dir.partial/.doorman-packages"
  done
  rm -rf "$ROOT$dl"
  "$check" "$dir.partial" || die "/opt/$name.partial does not run from $ROOT; left there for a look"
  mv "$dir.partial" "$dir"
  say "unpacked /opt/$name: $(tr '\n' ' ' < "$dir/.doorman-packages")"
}

# The unpacked libraries' dir (usr/lib/x86_64-linux-gnu on amd64), as the root sees it.
libdir_in() {
  local d
  for d in "$1"/usr/lib/*-linux-*; do [ -d "$d" ] && echo "${d#"$ROOT"}"; done
}

# HAProxy must start from the root with only the unpacked libraries added, and
# have the Lua the refusal service needs.
haproxy_runs() {
  local out
  out=$(chroot "$ROOT" env LD_LIBRARY_PATH="$(libdir_in "$1")" "${1#"$ROOT"}/usr/sbin/haproxy" -vv 2>&1) ||
    { echo "$out" >&2; return 1; }
  grep -q '+LUA' <<<"$out" || { echo "haproxy -vv does not say +LUA" >&2; return 1; }
}

unpack doorman-nginx-1.26 true nginx libnginx-mod-mail
# haproxy's dependencies that a minbase root with Postfix and Dovecot lacks
# (libc, libcrypt, liblua5.4, libpcre2, libssl are there): haproxy_runs fails
# the run, naming the missing library, should a point release need another.
unpack doorman-haproxy-3.0 haproxy_runs haproxy libjemalloc2 libopentracing-c-wrapper0t64 libopentracing1
