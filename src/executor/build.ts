// One build, end to end: context + Dockerfile -> plan -> stages -> assembled image -> outputs; work dir cleaned up.
import { mkdir, mkdtemp, readFile, realpath, rm } from 'node:fs/promises';
import path from 'node:path';
import { BuilderError, isBuilderError } from '../errors.js';
import { BuildCache, cacheRepository, ociLayerCache, registryLayerCache, RunCache } from '../cache/index.js';
import { CacheDir, type RootfsStore } from '../store/index.js';
import { FileHashCache, hashSources, openContext, resolveSources, type BuildContext } from '../context/index.js';
import { imageDescriptor, makeStatements, type Artifact, type ProvenanceInput, type PushedImage } from '../attest/index.js';
import { isDigest, sha256 } from '../digest/index.js';
import { checkPlatforms, planBuild, readDockerfile, sharedStages, type BuildPlan, type PlannedStage } from '../dockerfile/index.js';
import { parseReference } from '../reference/index.js';
import { RegistryClient } from '../registry/index.js';
import { detectContainer, hideable, holdRoot, IN_PLACE_IGNORED_PATHS, launcherWarning, mountPointsToIgnore, readExecutorImageMarker, runtimeMounts, sandboxAvailable } from '../run/index.js';
import {
  assembleImage, assembleIndex, fileLayer, formatPlatform, layerCompression, MediaType, platformOf, type HistoryEntry, type Image, type Layer, type Platform,
} from '../image/index.js';
import { checkCompressionLevel, squashLayers } from '../snapshot/index.js';
import { requireZstd } from '../util/zstd.js';
import type { Executor, SandboxCheck, StageResult } from './executor.js';
import type { ResolvedImage } from './base.js';
import { runStage } from './stage.js';
import type { RunMode } from '../run/index.js';
import { throwIfCancelled, type AttestRequest, type BuildOptions, type BuildResult, type ResolvedBuildOptions } from './options.js';
import { writeOutputs } from './output.js';
import { Tally } from './summary.js';
import type { BuildEvent, EventSink } from '../util/events.js';
import { buildDirPrefix, markKept, removeLeftovers, removeTree, type Leftovers } from './leftovers.js';

const rel = (p: string): string => path.resolve('/', p).slice(1);

export function prefixFilter(prefixes: readonly string[]): (r: string) => boolean {
  return (r) => prefixes.some((p) => r === p || r.startsWith(`${p}/`));
}

async function readOptional(p: string): Promise<string | undefined> {
  try {
    return await readFile(p, 'utf8');
  } catch {
    return undefined;
  }
}

/** realpath() of the longest existing ancestor, the rest appended (the cache dir may not exist yet). */
async function realpathLoose(p: string): Promise<string> {
  try {
    return await realpath(p);
  } catch {
    const parent = path.dirname(p);
    return parent === p ? p : path.join(await realpathLoose(parent), path.basename(p));
  }
}

/** What the snapshot and the in-place wipe must leave alone. */
async function exclusions(opts: ResolvedBuildOptions, selfDirs: readonly string[]): Promise<string[]> {
  // kaniko's --ignore-var-run (default true) leaves /var/run out of every snapshot, whatever the run mode.
  const ignored = [...(opts.ignorePaths ?? []), ...(opts.ignoreVarRun !== false ? ['/var/run'] : [])];
  if (opts.runMode === 'sandbox') return [...new Set([...runtimeMounts, ...ignored].map(rel).filter((p) => p !== ''))].sort();
  const mounts = mountPointsToIgnore((await readOptional('/proc/self/mountinfo')) ?? '');
  const image = await readExecutorImageMarker(readOptional);
  selfDirs = [...selfDirs, ...(image?.keep ?? [])];
  // A path given through a symlink (--work-dir /link/work) is kept under its real name too, or the wipe would delete it there.
  const real = await Promise.all(selfDirs.map(realpathLoose));
  // A container runtime's own marker files stay too (detectContainer reads them; a later `exec` may as well).
  const always = [...IN_PLACE_IGNORED_PATHS.filter((p) => p !== '/var/run'), '/.dockerenv', '/run/.containerenv'];
  return [...new Set([...always, ...ignored, ...mounts, ...selfDirs, ...real].map(rel).filter((p) => p !== ''))].sort();
}

/** The error to report when stages fail: one that failed on its own, not one stopped because another failed. */
function firstCause(results: PromiseSettledResult<unknown>[]): unknown {
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason);
  return failed.find((e) => !isBuilderError(e, 'RUN_ABORTED') && !isBuilderError(e, 'BUILD_ABORTED')) ?? failed[0];
}

type RunModeProbes = { sandbox: () => ReturnType<typeof sandboxAvailable>; container: () => Promise<boolean>; executorImage: () => Promise<boolean> };

const defaultProbes = (opts: Pick<BuildOptions, 'env' | 'host'>): RunModeProbes => ({
  sandbox: () => sandboxAvailable(opts.host.kill),
  container: () => detectContainer(readOptional, opts.env),
  executorImage: async () => (await readExecutorImageMarker(readOptional)) !== undefined,
});

