// Streams an image's layers once, in order, and keeps the packages the final filesystem holds, each with the layer that
// added it. Only package databases (small) are read into memory; executables are scanned chunk by chunk for Go build info.
import { createGunzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { PassThrough, type Readable } from 'node:stream';
import type { Digest } from '../digest/index.js';
import { layerCompression, type Layer } from '../image/index.js';
import { readTar } from '../rootfs/index.js';
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

async function readBody(body: AsyncIterable<Buffer>, size: number): Promise<string | undefined> {
  if (size > MAX_DB) {
    for await (const _ of body) void _;
    return undefined;
  }
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

/** The Go build info section of an executable (the magic and what follows), or undefined; reads the body to its end. */
async function goSection(body: AsyncIterable<Buffer>): Promise<Buffer | undefined> {
  let tail = Buffer.alloc(0);
  let found: Buffer | undefined;
  let first = true;
  for await (const c of body) {
    if (first && !(c.length >= 4 && c[0] === 0x7f && c[1] === 0x45 && c[2] === 0x4c && c[3] === 0x46)) return drain(body);
    first = false;
    if (found) {
      if (found.length < GO_INFO_BYTES) found = Buffer.concat([found, c.subarray(0, GO_INFO_BYTES - found.length)]);
      continue;
    }
    const buf = tail.length > 0 ? Buffer.concat([tail, c]) : c;
    const i = buf.indexOf(GO_BUILDINFO_MAGIC);
    if (i >= 0) found = Buffer.from(buf.subarray(i, i + GO_INFO_BYTES));
    else tail = Buffer.from(buf.subarray(Math.max(0, buf.length - GO_BUILDINFO_MAGIC.length + 1)));
  }
  return found;
}

async function drain(body: AsyncIterable<Buffer>): Promise<undefined> {
  for await (const _ of body) void _;
  return undefined;
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
function tarStream(layer: Layer, blob: Readable): Readable {
  const kind = layerCompression(layer.descriptor.mediaType) ?? 'gzip';
  if (kind === 'none') return blob;
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const decompress = kind === 'zstd' ? new ZstdStream(requireZstd(`layer ${layer.descriptor.digest}`), ['-d'], `layer ${layer.descriptor.digest}`) : createGunzip();
  pipeline(blob, decompress, out).catch((err: unknown) => out.destroy(err as Error));
  return out;
}

function removeUnder(files: Map<string, FileState>, dir: string, self: boolean): void {
  for (const p of [...files.keys()]) if ((self && p === dir) || p.startsWith(`${dir}/`)) files.delete(p);
}

/** Applies one layer's entries to the tracked files: whiteouts remove, package databases are (re)read. */
async function scanLayer(layer: Layer, files: Map<string, FileState>, skipped: string[]): Promise<void> {
  const digest = layer.descriptor.digest;
  for await (const e of readTar(tarStream(layer, await layer.open()))) {
    const p = e.header.name.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
    const base = p.slice(p.lastIndexOf('/') + 1);
    const dir = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '';
    if (base === '.wh..wh..opq') { removeUnder(files, dir, false); continue; }
    if (base.startsWith('.wh.')) { removeUnder(files, dir ? `${dir}/${base.slice(4)}` : base.slice(4), true); continue; }
    // directories merge with what lies below; anything else replaces the path (and a directory that was there)
    if (e.header.type === 'directory') {
      files.delete(p);
      continue;
    }
    removeUnder(files, p, true);
    if (e.header.type !== 'file') continue;
    const kind = classify(p);
    if (kind === 'rpm-db') {
      skipped.push(`RPM database /${p} (layer ${digest}): not read, it needs rpm itself`);
      files.set(p, { kind, packages: [] });
      continue;
    }
    let found: FoundPackage[] = [];
    if (kind !== undefined) {
      const text = await readBody(e.body, e.header.size);
      if (text === undefined) { skipped.push(`/${p} (layer ${digest}): larger than ${MAX_DB} bytes, not read`); continue; }
      if (kind === 'os-release') { files.set(p, { kind, packages: [], osId: parseOsReleaseId(text) ?? '' }); continue; }
      found = parse(kind, text);
    } else if ((e.header.mode & 0o111) !== 0 && e.header.size > 1024) {
      const section = await goSection(e.body);
      if (!section) continue;
      const mods = parseGoBuildInfo(section);
      if (!mods) { skipped.push(`Go binary /${p}: build info of Go < 1.18 not read`); continue; }
      found = mods;
    } else continue;
    files.set(p, { kind: kind ?? 'go', packages: found.map((f) => ({ ...f, path: p, layer: digest })) });
  }
}

/** Packages of the image whose layers these are (bottom first); each layer is read once, streaming. */
export async function scanImage(layers: readonly Layer[]): Promise<ScanResult> {
  const files = new Map<string, FileState>();
  const skipped: string[] = [];
  // earliest layer each package (by purl and path) was seen in, while its file keeps listing it
  const firstSeen = new Map<string, Digest>();
  for (const layer of layers) {
    await scanLayer(layer, files, skipped);
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
