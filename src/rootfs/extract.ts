// Applying an OCI/Docker layer tar to a RootFs: whiteouts, replacements, links, devices, owners, modes, mtimes, xattrs.
import { execFile } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { constants as fsc, lchownSync, lstatSync, lutimesSync, mkdirSync, symlinkSync, type Stats } from 'node:fs';
import { chmod, lchown, link, lstat, lutimes, open, readdir, rm, unlink, type FileHandle } from 'node:fs/promises';
import { Readable, pipeline, type Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { BuilderError, isBuilderError } from '../errors.js';
import { ROOTFS_ERROR_CODES } from './codes.js';
import { layerCompression } from '../image/index.js';
import type { EventSink } from '../util/events.js';
import type { Host } from '../util/host.js';
import { requireZstd, ZstdStream } from '../util/zstd.js';
import { cleanPath, fsError, isErrno, RootFs, type ResolveCache } from './rootfs.js';
import { readTar, type TarEntry, type TarHeader } from './tar-reader.js';
import { setXattrs, type XattrOp } from './xattr.js';

export interface ExtractOptions {
  /** 'auto' (default) sniffs the gzip magic bytes. */
  gzip?: 'auto' | boolean;
  /** Apply uid/gid from the tar (default: when the process is root). */
  owners?: boolean;
  /** Create device nodes and fifos (default: when the process is root); otherwise they are skipped with a warning. */
  devices?: boolean;
  /**
   * Who extracts (the CLI's Host): its ids, umask and zstd program. Absent: an unprivileged process of unknown ids, so
   * no owners or devices unless asked, every mode set with fchmod, and zstd from the standard dirs.
   */
  host?: Pick<Host, 'uid' | 'gid' | 'umask' | 'zstd'>;
  /** Apply SCHILY.xattr.* attributes (default true). */
  xattrs?: boolean;
  /** Names the layer (e.g. its digest) in errors and warnings. */
  layer?: string;
  /** Called with each entry's canonical container path before it is applied. */
  onEntry?(containerPath: string): void;
  /** Warnings: things skipped or not applied (devices when not root, xattrs without a tool, contained escapes). */
  emit?: EventSink;
  /**
   * True for container paths to leave alone (in-place mode: /proc, /sys, /dev, mount points). Always called with
   * a canonical path ("/proc/x": absolute, no "." / ".." / "//", symlinks on the way resolved inside the root).
   */
  ignore?: (containerPath: string) => boolean;
  /** The layer's media type (its descriptor's): must be a filesystem layer type we know, else ROOTFS_LAYER_MEDIA_TYPE_UNSUPPORTED. */
  mediaType?: string;
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids[i]); any other content fails with ROOTFS_LAYER_DIFF_ID_MISMATCH. */
  expectedDiffId?: string;
  /** Interpret .wh. entries as whiteouts (default true); false for ADD archives, which docker extracts as plain files. */
  whiteouts?: boolean;
  /** Owner for every entry instead of the tar's (ADD --chown on an archive, as moby's ChownOpts). */
  chown?: { uid: number; gid: number };
  /** Apply a "./" entry's metadata to the root (default true); moby's Untar skips "." when it exists (ADD). */
  rootMeta?: boolean;
}

export interface ExtractResult {
  /** Tar entries applied or skipped (whiteouts included, PAX/long-name headers not). */
  entries: number;
  /** Bytes of regular file data written. */
  bytes: number;
}

const WH_PREFIX = '.wh.';
const WH_OPAQUE = '.wh..wh..opq';
/** What a whiteout may never name: they are not a child of the directory (the parent, itself, nothing). */
const NOT_A_CHILD = new Set(['', '.', '..']);
/** Open finalizers (each holds an fd) before extraction waits for the oldest. */
const MAX_PENDING = 128;
/** Files up to this size are gathered (zero-copy slices) and written entirely in the background. */
const SMALL_FILE = 64 * 1024;
/** Body bytes gathered while one write is in flight before waiting for it. */
const WRITE_BATCH = 1024 * 1024;

