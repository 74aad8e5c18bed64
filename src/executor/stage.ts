// The stage lifecycle: resolve FROM (manifest and config only), then for each instruction expand it and hand it to its handler.
import { BuilderError, locateError } from '../errors.js';
import { chainId, fileLayer, layerMediaType, MediaType, type HistoryEntry, type ImageFormat, type Layer, type Platform } from '../image/index.js';
import type { RootFs } from '../rootfs/index.js';
import { layerChangesOf } from '../attest/index.js';
import { writeLayer, type LayerEntry, type WrittenEntry } from '../snapshot/index.js';
import {
  applyToStageVars, cloneStageVars, expandInstruction, expansionEnv, onbuildInstructions, stageVarsFromImage,
  type ExpandedInstruction, type Instruction, type PlannedStage, type StageVars,
} from '../dockerfile/index.js';
import { instructionText, stepKey, type CacheEntry } from '../cache/index.js';
import { linkApplies } from './steps/copy.js';
import { chownNeedsRoot } from './steps/user.js';
import { applyMetadata, createdBy, type ConfigState } from './config.js';
import { resolveBase, scratchConfig, type BaseImage } from './base.js';
import { LayerContentError, StageRoot, wipeRootForInPlace, type RootOrigin } from './root.js';
import { handlerFor } from './steps/index.js';
import type { Executor, StageResult } from './executor.js';

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
   * Writes entries of the root into a new layer file and appends it with its history entry. With `from` (COPY --link)
   * the entries are read from that directory instead, and the stage root gets the layer when a step next needs it.
   */
  async addLayer(entries: LayerEntry[], step: Step, opts: { from?: string } = {}): Promise<void> {
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
      onProgress: (bytes, total) => progress(bytes, total, false),
    }).finally(() => progress(0, 0, true));
    // --sbom: the packages this layer adds are read now, while the root still holds them (else its blob is read later)
    if (written) await layerChangesOf(opts.from ?? this.root.path, written, r.digest).then((c) => services.sbomLayers!.set(r.digest, c), () => undefined);
    services.emit({ type: 'layer-written', step: step.label, digest: r.digest, size: r.size, entries: entries.length, ms: Date.now() - t0 });
    this.layers.push(fileLayer(file, { mediaType: settings.compression === 'zstd' ? MediaType.OciLayerZstd : layerMediaType(this.format), digest: r.digest, size: r.size }, r.diffId));
    this.history.push({ created: settings.created, created_by: step.by });
    // The layer came from the root as it is: the root stays current.
    if (opts.from === undefined) this.root.markApplied(this.layers.length);
  }

  /** A cache hit: the cached layer (or nothing, when the step changed nothing) stands in for running the step. */
  appendCached(layer: Layer | undefined, step: Step): void {
    if (!layer) {
      this.emptyHistory(step);
      return;
    }
    this.layers.push(layer);
    this.history.push({ created: this.ex.settings.created, created_by: step.by });
  }

  emptyHistory(step: Step): void {
    this.history.push({ created: this.ex.settings.created, created_by: step.by, empty_layer: true });
  }
}

/** A step expanded ahead of execution, with the config and variables it runs under and, with --cache, its key and lookup. */
interface PreparedStep {
  inst: ExpandedInstruction;
  step: Step;
  cfg: ConfigState;
  vars: StageVars;
  key?: string;
  /** The key does not chain on the steps before (COPY --link): its layer fits any parent. */
  linked?: boolean;
  lookup?: Promise<CacheEntry | undefined>;
}

/** Thrown inside one run of a stage when a cached layer proved corrupt: the stage runs again without that entry. */
class CachedLayerCorrupt extends Error {}

/**
 * Runs a stage; when extracting a layer that came from a cache hit finds its content is not what the entry records,
 * the entry is distrusted (a warning, then a miss that rewrites it) and the stage starts again on a clean root.
 */
export async function runStage(ex: Executor, stage: PlannedStage): Promise<StageResult> {
  for (;;) {
    try {
      return await runStageOnce(ex, stage);
    } catch (err) {
      if (!(err instanceof CachedLayerCorrupt)) throw err;
    }
  }
}

