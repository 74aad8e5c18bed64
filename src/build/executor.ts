// The stage executor: FROM -> each instruction (expand, execute, snapshot, record) -> the stage's image.
import { chmod, cp, lstat, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { BuilderError } from '../errors.js';
import type { HistoryEntry, ImageConfig, Platform } from '../image/index.js';
import type { BlobStore } from '../cache/index.js';
import type { BuildContext } from '../context/index.js';
import type { RegistryClient } from '../registry/index.js';
import { RootFs } from '../rootfs/index.js';
import { resolveUser, runStep, shellArgv, type RunUser } from '../run/index.js';
import {
  diffIndexes, entriesForPaths, indexTree, toLayerEntries, withXattrs, writeLayer,
  type Change, type IndexEntry, type LayerEntry, type TreeIndex,
} from '../snapshot/index.js';
import {
  applyToStageVars, cloneStageVars, expandInstruction, expansionEnv, onbuildInstructions, resolveStageRef,
  runEnvironment, stageVarsFromImage,
  type BuildPlan, type Instruction, type PlannedStage, type StageVars,
} from '../dockerfile/index.js';
import { applyMetadata, createdBy, type ConfigState } from './config.js';
import { copyInto, parseChmod, writeHeredocFile, type CopyOptions } from './copy.js';
import { contextSource, rootSource, type CopySource } from './sources.js';
import { extractLayers, pullBase, scratchConfig, type BaseImage } from './base.js';
import { fileLayer, layerMediaType, type BuiltLayer } from './layers.js';
import type { ImageFormat } from '../image/index.js';
import type { BuildOptions, ResolvedBuildOptions } from './options.js';

/** What a finished stage leaves for later stages and for the output. */
export interface StageResult {
  index: number;
  root: string;
  rootfs: RootFs;
  base: BaseImage;
  config: ImageConfig['config'];
  author?: string;
  layers: BuiltLayer[];
  history: HistoryEntry[];
  platform: Platform;
  /** ENV and ARG values at the end of the stage: a stage built FROM this one starts with them. */
  vars: StageVars;
}

/** Shared, per-build services the stage executor uses. */
export interface ExecutorEnv {
  opts: ResolvedBuildOptions;
  plan: BuildPlan;
  ctx: BuildContext;
  client: RegistryClient;
  store: BlobStore;
  /** Snapshot excludes: runtime mounts in sandbox mode, ignored paths in place (relative, no leading "/"). */
  exclude: (rel: string) => boolean;
  /** The same excludes as a list of relative path prefixes (in-place wipe keeps their parents). */
  excludePrefixes: readonly string[];
  created: string;
  layerDir: string;
  stageRoot(index: number): string;
  /** Stages by index, as they finish: a stage awaits only the stages it reads (FROM or COPY --from). */
  done: Map<number, Promise<StageResult>>;
  /** Roots materialized for COPY --from (images, and stages in place), by key; shared by concurrent stages. */
  images: Map<string, Promise<RootFs>>;
  /** More than one stage runs: log lines name the stage. */
  multiStage: boolean;
  /** Aborted when any stage fails: the others stop at their next step. */
  signal: AbortSignal;
  /** Warnings already logged once in this build. */
  warned: Set<string>;
  /** How many stages not yet finished (the running one included) depend on each stage (FROM or COPY --from). */
  usesLeft: Map<number, number>;
  layerCounter: { n: number };
}

interface Step {
  number: number;
  total: number;
  /** "[3/7] " or "[stage-name 3/7] " when several stages run. */
  label: string;
}

export async function runStage(env: ExecutorEnv, stage: PlannedStage): Promise<StageResult> {
  const { opts, plan } = env;
  const label = `stage ${stage.index}${stage.name ? ` (${stage.name})` : ''}`;
  const platform: Platform = stage.platform ?? opts.platform;
  const root = env.stageRoot(stage.index);
  opts.log(`${label}: FROM ${stage.baseName}${stage.platform ? ` --platform=${stage.platform.os}/${stage.platform.architecture}` : ''}`);

  // Base: scratch, an earlier stage (its root reused when nothing else needs it, else copied), or an image.
  let base: BaseImage;
  let rootfs: RootFs;
  let vars: StageVars;
  if (stage.baseStage !== undefined) {
    const parent = await env.done.get(stage.baseStage);
    if (!parent) throw new BuilderError('BUILD_INTERNAL', `${label}: stage ${stage.baseStage} was not built`, { hint: 'this is a bug; please report it' });
    // Moving the parent's root is safe only when no later stage needs it and this one never COPY --from's anything.
    const othersNeedIt = (env.usesLeft.get(stage.baseStage) ?? 1) > 1;
    const copiesFrom = stage.instructions.some((i) => i.kind === 'copy' && i.from !== undefined);
    if (opts.runMode === 'in-place') {
      // "/" holds whatever ran last: rebuild the parent stage's filesystem from its layers.
      await wipeRootForInPlace(root, env.exclude, env.excludePrefixes);
      rootfs = await extractLayers(root, parent.layers, { ignore: inPlaceIgnore(env), onWarning: (m) => opts.log(`warning: ${m}`) });
    } else if (!othersNeedIt && !copiesFrom) {
      await rename(parent.root, root);
      rootfs = new RootFs(root);
    } else {
      await cp(parent.root, root, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true, force: true });
      rootfs = new RootFs(root);
    }
    base = { format: parent.base.format, config: { ...parent.base.config, config: parent.config, history: parent.history }, layers: parent.layers, ...(parent.base.ref ? { ref: parent.base.ref } : {}) };
    vars = cloneStageVars(parent.vars);
  } else if (stage.baseName === 'scratch') {
    base = { format: 'docker', config: scratchConfig(platform), layers: [] };
    if (opts.runMode === 'in-place') await wipeRootForInPlace(root, env.exclude, env.excludePrefixes);
    await mkdir(root, { recursive: true });
    rootfs = new RootFs(root);
    vars = stageVarsFromImage();
  } else {
    base = await pullBase(env.client, env.store, stage.baseName, platform, opts.log).catch(at(`${stage.from.file}:${stage.from.line}`));
    if (opts.runMode === 'in-place') await wipeRootForInPlace(root, env.exclude, env.excludePrefixes);
    rootfs = await extractLayers(root, base.layers, {
      ...(opts.runMode === 'in-place' ? { ignore: inPlaceIgnore(env) } : {}),
      onWarning: (m) => opts.log(`warning: ${m}`),
    });
    vars = stageVarsFromImage(base.config.config?.Env);
  }

  const st = {
    cfg: { config: { ...(base.config.config ?? {}) }, cmdSet: false, ...(base.config.author ? { author: base.config.author } : {}) } as ConfigState,
    vars,
    layers: [...base.layers],
    history: [...(base.config.history ?? [])],
    index: undefined as TreeIndex | undefined,
  };
  // ONBUILD triggers of the base run first; the resulting image does not inherit them.
  const triggers = stage.baseStage === undefined && stage.baseName !== 'scratch'
    ? onbuildInstructions(base.config.config?.OnBuild, { file: stage.from.file, line: stage.from.line, baseName: stage.baseName })
    : [];
  if (triggers.length) st.cfg = { ...st.cfg, config: { ...st.cfg.config, OnBuild: null } };
  const instructions = [...triggers, ...stage.instructions];

  const format: ImageFormat = opts.imageFormat ?? base.format;
  // --reproducible: layer entries get the image's created time (0 or SOURCE_DATE_EPOCH).
  const mtime = opts.reproducible ? new Date(env.created) : undefined;
  const snapshotOpts = { exclude: env.exclude, hashContents: opts.snapshotMode === 'full', signal: env.signal };

  const addLayer = async (entries: LayerEntry[], step: Step, created: string, by: string): Promise<void> => {
    const file = path.join(env.layerDir, `layer-${++env.layerCounter.n}.tar.gz`);
    const t0 = Date.now();
    const r = await writeLayer(rootfs.root, entries, file, {
      signal: env.signal,
      ...(opts.compressionLevel !== undefined ? { compressionLevel: opts.compressionLevel } : {}),
      ...(mtime ? { mtime } : {}),
    });
    opts.log(`${step.label} snapshot: layer ${r.digest.slice(7, 19)} ${fmtBytes(r.size)} (${entries.length} entries) in ${((Date.now() - t0) / 1000).toFixed(2)}s`);
    st.layers.push(fileLayer(file, { mediaType: layerMediaType(format), digest: r.digest, size: r.size }, r.diffId));
    st.history.push({ created, created_by: by });
  };
  const emptyHistory = (created: string, by: string): void => {
    st.history.push({ created, created_by: by, empty_layer: true });
  };
  // After COPY/WORKDIR the cached index is updated from the entries they wrote, instead of a full walk.
  const updateIndex = (entries: LayerEntry[]): void => {
    if (!st.index) return;
    const m = new Map(st.index.entries);
    for (const e of entries) if (e.kind === 'entry' && e.meta) m.set(e.path, e.meta as IndexEntry);
    st.index = { ...st.index, entries: m };
  };

  for (let i = 0; i < instructions.length; i++) {
    const raw = instructions[i]!;
    if (env.signal.aborted) {
      if (env.signal.reason instanceof BuilderError) throw env.signal.reason; // the build was cancelled (a signal)
      throw new BuilderError('BUILD_ABORTED', `${label}: stopped because another stage failed`, { hint: 'see the first error reported' });
    }
    const step: Step = { number: i + 1, total: instructions.length, label: `[${env.multiStage ? `${stage.name ?? stage.index} ` : ''}${i + 1}/${instructions.length}]` };
    const inst = expandInstruction(raw, expansionEnv(st.vars), plan);
    applyToStageVars(st.vars, inst);
    const by = createdBy(inst, st.cfg.config.Shell);
    const where = `${raw.file}:${raw.line}`;
    opts.log(`${step.label} ${by}`);
    const created = env.created;
    switch (inst.kind) {
      case 'run': {
        if (inst.mounts.length > 0) {
          throw new BuilderError('RUN_MOUNT_UNSUPPORTED', `${where}: RUN --mount is not supported yet (${inst.mounts.join(' ')})`, {
            hint: 'remove the --mount flag (for caches, builder keeps layers in the registry cache instead), or build this Dockerfile with BuildKit for now',
          });
        }
        st.index ??= await indexTree(rootfs.root, snapshotOpts);
        const exit = await runInstruction(env, rootfs, st.cfg, st.vars, inst, step, where);
        if (exit !== 0) {
          throw new BuilderError('RUN_FAILED', `${where}: step ${step.number}/${step.total} "${by}" failed with exit code ${exit}`, {
            hint: 'read the step output above; nothing was pushed', exitCode: exit > 0 && exit < 256 ? exit : 1,
          });
        }
        const t0 = Date.now();
        const after = await indexTree(rootfs.root, snapshotOpts);
        const changes = withoutMountPointTouches(diffIndexes(st.index, after), env.excludePrefixes);
        st.index = after;
        opts.log(`${step.label} snapshot: ${changes.length} changes found in ${((Date.now() - t0) / 1000).toFixed(2)}s`);
        if (changes.length === 0) emptyHistory(created, by);
        else {
          // RUN can set file capabilities (setcap) and other xattrs: carry them into the layer.
          const { entries, warning } = await withXattrs(rootfs.root, toLayerEntries(changes, after));
          if (warning && !env.warned.has(warning)) {
            env.warned.add(warning);
            opts.log(`warning: ${warning}`);
          }
          await addLayer(entries, step, created, by);
        }
        break;
      }
      case 'copy':
      case 'add': {
        const written = await copyInstruction(env, rootfs, st.cfg, inst, where);
        const entries = await entriesForPaths(rootfs.root, written, { exclude: env.exclude });
        updateIndex(entries);
        if (entries.length === 0) emptyHistory(created, by);
        else await addLayer(entries, step, created, by);
        break;
      }
      case 'workdir': {
        st.cfg = applyMetadata(st.cfg, inst);
        const dir = st.cfg.config.WorkingDir ?? '/';
        if (dir !== '/' && !(await rootfs.exists(dir))) {
          // BuildKit creates a missing WORKDIR (and its missing parents) owned by the current USER (moby/buildkit#1002).
          const owner = await userFor(rootfs, st.cfg.config.User, where);
          const made = await rootfs.mkdirAll(dir, { uid: owner.uid, gid: owner.gid, mode: 0o755 });
          const entries = await entriesForPaths(rootfs.root, [made.container], { recursive: false });
          updateIndex(entries);
          await addLayer(entries, step, created, by);
        } else {
          emptyHistory(created, by);
        }
        break;
      }
      case 'arg':
        break; // ARG values live in the stage vars; no history entry (as BuildKit)
      case 'from':
        throw new BuilderError('BUILD_INTERNAL', `${where}: unexpected FROM inside a stage`, { hint: 'this is a bug; please report it' });
      default:
        st.cfg = applyMetadata(st.cfg, inst);
        emptyHistory(created, by);
    }
  }

  return {
    index: stage.index,
    root: rootfs.root,
    rootfs,
    base: { ...base, format },
    config: st.cfg.config,
    ...(st.cfg.author !== undefined ? { author: st.cfg.author } : {}),
    layers: st.layers,
    history: st.history,
    platform,
    vars: st.vars,
  };
}

