// Owns the metadata index of a root filesystem: one lstat per entry, walked with bounded concurrency.
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import type { Digest } from '../digest/index.js';
import { BuilderError } from '../errors.js';
import type { EntryType, IndexEntry, TreeIndex } from './entry.js';
import { EntryTable } from './entry-table.js';

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

/** Walks `starts` under `root` into `into` (see WalkMode); rejects with the first error or the signal's reason. */
export function walk(
  root: string,
  starts: readonly string[],
  opts: IndexOptions,
  into: Map<string, IndexEntry> | EntryTable,
  mode: WalkMode,
): Promise<void> {
  return new Promise<void>((resolve, reject) => new Walker(root, starts, opts, into, mode, resolve, reject).start());
}

/** One walk: a LIFO queue of lstat/readdir tasks run `concurrency` at a time, yielding every YIELD_EVERY tasks. */
class Walker {
  // A task returns true when it finished synchronously, false when it will call done() later (hashing).
  private readonly queue: Array<() => boolean> = [];
  private active = 0;
  private failed = false;
  private yielded = false;
  private readonly descend: boolean;
  private readonly limit: number;
  private readonly hash: boolean;

  constructor(
    private readonly root: string,
    private readonly starts: readonly string[],
    private readonly opts: IndexOptions,
    private readonly into: Map<string, IndexEntry> | EntryTable,
    private readonly mode: WalkMode,
    private readonly resolve: () => void,
    private readonly reject: (err: unknown) => void,
  ) {
    this.descend = mode !== 'stat';
    this.limit = Math.max(1, opts.concurrency ?? 64);
    this.hash = opts.hashContents === true;
  }

  start(): void {
    for (const start of this.starts) {
      if (this.mode === 'list') this.queue.push(() => this.readDir(start));
      else this.queue.push(() => this.statEntry(start));
    }
    this.pump();
  }

  private fail(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.reject(err);
  }

  private done(): void {
    this.active--;
    this.pump();
  }

  private readonly resume = (): void => {
    this.yielded = false;
    this.pump();
  };

  private pump(): void {
    if (this.failed || this.yielded) return;
    if (this.opts.signal?.aborted) return this.fail(cancelled(this.opts.signal));
    let budget = YIELD_EVERY;
    while (this.active < this.limit && this.queue.length > 0) {
      if (budget-- === 0) {
        this.yielded = true;
        setImmediate(this.resume);
        return;
      }
      this.active++;
      if (this.queue.pop()!()) this.active--; // LIFO: O(1) and keeps the pending list short (depth-first)
      if (this.failed) return;
    }
    if (this.active === 0 && this.queue.length === 0) this.resolve();
  }

  private readDir(rel: string): boolean {
    let names: string[];
    try {
      names = fs.readdirSync(hostPath(this.root, rel));
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      // A directory removed mid-walk is simply gone; a missing root would look like "delete everything".
      if (this.mode === 'list' && this.starts.includes(rel)) this.fail(rootError(this.root, rel, err));
      else if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') this.fail(walkError(this.root, rel, err));
      return true;
    }
    const exclude = this.opts.exclude;
    for (const name of names) {
      const child = rel === '' ? name : `${rel}/${name}`;
      if (exclude !== undefined && exclude(child)) continue;
      this.queue.push(() => this.statEntry(child));
    }
    return true;
  }

  private statEntry(rel: string): boolean {
    const p = hostPath(this.root, rel);
    let st: fs.BigIntStats | undefined;
    try {
      st = fs.lstatSync(p, { bigint: true, throwIfNoEntry: false });
    } catch (e) {
      this.fail(walkError(this.root, rel, e as NodeJS.ErrnoException));
      return true;
    }
    if (st === undefined) return true; // removed mid-walk
    const type = typeOf(st);
    if (type === 'dir') {
      this.put(rel, type, st);
      if (this.descend) this.queue.push(() => this.readDir(rel));
    } else if (type === 'symlink') {
      this.putSymlink(p, rel, st);
    } else if (type === 'file' && this.hash) {
      this.putHashed(p, rel, st);
      return false;
    } else {
      this.put(rel, type, st);
    }
    return true;
  }

  private putSymlink(p: string, rel: string, st: fs.BigIntStats): void {
    let target: string;
    try {
      target = fs.readlinkSync(p);
    } catch (e) {
      const lerr = e as NodeJS.ErrnoException;
      if (lerr.code !== 'ENOENT') this.fail(walkError(this.root, rel, lerr));
      return;
    }
    this.put(rel, 'symlink', st, { linkTarget: target });
  }

  /** Hashes the file, then stores it and calls done() (the task finishes later). */
  private putHashed(p: string, rel: string, st: fs.BigIntStats): void {
    hashFile(p).then(
      (contentHash) => {
        this.put(rel, 'file', st, { contentHash });
        this.done();
      },
      (herr: NodeJS.ErrnoException) => {
        if (herr.code !== 'ENOENT') this.fail(walkError(this.root, rel, herr));
        this.done();
      },
    );
  }

  // A table stores the stat's fields directly; a Map gets an IndexEntry object.
  private put(rel: string, type: EntryType, st: fs.BigIntStats, extra?: { linkTarget?: string; contentHash?: Digest }): void {
    if (this.into instanceof EntryTable) this.into.setStat(rel, type, st, extra);
    else this.into.set(rel, { ...entryOf(rel, type, st), ...extra });
  }
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
