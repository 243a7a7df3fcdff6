#!/usr/bin/env bash
# CI's checks of the Debian package, on the CI machine itself (root):
#
#   bash packaging/check-package.sh install DEB   installs DEB with apt-get and checks the
#                                                 files, the user, --version, that nothing is
#                                                 enabled, that the daemon starts on the
#                                                 packaged configuration and serves the
#                                                 dashboard and /metrics, and that a
#                                                 reinstall keeps an edited conffile
#   bash packaging/check-package.sh remove        apt-get remove, then purge, checking what
#                                                 each leaves behind
#   bash packaging/check-package.sh debian13 DEB  the same package in the Debian 13 root:
#                                                 install, --version, serve, purge
#
# Between the two, npm test runs test/integration/deb-unit.test.ts against the
# installed unit. It refuses to touch a doorman package it did not install
# unless CI=true: purge deletes /etc/doorman and /var/lib/doorman.
set -euo pipefail

fail() { echo "check-package: FAILED: $*" >&2; exit 1; }
ok() { echo "check-package: ok: $*"; }
[ "$(id -u)" -eq 0 ] || fail "must run as root (it installs and purges the package)"
status() { dpkg-query -W -f='${db:Status-Abbrev}' doorman 2>/dev/null | tr -d ' ' || true; }

PACKAGED_FILES=(
	/usr/bin/doorman
	/usr/lib/doorman/bin/node
	/usr/lib/doorman/dist/src/cli/main.js
	/usr/lib/doorman/dashboard/index.html
	/usr/lib/doorman/node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb
	/usr/lib/doorman/package.json
	/etc/doorman/doorman.yaml
	/lib/systemd/system/doorman.service
	/usr/share/doc/doorman/README.md
	/usr/share/doc/doorman/copyright
	/usr/share/doc/doorman/changelog.gz
	/usr/share/doc/doorman/doorman.example.yaml
)

# serves URL PATTERN: the whole answer is fetched first, then searched. A
# `curl | grep -q` pipeline fails under pipefail whenever grep finds its line
# and exits before curl has written the rest (curl: (23) Failed writing body).
serves() {
	local body
	body=$(curl -fsS "$1") || return 1
	grep -q -- "$2" <<<"$body"
}

# Starts the installed daemon as the unit would (ExecStart as root, inside the
# unit's capability bounding set) on the packaged configuration; checks it
# drops to doorman and serves the dashboard and /metrics; stops it. With a
# root directory as $1, all of it inside that root (chroot).
serve_check() {
	local root=${1:-} in=() exec caps log pid i uid
	[ -z "$root" ] || in=(chroot "$root")
	exec=$(sed -n 's/^ExecStart=//p' "$root/lib/systemd/system/doorman.service")
	caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$root/lib/systemd/system/doorman.service" | tr 'A-Z ' 'a-z,' | sed 's/cap_/+/g')
	[ "$exec" = "/usr/bin/doorman serve --config /etc/doorman/doorman.yaml" ] || fail "unexpected ExecStart: $exec"
	log=$(mktemp)
	# shellcheck disable=SC2086
	"${in[@]}" setpriv --bounding-set "-all,$caps" --no-new-privs -- $exec >"$log" 2>&1 &
	pid=$!
	for i in $(seq 1 300); do
		grep -q '"msg":"doorman ready"' "$log" && break
		kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "the packaged daemon exited before it was ready"; }
		sleep 0.1
	done
	grep -q '"msg":"doorman ready"' "$log" || { cat "$log" >&2; kill "$pid"; fail "the packaged daemon was not ready within 30 s"; }
	uid=$("${in[@]}" id -u doorman)
	[ "$(stat -c %u "/proc/$pid")" = "$uid" ] || fail "the daemon runs as uid $(stat -c %u "/proc/$pid"), not doorman ($uid)"
	serves http://127.0.0.1:8025/ '<title>Doorman' || fail "the dashboard is not served at http://127.0.0.1:8025/"
	serves http://127.0.0.1:8025/metrics '^doorman_store_up 1$' || fail "/metrics does not say doorman_store_up 1"
	serves http://127.0.0.1:8025/api/status '"version":"' || fail "/api/status does not answer"
	kill -TERM "$pid"
	wait "$pid" || fail "the daemon did not exit cleanly on SIGTERM (log: $(tail -3 "$log"))"
	ok "${root:+$root: }the packaged daemon started on the packaged configuration, ran as doorman, served the dashboard and /metrics, and stopped on SIGTERM"
	rm -f "$log"
}

# apt-get -y ARGS..., quiet unless it fails.
apt() {
	local out
	out=$(DEBIAN_FRONTEND=noninteractive apt-get -y "$@" 2>&1) || { echo "$out" >&2; fail "apt-get $*"; }
}

