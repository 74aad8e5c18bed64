// Extracted base images under the cache dir, keyed by ChainID: a warm build clones one instead of extracting the layers again.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, rm, rmdir, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { digestHex, type Digest } from '../digest/index.js';
import { BuilderError } from '../errors.js';
import { chainId as chainOf } from '../image/index.js';
import type { Host } from '../util/host.js';
import { Leases } from './lease.js';

// Bump when extraction changes what lands on disk, so entries made by an older builder are never cloned.
const FORMAT = 'v1';
const MARKER = 'complete';
// Past this many bytes of extracted bases the least recently used entries go, when a new one is added.
export const ROOTFS_STORE_MAX_BYTES = 10 * 1024 ** 3;
// An entry used this recently may be the lower layer of a running build's overlay: never evicted for the cap.
const IN_USE_MS = 60 * 60 * 1000;

/** The OCI ChainID of layers by diff_id (the one definition, in src/image). */
function chainId(diffIds: readonly Digest[]): Digest {
  if (diffIds.length === 0) throw new BuilderError('BUILD_INTERNAL', 'chainId of no layers', { hint: 'this is a bug; please report it' });
  return chainOf(diffIds.map((diffId) => ({ diffId }))) as Digest;
}

/** What the stores need of the process (src/util/host.ts): overlays only as uid 0, temp dirs named by pid, an exit hook. */
export type StoreHost = Partial<Pick<Host, 'pid' | 'uid' | 'onExit'>>;

export interface RootfsStoreEntry {
  chainId: string;
  /** The entry's directory (root/ and the completion marker inside). */
  dir: string;
  /** Last use (the marker's mtime, touched on every mount or copy). */
  used: Date;
  /** File content extracted into it (as recorded when it was made). */
  bytes?: number;
}

/**
 * <dir>/<FORMAT>/<chainId hex>/{root/, complete}. An entry is made in a temp dir and renamed into place with its
 * marker already written, so a crash leaves only a temp dir (never an entry that looks complete) and two builds at
 * once each fill their own temp dir: the first rename wins, the other build uses the winner's entry.
 */
export class RootfsStore {
  readonly dir: string;
  /** Overlay mounts made by this instance (one build), unmounted by unmountAll. */
  private readonly mounts = new Map<string, { upper: string; lowers: string[] }>();
  /** Set after the first failed overlay mount: later roots are copied without trying again. */
  private overlayFailed: string | undefined;
  private readonly filling = new Map<string, Promise<string>>();

  private readonly maxBytes: number;
  /** What this build uses (entries it mounts or copies, temp dirs it fills): prune and eviction leave them alone. */
  private readonly leases: Leases;
  private readonly host: StoreHost;
  /** Removes the exit hook registered while this build has overlays mounted. */
  private offExit: (() => void) | undefined;

  constructor(dir: string, opts: { maxBytes?: number } & StoreHost = {}) {
    this.dir = path.join(path.resolve(dir), FORMAT);
    this.maxBytes = opts.maxBytes ?? ROOTFS_STORE_MAX_BYTES;
    this.host = opts;
    // beside the format's dir: listing entries never meets a lease, and a lease on a ChainID holds in every format
    this.leases = new Leases(path.join(path.dirname(this.dir), 'leases'));
  }

  /** Leases the entry of these layers for the rest of the build (until unmountAll): taken before it is looked up. */
  async lease(diffIds: readonly Digest[]): Promise<void> {
    await this.leases.take(digestHex(chainId(diffIds))).catch((err: unknown) => {
      throw storeError(`cannot write a lease in ${this.leases.dir}`, err);
    });
  }

  /** A lower layer of the overlay at `root` that is no longer in the store (removed while this build ran), if any. */
  async vanished(root: string): Promise<string | undefined> {
    for (const lower of this.mounts.get(root)?.lowers ?? []) {
      if (!lower.startsWith(`${this.dir}/`)) continue;
      const ok = await Promise.all([lstat(lower), lstat(path.join(path.dirname(lower), MARKER))]).then(() => true, () => false);
      if (!ok) return lower;
    }
    return undefined;
  }

