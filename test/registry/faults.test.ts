// Registry client under injected faults (the hazards of issue 11 one by one; the CLI-wide matrix is fault-matrix.test.ts).
import { setTimeout as sleep } from 'node:timers/promises';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { BuilderError } from '../../src/errors.js';
import { parseReference } from '../../src/reference/index.js';
import { RegistryClient } from '../../src/registry/index.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { logTo } from './helpers.js';
import { pushBusybox } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';

let reg: TestRegistry;
let proxy: FaultProxy;
let logs: string[];
const clients: RegistryClient[] = [];

beforeAll(async () => {
  reg = await startRegistry({ mode: 'plain' });
  proxy = await startFaultProxy(reg.url);
  await pushBusybox(reg, 'faults/app', 'v1');
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await proxy?.close();
  await reg?.stop();
});
beforeEach(() => {
  proxy.clear();
  proxy.ignoreRange(false);
  logs = [];
});

function client(extra: ConstructorParameters<typeof RegistryClient>[0] = {}): RegistryClient {
  const c = new RegistryClient({ retries: 3, retryBaseMs: 10, emit: logTo(logs), ...extra });
  clients.push(c);
  return c;
}

async function sha(s: NodeJS.ReadableStream): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of s) {
    h.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/** Runs fn, failing if anything reached the process as an uncaught exception meanwhile (an unhandled 'error' event). */
async function noUncaught<T>(fn: () => Promise<T>): Promise<T> {
  const uncaught: unknown[] = [];
  const on = (e: unknown): void => void uncaught.push(e);
  process.on('uncaughtException', on);
  try {
    return await fn();
  } finally {
    process.off('uncaughtException', on);
    expect(uncaught).toEqual([]);
  }
}

const ref = () => parseReference(`${proxy.host}/faults/app:v1`);

it('a layer download reset midway resumes from the first missing byte with Range, not from zero', async () => {
  const c = client();
  const img = await c.resolveImage(ref());
  const layer = img.manifest.layers[0]!;
  proxy.add({ method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`), fault: 'reset-body' });
  expect(await sha(await c.openBlob(ref(), layer))).toEqual({ digest: layer.digest, size: layer.size });
  const gets = proxy.log().filter((e) => e.method === 'GET' && e.path.endsWith(layer.digest));
  expect(gets).toHaveLength(2);
  expect(gets[0]!.range).toBeUndefined();
  const from = Number(/^bytes=(\d+)-$/.exec(gets[1]!.range ?? '')?.[1]);
  expect(from).toBeGreaterThan(0);
  expect(from).toBeLessThan(layer.size);
  // the registry answered the resume with only the rest
  expect((await reg.accessLog()).filter((e) => e.path.endsWith(layer.digest) && e.method === 'GET').map((e) => e.status)).toContain(206);
});

it('a layer stream whose connection breaks before anyone reads it does not crash the process and still delivers', async () => {
  const c = client();
  const img = await c.resolveImage(ref());
  const layer = img.manifest.layers[0]!;
  proxy.add({ method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`), fault: 'reset-body' });
  const stream = await c.openBlob(ref(), layer);
  // the reset lands while the stream sits unread (as when a consumer first checks its cache)
  await noUncaught(() => sleep(300));
  expect(await sha(stream)).toEqual({ digest: layer.digest, size: layer.size });
});

it('the same with no retries left: the reader gets REGISTRY_INTERRUPTED, the process lives', async () => {
  const c = client({ downloadRetries: 0 });
  const img = await c.resolveImage(ref());
  const layer = img.manifest.layers[0]!;
  proxy.add({ method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`), fault: 'reset-body' });
  const stream = await c.openBlob(ref(), layer);
  await noUncaught(() => sleep(300));
  const err = await sha(stream).then(() => undefined, (e: unknown) => e);
  expect((err as BuilderError).code).toBe('REGISTRY_INTERRUPTED');
});

it('a registry that ignores Range: the whole blob comes again and the bytes already delivered are skipped', async () => {
  const c = client();
  const img = await c.resolveImage(ref());
  const layer = img.manifest.layers[0]!;
  proxy.ignoreRange(true);
  proxy.add({ method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`), fault: 'truncate' });
  expect(await sha(await c.openBlob(ref(), layer))).toEqual({ digest: layer.digest, size: layer.size });
  expect(proxy.log().filter((e) => e.path.endsWith(layer.digest))).toHaveLength(2);
});

