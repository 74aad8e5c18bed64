// Owns writing a layer: deterministic tar entries from the root, in one pass through TarOutput (hashes, compression, file).
import * as fs from 'node:fs';
import { BuilderError, isBuilderError } from '../errors.js';
import { comparePaths, type LayerEntry } from './diff.js';
import type { IndexEntry } from './entry.js';
import { cancelled, hostPath, normalizeRelPath, parentOf, walk, type IndexOptions } from './index-tree.js';
import { checkCompressionLevel, DEFAULT_COMPRESSION_LEVEL, DEFAULT_ZSTD_LEVEL, type LayerCompression } from './compress.js';
import { TypeFlag, padding, type TarHeader } from './tar-header.js';
import { TarOutput, type LayerResult } from './tar-output.js';

export interface WriteLayerOptions {
  /**
   * gzip level 0-9 (zstd: 1-19, default 3). gzip default 1: kaniko leaves go-containerregistry's default
   * (gzip.BestSpeed) unless --compression-level is given, so 1 keeps kaniko's speed/size trade-off.
   */
  compressionLevel?: number;
  /** gzip (default: parallel chunks, see compress.ts) or zstd (the zstd program; default level 3). */
  compression?: LayerCompression;
  /** false writes an uncompressed tar (digest === diffId), whatever `compression` says. Default true. */
  gzip?: boolean;
  /** The zstd program (the CLI's Host.zstd); absent: one in the standard dirs. */
  zstd?: string;
  /** --reproducible / SOURCE_DATE_EPOCH: timestamp applied to every entry (seconds precision). */
  mtime?: Date;
  /** 'override' (default, kaniko --reproducible) sets every mtime; 'clamp' (BuildKit) only lowers newer ones. */
  mtimeMode?: 'override' | 'clamp';
  /** Stops writing (a cancelled build): rejects with the signal's reason; the partial file is the caller's to remove. */
  signal?: AbortSignal;
  /** Uncompressed tar bytes written so far and the content bytes expected (file sizes), once per output chunk. */
  onProgress?: (bytes: number, total: number) => void;
  /** Each entry as it goes into the layer, in order (the SBOM reads a built layer from these, not from its blob). */
  onEntry?: (e: WrittenEntry) => void;
}

/** An entry of a written layer: its name in the tar (no trailing "/") and what it is there. */
export interface WrittenEntry {
  name: string;
  type: 'file' | 'dir' | 'whiteout' | 'other';
  mode: number;
  size: number;
}

export { DEFAULT_COMPRESSION_LEVEL };

// Files up to this size are read ahead concurrently into their own buffers; bigger ones stream.
const SMALL_FILE_MAX = 256 << 10;
const READ_AHEAD_FILES = 64;
const READ_AHEAD_BYTES = 8 << 20;
const SMALL_CLASS = 16 << 10;

interface Item {
  /** Tar name without the trailing "/" of directories (sort key). */
  name: string;
  kind: 'entry' | 'whiteout';
  meta: IndexEntry | undefined;
  /** For entries in this layer that are a later name of an earlier inode: that earlier tar name. */
  hardlinkTo?: string;
}

/**
 * Writes `entries` from `root` as a layer tar to `outFile` (created/truncated) and returns its digests.
 * Entries are deduplicated, completed with missing parent directories (lstat'ed), and written in
 * comparePaths order. Sockets are skipped. Whiteouts are `.wh.<name>` empty regular files, mode 0,
 * owned by 0:0. No opaque-dir markers are written: a deleted-and-recreated directory gets a
 * whiteout per deleted child instead, which every extractor applies the same way.
 */
export async function writeLayer(
  root: string,
  entries: readonly LayerEntry[],
  outFile: string,
  opts: WriteLayerOptions = {},
): Promise<LayerResult> {
  const compression = opts.compression ?? 'gzip';
  const level = opts.compressionLevel ?? (compression === 'zstd' ? DEFAULT_ZSTD_LEVEL : DEFAULT_COMPRESSION_LEVEL);
  checkCompressionLevel(compression, level);
  const items = await planItems(root, entries);
  const expected = opts.onProgress ? items.reduce((n, it) => n + (isContentFile(it) ? it.meta!.size : 0), 0) : 0;
  const out = new TarOutput(outFile, opts.gzip !== false ? { compression, level, zstd: opts.zstd } : undefined, opts.onProgress, expected);
  const readAhead = new ReadAhead(root, items.filter((it) => isContentFile(it) && it.meta!.size <= SMALL_FILE_MAX));
  try {
    await writeItems(root, items, out, readAhead, opts);
    return await out.end();
  } catch (err) {
    readAhead.abandon();
    await out.abort();
    if (isBuilderError(err)) throw err;
    throw new BuilderError('SNAPSHOT_WRITE_FAILED', `writing layer ${outFile}: ${(err as Error).message}`, {
      hint: 'check free space and permissions of the layer directory',
      cause: err,
    });
  }
}

