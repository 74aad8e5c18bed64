// `builder [build] --context DIR --dockerfile F --destination REF`: kaniko's executor flags -> build().
import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { BuilderError } from '../../errors.js';
import { cacheRepository } from '../../cache/index.js';
import { build, type BuildOptions } from '../../executor/index.js';
import { parseBuildArgFlags } from '../../dockerfile/index.js';
import { platformFromNode } from '../../image/index.js';
import { parseReference } from '../../reference/index.js';
import { LAUNCHER } from '../../run/index.js';
import { checkPushAccess, dockerConfigDir, parseRegistryMap, RegistryClient } from '../../registry/index.js';
import type { CliEnv } from '../env.js';
import { processHost } from '../host.js';
import { parseDuration } from '../duration.js';
import { collect, parseBool } from '../flag-values.js';
import { addAcceptedFlags, addDeprecatedAliases, ignoredFlagWarnings } from '../kaniko-flags.js';
import type { Logger } from '../logger.js';
import { parseSecretFlags } from '../secrets.js';
import type { Renderer } from '../render.js';
import { builderVersion, installDir } from '../version.js';
import { scrubEnvironment } from '../environ.js';
import { addAttestFlags, attestRequest, type AttestFlags } from '../attest-flags.js';
import { addRegistryFlags, commandRenderer, KANIKO_DOCKER_CONFIG, platformsFromFlags, registryOptions, type RegistryFlags } from '../registry-flags.js';

export { parseBool };

export interface BuildFlags extends RegistryFlags, AttestFlags {
  context?: string;
  contextSubPath?: string;
  dockerfile: string;
  destination?: string[];
  push?: boolean;
  noPush?: boolean;
  tarPath?: string;
  ociLayoutPath?: string;
  digestFile?: string;
  imageNameWithDigestFile?: string;
  imageNameTagWithDigestFile?: string;
  imageFormat?: string;
  reproducible?: boolean;
  buildArg?: string[];
  target?: string;
  /** --platform: comma-separated target platforms. */
  platform?: string;
  skipUnusedStages?: boolean;
  label?: string[];
  secret?: string[];
  runMode?: string;
  force?: boolean;
  snapshotMode?: string;
  compression?: string;
  compressionLevel?: string;
  cacheDir?: string;
  workDir?: string;
  cache?: boolean;
  cacheRepo?: string;
  cacheTtl?: string;
  cacheRunLayers?: boolean;
  cacheCopyLayers?: boolean;
  pushCache?: boolean;
  cleanup?: boolean;
  registryMirror?: string[];
  registryMap?: string[];
  skipDefaultRegistryFallback?: boolean;
  insecurePull?: boolean;
  skipTlsVerifyPull?: boolean;
  pushIgnoreImmutableTagErrors?: boolean;
  ignorePath?: string[];
  singleSnapshot?: boolean;
  ignoreVarRun?: boolean;
  skipPushPermissionCheck?: boolean;
}

function keyValues(list: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new BuilderError('FLAG_INVALID', `${flag} "${kv}" is not KEY=VALUE`, { hint: `write ${flag} key=value` });
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

function oneOf<T extends string>(v: string | undefined, allowed: readonly T[], flag: string): T | undefined {
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) {
    throw new BuilderError('FLAG_INVALID', `${flag}=${v} is not one of ${allowed.join(', ')}`, { hint: `pick one of ${allowed.join(', ')}` });
  }
  return v as T;
}

