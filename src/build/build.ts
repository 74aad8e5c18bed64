// One build, end to end: context + Dockerfile -> plan -> stages -> assembled image -> outputs; work dir cleaned up.
import { mkdir, mkdtemp, readFile, realpath, rm } from 'node:fs/promises';
import path from 'node:path';
import { BuilderError, isBuilderError } from '../errors.js';
import { BlobStore } from '../cache/index.js';
import { openContext } from '../context/index.js';
import { planBuild, readDockerfile } from '../dockerfile/index.js';
import { parseReference } from '../reference/index.js';
import { RegistryClient } from '../registry/index.js';
import { detectContainer, IN_PLACE_IGNORED_PATHS, mountPointsToIgnore, runtimeMounts, sandboxAvailable } from '../run/index.js';
import { assembleImage } from './assemble.js';
import { runStage, type ExecutorEnv, type StageResult } from './executor.js';
import type { RunMode } from '../run/index.js';
import { throwIfCancelled, type BuildOptions, type BuildResult, type ResolvedBuildOptions } from './options.js';
import { writeOutputs } from './output.js';

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
async function exclusions(opts: ResolvedBuildOptions, selfDirs: string[]): Promise<string[]> {
  if (opts.runMode === 'sandbox') return runtimeMounts.map(rel);
  const mounts = mountPointsToIgnore((await readOptional('/proc/self/mountinfo')) ?? '');
  // A path given through a symlink (--work-dir /link/work) is kept under its real name too, or the wipe would delete it there.
  const real = await Promise.all(selfDirs.map(realpathLoose));
  return [...new Set([...IN_PLACE_IGNORED_PATHS, ...mounts, ...selfDirs, ...real].map(rel).filter((p) => p !== ''))].sort();
}

/** The error to report when stages fail: one that failed on its own, not one stopped because another failed. */
function firstCause(results: PromiseSettledResult<unknown>[]): unknown {
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason);
  return failed.find((e) => !isBuilderError(e, 'RUN_ABORTED') && !isBuilderError(e, 'BUILD_ABORTED')) ?? failed[0];
}

/** The run mode to use: as asked, or for auto the sandbox where it can start, else in place inside a container. */
export async function chooseRunMode(
  opts: Pick<BuildOptions, 'runMode' | 'force' | 'env' | 'log'>,
  probe: { sandbox: typeof sandboxAvailable; container: () => Promise<boolean> } = {
    sandbox: sandboxAvailable,
    container: () => detectContainer(readOptional, opts.env),
  },
): Promise<RunMode> {
  const sandbox = opts.runMode === 'in-place' ? undefined : await probe.sandbox();
  if (sandbox?.ok) return 'sandbox';
  if (opts.runMode === 'sandbox') {
    throw new BuilderError('RUN_SANDBOX_UNAVAILABLE', `the sandbox cannot start here: ${sandbox?.reason ?? 'unknown reason'}`, {
      hint: 'inside an unprivileged CI container use --run-mode in-place (kaniko\'s model), or leave --run-mode at auto',
    });
  }
  if (!opts.force && !(await probe.container())) {
    throw new BuilderError('RUN_IN_PLACE_REFUSED', `in-place mode rewrites "/" and this does not look like a container${sandbox ? ` (and the sandbox cannot start: ${sandbox.reason ?? 'unknown reason'})` : ''}`, {
      hint: 'run builder inside its own container, allow namespaces for --run-mode sandbox, or pass --force if you really mean it',
    });
  }
  if (sandbox) opts.log(`the sandbox cannot start here (${sandbox.reason ?? 'unknown reason'}): running in place, as kaniko does`);
  return 'in-place';
}

