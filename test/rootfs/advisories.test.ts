// One test per known tar-extraction attack (named after the node-tar / docker advisories): nothing may land outside the root.
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, rmSync, lstatSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { extractLayer, RootFs, cleanPath, type ExtractOptions } from '../../src/rootfs/index.js';
import { type Ent, gnuLongNameBlock, makeTar, paxBlock, streamOf } from './tar-helpers.js';

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

async function apply(entries: Ent[], opts: ExtractOptions = {}): Promise<unknown> {
  return applyBytes(await makeTar(entries), opts);
}

async function applyBytes(tar: Buffer, opts: ExtractOptions = {}): Promise<unknown> {
  return extractLayer(rootfs, streamOf(tar), { emit: () => undefined, ...opts }).catch((e: unknown) => e);
}

const LAYER = 'sha256:' + 'ab'.repeat(32);

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

// Issue 11 item 2: a whiteout is ".wh.NAME" and deletes NAME next to it; NAME can never be "", "." or "..".
describe('whiteouts that name no child of their directory are refused', () => {
  /** A root with content the hostile whiteout would delete: a file at the top and one below a/. */
  function seed(): void {
    mkdirSync(path.join(root, 'a/b'), { recursive: true });
    writeFileSync(path.join(root, 'keep'), 'k');
    writeFileSync(path.join(root, 'a/b/keep'), 'k');
  }
  function expectSeedIntact(): void {
    expect(readFileSync(path.join(root, 'keep'), 'utf8')).toBe('k');
    expect(readFileSync(path.join(root, 'a/b/keep'), 'utf8')).toBe('k');
  }
  async function refused(entries: Ent[] | Buffer, entry: string): Promise<void> {
    seed();
    const err = Buffer.isBuffer(entries) ? await applyBytes(entries, { layer: LAYER }) : await apply(entries, { layer: LAYER });
    expect(err).toMatchObject({ code: 'ROOTFS_WHITEOUT_INVALID' });
    const e = err as { message: string; hint?: string };
    expect(e.message).toContain(LAYER);
    expect(e.message).toContain(`entry "${entry}"`);
    expect(e.hint).toMatch(/\.wh\.NAME|opaque/);
    expectSeedIntact();
  }

  it('".wh..." at the top (a whiteout naming "..") would delete the parent of the root', async () => {
    await refused([{ name: '.wh...', content: '' }], '.wh...');
  });

  it('".wh.." (a whiteout naming ".") would delete the root itself', async () => {
    await refused([{ name: '.wh..', content: '' }], '.wh..');
  });

  it('".wh." alone (a whiteout naming nothing) would delete its directory', async () => {
    await refused([{ name: '.wh.', content: '' }], '.wh.');
  });

  it('"a/.wh..." and "a/b/.wh.." deeper down name a directory or its parent, not a child', async () => {
    await refused([{ name: 'a/.wh...', content: '' }], 'a/.wh...');
    await refused([{ name: 'a/b/.wh..', content: '' }], 'a/b/.wh..');
  });

  it('differently spelled: "./.wh...", "a/../.wh...", "x//.wh..", ".wh.../" (a directory entry) are refused alike', async () => {
    await refused([{ name: './.wh...', content: '' }], './.wh...');
    await refused([{ name: 'a/../.wh...', content: '' }], 'a/../.wh...');
    await refused([{ name: 'a//.wh..', content: '' }], 'a//.wh..');
    await refused([{ name: '.wh.../', type: 'directory' }], '.wh.../');
  });

  it('a PAX path override naming ".wh..." is refused (the innocent ustar name does not count)', async () => {
    await refused([{ name: 'innocent', content: '', pax: { path: 'a/.wh...' } }], 'a/.wh...');
  });

  it('a GNU long name naming ".wh..." is refused (the innocent ustar name does not count)', async () => {
    const tar = Buffer.concat([gnuLongNameBlock('x/'.repeat(60) + '.wh...'), await makeTar([{ name: 'innocent', content: '' }])]);
    mkdirSync(path.join(root, 'x/'.repeat(60)), { recursive: true });
    await refused(tar, 'x/'.repeat(60) + '.wh...');
  });

  it('a whiteout used as a directory (".wh.../x", ".wh../x") is refused', async () => {
    await refused([{ name: '.wh.../x', content: '' }], '.wh.../x');
    await refused([{ name: 'a/.wh../x', content: '' }], 'a/.wh../x');
  });

  it('an opaque marker used as a directory ("a/.wh..wh..opq/x") is refused', async () => {
    await refused([{ name: 'a/.wh..wh..opq/x', content: '' }], 'a/.wh..wh..opq/x');
  });

  it('an opaque marker in its place still works, and AUFS ".wh..wh.plnk/" metadata dirs are still accepted', async () => {
    seed();
    const err = await apply([
      { name: 'a/.wh..wh..opq', content: '' },
      { name: 'a/new', content: 'n' },
      { name: '.wh..wh.plnk/', type: 'directory' },
      { name: '.wh..wh.plnk/1.2', content: 'l' },
      { name: '.wh.keep', content: '' },
    ]);
    expect(err).toMatchObject({ entries: 5 });
    expect(readdirSync(path.join(root, 'a'))).toEqual(['new']);
    expect(existsSync(path.join(root, 'keep'))).toBe(false);
  });

  it('a whiteout under a symlink to ".." deletes inside the root only', async () => {
    await apply([
      { name: 'up', type: 'symlink', linkname: '..' },
      { name: 'up/.wh.sentinel', content: '' },
      { name: 'up/.wh.root', content: '' },
    ]);
    expect(existsSync(root)).toBe(true);
  });

  it('a hardlink whose target is ".." (the root, clamped) is refused as a link to a directory', async () => {
    const err = await apply([{ name: 'h', type: 'link', linkname: '..' }]);
    expect(err).toMatchObject({ code: 'ROOTFS_HARDLINK_TO_DIRECTORY' });
  });

  it('a RootFs host path is never computed from a container path with "." or ".." components', () => {
    for (const p of ['/..', '/.', '/a/..', '/a/./b', '..', 'a']) {
      expect(() => rootfs.hostPath(p), p).toThrow(expect.objectContaining({ code: 'ROOTFS_PATH_NOT_CANONICAL' }));
    }
    expect(rootfs.hostPath('/a/.b/..c/...')).toBe(path.join(root, 'a/.b/..c/...'));
  });
});