/** Inside a GitLab job, what kaniko users otherwise write on every job: the project dir and $CI_REGISTRY_IMAGE:$CI_COMMIT_SHA. */
function gitLabDefaults(flags: BuildFlags, env: CliEnv, log: Logger): { context: string; destinations: string[] } {
  const e = env.env;
  const gitlab = Boolean(e.GITLAB_CI);
  let context = flags.context;
  if (context === undefined) {
    context = gitlab && e.CI_PROJECT_DIR ? e.CI_PROJECT_DIR : '.';
    if (gitlab && e.CI_PROJECT_DIR) log.log('info', `--context defaults to $CI_PROJECT_DIR (${e.CI_PROJECT_DIR})`);
  }
  let destinations = flags.destination ?? [];
  const noPush = flags.push === false || flags.noPush === true;
  if (destinations.length === 0 && !noPush && gitlab && e.CI_REGISTRY_IMAGE && e.CI_COMMIT_SHA) {
    destinations = [`${e.CI_REGISTRY_IMAGE}:${e.CI_COMMIT_SHA}`];
    log.log('info', `--destination defaults to $CI_REGISTRY_IMAGE:$CI_COMMIT_SHA (${destinations[0]})`);
  }
  return { context, destinations };
}

/** Where builder reads the docker config (as the credential provider does: registry-flags.ts), absolute. */
function configDirOf(env: CliEnv): string | undefined {
  const dir = dockerConfigDir(env.env, env.env.HOME ?? homedir());
  return dir === undefined ? undefined : path.resolve(env.cwd, dir);
}

/** The job's own paths an in-place build keeps (never wiped, never in a layer): its docker config, its CA files. */
function jobPaths(env: CliEnv): string[] {
  const given = [env.env.DOCKER_CONFIG, env.env.SSL_CERT_FILE, env.env.NODE_EXTRA_CA_CERTS].filter((p): p is string => !!p).map((p) => path.resolve(env.cwd, p));
  // the default config dir and kaniko's, when there (builder reads them too)
  const found = [configDirOf(env), path.dirname(KANIKO_DOCKER_CONFIG)].filter((p): p is string => p !== undefined && existsSync(p));
  return [...new Set([...found, ...given])];
}

/**
 * builder-run, through which in-place RUN steps start: the one `npm run build` compiled (dist/bin, scripts/bundle.mjs),
 * else one beside node (the executor image's /builder/bin).
 */
function inPlaceLauncher(): { launcher?: string } {
  for (const p of [path.join(installDir(), 'dist/bin', LAUNCHER), path.join(path.dirname(process.execPath), LAUNCHER)]) {
    try {
      accessSync(p, fsConstants.X_OK);
      return { launcher: p };
    } catch {
      // next place
    }
  }
  return {};
}

