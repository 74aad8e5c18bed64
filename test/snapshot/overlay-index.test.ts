// indexFromUpper on a real overlay mount: after every kind of change a step can make, the index it builds from the
// upper layer equals a walk of the whole merged root, and so does the diff against the index before.
import { execFileSync } from 'node:child_process';
import { chmodSync, linkSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffIndexes, indexFromUpper, indexTree, type TreeIndex } from '../../src/snapshot/index.js';

const rows = (ix: TreeIndex): Array<[string, unknown]> => [...ix.entries].map(([p, e]) => [p, e] as [string, unknown]).sort((a, b) => (a[0] < b[0] ? -1 : 1));

describe('indexFromUpper (overlay upper layer) against a walk of the whole root', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'builder-overlay-index-'));
  const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((d) => path.join(dir, d)) as [string, string, string, string];
  const m = (rel: string): string => path.join(merged, rel);

  beforeAll(() => {
    for (const d of [lower, upper, work, merged]) mkdirSync(d);
    // the lower layer: files, nested dirs, a symlink, a hard link, an excluded dir
    for (const d of ['etc', 'usr/lib/deep/er', 'var/cache', 'opt/gone/sub', 'home', 'proc']) mkdirSync(path.join(lower, d), { recursive: true });
    for (const f of ['etc/passwd', 'etc/hosts', 'usr/lib/a.so', 'usr/lib/deep/er/f', 'var/cache/x', 'opt/gone/sub/y', 'home/keep', 'proc/not-indexed']) {
      writeFileSync(path.join(lower, f), `${f}\n`);
    }
    symlinkSync('a.so', path.join(lower, 'usr/lib/link.so'));
    linkSync(path.join(lower, 'home/keep'), path.join(lower, 'home/keep-link'));
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged]);
  });
  afterAll(() => {
    try {
      execFileSync('umount', [merged]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const opts = { exclude: (rel: string) => rel === 'proc' };
  let before: TreeIndex;

  const check = async (): Promise<void> => {
    const fromUpper = await indexFromUpper(merged, upper, before, opts);
    const walked = await indexTree(merged, opts);
    expect(fromUpper).toBeDefined();
    expect(rows(fromUpper!)).toEqual(rows(walked));
    expect(diffIndexes(before, fromUpper!)).toEqual(diffIndexes(before, walked));
    before = fromUpper!;
  };

  it('writes, chmod, deletes of files and whole lower trees, a new nested tree', async () => {
    before = await indexTree(merged, opts);
    writeFileSync(m('etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
    chmodSync(m('etc/hosts'), 0o600);
    unlinkSync(m('var/cache/x'));
    rmSync(m('opt/gone'), { recursive: true });
    mkdirSync(m('srv/new/a/b'), { recursive: true });
    writeFileSync(m('srv/new/a/b/c'), 'c\n');
    writeFileSync(m('proc/ignored'), 'x\n');
    await check();
  });

  it('a lower directory deleted and made again (opaque), renames, hard links, type swaps, symlink and times', async () => {
    rmSync(m('usr/lib/deep'), { recursive: true });
    mkdirSync(m('usr/lib/deep'));
    writeFileSync(m('usr/lib/deep/only-new'), 'n\n');
    renameSync(m('home/keep'), m('home/moved'));
    linkSync(m('etc/hosts'), m('etc/hosts-link'));
    rmSync(m('usr/lib/a.so'));
    mkdirSync(m('usr/lib/a.so'));
    rmSync(m('srv/new/a'), { recursive: true });
    writeFileSync(m('srv/new/a'), 'now a file\n');
    unlinkSync(m('usr/lib/link.so'));
    symlinkSync('elsewhere', m('usr/lib/link.so'));
    utimesSync(m('etc'), new Date(1_000_000_000_000), new Date(1_000_000_000_000));
    await check();
  });

  it('nothing changed: the same index, no changes', async () => {
    const same = before;
    await check();
    expect(diffIndexes(same, before)).toEqual([]);
  });
});