/** Puts each item's header and content into `out`, in order. */
async function writeItems(root: string, items: readonly Item[], out: TarOutput, readAhead: ReadAhead, opts: WriteLayerOptions): Promise<void> {
  const fixedMtime = opts.mtime === undefined ? undefined : Math.floor(opts.mtime.getTime() / 1000);
  const clamp = opts.mtimeMode === 'clamp';
  let smallIndex = 0;
  for (const it of items) {
    if (opts.signal?.aborted) throw cancelled(opts.signal);
    const h = headerOf(it, fixedMtime, clamp);
    if (h === undefined) continue;
    opts.onEntry?.(writtenEntry(it, h));
    await out.putHeader(h);
    if (h.size === 0) continue;
    const pad = padding(h.size);
    if (h.size <= SMALL_FILE_MAX) {
      const content = await readAhead.take(smallIndex++);
      await out.reserve(content.length + pad);
      out.put(content, pad);
    } else {
      await streamFile(root, it.name, h.size, out);
      await out.reserve(pad);
      out.zeros(pad);
    }
  }
}

function writtenEntry(it: Item, h: TarHeader): WrittenEntry {
  const type = it.kind === 'whiteout' ? 'whiteout' : h.type === TypeFlag.File ? 'file' : h.type === TypeFlag.Dir ? 'dir' : 'other';
  return { name: it.name, type, mode: h.mode, size: h.size };
}

/**
 * The tar header of an item (size 0 unless its content follows), or undefined for what a layer skips (sockets).
 * `fixedMtime` (--reproducible, seconds) replaces every mtime, or with `clamp` only lowers newer ones.
 */
function headerOf(it: Item, fixedMtime: number | undefined, clamp: boolean): TarHeader | undefined {
  if (it.kind === 'whiteout') return { name: it.name, mode: 0, uid: 0, gid: 0, size: 0, mtime: fixedMtime ?? 0, type: TypeFlag.File };
  const m = it.meta!;
  if (m.type === 'socket') return undefined;
  const own = Number(m.mtimeNs / 1_000_000_000n);
  const mtime = fixedMtime === undefined ? own : clamp ? Math.min(own, fixedMtime) : fixedMtime;
  const h: TarHeader = { name: it.name, mode: m.mode, uid: m.uid, gid: m.gid, size: 0, mtime, type: TypeFlag.File };
  if (m.xattrs !== undefined) h.xattrs = m.xattrs;
  switch (m.type) {
    case 'dir':
      h.name = `${it.name}/`;
      h.type = TypeFlag.Dir;
      break;
    case 'symlink':
      h.type = TypeFlag.Symlink;
      h.linkname = m.linkTarget ?? '';
      break;
    case 'char':
    case 'block':
      h.type = m.type === 'char' ? TypeFlag.Char : TypeFlag.Block;
      h.devmajor = devMajor(m.rdev);
      h.devminor = devMinor(m.rdev);
      break;
    case 'fifo':
      h.type = TypeFlag.Fifo;
      break;
    case 'file':
      if (it.hardlinkTo !== undefined) {
        h.type = TypeFlag.HardLink;
        h.linkname = it.hardlinkTo;
      } else {
        h.size = m.size;
      }
      break;
  }
  return h;
}

/**
 * Layer entries for paths a step is known to have touched (COPY, ADD, WORKDIR): each path, its
 * whole subtree when it is a directory (unless recursive: false), and its parent directories.
 * Paths follow the snapshot convention ("usr/bin/x"; a leading "/" is accepted). Missing paths fail.
 */
