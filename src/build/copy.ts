// COPY/ADD into a stage root with Docker's destination rules, owners and modes; returns the container paths it wrote.
import { constants as fsc } from 'node:fs';
import { chmod, copyFile, lchown, lstat, lutimes, mkdir, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BuilderError } from '../errors.js';
import type { ResolveCache, RootFs } from '../rootfs/index.js';
import type { CopySource, CopySourceMatch, CopyEntry } from './sources.js';

export interface CopyOptions {
  /** Expanded destination as written (trailing slash significant). */
  dest: string;
  /** Working directory relative destinations resolve against. */
  workdir: string;
  /** Owner of everything written (Docker: 0:0 unless --chown). */
  uid: number;
  gid: number;
  /** COPY --from without --chown: keep the source's owners (the top directory itself still gets uid:gid), as BuildKit. */
  preserveOwner?: boolean;
  /** --chmod: mode for files and directories copied. */
  mode?: number;
  /** file:line for errors. */
  where: string;
}

/** Parses --chmod: octal only (what Docker's classic builder and kaniko accept). */
export function parseChmod(s: string, where: string): number {
  if (!/^[0-7]{3,4}$/.test(s)) {
    throw new BuilderError('COPY_CHMOD_INVALID', `${where}: invalid --chmod=${s}`, { hint: 'give an octal mode such as --chmod=755 or --chmod=0644' });
  }
  return parseInt(s, 8);
}

const PERM_MASK = 0o7777;

async function runPool<T>(items: AsyncIterable<T> | Iterable<T>, limit: number, fn: (t: T) => Promise<void>): Promise<void> {
  const running = new Set<Promise<void>>();
  let failure: unknown;
  for await (const it of items) {
    if (failure) break;
    const p = fn(it).catch((e) => { failure ??= e; }).finally(() => running.delete(p));
    running.add(p);
    if (running.size >= limit) await Promise.race(running);
  }
  await Promise.all(running);
  if (failure) throw failure;
}

/** Replaces whatever is at `host` (not following a final symlink) so a new entry can be created there. */
async function clearFor(host: string, type: 'file' | 'dir' | 'symlink'): Promise<'dir-exists' | 'clear'> {
  const st = await lstat(host).catch(() => undefined);
  if (!st) return 'clear';
  if (st.isDirectory()) {
    if (type === 'dir') return 'dir-exists';
    await rm(host, { recursive: true, force: true });
    return 'clear';
  }
  await unlink(host);
  return 'clear';
}

/**
 * Copies the matched sources into the root. A directory source copies its contents; a file goes to
 * DEST/name when DEST ends with "/" or is an existing directory, else to DEST. More than one source
 * requires a directory destination ending in "/".
 */
export async function copyInto(rootfs: RootFs, source: CopySource, patterns: readonly string[], opts: CopyOptions): Promise<string[]> {
  const matches = await source.resolve(patterns);
  return copyMatches(rootfs, matches, opts);
}

