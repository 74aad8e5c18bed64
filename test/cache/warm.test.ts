// `builder warm` and the base-image store: concurrent warmers, offline builds from a pinned base, one manifest request per tag, corrupt entries.
import { createHash } from 'node:crypto';
import { chmod, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useFixture } from '../support/fixture.js';
import { pushBusybox, pushMultiPlatform } from '../support/images.js';
import type { AccessLogEntry, TestRegistry } from '../support/registry.js';
import { run, RunError, umociUnpack } from '../support/tools.js';
import { ROOT, Workspace, type CliResult } from '../executor/helpers.js';

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

/** `builder warm ARGS` as a child process in the workspace; never throws for a non-zero exit. */
async function warm(ws: Workspace, args: string[]): Promise<CliResult> {
  try {
    return { code: 0, ...(await run('node', [path.join(ROOT, 'bin/builder'), 'warm', ...args], { cwd: ws.dir, env: ws.env, timeoutMs: 110_000 })) };
  } catch (err) {
    if (err instanceof RunError) return { code: err.exitCode, stdout: err.stdout, stderr: err.stderr };
    throw err;
  }
}

async function warmOk(ws: Workspace, args: string[]): Promise<CliResult> {
  const r = await warm(ws, args);
  if (r.code !== 0) throw new Error(`builder warm ${args.join(' ')} exited ${r.code}\nstderr:\n${r.stderr}`);
  return r;
}

