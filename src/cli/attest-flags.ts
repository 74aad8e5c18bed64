// --sbom, --provenance[=min|max], --sign-key FILE|env://NAME: read and checked before the build starts (fail fast).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import type { Command } from 'commander';
import { BuilderError } from '../errors.js';
import { parsePublicKey, parseSigningKey } from '../attest/index.js';
import type { AttestRequest } from '../executor/index.js';
import type { CliEnv } from './env.js';
import { isCredentialName } from './environ.js';
import { parseBool } from './flag-values.js';

export interface AttestFlags {
  sbom?: boolean;
  provenance?: string | boolean;
  signKey?: string;
}

export function addAttestFlags(cmd: Command): Command {
  return cmd
    .option('--sbom [bool]', 'attach an SPDX 2.3 SBOM (in-toto statement) of the image\'s packages (dpkg, apk, npm, Python, Go binaries) as an OCI referrer', parseBool)
    .option('--provenance [mode]', 'attach SLSA v1 provenance as an OCI referrer: min (default with the bare flag) or max (adds build args and the context digest); off by default')
    .option('--sign-key <file|env://NAME>', 'sign the pushed digest with this PEM ECDSA P-256 private key (cosign-compatible: .sig tag and a referrer)');
}

/** The text a key flag names: a file, or the variable NAME of env://NAME (a masked CI variable). */
export function readKeySpec(spec: string, env: CliEnv, flag: string): { text: string; where: string } {
  if (spec.startsWith('env://')) {
    const name = spec.slice('env://'.length);
    const text = env.env[name];
    if (!name || text === undefined || text === '') {
      throw new BuilderError('SIGN_KEY_UNREADABLE', `${flag} ${spec}: the environment variable ${name || '(none)'} is not set`, {
        hint: 'define it (a masked, protected CI/CD variable), or give a file path',
      });
    }
    return { text, where: `${flag} ${spec}` };
  }
  const file = path.resolve(env.cwd, spec);
  try {
    return { text: readFileSync(file, 'utf8'), where: `${flag} ${file}` };
  } catch (err) {
    throw new BuilderError('SIGN_KEY_UNREADABLE', `${flag} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, {
      hint: 'check the path and its permissions, or pass the key through a variable: env://NAME', cause: err,
    });
  }
}

export function readPublicKey(spec: string, env: CliEnv): KeyObject {
  const { text, where } = readKeySpec(spec, env, '--key');
  return parsePublicKey(text, where);
}

function provenanceMode(v: string | boolean | undefined): 'min' | 'max' | undefined {
  if (v === undefined || v === false) return undefined;
  const s = v === true ? 'min' : v.replace(/^mode=/, '');
  if (s === 'min' || s === 'true' || s === '1') return 'min';
  if (s === 'max') return 'max';
  if (s === 'false' || s === '0') return undefined;
  throw new BuilderError('FLAG_INVALID', `--provenance=${v} is not min or max`, { hint: 'write --provenance (min), --provenance=max or --provenance=mode=max' });
}

/** What the build attaches, or undefined when none of the flags is given. */
export function attestRequest(flags: AttestFlags, env: CliEnv, version: string): AttestRequest | undefined {
  const provenance = provenanceMode(flags.provenance);
  const signKey = flags.signKey !== undefined ? (() => {
    const { text, where } = readKeySpec(flags.signKey, env, '--sign-key');
    return parseSigningKey(text, where);
  })() : undefined;
  if (flags.sbom !== true && provenance === undefined && signKey === undefined) return undefined;
  const e = env.env;
  const bare = version.split(' ')[1] ?? 'unknown'; // "builder 0.1.0 (node ...)" -> "0.1.0"
  const ci: Record<string, string | undefined> = Object.fromEntries(Object.entries(e).filter(([k]) => k === 'GITLAB_CI' || k.startsWith('CI_')).filter(([k]) => !isCredentialName(k)));
  // GitLab's own SLSA provenance names the runner as the builder
  const builderId = e.CI_SERVER_URL && e.CI_PROJECT_PATH && e.CI_RUNNER_ID
    ? `${e.CI_SERVER_URL}/${e.CI_PROJECT_PATH}/-/runners/${e.CI_RUNNER_ID}`
    : `pkg:npm/daemonless-builder@${bare}`;
  return { sbom: flags.sbom === true, ...(provenance ? { provenance } : {}), ...(signKey ? { signKey } : {}), builderId, version: bare, ci };
}
