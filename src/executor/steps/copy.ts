// COPY and ADD: sources from the context, a stage or an image, placed with Docker's rules; the written paths become the layer.
import { BuilderError } from '../../errors.js';
import { resolveStageRef, type ExpandedInstruction } from '../../dockerfile/index.js';
import type { RootFs } from '../../rootfs/index.js';
import { hashSources, resolveSources } from '../../context/index.js';
import { entriesForPaths } from '../../snapshot/index.js';
import { copyInto, parseChmod, writeHeredocFile, type CopyOptions } from '../copy.js';
import { contextSource, rootSource, type CopySource } from '../sources.js';
import { resolveBase } from '../base.js';
import { extractLayers } from '../root.js';
import { at } from '../where.js';
import type { Executor } from '../executor.js';
import type { StepContext, StepHandler } from './index.js';
import { userFor } from './user.js';

type Copy = Extract<ExpandedInstruction, { kind: 'copy' | 'add' }>;

export const copyStep: StepHandler<Copy> = {
  /** The content digest of context sources as selected, the key of the stage copied from, or the image's digest. */
  async key({ ex, inst, step }) {
    if (inst.sources.length === 0) return undefined; // heredocs only: their text is in the instruction
    if (inst.kind === 'add' && inst.sources.some((s) => /^(https?|git):\/\/|^git@/.test(s))) return null;
    const { services, scheduling, settings } = ex;
    const from = inst.kind === 'copy' ? inst.from : undefined;
    if (from === undefined) return hashSources(services.ctx, await resolveSources(services.ctx, inst.sources).catch(at(step.where))).catch(at(step.where));
    const ref = resolveStageRef(services.plan.stages.map((s) => ({ index: s.index, ...(s.name ? { name: s.name } : {}) })), from, { file: inst.file, line: inst.line, what: 'COPY --from' });
    if (ref.kind === 'stage') return (await scheduling.done.get(ref.index))?.cacheKey ?? null;
    const img = await resolveBase(services.client, services.store, ref.ref, settings.platform, services.warnOnce).catch(at(step.where));
    return img.manifestDigest ? `image:${img.manifestDigest}` : null;
  },

  async execute({ ex, stage, inst, step }: StepContext<Copy>) {
    refuseUnsupported(inst, step.where);
    const rootfs = await stage.fs();
    const written = await copyInstruction(ex, rootfs, stage.cfg.config.WorkingDir || '/', inst, step.where);
    const entries = await entriesForPaths(rootfs.root, written, { exclude: ex.settings.exclude });
    stage.root.noteWritten(entries);
    if (entries.length === 0) stage.emptyHistory(step);
    else await stage.addLayer(entries, step);
  },
};

function refuseUnsupported(inst: Copy, where: string): void {
  for (const s of inst.sources) {
    if (inst.kind === 'add' && /^(https?|git):\/\/|^git@/.test(s)) {
      throw new BuilderError('ADD_URL_UNSUPPORTED', `${where}: ADD from a URL is not supported yet (${s})`, {
        hint: 'download the file in a RUN step (e.g. wget/curl) or put it in the build context',
      });
    }
  }
  if (inst.kind === 'add') {
    const archive = inst.sources.find((s) => /\.(tar|tgz|tar\.gz|tar\.bz2|tar\.xz|txz|tbz2)$/.test(s));
    if (archive) {
      throw new BuilderError('ADD_ARCHIVE_UNSUPPORTED', `${where}: ADD of a local archive (auto-extraction) is not supported yet (${archive})`, {
        hint: 'use COPY plus RUN tar -x, or wait for full ADD support',
      });
    }
  }
  if (inst.exclude.length > 0 || (inst.kind === 'copy' && inst.parents)) {
    throw new BuilderError('COPY_FLAG_UNSUPPORTED', `${where}: COPY --exclude/--parents are not supported yet`, { hint: 'remove the flag or use .dockerignore' });
  }
}

async function copyInstruction(ex: Executor, rootfs: RootFs, workdir: string, inst: Copy, where: string): Promise<string[]> {
  let uid = 0;
  let gid = 0;
  if (inst.chown) {
    const u = await userFor(rootfs, inst.chown, where);
    // Docker: a user without a group gets the user's numeric id as gid too.
    uid = u.uid;
    gid = inst.chown.includes(':') ? u.gid : u.uid;
  }
  const copyOpts: CopyOptions = {
    dest: inst.dest,
    workdir,
    uid,
    gid,
    ...(inst.chmod ? { mode: parseChmod(inst.chmod, where) } : {}),
    // BuildKit keeps the owners of files copied from a stage or an image unless --chown is given.
    ...(inst.kind === 'copy' && inst.from !== undefined && !inst.chown ? { preserveOwner: true } : {}),
    where,
  };
  const written: string[] = [];
  for (const h of inst.heredocs) written.push(await writeHeredocFile(rootfs, h.name, h.content, copyOpts));
  if (inst.sources.length === 0) return written;
  const source = await sourceFor(ex, inst.kind === 'copy' ? inst.from : undefined, inst);
  written.push(...(await copyInto(rootfs, source, inst.sources, copyOpts).catch(at(where))));
  return written;
}

async function sourceFor(ex: Executor, from: string | undefined, { file, line }: { file: string; line: number }): Promise<CopySource> {
  const { services, scheduling, settings } = ex;
  if (from === undefined) return contextSource(services.ctx);
  const where = `${file}:${line}`;
  const ref = resolveStageRef(services.plan.stages.map((s) => ({ index: s.index, ...(s.name ? { name: s.name } : {}) })), from, { file, line, what: 'COPY --from' });
  if (ref.kind === 'stage') {
    const done = await scheduling.done.get(ref.index);
    if (!done) throw new BuilderError('BUILD_INTERNAL', `${where}: stage ${ref.index} was not built before it is used`, { hint: 'this is a bug; please report it' });
    // In place, "/" has moved on: materialize the stage from its layers once, in the work dir.
    if (settings.runMode !== 'in-place') return rootSource(await done.root.get(done.layers), `stage ${from}`);
    return rootSource(await materialize(ex, `stage:${ref.index}`, async () => done.layers), `stage ${from}`);
  }
  const img = materialize(ex, `image:${ref.ref}`, async () => (await resolveBase(services.client, services.store, ref.ref, settings.platform, services.warnOnce).catch(at(where))).layers);
  return rootSource(await img, `image ${ref.ref}`);
}

/** Extracts layers into a work-dir root once per key; concurrent stages asking for the same key share it. */
function materialize(ex: Executor, key: string, layers: () => Promise<import('../../image/index.js').Layer[]>): Promise<RootFs> {
  const { scheduling, settings, services } = ex;
  let p = scheduling.images.get(key);
  if (!p) {
    const dir = settings.scratchPath('root');
    p = layers().then((ls) => extractLayers(dir, ls, { onWarning: (m) => services.log(`warning: ${m}`) }));
    scheduling.images.set(key, p);
  }
  return p;
}