/**
 * The run mode to use: as asked; for auto the sandbox where it can start, else in place only inside builder's own
 * executor image (its marker). In place replaces "/": never chosen from heuristics alone.
 */
export async function chooseRunMode(opts: Pick<BuildOptions, 'runMode' | 'force' | 'env' | 'emit' | 'host'>, probe: RunModeProbes = defaultProbes(opts)): Promise<RunMode> {
  const choice = await startRunMode(opts, probe);
  await choice.verify?.();
  return choice.mode;
}

/**
 * chooseRunMode without the sandbox probe where its answer cannot change the mode (--run-mode sandbox, or auto outside
 * the executor image): `verify` runs it then, and rejects with the very error chooseRunMode would throw. The build
 * calls it only when no RUN showed that the sandbox starts (a build without RUN, or a failed one).
 */
export async function startRunMode(opts: Pick<BuildOptions, 'runMode' | 'force' | 'env' | 'emit' | 'host'>, probe: RunModeProbes = defaultProbes(opts)): Promise<{ mode: RunMode; verify?: () => Promise<void> }> {
  if (opts.runMode === 'in-place') {
    if (!opts.force && !(await probe.container())) {
      throw new BuilderError('RUN_IN_PLACE_REFUSED', 'in-place mode rewrites "/" and this does not look like a container', {
        hint: 'run builder inside its own container (its executor image), or pass --force if you really mean it',
      });
    }
    return { mode: 'in-place' };
  }
  if (opts.runMode === 'sandbox') {
    return { mode: 'sandbox', verify: async () => {
      const s = await probe.sandbox();
      if (!s.ok) {
        throw new BuilderError('RUN_SANDBOX_UNAVAILABLE', `the sandbox cannot start here: ${s.reason ?? 'unknown reason'}`, {
          hint: 'inside an unprivileged CI container use builder\'s executor image (--run-mode auto runs in place there), or --run-mode in-place in a container you can throw away',
        });
      }
    } };
  }
  // Outside the executor image auto means the sandbox or an error: the probe's answer is not needed to plan.
  if (!(await probe.executorImage())) {
    return { mode: 'sandbox', verify: async () => {
      const s = await probe.sandbox();
      if (!s.ok) {
        throw new BuilderError('RUN_SANDBOX_UNAVAILABLE', `the sandbox cannot start here (${s.reason ?? 'unknown reason'}), and this is not builder's executor image, where running in place is safe`, {
          hint: 'run builder in its executor image (npm run executor-image), allow namespaces for the sandbox, or pass --run-mode in-place if this container may be rewritten',
        });
      }
    } };
  }
  const s = await probe.sandbox();
  if (s.ok) return { mode: 'sandbox' };
  opts.emit({ type: 'message', level: 'info', msg: `the sandbox cannot start here (${s.reason ?? 'unknown reason'}): running in place in the executor image, as kaniko does` });
  return { mode: 'in-place' };
}

/** The deferred probe, run at most once and not at all once a RUN's own sandbox started. */
function sandboxCheck(verify: () => Promise<void>): SandboxCheck {
  let worked = false;
  let verdict: Promise<void> | undefined;
  return {
    worked: () => { worked = true; },
    verify: () => (worked ? Promise.resolve() : (verdict ??= verify())),
    settled: async () => { await verdict?.catch(() => undefined); },
  };
}

/** In place: one build per container (cleaning after a killed one), and one warning when steps are less fenced off. */
async function guardInPlace(opts: ResolvedBuildOptions): Promise<{ release: () => Promise<void>; note: (pid: number | undefined) => Promise<void>; hide: string[] }> {
  const pid = opts.inPlace?.pid;
  const held = pid === undefined ? { release: async () => undefined, note: async () => undefined } : await holdRoot(path.join(opts.workDir, 'in-place.lock'), { pid }, opts.host.kill);
  if ('cleaned' in held && held.cleaned) opts.emit({ type: 'warning', msg: held.cleaned }); // as the sandbox's leftovers: a killed build is news
  const warning = await launcherWarning(opts.inPlace?.launcher);
  if (warning) opts.emit({ type: 'warning', msg: warning });
  const { hide, exposed } = await hideable(opts.inPlace?.hide ?? [], mountPointsToIgnore((await readOptional('/proc/self/mountinfo')) ?? ''));
  if (exposed.length > 0 && opts.inPlace?.launcher) {
    opts.emit({ type: 'warning', msg: `${exposed.join(', ')} cannot be taken out of "/" while RUN steps run (a read-only mount, a mount point or a symlink): RUN steps can read it; give builder its docker config in a writable directory` });
  }
  return { release: held.release, note: held.note, hide };
}

