// RUN --mount in place, without mount(2) (no CAP_SYS_ADMIN in a job container): each mount's content is put at its
// target in "/" before the step and taken away after, restoring whatever was there, so a snapshot sees no trace.
import { chmod, chown, copyFile, lchown, lstat, lutimes, mkdir, readdir, readlink, rename, rm, rmdir, stat, symlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { BuilderError } from '../errors.js';
import { RootFs } from '../rootfs/index.js';
import type { RunMount } from './sandbox.js';

/** What placeMounts needs besides the mounts. */
export interface PlaceOptions {
  /** Root-relative paths a target may not be or lie under (builder's own files, mount points); one holding them keeps them. */
  protect: readonly string[];
  /** Root-relative paths a target may lie under but not be (excluded from snapshots: /run, /var/run); kept when held. */
  excludedOnly: readonly string[];
  /** A fresh directory outside every snapshot, on the root's filesystem if possible: what a target held waits there. */
  stashDir: string;
  what: string;
}

interface Placed {
  m: RunMount;
  /** Host path of the target (symlinks resolved inside the root). */
  host: string;
  kind: 'dir' | 'file';
  /** Where the target's previous content waits, if there was any. */
  stash?: string;
  /** The target's times before, restored after the move back (a rename changes its ctime only). */
  times?: Times;
  /** The mount's content reached the target (a cache is moved back only then). */
  placed?: boolean;
  /**
   * Kept paths below the target (relative to it: builder's work or cache dir, a mount point): the target then stays,
   * only its other entries go aside, and the mount's entries are put beside the kept ones.
   */
  held?: Held;
  /** Children mode: the entries moved aside (relative to the target) and where they wait. */
  aside?: { rel: string; to: string }[];
  /** Children mode: the target's own owner and mode, given the mount's for the step and restored after. */
  meta?: { mode: number; uid: number; gid: number };
  /** Children mode: every entry that had to go aside went (until then nothing at the target may be removed). */
  cleared?: boolean;
}

/** Paths relative to a target: kept exactly, or directories on the way to a kept one. */
interface Held {
  exact: Set<string>;
  chain: Set<string>;
}

const RESERVED = ['proc', 'sys', 'dev'];

/** atime/mtime as seconds from the nanosecond stat: a Date would lose the sub-millisecond part. */
type Times = { atime: number; mtime: number };
async function timesOf(p: string): Promise<Times> {
  const st = await lstat(p, { bigint: true });
  return { atime: Number(st.atimeNs) / 1e9, mtime: Number(st.mtimeNs) / 1e9 };
}

/**
 * Puts every mount at its target and returns the undo, which the caller must run whatever happens (try/finally).
 * Sources marked `owned` (per-run copies) or `keep` (caches) are moved in and out; others are copied in. A cache's
 * content moves back to its source after the step; everything else put there is removed; the target's previous
 * content (file or dir) comes back, parents created for it go, their mtimes are restored. A target holding kept
 * paths stays: only its other entries go aside (children mode).
 */
export async function placeMounts(root: string, mounts: readonly RunMount[], opts: PlaceOptions): Promise<() => Promise<void>> {
  const placement = new MountPlacement(new RootFs(root), opts);
  await placement.place(mounts);
  return () => placement.undo();
}

/** One step's mounts in place: what was put where, what went aside, which parents were made or touched. */
class MountPlacement {
  /** Parents created for a target, removed after the step if it left them empty. */
  private readonly created: string[] = [];
  /** Directories whose times a placement changes, restored after the step. */
  private readonly parentTimes = new Map<string, Times>();
  /** Mounts placed (or half placed), taken back in reverse order. */
  private readonly done: Placed[] = [];
  private stashes = 0;

  constructor(private readonly rootfs: RootFs, private readonly opts: PlaceOptions) {}

  /** Checks every target, then places each; on a failure what was placed is taken back before the error is thrown. */
  async place(mounts: readonly RunMount[]): Promise<void> {
    const resolved: Placed[] = [];
    for (const m of mounts) resolved.push(await this.resolve(m));
    resolved.sort((a, b) => a.host.split('/').length - b.host.split('/').length);
    this.checkOverlaps(resolved);
    await mkdir(this.opts.stashDir, { recursive: true, mode: 0o700 });
    try {
      for (const r of resolved) await this.placeOne(r);
    } catch (err) {
      await this.undo().catch(() => undefined);
      throw err;
    }
  }

  /** Takes every mount back out and restores what was there; idempotent. */
  async undo(): Promise<void> {
    const errors: unknown[] = [];
    for (const p of this.done.splice(0).reverse()) {
      try {
        await this.takeBack(p);
      } catch (e) {
        errors.push(e);
      }
    }
    for (const dir of this.created.splice(0).reverse()) await rmdir(dir).catch(() => undefined); // not empty: the step wrote there, it belongs to the layer
    for (const [dir, t] of this.parentTimes) await utimes(dir, t.atime, t.mtime).catch(() => undefined);
    await rm(this.opts.stashDir, { recursive: true, force: true }).catch(() => undefined);
    if (errors.length > 0) {
      throw new BuilderError('RUN_MOUNT_CLEANUP', `RUN ${this.opts.what}: cannot take the --mount contents back out of the root: ${String((errors[0] as Error).message ?? errors[0])}`, {
        hint: 'the image was not written; rerun the build in a fresh container', cause: errors[0],
      });
    }
  }

  private bad(m: RunMount, why: string, hint = 'mount somewhere else, e.g. under /mnt, /run or /tmp'): BuilderError {
    return new BuilderError('RUN_MOUNT_TARGET_INVALID', `RUN ${this.opts.what}: --mount target ${m.target} ${why}`, { hint });
  }

  /** Where a mount goes (symlinks resolved inside the root) and whether it may go there; nothing is changed yet. */
  private async resolve(m: RunMount): Promise<Placed> {
    const { rootfs, opts } = this;
    const under = (rel: string, p: string): boolean => rel === p || rel.startsWith(`${p}/`);
    const host = await rootfs.resolve(m.target, { followFinal: true });
    const rel = path.relative(rootfs.root, host);
    if (rel === '' || rel.startsWith('..')) throw this.bad(m, 'is the root');
    if (RESERVED.some((r) => under(rel, r))) throw this.bad(m, 'is under /proc, /dev or /sys, which the runtime provides');
    const hit = opts.protect.find((p) => under(rel, p)) ?? opts.excludedOnly.find((p) => p === rel);
    if (hit !== undefined) {
      throw this.bad(m, `${hit === rel ? 'is' : 'lies under'} /${hit}, which builder keeps in place (its own files or a mount point)`,
        'in place a mount target is a plain directory of "/"; pick another target, or move builder\'s paths (--work-dir, --cache-dir)');
    }
    if (m.type === 'bind' && m.source === undefined) throw this.bad(m, 'has no source');
    const kind: 'dir' | 'file' = m.type === 'bind' && !(await stat(m.source!)).isDirectory() ? 'file' : 'dir';
    const below = [...opts.protect, ...opts.excludedOnly].filter((p) => p.startsWith(`${rel}/`)).map((p) => p.slice(rel.length + 1));
    if (below.length > 0 && kind === 'file') throw this.bad(m, `holds /${rel}/${below[0]}, which builder keeps in place`);
    const held: Held = { exact: new Set(below), chain: new Set() };
    for (const b of below) for (let d = path.posix.dirname(b); d !== '.'; d = path.posix.dirname(d)) held.chain.add(d);
    return { m, host, kind, ...(below.length > 0 ? { held } : {}) };
  }

  /** Targets sorted by depth: none may be or lie under another, and a cache is at one target at a time. */
  private checkOverlaps(resolved: readonly Placed[]): void {
    for (const a of resolved) {
      for (const b of resolved) {
        if (a !== b && (b.host === a.host || b.host.startsWith(`${a.host}/`))) {
          throw new BuilderError('RUN_MOUNT_TARGET_INVALID', `RUN ${this.opts.what}: --mount targets ${a.m.target} and ${b.m.target} overlap`, {
            hint: 'give each mount its own directory; nested mount targets are not supported',
          });
        }
        if (a !== b && a.m.keep && a.m.source === b.m.source) {
          throw this.bad(b.m, `mounts the same cache as ${a.m.target}; in place a cache can be at one target at a time`, 'use one cache mount per id in a RUN');
        }
      }
    }
  }

  private async remember(dir: string): Promise<void> {
    if (this.parentTimes.has(dir)) return;
    this.parentTimes.set(dir, await timesOf(dir));
  }

  private nextStash(): string {
    return path.join(this.opts.stashDir, `t${++this.stashes}`);
  }

  /** One mount at its target: what was there goes aside (all of it, or all but the kept paths), the mount's content goes in. */
  private async placeOne(r: Placed): Promise<void> {
    await this.makeParents(r);
    const st = await lstat(r.host).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
    await this.remember(path.dirname(r.host));
    if (st?.isDirectory() && r.held) {
      this.done.push(r);
      await this.placeChildren(r, r.held);
      r.placed = true;
      return;
    }
    delete r.held; // nothing kept there yet: the whole target goes aside as usual
    if (st !== undefined) {
      if (st.isDirectory() !== (r.kind === 'dir')) {
        throw this.bad(r.m, `is a ${st.isDirectory() ? 'directory' : 'file'} in the image, the mount a ${r.kind === 'dir' ? 'directory' : 'file'}`,
          'pick a target that does not exist or has the type of the mount source');
      }
      // As a mount hides what is under it: the target's content is moved aside and back.
      r.stash = this.nextStash();
      r.times = await timesOf(r.host);
      await moveTree(r.host, r.stash);
    }
    this.done.push(r);
    await putIn(r);
    r.placed = true;
  }

  /** Missing parents become plain root-owned dirs, removed after the step if it left them empty. */
  private async makeParents(r: Placed): Promise<void> {
    const root = this.rootfs.root;
    let cur = root;
    for (const part of path.relative(root, r.host).split('/').slice(0, -1)) {
      const next = path.join(cur, part);
      const st = await lstat(next).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
      if (st === undefined) {
        await this.remember(cur);
        await mkdir(next, { mode: 0o755 });
        this.created.push(next);
      } else if (!st.isDirectory()) {
        throw this.bad(r.m, `cannot be placed: /${path.relative(root, next)} is not a directory in the image`);
      }
      cur = next;
    }
  }

  /** After the step: the step's writes out (a cache's back to its store), the target's previous content back. */
  private async takeBack(p: Placed): Promise<void> {
    if (p.held && p.aside) return this.takeBackChildren(p, p.held, p.aside);
    const now = await lstat(p.host).catch(() => undefined);
    if (now !== undefined) {
      // A cache keeps what the step left there; anything else the step wrote under a mount is discarded, as with a real mount.
      if (p.m.keep && p.placed && now.isDirectory()) await moveTree(p.host, p.m.source!);
      else await rm(p.host, { recursive: true, force: true });
    }
    if (p.m.keep && (await lstat(p.m.source!).catch(() => undefined)) === undefined) await mkdir(p.m.source!, { mode: 0o755 }); // the step removed the cache: empty from now on
    await this.remember(path.dirname(p.host)).catch(() => undefined);
    if (p.stash !== undefined) {
      // The step removed the target's parent: what was there stays gone (a real mount would have kept the parent busy).
      const parent = await lstat(path.dirname(p.host)).catch(() => undefined);
      if (parent?.isDirectory()) {
        await moveTree(p.stash, p.host);
        if (p.times) await (p.kind === 'dir' ? utimes : lutimes)(p.host, p.times.atime, p.times.mtime).catch(() => undefined);
      }
    }
  }

  /** Children mode, after the step: the step's entries out (a cache's back to its store), the aside ones back. */
  private async takeBackChildren(p: Placed, held: Held, aside: { rel: string; to: string }[]): Promise<void> {
    if (p.cleared && (await lstat(p.host).catch(() => undefined))) await this.moveOut(p, held, '', p.m.keep ? p.m.source! : undefined);
    for (const a of aside.splice(0)) {
      const parent = await lstat(path.dirname(path.join(p.host, a.rel))).catch(() => undefined);
      if (parent?.isDirectory()) await moveTree(a.to, path.join(p.host, a.rel));
    }
    if (p.meta) {
      await chown(p.host, p.meta.uid, p.meta.gid).catch(() => undefined);
      await chmod(p.host, p.meta.mode).catch(() => undefined);
    }
  }

  /** The step's entries under `rel` of the target, but the kept ones: moved to `dest` (a cache), else removed. */
  private async moveOut(p: Placed, held: Held, rel: string, dest: string | undefined): Promise<void> {
    const dir = path.join(p.host, rel);
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const r = rel === '' ? name : `${rel}/${name}`;
      if (held.exact.has(r)) continue;
      const from = path.join(dir, name);
      if (held.chain.has(r) && (await lstat(from)).isDirectory()) {
        if (dest !== undefined) await mkdir(path.join(dest, name), { recursive: true, mode: 0o755 });
        await this.moveOut(p, held, r, dest === undefined ? undefined : path.join(dest, name));
        continue;
      }
      if (dest === undefined) {
        await rm(from, { recursive: true, force: true });
      } else {
        await rm(path.join(dest, name), { recursive: true, force: true }); // an entry shadowed by a kept one
        await moveTree(from, path.join(dest, name));
      }
    }
  }

  /** Children mode, before the step: every entry of the target but the kept ones (and their parents) goes aside. */
  private async placeChildren(r: Placed, held: Held): Promise<void> {
    const st = await lstat(r.host);
    r.meta = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    r.aside = [];
    await this.moveAside(r, held, '');
    r.cleared = true;
    // The mount's root metadata, as a mount would show it: a fresh tmpfs 1777 root:root, else the source dir's.
    const src = r.m.type === 'tmpfs' ? { mode: 0o1777, uid: 0, gid: 0 } : await lstat(r.m.source!).then((s) => ({ mode: s.mode & 0o7777, uid: s.uid, gid: s.gid }));
    await chown(r.host, src.uid, src.gid);
    await chmod(r.host, src.mode);
    if (r.m.type !== 'tmpfs') await this.fillChildren(r, held, r.m.source!, '');
  }

  /** The target's entries under `rel`, but the kept ones and their parents, into the stash (recorded in r.aside). */
  private async moveAside(r: Placed, held: Held, rel: string): Promise<void> {
    const dir = path.join(r.host, rel);
    await this.remember(dir);
    for (const name of await readdir(dir)) {
      const e = rel === '' ? name : `${rel}/${name}`;
      if (held.exact.has(e)) continue;
      if (held.chain.has(e)) {
        if ((await lstat(path.join(dir, name))).isDirectory()) await this.moveAside(r, held, e);
        continue;
      }
      const to = this.nextStash();
      await moveTree(path.join(dir, name), to);
      r.aside!.push({ rel: e, to });
    }
  }

  /** The source's entries under `rel` beside the kept ones (moved for per-run copies and caches, else copied). */
  private async fillChildren(r: Placed, held: Held, from: string, rel: string): Promise<void> {
    for (const name of await readdir(from)) {
      const e = rel === '' ? name : `${rel}/${name}`;
      if (held.exact.has(e)) continue; // shadowed by a kept path: stays in the source
      const f = path.join(from, name);
      if (held.chain.has(e)) {
        if ((await lstat(f)).isDirectory() && (await lstat(path.join(r.host, e)).catch(() => undefined))?.isDirectory()) await this.fillChildren(r, held, f, e);
        continue;
      }
      await (r.m.owned || r.m.keep ? moveTree : copyTree)(f, path.join(r.host, e));
    }
  }
}