export function buildOptions(flags: BuildFlags, env: CliEnv, renderer: Renderer): BuildOptions {
  const logger = renderer.logger;
  const { context, destinations } = gitLabDefaults(flags, env, logger);
  const compression = oneOf(flags.compression, ['gzip', 'zstd'] as const, '--compression');
  const cacheHome = env.env.XDG_CACHE_HOME || path.join(env.env.HOME || homedir(), '.cache');
  const snapshot = oneOf(flags.snapshotMode, ['time', 'full', 'redo'] as const, '--snapshot-mode');
  const level = flags.compressionLevel === undefined ? undefined : Number(flags.compressionLevel);
  const [lo, hi] = compression === 'zstd' ? [1, 19] : [0, 9];
  if (level !== undefined && !(Number.isInteger(level) && level >= lo && level <= hi)) {
    throw new BuilderError('FLAG_INVALID', `--compression-level=${flags.compressionLevel} is not ${lo}-${hi} (${compression ?? 'gzip'})`, {
      hint: compression === 'zstd' ? 'use 1 (fast) to 19 (small); default 3' : 'use 1 (fast, default) to 9 (small)',
    });
  }
  const sde = env.env.SOURCE_DATE_EPOCH;
  const imageFormat = oneOf(flags.imageFormat, ['oci', 'docker'] as const, '--image-format');
  const runMode = oneOf(flags.runMode, ['auto', 'sandbox', 'in-place'] as const, '--run-mode') ?? 'auto';
  // The build's client sends its events into the build's stream (build.ts), with snapshots and extraction beside them.
  const registry = registryOptions(flags, env, logger, renderer.emit);
  // a missing or wrong signing key fails here, before any work
  const attest = attestRequest(flags, env, builderVersion());
  return {
    context,
    ...(flags.contextSubPath ? { contextSubPath: flags.contextSubPath } : {}),
    dockerfile: flags.dockerfile,
    cwd: env.cwd,
    stdin: env.stdin,
    destinations,
    noPush: flags.push === false || flags.noPush === true,
    ...(flags.tarPath ? { tarPath: path.resolve(env.cwd, flags.tarPath) } : {}),
    ...(flags.ociLayoutPath ? { ociLayoutPath: path.resolve(env.cwd, flags.ociLayoutPath) } : {}),
    ...(flags.digestFile ? { digestFile: path.resolve(env.cwd, flags.digestFile) } : {}),
    ...(flags.imageNameWithDigestFile ? { imageNameWithDigestFile: path.resolve(env.cwd, flags.imageNameWithDigestFile) } : {}),
    ...(flags.imageNameTagWithDigestFile ? { imageNameTagWithDigestFile: path.resolve(env.cwd, flags.imageNameTagWithDigestFile) } : {}),
    ...(imageFormat ? { imageFormat } : {}),
    reproducible: flags.reproducible === true,
    ...(sde && /^\d+$/.test(sde) ? { sourceDateEpoch: Number(sde) } : {}),
    ...targetPlatforms(flags),
    buildPlatform: platformFromNode(process.arch),
    buildArgs: parseBuildArgFlags(flags.buildArg ?? []),
    env: env.env,
    ...(flags.target ? { target: flags.target } : {}),
    // BuildKit builds only what the target needs; --skip-unused-stages=false keeps kaniko's every-stage-up-to-target.
    skipUnusedStages: flags.skipUnusedStages !== false,
    labels: keyValues(flags.label, '--label'),
    secrets: parseSecretFlags(flags.secret, env.env, env.cwd),
    runMode,
    force: flags.force === true,
    snapshotMode: snapshot === 'full' ? 'full' : 'time',
    ...(compression ? { compression } : {}),
    ...(level !== undefined ? { compressionLevel: level } : {}),
    ...(flags.cache ? {
      cache: {
        ...(flags.cacheRepo ? { repo: flags.cacheRepo } : {}),
        ttlMs: parseDuration(flags.cacheTtl ?? '336h', '--cache-ttl'),
        runLayers: flags.cacheRunLayers !== false,
        copyLayers: flags.cacheCopyLayers !== false,
        push: flags.pushCache !== false,
      },
    } : {}),
    cacheDir: path.resolve(env.cwd, flags.cacheDir ?? path.join(cacheHome, 'builder')),
    workDir: path.resolve(env.cwd, flags.workDir ?? path.join(tmpdir(), 'builder')),
    keepWorkDir: flags.cleanup === false,
    registry: {
      ...registry,
      // the push check's client and the build's ping each registry once between them
      pings: new Map(),
      ...pullOptions(flags, destinations),
      ...(flags.pushIgnoreImmutableTagErrors ? { ignoreImmutableTagErrors: true } : {}),
    },
    ...(flags.ignorePath?.length ? { ignorePaths: flags.ignorePath } : {}),
    ...(flags.singleSnapshot ? { singleSnapshot: true } : {}),
    ...(flags.ignoreVarRun === false ? { ignoreVarRun: false } : {}),
    selfPaths: [installDir(), process.execPath, ...jobPaths(env)],
    host: processHost(env.env),
    inPlace: { ...inPlaceLauncher(), hide: [...[configDirOf(env)].filter((d) => d !== undefined).map((d) => path.join(d, 'config.json')), KANIKO_DOCKER_CONFIG], pid: process.pid },
    ...(attest ? { attest } : {}),
    emit: renderer.emit,
    // RUN output goes to stderr with the logs: stdout carries only the digest a script captures
    output: renderer.output,
    ...(env.signal ? { signal: env.signal } : {}),
  };
}