async function runStageOnce(ex: Executor, stage: PlannedStage): Promise<StageResult> {
  const { services, settings, scheduling } = ex;
  const label = `${settings.platformTag ? `${settings.platformTag} ` : ''}stage ${stage.index}${stage.name ? ` (${stage.name})` : ''}`;
  const platform = stage.platform ?? settings.platform;
  services.emit({ type: 'message', level: 'info', msg: `${label}: FROM ${stage.baseName}${stage.platform ? ` --platform=${stage.platform.os}/${stage.platform.architecture}` : ''}` });

  const { base, vars, origin, key: baseKey } = await resolveFrom(ex, stage, platform, label);
  const root = new StageRoot(settings.stageRoot(stage.index), origin, {
    ...(settings.runMode === 'in-place' ? { ignore: (p: string) => settings.exclude(p.replace(/^\/+/, '')) } : {}),
    emit: services.emit,
    onExtract: (downloaded, total) => services.emit({ type: 'message', level: 'info', msg: `${label}: extracting ${total} layer${total === 1 ? '' : 's'} (${downloaded} downloaded, ${total - downloaded} from the local store)` }),
    onProgress: (e) => services.emit({ type: 'progress', phase: 'extract', ...e }),
    onClone: (how, n, seconds, made) => services.emit({ type: 'message', level: 'info', msg: `${label}: base root (${n} layer${n === 1 ? '' : 's'}) ${how === 'overlay' ? 'mounted (overlay) on' : 'copied from'} the extracted-base store${made ? ' (extracted into it first)' : ''} in ${seconds.toFixed(2)}s` }),
    onCopyInstead: (reason) => services.warnOnce(`extracted bases are copied, not mounted: ${reason}`),
  });
  const state = new StageState(ex, base, settings.imageFormat ?? base.format, root, vars, platform, label);

  // ONBUILD triggers of the base (an image, or an earlier stage's ONBUILD lines) run first; the stage does not inherit them.
  const triggers = stage.baseName !== 'scratch'
    ? onbuildInstructions(base.config.config?.OnBuild, { file: stage.from.file, line: stage.from.line, baseName: stage.baseName })
    : [];
  if (triggers.length) state.cfg = { ...state.cfg, config: { ...state.cfg.config, OnBuild: null } };
  const { steps, key } = await prepareSteps(ex, stage, [...triggers, ...stage.instructions], state, baseKey);

  const cache = services.cache;
  // Layers this run took from cache hits, by the key of their entry; and what the run counted, to take back on a restart.
  const fromCache = new Map<Layer, string>();
  const counted = { hits: 0, misses: 0 };
  // The error to throw for a failure at file:line; a corrupt layer of a cache hit restarts the stage without that entry instead.
  const failure = async (err: unknown, file: string, line: number, prefix: boolean): Promise<unknown> => {
    await root.checkBase(); // a failure on a root whose base vanished (sh not found) is told as that, not blamed on the step
    const key = err instanceof LayerContentError ? fromCache.get(err.layer) : undefined;
    if (!cache || key === undefined) return locateError(err, file, line, prefix);
    cache.distrust(key, `${err instanceof BuilderError ? err.code : 'error'}: ${(err as Error).message}`);
    cache.hits -= counted.hits;
    cache.misses -= counted.misses;
    await root.discard();
    return new CachedLayerCorrupt();
  };
  for (const p of steps) {
    if (scheduling.signal.aborted) {
      if (scheduling.signal.reason instanceof BuilderError) throw scheduling.signal.reason; // the build was cancelled (a signal)
      throw new BuilderError('BUILD_ABORTED', `${label}: stopped because another stage failed`, { hint: 'see the first error reported' });
    }
    const { inst, step } = p;
    state.cfg = p.cfg;
    state.vars = p.vars;
    const handler = handlerFor(inst.kind);
    if (!handler) {
      services.emit({ type: 'step', status: 'started', step: step.label, instruction: step.by });
      services.emit({ type: 'step', status: 'finished', step: step.label, instruction: step.by, ms: 0 });
      if (inst.kind !== 'arg') state.emptyHistory(step); // ARG values live in the stage vars; no history entry (as BuildKit)
      continue;
    }
    const hit = await p.lookup;
    const below = cache && p.key && !p.linked ? chainId(state.layers) : undefined;
    if (cache && hit && cache.fits(hit, below)) {
      cache.hits++;
      counted.hits++;
      services.emit({ type: 'step', status: 'cached', step: step.label, instruction: step.by, ...(hit.layer ? { layer: { digest: hit.layer.descriptor.digest, size: hit.layer.descriptor.size } } : {}) });
      state.appendCached(hit.layer, step);
      if (hit.layer) fromCache.set(hit.layer, hit.key);
      continue;
    }
    let early: Promise<unknown> = Promise.resolve();
    if (scheduling.pushCheck) {
      // the step will need the root: in the sandbox it is made (pulled, extracted into the store) while the check is out
      const needsRoot = inst.kind === 'run' || ((inst.kind === 'copy' || inst.kind === 'add') && !linkApplies(inst))
        || (inst.kind === 'workdir' && (state.cfg.config.WorkingDir ?? '/') !== '/'); // WORKDIR / never reads the root
      if (needsRoot && ex.settings.runMode === 'sandbox') early = state.fs();
      early.catch(() => undefined); // reported below, once the check has passed
      // a refused check ends the build only once the root being made has settled (nothing left writing into the work dir)
      await scheduling.pushCheck.catch(async (err: unknown) => {
        await early.catch(() => undefined);
        throw err;
      });
    }
    // the root made early failing (a base pull) is the FROM line's failure, before the step starts (no second, silent download)
    await early.catch(async (err: unknown) => { throw await failure(err, stage.from.file, stage.from.line, true); });
    services.emit({ type: 'step', status: 'started', step: step.label, instruction: step.by });
    const before = state.layers.length;
    const t0 = Date.now();
    await handler.execute({ ex, stage: state, inst, step }).catch(async (err: unknown) => {
      services.emit({ type: 'step', status: 'failed', step: step.label, instruction: step.by, ms: Date.now() - t0 });
      throw await failure(err, step.file, step.line, false);
    });
    const added = state.layers.length > before ? state.layers[state.layers.length - 1] : undefined;
    services.emit({ type: 'step', status: 'finished', step: step.label, instruction: step.by, ms: Date.now() - t0, ...(added ? { layer: { digest: added.descriptor.digest, size: added.descriptor.size } } : {}) });
    if (cache && p.key) {
      cache.misses++;
      counted.misses++;
      cache.write(p.key, step.by, added, below, platform);
    }
  }

  return {
    index: stage.index,
    root,
    base: { ...base, format: state.format },
    config: state.cfg.config,
    ...(state.cfg.author !== undefined ? { author: state.cfg.author } : {}),
    layers: state.layers,
    history: state.history,
    platform,
    vars: state.vars,
    ...(key !== undefined ? { cacheKey: key } : {}),
  };
}

