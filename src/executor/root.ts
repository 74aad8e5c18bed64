// A stage's root filesystem, made only when a step needs it: its layers applied in order, each as it downloads.
import { cp, lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BuilderError, isBuilderError } from '../errors.js';
import { copyTree, type RootfsStore } from '../store/index.js';
import { ROOTFS_STORE_ERROR_CODES } from '../store/codes.js';
import type { Layer } from '../image/index.js';
import { extractLayer, RootFs } from '../rootfs/index.js';
import { EntryTable, indexFromUpper, indexTree, type IndexEntry, type IndexOptions, type LayerEntry, type TreeIndex } from '../snapshot/index.js';
import type { EventSink } from '../util/events.js';
import type { Host } from '../util/host.js';
import { runPool } from '../util/pool.js';

export interface ExtractOptions {
  /** Container paths ("/x") extraction must skip (in place: mount points and the builder's own files). */
  ignore?: (containerPath: string) => boolean;
  /** Warnings of extraction, and of an extracted-base store that could not be used. */
  emit?: EventSink;
  /** Who extracts: its ids, umask and zstd program (src/rootfs ExtractOptions.host; required: without it every mode gets an fchmod). */
  host: Pick<Host, 'uid' | 'gid' | 'umask' | 'zstd'>;
  /** Called before extraction with how many of the layers must come down (the rest are in the local store). */
  onExtract?: (downloaded: number, total: number) => void;
  /** Per layer: compressed bytes read so far; one call with done: true when the layer is applied (or failed). */
  onProgress?: (e: { id: string; bytes: number; total: number; done: boolean }) => void;
  /** Called per layer, once all are applied, with the bytes of file content it wrote. */
  onApplied?: (bytes: number) => void;
}

export interface StageRootOptions extends ExtractOptions {
  /** A base root was mounted (overlay) or copied from the extracted-base store (made: extracted into the store first). */
  onClone?: (how: 'overlay' | 'copy', layers: number, seconds: number, made: boolean) => void;
  /** Why the root could not be an overlay mount (said once per build). */
  onCopyInstead?: (reason: string) => void;
}

/** Codes saying a layer's bytes are not what its descriptor and diff-id promise. */
const CONTENT_CODES = new Set(['ROOTFS_LAYER_DIFF_ID_MISMATCH', 'DIGEST_MISMATCH', 'SIZE_MISMATCH']);

/** A layer whose content is not what it claims, naming the layer so a stage can tell a cached one (and rebuild its step). */
export class LayerContentError extends BuilderError {
  constructor(readonly layer: Layer, cause: BuilderError) {
    super(cause.code, cause.message, { ...(cause.hint !== undefined ? { hint: cause.hint } : {}), cause, exitCode: cause.exitCode });
  }
}

/**
 * Applies layers in order onto root (created if missing). Into a `fresh` root (a new directory only this extraction
 * writes) a layer still to download is extracted as its bytes arrive, the next ones coming down meanwhile; when those
 * bytes prove bad (the attempt broke off or failed its digest), the root is emptied and every layer applied again once
 * all are in the store: they never stay. Otherwise everything is downloaded (two at a time) before extraction.
 */
export async function extractLayers(root: string, layers: readonly Layer[], opts: ExtractOptions, fresh = false): Promise<RootFs> {
  await mkdir(root, { recursive: true });
  const stored = await Promise.all(layers.map((l) => (l.fetch ? (l.stored?.() ?? Promise.resolve(false)) : Promise.resolve(true))));
  const missing = layers.filter((_, k) => !stored[k]);
  opts.onExtract?.(missing.length, layers.length);
  if (fresh && missing.length > 0) {
    try {
      return await applyLayers(root, layers, opts, missing);
    } catch (err) {
      if (!(err instanceof StreamedLayerFailed)) throw err;
      // what the broken bytes made goes first; a download that failed for good is then the error (its retries are spent)
      const failed = await err.download.then(() => undefined, (e: unknown) => ({ e }));
      await emptyDir(root);
      if (failed) throw failed.e;
    }
  }
  await runPool(missing, 2, async (l) => {
    await l.fetch!();
  });
  return applyLayers(root, layers, opts);
}

/** A layer extracted while it downloaded failed because those bytes did: the root holds bytes that may not be the layer's. */
class StreamedLayerFailed extends Error {
  constructor(readonly download: Promise<boolean>, cause: unknown) {
    super('a layer extracted while it downloaded failed', { cause });
  }
}