interface DirMeta {
  host: string;
  uid: number;
  gid: number;
  mode: number;
  atime: number;
  mtime: number;
}

/** Everything one extraction tracks; one per call, never shared. */
interface State {
  rootfs: RootFs;
  opts: ExtractOptions;
  owners: boolean;
  devices: boolean;
  /** The process's ids: files created in fresh dirs already have them. */
  uid: number;
  gid: number;
  /** The process umask: when it strips none of a file's mode bits, open(mode) alone sets the mode (no fchmod). */
  umask: number;
  cache: ResolveCache;
  /** Canonical paths written by this layer: whiteouts and opaque dirs apply to lower layers only. */
  layerPaths: Set<string>;
  /** Directories this layer created: their children need no lstat unless in layerPaths. */
  freshDirs: Set<string>;
  /** Directory owners/modes/times are applied at the end so contents can be written and mtimes stick. */
  dirMeta: Map<string, DirMeta>;
  /** xattrs go last: chown and writes clear security.capability. */
  xattrs: Map<string, XattrOp[]>;
  pending: Array<Promise<void>>;
  firstError: unknown;
  bytes: number;
  entry: string;
}

/** Applies one layer tar (plain or gzip) to the root, in order. Never writes outside the root. */
export async function extractLayer(rootfs: RootFs, input: Readable, opts: ExtractOptions = {}): Promise<ExtractResult> {
  const isRoot = opts.host?.uid === 0;
  const st: State = {
    rootfs,
    opts,
    owners: opts.chown ? true : opts.owners ?? isRoot,
    devices: opts.devices ?? isRoot,
    uid: opts.host?.uid ?? -1,
    gid: opts.host?.gid ?? -1,
    // unknown: every mode bit may be stripped, so every mode is set with fchmod
    umask: opts.host?.umask ?? 0o7777,
    cache: new Map(),
    layerPaths: new Set(),
    freshDirs: new Set(),
    dirMeta: new Map(),
    xattrs: new Map(),
    pending: [],
    firstError: undefined,
    bytes: 0,
    entry: '',
  };
  let entries = 0;
  let gunzip: Transform | undefined;
  let pipeErr: unknown;
  let done = false;
  try {
    const declared = opts.mediaType === undefined ? undefined : checkMediaType(opts.mediaType, layerLabel(opts));
    const source = await openSource(input, opts.gzip ?? 'auto', layerLabel(opts), opts.host?.zstd);
    // Like containerd and docker the bytes decide the compression; a label that disagrees is only worth a warning.
    if (declared !== undefined && declared !== source.kind) {
      const say = (k: string): string => (k === 'none' ? 'uncompressed' : k);
      warn(st, `media type ${opts.mediaType} says ${say(declared)} but the data is ${say(source.kind)}: extracted as ${say(source.kind)}`);
    }
    gunzip = source.gunzip;
    if (gunzip) {
      const gz = gunzip;
      pipeline(source.raw, gz, (err) => {
        if (err) pipeErr = err;
      });
    }
    const tar: AsyncIterable<Buffer> = gunzip ?? source.raw;
    const hash = opts.expectedDiffId === undefined ? undefined : createHash('sha256');
    for await (const entry of readTar(hash ? hashed(tar, hash) : tar)) {
      if (st.firstError !== undefined) throw st.firstError;
      entries++;
      st.entry = entry.header.name;
      if (opts.chown) {
        entry.header.uid = opts.chown.uid;
        entry.header.gid = opts.chown.gid;
      }
      await applyEntry(st, entry);
    }
    await settle(st);
    st.entry = '';
    // The reader drained the input to its end, so the hash covers every uncompressed byte (padding included).
    if (hash) checkDiffId(`sha256:${hash.digest('hex')}`, opts.expectedDiffId!, layerLabel(opts));
    await finish(st);
    done = true;
    return { entries, bytes: st.bytes };
  } catch (err) {
    await Promise.allSettled(st.pending);
    throw wrap(pipeErr ?? err, st, opts);
  } finally {
    if (!done) {
      input.destroy();
      gunzip?.destroy();
    }
  }
}

