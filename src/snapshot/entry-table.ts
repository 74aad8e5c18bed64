// Owns the compact storage of a tree index: one row of typed-array columns per entry instead of an object with BigInts.
import type { BigIntStats } from 'node:fs';
import type { Digest } from '../digest/index.js';
import type { EntryType, IndexEntry } from './entry.js';

const TYPES: readonly EntryType[] = ['file', 'dir', 'symlink', 'char', 'block', 'fifo', 'socket'];
const TYPE_CODE = new Map(TYPES.map((t, i) => [t, i]));
const NS = 1_000_000_000n;
const U32 = 0xffffffffn;

/** What an entry carries besides its stat fields; rare (symlinks, full mode, xattrs), so kept aside. */
interface Extra {
  linkTarget?: string;
  contentHash?: Digest;
  xattrs?: Readonly<Record<string, Buffer>>;
}

/**
 * The entries of a TreeIndex as a ReadonlyMap, stored as rows of typed arrays: 72 bytes plus the path and its map
 * slot, ≈ 235 bytes per entry where a Map of IndexEntry objects with four BigInts takes ≈ 370 (/usr/lib, 72,167 entries).
 * get() and iteration build a fresh IndexEntry each time; diffTables compares rows without building any.
 * Times are kept as seconds + nanoseconds and ino/dev as two 32-bit halves, so every value is exact.
 */
export class EntryTable implements ReadonlyMap<string, IndexEntry> {
  private readonly slots = new Map<string, number>();
  private paths: string[] = [];
  private rows = 0;
  // Rows live in fixed blocks: growing never copies, and no outgrown arrays wait for GC as external memory.
  private readonly blocks: Block[] = [];
  private readonly extras = new Map<number, Extra>();

  get size(): number {
    return this.slots.size;
  }

  /** Adds or replaces `path` from an lstat result (the walker's path: no IndexEntry object is made). */
  setStat(path: string, type: EntryType, st: BigIntStats, extra?: Extra): void {
    const i = this.slotFor(path);
    const b = this.blocks[i >>> BLOCK_BITS]!;
    const r = i & BLOCK_MASK;
    b.u32[r * U + TM] = (TYPE_CODE.get(type)! << 16) | Number(st.mode & 0o7777n);
    b.u32[r * U + UID] = Number(st.uid);
    b.u32[r * U + GID] = Number(st.gid);
    b.u32[r * U + NLINK] = Number(st.nlink);
    b.f64[r * F + SIZE] = type === 'file' ? Number(st.size) : 0;
    b.f64[r * F + RDEV] = type === 'char' || type === 'block' ? Number(st.rdev) : 0;
    putTimes(b, r, st.mtimeNs, st.ctimeNs);
    putIds(b, r, st.ino, st.dev);
    this.putExtra(i, extra);
  }

  /** Adds or replaces `path` with `e`'s values. */
  set(path: string, e: IndexEntry): this {
    const i = this.slotFor(path);
    const b = this.blocks[i >>> BLOCK_BITS]!;
    const r = i & BLOCK_MASK;
    b.u32[r * U + TM] = (TYPE_CODE.get(e.type)! << 16) | e.mode;
    b.u32[r * U + UID] = e.uid;
    b.u32[r * U + GID] = e.gid;
    b.u32[r * U + NLINK] = e.nlink;
    b.f64[r * F + SIZE] = e.size;
    b.f64[r * F + RDEV] = e.rdev;
    putTimes(b, r, e.mtimeNs, e.ctimeNs);
    putIds(b, r, e.ino, e.dev);
    const extra: Extra = {};
    if (e.linkTarget !== undefined) extra.linkTarget = e.linkTarget;
    if (e.contentHash !== undefined) extra.contentHash = e.contentHash;
    if (e.xattrs !== undefined) extra.xattrs = e.xattrs;
    this.putExtra(i, extra);
    return this;
  }

  get(path: string): IndexEntry | undefined {
    const i = this.slots.get(path);
    return i === undefined ? undefined : this.entryAt(i);
  }

  has(path: string): boolean {
    return this.slots.has(path);
  }