export async function build(options: BuildOptions): Promise<BuildResult> {
  if (options.destinations.length === 0 && !options.noPush) {
    throw new BuilderError('BUILD_NO_DESTINATION', 'no --destination given', {
      hint: 'add --destination REGISTRY/REPO:TAG, or --no-push (with --tar-path or --oci-layout-path to keep the image)',
    });
  }
  for (const d of options.destinations) parseReference(d); // bad references fail before any work
  const opts: ResolvedBuildOptions = { ...options, runMode: await chooseRunMode(options) };
  throwIfCancelled(opts.signal);
  await mkdir(opts.workDir, { recursive: true });
  const work = await mkdtemp(path.join(opts.workDir, 'build-'));
  const reg = opts.registry.signal;
  const client = new RegistryClient(opts.signal && reg !== opts.signal ? { ...opts.registry, signal: reg ? AbortSignal.any([reg, opts.signal]) : opts.signal } : opts.registry);
  const cleanup: Promise<void>[] = [];
  // A cancellation stops the stages as a stage failure does (RUN processes killed), with the signal's reason.
  const abort = new AbortController();
  const cancel = (): void => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', cancel, { once: true });
  try {
    const ctx = await openContext(opts.context, {
      cwd: opts.cwd,
      dockerfile: opts.dockerfile,
      tmpDir: work,
      ...(opts.contextSubPath ? { subPath: opts.contextSubPath } : {}),
      ...(opts.stdin ? { stdin: opts.stdin } : {}),
    });
    try {
      if (!ctx.dockerfilePath) {
        throw new BuilderError('DOCKERFILE_NOT_FOUND', `Dockerfile "${opts.dockerfile}" not found (looked in ${opts.cwd} and in the context ${ctx.dir})`, {
          hint: 'pass --dockerfile with a path relative to the working directory or to the context',
        });
      }
      const text = await readFile(ctx.dockerfilePath, 'utf8');
      const df = readDockerfile(text, path.relative(opts.cwd, ctx.dockerfilePath) || ctx.dockerfilePath);
      const plan = planBuild(df, {
        buildArgs: opts.buildArgs,
        env: opts.env,
        ...(opts.target ? { target: opts.target } : {}),
        platform: opts.platform,
        buildPlatform: opts.buildPlatform,
        skipUnusedStages: opts.skipUnusedStages,
      });
      for (const w of plan.warnings) opts.log(`warning: ${w}`);

      // In place, the builder's own files, scratch space, cache and context must survive the wipe of "/".
      const prefixes = await exclusions(opts, [path.resolve(opts.workDir), path.resolve(opts.cacheDir), ctx.dir, ...(opts.selfPaths ?? [])]);
      const layerDir = path.join(work, 'layers');
      await mkdir(layerDir, { recursive: true });
      const needed = plan.stages.filter((s) => s.needed && s.index <= plan.target);
      const usesLeft = new Map<number, number>();
      for (const s of needed) for (const d of s.dependsOn) usesLeft.set(d, (usesLeft.get(d) ?? 0) + 1);
      const now = opts.now?.() ?? new Date();
      const env: ExecutorEnv = {
        opts,
        plan,
        ctx,
        client,
        store: new BlobStore(path.join(opts.cacheDir, 'blobs-store')),
        exclude: prefixFilter(prefixes),
        excludePrefixes: prefixes,
        created: opts.reproducible ? new Date((opts.sourceDateEpoch ?? 0) * 1000).toISOString() : now.toISOString(),
        layerDir,
        stageRoot: (i) => (opts.runMode === 'in-place' ? '/' : path.join(work, 'stages', String(i))),
        done: new Map(),
        images: new Map(),
        multiStage: needed.length > 1,
        signal: abort.signal,
        warned: new Set(),
        usesLeft,
        layerCounter: { n: 0 },
      };
      // Sandbox stages run concurrently, each awaiting only what it reads; in place there is one "/", so one at a time.
      const settle = async (stage: (typeof needed)[number]): Promise<StageResult> => {
        const r = await runStage(env, stage).catch((err: unknown) => {
          abort.abort(); // the other stages stop at their next step or RUN
          throw err;
        });
        for (const d of stage.dependsOn) usesLeft.set(d, (usesLeft.get(d) ?? 1) - 1);
        return r;
      };
      let chain: Promise<unknown> = Promise.resolve();
      for (const stage of needed) {
        const p = opts.runMode === 'in-place' ? chain.then(() => settle(stage)) : settle(stage);
        p.catch(() => undefined); // observed below; unhandled until then
        chain = p;
        env.done.set(stage.index, p);
      }
      const results = await Promise.allSettled([...env.done.values()]);
      if (results.some((r) => r.status === 'rejected')) throw firstCause(results);
      throwIfCancelled(opts.signal);
      const last = needed.length > 0 ? await env.done.get(needed[needed.length - 1]!.index) : undefined;
      if (!last) throw new BuilderError('BUILD_EMPTY', `${df.file}: nothing to build`, { hint: 'the Dockerfile needs a FROM line' });

      const config = { ...last.config };
      if (Object.keys(opts.labels).length > 0) config.Labels = { ...(config.Labels ?? {}), ...opts.labels };
      const image = assembleImage({
        format: last.base.format,
        base: last.base.config,
        config,
        layers: last.layers,
        history: last.history,
        created: env.created,
        ...(last.author !== undefined ? { author: last.author } : {}),
        architecture: last.platform.architecture,
        os: last.platform.os,
        ...(last.platform.variant ? { variant: last.platform.variant } : {}),
      });
      opts.log(`image ${image.manifestDigest} (${image.mediaType}, ${image.layers.length} layers)`);
      // Stage roots are no longer needed: remove them (disk-bound) while the push runs (network-bound).
      if (opts.runMode === 'sandbox' && !opts.keepWorkDir) cleanup.push(rm(path.join(work, 'stages'), { recursive: true, force: true }));
      const pushed = await writeOutputs(client, image, opts);
      return {
        manifestDigest: image.manifestDigest,
        configDigest: image.manifest.config.digest,
        mediaType: image.mediaType,
        pushed,
        layers: image.layers.length,
      };
    } finally {
      await ctx.close();
    }
  } finally {
    opts.signal?.removeEventListener('abort', cancel);
    await client.close();
    await Promise.allSettled(cleanup);
    if (!opts.keepWorkDir) await rm(work, { recursive: true, force: true });
  }
}
