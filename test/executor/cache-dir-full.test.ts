// Issue 18 item 5: a --cache-dir that fills up while a base is extracted into its store: a BuilderError with a code and a
// hint (no raw ENOSPC stack), and no temp dir left in the store or the work dir. A real small filesystem (tmpfs, size=).
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { Workspace } from './helpers.js';

/** Every path under dir (relative), depth first. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    out.push(e.name);
    if (e.isDirectory()) for (const sub of await tree(path.join(dir, e.name))) out.push(`${e.name}/${sub}`);
  }
  return out;
}

describe('a --cache-dir that fills up during extraction', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  let small: string;

  useFixture({ prefix: 'builder-cachefull-' }, (f) => ({ reg, ws, base } = f));
  beforeAll(async () => {
    small = ws.path('small');
    await mkdir(small, { recursive: true });
    // room for the compressed layer (about 1 MiB), not for busybox extracted next to it
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1600k', 'tmpfs', small]);
  });
  afterAll(async () => {
    if (small) execFileSync('umount', ['-l', small]);
  });

  const temps = async (dir: string): Promise<string[]> => (await tree(dir)).filter((p) => /(^|\/)\.tmp-/.test(p));

  it('the store steps aside with a warning naming the full disk; the base is extracted into the work dir; no temp dir left', async () => {
    const ctx = await ws.context('ctx', { Dockerfile: `FROM ${base}\nRUN echo hi > /hi.txt\n` });
    const work = ws.path('work');
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--no-push'], { cache: small, work });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: the extracted-base store in .* ran out of space .*ENOSPC.*; extracting the base instead/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
    expect(await temps(small)).toEqual([]);
    expect(await tree(path.join(small, 'rootfs-store/v1'))).toEqual([]);
    expect(await tree(work)).toEqual([]);
  });

  it('with the work dir on the same full disk: exit 1, a code and a hint, no stack, no temp dir in the store or the work dir', async () => {
    const ctx = await ws.context('ctx2', { Dockerfile: `FROM ${base}\nRUN echo hi > /hi.txt\n` });
    const work = path.join(small, 'work');
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--no-push'], { cache: small, work });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ROOTFS_[A-Z_]+: .*ENOSPC/);
    expect(r.stderr).toMatch(/hint: .*(disk is full|free space)/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stderr).not.toContain('internal error');
    expect(await temps(small)).toEqual([]);
    expect(await tree(path.join(small, 'rootfs-store/v1'))).toEqual([]);
    expect(await tree(work)).toEqual([]);
  });
});