/** --single-snapshot: the stage's own layers (after its base's) become one; their history entries become empty ones plus one for the snapshot. */
async function singleSnapshot(layers: Layer[], history: HistoryEntry[], baseCount: number, file: string, opts: ResolvedBuildOptions, created: string): Promise<{ layers: Layer[]; history: HistoryEntry[] }> {
  const own = layers.slice(baseCount);
  if (own.length === 0) return { layers, history };
  const r = await squashLayers(own, file, {
    ...(opts.compression ? { compression: opts.compression } : {}),
    ...(opts.compressionLevel !== undefined ? { compressionLevel: opts.compressionLevel } : {}),
    ...(opts.reproducible ? { mtime: new Date(created) } : {}),
    ...(opts.host.zstd ? { zstd: opts.host.zstd } : {}),
  });
  opts.emit({ type: 'layers-merged', layers: own.length, digest: r.digest, size: r.size });
  let seen = 0;
  const nonEmpty = history.map((h) => (h.empty_layer ? -1 : seen++));
  const merged = history.map((h, i) => (nonEmpty[i]! >= baseCount ? { ...h, empty_layer: true } : h));
  merged.push({ created, created_by: 'builder --single-snapshot', comment: `the filesystem changes of ${own.length} steps` });
  const layer = fileLayer(file, { mediaType: opts.compression === 'zstd' ? MediaType.OciLayerZstd : MediaType.DockerLayerGzip, digest: r.digest, size: r.size }, r.diffId);
  return { layers: [...layers.slice(0, baseCount), { ...layer, fresh: true }], history: merged };
}

/**
 * zstd layer types exist only in OCI manifests: refuse what would need Docker's, and fail early without the zstd program.
 * A docker-archive (--tar-path) is fine: its manifest.json names layer files without media types and readers sniff the
 * bytes (skopeo 1.9 does: test/snapshot/compression.test.ts).
 */
function checkCompression(opts: BuildOptions): void {
  const compression = opts.compression ?? 'gzip';
  if (opts.compressionLevel !== undefined) checkCompressionLevel(compression, opts.compressionLevel);
  if (compression !== 'zstd') return;
  if (opts.imageFormat === 'docker') {
    throw new BuilderError('BUILD_COMPRESSION_CONFLICT', '--compression zstd with --image-format docker: Docker\'s manifest (schema 2) has no zstd layer type', {
      hint: 'drop --image-format docker (zstd builds write OCI manifests), or use --compression gzip',
    });
  }
  requireZstd('--compression zstd', opts.host.zstd);
}

/** A zstd layer from the base (a gzip build FROM a zstd image) cannot go into a Docker manifest either. */
function checkZstdLayers(image: Image): void {
  const zstd = image.manifest.layers.find((l) => layerCompression(l.mediaType) === 'zstd');
  if (zstd === undefined) return;
  if (image.mediaType === MediaType.DockerManifest) {
    throw new BuilderError('BUILD_COMPRESSION_CONFLICT', `layer ${zstd.digest} is zstd-compressed (from the base image), and --image-format docker writes a Docker manifest, which has no zstd layer type`, {
      hint: 'drop --image-format docker: the image then keeps its base\'s OCI format',
    });
  }
}

/** What one build holds open from start to end: options resolved, work dir, registry client, stores, the abort. */
interface OpenBuild {
  opts: ResolvedBuildOptions;
  platforms: Platform[];
  multi: boolean;
  t0: number;
  tally: Tally;
  sandbox: SandboxCheck | undefined;
  /** This build's own dir in the work dir. */
  work: string;
  held: Awaited<ReturnType<typeof guardInPlace>> | undefined;
  client: RegistryClient;
  /** --cache-dir: the stores of base images, RUN cache mounts and file hashes. */
  cacheDir: CacheDir;
  rootfs: RootfsStore | undefined;
  /** Aborted when a stage fails or the build is cancelled: the other stages stop. */
  abort: AbortController;
  cancel: () => void;
  /** --cache: where the step cache lives, and the cache itself once the context is open. */
  cacheRepo?: ReturnType<typeof cacheRepository>;
  cache?: BuildCache;
  /** Work running beside the push (stage roots removed), awaited before the build returns. */
  cleanup: Promise<void>[];
}

/** The stages run: each platform's target stage, and what finishing needs of the run. */
interface RanStages {
  lasts: StageResult[];
  plans: BuildPlan[];
  executors: Executor[];
  sharedEx: Executor;
  shared: ReadonlySet<number>;
  created: string;
  scratch: string;
  dockerfile: { text: string; file: string };
  /** The sandbox probe of a build whose RUNs all came from the cache (or that has none): it runs beside the push, before any manifest or file output. */
  sandboxOk: Promise<void>;
}

