// copyImage between two registries, to OCI layouts and docker-archive, and --all-platforms indexes.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReference } from '../../src/reference/index.js';
import { copyImage, parseLocation, type RegistryClient } from '../../src/registry/index.js';
import { readOciLayout } from '../../src/image/index.js';
import { hostArch, pushBusybox, pushMultiPlatform } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { run, skopeoCopy, skopeoInspect, umociUnpack } from '../support/tools.js';
import { clientFor } from './helpers.js';

describe('copyImage', () => {
  let a: TestRegistry;
  let b: TestRegistry;
  let client: RegistryClient;
  let tmp: string;
  beforeAll(async () => {
    [a, b] = await Promise.all([startRegistry({ mode: 'plain' }), startRegistry({ mode: 'token' })]);
    client = clientFor([a, b], { platform: { os: 'linux', architecture: hostArch() } });
    tmp = await mkdtemp(path.join(os.tmpdir(), 'builder-copy-test-'));
  });
  afterAll(async () => {
    await client?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it.each(['v2s2', 'oci'] as const)('preserves the manifest digest between two registries (%s)', async (format) => {
    const src = await pushBusybox(a, `two/${format}`, 'v1', format);
    const r = await copyImage(client, parseLocation(src), parseLocation(`${b.host}/copied/${format}:v1`));
    expect(r.blobs.uploaded).toBe(2);
    expect(r.blobs.mounted).toBe(0);
    const s = await skopeoInspect(a, `two/${format}:v1`);
    const d = await skopeoInspect(b, `copied/${format}:v1`);
    expect(d.Digest).toBe(s.Digest);
    expect(r.digest).toBe(s.Digest);
  });

  it('copies registry -> oci:DIR:tag that umoci unpacks, and back', async () => {
    // umoci reads OCI media types only, and the copy keeps the source's (digest-preserving)
    const src = await pushBusybox(a, 'tooci/app', 'v1', 'oci');
    const dir = path.join(tmp, 'layout');
    const r = await copyImage(client, parseLocation(src), parseLocation(`oci:${dir}:mytag`));
    const doc = await readOciLayout(dir, 'mytag');
    expect(doc.descriptor.digest).toBe(r.digest);
    const rootfs = await umociUnpack(dir, 'mytag', path.join(tmp, 'bundle'));
    expect((await stat(path.join(rootfs, 'bin/busybox'))).isFile()).toBe(true);
    const back = await copyImage(client, parseLocation(`oci:${dir}:mytag`), parseLocation(`${b.host}/fromoci/app:v2`));
    expect(back.digest).toBe(r.digest);
  });

  it('writes a docker-archive that skopeo reads', async () => {
    const src = await pushBusybox(a, 'archive/app', 'v1');
    const tar = path.join(tmp, 'image.tar');
    await copyImage(client, parseLocation(src), parseLocation(`docker-archive:${tar}:example.com/archive/app:v1`));
    const out = path.join(tmp, 'from-archive');
    await skopeoCopy(`docker-archive:${tar}`, `oci:${out}:x`);
    const rootfs = await umociUnpack(out, 'x', path.join(tmp, 'bundle2'));
    expect((await stat(path.join(rootfs, 'bin/busybox'))).isFile()).toBe(true);
    const { stdout } = await run('tar', ['-xOf', tar, 'manifest.json']);
    expect(JSON.parse(stdout)[0].RepoTags).toEqual(['example.com/archive/app:v1']);
    const inspected = JSON.parse((await run('skopeo', ['inspect', `docker-archive:${tar}`])).stdout);
    expect(inspected.Layers).toHaveLength(1);
  });

  it('--all-platforms copies the index with both images; otherwise only the host platform', async () => {
    const src = await pushMultiPlatform(a, 'multi/app', 'v1');
    const srcRaw = await skopeoInspect(a, 'multi/app:v1', { raw: true });
    expect(srcRaw.manifests).toHaveLength(2);
    const all = await copyImage(client, parseLocation(src), parseLocation(`${b.host}/multi/all:v1`), { allPlatforms: true });
    const dstRaw = await skopeoInspect(b, 'multi/all:v1', { raw: true });
    expect(dstRaw).toEqual(srcRaw);
    expect(all.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    for (const m of dstRaw.manifests as Array<{ digest: string }>) {
      expect((await skopeoInspect(b, `multi/all@${m.digest}`)).Digest).toBe(m.digest);
    }
    const one = await copyImage(client, parseLocation(src), parseLocation(`${b.host}/multi/one:v1`));
    expect(one.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    const hostEntry = (srcRaw.manifests as Array<{ digest: string; platform: { architecture: string } }>).find((m) => m.platform.architecture === hostArch());
    expect(one.digest).toBe(hostEntry?.digest);
    // --all-platforms into an OCI layout keeps the index too
    const dir = path.join(tmp, 'multi-layout');
    const lay = await copyImage(client, parseLocation(src), parseLocation(`oci:${dir}:multi`), { allPlatforms: true });
    expect(lay.digest).toBe(all.digest);
    const arm = await copyImage(client, parseLocation(src), parseLocation(`${b.host}/multi/arm:v1`), { platform: { os: 'linux', architecture: 'arm64' } });
    expect(arm.digest).not.toBe(one.digest);
  });

  it('lists tags with pagination', async () => {
    const src = parseReference(await pushBusybox(a, 'tags/app', 't0'));
    for (let i = 1; i < 5; i++) await client.putManifest(parseReference(`${a.host}/tags/app:t${i}`), (await client.getManifest(src)).bytes, (await client.getManifest(src)).mediaType);
    expect((await client.listTags(src)).sort()).toEqual(['t0', 't1', 't2', 't3', 't4']);
  });
});
