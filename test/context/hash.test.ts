// hashSources: stable across mtime and owner changes, sensitive to content, mode, names, link targets and ignore rules.
import { chmod, rename, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashSources, openContext, resolveSources } from '../../src/context/index.js';
import { isDigest } from '../../src/digest/digest.js';
import { makeTar, streamOf, tempDir, writeTree } from './helpers.js';

let work: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir: work, cleanup } = await tempDir());
  await writeTree(work, {
    'ctx/app/main.js': 'console.log(1)\n',
    'ctx/app/lib/util.js': 'export {}\n',
    'ctx/app/run.sh': { content: '#!/bin/sh\n', mode: 0o755 },
    'ctx/app/link': { link: 'main.js' },
    'ctx/other/main.js': 'console.log(1)\n',
  });
});
afterEach(async () => cleanup());

async function hashOf(patterns: string[], dir = 'ctx') {
  const ctx = await openContext(dir, { cwd: work, tmpDir: path.join(work, 'tmp') });
  return hashSources(ctx, await resolveSources(ctx, patterns));
}

describe('hashSources', () => {
  it('is a sha256 digest, deterministic', async () => {
    const a = await hashOf(['app']);
    expect(isDigest(a)).toBe(true);
    expect(await hashOf(['app'])).toBe(a);
  });

  it('ignores mtime (files and directories)', async () => {
    const before = await hashOf(['app']);
    const old = new Date('2001-01-01T00:00:00Z');
    await utimes(path.join(work, 'ctx/app/main.js'), old, old);
    await utimes(path.join(work, 'ctx/app/lib'), old, old);
    expect(await hashOf(['app'])).toBe(before);
  });

  it('changes with content, even at the same size', async () => {
    const before = await hashOf(['app']);
    await writeFile(path.join(work, 'ctx/app/main.js'), 'console.log(2)\n');
    expect(await hashOf(['app'])).not.toBe(before);
  });

  it('changes with permission bits of files and directories', async () => {
    const before = await hashOf(['app']);
    await chmod(path.join(work, 'ctx/app/main.js'), 0o600);
    const afterFile = await hashOf(['app']);
    expect(afterFile).not.toBe(before);
    await chmod(path.join(work, 'ctx/app/lib'), 0o700);
    expect(await hashOf(['app'])).not.toBe(afterFile);
  });

  it('changes with a symlink target and with renames', async () => {
    const before = await hashOf(['app']);
    await unlink(path.join(work, 'ctx/app/link'));
    await symlink('run.sh', path.join(work, 'ctx/app/link'));
    const relinked = await hashOf(['app']);
    expect(relinked).not.toBe(before);
    await rename(path.join(work, 'ctx/app/lib/util.js'), path.join(work, 'ctx/app/lib/util2.js'));
    expect(await hashOf(['app'])).not.toBe(relinked);
  });

  it('a directory hashes by its content, not its name; a file keeps its name', async () => {
    await writeTree(work, { 'ctx/copy/main.js': 'console.log(1)\n' });
    await chmod(path.join(work, 'ctx/copy'), 0o755);
    await chmod(path.join(work, 'ctx/other'), 0o755);
    expect(await hashOf(['copy'])).toBe(await hashOf(['other']));
    expect(await hashOf(['other/main.js'])).toBe(await hashOf(['app/main.js']));
    await writeFile(path.join(work, 'ctx/renamed.js'), 'console.log(1)\n');
    expect(await hashOf(['renamed.js'])).not.toBe(await hashOf(['app/main.js']));
  });

  it('depends on source order and excludes ignored files', async () => {
    expect(await hashOf(['app/main.js', 'app/run.sh'])).not.toBe(await hashOf(['app/run.sh', 'app/main.js']));
    const before = await hashOf(['app']);
    await writeFile(path.join(work, 'ctx/.dockerignore'), 'app/secret\n');
    await writeFile(path.join(work, 'ctx/app/secret'), 'pw');
    expect(await hashOf(['app'])).toBe(before);
  });

  it('is the same for a directory context and the tar of it', async () => {
    const tar = await makeTar([
      { name: 'app/', type: 'directory', mode: 0o755 },
      { name: 'app/main.js', content: 'console.log(1)\n', mode: 0o644 },
      { name: 'app/run.sh', content: '#!/bin/sh\n', mode: 0o755 },
    ]);
    await writeTree(work, { 'plain/app/main.js': 'console.log(1)\n', 'plain/app/run.sh': { content: '#!/bin/sh\n', mode: 0o755 } });
    await chmod(path.join(work, 'plain/app'), 0o755);
    await chmod(path.join(work, 'plain/app/main.js'), 0o644);
    const tmpDir = path.join(work, 'tmp');
    const ctx = await openContext('tar://stdin', { cwd: work, tmpDir, stdin: streamOf(tar) });
    try {
      expect(await hashSources(ctx, await resolveSources(ctx, ['app']))).toBe(await hashOf(['app'], 'plain'));
    } finally {
      await ctx.close();
    }
  });
});