/** The registry's manifest for ref ("repo:tag" or "repo@digest") with its digest; no builder code involved. */
async function registryManifest(reg: TestRegistry, repo: string, ident: string): Promise<{ digest: string; json: any }> {
  const res = await fetch(`${reg.url}/v2/${repo}/manifests/${ident}`, { headers: { accept: MANIFEST_ACCEPT } });
  if (!res.ok) throw new Error(`GET manifest ${repo}:${ident}: HTTP ${res.status}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  return { digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, json: JSON.parse(bytes.toString('utf8')) };
}

const blobDir = (cache: string): string => path.join(cache, 'blobs-store', 'blobs', 'sha256');
const blobFile = (cache: string, digest: string): string => path.join(blobDir(cache), digest.slice('sha256:'.length));

/** Every file under dir, recursively (relative paths). */
async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath, e.name)));
  return out;
}

const sha256File = async (file: string): Promise<string> => createHash('sha256').update(await readFile(file)).digest('hex');

const onRepo = (log: AccessLogEntry[], repo: string, kind: 'manifests' | 'blobs'): AccessLogEntry[] =>
  log.filter((e) => e.path.startsWith(`/v2/${repo}/${kind}/`));

/** Overwrites a stored blob with other bytes of the same length (the store writes read-only files). */
async function corrupt(file: string): Promise<void> {
  const bytes = await readFile(file);
  bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
  await chmod(file, 0o644);
  await writeFile(file, bytes);
}

describe('builder warm', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let tagRef: string;
  let multiRef: string;

  useFixture({ prefix: 'builder-warm-', repo: 'warm/base', tag: 'v1' }, (f) => ({ reg, ws, base: tagRef } = f));
  beforeAll(async () => {
    multiRef = await pushMultiPlatform(reg, 'warm/multi', 'v1');
  });

  it('two warmers on one empty dir at once both succeed and leave only verified blobs, no temp files', async () => {
    const cache = ws.path('cache-concurrent');
    const args = ['--cache-dir', cache, '-i', tagRef, '-i', multiRef, '--custom-platform', 'linux/arm64/v8'];
    const [a, b] = await Promise.all([warm(ws, args), warm(ws, args)]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    const files = await allFiles(cache);
    expect(files.filter((f) => path.basename(f).includes('.tmp-'))).toEqual([]);
    const blobs = await readdir(blobDir(cache));
    for (const name of blobs) expect(await sha256File(path.join(blobDir(cache), name))).toBe(name);
    // Everything each image needs is there: index, the arm64 manifest, configs, layers.
    const bb = await registryManifest(reg, 'warm/base', 'v1');
    const multi = await registryManifest(reg, 'warm/multi', 'v1');
    const arm = multi.json.manifests.find((m: any) => m.platform.architecture === 'arm64');
    const armManifest = await registryManifest(reg, 'warm/multi', arm.digest);
    const want = [bb.digest, bb.json.config.digest, ...bb.json.layers.map((l: any) => l.digest),
      multi.digest, arm.digest, armManifest.json.config.digest, ...armManifest.json.layers.map((l: any) => l.digest)];
    expect(blobs.sort()).toEqual([...new Set(want.map((d: string) => d.slice(7)))].sort());
    expect(a.stderr).toMatch(/warmed .*warm\/base:v1 .*-> sha256:/);
  });

  it('a build FROM a tag on a warm store costs one manifest request and no blob download', async () => {
    const cache = ws.path('cache-tag');
    await warmOk(ws, ['--cache-dir', cache, '--image', tagRef]);
    const ctx = await ws.context('ctx-tag', { Dockerfile: `FROM ${tagRef}\nRUN echo hi > /hi.txt\n` });
    const before = (await reg.accessLog()).length;
    await ws.buildOk(ctx, ['--run-mode', 'sandbox', '--no-push'], { cache });
    const log = (await reg.accessLog()).slice(before);
    expect(onRepo(log, 'warm/base', 'manifests').map((e) => `${e.method} ${e.status}`)).toEqual(['GET 200']);
    expect(onRepo(log, 'warm/base', 'blobs')).toEqual([]);
  });

  it('a build FROM a multi-platform index pinned by digest on a warm store makes no registry request', async () => {
    const cache = ws.path('cache-index');
    const { digest } = await registryManifest(reg, 'warm/multi', 'v1');
    const pinned = `${reg.host}/warm/multi@${digest}`;
    await warmOk(ws, ['--cache-dir', cache, '--image', pinned]);
    const ctx = await ws.context('ctx-index', { Dockerfile: `FROM ${pinned}\nRUN echo hi > /hi.txt\n` });
    const before = (await reg.accessLog()).length;
    await ws.buildOk(ctx, ['--run-mode', 'sandbox', '--no-push'], { cache });
    expect((await reg.accessLog()).slice(before).filter((e) => e.path.startsWith('/v2/warm/'))).toEqual([]);
  });

  it('a build that needs no base layer succeeds when the cache cannot be written (documents are cached best effort)', async () => {
    const cache = ws.path('cache-unwritable');
    await ws.context('cache-unwritable', { 'blobs-store': 'a file where the store directory should be' });
    const ctx = await ws.context('ctx-unwritable', { Dockerfile: `FROM ${tagRef}\nLABEL a=b\n` });
    // a warning: shown without --verbose (-v is kaniko's --verbosity)
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--no-push'], { cache });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/going on without caching it/);
  });

  it('a build drops a corrupt stored layer and config and downloads them again', async () => {
    const cache = ws.path('cache-corrupt');
    await warmOk(ws, ['--cache-dir', cache, '--image', tagRef]);
    const m = await registryManifest(reg, 'warm/base', 'v1');
    const layer = m.json.layers[0].digest as string;
    await corrupt(blobFile(cache, layer));
    await corrupt(blobFile(cache, m.json.config.digest));
    const ctx = await ws.context('ctx-corrupt', { Dockerfile: `FROM ${reg.host}/warm/base@${m.digest}\nRUN echo ok > /ok.txt\n` });
    const before = (await reg.accessLog()).length;
    await ws.buildOk(ctx, ['--run-mode', 'sandbox', '--no-push'], { cache });
    const log = (await reg.accessLog()).slice(before);
    // Pinned by digest: the manifest comes from the store; the two damaged blobs from the registry, once each.
    expect(onRepo(log, 'warm/base', 'manifests')).toEqual([]);
    expect(onRepo(log, 'warm/base', 'blobs').map((e) => e.path.split('/').pop()).sort()).toEqual([layer, m.json.config.digest].sort());
    expect(await sha256File(blobFile(cache, layer))).toBe(layer.slice(7));
    expect(await sha256File(blobFile(cache, m.json.config.digest))).toBe(m.json.config.digest.slice(7));
  });

  it('warm repairs a corrupt stored layer', async () => {
    const cache = ws.path('cache-repair');
    await warmOk(ws, ['--cache-dir', cache, '--image', tagRef]);
    const layer = (await registryManifest(reg, 'warm/base', 'v1')).json.layers[0].digest as string;
    await corrupt(blobFile(cache, layer));
    const r = await warmOk(ws, ['--cache-dir', cache, '--image', tagRef]);
    expect(r.stderr).toContain(`${layer} (`);
    expect(r.stderr).toMatch(/was corrupt in the store and was removed; downloading it again/);
    expect(await sha256File(blobFile(cache, layer))).toBe(layer.slice(7));
  });

  it('--cache-ttl: a tag resolved within the TTL is not asked of the registry; without it, one manifest GET', async () => {
    const cache = ws.path('cache-ttl');
    await warmOk(ws, ['--cache-dir', cache, '--image', tagRef]);
    let before = (await reg.accessLog()).length;
    const fresh = await warmOk(ws, ['--cache-dir', cache, '--image', tagRef, '--cache-ttl', '1h']);
    expect((await reg.accessLog()).slice(before)).toEqual([]);
    expect(fresh.stderr).toMatch(/within the cache TTL/);
    before = (await reg.accessLog()).length;
    await warmOk(ws, ['--cache-dir', cache, '--image', tagRef]);
    const log = (await reg.accessLog()).slice(before);
    expect(onRepo(log, 'warm/base', 'manifests').map((e) => e.method)).toEqual(['GET']);
    expect(onRepo(log, 'warm/base', 'blobs')).toEqual([]);
  });

  it('--cache-ttl: a moved tag is seen again once its record is older than the TTL', async () => {
    const cache = ws.path('cache-moved');
    const moving = await pushBusybox(reg, 'warm/moving', 'v1', 'v2s2');
    const first = await registryManifest(reg, 'warm/moving', 'v1');
    await warmOk(ws, ['--cache-dir', cache, '--image', moving]);
    await pushBusybox(reg, 'warm/moving', 'v1', 'oci'); // same content, other media types: another manifest digest
    const second = await registryManifest(reg, 'warm/moving', 'v1');
    expect(second.digest).not.toBe(first.digest);
    const within = await warmOk(ws, ['--cache-dir', cache, '--image', moving, '--cache-ttl', '1h']);
    expect(within.stderr).toContain(`-> ${first.digest}`);
    await new Promise((r) => setTimeout(r, 20));
    const expired = await warmOk(ws, ['--cache-dir', cache, '--image', moving, '--cache-ttl', '10ms']);
    expect(expired.stderr).toContain(`-> ${second.digest}`);
  });

  it('--cache-ttl: a recorded digest that is gone from the store and the registry falls back to the tag', async () => {
    const cache = ws.path('cache-gone');
    const ref = await pushBusybox(reg, 'warm/gone', 'v1', 'v2s2');
    const first = await registryManifest(reg, 'warm/gone', 'v1');
    await warmOk(ws, ['--cache-dir', cache, '--image', ref]);
    await pushBusybox(reg, 'warm/gone', 'v1', 'oci');
    const second = await registryManifest(reg, 'warm/gone', 'v1');
    const del = await fetch(`${reg.url}/v2/warm/gone/manifests/${first.digest}`, { method: 'DELETE' });
    expect(del.status).toBe(202);
    await rm(blobFile(cache, first.digest));
    const r = await warmOk(ws, ['--cache-dir', cache, '--image', ref, '--cache-ttl', '1h']);
    expect(r.stderr).toMatch(/recorded digest cannot be resolved/);
    expect(r.stderr).toContain(`-> ${second.digest}`);
  });

  it('--force downloads every document and layer again', async () => {
    const cache = ws.path('cache-force');
    await warmOk(ws, ['--cache-dir', cache, '--image', tagRef]);
    const before = (await reg.accessLog()).length;
    await warmOk(ws, ['--cache-dir', cache, '--image', tagRef, '--force']);
    const log = (await reg.accessLog()).slice(before);
    const m = await registryManifest(reg, 'warm/base', 'v1');
    expect(onRepo(log, 'warm/base', 'blobs').filter((e) => e.method === 'GET')).toHaveLength(1 + m.json.layers.length);
  });

  it('--dockerfile warms the FROM images of every stage, with --build-arg', async () => {
    const cache = ws.path('cache-df');
    await ws.context('df', {
      Dockerfile: `ARG BASE\nFROM \${BASE} AS one\nRUN true\nFROM one AS two\nFROM scratch\nCOPY --from=${multiRef} /bin/busybox /busybox\n`,
    });
    const r = await warmOk(ws, ['--cache-dir', cache, '-d', 'df/Dockerfile', '--build-arg', `BASE=${tagRef}`]);
    expect(r.stderr).toMatch(/warmed .*warm\/base:v1/);
    expect(r.stderr).toMatch(/warmed .*warm\/multi:v1/);
    expect(r.stderr).not.toMatch(/scratch|warming .*one/);
  });

  it('an image that does not exist fails with its registry error and a non-zero exit; the others are warmed', async () => {
    const cache = ws.path('cache-fail');
    const r = await warm(ws, ['--cache-dir', cache, '-i', `${reg.host}/warm/base:nope`, '-i', tagRef]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error REGISTRY_MANIFEST_UNKNOWN: .*warm\/base:nope/);
    expect(r.stderr).toMatch(/warmed .*warm\/base:v1/);
  });

  it('no image is a usage error', async () => {
    const r = await warm(ws, ['--cache-dir', ws.path('cache-none')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/WARM_NO_IMAGES/);
  });
});

describe('a warmed base pinned by digest builds with the registry stopped', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let tag: string;
  // umoci unpacks OCI media types only
  useFixture({ prefix: 'builder-warm-offline-', repo: 'offline/base', tag: 'v1', format: 'oci' }, (f) => ({ reg, ws, base: tag } = f));

  it('builds FROM host/repo@sha256 with a RUN step offline, and umoci unpacks the result', async () => {
    const r = reg;
    const { digest } = await registryManifest(r, 'offline/base', 'v1');
    const pinned = `${r.host}/offline/base@${digest}`;
    const cache = ws.path('cache');
    await warmOk(ws, ['--cache-dir', cache, '--image', pinned]);
    await r.stop(); // a second stop (the fixture's) is a no-op
    const ctx = await ws.context('ctx', { Dockerfile: `FROM ${pinned}\nRUN echo offline > /offline.txt && ls /bin/busybox\n` });
    await ws.buildOk(ctx, ['--run-mode', 'sandbox', '--destination', `${tag.replace(/:v1$/, '')}-out:v1`, '--no-push', '--oci-layout-path', ws.path('out')], { cache });
    const rootfs = await umociUnpack(ws.path('out'), 'v1', ws.path('bundle'));
    expect(await readFile(path.join(rootfs, 'offline.txt'), 'utf8')).toBe('offline\n');
    expect((await readFile(path.join(rootfs, 'bin/busybox'))).length).toBeGreaterThan(100_000);
  });
});
