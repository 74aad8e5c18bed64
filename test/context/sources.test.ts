// COPY/ADD source resolution and walking: kaniko's context fixtures and dockerignore cases, wildcards, exceptions, symlinks, errors.
import { copyFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { followSymlink, openContext, resolveSources, walkSource, type BuildContext, type SourceMatch } from '../../src/context/index.js';
import { tempDir, writeTree, errorOf } from './helpers.js';

import { CONFORMANCE } from '../support/paths.js';
const KANIKO = `${CONFORMANCE}/kaniko`;

let work: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir: work, cleanup } = await tempDir());
});
afterEach(async () => cleanup());

const open = (dir: string, dockerfile?: string) =>
  openContext(dir, { cwd: work, tmpDir: path.join(work, 'tmp'), ...(dockerfile ? { dockerfile } : {}) });
const rels = (ms: SourceMatch[]) => ms.map((m) => m.rel);

async function walk(ctx: BuildContext, m: SourceMatch): Promise<string[]> {
  const out: string[] = [];
  for await (const e of walkSource(ctx, m)) out.push(`${e.type}:${e.path}`);
  return out;
}

describe('kaniko Dockerfile_test_copy sources against the kaniko integration context', () => {
  // Each COPY line of dockerfiles/Dockerfile_test_copy, sources only, after ARG/ENV expansion.
  const table: Array<[string[], string[]]> = [
    [['context/foo'], ['context/foo']],
    [['context/bar/b*'], ['context/bar/bam', 'context/bar/bat', 'context/bar/baz']],
    [['context/fo?'], ['context/foo']],
    [['context/bar/doesnotexist*', 'context/foo'], ['context/foo']],
    [['./context/empty'], ['context/empty']],
    [['./'], ['.']],
    [['.'], ['.']],
    [['context/bar'], ['context/bar']],
    [['context/q*'], ['context/qux']],
    [['context/foo', 'context/bar/ba?'], ['context/foo', 'context/bar/bam', 'context/bar/bat', 'context/bar/baz']],
    [['context/arr[[]0].txt'], ['context/arr[0].txt']],
    [['context/bar/bat'], ['context/bar/bat']],
    [['./context/foo'], ['context/foo']],
    [['./context/*'], ['context/arr[0].txt', 'context/bar', 'context/empty', 'context/foo', 'context/qux', 'context/tars', 'context/workspace']],
  ];

  it.each(table)('COPY %j', async (sources, want) => {
    const ctx = await open(KANIKO);
    const ms = await resolveSources(ctx, sources);
    expect(rels(ms)).toEqual(want);
    for (const m of ms) expect(m.abs).toBe(m.rel === '.' ? KANIKO : path.join(KANIKO, m.rel));
  });

  it('reports types and stats', async () => {
    const ctx = await open(KANIKO);
    const [foo, bar] = await resolveSources(ctx, ['context/foo', 'context/bar']);
    expect(foo!.type).toBe('file');
    expect(foo!.stat.mode & 0o777).toBe(0o555);
    expect(bar!.type).toBe('dir');
  });

  it('walks a directory in lexical order, parents first', async () => {
    const ctx = await open(KANIKO);
    const [qux] = await resolveSources(ctx, ['context/qux']);
    expect(await walk(ctx, qux!)).toEqual(['dir:', 'file:qup', 'dir:quw', 'file:quw/que', 'file:quz']);
    const [foo] = await resolveSources(ctx, ['context/foo']);
    expect(await walk(ctx, foo!)).toEqual(['file:']);
  });
});

