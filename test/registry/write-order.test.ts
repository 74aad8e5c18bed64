// Pushing an image: the config and small layers go while a big layer is still uploading; the manifest only after all.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { digestHex, sha256 } from '../../src/digest/index.js';
import { assembleImage, MediaType, type ImageConfig, type Layer } from '../../src/image/index.js';
import { parseReference } from '../../src/reference/index.js';
import { RegistryClient, writeImage } from '../../src/registry/index.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';

let reg: TestRegistry;
let proxy: FaultProxy;

beforeAll(async () => {
  reg = await startRegistry({ mode: 'plain' });
  proxy = await startFaultProxy(reg.url);
});
afterAll(async () => {
  await proxy?.close();
  await reg?.stop();
});

const layerOf = (bytes: Buffer): Layer => ({
  descriptor: { mediaType: MediaType.OciLayerGzip, digest: sha256(bytes), size: bytes.length },
  diffId: sha256(bytes),
  open: async () => Readable.from([bytes]),
});

it('while a big layer\'s upload hangs, the config and the small layers are uploaded, and no manifest is put', async () => {
  const big = layerOf(randomBytes(2 << 20));
  const small = [1, 2, 3].map(() => layerOf(randomBytes(1000)));
  const base = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: {} } as ImageConfig;
  const image = assembleImage({ format: 'oci', base, config: {}, layers: [big, ...small], history: [], created: new Date(0).toISOString(), architecture: 'amd64', os: 'linux' });
  proxy.add({ method: 'PUT', path: new RegExp(digestHex(big.descriptor.digest)), fault: 'stall' }); // the big upload never completes
  const stop = new AbortController();
  const client = new RegistryClient({ retries: 0, signal: stop.signal });
  try {
    const push = writeImage(client, image, [parseReference(`${proxy.host}/order/app:1`)], { signal: stop.signal });
    push.catch(() => undefined);
    // (the proxy logs a request when it arrives: the registry itself says when each blob is there)
    const direct = parseReference(`${reg.host}/order/app`);
    const wanted = [image.manifest.config.digest, ...small.map((l) => l.descriptor.digest)];
    const there = async (): Promise<boolean> => (await Promise.all(wanted.map((d) => client.hasBlob(direct, d)))).every(Boolean);
    for (const t = Date.now(); !(await there()); await sleep(50)) expect(Date.now() - t).toBeLessThan(30_000);
    const sent = proxy.log().filter((e) => e.method === 'PUT' && e.fault === undefined).map((e) => /digest=sha256(?:%3A|:)([a-f0-9]+)/.exec(e.path)?.[1] ?? e.path);
    expect(sent.sort()).toEqual(wanted.map((d) => digestHex(d)).sort());
    expect(await client.hasBlob(direct, big.descriptor.digest)).toBe(false);
    await sleep(200);
    expect(proxy.log().filter((e) => e.path.includes('/manifests/'))).toEqual([]);
    stop.abort();
    await expect(push).rejects.toThrow();
    expect(proxy.log().filter((e) => e.path.includes('/manifests/'))).toEqual([]);
  } finally {
    stop.abort();
    await client.close();
  }
});

it('with a check still running beside the upload (ready), the blobs go up at once and the manifest only once it passed; a failed one puts none', async () => {
  const layers = [1, 2].map(() => layerOf(randomBytes(1000)));
  const base = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: {} } as ImageConfig;
  const image = assembleImage({ format: 'oci', base, config: {}, layers, history: [], created: new Date(0).toISOString(), architecture: 'amd64', os: 'linux' });
  const client = new RegistryClient({ retries: 0 });
  try {
    for (const outcome of ['passes', 'fails'] as const) {
      const ref = parseReference(`${reg.host}/order/ready-${outcome}:1`);
      let settle!: (err?: Error) => void;
      const ready = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
      const push = writeImage(client, image, [ref], { ready });
      push.catch(() => undefined);
      const wanted = [image.manifest.config.digest, ...layers.map((l) => l.descriptor.digest)];
      const there = async (): Promise<boolean> => (await Promise.all(wanted.map((d) => client.hasBlob(ref, d)))).every(Boolean);
      for (const t = Date.now(); !(await there()); await sleep(50)) expect(Date.now() - t).toBeLessThan(30_000);
      await sleep(200);
      expect(await client.headManifest(ref)).toBeUndefined();
      if (outcome === 'passes') {
        settle();
        expect((await push).pushed).toEqual([{ destination: ref.toString(), digest: image.manifestDigest }]);
        expect((await client.headManifest(ref))?.digest).toBe(image.manifestDigest);
      } else {
        settle(new Error('the sandbox cannot start here'));
        await expect(push).rejects.toThrow('the sandbox cannot start here');
        expect(await client.headManifest(ref)).toBeUndefined();
      }
    }
  } finally {
    await client.close();
  }
});

