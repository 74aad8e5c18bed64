// RUN --mount=type=cache storage: one directory per cache id under <cache-dir>/run-cache, kept between builds on this
// machine; users within a build take turns as their sharing= says, and in place one build at a time holds a cache.
import { createHash } from 'node:crypto';
import { chmod, chown, lstat, mkdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BuilderError } from '../errors.js';
import type { CacheMount } from '../dockerfile/index.js';
import type { EventSink } from '../util/events.js';

/** What a cache mount asks of the storage: its id, sharing= and the directory's mode and owner when it is made. */
export type CacheMountSpec = Pick<CacheMount, 'id' | 'sharing' | 'mode' | 'uid' | 'gid'>;

export interface CacheMountContext {
  /** In place the cache's content moves into "/" for the step: one user at a time across builds (a lock file). */
  inPlace: boolean;
  /** A fresh scratch path for a cache instance of this run only. */
  scratchPath: () => string;
  emit: EventSink;
  signal: AbortSignal;
}

/** A lock older than this without a refresh was left by a build that died (its holder refreshes it every LOCK_REFRESH_MS). */
export const LOCK_STALE_MS = 30_000;
const LOCK_REFRESH_MS = 5_000;

/** The cache mounts of one build (shared by its platforms): who uses which id, over the directories in `dir`. */
export class RunCache {
  private readonly users = new Map<string, { users: number; tail: Promise<void> }>();

  /** `pid`: written in the lock files this build holds (the CLI's process). */
  constructor(readonly dir: string, private readonly pid?: number) {}

  /** The directory to bind for one run, and its release (locks, turns, a throwaway instance): call it after the run, whatever happens. */
  async open(spec: CacheMountSpec, ctx: CacheMountContext): Promise<{ dir: string; release: () => Promise<void> }> {
    const undo: Array<() => Promise<void>> = [];
    const release = async (): Promise<void> => {
      for (const u of undo.splice(0).reverse()) await u().catch(() => undefined);
    };
    try {
      return { dir: await this.take(spec, ctx, undo), release };
    } catch (err) {
      await release();
      throw err;
    }
  }

  private async take(spec: CacheMountSpec, ctx: CacheMountContext, undo: Array<() => Promise<void>>): Promise<string> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const dir = path.join(this.dir, createHash('sha256').update(spec.id).digest('hex'));
    let state = this.users.get(spec.id);
    if (!state) this.users.set(spec.id, (state = { users: 0, tail: Promise.resolve() }));
    // BuildKit gives a concurrent private user a fresh cache instance.
    if (spec.sharing === 'private' && state.users > 0) return throwaway(spec, ctx, undo);
    if (ctx.inPlace) {
      const got = await lockCache(`${dir}.lock`, spec, ctx.emit, ctx.signal, this.pid);
      if (got === 'busy') return throwaway(spec, ctx, undo);
      undo.push(got);
    }
    if (spec.sharing === 'locked') {
      // One locked user at a time within this build; the next one waits for this run's release().
      const prev = state.tail;
      let unlock!: () => void;
      state.tail = new Promise<void>((r) => (unlock = r));
      await prev;
      undo.push(async () => unlock());
    }
    state.users++;
    const s = state;
    undo.push(async () => void s.users--);
    const st = await lstat(dir).catch(() => undefined);
    if (st === undefined) {
      await mkdir(dir, { mode: spec.mode }).catch((e: NodeJS.ErrnoException) => (e.code === 'EEXIST' ? undefined : Promise.reject(e)));
      await chown(dir, spec.uid, spec.gid);
      await chmod(dir, spec.mode);
    } else if (!st.isDirectory()) {
      throw new BuilderError('RUN_MOUNT_CACHE_INVALID', `cache mount ${spec.id}: ${dir} is not a directory`, { hint: `remove ${dir}` });
    }
    return dir;
  }
}

/** A cache instance for this run only, removed after the step. */
async function throwaway(spec: CacheMountSpec, ctx: CacheMountContext, undo: Array<() => Promise<void>>): Promise<string> {
  const tmp = ctx.scratchPath();
  await mkdir(tmp, { recursive: true, mode: spec.mode });
  await chown(tmp, spec.uid, spec.gid);
  await chmod(tmp, spec.mode);
  undo.push(() => rm(tmp, { recursive: true, force: true }));
  return tmp;
}

/**
 * Takes <cache>.lock (O_EXCL), waiting for another build's release (or its lock to go stale); 'busy' instead of
 * waiting for sharing=private, which then gets a fresh cache for this run, as BuildKit gives it. Returns the release.
 */
export async function lockCache(lock: string, spec: Pick<CacheMountSpec, 'id' | 'sharing'>, emit: EventSink, signal: AbortSignal, pid?: number): Promise<(() => Promise<void>) | 'busy'> {
  let told = false;
  for (;;) {
    try {
      await writeFile(lock, pid === undefined ? '' : `${pid}\n`, { flag: 'wx', mode: 0o600 });
      const timer = setInterval(() => void utimes(lock, new Date(), new Date()).catch(() => undefined), LOCK_REFRESH_MS);
      timer.unref();
      return async () => {
        clearInterval(timer);
        await rm(lock, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (spec.sharing === 'private') return 'busy';
    const st = await stat(lock).catch(() => undefined);
    if (st !== undefined && Date.now() - st.mtimeMs > LOCK_STALE_MS) {
      await rm(lock, { force: true });
      continue;
    }
    if (!told) emit({ type: 'message', level: 'info', msg: `cache mount ${spec.id}: in use by another build, waiting for it` });
    told = true;
    if (signal.aborted) {
      throw new BuilderError('BUILD_ABORTED', `cache mount ${spec.id}: the build was stopped while waiting for the cache`, { hint: 'rerun the build' });
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