/** Pull-side options: mirrors and the registry map (base images only), and transport leniency for registries not pushed to. */
function pullOptions(flags: BuildFlags, destinations: string[]): Partial<BuildOptions['registry']> {
  const mirrors = parseRegistryMap(flags.registryMap ?? []);
  // --registry-mirror is --registry-map for Docker Hub (kaniko: index.docker.io=MIRROR)
  if (flags.registryMirror?.length) mirrors['index.docker.io'] = [...(flags.registryMirror ?? []), ...(mirrors['index.docker.io'] ?? [])];
  const lenient = flags.insecurePull === true || flags.skipTlsVerifyPull === true;
  const pushHosts = [...new Set(destinations.map((d) => parseReference(d).registry))];
  if (flags.cache && flags.cacheRepo && !flags.cacheRepo.startsWith('oci:')) pushHosts.push(parseReference(flags.cacheRepo).registry);
  return {
    ...(Object.keys(mirrors).length > 0 ? { mirrors } : {}),
    ...(flags.skipDefaultRegistryFallback ? { skipDefaultRegistryFallback: true } : {}),
    ...(flags.insecurePull ? { insecurePull: true } : {}),
    ...(flags.skipTlsVerifyPull ? { skipTlsVerifyPull: true } : {}),
    ...(lenient ? { pushRegistries: pushHosts } : {}),
  };
}