async function runInstruction(
  env: ExecutorEnv, rootfs: RootFs, cfg: ConfigState, vars: StageVars,
  inst: Extract<Instruction, { kind: 'run' }>, step: Step, where: string,
): Promise<number> {
  const { opts, plan } = env;
  const cleanup: string[] = [];
  let argv: string[];
  if (!inst.shell) {
    argv = [...inst.cmd];
  } else if (inst.heredocs.length === 1 && /^<<-?(["']?)([^"'\s]+)\1$/.test((inst.cmd[0] ?? '').trim())) {
    // RUN <<EOF: the body is the script; with a #! line it is run as a program, like BuildKit.
    const body = inst.heredocs[0]!.content;
    if (body.startsWith('#!')) {
      const name = `/.builder-heredoc-${randomBytes(6).toString('hex')}`;
      const host = await rootfs.resolve(name);
      await writeFile(host, body, { mode: 0o755 });
      await chmod(host, 0o755);
      cleanup.push(host);
      argv = [name];
    } else {
      argv = shellArgv(cfg.config.Shell, body);
    }
  } else {
    // The shell reads the heredocs itself: hand it the line followed by the bodies.
    const script = [inst.cmd.join(' '), ...inst.heredocs.map((h) => `${h.content}${h.content.endsWith('\n') || h.content === '' ? '' : '\n'}${h.name}`)].join('\n');
    argv = shellArgv(cfg.config.Shell, script);
  }
  const user: RunUser = await userFor(rootfs, cfg.config.User, where);
  const cwd = cfg.config.WorkingDir || '/';
  await rootfs.mkdirAll(cwd, { uid: 0, gid: 0, mode: 0o755 });
  const envList = [...runEnvironment(vars, plan.proxyEnv)].map(([k, v]) => `${k}=${v}`);
  const prefix = `${step.label} `;
  const out = lineWriter(prefix, opts.output);
  try {
    const r = await runStep({
      mode: opts.runMode,
      root: rootfs.root,
      argv,
      env: envList,
      user,
      cwd,
      network: (inst.network as 'default' | 'none' | 'host' | undefined) ?? 'default',
      onOutput: out.write,
      signal: env.signal,
    });
    out.flush();
    return r.exitCode;
  } finally {
    for (const c of cleanup) await rm(c, { force: true });
  }
}

async function userFor(rootfs: RootFs, spec: string | undefined, where: string): Promise<RunUser> {
  if (!spec) return { uid: 0, gid: 0, groups: [], home: '/root' };
  return resolveUser(readerFor(rootfs), spec).catch(at(where));
}

function readerFor(rootfs: RootFs): (p: string) => Promise<string | undefined> {
  return async (p) => {
    try {
      return (await rootfs.readFile(p)).toString('utf8');
    } catch {
      return undefined;
    }
  };
}

async function copyInstruction(
  env: ExecutorEnv, rootfs: RootFs, cfg: ConfigState,
  inst: Extract<Instruction, { kind: 'copy' | 'add' }>, where: string,
): Promise<string[]> {
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
    workdir: cfg.config.WorkingDir || '/',
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
  const source = await sourceFor(env, inst.kind === 'copy' ? inst.from : undefined, inst);
  written.push(...(await copyInto(rootfs, source, inst.sources, copyOpts).catch(at(where))));
  return written;
}

async function sourceFor(env: ExecutorEnv, from: string | undefined, { file, line }: { file: string; line: number }): Promise<CopySource> {
  if (from === undefined) return contextSource(env.ctx);
  const where = `${file}:${line}`;
  const ref = resolveStageRef(env.plan.stages.map((s) => ({ index: s.index, ...(s.name ? { name: s.name } : {}) })), from, { file, line, what: 'COPY --from' });
  if (ref.kind === 'stage') {
    const done = await env.done.get(ref.index);
    if (!done) throw new BuilderError('BUILD_INTERNAL', `${where}: stage ${ref.index} was not built before it is used`, { hint: 'this is a bug; please report it' });
    if (done.root !== '/') return rootSource(done.rootfs, `stage ${from}`);
    // In place, "/" has moved on: materialize the stage from its layers once, in the work dir.
    const img = materialize(env, `stage:${ref.index}`, async () => done.layers);
    return rootSource(await img, `stage ${from}`);
  }
  const img = materialize(env, `image:${ref.ref}`, async () => (await pullBase(env.client, env.store, ref.ref, env.opts.platform, env.opts.log).catch(at(where))).layers);
  return rootSource(await img, `image ${ref.ref}`);
}

/** Extracts layers into a work-dir root once per key; concurrent stages asking for the same key share it. */
function materialize(env: ExecutorEnv, key: string, layers: () => Promise<BuiltLayer[]>): Promise<RootFs> {
  let p = env.images.get(key);
  if (!p) {
    const dir = path.join(env.layerDir, `root-${env.images.size}`);
    p = layers().then((ls) => extractLayers(dir, ls, { onWarning: (m) => env.opts.log(`warning: ${m}`) }));
    env.images.set(key, p);
  }
  return p;
}

/** A rejection handler that puts "file:line: " in front of a BuilderError's message, once (pulls, users, copies). */
function at(where: string): (err: unknown) => never {
  return (err) => {
    if (err instanceof BuilderError && !err.message.startsWith(where)) {
      throw new BuilderError(err.code, `${where}: ${err.message}`, { ...(err.hint ? { hint: err.hint } : {}), cause: err, exitCode: err.exitCode });
    }
    throw err;
  };
}

/** Extraction in place skips what the snapshot excludes (container paths "/x" -> "x"). */
function inPlaceIgnore(env: ExecutorEnv): (containerPath: string) => boolean {
  return (p) => env.exclude(p.replace(/^\/+/, ''));
}

/** In-place mode: remove everything under / except the ignored paths, before extracting a base (kaniko's model). */
async function wipeRootForInPlace(root: string, exclude: (rel: string) => boolean, prefixes: readonly string[]): Promise<void> {
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

/**
 * The sandbox creates missing mount points (/etc/resolv.conf, /etc/hosts, ...) for the run and removes them after,
 * restoring the parents' mtime; their ctime cannot be restored. A parent directory whose only difference is its
 * ctime is not a change of the step (else `RUN true` would add a layer holding /etc).
 */
function withoutMountPointTouches(changes: Change[], excludePrefixes: readonly string[]): Change[] {
  const parents = new Set<string>();
  for (const p of excludePrefixes) for (let d = path.posix.dirname(p); d !== '.' && d !== '/' && d !== ''; d = path.posix.dirname(d)) parents.add(d);
  return changes.filter((c) => {
    if (c.kind !== 'modified' || c.entry.type !== 'dir' || !parents.has(c.path)) return true;
    const a = c.before;
    const b = c.entry;
    // utimes() restores the mtime with millisecond precision
    return a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid || a.mtimeNs / 1_000_000n !== b.mtimeNs / 1_000_000n || a.ino !== b.ino;
  });
}

function fmtBytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

/** Prefixes each output line with the step; partial lines are held until their newline. */
function lineWriter(prefix: string, sink: BuildOptions['output']): { write: (chunk: Buffer, stream: 'stdout' | 'stderr') => void; flush: () => void } {
  const pending = { stdout: '', stderr: '' };
  return {
    write(chunk, stream) {
      const text = pending[stream] + chunk.toString('utf8');
      const lines = text.split('\n');
      pending[stream] = lines.pop() ?? '';
      if (lines.length) sink(lines.map((l) => `${prefix}${l}\n`).join(''), stream);
    },
    flush() {
      for (const s of ['stdout', 'stderr'] as const) {
        if (pending[s]) sink(`${prefix}${pending[s]}\n`, s);
        pending[s] = '';
      }
    },
  };
}
