#!/usr/bin/env bash
# install-deps.sh - install the Debian packages the tests and benchmarks need, when missing.
# Idempotent; needs root + apt-get (a fresh CI machine of this kind). Fails with a clear message otherwise.
set -euo pipefail
want=(docker-registry:docker-registry skopeo:skopeo umoci:umoci buildah:buildah
      busybox-static:/bin/busybox apache2-utils:htpasswd openssl:openssl bubblewrap:bwrap
      debootstrap:debootstrap jq:jq curl:curl time:/usr/bin/time libcap2-bin:setcap python3:python3
      gcc:gcc libc6-dev:/usr/include/stdio.h crun:crun patchelf:patchelf bzip2:bzip2 xz-utils:xz zstd:zstd)
missing=()
for pair in "${want[@]}"; do
  pkg=${pair%%:*}; bin=${pair#*:}
  if [[ $bin == /* ]]; then [[ -e $bin ]] || missing+=("$pkg")
  else command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg"); fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: missing Debian packages: ${missing[*]}" >&2
  echo "install-deps: run as root on Debian/Ubuntu, or install them yourself: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
