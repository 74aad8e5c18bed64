#!/usr/bin/env bash
# bench-base-images.sh - make the benchmark's base images as OCI layouts, cached (no push; the bench pushes them).
#
#   bench-base-images.sh CACHE_DIR busybox|busybox-arm64|debian
#
# Prints the OCI layout directory on stdout (tag = the image name). Reuses CACHE_DIR/<image>-<recipe> when complete.
#   busybox  /bin/busybox (busybox-static) + applet symlinks, /etc/passwd (root, nobody, app), /tmp 1777; Cmd ["sh"]
#   busybox-arm64  the same with Debian's aarch64 busybox-static (scripts/arm64-busybox.sh; never run here), arm64 config
#   debian   debootstrap --variant=minbase bookworm from $BENCH_DEBIAN_MIRROR (default http://deb.debian.org/debian),
#            slimmed like the official -slim images; Cmd ["bash"]. Takes a few minutes the first time.
# Adapted from /work/shared/tools/base-images.sh and test/support/images.ts. Needs root (debootstrap, chroot, owners).
set -euo pipefail
die() { echo "bench-base-images: $*" >&2; exit 1; }
[[ $# -eq 2 ]] || die "usage: $0 CACHE_DIR busybox|busybox-arm64|debian"
CACHE="$1"; IMG="$2"
MIRROR="${BENCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"; SUITE=bookworm
[[ $EUID -eq 0 ]] || die "run as root (debootstrap and file ownership need it)"
for c in umoci; do command -v $c >/dev/null || die "$c missing (scripts/install-deps.sh)"; done
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
BB=/bin/busybox
case "$IMG" in
  busybox) RECIPE="busybox-v1-$(sha256sum /bin/busybox | cut -c1-12)";;
  busybox-arm64)
    BB=$(bash "$(dirname "$0")/arm64-busybox.sh" "$CACHE/arm64-busybox/busybox") || die "no aarch64 busybox (scripts/arm64-busybox.sh)"
    ARCH=arm64; RECIPE="busybox-arm64-v1-$(sha256sum "$BB" | cut -c1-12)";;
  debian)  RECIPE="debian-$SUITE-minbase-v1";;
  *) die "unknown image $IMG";;
esac
OUT="$CACHE/$RECIPE"
if [[ -f "$OUT/index.json" ]]; then echo "$OUT"; exit 0; fi
mkdir -p "$CACHE"
TMP="$(mktemp -d "$CACHE/.tmp-$IMG-XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
L="$TMP/oci"; B="$TMP/bundle"; R="$B/rootfs"
umoci init --layout "$L" >&2
TAG=${IMG%-arm64}
umoci new --image "$L:$TAG" >&2
umoci unpack --image "$L:$TAG" "$B" >/dev/null

if [[ $TAG == busybox ]]; then
  [[ -x /bin/busybox ]] || die "busybox-static missing"
  mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,root,home/app,tmp,var,dev,proc,sys}
  # the host's busybox lists the applets (Debian ships the same version for every architecture)
  install -m 0755 "$BB" "$R/bin/busybox"
  for rel in $(/bin/busybox --list-full); do
    [[ $rel == bin/busybox || $rel != */* ]] && continue
    mkdir -p "$R/$(dirname "$rel")"
    [[ -e "$R/$rel" || -L "$R/$rel" ]] || ln -s "$(realpath -m --relative-to="/$(dirname "$rel")" /bin/busybox)" "$R/$rel"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n' > "$R/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\napp:x:1000:\n' > "$R/etc/group"
  chmod 1777 "$R/tmp"; chmod 700 "$R/root"; chown 1000:1000 "$R/home/app"
  CMD=sh; BY="busybox-static + applet symlinks"
else
  command -v debootstrap >/dev/null || die "debootstrap missing"
  mkdir -p "$R/etc/dpkg/dpkg.cfg.d"
  cat > "$R/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  echo "bench-base-images: debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes, once)" >&2
  debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$R" "$MIRROR" > "$TMP/debootstrap.log" 2>&1 \
    || { tail -30 "$TMP/debootstrap.log" >&2; die "debootstrap failed"; }
  if grep -q " $R/" /proc/mounts; then die "something still mounted under $R"; fi
  find "$R/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$R/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$R"/usr/share/{man,groff,info,lintian,linda}/* 2>/dev/null || true
  find "$R/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb \
         "$R"/var/cache/apt/archives/partial/* "$R"/var/cache/debconf/*-old "$R"/var/lib/dpkg/*-old \
         "$R"/var/log/*.log "$R"/var/log/apt/* "$R"/debootstrap "$R"/tmp/* "$R"/var/tmp/*
  find "$R/dev" -mindepth 1 -delete
  : > "$R/etc/resolv.conf"; echo localhost > "$R/etc/hostname"; : > "$R/etc/machine-id"
  CMD=bash; BY="debootstrap --variant=minbase $SUITE (+slim cleanup)"
fi
umoci repack --image "$L:$TAG" --history.created_by "$BY" "$B" >&2
umoci config --image "$L:$TAG" --config.cmd "$CMD" \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --os linux --architecture "$ARCH" --history.created_by "CMD [\"$CMD\"]" >&2
umoci gc --layout "$L" >&2
rm -rf "$OUT"; mv "$L" "$OUT"
echo "$OUT"
