// Streaming tar reader (ustar, GNU long names, PAX with binary xattr values) over an async byte source.
import { BuilderError } from '../errors.js';

export type TarEntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo' | 'unsupported';

export interface TarHeader {
  name: string;
  type: TarEntryType;
  /** The raw typeflag character, for messages about unsupported entries. */
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch, fractional when a PAX header says so. */
  mtime: number;
  atime: number | undefined;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** From PAX SCHILY.xattr.* (and LIBARCHIVE.xattr.*), values as raw bytes. */
  xattrs: Map<string, Buffer>;
}

export interface TarEntry {
  header: TarHeader;
  /** The entry's data; must be consumed (or left: the reader skips what is left when asked for the next entry). */
  body: AsyncIterable<Buffer>;
}

const BLOCK = 512;
const HEADER_ONLY = new Set<TarEntryType>(['link', 'symlink', 'char', 'block', 'directory', 'fifo']);

/** Pull-based byte reader: whole blocks for headers, zero-copy slices for bodies. */
class ByteSource {
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async fill(): Promise<boolean> {
    while (this.buf.length === 0) {
      if (this.ended) return false;
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        return false;
      }
      this.buf = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    }
    return true;
  }

  /** Exactly n bytes, or null at a clean end of input; a partial read is a truncated archive. */
  async readExact(n: number): Promise<Buffer | null> {
    if (!(await this.fill())) return null;
    if (this.buf.length >= n) {
      const out = this.buf.subarray(0, n);
      this.buf = this.buf.subarray(n);
      return out;
    }
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      if (!(await this.fill())) throw truncated();
      const take = Math.min(n - got, this.buf.length);
      parts.push(this.buf.subarray(0, take));
      this.buf = this.buf.subarray(take);
      got += take;
    }
    return Buffer.concat(parts, n);
  }

  async *slices(state: { remaining: number }): AsyncGenerator<Buffer> {
    while (state.remaining > 0) {
      if (!(await this.fill())) throw truncated();
      const take = Math.min(state.remaining, this.buf.length);
      const out = this.buf.subarray(0, take);
      this.buf = this.buf.subarray(take);
      state.remaining -= take;
      yield out;
    }
  }

  async skip(n: number): Promise<void> {
    const state = { remaining: n };
    for await (const _ of this.slices(state)) {
      // discarded
    }
  }

  /** Reads and discards everything left so upstream verifiers see the end of their input. */
  async drain(): Promise<void> {
    this.buf = Buffer.alloc(0);
    while (!this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
    }
  }
}

function truncated(): BuilderError {
  return new BuilderError('ROOTFS_LAYER_INVALID', 'layer tar is truncated (unexpected end of data)', {
    hint: 'the layer blob is incomplete or corrupt; remove it from the cache and pull it again',
  });
}

function invalid(why: string): BuilderError {
  return new BuilderError('ROOTFS_LAYER_INVALID', `layer tar is invalid: ${why}`, {
    hint: 'the layer blob is corrupt or not a tar archive; remove it from the cache and pull it again',
  });
}

/** Octal (NUL/space terminated) or GNU base-256 numeric field. */
function readNumber(b: Buffer, off: number, len: number): number {
  const f = b.subarray(off, off + len);
  if (f[0]! & 0x80) {
    // Base-256: big-endian two's complement; negative values make no sense for tar fields.
    if (f[0] === 0xff) throw invalid('negative base-256 number in header');
    let v = f[0]! & 0x7f;
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i]!;
    return v;
  }
  let s = 0;
  let e = f.length;
  while (s < e && (f[s] === 0x20 || f[s] === 0)) s++;
  let i = s;
  while (i < e && f[i]! >= 0x30 && f[i]! <= 0x37) i++;
  if (i === s) return 0;
  return parseInt(f.toString('latin1', s, i), 8);
}

function readString(b: Buffer, off: number, len: number): string {
  const f = b.subarray(off, off + len);
  const nul = f.indexOf(0);
  return f.toString('utf8', 0, nul === -1 ? f.length : nul);
}

