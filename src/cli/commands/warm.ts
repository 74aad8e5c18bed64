// `builder warm -i REF... | -d Dockerfile`: kaniko warmer's flags -> warmImages() into the build's --cache-dir.
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { CacheDir, dockerfileTargets, warmImages, type WarmTarget } from '../../store/index.js';
import { parseBuildArgFlags, parseGoDuration } from '../../dockerfile/index.js';
import { BuilderError } from '../../errors.js';
import { formatPlatform, platformFromNode } from '../../image/index.js';
import { RegistryClient } from '../../registry/index.js';
import type { CliEnv } from '../env.js';
import { addRegistryFlags, commandRenderer, platformsFromFlags, registryOptions, type RegistryFlags } from '../registry-flags.js';

interface WarmFlags extends RegistryFlags {
  image?: string[];
  dockerfile?: string;
  buildArg?: string[];
  cacheDir?: string;
  force?: boolean;
  cacheTtl?: string;
  verbosity?: string;
  /** --platform: comma-separated platforms, each warmed. */
  platform?: string;
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** The build command's default --cache-dir, so `builder warm` and `builder` meet without flags. */
export function defaultCacheDir(env: CliEnv): string {
  const cacheHome = env.env.XDG_CACHE_HOME || path.join(env.env.HOME || homedir(), '.cache');
  return path.join(cacheHome, 'builder');
}

function ttlMs(v: string | undefined): number {
  if (v === undefined) return 0;
  const ns = parseGoDuration(v);
  if (ns === undefined) throw new BuilderError('FLAG_INVALID', `--cache-ttl=${v} is not a duration`, { hint: 'write a Go duration such as 336h, 24h or 30m; 0 always asks the registry' });
  return ns / 1e6;
}

export function register(program: Command, env: CliEnv): void {
  const cmd = program
    .command('warm')
    .summary('fill the --cache-dir store with base images, e.g. from a scheduled job (kaniko warmer flags)')
    .description(
      'fill the --cache-dir store with base images (manifests, config, every layer) so builds that follow need no base download: ' +
        'a FROM pinned by digest then makes no registry request, a FROM by tag one manifest request (kaniko warmer flags)',
    )
    .option('-i, --image <ref>', 'image to warm (repeatable)', collect)
    .option('-d, --dockerfile <file>', 'warm every registry image the Dockerfile\'s stages start FROM (and COPY --from)')
    .option('--build-arg <KEY[=VALUE]>', 'build argument for expanding the Dockerfile\'s FROM lines; bare KEY takes the environment\'s value (repeatable)', collect)
    .option('-c, --cache-dir <dir>', 'the store to fill, shared safely by concurrent jobs (default: the build\'s, ~/.cache/builder)')
    .option('-f, --force', 'download every manifest, config and layer again and replace the stored copies')
    .option(
      '--cache-ttl <duration>',
      'a tag this warmer resolved less than DURATION ago (e.g. 24h) is taken from the store without asking the registry; ' +
        'default 0: ask the registry once per tag every run (references by digest never need it)',
    );
  addRegistryFlags(cmd)
    // kaniko warmer's spellings of the registry flags, so its job definitions work unchanged.
    .option('--customPlatform <os/arch[/variant]>', 'same as --custom-platform (kaniko warmer\'s spelling)')
    .option('--platform <os/arch[/variant],...>', 'warm every one of these platforms (comma-separated, as builder build --platform takes them)')
    .option('--insecure-pull', 'same as --insecure (kaniko warmer\'s spelling)')
    .option('--skip-tls-verify-pull', 'same as --skip-tls-verify (kaniko warmer\'s spelling)');
  cmd.action(async (raw: WarmFlags & { insecurePull?: boolean; skipTlsVerifyPull?: boolean }) => {
    const flags: WarmFlags = { ...raw, insecure: raw.insecure === true || raw.insecurePull === true, skipTlsVerify: raw.skipTlsVerify === true || raw.skipTlsVerifyPull === true };
    // -v/--verbosity (error: errors only), --log-format and --log-timestamp come with the registry flags
    const renderer = commandRenderer(flags, env);
    const opts = registryOptions(flags, env, renderer.logger, renderer.emit);
    const ttl = ttlMs(flags.cacheTtl);
    const platforms = platformsFromFlags(flags);
    const targets: WarmTarget[] = (flags.image ?? []).flatMap((image) => platforms.map((platform) => ({ image, platform })));
    if (flags.dockerfile) {
      const file = path.resolve(env.cwd, flags.dockerfile);
      const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
        throw new BuilderError('DOCKERFILE_NOT_FOUND', `cannot read the Dockerfile ${file}: ${err.code ?? err.message}`, { hint: 'pass --dockerfile with a path relative to the working directory' });
      });
      const key = (t: WarmTarget): string => `${t.image}\0${formatPlatform(t.platform)}`;
      const seen = new Set(targets.map(key));
      for (const platform of platforms) {
        for (const t of dockerfileTargets(text, path.relative(env.cwd, file) || file, {
          buildArgs: parseBuildArgFlags(flags.buildArg ?? []),
          env: env.env,
          platform,
          buildPlatform: platformFromNode(process.arch),
        })) {
          if (!seen.has(key(t))) targets.push(t);
          seen.add(key(t));
        }
      }
    } else if (flags.buildArg?.length) {
      throw new BuilderError('FLAG_INVALID', '--build-arg is only used with --dockerfile', { hint: 'add --dockerfile F, or drop --build-arg' });
    }
    if (targets.length === 0) {
      throw new BuilderError('WARM_NO_IMAGES', flags.dockerfile ? `${flags.dockerfile} names no registry image to warm` : 'nothing to warm', {
        hint: 'name images with --image REF (repeatable) or --dockerfile F',
      });
    }
    const client = new RegistryClient(opts);
    try {
      await warmImages(targets, {
        client,
        cacheDir: new CacheDir(path.resolve(env.cwd, flags.cacheDir ?? defaultCacheDir(env))),
        force: flags.force === true,
        ttlMs: ttl,
        emit: renderer.emit,
      });
    } finally {
      renderer.close();
      await client.close();
    }
  });
}
