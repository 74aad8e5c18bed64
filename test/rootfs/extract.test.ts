// Layer extraction: whiteouts, opaque dirs, replacements, links, devices, owners, modes, times, xattrs, gzip, big files.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, lstatSync, readdirSync, readlinkSync, existsSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BuilderError } from '../../src/errors.js';
import { extractLayer, RootFs } from '../../src/rootfs/index.js';
import { processHost } from '../../src/cli/host.js';

// the CLI hands extraction the process's ids and umask; the tests extract as this process
const host = processHost();
import { type Ent, gz, makeTar, paxBlock, streamOf } from './tar-helpers.js';

const isRoot = process.getuid?.() === 0;
const hasPython = spawnSync('python3', ['-c', 'import os; os.getxattr'], { stdio: 'ignore' }).status === 0;

let base: string;
let root: string;
let rootfs: RootFs;

beforeEach(() => {
  base = mkdtempSync(path.join(tmpdir(), 'builder-extract-'));
  root = path.join(base, 'root');
  mkdirSync(root);
  rootfs = new RootFs(root);
});
afterEach(() => {
  rmSync(base, { recursive: true, force: true });
});

async function apply(entries: Ent[] | Buffer, opts: Parameters<typeof extractLayer>[2] = {}) {
  const buf = Buffer.isBuffer(entries) ? entries : await makeTar(entries);
  return extractLayer(rootfs, streamOf(buf), { emit: () => undefined, host, ...opts });
}

const at = (p: string) => path.join(root, p);
const T = new Date(1_500_000_000_000);

