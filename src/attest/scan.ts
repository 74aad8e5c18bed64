// Streams an image's layers once, in order, and keeps the packages the final filesystem holds, each with the layer that
// added it; a layer built in this run comes from its entries as written instead (layerChangesOf). Only package databases
// (small) are read into memory; executables are scanned chunk by chunk for Go build info.
import { createGunzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { PassThrough, type Readable } from 'node:stream';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Digest } from '../digest/index.js';
import { layerCompression, type Layer } from '../image/index.js';
import { readTar } from '../rootfs/index.js';
import type { WrittenEntry } from '../snapshot/index.js';
import { runPool } from '../util/pool.js';
import { requireZstd, ZstdStream } from '../util/zstd.js';
import {
  classify, GO_BUILDINFO_MAGIC, parseApkInstalled, parseDpkgStatus, parseGoBuildInfo, parseNpmLock, parseNpmPackageJson,
  parseOsReleaseId, parsePythonMetadata, type FileKind, type FoundPackage,
} from './packages.js';

/** A package of the final image: where it was found and the (compressed) layer that added it. */
export interface ImagePackage extends FoundPackage {
  path: string;
  layer: Digest;
}

export interface ScanResult {
  packages: ImagePackage[];
  /** Databases seen but not read, and why (RPM without rpm, files too large, old Go binaries). */
  skipped: string[];
}

/** Package databases larger than this are skipped (and said so): a dpkg status of 20 000 packages is ~ 30 MB. */
const MAX_DB = 48 * 1024 * 1024;
/** Bytes kept after the Go build info magic: its strings follow within a few KB. */
const GO_INFO_BYTES = 64 * 1024;

interface FileState { kind: FileKind | 'go'; packages: ImagePackage[]; osId?: string }

async function readBody(read: () => AsyncIterable<Buffer>, size: number): Promise<string | undefined> {
  if (size > MAX_DB) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of read()) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

/** Where Go's build info can start in an ELF file: its first writable, non-executable PT_LOAD segment (Go's linker puts
 * .go.buildinfo there; debug/buildinfo reads that segment too). 0: search from the start, -1: not ELF, undefined: read more. */
function goSearchStart(head: Buffer): number | undefined {
  if (head.length >= 4 && !head.subarray(0, 4).equals(ELF_MAGIC)) return -1;
  if (head.length < 64) return undefined;
  const is64 = head[4] === 2;
  const le = head[5] !== 2;
  const u16 = (at: number): number => (le ? head.readUInt16LE(at) : head.readUInt16BE(at));
  const u32 = (at: number): number => (le ? head.readUInt32LE(at) : head.readUInt32BE(at));
  const word = (at: number): number => (is64 ? Number(le ? head.readBigUInt64LE(at) : head.readBigUInt64BE(at)) : u32(at));
  const phoff = word(is64 ? 0x20 : 0x1c);
  const phentsize = u16(is64 ? 0x36 : 0x2a);
  const phnum = u16(is64 ? 0x38 : 0x2c);
  const end = phoff + phentsize * phnum;
  if (phentsize < (is64 ? 56 : 32) || end > GO_HEAD_MAX) return 0;
  if (head.length < end) return undefined;
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    const flags = u32(is64 ? ph + 4 : ph + 24);
    if (u32(ph) === 1 && (flags & 3) === 2) return word(is64 ? ph + 8 : ph + 4);
  }
  return 0;
}

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
/** The ELF header and program headers are read from at most this many first bytes. */
const GO_HEAD_MAX = 64 * 1024;

/**
 * The Go build info section of an executable (the magic and what follows), or undefined. Only an ELF file's data segment
 * on is searched (not its code), and reading stops once the info is in hand (the tar reader skips the rest).
 */
async function goSection(body: AsyncIterable<Buffer>): Promise<Buffer | undefined> {
  let head = Buffer.alloc(0);
  let start: number | undefined;
  let pos = 0; // file offset of the chunk's first byte
  let tail = Buffer.alloc(0);
  let found: Buffer | undefined;
  for await (const c of body) {
    const at = pos;
    pos += c.length;
    if (start === undefined) {
      head = Buffer.concat([head, c]);
      start = goSearchStart(head);
      if (start === -1) return undefined;
      if (start === undefined) {
        if (head.length < GO_HEAD_MAX) continue;
        start = 0;
      }
      if (!searchFrom(head, 0)) continue;
    } else if (!searchFrom(c, at)) continue;
    if (found!.length >= GO_INFO_BYTES) return found;
  }
  // a short ELF file whose program headers were never complete: search all of it
  if (start === undefined && head.subarray(0, 4).equals(ELF_MAGIC)) searchFrom(head, (start = 0));
  return found;

  // true once the magic is found (found then fills up to GO_INFO_BYTES); buf starts at file offset `at`
  function searchFrom(buf: Buffer, at: number): boolean {
    if (found) {
      found = Buffer.concat([found, buf.subarray(0, GO_INFO_BYTES - found.length)]);
      return true;
    }
    if (at + buf.length <= start!) return false;
    const own = buf.subarray(Math.max(0, start! - at));
    const all = tail.length > 0 ? Buffer.concat([tail, own]) : own;
    const i = all.indexOf(GO_BUILDINFO_MAGIC);
    if (i >= 0) {
      found = Buffer.from(all.subarray(i, i + GO_INFO_BYTES));
      return true;
    }
    tail = Buffer.from(all.subarray(Math.max(0, all.length - GO_BUILDINFO_MAGIC.length + 1)));
    return false;
  }
}

