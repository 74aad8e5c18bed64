// A step's index after it ran on an overlay root, from the overlay's upper layer instead of a walk of the whole root:
// overlayfs copies every entry that is written, chmodded, renamed or deleted into the upper layer (a deletion copies up
// the parent directory and leaves a whiteout), so nothing outside it can differ from the index before. Its paths are
// statted again through the merged root (the values a full walk would read) and its directories listed again there,
// which finds what was deleted in them; every other row is copied from the index before.
import * as fs from 'node:fs';
import { EntryTable } from './entry-table.js';
import type { TreeIndex } from './entry.js';
import { hostPath, parentOf, walk, type IndexOptions } from './index-tree.js';

/** Every path in `upper` (relative, excluded subtrees left out) and which of them are directories there. */
function upperPaths(upper: string, exclude: IndexOptions['exclude']): { paths: string[]; dirs: string[] } {
  const paths: string[] = [];
  const dirs = [''];
  for (let k = 0; k < dirs.length; k++) {
    const rel = dirs[k]!;
    for (const d of fs.readdirSync(hostPath(upper, rel), { withFileTypes: true })) {
      const child = rel === '' ? d.name : `${rel}/${d.name}`;
      if (exclude?.(child)) continue;
      paths.push(child);
      if (d.isDirectory()) dirs.push(child);
    }
  }
  return { paths, dirs };
}

/** The index of `root` now, or undefined when `before` is not a table (the caller walks the whole root). */
export async function indexFromUpper(root: string, upper: string, before: TreeIndex, opts: IndexOptions): Promise<TreeIndex | undefined> {
  if (!(before.entries instanceof EntryTable)) return undefined;
  const { paths, dirs } = upperPaths(upper, opts.exclude);
  const fresh = new EntryTable();
  await walk(root, paths, opts, fresh, 'stat');
  // What each directory of the upper layer holds now in the merged root; a child it held before and not now is gone.
  const listed = new Map<string, Set<string>>();
  for (const d of dirs) {
    if (d !== '' && fresh.typeOf(d) !== 'dir') continue;
    try {
      listed.set(d, new Set(fs.readdirSync(hostPath(root, d))));
    } catch {
      listed.delete(d);
    }
  }
  const gone = (p: string): boolean => {
    // a row goes when an ancestor (or itself) is no longer listed by its directory, or is no longer a directory
    for (let cur = p, parent = parentOf(p); ; cur = parent, parent = parentOf(parent)) {
      const names = listed.get(parent);
      if (names !== undefined && !names.has(cur.slice(parent === '' ? 0 : parent.length + 1))) return true;
      if (cur !== p && fresh.has(cur) && fresh.typeOf(cur) !== 'dir') return true;
      if (parent === '') return false;
    }
  };
  return { root, entries: before.entries.merged(gone, fresh), hashContents: opts.hashContents === true };
}
