// `builder plan`: parse a Dockerfile and print its stages, the steps as expanded before the build, and which stages run.
import { readFile, realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { locateDockerfile as locate } from '../../context/index.js';
import { BuilderError } from '../../errors.js';
import {
  checkPlatforms,
  formatPlan,
  parseBuildArgFlags,
  parseDockerfile,
  parsePlatform,
  planBuild,
  sharedStages,
  toInstructions,
  type PlatformSpec,
} from '../../dockerfile/index.js';
import type { CliEnv } from '../env.js';
import { parseBool } from './build.js';
import { platformsFromFlags } from '../registry-flags.js';

interface PlanFlags {
  dockerfile: string;
  context?: string;
  buildArg: string[];
  target?: string;
  skipUnusedStages?: boolean;
  customPlatform?: string;
  platform?: string;
}

// Node's process.arch names -> OCI architecture names.
const NODE_ARCH: Record<string, PlatformSpec> = {
  x64: { os: 'linux', architecture: 'amd64' },
  arm64: { os: 'linux', architecture: 'arm64' },
  arm: { os: 'linux', architecture: 'arm', variant: 'v7' },
  ia32: { os: 'linux', architecture: '386' },
  ppc64: { os: 'linux', architecture: 'ppc64le' },
  s390x: { os: 'linux', architecture: 's390x' },
  riscv64: { os: 'linux', architecture: 'riscv64' },
};

export function register(program: Command, env: CliEnv): void {
  program
    .command('plan')
    .description('print the build plan of a Dockerfile: stages, steps after static expansion, and which stages run')
    .option('-f, --dockerfile <path>', 'path to the Dockerfile (relative to the working directory, else to --context)', 'Dockerfile')
    .option('-c, --context <dir>', 'build context directory (default: the working directory)')
    .option('--build-arg <KEY[=VALUE]>', 'build argument; bare KEY takes its value from the environment (repeatable)', collect, [])
    .option('--target <stage>', 'stage to build')
    .option('--skip-unused-stages [bool]', 'build only the stages the target needs (default true; false: every stage up to the target)', parseBool)
    .option('--custom-platform <os/arch[/variant]>', 'target platform (default: the platform builder runs on)')
    .option('--platform <os/arch[/variant],...>', 'target platforms, comma-separated: one plan per platform, stages they share marked')
    .action(async (flags: PlanFlags) => {
      const buildPlatform = NODE_ARCH[process.arch] ?? { os: 'linux', architecture: process.arch };
      const platforms = flags.platform !== undefined ? platformsFromFlags(flags) : [flags.customPlatform ? parsePlatform(flags.customPlatform) : buildPlatform];
      checkPlatforms(platforms);
      const path = await locateDockerfile(flags, env);
      const text = await readFile(path, 'utf8');
      const df = toInstructions(parseDockerfile(text, flags.dockerfile));
      const plans = platforms.map((platform) => planBuild(df, {
        buildArgs: parseBuildArgFlags(flags.buildArg),
        env: env.env,
        target: flags.target,
        platform,
        buildPlatform,
        skipUnusedStages: flags.skipUnusedStages !== false,
      }));
      const shared = sharedStages(plans);
      env.stdout.write(plans.map((p) => formatPlan(p, shared)).join('\n'));
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

// kaniko resolves --dockerfile against the working directory first, then against the context; a symlink may not lead out of them.
async function locateDockerfile(flags: PlanFlags, env: CliEnv): Promise<string> {
  const contextDir = await realpath(resolve(env.cwd, flags.context ?? '.')).catch(() => resolve(env.cwd, flags.context ?? '.'));
  const found = await locate(flags.dockerfile, { cwd: env.cwd, contextDir });
  if (found) return found;
  throw new BuilderError('DOCKERFILE_NOT_FOUND', `cannot read Dockerfile ${flags.dockerfile} (looked in ${env.cwd} and in ${contextDir})`, {
    hint: 'Pass --dockerfile with a path relative to the working directory or to --context.',
  });
}