function addBuildFlags(cmd: Command): Command {
  return cmd
    .option('-c, --context <dir|dir://dir|tar://file|tar://stdin>', 'build context (default: . ; $CI_PROJECT_DIR in a GitLab job)')
    .option('--context-sub-path <dir>', 'subdirectory of the context to use')
    .option('-f, --dockerfile <path>', 'Dockerfile, relative to the working directory or the context', 'Dockerfile')
    .option('-d, --destination <ref>', 'push the image to REGISTRY/REPO:TAG (repeatable; default in a GitLab job: $CI_REGISTRY_IMAGE:$CI_COMMIT_SHA)', collect)
    .option('--no-push [bool]', 'build without pushing', (v?: string) => !parseBool(v))
    .option('--tar-path <file>', 'also write the image as a docker-archive tarball (several --platform: the index, as an OCI archive that is a docker-archive too)')
    .option('--oci-layout-path <dir>', 'also write the image (several --platform: the index) into an OCI image layout')
    .option('--digest-file <file>', 'write the image manifest digest (several --platform: the index digest) to this file')
    .option('--image-name-with-digest-file <file>', 'write REGISTRY/REPO@DIGEST per destination to this file (REGISTRY/REPO:TAG@DIGEST when --image-name-tag-with-digest-file is given too, as kaniko)')
    .option('--image-name-tag-with-digest-file <file>', 'write REGISTRY/REPO:TAG@DIGEST per destination to this file')
    .option('--image-format <oci|docker>', 'manifest and config media types (default: those of the base image; docker for scratch)')
    .option('--reproducible [bool]', 'zero timestamps (or SOURCE_DATE_EPOCH) so equal inputs give equal digests', parseBool)
    .option('--build-arg <KEY[=VALUE]>', 'build argument; bare KEY takes the value from the environment (repeatable)', collect)
    .option('--target <stage>', 'build up to this stage')
    .option('--platform <os/arch[/variant],...>', 'target platforms, comma-separated (BuildKit\'s spelling): several build every one in this run and push one multi-platform index (--custom-platform: one)')
    .option('--skip-unused-stages [bool]', 'build only the stages the target needs (default true; false: every stage up to the target, as kaniko)', parseBool)
    .option('--label <key=value>', 'add a label to the image (repeatable)', collect)
    .option('--secret <id=ID,src=FILE|id=ID,env=VAR>', 'a secret for RUN --mount=type=secret (repeatable); never in the image, its history or a cache key', collect)
    .option('--run-mode <auto|sandbox|in-place>', 'sandbox: RUN in namespaces, chrooted into a build root; in-place: / is the root, inside the builder\'s own container (kaniko\'s model); auto (default): the sandbox where namespaces are allowed, else in place only inside builder\'s executor image')
    .option('--force [bool]', 'allow --run-mode in-place outside a container', parseBool)
    .option('--snapshot-mode <time|full|redo>', 'time (default; redo is an alias): metadata incl. ctime; full: also hash contents')
    .option('--single-snapshot [bool]', 'one layer for all the final stage\'s steps (its base\'s layers stay as they are)', parseBool)
    .option('--ignore-path <path>', 'leave this path out of every snapshot (repeatable)', collect)
    .option('--ignore-var-run [bool]', 'leave /var/run out of snapshots (default true, as kaniko); false keeps it', parseBool)
    .option('--compression <gzip|zstd>', 'layer compression: gzip (default; large layers use every core) or zstd (OCI manifest; needs the zstd program)')
    .option('--compression-level <n>', 'level of new layers: gzip 0-9 (default 1), zstd 1-19 (default 3)')
    .option('--cache-dir <dir>', 'local store of base images (manifests, configs, layers), verified on read, shared by concurrent builds; fill it with `builder warm` (default ~/.cache/builder)')
    .option('--work-dir <dir>', 'scratch space for stage roots and layer files (default $TMPDIR/builder); what killed builds left there is removed')
    .option('--cleanup [bool]', 'remove the work dir after the build (default true)', parseBool)
    .option('--cache [bool]', 'reuse and store step layers in a cache repository, keyed by the step and everything it reads', parseBool)
    .option('--cache-repo <repo|oci:dir>', 'layer cache location (default: $CI_REGISTRY_IMAGE/cache in GitLab, else the first destination\'s repository + /cache)')
    .option('--cache-ttl <duration>', 'ignore (and rebuild) cache entries older than this (default 336h)')
    .option('--cache-run-layers [bool]', 'cache RUN layers (default true)', parseBool)
    .option('--cache-copy-layers [bool]', 'cache COPY/ADD layers (default true: keys hash the copied content)', parseBool)
    .option('--no-push-cache [bool]', 'look up the layer cache but never write to it', (v?: string) => !parseBool(v))
    .option('--registry-mirror <host[/path]>', 'pull Docker Hub images through this mirror first (repeatable, tried in order)', collect)
    .option('--registry-map <registry=mirror[;registry=mirror]>', 'pull images of registry through mirror first (repeatable; several mirrors per registry tried in order)', collect)
    .option('--skip-default-registry-fallback [bool]', 'fail when no mirror has the image instead of pulling from the original registry', parseBool)
    .option('--insecure-pull [bool]', 'allow plain HTTP (and unverified TLS) for registries pulled from (not the destinations or cache repository)', parseBool)
    .option('--skip-tls-verify-pull [bool]', 'do not verify TLS certificates of registries pulled from (not the destinations or cache repository)', parseBool)
    .option('--push-ignore-immutable-tag-errors [bool]', 'a tag the registry refuses to overwrite (immutable tags) is a warning, not a failure', parseBool)
    .option('--skip-push-permission-check [bool]', 'do not check before the build that every destination and the cache repository accept a push', parseBool);
}

/** The build command's flags: ours, the shared registry/log flags, then kaniko's accepted-with-warning and deprecated ones. */
export function defineBuildFlags(cmd: Command, deprecated: string[]): Command {
  return addDeprecatedAliases(addAcceptedFlags(addRegistryFlags(addAttestFlags(addBuildFlags(cmd)), true)), deprecated);
}

