// `builder [build] --context DIR --dockerfile F --destination REF`: kaniko's executor flags -> build().
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { BuilderError } from '../../errors.js';
import { build, type BuildOptions } from '../../executor/index.js';
import { parseBuildArgFlags } from '../../dockerfile/index.js';
import { platformFromNode } from '../../image/index.js';
import type { CliEnv } from '../env.js';
import { parseDuration } from '../duration.js';
import { parseSecretFlags } from '../secrets.js';
import { addRegistryFlags, platformFromFlags, registryOptions, type RegistryFlags } from '../registry-flags.js';

interface BuildFlags extends RegistryFlags {
  context: string;
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
  skipUnusedStages?: boolean;
  label?: string[];
  secret?: string[];
  runMode?: string;
  force?: boolean;
  snapshotMode?: string;
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
  verbosity?: string;
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** kaniko's boolean flags accept `--flag`, `--flag=true` and `--flag=false` (Go pflag). */
export function parseBool(v: string | undefined): boolean {
  if (v === undefined || v === '' || /^(true|1|t|yes)$/i.test(v)) return true;
  if (/^(false|0|f|no)$/i.test(v)) return false;
  throw new BuilderError('FLAG_INVALID', `"${v}" is not a boolean`, { hint: 'use true or false' });
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

export function buildOptions(flags: BuildFlags, env: CliEnv): BuildOptions {
  const cacheHome = env.env.XDG_CACHE_HOME || path.join(env.env.HOME || homedir(), '.cache');
  const snapshot = oneOf(flags.snapshotMode, ['time', 'full', 'redo'] as const, '--snapshot-mode');
  const level = flags.compressionLevel === undefined ? undefined : Number(flags.compressionLevel);
  if (level !== undefined && !(Number.isInteger(level) && level >= 0 && level <= 9)) {
    throw new BuilderError('FLAG_INVALID', `--compression-level=${flags.compressionLevel} is not 0-9`, { hint: 'use 1 (fast, default) to 9 (small)' });
  }
  const sde = env.env.SOURCE_DATE_EPOCH;
  const imageFormat = oneOf(flags.imageFormat, ['oci', 'docker'] as const, '--image-format');
  const runMode = oneOf(flags.runMode, ['auto', 'sandbox', 'in-place'] as const, '--run-mode') ?? 'auto';
  const quiet = flags.verbosity === 'error' || flags.verbosity === 'panic' || flags.verbosity === 'fatal';
  return {
    context: flags.context,
    ...(flags.contextSubPath ? { contextSubPath: flags.contextSubPath } : {}),
    dockerfile: flags.dockerfile,
    cwd: env.cwd,
    stdin: env.stdin,
    destinations: flags.destination ?? [],
    noPush: flags.push === false || flags.noPush === true,
    ...(flags.tarPath ? { tarPath: path.resolve(env.cwd, flags.tarPath) } : {}),
    ...(flags.ociLayoutPath ? { ociLayoutPath: path.resolve(env.cwd, flags.ociLayoutPath) } : {}),
    ...(flags.digestFile ? { digestFile: path.resolve(env.cwd, flags.digestFile) } : {}),
    ...(flags.imageNameWithDigestFile ? { imageNameWithDigestFile: path.resolve(env.cwd, flags.imageNameWithDigestFile) } : {}),
    ...(flags.imageNameTagWithDigestFile ? { imageNameTagWithDigestFile: path.resolve(env.cwd, flags.imageNameTagWithDigestFile) } : {}),
    ...(imageFormat ? { imageFormat } : {}),
    reproducible: flags.reproducible === true,
    ...(sde && /^\d+$/.test(sde) ? { sourceDateEpoch: Number(sde) } : {}),
    platform: platformFromFlags(flags),
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
    registry: registryOptions(flags, env),
    selfPaths: [fileURLToPath(new URL('../../../..', import.meta.url)), process.execPath],
    log: quiet ? () => undefined : (line) => void env.stderr.write(`builder: ${line}\n`),
    output: (text, stream) => void (stream === 'stdout' ? env.stdout : env.stderr).write(text),
    ...(env.signal ? { signal: env.signal } : {}),
  };
}

function addBuildFlags(cmd: Command): Command {
  return cmd
    .option('-c, --context <dir|dir://dir|tar://file|tar://stdin>', 'build context', '.')
    .option('--context-sub-path <dir>', 'subdirectory of the context to use')
    .option('-f, --dockerfile <path>', 'Dockerfile, relative to the working directory or the context', 'Dockerfile')
    .option('-d, --destination <ref>', 'push the image to REGISTRY/REPO:TAG (repeatable)', collect)
    .option('--no-push [bool]', 'build without pushing', (v?: string) => !parseBool(v))
    .option('--tar-path <file>', 'also write the image as a docker-archive tarball')
    .option('--oci-layout-path <dir>', 'also write the image into an OCI image layout')
    .option('--digest-file <file>', 'write the image manifest digest to this file')
    .option('--image-name-with-digest-file <file>', 'write REGISTRY/REPO@DIGEST per destination to this file')
    .option('--image-name-tag-with-digest-file <file>', 'write REGISTRY/REPO:TAG@DIGEST per destination to this file')
    .option('--image-format <oci|docker>', 'manifest and config media types (default: those of the base image; docker for scratch)')
    .option('--reproducible [bool]', 'zero timestamps (or SOURCE_DATE_EPOCH) so equal inputs give equal digests', parseBool)
    .option('--build-arg <KEY[=VALUE]>', 'build argument; bare KEY takes the value from the environment (repeatable)', collect)
    .option('--target <stage>', 'build up to this stage')
    .option('--skip-unused-stages [bool]', 'build only the stages the target needs (default true; false: every stage up to the target, as kaniko)', parseBool)
    .option('--label <key=value>', 'add a label to the image (repeatable)', collect)
    .option('--secret <id=ID,src=FILE|id=ID,env=VAR>', 'a secret for RUN --mount=type=secret (repeatable); never in the image, its history or a cache key', collect)
    .option('--run-mode <auto|sandbox|in-place>', 'sandbox: RUN in namespaces, chrooted into a build root; in-place: / is the root, inside the builder\'s own container (kaniko\'s model); auto (default): the sandbox where namespaces are allowed, else in place only inside builder\'s executor image')
    .option('--force [bool]', 'allow --run-mode in-place outside a container', parseBool)
    .option('--snapshot-mode <time|full|redo>', 'time (default; redo is an alias): metadata incl. ctime; full: also hash contents')
    .option('--compression-level <0-9>', 'gzip level of new layers (default 1)')
    .option('--cache-dir <dir>', 'local store of base images (manifests, configs, layers), verified on read, shared by concurrent builds; fill it with `builder warm` (default ~/.cache/builder)')
    .option('--work-dir <dir>', 'scratch space for stage roots and layer files (default $TMPDIR/builder)')
    .option('--cleanup [bool]', 'remove the work dir after the build (default true)', parseBool)
    .option('--cache [bool]', 'reuse and store step layers in a cache repository, keyed by the step and everything it reads', parseBool)
    .option('--cache-repo <repo|oci:dir>', 'layer cache location (default: $CI_REGISTRY_IMAGE/cache in GitLab, else the first destination\'s repository + /cache)')
    .option('--cache-ttl <duration>', 'ignore (and rebuild) cache entries older than this (default 336h)')
    .option('--cache-run-layers [bool]', 'cache RUN layers (default true)', parseBool)
    .option('--cache-copy-layers [bool]', 'cache COPY/ADD layers (default true: keys hash the copied content)', parseBool)
    .option('--no-push-cache [bool]', 'look up the layer cache but never write to it', (v?: string) => !parseBool(v))
    .option('--verbosity <level>', 'log level: info (default), debug, error');
}

export function register(program: Command, env: CliEnv): void {
  const action = async (flags: BuildFlags): Promise<void> => {
    const opts = buildOptions(flags, env);
    const r = await build(opts);
    env.stdout.write(`${r.manifestDigest}\n`);
  };
  addRegistryFlags(addBuildFlags(program.command('build', { isDefault: true }).description('build an image from a Dockerfile and push it (the default command; kaniko executor flags)'))).action(action);
}
