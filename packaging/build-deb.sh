#!/usr/bin/env bash
# npm run deb: builds doorman_<version>_<arch>.deb with dpkg-deb from this
# checkout, and prints the file's path as its last line.
#
#   bash packaging/build-deb.sh [--out DIR]     (default DIR: the repository)
#
# The package carries everything it runs on, so installing it downloads
# nothing: the compiled program, its production dependencies (npm ci
# --omit=dev, from npm's cache when it has them), the dashboard, the country
# database, and a Node.js runtime — the node that runs this script, or
# $DOORMAN_NODE — because Debian 12's nodejs (18) is too old for Doorman.
# README's "Install on Debian" gives the cost in size.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=${2:?--out needs a directory}; shift 2 ;;
	*) echo "build-deb: unknown argument $1 (usage: build-deb.sh [--out DIR])" >&2; exit 2 ;;
	esac
done

fail() { echo "build-deb: $*" >&2; exit 1; }
command -v dpkg-deb >/dev/null || fail "dpkg-deb not found (Debian package dpkg)"
node_bin=$(readlink -f "${DOORMAN_NODE:-$(command -v node)}")
[ -x "$node_bin" ] || fail "no node to package (set DOORMAN_NODE)"
# package.json's engines: ^20.19.0 || >=22.12.0
"$node_bin" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)' \
	|| fail "$node_bin is Node $("$node_bin" --version); the package needs 20.19+ or 22.12+"
node_license=""
for f in "$(dirname "$node_bin")/../share/doc/nodejs/LICENSE" "$(dirname "$node_bin")/../LICENSE" /usr/share/doc/nodejs/LICENSE; do
	if [ -f "$f" ]; then node_license=$f; break; fi
done
[ -n "$node_license" ] || fail "cannot find the LICENSE of $node_bin, which the package must carry"

version=$(node -p "require('$repo/package.json').version")
arch=$(dpkg --print-architecture)
deb="$out/doorman_${version}_${arch}.deb"
mkdir -p "$out"

# Files get the time of the last commit, so two builds of one commit are alike.
SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

(cd "$repo" && npx --no-install tsc -b) || fail "the TypeScript build failed"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
lib=$root/usr/lib/doorman
doc=$root/usr/share/doc/doorman
install -d -m 0755 "$lib/bin" "$root/usr/bin" "$root/etc/doorman" "$root/lib/systemd/system" "$doc" "$root/DEBIAN"

# The program: dist/src without its tests, the dashboard, package.json (the version).
cp -R "$repo/dist/src" "$lib/dist-src"
install -d "$lib/dist" && mv "$lib/dist-src" "$lib/dist/src"
find "$lib/dist" \( -name '*.test.js' -o -name '*.test.d.ts' -o -name '*.map' \) -delete
cp -R "$repo/dashboard" "$lib/dashboard"
cp "$repo/package.json" "$repo/package-lock.json" "$lib/"
(cd "$lib" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >/dev/null) \
	|| fail "npm ci --omit=dev failed in $lib"
rm -f "$lib/package-lock.json"
# Type declarations and source maps are for developers, not for the daemon.
find "$lib/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete

# The runtime, without its debugging symbols (99 MB → 86 MB for Node 20).
if command -v strip >/dev/null; then
	strip --strip-unneeded -o "$lib/bin/node" "$node_bin"
else
	cp "$node_bin" "$lib/bin/node"
fi
chmod 0755 "$lib/bin/node"
"$lib/bin/node" -e 'process.exit(0)' || fail "the packaged node does not run"

install -m 0755 "$repo/packaging/doorman.sh" "$root/usr/bin/doorman"
install -m 0644 "$repo/packaging/doorman.yaml" "$root/etc/doorman/doorman.yaml"
install -m 0644 "$repo/contrib/doorman.service" "$root/lib/systemd/system/doorman.service"

# Documentation, and every licence of what the package carries.
install -m 0644 "$repo/README.md" "$repo/doorman.example.yaml" "$doc/"
gzip -9n -c "$repo/CHANGELOG.md" > "$doc/changelog.gz"
if [ -d "$repo/contrib/grafana" ] || [ -d "$repo/contrib/prometheus" ] || [ -d "$repo/contrib/haproxy" ] || [ -d "$repo/contrib/crowdsec" ]; then
	install -d "$doc/examples"
	for d in grafana prometheus haproxy crowdsec; do
		if [ -d "$repo/contrib/$d" ]; then cp -R "$repo/contrib/$d" "$doc/examples/"; fi
	done
fi
{
	cat "$repo/packaging/debian/copyright"
	printf '\nFiles: usr/lib/doorman/bin/node\nComment: Node.js %s\nLicense: Node.js\n' "$("$node_bin" --version)"
	sed 's/^$/./; s/^/ /' "$node_license"
	(cd "$lib/node_modules" && find . -mindepth 1 -maxdepth 3 -name package.json -not -path '*/node_modules/*/node_modules/*' | sort) | while read -r pj; do
		dir=$(dirname "$pj")
		name_license=$("$node_bin" -e 'const p = require(process.argv[1]); if (p.name && p.version) console.log(`${p.name} ${p.version}\t${typeof p.license === "string" ? p.license : "see below"}`)' "$lib/node_modules/$pj")
		[ -n "$name_license" ] || continue
		printf '\nFiles: usr/lib/doorman/node_modules/%s/*\nComment: %s\nLicense: %s\n' "${dir#./}" "${name_license%%	*}" "${name_license#*	}"
		for lf in "$lib/node_modules/$dir"/LICEN[CS]E* "$lib/node_modules/$dir"/licen[cs]e*; do
			if [ -f "$lf" ]; then sed 's/^$/./; s/^/ /' "$lf"; break; fi
		done
	done
} > "$doc/copyright"

installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
	"$repo/packaging/debian/control.in" > "$root/DEBIAN/control"
install -m 0644 "$repo/packaging/debian/conffiles" "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$repo/packaging/debian/$s" "$root/DEBIAN/$s"; done

# Directories 0755, files as installed above; everything owned by root.
find "$root" -type d -exec chmod 0755 {} +
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null || fail "dpkg-deb failed"
echo "build-deb: $(du -h "$deb" | cut -f1) packed, ${installed_size} KiB installed" >&2
echo "$deb"
