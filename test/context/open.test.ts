// openContext: dir and tar sources, sub-paths, unsupported schemes, unsafe archives, ignore-file precedence.
import { execFileSync } from 'node:child_process';
import { readFile, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openContext, type BuildContext } from '../../src/context/index.js';
import { makeTar, streamOf, tempDir, writeTree, errorOf } from './helpers.js';
import { CONFORMANCE } from '../support/paths.js';

let work: string;
let tmp: string;
let cleanup: () => Promise<void>;
const opened: BuildContext[] = [];

beforeEach(async () => {
  const t = await tempDir();
  work = t.dir;
  tmp = path.join(work, 'tmp');
  cleanup = t.cleanup;
});
afterEach(async () => {
  for (const c of opened.splice(0)) await c.close();
  await cleanup();
});

async function open(spec: string, extra: Partial<Parameters<typeof openContext>[1]> = {}): Promise<BuildContext> {
  const ctx = await openContext(spec, { cwd: work, tmpDir: tmp, ...extra });
  opened.push(ctx);
  return ctx;
}

describe('directory contexts', () => {
  it('opens DIR and dir://DIR relative to cwd, as real paths', async () => {
    await writeTree(work, { 'app/a.txt': 'a' });
    const a = await open('app');
    const b = await open('dir://app');
    const c = await open(`dir://${path.join(work, 'app')}`);
    for (const ctx of [a, b, c]) {
      expect(ctx.kind).toBe('dir');
      expect(ctx.dir).toBe(path.join(work, 'app'));
      expect(ctx.ignoreFile).toBeUndefined();
    }
  });

  it('missing directory is CONTEXT_NOT_FOUND; a file says to use tar://', async () => {
    const e = await errorOf(open('nope'));
    expect(e.code).toBe('CONTEXT_NOT_FOUND');
    expect(e.message).toContain(path.join(work, 'nope'));
    await writeFile(path.join(work, 'ctx.tar'), '');
    const f = await errorOf(open('ctx.tar'));
    expect(f.code).toBe('CONTEXT_NOT_FOUND');
    expect(f.hint).toContain('tar://');
  });

  it.each(['git://github.com/x/y', 'https://example.com/ctx.tar.gz', 's3://bucket/ctx.tar.gz', 'gs://bucket/ctx.tar.gz', 'az://acct/ctx.tar.gz', 'ftp://x'])(
    '%s is CONTEXT_UNSUPPORTED with a hint',
    async (spec) => {
      const e = await errorOf(open(spec));
      expect(e.code).toBe('CONTEXT_UNSUPPORTED');
      expect(e.message).toContain(spec);
      expect(e.hint).toMatch(/--context|tar:\/\//);
    },
  );
});

describe('--context-sub-path', () => {
  beforeEach(async () => {
    await writeTree(work, {
      'repo/services/api/main.go': 'x',
      'repo/services/api/.dockerignore': 'main.go\n',
      'repo/.dockerignore': '*\n',
      'repo/escape': { link: '../..' },
      'repo/inner': { link: 'services' },
    });
  });

  it('selects a subdirectory whose .dockerignore applies', async () => {
    const ctx = await open('repo', { subPath: 'services/api' });
    expect(ctx.dir).toBe(path.join(work, 'repo/services/api'));
    expect(ctx.ignoreFile).toBe(path.join(work, 'repo/services/api/.dockerignore'));
    expect(ctx.isIgnored('main.go')).toBe(true);
  });

  it('follows an inner symlink but refuses to leave the context', async () => {
    expect((await open('repo', { subPath: 'inner/api' })).dir).toBe(path.join(work, 'repo/services/api'));
    expect((await errorOf(open('repo', { subPath: '../' }))).code).toBe('CONTEXT_SUBPATH_INVALID');
    expect((await errorOf(open('repo', { subPath: 'services/../../x' }))).code).toBe('CONTEXT_SUBPATH_INVALID');
    expect((await errorOf(open('repo', { subPath: 'escape' }))).code).toBe('CONTEXT_SUBPATH_INVALID');
    expect((await errorOf(open('repo', { subPath: 'missing' }))).code).toBe('CONTEXT_NOT_FOUND');
  });

  it('applies inside tar contexts too', async () => {
    const tar = await makeTar([{ name: 'sub/f', content: 'f' }, { name: 'g', content: 'g' }]);
    await writeFile(path.join(work, 'c.tar'), tar);
    const ctx = await open('tar://c.tar', { subPath: '/sub' });
    expect(await readdir(ctx.dir)).toEqual(['f']);
  });
});

describe('tar contexts', () => {
  const entries = [
    { name: './', type: 'directory' as const },
    { name: 'dir/', type: 'directory' as const, mode: 0o750 },
    { name: 'dir/file.txt', content: 'hello', mode: 0o640 },
    { name: 'run.sh', content: '#!/bin/sh\n', mode: 0o755 },
    { name: 'link', type: 'symlink' as const, linkname: 'dir/file.txt' },
    { name: 'hard', type: 'link' as const, linkname: 'dir/file.txt' },
    { name: 'implicit/parent/x', content: 'x' },
  ];

  async function check(ctx: BuildContext): Promise<void> {
    expect(ctx.kind).toBe('tar');
    expect(ctx.dir.startsWith(tmp)).toBe(true);
    expect(await readFile(path.join(ctx.dir, 'dir/file.txt'), 'utf8')).toBe('hello');
    expect((await stat(path.join(ctx.dir, 'dir/file.txt'))).mode & 0o7777).toBe(0o640);
    expect((await stat(path.join(ctx.dir, 'dir'))).mode & 0o7777).toBe(0o750);
    expect((await stat(path.join(ctx.dir, 'run.sh'))).mode & 0o7777).toBe(0o755);
    expect(await readlink(path.join(ctx.dir, 'link'))).toBe('dir/file.txt');
    expect((await stat(path.join(ctx.dir, 'hard'))).ino).toBe((await stat(path.join(ctx.dir, 'dir/file.txt'))).ino);
    expect(await readFile(path.join(ctx.dir, 'implicit/parent/x'), 'utf8')).toBe('x');
  }

  it('extracts tar://file.tar', async () => {
    await writeFile(path.join(work, 'ctx.tar'), await makeTar(entries));
    await check(await open('tar://ctx.tar'));
  });

  it('extracts tar://file.tar.gz and removes it on close', async () => {
    await writeFile(path.join(work, 'ctx.tar.gz'), await makeTar(entries, true));
    const ctx = await open('tar://ctx.tar.gz');
    await check(ctx);
    await ctx.close();
    await ctx.close();
    await expect(stat(ctx.dir)).rejects.toThrow();
    expect(await readdir(tmp)).toEqual([]);
  });

  it('reads tar://stdin, plain and gzipped', async () => {
    await check(await open('tar://stdin', { stdin: streamOf(await makeTar(entries)) }));
    await check(await open('tar://stdin', { stdin: streamOf(await makeTar(entries, true)) }));
  });

  it('tar://stdin without a stream is CONTEXT_INVALID; a missing archive CONTEXT_NOT_FOUND', async () => {
    expect((await errorOf(open('tar://stdin'))).code).toBe('CONTEXT_INVALID');
    expect((await errorOf(open('tar://missing.tar.gz'))).code).toBe('CONTEXT_NOT_FOUND');
  });

  it('garbage is CONTEXT_TAR_INVALID, bzip2 CONTEXT_UNSUPPORTED, and nothing is left in tmpDir', async () => {
    const gz = (await makeTar(entries, true)).subarray(0, 40);
    expect((await errorOf(open('tar://stdin', { stdin: streamOf(gz) }))).code).toBe('CONTEXT_TAR_INVALID');
    expect((await errorOf(open('tar://stdin', { stdin: streamOf(Buffer.from('BZh91AY&SY garbage')) }))).code).toBe('CONTEXT_UNSUPPORTED');
    expect(await readdir(tmp)).toEqual([]);
  });

  it('reads what GNU tar writes: ./-prefixed names, long (PAX/GNU) names, gzip', async () => {
    const long = `${'d'.repeat(80)}/${'f'.repeat(120)}.txt`;
    await writeTree(work, { [`src/${long}`]: 'long', 'src/sub/x': 'x' });
    execFileSync('tar', ['-czf', path.join(work, 'gnu.tgz'), '-C', path.join(work, 'src'), '.']);
    const ctx = await open('tar://gnu.tgz');
    expect(await readFile(path.join(ctx.dir, long), 'utf8')).toBe('long');
    expect(await readFile(path.join(ctx.dir, 'sub/x'), 'utf8')).toBe('x');
  });

  it('uses the kaniko fixture archive context/tars/file.tar', async () => {
    const fixture = `${CONFORMANCE}/kaniko/context/tars`;
    const ctx = await open(`tar://${fixture}/file.tar`);
    const gz = await open(`tar://${fixture}/file.tar.gz`);
    expect(await readdir(ctx.dir)).toEqual(['uncompressedFile']);
    expect(await readdir(gz.dir)).toEqual(['compressedFile']);
    expect((await errorOf(open(`tar://${fixture}/file.bz2`))).code).toBe('CONTEXT_UNSUPPORTED');
  });
});

describe('unsafe tar entries are rejected with CONTEXT_TAR_UNSAFE', () => {
  const cases: Array<[string, Parameters<typeof makeTar>[0], string]> = [
    ['../evil', [{ name: '../evil', content: 'x' }], '../evil'],
    ['a/../../evil', [{ name: 'a/../../evil', content: 'x' }], 'a/../../evil'],
    ['/abs', [{ name: '/abs/file', content: 'x' }], '/abs/file'],
    ['symlink then file through it', [
      { name: 'out', type: 'symlink', linkname: '../../outside' },
      { name: 'out/pwned', content: 'x' },
    ], 'out/pwned'],
    ['symlink to / then a directory through it', [
      { name: 'root', type: 'symlink', linkname: '/' },
      { name: 'root/tmp/x/', type: 'directory' },
    ], 'root/tmp/x/'],
    ['hard link to outside', [{ name: 'h', type: 'link', linkname: '../../etc/passwd' }], 'h'],
    ['hard link through a symlink', [
      { name: 'l', type: 'symlink', linkname: '/etc' },
      { name: 'h', type: 'link', linkname: 'l/passwd' },
    ], 'h'],
  ];

  it.each(cases)('%s', async (_name, entries, entryName) => {
    await writeFile(path.join(work, 'bad.tar'), await makeTar(entries));
    const e = await errorOf(open('tar://bad.tar'));
    expect(e.code).toBe('CONTEXT_TAR_UNSAFE');
    expect(e.message).toContain(entryName);
    // Nothing escaped and the half-extracted directory is gone.
    expect(await readdir(work)).toEqual(['bad.tar', 'tmp']);
    expect(await readdir(tmp)).toEqual([]);
  });

  it('a symlink planted at a file name is replaced, not written through', async () => {
    await writeFile(path.join(work, 'victim'), 'safe');
    const tar = await makeTar([
      { name: 'f', type: 'symlink', linkname: path.join(work, 'victim') },
      { name: 'f', content: 'overwritten?' },
    ]);
    const ctx = await open('tar://stdin', { stdin: streamOf(tar) });
    expect(await readFile(path.join(work, 'victim'), 'utf8')).toBe('safe');
    expect(await readFile(path.join(ctx.dir, 'f'), 'utf8')).toBe('overwritten?');
  });
});

describe('ignore file selection', () => {
  beforeEach(async () => {
    await writeTree(work, {
      'ctx/.dockerignore': 'from-context\n',
      'ctx/from-context': 'x',
      'ctx/from-dockerfile': 'x',
      'ctx/build/Dockerfile': 'FROM scratch\n',
      'ctx/build/Dockerfile.dockerignore': 'from-dockerfile\n',
      'ctx/build/Other.Dockerfile': 'FROM scratch\n',
    });
  });

  it('<Dockerfile>.dockerignore next to the Dockerfile wins over <context>/.dockerignore', async () => {
    const ctx = await open('ctx', { dockerfile: 'ctx/build/Dockerfile' });
    expect(ctx.dockerfilePath).toBe(path.join(work, 'ctx/build/Dockerfile'));
    expect(ctx.ignoreFile).toBe(path.join(work, 'ctx/build/Dockerfile.dockerignore'));
    expect(ctx.isIgnored('from-dockerfile')).toBe(true);
    expect(ctx.isIgnored('from-context')).toBe(false);
  });

  it('a Dockerfile path relative to the context is found too (kaniko order: cwd, then context)', async () => {
    const ctx = await open('ctx', { dockerfile: 'build/Dockerfile' });
    expect(ctx.ignoreFile).toBe(path.join(work, 'ctx/build/Dockerfile.dockerignore'));
  });

  it('falls back to <context>/.dockerignore when the Dockerfile has none', async () => {
    const ctx = await open('ctx', { dockerfile: 'ctx/build/Other.Dockerfile' });
    expect(ctx.ignoreFile).toBe(path.join(work, 'ctx/.dockerignore'));
    expect(ctx.isIgnored('from-context')).toBe(true);
    expect(ctx.isIgnored('/from-context')).toBe(true);
    expect(ctx.isIgnored('../from-context')).toBe(true);
    expect(ctx.isIgnored('from-dockerfile')).toBe(false);
    expect(ctx.ignorePatterns).toEqual(['from-context']);
  });

  it('an invalid ignore file fails the open with DOCKERIGNORE_INVALID naming it', async () => {
    await writeFile(path.join(work, 'ctx/.dockerignore'), 'ok\n[broken\n');
    const e = await errorOf(open('ctx'));
    expect(e.code).toBe('DOCKERIGNORE_INVALID');
    expect(e.message).toContain(path.join(work, 'ctx/.dockerignore'));
  });
});
