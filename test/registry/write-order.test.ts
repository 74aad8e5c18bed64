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
