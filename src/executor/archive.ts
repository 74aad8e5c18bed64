// ADD's archives: recognised by their bytes (moby's isArchivePath), decompressed (zlib, or the bzip2/xz/zstd programs) and extracted.
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { BuilderError } from '../errors.js';
import { extractLayer, looksLikeTar, type RootFs } from '../rootfs/index.js';
import type { EventSink } from '../util/events.js';
import type { Host } from '../util/host.js';

export type Compression = 'gzip' | 'bzip2' | 'xz' | 'zstd' | 'none';

/** The compression moby's DecompressStream recognises from the first bytes. */
export function sniffCompression(head: Buffer): Compression {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return 'gzip';
  if (head.length >= 3 && head.toString('latin1', 0, 3) === 'BZh') return 'bzip2';
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

const PROGRAMS: Record<'bzip2' | 'xz' | 'zstd', { cmd: string; pkg: string }> = {
  bzip2: { cmd: 'bzip2', pkg: 'bzip2' },
  xz: { cmd: 'xz', pkg: 'xz-utils' },
  zstd: { cmd: 'zstd', pkg: 'zstd' },
};

/** The file's bytes, decompressed. Stopping early (return) ends a decompressor process we started. */
export async function* decompressed(file: string, kind: Compression, label: string): AsyncGenerator<Buffer> {
  if (kind === 'none' || kind === 'gzip') {
    const src = createReadStream(file, { highWaterMark: 256 * 1024 });
    const stream = kind === 'gzip' ? src.pipe(createGunzip({ chunkSize: 128 * 1024 })) : src;
    if (kind === 'gzip') src.on('error', (e) => stream.destroy(e));
    try {
      for await (const b of stream) yield b as Buffer;
    } catch (err) {
      throw corrupt(label, kind, (err as Error).message, err);
    } finally {
      src.destroy();
      stream.destroy();
    }
    return;
  }
  const prog = PROGRAMS[kind];
  const fh = await open(file, 'r');
  const child = spawn(prog.cmd, ['-d', '-c'], { stdio: [fh.fd, 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; err?: NodeJS.ErrnoException }>((resolve) => {
    child.on('error', (err: NodeJS.ErrnoException) => resolve({ code: null, err }));
    child.on('close', (code) => resolve({ code }));
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString('utf8');
  });
  let finished = false;
  try {
    for await (const b of child.stdout!) yield b as Buffer;
    const r = await exited;
    if (r.err?.code === 'ENOENT') {
      throw new BuilderError('ADD_DECOMPRESSOR_MISSING', `${label} is ${kind}-compressed, and the "${prog.cmd}" program is not installed`, {
        hint: `install it (Debian: apt-get install ${prog.pkg}) or ADD an uncompressed or gzip tar`,
      });
    }
    if (r.err || r.code !== 0) throw corrupt(label, kind, r.err?.message ?? (stderr.trim() || `${prog.cmd} exited ${r.code}`));
    finished = true;
  } finally {
    if (!finished && child.exitCode === null && child.pid !== undefined) child.kill('SIGKILL');
    await fh.close().catch(() => undefined);
  }
}

function corrupt(label: string, kind: Compression, why: string, cause?: unknown): BuilderError {
  return new BuilderError('ADD_ARCHIVE_INVALID', `${label}: cannot decompress (${kind}): ${why}`, {
    hint: 'the archive is truncated or corrupt; recreate it, or COPY it to keep it as a file',
    ...(cause !== undefined ? { cause } : {}),
  });
}

/**
 * The file's compression when it is a tar archive (plain or compressed), else undefined: a compressed file that is not
 * a tar, or any other file, is copied as it is (moby's isArchivePath: decompress, then a tar header must parse).
 */
export async function archiveKind(file: string, label: string): Promise<Compression | undefined> {
  const fh = await open(file, 'r');
  let head: Buffer;
  try {
    const b = Buffer.alloc(6);
    const { bytesRead } = await fh.read(b, 0, 6, 0);
    head = b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  const kind = sniffCompression(head);
  const chunks: Buffer[] = [];
  let have = 0;
  try {
    for await (const b of decompressed(file, kind, label)) {
      chunks.push(b);
      have += b.length;
      if (have >= 1024) break;
    }
  } catch (err) {
    // A missing program is worth saying; bytes that do not decompress are simply not an archive.
    if (err instanceof BuilderError && err.code === 'ADD_DECOMPRESSOR_MISSING') throw err;
    if (have === 0) return undefined;
  }
  return looksLikeTar(Buffer.concat(chunks)) ? kind : undefined;
}

export interface UnpackOptions {
  /** ADD --chown: every entry gets this owner (moby's ChownOpts); otherwise the tar's owners are kept. */
  chown?: { uid: number; gid: number };
  /** Container paths (relative to `dest`'s root) to leave alone. */
  ignore?: (containerPath: string) => boolean;
  emit?: EventSink;
  /** Who extracts: its ids, umask and zstd program (src/rootfs ExtractOptions.host; required: without it every mode gets an fchmod). */
  host: Pick<Host, 'uid' | 'gid' | 'umask' | 'zstd'>;
}

/**
 * Extracts the archive into `dest` (a root of its own, as moby's chrootarchive.Untar: no entry, link or symlink leads
 * out of it), merging with what is there. ".wh." names are plain files here: ADD does not interpret whiteouts.
 * Returns the paths written, relative to `dest`.
 */
export async function unpackArchive(dest: RootFs, file: string, kind: Compression, label: string, opts: UnpackOptions): Promise<string[]> {
  const written: string[] = [];
  await extractLayer(dest, Readable.from(decompressed(file, kind, label)), {
    gzip: false,
    whiteouts: false,
    rootMeta: false,
    layer: label,
    onEntry: (p) => written.push(p),
    ...(opts.chown ? { chown: opts.chown } : {}),
    ...(opts.ignore ? { ignore: opts.ignore } : {}),
    ...(opts.emit ? { emit: opts.emit } : {}),
    host: opts.host,
  });
  return written;
}
