// The extracted-base store: a warm build clones the base root from <cache-dir>/rootfs-store instead of extracting it again.
import { lstat, mkdir, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainId, RootfsStore } from '../../src/cache/index.js';
import type { Digest } from '../../src/digest/index.js';
import { pushBusybox } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { compileIfStale, Workspace } from './helpers.js';

const D1 = `sha256:${'1'.repeat(64)}` as Digest;
const D2 = `sha256:${'2'.repeat(64)}` as Digest;

describe('extracted-base store', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;

  beforeAll(async () => {
    [reg, ws] = await Promise.all([startRegistry({ mode: 'plain' }), Workspace.create('builder-base-store-'), compileIfStale()]);
    base = await pushBusybox(reg, 'store/base', 'v1', 'oci');
  });
  afterAll(async () => {
    await reg?.stop();
    await ws?.remove();
  });

  const entries = async (cache: string): Promise<string[]> =>
    (await readdir(path.join(cache, 'rootfs-store', 'v1')).catch(() => [] as string[])).sort();

  it('a RUN on a cloned root makes the same layer as on a freshly extracted one, and leaves the store as it was', async () => {
    // The RUN changes a base file, deletes one and adds one: the diff against the clone must see exactly these.
    const ctx = await ws.context('same', {
      Dockerfile: `FROM ${base}\nRUN echo changed >> /etc/passwd && rm /etc/group && echo new > /new.txt\n`,
    });
    const cache = ws.path('cache-same');
    const args = ['--run-mode', 'sandbox', '--reproducible', '--no-push'];
    const cold = await ws.build(ctx, [...args, '--digest-file', ws.path('same-1.digest')], { cache });
    expect(cold.code, cold.stderr).toBe(0);
    expect(cold.stderr).toContain('cloned from the extracted-base store (extracted into it first)');
    const [entry] = await entries(cache);
    expect(entry).toMatch(/^[0-9a-f]{64}$/);
    const warm = await ws.build(ctx, [...args, '--digest-file', ws.path('same-2.digest')], { cache });
    expect(warm.code, warm.stderr).toBe(0);
    expect(warm.stderr).toMatch(/base root \(1 layer\) cloned from the extracted-base store in/);
    expect(warm.stderr).not.toContain('extracting 1 layer');
    expect(await readFile(ws.path('same-2.digest'), 'utf8')).toBe(await readFile(ws.path('same-1.digest'), 'utf8'));
    // What RUN changed in the clone never reaches the store's copy.
    const storeRoot = path.join(cache, 'rootfs-store', 'v1', entry!, 'root');
    expect(await readFile(path.join(storeRoot, 'etc/passwd'), 'utf8')).not.toContain('changed');
    expect((await lstat(path.join(storeRoot, 'etc/group'))).isFile()).toBe(true);
    await expect(lstat(path.join(storeRoot, 'new.txt'))).rejects.toThrow();
  });

  it('an entry whose root is gone (pruned mid-build) falls back to extracting, with a warning', async () => {
    const ctx = await ws.context('gone', { Dockerfile: `FROM ${base}\nRUN echo hi > /hi.txt\n` });
    const cache = ws.path('cache-gone');
    await ws.buildOk(ctx, ['--run-mode', 'sandbox', '--no-push'], { cache });
    const [entry] = await entries(cache);
    await rm(path.join(cache, 'rootfs-store', 'v1', entry!, 'root'), { recursive: true });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--no-push'], { cache });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('extracting the base instead');
    expect(r.stderr).toContain('extracting 1 layer');
  });

  it('a fill that fails (a crash mid-extract) leaves no entry that looks complete, and no temp dir', async () => {
    const store = new RootfsStore(ws.path('store-crash'));
    await expect(store.ensure([D1], async (dir) => {
      await writeFile(path.join(dir, 'half'), 'x');
      throw new Error('disk on fire');
    })).rejects.toThrow('disk on fire');
    expect(await store.lookup([D1])).toBeUndefined();
    expect(await readdir(store.dir)).toEqual([]);
  });

  it('two builds filling the same entry at once both get one complete entry', async () => {
    const store = new RootfsStore(ws.path('store-race'));
    const fill = async (dir: string): Promise<void> => {
      await new Promise((r) => setTimeout(r, 50));
      await mkdir(path.join(dir, 'etc'));
      await writeFile(path.join(dir, 'etc/os-release'), 'ID=test\n');
    };
    const [a, b] = await Promise.all([store.ensure([D1, D2], fill), store.ensure([D1, D2], fill)]);
    expect(a).toBe(b);
    expect(await readdir(store.dir)).toEqual([chainId([D1, D2]).slice(7)]);
    expect(await readFile(path.join(a, 'etc/os-release'), 'utf8')).toBe('ID=test\n');
  });

  it('chainId follows the OCI definition (sha256 of "parent diff_id" for each next layer)', () => {
    expect(chainId([D1])).toBe(D1);
    // printf '%s %s' "sha256:11…" "sha256:22…" | sha256sum
    expect(chainId([D1, D2])).toBe('sha256:9932074217c35353d2e03a3f5a86549f7c67bfeb0ba53e23d69f4d4c8f7958f5');
  });

  it('builder cache prune --cache-dir removes entries unused for --older-than and keeps recent ones', async () => {
    const cache = ws.path('cache-prune');
    const store = new RootfsStore(path.join(cache, 'rootfs-store'));
    const fill = async (dir: string): Promise<void> => writeFile(path.join(dir, 'f'), 'x');
    const old = await store.ensure([D1], fill);
    await store.ensure([D2], fill);
    const longAgo = new Date(Date.now() - 30 * 24 * 3600 * 1000);
    await utimes(path.join(path.dirname(old), 'complete'), longAgo, longAgo);
    const r = await ws.cli(['cache', 'prune', '--cache-dir', cache, '--older-than', '336h']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(D1.slice(7));
    expect(await store.lookup([D1])).toBeUndefined();
    expect(await store.lookup([D2])).toBeDefined();
  });
});
