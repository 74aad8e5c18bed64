// Safe extraction of a tar or gzipped-tar build context into a directory: no entry may land outside it.
import { createWriteStream } from 'node:fs';
import { chmod, link, lstat, mkdir, rm, symlink, unlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import * as tarStream from 'tar-stream';
import { BuilderError } from '../errors.js';
import { goClean } from './gopath.js';

type TarExtract = ReturnType<typeof tarStream.extract>;
type TarEntry = TarExtract extends AsyncIterable<infer E> ? E : never;
interface DirMode { abs: string; mode: number; mtime: Date | undefined }

/**
 * Extracts `input` (tar, or gzip-compressed tar, detected by magic bytes) into the existing empty
 * directory `dest`. Rejects (CONTEXT_TAR_UNSAFE) absolute names, names escaping via `..`, entries
 * written through a symlinked parent, and hard links pointing outside. `what` names the source in errors.
 */
export async function extractTarContext(input: Readable, dest: string, what: string): Promise<void> {
  const tarBytes = await decompressing(input, what);
  const extract = tarStream.extract();
  const dirModes: DirMode[] = [];
  const consume = (async () => {
    for await (const entry of extract) {
      await extractEntry(entry, dest, what, dirModes);
    }
  })();
  // Both must settle: a failing entry destroys the parser, a failing source fails the consumer.
  const results = await Promise.allSettled([feed(tarBytes, extract), consume]);
  if (results[1].status === 'rejected') throw asTarError(results[1].reason, what);
  if (results[0].status === 'rejected') throw asTarError(results[0].reason, what);
  // Directory modes last, deepest first: a read-only directory must not block its own extraction.
  dirModes.sort((a, b) => b.abs.length - a.abs.length);
  for (const d of dirModes) {
    await chmod(d.abs, d.mode);
    if (d.mtime) await utimes(d.abs, d.mtime, d.mtime);
  }
}

async function extractEntry(entry: TarEntry, dest: string, what: string, dirModes: DirMode[]): Promise<void> {
  const header = entry.header;
  try {
    const rel = safeRel(header.name, what);
    if (rel === '.') {
      // The root entry ("./") carries nothing we keep.
      entry.resume();
      return;
    }
    const abs = path.join(dest, rel);
    await assertNoSymlinkParents(dest, rel, header.name, what);
    const mode = (header.mode ?? 0o644) & 0o7777;
    switch (header.type) {
      case 'directory': {
        entry.resume();
        const existing = await lstat(abs).catch(() => undefined);
        if (existing && !existing.isDirectory()) await unlink(abs);
        if (!existing || !existing.isDirectory()) await mkdir(abs);
        dirModes.push({ abs, mode, mtime: header.mtime });
        return;
      }
      case 'file':
      case 'contiguous-file':
      case undefined:
      case null: {
        await ensureParent(dest, rel, header.name, what);
        await removeExisting(abs);
        // 'wx' (O_EXCL) never follows a symlink planted at the final name.
        await pipeline(entry, createWriteStream(abs, { flags: 'wx', mode: 0o600 }));
        await chmod(abs, mode);
        if (header.mtime) await utimes(abs, header.mtime, header.mtime);
        return;
      }
      case 'symlink': {
        entry.resume();
        await ensureParent(dest, rel, header.name, what);
        await removeExisting(abs);
        // The target is content, never followed while extracting; resolution later is scoped to the context.
        await symlink(header.linkname ?? '', abs);
        return;
      }
      case 'link':
        entry.resume();
        await extractHardlink(header, dest, rel, abs, what);
        return;
      default:
        // Devices, fifos and pax/gnu bookkeeping entries have no place in a build context.
        entry.resume();
        return;
    }
  } catch (err) {
    entry.resume();
    throw err;
  }
}

/** A hard link to an earlier file of the archive (inside dest, never a directory). */
async function extractHardlink(header: TarEntry['header'], dest: string, rel: string, abs: string, what: string): Promise<void> {
  const targetRel = safeRel(header.linkname ?? '', what, header.name);
  await assertNoSymlinkParents(dest, targetRel, header.name, what);
  const target = path.join(dest, targetRel);
  const st = await lstat(target).catch(() => undefined);
  if (!st || st.isDirectory()) {
    throw new BuilderError('CONTEXT_TAR_INVALID', `${what}: hard link "${header.name}" points to "${header.linkname}", which is not an earlier file in the archive`, {
      hint: 'recreate the archive with tar so that hard-link targets come before the links',
    });
  }
  await ensureParent(dest, rel, header.name, what);
  await removeExisting(abs);
  await link(target, abs);
}

/** The cleaned relative path of a tar name, or CONTEXT_TAR_UNSAFE when it is absolute or escapes. */
function safeRel(name: string, what: string, linkFrom?: string): string {
  const label = linkFrom === undefined ? `entry "${name}"` : `hard link "${linkFrom}" -> "${name}"`;
  if (name.startsWith('/') || /^[A-Za-z]:[\\/]/.test(name)) {
    throw unsafe(what, `${label} has an absolute path`);
  }
  const rel = goClean(name);
  if (rel === '..' || rel.startsWith('../')) throw unsafe(what, `${label} escapes the context directory via ".."`);
  return rel;
}

/** Every existing parent of rel inside dest must be a real directory, never a symlink. */
async function assertNoSymlinkParents(dest: string, rel: string, name: string, what: string): Promise<void> {
  const parts = rel.split('/');
  let cur = dest;
  for (let i = 0; i < parts.length - 1; i++) {
    cur = path.join(cur, parts[i]!);
    const st = await lstat(cur).catch(() => undefined);
    if (!st) return;
    if (st.isSymbolicLink()) {
      throw unsafe(what, `entry "${name}" would be written through the symlink "${parts.slice(0, i + 1).join('/')}"`);
    }
    if (!st.isDirectory()) {
      throw new BuilderError('CONTEXT_TAR_INVALID', `${what}: entry "${name}" is inside "${parts.slice(0, i + 1).join('/')}", which is not a directory`, {
        hint: 'the archive is inconsistent; recreate it with tar',
      });
    }
  }
}

/** Creates missing parent directories (tar archives may omit them). */
async function ensureParent(dest: string, rel: string, name: string, what: string): Promise<void> {
  const slash = rel.lastIndexOf('/');
  if (slash < 0) return;
  await mkdir(path.join(dest, rel.slice(0, slash)), { recursive: true });
  // Belt and braces: mkdir -p follows symlinks, so confirm none was traversed.
  await assertNoSymlinkParents(dest, rel, name, what);
}

/** A later entry replaces an earlier one of the same name, as tar does; directories are replaced whole. */
async function removeExisting(abs: string): Promise<void> {
  const st = await lstat(abs).catch(() => undefined);
  if (!st) return;
  if (st.isDirectory()) await rm(abs, { recursive: true, force: true });
  else await unlink(abs);
}

function unsafe(what: string, detail: string): BuilderError {
  return new BuilderError('CONTEXT_TAR_UNSAFE', `${what}: ${detail}`, {
    hint: 'the archive tries to write outside the context directory; recreate it from inside the context directory (tar -C DIR -cf ctx.tar .)',
  });
}

function asTarError(err: unknown, what: string): BuilderError {
  if (err instanceof BuilderError) return err;
  return new BuilderError('CONTEXT_TAR_INVALID', `${what}: cannot read the context archive: ${(err as Error)?.message ?? String(err)}`, {
    hint: 'pass a tar or gzip-compressed tar archive (tar -czf ctx.tar.gz -C DIR .); bzip2, xz and zstd are not supported',
    cause: err,
  });
}

/** Writes tar bytes into the (streamx) extractor with backpressure; ends it, or destroys it on error. */
async function feed(src: AsyncIterable<Buffer>, extract: TarExtract): Promise<void> {
  try {
    for await (const chunk of src) {
      if (extract.destroyed) return;
      if (!extract.write(chunk)) await drained(extract);
    }
    extract.end(undefined);
  } catch (err) {
    extract.destroy(err as Error);
    throw err;
  }
}

function drained(w: TarExtract): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      w.off('drain', done);
      w.off('close', done);
      resolve();
    };
    w.on('drain', done);
    w.on('close', done);
  });
}