export async function build(options: BuildOptions): Promise<BuildResult> {
  const b = await openBuild(options);
  try {
    const ctx = await openContext(b.opts.context, {
      cwd: b.opts.cwd,
      dockerfile: b.opts.dockerfile,
      tmpDir: b.work,
      ...(b.opts.contextSubPath ? { subPath: b.opts.contextSubPath } : {}),
      ...(b.opts.stdin ? { stdin: b.opts.stdin } : {}),
    });
    try {
      const ran = await runBuild(b, ctx);
      // a sandbox that cannot start is the build's error, whatever failed after the stages
      return await finishBuild(b, ran).catch(async (err: unknown) => {
        await ran.sandboxOk;
        throw err;
      });
    } finally {
      await ctx.close();
    }
  } finally {
    await closeBuild(b);
  }
}

/** Checks the options (nothing done yet on bad input), then takes the work dir, the in-place guard, the client and stores. */
async function openBuild(options: BuildOptions): Promise<OpenBuild> {
  if (options.destinations.length === 0 && !options.noPush) {
    throw new BuilderError('BUILD_NO_DESTINATION', 'no --destination given', {
      hint: 'add --destination REGISTRY/REPO:TAG, or --no-push (with --tar-path or --oci-layout-path to keep the image)',
    });
  }
  for (const d of options.destinations) parseReference(d); // bad references fail before any work
  checkCompression(options);
  const platforms = options.platforms && options.platforms.length > 0 ? options.platforms : [options.platform];
  checkPlatforms(platforms);
  const cacheRepo = options.cache ? cacheRepository(options.cache.repo, options.destinations, options.env) : undefined;
  const t0 = Date.now();
  const tally = new Tally();
  const emit = tally.wrap(options.emit);
  const runMode = await startRunMode(options);
  const opts: ResolvedBuildOptions = { ...options, emit, runMode: runMode.mode };
  const sandbox = runMode.verify ? sandboxCheck(runMode.verify) : undefined;
  throwIfCancelled(opts.signal);
  await mkdir(opts.workDir, { recursive: true });
  reportLeftovers(await removeLeftovers(opts.workDir), emit);
  const work = await mkdtemp(await buildDirPrefix(opts.workDir));
  if (opts.keepWorkDir) await markKept(work);
  const held = opts.runMode === 'in-place' ? await guardInPlace(opts).catch(async (err: unknown) => {
    await rm(work, { recursive: true, force: true });
    throw err;
  }) : undefined;
  const reg = opts.registry.signal;
  const given = opts.registry.emit;
  // The client's events (transfers: the summary's byte counts) join the build's stream, besides a listener of its own.
  const registry = { ...opts.registry, emit: given && given !== options.emit ? (e: BuildEvent): void => {
    given(e);
    emit(e);
  } : emit };
  const client = new RegistryClient(opts.signal && reg !== opts.signal ? { ...registry, signal: reg ? AbortSignal.any([reg, opts.signal]) : opts.signal } : registry);
  // Extracted bases (sandbox roots start as overlay mounts or copies of them); its mounts never outlive the build.
  const cacheDir = new CacheDir(opts.cacheDir, opts.host);
  const rootfs = opts.runMode === 'sandbox' ? cacheDir.rootfs() : undefined;
  // A cancellation stops the stages as a stage failure does (RUN processes killed), with the signal's reason.
  const abort = new AbortController();
  const cancel = (): void => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', cancel, { once: true });
  return { opts, platforms, multi: platforms.length > 1, t0, tally, sandbox, work, held, client, cacheDir, rootfs, abort, cancel, cleanup: [], ...(cacheRepo ? { cacheRepo } : {}) };
}

/** Whatever happened: cache entries of the steps that succeeded kept, client closed, mounts and the work dir gone, "/" released. */
async function closeBuild(b: OpenBuild): Promise<void> {
  b.opts.signal?.removeEventListener('abort', b.cancel);
  await b.sandbox?.settled(); // a probe started at a cached RUN and overtaken by a RUN that worked
  await b.cache?.settle(); // entries of the steps that succeeded are kept even when a later one failed
  await b.client.close().catch(() => undefined); // never keeps the mounts and the work dir below from going
  await Promise.allSettled(b.cleanup);
  await b.rootfs?.unmountAll();
  if (!b.opts.keepWorkDir) await rm(b.work, { recursive: true, force: true });
  await b.held?.release();
}

