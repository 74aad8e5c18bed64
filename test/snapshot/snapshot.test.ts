// Tests for src/snapshot: index, diff, and layer tars checked with the system tar CLI and umoci.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import * as net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import {
  diffIndexes,
  entriesForPaths,
  indexTree,
  isEmpty,
  toLayerEntries,
  writeLayer,
  type TreeIndex,
} from '../../src/snapshot/index.js';
import { BuilderError, isBuilderError } from '../../src/errors.js';
import {
  describeTree,
  hasCommand,
  sha256File,
  sha256Gunzipped,
  tarExtract,
  tarListing,
  tarNames,
  tempDir,
  writeOciLayout,
} from './helpers.js';

const cleanup: string[] = [];
afterEach(() => {
  for (const d of cleanup.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = tempDir();
  cleanup.push(d);
  return d;
}
function write(root: string, rel: string, data: string | Buffer, mode?: number): void {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, data);
  if (mode !== undefined) fs.chmodSync(p, mode);
}
// Kernel timestamps advance per clock tick; a pause makes ctime differences certain in tests.
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 15));

/** Index, run `change`, index again, write the diff layer; returns the layer and the changes. */
async function snapshotStep(root: string, change: () => void | Promise<void>, out: string) {
  const before = await indexTree(root);
  await tick();
  await change();
  const after = await indexTree(root);
  const changes = diffIndexes(before, after);
  const result = await writeLayer(root, toLayerEntries(changes, after), out, { mtime: new Date(0) });
  return { before, after, changes, result };
}

