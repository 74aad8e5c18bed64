// The stages and images steps read by name (FROM <stage>, COPY --from, RUN --mount from=): one lookup, then their root or key.
import { BuilderError } from '../errors.js';
import { resolveStageRef } from '../dockerfile/index.js';
import type { Layer } from '../image/index.js';
import type { RootFs } from '../rootfs/index.js';
import { resolveBase, type BaseImage } from './base.js';
import { extractLayers } from './root.js';
import { at } from './where.js';
import type { Executor, StageResult } from './executor.js';

/** A stage of this build (by name or index) or an image (by reference); `label` names it in errors ("stage build"). */
export type StageSource = { kind: 'stage'; index: number; label: string } | { kind: 'image'; ref: string; label: string };

/** What `from` names: an earlier stage, else an image reference (the rules of resolveStageRef). */
export function lookupSource(ex: Executor, from: string, place: { file: string; line: number; what: string }): StageSource {
  const ref = resolveStageRef(ex.services.plan.stages, from, place);
  return ref.kind === 'stage' ? { kind: 'stage', index: ref.index, label: `stage ${from}` } : { kind: 'image', ref: ref.ref, label: `image ${ref.ref}` };
}

/** A stage's result, once it finished (a stage awaits only the stages it reads). */
export async function builtStage(ex: Executor, index: number, where: string): Promise<StageResult> {
  const done = await ex.scheduling.done.get(index);
  if (!done) throw new BuilderError('BUILD_INTERNAL', `${where}: stage ${index} was not built before it is used`, { hint: 'this is a bug; please report it' });
  return done;
}

/** The root to read from: a stage's own (in place "/" has moved on: its layers extracted once, in the work dir), or an image's. */
export async function sourceRoot(ex: Executor, src: StageSource, where: string): Promise<RootFs> {
  if (src.kind === 'image') return materialize(ex, `image:${src.ref}`, async () => (await resolveImage(ex, src.ref, where)).layers);
  const done = await builtStage(ex, src.index, where);
  if (ex.settings.runMode !== 'in-place') return done.root.get(done.layers);
  return materialize(ex, `stage:${src.index}`, async () => done.layers);
}

/** What reading the source adds to a cache key: the stage's key or the image's digest; null when it has none. */
export async function sourceKey(ex: Executor, src: StageSource, where: string): Promise<string | null> {
  if (src.kind === 'stage') return (await builtStage(ex, src.index, where)).cacheKey ?? null;
  const img = await resolveImage(ex, src.ref, where);
  return img.manifestDigest ? `image:${img.manifestDigest}` : null;
}

function resolveImage(ex: Executor, ref: string, where: string): Promise<BaseImage> {
  const { services, scheduling, settings } = ex;
  return resolveBase(services.client, services.store, ref, settings.platform, services.warnOnce, scheduling.resolved).catch(at(where));
}

/** Extracts layers into a work-dir root once per key; concurrent stages asking for the same key share it. */
function materialize(ex: Executor, key: string, layers: () => Promise<Layer[]>): Promise<RootFs> {
  const { scheduling, settings, services } = ex;
  let p = scheduling.images.get(key);
  if (!p) {
    const dir = settings.scratchPath('root');
    p = layers().then((ls) => extractLayers(dir, ls, { emit: services.emit, host: settings.host }, true));
    scheduling.images.set(key, p);
  }
  return p;
}