/** Reads and plans the Dockerfile for every platform, wires the executors (stores, step cache) and runs the stages. */
async function runBuild(b: OpenBuild, ctx: BuildContext): Promise<RanStages> {
  const { opts, platforms, multi, client, rootfs, sandbox } = b;
  const emit = opts.emit;
  const { dockerfile, plans } = await planTargets(opts, ctx, platforms);
  const shared = sharedStages(plans);
  if (multi) checkTargetNotPinned(plans[0]!);

  // In place, the builder's own files, scratch space, cache and context must survive the wipe of "/".
  const prefixes = await exclusions(opts, [path.resolve(opts.workDir), path.resolve(opts.cacheDir), ctx.dir, ...(opts.selfPaths ?? [])]);
  const scratch = path.join(b.work, 'scratch');
  await mkdir(scratch, { recursive: true });
  const now = opts.now?.() ?? new Date();
  const warned = new Set<string>();
  const created = opts.reproducible ? new Date((opts.sourceDateEpoch ?? 0) * 1000).toISOString() : now.toISOString();
  const store = b.cacheDir.blobs();
  const warnOnce = (m: string): void => {
    if (warned.has(m)) return;
    warned.add(m);
    emit({ type: 'warning', msg: m });
  };
  const cacheRepo = b.cacheRepo;
  const cache = b.cache = opts.cache && cacheRepo ? new BuildCache(
    'oci' in cacheRepo ? ociLayerCache(path.resolve(opts.cwd, cacheRepo.oci), opts.cache.ttlMs) : registryLayerCache(client, cacheRepo, opts.cache.ttlMs, store),
    opts.cache, warnOnce, opts.now,
  ) : undefined;
  if (cache) emit({ type: 'message', level: 'info', msg: `layer cache: ${cache.layers.describe}${opts.cache?.push ? '' : ' (read only: --no-push-cache)'}` });
  const common: Executor = {
    services: {
      client, store, ...(rootfs ? { rootfs } : {}), ctx, runCache: new RunCache(b.cacheDir.runCache, opts.host.pid),
      ...(ctx.kind === 'dir' ? { fileHashes: fileHashesOf(b.cacheDir, ctx.dir) } : {}),
      plan: plans[0]!, emit, output: opts.output, warnOnce, ...(cache ? { cache } : {}), ...(opts.attest?.sbom ? { sbomLayers: new Map() } : {}),
    },
    scheduling: { done: new Map(), images: new Map(), downloads: new Map(), resolved: new Map(), usesLeft: new Map(), runnable: new Map(), signal: b.abort.signal, multiStage: multi,
      ...(opts.pushCheck ? { pushCheck: opts.pushCheck } : {}), ...(sandbox ? { sandbox } : {}) },
    settings: baseSettings(opts, platforms[0]!, created, prefixes, scratch, b.held),
  };
  const stagesDir = opts.runMode === 'in-place' ? undefined : path.join(b.work, 'stages');
  const executor = (plan: BuildPlan, platform: Platform, dir: string, tag?: string): Executor => forTarget(common, { plan, platform, shared, stagesDir, dir, ...(tag ? { tag } : {}) });
  const executors = plans.map((plan, k) => executor(plan, platforms[k]!, multi ? String(k) : '', multi ? formatPlatform(platforms[k]!) : undefined));
  // Stages every target shares run once, in an executor of their own (no platform in their labels, roots never moved).
  const sharedEx = multi ? executor(plans[0]!, platforms[0]!, 'shared') : executors[0]!;
  // A sandbox that cannot start is the build's error, whichever stage failed first (probed only if no RUN started it).
  const lasts = await runStages(executors, sharedEx, shared, opts.runMode, b.abort).catch(async (e: unknown) => {
    await sandbox?.verify();
    // a refused push check (or an interrupt) cancels the pulls: its reason is the error, not a cancelled GET
    throwIfCancelled(opts.signal);
    throw e;
  });
  const sandboxOk = sandbox?.verify() ?? Promise.resolve();
  sandboxOk.catch(() => undefined); // awaited by finishBuild, or by build() when it fails first
  throwIfCancelled(opts.signal);
  return { lasts, plans, executors, sharedEx, shared, created, scratch, dockerfile, sandboxOk };
}

/** The Dockerfile read from the context and planned once per platform; each platform's warnings told once. */
async function planTargets(opts: ResolvedBuildOptions, ctx: BuildContext, platforms: readonly Platform[]): Promise<{ dockerfile: { text: string; file: string }; plans: BuildPlan[] }> {
  if (!ctx.dockerfilePath) {
    throw new BuilderError('DOCKERFILE_NOT_FOUND', `Dockerfile "${opts.dockerfile}" not found (looked in ${opts.cwd} and in the context ${ctx.dir})`, {
      hint: 'pass --dockerfile with a path relative to the working directory or to the context',
    });
  }
  const text = await readFile(ctx.dockerfilePath, 'utf8');
  const df = readDockerfile(text, path.relative(opts.cwd, ctx.dockerfilePath) || ctx.dockerfilePath);
  const plans = platforms.map((platform) => planBuild(df, {
    buildArgs: opts.buildArgs,
    env: opts.env,
    ...(opts.target ? { target: opts.target } : {}),
    platform,
    buildPlatform: opts.buildPlatform,
    skipUnusedStages: opts.skipUnusedStages,
  }));
  for (const w of new Set(plans.flatMap((p) => p.warnings))) opts.emit({ type: 'warning', msg: w }); // a platform's own warnings too, each once
  return { dockerfile: { text, file: df.file }, plans };
}

