// RootFs: a handle on a container root directory that resolves every path the way the kernel would under chroot.
import type { Stats } from 'node:fs';
import { lstat, mkdir, lchown, chmod, readFile, readlink } from 'node:fs/promises';
import * as path from 'node:path';
import { BuilderError, type ErrorCode } from '../errors.js';

/** Linux's MAXSYMLINKS: more symlinks than this in one lookup is ELOOP. */
export const MAX_SYMLINKS = 40;

/** A "." or ".." path component. */
const DOT_COMPONENT = /(^|\/)\.\.?(\/|$)/;

/**
 * Per-operation memo of what resolution has seen: canonical container path -> true (a real
 * directory) or the symlink's target. Valid only while nothing but its owner changes the tree.
 */
export type ResolveCache = Map<string, true | string>;

export interface ResolveOptions {
  /** Follow a symlink in the last component too (default false: like lstat/open(O_NOFOLLOW)). */
  followFinal?: boolean;
  /** Memo shared across calls of one operation (e.g. one layer extraction). */
  cache?: ResolveCache;
}

interface DirSpec {
  uid: number | undefined;
  gid: number | undefined;
  mode: number;
}

export interface MkdirOptions {
  /** Owner of created directories; left as the process's when undefined. */
  uid?: number;
  gid?: number;
  /** Mode of directories that get created (default 0o755); existing ones are left alone. */
  mode?: number;
  cache?: ResolveCache;
}

export interface Resolved {
  /** Absolute host path, always root or under it. */
  host: string;
  /** Canonical absolute container path ("/" for the root). */
  container: string;
}

