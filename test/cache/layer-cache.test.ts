// Layer-cache entries as images (assembleImage, then the shared writers): what an entry's manifest records, and an
// entry in an OCI layout read back by builder and by skopeo.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CACHE_ANNOTATION, entryImage, ociLayerCache, readEntry, type CacheEntry } from '../../src/cache/index.js';
import { sha256 } from '../../src/digest/index.js';
import { fileLayer, MediaType, parseConfig } from '../../src/image/index.js';
import { run } from '../support/tools.js';

const KEY = 'a'.repeat(64);
const platform = { os: 'linux', architecture: 'arm64', variant: 'v8' };
let dir: string;
let entry: CacheEntry;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'layer-cache-'));
  // a one-file layer made by GNU tar, gzip'd
  await writeFile(path.join(dir, 'hello.txt'), 'hello\n');
  await run('tar', ['-cf', path.join(dir, 'layer.tar'), '-C', dir, 'hello.txt']);
  const tar = await readFile(path.join(dir, 'layer.tar'));
  const gz = gzipSync(tar);
  const file = path.join(dir, 'layer.tar.gz');
  await writeFile(file, gz);
  entry = {
    key: KEY, step: 'RUN echo hello > /hello.txt', created: '2026-12-01T00:00:00.000Z', parent: '',
    // a Docker-typed layer with an extra field: the entry records an OCI descriptor of digest and size only
    layer: fileLayer(file, { mediaType: MediaType.DockerLayerGzip, digest: sha256(gz), size: gz.length, annotations: { x: 'y' } }, sha256(tar)),
  };
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('entryImage', () => {
  it('is an OCI image of the one layer whose manifest records key, step, time, diff-id and parent', () => {
    const img = entryImage(entry, platform);
    const m = JSON.parse(img.manifestBytes.toString('utf8'));
    expect(img.mediaType).toBe(MediaType.OciManifest);
    expect(img.manifestDigest).toBe(sha256(img.manifestBytes));
    expect(m.layers).toEqual([{ mediaType: MediaType.OciLayerGzip, digest: entry.layer!.descriptor.digest, size: entry.layer!.descriptor.size }]);
    expect(m.config).toEqual({ mediaType: MediaType.OciConfig, digest: sha256(img.configBytes), size: img.configBytes.length });
    expect(m.annotations).toEqual({
      [CACHE_ANNOTATION.key]: KEY, [CACHE_ANNOTATION.step]: entry.step, [CACHE_ANNOTATION.created]: entry.created, [CACHE_ANNOTATION.parent]: '',
      [CACHE_ANNOTATION.diffId]: entry.layer!.diffId, [CACHE_ANNOTATION.layer]: entry.layer!.descriptor.digest,
    });
    const config = parseConfig(img.configBytes);
    expect(config.rootfs.diff_ids).toEqual([entry.layer!.diffId]);
    expect(config.history).toEqual([{ created: entry.created, created_by: entry.step }]);
    expect(config.config.Labels?.[CACHE_ANNOTATION.key]).toBe(KEY);
    // the entry's platform is its os and architecture only (as entries always were)
    expect(config.variant).toBeUndefined();
  });

  it('reads back as the same entry; a step that changed nothing is an empty layer in the history', () => {
    const back = readEntry(entryImage(entry, platform).manifestBytes, KEY, new Date('2026-12-02T00:00:00Z'), 3600_000 * 48);
    expect(back).toEqual({
      ok: true, step: entry.step, created: entry.created, parent: '',
      layer: { descriptor: { mediaType: MediaType.OciLayerGzip, digest: entry.layer!.descriptor.digest, size: entry.layer!.descriptor.size }, diffId: entry.layer!.diffId },
    });
    const { layer: _l, ...empty } = entry;
    const img = entryImage(empty, platform);
    expect(img.manifest.layers).toEqual([]);
    expect(parseConfig(img.configBytes).history).toEqual([{ created: entry.created, created_by: entry.step, empty_layer: true }]);
  });
});

describe('ociLayerCache', () => {
  it('stores an entry that builder looks up and skopeo reads as an image of its key', async () => {
    const layout = path.join(dir, 'layout');
    const cache = ociLayerCache(layout, 3600_000 * 24 * 365 * 10);
    await cache.store(entry, platform);
    const hit = await cache.lookup(KEY, new Date('2026-12-02T00:00:00Z'));
    expect(hit.kind).toBe('hit');
    if (hit.kind !== 'hit') return;
    const chunks: Buffer[] = [];
    for await (const c of await hit.entry.layer!.open()) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(await readFile(path.join(dir, 'layer.tar.gz')))).toBe(true);
    const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', `oci:${layout}:${KEY}`])).stdout);
    expect(raw).toEqual(entryImage(entry, platform).manifest);
    const inspected = JSON.parse((await run('skopeo', ['inspect', `oci:${layout}:${KEY}`])).stdout);
    expect(inspected.Labels[CACHE_ANNOTATION.step]).toBe(entry.step);
    expect(inspected.Layers).toEqual([entry.layer!.descriptor.digest]);
    expect((await cache.list()).map((e) => e.key)).toEqual([KEY]);
  });
});