/** The images (an index for several platforms) assembled, pushed or written with their attestations, and the summary. */
async function finishBuild(b: OpenBuild, ran: RanStages): Promise<BuildResult> {
  const { opts, multi, cache, tally, t0 } = b;
  const emit = opts.emit;
  if (cache) {
    await cache.settle();
    emit({ type: 'message', level: 'info', msg: cache.summary() });
  }
  const images: Image[] = [];
  for (const [k, last] of ran.lasts.entries()) {
    images.push(await finishImage(last, opts, { cache, created: ran.created, snapshotFile: path.join(ran.scratch, `single-snapshot-${k}.tar.gz`) }));
  }
  const built = multi ? assembleIndex(images) : images[0]!;
  if ('images' in built) emit({ type: 'index-built', digest: built.digest, mediaType: built.mediaType, platforms: images.length });
  // Stage roots are no longer needed: remove them (disk-bound) while the push runs (network-bound).
  if (opts.runMode === 'sandbox' && !opts.keepWorkDir) {
    const removed = (b.rootfs?.unmountAll() ?? Promise.resolve()).then(() => removeTree(path.join(b.work, 'stages')));
    removed.catch(() => undefined); // settled by closeBuild; a failure while the push runs must not be an unhandled rejection
    b.cleanup.push(removed);
  }
  // before the statements start: a refused check must not leave their scans reading a work dir being deleted
  if (!opts.noPush) await opts.pushCheck;
  const statements = statementsOf(b, ran, images);
  const tPush = Date.now();
  const pushed = await writeOutputs(b.client, built, opts, statements, ran.sandboxOk);
  await ran.sandboxOk;
  if (!opts.noPush) tally.add('push', Date.now() - tPush);
  const imageSize = (i: Image): number => i.manifest.config.size + i.layers.reduce((n, l) => n + l.descriptor.size, 0);
  const summary = tally.summary({
    digest: 'images' in built ? built.digest : built.manifestDigest,
    mediaType: built.mediaType,
    size: images.reduce((n, i) => n + imageSize(i), 0),
    layers: images.reduce((n, i) => n + i.layers.length, 0),
    ...(multi ? { images: images.map((i) => ({ platform: formatPlatform(platformOf(i.config)), digest: i.manifestDigest, size: imageSize(i), layers: i.layers.length })) } : {}),
    pushed: pushed.map((p) => p.destination),
    seconds: Math.round(Date.now() - t0) / 1000,
  });
  emit({ type: 'summary', summary });
  return {
    manifestDigest: summary.digest,
    ...(multi ? {} : { configDigest: images[0]!.manifest.config.digest }),
    mediaType: built.mediaType,
    pushed,
    layers: summary.layers,
    images: images.map((i) => ({
      platform: platformOf(i.config),
      descriptor: { mediaType: i.mediaType, digest: i.manifestDigest, size: i.manifestBytes.length, platform: platformOf(i.config) },
      configDigest: i.manifest.config.digest,
      layers: i.layers.length,
    })),
    summary,
  };
}

/** --sbom / --provenance: each image's statements, made while the image is pushed (writeOutputs awaits them before it attaches them). */
function statementsOf(b: OpenBuild, ran: RanStages, images: readonly Image[]): Array<Promise<Artifact[]>> {
  const attest = b.opts.attest;
  if (!attest) return [];
  return images.map((image, k) => {
    const ex = ran.executors[k]!;
    // its own bases, and those of the shared stages it builds on (resolved for their pinned platform)
    const usesShared = ran.sharedEx !== ex && neededStages(ran.plans[k]!).some((s) => ran.shared.has(s.index));
    const resolved = [...new Map([...ex.scheduling.resolved, ...(usesShared ? ran.sharedEx.scheduling.resolved : [])]).values()];
    return attestations(attest, { descriptor: imageDescriptor(image), image }, b.opts, { ex, resolved }, ran.dockerfile, ran.created, b.t0);
  });
}

/** The SBOM and provenance statements of the built image, as --sbom / --provenance ask. */
async function attestations(
  a: AttestRequest, pushed: PushedImage, opts: ResolvedBuildOptions, target: { ex: Executor; resolved: readonly ResolvedImage[] }, dockerfile: { text: string; file: string }, created: string, t0: number,
): Promise<Artifact[]> {
  return makeStatements(pushed, opts.destinations.map((d) => parseReference(d).name), {
    sbom: a.sbom, tool: `builder-${a.version}`, created, emit: opts.emit, ...(opts.host.zstd ? { zstd: opts.host.zstd } : {}), ...(target.ex.services.sbomLayers ? { builtLayers: target.ex.services.sbomLayers } : {}),
    ...(a.provenance ? { provenance: await provenanceOf(a.provenance, opts, target, dockerfile.text, dockerfile.file, new Date(t0).toISOString()) } : {}),
  });
}

