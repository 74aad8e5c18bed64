// Shared registry flags (kaniko names) and their translation to RegistryClientOptions.
import { homedir } from 'node:os';
import type { Command } from 'commander';
import { BuilderError } from '../errors.js';
import { parsePlatform, platformFromNode, type Platform } from '../image/index.js';
import { credentialProvider, type RegistryClientOptions } from '../registry/index.js';
import type { CliEnv } from './env.js';

export interface RegistryFlags {
  insecure?: boolean;
  insecureRegistry?: string[];
  skipTlsVerify?: boolean;
  skipTlsVerifyRegistry?: string[];
  registryCertificate?: string[];
  customPlatform?: string;
  verbose?: boolean;
  pushRetry?: string;
  imageDownloadRetry?: string;
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** Adds the registry flags to a command (each command gets its own copy, so flags go after the subcommand). */
export function addRegistryFlags(cmd: Command): Command {
  return cmd
    .option('--insecure', 'allow plain HTTP (and unverified TLS) for every registry')
    .option('--insecure-registry <host>', 'allow plain HTTP (and unverified TLS) for this registry (repeatable)', collect)
    .option('--skip-tls-verify', 'do not verify TLS certificates of any registry')
    .option('--skip-tls-verify-registry <host>', 'do not verify TLS certificates of this registry (repeatable)', collect)
    .option('--registry-certificate <host=path>', 'trust the CA certificate at path for registry host (repeatable)', collect)
    .option('--custom-platform <os/arch[/variant]>', 'platform to pick from multi-platform images (default: this host)')
    .option('--push-retry <n>', 'retries of each push request after a transient failure (connection, timeout, 408, 429, 5xx), and new upload sessions per blob (default 4; 0: none)')
    .option('--image-download-retry <n>', 'retries of each pull request, and Range resumes per blob download, after a transient failure (default 4; 0: none)')
    .option('-v, --verbose', 'log registry requests to stderr');
}

/** The platform for --custom-platform, else this host's. */
export function platformFromFlags(flags: RegistryFlags): Platform {
  return flags.customPlatform ? parsePlatform(flags.customPlatform) : platformFromNode(process.arch);
}

function count(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim()) || Number(v) > 100) throw new BuilderError('FLAG_INVALID', `${flag}=${v} is not a number of retries from 0 to 100`, { hint: `e.g. ${flag}=3` });
  return Number(v);
}

/** Millisecond knobs from the environment (tests use short ones; unusual networks long ones). */
function envMs(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new BuilderError('FLAG_INVALID', `${name}=${v} is not a whole number`, { hint: `unset ${name} or give it a number` });
  return Number(v);
}

/**
 * Retry budgets and timing: the flags, plus BUILDER_RETRY_BASE_MS / BUILDER_RETRY_MAX_MS / BUILDER_RETRY_AFTER_MAX_MS
 * (backoff), BUILDER_REGISTRY_STALL_TIMEOUT_MS (no bytes for this long = broken connection) and BUILDER_UPLOAD_CHUNK_SIZE
 * (blobs larger than this are uploaded in PATCH chunks of this size).
 */
function retryOptions(flags: RegistryFlags, env: NodeJS.ProcessEnv): Partial<RegistryClientOptions> {
  const push = count(flags.pushRetry, '--push-retry');
  const pull = count(flags.imageDownloadRetry, '--image-download-retry');
  const base = envMs(env, 'BUILDER_RETRY_BASE_MS');
  const max = envMs(env, 'BUILDER_RETRY_MAX_MS');
  const ra = envMs(env, 'BUILDER_RETRY_AFTER_MAX_MS');
  const stall = envMs(env, 'BUILDER_REGISTRY_STALL_TIMEOUT_MS');
  const chunk = envMs(env, 'BUILDER_UPLOAD_CHUNK_SIZE');
  return {
    ...(push !== undefined ? { pushRetries: push } : {}),
    ...(pull !== undefined ? { downloadRetries: pull } : {}),
    ...(base !== undefined ? { retryBaseMs: base } : {}),
    ...(max !== undefined ? { retryMaxMs: max } : {}),
    ...(ra !== undefined ? { retryAfterMaxMs: ra } : {}),
    ...(stall ? { stallTimeoutMs: stall } : {}),
    ...(chunk ? { chunkedThreshold: chunk, chunkSize: chunk } : {}),
  };
}

/** Translates parsed flags + the process environment into client options (credentials from env and home). */
export function registryOptions(flags: RegistryFlags, env: CliEnv): RegistryClientOptions {
  const certs: Record<string, string> = {};
  for (const spec of flags.registryCertificate ?? []) {
    const eq = spec.indexOf('=');
    if (eq <= 0 || eq === spec.length - 1) {
      throw new BuilderError('FLAG_INVALID', `--registry-certificate "${spec}" is not host=path`, { hint: 'e.g. --registry-certificate registry.example.com:5000=/certs/ca.crt' });
    }
    certs[spec.slice(0, eq)] = spec.slice(eq + 1);
  }
  return {
    insecure: flags.insecure === true,
    insecureRegistries: flags.insecureRegistry ?? [],
    skipTlsVerify: flags.skipTlsVerify === true,
    skipTlsVerifyRegistries: flags.skipTlsVerifyRegistry ?? [],
    registryCertificates: certs,
    platform: platformFromFlags(flags),
    credentials: credentialProvider({ env: env.env, homeDir: env.env.HOME ?? homedir() }),
    ...retryOptions(flags, env.env),
    ...(env.signal ? { signal: env.signal } : {}),
    ...(flags.verbose ? { logger: (line: string) => void env.stderr.write(`builder: ${line}\n`) } : {}),
    // retries are worth seeing without -v: they explain a slow push on a flaky network
    onRetry: (line: string) => void env.stderr.write(`builder: ${line}\n`),
  };
}
