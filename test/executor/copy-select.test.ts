// The pure parts of COPY/ADD: --parents pivots, --exclude/--parents selection, archive sniffing, URL naming, git detection.
import { execFileSync } from 'node:child_process';
import type { Stats } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PatternMatcher } from '../../src/context/index.js';
import { archiveKind, sniffCompression } from '../../src/executor/archive.js';
import { isGitSource, isHttpSource, parseChecksum, urlFileName } from '../../src/executor/remote.js';
import { descendFor, selectEntries } from '../../src/executor/select.js';
import type { CopyEntry } from '../../src/executor/sources.js';
import { splitParents } from '../../src/executor/steps/copy.js';

const entry = (p: string): CopyEntry => ({
  path: p.replace(/\/$/, ''), abs: `/x/${p}`, type: p.endsWith('/') || p === '' ? 'dir' : 'file', stat: {} as Stats,
});
async function select(paths: string[], sel: { include?: string[]; exclude?: string[] }): Promise<string[]> {
  async function* gen() { for (const p of paths) yield entry(p); }
  const out: string[] = [];
  for await (const e of selectEntries(gen(), {
    ...(sel.include ? { include: new PatternMatcher(sel.include) } : {}),
    ...(sel.exclude ? { exclude: new PatternMatcher(sel.exclude) } : {}),
  })) out.push(e.type === 'dir' && e.path !== '' ? `${e.path}/` : e.path);
  return out;
}

describe('COPY --parents pivots (dockerfile2llb: strings.Cut(src, "/./"))', () => {
  it('splits at the first "/./"; no pivot keeps the whole cleaned path from the root', () => {
    expect(splitParents('/test/a/b/./c/d')).toEqual({ pivot: '/test/a/b', pattern: 'c/d' });
    expect(splitParents('/test/a/./b/./c')).toEqual({ pivot: '/test/a', pattern: 'b/c' });
    expect(splitParents('./test/a/b/c/d')).toEqual({ pivot: '/', pattern: 'test/a/b/c/d' });
    expect(splitParents('/test/a/b/c/d/.')).toEqual({ pivot: '/', pattern: 'test/a/b/c/d' });
    expect(splitParents('a/b*/./c/**/e')).toEqual({ pivot: 'a/b*', pattern: 'c/**/e' });
    expect(splitParents('/test/a/./')).toEqual({ pivot: '/test/a', pattern: '.' });
  });
});

describe('selectEntries (fsutil copier rules)', () => {
  const walk = ['', 'a/', 'a/keep.txt', 'a/drop.log', 'b/', 'b/c/', 'b/c/x.log', 'top.log'];

  it('an excluded directory is not entered and an excluded file is dropped; the source itself always stays', async () => {
    expect(await select(walk, { exclude: ['b', '*.log'] })).toEqual(['', 'a/', 'a/keep.txt', 'a/drop.log']);
    expect(await select(walk, { exclude: ['**/*.log', 'b'] })).toEqual(['', 'a/', 'a/keep.txt']);
  });

  it('a directory left out is placed only when an exception keeps something under it', async () => {
    expect(await select(walk, { exclude: ['b', '!b/c/x.log'] })).toEqual(['', 'a/', 'a/keep.txt', 'a/drop.log', 'b/', 'b/c/', 'b/c/x.log', 'top.log']);
    expect(await select(walk, { exclude: ['a', '!a/none'] })).toEqual(['', 'b/', 'b/c/', 'b/c/x.log', 'top.log']);
  });

  it('--parents includes only matches and their parents, parents placed just before what they hold', async () => {
    expect(await select(walk, { include: ['b/c/*.log'] })).toEqual(['', 'b/', 'b/c/', 'b/c/x.log']);
    expect(await select(walk, { include: ['**/*.txt'] })).toEqual(['', 'a/', 'a/keep.txt']);
    expect(await select(walk, { include: ['nothing*'] })).toEqual(['']);
    expect(await select(walk, { include: ['a'], exclude: ['**/*.log'] })).toEqual(['', 'a/', 'a/keep.txt']);
  });
});