function layerLabel(opts: ExtractOptions): string {
  return opts.layer ? `layer ${opts.layer}` : 'layer';
}

function wrap(err: unknown, st: State, opts: ExtractOptions): BuilderError {
  const where = `${layerLabel(opts)}${st.entry ? `, entry "${st.entry}"` : ''}`;
  if (isBuilderError(err)) {
    if (isBuilderError(err, ROOTFS_ERROR_CODES) && !err.message.startsWith(layerLabel(opts))) {
      return new BuilderError(err.code, `${where}: ${err.message}`, { hint: err.hint, cause: err.cause ?? err, exitCode: err.exitCode });
    }
    return err;
  }
  const e = err as NodeJS.ErrnoException;
  if (e?.code?.startsWith('Z_')) {
    return new BuilderError('ROOTFS_LAYER_INVALID', `${where}: gzip data is corrupt: ${e.message}`, {
      hint: 'the layer blob is corrupt; remove it from the cache and pull it again',
      cause: err,
    });
  }
  return fsError('ROOTFS_EXTRACT_FAILED', `${where}: cannot extract`, err);
}

/** Compression of a layer media type; refuses types that are not a filesystem layer (artifacts, encrypted layers). */
function checkMediaType(mediaType: string, label: string): 'gzip' | 'zstd' | 'none' {
  const c = layerCompression(mediaType);
  if (c === undefined) {
    throw new BuilderError('ROOTFS_LAYER_MEDIA_TYPE_UNSUPPORTED', `${label} has media type "${mediaType}", which is not a container filesystem layer`, {
      hint: 'FROM and COPY --from need a container image whose layers are tar, tar+gzip or tar+zstd (Docker or OCI); this looks like an artifact (chart, signature, attestation) or an encrypted image',
    });
  }
  return c;
}

function checkDiffId(got: string, want: string, label: string): void {
  if (got === want) return;
  throw new BuilderError('ROOTFS_LAYER_DIFF_ID_MISMATCH', `${label}: uncompressed content has digest ${got}, but the image config lists ${want} (rootfs.diff_ids)`, {
    hint: 'the image config does not describe this layer: the image is corrupt or was tampered with; rebuild and re-push it with a standard tool',
  });
}

/** Hashes the bytes as they flow to the tar reader. */
async function* hashed(src: AsyncIterable<Buffer>, hash: Hash): AsyncGenerator<Buffer> {
  for await (const b of src) {
    hash.update(b);
    yield b;
  }
}

/** Sniffs the first bytes (re-emitting them) and sets up gunzip (or zstd -d) when asked or detected. */
async function openSource(input: Readable, gzip: 'auto' | boolean, label: string, zstd: string | undefined): Promise<{ raw: Readable; gunzip?: Transform; kind: 'gzip' | 'zstd' | 'none' }> {
  const it: AsyncIterator<Buffer> = input[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let have = 0;
  let ended = false;
  while (have < 4) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    head.push(b);
    have += b.length;
  }
  const first = Buffer.concat(head);
  const isGzip = first[0] === 0x1f && first[1] === 0x8b;
  const isZstd = gzip === 'auto' && first.length >= 4 && first.readUInt32BE(0) === 0x28b52ffd;
  // Checked before any byte is consumed: without the program the layer cannot be read at all.
  const zstdBin = isZstd ? requireZstd(`${label} is zstd-compressed and`, zstd) : undefined;
  async function* replay(): AsyncGenerator<Buffer> {
    for (const b of head) yield b;
    if (ended) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    }
  }
  const raw = Readable.from(replay(), { objectMode: false, highWaterMark: 64 * 1024 });
  const wantGunzip = gzip === true || (gzip === 'auto' && isGzip);
  // Bigger output chunks than zlib's 16 KiB default: fewer, larger file writes.
  if (zstdBin !== undefined) return { raw, gunzip: new ZstdStream(zstdBin, ['-d'], label), kind: 'zstd' };
  return wantGunzip ? { raw, gunzip: createGunzip({ chunkSize: 128 * 1024 }), kind: 'gzip' } : { raw, kind: 'none' };
}