  entryDir(id: Digest): string {
    return path.join(this.dir, digestHex(id));
  }

  /** The root of the complete entry for these layers, or undefined. */
  async lookup(diffIds: readonly Digest[]): Promise<string | undefined> {
    const dir = this.entryDir(chainId(diffIds));
    const marker = await lstat(path.join(dir, MARKER)).catch(() => undefined);
    return marker?.isFile() ? path.join(dir, 'root') : undefined;
  }

  /**
   * The entry's root, made first by fill(emptyDir) when missing. Errors of fill are rethrown as they are; the
   * store's own I/O failures are STORE errors (ROOTFS_STORE_WRITE_FAILED) the caller may step around.
   */
  ensure(diffIds: readonly Digest[], fill: (root: string) => Promise<number | void>): Promise<string> {
    // Stages of one build on the same base share one fill.
    const id = chainId(diffIds);
    let p = this.filling.get(id);
    if (!p) {
      p = this.fill(id, diffIds, fill);
      this.filling.set(id, p);
      const done = (): void => void this.filling.delete(id); // only fills in flight are shared: an entry may go later
      p.then(done, done);
    }
    return p;
  }

  private async fill(id: Digest, diffIds: readonly Digest[], fill: (root: string) => Promise<number | void>): Promise<string> {
    const found = await this.lookup(diffIds);
    if (found) return found;
    const final = this.entryDir(id);
    const tmp = path.join(this.dir, `.tmp-${digestHex(id).slice(0, 16)}-${this.host.pid !== undefined ? `${this.host.pid}-` : ''}${randomBytes(4).toString('hex')}`);
    await mkdir(this.dir, { recursive: true }).then(() => this.leases.take(path.basename(tmp))).then(() => mkdir(path.join(tmp, 'root'), { recursive: true })).catch((err: unknown) => {
      throw storeError(`cannot create ${tmp}`, err);
    });
    try {
      const bytes = await fill(path.join(tmp, 'root'));
      await writeFile(path.join(tmp, MARKER), `${JSON.stringify({ chainId: id, diffIds, ...(typeof bytes === 'number' ? { bytes } : {}) })}\n`).catch((err: unknown) => {
        throw storeError(`cannot write the marker of ${tmp}`, err);
      });
      try {
        await rename(tmp, final);
      } catch (err) {
        // Another build renamed its copy into place first: use that one.
        const code = (err as NodeJS.ErrnoException).code;
        if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !(await this.lookup(diffIds))) throw storeError(`cannot rename ${tmp} to ${final}`, err);
        await rm(tmp, { recursive: true, force: true });
      }
    } catch (err) {
      await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw err;
    } finally {
      await this.leases.release(path.basename(tmp));
    }
    await this.evict(id).catch(() => undefined); // over the cap costs disk, never the build
    return path.join(final, 'root');
  }

  /** Removes the least recently used entries (not `keep`, none used within IN_USE_MS) while the store is over its cap. */
  async evict(keep: Digest, now = Date.now()): Promise<RootfsStoreEntry[]> {
    const all = await this.list();
    let total = all.reduce((n, e) => n + (e.bytes ?? 0), 0);
    const removed: RootfsStoreEntry[] = [];
    const leased = total > this.maxBytes ? await this.leases.live(now) : new Set<string>();
    for (const e of all.sort((a, b) => a.used.getTime() - b.used.getTime())) {
      if (total <= this.maxBytes) break;
      if (e.chainId === keep || now - e.used.getTime() < IN_USE_MS || leased.has(path.basename(e.dir))) continue;
      if (!(await this.remove(e.dir))) continue;
      total -= e.bytes ?? 0;
      removed.push(e);
    }
    return removed;
  }

  /**
   * Copies an entry's root to `to` (which must not exist or be empty): owners, modes, times, xattrs, hard links and
   * special files as they are. coreutils `cp -a` (one process, kernel-side copies); `to` must be on a local filesystem.
   */
  async clone(entryRoot: string, to: string): Promise<void> {
    await copyTree(entryRoot, to);
    await touch(entryRoot);
  }

  /**
   * Makes `to` an overlay mount of `lowers` (topmost first; the last one a store entry's root) with a fresh upper
   * layer beside it: nothing is copied, and whatever RUN changes lands in the upper layer, never in the store. False
   * (nothing mounted) where overlayfs cannot be mounted: not root, no overlay module, the work dir on an overlayfs
   * (a container's root), or a path mount(8) options cannot hold; the caller copies instead.
   */
  async mount(lowers: readonly string[], to: string): Promise<{ mounted: boolean; reason?: string }> {
    if (this.overlayFailed !== undefined) return { mounted: false, reason: this.overlayFailed };
    if (this.host.uid !== 0) return { mounted: false, reason: (this.overlayFailed = 'not root') };
    // A fresh upper every time: an earlier upper of this path may be a lower layer of a child stage's mount now.
    const upper = `${to}.upper-${randomBytes(4).toString('hex')}`;
    if ([...lowers, upper, to].some((p) => /[,:\\\s]/.test(p))) return { mounted: false, reason: 'a path mount options cannot hold' };
    try {
      await mkdir(path.join(upper, 'diff'), { recursive: true });
      await mkdir(path.join(upper, 'work'), { recursive: true });
      await mkdir(to, { recursive: true });
      await runTool('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lowers.join(':')},upperdir=${upper}/diff,workdir=${upper}/work`, to]);
    } catch (err) {
      this.overlayFailed = (err as Error).message;
      await rm(upper, { recursive: true, force: true }).catch(() => undefined);
      return { mounted: false, reason: this.overlayFailed };
    }
    this.mounts.set(to, { upper: path.join(upper, 'diff'), lowers: [...lowers] });
    // A process.exit() before unmountAll (a second signal) must not leave mounts on the host: detach them synchronously.
    this.offExit ??= this.host.onExit?.(this.detachAll);
    await touch(lowers[lowers.length - 1]!);
    return { mounted: true };
  }

  /** The layers of an overlay this build mounted at `root`: its upper (what changed) on top of its lowers. */
  layersOf(root: string): string[] | undefined {
    const m = this.mounts.get(root);
    return m ? [m.upper, ...m.lowers] : undefined;
  }

  isMounted(root: string): boolean {
    return this.mounts.has(root);
  }

  /** Unmounts one root mounted by mount() (lazily when something still holds it, e.g. a process being killed). */
  async unmount(root: string): Promise<void> {
    if (!this.mounts.has(root)) return;
    await runTool('umount', [root]).catch(() => runTool('umount', ['-l', root]));
    // forgotten only once gone: a second signal's exit while umount runs (and is killed) still detaches it (detachAll)
    this.mounts.delete(root);
  }

  /** Every overlay this build mounted, and every lease it holds: before the stage roots are removed, and on every way out of a build. */
  async unmountAll(): Promise<void> {
    for (const root of [...this.mounts.keys()].reverse()) await this.unmount(root).catch(() => undefined);
    this.offExit?.();
    this.offExit = undefined;
    await this.leases.release();
  }

  /** Lazily unmounts every overlay of this build, synchronously: for an exit hook (unmountAll cannot run there). */
  readonly detachAll = (): void => {
    for (const root of [...this.mounts.keys()].reverse()) spawnSync('umount', ['-l', root], { stdio: 'ignore' });
  };

  async list(): Promise<RootfsStoreEntry[]> {
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw new BuilderError('ROOTFS_STORE_READ_FAILED', `cannot list ${this.dir}: ${err.message}`, { hint: 'check the permissions of the cache dir', cause: err });
    });
    const out: RootfsStoreEntry[] = [];
    for (const name of names) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const marker = path.join(this.dir, name, MARKER);
      const m = await stat(marker).catch(() => undefined);
      if (!m) continue;
      const doc = await readFile(marker, 'utf8').then((t) => JSON.parse(t) as { bytes?: unknown }).catch(() => ({} as { bytes?: unknown }));
      out.push({ chainId: `sha256:${name}`, dir: path.join(this.dir, name), used: m.mtime, ...(typeof doc.bytes === 'number' ? { bytes: doc.bytes } : {}) });
    }
    return out;
  }

  /**
   * Removes entries not used for olderThanMs and temp dirs of builds that are gone, never what a running build holds
   * a lease on (an entry it mounted or copied, a temp dir it is filling). An entry is renamed away, its leases checked
   * again (a build may have just taken one) and only then deleted; a build finding it mid-delete extracts instead.
   */
  async prune(olderThanMs: number, now: Date, opts: { dryRun?: boolean; onDelete?: (e: RootfsStoreEntry) => void } = {}): Promise<{ deleted: RootfsStoreEntry[]; kept: number; temps: number }> {
    const result = { deleted: [] as RootfsStoreEntry[], kept: 0, temps: 0 };
    const leased = await this.leases.live(now.getTime());
    for (const e of await this.list()) {
      if (now.getTime() - e.used.getTime() <= olderThanMs || leased.has(path.basename(e.dir)) || (!opts.dryRun && !(await this.remove(e.dir)))) {
        result.kept++;
        continue;
      }
      opts.onDelete?.(e);
      result.deleted.push(e);
    }
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const name of names.filter((n) => n.startsWith('.tmp-') && !leased.has(n))) {
      // another prune may be removing it too: what it leaves is gone either way
      if (!opts.dryRun && !(await rm(path.join(this.dir, name), { recursive: true, force: true }).then(() => true, () => false))) continue;
      result.temps++;
    }
    return result;
  }

  /** Renames an entry away and deletes it unless a build leased it meanwhile (then it is put back): whether it went. */
  private async remove(dir: string): Promise<boolean> {
    const name = path.basename(dir);
    const away = path.join(this.dir, `.tmp-delete-${name.slice(0, 16)}-${randomBytes(4).toString('hex')}`);
    await this.leases.take(path.basename(away)).catch(() => undefined); // no other prune deletes it while we decide
    try {
      try {
        await rename(dir, away);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
        throw storeError(`cannot remove ${dir}`, err);
      }
      if ((await this.leases.live()).has(name)) {
        // a build took a lease between our check and the rename: it gets the entry back (or the one made meanwhile)
        await rename(away, dir).catch(() => rm(away, { recursive: true, force: true }));
        return false;
      }
      await rm(away, { recursive: true, force: true }).catch(() => undefined);
      return true;
    } finally {
      await this.leases.release(path.basename(away));
    }
  }
}

