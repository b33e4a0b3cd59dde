#!/usr/bin/env bash
# The one machine set-up for Debian 12, used by the README and by .ci/run: every Debian package the demo and the
# tests use, then the project's npm dependencies. Idempotent: installed packages are not fetched again, and
# `npm ci` runs only when package-lock.json changed since the last completed set-up. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

# squashfs-tools: images (mksquashfs, unsquashfs); erofs-utils: the erofs image inspection refuses; systemd:
# systemd-sysext, systemd-analyze; systemd-container: systemd-nspawn for the end-to-end tests; dbus: private bus
# daemons; util-linux: unshare, nsenter, script, setpriv and flock (the store lock); containerd + runc: real
# containers for the canary and `containerd config dump` for the registration; libsystemd-dev, gcc, g++, make,
# python3: the journald addon and the preflight's C helpers; libc6-dev: the static C library the canary program
# links (gcc -static); attr: getfattr for fixtures; openssl: a test CA for the https tests; curl: the fetch
# benchmark's baseline; ca-certificates: https to the npm registry.
PACKAGES=(
  squashfs-tools erofs-utils systemd systemd-container dbus util-linux containerd runc
  libsystemd-dev gcc g++ make libc6-dev python3 attr openssl curl ca-certificates
)
# Only when the machine has no npm at all: Debian's own Node.js runs npm; the project's Node 24 comes from npm.
command -v npm >/dev/null || PACKAGES+=(nodejs npm)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-debian.sh: run as root (it installs Debian packages; the tests mount and unshare)" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-debian.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# npm ci again only when package-lock.json changed since the last set-up that completed (its digest is kept in
# node_modules, which npm ci replaces as a whole).
stamp=node_modules/.setup-debian.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  npm ci
  echo "$want" >"$stamp"
fi