export async function entriesForPaths(
  root: string,
  paths: readonly string[],
  opts: { recursive?: boolean; exclude?: IndexOptions['exclude'] } = {},
): Promise<LayerEntry[]> {
  const starts = [...new Set(paths.map(normalizeRelPath))].filter((p) => p !== '');
  const found = new Map<string, IndexEntry>();
  const walkOpts: IndexOptions = opts.exclude === undefined ? {} : { exclude: opts.exclude };
  await walk(root, starts, walkOpts, found, opts.recursive === false ? 'stat' : 'stat-tree');
  for (const s of starts) {
    if (!found.has(s)) {
      throw new BuilderError('SNAPSHOT_PATH_MISSING', `cannot snapshot ${hostPath(root, s)}: it does not exist`, {
        hint: 'the step reported a path it did not create; this is a bug in the step, please report it',
      });
    }
  }
  const parents = new Set<string>();
  for (const s of starts) for (let p = parentOf(s); p !== '' && !found.has(p); p = parentOf(p)) parents.add(p);
  await walk(root, [...parents], {}, found, 'stat');
  return [...found.values()]
    .map((meta): LayerEntry => ({ kind: 'entry', path: meta.path, meta }))
    .sort((a, b) => comparePaths(a.path, b.path));
}

/** Dedupes, adds missing parents, sorts, and assigns hardlink targets. */
async function planItems(root: string, entries: readonly LayerEntry[]): Promise<Item[]> {
  const byName = new Map<string, Item>();
  const present = new Set<string>();
  for (const e of entries) {
    const path = normalizeRelPath(e.path);
    if (path === '') continue; // the root itself is never a layer entry
    if (e.kind === 'whiteout') {
      const parent = parentOf(path);
      const base = parent === '' ? path : path.slice(parent.length + 1);
      const name = parent === '' ? `.wh.${base}` : `${parent}/.wh.${base}`;
      byName.set(name, { name, kind: 'whiteout', meta: undefined });
    } else {
      byName.set(path, { name: path, kind: 'entry', meta: e.meta });
      present.add(path);
    }
  }
  // Entries without metadata and parents nobody listed are lstat'ed now.
  const toStat = new Set<string>();
  for (const it of byName.values()) {
    if (it.kind === 'entry' && it.meta === undefined) toStat.add(it.name);
    for (let p = parentOf(it.name); p !== '' && !present.has(p); p = parentOf(p)) {
      present.add(p);
      toStat.add(p);
    }
  }
  if (toStat.size > 0) {
    const stats = new Map<string, IndexEntry>();
    await walk(root, [...toStat], {}, stats, 'stat');
    for (const p of toStat) {
      const meta = stats.get(p);
      if (meta === undefined) {
        throw new BuilderError('SNAPSHOT_PATH_MISSING', `cannot snapshot ${hostPath(root, p)}: it does not exist`, {
          hint: 'the layer lists a path that is not in the build root; the step changed the tree while it was snapshotted',
        });
      }
      byName.set(p, { name: p, kind: 'entry', meta });
    }
  }
  const items = [...byName.values()].sort((a, b) => comparePaths(a.name, b.name));
  // The first name of an inode carries the content; later names in this layer become link entries.
  const firstName = new Map<string, string>();
  for (const it of items) {
    const m = it.meta;
    if (it.kind !== 'entry' || m === undefined || m.type !== 'file' || m.nlink < 2) continue;
    const key = `${m.dev}:${m.ino}`;
    const first = firstName.get(key);
    if (first === undefined) firstName.set(key, it.name);
    else it.hardlinkTo = first;
  }
  return items;
}

function isContentFile(it: Item): boolean {
  return it.kind === 'entry' && it.meta?.type === 'file' && it.hardlinkTo === undefined && it.meta.size > 0;
}

/** Reads small files ahead, in layer order, with a cap on files and bytes in flight. */
class ReadAhead {
  private next = 0;
  private bytesAhead = 0;
  private readonly pending = new Map<number, Promise<Buffer>>();
  // Pooled read buffers in two size classes: 20,000 one-off 5 KB buffers would each be a separate
  // external allocation that GC reclaims late, inflating RSS; reuse keeps it at READ_AHEAD_FILES.
  private readonly smallPool: Buffer[] = [];
  private readonly largePool: Buffer[] = [];
  private lent: Buffer | undefined;

  private acquire(size: number): Buffer {
    const pool = size <= SMALL_CLASS ? this.smallPool : this.largePool;
    return pool.pop() ?? Buffer.allocUnsafeSlow(size <= SMALL_CLASS ? SMALL_CLASS : SMALL_FILE_MAX);
  }

  private release(view: Buffer): void {
    const whole = Buffer.from(view.buffer, view.byteOffset, view.buffer.byteLength - view.byteOffset);
    (whole.length <= SMALL_CLASS ? this.smallPool : this.largePool).push(whole);
  }

  constructor(
    private readonly root: string,
    private readonly items: readonly Item[],
  ) {}

