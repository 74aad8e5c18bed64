// Layer compression: parallel gzip and zstd layers are written right (unit), and what builder pushes is read by the clients
// that matter: skopeo (oci: and dir: decompressed), umoci (unpack), buildah (pull + from), kaniko v1.24.0 (Go's readers,
// building FROM it) and builder's own extractor.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createWriteStream, createReadStream } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kanikoAnchor, kanikoTool } from '../../bench/support/tools.js';
import { RootFs, extractLayer } from '../../src/rootfs/index.js';
import { crc32Js, createLayerCompressor, GZIP_CHUNK } from '../../src/snapshot/compress.js';
import { entriesForPaths, writeLayer } from '../../src/snapshot/index.js';
import { REPO_ROOT } from '../support/paths.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { compileIfStale } from '../executor/helpers.js';
import { run, skopeoCopy, skopeoInspect, umociUnpack, unmountBelow } from '../support/tools.js';

const onPath = (t: string): boolean => (process.env.PATH ?? '').split(':').some((d) => existsSync(path.join(d, t)));
const haveZstd = onPath('zstd');

/** Deterministic, partly compressible bytes: text lines with a counter and a pseudo-random word. */
function sampleBytes(n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n);
  let x = seed;
  let pos = 0;
  for (let line = 0; pos < n; line++) {
    x = (x * 1103515245 + 12345) >>> 0;
    pos += out.write(`line ${line} ${x.toString(36)} ${'abcdefgh'.repeat(x % 7)}\n`, pos);
  }
  return out;
}

async function compress(kind: 'gzip' | 'zstd', pieces: Buffer[], file: string, parallel?: number): Promise<Buffer> {
  await pipeline(Readable.from(pieces), createLayerCompressor(kind, undefined, parallel ? { parallel } : {}), createWriteStream(file));
  return readFile(file);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('layer compressors', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'builder-compress-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('parallel gzip of several chunks is one gzip stream that gzip -t accepts and zlib inflates to the same bytes', async () => {
    const data = sampleBytes(3 * GZIP_CHUNK + 12345);
    const gz = await compress('gzip', [data], path.join(tmp, 'a.gz'));
    expect(gz.subarray(0, 3)).toEqual(Buffer.from([0x1f, 0x8b, 8]));
    await run('gzip', ['-t', path.join(tmp, 'a.gz')]);
    expect(sha(gunzipSync(gz))).toBe(sha(data));
    // one member: the trailer's ISIZE is the whole input's length
    expect(gz.readUInt32LE(gz.length - 4)).toBe(data.length);
  });

  it('parallel gzip at levels 0 (stored blocks) and 9 inflates to the same bytes too', async () => {
    const data = sampleBytes(2 * GZIP_CHUNK + 77, 9);
    for (const level of [0, 9]) {
      const file = path.join(tmp, `l${level}.gz`);
      await pipeline(Readable.from([data]), createLayerCompressor('gzip', level), createWriteStream(file));
      expect(sha(gunzipSync(await readFile(file)))).toBe(sha(data));
    }
  });

  it('parallel gzip output depends on the bytes only, not on write sizes or how many chunks run at once', async () => {
    const data = sampleBytes(2 * GZIP_CHUNK + 999, 7);
    const whole = await compress('gzip', [data], path.join(tmp, 'w.gz'), 3);
    const pieces: Buffer[] = [];
    for (let o = 0, k = 1; o < data.length; o += k * 7919, k++) pieces.push(data.subarray(o, Math.min(data.length, o + k * 7919)));
    const split = await compress('gzip', pieces, path.join(tmp, 's.gz'), 1);
    expect(sha(split)).toBe(sha(whole));
  });

  it('the CRC-32 fallback for Node before 20.15 agrees with zlib\'s, chained over pieces', () => {
    const data = sampleBytes(100_003, 5);
    const whole = crc32Js(data);
    expect(crc32Js(data.subarray(50_000), crc32Js(data.subarray(0, 50_000)))).toBe(whole);
    // the gzip trailer written with zlib's (or this) CRC is what gunzip checks
    const gz = gzipSync(data);
    expect(gz.readUInt32LE(gz.length - 8)).toBe(whole);
  });

  it('parallel gzip stops taking input while nobody reads its output (memory stays bounded)', async () => {
    const gz = createLayerCompressor('gzip', 1, { parallel: 2 });
    const chunk = randomBytes(1 << 20);
    let accepted = 0;
    for (let i = 0; i < 64; i++) {
      accepted += chunk.length;
      if (gz.write(chunk)) continue;
      const drained = await Promise.race([once(gz, 'drain').then(() => true), sleep(3000).then(() => false)]);
      if (!drained) break;
    }
    gz.destroy();
    // 4 MiB of queued input + the chunks in flight + 4 MiB of unread output, not the 64 MiB offered
    expect(accepted).toBeLessThan(20 << 20);
  });

  it('parallel gzip of nothing is a valid empty gzip stream', async () => {
    const gz = await compress('gzip', [], path.join(tmp, 'empty.gz'));
    expect(gunzipSync(gz).length).toBe(0);
  });

  it.skipIf(!haveZstd)('zstd layers written by writeLayer are extracted by builder\'s own extractor with the same diffID', async () => {
    const src = path.join(tmp, 'src');
    await mkdir(path.join(src, 'd'), { recursive: true });
    const big = sampleBytes(GZIP_CHUNK + 5, 3);
    await writeFile(path.join(src, 'd/big.txt'), big);
    await writeFile(path.join(src, 'd/small.txt'), 'small\n');
    const file = path.join(tmp, 'layer.tar.zst');
    const r = await writeLayer(src, await entriesForPaths(src, ['d']), file, { compression: 'zstd' });
    const head = (await readFile(file)).subarray(0, 4);
    expect(head.readUInt32LE(0)).toBe(0xfd2fb528);
    const dest = path.join(tmp, 'dest');
    await mkdir(dest);
    await extractLayer(new RootFs(dest), createReadStream(file), { expectedDiffId: r.diffId, mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' });
    expect(sha(await readFile(path.join(dest, 'd/big.txt')))).toBe(sha(big));
  });

  it.skipIf(!haveZstd)('a corrupt zstd layer fails extraction with a typed error, not a hang', async () => {
    const file = path.join(tmp, 'bad.zst');
    const good = await compress('zstd', [sampleBytes(100_000)], file);
    const bad = Buffer.concat([good.subarray(0, 40), Buffer.alloc(200, 0xaa)]);
    const dest = path.join(tmp, 'dest-bad');
    await mkdir(dest);
    await expect(extractLayer(new RootFs(dest), Readable.from([bad]))).rejects.toMatchObject({ name: 'BuilderError' });
  });
});