/** `cp -a` of a tree to `to` (absent or an empty dir): what the tree holds, exactly (owners, xattrs, links, devices). */
export async function copyTree(from: string, to: string): Promise<void> {
  await rmdir(to).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw storeError(`cannot copy into ${to}: it is not an empty directory`, err);
  });
  await mkdir(path.dirname(to), { recursive: true });
  await runTool('cp', ['-a', '--no-target-directory', from, to]);
}

// The marker's mtime is the entry's last use, which prune goes by.
async function touch(entryRoot: string): Promise<void> {
  const now = new Date();
  await utimes(path.join(path.dirname(entryRoot), MARKER), now, now).catch(() => undefined);
}

/** coreutils/util-linux, argv only (no shell). */
function runTool(cmd: 'cp' | 'mount' | 'umount', args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 2000) stderr += d.toString();
    });
    child.on('error', (err) => reject(storeError(`cannot run ${cmd}`, err)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(storeError(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').slice(0, 3).join('; ')}`, undefined));
    });
  });
}

function storeError(message: string, cause: unknown): BuilderError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new BuilderError('ROOTFS_STORE_WRITE_FAILED', `extracted-base store: ${message}${detail}`, {
    hint: 'check free space and permissions of the cache dir (builder cache prune --cache-dir removes old entries)',
    ...(cause !== undefined ? { cause } : {}),
  });
}