describe('kaniko dockerignore tests (integration/.dockerignore and Dockerfile_dockerignore_relative.dockerignore)', () => {
  beforeEach(async () => {
    // The layout kaniko's TestGetExcludedFiles uses: integration/ as context with ignore/ and ignore_relative/.
    await writeTree(work, {
      'integration/.dockerignore': '# A .dockerignore file to make sure dockerignore support works\nignore/**\n!ignore/foo\n',
      'integration/ignore/foo': 'foo',
      'integration/ignore/bar': 'bar',
      'integration/ignore/baz': 'baz',
      'integration/ignore_relative/foo': 'foo',
      'integration/ignore_relative/bar': 'bar',
      'integration/dockerfiles': null,
    });
    for (const f of ['Dockerfile_test_dockerignore', 'Dockerfile_dockerignore_relative', 'Dockerfile_dockerignore_relative.dockerignore']) {
      await copyFile(path.join(KANIKO, 'dockerfiles', f), path.join(work, 'integration/dockerfiles', f));
    }
  });

  it('context .dockerignore: COPY ignore/* copies only ignore/foo', async () => {
    const ctx = await open('integration', 'integration/dockerfiles/Dockerfile_test_dockerignore');
    expect(ctx.ignoreFile).toBe(path.join(work, 'integration/.dockerignore'));
    expect(ctx.isIgnored('ignore/bar')).toBe(true);
    expect(ctx.isIgnored('ignore/foo')).toBe(false);
    expect(ctx.isIgnored('ignore_relative/bar')).toBe(false);
    expect(rels(await resolveSources(ctx, ['ignore/*']))).toEqual(['ignore/foo']);
  });

  it('Dockerfile-specific ignore file: COPY ignore_relative/* copies only ignore_relative/foo', async () => {
    const ctx = await open('integration', 'integration/dockerfiles/Dockerfile_dockerignore_relative');
    expect(ctx.ignoreFile).toBe(path.join(work, 'integration/dockerfiles/Dockerfile_dockerignore_relative.dockerignore'));
    expect(ctx.isIgnored('ignore_relative/bar')).toBe(true);
    expect(ctx.isIgnored('ignore_relative/foo')).toBe(false);
    expect(ctx.isIgnored('ignore/bar')).toBe(false);
    expect(rels(await resolveSources(ctx, ['ignore_relative/*']))).toEqual(['ignore_relative/foo']);
    expect(rels(await resolveSources(ctx, ['ignore/*']))).toEqual(['ignore/bar', 'ignore/baz', 'ignore/foo']);
  });

  it('kaniko Dockerfile_test_ignore (COPY . .) skips what is ignored', async () => {
    const ctx = await open('integration');
    const [root] = await resolveSources(ctx, ['.']);
    const listed = await walk(ctx, root!);
    expect(listed).toContain('file:ignore/foo');
    expect(listed).not.toContain('file:ignore/bar');
    expect(listed).toContain('dir:ignore');
  });
});

describe('exceptions re-including files inside excluded directories', () => {
  beforeEach(async () => {
    await writeTree(work, {
      'ctx/.dockerignore': 'vendor\n!vendor/keep/deep.txt\nlogs\n!**/*.keep\n*.tmp\n',
      'ctx/vendor/a.txt': 'a',
      'ctx/vendor/keep/deep.txt': 'deep',
      'ctx/vendor/keep/other.txt': 'other',
      'ctx/logs/x.log': 'x',
      'ctx/logs/sub/y.keep': 'y',
      'ctx/logs/nothing/z.log': 'z',
      'ctx/src/main.c': 'int main;',
      'ctx/src/junk.tmp': 'junk',
      'ctx/junk.tmp': 'junk',
    });
  });

  it('walks into excluded directories and lists only re-included content with its parents', async () => {
    const ctx = await open('ctx');
    const [root] = await resolveSources(ctx, ['.']);
    expect(await walk(ctx, root!)).toEqual([
      'dir:', 'file:.dockerignore',
      'dir:logs', 'dir:logs/sub', 'file:logs/sub/y.keep',
      // "*.tmp" has no "**": it only matches at the root.
      'dir:src', 'file:src/junk.tmp', 'file:src/main.c',
      'dir:vendor', 'dir:vendor/keep', 'file:vendor/keep/deep.txt',
    ]);
  });

  it('an excluded directory holding re-included files is a valid source; its other files are not', async () => {
    const ctx = await open('ctx');
    const [vendor] = await resolveSources(ctx, ['vendor']);
    expect(await walk(ctx, vendor!)).toEqual(['dir:', 'dir:keep', 'file:keep/deep.txt']);
    expect(rels(await resolveSources(ctx, ['vendor/keep/deep.txt']))).toEqual(['vendor/keep/deep.txt']);
    expect(rels(await resolveSources(ctx, ['vendor/*']))).toEqual(['vendor/keep']);
    expect(rels(await resolveSources(ctx, ['*.tmp', 'src/*']))).toEqual(['src/junk.tmp', 'src/main.c']);
    const e = await errorOf(resolveSources(ctx, ['vendor/a.txt']));
    expect(e.code).toBe('COPY_SOURCE_NOT_FOUND');
    expect(e.hint).toContain('excluded by');
    expect((await errorOf(resolveSources(ctx, ['logs/nothing']))).code).toBe('COPY_SOURCE_NOT_FOUND');
  });
});

