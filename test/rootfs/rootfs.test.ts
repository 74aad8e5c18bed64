// RootFs.resolve and helpers: chroot-like resolution, clamping, re-rooted symlinks, loops, mkdirAll, identity at "/".
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, rmSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RootFs } from '../../src/rootfs/index.js';

let root: string;
let fs: RootFs;

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'builder-rootfs-'));
  fs = new RootFs(root);
  mkdirSync(path.join(root, 'usr/lib'), { recursive: true });
  mkdirSync(path.join(root, 'etc'));
  writeFileSync(path.join(root, 'etc/os-release'), 'ID=test\n');
  symlinkSync('usr/lib', path.join(root, 'lib'));
  symlinkSync('/etc', path.join(root, 'etc-abs'));
  symlinkSync('../../../../etc/os-release', path.join(root, 'usr/lib/os-release'));
  symlinkSync('loop2', path.join(root, 'loop1'));
  symlinkSync('loop1', path.join(root, 'loop2'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('RootFs.resolve', () => {
  it('clamps ".." at the root and ignores "." and duplicate slashes', async () => {
    expect(await fs.resolve('/../../..')).toBe(root);
    expect(await fs.resolve('../../etc//./os-release')).toBe(path.join(root, 'etc/os-release'));
    expect(await fs.resolve('usr/../../../etc')).toBe(path.join(root, 'etc'));
  });

  it('follows symlinks in parent components, absolute ones re-rooted', async () => {
    expect(await fs.resolve('/lib/x')).toBe(path.join(root, 'usr/lib/x'));
    expect(await fs.resolve('/etc-abs/os-release')).toBe(path.join(root, 'etc/os-release'));
    expect(await fs.resolve('/lib/../etc')).toBe(path.join(root, 'usr/etc'));
  });

  it('follows the final symlink only when asked', async () => {
    expect(await fs.resolve('/lib')).toBe(path.join(root, 'lib'));
    expect(await fs.resolve('/lib', { followFinal: true })).toBe(path.join(root, 'usr/lib'));
    expect(await fs.resolve('/lib/os-release', { followFinal: true })).toBe(path.join(root, 'etc/os-release'));
    expect((await fs.readFile('/lib/os-release')).toString()).toBe('ID=test\n');
  });

  it('detects loops', async () => {
    await expect(fs.resolve('/loop1/x')).rejects.toMatchObject({ code: 'ROOTFS_SYMLINK_LOOP' });
    await expect(fs.resolve('/loop1', { followFinal: true })).rejects.toMatchObject({ code: 'ROOTFS_SYMLINK_LOOP' });
    expect(await fs.resolve('/loop1')).toBe(path.join(root, 'loop1'));
  });

  it('resolves missing paths lexically, still inside the root', async () => {
    expect(await fs.resolve('/nope/a/../b')).toBe(path.join(root, 'nope/b'));
    expect(await fs.exists('/nope')).toBe(false);
    expect(await fs.exists('/lib', { followFinal: true })).toBe(true);
    expect((await fs.lstat('/lib'))?.isSymbolicLink()).toBe(true);
  });

  it('is the identity (plus symlinks) when the root is "/"', async () => {
    const host = new RootFs('/');
    expect(host.inPlace).toBe(true);
    expect(await host.resolve('/')).toBe('/');
    expect(await host.resolve(root + '/etc/os-release')).toBe(path.join(root, 'etc/os-release'));
    expect(await host.resolve('/../' + root.slice(1) + '/nope/../etc')).toBe(path.join(root, 'etc'));
  });
});

describe('RootFs.mkdirAll', () => {
  it('creates missing parents through symlinks, with owner and mode', async () => {
    const r = await fs.mkdirAll('/lib/app/data', { uid: 123, gid: 456, mode: 0o750 });
    expect(r.host).toBe(path.join(root, 'usr/lib/app/data'));
    expect(r.container).toBe('/usr/lib/app/data');
    const st = lstatSync(path.join(root, 'usr/lib/app'));
    expect(st.mode & 0o777).toBe(0o750);
    if (process.getuid?.() === 0) expect(st.uid).toBe(123);
    await fs.mkdirAll('/etc-abs/new');
    expect(lstatSync(path.join(root, 'etc/new')).isDirectory()).toBe(true);
  });

  it('refuses to go through a file', async () => {
    await expect(fs.mkdirAll('/etc/os-release/x')).rejects.toMatchObject({ code: 'ROOTFS_NOT_A_DIRECTORY' });
  });
});