  /** The type of `path`, without building its entry. */
  typeOf(path: string): EntryType | undefined {
    const i = this.slots.get(path);
    return i === undefined ? undefined : this.typeAt(i);
  }

  forEach(cb: (value: IndexEntry, key: string, map: ReadonlyMap<string, IndexEntry>) => void, thisArg?: unknown): void {
    for (const [k, i] of this.slots) cb.call(thisArg, this.entryAt(i), k, this);
  }

  *entries(): MapIterator<[string, IndexEntry]> {
    for (const [k, i] of this.slots) yield [k, this.entryAt(i)];
  }

  keys(): MapIterator<string> {
    return this.slots.keys();
  }

  *values(): MapIterator<IndexEntry> {
    for (const i of this.slots.values()) yield this.entryAt(i);
  }

  [Symbol.iterator](): MapIterator<[string, IndexEntry]> {
    return this.entries();
  }

  /** Rows in insertion order: [path, row]. */
  rowsOf(): MapIterator<[string, number]> {
    return this.slots.entries();
  }

  rowOf(path: string): number | undefined {
    return this.slots.get(path);
  }

  typeAt(i: number): EntryType {
    return TYPES[this.blocks[i >>> BLOCK_BITS]!.u32[(i & BLOCK_MASK) * U + TM]! >>> 16]!;
  }

  entryAt(i: number): IndexEntry {
    const b = this.blocks[i >>> BLOCK_BITS]!;
    const r = i & BLOCK_MASK;
    const u = r * U;
    const f = r * F;
    const e: {
      -readonly [K in keyof IndexEntry]: IndexEntry[K];
    } = {
      path: this.paths[i]!,
      type: TYPES[b.u32[u + TM]! >>> 16]!,
      mode: b.u32[u + TM]! & 0xffff,
      uid: b.u32[u + UID]!,
      gid: b.u32[u + GID]!,
      size: b.f64[f + SIZE]!,
      mtimeNs: BigInt(b.f64[f + MTIME_S]!) * NS + BigInt(b.i32[r * I + MTIME_N]!),
      ctimeNs: BigInt(b.f64[f + CTIME_S]!) * NS + BigInt(b.i32[r * I + CTIME_N]!),
      ino: (BigInt(b.u32[u + INO_HI]!) << 32n) | BigInt(b.u32[u + INO_LO]!),
      dev: (BigInt(b.u32[u + DEV_HI]!) << 32n) | BigInt(b.u32[u + DEV_LO]!),
      nlink: b.u32[u + NLINK]!,
      rdev: b.f64[f + RDEV]!,
    };
    const x = this.extras.get(i);
    if (x !== undefined) {
      if (x.linkTarget !== undefined) e.linkTarget = x.linkTarget;
      if (x.contentHash !== undefined) e.contentHash = x.contentHash;
      if (x.xattrs !== undefined) e.xattrs = x.xattrs;
    }
    return e;
  }

  /** Whether row i of a and row j of b differ in what diffIndexes compares (see differs in diff.ts). */
  static differs(a: EntryTable, i: number, b: EntryTable, j: number): boolean {
    const x = a.blocks[i >>> BLOCK_BITS]!;
    const y = b.blocks[j >>> BLOCK_BITS]!;
    const r = i & BLOCK_MASK;
    const q = j & BLOCK_MASK;
    if (
      (x.u32[r * U + TM]! & 0xffff) !== (y.u32[q * U + TM]! & 0xffff) ||
      x.u32[r * U + UID] !== y.u32[q * U + UID] ||
      x.u32[r * U + GID] !== y.u32[q * U + GID] ||
      x.u32[r * U + INO_HI] !== y.u32[q * U + INO_HI] ||
      x.u32[r * U + INO_LO] !== y.u32[q * U + INO_LO] ||
      x.f64[r * F + SIZE] !== y.f64[q * F + SIZE] ||
      x.f64[r * F + MTIME_S] !== y.f64[q * F + MTIME_S] ||
      x.f64[r * F + CTIME_S] !== y.f64[q * F + CTIME_S] ||
      x.f64[r * F + RDEV] !== y.f64[q * F + RDEV] ||
      x.i32[r * I + MTIME_N] !== y.i32[q * I + MTIME_N] ||
      x.i32[r * I + CTIME_N] !== y.i32[q * I + CTIME_N]
    ) {
      return true;
    }
    const ex = a.extras.get(i);
    const ey = b.extras.get(j);
    if (ex === undefined && ey === undefined) return false;
    if (ex?.linkTarget !== ey?.linkTarget) return true;
    const hx = ex?.contentHash;
    const hy = ey?.contentHash;
    return hx !== undefined && hy !== undefined && hx !== hy;
  }