const canRun = ['skopeo', 'umoci', 'buildah', 'docker-registry', 'zstd', 'unshare'].every(onPath) && process.getuid?.() === 0;
const haveKaniko = existsSync(process.env.KANIKO_EXECUTOR ?? kanikoAnchor(REPO_ROOT, 'executor'));

describe.skipIf(!canRun)('compressed layers builder pushes, read by other clients', () => {
  let reg: TestRegistry;
  let tmp: string;
  let ctx: string;
  let buildahGlobal: string[];
  const big = sampleBytes(3 * GZIP_CHUNK + 4321, 11);
  const bigSha = sha(big);
  const builder = (args: string[]) => run('node', [path.join(REPO_ROOT, 'bin/builder'), '--run-mode', 'sandbox', '--cache-dir', path.join(tmp, 'cache'), '--work-dir', path.join(tmp, 'work'), ...args], { timeoutMs: 300_000 });
  const buildah = (args: string[]) => run('buildah', [...buildahGlobal, ...args], { timeoutMs: 300_000, env: { ...process.env, BUILDAH_ISOLATION: 'chroot' } });
  const ref = (c: string): string => `${reg.host}/compress/img:${c}`;
  let umociReadsZstd = false;

  beforeAll(async () => {
    // the CLI runs from dist/: compiled when src is newer (never rewritten under another test's running builder)
    await compileIfStale();
    reg = await startRegistry({ mode: 'plain' });
    const [major, minor] = ((await run('umoci', ['--version'])).stdout.match(/(\d+)\.(\d+)/) ?? []).slice(1).map(Number);
    umociReadsZstd = major! > 0 || minor! >= 5;
    tmp = await mkdtemp(path.join(os.tmpdir(), 'builder-compress-push-'));
    buildahGlobal = ['--root', path.join(tmp, 'buildah/root'), '--runroot', path.join(tmp, 'buildah/runroot'), '--storage-driver', 'vfs'];
    ctx = path.join(tmp, 'ctx');
    await mkdir(path.join(ctx, 'bin'), { recursive: true });
    await writeFile(path.join(ctx, 'big.txt'), big);
    await writeFile(path.join(ctx, 'small.txt'), 'small\n');
    // a shell for kaniko's RUN: the static busybox the tests already need
    await writeFile(path.join(ctx, 'bin/busybox'), await readFile('/bin/busybox'), { mode: 0o755 });
    await writeFile(path.join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY bin/busybox /bin/busybox\nCOPY big.txt small.txt /data/\n');
    for (const c of ['gzip', 'zstd']) await builder(['--context', ctx, '--compression', c, '--destination', ref(c), '--insecure']);
  }, 600_000);

  afterAll(async () => {
    if (tmp) {
      await buildah(['rm', '--all']).catch(() => undefined);
      await buildah(['rmi', '--all', '--force']).catch(() => undefined);
      await unmountBelow(tmp);
      await rm(tmp, { recursive: true, force: true });
    }
    await reg?.stop();
  }, 300_000);

  for (const c of ['gzip', 'zstd'] as const) {
    it(`${c}: the manifest declares the layers' compression (zstd: OCI media types)`, async () => {
      const m = await skopeoInspect(reg, `compress/img:${c}`, { raw: true });
      expect(m.layers).toHaveLength(2);
      if (c === 'zstd') {
        expect(m.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
        for (const l of m.layers) expect(l.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
      } else {
        for (const l of m.layers) expect(l.mediaType).toMatch(/gzip$/);
      }
    });

    it(`${c}: skopeo copies it to dir: decompressed, each layer's bytes matching its diffID`, async () => {
      const dir = path.join(tmp, `dir-${c}`);
      await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', '--src-no-creds', '--dest-decompress', `docker://${ref(c)}`, `dir:${dir}`]);
      const config = await skopeoInspect(reg, `compress/img:${c}`, { config: true });
      const files = await readdir(dir);
      for (const diffId of config.rootfs.diff_ids as string[]) {
        expect(files).toContain(diffId.slice(7));
        expect(`sha256:${sha(await readFile(path.join(dir, diffId.slice(7))))}`).toBe(diffId);
      }
    });

    it(`${c}: skopeo copies it to an oci: layout and umoci unpacks it (zstd: umoci before 0.5 refuses the media type)`, async () => {
      const layout = path.join(tmp, `oci-${c}`);
      await skopeoCopy(`docker://${ref(c)}`, `oci:${layout}:img`, { reg });
      if (c === 'zstd' && !umociReadsZstd) {
        // Debian's umoci 0.4.7 knows only gzip and plain layers (docs/compression.md): it must say so, not unpack garbage.
        await expect(umociUnpack(layout, 'img', path.join(tmp, `bundle-${c}`))).rejects.toThrow(/not correct mediatype: application\/vnd.oci.image.layer.v1.tar\+zstd/);
        return;
      }
      const rootfs = await umociUnpack(layout, 'img', path.join(tmp, `bundle-${c}`));
      expect(sha(await readFile(path.join(rootfs, 'data/big.txt')))).toBe(bigSha);
      expect(await readFile(path.join(rootfs, 'data/small.txt'), 'utf8')).toBe('small\n');
    });

    it(`${c}: buildah pulls it and makes a working container from it`, async () => {
      await buildah(['pull', '--quiet', '--tls-verify=false', `docker://${ref(c)}`]);
      const name = (await buildah(['from', '--quiet', '--pull=never', '--tls-verify=false', ref(c)])).stdout.trim();
      const mnt = (await buildah(['mount', name])).stdout.trim();
      expect(sha(await readFile(path.join(mnt, 'data/big.txt')))).toBe(bigSha);
      await buildah(['umount', name]);
    });

    it.skipIf(!haveKaniko)(`${c}: kaniko v1.24.0 builds FROM it (Go's decompressors) and reads the same bytes`, async () => {
      const kctx = path.join(tmp, `kctx-${c}`);
      await mkdir(kctx, { recursive: true });
      await writeFile(path.join(kctx, 'Dockerfile'), `FROM ${ref(c)}\nRUN ["/bin/busybox", "sha256sum", "/data/big.txt"]\n`);
      const kaniko = await kanikoTool(REPO_ROOT, path.join(tmp, `kaniko-${c}`));
      const state = path.join(tmp, `kaniko-state-${c}`);
      const logFile = path.join(tmp, `kaniko-${c}.log`);
      try {
        const r = await kaniko.cold({ workload: 'compression', ctxDir: kctx, registry: reg.host, destination: `${reg.host}/compress/kaniko:${c}`, stateDir: state, logFile, timeoutMs: 300_000 });
        const log = await readFile(logFile, 'utf8');
        expect(r.exitCode, log).toBe(0);
        expect(log).toContain(`${bigSha}  /data/big.txt`);
      } finally {
        await kaniko.cleanup(state);
      }
    }, 400_000);
  }

  it('a zstd build does not take gzip layers from the layer cache (nor the reverse)', async () => {
    const cache = `oci:${path.join(tmp, 'layer-cache')}`;
    const mediaTypes = async (c: string, n: number): Promise<{ types: string[]; log: string }> => {
      const out = path.join(tmp, `cached-${c}-${n}`);
      const r = await builder(['--context', ctx, '--compression', c, '--cache', '--cache-repo', cache, '--no-push', '--oci-layout-path', out]);
      const index = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8'));
      const manifest = JSON.parse(await readFile(path.join(out, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
      return { types: manifest.layers.map((l: { mediaType: string }) => l.mediaType), log: r.stderr };
    };
    const first = await mediaTypes('gzip', 1);
    expect(first.types.every((t) => /gzip$/.test(t))).toBe(true);
    const z = await mediaTypes('zstd', 1);
    expect(z.types).toEqual(['application/vnd.oci.image.layer.v1.tar+zstd', 'application/vnd.oci.image.layer.v1.tar+zstd']);
    expect(z.log).toMatch(/0 hits/);
    // each compression's entries are hits for a build asking for the same compression
    expect((await mediaTypes('zstd', 2)).log).toMatch(/2 hits/);
    const g = await mediaTypes('gzip', 2);
    expect(g.log).toMatch(/2 hits/);
    expect(g.types.every((t) => /gzip$/.test(t))).toBe(true);
  });

  it('--single-snapshot with zstd reads the zstd step layers and writes one zstd layer', async () => {
    const out = path.join(tmp, 'single-zstd');
    await builder(['--context', ctx, '--compression', 'zstd', '--single-snapshot', '--no-push', '--oci-layout-path', out]);
    const index = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8'));
    const manifest = JSON.parse(await readFile(path.join(out, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
    expect(manifest.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar+zstd']);
    const blob = path.join(out, 'blobs/sha256', manifest.layers[0].digest.slice(7));
    const listing = (await run('sh', ['-c', 'zstd -d -c "$1" | tar -t', 'sh', blob])).stdout.split('\n');
    expect(listing).toEqual(expect.arrayContaining(['bin/busybox', 'data/big.txt', 'data/small.txt']));
  });

  it('--compression-level is checked against the compression\'s own range (gzip 0-9, zstd 1-19)', async () => {
    const fails = (args: string[]) => builder(['--context', ctx, '--no-push', ...args]).then(() => '', (e: Error) => String(e));
    expect(await fails(['--compression-level', '12'])).toMatch(/FLAG_INVALID: --compression-level=12 is not 0-9 \(gzip\)/);
    expect(await fails(['--compression', 'zstd', '--compression-level', '0'])).toMatch(/FLAG_INVALID: --compression-level=0 is not 1-19 \(zstd\)/);
    expect(await fails(['--compression', 'brotli'])).toMatch(/FLAG_INVALID/);
  });

  it('zstd with --tar-path writes a docker-archive whose zstd layers skopeo reads (no media types there: readers sniff)', async () => {
    const tarball = path.join(tmp, 'zstd-archive.tar');
    await builder(['--context', ctx, '--compression', 'zstd', '--no-push', '--tar-path', tarball]);
    const listing = (await run('tar', ['-t', '-f', tarball])).stdout.split('\n');
    expect(listing.filter((n) => n.endsWith('.tar.zst'))).toHaveLength(2);
    const dir = path.join(tmp, 'zstd-archive-dir');
    await run('skopeo', ['copy', '--quiet', '--dest-decompress', `docker-archive:${tarball}`, `dir:${dir}`]);
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    const config = JSON.parse(await readFile(path.join(dir, manifest.config.digest.slice(7)), 'utf8'));
    for (const diffId of config.rootfs.diff_ids as string[]) {
      expect(`sha256:${sha(await readFile(path.join(dir, diffId.slice(7))))}`).toBe(diffId);
    }
  });

  it('a gzip build FROM an image with zstd layers refuses --image-format docker (the base\'s zstd layers cannot be in it)', async () => {
    const c2 = path.join(tmp, 'ctx-from-zstd');
    await mkdir(c2, { recursive: true });
    await writeFile(path.join(c2, 'Dockerfile'), `FROM ${ref('zstd')}\nLABEL from=zstd\n`);
    const err = await builder(['--context', c2, '--insecure', '--image-format', 'docker', '--no-push', '--oci-layout-path', path.join(tmp, 'y-layout')]).then(() => undefined, (e: Error) => e);
    expect(String(err)).toMatch(/BUILD_COMPRESSION_CONFLICT: layer sha256:[0-9a-f]{64} is zstd-compressed \(from the base image\)/);
  });

  it('zstd with --image-format docker is refused: Docker\'s manifest has no zstd layer type', async () => {
    const err = await builder(['--context', ctx, '--compression', 'zstd', '--image-format', 'docker', '--no-push', '--oci-layout-path', path.join(tmp, 'x-layout')]).then(() => undefined, (e: Error) => e);
    expect(String(err)).toContain('BUILD_COMPRESSION_CONFLICT');
  });
});
