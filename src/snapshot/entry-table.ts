// Owns the compact storage of a tree index: one row of typed-array columns per entry instead of an object with BigInts.
import type { BigIntStats } from 'node:fs';
import type { Digest } from '../digest/index.js';
import type { EntryType, IndexEntry } from './index-tree.js';

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
 * The entries of a TreeIndex as a ReadonlyMap, stored column-wise: ≈ 70 bytes of typed arrays plus the path per
 * entry, where an IndexEntry object with four BigInts takes ≈ 380 (a 40,000-entry root: 6 MB instead of 15).
 * get() and iteration build a fresh IndexEntry each time; diffTables compares rows without building any.
 * Times are kept as seconds + nanoseconds and ino/dev as two 32-bit halves, so every value is exact.
 */
export class EntryTable implements ReadonlyMap<string, IndexEntry> {
  private readonly slots = new Map<string, number>();
  private paths: string[] = [];
  private rows = 0;
  private cap = 0;
  private typeMode = new Uint32Array(0);
  private uid = new Uint32Array(0);
  private gid = new Uint32Array(0);
  private nlink = new Uint32Array(0);
  private bytes = new Float64Array(0);
  private rdev = new Float64Array(0);
  private mtimeS = new Float64Array(0);
  private ctimeS = new Float64Array(0);
  private mtimeN = new Int32Array(0);
  private ctimeN = new Int32Array(0);
  private ino = new Uint32Array(0); // hi, lo
  private dev = new Uint32Array(0); // hi, lo
  private readonly extras = new Map<number, Extra>();

  get size(): number {
    return this.slots.size;
  }

  /** Adds or replaces `path` from an lstat result (the walker's path: no IndexEntry object is made). */
  setStat(path: string, type: EntryType, st: BigIntStats, extra?: Extra): void {
    const i = this.slotFor(path);
    this.typeMode[i] = (TYPE_CODE.get(type)! << 16) | Number(st.mode & 0o7777n);
    this.uid[i] = Number(st.uid);
    this.gid[i] = Number(st.gid);
    this.nlink[i] = Number(st.nlink);
    this.bytes[i] = type === 'file' ? Number(st.size) : 0;
    this.rdev[i] = type === 'char' || type === 'block' ? Number(st.rdev) : 0;
    this.putTimes(i, st.mtimeNs, st.ctimeNs);
    this.putIds(i, st.ino, st.dev);
    this.putExtra(i, extra);
  }

  /** Adds or replaces `path` with `e`'s values. */
  set(path: string, e: IndexEntry): this {
    const i = this.slotFor(path);
    this.typeMode[i] = (TYPE_CODE.get(e.type)! << 16) | e.mode;
    this.uid[i] = e.uid;
    this.gid[i] = e.gid;
    this.nlink[i] = e.nlink;
    this.bytes[i] = e.size;
    this.rdev[i] = e.rdev;
    this.putTimes(i, e.mtimeNs, e.ctimeNs);
    this.putIds(i, e.ino, e.dev);
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
    return TYPES[this.typeMode[i]! >>> 16]!;
  }

  entryAt(i: number): IndexEntry {
    const e: {
      -readonly [K in keyof IndexEntry]: IndexEntry[K];
    } = {
      path: this.paths[i]!,
      type: this.typeAt(i),
      mode: this.typeMode[i]! & 0xffff,
      uid: this.uid[i]!,
      gid: this.gid[i]!,
      size: this.bytes[i]!,
      mtimeNs: BigInt(this.mtimeS[i]!) * NS + BigInt(this.mtimeN[i]!),
      ctimeNs: BigInt(this.ctimeS[i]!) * NS + BigInt(this.ctimeN[i]!),
      ino: (BigInt(this.ino[2 * i]!) << 32n) | BigInt(this.ino[2 * i + 1]!),
      dev: (BigInt(this.dev[2 * i]!) << 32n) | BigInt(this.dev[2 * i + 1]!),
      nlink: this.nlink[i]!,
      rdev: this.rdev[i]!,
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
    if (
      (a.typeMode[i]! & 0xffff) !== (b.typeMode[j]! & 0xffff) ||
      a.uid[i] !== b.uid[j] ||
      a.gid[i] !== b.gid[j] ||
      a.bytes[i] !== b.bytes[j] ||
      a.mtimeS[i] !== b.mtimeS[j] ||
      a.mtimeN[i] !== b.mtimeN[j] ||
      a.ctimeS[i] !== b.ctimeS[j] ||
      a.ctimeN[i] !== b.ctimeN[j] ||
      a.ino[2 * i] !== b.ino[2 * j] ||
      a.ino[2 * i + 1] !== b.ino[2 * j + 1] ||
      a.rdev[i] !== b.rdev[j]
    ) {
      return true;
    }
    const x = a.extras.get(i);
    const y = b.extras.get(j);
    if (x === undefined && y === undefined) return false;
    if (x?.linkTarget !== y?.linkTarget) return true;
    const hx = x?.contentHash;
    const hy = y?.contentHash;
    return hx !== undefined && hy !== undefined && hx !== hy;
  }

  private slotFor(path: string): number {
    const known = this.slots.get(path);
    if (known !== undefined) return known;
    if (this.rows === this.cap) this.grow();
    const i = this.rows++;
    this.slots.set(path, i);
    this.paths[i] = path;
    return i;
  }

  private putTimes(i: number, mtimeNs: bigint, ctimeNs: bigint): void {
    this.mtimeS[i] = Number(mtimeNs / NS);
    this.mtimeN[i] = Number(mtimeNs % NS);
    this.ctimeS[i] = Number(ctimeNs / NS);
    this.ctimeN[i] = Number(ctimeNs % NS);
  }

  private putIds(i: number, ino: bigint, dev: bigint): void {
    this.ino[2 * i] = Number((ino >> 32n) & U32);
    this.ino[2 * i + 1] = Number(ino & U32);
    this.dev[2 * i] = Number((dev >> 32n) & U32);
    this.dev[2 * i + 1] = Number(dev & U32);
  }

  private putExtra(i: number, extra: Extra | undefined): void {
    if (extra === undefined || (extra.linkTarget === undefined && extra.contentHash === undefined && extra.xattrs === undefined)) {
      this.extras.delete(i);
    } else {
      this.extras.set(i, extra);
    }
  }

  private grow(): void {
    const cap = Math.max(1024, this.cap * 2);
    const g = <T extends Uint32Array | Int32Array | Float64Array>(a: T, n: number): T => {
      const b = new (a.constructor as new (n: number) => T)(n);
      b.set(a);
      return b;
    };
    this.typeMode = g(this.typeMode, cap);
    this.uid = g(this.uid, cap);
    this.gid = g(this.gid, cap);
    this.nlink = g(this.nlink, cap);
    this.bytes = g(this.bytes, cap);
    this.rdev = g(this.rdev, cap);
    this.mtimeS = g(this.mtimeS, cap);
    this.ctimeS = g(this.ctimeS, cap);
    this.mtimeN = g(this.mtimeN, cap);
    this.ctimeN = g(this.ctimeN, cap);
    this.ino = g(this.ino, 2 * cap);
    this.dev = g(this.dev, 2 * cap);
    this.cap = cap;
  }
}