function warn(st: State, msg: string): void {
  st.opts.emit?.({ type: 'warning', msg: `${layerLabel(st.opts)}: ${msg}` });
}

function joinPath(dir: string, base: string): string {
  return dir === '/' ? '/' + base : dir + '/' + base;
}

function isUnder(p: string, dir: string): boolean {
  return dir === '/' || p === dir || p.startsWith(dir + '/');
}

// Directories, files and symlinks are handled here (the helpers split out for them are synchronous): no extra async frame per entry.
// Metadata-only calls (lstat, mkdir, symlink, its owner and times) are synchronous: each is a few µs, a hand-off to libuv's pool costs more.
async function applyEntry(st: State, entry: TarEntry): Promise<void> {
  const h = entry.header;
  const clean = entryPath(st, h.name);
  if (clean === '/') return applyRootEntry(st, h);
  const slash = clean.lastIndexOf('/');
  const dirPart = slash === 0 ? '/' : clean.slice(0, slash);
  const base = clean.slice(slash + 1);
  const whiteouts = st.opts.whiteouts ?? true;
  if (whiteouts) checkWhiteoutNames(clean);
  if (whiteouts && base.startsWith(WH_PREFIX)) return applyWhiteout(st, dirPart, base);

  // Parents are resolved through symlinks re-rooted at the root; missing ones created like docker does (0755 root).
  if (st.opts.ignore) {
    const probe = await st.rootfs.resolveFull(dirPart, { followFinal: true, cache: st.cache });
    if (ignored(st, probe.container) || ignored(st, joinPath(probe.container, base))) return;
  }
  const parent = await st.rootfs.mkdirAll(dirPart, {
    cache: st.cache,
    mode: 0o755,
    uid: st.owners ? 0 : undefined,
    gid: st.owners ? 0 : undefined,
  });
  const target = joinPath(parent.container, base);
  // The path actually written is checked too, not only the one probed before the parents existed.
  if (ignored(st, target)) return;
  const host = st.rootfs.hostPath(target);
  st.opts.onEntry?.(target);

  // A path this layer already wrote may still be in flight in the background: let it land first.
  const again = st.layerPaths.has(target);
  if (again) await settle(st);
  // The final component is never followed: a symlink there is replaced, not written through.
  const existing = st.freshDirs.has(parent.container) && !again ? undefined : lstatSync(host, { throwIfNoEntry: false });
  switch (h.type) {
    case 'directory':
      if (existing && !existing.isDirectory()) await removePath(st, target, existing);
      if (!existing || !existing.isDirectory()) {
        // Owner-only until the end: the real mode may forbid writing the contents.
        mkdirSync(host, { mode: 0o700 });
        st.freshDirs.add(target);
      }
      return recordDir(st, target, host, h);
    case 'file': {
      if (existing) await removePath(st, target, existing);
      st.layerPaths.add(target);
      const fin = fileFinish(st, h, parent.container);
      if (h.size <= SMALL_FILE) await writeSmallFile(st, host, entry, fin);
      else await writeFile(st, host, entry, fin);
      return addXattrs(st, target, host, h);
    }
    case 'symlink':
      if (existing) await removePath(st, target, existing);
      st.layerPaths.add(target);
      // Stored verbatim: an absolute target is resolved against the container root when used.
      symlinkSync(h.linkname, host);
      return recordSymlink(st, target, host, h);
    case 'link':
      return applyHardlink(st, h, target, host, existing);
    case 'char':
    case 'block':
    case 'fifo':
      return applyNode(st, h, target, host, existing);
    case 'unsupported':
      return warn(st, `entry "${h.name}" has unsupported type '${h.typeflag}' (sparse, socket or vendor extension): skipped`);
    default: {
      const never: never = h.type;
      throw new Error(`unreachable entry type ${String(never)}`);
    }
  }
}

/** The entry's canonical container path; an absolute or climbing name is contained, with a warning. */
function entryPath(st: State, name: string): string {
  const clean = cleanPath(name);
  if (name.startsWith('/') || name.split('/').includes('..')) {
    warn(st, `entry "${name}" is absolute or climbs with "..": contained as ${clean}`);
  }
  return clean;
}