/** What the provenance records of this build: inputs, resolved images and downloads by digest, the CI job. */
async function provenanceOf(
  mode: 'min' | 'max', opts: ResolvedBuildOptions, { ex, resolved }: { ex: Executor; resolved: readonly ResolvedImage[] }, dockerfile: string, file: string, startedOn: string,
): Promise<Omit<ProvenanceInput, 'finishedOn'>> {
  const a = opts.attest!;
  const downloads = await Promise.allSettled([...ex.scheduling.downloads.values()]);
  const ctx = ex.services.ctx;
  return {
    mode,
    builder: { id: a.builderId, version: a.version },
    dockerfile: { path: file, digest: sha256(dockerfile) },
    ...(opts.target ? { target: opts.target } : {}),
    platform: formatPlatform(ex.settings.platform),
    // build args as given (what the Dockerfile declares decides their use); --secret values never reach them
    buildArgs: mode === 'max' ? opts.buildArgs : {},
    ...(mode === 'max' ? { contextDigest: await hashSources(ctx, await resolveSources(ctx, ['.'])) } : {}),
    dependencies: [
      // purl-type docker, as BuildKit's provenance names its sources
      ...resolved.map(({ ref, digest, platform }) => ({
        uri: `pkg:docker/${ref.repository}@${ref.tag ?? ref.digest}?repository_url=${encodeURIComponent(ref.registry)}&platform=${encodeURIComponent(formatPlatform(platform))}`, digest,
      })),
      ...downloads.flatMap((d) => (d.status === 'fulfilled' && isDigest(d.value.digest) ? [{ uri: d.value.url, digest: d.value.digest }] : [])),
    ],
    ci: a.ci,
    startedOn,
  };
}

/** One line for what killed builds left in the work dir (their processes died with them: see src/run/sandbox.ts). */
function reportLeftovers(left: Leftovers, emit: EventSink): void {
  const mounts = left.mounts > 0 ? `unmounted ${left.mounts} stage root${left.mounts === 1 ? '' : 's'}` : '';
  if (left.dirs.length > 0) {
    emit({ type: 'warning', msg: `work dir: ${mounts ? `${mounts} and ` : ''}removed what ${left.dirs.length === 1 ? 'a killed build' : `${left.dirs.length} killed builds`} left (${left.dirs.join(', ')})` });
  } else if (mounts) {
    emit({ type: 'warning', msg: `work dir: ${mounts} a killed build left (its dir was kept: --cleanup=false)` });
  }
  if (left.kept.length > 0) {
    emit({ type: 'warning', msg: `work dir: ${left.kept.join(', ')} of a killed build still holds a mount that would not go, or is still being written; left as it is (unmount it, then remove the dir)` });
  }
}

/** One hash cache file per context directory (an extracted tar context is new every build: nothing to remember). */
function fileHashesOf(cacheDir: CacheDir, contextDir: string): () => Promise<FileHashCache> {
  let p: Promise<FileHashCache> | undefined;
  return () => (p ??= FileHashCache.open(cacheDir.fileHashes(contextDir)));
}

/** The settings every target shares; forTarget() sets the platform and the stage roots. */
function baseSettings(
  opts: ResolvedBuildOptions, platform: Platform, created: string, prefixes: string[], scratch: string, held?: Awaited<ReturnType<typeof guardInPlace>>,
): Executor['settings'] {
  let scratchN = 0;
  return {
    runMode: opts.runMode,
    platform,
    buildPlatform: opts.buildPlatform,
    // zstd layers need OCI media types, whatever the base's format
    ...(opts.compression === 'zstd' ? { imageFormat: 'oci' as const } : opts.imageFormat ? { imageFormat: opts.imageFormat } : {}),
    created,
    // --reproducible: layer entries get the image's created time (0 or SOURCE_DATE_EPOCH).
    ...(opts.reproducible ? { mtime: new Date(created) } : {}),
    ...(opts.compression ? { compression: opts.compression } : {}),
    ...(opts.compressionLevel !== undefined ? { compressionLevel: opts.compressionLevel } : {}),
    hashContents: opts.snapshotMode === 'full',
    exclude: prefixFilter(prefixes),
    excludePrefixes: prefixes,
    host: opts.host,
    secrets: opts.secrets ?? {},
    ...(held && opts.inPlace ? { inPlace: { ...(opts.inPlace.launcher ? { launcher: opts.inPlace.launcher } : {}), hide: held.hide, onStep: held.note } } : {}),
    stageRoot: () => '/',
    scratchPath: (prefix) => path.join(scratch, `${prefix}-${++scratchN}`),
  };
}

/**
 * One target's executor (--platform a,b: one per platform, and one for the shared stages) over what every target shares
 * (client, stores, cache, downloads, RUN cache mounts, the abort signal): its plan, platform, stage roots and labels.
 */
function forTarget(common: Executor, t: { plan: BuildPlan; platform: Platform; shared: ReadonlySet<number>; stagesDir: string | undefined; dir: string; tag?: string }): Executor {
  const needed = neededStages(t.plan);
  const usesLeft = new Map<number, number>();
  // a shared stage's root is never moved away: another platform may still read it
  for (const s of needed) for (const d of s.dependsOn) usesLeft.set(d, (usesLeft.get(d) ?? 0) + (t.shared.has(d) ? 2 : 1));
  const { stagesDir, dir } = t;
  return {
    services: { ...common.services, plan: t.plan },
    scheduling: { ...common.scheduling, done: new Map(), images: new Map(), resolved: new Map(), usesLeft, multiStage: common.scheduling.multiStage || needed.length > 1 },
    settings: {
      ...common.settings,
      platform: t.platform,
      ...(t.tag ? { platformTag: t.tag } : {}),
      stageRoot: (i) => (stagesDir === undefined ? '/' : path.join(stagesDir, dir ? `${dir}-${i}` : String(i))),
    },
  };
}