/** The tar bytes of the input: gunzipped when it starts with the gzip magic. */
async function decompressing(input: Readable, what: string): Promise<Readable> {
  const it = input[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  const pending: Buffer[] = [];
  let done = false;
  // Enough bytes to recognise gzip, bzip2, xz and zstd magic numbers.
  while (head.length < 6) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as string);
    pending.push(chunk);
    head = Buffer.concat([head, chunk]);
  }
  const rest = Readable.from((async function* () {
    yield* pending;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value as Buffer;
    }
  })());
  if (head[0] === 0x1f && head[1] === 0x8b) {
    const gunzip = createGunzip();
    rest.on('error', (err) => gunzip.destroy(err));
    return rest.pipe(gunzip);
  }
  const magic = head.subarray(0, 6);
  const other =
    magic.subarray(0, 3).equals(Buffer.from('BZh')) ? 'bzip2'
    : magic.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) ? 'xz'
    : magic.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])) ? 'zstd'
    : undefined;
  if (other) {
    rest.destroy();
    throw new BuilderError('CONTEXT_UNSUPPORTED', `${what}: the context archive is ${other}-compressed`, {
      hint: `decompress it first or recreate it as .tar or .tar.gz (tar -czf ctx.tar.gz -C DIR .)`,
    });
  }
  return rest;
}