/** Splits a container path into components; empty and "." ones are dropped, ".." kept. */
export function splitPath(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

/** Lexical clean of a container path: absolute, "..", "." and duplicate slashes folded, clamped at "/". */
export function cleanPath(p: string): string {
  const out: string[] = [];
  for (const c of splitPath(p)) {
    if (c === '..') out.pop();
    else out.push(c);
  }
  return '/' + out.join('/');
}

export class RootFs {
  /** Absolute host path of the root, without a trailing slash (except "/" itself). */
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  /** True when the root is the host's "/" (in-place mode): host and container paths coincide. */
  get inPlace(): boolean {
    return this.root === '/';
  }

  /** Host path of an already-canonical container path; no symlink resolution. */
  hostPath(canonical: string): string {
    if (canonical === '/' || canonical === '') return this.root;
    // Last line of defence: a "." or ".." component here would name the root itself or a path outside it.
    if (!canonical.startsWith('/') || DOT_COMPONENT.test(canonical)) {
      throw new BuilderError('ROOTFS_PATH_NOT_CANONICAL', `internal: container path "${canonical}" is not canonical (root ${this.root})`, {
        hint: 'this is a bug in builder (a path reached the filesystem without being cleaned); please report it with the image used',
      });
    }
    return this.root === '/' ? canonical : this.root + canonical;
  }

  /** Resolves a container path to a host path inside the root, following symlinks re-rooted at the root. */
  async resolve(containerPath: string, opts: ResolveOptions = {}): Promise<string> {
    return (await this.walk(containerPath, opts.followFinal ?? false, opts.cache, undefined)).host;
  }

  /** Like resolve, and also returns the canonical container path. */
  async resolveFull(containerPath: string, opts: ResolveOptions = {}): Promise<Resolved> {
    return this.walk(containerPath, opts.followFinal ?? false, opts.cache, undefined);
  }

  /** mkdir -p inside the root: missing components are created (owned uid:gid), symlinks followed inside the root. */
  async mkdirAll(containerPath: string, opts: MkdirOptions = {}): Promise<Resolved> {
    return this.walk(containerPath, true, opts.cache, { uid: opts.uid, gid: opts.gid, mode: opts.mode ?? 0o755 });
  }

  async readFile(containerPath: string): Promise<Buffer> {
    const host = await this.resolve(containerPath, { followFinal: true });
    try {
      return await readFile(host);
    } catch (err) {
      throw fsError('ROOTFS_READ_FAILED', `cannot read ${containerPath} in root ${this.root}`, err);
    }
  }

  async exists(containerPath: string, opts: { followFinal?: boolean } = {}): Promise<boolean> {
    return (await this.lstat(containerPath, opts)) !== undefined;
  }

  /** lstat of the resolved path (stat when followFinal); undefined when it does not exist. */
  async lstat(containerPath: string, opts: { followFinal?: boolean } = {}): Promise<Stats | undefined> {
    const host = await this.resolve(containerPath, opts);
    try {
      return await lstat(host);
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return undefined;
      throw fsError('ROOTFS_STAT_FAILED', `cannot stat ${containerPath} in root ${this.root}`, err);
    }
  }

  /**
   * The resolver. Components are consumed from a stack so a symlink's target is spliced in front of
   * what remains; ".." pops the resolved prefix, so nothing can climb above the root.
   */
  private async walk(
    containerPath: string,
    followFinal: boolean,
    cache: ResolveCache | undefined,
    create: DirSpec | undefined,
  ): Promise<Resolved> {
    // Reversed so pop() yields the next component.
    const stack = splitPath(containerPath).reverse();
    const resolved: string[] = [];
    let links = 0;
    // Once a component is missing (and not created) nothing below it can exist: stop touching the disk.
    let missing = false;
    while (stack.length > 0) {
      const comp = stack.pop()!;
      if (comp === '..') {
        resolved.pop();
        continue;
      }
      resolved.push(comp);
      const isFinal = stack.length === 0;
      if (missing || (isFinal && !followFinal && !create)) continue;
      const canonical = '/' + resolved.join('/');
      let kind = cache?.get(canonical);
      if (kind === undefined) {
        kind = await this.probe(containerPath, canonical, create);
        if (kind === undefined) {
          missing = true;
          continue;
        }
        cache?.set(canonical, kind);
      }
      if (kind === true) continue;
      if (isFinal && !followFinal) continue;
      if (++links > MAX_SYMLINKS) {
        throw new BuilderError('ROOTFS_SYMLINK_LOOP', `too many levels of symbolic links resolving ${containerPath} in root ${this.root}`, {
          hint: 'the image contains a symlink loop; fix the symlinks or use a path that does not go through them',
        });
      }
      resolved.pop();
      // Absolute targets are re-rooted at the root, relative ones continue from the link's directory.
      if (kind.startsWith('/')) resolved.length = 0;
      const target = splitPath(kind);
      for (let i = target.length - 1; i >= 0; i--) stack.push(target[i]!);
    }
    const canonical = '/' + resolved.join('/');
    return { host: this.hostPath(canonical), container: canonical };
  }

  /**
   * What is at `canonical` on disk: a directory (true; created when `create` is given and nothing is there), a
   * symlink's target, or undefined when nothing can be below it (missing, or not a directory).
   */
  private async probe(containerPath: string, canonical: string, create: DirSpec | undefined): Promise<true | string | undefined> {
    const host = this.hostPath(canonical);
    let st: Stats | undefined;
    try {
      st = await lstat(host);
    } catch (err) {
      if (isErrno(err, 'ENOTDIR')) return undefined;
      if (!isErrno(err, 'ENOENT')) throw fsError('ROOTFS_RESOLVE_FAILED', `cannot resolve ${containerPath} in root ${this.root} (at ${canonical})`, err);
    }
    if (st === undefined) {
      if (!create) return undefined;
      await this.makeDir(host, canonical, create);
      return true;
    }
    if (st.isSymbolicLink()) return await readlink(host);
    if (st.isDirectory()) return true;
    if (create) {
      throw new BuilderError('ROOTFS_NOT_A_DIRECTORY', `cannot create directory ${containerPath} in root ${this.root}: ${canonical} is not a directory`, {
        hint: 'a file is in the way of a directory the build needs; remove it in an earlier step or change the path',
      });
    }
    // Kernel would say ENOTDIR; the caller's operation will, and the path stays inside the root (a final file ends the walk anyway).
    return undefined;
  }

  private async makeDir(host: string, canonical: string, create: DirSpec): Promise<void> {
    try {
      await mkdir(host, { mode: create.mode });
    } catch (err) {
      // Someone else created it meanwhile: fine if it is a directory, checked by the next lstat user.
      if (!isErrno(err, 'EEXIST')) throw fsError('ROOTFS_MKDIR_FAILED', `cannot create directory ${canonical} in root ${this.root}`, err);
      return;
    }
    try {
      if (create.uid !== undefined || create.gid !== undefined) await lchown(host, create.uid ?? -1, create.gid ?? -1);
      // mkdir's mode is filtered by the umask; the image's mode is what counts.
      await chmod(host, create.mode);
    } catch (err) {
      throw fsError('ROOTFS_MKDIR_FAILED', `cannot set owner/mode of new directory ${canonical} in root ${this.root}`, err);
    }
  }
}

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

/** Wraps a node fs error into a BuilderError with the errno in the message. */
export function fsError(code: ErrorCode, message: string, err: unknown): BuilderError {
  if (err instanceof BuilderError) return err;
  const e = err as NodeJS.ErrnoException;
  const hint =
    e?.code === 'ENOSPC'
      ? 'the disk is full; free space or point the build root at a larger volume'
      : e?.code === 'EACCES' || e?.code === 'EPERM'
        ? 'permission denied; run as root (or in a container where the builder is root) for owners, devices and xattrs'
        : 'check the path and the filesystem of the build root';
  return new BuilderError(code, `${message}: ${e?.code ?? ''} ${e?.message ?? String(err)}`.trim(), { hint, cause: err });
}
