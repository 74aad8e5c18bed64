// Owns comparing two tree indexes into changes, and turning changes into layer entries with their parents.
import type { IndexEntry, TreeIndex } from './entry.js';
import { parentOf } from './index-tree.js';
import { EntryTable } from './entry-table.js';

export type Change =
  | { readonly kind: 'added'; readonly path: string; readonly entry: IndexEntry }
  | { readonly kind: 'modified'; readonly path: string; readonly entry: IndexEntry; readonly before: IndexEntry }
  /** Only the topmost deleted path: a deleted directory yields one change, not one per child. */
  | { readonly kind: 'deleted'; readonly path: string; readonly before: IndexEntry };

/**
 * What goes into a layer: a filesystem entry read from the root at write time (its metadata from
 * `meta` when given, else lstat), or a whiteout for a deleted path.
 */
export type LayerEntry =
  | { readonly kind: 'entry'; readonly path: string; readonly meta?: IndexEntry }
  | { readonly kind: 'whiteout'; readonly path: string };

/**
 * Changes from `before` to `after`, sorted in layer order (see comparePaths).
 * - added: path new in `after`, or its type changed (dir<->file: the new entry replaces the old on
 *   extraction, as containerd/BuildKit apply it; a new directory's contents are added too).
 * - modified: same type, any metadata differs (mode, uid, gid, size, mtime, ctime, inode, link
 *   target, device, and content hash when both indexes have one). ctime catches content rewrites
 *   that restore mtime and keep the size.
 * - deleted: gone from `after`, reported only where its parent is still a directory in `after`
 *   (a deleted dir -> one whiteout; children of a dir replaced by a file/symlink -> none).
 * Both indexes must be taken with the same `exclude`, or excluded paths look deleted.
 */
export function diffIndexes(before: TreeIndex, after: TreeIndex): Change[] {
  if (before.entries instanceof EntryTable && after.entries instanceof EntryTable) {
    return diffTables(before.entries, after.entries).sort((a, b) => comparePaths(a.path, b.path));
  }
  const changes: Change[] = [];
  for (const [path, entry] of after.entries) {
    const old = before.entries.get(path);
    if (old === undefined || old.type !== entry.type) changes.push({ kind: 'added', path, entry });
    else if (differs(old, entry)) changes.push({ kind: 'modified', path, entry, before: old });
  }
  for (const [path, old] of before.entries) {
    if (after.entries.has(path)) continue;
    const parent = parentOf(path);
    if (parent !== '' && after.entries.get(parent)?.type !== 'dir') continue;
    changes.push({ kind: 'deleted', path, before: old });
  }
  return changes.sort((a, b) => comparePaths(a.path, b.path));
}

/** diffIndexes on two tables: rows are compared in place, entries are built for changes only. */
function diffTables(before: EntryTable, after: EntryTable): Change[] {
  const changes: Change[] = [];
  for (const [path, j] of after.rowsOf()) {
    const i = before.rowOf(path);
    if (i === undefined || before.typeAt(i) !== after.typeAt(j)) changes.push({ kind: 'added', path, entry: after.entryAt(j) });
    else if (EntryTable.differs(before, i, after, j)) changes.push({ kind: 'modified', path, entry: after.entryAt(j), before: before.entryAt(i) });
  }
  for (const [path, i] of before.rowsOf()) {
    if (after.has(path)) continue;
    const parent = parentOf(path);
    if (parent !== '' && after.typeOf(parent) !== 'dir') continue;
    changes.push({ kind: 'deleted', path, before: before.entryAt(i) });
  }
  return changes;
}

/** A step whose diff is empty produces no layer (history gets empty_layer). */
export function isEmpty(changes: readonly Change[] | readonly LayerEntry[]): boolean {
  return changes.length === 0;
}

/**
 * Layer entries for changes: added/modified -> entry, deleted -> whiteout, plus every ancestor
 * directory (with its metadata from `after`) so extraction recreates parents with the right modes.
 */
export function toLayerEntries(changes: readonly Change[], after: TreeIndex): LayerEntry[] {
  const out = new Map<string, LayerEntry>();
  for (const c of changes) {
    out.set(c.kind === 'deleted' ? `\0wh:${c.path}` : c.path, c.kind === 'deleted'
      ? { kind: 'whiteout', path: c.path }
      : { kind: 'entry', path: c.path, meta: c.entry });
  }
  for (const c of changes) {
    for (let p = parentOf(c.path); p !== '' && !out.has(p); p = parentOf(p)) {
      const meta = after.entries.get(p);
      out.set(p, meta === undefined ? { kind: 'entry', path: p } : { kind: 'entry', path: p, meta });
    }
  }
  return [...out.values()].sort((a, b) => comparePaths(a.path, b.path));
}

function differs(a: IndexEntry, b: IndexEntry): boolean {
  return (
    a.mode !== b.mode ||
    a.uid !== b.uid ||
    a.gid !== b.gid ||
    a.size !== b.size ||
    a.mtimeNs !== b.mtimeNs ||
    a.ctimeNs !== b.ctimeNs ||
    a.ino !== b.ino ||
    a.rdev !== b.rdev ||
    a.linkTarget !== b.linkTarget ||
    (a.contentHash !== undefined && b.contentHash !== undefined && a.contentHash !== b.contentHash)
  );
}

/**
 * Layer order: component-wise byte order, so a directory's contents follow it contiguously
 * ("a", "a/b", "a-b"): '/' sorts before every other character. Parents always precede children.
 */
export function comparePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca === cb) continue;
    if (ca === 47) ca = -1;
    if (cb === 47) cb = -1;
    return ca - cb;
  }
  return a.length - b.length;
}
