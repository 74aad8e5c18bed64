// Owns the metadata index of a root filesystem: one lstat per entry, walked with bounded concurrency.
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import type { Digest } from '../digest/index.js';
import { BuilderError } from '../errors.js';
import { EntryTable } from './entry-table.js';

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

export interface IndexOptions {
  /** Return true to skip an entry and its whole subtree (e.g. "proc", "sys", "dev", mount points). */
  exclude?: (relPath: string) => boolean;
  /** Hash regular file contents (--snapshot-mode full); slow, reads every byte. */
  hashContents?: boolean;
  /** Files being hashed at once in full mode (default 64); lstat, readdir and readlink run synchronously. */
  concurrency?: number;
  /** Stops the walk (a cancelled build): it rejects with the signal's reason (see cancelled()). */
  signal?: AbortSignal;
}

/** The error for a walk or layer stopped by `signal`: its reason when a BuilderError, else BUILD_ABORTED. */
export function cancelled(signal: AbortSignal): BuilderError {
  return signal.reason instanceof BuilderError
    ? signal.reason
    : new BuilderError('BUILD_ABORTED', 'snapshot stopped: the build was aborted', { hint: 'see the first error reported' });
}

/** Indexes every entry under `root` (root itself excluded). */
export async function indexTree(root: string, opts: IndexOptions = {}): Promise<TreeIndex> {
  const entries = new EntryTable();
  await walk(root, [''], opts, entries, 'list');
  return { root, entries, hashContents: opts.hashContents === true };
}

/** Host path of a root-relative path. */
export function hostPath(root: string, rel: string): string {
  if (rel === '') return root;
  return root.endsWith('/') ? root + rel : `${root}/${rel}`;
}

/** Validates and normalizes a caller-supplied path into the convention ("/a/./b/" -> "a/b"). */
export function normalizeRelPath(p: string): string {
  const parts: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      throw new BuilderError('SNAPSHOT_PATH_INVALID', `snapshot path "${p}" contains "..": it could point outside the root`, {
        hint: 'pass paths relative to the build root without ".." components',
      });
    }
    parts.push(part);
  }
  return parts.join('/');
}

export function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/**
 * How `walk` treats its start paths: 'list' lists them as directories (the root, not itself
 * indexed); 'stat' lstats just them; 'stat-tree' lstats them and descends into directories.
 * Paths that vanish mid-walk are skipped (callers that need them check the result).
 */
export type WalkMode = 'list' | 'stat' | 'stat-tree';

// Sync lstat/readdir/readlink cost ≈ 1/3 of the CPU of their async forms on a tree in the page cache (no thread-pool
// round trip per entry); the walk yields to the event loop after this many of them so timers, I/O and aborts still run.
const YIELD_EVERY = 256;