describe('source paths', () => {
  beforeEach(async () => {
    await writeTree(work, {
      'ctx/a/b/file.txt': 'f',
      'ctx/a/b/other.md': 'o',
      'ctx/a/c/file.txt': 'c',
      'ctx/star*name': 'literal',
      'ctx/lnk': { link: 'a' },
      'ctx/abs': { link: '/a/b' },
      'ctx/up': { link: '../../../..' },
      'ctx/file-link': { link: 'a/b/file.txt' },
      'ctx/dangling': { link: 'nowhere' },
      'ctx/escape-link': { link: '/etc/passwd' },
      'ctx/loop1': { link: 'loop2' },
      'ctx/loop2': { link: 'loop1' },
    });
  });

  it('cannot escape the context: ../ and leading / are cleaned to inside, like Docker', async () => {
    const ctx = await open('ctx');
    expect(rels(await resolveSources(ctx, ['../a/b/file.txt', '/a/b/file.txt', '../../a/../a/b/*.txt']))).toEqual([
      'a/b/file.txt', 'a/b/file.txt', 'a/b/file.txt',
    ]);
    expect((await errorOf(resolveSources(ctx, ['up/etc/passwd']))).code).toBe('COPY_SOURCE_NOT_FOUND');
  });

  it('follows intermediate symlinks inside the context (relative and absolute)', async () => {
    const ctx = await open('ctx');
    expect(rels(await resolveSources(ctx, ['lnk/b/file.txt', 'abs/file.txt', 'lnk/*/file.txt']))).toEqual([
      'a/b/file.txt', 'a/b/file.txt', 'a/b/file.txt', 'a/c/file.txt',
    ]);
  });

  it('reports a named symlink as a symlink and followSymlink resolves it inside the context', async () => {
    const ctx = await open('ctx');
    const [link] = await resolveSources(ctx, ['file-link']);
    expect(link!.type).toBe('symlink');
    expect(link!.linkTarget).toBe('a/b/file.txt');
    const target = await followSymlink(ctx, link!);
    expect(target.rel).toBe('a/b/file.txt');
    expect(target.type).toBe('file');
    const [dangling, escaping] = await resolveSources(ctx, ['dangling', 'escape-link']);
    expect((await errorOf(followSymlink(ctx, dangling!))).code).toBe('COPY_SOURCE_NOT_FOUND');
    expect((await errorOf(followSymlink(ctx, escaping!))).code).toBe('COPY_SOURCE_NOT_FOUND');
    const [loop] = await resolveSources(ctx, ['loop1']);
    expect((await errorOf(followSymlink(ctx, loop!))).code).toBe('CONTEXT_SYMLINK_LOOP');
  });

  it('wildcards: *, ?, [...], escapes; no match for one pattern is fine', async () => {
    const ctx = await open('ctx');
    expect(rels(await resolveSources(ctx, ['a/?/*.txt']))).toEqual(['a/b/file.txt', 'a/c/file.txt']);
    expect(rels(await resolveSources(ctx, ['a/[bc]/*.md', 'nothing*']))).toEqual(['a/b/other.md']);
    expect(rels(await resolveSources(ctx, ['a/[^b]/*']))).toEqual(['a/c/file.txt']);
    expect(rels(await resolveSources(ctx, ['star[*]name', 'star*']))).toEqual(['star*name', 'star*name']);
    expect(rels(await resolveSources(ctx, ['a/[b]/file\\.txt']))).toEqual(['a/b/file.txt']);
    // Without an unescaped wildcard Docker uses the source literally, backslash included.
    expect((await errorOf(resolveSources(ctx, ['star\\*name']))).code).toBe('COPY_SOURCE_NOT_FOUND');
  });

  it('missing source: Docker\'s message, context and ignore hint', async () => {
    await writeTree(work, { 'ctx/.dockerignore': 'secret\n', 'ctx/secret': 's' });
    const ctx = await open('ctx');
    const e = await errorOf(resolveSources(ctx, ['a/b/file.txt', 'missing.txt']));
    expect(e.code).toBe('COPY_SOURCE_NOT_FOUND');
    expect(e.message).toContain('COPY failed: file not found in build context or excluded by .dockerignore: stat missing.txt: file does not exist');
    expect(e.message).toContain(ctx.dir);
    expect(e.hint).toContain(path.join(ctx.dir, '.dockerignore'));
    const ignored = await errorOf(resolveSources(ctx, ['secret']));
    expect(ignored.code).toBe('COPY_SOURCE_NOT_FOUND');
    expect(ignored.hint).toContain('"secret" exists but is excluded by');
  });

  it('no match at all: "COPY failed: no source files were specified"', async () => {
    const ctx = await open('ctx');
    const e = await errorOf(resolveSources(ctx, ['*.nothing', 'a/*/none*']));
    expect(e.code).toBe('COPY_SOURCE_NOT_FOUND');
    expect(e.message).toContain('COPY failed: no source files were specified');
  });

  it('a malformed wildcard is COPY_SOURCE_INVALID', async () => {
    const ctx = await open('ctx');
    expect((await errorOf(resolveSources(ctx, ['a/[b']))).code).toBe('COPY_SOURCE_INVALID');
    expect((await errorOf(resolveSources(ctx, ['nothere/*/[']))).code).toBe('COPY_SOURCE_INVALID');
  });

  it('walkSource reads file content paths the executor can copy', async () => {
    const ctx = await open('ctx');
    const [a] = await resolveSources(ctx, ['a']);
    const files: string[] = [];
    for await (const e of walkSource(ctx, a!)) if (e.type === 'file') files.push(`${e.path}=${await readFile(e.abs, 'utf8')}`);
    expect(files).toEqual(['b/file.txt=f', 'b/other.md=o', 'c/file.txt=c']);
  });
});

describe('walk order', () => {
  it('is Go\'s byte order of the names (UTF-8), with and without names outside the BMP', async () => {
    // UTF-8: a < b < é (C3) < Ａ U+FF21 (EF) < 😀 U+1F600 (F0); UTF-16 would put 😀 (D83D) before Ａ
    const names = ['\uFF21', 'b', '\u00E9', 'a'];
    await writeTree(work, Object.fromEntries([...names.map((n) => [`bmp/d/${n}`, n]), ...[...names, '\u{1F600}'].map((n) => [`astral/d/${n}`, n])]));
    for (const [dir, want] of [['bmp', ['a', 'b', '\u00E9', '\uFF21']], ['astral', ['a', 'b', '\u00E9', '\uFF21', '\u{1F600}']]] as const) {
      const ctx = await open(path.join(work, dir));
      const [d] = await resolveSources(ctx, ['d']);
      expect(await walk(ctx, d!), dir).toEqual(['dir:', ...want.map((n) => `file:${n}`)]);
    }
  });
});
