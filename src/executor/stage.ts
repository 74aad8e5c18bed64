// The stage lifecycle: resolve FROM (manifest and config only), expand every step ahead (keys, lookups), then per step a cache hit or its handler.
import { BuilderError, locateError } from '../errors.js';
import { chainId, type Layer, type Platform } from '../image/index.js';
import {
  applyToStageVars, cloneStageVars, expandInstruction, expansionEnv, onbuildInstructions, stageVarsFromImage,
  type ExpandedInstruction, type Instruction, type PlannedStage, type StageVars,
} from '../dockerfile/index.js';
import type { CacheEntry } from '../cache/index.js';
import { applyMetadata, createdBy, type ConfigState } from './config.js';
import { resolveBase, scratchConfig, type BaseImage } from './base.js';
import { isDiskFull, LayerContentError, StageRoot, wipeRootForInPlace, type RootOrigin } from './root.js';
import { chainKey, EMPTY, StageState, type KeyContext, type Step, type StepKey } from './stage-state.js';
import { builtStage } from './stage-sources.js';
import { handlerFor } from './steps/index.js';
import type { Executor, StageResult } from './executor.js';

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
  const { services, settings } = ex;
  const label = `${settings.platformTag ? `${settings.platformTag} ` : ''}stage ${stage.index}${stage.name ? ` (${stage.name})` : ''}`;
  const platform = stage.platform ?? settings.platform;
  services.emit({ type: 'stage-started', stage: label, base: stage.baseName, ...(stage.platform ? { platform: `${stage.platform.os}/${stage.platform.architecture}` } : {}) });

  const { base, vars, origin, key: baseKey } = await resolveFrom(ex, stage, platform, label);
  const root = stageRoot(ex, stage, origin, label);
  const state = new StageState(ex, base, settings.imageFormat ?? base.format, root, vars, platform, label);

  // ONBUILD triggers of the base (an image, or an earlier stage's ONBUILD lines) run first; the stage does not inherit them.
  const triggers = stage.baseName !== 'scratch'
    ? onbuildInstructions(base.config.config?.OnBuild, { file: stage.from.file, line: stage.from.line, baseName: stage.baseName })
    : [];
  if (triggers.length) state.cfg = { ...state.cfg, config: { ...state.cfg.config, OnBuild: null } };
  const { steps, key } = await prepareSteps(ex, stage, [...triggers, ...stage.instructions], state, baseKey);

  const run = new StageRun(ex, stage, state);
  for (const p of steps) await run.step(p);

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

/** The stage's root, its base made on first need (extracted, cloned from the store, or handed over by the parent stage). */
function stageRoot(ex: Executor, stage: PlannedStage, origin: RootOrigin, label: string): StageRoot {
  const { services, settings } = ex;
  return new StageRoot(settings.stageRoot(stage.index), origin, {
    ...(settings.runMode === 'in-place' ? { ignore: (p: string) => settings.exclude(p.replace(/^\/+/, '')) } : {}),
    emit: services.emit,
    host: settings.host,
    onExtract: (downloaded, total) => services.emit({ type: 'base-extracting', stage: label, layers: total, downloaded }),
    onProgress: (e) => services.emit({ type: 'progress', phase: 'extract', ...e }),
    onClone: (how, n, seconds, made) => services.emit({ type: 'base-cloned', stage: label, how, layers: n, seconds, extracted: made }),
    onCopyInstead: (reason) => services.warnOnce(`extracted bases are copied, not mounted: ${reason}`),
  });
}

/** One run of a stage's steps: each one a cache hit or executed by its handler, its layer written to the cache. */
class StageRun {
  /** Layers this run took from cache hits, by the key of their entry; and what the run counted, to take back on a restart. */
  private readonly fromCache = new Map<Layer, string>();
  private readonly counted = { hits: 0, misses: 0 };

  constructor(private readonly ex: Executor, private readonly stage: PlannedStage, private readonly state: StageState) {}

  async step(p: PreparedStep): Promise<void> {
    const { services: { emit, cache } } = this.ex;
    const { inst, step } = p;
    const state = this.state;
    this.checkAborted();
    state.cfg = p.cfg;
    state.vars = p.vars;
    const handler = handlerFor(inst.kind);
    if (!handler) {
      emit({ type: 'step', status: 'started', step: step.label, instruction: step.by });
      emit({ type: 'step', status: 'finished', step: step.label, instruction: step.by, ms: 0 });
      if (inst.kind !== 'arg') state.append(EMPTY, step); // ARG values live in the stage vars; no history entry (as BuildKit)
      return;
    }
    const hit = await p.lookup;
    const below = cache && p.key && !p.linked ? chainId(state.layers) : undefined;
    if (cache && hit && cache.fits(hit, below)) {
      cache.hits++;
      this.counted.hits++;
      emit({ type: 'step', status: 'cached', step: step.label, instruction: step.by, ...(hit.layer ? { layer: { digest: hit.layer.descriptor.digest, size: hit.layer.descriptor.size } } : {}) });
      state.append(hit.layer ? { layer: hit.layer, inRoot: false } : EMPTY, step);
      if (hit.layer) this.fromCache.set(hit.layer, hit.key);
      // a RUN from the cache may leave the build without one that starts the sandbox: probe it now, beside the rest
      if (inst.kind === 'run') this.ex.scheduling.sandbox?.verify().catch(() => undefined);
      return;
    }
    await this.whenAllowed(handler.needsRoot({ inst, stage: state }));
    emit({ type: 'step', status: 'started', step: step.label, instruction: step.by });
    const t0 = Date.now();
    const r = await handler.execute({ ex: this.ex, stage: state, inst, step }).catch(async (err: unknown) => {
      emit({ type: 'step', status: 'failed', step: step.label, instruction: step.by, ms: Date.now() - t0 });
      throw await this.failure(err, step.file, step.line, false);
    });
    state.append(r, step);
    const added = 'layer' in r ? r.layer : undefined;
    emit({ type: 'step', status: 'finished', step: step.label, instruction: step.by, ms: Date.now() - t0, ...(added ? { layer: { digest: added.descriptor.digest, size: added.descriptor.size } } : {}) });
    if (cache && p.key) {
      cache.misses++;
      this.counted.misses++;
      cache.write(p.key, step.by, added, below, state.platform);
    }
  }

