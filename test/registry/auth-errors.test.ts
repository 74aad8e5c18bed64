// Auth failures, token renewal, TLS trust and corrupt blobs against the real registry.
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { digestHex } from '../../src/digest/index.js';
import { isBuilderError } from '../../src/errors.js';
import { parseReference } from '../../src/reference/index.js';
import { copyImage, RegistryClient } from '../../src/registry/index.js';
import { QUICK_RETRY_MS } from '../../src/registry/retry.js';
import { copyLayout, pushBusybox, busyboxLayout } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { caught, clientFor, drain, logTo } from './helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});
async function registry(opts: Parameters<typeof startRegistry>[0]): Promise<TestRegistry> {
  const r = await startRegistry(opts);
  cleanups.push(() => r.stop());
  return r;
}
function track(c: RegistryClient): RegistryClient {
  cleanups.push(() => c.close());
  return c;
}

describe('authentication', () => {
  it.each(['htpasswd', 'token'] as const)('%s: a wrong password is a 401 naming the registry, never the password', async (mode) => {
    const reg = await registry({ mode });
    await pushBusybox(reg, 'auth/app', 'v1');
    const wrong = 'Wr0ng-pa55word-xyz';
    const c = track(clientFor(reg, {}, wrong));
    const err = await caught(c.getManifest(parseReference(`${reg.host}/auth/app:v1`)));
    expect(isBuilderError(err, 'REGISTRY_UNAUTHORIZED')).toBe(true);
    expect(err.message).toContain(reg.host);
    expect(err.hint).toBeTruthy();
    expect(`${err.message} ${err.hint} ${err.stack}`).not.toContain(wrong);
    expect(`${err.message} ${err.hint}`).not.toContain(Buffer.from(`${reg.username}:${wrong}`).toString('base64'));
  });

  it.each(['htpasswd', 'token'] as const)('%s: no credentials is a 401 with a hint', async (mode) => {
    const reg = await registry({ mode });
    const c = track(new RegistryClient({ retries: 0 }));
    const err = await caught(c.listTags(parseReference(`${reg.host}/nothing/here`)));
    expect(err.code).toMatch(/REGISTRY_UNAUTHORIZED|REGISTRY_DENIED/);
    expect(err.message).toContain(reg.host);
  });

  it('renews a token whose lifetime ran out before using it', async () => {
    const reg = await registry({ mode: 'token', tokenTtlSeconds: 2 });
    const ref = parseReference(await pushBusybox(reg, 'ttl/app', 'v1'));
    const c = track(clientFor(reg));
    await c.getManifest(ref);
    const issued = reg.token!.issued();
    await c.getManifest(ref);
    expect(reg.token!.issued()).toBe(issued); // cached within its lifetime
    await sleep(2200);
    await c.getManifest(ref);
    expect(reg.token!.issued()).toBe(issued + 1);
  });

  it('renews a token the registry rejects mid-operation (401 -> new token -> success)', async () => {
    const reg = await registry({ mode: 'token', tokenTtlSeconds: 300 });
    const ref = parseReference(await pushBusybox(reg, 'expire/app', 'v1'));
    const c = track(clientFor(reg));
    // tokens claim 300 s but the registry (60 s leeway) stops accepting them after ~2 s
    reg.token!.setExpShift(-300 - 60 + 2);
    const img = await c.resolveImage(ref);
    reg.token!.setExpShift(0);
    const issued = reg.token!.issued();
    await sleep(3500);
    const before = (await reg.accessLog()).length;
    expect(await drain(await c.openBlob(ref, img.manifest.layers[0]!))).toBe(img.manifest.layers[0]!.size);
    const log = (await reg.accessLog()).slice(before);
    expect(log.some((e) => e.status === 401)).toBe(true);
    expect(reg.token!.issued()).toBeGreaterThan(issued);
  });
});