/** The mount's content at its (now free) target. */
async function putIn(p: Placed): Promise<void> {
  const m = p.m;
  if (m.type === 'tmpfs') {
    await mkdir(p.host, { mode: 0o1777 });
    await chmod(p.host, 0o1777); // a fresh tmpfs's root, as the sandbox's mount gives it
    return;
  }
  if (m.owned || m.keep) await moveTree(m.source!, p.host);
  else await copyTree(m.source!, p.host);
}

/** rename(), or a copy and removal where rename cannot (another filesystem, an overlayfs lower dir). */
async function moveTree(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM') throw e;
    await copyTree(from, to);
    await rm(from, { recursive: true, force: true });
  }
}

/** cp -a for dirs, files and symlinks (owner, mode, times); other file types are skipped. */
export async function copyTree(from: string, to: string): Promise<void> {
  const st = await lstat(from);
  if (st.isDirectory()) {
    await mkdir(to, { mode: 0o700 });
    for (const name of await readdir(from)) await copyTree(path.join(from, name), path.join(to, name));
  } else if (st.isSymbolicLink()) {
    await symlink(await readlink(from), to);
    await lchown(to, st.uid, st.gid);
    await lutimes(to, st.atime, st.mtime);
    return;
  } else if (st.isFile()) {
    await copyFile(from, to);
  } else {
    return;
  }
  await chown(to, st.uid, st.gid);
  await chmod(to, st.mode & 0o7777);
  await utimes(to, st.atime, st.mtime);
}
