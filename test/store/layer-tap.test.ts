// remoteLayer's openEarly: the download's bytes for an extraction that may lag. The download never waits for it: past
// what the tap holds in memory, the tap goes on from the stored blob at its offset, and the bytes are the blob's.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/digest/index.js';
import { MediaType } from '../../src/image/index.js';
import { parseReference } from '../../src/reference/index.js';
import { BlobStore } from '../../src/store/blob-store.js';
import { remoteLayer } from '../../src/store/layers.js';
import { clientFor } from '../registry/helpers.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('a layer opened while it downloads', () => {
  let reg: TestRegistry;
  let dir: string;
  // larger than what the tap keeps in memory (8 MiB): a reader that waits falls behind
  const blob = randomBytes(12 << 20);
  const desc = { mediaType: MediaType.DockerLayerGzip, digest: sha256(blob), size: blob.length };

  beforeAll(async () => {
    reg = await startRegistry({ mode: 'plain' });
    dir = await mkdtemp(path.join(os.tmpdir(), 'builder-layer-tap-'));
    await clientFor(reg).pushBlob(parseReference(`${reg.host}/tap/src`), desc, () => Readable.from([blob]));
  });
  afterAll(async () => {
    await reg.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('a reader that starts only after the download has finished gets every byte: the download did not wait for it', async () => {
    const store = new BlobStore(path.join(dir, 'behind'));
    const layer = remoteLayer(clientFor(reg), store, parseReference(`${reg.host}/tap/src`), desc, desc.digest);
    const early = await layer.openEarly!();
    expect(early.download).toBeDefined();
    expect(await early.download).toBe(true); // stored while nothing read the tap
    expect(sha256(await readAll(early.stream))).toBe(desc.digest);
    expect(await layer.stored!()).toBe(true);
    expect(sha256(await readAll(await layer.open()))).toBe(desc.digest);
  });

  it('a reader that keeps up gets every byte from the download itself; a stored blob is opened from the store', async () => {
    const store = new BlobStore(path.join(dir, 'along'));
    const ref = parseReference(`${reg.host}/tap/src`);
    const layer = remoteLayer(clientFor(reg), store, ref, desc, desc.digest);
    const early = await layer.openEarly!();
    const [bytes] = await Promise.all([readAll(early.stream), early.download]);
    expect(sha256(bytes)).toBe(desc.digest);
    const again = remoteLayer(clientFor(reg), store, ref, desc, desc.digest);
    expect(await again.stored!()).toBe(true);
    const local = await again.openEarly!();
    expect(local.download).toBeUndefined();
    expect(sha256(await readAll(local.stream))).toBe(desc.digest);
  });

  it('a download that fails for good is its error, once: not a second download with a new retry budget', async () => {
    const proxy = await startFaultProxy(reg.url);
    try {
      proxy.add({ method: 'GET', path: /\/blobs\/sha256:/, fault: 'status-500', times: Infinity });
      const gets = (): number => proxy.log().filter((e) => e.method === 'GET' && e.path.includes('/blobs/')).length;
      const ref = parseReference(`${proxy.host}/tap/src`);
      await expect(remoteLayer(clientFor(reg), new BlobStore(path.join(dir, 'failing-1')), ref, desc, desc.digest).fetch()).rejects.toThrow(/500/);
      const oneBudget = gets();
      expect(oneBudget).toBeGreaterThan(1); // retried
      await expect(remoteLayer(clientFor(reg), new BlobStore(path.join(dir, 'failing-2')), ref, desc, desc.digest).openEarly!()).rejects.toThrow(/500/);
      expect(gets()).toBe(2 * oneBudget);
    } finally {
      await proxy.close();
    }
  });
});
