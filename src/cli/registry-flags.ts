// Shared registry and logging flags (kaniko names) and their translation to RegistryClientOptions and a Logger.
import { homedir } from 'node:os';
import type { Command } from 'commander';
import { BuilderError } from '../errors.js';
import { parsePlatform, platformFromNode, type Platform } from '../image/index.js';
import { credentialProvider, type RegistryClientOptions } from '../registry/index.js';
import type { CliEnv } from './env.js';
import { collect, parseBool } from './flag-values.js';
import { createLogger, parseLevel, parseLogFormat, type Logger } from './logger.js';
import { progressReporter } from './progress.js';

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
    .option('-v, --verbosity <level>', 'log level: trace (also every registry request), debug, info (default), warn, error, fatal, panic')
    .option('--log-format <text|color|json>', 'log lines as text (default), text with colored levels, or one JSON object per line (level, msg, time, fields)');
  bool(cmd, '--log-timestamp', 'start each text log line with the time');
  return cmd.option('--verbose', 'log every registry request (same as --verbosity=trace)');
}

/** The platform for --custom-platform, else this host's. */
export function platformFromFlags(flags: RegistryFlags): Platform {
  return flags.customPlatform ? parsePlatform(flags.customPlatform) : platformFromNode(process.arch);
}

/** The command's log stream on stderr (stdout is for what a script captures). */
export function loggerFromFlags(flags: RegistryFlags, env: CliEnv): Logger {
  const level = flags.verbose && !flags.verbosity ? 'trace' : parseLevel(flags.verbosity);
  const logger = createLogger({ format: parseLogFormat(flags.logFormat), level, timestamp: flags.logTimestamp === true, stream: env.stderr });
  env.logger = logger;
  return logger;
}

function hostEquals(spec: string, flag: string, example: string): [string, string] {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new BuilderError('FLAG_INVALID', `${flag} "${spec}" is not ${example.split(' ')[0]}`, { hint: `e.g. ${flag} ${example.split(' ')[1]}` });
  return [spec.slice(0, eq), spec.slice(eq + 1)];
}

/** BUILDER_PROGRESS_INTERVAL_MS: how often progress lines come (default 5000; tests use short ones). */
function progressInterval(env: CliEnv): number {
  const v = Number(env.env.BUILDER_PROGRESS_INTERVAL_MS);
  return Number.isInteger(v) && v > 0 ? v : 5000;
}

/** Translates parsed flags + the process environment into client options (credentials from env and home). */
export function registryOptions(flags: RegistryFlags, env: CliEnv, logger?: Logger): RegistryClientOptions {
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
    ...(Object.keys(clientCerts).length > 0 ? { clientCertificates: clientCerts } : {}),
    platform: platformFromFlags(flags),
    credentials: credentialProvider({ env: env.env, homeDir: env.env.HOME ?? homedir() }),
    onWarning: (line: string) => log.log('warn', line),
    ...(log.enabled('info') ? { onProgress: progressReporter(log, { intervalMs: progressInterval(env) }) } : {}),
    ...(log.enabled('trace') ? { logger: (line: string) => log.log('trace', line) } : {}),
  };
}
