// What the stage loop and its step handlers share, below both: a step's identity, the running stage's state, the handler contract.
import { BuilderError } from '../errors.js';
import { fileLayer, layerMediaType, MediaType, type HistoryEntry, type ImageFormat, type Layer, type Platform } from '../image/index.js';
import type { RootFs } from '../rootfs/index.js';
import { layerChangesOf } from '../attest/index.js';
import { writeLayer, type LayerEntry, type WrittenEntry } from '../snapshot/index.js';
import type { ExpandedInstruction, StageVars } from '../dockerfile/index.js';
import { instructionText, stepKey } from '../cache/index.js';
import type { ConfigState } from './config.js';
import type { BaseImage } from './base.js';
import type { StageRoot } from './root.js';
import type { Executor } from './executor.js';

export interface Step {
  number: number;
  total: number;
  /** "[3/7] " or "[stage-name 3/7] " when several stages run. */
  label: string;
  /** file:line of the instruction, for errors; file and line apart for the error's fields. */
  where: string;
  file: string;
  line: number;
  /** The history's created_by. */
  by: string;
}

/** What a step made: a layer (`inRoot`: the stage root already holds its files), or no filesystem change. */
export type StepResult = { layer: Layer; inRoot: boolean } | { empty: true };

export const EMPTY: StepResult = { empty: true };

/** The mutable state of a running stage: config, variables, layers and history so far, and its (lazy) root. */
export class StageState {
  cfg: ConfigState;
  layers: Layer[];
  history: HistoryEntry[];

  constructor(
    private readonly ex: Executor,
    base: BaseImage,
    readonly format: ImageFormat,
    readonly root: StageRoot,
    public vars: StageVars,
    /** The platform the stage's binaries are for (its FROM --platform, else the target). */
    readonly platform: Platform,
    /** "stage 1 (build)", for errors. */
    readonly label: string,
  ) {
    this.cfg = { config: { ...(base.config.config ?? {}) }, cmdSet: false, ...(base.config.author ? { author: base.config.author } : {}) };
    this.layers = [...base.layers];
    this.history = [...(base.config.history ?? [])];
  }

  /** The root with every layer so far applied; base layers are downloaded and extracted here, on first need. */
  fs(): Promise<RootFs> {
    return this.root.get(this.layers);
  }

  /**
   * Writes entries of the root into a new layer file (none: an empty result). With `from` (COPY --link) the entries
   * are read from that directory instead, and the stage root gets the layer when a step next needs it.
   */
  async layerOf(entries: LayerEntry[], step: Step, opts: { from?: string } = {}): Promise<StepResult> {
    if (entries.length === 0) return EMPTY;
    const { settings, services } = this.ex;
    // Every reader takes a ".wh." name in a layer for a whiteout: the file would delete its sibling instead of existing.
    const wh = entries.find((e) => e.kind === 'entry' && /(^|\/)\.wh\./.test(e.path));
    if (wh) {
      throw new BuilderError('SNAPSHOT_WHITEOUT_NAME', `${step.where}: the step created /${wh.path.replace(/^\/+/, '')}; a name starting with ".wh." is a whiteout in an image layer and every reader would delete a file instead of keeping it`, {
        hint: 'rename the file (or remove it in the same step)',
      });
    }
    if (opts.from === undefined) await this.root.checkBase();
    const file = `${settings.scratchPath('layer')}.tar.gz`;
    const t0 = Date.now();
    const progress = (bytes: number, total: number, done: boolean): void => services.emit({ type: 'progress', phase: 'compress', id: step.label, bytes, total, done });
    const written: WrittenEntry[] | undefined = services.sbomLayers ? [] : undefined;
    const r = await writeLayer(opts.from ?? this.root.path, entries, file, {
      ...(written ? { onEntry: (e: WrittenEntry) => written.push(e) } : {}),
      signal: this.ex.scheduling.signal,
      ...(settings.compression ? { compression: settings.compression } : {}),
      ...(settings.compressionLevel !== undefined ? { compressionLevel: settings.compressionLevel } : {}),
      ...(settings.mtime ? { mtime: settings.mtime } : {}),
      ...(settings.host.zstd ? { zstd: settings.host.zstd } : {}),
      onProgress: (bytes, total) => progress(bytes, total, false),
    }).finally(() => progress(0, 0, true));
    // --sbom: the packages this layer adds are read now, while the root still holds them (else its blob is read later)
    if (written) await layerChangesOf(opts.from ?? this.root.path, written, r.digest).then((c) => services.sbomLayers!.set(r.digest, c), () => undefined);
    services.emit({ type: 'layer-written', step: step.label, digest: r.digest, size: r.size, entries: entries.length, ms: Date.now() - t0 });
    const layer = { ...fileLayer(file, { mediaType: settings.compression === 'zstd' ? MediaType.OciLayerZstd : layerMediaType(this.format), digest: r.digest, size: r.size }, r.diffId), fresh: true };
    return { layer, inRoot: opts.from === undefined };
  }

  /** Appends what a step made (run, or a cache hit standing in for it) with its history entry. */
  append(r: StepResult, step: Step): void {
    if ('empty' in r) {
      this.history.push({ created: this.ex.settings.created, created_by: step.by, empty_layer: true });
      return;
    }
    this.layers.push(r.layer);
    this.history.push({ created: this.ex.settings.created, created_by: step.by });
    // The layer came from the root as it is: the root stays current.
    if (r.inRoot) this.root.markApplied(this.layers.length);
  }
}

export interface StepContext<I extends ExpandedInstruction = ExpandedInstruction> {
  ex: Executor;
  stage: StageState;
  inst: I;
  step: Step;
}

/** What a step's cache key is made of, besides what its handler reads. */
export interface KeyContext<I extends ExpandedInstruction = ExpandedInstruction> {
  ex: Executor;
  inst: I;
  step: Step;
  /** The key of the step before (or of the base). */
  parent: string;
  /** ARG and ENV values in effect for the step. */
  env: ReadonlyMap<string, string>;
  /** Build settings that change the layer's bytes. */
  flags: Readonly<Record<string, string>>;
  /** The WORKDIR the step runs in. */
  workdir: string;
  /** The platform the stage's binaries are for. */
  platform: Platform;
}

/** A step's cache key: `chain` goes on to the next step; `linked` (COPY --link) is what its layer is stored under, fitting any parent. */
export interface StepKey {
  chain: string;
  linked?: string;
}

export interface StepHandler<I extends ExpandedInstruction = ExpandedInstruction> {
  /** The step's cache key (called before anything runs); null when it cannot be known. Without it: chainKey(c). */
  key?(c: KeyContext<I>): Promise<StepKey | null>;
  /** The step reads or writes the stage root (prepared early, while the push check is out). */
  needsRoot(c: { inst: I; stage: StageState }): boolean;
  /** Does the step: writes into the stage root and says what it made. */
  execute(c: StepContext<I>): Promise<StepResult>;
}

/**
 * The key chained on the step before: the instruction, ARG/ENV, flags and `sources` (what the step reads beyond
 * them: a content digest or key).
 */
export function chainKey(c: KeyContext, sources?: string): StepKey {
  return {
    chain: stepKey({ parent: c.parent, instruction: instructionText(c.inst), env: c.env, flags: c.flags, ...(sources !== undefined ? { sources } : {}) }),
  };
}
