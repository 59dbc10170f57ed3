#!/usr/bin/env bash
# make package: the Debian packages of a build tree (debhelper, from tools/deploy/debian),
# written to BUILD/packages/: relay-server, relay-tools, librelay-node0, librelay-node-dev
# (and their -dbgsym). Packaging compiles nothing: the packages hold the binaries the
# tests ran. Usage: scripts/package.sh BUILD_DIR [OUT_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: scripts/package.sh BUILD_DIR [OUT_DIR]}" && pwd)
out=${2:-$build/packages}
stage=$(mktemp -d /tmp/relay-package-XXXXXX)
trap 'rm -rf "$stage"' EXIT
# dpkg-buildpackage works in a source folder holding debian/ and writes beside it.
mkdir -p "$stage/relay/debian"
cp -r "$src/tools/deploy/debian/." "$stage/relay/debian/"
# The unit and the sysusers file, as debhelper takes them (it installs both and writes
# their maintainer script snippets).
cp "$src/tools/deploy/relay.sysusers" "$stage/relay/debian/relay-server.sysusers"
cp "$src/tools/deploy/relay-server.service" "$stage/relay/debian/relay-server.service"
version=$(dpkg-parsechangelog -l "$stage/relay/debian/changelog" -S Version)
built=$("$build/bin/relay-server" --version | awk '{print $2}')
[ "$version" = "$built" ] || {
  echo "package: debian/changelog says $version, the build is $built" >&2
  exit 1
}
# The libraries go to Debian's multiarch folder; a build tree configured before that
# was the default (CMAKE_INSTALL_LIBDIR=lib) is configured again (nothing is rebuilt).
libdir="lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)"
if ! grep -qx "CMAKE_INSTALL_LIBDIR:PATH=$libdir" "$build/CMakeCache.txt"; then
  cmake -S "$src" -B "$build" -DCMAKE_INSTALL_LIBDIR="$libdir" >/dev/null
fi
(cd "$stage/relay" && RELAY_BUILD="$build" dpkg-buildpackage -b -us -uc -d \
  >"$stage/build.log" 2>&1) || {
  tail -30 "$stage/build.log" >&2
  echo "package: dpkg-buildpackage failed" >&2
  exit 1
}
mkdir -p "$out"
rm -f "$out"/*.deb "$out"/*.ddeb
cp "$stage"/*.deb "$out"/
cp "$stage"/*.ddeb "$out"/ 2>/dev/null || true
echo "package: $(cd "$out" && ls *.deb | tr '\n' ' ')in $out"
