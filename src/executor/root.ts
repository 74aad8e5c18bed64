// A stage's root filesystem, made only when a step needs it: the layers not yet on disk are fetched (two at a time) and applied in order.
import { cp, lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Layer } from '../image/index.js';
import { extractLayer, RootFs } from '../rootfs/index.js';
import { EntryTable, type IndexEntry, type LayerEntry, type TreeIndex } from '../snapshot/index.js';
import { runPool } from '../util/pool.js';

export interface ExtractOptions {
  /** Container paths ("/x") extraction must skip (in place: mount points and the builder's own files). */
  ignore?: (containerPath: string) => boolean;
  onWarning?: (m: string) => void;
  /** Called before extraction with how many of the layers were downloaded (the rest were local). */
  onExtract?: (downloaded: number, total: number) => void;
}

/** Fetches what is remote, then applies layers in order onto root (created if missing). */
export async function extractLayers(root: string, layers: readonly Layer[], opts: ExtractOptions = {}): Promise<RootFs> {
  await mkdir(root, { recursive: true });
  let downloaded = 0;
  await runPool(layers.filter((l) => l.fetch), 2, async (l) => {
    if (await l.fetch!()) downloaded++;
  });
  opts.onExtract?.(downloaded, layers.length);
  const rootfs = new RootFs(root);
  for (const l of layers) {
    await extractLayer(rootfs, await l.open(), {
      layer: l.descriptor.digest,
      mediaType: l.descriptor.mediaType,
      expectedDiffId: l.diffId,
      ...(opts.ignore ? { ignore: opts.ignore } : {}),
      ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
    });
  }
  return rootfs;
}

/** How a stage's root starts before its layers are applied. */
export type RootOrigin =
  /** An empty directory (scratch, a registry image, or in place after the wipe). */
  | { kind: 'empty'; prepare: () => Promise<void> }
  /** The parent stage's root, moved or copied, with its first `applied` layers already on disk. */
  | { kind: 'parent'; take: () => Promise<{ applied: number } | undefined> };

export class StageRoot {
  readonly path: string;
  /** Metadata index of the root as it is on disk (RUN diffs against it); dropped whenever layers are applied. */
  index: TreeIndex | undefined;
  private rootfs: RootFs | undefined;
  private applied = 0;
  private pending: Promise<RootFs> | undefined;
  private moved = false;

  constructor(root: string, private readonly origin: RootOrigin, private readonly opts: ExtractOptions) {
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
        if (this.origin.kind === 'empty') await this.origin.prepare();
        else this.applied = (await this.origin.take())?.applied ?? 0;
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
  async handOver(to: string, layers: readonly Layer[], move: boolean): Promise<{ applied: number } | undefined> {
    await this.pending?.catch(() => undefined);
    if (!this.isCurrent(layers)) return undefined;
    if (move) {
      await rename(this.path, to);
      this.moved = true;
    } else {
      await cp(this.path, to, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true, force: true });
    }
    return { applied: this.applied };
  }
}

/** In-place mode: remove everything under / except the ignored paths, before extracting a base (kaniko's model). */
export async function wipeRootForInPlace(root: string, exclude: (rel: string) => boolean, prefixes: readonly string[]): Promise<void> {
  if (path.resolve(root) !== '/') return;
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
  await walk('');
}