describe('descendFor: the walk enters only directories that can hold something selected', () => {
  it('prunes directories off the --parents pattern and excluded ones without exceptions', () => {
    const parents = descendFor({ include: new PatternMatcher(['packages/*/package.json']) })!;
    expect(['packages', 'packages/a', 'node_modules', 'packages/a/src'].map(parents)).toEqual([true, true, false, false]);
    const deep = descendFor({ include: new PatternMatcher(['c/**/e']) })!;
    expect(['c', 'c/d/x/y', 'b'].map(deep)).toEqual([true, true, false]);
    const under = descendFor({ include: new PatternMatcher(['keep']) })!;
    expect(['keep', 'keep/a/b'].map(under)).toEqual([true, true]);
    expect(descendFor({ exclude: new PatternMatcher(['node_modules']) })!('node_modules')).toBe(false);
    expect(descendFor({ exclude: new PatternMatcher(['node_modules', '!node_modules/x']) })!('node_modules')).toBe(true);
    expect(descendFor({})).toBeUndefined();
  });
});

describe('ADD archive recognition (moby isArchivePath) and URL sources', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'builder-archive-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('magic bytes decide the compression, not the name', () => {
    expect(sniffCompression(Buffer.from([0x1f, 0x8b, 0x08, 0]))).toBe('gzip');
    expect(sniffCompression(Buffer.from('BZh91AY'))).toBe('bzip2');
    expect(sniffCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))).toBe('xz');
    expect(sniffCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe('zstd');
    expect(sniffCompression(Buffer.from('ustar'))).toBe('none');
  });

  it('a tar is an archive whatever its name or compression; compressed non-tars, short and empty files are not', async () => {
    await writeFile(path.join(dir, 'f'), 'hello\n');
    execFileSync('tar', ['-cf', path.join(dir, 'plain.dat'), '-C', dir, 'f']);
    execFileSync('sh', ['-c', 'xz -c < "$1/plain.dat" > "$1/tar.xz.dat"; echo text | zstd -q -c > "$1/text.zst"; : > "$1/empty.tar"; head -c 1024 /dev/zero > "$1/zeros.tar"', 'sh', dir]);
    expect(await archiveKind(path.join(dir, 'plain.dat'), 'a')).toBe('none');
    expect(await archiveKind(path.join(dir, 'tar.xz.dat'), 'a')).toBe('xz');
    expect(await archiveKind(path.join(dir, 'text.zst'), 'a')).toBeUndefined();
    expect(await archiveKind(path.join(dir, 'empty.tar'), 'a')).toBeUndefined();
    expect(await archiveKind(path.join(dir, 'zeros.tar'), 'a')).toBeUndefined();
    expect(await archiveKind(path.join(dir, 'f'), 'a')).toBeUndefined();
  });

  it('names a download after the URL path, "__unnamed__" without one (dockerfile2llb)', () => {
    expect(urlFileName('https://example.com/dir/file.tar.gz?x=1')).toBe('file.tar.gz');
    expect(urlFileName('https://example.com/a%20b.txt')).toBe('a b.txt');
    expect(urlFileName('https://example.com/')).toBe('__unnamed__');
    expect(urlFileName('https://example.com')).toBe('__unnamed__');
  });

  it('git sources are told apart from http sources', () => {
    expect(isGitSource('git@github.com:moby/buildkit.git')).toBe(true);
    expect(isGitSource('https://github.com/moby/buildkit.git#v0.10.1')).toBe(true);
    expect(isGitSource('git://example.com/repo')).toBe(true);
    expect(isHttpSource('https://github.com/moby/buildkit.git')).toBe(false);
    expect(isHttpSource('https://example.com/file.tar.gz')).toBe(true);
    expect(isHttpSource('http2://x')).toBe(false);
  });

  it('--checksum must be a full digest', () => {
    expect(parseChecksum(`sha256:${'a'.repeat(64)}`, 'D:1')).toEqual({ algorithm: 'sha256', hex: 'a'.repeat(64) });
    expect(() => parseChecksum('sha256:abc', 'D:1')).toThrow(/ADD_CHECKSUM_INVALID|invalid --checksum/);
    expect(() => parseChecksum(`md5:${'a'.repeat(32)}`, 'D:1')).toThrow(/invalid --checksum/);
  });
});