/** Each layer opened and applied in order; with `missing`, opened as it downloads (openEarly) and those after it fetched meanwhile, in order. */
async function applyLayers(root: string, layers: readonly Layer[], opts: ExtractOptions, missing?: readonly Layer[]): Promise<RootFs> {
  let aheadFailed: { err: unknown } | undefined;
  const ahead = missing ? runPool(missing.slice(1), 1, async (l) => {
    await l.fetch!();
  }).catch((err: unknown) => { aheadFailed = { err }; }) : Promise.resolve();
  const rootfs = new RootFs(root);
  const applied: number[] = [];
  try {
    for (const l of layers) {
      if (aheadFailed) throw aheadFailed.err; // not downloaded again: its retries are spent
      const src: { stream: Readable; download?: Promise<boolean>; broken?: Promise<boolean> } = missing && l.openEarly ? await l.openEarly() : { stream: await l.open() };
      applied.push(await applyLayer(rootfs, l, src.stream, opts).catch(async (err: unknown) => {
        // bad bytes fail the extraction (gzip, tar) before their digest does: the attempt's verdict decides; the
        // extraction's own failure (a full disk, a diff-id mismatch) would only recur from the store
        throw src.download && (await src.broken) ? new StreamedLayerFailed(src.download, err) : err;
      }));
    }
  } catch (err) {
    await ahead;
    throw aheadFailed && err instanceof StreamedLayerFailed ? aheadFailed.err : err;
  }
  await ahead;
  for (const bytes of applied) opts.onApplied?.(bytes); // once all are in: an attempt started again is not counted twice
  return rootfs;
}

/** Removes what a directory holds, keeping the directory. */
async function emptyDir(dir: string): Promise<void> {
  for (const name of await readdir(dir)) await rm(path.join(dir, name), { recursive: true, force: true });
}

/** One layer's bytes extracted onto rootfs (progress counted as they are read): the bytes of file content written. */
async function applyLayer(rootfs: RootFs, l: Layer, src: Readable, opts: ExtractOptions): Promise<number> {
  const { digest: id, size: total } = l.descriptor;
  let bytes = 0;
  // Counted at the source's push(), as the registry client does: no stream stage added before the extractor.
  const push = src.push.bind(src);
  if (opts.onProgress) {
    src.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
      if (chunk !== null && chunk !== undefined) opts.onProgress?.({ id, bytes: (bytes += (chunk as Buffer).length), total, done: false });
      return push(chunk, encoding);
    };
  }
  const r = await extractLayer(rootfs, src, {
    layer: l.descriptor.digest,
    mediaType: l.descriptor.mediaType,
    expectedDiffId: l.diffId,
    ...(opts.ignore ? { ignore: opts.ignore } : {}),
    ...(opts.emit ? { emit: opts.emit } : {}),
    host: opts.host,
  }).catch((err: unknown) => {
    throw isBuilderError(err) && CONTENT_CODES.has(err.code) ? new LayerContentError(l, err) : err;
  }).finally(() => opts.onProgress?.({ id, bytes, total, done: true }));
  return r.bytes;
}

/** ENOSPC or EDQUOT, raw or as the cause of a BuilderError. */
export function isDiskFull(err: unknown): boolean {
  const code = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | undefined)?.code;
  const c = code(err) ?? code((err as Error | undefined)?.cause);
  return c === 'ENOSPC' || c === 'EDQUOT' || /\b(ENOSPC|EDQUOT)\b/.test((err as Error | undefined)?.message ?? '');
}

/** How a stage's root starts before its layers are applied. */
export type RootOrigin =
  /**
   * An empty directory (scratch, a registry image, or in place after the wipe). With `store`, the first `layers`
   * (the base image's) come from the extracted-base store: cloned, or extracted into it once and then cloned.
   */
  | { kind: 'empty'; prepare: () => Promise<void>; store?: { rootfs: RootfsStore; layers: number } }
  /** The parent stage's root, moved or copied, with its first `applied` layers already on disk. */
  | { kind: 'parent'; take: () => Promise<{ applied: number; overlay?: RootfsStore } | undefined> };

export class StageRoot {
  readonly path: string;
  /** Metadata index of the root as it is on disk (RUN diffs against it); dropped whenever layers are applied. */
  index: TreeIndex | undefined;
  private rootfs: RootFs | undefined;
  private applied = 0;
  private pending: Promise<RootFs> | undefined;
  private moved = false;
  /** The store whose overlay mount this root is (unmounted by the store at the end of the build). */
  private mountedBy: RootfsStore | undefined;

  constructor(root: string, private readonly origin: RootOrigin, private readonly opts: StageRootOptions) {
    this.path = root;
  }

