// The extracted-base store: a warm build clones the base root from <cache-dir>/rootfs-store instead of extracting it again.
import { lstat, mkdir, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RootfsStore } from '../../src/cache/index.js';
import { chainId as chainOf } from '../../src/image/index.js';
import type { Digest } from '../../src/digest/index.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { Workspace } from './helpers.js';

const D1 = `sha256:${'1'.repeat(64)}` as Digest;
const D2 = `sha256:${'2'.repeat(64)}` as Digest;

describe('extracted-base store', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;

  useFixture({ prefix: 'builder-base-store-', repo: 'store/base', tag: 'v1', format: 'oci' }, (f) => ({ reg, ws, base } = f));

  const entries = async (cache: string): Promise<string[]> =>
    (await readdir(path.join(cache, 'rootfs-store', 'v1')).catch(() => [] as string[])).sort();

  // Stage a changes, deletes and adds base files; b (FROM a: takes a's root over) deletes from both; the last stage
  // reads b. Every way of making a root must give the same image.
  const dockerfile = (): string => `FROM ${base} AS a
RUN echo changed >> /etc/passwd && rm /etc/group && echo new > /new.txt && mkdir -p /d && echo 1 > /d/f
FROM a AS b
RUN rm -r /d && rm /new.txt && echo b > /b.txt && ls / > /ls.txt
FROM ${base}
COPY --from=b /b.txt /ls.txt /etc/passwd /out/
RUN test ! -e /d && echo final > /f.txt
`;
  const build = async (name: string, cache: string): Promise<{ digest: string; stderr: string }> => {
    const ctx = await ws.context(`ctx-${name}`, { Dockerfile: dockerfile() });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--reproducible', '--no-push', '--digest-file', ws.path(`${name}.digest`)], { cache });
    if (r.code !== 0) throw new Error(`build ${name} failed:\n${r.stderr}`);
    return { digest: await readFile(ws.path(`${name}.digest`), 'utf8'), stderr: r.stderr };
  };
  const mountsUnder = async (dir: string): Promise<string[]> =>
    (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.includes(dir));

  it('a root mounted on, copied from, or extracted without the store gives the same image; RUN never changes the store', async () => {
    const cache = ws.path('cache-same');
    const cold = await build('cold', cache);
    expect(cold.stderr).toContain('mounted (overlay) on the extracted-base store (extracted into it first)');
    const [entry] = await entries(cache);
    expect(entry).toMatch(/^[0-9a-f]{64}$/);
    const warm = await build('warm', cache);
    expect(warm.stderr).toMatch(/base root \(1 layer\) mounted \(overlay\) on the extracted-base store in/);
    expect(warm.stderr).not.toContain('extracting 1 layer');
    expect(warm.digest).toBe(cold.digest);
    // mount(8) options cannot hold a ":" in a path: the store copies the base root instead.
    const copied = await build('copied', ws.path('cache:copied'));
    expect(copied.stderr).toContain('extracted bases are copied, not mounted');
    expect((await build('copied2', ws.path('cache:copied'))).stderr).toMatch(/base root \(1 layer\) copied from the extracted-base store in/);
    expect(copied.digest).toBe(cold.digest);
    // An entry whose root is gone (pruned mid-build): the layers are extracted into the stage root, as without a store.
    await rm(path.join(cache, 'rootfs-store', 'v1', entry!, 'root'), { recursive: true });
    const extracted = await build('extracted', cache);
    expect(extracted.stderr).toContain('extracting the base instead');
    expect(extracted.digest).toBe(cold.digest);
    // What RUN changed in the mounted roots never reached the store's copy.
    const storeRoot = path.join(ws.path('cache:copied'), 'rootfs-store', 'v1', entry!, 'root');
    expect(await readFile(path.join(storeRoot, 'etc/passwd'), 'utf8')).not.toContain('changed');
    expect((await lstat(path.join(storeRoot, 'etc/group'))).isFile()).toBe(true);
    await expect(lstat(path.join(storeRoot, 'new.txt'))).rejects.toThrow();
    expect(await mountsUnder(ws.dir)).toEqual([]);
  });

  it('a failing build leaves no overlay mounted', async () => {
    const ctx = await ws.context('fail', { Dockerfile: `FROM ${base}\nRUN echo x > /x\nRUN exit 3\n` });
    const cache = ws.path('cache-fail');
    await ws.buildOk(await ws.context('fill', { Dockerfile: `FROM ${base}\nRUN true\n` }), ['--run-mode', 'sandbox', '--no-push'], { cache });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--no-push'], { cache });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('mounted (overlay) on the extracted-base store');
    expect(await mountsUnder(ws.dir)).toEqual([]);
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
    // Two instances: two builds (processes) share only the directory.
    const store = new RootfsStore(ws.path('store-race'));
    const other = new RootfsStore(ws.path('store-race'));
    let fills = 0;
    const fill = async (dir: string): Promise<void> => {
      fills++;
      await new Promise((r) => setTimeout(r, 50));
      await mkdir(path.join(dir, 'etc'));
      await writeFile(path.join(dir, 'etc/os-release'), 'ID=test\n');
    };
    const [a, b] = await Promise.all([store.ensure([D1, D2], fill), other.ensure([D1, D2], fill)]);
    expect(fills).toBe(2);
    expect(a).toBe(b);
    expect(await readdir(store.dir)).toEqual([chainOf([{ diffId: D1 }, { diffId: D2 }]).slice(7)]);
    expect(await readFile(path.join(a, 'etc/os-release'), 'utf8')).toBe('ID=test\n');
  });

  it('stages of one build on the same base share one fill', async () => {
    const store = new RootfsStore(ws.path('store-share'));
    let fills = 0;
    const fill = async (dir: string): Promise<void> => {
      fills++;
      await writeFile(path.join(dir, 'f'), 'x');
    };
    await Promise.all([store.ensure([D2], fill), store.ensure([D2], fill)]);
    expect(fills).toBe(1);
  });

  it('over its size cap the store drops the least recently used entries, never one used in the last hour', async () => {
    const store = new RootfsStore(ws.path('store-cap'), { maxBytes: 10 });
    const fill = async (dir: string): Promise<number> => {
      await writeFile(path.join(dir, 'f'), 'x');
      return 8;
    };
    const old = await store.ensure([D1], fill);
    const longAgo = new Date(Date.now() - 2 * 3600 * 1000);
    await utimes(path.join(path.dirname(old), 'complete'), longAgo, longAgo);
    await store.ensure([D2], fill); // 16 bytes > 10: the entry unused for 2 h goes
    expect(await store.lookup([D1])).toBeUndefined();
    expect(await store.lookup([D2])).toBeDefined();
    await store.ensure([D1], fill);
    await store.ensure([D1, D2], fill); // 24 bytes, but every entry was used just now: all stay
    expect((await store.list()).map((e) => e.bytes)).toEqual([8, 8, 8]);
  });

  it('entries are named by the OCI ChainID (sha256 of "parent diff_id" for each next layer)', async () => {
    const store = new RootfsStore(ws.path('store-name'));
    await store.ensure([D1], async () => undefined);
    await store.ensure([D1, D2], async () => undefined);
    // the first: its diff_id; the next: printf '%s %s' "sha256:11…" "sha256:22…" | sha256sum
    expect((await readdir(store.dir)).sort()).toEqual(['1'.repeat(64), '9932074217c35353d2e03a3f5a86549f7c67bfeb0ba53e23d69f4d4c8f7958f5']);
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
