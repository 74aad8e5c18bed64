// Hostile base images pushed to the real registry, built FROM in the sandbox: refused with a typed error, nothing outside the build root touched.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReference } from '../../src/reference/index.js';
import { RegistryClient } from '../../src/registry/index.js';
import { makeTar } from '../rootfs/tar-helpers.js';
import { useFixture } from '../support/fixture.js';
import { pushRawImage } from '../support/raw-image.js';
import type { TestRegistry } from '../support/registry.js';
import { registryTags, ROOT, Workspace } from './helpers.js';

describe('a hostile base image cannot reach outside the build root', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let client: RegistryClient;

  useFixture({ prefix: 'builder-hostile-', push: null }, (f) => ({ reg, ws } = f));
  beforeAll(() => {
    client = new RegistryClient({});
  });
  afterAll(async () => {
    await client?.close();
  });

  async function layerDigests(ref: string): Promise<string[]> {
    const m = JSON.parse((await client.getManifest(parseReference(ref))).bytes.toString()) as { layers: Array<{ digest: string }> };
    return m.layers.map((l) => l.digest);
  }

  /** Sentinels in the work dir (beside the builder's own temp dir) and beside the work dir. */
  async function sentinels(work: string): Promise<() => Promise<void>> {
    await mkdir(work, { recursive: true });
    await writeFile(path.join(work, 'sentinel'), 'work');
    await writeFile(ws.path('sentinel'), 'workspace');
    return async () => {
      expect(await readFile(path.join(work, 'sentinel'), 'utf8')).toBe('work');
      expect(await readFile(ws.path('sentinel'), 'utf8')).toBe('workspace');
    };
  }

  it('a layer entry ".wh..." (a whiteout naming "..") fails the build with ROOTFS_WHITEOUT_INVALID and deletes nothing', async () => {
    const lower = await makeTar([{ name: 'ok', content: 'fine' }]);
    const hostile = await makeTar([{ name: '.wh...', content: '' }]);
    const base = `${reg.host}/hostile/whiteout:v1`;
    await pushRawImage(client, base, [{ tar: lower }, { tar: hostile }]);
    const hostileDigest = (await layerDigests(base))[1]!;
    const work = ws.path('work-wh');
    const check = await sentinels(work);
    const ctx = await ws.context('ctx-wh', { Dockerfile: `FROM ${base}\nRUN true\n` });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--cleanup=false', '--destination', `${reg.host}/hostile/out:v1`], { work });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('ROOTFS_WHITEOUT_INVALID');
    expect(r.stderr).toContain(hostileDigest);
    expect(r.stderr).toContain('entry ".wh..."');
    expect(r.stderr).toMatch(/hint: .*\.wh\.NAME/);
    await check();
    // Kept work dir (--cleanup=false): the stage root and its parent survive, with the lower layer in place.
    const builds = (await readdir(work)).filter((n) => n.startsWith('build-'));
    expect(builds).toHaveLength(1);
    expect(await readFile(path.join(work, builds[0]!, 'stages/0/ok'), 'utf8')).toBe('fine');
    expect(await registryTags(reg, 'hostile/out')).toEqual([]);
  });

  it('a base layer whose content is not its config diff_id fails with ROOTFS_LAYER_DIFF_ID_MISMATCH', async () => {
    const real = await makeTar([{ name: 'f', content: 'real' }]);
    const claimed = await makeTar([{ name: 'f', content: 'claimed' }]);
    const base = `${reg.host}/hostile/diffid:v1`;
    await pushRawImage(client, base, [{ tar: real, diffId: `sha256:${createHash('sha256').update(claimed).digest('hex')}` }]);
    const ctx = await ws.context('ctx-diffid', { Dockerfile: `FROM ${base}\nRUN true\n` });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--destination', `${reg.host}/hostile/diffid-out:v1`], { work: ws.path('work-diffid') });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('ROOTFS_LAYER_DIFF_ID_MISMATCH');
    expect(r.stderr).toContain((await layerDigests(base))[0]!);
    expect(await registryTags(reg, 'hostile/diffid-out')).toEqual([]);
  });

  it('a base "image" whose layer is not a filesystem layer (a helm chart) fails with ROOTFS_LAYER_MEDIA_TYPE_UNSUPPORTED', async () => {
    const tar = await makeTar([{ name: 'Chart.yaml', content: 'name: x' }]);
    const base = `${reg.host}/hostile/chart:v1`;
    await pushRawImage(client, base, [{ tar, mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip' }], 'oci');
    const ctx = await ws.context('ctx-chart', { Dockerfile: `FROM ${base}\nRUN true\n` });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--destination', `${reg.host}/hostile/chart-out:v1`], { work: ws.path('work-chart') });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('ROOTFS_LAYER_MEDIA_TYPE_UNSUPPORTED');
    expect(r.stderr).toContain('helm.chart');
    expect(await registryTags(reg, 'hostile/chart-out')).toEqual([]);
  });

  it.each([
    // 12 MB of config: refused before it is parsed; 5000 entries (60 KB) are parsed, then refused for what Env holds.
    [1_000_000, 'IMAGE_CONFIG_TOO_LARGE', /config of .*: \d+ bytes, more than builder reads/],
    [5_000, 'IMAGE_CONFIG_ENV_TOO_LARGE', /its Env holds 5000 entries/],
  ])('a base config whose Env holds %i entries fails early with %s, in bounded memory', async (n, code, message) => {
    const env = Array.from({ length: n }, (_, i) => `V${i}=x`);
    const base = `${reg.host}/hostile/env:${n}`;
    await pushRawImage(client, base, [{ tar: await makeTar([{ name: 'f', content: 'x' }]) }], 'docker', { Env: env });
    const ctx = await ws.context('ctx-env', { Dockerfile: `FROM ${base}\nRUN true\n` });
    const args = ['--context', ctx, '--cache-dir', ws.path('cache'), '--work-dir', ws.path(`work-env-${n}`), '--run-mode', 'sandbox', '--destination', `${reg.host}/hostile/env-out:v1`];
    // GNU time prints the builder's peak RSS (KiB) as the last stderr line.
    const r = spawnSync('/usr/bin/time', ['-f', '%M', 'node', path.join(ROOT, 'bin/builder'), ...args], { cwd: ws.dir, env: ws.env, encoding: 'utf8', timeout: 110_000 });
    expect(r.status, r.stderr).toBe(1);
    expect(Number(r.stderr.trim().split('\n').at(-1)) / 1024).toBeLessThan(150);
    expect(r.stderr).toContain(code);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/hint: /);
    expect(r.stderr).not.toMatch(/internal error|E2BIG/);
    expect(await registryTags(reg, 'hostile/env-out')).toEqual([]);
  });
});
