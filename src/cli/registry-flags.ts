// Shared registry and logging flags (kaniko names) and their translation to RegistryClientOptions and a Logger.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { homedir } from 'node:os';
import type { Command } from 'commander';
import { BuilderError } from '../errors.js';
import { parsePlatform, platformFromNode, type Platform } from '../image/index.js';
import { credentialProvider, ExtraCa, type RegistryClientOptions } from '../registry/index.js';
import { EXECUTOR_IMAGE_MARKER } from '../run/index.js';
import type { EventSink } from '../util/events.js';
import type { CliEnv } from './env.js';
import { collect, parseBool } from './flag-values.js';
import { createLogger, parseLevel, parseLogFormat, type Logger } from './logger.js';
import { createRenderer, logLines, type Renderer } from './render.js';

export interface RegistryFlags {
  insecure?: boolean;
  insecureRegistry?: string[];
  skipTlsVerify?: boolean;
  skipTlsVerifyRegistry?: string[];
  registryCertificate?: string[];
  registryClientCert?: string[];
  customPlatform?: string;
  verbose?: boolean;
  verbosity?: string;
  logFormat?: string;
  logTimestamp?: boolean;
  pushRetry?: string;
  imageDownloadRetry?: string;
}

/**
 * Adds the registry flags to a command (each command gets its own copy, so flags go after the subcommand). pflagBools
 * (build: no positional arguments) lets booleans take kaniko's `--flag=false`; elsewhere a boolean never takes a
 * value, so `builder copy --insecure SRC DST` cannot read SRC as its value.
 */
export function addRegistryFlags(cmd: Command, pflagBools = false): Command {
  const bool = (c: Command, flag: string, what: string): Command => (pflagBools ? c.option(`${flag} [bool]`, what, parseBool) : c.option(flag, what));
  bool(cmd, '--insecure', 'allow plain HTTP (and unverified TLS) for every registry');
  cmd.option('--insecure-registry <host>', 'allow plain HTTP (and unverified TLS) for this registry (repeatable)', collect);
  bool(cmd, '--skip-tls-verify', 'do not verify TLS certificates of any registry');
  cmd
    .option('--skip-tls-verify-registry <host>', 'do not verify TLS certificates of this registry (repeatable)', collect)
    .option('--registry-certificate <host=path>', 'trust the CA certificate at path for registry host (repeatable)', collect)
    .option('--registry-client-cert <host=cert,key>', 'client certificate and key (PEM files) for mutual TLS with registry host (repeatable)', collect)
    .option('--custom-platform <os/arch[/variant]>', 'platform to pick from multi-platform images (default: this host)')
    .option('--push-retry <n>', 'retries of each push request after a transient failure (connection, timeout, 408, 429, 5xx), and new upload sessions per blob (default 4; 0: none)')
    .option('--image-download-retry <n>', 'retries of each pull request, and Range resumes per blob download, after a transient failure (default 4; 0: none)')
    .option('-v, --verbosity <level>', 'log level: trace (also every registry request), debug, info (default), warn, error, fatal, panic')
    .option('--log-format <text|color|json>', 'log lines as text (default), text with colored levels, or one JSON object per line (level, msg, time, fields)');
  bool(cmd, '--log-timestamp', 'start each text log line with the time');
  return cmd.option('--verbose', 'log every registry request (same as --verbosity=trace)');
}

/** For commands that pick no image from an index by platform (verify, attestations): --custom-platform stays accepted (shared flag sets) but out of --help. */
export function hideCustomPlatform(cmd: Command): Command {
  cmd.options.find((o) => o.long === '--custom-platform')?.hideHelp();
  return cmd;
}

/** The platform for --custom-platform, else this host's. */
export function platformFromFlags(flags: RegistryFlags): Platform {
  return flags.customPlatform ? parsePlatform(flags.customPlatform) : platformFromNode(process.arch);
}

/** --platform (BuildKit's comma-separated list of target platforms), else --custom-platform or this host's, as a list. */
export function platformsFromFlags(flags: RegistryFlags & { platform?: string }): Platform[] {
  if (flags.platform === undefined) return [platformFromFlags(flags)];
  if (flags.customPlatform) {
    throw new BuilderError('FLAG_CONFLICT', '--platform and --custom-platform both name target platforms', {
      hint: 'use --platform a,b for several platforms (or one), --custom-platform for kaniko\'s one platform; not both',
    });
  }
  const list = flags.platform.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (list.length === 0) throw new BuilderError('PLATFORM_INVALID', '--platform is empty', { hint: 'e.g. --platform linux/amd64,linux/arm64' });
  return list.map(parsePlatform);
}

