// The SBOM scan over real layer tarballs (made by GNU tar): every package database kind, whiteouts, the adding layer,
// and the Go build info of a real Go binary on this machine (skopeo).
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { layerChangesOf, scanImage, type LayerChanges } from '../../src/attest/index.js';
import { entriesForPaths, writeLayer, type WrittenEntry } from '../../src/snapshot/index.js';
import { fileLayer, MediaType, type Layer } from '../../src/image/index.js';
import type { Digest } from '../../src/digest/index.js';
import { run } from '../support/tools.js';

const sha = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function layer(dir: string, name: string, files: Record<string, string | { copy: string; mode: number }>): Promise<Layer> {
  const root = path.join(dir, name);
  for (const [rel, f] of Object.entries(files)) {
    const p = path.join(root, rel);
    await mkdir(path.dirname(p), { recursive: true });
    if (typeof f === 'string') await writeFile(p, f);
    else {
      await copyFile(f.copy, p);
      await run('chmod', [f.mode.toString(8), p]);
    }
  }
  const out = path.join(dir, `${name}.tar.gz`);
  await run('tar', ['-czf', out, '-C', root, '.']);
  const bytes = await readFile(out);
  return fileLayer(out, { mediaType: MediaType.OciLayerGzip, digest: sha(bytes), size: (await stat(out)).size }, sha(bytes));
}

const str = (s: string): Buffer => Buffer.concat([Buffer.from([s.length & 0x7f | (s.length > 127 ? 0x80 : 0), ...(s.length > 127 ? [s.length >> 7] : [])]), Buffer.from(s)]);
const GO_MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');

/** An ELF64 file: a code segment at 0 holding a stray build info magic (old pointer format), a data segment at 128 KiB
 * holding the real build info, as the Go linker places .go.buildinfo. */
function elfWithDataSegment(): Buffer {
  const file = Buffer.alloc(256 * 1024);
  file.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  file.writeBigUInt64LE(64n, 0x20); // e_phoff
  file.writeUInt16LE(56, 0x36); // e_phentsize
  file.writeUInt16LE(2, 0x38); // e_phnum
  const phdr = (at: number, flags: number, offset: number): void => {
    file.writeUInt32LE(1, at); // PT_LOAD
    file.writeUInt32LE(flags, at + 4);
    file.writeBigUInt64LE(BigInt(offset), at + 8);
  };
  phdr(64, 5, 0); // R+X
  phdr(120, 6, 128 * 1024); // R+W
  Buffer.concat([GO_MAGIC, Buffer.from([8, 0])]).copy(file, 4096);
  const mod = `${'0'.repeat(16)}mod\texample.com/seg\tv2.0.0\th1:z=\n${'0'.repeat(16)}`;
  Buffer.concat([GO_MAGIC, Buffer.from([8, 2]), Buffer.alloc(16), str('go1.23.0'), str(mod)]).copy(file, 128 * 1024);
  return file;
}

/** An ELF-looking file with Go >= 1.18 build info (debug/buildinfo's layout) starting just before the 64 KiB mark. */
function fakeGoBinary(): Buffer {
  const sentinel = Buffer.alloc(16, 0x30);
  const mod = Buffer.concat([sentinel, Buffer.from('path\texample.com/tool/cmd/tool\nmod\texample.com/tool\tv0.4.0\th1:x=\ndep\texample.com/dep\tv1.2.3\th1:y=\nbuild\tGOOS=linux\n'), sentinel]);
  const header = Buffer.concat([GO_MAGIC, Buffer.from([8, 2]), Buffer.alloc(16)]);
  const pad = Buffer.alloc(65536 - 7);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46]).copy(pad);
  return Buffer.concat([pad, header, str('go1.22.1'), str(mod.toString('latin1')), Buffer.alloc(4096)]);
}

