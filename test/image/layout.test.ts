// Unit tests: platforms, OCI layout read/write (atomic, verified), location parsing.
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/digest/index.js';
import {
  formatPlatform, loadLayoutImage, MediaType, OciLayout, parsePlatform, platformFromNode, readOciLayout, selectPlatform, writeOciLayout,
  type Descriptor, type ImageData,
} from '../../src/image/index.js';
import { parseLocation } from '../../src/registry/index.js';

describe('platforms', () => {
  it('parses and formats', () => {
    expect(parsePlatform('linux/arm/v7')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(formatPlatform(parsePlatform('linux/amd64'))).toBe('linux/amd64');
    expect(() => parsePlatform('linux')).toThrow(/os\/arch/);
    expect(platformFromNode('x64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(platformFromNode('arm64')).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
  });
  const d = (architecture: string, variant?: string): Descriptor => ({
    mediaType: MediaType.OciManifest, digest: sha256(`${architecture}${variant ?? ''}`), size: 1, platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) },
  });
  const list = [d('amd64'), d('arm', 'v6'), d('arm', 'v7'), d('arm64')];
  it.each([
    ['linux/amd64', 0], ['linux/arm/v7', 2], ['linux/arm/v6', 1], ['linux/arm64/v8', 3], ['linux/arm64', 3], ['linux/arm', 2 /* containerd normalizes linux/arm to arm/v7 */], ['linux/s390x', -1], ['linux/arm/v5', -1],
  ])('selects %s', (p, i) => {
    expect(selectPlatform(list, parsePlatform(p))).toBe(i < 0 ? undefined : list[i]);
  });
});

describe('OCI layout', () => {
  let dir: string;
  const layer = Buffer.from('layer bytes '.repeat(1000));
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [sha256('x')] } }));
  const image = (): ImageData => {
    const manifest = {
      schemaVersion: 2 as const, mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: sha256(config), size: config.length },
      layers: [{ mediaType: MediaType.OciLayerGzip, digest: sha256(layer), size: layer.length }],
    };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    return { manifest, manifestBytes, manifestDigest: sha256(manifestBytes), mediaType: MediaType.OciManifest, config: JSON.parse(config.toString()), configBytes: config };
  };
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'builder-layout-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('writes and reads back an image by tag, leaving no temp files', async () => {
    const img = image();
    const desc = await writeOciLayout(path.join(dir, 'a'), img, async () => Readable.from([layer]), { tag: 'v1' });
    expect(desc.digest).toBe(img.manifestDigest);
    expect(JSON.parse(await readFile(path.join(dir, 'a/oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const idx = JSON.parse(await readFile(path.join(dir, 'a/index.json'), 'utf8'));
    expect(idx.manifests[0].annotations['org.opencontainers.image.ref.name']).toBe('v1');
    expect((await readdir(path.join(dir, 'a/blobs/sha256'))).filter((f) => f.includes('tmp'))).toEqual([]);
    const doc = await readOciLayout(path.join(dir, 'a'), 'v1');
    const back = await loadLayoutImage(doc, { os: 'linux', architecture: 'amd64' });
    expect(back.manifestBytes.equals(img.manifestBytes)).toBe(true);
    // re-tagging replaces, a second tag adds
    await writeOciLayout(path.join(dir, 'a'), img, async () => Readable.from([layer]), { tag: 'v1' });
    await writeOciLayout(path.join(dir, 'a'), img, async () => Readable.from([layer]), { tag: 'v2' });
    expect((await (await OciLayout.open(path.join(dir, 'a'))).readIndex()).manifests).toHaveLength(2);
    await expect(readOciLayout(path.join(dir, 'a'))).rejects.toMatchObject({ code: 'OCI_REF_AMBIGUOUS' });
    await expect(readOciLayout(path.join(dir, 'a'), 'nope')).rejects.toMatchObject({ code: 'OCI_REF_UNKNOWN' });
  });

  it('refuses bytes that do not match the digest, keeping no partial blob', async () => {
    const img = image();
    const bad = Buffer.from(layer);
    bad[5] ^= 1;
    await expect(writeOciLayout(path.join(dir, 'b'), img, async () => Readable.from([bad]))).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(await (await OciLayout.open(path.join(dir, 'b'))).hasBlob(img.manifest.layers[0]!.digest)).toBe(false);
    expect((await readdir(path.join(dir, 'b/blobs/sha256'))).filter((f) => f.includes('tmp'))).toEqual([]);
  });

  it('detects a corrupt blob on read', async () => {
    const img = image();
    await writeOciLayout(path.join(dir, 'c'), img, async () => Readable.from([layer]), { tag: 't' });
    const l = await OciLayout.open(path.join(dir, 'c'));
    const d = img.manifest.layers[0]!;
    const bad = Buffer.from(layer);
    bad[0] ^= 1;
    await writeFile(l.blobPath(d.digest), bad);
    await expect(l.readBlob(d)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
  });

  it('rejects a directory that is not a layout', async () => {
    await expect(OciLayout.open(dir)).rejects.toMatchObject({ code: 'OCI_LAYOUT_INVALID' });
  });
});

describe('parseLocation', () => {
  it.each([
    ['oci:/tmp/x:tag', { kind: 'oci', dir: '/tmp/x', tag: 'tag' }],
    ['oci:/tmp/x', { kind: 'oci', dir: '/tmp/x' }],
    ['oci:rel/dir', { kind: 'oci', dir: 'rel/dir' }],
    ['docker-archive:/tmp/a.tar', { kind: 'docker-archive', path: '/tmp/a.tar' }],
  ])('%s', (s, want) => expect(parseLocation(s)).toEqual(want));
  it('registry refs', () => {
    const l = parseLocation('docker://localhost:5000/a:b');
    expect(l.kind === 'registry' && String(l.ref)).toBe('localhost:5000/a:b');
    const a = parseLocation('docker-archive:/tmp/a.tar:r.io/x:1');
    expect(a.kind === 'docker-archive' && String(a.ref)).toBe('r.io/x:1');
  });
});