describe('the in-place ignore list sees canonical paths only', () => {
  it('"./proc/x", "proc//x", "a/../proc/x", a symlink into /proc, a whiteout and an opaque marker in /proc: /proc untouched', async () => {
    mkdirSync(path.join(root, 'proc'));
    writeFileSync(path.join(root, 'proc/keep'), 'k');
    const seen: string[] = [];
    const ignore = (p: string): boolean => {
      seen.push(p);
      return p === '/proc' || p.startsWith('/proc/');
    };
    const err = await apply(
      [
        { name: './proc/x', content: 'x' },
        { name: 'proc//y', content: 'y' },
        { name: 'a/../proc/z', content: 'z' },
        { name: 'proc/./w/', type: 'directory' },
        { name: 'p', type: 'symlink', linkname: '/proc' },
        { name: 'p/v', content: 'v' },
        { name: './proc//.wh.keep', content: '' },
        { name: 'proc/.wh..wh..opq', content: '' },
        { name: 'p/.wh.keep', content: '' },
        { name: 'h', type: 'link', linkname: './proc//keep' },
        { name: '.wh.proc', content: '' },
      ],
      { ignore },
    );
    expect(err).not.toBeInstanceOf(Error);
    expect(readdirSync(path.join(root, 'proc'))).toEqual(['keep']);
    expect(readFileSync(path.join(root, 'proc/keep'), 'utf8')).toBe('k');
    expect(seen.length).toBeGreaterThan(0);
    for (const p of seen) expect(cleanPath(p), `ignore() was asked about "${p}"`).toBe(p);
  });
});

describe('PAX header hazards', () => {
  it('a global PAX header cannot rename every later entry (path/linkpath/size are per entry)', async () => {
    const tar = Buffer.concat([
      paxBlock([['path', Buffer.from('.wh...')], ['linkpath', Buffer.from('/')], ['size', Buffer.from('999999')]], 'g'),
      await makeTar([{ name: 'a', content: 'A' }, { name: 'b', content: 'B' }]),
    ]);
    const err = await applyBytes(tar);
    expect(err).toMatchObject({ entries: 2 });
    expect(readFileSync(path.join(root, 'a'), 'utf8')).toBe('A');
    expect(readFileSync(path.join(root, 'b'), 'utf8')).toBe('B');
  });

  it('a PAX path with a NUL byte is refused as an invalid layer, not truncated into another name', async () => {
    const tar = Buffer.concat([paxBlock([['path', Buffer.from('keep\0/../../x')]]), await makeTar([{ name: 'innocent', content: 'x' }])]);
    const err = await applyBytes(tar);
    expect(err).toMatchObject({ code: 'ROOTFS_LAYER_INVALID' });
    expect((err as Error).message).toMatch(/NUL/);
  });
});
