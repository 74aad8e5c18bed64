// FileHashCache: a second hash of the same context only stats its files; any write (ctime) makes a file hashed again.
import { readFile, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileHashCache, hashSources, openContext, resolveSources } from '../../src/context/index.js';
import { tempDir, writeTree } from './helpers.js';

let work: string;
let cleanup: () => Promise<void>;
let cacheFile: string;
beforeEach(async () => {
  ({ dir: work, cleanup } = await tempDir('hash-cache-test-'));
  cacheFile = path.join(work, 'cache', 'hashes.json');
  await writeTree(work, { 'ctx/app/a.txt': 'aaaa\n', 'ctx/app/b.txt': 'bbbb\n' });
});
afterEach(async () => cleanup());

// Past the racy window, as if the files had been written long before the build.
const later = (): number => Date.now() + 10_000;

async function hashWith(cache?: FileHashCache): Promise<string> {
  const ctx = await openContext('ctx', { cwd: work, tmpDir: path.join(work, 'tmp') });
  const d = await hashSources(ctx, await resolveSources(ctx, ['app']), cache ? { fileHashes: cache } : {});
  await cache?.save();
  return d;
}

const storedEntries = async (): Promise<Record<string, string>> =>
  (JSON.parse(await readFile(cacheFile, 'utf8')) as { entries: Record<string, string> }).entries;

describe('FileHashCache', () => {
  it('with no cache file (a fresh machine) every file is hashed: the digest equals the uncached one', async () => {
    expect(await hashWith(await FileHashCache.open(cacheFile, { now: later }))).toBe(await hashWith());
    expect(Object.keys(await storedEntries())).toHaveLength(2);
  });

  it('a remembered file is not read again: its stored hash is what the digest uses', async () => {
    const honest = await hashWith(await FileHashCache.open(cacheFile, { now: later }));
    // Tamper with the stored hashes: a build that used them without reading the files gets a different digest.
    const entries = await storedEntries();
    for (const k of Object.keys(entries)) entries[k] = '0'.repeat(64);
    await writeFile(cacheFile, JSON.stringify({ format: 'builder-file-hashes-v2', entries }));
    expect(await hashWith(await FileHashCache.open(cacheFile, { now: later }))).not.toBe(honest);
  });

  it('a file rewritten to the same size and touched back to its old mtime is hashed again (its ctime changed)', async () => {
    const file = path.join(work, 'ctx/app/a.txt');
    const old = new Date('2020-01-01T00:00:00.123Z');
    await utimes(file, old, old);
    await hashWith(await FileHashCache.open(cacheFile, { now: later }));
    await new Promise((r) => setTimeout(r, 20)); // past one tick of the kernel's coarse clock
    const before = await stat(file, { bigint: true });
    await writeFile(file, 'AAAA\n');
    await utimes(file, old, old);
    const after = await stat(file, { bigint: true });
    expect([after.size, after.mtimeNs]).toEqual([before.size, before.mtimeNs]);
    expect(after.ctimeNs).not.toBe(before.ctimeNs);
    expect(await hashWith(await FileHashCache.open(cacheFile, { now: later }))).toBe(await hashWith());
  });

  it('a file changed within the racy window is hashed but not remembered', async () => {
    await hashWith(await FileHashCache.open(cacheFile));
    // Just written by writeTree: a write in the same clock tick could leave its stats unchanged.
    await expect(readFile(cacheFile, 'utf8')).rejects.toThrow();
  });

  it('a foreign or corrupt cache file counts as empty', async () => {
    await writeFile(path.join(work, 'cache.json'), '{not json');
    cacheFile = path.join(work, 'cache.json');
    expect(await hashWith(await FileHashCache.open(cacheFile, { now: later }))).toBe(await hashWith());
  });
});
