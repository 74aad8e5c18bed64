// The shape of one indexed entry, below both the walker (index-tree.ts) and its compact storage (entry-table.ts).
import type { Digest } from '../digest/index.js';

/**
 * PATH CONVENTION (whole src/snapshot): entries are keyed by root-relative POSIX paths with no
 * leading "/" or "./" and no trailing "/", e.g. "etc/passwd" for the container path /etc/passwd.
 * The root itself is not an entry. These are also the tar entry names (directories get a "/").
 */
export type EntryType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

export interface IndexEntry {
  readonly path: string;
  readonly type: EntryType;
  /** Permission bits including setuid/setgid/sticky: st_mode & 0o7777. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  readonly ino: bigint;
  readonly dev: bigint;
  readonly nlink: number;
  /** Device number for char/block devices (0 otherwise). */
  readonly rdev: number;
  /** Symlink target as stored (not resolved). */
  readonly linkTarget?: string;
  /** sha256 of the content, regular files only, when indexed with hashContents. */
  readonly contentHash?: Digest;
  /** Extended attributes if a caller knows them (the walker cannot read xattrs: Node has no API). */
  readonly xattrs?: Readonly<Record<string, Buffer>>;
}

export interface TreeIndex {
  /** Host directory that was indexed. */
  readonly root: string;
  readonly entries: ReadonlyMap<string, IndexEntry>;
  /** True when contentHash was computed for regular files (--snapshot-mode full). */
  readonly hashContents: boolean;
}