export async function copyMatches(rootfs: RootFs, matches: readonly CopySourceMatch[], opts: CopyOptions): Promise<string[]> {
  const destPath = path.posix.resolve(opts.workdir || '/', opts.dest);
  const destSlash = opts.dest.endsWith('/') || opts.dest.endsWith('/.') || opts.dest === '.';
  if (matches.length > 1 && !destSlash) {
    const existing = await rootfs.lstat(destPath, { followFinal: true });
    if (!existing?.isDirectory()) {
      throw new BuilderError('COPY_DEST_NOT_DIR', `${opts.where}: copying ${matches.length} sources to "${opts.dest}", which is not a directory`, {
        hint: 'when COPY has more than one source, the destination must be a directory and end with a /',
      });
    }
  }
  const cache: ResolveCache = new Map();
  const written: string[] = [];
  const dirsMeta: Array<{ host: string; entry: CopyEntry }> = [];
  const own = { uid: opts.uid, gid: opts.gid };
  const ownerOf = (e: CopyEntry): { uid: number; gid: number } =>
    opts.preserveOwner && !(e.type === 'dir' && e.path === '') ? { uid: e.stat.uid, gid: e.stat.gid } : own;

  for (const m of matches) {
    let target: string;
    if (m.type === 'dir') {
      target = destPath;
    } else {
      const destIsDir = destSlash || matches.length > 1 || (await rootfs.lstat(destPath, { followFinal: true }))?.isDirectory();
      target = destIsDir ? path.posix.join(destPath, m.name) : destPath;
    }
    // Parents of the target are created owned by the --chown user, as BuildKit does.
    const parent = await rootfs.mkdirAll(path.posix.dirname(target), { ...own, mode: 0o755, cache });
    const targetContainer = path.posix.join(parent.container, path.posix.basename(target));
    const dirHosts = new Map<string, string>([['', path.join(parent.host, path.posix.basename(target))]]);

    const placeEntry = async (e: CopyEntry): Promise<void> => {
      const relDir = path.posix.dirname(e.path) === '.' ? '' : path.posix.dirname(e.path);
      const host =
        e.path === '' ? dirHosts.get('')! : path.join(dirHosts.get(relDir) ?? (await rootfs.resolve(path.posix.join(targetContainer, relDir), { followFinal: true, cache })), path.posix.basename(e.path));
      const container = e.path === '' ? targetContainer : path.posix.join(targetContainer, e.path);
      switch (e.type) {
        case 'dir': {
          if (e.path === '' && targetContainer === '/') {
            dirHosts.set('', rootfs.root);
            return;
          }
          const state = await clearFor(host, 'dir');
          if (state === 'clear') await mkdir(host, { mode: 0o755 });
          dirHosts.set(e.path, host);
          // The top directory's own metadata changes only when we created it (its contents are what is copied).
          if (e.path !== '' || state === 'clear') dirsMeta.push({ host, entry: e });
          written.push(container);
          return;
        }
        case 'file':
          await clearFor(host, 'file');
          await copyFile(e.abs, host, fsc.COPYFILE_FICLONE);
          await lchown(host, ownerOf(e).uid, ownerOf(e).gid);
          await chmod(host, opts.mode ?? e.stat.mode & PERM_MASK);
          await lutimes(host, e.stat.atime, e.stat.mtime);
          written.push(container);
          return;
        case 'symlink':
          await clearFor(host, 'symlink');
          await symlink(e.linkTarget ?? '', host);
          await lchown(host, ownerOf(e).uid, ownerOf(e).gid);
          await lutimes(host, e.stat.atime, e.stat.mtime);
          written.push(container);
          return;
      }
    };

    // Directories are placed in walk order (parents first); files and links of a directory in parallel.
    const batch: CopyEntry[] = [];
    const flush = async (): Promise<void> => {
      await runPool(batch.splice(0), 16, placeEntry);
    };
    for await (const e of m.entries()) {
      if (e.type === 'dir') {
        await flush();
        await placeEntry(e);
      } else {
        batch.push(e);
        if (batch.length >= 256) await flush();
      }
    }
    await flush();
  }
  // Directory metadata last: writing their contents changed their mtimes.
  for (const { host, entry } of dirsMeta.reverse()) {
    await lchown(host, ownerOf(entry).uid, ownerOf(entry).gid);
    await chmod(host, opts.mode ?? entry.stat.mode & PERM_MASK);
    await lutimes(host, entry.stat.atime, entry.stat.mtime);
  }
  return written;
}

/** Writes a COPY heredoc as a file (mode 0644 unless --chmod) and returns its container path. */
export async function writeHeredocFile(rootfs: RootFs, name: string, content: string, opts: CopyOptions): Promise<string> {
  const destPath = path.posix.resolve(opts.workdir || '/', opts.dest);
  const isDir = opts.dest.endsWith('/') || (await rootfs.lstat(destPath, { followFinal: true }))?.isDirectory();
  const target = isDir ? path.posix.join(destPath, name) : destPath;
  const parent = await rootfs.mkdirAll(path.posix.dirname(target), { uid: opts.uid, gid: opts.gid, mode: 0o755 });
  const host = path.join(parent.host, path.posix.basename(target));
  await clearFor(host, 'file');
  await writeFile(host, content, { mode: opts.mode ?? 0o644 });
  await chmod(host, opts.mode ?? 0o644);
  await lchown(host, opts.uid, opts.gid);
  return path.posix.join(parent.container, path.posix.basename(target));
}
