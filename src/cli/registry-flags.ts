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
    .option('-v, --verbose', 'log registry requests to stderr');
}

/** The platform for --custom-platform, else this host's. */
export function platformFromFlags(flags: RegistryFlags): Platform {
  return flags.customPlatform ? parsePlatform(flags.customPlatform) : platformFromNode(process.arch);
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
    ...(env.signal ? { signal: env.signal } : {}),
    ...(flags.verbose ? { logger: (line: string) => void env.stderr.write(`builder: ${line}\n`) } : {}),
  };
}