describe('indexTree', () => {
  it('records type, mode, owner, size, link target; skips excluded subtrees', async () => {
    const root = tmp();
    write(root, 'etc/passwd', 'root:x:0:0\n', 0o644);
    write(root, 'bin/su', 'x', 0o4755);
    fs.symlinkSync('../etc/passwd', path.join(root, 'bin/pw'));
    fs.mkdirSync(path.join(root, 'proc/1'), { recursive: true });
    write(root, 'proc/1/status', 'x');
    fs.chownSync(path.join(root, 'etc/passwd'), 1000, 3000000);
    const idx = await indexTree(root, { exclude: (p) => p === 'proc' });
    expect([...idx.entries.keys()].sort()).toEqual(['bin', 'bin/pw', 'bin/su', 'etc', 'etc/passwd']);
    const pw = idx.entries.get('etc/passwd')!;
    expect(pw).toMatchObject({ type: 'file', mode: 0o644, uid: 1000, gid: 3000000, size: 11, nlink: 1 });
    expect(typeof pw.mtimeNs).toBe('bigint');
    expect(idx.entries.get('bin/su')!.mode).toBe(0o4755);
    expect(idx.entries.get('bin/pw')).toMatchObject({ type: 'symlink', linkTarget: '../etc/passwd', size: 0 });
    expect(idx.entries.get('etc')!.type).toBe('dir');
    expect(idx.entries.get('etc/passwd')!.contentHash).toBeUndefined();
  });

  it('hashes contents in full mode', async () => {
    const root = tmp();
    write(root, 'a', 'hello');
    const idx = await indexTree(root, { hashContents: true });
    expect(idx.entries.get('a')!.contentHash).toBe('sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    expect(idx.hashContents).toBe(true);
  });

  it('fails with a BuilderError when the root does not exist (never an empty tree: that would delete everything)', async () => {
    const root = tmp();
    await expect(indexTree(path.join(root, 'missing'))).rejects.toSatisfy((e: unknown) => isBuilderError(e, 'SNAPSHOT_ROOT_MISSING'));
    write(root, 'a/b/c', '1');
    expect((await indexTree(root, { concurrency: 1 })).entries.size).toBe(3);
  });
});

describe('diffIndexes', () => {
  it('detects adds, modifications (ctime when size+mtime are restored) and deletions', async () => {
    const root = tmp();
    write(root, 'keep', 'same');
    write(root, 'mod', 'aaaa');
    write(root, 'gone', 'x');
    fs.utimesSync(path.join(root, 'mod'), 1_000_000, 1_000_000);
    const before = await indexTree(root);
    await tick();
    fs.writeFileSync(path.join(root, 'mod'), 'bbbb');
    fs.utimesSync(path.join(root, 'mod'), 1_000_000, 1_000_000);
    write(root, 'new/file', 'n');
    fs.rmSync(path.join(root, 'gone'));
    const after = await indexTree(root);
    const changes = diffIndexes(before, after);
    expect(after.entries.get('mod')!.mtimeNs).toBe(before.entries.get('mod')!.mtimeNs);
    expect(after.entries.get('mod')!.size).toBe(before.entries.get('mod')!.size);
    expect(changes.map((c) => `${c.kind} ${c.path}`)).toEqual(['deleted gone', 'modified mod', 'added new', 'added new/file']);
    expect(isEmpty(changes)).toBe(false);
    expect(isEmpty(diffIndexes(after, await indexTree(root)))).toBe(true);
  });

  it('full mode also compares content hashes', async () => {
    const root = tmp();
    write(root, 'f', 'aaaa');
    const before = await indexTree(root, { hashContents: true });
    const after: TreeIndex = {
      ...before,
      entries: new Map([['f', { ...before.entries.get('f')!, contentHash: 'sha256:00' }]]),
    };
    expect(diffIndexes(before, after).map((c) => c.kind)).toEqual(['modified']);
  });

  it('a deleted directory yields one deletion, not one per child', async () => {
    const root = tmp();
    write(root, 'd/a/b/c', '1');
    write(root, 'd/a/x', '2');
    write(root, 'd/y', '3');
    const before = await indexTree(root);
    fs.rmSync(path.join(root, 'd/a'), { recursive: true });
    const changes = diffIndexes(before, await indexTree(root));
    expect(changes.map((c) => `${c.kind} ${c.path}`)).toEqual(['modified d', 'deleted d/a']);
  });

  it('dir replaced by a file: the file, no whiteouts for old children; file replaced by dir: dir and contents', async () => {
    const root = tmp();
    write(root, 'a/child', '1');
    write(root, 'b', 'file');
    const before = await indexTree(root);
    fs.rmSync(path.join(root, 'a'), { recursive: true });
    write(root, 'a', 'now a file');
    fs.rmSync(path.join(root, 'b'));
    write(root, 'b/inner', 'x');
    const changes = diffIndexes(before, await indexTree(root));
    expect(changes.map((c) => `${c.kind} ${c.path}`)).toEqual(['added a', 'added b', 'added b/inner']);
  });
});

describe('writeLayer', () => {
  it('writes a tar that GNU tar lists and extracts to the same tree, digests consistent', async () => {
    const root = tmp();
    write(root, 'etc/passwd', 'root:x:0:0\n', 0o644);
    write(root, 'usr/bin/su', Buffer.alloc(300_000, 7), 0o4755);
    write(root, 'usr/bin/sg', 'g', 0o2711);
    write(root, 'empty', '');
    fs.mkdirSync(path.join(root, 'tmp'), { mode: 0o1777 });
    fs.chmodSync(path.join(root, 'tmp'), 0o1777);
    fs.symlinkSync('/etc/passwd', path.join(root, 'usr/pw'));
    fs.linkSync(path.join(root, 'usr/bin/su'), path.join(root, 'usr/bin/su2'));
    execFileSync('mkfifo', [path.join(root, 'fifo')]);
    execFileSync('mknod', [path.join(root, 'null'), 'c', '1', '3']);
    const longDir = 'l'.repeat(120);
    write(root, `${longDir}/${'n'.repeat(110)}`, 'long'); // needs PAX: the name part alone > 100
    write(root, `p${'q'.repeat(60)}/${'r'.repeat(60)}/f`, 'split'); // fits the ustar prefix split
    write(root, 'bigid', 'x');
    fs.chownSync(path.join(root, 'bigid'), 3000000, 4000000);
    fs.symlinkSync('t'.repeat(150), path.join(root, 'longlink'));
    const idx = await indexTree(root);
    const entries = toLayerEntries(diffIndexes({ root, entries: new Map(), hashContents: false }, idx), idx);
    const out = path.join(tmp(), 'layer.tar.gz');
    const r = await writeLayer(root, entries, out);

    expect(r.digest).toBe(sha256File(out));
    expect(r.diffId).toBe(sha256Gunzipped(out));
    expect(r.size).toBe(fs.statSync(out).size);
    expect(r.uncompressedSize % 512).toBe(0);

    const listing = tarListing(out);
    const line = (name: string): string => listing.find((l) => l.endsWith(` ${name}`) || l.includes(` ${name} `))!;
    expect(line('usr/bin/su')).toMatch(/^-rwsr-xr-x 0\/0 +300000 /);
    expect(line('usr/bin/sg')).toMatch(/^-rwx--s--x /);
    expect(line('tmp/')).toMatch(/^drwxrwxrwt /);
    expect(line('usr/pw')).toMatch(/^lrwxrwxrwx .* usr\/pw -> \/etc\/passwd$/);
    expect(line('usr/bin/su2')).toMatch(/^hrwsr-xr-x .* usr\/bin\/su2 link to usr\/bin\/su$/);
    expect(line('fifo')).toMatch(/^prw/);
    expect(line('null')).toMatch(/^crw.* 1,3 /);
    expect(line('bigid')).toMatch(/ 3000000\/4000000 /);
    expect(listing.some((l) => l.endsWith(`${longDir}/${'n'.repeat(110)}`))).toBe(true);
    expect(listing.some((l) => l.endsWith(`longlink -> ${'t'.repeat(150)}`))).toBe(true);

    const names = tarNames(out);
    expect(names.indexOf('usr/')).toBeLessThan(names.indexOf('usr/bin/'));
    expect(names.indexOf('usr/bin/')).toBeLessThan(names.indexOf('usr/bin/su'));
    expect(names.filter((n) => n.endsWith('/')).every((n) => idx.entries.get(n.slice(0, -1))?.type === 'dir')).toBe(true);

    const dest = tmp();
    tarExtract(out, dest);
    expect(describeTree(dest)).toEqual(describeTree(root));
    expect(fs.statSync(path.join(dest, 'usr/bin/su')).ino).toBe(fs.statSync(path.join(dest, 'usr/bin/su2')).ino);
  });

  it('is deterministic with a fixed mtime: same diffId and digest twice, and across copies of the tree', async () => {
    const root = tmp();
    for (let i = 0; i < 50; i++) write(root, `d${i % 5}/f${i}`, `content ${i}`.repeat(i));
    const idx = await indexTree(root);
    const entries = toLayerEntries(diffIndexes({ root, entries: new Map(), hashContents: false }, idx), idx);
    const o = tmp();
    const a = await writeLayer(root, entries, path.join(o, 'a'), { mtime: new Date(0) });
    const b = await writeLayer(root, [...entries].reverse(), path.join(o, 'b'), { mtime: new Date(0) });
    expect(b).toEqual(a);
    const copy = tmp();
    execFileSync('cp', ['-a', `${root}/.`, copy]);
    await new Promise((r) => setTimeout(r, 1100));
    execFileSync('touch', [path.join(copy, 'd1')]);
    const cidx = await indexTree(copy);
    const c = await writeLayer(copy, toLayerEntries(diffIndexes({ root: copy, entries: new Map(), hashContents: false }, cidx), cidx), path.join(o, 'c'), { mtime: new Date(0) });
    expect(c.diffId).toBe(a.diffId);
    expect(c.digest).toBe(a.digest);
    const clamped = await writeLayer(root, entries, path.join(o, 'd'), { mtime: new Date(0), mtimeMode: 'clamp' });
    expect(clamped.diffId).toBe(a.diffId); // every file is newer than 1970, so clamping equals override
    const uncompressed = await writeLayer(root, entries, path.join(o, 'e'), { mtime: new Date(0), gzip: false });
    expect(uncompressed.diffId).toBe(a.diffId);
    expect(uncompressed.digest).toBe(a.diffId);
    expect(uncompressed.size).toBe(a.uncompressedSize);
  });

  it('deletions become whiteouts (one for a deleted dir) with parents, applied correctly by umoci', async () => {
    const root = tmp();
    write(root, 'app/keep', 'k');
    write(root, 'app/old/a', '1');
    write(root, 'app/old/deep/b', '2');
    write(root, 'app/gone.txt', 'g');
    write(root, 'swap/child', 'c');
    write(root, 'tofile/x', 'x');
    write(root, 'todir', 'file');
    fs.chmodSync(path.join(root, 'app'), 0o750);
    const o = tmp();
    const idx0 = await indexTree(root);
    const base = await writeLayer(root, toLayerEntries(diffIndexes({ root, entries: new Map(), hashContents: false }, idx0), idx0), path.join(o, 'base'));
    const step = await snapshotStep(root, () => {
      fs.rmSync(path.join(root, 'app/old'), { recursive: true });
      fs.rmSync(path.join(root, 'app/gone.txt'));
      fs.rmSync(path.join(root, 'tofile'), { recursive: true });
      write(root, 'tofile', 'now a file');
      fs.rmSync(path.join(root, 'todir'));
      write(root, 'todir/inner', 'i');
      write(root, 'app/new', 'n');
    }, path.join(o, 'step'));
    const names = tarNames(path.join(o, 'step'));
    expect(names).toEqual(['app/', 'app/.wh.gone.txt', 'app/.wh.old', 'app/new', 'todir/', 'todir/inner', 'tofile']);
    const wh = tarListing(path.join(o, 'step')).find((l) => l.includes('.wh.old'))!;
    expect(wh).toMatch(/^---------- 0\/0 +0 /);
    expect(tarListing(path.join(o, 'step')).find((l) => l.endsWith(' app/'))).toMatch(/^drwxr-x--- /);

    if (!hasCommand('umoci')) return;
    const layout = path.join(o, 'oci');
    writeOciLayout(layout, [
      { file: path.join(o, 'base'), ...base },
      { file: path.join(o, 'step'), ...step.result },
    ]);
    const bundle = path.join(o, 'bundle');
    execFileSync('umoci', ['unpack', '--image', `${layout}:t`, bundle], { stdio: 'pipe' });
    const skipTimes = (m: Map<string, string>): Map<string, string> => m;
    expect(skipTimes(describeTree(path.join(bundle, 'rootfs')))).toEqual(skipTimes(describeTree(root)));
  });

  it('opaque-free recreation: a dir deleted and recreated gets per-child whiteouts', async () => {
    const root = tmp();
    write(root, 'd/a', '1');
    write(root, 'd/b', '2');
    const o = tmp();
    const { changes } = await snapshotStep(root, () => {
      fs.rmSync(path.join(root, 'd'), { recursive: true });
      write(root, 'd/b', 'again');
    }, path.join(o, 'l'));
    expect(changes.map((c) => `${c.kind} ${c.path}`)).toEqual(['modified d', 'deleted d/a', 'modified d/b']);
    expect(tarNames(path.join(o, 'l'))).toEqual(['d/', 'd/.wh.a', 'd/b']);
  });

  it('a step that changes nothing is empty', async () => {
    const root = tmp();
    write(root, 'a', '1');
    const before = await indexTree(root);
    const after = await indexTree(root);
    expect(isEmpty(diffIndexes(before, after))).toBe(true);
  });

  it('entriesForPaths includes the subtree and parents, for COPY/WORKDIR', async () => {
    const root = tmp();
    write(root, 'srv/app/src/index.js', 'x');
    write(root, 'srv/app/package.json', '{}');
    write(root, 'srv/other', 'not copied');
    fs.mkdirSync(path.join(root, 'work/dir'), { recursive: true });
    const entries = await entriesForPaths(root, ['/srv/app', 'work/dir']);
    expect(entries.map((e) => e.path)).toEqual([
      'srv', 'srv/app', 'srv/app/package.json', 'srv/app/src', 'srv/app/src/index.js', 'work', 'work/dir',
    ]);
    const out = path.join(tmp(), 'l');
    await writeLayer(root, entries, out, { mtime: new Date(0) });
    expect(tarNames(out)).toEqual(['srv/', 'srv/app/', 'srv/app/package.json', 'srv/app/src/', 'srv/app/src/index.js', 'work/', 'work/dir/']);
    await expect(entriesForPaths(root, ['nope'])).rejects.toSatisfy((e: unknown) => isBuilderError(e, 'SNAPSHOT_PATH_MISSING'));
    await expect(entriesForPaths(root, ['../etc'])).rejects.toSatisfy((e: unknown) => isBuilderError(e, 'SNAPSHOT_PATH_INVALID'));
  });

  it('writeLayer adds missing parents itself and skips sockets', async () => {
    const root = tmp();
    write(root, 'a/b/c', 'x');
    const sock = net.createServer().listen(path.join(root, 'a/sock'));
    await once(sock, 'listening');
    const idx = await indexTree(root);
    sock.close();
    expect(idx.entries.get('a/sock')!.type).toBe('socket');
    const out = path.join(tmp(), 'l');
    await writeLayer(root, [{ kind: 'entry', path: 'a/b/c' }, { kind: 'whiteout', path: 'a/zz' }, { kind: 'entry', path: 'a/sock', meta: idx.entries.get('a/sock')! }], out, { gzip: false });
    expect(tarNames(out)).toEqual(['a/', 'a/.wh.zz', 'a/b/', 'a/b/c']);
  });

  it('fails with stable codes: bad level, missing file, shrunk file; removes the partial output', async () => {
    const root = tmp();
    write(root, 'f', 'hello world');
    const idx = await indexTree(root);
    const out = path.join(tmp(), 'l');
    await expect(writeLayer(root, [], out, { compressionLevel: 12 })).rejects.toSatisfy((e: unknown) => isBuilderError(e, 'SNAPSHOT_OPTION_INVALID'));
    const bigIdx = await (async () => {
      write(root, 'big', Buffer.alloc(3 << 20, 1));
      return indexTree(root);
    })();
    await expect(writeLayer(root, [{ kind: 'entry', path: 'big', meta: bigIdx.entries.get('big')! }], path.join(root, 'no/such/dir/l')))
      .rejects.toSatisfy((e: unknown) => isBuilderError(e, 'SNAPSHOT_WRITE_FAILED'));
    await expect(writeLayer(root, [{ kind: 'entry', path: 'missing' }], out)).rejects.toSatisfy((e: unknown) => isBuilderError(e, 'SNAPSHOT_PATH_MISSING'));
    fs.writeFileSync(path.join(root, 'f'), 'hi');
    await expect(writeLayer(root, [{ kind: 'entry', path: 'f', meta: idx.entries.get('f')! }], out)).rejects.toSatisfy((e: unknown) => isBuilderError(e, 'SNAPSHOT_FILE_CHANGED'));
    expect(fs.existsSync(out)).toBe(false);
  });

  it('PAX records at digit-count boundaries: long single-component names and long symlink targets', async () => {
    const root = tmp();
    for (const n of [101, 150, 255]) write(root, 'n'.repeat(n), String(n));
    for (const n of [101, 989, 990, 991, 992, 993, 994, 995, 996, 2000]) fs.symlinkSync('t'.repeat(n), path.join(root, `link${n}`));
    const idx = await indexTree(root);
    const out = path.join(tmp(), 'l');
    await writeLayer(root, toLayerEntries(diffIndexes({ root, entries: new Map(), hashContents: false }, idx), idx), out, { gzip: false });
    const dest = tmp();
    tarExtract(out, dest);
    expect(describeTree(dest)).toEqual(describeTree(root));
  });

  it('writes caller-known xattrs as PAX SCHILY.xattr records that GNU tar restores', async () => {
    if (!hasCommand('python3')) return;
    const root = tmp();
    write(root, 'bin/ping', 'x', 0o755);
    const idx = await indexTree(root);
    const meta = { ...idx.entries.get('bin/ping')!, xattrs: { 'user.demo': Buffer.from([0, 1, 2, 255]) } };
    const out = path.join(tmp(), 'l');
    await writeLayer(root, [{ kind: 'entry', path: 'bin/ping', meta }], out, { gzip: false });
    const dest = tmp();
    execFileSync('tar', ['--xattrs', "--xattrs-include=*", '-xpf', out, '-C', dest]);
    const got = execFileSync('python3', ['-c', 'import os,sys; print(os.getxattr(sys.argv[1], "user.demo").hex())', path.join(dest, 'bin/ping')], { encoding: 'utf8' });
    expect(got.trim()).toBe('000102ff');
  });

  it('streams a file bigger than the read-ahead limit and the output chunk', async () => {
    const root = tmp();
    const big = Buffer.alloc(5 * 1024 * 1024 + 123);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    write(root, 'big', big);
    write(root, 'small', 'after');
    const out = path.join(tmp(), 'l');
    const idx = await indexTree(root);
    await writeLayer(root, toLayerEntries(diffIndexes({ root, entries: new Map(), hashContents: false }, idx), idx), out);
    const dest = tmp();
    tarExtract(out, dest);
    expect(fs.readFileSync(path.join(dest, 'big')).equals(big)).toBe(true);
    expect(fs.readFileSync(path.join(dest, 'small'), 'utf8')).toBe('after');
  });
});

describe('a cancelled build stops the snapshot', () => {
  it('indexTree and writeLayer reject with the signal\'s reason (BUILD_ABORTED without one) instead of running to the end', async () => {
    const root = tmp();
    for (let i = 0; i < 50; i++) write(root, `d${i % 5}/f${i}`, `x${i}`);
    const idx = await indexTree(root);
    const entries = toLayerEntries(diffIndexes({ root, entries: new Map(), hashContents: false }, idx), idx);
    const reason = new BuilderError('INTERRUPTED', 'interrupted by SIGTERM', { exitCode: 143 });
    const ac = new AbortController();
    ac.abort(reason);
    await expect(indexTree(root, { signal: ac.signal })).rejects.toBe(reason);
    const out = path.join(tmp(), 'layer.tar.gz');
    await expect(writeLayer(root, entries, out, { signal: ac.signal })).rejects.toBe(reason);
    const plain = new AbortController();
    plain.abort();
    await expect(indexTree(root, { signal: plain.signal })).rejects.toMatchObject({ code: 'BUILD_ABORTED' });
    // Not cancelled: the same calls succeed.
    expect((await indexTree(root, { signal: new AbortController().signal })).entries.size).toBe(55);
  });
});
