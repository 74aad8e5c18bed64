// One test per known tar-extraction attack (named after the node-tar / docker advisories): nothing may land outside the root.
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, rmSync, lstatSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { extractLayer, RootFs } from '../../src/rootfs/index.js';
import { type Ent, makeTar, streamOf } from './tar-helpers.js';

let base: string;
let root: string;
let sentinel: string;
let rootfs: RootFs;

beforeEach(() => {
  base = mkdtempSync(path.join(tmpdir(), 'builder-adv-'));
  root = path.join(base, 'root');
  sentinel = path.join(base, 'sentinel');
  mkdirSync(root);
  mkdirSync(sentinel);
  writeFileSync(path.join(sentinel, 'secret'), 'untouched');
  rootfs = new RootFs(root);
});

afterEach(() => {
  // The real assertion of every test: the sentinel next to the root is exactly as it was.
  expect(readdirSync(sentinel)).toEqual(['secret']);
  expect(readFileSync(path.join(sentinel, 'secret'), 'utf8')).toBe('untouched');
  expect(lstatSync(path.join(sentinel, 'secret')).nlink).toBe(1);
  expect(readdirSync(base).sort()).toEqual(['root', 'sentinel']);
  rmSync(base, { recursive: true, force: true });
});

async function apply(entries: Ent[]): Promise<unknown> {
  return extractLayer(rootfs, streamOf(await makeTar(entries)), { onWarning: () => undefined }).catch((e: unknown) => e);
}

describe('advisory-style attacks are contained in the root', () => {
  it('CVE-2021-32803: dir, then a symlink of the same name to outside, then a file through it', async () => {
    await apply([
      { name: 'foo/', type: 'directory' },
      { name: 'foo', type: 'symlink', linkname: '../sentinel' },
      { name: 'foo/pwned', content: 'x' },
      { name: 'bar', type: 'symlink', linkname: sentinel },
      { name: 'bar/pwned', content: 'x' },
    ]);
    // Relative "../sentinel" clamps at the root; the absolute host path is re-rooted inside it.
    expect(readFileSync(path.join(root, 'sentinel/pwned'), 'utf8')).toBe('x');
    expect(readFileSync(path.join(root, sentinel, 'pwned'), 'utf8')).toBe('x');
  });

  it('CVE-2021-32804: absolute entry names are taken relative to the root', async () => {
    await apply([
      { name: path.join(sentinel, 'abs'), content: 'x' },
      { name: '////' + path.join(sentinel, 'abs2').slice(1), content: 'x' },
    ]);
    expect(existsSync(path.join(root, sentinel, 'abs'))).toBe(true);
    expect(existsSync(path.join(root, sentinel, 'abs2'))).toBe(true);
  });

  it('CVE-2021-37701: symlink cache poisoning through differently spelled paths (./x, x//, x/.)', async () => {
    await apply([
      { name: 'x/', type: 'directory' },
      { name: 'x/y/', type: 'directory' },
      { name: './x', type: 'symlink', linkname: '../../sentinel' },
      { name: 'x//pwned', content: 'x' },
      { name: 'x/./pwned2', content: 'x' },
      { name: 'x/y/../pwned3', content: 'x' },
    ]);
    expect(readdirSync(path.join(root, 'sentinel')).sort()).toEqual(['pwned', 'pwned2', 'pwned3']);
  });

  it('CVE-2021-37712: a symlink reached via a path with ".." components is still resolved inside the root', async () => {
    await apply([
      { name: 'a/b/', type: 'directory' },
      { name: 'a/b/link', type: 'symlink', linkname: '../../../../../../' + sentinel.slice(1) },
      { name: 'a/b/../b/link/pwned', content: 'x' },
    ]);
    expect(existsSync(path.join(root, sentinel, 'pwned'))).toBe(true);
  });

  it('CVE-2021-37713: ".." traversal in entry names is clamped at the root', async () => {
    const rel = path.relative(root, path.join(sentinel, 'pwned'));
    await apply([
      { name: rel, content: 'x' },
      { name: '../../../../../../../../../tmp/' + path.basename(base) + '/sentinel/pwned2', content: 'x' },
    ]);
    expect(existsSync(path.join(root, 'sentinel/pwned'))).toBe(true);
  });

  it('CVE-2018-20834: hardlink to an outside file, then a file of the same name, never writes the outside file', async () => {
    const err = await apply([
      { name: 'h', type: 'link', linkname: path.join(sentinel, 'secret') },
      { name: 'h2', type: 'link', linkname: '../sentinel/secret' },
    ]);
    expect(err).toMatchObject({ code: 'ROOTFS_HARDLINK_TARGET_MISSING' });
    const err2 = await apply([
      { name: 'out', type: 'symlink', linkname: sentinel },
      { name: 'h3', type: 'link', linkname: 'out/secret' },
    ]);
    expect(err2).toMatchObject({ code: 'ROOTFS_HARDLINK_TARGET_MISSING' });
  });

  it('a symlink as the final component is replaced, not written through', async () => {
    await apply([{ name: 'victim', type: 'symlink', linkname: path.join(sentinel, 'secret') }]);
    // Outside the extractor someone could point a link at the host; the file entry must unlink it.
    rmSync(path.join(root, 'victim'));
    const { symlinkSync } = await import('node:fs');
    symlinkSync(path.join(sentinel, 'secret'), path.join(root, 'victim'));
    await apply([{ name: 'victim', content: 'overwritten?' }]);
    expect(lstatSync(path.join(root, 'victim')).isFile()).toBe(true);
  });

  it('whiteouts and opaque markers under a symlinked parent do not delete outside', async () => {
    await apply([
      { name: 's', type: 'symlink', linkname: sentinel },
      { name: 's/.wh.secret', content: '' },
      { name: 't', type: 'symlink', linkname: '../sentinel' },
      { name: 't/.wh..wh..opq', content: '' },
      { name: 'u', type: 'symlink', linkname: sentinel },
      { name: 'u/.wh..wh..opq', content: '' },
    ]);
  });

  it('hardlink onto a path under a symlink to outside is created inside the root', async () => {
    await apply([
      { name: 'real', content: 'r' },
      { name: 'l', type: 'symlink', linkname: sentinel },
      { name: 'l/linked', type: 'link', linkname: 'real' },
    ]);
    expect(lstatSync(path.join(root, sentinel, 'linked')).ino).toBe(lstatSync(path.join(root, 'real')).ino);
  });

  it('symlink loops fail with ROOTFS_SYMLINK_LOOP instead of hanging', async () => {
    const err = await apply([
      { name: 'a', type: 'symlink', linkname: 'b' },
      { name: 'b', type: 'symlink', linkname: 'a' },
      { name: 'a/x', content: 'x' },
    ]);
    expect(err).toMatchObject({ code: 'ROOTFS_SYMLINK_LOOP' });
  });
});