describe('TLS', () => {
  it('refuses an unknown CA with REGISTRY_TLS and a hint, accepts it with the CA or skip-verify', async () => {
    const reg = await registry({ mode: 'tls' });
    await pushBusybox(reg, 'tls/app', 'v1');
    const ref = parseReference(`${reg.host}/tls/app:v1`);
    const noCa = track(new RegistryClient({ retries: 0 }));
    const err = await caught(noCa.getManifest(ref));
    expect(err.code).toBe('REGISTRY_TLS');
    expect(err.hint).toContain('--registry-certificate');
    const withCa = track(new RegistryClient({ registryCertificates: { [reg.host]: reg.caFile! } }));
    expect((await withCa.getManifest(ref)).digest).toMatch(/^sha256:/);
    const skip = track(new RegistryClient({ skipTlsVerifyRegistries: [reg.host] }));
    expect((await skip.getManifest(ref)).digest).toMatch(/^sha256:/);
  });

  it('refuses plain HTTP to a non-loopback, non-insecure registry name', async () => {
    const c = track(new RegistryClient({ retries: 0 }));
    const err = await caught(c.getManifest(parseReference('registry.invalid:1/app:v1')));
    expect(err.code).toBe('REGISTRY_UNREACHABLE');
    expect(err.message).toContain('registry.invalid:1');
  });
});

describe('connection errors', () => {
  it('retries a refused connection once, quickly, then reports REGISTRY_UNREACHABLE naming the registry', async () => {
    const { freePort } = await import('../support/registry.js');
    const port = await freePort();
    const logs: string[] = [];
    const c = track(new RegistryClient({ retries: 4, retryBaseMs: 1000, emit: logTo(logs) }));
    const err = await caught(c.getManifest(parseReference(`127.0.0.1:${port}/app:v1`)));
    expect(err.code).toBe('REGISTRY_UNREACHABLE');
    expect(err.message).toContain(`127.0.0.1:${port}`);
    expect(err.message).toContain('ECONNREFUSED');
    expect(err.hint).toBeTruthy();
    // the policy's promise: one retry of a refusal, its delay the quick one whatever the backoff base
    const asked = logs.filter((l) => l.startsWith('retrying')).map((l) => Number(/ in (\d+)ms /.exec(l)?.[1]));
    expect(asked).toHaveLength(1);
    expect(asked[0]).toBeGreaterThanOrEqual(QUICK_RETRY_MS / 2);
    expect(asked[0]).toBeLessThanOrEqual(QUICK_RETRY_MS);
  });

  it('an unknown host name gets one quick retry at most', async () => {
    const logs: string[] = [];
    const c = track(new RegistryClient({ retries: 4, emit: logTo(logs) }));
    const err = await caught(c.getManifest(parseReference('no-such-host.invalid/app:v1')));
    expect(err.code).toBe('REGISTRY_UNREACHABLE');
    expect(err.message).toMatch(/ENOTFOUND|EAI_AGAIN/);
    const asked = logs.filter((l) => l.startsWith('retrying')).map((l) => Number(/ in (\d+)ms /.exec(l)?.[1]));
    expect(asked.length).toBeLessThanOrEqual(1);
    for (const d of asked) expect(d).toBeLessThanOrEqual(QUICK_RETRY_MS);
  });
});

describe('corrupt blobs', () => {
  it('rejects a registry blob whose bytes do not match its digest', async () => {
    const reg = await registry({ mode: 'plain' });
    const ref = parseReference(await pushBusybox(reg, 'corrupt/app', 'v1'));
    const c = track(clientFor(reg));
    const img = await c.resolveImage(ref);
    const layer = img.manifest.layers[0]!;
    const hex = digestHex(layer.digest);
    const file = path.join(reg.storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    const bytes = await readFile(file);
    bytes[bytes.length >> 1] ^= 0xff;
    await writeFile(file, bytes);
    const err = await caught(drain(await c.openBlob(ref, layer)));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(err.message).toContain(layer.digest);
  });

  it('refuses to push a corrupt OCI layout blob', async () => {
    const reg = await registry({ mode: 'plain' });
    const { layout, tag } = await busyboxLayout();
    const copy = await copyLayout(layout);
    onTestFinished(() => rm(copy, { recursive: true, force: true }));
    const blobs = path.join(copy, 'blobs/sha256');
    let biggest = '';
    let size = 0;
    for (const f of await readdir(blobs)) {
      const b = await readFile(path.join(blobs, f));
      if (b.length > size) [biggest, size] = [f, b.length];
    }
    const b = await readFile(path.join(blobs, biggest));
    b[10] ^= 0xff;
    await writeFile(path.join(blobs, biggest), b);
    const c = track(clientFor(reg));
    const err = await caught(copyImage(c, { kind: 'oci', dir: copy, tag }, { kind: 'registry', ref: parseReference(`${reg.host}/corrupt/push:v1`) }));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(await c.hasBlob(parseReference(`${reg.host}/corrupt/push:v1`), `sha256:${biggest}`)).toBe(false);
  });
});
