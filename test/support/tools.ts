// Test harness: thin wrappers around external tools (skopeo, umoci, any command) with TestRegistry-aware flags.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { TestRegistry } from './registry.js';

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string | Buffer;
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a command; rejects with the command line, exit status, stdout and stderr when it fails. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 120_000,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    child.once('error', (e) => reject(new Error(`${cmd}: ${e.message}`, { cause: e })));
    child.once('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) return resolve({ stdout, stderr });
      reject(new RunError(`${[cmd, ...args].join(' ')} failed (${signal ?? `exit ${code}`})\nstdout:\n${stdout}\nstderr:\n${stderr}`, code, stdout, stderr));
    });
  });
}

/** A failed command, with its output kept apart so tests can match on stderr. */
export class RunError extends Error {
  constructor(message: string, readonly exitCode: number | null, readonly stdout: string, readonly stderr: string) {
    super(message);
    this.name = 'RunError';
  }
}

/** How to reach a registry, per side of a copy; every field overrides what the TestRegistry implies. */
export interface RegistryAccess {
  reg: TestRegistry;
  /** "user:pass"; false = anonymous. Default: reg's credentials when it has auth, else anonymous. */
  creds?: string | false;
  /** Default: true with TLS (using reg.certDir), false for plain HTTP. */
  tlsVerify?: boolean;
  /** Default: reg.certDir when TLS; false = pass none. */
  certDir?: string | false;
}

/** skopeo flags for one side ('' for inspect, 'src-' or 'dest-' for copy). */
export function skopeoFlags(a: RegistryAccess, side: '' | 'src-' | 'dest-'): string[] {
  const flags: string[] = [];
  const tlsVerify = a.tlsVerify ?? a.reg.tls;
  flags.push(`--${side}tls-verify=${tlsVerify}`);
  const certDir = a.certDir ?? a.reg.certDir ?? false;
  if (certDir !== false) flags.push(`--${side}cert-dir`, certDir);
  const creds = a.creds ?? (a.reg.mode === 'htpasswd' || a.reg.mode === 'token' ? `${a.reg.username}:${a.reg.password}` : false);
  // --no-creds keeps any auth.json on the host out of the picture.
  flags.push(...(creds === false ? [`--${side}no-creds`] : [`--${side}creds`, creds]));
  return flags;
}

export interface InspectOptions extends Omit<RegistryAccess, 'reg'> {
  /** The manifest (or config with `config`) exactly as stored. */
  raw?: boolean;
  /** The image config instead of the manifest. */
  config?: boolean;
}

/** `skopeo inspect docker://HOST/ref`; returns the parsed JSON. `ref` is "repo:tag" or "repo@sha256:..". */
export async function skopeoInspect(reg: TestRegistry, ref: string, opts: InspectOptions = {}): Promise<any> {
  const args = ['inspect', ...skopeoFlags({ reg, ...opts }, '')];
  if (opts.raw) args.push('--raw');
  if (opts.config) args.push('--config');
  args.push(`docker://${reg.host}/${ref}`);
  const { stdout } = await run('skopeo', args);
  return JSON.parse(stdout);
}

export interface CopyOptions {
  /** Registry for whichever side is docker:// (both sides if both are and no src/dest is given). */
  reg?: TestRegistry | RegistryAccess;
  src?: TestRegistry | RegistryAccess;
  dest?: TestRegistry | RegistryAccess;
  format?: 'oci' | 'v2s2';
  /** Copy every image of an index (`--all`). */
  all?: boolean;
  extraArgs?: string[];
}

function access(x: TestRegistry | RegistryAccess): RegistryAccess {
  return 'reg' in x ? x : { reg: x };
}

/** `skopeo copy SRC DST` with transports as skopeo spells them: oci:/dir:tag, docker://host/repo:tag, docker-archive:/x.tar. */
export async function skopeoCopy(src: string, dst: string, opts: CopyOptions = {}): Promise<RunResult> {
  const args = ['copy', '--quiet'];
  const srcReg = opts.src ?? opts.reg;
  const dstReg = opts.dest ?? opts.reg;
  if (src.startsWith('docker://') && srcReg) args.push(...skopeoFlags(access(srcReg), 'src-'));
  if (dst.startsWith('docker://') && dstReg) args.push(...skopeoFlags(access(dstReg), 'dest-'));
  if (opts.format) args.push('--format', opts.format);
  if (opts.all) args.push('--all');
  args.push(...(opts.extraArgs ?? []), src, dst);
  return run('skopeo', args);
}

/** `umoci unpack` of layout:tag into bundleDir (rootfs at bundleDir/rootfs); --rootless only when not root. */
export async function umociUnpack(layoutDir: string, tag: string, bundleDir: string): Promise<string> {
  await run('umoci', ['unpack', ...umociRootless(), '--image', `${layoutDir}:${tag}`, bundleDir]);
  return `${bundleDir}/rootfs`;
}

/** Flags every umoci command that writes files needs when not running as root. */
export function umociRootless(): string[] {
  return typeof process.getuid === 'function' && process.getuid() !== 0 ? ['--rootless'] : [];
}

/** Lazily unmounts every mount below dir, deepest first (buildah can leave chroot binds and storage mounts behind). */
export async function unmountBelow(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')
    .map((l) => l.split(' ')[4]).filter((m): m is string => !!m && m.startsWith(dir)).sort().reverse();
  for (const m of mounts) await run('umount', ['-l', m]).catch(() => undefined);
}
