// The column-wise index table: values that do not fit a double (64-bit inodes, ns timestamps) must survive exactly.
import { describe, expect, it } from 'vitest';
import { diffIndexes, EntryTable, type IndexEntry } from '../../src/snapshot/index.js';

const base: IndexEntry = {
  path: 'f', type: 'file', mode: 0o4755, uid: 4_000_000_000, gid: 3_000_000, size: 2 ** 40 + 7,
  mtimeNs: 1_700_000_000_123_456_789n, ctimeNs: -1_500_000_001n, ino: 2n ** 63n + 5n, dev: 2n ** 40n + 3n, nlink: 2, rdev: 0,
};

const table = (...entries: IndexEntry[]): EntryTable => {
  const t = new EntryTable();
  for (const e of entries) t.set(e.path, e);
  return t;
};

describe('EntryTable', () => {
  it('gives back a 64-bit inode, ns times before and after 1970, and a symlink target exactly as set', () => {
    const link: IndexEntry = { ...base, path: 'l', type: 'symlink', size: 0, nlink: 1, linkTarget: '../f' };
    const t = table(base, link);
    expect(t.get('f')).toStrictEqual(base);
    expect(t.get('l')).toStrictEqual(link);
    expect([...t.keys()]).toEqual(['f', 'l']);
    expect(t.size).toBe(2);
  });

  it('a change of one nanosecond or in the low bits of a 64-bit inode is a modification', () => {
    const before = { root: '/r', hashContents: false, entries: table(base) };
    const ns = { root: '/r', hashContents: false, entries: table({ ...base, ctimeNs: base.ctimeNs + 1n }) };
    const ino = { root: '/r', hashContents: false, entries: table({ ...base, ino: base.ino + 1n }) };
    const same = { root: '/r', hashContents: false, entries: table({ ...base }) };
    expect(diffIndexes(before, ns).map((c) => c.kind)).toEqual(['modified']);
    expect(diffIndexes(before, ino).map((c) => c.kind)).toEqual(['modified']);
    expect(diffIndexes(before, same)).toEqual([]);
  });
});
