// removeTree: a tree gone with the host's rm, and with node's rm where there is no rm on PATH; never through a mount.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { removeTree } from '../../src/util/fs.js';

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

  it('falls back to node\'s rm when PATH has no rm', async () => {
    await tree(path.join(dir, 't'), '/nowhere');
    const saved = process.env.PATH;
    process.env.PATH = path.join(dir, 'empty-bin');
    try {
      await removeTree(path.join(dir, 't'));
    } finally {
      process.env.PATH = saved;
    }
    expect(existsSync(path.join(dir, 't'))).toBe(false);
  });

  it('fails on a filesystem mounted inside and leaves what is on it (rm --one-file-system, then node\'s rm: EBUSY)', async () => {
    const t = path.join(dir, 't');
    await mkdir(path.join(t, 'mnt'), { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', path.join(t, 'mnt')]);
    await writeFile(path.join(t, 'mnt/inside'), 'keep');
    try {
      await expect(removeTree(t)).rejects.toThrow(/EBUSY/);
      expect(existsSync(path.join(t, 'mnt/inside'))).toBe(true);
    } finally {
      execFileSync('umount', ['-l', path.join(t, 'mnt')]);
    }
  });
});
