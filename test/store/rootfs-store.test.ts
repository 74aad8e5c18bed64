// The extracted-base store takes what it knows of the process from its caller (the CLI): the uid decides whether it
// mounts overlays, and its exit hook (detaching them) is registered through the caller's onExit while it has mounts.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CacheDir } from '../../src/store/index.js';
import type { Digest } from '../../src/digest/index.js';
import { unmountBelow } from '../support/tools.js';

const D1 = `sha256:${'1'.repeat(64)}` as Digest;

async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').map((l) => l.split(' ')[4] ?? '').filter((mp) => mp === dir || mp.startsWith(`${dir}/`));
}

describe('RootfsStore and its host', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'builder-rootfs-host-'));
  });
  afterAll(async () => {
    await unmountBelow(dir);
    await rm(dir, { recursive: true, force: true });
  });

  const fill = async (root: string): Promise<void> => writeFile(path.join(root, 'f'), 'x');

  it('not root: no mount is tried and no exit hook registered; the store lives in <cache-dir>/rootfs-store', async () => {
    const hooks: Array<() => void> = [];
    const store = new CacheDir(path.join(dir, 'c1'), { uid: 1000, onExit: (h) => (hooks.push(h), () => undefined) }).rootfs();
    const lower = await store.ensure([D1], fill);
    const to = path.join(dir, 'c1-root');
    expect(await store.mount([lower], to)).toEqual({ mounted: false, reason: 'not root' });
    expect(hooks).toEqual([]);
    expect(store.dir).toBe(path.join(dir, 'c1', 'rootfs-store', 'v1'));
  });

  it.runIf(process.getuid?.() === 0)('as root: the overlay mounts, the hook is registered once, detaches every mount at exit, and is removed by unmountAll', async () => {
    const registered: Array<() => void> = [];
    let removed = 0;
    const store = new CacheDir(path.join(dir, 'c2'), { uid: 0, pid: 4242, onExit: (h) => {
      registered.push(h);
      return () => void removed++;
    } }).rootfs();
    let filled = '';
    const lower = await store.ensure([D1], async (root) => {
      filled = root;
      await fill(root);
    });
    // the temp dir it filled names the pid it was given
    expect(path.basename(path.dirname(filled))).toMatch(/^\.tmp-1{16}-4242-[0-9a-f]{8}$/);
    const a = path.join(dir, 'c2-a');
    const b = path.join(dir, 'c2-b');
    await mkdir(a);
    expect((await store.mount([lower], a)).mounted).toBe(true);
    expect((await store.mount([lower], b)).mounted).toBe(true);
    expect(registered).toHaveLength(1);
    expect(await readFile(path.join(b, 'f'), 'utf8')).toBe('x');
    // what process.exit() runs: both mounts gone, synchronously
    registered[0]!();
    expect((await mountsUnder(dir)).filter((m) => m.startsWith(path.join(dir, 'c2-')))).toEqual([]);
    await store.unmountAll();
    expect(removed).toBe(1);
  });
});