function parse(kind: FileKind, text: string): FoundPackage[] {
  switch (kind) {
    case 'dpkg-status':
    case 'dpkg-status-d': return parseDpkgStatus(text);
    case 'apk-installed': return parseApkInstalled(text);
    case 'npm-lock': return parseNpmLock(text);
    case 'npm-package': return parseNpmPackageJson(text);
    case 'python-metadata': return parsePythonMetadata(text);
    case 'os-release':
    case 'rpm-db': return [];
  }
}

/** The uncompressed tar of a layer, by its media type's compression. */
function tarStream(layer: Layer, blob: Readable, zstd: string | undefined): Readable {
  const kind = layerCompression(layer.descriptor.mediaType) ?? 'gzip';
  if (kind === 'none') return blob;
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const decompress = kind === 'zstd' ? new ZstdStream(requireZstd(`layer ${layer.descriptor.digest}`, zstd), ['-d'], `layer ${layer.descriptor.digest}`) : createGunzip();
  pipeline(blob, decompress, out).catch((err: unknown) => out.destroy(err as Error));
  return out;
}

/** A 53-bit string hash (cyrb53-style): a layer remembers every path it replaces in 8 bytes, not the path itself. */
function pathHash(p: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** What one layer does to the files below it, found without them (layers are read in parallel, applied in order). */
export interface LayerChanges {
  /** Hashes of every non-directory path in the layer, sorted: each replaces whatever was at that path or below it. */
  replaced: Float64Array;
  whiteouts: string[];
  opaque: string[];
  /** Package databases and Go binaries in this layer. */
  found: Map<string, FileState>;
  skipped: string[];
}

/** An entry of a layer as the scan sees it (a tar header's or a written entry's fields). */
interface ScanEntry {
  name: string;
  type: 'file' | 'dir' | 'other';
  mode: number;
  size: number;
}

/** Collects what one layer does, entry by entry, in the layer's order. */
class LayerReader {
  readonly out: LayerChanges = { replaced: new Float64Array(0), whiteouts: [], opaque: [], found: new Map(), skipped: [] };
  private readonly replaced: number[] = [];
  constructor(private readonly digest: Digest) {}

  async add(e: ScanEntry, read: () => AsyncIterable<Buffer>): Promise<void> {
    const p = e.name.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
    const base = p.slice(p.lastIndexOf('/') + 1);
    const dir = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '';
    if (base === '.wh..wh..opq') { this.out.opaque.push(dir); return; }
    if (base.startsWith('.wh.')) { this.out.whiteouts.push(dir ? `${dir}/${base.slice(4)}` : base.slice(4)); return; }
    // directories merge with what lies below; anything else replaces the path (and a directory that was there)
    if (e.type === 'dir') return;
    this.replaced.push(pathHash(p));
    if (e.type !== 'file') return;
    const state = await packageFile(p, e, read, this.digest, this.out.skipped);
    if (state) this.out.found.set(p, state);
  }

  done(): LayerChanges {
    this.out.replaced = Float64Array.from(this.replaced).sort();
    return this.out;
  }
}

/** The package files in one layer's entries, with what the layer removes or replaces. */
async function readLayer(layer: Layer, zstd: string | undefined): Promise<LayerChanges> {
  const r = new LayerReader(layer.descriptor.digest);
  for await (const e of readTar(tarStream(layer, await layer.open(), zstd))) {
    const type = e.header.type === 'file' ? 'file' : e.header.type === 'directory' ? 'dir' : 'other';
    await r.add({ name: e.header.name, type, mode: e.header.mode, size: e.header.size }, () => e.body);
  }
  return r.done();
}

/**
 * What a layer just written from `root` does, from its entries as written (no second decompression of its blob): only
 * package databases and executables are read, from the root, which still holds what went into the layer.
 */
export async function layerChangesOf(root: string, entries: readonly WrittenEntry[], digest: Digest): Promise<LayerChanges> {
  const r = new LayerReader(digest);
  for (const e of entries) {
    await r.add({ name: e.name, type: e.type === 'whiteout' ? 'other' : e.type, mode: e.mode, size: e.size }, () => readRootFile(root, e.name));
  }
  return r.done();
}

/** A file under the root, not following a symlink in its last component (the layer holds what lstat saw). */
async function* readRootFile(root: string, name: string): AsyncIterable<Buffer> {
  const fh = await open(path.join(root, name), constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    yield* fh.createReadStream({ highWaterMark: 1 << 20, autoClose: false }) as AsyncIterable<Buffer>;
  } finally {
    await fh.close();
  }
}

function hasHash(sorted: Float64Array, h: number): boolean {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] === h) return true;
    if (sorted[mid]! < h) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/** The packages a file holds (a database or a Go binary), or undefined; consumes what it reads of the body. */