  /** Whether the root is on disk with every one of `layers` applied (nothing to do for a reader). */
  isCurrent(layers: readonly Layer[]): boolean {
    return !this.moved && this.rootfs !== undefined && this.applied === layers.length;
  }

  /** The root with all of `layers` applied: made on first call, brought up to date on later ones. */
  get(layers: readonly Layer[]): Promise<RootFs> {
    const run = async (): Promise<RootFs> => {
      if (this.moved || !this.rootfs) {
        this.moved = false;
        this.applied = 0;
        this.mountedBy = undefined;
        if (this.origin.kind === 'empty') {
          await this.origin.prepare();
          this.applied = await this.fromStore(layers);
        } else {
          const took = await this.origin.take();
          this.applied = took?.applied ?? 0;
          this.mountedBy = took?.overlay;
        }
        await mkdir(this.path, { recursive: true });
        this.rootfs = new RootFs(this.path);
        this.index = undefined;
      }
      if (this.applied < layers.length) {
        await extractLayers(this.path, layers.slice(this.applied), this.opts);
        this.applied = layers.length;
        this.index = undefined;
      }
      return this.rootfs;
    };
    // One at a time: a later stage may ask while this stage is extracting.
    const p = (this.pending ?? Promise.resolve()).catch(() => undefined).then(run);
    this.pending = p;
    return p;
  }

  /**
   * Clones the base's layers from the store (extracting them into it first when missing): how many layers that
   * applied. The store's own failures (disk full, no cp) fall back to extracting into the root, with a warning.
   */
  private async fromStore(layers: readonly Layer[]): Promise<number> {
    const s = this.origin.kind === 'empty' ? this.origin.store : undefined;
    if (!s || s.layers === 0 || layers.length < s.layers || path.resolve(this.path) === '/') return 0;
    const base = layers.slice(0, s.layers);
    const diffIds = base.map((l) => l.diffId);
    const t0 = Date.now();
    try {
      // leased before it is looked up: a prune running now leaves it alone (or hands it back) from here on
      await s.rootfs.lease(diffIds);
      let made = false;
      let entry = await s.rootfs.lookup(diffIds);
      if (!entry) {
        made = true;
        entry = await s.rootfs.ensure(diffIds, async (dir) => {
          let bytes = 0;
          try {
            await extractLayers(dir, base, { ...this.opts, onApplied: (b) => void (bytes += b) }, true);
            return bytes;
          } catch (err) {
            // The cache dir's disk is full: the store steps aside and the base is extracted into the root instead.
            if (isDiskFull(err)) {
              throw new BuilderError('ROOTFS_STORE_FULL', `the extracted-base store in ${s.rootfs.dir} ran out of space (${(err as Error).message})`, {
                hint: 'free space on the --cache-dir volume (builder cache prune --cache-dir DIR --older-than 0s removes unused bases) or use a larger one',
                cause: err,
              });
            }
            // A kept work dir shows what was extracted before the failure, as without the store.
            await rm(this.path, { recursive: true, force: true }).catch(() => undefined);
            await mkdir(path.dirname(this.path), { recursive: true }).catch(() => undefined);
            await rename(dir, this.path).catch(() => undefined);
            throw err;
          }
        });
      }
      const m = await s.rootfs.mount([entry], this.path);
      if (m.mounted) this.mountedBy = s.rootfs;
      else {
        if (m.reason !== undefined) this.opts.onCopyInstead?.(m.reason);
        await s.rootfs.clone(entry, this.path);
      }
      this.opts.onClone?.(m.mounted ? 'overlay' : 'copy', base.length, (Date.now() - t0) / 1000, made);
      return base.length;
    } catch (err) {
      if (!isBuilderError(err, ROOTFS_STORE_ERROR_CODES)) throw err;
      this.opts.emit?.({ type: 'warning', msg: `${err.message}; extracting the base instead` });
      await rm(this.path, { recursive: true, force: true });
      return 0;
    }
  }

  /** Forgets what is on disk, for a stage that starts again: an overlay is unmounted, a sandbox root removed (in place, the next get() wipes "/"). */
  async discard(): Promise<void> {
    await this.pending?.catch(() => undefined);
    if (this.mountedBy) await this.mountedBy.unmount(this.path);
    this.mountedBy = undefined;
    this.rootfs = undefined;
    this.index = undefined;
    this.applied = 0;
    if (path.resolve(this.path) !== '/') await rm(this.path, { recursive: true, force: true });
  }