describe('extractLayer: files, dirs, metadata', () => {
  it('writes files and dirs with modes (setuid, sticky), owners and mtimes; dir mtimes survive their contents', async () => {
    const r = await apply([
      { name: 'usr/', type: 'directory', mtime: T },
      { name: 'usr/bin/', type: 'directory', mtime: T, mode: 0o755 },
      { name: 'usr/bin/su', content: 'su!', mode: 0o4755, uid: 0, gid: 0, mtime: T },
      { name: 'usr/bin/wall', content: 'w', mode: 0o2755, uid: 0, gid: 5, mtime: T },
      { name: 'tmp/', type: 'directory', mode: 0o1777, mtime: T },
      { name: 'home/u/', type: 'directory', mode: 0o700, uid: 1000, gid: 1000, mtime: T },
      { name: 'home/u/f', content: 'x', uid: 1000, gid: 1001, mode: 0o600, mtime: T },
      { name: 'ro/', type: 'directory', mode: 0o555, mtime: T },
      { name: 'ro/inside', content: 'ok', mode: 0o444, mtime: T },
    ]);
    expect(r.entries).toBe(9);
    expect(readFileSync(at('usr/bin/su'), 'utf8')).toBe('su!');
    expect(lstatSync(at('usr/bin/su')).mode & 0o7777).toBe(0o4755);
    expect(lstatSync(at('usr/bin/wall')).mode & 0o7777).toBe(0o2755);
    expect(lstatSync(at('tmp')).mode & 0o7777).toBe(0o1777);
    expect(lstatSync(at('ro')).mode & 0o7777).toBe(0o555);
    expect(readFileSync(at('ro/inside'), 'utf8')).toBe('ok');
    for (const p of ['usr', 'usr/bin', 'usr/bin/su', 'home/u', 'home/u/f', 'ro', 'ro/inside']) {
      expect(lstatSync(at(p)).mtimeMs, p).toBe(T.getTime());
    }
    if (isRoot) {
      expect(lstatSync(at('home/u/f')).uid).toBe(1000);
      expect(lstatSync(at('home/u/f')).gid).toBe(1001);
      expect(lstatSync(at('usr/bin/wall')).gid).toBe(5);
      expect(lstatSync(at('home/u')).uid).toBe(1000);
    }
  });

  it('creates missing parent directories (0755) for entries listed without them', async () => {
    await apply([{ name: 'a/b/c/file', content: 'deep' }]);
    expect(readFileSync(at('a/b/c/file'), 'utf8')).toBe('deep');
    expect(lstatSync(at('a/b')).mode & 0o777).toBe(0o755);
  });

  it('handles long names (PAX path) and big uids (PAX uid)', async () => {
    const long = 'd/' + 'x'.repeat(150) + '/' + 'y'.repeat(120);
    await apply([{ name: long, content: 'long', uid: 3_000_000, pax: { uid: '3000000' } }]);
    expect(readFileSync(at(long), 'utf8')).toBe('long');
    if (isRoot) expect(lstatSync(at(long)).uid).toBe(3_000_000);
  });

  it('auto-detects gzip by magic bytes, and rejects gzip data when told it is plain', async () => {
    const t = gz(await makeTar([{ name: 'z', content: 'zipped' }]));
    await apply(t);
    expect(readFileSync(at('z'), 'utf8')).toBe('zipped');
    await expect(apply(t, { gzip: false })).rejects.toMatchObject({ code: 'ROOTFS_LAYER_INVALID' });
    await expect(apply(gz(Buffer.from('not a tar at all, no no no'.repeat(40))))).rejects.toMatchObject({ code: 'ROOTFS_LAYER_INVALID' });
  });

  it('reports corrupt gzip data, and passes through errors of the input stream (e.g. digest verification)', async () => {
    const t = gz(await makeTar([{ name: 'f', content: randomBytes(100_000) }]));
    t.fill(0x55, 2000, 2100);
    await expect(apply(t)).rejects.toMatchObject({ code: 'ROOTFS_LAYER_INVALID' });
    const head = (await makeTar([{ name: 'ok', content: 'x' }])).subarray(0, 1024);
    const failing = Readable.from(
      (async function* () {
        yield head;
        throw new BuilderError('DIGEST_MISMATCH', 'layer content has the wrong digest');
      })(),
    );
    await expect(extractLayer(rootfs, failing)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
  });

  it('reports a truncated layer with the layer name', async () => {
    const t = await makeTar([{ name: 'big', content: Buffer.alloc(5000, 1) }]);
    const err = await apply(t.subarray(0, 2000), { layer: 'sha256:abc' }).catch((e) => e);
    expect(err.code).toBe('ROOTFS_LAYER_INVALID');
    expect(err.message).toContain('sha256:abc');
  });

  it('streams a 128 MiB file with bounded memory', async () => {
    const size = 128 * 1024 * 1024;
    const hash = createHash('sha256');
    const pack = tar.pack();
    const input = new PassThrough({ highWaterMark: 64 * 1024 });
    pack.pipe(input);
    // Random data generated lazily, so the test itself holds at most a few chunks.
    const body = pack.entry({ name: 'blob.bin', size, mode: 0o644, mtime: T });
    void (async () => {
      for (let sent = 0; sent < size; sent += 256 * 1024) {
        const c = randomBytes(256 * 1024);
        hash.update(c);
        if (!body.write(c)) await new Promise((r) => body.once('drain', r));
      }
      body.end();
      pack.finalize();
    })();
    globalThis.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
    const t0 = performance.now();
    const r = await extractLayer(rootfs, input);
    const ms = performance.now() - t0;
    clearInterval(timer);
    peak = Math.max(peak, process.memoryUsage().rss);
    expect(r.bytes).toBe(size);
    expect(statSync(at('blob.bin')).size).toBe(size);
    expect(createHash('sha256').update(readFileSync(at('blob.bin'))).digest('hex')).toBe(hash.digest('hex'));
    console.log(`128 MiB entry: ${(size / 1048576 / (ms / 1000)).toFixed(0)} MiB/s (incl. random generation), rss growth ${((peak - before) / 1048576).toFixed(1)} MiB`);
    // Buffering the entry would grow RSS by its size; streaming stays at a few buffers.
    expect(peak - before).toBeLessThan(64 * 1024 * 1024);
  });
});

describe('extractLayer: links, devices, xattrs', () => {
  it('keeps symlink targets verbatim, and entries under an absolute symlink land re-rooted inside the root', async () => {
    await apply([
      { name: 'etc/', type: 'directory' },
      { name: 'etc2', type: 'symlink', linkname: '/etc' },
      { name: 'etc2/passwd', content: 'root:x:0:0' },
      { name: 'rel', type: 'symlink', linkname: '../../etc' },
      { name: 'rel/group', content: 'root:x:0:' },
    ]);
    expect(readlinkSync(at('etc2'))).toBe('/etc');
    expect(readFileSync(at('etc/passwd'), 'utf8')).toBe('root:x:0:0');
    expect(readFileSync(at('etc/group'), 'utf8')).toBe('root:x:0:');
  });

  it('hardlinks share the inode, also across layers; a missing target fails with a clear code', async () => {
    await apply([{ name: 'bin/busybox', content: 'bb', mode: 0o755 }]);
    await apply([
      { name: 'bin/sh', type: 'link', linkname: 'bin/busybox' },
      { name: 'bin/ls', type: 'link', linkname: './bin/busybox' },
    ]);
    expect(lstatSync(at('bin/sh')).ino).toBe(lstatSync(at('bin/busybox')).ino);
    expect(lstatSync(at('bin/busybox')).nlink).toBe(3);
    await expect(apply([{ name: 'x', type: 'link', linkname: 'nope' }])).rejects.toMatchObject({ code: 'ROOTFS_HARDLINK_TARGET_MISSING' });
  });

  it.skipIf(!isRoot)('creates char/block devices and fifos as root', async () => {
    await apply([
      { name: 'dev/', type: 'directory' },
      { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: 'dev/loop9', type: 'block-device', devmajor: 7, devminor: 9, mode: 0o660, gid: 6 },
      { name: 'run/fifo', type: 'fifo', mode: 0o620 },
    ]);
    const n = lstatSync(at('dev/null'));
    expect(n.isCharacterDevice()).toBe(true);
    expect(n.rdev).toBe((1 << 8) | 3);
    expect(n.mode & 0o7777).toBe(0o666);
    const b = lstatSync(at('dev/loop9'));
    expect(b.isBlockDevice()).toBe(true);
    expect(b.gid).toBe(6);
    expect(lstatSync(at('run/fifo')).isFIFO()).toBe(true);
    expect(lstatSync(at('run/fifo')).mode & 0o7777).toBe(0o620);
  });

  it.skipIf(!isRoot)('without a host (the library reads no process state) it extracts as an unprivileged process: no owners, no devices, modes kept', async () => {
    const warnings: string[] = [];
    await apply([
      { name: 'f', type: 'file', content: 'x', uid: 1234, gid: 4321, mode: 0o4750 },
      { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 },
    ], { host: undefined, emit: (e) => { if (e.type === 'warning') warnings.push(e.msg); } });
    const f = lstatSync(at('f'));
    expect([f.uid, f.gid, f.mode & 0o7777]).toEqual([0, 0, 0o4750]);
    expect(existsSync(at('dev/null'))).toBe(false);
    expect(warnings.join('\n')).toContain('dev/null');
    // told it runs as root, the same layer gets its owners and devices
    rmSync(root, { recursive: true, force: true });
    mkdirSync(root);
    await apply([{ name: 'f', type: 'file', content: 'x', uid: 1234, gid: 4321, mode: 0o4750 }, { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 }]);
    expect([lstatSync(at('f')).uid, lstatSync(at('f')).gid]).toEqual([1234, 4321]);
    expect(lstatSync(at('dev/null')).isCharacterDevice()).toBe(true);
  });

  it('skips devices with a warning when told not to create them', async () => {
    const warnings: string[] = [];
    await apply([{ name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 }], { devices: false, emit: (e) => { if (e.type === 'warning') warnings.push(e.msg); } });
    expect(existsSync(at('dev/null'))).toBe(false);
    expect(warnings.join('\n')).toContain('dev/null');
  });

  it.skipIf(!hasPython || !isRoot)('applies xattrs from PAX headers, binary security.capability included, after chown', async () => {
    // cap_net_bind_service=ep, VFS_CAP_REVISION_2 layout.
    const cap = Buffer.from('0100000200040000000000000000000000000000', 'hex');
    const t = Buffer.concat([
      paxBlock([
        ['SCHILY.xattr.security.capability', cap],
        ['SCHILY.xattr.user.bin', Buffer.from([0xff, 0x00, 0x80])],
      ]),
      await makeTar([{ name: 'ping', content: 'ping', mode: 0o755, uid: 0, gid: 0 }]),
    ]);
    await apply(t);
    const got = (name: string) =>
      execFileSync('python3', ['-c', 'import os,sys; sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2]).hex())', at('ping'), name], { encoding: 'utf8' });
    expect(got('security.capability')).toBe(cap.toString('hex'));
    expect(got('user.bin')).toBe('ff0080');
    expect(readFileSync(at('ping'), 'utf8')).toBe('ping');
  });
});

describe('extractLayer: whiteouts, opaque dirs, replacements', () => {
  it('.wh.name removes files and whole directories from lower layers', async () => {
    await apply([
      { name: 'a/x', content: '1' },
      { name: 'a/y', content: '2' },
      { name: 'b/deep/z', content: '3' },
    ]);
    await apply([
      { name: 'a/.wh.x', content: '' },
      { name: '.wh.b', content: '' },
    ]);
    expect(readdirSync(at('a'))).toEqual(['y']);
    expect(existsSync(at('b'))).toBe(false);
    expect(existsSync(at('a/.wh.x'))).toBe(false);
  });

  it('opaque dir empties lower-layer content but keeps this layer\'s entries, whatever their order', async () => {
    await apply([
      { name: 'd/old', content: 'o' },
      { name: 'd/sub/old2', content: 'o' },
      { name: 'e/old', content: 'o' },
      { name: 'e/keep/old3', content: 'o' },
    ]);
    await apply([
      { name: 'd/', type: 'directory' },
      { name: 'd/.wh..wh..opq', content: '' },
      { name: 'd/new', content: 'n' },
      // Marker after entries of the same layer: those survive, lower content below them does not.
      { name: 'e/', type: 'directory' },
      { name: 'e/new', content: 'n' },
      { name: 'e/keep/', type: 'directory' },
      { name: 'e/keep/new2', content: 'n' },
      { name: 'e/.wh..wh..opq', content: '' },
    ]);
    expect(readdirSync(at('d')).sort()).toEqual(['new']);
    expect(readdirSync(at('e')).sort()).toEqual(['keep', 'new']);
    expect(readdirSync(at('e/keep'))).toEqual(['new2']);
  });

  it('replaces a directory by a file and a file by a directory', async () => {
    await apply([
      { name: 'p/inner', content: 'i' },
      { name: 'q', content: 'file' },
    ]);
    await apply([
      { name: 'p', content: 'now a file' },
      { name: 'q/', type: 'directory' },
      { name: 'q/child', content: 'c' },
    ]);
    expect(readFileSync(at('p'), 'utf8')).toBe('now a file');
    expect(readFileSync(at('q/child'), 'utf8')).toBe('c');
  });

  it('replaces an existing file instead of writing through its other hardlinks', async () => {
    await apply([{ name: 'orig', content: 'original' }]);
    await apply([{ name: 'alias', type: 'link', linkname: 'orig' }]);
    await apply([{ name: 'alias', content: 'changed' }]);
    expect(readFileSync(at('orig'), 'utf8')).toBe('original');
    expect(readFileSync(at('alias'), 'utf8')).toBe('changed');
  });

  it('keeps order inside one layer: rewrites, file<->dir swaps and hardlinks to files written just before', async () => {
    const many: Ent[] = Array.from({ length: 300 }, (_, i) => ({ name: `m/f${i}`, content: `v1-${i}` }));
    await apply([
      ...many,
      { name: 'm/f7', content: 'v2' },
      { name: 'm/f8', type: 'symlink', linkname: 'f7' },
      { name: 'm/f9/', type: 'directory' },
      { name: 'm/f9/inner', content: 'in' },
      { name: 'm/hl', type: 'link', linkname: 'm/f10' },
      { name: 'm/f11', type: 'link', linkname: 'm/f12' },
      { name: 'big', content: Buffer.alloc(200_000, 7) },
      { name: 'big', content: 'small now' },
    ]);
    expect(readFileSync(at('m/f7'), 'utf8')).toBe('v2');
    expect(readlinkSync(at('m/f8'))).toBe('f7');
    expect(readFileSync(at('m/f9/inner'), 'utf8')).toBe('in');
    expect(lstatSync(at('m/hl')).ino).toBe(lstatSync(at('m/f10')).ino);
    expect(readFileSync(at('m/f11'), 'utf8')).toBe('v1-12');
    expect(readFileSync(at('m/f299'), 'utf8')).toBe('v1-299');
    expect(readFileSync(at('big'), 'utf8')).toBe('small now');
  });

  it('in-place ignore: skips ignored paths for entries, whiteouts and opaque dirs', async () => {
    mkdirSync(at('proc'));
    writeFileSync(at('proc/keep'), 'k');
    await apply(
      [
        { name: 'proc/cpuinfo', content: 'fake' },
        { name: '.wh.proc', content: '' },
        { name: 'etc/x', content: 'x' },
      ],
      { ignore: (p) => p === '/proc' || p.startsWith('/proc/') },
    );
    expect(readdirSync(at('proc'))).toEqual(['keep']);
    expect(readFileSync(at('etc/x'), 'utf8')).toBe('x');
    await apply([{ name: './', type: 'directory' }, { name: '.wh..wh..opq', content: '' }], { ignore: (p) => p.startsWith('/proc') });
    expect(readdirSync(root)).toEqual(['proc']);
  });
});
