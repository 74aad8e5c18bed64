// Pull, push, mount, tags and chunked upload against the real registry in all four modes.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReference, withDigest } from '../../src/reference/index.js';
import { copyImage, parseLocation, type RegistryClient, type RegistryPings } from '../../src/registry/index.js';
import { busyboxLayout } from '../support/images.js';
import { pushBusybox } from '../support/images.js';
import { startRegistry, type RegistryMode, type TestRegistry } from '../support/registry.js';
import { skopeoCopy, skopeoInspect, umociUnpack } from '../support/tools.js';
import { clientFor, drain } from './helpers.js';

const modes: RegistryMode[] = ['plain', 'htpasswd', 'token', 'tls'];

describe.each(modes)('registry mode %s', (mode) => {
  let reg: TestRegistry;
  let client: RegistryClient;
  let tmp: string;
  beforeAll(async () => {
    reg = await startRegistry({ mode });
    client = clientFor(reg);
    tmp = await mkdtemp(path.join(os.tmpdir(), 'builder-reg-test-'));
  });
  afterAll(async () => {
    await client?.close();
    await reg?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it.each(['v2s2', 'oci'] as const)('pulls a %s image pushed by skopeo, blobs verified', async (format) => {
    const refStr = await pushBusybox(reg, `pull/${format}`, 'v1', format);
    const ref = parseReference(refStr);
    const img = await client.resolveImage(ref);
    const theirs = await skopeoInspect(reg, `pull/${format}:v1`);
    expect(img.manifestDigest).toBe(theirs.Digest);
    expect(img.mediaType).toBe(format === 'oci' ? 'application/vnd.oci.image.manifest.v1+json' : 'application/vnd.docker.distribution.manifest.v2+json');
    expect(img.config.rootfs.diff_ids.length).toBe(img.manifest.layers.length);
    for (const l of img.manifest.layers) expect(await drain(await client.openBlob(ref, l))).toBe(l.size);
    // by digest too
    const byDigest = await client.getManifest(withDigest(ref, img.manifestDigest));
    expect(byDigest.bytes.equals(img.manifestBytes)).toBe(true);
  });

  it('pushes oci: -> registry; skopeo inspects, copies and umoci unpacks it', async () => {
    const { layout, tag } = await busyboxLayout();
    const dst = parseReference(`${reg.host}/pushed/busybox:1.0`);
    const r = await copyImage(client, parseLocation(`oci:${layout}:${tag}`), { kind: 'registry', ref: dst });
    expect(r.blobs.uploaded).toBe(2);
    const theirs = await skopeoInspect(reg, 'pushed/busybox:1.0');
    expect(theirs.Digest).toBe(r.digest);
    const out = path.join(tmp, 'pulled');
    await skopeoCopy(`docker://${dst}`, `oci:${out}:x`, { reg });
    const rootfs = await umociUnpack(out, 'x', path.join(tmp, 'bundle'));
    expect((await stat(path.join(rootfs, 'bin/busybox'))).isFile()).toBe(true);
    // pushing again finds every blob present
    const again = await copyImage(client, parseLocation(`oci:${layout}:${tag}`), { kind: 'registry', ref: dst });
    expect(again.blobs.exists).toBe(2);
    expect(await client.listTags(dst)).toEqual(['1.0']);
  });

  it('clients sharing pings (the push check\'s and the build\'s) ping /v2/ once between them, the second sending credentials at once', async () => {
    const ref = parseReference(await pushBusybox(reg, 'pings/shared', 'v1'));
    const pings: RegistryPings = new Map();
    const [a, b] = [clientFor(reg, { pings }), clientFor(reg, { pings })];
    try {
      const before = (await reg.accessLog()).length;
      const digest = (await a.getManifest(ref)).digest;
      expect((await b.getManifest(ref)).digest).toBe(digest);
      const log = (await reg.accessLog()).slice(before);
      expect(log.filter((e) => e.method === 'GET' && e.path === '/v2/')).toHaveLength(1);
      // the second client had the first one's auth challenge: no 401 before its manifest
      expect(log.filter((e) => e.path.includes('/manifests/')).map((e) => e.status)).toEqual([200, 200]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('copies across repositories of one registry with a mount, not an upload', async () => {
    const src = parseReference(await pushBusybox(reg, 'mount/src', 'v1'));
    const dst = parseReference(`${reg.host}/mount/dst:v1`);
    const before = (await reg.accessLog()).length;
    const r = await copyImage(client, { kind: 'registry', ref: src }, { kind: 'registry', ref: dst });
    expect(r.blobs.mounted).toBe(2);
    expect(r.blobs.uploaded).toBe(0);
    const log = (await reg.accessLog()).slice(before);
    const mounts = log.filter((e) => e.method === 'POST' && e.path.includes('mount='));
    expect(mounts.map((e) => e.status)).toEqual([201, 201]);
    expect(log.filter((e) => e.method === 'PATCH' || (e.method === 'PUT' && e.path.includes('/blobs/uploads/')))).toEqual([]);
    expect((await client.getManifest(dst)).digest).toBe(r.digest);
  });

  it('uploads big blobs in chunks (PATCH), readable by skopeo', async () => {
    const chunky = clientFor(reg, { chunkedThreshold: 100_000, chunkSize: 300_000 });
    try {
      const { layout, tag } = await busyboxLayout();
      const dst = parseReference(`${reg.host}/chunked/busybox:1`);
      const before = (await reg.accessLog()).length;
      const r = await copyImage(chunky, parseLocation(`oci:${layout}:${tag}`), { kind: 'registry', ref: dst });
      const patches = (await reg.accessLog()).slice(before).filter((e) => e.method === 'PATCH');
      expect(patches.length).toBeGreaterThanOrEqual(3);
      expect(patches.every((e) => e.status === 202)).toBe(true);
      expect((await skopeoInspect(reg, 'chunked/busybox:1')).Digest).toBe(r.digest);
    } finally {
      await chunky.close();
    }
  });

  it('deletes a manifest by tag', async () => {
    const ref = parseReference(await pushBusybox(reg, 'del/app', 'gone'));
    expect(await client.headManifest(ref)).toBeDefined();
    await client.deleteManifest(ref);
    expect(await client.headManifest(ref)).toBeUndefined();
    await expect(client.getManifest(ref)).rejects.toMatchObject({ code: 'REGISTRY_MANIFEST_UNKNOWN' });
  });
});