describe('scanImage', () => {
  let dir: string;
  let goBinary: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'builder-scan-'));
    goBinary = path.join(dir, 'modtool');
    await writeFile(goBinary, fakeGoBinary());
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lists what the final filesystem holds, each package with the layer that added it', async () => {
    const status1 = 'Package: hello\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:2.10-3\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n';
    const l1 = await layer(dir, 'l1', {
      'usr/lib/os-release': 'PRETTY_NAME="Debian GNU/Linux 12"\nID=debian\n',
      'var/lib/dpkg/status': status1,
      'var/lib/dpkg/status.d/base-files': 'Package: base-files\nVersion: 12.4\nArchitecture: amd64\n',
      'lib/apk/db/installed': 'C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\n',
      'app/node_modules/left-pad/package.json': '{"name":"left-pad","version":"1.3.0"}',
      'app/node_modules/@types/node/package.json': '{"name":"@types/node","version":"20.1.0"}',
      'app/package-lock.json': JSON.stringify({ lockfileVersion: 1, dependencies: { 'left-pad': { version: '1.3.0' }, express: { version: '4.18.2', dependencies: { ms: { version: '2.0.0' } } } } }),
      'usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA': 'Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n\nbody Name: nope\n',
      'usr/lib/python3/dist-packages/six.egg-info/PKG-INFO': 'Name: six\nVersion: 1.16.0\n',
      'usr/local/bin/buildah': { copy: '/usr/bin/buildah', mode: 0o755 },
      'usr/local/bin/modtool': { copy: goBinary, mode: 0o755 },
    });
    const l2 = await layer(dir, 'l2', {
      'var/lib/dpkg/status': `${status1}\nPackage: curl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 7.88.1-10\n`,
      'app/node_modules/.wh.left-pad': '',
      'app/.wh.package-lock.json': '',
      'var/lib/rpm/rpmdb.sqlite': 'not really',
    });
    const { packages, skipped } = await scanImage([l1, l2]);
    const by = new Map(packages.map((p) => [p.purl, p]));
    // dpkg: installed only, epoch percent-encoded, namespace from os-release; kept its first layer across the rewrite
    expect(by.get('pkg:deb/debian/hello@1%3A2.10-3?arch=amd64')?.layer).toBe(l1.descriptor.digest);
    expect(by.get('pkg:deb/debian/curl@7.88.1-10?arch=amd64')?.layer).toBe(l2.descriptor.digest);
    expect(by.has('pkg:deb/debian/base-files@12.4?arch=amd64')).toBe(true);
    expect(packages.some((p) => p.name === 'gone')).toBe(false);
    expect(by.has('pkg:apk/debian/musl@1.2.4-r2?arch=x86_64')).toBe(true);
    expect(by.has('pkg:apk/debian/busybox@1.36.1-r5?arch=x86_64')).toBe(true);
    // npm: the whited-out module and lock file are gone; the scoped one stays
    expect(packages.filter((p) => p.type === 'npm').map((p) => p.purl)).toEqual(['pkg:npm/%40types/node@20.1.0']);
    expect(by.has('pkg:pypi/requests@2.31.0')).toBe(true);
    expect(by.has('pkg:pypi/six@1.16.0')).toBe(true);
    expect(packages.some((p) => p.name === 'nope')).toBe(false);
    // Go: the toolchain of a real binary (Debian builds without module info), as `buildah version` says
    const goVersion = /Go Version:\s*(\S+)/.exec((await run('buildah', ['version'])).stdout)?.[1];
    expect(by.get(`pkg:golang/stdlib@${goVersion}`)?.path).toBe('usr/local/bin/buildah');
    // and modules, from build info placed across a read chunk boundary
    const mods = packages.filter((p) => p.path === 'usr/local/bin/modtool').map((p) => p.purl);
    expect(mods).toEqual(['pkg:golang/example.com/dep@v1.2.3', 'pkg:golang/example.com/tool@v0.4.0', 'pkg:golang/stdlib@go1.22.1']);
    expect(skipped.join('\n')).toMatch(/RPM database \/var\/lib\/rpm\/rpmdb\.sqlite/);
  });

  it('a later layer replacing a binary or a directory (no whiteout) drops what was there', async () => {
    const l1 = await layer(dir, 'r1', {
      'usr/local/bin/modtool': { copy: goBinary, mode: 0o755 },
      'srv/node_modules/@types/node/package.json': '{"name":"@types/node","version":"20.1.0"}',
      'srv/node_modules/ms/package.json': '{"name":"ms","version":"2.1.3"}',
    });
    expect((await scanImage([l1])).packages.map((p) => p.name)).toEqual(expect.arrayContaining(['example.com/tool', '@types/node', 'ms']));
    // chmod -x leaves a plain file; @types becomes a file where the directory was
    const l2 = await layer(dir, 'r2', { 'usr/local/bin/modtool': { copy: goBinary, mode: 0o644 }, 'srv/node_modules/@types': 'now a file' });
    const after = await scanImage([l1, l2]);
    expect(after.packages.map((p) => p.purl)).toEqual(['pkg:npm/ms@2.1.3']);
    expect(after.packages[0]!.layer).toBe(l1.descriptor.digest);
  });

  it('reads a v1 lock file (nested dependencies)', async () => {
    const l = await layer(dir, 'lock1', { 'srv/package-lock.json': JSON.stringify({ lockfileVersion: 1, dependencies: { express: { version: '4.18.2', dependencies: { ms: { version: '2.0.0' } } }, local: { version: 'file:../local' } } }) });
    const { packages } = await scanImage([l]);
    expect(packages.map((p) => p.purl)).toEqual(['pkg:npm/express@4.18.2', 'pkg:npm/ms@2.0.0']);
  });

  it('a layer read from its entries as written (no blob) gives the same SBOM as its blob', async () => {
    const l1 = await layer(dir, 'w1', {
      'var/lib/dpkg/status': 'Package: hello\nStatus: install ok installed\nVersion: 2.10\n',
      'srv/node_modules/ms/package.json': '{"name":"ms","version":"2.1.3"}',
      'usr/bin/big': { copy: goBinary, mode: 0o644 },
    });
    const root = path.join(dir, 'w2');
    const files: Record<string, string | Buffer> = {
      'var/lib/dpkg/status': 'Package: hello\nStatus: install ok installed\nVersion: 2.11\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n',
      'usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA': 'Name: six\nVersion: 1.16.0\n',
      'usr/local/bin/modtool': await readFile(goBinary),
      'usr/bin/segtool': elfWithDataSegment(),
    };
    for (const [rel, body] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
      await writeFile(path.join(root, rel), body, { mode: rel.includes('bin/') ? 0o755 : 0o644 });
    }
    await run('ln', [path.join(root, 'usr/bin/segtool'), path.join(root, 'usr/bin/segtool2')]);
    await mkdir(path.join(root, 'srv/node_modules'), { recursive: true });
    const entries = [...await entriesForPaths(root, ['usr', 'var', 'srv']), { kind: 'whiteout' as const, path: 'srv/node_modules/ms' }];
    const written: WrittenEntry[] = [];
    const file = path.join(dir, 'w2.tar.gz');
    const r = await writeLayer(root, entries, file, { onEntry: (e) => written.push(e) });
    const l2 = fileLayer(file, { mediaType: MediaType.OciLayerGzip, digest: r.digest, size: r.size }, r.diffId);
    const fromBlob = await scanImage([l1, l2]);
    expect(fromBlob.packages.map((p) => p.purl)).toEqual(expect.arrayContaining(['pkg:deb/debian/hello@2.11', 'pkg:pypi/six@1.16.0', 'pkg:golang/example.com/seg@v2.0.0', 'pkg:golang/example.com/tool@v0.4.0']));
    expect(fromBlob.packages.some((p) => p.name === 'ms' || p.name === 'gone')).toBe(false);
    // the blob is gone: only the changes taken from the entries can give the same answer
    const known = new Map<Digest, LayerChanges>([[r.digest, await layerChangesOf(root, written, r.digest)]]);
    await rm(file);
    expect(await scanImage([l1, l2], known)).toEqual(fromBlob);
  });

  it('reads Go build info from the ELF data segment, not a stray magic in the code before it', async () => {
    const bin = path.join(dir, 'segtool');
    await writeFile(bin, elfWithDataSegment());
    const { packages, skipped } = await scanImage([await layer(dir, 'seg', { 'usr/bin/segtool': { copy: bin, mode: 0o755 } })]);
    expect(packages.map((p) => p.purl)).toEqual(['pkg:golang/example.com/seg@v2.0.0', 'pkg:golang/stdlib@go1.23.0']);
    expect(skipped).toEqual([]);
  });
});