  private checkAborted(): void {
    const { signal } = this.ex.scheduling;
    if (!signal.aborted) return;
    if (signal.reason instanceof BuilderError) throw signal.reason; // the build was cancelled (a signal)
    throw new BuilderError('BUILD_ABORTED', `${this.state.label}: stopped because another stage failed`, { hint: 'see the first error reported' });
  }

  /** Waits for the push check; in the sandbox a step that needs the root has it made (pulled, extracted) meanwhile. */
  private async whenAllowed(needsRoot: boolean): Promise<void> {
    const { scheduling, settings } = this.ex;
    let early: Promise<unknown> = Promise.resolve();
    if (scheduling.pushCheck) {
      if (needsRoot && settings.runMode === 'sandbox') early = this.state.fs();
      early.catch(() => undefined); // reported below, once the check has passed
      // a refused check ends the build only once the root being made has settled (nothing left writing into the work dir)
      await scheduling.pushCheck.catch(async (err: unknown) => {
        await early.catch(() => undefined);
        throw err;
      });
    }
    // the root made early failing (a base pull) is the FROM line's failure, before the step starts (no second, silent download)
    await early.catch(async (err: unknown) => { throw await this.failure(err, this.stage.from.file, this.stage.from.line, true); });
  }

  /** The error to throw for a failure at file:line; a corrupt layer of a cache hit restarts the stage without that entry instead. */
  private async failure(err: unknown, file: string, line: number, prefix: boolean): Promise<unknown> {
    const { cache } = this.ex.services;
    const root = this.state.root;
    await root.checkBase(); // a failure on a root whose base vanished (sh not found) is told as that, not blamed on the step
    const key = err instanceof LayerContentError ? this.fromCache.get(err.layer) : undefined;
    if (!cache || key === undefined) return locateError(fileSystemError(err, `${file}:${line}`), file, line, prefix);
    cache.distrust(key, `${err instanceof BuilderError ? err.code : 'error'}: ${(err as Error).message}`);
    cache.hits -= this.counted.hits;
    cache.misses -= this.counted.misses;
    await root.discard();
    return new CachedLayerCorrupt();
  }
}

/** A step's raw file-system error (a COPY into a full disk, say) as a BuilderError: uncaught, it was an "internal error". */
function fileSystemError(err: unknown, where: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (err instanceof BuilderError || !(err instanceof Error) || typeof e.code !== 'string') return err;
  if (isDiskFull(err)) {
    return new BuilderError('STEP_DISK_FULL', `${where}: the disk is full: ${e.message}`, {
      hint: 'free space where the stage roots are (--work-dir; in place, the container\'s own disk) or point --work-dir at a larger disk',
      cause: err,
    });
  }
  // only errors about a path (a pipe's EPIPE, say, is no file-system error of the step's)
  if (typeof e.path !== 'string') return err;
  return new BuilderError('STEP_IO_FAILED', `${where}: ${e.message}`, { hint: 'check the path named (permissions, a read-only or failing disk)', cause: err });
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
    const inst = expandInstruction(raw, expansionEnv(vars), services.plan, cfg.config.WorkingDir || '/');
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
      const k = await keyOf({ ex, inst, step, parent: key, env: expansionEnv(vars), flags: keyFlags(settings), workdir: cfg.config.WorkingDir || '/', platform: state.platform });
      key = k?.chain;
      if (k && cache.covers(inst.kind)) {
        p.key = k.linked ?? k.chain;
        if (k.linked !== undefined) p.linked = true;
        p.lookup = cache.lookup(p.key);
        p.lookup.catch(() => undefined);
      }
    }
    steps.push(p);
  }
  return { steps, key };
}

/** A step's key: its handler's, else the instruction chained on the step before. */
function keyOf(c: KeyContext): Promise<StepKey | null> {
  const handler = handlerFor(c.inst.kind);
  return handler?.key ? handler.key(c) : Promise.resolve(chainKey(c));
}

/** Settings that change a layer's bytes. */
function keyFlags(settings: Executor['settings']): Record<string, string> {
  const flags: Record<string, string> = settings.mtime ? { reproducible: settings.mtime.toISOString() } : {};
  // A zstd build must not reuse gzip blobs (nor the reverse); gzip adds nothing so existing entries keep matching.
  // The level is left out: any level's blob has the same content (diffId) and is as valid.
  if (settings.compression === 'zstd') flags.compression = 'zstd';
  return flags;
}

/** FROM: scratch, an earlier stage (its layers and config; its root handed over when first needed) or a registry image. */
async function resolveFrom(
  ex: Executor, stage: PlannedStage, platform: Platform, label: string,
): Promise<{ base: BaseImage; vars: StageVars; origin: RootOrigin; key?: string }> {
  const { services, settings, scheduling } = ex;
  const rootPath = settings.stageRoot(stage.index);
  const fresh: RootOrigin = {
    kind: 'empty',
    prepare: () => wipeRootForInPlace(rootPath, settings.exclude, settings.excludePrefixes),
  };
  if (stage.baseStage !== undefined) {
    const parent = await builtStage(ex, stage.baseStage, label);
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