export function register(program: Command, env: CliEnv): void {
  const deprecated: string[] = [];
  const cmd = program.command('build', { isDefault: true }).description('build an image from a Dockerfile and push it (the default command; kaniko executor flags)');
  defineBuildFlags(cmd, deprecated).action(async (flags: BuildFlags) => {
    const renderer = commandRenderer(flags, env);
    const logger = renderer.logger;
    for (const w of [...deprecated, ...ignoredFlagWarnings(cmd)]) logger.log('warn', w);
    const plain = buildOptions(flags, env, renderer);
    // A RUN step in place can read /proc/<builder>/environ: the credentials builder was started with leave it now
    // (env.env is main.ts's copy, so they stay readable to builder itself).
    scrubEnvironment(process.env, env.env);
    const { opts, stopCheck, checkDone } = plain.noPush || flags.skipPushPermissionCheck === true ? { opts: plain, stopCheck: undefined, checkDone: undefined } : besidePushCheck(plain, logger);
    try {
      // The summary (digest, size, layers built and cached, bytes, time per phase) is the build's last event.
      const r = await build(opts).catch((err: unknown) => {
        stopCheck?.(err); // a build failed first (a Dockerfile error) does not wait out a stalled check's timeouts and retries
        throw err;
      });
      env.stdout.write(`${r.manifestDigest}\n`);
    } finally {
      await checkDone; // settled (stopped if the build failed first), its upload sessions cancelled and its client closed before exit
      renderer.close();
    }
  });
  // `builder --help` is what a kaniko user reaches for first: show the build flags there too
  program.addHelpText('after', () => `\nbuild is the default command: \`builder --destination REF\` is \`builder build --destination REF\`.\n\n${cmd.helpInformation()}`);
}

/**
 * The build with the push check running beside it (its round trips overlap the base pulls): a refused check cancels
 * the build with the check's error; no step runs and nothing is pushed before the check has passed.
 */
function besidePushCheck(opts: BuildOptions, logger: Logger): { opts: BuildOptions; stopCheck: (reason: unknown) => void; checkDone: Promise<void> } {
  const refused = new AbortController();
  const stop = new AbortController();
  // stopped once the build has failed: a check already done has cancelled its upload session; one still waiting gives up
  const client = new RegistryClient({ ...opts.registry, signal: opts.registry?.signal ? AbortSignal.any([stop.signal, opts.registry.signal]) : stop.signal });
  const check = checkPush(opts, logger, client);
  check.catch((err: unknown) => refused.abort(err));
  return {
    opts: { ...opts, signal: opts.signal ? AbortSignal.any([opts.signal, refused.signal]) : refused.signal, pushCheck: check },
    stopCheck: (reason) => stop.abort(reason),
    // the sessions the check opened are cancelled while the build goes on (close() waits for that)
    // handled at once: awaited only after the build, and its end is never the build's error
    checkDone: check.catch(() => undefined).then(() => client.close()).catch(() => undefined),
  };
}

/**
 * Every destination repository accepts a push (a wrong host, password or scope fails in seconds).
 * The cache repository is checked too, but as everywhere else a cache that cannot be written costs a warning, never the build.
 */
async function checkPush(opts: BuildOptions, logger: Logger, client: RegistryClient): Promise<void> {
  const refs = opts.destinations.map((d) => parseReference(d));
  const cacheRepo = opts.cache?.push ? cacheRepository(opts.cache.repo, opts.destinations, opts.env) : undefined;
  const t0 = Date.now();
  const [dest, cache] = await Promise.allSettled([
    refs.length > 0 ? checkPushAccess(client, refs) : Promise.resolve([]),
    cacheRepo && !('oci' in cacheRepo) && !refs.some((r) => r.name === cacheRepo.name) ? checkPushAccess(client, [cacheRepo]) : Promise.resolve([]),
  ]);
  if (dest.status === 'rejected') throw dest.reason;
  if (cache.status === 'rejected') {
    const e = cache.reason as Error & { code?: string };
    logger.log('warn', `the cache repository does not accept a push (${e.code ? `${e.code}: ` : ''}${e.message.replace(/^before building: /, '')}); the build goes on, but no cache entry will be written`);
  }
  logger.log('debug', `push permission checked for ${[...dest.value, ...(cache.status === 'fulfilled' ? cache.value : [])].join(', ')} in ${Date.now() - t0} ms`);
}

/** platform (the first) and, with several, platforms: a one-platform --platform is today's --custom-platform build. */
function targetPlatforms(flags: BuildFlags): Pick<BuildOptions, 'platform' | 'platforms'> {
  const list = platformsFromFlags(flags);
  return list.length > 1 ? { platform: list[0]!, platforms: list } : { platform: list[0]! };
}