it('a blob likely missing opens its upload session while HEAD asks: uploaded on one session, or the session cancelled when HEAD finds it or fails', async () => {
  const client = new RegistryClient({ retries: 0 });
  const ref = parseReference(`${reg.host}/order/likely-missing`);
  const viaProxy = parseReference(`${proxy.host}/order/likely-missing`);
  const [fresh, present, asked] = [1, 2, 3].map(() => layerOf(randomBytes(1000)));
  const stalling = new RegistryClient({ retries: 0, stallTimeoutMs: 1000 });
  try {
    const uploads = async (since: number): Promise<string[]> => (await reg.accessLog()).slice(since)
      .filter((e) => e.path.startsWith('/v2/order/likely-missing/blobs/')).map((e) => `${e.method} ${e.status}`);
    let since = (await reg.accessLog()).length;
    expect(await client.pushBlob(ref, fresh!.descriptor, () => fresh!.open(), { likelyMissing: true })).toBe('uploaded');
    expect((await uploads(since)).sort()).toEqual(['HEAD 404', 'POST 202', 'PUT 201']);
    await client.pushBlob(ref, present!.descriptor, () => present!.open());
    since = (await reg.accessLog()).length;
    expect(await client.pushBlob(ref, present!.descriptor, () => present!.open(), { likelyMissing: true })).toBe('exists');
    expect((await uploads(since)).sort()).toEqual(['DELETE 204', 'HEAD 200', 'POST 202']);
    // HEAD never answers: the session was opened meanwhile, and is cancelled when asking fails
    proxy.add({ method: 'HEAD', path: new RegExp(digestHex(asked!.descriptor.digest)), fault: 'stall' });
    since = (await reg.accessLog()).length;
    await expect(stalling.pushBlob(viaProxy, asked!.descriptor, () => asked!.open(), { likelyMissing: true })).rejects.toMatchObject({ code: expect.stringMatching(/^REGISTRY_/) });
    expect(proxy.log().filter((e) => e.path.startsWith('/v2/order/likely-missing/blobs/uploads/')).map((e) => e.method)).toEqual(['POST', 'DELETE']);
    expect((await uploads(since)).sort()).toEqual(['DELETE 204', 'POST 202']);
    expect(await client.hasBlob(ref, asked!.descriptor.digest)).toBe(false);
  } finally {
    await Promise.all([client.close(), stalling.close()]);
  }
});

it('a push of many small blobs at once under one signal warns of no listener leak (each request in flight listens on it)', async () => {
  const layers = Array.from({ length: 12 }, () => layerOf(randomBytes(500)));
  const base = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: {} } as ImageConfig;
  const image = assembleImage({ format: 'oci', base, config: {}, layers: layers.map((l) => ({ ...l, fresh: true })), history: [], created: new Date(0).toISOString(), architecture: 'amd64', os: 'linux' });
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  const stop = new AbortController();
  const client = new RegistryClient({ retries: 0, signal: AbortSignal.any([stop.signal]) });
  try {
    const r = await writeImage(client, image, [parseReference(`${reg.host}/order/many:1`)], { signal: stop.signal });
    expect(r.blobs.uploaded).toBe(13);
    await sleep(50); // process warnings are emitted on the next tick
    expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
  } finally {
    process.off('warning', onWarning);
    await client.close();
  }
});
