// Building from and pushing to registries that need credentials (token auth) or a private CA (TLS).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusybox } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { skopeoInspect } from '../support/tools.js';
import { compileIfStale, Workspace } from './helpers.js';

describe('builder build: authenticated and TLS registries', () => {
  let token: TestRegistry;
  let tls: TestRegistry;
  let ws: Workspace;

  beforeAll(async () => {
    [token, tls, ws] = await Promise.all([startRegistry({ mode: 'token' }), startRegistry({ mode: 'tls' }), Workspace.create(), compileIfStale()]);
  });
  afterAll(async () => {
    await Promise.all([token?.stop(), tls?.stop()]);
    await ws?.remove();
  });

  it('pulls the base from and pushes to a token-auth registry with DOCKER_CONFIG credentials', async () => {
    const base = await pushBusybox(token, 'private/busybox', 'latest', 'v2s2');
    const ctx = await ws.context('ctx-token', {
      Dockerfile: `FROM ${base}\nRUN echo secret-build > /built\n`,
    });
    const args = ['--destination', `${token.host}/private/app:v1`];

    // without credentials: refused, nothing pushed
    const anon = await ws.build(ctx, args);
    expect(anon.code).not.toBe(0);
    expect(anon.stderr).toMatch(/unauthori[sz]ed|denied|401|credentials/i);

    const dc = ws.path('docker-config');
    await mkdir(dc);
    await writeFile(path.join(dc, 'config.json'), JSON.stringify({
      auths: { [token.host]: { auth: Buffer.from(`${token.username}:${token.password}`).toString('base64') } },
    }));
    const digest = await ws.buildOk(ctx, args, { env: { DOCKER_CONFIG: dc } });
    expect((await skopeoInspect(token, 'private/app:v1')).Digest).toBe(digest);
    const rootfs = await ws.unpack(token, 'private/app:v1', 'token');
    expect(await readFile(path.join(rootfs, 'built'), 'utf8')).toBe('secret-build\n');
    // the token server saw the builder's user asking for push on the destination
    expect(token.token!.requests().some((r) => r.user === token.username && r.status === 200
      && r.scopes.some((s) => s.startsWith('repository:private/app:') && s.includes('push')))).toBe(true);
  });

  it('pulls from and pushes to a TLS registry with --registry-certificate', async () => {
    const base = await pushBusybox(tls, 'library/busybox', 'latest', 'v2s2');
    const ctx = await ws.context('ctx-tls', {
      Dockerfile: `FROM ${base}\nRUN echo over-tls > /tls.txt\n`,
    });
    const args = ['--destination', `${tls.host}/test/tls:v1`];

    // an unknown CA is refused
    const untrusted = await ws.build(ctx, args);
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toMatch(/certificate|TLS/i);

    const digest = await ws.buildOk(ctx, [...args, '--registry-certificate', `${tls.host}=${tls.caFile}`]);
    expect((await skopeoInspect(tls, 'test/tls:v1')).Digest).toBe(digest);
    const rootfs = await ws.unpack(tls, 'test/tls:v1', 'tls');
    expect(await readFile(path.join(rootfs, 'tls.txt'), 'utf8')).toBe('over-tls\n');
  });
});