function checksumOk(b: Buffer): boolean {
  const want = readNumber(b, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  // Some old writers summed signed chars; accept either like GNU tar does.
  return want === unsigned || want === signed;
}

/**
 * Whether bytes start a tar archive the way Go's tar.Reader.Next accepts one (moby's isArchivePath): a header
 * block with a valid checksum, after at most one zero block. Needs the first 1024 bytes (or all there are).
 */
export function looksLikeTar(head: Buffer): boolean {
  for (let off = 0; off + BLOCK <= head.length && off <= BLOCK; off += BLOCK) {
    const b = head.subarray(off, off + BLOCK);
    if (isZeroBlock(b)) continue;
    try {
      return checksumOk(b);
    } catch {
      return false;
    }
  }
  return false;
}

function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

type Pax = Map<string, Buffer>;

/** PAX extended header records: "<len> <key>=<value>\n", values kept as bytes (xattrs are binary). */
function parsePax(buf: Buffer, into: Pax): void {
  let off = 0;
  while (off < buf.length) {
    if (buf[off] === 0) break;
    const sp = buf.indexOf(0x20, off);
    if (sp === -1) throw invalid('malformed PAX record');
    const len = parseInt(buf.toString('latin1', off, sp), 10);
    if (!Number.isFinite(len) || len <= sp - off || off + len > buf.length) throw invalid('malformed PAX record length');
    const rec = buf.subarray(sp + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq === -1) throw invalid('malformed PAX record (no "=")');
    const key = rec.toString('utf8', 0, eq);
    const value = rec.subarray(eq + 1);
    // An empty value deletes a (global) keyword, per POSIX.
    if (value.length === 0) into.delete(key);
    else into.set(key, Buffer.from(value));
    off += len;
  }
}

function typeOf(flag: string): TarEntryType {
  switch (flag) {
    case '0':
    case '\0':
    case '7':
      return 'file';
    case '1':
      return 'link';
    case '2':
      return 'symlink';
    case '3':
      return 'char';
    case '4':
      return 'block';
    case '5':
      return 'directory';
    case '6':
      return 'fifo';
    default:
      return 'unsupported';
  }
}

/** PAX keys that describe one entry; ignored in global ('g') headers, like Go's archive/tar and libarchive do. */
const PER_ENTRY_KEYS = ['path', 'linkpath', 'size'] as const;

/** A PAX path value: NUL cannot be in a file name (ustar and GNU names stop at the first one). */
function paxPath(v: Buffer, key: string): string {
  if (v.includes(0)) throw invalid(`PAX ${key} contains a NUL byte`);
  return v.toString('utf8');
}

function paxNumber(pax: Pax, key: string): number | undefined {
  const v = pax.get(key);
  if (v === undefined) return undefined;
  const n = Number(v.toString('latin1'));
  if (!Number.isFinite(n)) throw invalid(`PAX ${key} is not a number`);
  return n;
}

/** The PAX records of one entry: the global ones (less those naming one entry) overridden by its own. */
function entryPax(globalPax: Pax, localPax: Pax | undefined): Pax {
  const pax: Pax = new Map(globalPax);
  // A global header applies to every later entry: it may not rename them all, point them all at one link or resize them.
  for (const k of PER_ENTRY_KEYS) pax.delete(k);
  if (localPax) for (const [k, v] of localPax) pax.set(k, v);
  return pax;
}

/** An entry's header from its ustar block, its PAX records and any GNU long name/link before it. */
function headerOf(block: Buffer, flag: string, blockSize: number, pax: Pax, longName: string | undefined, longLink: string | undefined): TarHeader {
  let name = readString(block, 0, 100);
  const magic = block.toString('latin1', 257, 263);
  // POSIX ustar splits long names into prefix + name; GNU's "ustar  " uses that area for other fields.
  if (magic === 'ustar\0' && block[345] !== 0) name = readString(block, 345, 155) + '/' + name;
  let linkname = readString(block, 157, 100);
  if (longName !== undefined) name = longName;
  if (longLink !== undefined) linkname = longLink;
  const p = pax.get('path');
  if (p) name = paxPath(p, 'path');
  const lp = pax.get('linkpath');
  if (lp) linkname = paxPath(lp, 'linkpath');
  const size = paxNumber(pax, 'size') ?? blockSize;

  let type = typeOf(flag);
  // Pre-POSIX tars mark directories only by a trailing slash.
  if (type === 'file' && flag !== '7' && name.endsWith('/')) type = 'directory';

  const xattrs = new Map<string, Buffer>();
  for (const [k, v] of pax) {
    if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
    else if (k.startsWith('LIBARCHIVE.xattr.')) {
      xattrs.set(decodeURIComponent(k.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(v.toString('latin1'), 'base64'));
    }
  }
  return {
    name,
    type,
    typeflag: flag,
    mode: readNumber(block, 100, 8),
    uid: paxNumber(pax, 'uid') ?? readNumber(block, 108, 8),
    gid: paxNumber(pax, 'gid') ?? readNumber(block, 116, 8),
    size,
    mtime: paxNumber(pax, 'mtime') ?? readNumber(block, 136, 12),
    atime: paxNumber(pax, 'atime'),
    linkname,
    uname: pax.get('uname')?.toString('utf8') ?? readString(block, 265, 32),
    gname: pax.get('gname')?.toString('utf8') ?? readString(block, 297, 32),
    devmajor: readNumber(block, 329, 8),
    devminor: readNumber(block, 337, 8),
    xattrs,
  };
}

/**
 * Yields the entries of a tar stream in order. Reading the next entry skips whatever the consumer
 * left of the previous body; after the end-of-archive marker the source is drained.
 */
export async function* readTar(source: AsyncIterable<Buffer>): AsyncGenerator<TarEntry> {
  const src = new ByteSource(source[Symbol.asyncIterator]());
  const globalPax: Pax = new Map();
  let localPax: Pax | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    const block = await src.readExact(BLOCK);
    if (block === null) return; // no end marker: tolerated, like GNU tar
    if (isZeroBlock(block)) {
      await src.drain();
      return;
    }
    if (!checksumOk(block)) throw invalid('header checksum mismatch (is it compressed with something other than gzip?)');
    const flag = String.fromCharCode(block[156]!);
    const size = readNumber(block, 124, 12);
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > 64 * 1024 * 1024) throw invalid(`extended header of ${size} bytes`);
      const data = size === 0 ? Buffer.alloc(0) : (await src.readExact(size)) ?? Buffer.alloc(0);
      if (data.length !== size) throw truncated();
      await src.skip((BLOCK - (size % BLOCK)) % BLOCK);
      if (flag === 'x') parsePax(data, (localPax ??= new Map()));
      else if (flag === 'g') parsePax(data, globalPax);
      else {
        const nul = data.indexOf(0);
        const s = data.toString('utf8', 0, nul === -1 ? data.length : nul);
        if (flag === 'L') longName = s;
        else longLink = s;
      }
      continue;
    }
    const header = headerOf(block, flag, size, entryPax(globalPax, localPax), longName, longLink);
    localPax = undefined;
    longName = longLink = undefined;
    // Link, device and directory entries carry no data whatever their size field says (as Go's archive/tar).
    const dataSize = HEADER_ONLY.has(header.type) ? 0 : header.size;
    const state = { remaining: dataSize };
    yield { header, body: src.slices(state) };
    await src.skip(state.remaining + ((BLOCK - (dataSize % BLOCK)) % BLOCK));
  }
}
