#!/usr/bin/env bash
# arm64-busybox.sh DEST - put Debian's aarch64 busybox-static binary at DEST (a second platform for the tests).
# Idempotent: DEST already holding an aarch64 ELF is kept. Adds the arm64 dpkg architecture (never runs the binary,
# never registers binfmt handlers). Needs root + apt-get the first time; fails with a clear message otherwise.
set -euo pipefail
dest=${1:?usage: arm64-busybox.sh DEST}
is_aarch64() { [[ -f $1 ]] && [[ $(od -An -tx1 -j18 -N2 "$1" | tr -d ' \n') == b700 ]]; }
if is_aarch64 "$dest"; then echo "$dest"; exit 0; fi
fail() { echo "arm64-busybox: $*" >&2; exit 1; }
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || fail "needs Debian's apt-get and dpkg-deb to fetch busybox-static:arm64"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  [[ $EUID -eq 0 ]] || fail "the arm64 dpkg architecture is not enabled; as root run: dpkg --add-architecture arm64 && apt-get update"
  dpkg --add-architecture arm64
  apt-get update -qq >&2 || fail "apt-get update failed after adding arm64 (network or mirror without arm64?)"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download -qq busybox-static:arm64 >&2); then
  [[ $EUID -eq 0 ]] || fail "apt-get download busybox-static:arm64 failed; as root run: apt-get update"
  apt-get update -qq >&2 || fail "apt-get update failed"
  (cd "$tmp" && apt-get download -qq busybox-static:arm64 >&2) || fail "apt-get download busybox-static:arm64 failed (does the mirror carry arm64?)"
fi
dpkg-deb -x "$tmp"/busybox-static_*_arm64.deb "$tmp/root"
is_aarch64 "$tmp/root/bin/busybox" || fail "the package's bin/busybox is not an aarch64 ELF"
mkdir -p "$(dirname "$dest")"
cp "$tmp/root/bin/busybox" "$dest.tmp.$$" && chmod 755 "$dest.tmp.$$" && mv "$dest.tmp.$$" "$dest"
echo "$dest"
