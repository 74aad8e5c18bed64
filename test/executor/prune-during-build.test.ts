// Issue 18 item 3: `builder cache prune --cache-dir` while builds run never deletes an extracted base a build has
// mounted or is extracting, never crashes, and a build whose base vanished anyway fails naming that, never pushing
// an image without its base. Real builds (sandbox mode, overlay mounts), real prunes, the pushed image read by umoci.
import { access, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Leases } from '../../src/cache/lease.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { registryTags, Workspace } from './helpers.js';

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

/** Whether an overlay is mounted at or below dir. */
async function overlayUnder(dir: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  return mounts.split('\n').some((l) => l.startsWith('overlay ') && l.split(' ')[1]!.startsWith(dir));
}

describe('cache prune --cache-dir during builds', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;

  useFixture({ prefix: 'builder-prune-live-' }, (f) => ({ reg, ws, base } = f));

  const dockerfile = (): string => `FROM ${base}\nRUN sleep 2 && echo one > /one.txt\nRUN sleep 1 && /bin/busybox ls /bin/busybox > /two.txt\n`;

  it('prunes with --older-than 0s all through a build: every prune exits 0, the build succeeds, the image holds its base', async () => {
    const cache = ws.path('cache-a');
    const ctx = await ws.context('a', { Dockerfile: dockerfile() });
    let done = false;
    const build = ws.build(ctx, ['--run-mode', 'sandbox', '--destination', `${reg.host}/prune/live:a`], { cache, work: ws.path('work-a') })
      .finally(() => { done = true; });
    const prunes: Array<{ code: number; stdout: string; stderr: string; duringMount: boolean }> = [];
    while (!done) {
      const duringMount = await overlayUnder(ws.path('work-a'));
      const r = await ws.cli(['cache', 'prune', '--cache-dir', cache, '--older-than', '0s']);
      prunes.push({ code: r.code, stdout: r.stdout, stderr: r.stderr, duringMount });
    }
    const b = await build;
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toContain('mounted (overlay) on the extracted-base store');
    for (const p of prunes) {
      expect(p.code, p.stderr).toBe(0);
      expect(p.stderr).not.toContain('internal error');
    }
    // prunes really ran while the base was under the build's overlay
    expect(prunes.filter((p) => p.duringMount).length).toBeGreaterThan(0);

    const root = await ws.unpack(reg, 'prune/live:a', 'live-a');
    for (const f of ['bin/busybox', 'bin/sh', 'one.txt', 'two.txt']) expect(await exists(path.join(root, f)), f).toBe(true);
    expect(await readFile(path.join(root, 'two.txt'), 'utf8')).toBe('/bin/busybox\n');

    // once the build is over nothing holds the base: a prune deletes it (if the last one in the loop did not) and
    // leaves no temp dir; the build left no lease behind
    const after = await ws.cli(['cache', 'prune', '--cache-dir', cache, '--older-than', '0s']);
    expect(after.code, after.stderr).toBe(0);
    const store = path.join(cache, 'rootfs-store/v1');
    expect(await readdir(store)).toEqual([]);
    expect(await readdir(path.join(cache, 'rootfs-store/leases'))).toEqual([]);
    expect(prunes.some((p) => /^sha256:[0-9a-f]{64} /m.test(p.stdout)) || /^sha256:[0-9a-f]{64} /m.test(after.stdout)).toBe(true);
  });

  it('a base removed under a running build (as an older prune did): the build fails with ROOTFS_STORE_ENTRY_VANISHED and pushes nothing', async () => {
    const cache = ws.path('cache-b');
    const ctx = await ws.context('b', { Dockerfile: dockerfile() });
    const work = ws.path('work-b');
    const build = ws.build(ctx, ['--run-mode', 'sandbox', '--destination', `${reg.host}/prune/gone:b`], { cache, work });
    const store = path.join(cache, 'rootfs-store/v1');
    for (let i = 0; i < 600 && !(await overlayUnder(work)); i++) await sleep(20);
    expect(await overlayUnder(work)).toBe(true);
    // what the old prune did, whatever the build holds: rename the entry away, then delete it
    const entry = (await readdir(store)).find((n) => /^[0-9a-f]{64}$/.test(n))!;
    await rename(path.join(store, entry), path.join(store, '.gone'));
    await rm(path.join(store, '.gone'), { recursive: true, force: true });
    const b = await build;
    expect(b.code).toBe(1);
    expect(b.stderr).toContain('ROOTFS_STORE_ENTRY_VANISHED');
    expect(b.stderr).toContain('was removed while the build ran');
    expect(await registryTags(reg, 'prune/gone')).toEqual([]);
  });

  it('temp dirs are judged by their lease (pid and start time), not by mtimes: one being filled stays, a dead build\'s goes', async () => {
    const store = path.join(ws.path('cache-c'), 'rootfs-store/v1');
    await mkdir(store, { recursive: true });
    const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    const ns = await import('node:fs/promises').then((f) => f.readlink('/proc/self/ns/pid'));
    // a temp dir this (live) process holds and keeps writing into: its top dir's mtime is old, files below are new
    const live = path.join(store, '.tmp-live');
    const leaseDir = path.join(ws.path('cache-c'), 'rootfs-store/leases');
    const leases = new Leases(leaseDir);
    await leases.take('.tmp-live');
    await mkdir(path.join(live, 'root/deep'), { recursive: true });
    // a temp dir whose lease names a process that is gone (a pid with another start time), and one with no lease
    await mkdir(path.join(store, '.tmp-dead/root'), { recursive: true });
    await writeFile(path.join(leaseDir, '.tmp-dead@1-x'), JSON.stringify({ pid: 1, start: 'not-its-start-time', boot, ns }));
    await mkdir(path.join(store, '.tmp-orphan/root'), { recursive: true });
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await writeFile(path.join(live, 'root/deep', `f${i % 50}`), 'x'.repeat(4096));
        await sleep(1);
      }
    })();
    try {
      for (let i = 0; i < 3; i++) {
        const r = await ws.cli(['cache', 'prune', '--cache-dir', ws.path('cache-c'), '--older-than', '0s']);
        expect(r.code, r.stderr).toBe(0);
      }
    } finally {
      writing = false;
      await writer;
    }
    const left = await readdir(store);
    expect(left).toContain('.tmp-live');
    expect(left).not.toContain('.tmp-dead');
    expect(left).not.toContain('.tmp-orphan');
    expect(await readdir(leaseDir)).toEqual([expect.stringMatching(/^\.tmp-live@/)]);
    await leases.release();
    expect(await readdir(leaseDir)).toEqual([]);
  });
});