/** The stages a plan runs, in order. */
function neededStages(plan: BuildPlan): PlannedStage[] {
  return plan.stages.filter((s) => s.needed && s.index <= plan.target);
}

/** --platform a,b: a target stage pinned to one platform would make the same image for every target. */
function checkTargetNotPinned(plan: BuildPlan): void {
  const st = plan.stages[plan.target];
  if (st?.platform === undefined) return;
  throw new BuilderError('BUILD_TARGET_PINNED', `${st.from.file}:${st.from.line}: the target stage is FROM --platform=${formatPlatform(st.platform)}, so every platform of --platform would get the same ${formatPlatform(st.platform)} image`, {
    hint: 'drop --platform from the final stage\'s FROM (keep it on the build stages), or build one platform',
  });
}

/**
 * Runs every platform's stages; a shared stage once, in `sharedEx`, its result seen by every platform. Sandbox stages
 * run concurrently, each awaiting only what it reads; in place there is one "/", so one at a time. Returns each
 * platform's target stage result.
 */
async function runStages(executors: readonly Executor[], sharedEx: Executor, shared: ReadonlySet<number>, runMode: RunMode, abort: AbortController): Promise<StageResult[]> {
  const settle = async (ex: Executor, stage: PlannedStage): Promise<StageResult> => {
    const r = await runStage(ex, stage).catch((err: unknown) => {
      abort.abort(); // the other stages stop at their next step or RUN
      throw err;
    });
    for (const d of stage.dependsOn) ex.scheduling.usesLeft.set(d, (ex.scheduling.usesLeft.get(d) ?? 1) - 1);
    return r;
  };
  let chain: Promise<unknown> = Promise.resolve();
  const all: Promise<StageResult>[] = [];
  const start = (ex: Executor, stage: PlannedStage): Promise<StageResult> => {
    const p = runMode === 'in-place' ? chain.then(() => settle(ex, stage)) : settle(ex, stage);
    p.catch(() => undefined); // observed below; unhandled until then
    chain = p;
    all.push(p);
    ex.scheduling.done.set(stage.index, p);
    return p;
  };
  for (const ex of executors) {
    for (const stage of neededStages(ex.services.plan)) {
      const p = shared.has(stage.index) ? (sharedEx.scheduling.done.get(stage.index) ?? start(sharedEx, stage)) : start(ex, stage);
      ex.scheduling.done.set(stage.index, p);
    }
  }
  const results = await Promise.allSettled(all);
  if (results.some((r) => r.status === 'rejected')) throw firstCause(results);
  return Promise.all(executors.map(async (ex) => {
    const plan = ex.services.plan;
    const last = neededStages(plan).length > 0 ? await ex.scheduling.done.get(plan.target) : undefined;
    if (!last) throw new BuilderError('BUILD_EMPTY', `${plan.file}: nothing to build`, { hint: 'the Dockerfile needs a FROM line' });
    return last;
  }));
}

/** The target stage's result as an image: cache mounts, --single-snapshot, --label, the config's platform. */
async function finishImage(last: StageResult, opts: ResolvedBuildOptions, o: { cache: BuildCache | undefined; created: string; snapshotFile: string }): Promise<Image> {
  // New layers go to the cache repository once; the destination mounts them from there.
  let layers = last.layers;
  if (o.cache) {
    const { written, layers: { mountFrom: from } } = o.cache;
    if (from) layers = layers.map((l) => (written.has(l.descriptor.digest) && !l.mountFrom ? { ...l, mountFrom: from } : l));
  }
  let history = last.history;
  if (opts.singleSnapshot) ({ layers, history } = await singleSnapshot(layers, history, last.base.layers.length, o.snapshotFile, opts, o.created));
  const config = { ...last.config };
  if (Object.keys(opts.labels).length > 0) config.Labels = { ...(config.Labels ?? {}), ...opts.labels };
  const image = assembleImage({
    format: last.base.format,
    base: last.base.config,
    config,
    layers,
    history,
    created: o.created,
    ...(last.author !== undefined ? { author: last.author } : {}),
    architecture: last.platform.architecture,
    os: last.platform.os,
    ...(last.platform.variant ? { variant: last.platform.variant } : {}),
  });
  checkZstdLayers(image);
  opts.emit({ type: 'image-built', digest: image.manifestDigest, mediaType: image.mediaType, layers: image.layers.length, ...(opts.platforms && opts.platforms.length > 1 ? { platform: formatPlatform(last.platform) } : {}) });
  return image;
}