/** A "./" entry: its metadata goes to the root (unless rootMeta is false); anything but a directory is skipped. */
function applyRootEntry(st: State, h: TarHeader): void {
  if (h.type !== 'directory') warn(st, `entry "${h.name}" names the root but is a ${h.type}: skipped`);
  else if (st.opts.rootMeta ?? true) setDirMeta(st, '/', st.rootfs.root, h);
}

/** A ".wh.NAME" entry deletes NAME from lower layers; ".wh..wh..opq" empties its directory of them. */
async function applyWhiteout(st: State, dirPart: string, base: string): Promise<void> {
  const parent = await st.rootfs.resolveFull(dirPart, { followFinal: true, cache: st.cache });
  if (ignored(st, parent.container)) return;
  if (base === WH_OPAQUE) {
    await applyOpaque(st, parent.container);
    return;
  }
  // checkWhiteoutNames made sure this is one child of parent, never parent itself or above it.
  const victim = joinPath(parent.container, base.slice(WH_PREFIX.length));
  // Whiteouts hide lower layers only; an entry of this same layer survives.
  if (st.layerPaths.has(victim) || ignored(st, victim)) return;
  await removePath(st, victim, undefined);
}

function recordDir(st: State, target: string, host: string, h: TarHeader): void {
  st.cache.set(target, true);
  st.layerPaths.add(target);
  setDirMeta(st, target, host, h);
  addXattrs(st, target, host, h);
}

function recordSymlink(st: State, target: string, host: string, h: TarHeader): void {
  st.cache.set(target, h.linkname);
  if (st.owners) lchownSync(host, h.uid, h.gid);
  lutimesSync(host, h.atime ?? h.mtime, h.mtime);
  addXattrs(st, target, host, h);
}

/** Which metadata calls a new file in `parentDir` needs after open(mode). */
function fileFinish(st: State, h: TarHeader, parentDir: string): Finish {
  // A fresh dir (created 0700 by us, no setgid yet) gives new files the process's ids: chown only if they differ.
  const chown = st.owners && !(st.freshDirs.has(parentDir) && h.uid === st.uid && h.gid === st.gid);
  // chown and (for non-root) writes clear setuid/setgid, so those modes are set again afterwards.
  const special = (h.mode & 0o7000) !== 0 && (chown || st.uid !== 0);
  return { chown, chmod: (h.mode & st.umask) !== 0 || special };
}

/** A hard link to a path of this or an earlier layer (never a directory, never into an ignored path). */
async function applyHardlink(st: State, h: TarHeader, target: string, host: string, existing: Stats | undefined): Promise<void> {
  const src = await st.rootfs.resolveFull(cleanPath(h.linkname), { followFinal: false, cache: st.cache });
  if (ignored(st, src.container)) {
    warn(st, `hardlink "${h.name}" -> "${h.linkname}" points into an ignored path: skipped`);
    return;
  }
  if (st.layerPaths.has(src.container)) await settle(st);
  const srcStat = await lstatOrUndefined(src.host);
  if (!srcStat) {
    throw new BuilderError('ROOTFS_HARDLINK_TARGET_MISSING', `hardlink "${h.name}" -> "${h.linkname}": target ${src.container} does not exist in this or an earlier layer`, {
      hint: 'the layer is inconsistent or its base layers were not extracted first; extract all layers in order',
    });
  }
  if (srcStat.isDirectory()) {
    throw new BuilderError('ROOTFS_HARDLINK_TO_DIRECTORY', `hardlink "${h.name}" -> "${h.linkname}": target ${src.container} is a directory`, {
      hint: 'hard links to directories are not allowed; the layer is malformed',
    });
  }
  if (src.host === host) return;
  if (existing) await removePath(st, target, existing);
  st.layerPaths.add(target);
  await link(src.host, host);
}

/** A device node or fifo: created when allowed (root), else skipped with a warning. */
async function applyNode(st: State, h: TarHeader, target: string, host: string, existing: Stats | undefined): Promise<void> {
  if (!st.devices) {
    warn(st, `${h.type} "${h.name}" skipped: creating device nodes and fifos needs root`);
    return;
  }
  if (existing) await removePath(st, target, existing);
  st.layerPaths.add(target);
  await makeNode(st, host, h);
  addXattrs(st, target, host, h);
}