async function packageFile(p: string, header: { size: number; mode: number }, read: () => AsyncIterable<Buffer>, digest: Digest, skipped: string[]): Promise<FileState | undefined> {
  const kind = classify(p);
  if (kind === 'rpm-db') {
    skipped.push(`RPM database /${p} (layer ${digest}): not read, it needs rpm itself`);
    return { kind, packages: [] };
  }
  let found: FoundPackage[];
  if (kind !== undefined) {
    const text = await readBody(read, header.size);
    if (text === undefined) {
      skipped.push(`/${p} (layer ${digest}): larger than ${MAX_DB} bytes, not read`);
      return undefined;
    }
    if (kind === 'os-release') return { kind, packages: [], osId: parseOsReleaseId(text) ?? '' };
    found = parse(kind, text);
  } else if ((header.mode & 0o111) !== 0 && header.size > 1024) {
    const section = await goSection(read());
    if (!section) return undefined;
    const mods = parseGoBuildInfo(section);
    if (!mods) {
      skipped.push(`Go binary /${p}: build info of Go < 1.18 not read`);
      return undefined;
    }
    found = mods;
  } else return undefined;
  return { kind: kind ?? 'go', packages: found.map((f) => ({ ...f, path: p, layer: digest })) };
}

/** Applies a layer's changes to the files tracked so far: removals first (whiteouts, replaced paths), then its own files. */
function applyLayer(files: Map<string, FileState>, c: LayerChanges): void {
  const replaced = (p: string): boolean => {
    for (let q = p; q !== ''; q = q.includes('/') ? q.slice(0, q.lastIndexOf('/')) : '') if (hasHash(c.replaced, pathHash(q))) return true;
    return false;
  };
  for (const p of [...files.keys()]) {
    const gone = replaced(p)
      || c.whiteouts.some((w) => p === w || p.startsWith(`${w}/`))
      || c.opaque.some((d) => d === '' || p.startsWith(`${d}/`));
    if (gone) files.delete(p);
  }
  for (const [p, state] of c.found) files.set(p, state);
}

/**
 * Packages of the image whose layers these are (bottom first); two layers read at a time, streaming, applied in order.
 * `known`: layers whose changes were taken while they were written (layerChangesOf), by digest; not read again.
 */
export async function scanImage(layers: readonly Layer[], known?: ReadonlyMap<Digest, LayerChanges>, zstd?: string): Promise<ScanResult> {
  const files = new Map<string, FileState>();
  const skipped: string[] = [];
  // earliest layer each package (by purl and path) was seen in, while its file keeps listing it
  const firstSeen = new Map<string, Digest>();
  const changes: Array<Promise<LayerChanges>> = [];
  // gunzip runs on libuv's pool: two layers decompress on two cores; a layer's changes are small (8 bytes a path)
  await runPool(layers.map((l, i) => [l, i] as const), 2, async ([l, i]) => {
    const had = known?.get(l.descriptor.digest);
    const p = had ? Promise.resolve(had) : readLayer(l, zstd);
    p.catch(() => undefined);
    changes[i] = p;
    await p;
  });
  for (const c of changes) {
    const layer = await c;
    applyLayer(files, layer);
    skipped.push(...layer.skipped);
    const present = new Set<string>();
    for (const f of files.values()) for (const p of f.packages) present.add(`${p.purl} ${p.path}`);
    for (const k of [...firstSeen.keys()]) if (!present.has(k)) firstSeen.delete(k);
    for (const f of files.values()) for (const p of f.packages) if (!firstSeen.has(`${p.purl} ${p.path}`)) firstSeen.set(`${p.purl} ${p.path}`, p.layer);
  }
  const byPurl = new Map<string, ImagePackage>();
  const all = [...files.values()].flatMap((f) => f.packages).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const p of all) {
    if (!byPurl.has(p.purl)) byPurl.set(p.purl, { ...p, layer: firstSeen.get(`${p.purl} ${p.path}`) ?? p.layer });
  }
  // deb/apk purls are named for the distribution of the final image (its os-release ID)
  const distro = files.get('etc/os-release')?.osId || files.get('usr/lib/os-release')?.osId;
  const named = (p: ImagePackage): ImagePackage => (distro && (p.type === 'deb' || p.type === 'apk') ? { ...p, purl: p.purl.replace(/^(pkg:[a-z]+\/)[^/]+/, `$1${encodeURIComponent(distro)}`) } : p);
  const packages = [...byPurl.values()].map(named).sort((a, b) => (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0));
  return { packages, skipped };
}
