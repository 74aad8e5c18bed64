#!/usr/bin/env bash
# demo.sh - the README's first command: start a registry on 127.0.0.1 (ephemeral port), build a busybox
# base image with builder from Debian's static busybox, build examples/hello on it, push both, check the
# result with skopeo and umoci, run the image's entrypoint in a chroot of the unpacked tree, stop the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[[ -f dist/src/cli/main.js ]] || npx tsc -p tsconfig.json

work="$(mktemp -d /tmp/builder-demo.XXXXXX)"
port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
reg="127.0.0.1:$port"
cat > "$work/registry.yml" <<YML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $work/registry }, delete: { enabled: true } }
http: { addr: $reg }
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
regpid=$!
cleanup() { kill "$regpid" 2>/dev/null || true; wait "$regpid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "http://$reg/v2/" >/dev/null && break; sleep 0.1; done
echo "== registry on http://$reg"

builder() { node bin/builder "$@" --cache-dir "$work/cache" --work-dir "$work/tmp"; }

echo "== 1. build a busybox base image (FROM scratch) and push it to $reg/library/busybox:latest"
cp -r examples/busybox-base "$work/busybox-base"
cp /bin/busybox "$work/busybox-base/busybox"
builder --context "$work/busybox-base" --dockerfile "$work/busybox-base/Dockerfile" --destination "$reg/library/busybox:latest"

echo "== 2. build examples/hello on it and push $reg/hello:latest"
builder --context examples/hello --dockerfile examples/hello/Dockerfile \
  --build-arg "BASE=$reg/library/busybox" --destination "$reg/hello:latest" --destination "$reg/hello:v1" \
  --digest-file "$work/digest"

echo "== 3. what the registry holds, read by skopeo"
skopeo inspect --tls-verify=false "docker://$reg/hello:v1" | jq '{Digest, Layers: (.Layers|length)}'
skopeo inspect --tls-verify=false --config "docker://$reg/hello:v1" | jq -c '.config'

echo "== 4. unpack with umoci and run the entrypoint in a chroot"
skopeo copy -q --src-tls-verify=false "docker://$reg/hello:v1" "oci:$work/oci:hello"
umoci unpack --image "$work/oci:hello" "$work/bundle" >/dev/null
env -i GREETING="hello from builder" /usr/sbin/chroot --userspec=1234:1234 "$work/bundle/rootfs" /app/bin/greet.sh demo
echo "== done: image $(cat "$work/digest")"