/**
 * Expands every instruction ahead (expansion and config changes are pure), and with --cache chains the keys and
 * starts every lookup at once: a miss does not stop the lookups of later steps.
 */
async function prepareSteps(
  ex: Executor, stage: PlannedStage, instructions: readonly Instruction[], state: StageState, baseKey: string | undefined,
): Promise<{ steps: PreparedStep[]; key: string | undefined }> {
  const { services, scheduling, settings } = ex;
  const cache = services.cache;
  let cfg = state.cfg;
  const vars = cloneStageVars(state.vars);
  let key = cache ? baseKey : undefined;
  const steps: PreparedStep[] = [];
  for (let i = 0; i < instructions.length; i++) {
    const raw = instructions[i]!;
    const inst = expandInstruction(raw, expansionEnv(vars), services.plan);
    applyToStageVars(vars, inst);
    const step: Step = {
      number: i + 1,
      total: instructions.length,
      label: `[${settings.platformTag ? `${settings.platformTag} ` : ''}${scheduling.multiStage ? `${stage.name ?? stage.index} ` : ''}${i + 1}/${instructions.length}]`,
      where: `${raw.file}:${raw.line}`,
      file: raw.file,
      line: raw.line,
      by: createdBy(inst, cfg.config.Shell),
    };
    if (inst.kind === 'from') {
      throw new BuilderError('BUILD_INTERNAL', `${step.where}: unexpected FROM inside a stage`, { hint: 'this is a bug; please report it' });
    }
    cfg = applyMetadata(cfg, inst);
    const p: PreparedStep = { inst, step, cfg, vars: cloneStageVars(vars) };
    if (key !== undefined && cache) {
      const sources = await handlerFor(inst.kind)?.key?.({ ex, inst, step });
      const flags: Record<string, string> = settings.mtime ? { reproducible: settings.mtime.toISOString() } : {};
      // A zstd build must not reuse gzip blobs (nor the reverse); gzip adds nothing so existing entries keep matching.
      // The level is left out: any level's blob has the same content (diffId) and is as valid.
      if (settings.compression === 'zstd') flags.compression = 'zstd';
      let stepOwnKey: string | undefined;
      if (sources !== null && (inst.kind === 'copy' || inst.kind === 'add') && linkApplies(inst) && !(inst.chown && chownNeedsRoot(inst.chown))) {
        // --link: the layer depends on the instruction, its sources and the workdir only, never on the steps before
        // (a --chown by name reads the stage's passwd, so it keeps the chain). The chain goes on through it.
        stepOwnKey = stepKey({
          parent: `link:${platform(stage, settings)}`,
          instruction: instructionText(inst),
          env: new Map(),
          flags: { ...flags, workdir: cfg.config.WorkingDir || '/' },
          ...(sources !== undefined ? { sources } : {}),
        });
        key = stepKey({ parent: key, instruction: 'link', env: new Map(), flags: {}, sources: stepOwnKey });
      } else {
        key = sources === null ? undefined : stepKey({
          parent: key,
          instruction: instructionText(inst),
          env: expansionEnv(vars),
          flags,
          ...(sources !== undefined ? { sources } : {}),
        });
      }
      if (key !== undefined && cache.covers(inst.kind)) {
        p.key = stepOwnKey ?? key;
        if (stepOwnKey !== undefined) p.linked = true;
        p.lookup = cache.lookup(p.key);
        p.lookup.catch(() => undefined);
      }
    }
    steps.push(p);
  }
  return { steps, key };
}