install_check() {
	local deb=${1:?usage: check-package.sh install DEB}
	local version
	[ -f "$deb" ] || fail "$deb not found"
	if [ -n "$(status)" ] && [ "$(status)" != "un" ] && [ "${CI:-}" != "true" ]; then
		fail "a doorman package is already installed here; this check would purge it (set CI=true to allow)"
	fi
	version=$(dpkg-deb -f "$deb" Version)
	apt install "$(readlink -f "$deb")"
	[ "$(status)" = "ii" ] || fail "dpkg says $(status) after install"
	ok "apt-get install $(basename "$deb")"

	for f in "${PACKAGED_FILES[@]}"; do [ -e "$f" ] || fail "$f is missing"; done
	[ "$(dpkg-query -W -f='${Conffiles}' doorman | awk '{print $1}')" = /etc/doorman/doorman.yaml ] || fail "/etc/doorman/doorman.yaml is not the conffile"
	ok "files in place; /etc/doorman/doorman.yaml is a conffile"

	getent passwd doorman >/dev/null || fail "no doorman user"
	[ "$(id -u doorman)" -lt 1000 ] || fail "doorman is not a system user (uid $(id -u doorman))"
	[ "$(getent passwd doorman | cut -d: -f7)" = /usr/sbin/nologin ] || fail "doorman has a login shell"
	[ "$(stat -c '%U:%G %a' /var/lib/doorman)" = "doorman:doorman 750" ] || fail "/var/lib/doorman is $(stat -c '%U:%G %a' /var/lib/doorman)"
	[ "$(stat -c '%U:%G %a' /etc/doorman/doorman.yaml)" = "root:doorman 640" ] || fail "/etc/doorman/doorman.yaml is $(stat -c '%U:%G %a' /etc/doorman/doorman.yaml)"
	ok "system user doorman, /var/lib/doorman doorman:doorman 0750, configuration root:doorman 0640"

	[ "$(doorman --version)" = "$version" ] || fail "doorman --version says $(doorman --version), the package is $version"
	[ "$(doorman -V)" = "$version" ] || fail "doorman -V says $(doorman -V)"
	ok "doorman --version and -V say $version"

	if compgen -G '/etc/systemd/system/*.wants/doorman.service' >/dev/null; then fail "the package enabled doorman.service"; fi
	! pgrep -f /usr/lib/doorman/ >/dev/null || fail "the package started a daemon"
	ok "nothing enabled, nothing started"

	doorman config check --config /etc/doorman/doorman.yaml >/dev/null || fail "the packaged configuration does not pass doorman config check"
	serve_check

	echo "# an admin's edit" >> /etc/doorman/doorman.yaml
	apt install --reinstall "$(readlink -f "$deb")"
	grep -q "^# an admin's edit" /etc/doorman/doorman.yaml || fail "a reinstall overwrote the edited /etc/doorman/doorman.yaml"
	ok "a reinstall keeps the admin's edit of the conffile"
}

remove_check() {
	echo "ban 203.0.113.9" > /var/lib/doorman/kept-by-remove
	apt remove doorman
	[ "$(status)" = "rc" ] || fail "dpkg says $(status) after remove, not rc"
	for f in /usr/bin/doorman /usr/lib/doorman /lib/systemd/system/doorman.service; do [ ! -e "$f" ] || fail "$f is still there after remove"; done
	[ -f /etc/doorman/doorman.yaml ] || fail "remove deleted the configuration"
	[ -f /var/lib/doorman/kept-by-remove ] || fail "remove deleted the state"
	getent passwd doorman >/dev/null || fail "remove deleted the user"
	ok "remove: the program is gone; configuration, state and user stay"

	apt purge doorman
	[ -z "$(status)" ] || [ "$(status)" = "un" ] || fail "dpkg says $(status) after purge"
	for f in /etc/doorman /var/lib/doorman /usr/share/doc/doorman; do [ ! -e "$f" ] || fail "$f is still there after purge"; done
	! getent passwd doorman >/dev/null || fail "purge left the doorman user"
	! getent group doorman >/dev/null || fail "purge left the doorman group"
	! grep -q doorman <<<"$(dpkg-statoverride --list)" || fail "purge left a statoverride"
	ok "purge: configuration, state, user, group and statoverrides are gone"
}

# The same package on Debian 13, in the root scripts/debian13-root.sh built:
# dpkg -i, --version, the daemon on the packaged configuration, purge.
debian13_check() {
	local deb=${1:?usage: check-package.sh debian13 DEB} root=${DOORMAN_DEBIAN13_ROOT:-/var/cache/doorman/debian13} in
	[ -f "$root/.doorman-stamp" ] || fail "no Debian 13 root at $root (bash scripts/debian13-root.sh builds it)"
	in=(chroot "$root")
	mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
	cp "$deb" "$root/tmp/doorman.deb"
	"${in[@]}" dpkg -i /tmp/doorman.deb >/dev/null 2>&1 || { "${in[@]}" dpkg -i /tmp/doorman.deb; fail "dpkg -i on Debian 13"; }
	rm -f "$root/tmp/doorman.deb"
	[ "$("${in[@]}" doorman --version)" = "$(dpkg-deb -f "$deb" Version)" ] || fail "doorman --version on Debian 13"
	"${in[@]}" getent passwd doorman >/dev/null || fail "no doorman user on Debian 13"
	ok "Debian 13 ($(cat "$root/etc/debian_version")): dpkg -i, the doorman user, doorman --version"
	serve_check "$root"
	"${in[@]}" dpkg --purge doorman >/dev/null 2>&1 || fail "dpkg --purge on Debian 13"
	for f in /usr/bin/doorman /etc/doorman /var/lib/doorman; do [ ! -e "$root$f" ] || fail "$f is still in the Debian 13 root after purge"; done
	! "${in[@]}" getent passwd doorman >/dev/null || fail "purge left the doorman user on Debian 13"
	ok "Debian 13: purge leaves nothing"
}

case "${1:-}" in
install) install_check "${2:-}" ;;
remove) remove_check ;;
debian13) debian13_check "${2:-}" ;;
*) echo "usage: check-package.sh install DEB | remove | debian13 DEB" >&2; exit 2 ;;
esac
