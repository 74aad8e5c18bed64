// RUN --mount in place without mount(2): placeMounts on a throwaway root dir (never "/"), what it puts and what it restores.
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { placeMounts } from '../../src/run/in-place-mounts.js';

const isRoot = process.getuid?.() === 0;

describe('placeMounts (in place, no mount(2))', () => {
  let tmp: string;
  let root: string;
  let n = 0;
  const opts = (): Parameters<typeof placeMounts>[2] => ({ protect: ['builder', 'tmp/work'], excludedOnly: ['run'], stashDir: path.join(tmp, `stash-${++n}`), what: 'test' });

  beforeEach(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'place-mounts-'));
    root = path.join(tmp, 'root');
    await mkdir(path.join(root, 'tmp/work'), { recursive: true });
    await mkdir(path.join(root, 'builder'), { recursive: true });
  });
  afterEach(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('a target dir with content is hidden during the step and comes back, same inode and mtime', async () => {
    await mkdir(path.join(root, 'var/cache/apt'), { recursive: true });
    await writeFile(path.join(root, 'var/cache/apt/pkgcache.bin'), 'image');
    const before = await stat(path.join(root, 'var/cache/apt'));
    const cache = path.join(tmp, 'cache');
    await mkdir(cache);
    await writeFile(path.join(cache, 'old'), 'cached');
    const undo = await placeMounts(root, [{ target: '/var/cache/apt', type: 'bind', source: cache, readonly: false, keep: true }], opts());
    expect((await readdir(path.join(root, 'var/cache/apt'))).sort()).toEqual(['old']);
    await writeFile(path.join(root, 'var/cache/apt/new'), 'written by the step');
    await undo();
    expect(await readdir(path.join(root, 'var/cache/apt'))).toEqual(['pkgcache.bin']);
    const after = await stat(path.join(root, 'var/cache/apt'));
    expect(after.ino).toBe(before.ino);
    expect(Math.abs(after.mtimeMs - before.mtimeMs)).toBeLessThan(0.001); // a microsecond: well inside the snapshot's 1 ms rule
    expect((await readdir(cache)).sort()).toEqual(['new', 'old']);
  });

  it.skipIf(!isRoot)('a secret file lands at its target with its mode and owner; it and the parents created for it are gone after', async () => {
    await mkdir(path.join(root, 'etc'));
    const etcBefore = await stat(path.join(root, 'etc'));
    const src = path.join(tmp, 'secret');
    await writeFile(src, 'S', { mode: 0o440 });
    const { chown } = await import('node:fs/promises');
    await chown(src, 1000, 1000);
    const undo = await placeMounts(root, [{ target: '/etc/app/conf/key', type: 'bind', source: src, readonly: true, owned: true }], opts());
    const st = await lstat(path.join(root, 'etc/app/conf/key'));
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o440, 1000, 1000]);
    await undo();
    expect(await readdir(path.join(root, 'etc'))).toEqual([]);
    expect(Math.abs((await stat(path.join(root, 'etc'))).mtimeMs - etcBefore.mtimeMs)).toBeLessThan(0.001);
  });

  it('a parent created for a target that the step writes into stays (it is the step\'s), the mount content goes', async () => {
    const src = path.join(tmp, 'ctx');
    await mkdir(src);
    await writeFile(path.join(src, 'f'), 'F');
    const undo = await placeMounts(root, [{ target: '/app/node_modules/.cache', type: 'bind', source: src, readonly: true, owned: true }], opts());
    await writeFile(path.join(root, 'app/node_modules/pkg.js'), 'x');
    await undo();
    expect(await readdir(path.join(root, 'app/node_modules'))).toEqual(['pkg.js']);
  });

  it('a tmpfs is an empty 1777 dir; a file target that exists is restored after a file mount', async () => {
    await mkdir(path.join(root, 'etc'));
    await writeFile(path.join(root, 'etc/key'), 'image key');
    const src = path.join(tmp, 'secret');
    await writeFile(src, 'S');
    const undo = await placeMounts(root, [
      { target: '/scratch', type: 'tmpfs', readonly: false },
      { target: '/etc/key', type: 'bind', source: src, readonly: true, owned: true },
    ], opts());
    expect((await stat(path.join(root, 'scratch'))).mode & 0o7777).toBe(0o1777);
    expect(await readFile(path.join(root, 'etc/key'), 'utf8')).toBe('S');
    await undo();
    expect(await readFile(path.join(root, 'etc/key'), 'utf8')).toBe('image key');
    expect(await lstat(path.join(root, 'scratch')).catch(() => 'gone')).toBe('gone');
  });

  it('a target that holds builder\'s kept paths keeps them in place; only its other entries go aside and come back', async () => {
    await writeFile(path.join(root, 'tmp/x'), 'image file');
    await writeFile(path.join(root, 'tmp/work/builder-file'), 'builder');
    const { chmod } = await import('node:fs/promises');
    await chmod(path.join(root, 'tmp'), 0o755);
    const undo = await placeMounts(root, [{ target: '/tmp', type: 'tmpfs', readonly: false }], opts());
    expect(await readdir(path.join(root, 'tmp'))).toEqual(['work']);
    expect((await stat(path.join(root, 'tmp'))).mode & 0o7777).toBe(0o1777);
    await writeFile(path.join(root, 'tmp/by-step'), 'x');
    await undo();
    expect((await readdir(path.join(root, 'tmp'))).sort()).toEqual(['work', 'x']);
    expect(await readFile(path.join(root, 'tmp/work/builder-file'), 'utf8')).toBe('builder');
    expect((await stat(path.join(root, 'tmp'))).mode & 0o7777).toBe(0o755);
  });

  it('a cache on a directory on the way to a kept path: its entries go to the cache and back, the kept path stays', async () => {
    await mkdir(path.join(root, 'root/.cache/b'), { recursive: true });
    await writeFile(path.join(root, 'root/.profile'), 'image');
    await writeFile(path.join(root, 'root/.cache/b/own'), 'builder');
    await writeFile(path.join(root, 'root/.cache/other'), 'image cache');
    const cache = path.join(tmp, 'c');
    await mkdir(path.join(cache, '.cache/pip'), { recursive: true });
    await writeFile(path.join(cache, '.cache/pip/old'), 'cached');
    const o = { ...opts(), protect: ['builder', 'tmp/work', 'root/.cache/b'] };
    const undo = await placeMounts(root, [{ target: '/root', type: 'bind', source: cache, readonly: false, keep: true }], o);
    expect((await readdir(path.join(root, 'root/.cache'))).sort()).toEqual(['b', 'pip']);
    expect(await readdir(path.join(root, 'root'))).toEqual(['.cache']);
    await writeFile(path.join(root, 'root/.cache/pip/new'), 'step');
    await writeFile(path.join(root, 'root/top'), 'step');
    await undo();
    expect((await readdir(path.join(root, 'root'))).sort()).toEqual(['.cache', '.profile']);
    expect((await readdir(path.join(root, 'root/.cache'))).sort()).toEqual(['b', 'other']);
    expect(await readFile(path.join(root, 'root/.cache/b/own'), 'utf8')).toBe('builder');
    expect((await readdir(path.join(cache, '.cache/pip'))).sort()).toEqual(['new', 'old']);
    expect((await readdir(cache)).sort()).toEqual(['.cache', 'top']);
  });

  it('a target that is or lies under builder\'s kept paths is refused before anything is placed', async () => {
    for (const target of ['/builder/x', '/tmp/work', '/tmp/work/sub', '/run']) {
      await expect(placeMounts(root, [{ target, type: 'tmpfs', readonly: false }], opts())).rejects.toMatchObject({ code: 'RUN_MOUNT_TARGET_INVALID' });
    }
    const undo = await placeMounts(root, [{ target: '/run/secrets/x', type: 'tmpfs', readonly: false }], opts());
    await undo();
    expect(await readdir(root)).toEqual(['builder', 'tmp']);
  });

  it.skipIf(!isRoot)('where rename cannot (EXDEV: the stash and the cache on another filesystem) the content is copied, owners and modes kept', async () => {
    const shm = await mkdtemp('/dev/shm/place-mounts-').catch(() => undefined);
    if (shm === undefined) return; // no second filesystem here
    try {
      const { chown } = await import('node:fs/promises');
      await mkdir(path.join(root, 'srv/data'), { recursive: true });
      await writeFile(path.join(root, 'srv/data/f'), 'image', { mode: 0o640 });
      await chown(path.join(root, 'srv/data/f'), 1000, 1000);
      const cache = path.join(shm, 'cache');
      await mkdir(cache);
      await writeFile(path.join(cache, 'c'), 'cached');
      const undo = await placeMounts(root, [{ target: '/srv/data', type: 'bind', source: cache, readonly: false, keep: true }],
        { ...opts(), stashDir: path.join(shm, 'stash') });
      expect(await readdir(path.join(root, 'srv/data'))).toEqual(['c']);
      await writeFile(path.join(root, 'srv/data/n'), 'new');
      await undo();
      const st = await lstat(path.join(root, 'srv/data/f'));
      expect([await readFile(path.join(root, 'srv/data/f'), 'utf8'), st.mode & 0o7777, st.uid, st.gid]).toEqual(['image', 0o640, 1000, 1000]);
      expect(await readdir(path.join(root, 'srv/data'))).toEqual(['f']);
      expect((await readdir(cache)).sort()).toEqual(['c', 'n']);
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
  });

  it('a placement that fails half way takes back what it placed', async () => {
    await writeFile(path.join(root, 'file'), 'not a dir');
    const src = path.join(tmp, 's');
    await writeFile(src, 'S');
    await expect(placeMounts(root, [
      { target: '/a/secret', type: 'bind', source: src, readonly: true, owned: true },
      { target: '/file/sub/t', type: 'tmpfs', readonly: false },
    ], opts())).rejects.toMatchObject({ code: 'RUN_MOUNT_TARGET_INVALID' });
    expect((await readdir(root)).sort()).toEqual(['builder', 'file', 'tmp']);
  });
});