export function walk(
  root: string,
  starts: readonly string[],
  opts: IndexOptions,
  into: Map<string, IndexEntry> | EntryTable,
  mode: WalkMode,
): Promise<void> {
  const descend = mode !== 'stat';
  const limit = Math.max(1, opts.concurrency ?? 64);
  const exclude = opts.exclude;
  const hash = opts.hashContents === true;
  return new Promise<void>((resolve, reject) => {
    // A task returns true when it finished synchronously, false when it will call done() later (hashing).
    const queue: Array<() => boolean> = [];
    let active = 0;
    let failed = false;
    let yielded = false;

    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
      reject(err);
    };
    const done = (): void => {
      active--;
      pump();
    };
    const resume = (): void => {
      yielded = false;
      pump();
    };
    const pump = (): void => {
      if (failed || yielded) return;
      if (opts.signal?.aborted) return fail(cancelled(opts.signal));
      let budget = YIELD_EVERY;
      while (active < limit && queue.length > 0) {
        if (budget-- === 0) {
          yielded = true;
          setImmediate(resume);
          return;
        }
        active++;
        if (queue.pop()!()) active--; // LIFO: O(1) and keeps the pending list short (depth-first)
        if (failed) return;
      }
      if (active === 0 && queue.length === 0) resolve();
    };

    const readDir = (rel: string): boolean => {
      let names: string[];
      try {
        names = fs.readdirSync(hostPath(root, rel));
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        // A directory removed mid-walk is simply gone; a missing root would look like "delete everything".
        if (mode === 'list' && starts.includes(rel)) fail(rootError(root, rel, err));
        else if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') fail(walkError(root, rel, err));
        return true;
      }
      for (const name of names) {
        const child = rel === '' ? name : `${rel}/${name}`;
        if (exclude !== undefined && exclude(child)) continue;
        queue.push(() => statEntry(child));
      }
      return true;
    };

    const statEntry = (rel: string): boolean => {
      const p = hostPath(root, rel);
      let st: fs.BigIntStats | undefined;
      try {
        st = fs.lstatSync(p, { bigint: true, throwIfNoEntry: false });
      } catch (e) {
        fail(walkError(root, rel, e as NodeJS.ErrnoException));
        return true;
      }
      if (st === undefined) return true; // removed mid-walk
      const type = typeOf(st);
      // A table stores the stat's fields directly; a Map gets an IndexEntry object.
      const put = (extra?: { linkTarget?: string; contentHash?: Digest }): void => {
        if (into instanceof EntryTable) into.setStat(rel, type, st, extra);
        else into.set(rel, { ...entryOf(rel, type, st), ...extra });
      };
      if (type === 'dir') {
        put();
        if (descend) queue.push(() => readDir(rel));
      } else if (type === 'symlink') {
        let target: string;
        try {
          target = fs.readlinkSync(p);
        } catch (e) {
          const lerr = e as NodeJS.ErrnoException;
          if (lerr.code !== 'ENOENT') fail(walkError(root, rel, lerr));
          return true;
        }
        put({ linkTarget: target });
      } else if (type === 'file' && hash) {
        hashFile(p).then(
          (contentHash) => {
            put({ contentHash });
            done();
          },
          (herr: NodeJS.ErrnoException) => {
            if (herr.code !== 'ENOENT') fail(walkError(root, rel, herr));
            done();
          },
        );
        return false;
      } else {
        put();
      }
      return true;
    };

    for (const start of starts) {
      if (mode === 'list') queue.push(() => readDir(start));
      else queue.push(() => statEntry(start));
    }
    pump();
  });
}

function entryOf(rel: string, type: EntryType, st: fs.BigIntStats): IndexEntry {
  return {
    path: rel,
    type,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: type === 'file' ? Number(st.size) : 0,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
    ino: st.ino,
    dev: st.dev,
    nlink: Number(st.nlink),
    rdev: type === 'char' || type === 'block' ? Number(st.rdev) : 0,
  };
}

function typeOf(st: fs.BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

/** Streams a file through sha256 so memory stays flat whatever its size. */
function hashFile(p: string): Promise<Digest> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    const s = fs.createReadStream(p, { highWaterMark: 1 << 20 });
    s.on('data', (c) => h.update(c));
    s.on('error', reject);
    s.on('end', () => resolve(`sha256:${h.digest('hex')}`));
  });
}

function rootError(root: string, rel: string, err: NodeJS.ErrnoException): BuilderError {
  return new BuilderError('SNAPSHOT_ROOT_MISSING', `cannot index ${hostPath(root, rel)}: ${err.code ?? err.message}`, {
    hint: 'the build root must be an existing, readable directory',
    cause: err,
  });
}

function walkError(root: string, rel: string, err: NodeJS.ErrnoException): BuilderError {
  return new BuilderError('SNAPSHOT_WALK_FAILED', `cannot index ${hostPath(root, rel)}: ${err.code ?? err.message}`, {
    hint: 'the builder must be able to read every file under the build root (run as root, or exclude the path)',
    cause: err,
  });
}
