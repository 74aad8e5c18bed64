// Owns the tar header encoding: 512-byte ustar headers plus PAX extended headers when a field does not fit.

/** Tar typeflags we emit (sockets are never written). */
export const TypeFlag = {
  File: '0',
  HardLink: '1',
  Symlink: '2',
  Char: '3',
  Block: '4',
  Dir: '5',
  Fifo: '6',
  Pax: 'x',
} as const;
export type TypeFlagValue = (typeof TypeFlag)[keyof typeof TypeFlag];

export interface TarHeader {
  /** Root-relative POSIX name, directories with a trailing "/". */
  name: string;
  /** Permission bits including setuid/setgid/sticky (st_mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch; negative values are clamped to 0. */
  mtime: number;
  type: TypeFlagValue;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, written as PAX SCHILY.xattr.<name> records. */
  xattrs?: Readonly<Record<string, Buffer>>;
}

export const BLOCK = 512;
// 7 octal digits + NUL: the largest uid/gid/mode a ustar field holds.
const MAX_OCTAL_8 = 0o7777777;
// 11 octal digits + NUL: the largest size/mtime a ustar field holds (8 GiB - 1).
const MAX_OCTAL_12 = 0o77777777777;

/** Bytes of padding after `size` bytes of content to reach a block boundary. */
export function padding(size: number): number {
  const r = size % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

/**
 * Encodes the header(s) for one entry: an optional PAX 'x' entry, then the ustar header.
 * `out` must have room for `plan.length` bytes at `offset`; returns that length.
 */
export function encodeHeaderInto(out: Buffer, offset: number, h: TarHeader, plan: HeaderPlan = planHeader(h)): number {
  let pos = offset;
  if (plan.pax !== undefined) {
    const paxName = paxHeaderName(h.name);
    writeUstar(out, pos, paxName, undefined, 0o644, 0, 0, plan.pax.length, clampMtime(h.mtime), TypeFlag.Pax, '', 0, 0);
    pos += BLOCK;
    plan.pax.copy(out, pos);
    pos += plan.pax.length;
    const pad = padding(plan.pax.length);
    out.fill(0, pos, pos + pad);
    pos += pad;
  }
  writeUstar(
    out, pos, plan.name, plan.prefix, h.mode,
    h.uid > MAX_OCTAL_8 ? 0 : h.uid,
    h.gid > MAX_OCTAL_8 ? 0 : h.gid,
    h.size > MAX_OCTAL_12 ? 0 : h.size,
    Math.min(clampMtime(h.mtime), MAX_OCTAL_12),
    h.type,
    plan.linkFits ? (h.linkname ?? '') : '',
    h.devmajor ?? 0, h.devminor ?? 0,
  );
  return pos + BLOCK - offset;
}

/** Encodes one entry's header(s) into a new buffer. */
export function encodeHeader(h: TarHeader): Buffer {
  const plan = planHeader(h);
  const out = Buffer.alloc(plan.length);
  encodeHeaderInto(out, 0, h, plan);
  return out;
}

export interface HeaderPlan {
  name: string;
  prefix: string | undefined;
  linkFits: boolean;
  pax: Buffer | undefined;
  /** Total header bytes, PAX entry included. */
  length: number;
}

/** Decides ustar name/prefix split and which fields need PAX records. */
export function planHeader(h: TarHeader): HeaderPlan {
  const nameLen = Buffer.byteLength(h.name);
  const linkLen = h.linkname === undefined ? 0 : Buffer.byteLength(h.linkname);
  const records: Array<[string, Buffer]> = [];
  let name = h.name;
  let prefix: string | undefined;
  if (nameLen > 100) {
    const split = splitUstarPath(h.name, nameLen);
    if (split !== undefined) {
      prefix = split.prefix;
      name = split.name;
    } else {
      records.push(['path', Buffer.from(h.name)]);
      name = truncateBytes(h.name, 100);
    }
  }
  const linkFits = linkLen <= 100;
  if (!linkFits) records.push(['linkpath', Buffer.from(h.linkname ?? '')]);
  if (h.uid > MAX_OCTAL_8) records.push(['uid', Buffer.from(String(h.uid))]);
  if (h.gid > MAX_OCTAL_8) records.push(['gid', Buffer.from(String(h.gid))]);
  if (h.size > MAX_OCTAL_12) records.push(['size', Buffer.from(String(h.size))]);
  if (clampMtime(h.mtime) > MAX_OCTAL_12) records.push(['mtime', Buffer.from(String(clampMtime(h.mtime)))]);
  if (h.xattrs !== undefined) {
    for (const [k, v] of Object.entries(h.xattrs)) records.push([`SCHILY.xattr.${k}`, v]);
  }
  if (records.length === 0) return { name, prefix, linkFits, pax: undefined, length: BLOCK };
  // Sorted keys keep the PAX block byte-identical across runs.
  records.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const pax = Buffer.concat(records.map(([k, v]) => paxRecord(k, v)));
  return { name, prefix, linkFits, pax, length: BLOCK * 2 + pax.length + padding(pax.length) };
}

/** One PAX record: "<len> <key>=<value>\n" where len counts the whole record including itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const keyBytes = Buffer.byteLength(key);
  const base = keyBytes + value.length + 3; // space, '=', newline
  let len = base + String(base).length;
  if (String(len).length !== String(base).length) len = base + String(len).length;
  const head = Buffer.from(`${len} ${key}=`);
  return Buffer.concat([head, value, Buffer.from('\n')]);
}

/** Go's archive/tar naming for PAX headers: dir/PaxHeaders.0/base, at most 100 bytes. */
function paxHeaderName(name: string): string {
  const trimmed = name.endsWith('/') ? name.slice(0, -1) : name;
  const slash = trimmed.lastIndexOf('/');
  const dir = slash < 0 ? '' : trimmed.slice(0, slash + 1);
  const base = slash < 0 ? trimmed : trimmed.slice(slash + 1);
  return truncateBytes(`${dir}PaxHeaders.0/${base}`, 100);
}

/** Splits a long name into ustar prefix (<=155 bytes) and name (<=100 bytes) at a '/', if possible. */
function splitUstarPath(full: string, byteLen: number): { prefix: string; name: string } | undefined {
  if (byteLen !== full.length) return undefined; // multi-byte names: leave to PAX, splitting by bytes is fiddly
  const limit = Math.min(full.length - 1, 155);
  const i = full.lastIndexOf('/', limit);
  if (i <= 0) return undefined;
  const nameLen = full.length - i - 1;
  if (nameLen === 0 || nameLen > 100) return undefined;
  return { prefix: full.slice(0, i), name: full.slice(i + 1) };
}

function truncateBytes(s: string, max: number): string {
  let t = s;
  // Drop whole characters so a multi-byte sequence is never cut in half.
  while (Buffer.byteLength(t) > max) t = t.slice(0, Math.max(0, t.length - Math.ceil((Buffer.byteLength(t) - max) / 4)));
  return t;
}

function clampMtime(m: number): number {
  return m < 0 ? 0 : Math.floor(m);
}

function writeUstar(
  out: Buffer, o: number, name: string, prefix: string | undefined, mode: number, uid: number, gid: number,
  size: number, mtime: number, type: TypeFlagValue, linkname: string, devmajor: number, devminor: number,
): void {
  out.fill(0, o, o + BLOCK);
  writeString(out, o, 100, name);
  writeOctal(out, o + 100, 8, mode & 0o7777);
  writeOctal(out, o + 108, 8, uid);
  writeOctal(out, o + 116, 8, gid);
  writeOctal(out, o + 124, 12, size);
  writeOctal(out, o + 136, 12, mtime);
  out.fill(0x20, o + 148, o + 156); // checksum computed over spaces
  out[o + 156] = type.charCodeAt(0);
  writeString(out, o + 157, 100, linkname);
  out.write('ustar\x0000', o + 257, 8, 'latin1');
  if (type === TypeFlag.Char || type === TypeFlag.Block) {
    writeOctal(out, o + 329, 8, devmajor);
    writeOctal(out, o + 337, 8, devminor);
  }
  if (prefix !== undefined) writeString(out, o + 345, 155, prefix);
  let sum = 0;
  for (let i = o; i < o + BLOCK; i++) sum += out[i]!;
  writeOctal(out, o + 148, 7, sum); // 6 digits + NUL, the 8th byte stays a space
}

function writeString(out: Buffer, o: number, len: number, s: string): void {
  if (s.length === 0) return;
  // Names are UTF-8 bytes (what GNU tar and Go write); truncated to the field, callers use PAX when longer.
  out.write(s, o, len, 'utf8');
}

function writeOctal(out: Buffer, o: number, len: number, n: number): void {
  const s = n.toString(8).padStart(len - 1, '0');
  out.write(s, o, len - 1, 'latin1');
  out[o + len - 1] = 0;
}