function platform(stage: PlannedStage, settings: Executor['settings']): string {
  const p = stage.platform ?? settings.platform;
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** FROM: scratch, an earlier stage (its layers and config; its root handed over when first needed) or a registry image. */
async function resolveFrom(
  ex: Executor, stage: PlannedStage, platform: NonNullable<PlannedStage['platform']>, label: string,
): Promise<{ base: BaseImage; vars: StageVars; origin: RootOrigin; key?: string }> {
  const { services, settings, scheduling } = ex;
  const rootPath = settings.stageRoot(stage.index);
  const fresh: RootOrigin = {
    kind: 'empty',
    prepare: () => wipeRootForInPlace(rootPath, settings.exclude, settings.excludePrefixes),
  };
  if (stage.baseStage !== undefined) {
    const parent = await scheduling.done.get(stage.baseStage);
    if (!parent) throw new BuilderError('BUILD_INTERNAL', `${label}: stage ${stage.baseStage} was not built`, { hint: 'this is a bug; please report it' });
    const base: BaseImage = {
      format: parent.base.format,
      config: { ...parent.base.config, config: parent.config, history: parent.history },
      layers: parent.layers,
      ...(parent.base.ref ? { ref: parent.base.ref } : {}),
      ...(parent.base.manifestDigest ? { manifestDigest: parent.base.manifestDigest } : {}),
    };
    // In place "/" holds whatever ran last: the parent's filesystem is rebuilt from its layers.
    const origin: RootOrigin = settings.runMode === 'in-place' ? fresh : {
      kind: 'parent',
      // Moving the parent's root is safe only when no later stage needs it and this one never COPY --from's anything.
      take: () => parent.root.handOver(rootPath, parent.layers,
        (scheduling.usesLeft.get(stage.baseStage!) ?? 1) <= 1 && !stage.instructions.some((i) => i.kind === 'copy' && i.from !== undefined)),
    };
    return { base, vars: cloneStageVars(parent.vars), origin, ...(parent.cacheKey !== undefined ? { key: parent.cacheKey } : {}) };
  }
  if (stage.baseName === 'scratch') {
    const key = `scratch:${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''}`;
    const config = scratchConfig(platform);
    return { base: { format: 'docker', config, layers: [] }, vars: stageVarsFromImage(config.config?.Env), origin: fresh, key };
  }
  const base = await resolveBase(services.client, services.store, stage.baseName, platform, services.warnOnce, ex.scheduling.resolved, true).catch((err: unknown) => { throw locateError(err, stage.from.file, stage.from.line); });
  services.emit({ type: 'base-resolved', ref: `${base.ref}`, digest: `${base.manifestDigest}`, layers: base.layers.length });
  // Sandbox roots of a registry base start as a clone of its extracted layers when the store has them (in place, "/" is extracted into).
  const origin: RootOrigin = services.rootfs && settings.runMode === 'sandbox' && base.layers.length > 0
    ? { ...fresh, store: { rootfs: services.rootfs, layers: base.layers.length } }
    : fresh;
  return { base, vars: stageVarsFromImage(base.config.config?.Env), origin, ...(base.manifestDigest ? { key: `image:${base.manifestDigest}` } : {}) };
}