  /**
   * Fails when the extracted base under this root's overlay was removed while the build ran (by hand, or a prune of an
   * older builder): a step's diff would then delete the base's files, and its layer whiteout bin, etc, usr.
   */
  async checkBase(): Promise<void> {
    const gone = this.mountedBy ? await this.mountedBy.vanished(this.path) : undefined;
    if (!gone) return;
    throw new BuilderError('ROOTFS_STORE_ENTRY_VANISHED', `the extracted base ${gone}, the lower layer of the stage root ${this.path}, was removed while the build ran`, {
      hint: 'something deleted it from --cache-dir (by hand, or `cache prune` of an older builder version; this one leaves bases in use alone); run the build again',
    });
  }

  /** The root's index after a step changed it: from the overlay's upper layer when this root is one, else a walk of it all. */
  async reindex(before: TreeIndex, opts: IndexOptions): Promise<TreeIndex> {
    const upper = this.mountedBy?.layersOf(this.path)?.[0];
    return (upper !== undefined ? await indexFromUpper(this.path, upper, before, opts) : undefined) ?? indexTree(this.path, opts);
  }

  /** After COPY/WORKDIR the index is updated from the entries they wrote, instead of a full walk. */
  noteWritten(entries: readonly LayerEntry[]): void {
    if (!this.index) return;
    // The walker's table is updated in place: copying it into a Map would build an object per entry of the root.
    const m = this.index.entries instanceof EntryTable ? this.index.entries : new Map(this.index.entries);
    for (const e of entries) if (e.kind === 'entry' && e.meta) m.set(e.path, e.meta as IndexEntry);
    this.index = { ...this.index, entries: m };
  }

  /** A layer made from the root as it is on disk counts as applied. */
  markApplied(layers: number): void {
    if (this.rootfs && !this.moved) this.applied = layers;
  }

  /** Hands the on-disk root to a child stage: moved when nobody else reads it, else copied. */
  async handOver(to: string, layers: readonly Layer[], move: boolean): Promise<{ applied: number; overlay?: RootfsStore } | undefined> {
    await this.pending?.catch(() => undefined);
    if (!this.isCurrent(layers)) return undefined;
    const store = this.mountedBy;
    const stack = store?.layersOf(this.path);
    if (store && stack && move) {
      // An overlay mount point cannot be renamed: the child mounts this root's layers (its upper on top) instead.
      await store.unmount(this.path);
      this.moved = true;
      const m = await store.mount(stack, to);
      if (!m.mounted) {
        throw new BuilderError('ROOTFS_OVERLAY_FAILED', `cannot mount the root of the parent stage at ${to}: ${m.reason ?? 'unknown reason'}`, {
          hint: 'check that overlayfs mounts work on the work dir, or pass a --work-dir on a local filesystem',
        });
      }
      return { applied: this.applied, overlay: store };
    }
    if (store) {
      // Another stage still reads this root: the child gets a copy of what the overlay shows.
      await copyTree(this.path, to);
    } else if (move) {
      await rename(this.path, to);
      this.moved = true;
    } else {
      await cp(this.path, to, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true, force: true });
    }
    return { applied: this.applied };
  }
}

/**
 * In-place mode: remove everything under / except the ignored paths, before extracting a base (kaniko's model). /run and
 * /var/run, left out of snapshots, are emptied too (but for mount points and kept paths): nothing there crosses builds.
 */
export async function wipeRootForInPlace(root: string, exclude: (rel: string) => boolean, prefixes: readonly string[]): Promise<void> {
  if (path.resolve(root) !== '/') return;
  await emptyExcept('', exclude, prefixes);
  const kept = prefixes.filter((p) => p !== 'run' && p !== 'var/run');
  for (const dir of ['run', 'var/run']) {
    if ((await lstat(path.join('/', dir)).catch(() => undefined))?.isDirectory()) {
      await emptyExcept(dir, (r) => kept.some((p) => r === p || r.startsWith(`${p}/`)), kept);
    }
  }
}

async function emptyExcept(from: string, exclude: (rel: string) => boolean, prefixes: readonly string[]): Promise<void> {
  const walk = async (rel: string): Promise<void> => {
    for (const name of await readdir(path.join('/', rel))) {
      const r = rel ? `${rel}/${name}` : name;
      if (exclude(r)) continue;
      // Keep directories that contain excluded paths (mount points, the builder's own files); empty the rest.
      // Never descend through a symlink (it could lead into a mount point or the builder's own files under
      // another name): a symlink on the way to an excluded path is kept as it is.
      if (prefixes.some((p) => p.startsWith(`${r}/`))) {
        if ((await lstat(path.join('/', r))).isDirectory()) await walk(r);
      } else await rm(path.join('/', r), { recursive: true, force: true });
    }
  };
  await walk(from);
}