/** The one place the ignore list is consulted: always with the canonical form of a path. */
function ignored(st: State, containerPath: string): boolean {
  return st.opts.ignore !== undefined && st.opts.ignore(cleanPath(containerPath));
}

/**
 * Refuses whiteout names that do not name one child of their directory (".wh.", ".wh..", ".wh...": nothing, the
 * directory itself, its parent) and whiteout or opaque markers used as a directory on the way to another entry.
 * A ".wh..wh.*" directory other than the opaque marker is AUFS metadata (hardlink targets) and stays allowed.
 */
function checkWhiteoutNames(clean: string): void {
  if (!clean.includes(`/${WH_PREFIX}`)) return;
  const parts = clean.split('/').slice(1);
  for (let i = 0; i < parts.length; i++) {
    const c = parts[i]!;
    if (!c.startsWith(WH_PREFIX)) continue;
    const final = i === parts.length - 1;
    if (c === WH_OPAQUE) {
      if (final) continue;
      throw new BuilderError('ROOTFS_WHITEOUT_INVALID', `the opaque-directory marker "${WH_OPAQUE}" is used as a directory in "${clean}"`, {
        hint: 'the layer is malformed or hostile: an opaque marker is a file that only marks its directory; rebuild the image with a standard tool',
      });
    }
    const victim = c.slice(WH_PREFIX.length);
    if (!NOT_A_CHILD.has(victim)) continue;
    throw new BuilderError('ROOTFS_WHITEOUT_INVALID', `whiteout "${c}" in "${clean}" names ${victim === '' ? 'no file' : `"${victim}"`}, not a file in its directory${final ? '' : ' (and is used as a directory)'}`, {
      hint: 'the layer is malformed or hostile: a whiteout ".wh.NAME" deletes one file NAME next to it and can never name "", "." or ".."; rebuild the image with a standard tool',
    });
  }
}

