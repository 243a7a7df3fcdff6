#!/usr/bin/env bash
# Builds, once, a minimal Debian 13 (trixie) root holding Postfix 3.10 and
# Dovecot 2.4, for the integration tests' second mail-server generation
# (test/helpers/postfix.ts and dovecot.ts run them with `chroot ROOT ...`).
#
#   scripts/debian13-root.sh        # builds or reuses; prints the versions
#
# ROOT is $DOORMAN_DEBIAN13_ROOT, default /var/cache/doorman/debian13. Needs
# root; installs debootstrap on the host if it is missing.
#
# Crash-safe: the root is built in ROOT.partial and renamed to ROOT only when
# complete, with the stamp file ROOT/.doorman-stamp listing the versions. A
# ROOT with a stamp is reused as is; a ROOT.partial left by a crash is thrown
# away (after unmounting whatever is mounted inside it) and built again. A lock
# (ROOT.lock) makes a second run wait for the first.
#
# Nothing in the root starts on its own: usr/sbin/policy-rc.d answers 101
# ("action forbidden") to every package script that would start a service,
# and the system Postfix is left unconfigured (debconf "No configuration").
#
# The tests mount proc at ROOT/proc when they first need it and leave it
# mounted (test/helpers/debian13.ts): to throw the root away, run
# `umount ROOT/proc` before `rm -rf --one-file-system ROOT`.
set -euo pipefail

ROOT="${DOORMAN_DEBIAN13_ROOT:-/var/cache/doorman/debian13}"
ROOT="${ROOT%/}"
SUITE=trixie
STAMP="$ROOT/.doorman-stamp"
PACKAGES=(postfix dovecot-imapd dovecot-pop3d)
# Installed in the root but not asked for: listed in the stamp all the same.
STAMPED=(postfix dovecot-core dovecot-imapd dovecot-pop3d)

die() {
  echo "debian13-root: FAILED: $*" >&2
  exit 1
}
say() { echo "debian13-root: $*"; }

# The fast path, without the lock: a complete root is never changed again.
if [ -f "$STAMP" ]; then
  say "reusing $ROOT"
  sed 's/^/  /' "$STAMP"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot need it)"
case "$ROOT" in
  /*) ;;
  *) die "DOORMAN_DEBIAN13_ROOT must be an absolute path, not '$ROOT'" ;;
esac
if [ -e "$ROOT" ]; then
  die "$ROOT exists but has no $STAMP, so it was not made (completely) by this script; remove it or point DOORMAN_DEBIAN13_ROOT elsewhere"
fi

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
if ! flock -n 9; then
  say "another run is building $ROOT; waiting for it (up to 30 minutes)"
  flock -w 1800 9 || die "still locked by another run after 30 minutes ($ROOT.lock)"
fi
# The other run may have finished it meanwhile.
if [ -f "$STAMP" ]; then
  say "reusing $ROOT (built by another run just now)"
  sed 's/^/  /' "$STAMP"
  exit 0
fi

PARTIAL="$ROOT.partial"

# Unmounts everything mounted at or below $1, deepest first.
unmount_below() {
  local dir="$1" m
  # /proc/self/mounts escapes spaces as \040; our paths have none.
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r)
}

discard_partial() {
  [ -e "$PARTIAL" ] || return 0
  unmount_below "$PARTIAL"
  # --one-file-system: never descend into something still mounted in there.
  rm -rf --one-file-system "$PARTIAL"
}

if [ -e "$PARTIAL" ]; then
  say "removing $PARTIAL left by an earlier run that did not finish"
  discard_partial
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap on the host"
  # Another apt may hold the dpkg lock for a while: wait for it rather than fail.
  if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y debootstrap; then
    apt-get -o DPkg::Lock::Timeout=600 update
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y debootstrap ||
      die "could not install debootstrap on the host"
  fi
fi

started=$SECONDS
trap 'unmount_below "$PARTIAL"' EXIT
trap 'die "interrupted; $PARTIAL is left and will be removed by the next run"' INT TERM

say "building Debian 13 ($SUITE) in $PARTIAL (debootstrap --variant=minbase; takes minutes)"
debootstrap --variant=minbase "$SUITE" "$PARTIAL" >"$ROOT.debootstrap.log" 2>&1 ||
  die "debootstrap $SUITE failed; the last lines of $ROOT.debootstrap.log:
$(tail -n 20 "$ROOT.debootstrap.log")"

# Refuse to start any service while packages install (and ever after).
printf '#!/bin/sh\n# Written by doorman scripts/debian13-root.sh: tests start private instances themselves.\nexit 101\n' \
  >"$PARTIAL/usr/sbin/policy-rc.d"
chmod 755 "$PARTIAL/usr/sbin/policy-rc.d"

mountpoint -q "$PARTIAL/proc" || mount -t proc proc "$PARTIAL/proc" || die "cannot mount proc in $PARTIAL/proc"

echo "postfix postfix/main_mailer_type select No configuration" | chroot "$PARTIAL" debconf-set-selections ||
  die "debconf-set-selections in the root failed"
say "installing ${PACKAGES[*]} in the root"
chroot "$PARTIAL" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}" \
  >"$ROOT.apt.log" 2>&1 ||
  die "apt-get install ${PACKAGES[*]} in the root failed; the last lines of $ROOT.apt.log:
$(tail -n 20 "$ROOT.apt.log")"
chroot "$PARTIAL" apt-get clean

for p in "${STAMPED[@]}"; do
  [ "$(chroot "$PARTIAL" dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = 'install ok installed' ] ||
    die "$p is not installed in the root after apt-get install"
done

unmount_below "$PARTIAL"
{
  echo "suite $SUITE, built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((SECONDS - started)) s"
  for p in "${STAMPED[@]}"; do
    chroot "$PARTIAL" dpkg-query -W -f='${Package} ${Version}\n' "$p"
  done
} >"$PARTIAL/.doorman-stamp.new"
mv "$PARTIAL/.doorman-stamp.new" "$PARTIAL/.doorman-stamp"
sync -f "$PARTIAL/.doorman-stamp" 2>/dev/null || sync
mv -T "$PARTIAL" "$ROOT"
rm -f "$ROOT.debootstrap.log" "$ROOT.apt.log"
trap - EXIT INT TERM

say "built $ROOT in $((SECONDS - started)) s"
sed 's/^/  /' "$STAMP"
