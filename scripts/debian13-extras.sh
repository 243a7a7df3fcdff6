#!/usr/bin/env bash
# Debian 13 programs that some tests run from the Debian 13 root
# (scripts/debian13-root.sh) without installing them there, so that the
# root's package set stays what the other tests expect: each is downloaded
# with the root's own apt and unpacked under ROOT/opt/doorman-NAME-VERSION.
#
#   scripts/debian13-extras.sh     # unpacks what is missing; reuses the rest
#
#   nginx 1.26 with its mail module  → ROOT/opt/doorman-nginx-1.26 (test/helpers/nginx.ts)
set -euo pipefail

ROOT="${DOORMAN_DEBIAN13_ROOT:-/var/cache/doorman/debian13}"
ROOT="${ROOT%/}"
die() { echo "debian13-extras: FAILED: $*" >&2; exit 1; }
say() { echo "debian13-extras: $*"; }

[ -f "$ROOT/.doorman-stamp" ] || die "no Debian 13 root at $ROOT (run scripts/debian13-root.sh first)"
[ "$(id -u)" -eq 0 ] || die "must run as root (chroot)"

# unpack NAME PACKAGE...: downloads the packages in the root and unpacks them
# into ROOT/opt/NAME, through NAME.partial so that a crash leaves nothing half made.
unpack() {
  local name=$1 dir="$ROOT/opt/$1" dl="/tmp/doorman-dl-$1"
  shift
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
  mv "$dir.partial" "$dir"
  say "unpacked /opt/$name: $(tr '\n' ' ' < "$dir/.doorman-packages")"
}

unpack doorman-nginx-1.26 nginx libnginx-mod-mail