  /** A copy without the paths `drop` names and with `over`'s rows on top: rows are copied as they are, no entry is built. */
  merged(drop: (path: string) => boolean, over: EntryTable): EntryTable {
    const out = new EntryTable();
    for (const [path, i] of this.slots) if (!drop(path) && !over.slots.has(path)) out.copyRow(this, i, path);
    for (const [path, i] of over.slots) out.copyRow(over, i, path);
    return out;
  }

  private copyRow(from: EntryTable, i: number, path: string): void {
    const j = this.slotFor(path);
    const x = from.blocks[i >>> BLOCK_BITS]!;
    const y = this.blocks[j >>> BLOCK_BITS]!;
    const r = i & BLOCK_MASK;
    const q = j & BLOCK_MASK;
    y.u32.set(x.u32.subarray(r * U, r * U + U), q * U);
    y.f64.set(x.f64.subarray(r * F, r * F + F), q * F);
    y.i32.set(x.i32.subarray(r * I, r * I + I), q * I);
    this.putExtra(j, from.extras.get(i));
  }

  private slotFor(path: string): number {
    const known = this.slots.get(path);
    if (known !== undefined) return known;
    const i = this.rows++;
    if ((i & BLOCK_MASK) === 0) this.blocks.push(new Block());
    this.slots.set(path, i);
    this.paths[i] = path;
    return i;
  }

  private putExtra(i: number, extra: Extra | undefined): void {
    if (extra === undefined || (extra.linkTarget === undefined && extra.contentHash === undefined && extra.xattrs === undefined)) {
      this.extras.delete(i);
    } else {
      this.extras.set(i, extra);
    }
  }
}

// Row layout inside a block: 8 uint32, 4 float64 and 2 int32 per row (72 bytes).
const BLOCK_BITS = 12;
const BLOCK_ROWS = 1 << BLOCK_BITS;
const BLOCK_MASK = BLOCK_ROWS - 1;
const U = 8;
const TM = 0; // type << 16 | mode
const UID = 1;
const GID = 2;
const NLINK = 3;
const INO_HI = 4;
const INO_LO = 5;
const DEV_HI = 6;
const DEV_LO = 7;
const F = 4;
const SIZE = 0;
const RDEV = 1;
const MTIME_S = 2;
const CTIME_S = 3;
const I = 2;
const MTIME_N = 0;
const CTIME_N = 1;

class Block {
  readonly u32 = new Uint32Array(BLOCK_ROWS * U);
  readonly f64 = new Float64Array(BLOCK_ROWS * F);
  readonly i32 = new Int32Array(BLOCK_ROWS * I);
}

function putTimes(b: Block, r: number, mtimeNs: bigint, ctimeNs: bigint): void {
  b.f64[r * F + MTIME_S] = Number(mtimeNs / NS);
  b.i32[r * I + MTIME_N] = Number(mtimeNs % NS);
  b.f64[r * F + CTIME_S] = Number(ctimeNs / NS);
  b.i32[r * I + CTIME_N] = Number(ctimeNs % NS);
}

function putIds(b: Block, r: number, ino: bigint, dev: bigint): void {
  b.u32[r * U + INO_HI] = Number((ino >> 32n) & U32);
  b.u32[r * U + INO_LO] = Number(ino & U32);
  b.u32[r * U + DEV_HI] = Number((dev >> 32n) & U32);
  b.u32[r * U + DEV_LO] = Number(dev & U32);
}
