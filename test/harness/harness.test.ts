// Tests of the test harness itself: each registry mode really works with skopeo, and the base images are sound.
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { busyboxLayout, cachedDir, multiPlatformLayout, pushBusybox, pushMultiPlatform } from '../support/images.js';
import { parseAccessLog, startRegistry, type TestRegistry } from '../support/registry.js';
import { run, RunError, skopeoInspect, umociUnpack } from '../support/tools.js';

async function withRegistry<T>(opts: Parameters<typeof startRegistry>[0], fn: (reg: TestRegistry) => Promise<T>): Promise<T> {
  const reg = await startRegistry(opts);
  try {
    return await fn(reg);
  } finally {
    await reg.stop();
  }
}

async function rejection(p: Promise<unknown>): Promise<RunError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(RunError);
  return err as RunError;
}

describe('busybox layout', () => {
  it('has busybox, applet links, users and /tmp 1777', async () => {
    const { layout, tag } = await busyboxLayout();
    const bundle = path.join(os.tmpdir(), `builder-harness-bundle-${process.pid}`);
    try {
      const root = await umociUnpack(layout, tag, bundle);
      expect((await stat(path.join(root, 'bin/busybox'))).mode & 0o111).toBeTruthy();
      expect(await readlink(path.join(root, 'bin/sh'))).toBe('busybox');
      expect(await readlink(path.join(root, 'usr/bin/env'))).toBe('../../bin/busybox');
      expect(await readFile(path.join(root, 'etc/passwd'), 'utf8')).toContain('app:x:1000:1000::/home/app:/bin/sh');
      expect(await readFile(path.join(root, 'etc/group'), 'utf8')).toContain('app:x:1000:');
      expect((await lstat(path.join(root, 'tmp'))).mode & 0o7777).toBe(0o1777);
      expect((await stat(path.join(root, 'home/app'))).uid).toBe(1000);
      const out = await run('chroot', [root, '/bin/sh', '-c', 'echo hi $(id -u app)']);
      expect(out.stdout.trim()).toBe('hi 1000');
    } finally {
      await rm(bundle, { recursive: true, force: true });
    }
  });

  it('is cached: a second call returns the same directory quickly', async () => {
    const a = await busyboxLayout();
    const t0 = Date.now();
    const b = await busyboxLayout();
    expect(b.layout).toBe(a.layout);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

describe('cachedDir', () => {
  it('builds once when several callers race, and never exposes a half-built dir', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'builder-harness-cache-'));
    try {
      const final = path.join(base, 'thing');
      let builds = 0;
      const build = async (into: string): Promise<void> => {
        builds++;
        await mkdir(into);
        await sleep(300);
        await writeFile(path.join(into, 'index.json'), '{}');
      };
      const dirs = await Promise.all([cachedDir(final, build), cachedDir(final, build), cachedDir(final, build)]);
      expect(dirs).toEqual([final, final, final]);
      expect(builds).toBe(1);
      await expect(stat(`${final}.lock`)).rejects.toThrow();

      // A lock left by a dead process is taken over rather than waited on forever.
      const other = path.join(base, 'other');
      await mkdir(`${other}.lock`);
      await writeFile(path.join(`${other}.lock`, 'pid'), '999999999');
      expect(await cachedDir(other, build)).toBe(other);
      expect(builds).toBe(2);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe('plain registry', () => {
  it('takes a skopeo push, inspects it, and logs the manifest PUT', async () => {
    await withRegistry({}, async (reg) => {
      expect(reg.url).toBe(`http://${reg.host}`);
      const ref = await pushBusybox(reg);
      expect(ref).toBe(`${reg.host}/library/busybox:latest`);
      const info = await skopeoInspect(reg, 'library/busybox:latest');
      expect(info.Architecture).toBe('amd64');
      expect(info.Os).toBe('linux');
      const raw = await skopeoInspect(reg, 'library/busybox:latest', { raw: true });
      expect(raw.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
      const config = await skopeoInspect(reg, 'library/busybox:latest', { config: true });
      expect(config.config.Cmd).toEqual(['sh']);
      const log = await reg.accessLog();
      expect(log).toContainEqual({ method: 'PUT', path: '/v2/library/busybox/manifests/latest', status: 201 });
      expect(log.some((e) => e.method === 'POST' && e.path === '/v2/library/busybox/blobs/uploads/' && e.status === 202)).toBe(true);
      // A cross-repository mount shows up as POST ...?mount= answered 201 (no upload follows).
      const layer = raw.layers[0].digest as string;
      const res = await fetch(`${reg.url}/v2/other/bb/blobs/uploads/?mount=${layer}&from=library/busybox`, { method: 'POST' });
      expect(res.status).toBe(201);
      expect(await reg.accessLog()).toContainEqual({
        method: 'POST', path: `/v2/other/bb/blobs/uploads/?mount=${layer}&from=library/busybox`, status: 201,
      });
    });
  });

  it('stop() ends the registry and removes its directory', async () => {
    const reg = await startRegistry();
    await reg.stop();
    await expect(stat(reg.runDir)).rejects.toThrow();
    await expect(fetch(`${reg.url}/v2/`)).rejects.toThrow();
    await reg.stop(); // idempotent
  });

  it('pushes a two-platform OCI index', async () => {
    await withRegistry({}, async (reg) => {
      const { layout } = await multiPlatformLayout();
      expect(layout).toMatch(/-multi$/);
      await pushMultiPlatform(reg, 'multi/img', 'v1');
      const raw = await skopeoInspect(reg, 'multi/img:v1', { raw: true });
      expect(raw.mediaType).toBe('application/vnd.oci.image.index.v1+json');
      expect(raw.manifests.map((m: any) => m.platform)).toEqual([
        { architecture: 'amd64', os: 'linux' },
        { architecture: 'arm64', os: 'linux', variant: 'v8' },
      ]);
      const arm = await skopeoInspect(reg, `multi/img@${raw.manifests[1].digest}`, { config: true });
      expect([arm.architecture, arm.variant]).toEqual(['arm64', 'v8']);
    });
  });
});

describe('htpasswd registry', () => {
  it('rejects bad credentials and anonymous access, accepts good ones', async () => {
    await withRegistry({ mode: 'htpasswd' }, async (reg) => {
      expect((await fetch(`${reg.url}/v2/`)).status).toBe(401);
      await pushBusybox(reg, 'private/bb');
      const bad = await rejection(skopeoInspect(reg, 'private/bb:latest', { creds: `${reg.username}:wrong` }));
      expect(bad.stderr).toMatch(/unauthorized|authentication required/i);
      await rejection(skopeoInspect(reg, 'private/bb:latest', { creds: false }));
      expect((await skopeoInspect(reg, 'private/bb:latest')).Os).toBe('linux');
    });
  });
});

describe('token registry', () => {
  it('issues tokens to skopeo, refuses bad passwords, gives anonymous callers no access', async () => {
    await withRegistry({ mode: 'token', users: { alice: 'pw-a', bob: 'pw-b' } }, async (reg) => {
      const token = reg.token!;
      expect(reg.username).toBe('alice');
      expect(token.issued()).toBe(0);
      await pushBusybox(reg, 'team/bb');
      expect(token.issued()).toBeGreaterThan(0);
      expect((await skopeoInspect(reg, 'team/bb:latest', { creds: 'bob:pw-b' })).Os).toBe('linux');
      await rejection(skopeoInspect(reg, 'team/bb:latest', { creds: 'bob:nope' }));
      expect(token.requests().some((r) => r.user === 'bob' && r.status === 401)).toBe(true);
      await rejection(skopeoInspect(reg, 'team/bb:latest', { creds: false }));

      // Two scopes in one request, as a cross-repository mount asks.
      const basic = Buffer.from('alice:pw-a').toString('base64');
      const q = `service=${token.service}&scope=repository:a/x:pull,push&scope=repository:b/y:pull`;
      const res = await fetch(`${token.url}?${q}`, { headers: { authorization: `Basic ${basic}` } });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { token: string; access_token: string; expires_in: number };
      expect(body.access_token).toBe(body.token);
      const [h, c] = body.token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url').toString('utf8')));
      expect(h.alg).toBe('RS256');
      expect(h.x5c).toHaveLength(1);
      expect(c.aud).toBe(token.service);
      expect(c.access).toEqual([
        { type: 'repository', name: 'a/x', actions: ['pull', 'push'] },
        { type: 'repository', name: 'b/y', actions: ['pull', 'push'] },
      ]);
    });
  });

  it('rejects expired tokens only after the registry\'s 60 s leeway', async () => {
    await withRegistry({ mode: 'token' }, async (reg) => {
      await pushBusybox(reg, 'exp/bb');
      const t = reg.token!;
      const basic = Buffer.from(`${reg.username}:${reg.password}`).toString('base64');
      const tokenWithTtl = async (ttl: number): Promise<string> => {
        t.setTtl(ttl);
        const res = await fetch(`${t.url}?service=${t.service}&scope=repository:exp/bb:pull`, {
          headers: { authorization: `Basic ${basic}` },
        });
        return ((await res.json()) as { token: string }).token;
      };
      const status = async (token: string): Promise<number> =>
        (await fetch(`${reg.url}/v2/exp/bb/tags/list`, { headers: { authorization: `Bearer ${token}` } })).status;
      expect(await status(await tokenWithTtl(300))).toBe(200);
      expect(await status(await tokenWithTtl(-30))).toBe(200);
      expect(await status(await tokenWithTtl(-70))).toBe(401);
      t.setTtl(300);
      t.setExpShift(-400);
      expect(await status(await tokenWithTtl(300))).toBe(401);
    });
  });
});

describe('TLS registry', () => {
  it('works with certDir and fails verification without the CA', async () => {
    await withRegistry({ mode: 'tls' }, async (reg) => {
      expect(reg.url).toBe(`https://${reg.host}`);
      expect(await readFile(path.join(reg.certDir!, 'ca.crt'), 'utf8')).toContain('BEGIN CERTIFICATE');
      await pushBusybox(reg, 'secure/bb', 'v1', 'oci');
      expect((await skopeoInspect(reg, 'secure/bb:v1', { raw: true })).config.mediaType).toBe('application/vnd.oci.image.config.v1+json');
      const err = await rejection(skopeoInspect(reg, 'secure/bb:v1', { certDir: false, tlsVerify: true }));
      expect(err.stderr).toMatch(/certificate|x509/i);
      expect((await skopeoInspect(reg, 'secure/bb:v1', { certDir: false, tlsVerify: false })).Os).toBe('linux');
    });
  });

  it('combines TLS with htpasswd', async () => {
    await withRegistry({ mode: 'htpasswd', tls: true }, async (reg) => {
      expect(reg.mode).toBe('htpasswd');
      expect(reg.url.startsWith('https://')).toBe(true);
      await pushBusybox(reg);
      await rejection(skopeoInspect(reg, 'library/busybox:latest', { creds: false }));
      expect((await skopeoInspect(reg, 'library/busybox:latest')).Os).toBe('linux');
    });
  });
});

describe('parseAccessLog', () => {
  it('reads combined-log lines and ignores the rest', () => {
    const text = [
      'time="2025-01-01T00:00:00Z" level=info msg="response completed" http.request.method=PUT',
      '127.0.0.1 - - [01/Jan/2025:00:00:00 +0000] "POST /v2/a/blobs/uploads/?mount=sha256:ab&from=b HTTP/1.1" 201 0 "" "skopeo"',
    ].join('\n');
    expect(parseAccessLog(text)).toEqual([{ method: 'POST', path: '/v2/a/blobs/uploads/?mount=sha256:ab&from=b', status: 201 }]);
  });
});