/** The command's log stream on stderr (stdout is for what a script captures). */
export function loggerFromFlags(flags: RegistryFlags, env: CliEnv): Logger {
  const level = flags.verbose && !flags.verbosity ? 'trace' : parseLevel(flags.verbosity);
  const logger = createLogger({ format: parseLogFormat(flags.logFormat), level, timestamp: flags.logTimestamp === true, stream: env.stderr });
  env.logger = logger;
  return logger;
}

/**
 * The command's renderer of events: live progress lines when the log goes to a terminal (not JSON, not TERM=dumb),
 * else a progress line every few seconds. Lines logged meanwhile (signals too) go through it.
 */
export function commandRenderer(flags: RegistryFlags, env: CliEnv): Renderer {
  const logger = loggerFromFlags(flags, env);
  const tty = (env.stderr as { isTTY?: boolean }).isTTY === true && logger.format !== 'json' && env.env.TERM !== 'dumb';
  const renderer = createRenderer(logger, { intervalMs: progressInterval(env), ...(tty ? { live: env.stderr } : {}) });
  env.logger = renderer.logger;
  return renderer;
}

function hostEquals(spec: string, flag: string, example: string): [string, string] {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new BuilderError('FLAG_INVALID', `${flag} "${spec}" is not ${example.split(' ')[0]}`, { hint: `e.g. ${flag} ${example.split(' ')[1]}` });
  return [spec.slice(0, eq), spec.slice(eq + 1)];
}

/** BUILDER_PROGRESS_INTERVAL_MS: how often progress lines come (default 5000; tests use short ones). */
export function progressInterval(env: CliEnv): number {
  const v = Number(env.env.BUILDER_PROGRESS_INTERVAL_MS);
  return Number.isInteger(v) && v > 0 ? v : 5000;
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

/** Where kaniko keeps it: a GitLab job copied from kaniko writes /kaniko/.docker/config.json. */
export const KANIKO_DOCKER_CONFIG = '/kaniko/.docker/config.json';

/** In the executor image, kaniko's config.json when DOCKER_CONFIG has none (so copied kaniko jobs log in unchanged), said once. */
function kanikoConfigFallback(env: CliEnv, log: Logger): { fallbackConfig?: string; onFallback?: (p: string) => void } {
  if (!existsSync(EXECUTOR_IMAGE_MARKER)) return {};
  return {
    fallbackConfig: KANIKO_DOCKER_CONFIG,
    onFallback: (p) => log.log('info', `registry credentials from ${p} (kaniko's place): ${env.env.DOCKER_CONFIG ?? '~/.docker'}/config.json does not exist`),
  };
}

/** Parsed flags + the environment as client options (credentials from env and home); its events to emit, else as the logger's lines. */
export function registryOptions(flags: RegistryFlags, env: CliEnv, logger?: Logger, emit?: EventSink): RegistryClientOptions {
  const certs: Record<string, string> = {};
  for (const spec of flags.registryCertificate ?? []) {
    const [host, file] = hostEquals(spec, '--registry-certificate', 'host=path registry.example.com:5000=/certs/ca.crt');
    certs[host] = file;
  }
  const clientCerts: Record<string, { cert: string; key: string }> = {};
  for (const spec of flags.registryClientCert ?? []) {
    const [host, files] = hostEquals(spec, '--registry-client-cert', 'host=cert,key registry.example.com=/certs/client.crt,/certs/client.key');
    const [cert, key, ...rest] = files.split(',');
    if (!cert || !key || rest.length > 0) {
      throw new BuilderError('FLAG_INVALID', `--registry-client-cert "${spec}" is not host=cert,key`, { hint: 'e.g. --registry-client-cert registry.example.com=/certs/client.crt,/certs/client.key' });
    }
    clientCerts[host] = { cert, key };
  }
  const log = logger ?? loggerFromFlags(flags, env);
  return {
    insecure: flags.insecure === true,
    insecureRegistries: flags.insecureRegistry ?? [],
    skipTlsVerify: flags.skipTlsVerify === true,
    skipTlsVerifyRegistries: flags.skipTlsVerifyRegistry ?? [],
    registryCertificates: certs,
    ...(env.env.NODE_EXTRA_CA_CERTS ? { extraCa: new ExtraCa(path.resolve(env.cwd, env.env.NODE_EXTRA_CA_CERTS)) } : {}),
    ...(Object.keys(clientCerts).length > 0 ? { clientCertificates: clientCerts } : {}),
    platform: platformFromFlags(flags),
    credentials: credentialProvider({ env: env.env, homeDir: env.env.HOME ?? homedir(), ...kanikoConfigFallback(env, log) }),
    ...retryOptions(flags, env.env),
    ...(env.signal ? { signal: env.signal } : {}),
    emit: emit ?? logLines(log),
  };
}
