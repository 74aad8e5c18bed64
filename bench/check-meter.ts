// Self-check of the bench's blob meter against a real registry: `node dist/bench/check-meter.js` (exit 1 on a wrong count).
// A chunked upload, a one-PUT upload, a manifest naming the second blob as its config, a download and a mount: every
// number the cached-rebuild table prints is checked once.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startBlobMeter, startRegistry, type BlobCounts } from './support/registry.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-meter-'));
  const reg = await startRegistry(dir);
  const meter = await startBlobMeter(reg.host);
  const base = `http://${meter.host}/v2`;
  const failures: string[] = [];
  const expect = (what: string, got: Partial<BlobCounts>, want: Partial<BlobCounts>): void => {
    for (const [k, v] of Object.entries(want)) {
      if (got[k as keyof BlobCounts] !== v) failures.push(`${what}: ${k} = ${got[k as keyof BlobCounts]}, want ${v}`);
    }
  };
  try {
    const layer = randomBytes(1 << 20);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    // Chunked: POST, PATCH with the bytes, PUT ?digest= with no body.
    const start = await fetch(`${base}/m/a/blobs/uploads/`, { method: 'POST' });
    const loc = new URL(start.headers.get('location')!, `http://${meter.host}`);
    const patch = await fetch(loc, { method: 'PATCH', body: layer, headers: { 'content-type': 'application/octet-stream' } });
    const put = new URL(patch.headers.get('location')!, `http://${meter.host}`);
    put.searchParams.set('digest', sha(layer));
    if ((await fetch(put, { method: 'PUT' })).status !== 201) throw new Error('chunked upload failed');
    // Monolithic: POST, then PUT ?digest= with the bytes (distribution 2.8 answers a POST with a body with 202 and drops it).
    const start2 = await fetch(`${base}/m/a/blobs/uploads/`, { method: 'POST' });
    const put2 = new URL(start2.headers.get('location')!, `http://${meter.host}`);
    put2.searchParams.set('digest', sha(config));
    const mono = await fetch(put2, { method: 'PUT', body: config, headers: { 'content-type': 'application/octet-stream' } });
    if (mono.status !== 201) throw new Error(`monolithic upload failed: ${mono.status}`);
    const manifest = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(layer), size: layer.length }] });
    const mput = await fetch(`${base}/m/a/manifests/v1`, { method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
    if (mput.status !== 201) throw new Error(`manifest push failed: ${mput.status} ${await mput.text()}`);
    expect('after pushing', meter.counts(), { blobUp: layer.length + config.length, layerUp: layer.length, blobPuts: 2, mounts: 0, manifestUp: manifest.length });

    meter.reset();
    await (await fetch(`${base}/m/a/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).arrayBuffer();
    await (await fetch(`${base}/m/a/blobs/${sha(config)}`)).arrayBuffer();
    await (await fetch(`${base}/m/a/blobs/${sha(layer)}`)).arrayBuffer();
    await fetch(`${base}/m/a/blobs/${sha(layer)}`, { method: 'HEAD' });
    const mount = await fetch(`${base}/m/b/blobs/uploads/?mount=${sha(layer)}&from=m/a`, { method: 'POST' });
    if (mount.status !== 201) throw new Error(`mount failed: ${mount.status}`);
    expect('after pulling', meter.counts(), { blobDown: layer.length + config.length, layerDown: layer.length, blobGets: 2, blobUp: 0, mounts: 1, manifestDown: manifest.length });
  } finally {
    await meter.stop();
    await reg.stop();
    await rm(dir, { recursive: true, force: true });
  }
  if (failures.length > 0) {
    process.stderr.write(`blob meter: WRONG\n${failures.join('\n')}\n`);
    process.exit(1);
  }
  process.stdout.write('blob meter: every count right (chunked and one-PUT uploads, configs told apart, downloads, mounts)\n');
}

main().catch((err) => {
  process.stderr.write(`check-meter: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