it('a download that keeps breaking ends in a typed error after the budget, never an untyped one', async () => {
  const c = client({ downloadRetries: 2 });
  const img = await c.resolveImage(ref());
  const layer = img.manifest.layers[0]!;
  proxy.add({ method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`), fault: 'reset-body', times: Infinity });
  const err = await sha(await c.openBlob(ref(), layer)).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(BuilderError);
  expect((err as BuilderError).code).toBe('REGISTRY_INTERRUPTED');
  expect((err as BuilderError).message).toContain(layer.digest);
  expect(proxy.log().filter((e) => e.path.endsWith(layer.digest))).toHaveLength(3);
});

it('a 429 on the blob upload PUT waits its Retry-After and starts a new upload session', async () => {
  const c = client();
  const src = parseReference(`${proxy.host}/faults/app:v1`);
  const dst = parseReference(`${proxy.host}/faults/pushed:v1`);
  const img = await c.resolveImage(src);
  proxy.add({ method: 'PUT', path: /^\/v2\/faults\/pushed\/blobs\/uploads\//, fault: '429-seconds', retryAfterSeconds: 1 });
  expect(await c.pushBlob(dst, img.manifest.config, async () => (await import('node:stream')).Readable.from([img.configBytes]))).toBe('uploaded');
  const log = proxy.log().filter((e) => e.path.startsWith('/v2/faults/pushed/blobs/uploads/'));
  expect(log.map((e) => `${e.method}${e.fault ? ` ${e.fault}` : ''}`)).toEqual(['POST', 'PUT 429-seconds', 'POST', 'PUT']);
  // two sessions, the second PUT to the second one
  const [, put1, , put2] = log;
  expect(put1!.path.split('?')[0]).not.toBe(put2!.path.split('?')[0]);
  expect(logs.some((l) => /after REGISTRY_TOO_MANY_REQUESTS in 1000ms/.test(l))).toBe(true);
  expect(await c.hasBlob(dst, img.manifest.config.digest)).toBe(true);
});

it('--push-retry 0 (pushRetries: 0) makes the same 429 fatal, typed, while pulls still retry', async () => {
  const c = client({ pushRetries: 0 });
  const dst = parseReference(`${proxy.host}/faults/pushed-noretry:v1`);
  const img = await c.resolveImage(ref());
  proxy.add({ method: 'PUT', path: /^\/v2\/faults\/pushed-noretry\/blobs\/uploads\//, fault: '429-seconds' });
  proxy.add({ method: 'GET', path: /^\/v2\/faults\/app\/manifests\//, fault: 'status-503' });
  expect((await c.resolveImage(ref())).manifestDigest).toBe(img.manifestDigest);
  const err = await c.pushBlob(dst, img.manifest.config, async () => (await import('node:stream')).Readable.from([img.configBytes])).then(() => undefined, (e: unknown) => e);
  expect((err as BuilderError).code).toBe('REGISTRY_TOO_MANY_REQUESTS');
  expect(await c.hasBlob(dst, img.manifest.config.digest)).toBe(false);
});

it('a layer that arrives with wrong bytes is fetched again from the start by fetchBlob, and the store gets only good bytes', async () => {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const os = await import('node:os');
  const { BlobStore } = await import('../../src/store/index.js');
  const dir = await mkdtemp(`${os.tmpdir()}/builder-faults-store-`);
  try {
    const store = new BlobStore(dir);
    const c = client();
    const img = await c.resolveImage(ref());
    const layer = img.manifest.layers[0]!;
    proxy.add({ method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`), fault: 'wrong-bytes' });
    await c.fetchBlob(ref(), layer, (s) => store.put(layer.digest, s, layer.size));
    expect(await sha(store.open(layer.digest, layer.size))).toEqual({ digest: layer.digest, size: layer.size });
    expect(proxy.log().filter((e) => e.path.endsWith(layer.digest)).map((e) => e.fault ?? 'ok')).toEqual(['wrong-bytes', 'ok']);
    expect(logs.some((l) => /from the start\) after DIGEST_MISMATCH/.test(l))).toBe(true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it('an upload whose source cannot be opened reports the source\'s own error at once, not a registry one', async () => {
  const c = client();
  const dst = parseReference(`${proxy.host}/faults/no-source:v1`);
  const desc = { digest: `sha256:${'0'.repeat(64)}` as const, size: 10 };
  const err = await c.pushBlob(dst, desc, async () => {
    throw new BuilderError('BLOB_STORE_MISSING', 'blob is not in the store');
  }).then(() => undefined, (e: unknown) => e);
  expect((err as BuilderError).code).toBe('BLOB_STORE_MISSING');
  expect(logs.filter((l) => l.startsWith('retrying'))).toEqual([]);
});

it('a layer stream destroyed while it waits to resume gives up: no timer left running, no request after', async () => {
  // backoff of 0.75-1.5 s: long enough to destroy the stream inside it
  const c = client({ retryBaseMs: 1500, retryMaxMs: 1500 });
  const img = await c.resolveImage(ref());
  const layer = img.manifest.layers[0]!;
  proxy.add({ method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`), fault: 'reset-body' });
  const stream = await c.openBlob(ref(), layer);
  stream.resume();
  for (let i = 0; i < 100 && !logs.some((l) => l.includes('from byte')); i++) await sleep(20);
  expect(logs.some((l) => l.includes('from byte'))).toBe(true);
  stream.destroy();
  // past the longest backoff: a download that kept going would have asked for the rest by now
  await sleep(2000);
  expect(proxy.log().filter((e) => e.path.endsWith(layer.digest))).toHaveLength(1);
});

it('a manifest PUT damaged on the way is sent again: the tag ends on our manifest, never on the damaged one', async () => {
  const c = client();
  const img = await c.resolveImage(ref());
  const dst = parseReference(`${proxy.host}/faults/app:damaged`);
  // the registry takes the altered bytes: the tag points at a manifest that is not ours until we send it again
  proxy.add({ method: 'PUT', path: /^\/v2\/faults\/app\/manifests\/damaged$/, fault: 'alter-body' });
  expect(await c.putManifest(dst, img.manifestBytes, img.mediaType)).toBe(img.manifestDigest);
  expect(proxy.log().filter((e) => e.method === 'PUT').map((e) => e.fault ?? 'ok')).toEqual(['alter-body', 'ok']);
  expect(logs.some((l) => /^retrying PUT manifest .* after DIGEST_MISMATCH/.test(l))).toBe(true);
  expect((await c.getManifest(parseReference(`${reg.host}/faults/app:damaged`))).digest).toBe(img.manifestDigest);
});

it('a manifest altered on every try fails typed after the budget, naming both digests', async () => {
  const c = client({ pushRetries: 1 });
  const img = await c.resolveImage(ref());
  const dst = parseReference(`${proxy.host}/faults/app:always-altered`);
  proxy.add({ method: 'PUT', path: /^\/v2\/faults\/app\/manifests\/always-altered$/, fault: 'alter-body', times: Infinity });
  const err = await c.putManifest(dst, img.manifestBytes, img.mediaType).then(() => undefined, (e: unknown) => e);
  expect((err as BuilderError).code).toBe('DIGEST_MISMATCH');
  expect((err as BuilderError).message).toContain(img.manifestDigest);
  expect(proxy.log().filter((e) => e.method === 'PUT')).toHaveLength(2);
  // what the registry stored is left alone (it may be another tag's manifest on a registry that rewrites them)
  expect((await c.getManifest(parseReference(`${reg.host}/faults/app:v1`))).digest).toBe(img.manifestDigest);
});

it('through a token-auth registry, retried requests authenticate again (pull reset, push 429, manifest 503)', async () => {
  const treg = await startRegistry({ mode: 'token' });
  const tproxy = await startFaultProxy(treg.url);
  try {
    await pushBusybox(treg, 'faults/app', 'v1');
    const c = client({ credentials: async () => ({ username: treg.username, password: treg.password }) });
    const src = parseReference(`${tproxy.host}/faults/app:v1`);
    const dst = parseReference(`${tproxy.host}/faults/copied:v1`);
    const img = await c.resolveImage(src);
    const layer = img.manifest.layers[0]!;
    const fired = [
      tproxy.add({ method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`), fault: 'reset-body' }),
      tproxy.add({ method: 'PUT', path: /^\/v2\/faults\/copied\/blobs\/uploads\//, fault: '429-seconds' }),
      tproxy.add({ method: 'PUT', path: /^\/v2\/faults\/copied\/manifests\//, fault: 'status-503' }),
    ];
    // no mountFrom: the blobs travel through both faulted directions
    for (const d of [layer, img.manifest.config]) {
      expect(await c.pushBlob(dst, d, () => c.openBlob(src, d))).toBe('uploaded');
    }
    expect(await c.putManifest(dst, img.manifestBytes, img.mediaType)).toBe(img.manifestDigest);
    expect(fired.map((f) => f())).toEqual([1, 1, 1]);
    expect((await c.getManifest(parseReference(`${treg.host}/faults/copied:v1`))).digest).toBe(img.manifestDigest);
  } finally {
    await tproxy.close();
    await treg.stop();
  }
});