async function lstatOrUndefined(host: string): Promise<Stats | undefined> {
  try {
    return await lstat(host);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

function setDirMeta(st: State, target: string, host: string, h: TarHeader): void {
  st.dirMeta.set(target, { host, uid: h.uid, gid: h.gid, mode: h.mode & 0o7777, atime: h.atime ?? h.mtime, mtime: h.mtime });
}

function addXattrs(st: State, target: string, host: string, h: TarHeader): void {
  if (h.xattrs.size === 0 || st.opts.xattrs === false) return;
  const ops: XattrOp[] = [];
  for (const [name, value] of h.xattrs) ops.push({ path: host, name, value });
  st.xattrs.set(target, ops);
}

/** Records a background operation; its failure fails the extraction at the next entry or the end. */
function track(st: State, p: Promise<void>): void {
  // Named now: by the time it fails, extraction has moved on to later entries.
  const where = `${layerLabel(st.opts)}, entry "${st.entry}"`;
  st.pending.push(
    p.catch((err) => {
      st.firstError ??= isBuilderError(err) ? err : fsError('ROOTFS_EXTRACT_FAILED', `${where}: cannot write`, err);
    }),
  );
}

/** Waits for every background operation; throws the first failure. */
async function settle(st: State): Promise<void> {
  while (st.pending.length > 0) await Promise.all(st.pending.splice(0));
  if (st.firstError !== undefined) throw st.firstError;
}

/** Removes a path (recursively) and forgets everything this extraction knew about it and below it. */
async function removePath(st: State, target: string, known: Stats | undefined): Promise<void> {
  // A path written earlier in this layer may still have background metadata writes in flight.
  if (st.layerPaths.has(target)) await settle(st);
  const host = st.rootfs.hostPath(target);
  const stat = known ?? (await lstatOrUndefined(host));
  if (!stat) return;
  if (stat.isDirectory()) {
    await settle(st);
    if (st.opts.ignore) await removeTreeRespectingIgnore(st, target);
    else await rm(host, { recursive: true, force: true });
    st.cache.clear();
    for (const m of [st.dirMeta, st.xattrs]) for (const k of m.keys()) if (isUnder(k, target)) m.delete(k);
    for (const k of st.freshDirs) if (isUnder(k, target)) st.freshDirs.delete(k);
  } else {
    await unlink(host);
    st.cache.delete(target);
    st.xattrs.delete(target);
  }
}

/** In-place mode: never descend into ignored paths (mount points, /proc) while deleting. */
async function removeTreeRespectingIgnore(st: State, target: string): Promise<boolean> {
  const host = st.rootfs.hostPath(target);
  if (ignored(st, target)) return false;
  const stat = await lstatOrUndefined(host);
  if (!stat) return true;
  if (!stat.isDirectory()) {
    await unlink(host);
    return true;
  }
  let all = true;
  for (const name of await readdir(host)) {
    if (!(await removeTreeRespectingIgnore(st, joinPath(target, name)))) all = false;
  }
  if (all) await rm(host, { recursive: true, force: true });
  return all;
}

/** Opaque dir: drop everything from lower layers below it, keep what this layer already wrote. */
async function applyOpaque(st: State, dir: string): Promise<void> {
  const host = st.rootfs.hostPath(dir);
  const stat = await lstatOrUndefined(host);
  if (!stat?.isDirectory()) return;
  // Every path this layer wrote below dir, and each of their ancestors: those survive (one pass, not per child).
  const keep = new Set<string>();
  for (const q of st.layerPaths) {
    if (q === dir || !isUnder(q, dir)) continue;
    for (let p = q; p !== dir && !keep.has(p); p = p.slice(0, Math.max(1, p.lastIndexOf('/')))) keep.add(p);
  }
  const prune = async (d: string): Promise<void> => {
    for (const name of await readdir(st.rootfs.hostPath(d))) {
      const child = joinPath(d, name);
      if (ignored(st, child)) continue;
      if (!keep.has(child)) {
        await removePath(st, child, undefined);
        continue;
      }
      const cs = await lstatOrUndefined(st.rootfs.hostPath(child));
      if (cs?.isDirectory()) await prune(child);
    }
  };
  await prune(dir);
}

/** Which metadata calls a new file still needs after open(mode). */
interface Finish {
  chown: boolean;
  /** Needed when the umask strips bits, or after a chown (which clears setuid/setgid). */
  chmod: boolean;
}

const CREATE = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;

/** Streams the body into a fresh file (O_EXCL|O_NOFOLLOW: never through a symlink or an old hardlink). */
async function writeFile(st: State, host: string, entry: TarEntry, fin: Finish): Promise<void> {
  const h = entry.header;
  const fh = await open(host, CREATE, h.mode & 0o7777);
  let inflight: Promise<void> | undefined;
  try {
    let pos = 0;
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let busy = false;
    const flush = async (): Promise<void> => {
      if (inflight) await inflight;
      const bufs = batch;
      const at = pos;
      pos += batchBytes;
      batch = [];
      batchBytes = 0;
      busy = true;
      inflight = writeAll(fh, bufs, at).finally(() => {
        busy = false;
      });
      // a write failing (disk full) while the next chunks are read is awaited below, never an unhandled rejection
      inflight.catch(() => undefined);
    };
    for await (const chunk of entry.body) {
      batch.push(chunk);
      batchBytes += chunk.length;
      // Overlap: gather the next chunks while one write is on the thread pool; bounded by WRITE_BATCH.
      if (!busy || batchBytes >= WRITE_BATCH) await flush();
    }
    if (batchBytes > 0) await flush();
    if (inflight) await inflight;
    st.bytes += pos;
  } catch (err) {
    await inflight?.catch(() => undefined);
    await fh.close().catch(() => undefined);
    throw err;
  }
  await room(st);
  track(st, finishFile(fh, h, fin));
}

/**
 * Small files: the body is gathered (slices of the input, no copy) and the whole create-write-chown-
 * chmod-utimes-close chain runs in the background, so many files share the thread pool at once.
 */
async function writeSmallFile(st: State, host: string, entry: TarEntry, fin: Finish): Promise<void> {
  const h = entry.header;
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of entry.body) {
    parts.push(chunk);
    size += chunk.length;
  }
  st.bytes += size;
  await room(st);
  track(
    st,
    (async () => {
      const fh = await open(host, CREATE, h.mode & 0o7777);
      try {
        if (size > 0) await writeAll(fh, parts, 0);
      } catch (err) {
        await fh.close().catch(() => undefined);
        throw err;
      }
      await finishFile(fh, h, fin);
    })(),
  );
}

/** Bounds background work (each item may hold an fd and up to SMALL_FILE bytes). */
async function room(st: State): Promise<void> {
  while (st.pending.length >= MAX_PENDING) await st.pending.shift();
}

async function writeAll(fh: FileHandle, bufs: Buffer[], pos: number): Promise<void> {
  let at = pos;
  let list = bufs;
  while (list.length > 0) {
    const { bytesWritten } = await fh.writev(list, at);
    at += bytesWritten;
    let skip = bytesWritten;
    // Short writes (disk nearly full, signals) continue where they stopped.
    while (list.length > 0 && skip >= list[0]!.length) {
      skip -= list[0]!.length;
      list = list.slice(1);
    }
    if (skip > 0 && list.length > 0) list = [list[0]!.subarray(skip), ...list.slice(1)];
  }
}

/** fd-based, so it is order-safe even if a later entry replaces the path: chown before chmod (chown clears setuid). */
async function finishFile(fh: FileHandle, h: TarHeader, fin: Finish): Promise<void> {
  try {
    if (fin.chown) await fh.chown(h.uid, h.gid);
    if (fin.chmod) await fh.chmod(h.mode & 0o7777);
    await fh.utimes(h.atime ?? h.mtime, h.mtime);
  } finally {
    await fh.close();
  }
}

/** Node has no mknod(2): coreutils mknod, argv only (no shell). */
async function makeNode(st: State, host: string, h: TarHeader): Promise<void> {
  const mode = (h.mode & 0o7777).toString(8);
  const args =
    h.type === 'fifo' ? ['-m', mode, '--', host, 'p'] : ['-m', mode, '--', host, h.type === 'char' ? 'c' : 'b', String(h.devmajor), String(h.devminor)];
  await new Promise<void>((resolve, reject) => {
    execFile('mknod', args, (err, _stdout, stderr) => {
      if (!err) resolve();
      else
        reject(
          new BuilderError('ROOTFS_MKNOD_FAILED', `cannot create ${h.type} "${h.name}": ${String(stderr).trim() || err.message}`, {
            hint: 'device nodes need root (CAP_MKNOD) and the coreutils mknod program',
            cause: err,
          }),
        );
    });
  });
  if (st.owners) await lchown(host, h.uid, h.gid);
  // mknod -m is applied after the umask only for permission bits; chmod again for setuid/sticky and after chown.
  await chmod(host, h.mode & 0o7777);
  await lutimes(host, h.atime ?? h.mtime, h.mtime);
}

/** End of layer: directory owners and modes, then xattrs (after every chown), then directory times (after every write). */
async function finish(st: State): Promise<void> {
  const dirs = [...st.dirMeta.values()];
  await inBatches(dirs, async (d) => {
    if (st.owners) await lchown(d.host, d.uid, d.gid);
    await chmod(d.host, d.mode);
  });
  const ops = [...st.xattrs.values()].flat();
  if (ops.length > 0) {
    const r = await setXattrs(ops);
    if (r.unavailable) warn(st, `${ops.length} extended attribute(s) not applied: ${r.unavailable}`);
    for (const f of r.failed) warn(st, `extended attribute ${f.op.name} on ${f.op.path} not applied: ${f.reason}`);
  }
  await inBatches(dirs, (d) => lutimes(d.host, d.atime, d.mtime));
}

/** Runs fn over items with bounded concurrency (the libuv pool has 4 threads; a few more keep it busy). */
async function inBatches<T>(items: T[], fn: (t: T) => Promise<void>, width = 16): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}