  /** The content of small file k (a view into a pooled buffer: valid until the next take). */
  async take(k: number): Promise<Buffer> {
    if (this.lent !== undefined) this.release(this.lent);
    this.lent = undefined;
    this.fill(k);
    const p = this.pending.get(k)!;
    this.pending.delete(k);
    const b = await p;
    this.bytesAhead -= b.length;
    this.lent = b;
    this.fill(k + 1);
    return b;
  }

  /** Pending reads finish on their own; their results are dropped. */
  abandon(): void {
    this.pending.clear();
    this.next = this.items.length;
  }

  private fill(k: number): void {
    while (this.next < this.items.length && (this.next <= k || (this.next - k < READ_AHEAD_FILES && this.bytesAhead < READ_AHEAD_BYTES))) {
      const it = this.items[this.next]!;
      const p = readSmallFile(this.root, it.name, it.meta!.size, this.acquire(it.meta!.size));
      p.catch(() => undefined); // a read nobody takes (after a failure) must not become an unhandled rejection
      this.pending.set(this.next, p);
      this.bytesAhead += it.meta!.size;
      this.next++;
    }
  }
}

// O_NOFOLLOW: an entry indexed as a regular file must not be read through a symlink swapped in later.
const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW;

/**
 * Reads exactly `size` bytes into the start of `into`; resolves with that view. Synchronous: for a small file in the
 * page cache open+read+close cost ≈ 1/3 of the CPU of three thread-pool round trips (≤ 64 files per read-ahead fill).
 */
function readSmallFile(root: string, rel: string, size: number, into: Buffer): Promise<Buffer> {
  let fd: number;
  try {
    fd = fs.openSync(hostPath(root, rel), OPEN_FLAGS);
  } catch (err) {
    return Promise.reject(readError(root, rel, err as NodeJS.ErrnoException));
  }
  const out = into.subarray(0, size);
  try {
    for (let off = 0; off < size; ) {
      const n = fs.readSync(fd, out, off, size - off, off);
      if (n === 0) return Promise.reject(changedError(root, rel, size, off));
      off += n;
    }
    return Promise.resolve(out);
  } catch (err) {
    return Promise.reject(readError(root, rel, err as NodeJS.ErrnoException));
  } finally {
    fs.closeSync(fd);
  }
}

/** Streams exactly `size` bytes of a file into `out`, a chunk at a time (never more than one chunk of it in memory). */
async function streamFile(root: string, rel: string, size: number, out: TarOutput): Promise<void> {
  let fd: number;
  try {
    fd = await new Promise<number>((res, rej) => fs.open(hostPath(root, rel), OPEN_FLAGS, (e, f) => (e ? rej(e) : res(f))));
  } catch (e) {
    throw readError(root, rel, e as NodeJS.ErrnoException);
  }
  try {
    let done = 0;
    while (done < size) {
      const want = Math.min(out.room(), size - done);
      if (want === 0) {
        await out.flush();
        continue;
      }
      // Only the read itself is a read error; a failed flush is the output's error and passes through.
      const n = await out.readFrom(fd, want).catch((e: NodeJS.ErrnoException) => {
        throw readError(root, rel, e);
      });
      if (n === 0) throw changedError(root, rel, size, done);
      done += n;
    }
  } finally {
    await new Promise<void>((res) => fs.close(fd, () => res()));
  }
}

/** Linux dev_t split (gnu_dev_major/minor), valid for the 32-bit values Node reports. */
function devMajor(rdev: number): number {
  return Number((BigInt(rdev) >> 8n) & 0xfffn) | Number((BigInt(rdev) >> 32n) & ~0xfffn);
}
function devMinor(rdev: number): number {
  return Number(BigInt(rdev) & 0xffn) | Number((BigInt(rdev) >> 12n) & 0xfff00n);
}

function readError(root: string, rel: string, err: NodeJS.ErrnoException): BuilderError {
  return new BuilderError('SNAPSHOT_READ_FAILED', `cannot read ${hostPath(root, rel)} for the layer: ${err.code ?? err.message}`, {
    hint: 'the builder must be able to read every changed file under the build root',
    cause: err,
  });
}

function changedError(root: string, rel: string, size: number, got: number): BuilderError {
  return new BuilderError('SNAPSHOT_FILE_CHANGED', `${hostPath(root, rel)} shrank while it was snapshotted (${got} of ${size} bytes)`, {
    hint: 'a process is still writing in the build root; make sure the step\'s background processes have exited',
  });
}
