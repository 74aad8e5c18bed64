// removeTree (the stage roots at the end of a build): the tree gone, never what a symlink in it points at, and never
// through a mount below it — a tmpfs, or a bind mount of the same disk, which `rm --one-file-system` would enter.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { removeTree } from '../../src/executor/leftovers.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'builder-rmtree-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A tree with nested dirs, files, a read-only dir and a symlink out of the tree (whose target must survive). */
async function tree(root: string, outside: string): Promise<void> {
  for (let i = 0; i < 20; i++) {
    await mkdir(path.join(root, `d${i}/e`), { recursive: true });
    await writeFile(path.join(root, `d${i}/e/f`), 'x');
  }
  await mkdir(path.join(root, 'ro'), { mode: 0o500 });
  await symlink(outside, path.join(root, 'link'));
}

describe('removeTree', () => {
  it('removes the tree, not what a symlink in it points at', async () => {
    const outside = path.join(dir, 'outside');
    await writeFile(outside, 'keep');
    await tree(path.join(dir, 't'), outside);
    await removeTree(path.join(dir, 't'));
    expect(existsSync(path.join(dir, 't'))).toBe(false);
    expect(existsSync(outside)).toBe(true);
  });

  for (const kind of ['tmpfs', 'a bind mount of the same disk', 'a bind mount of the same disk (the tree named through a symlink)'] as const) {
    it(`fails (EBUSY) on ${kind} mounted inside and leaves what is on it`, async () => {
      const t = path.join(dir, 't');
      const src = path.join(dir, 'src');
      await tree(t, '/nowhere');
      await mkdir(path.join(t, 'd3/e/mnt'), { recursive: true });
      await mkdir(src);
      if (kind === 'tmpfs') execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', path.join(t, 'd3/e/mnt')]);
      else execFileSync('mount', ['--bind', src, path.join(t, 'd3/e/mnt')]);
      await writeFile(path.join(t, 'd3/e/mnt/inside'), 'keep');
      const named = kind.includes('symlink') ? path.join(dir, 'via/t') : t;
      if (named !== t) await symlink(dir, path.join(dir, 'via'));
      try {
        await expect(removeTree(named)).rejects.toThrow(/EBUSY/);
        expect(existsSync(path.join(t, 'd3/e/mnt/inside'))).toBe(true);
      } finally {
        execFileSync('umount', ['-l', path.join(t, 'd3/e/mnt')]);
      }
      if (kind !== 'tmpfs') expect(existsSync(path.join(src, 'inside'))).toBe(true);
    });
  }
});
