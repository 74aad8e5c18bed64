// Content hashing of selected COPY/ADD sources for cache keys: paths, types, permission bits, link targets and file bytes; never mtime or owners.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Digest } from '../digest/digest.js';
import { BuilderError } from '../errors.js';
import type { FileHashCache, FileIdentity } from './hash-cache.js';
import type { BuildContext } from './open.js';
import { walkSource, type SourceMatch } from './sources.js';

// Bump when the record format changes, so old cache keys stop matching.
const FORMAT = 'builder-context-sources-v1';

/**
 * A digest of what copying `matches` (in order) would produce. Per match: its name as COPY uses it
 * (the basename of a file or symlink, "." for a directory whose content is copied); per walked entry:
 * type, path below the match, permission bits (mode & 0o7777), symlink target, and the sha256 of a
 * file's bytes (read as a stream). Mtime and owners are left out: COPY's --chown decides owners.
 */
export async function hashSources(ctx: BuildContext, matches: readonly SourceMatch[], opts: HashOptions = {}): Promise<Digest> {
  return hashSelection(matches.map((m) => ({ name: m.type === 'dir' ? '.' : path.posix.basename(m.rel), entries: walkSource(ctx, m) })), opts);
}

export interface HashOptions {
  /** Files whose stats match a remembered entry are not read again; files read are remembered. */
  fileHashes?: FileHashCache;
}

/** What hashSelection reads of an entry: the fields COPY places (see hashSources). */
export interface HashableEntry {
  readonly path: string;
  readonly abs: string;
  readonly type: 'file' | 'dir' | 'symlink';
  /** With dev/ino/mtimeMs/ctimeMs (an lstat's), a file hash cache can stand in for reading the file. */
  readonly stat: { mode: number; size?: number; dev?: number; ino?: number; mtimeMs?: number; ctimeMs?: number };
  readonly linkTarget?: string;
}

/**
 * hashSources over already-selected entry streams (COPY --exclude/--parents select a subset of the walk): the same
 * record format, so a selection equal to a plain walk has the same digest.
 */
export async function hashSelection(groups: Iterable<{ name: string; entries: AsyncIterable<HashableEntry> }>, opts: HashOptions = {}): Promise<Digest> {
  const h = createHash('sha256');
  h.update(`${FORMAT}\0`);
  // Files are read several at a time (30,000 small files one by one is most of a cached rebuild); records stay in order.
  const window: Array<Promise<string>> = [];
  const next = async (): Promise<void> => {
    h.update(await window.shift()!);
  };
  for (const g of groups) {
    h.update(`match\0${g.name}\0`);
    for await (const e of g.entries) {
      const record = recordOf(e, opts.fileHashes);
      record.catch(() => undefined); // awaited in order below
      window.push(record);
      if (window.length >= HASH_WINDOW) await next();
    }
    while (window.length > 0) await next();
  }
  return `sha256:${h.digest('hex')}`;
}

const HASH_WINDOW = 32;

async function recordOf(e: HashableEntry, cache: FileHashCache | undefined): Promise<string> {
  const mode = (e.stat.mode & 0o7777).toString(8);
  const payload = e.type === 'file' ? await cachedSha256(e, cache) : e.type === 'symlink' ? e.linkTarget ?? '' : '';
  // NUL never occurs in POSIX paths or link targets, so the fields cannot run into each other.
  return `${e.type}\0${e.path}\0${mode}\0${payload}\0`;
}

async function cachedSha256(e: HashableEntry, cache: FileHashCache | undefined): Promise<string> {
  const id = identity(e.stat);
  if (!cache || !id) return fileSha256(e.abs, e.path, e.stat.size);
  // The walk's lstat is the key; a second one after the read: a write in between is never remembered.
  const hit = cache.get(id);
  if (hit !== undefined) return hit;
  const hex = await fileSha256(e.abs, e.path, id.size);
  const after = await lstat(e.abs).catch((err: unknown) => {
    throw readFailed(e.path, err);
  });
  cache.set(id, after, hex);
  return hex;
}

function identity(st: HashableEntry['stat']): FileIdentity | undefined {
  const { dev, ino, size, mtimeMs, ctimeMs } = st;
  return dev !== undefined && ino !== undefined && size !== undefined && mtimeMs !== undefined && ctimeMs !== undefined
    ? { dev, ino, size, mtimeMs, ctimeMs }
    : undefined;
}

function readFailed(rel: string, err: unknown): BuilderError {
  return new BuilderError('CONTEXT_READ_FAILED', `cannot read "${rel}" in the build context: ${(err as Error).message}`, {
    hint: 'make the context readable by the user running the builder',
    cause: err,
  });
}

async function fileSha256(abs: string, rel: string, size: number | undefined): Promise<string> {
  const h = createHash('sha256');
  try {
    // small files in one read; large ones streamed (memory stays bounded by the window)
    if (size !== undefined && size <= 256 * 1024) h.update(await readFile(abs));
    else for await (const chunk of createReadStream(abs)) h.update(chunk as Buffer);
  } catch (err) {
    throw readFailed(rel, err);
  }
  return h.digest('hex');
}
