// Owns what both RUN modes share: the step's environment, spawning with live output, abort and exit-status mapping.

import { spawn, type StdioOptions } from 'node:child_process';
import { constants as fsConstants, readdirSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { constants as osConstants } from 'node:os';
import type { Readable } from 'node:stream';
import { BuilderError } from '../errors.js';
import type { Host } from '../util/host.js';
import { readProcStat, type ProcEntry } from '../util/proc.js';

/** Sends a signal: the caller's Host.kill (the library reads no process state). */
export type Kill = Host['kill'];

export type NetworkMode = 'default' | 'none' | 'host';
export type OutputStream = 'stdout' | 'stderr';

export interface RunUser {
  uid: number;
  gid: number;
  /** Supplementary groups; the primary gid is added by the runner. */
  groups: number[];
  /** Used for HOME when the env has none (resolveUser gives it). */
  home?: string;
}

export interface RunResult {
  /** The command's exit code; 128+n when it was killed by signal n (shell convention). */
  exitCode: number;
  signal?: string;
}

/** The PATH Docker/BuildKit give a step whose env has none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Where host helper tools (unshare, setpriv, mount) are looked for; never the container's PATH. */
export const HOST_TOOL_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The first executable `name` in HOST_TOOL_DIRS, or undefined. */
export async function findHostTool(name: string): Promise<string | undefined> {
  for (const dir of HOST_TOOL_DIRS) {
    const p = `${dir}/${name}`;
    try {
      await access(p, fsConstants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/**
 * The step's final environment: "K=V" entries validated, later duplicates win (in the first one's
 * position), PATH and HOME added when missing. Nothing from the builder's own environment.
 */
export function stepEnv(env: string[], home: string | undefined, argv0 = ''): string[] {
  const order: string[] = [];
  const values = new Map<string, string>();
  for (const kv of env) {
    const i = kv.indexOf('=');
    const key = i < 0 ? '' : kv.slice(0, i);
    if (key === '' || key.includes('\0') || kv.includes('\0')) {
      throw new BuilderError('RUN_ENV_INVALID', `invalid environment entry ${JSON.stringify(kv)} for RUN ${argv0}`.trim(), {
        hint: 'Environment entries must be KEY=VALUE with a non-empty KEY and no NUL bytes.',
      });
    }
    if (!values.has(key)) order.push(key);
    values.set(key, kv.slice(i + 1));
  }
  if (!values.has('PATH')) {
    order.push('PATH');
    values.set('PATH', DEFAULT_PATH);
  }
  if (!values.has('HOME')) {
    order.push('HOME');
    values.set('HOME', home ?? '/');
  }
  const out = order.map((k) => `${k}=${values.get(k) ?? ''}`);
  checkEnvSize(out, argv0);
  return out;
}

/**
 * execve's limits (128 KiB per string, about 2 MiB for argv and environment together), with room for the sandbox's
 * BUILDER_ENV_n names and its env -S string (one argument naming every entry): past them spawn fails with E2BIG.
 */
const ENV_LIMITS = { entries: 4096, entryBytes: 128 * 1024 - 64, bytes: 1536 * 1024 } as const;

function checkEnvSize(env: readonly string[], argv0: string): void {
  let bytes = 0;
  for (const kv of env) {
    const n = Buffer.byteLength(kv) + 1;
    bytes += n;
    if (n > ENV_LIMITS.entryBytes) {
      throw new BuilderError('RUN_ENV_TOO_LARGE', `environment variable ${kv.slice(0, Math.min(kv.indexOf('='), 64))} for RUN ${argv0} is ${n} bytes, more than exec accepts (${ENV_LIMITS.entryBytes})`.trim(), {
        hint: 'pass large values as a file (COPY, or RUN --mount=type=secret / bind) instead of ENV or ARG',
      });
    }
  }
  if (env.length > ENV_LIMITS.entries || bytes > ENV_LIMITS.bytes) {
    throw new BuilderError('RUN_ENV_TOO_LARGE', `the environment for RUN ${argv0} holds ${env.length} entries (${bytes} bytes), more than exec accepts (${ENV_LIMITS.entries} entries, ${ENV_LIMITS.bytes} bytes)`, {
      hint: 'drop ENV and ARG values the step does not need, or pass large values as files',
    });
  }
}

/** "K=V" list -> object for spawn. */
export function envObject(env: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of env) {
    const i = kv.indexOf('=');
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/** [gid, ...groups] without duplicates: what setgroups(2) gets, like initgroups(3) does. */
export function groupList(user: RunUser): number[] {
  const out = [user.gid];
  for (const g of user.groups) if (!out.includes(g)) out.push(g);
  return out;
}

export function checkUser(user: RunUser, argv0: string): void {
  for (const id of [user.uid, user.gid, ...user.groups]) {
    if (!Number.isInteger(id) || id < 0 || id > 0xfffffffe) {
      throw new BuilderError('RUN_USER_INVALID', `invalid uid/gid ${id} for RUN ${argv0}`, {
        hint: 'Resolve USER with resolveUser() before running the step.',
      });
    }
  }
}

export function signalNumber(name: string): number {
  return (osConstants.signals as Record<string, number>)[name] ?? 0;
}

export interface SpawnSpec {
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
  uid?: number;
  gid?: number;
  /** fd 0 is a pipe this process holds open and never writes (else /dev/null): its EOF tells the child we died. */
  holdStdin?: boolean;
  /** Extra pipe fds after stdio (fd 3...); their text is returned. */
  extraPipes?: number;
  /** What the user asked to run, for messages. */
  what: string;
  onOutput?: (chunk: Buffer, stream: OutputStream) => void;
  signal?: AbortSignal;
  /** How the step's process group is killed when it ends, and an aborted step's processes stopped and killed. */
  kill: Kill;
  /** On abort, SIGTERM the spawned process only and wait for it (its tree killed if still there after STOP_TIMEOUT_MS): a launcher that stops its own tree (builder-run). */
  abortByTerm?: boolean;
  /** Told the spawned pid (also its process group: it is detached), e.g. to record it for the next build. */
  onSpawn?: (pid: number) => void;
}

export interface SpawnOutcome extends RunResult {
  /** Text written to the extra pipes (fd 3...), e.g. the sandbox's setup errors. */
  extra: string[];
  /** spawn() itself failed (ENOENT/EACCES): the code. */
  spawnError?: NodeJS.ErrnoException;
}

/**
 * Spawns in its own process group (so an abort kills every descendant), stdin from /dev/null (or held, see holdStdin),
 * stdout/stderr streamed chunk by chunk to onOutput.
 */
export function spawnStreaming(spec: SpawnSpec): Promise<SpawnOutcome> {
  if (spec.signal?.aborted) return Promise.reject(aborted(spec.what));
  const kill = spec.kill;
  const stdio: StdioOptions = [spec.holdStdin ? 'pipe' : 'ignore', 'pipe', 'pipe'];
  for (let i = 0; i < (spec.extraPipes ?? 0); i++) stdio.push('pipe');
  return new Promise((resolve, reject) => {
    const child = spawn(spec.file, spec.args, {
      env: spec.env,
      cwd: spec.cwd,
      stdio,
      detached: true,
      ...(spec.uid === undefined ? {} : { uid: spec.uid }),
      ...(spec.gid === undefined ? {} : { gid: spec.gid }),
    });
    if (child.pid !== undefined) spec.onSpawn?.(child.pid);
    const extra: string[] = [];
    const pending: Promise<void>[] = [];
    const drain = (r: Readable | null, onChunk: (c: Buffer) => void): void => {
      if (!r) return;
      pending.push(
        new Promise<void>((done) => {
          r.on('data', onChunk);
          r.on('end', done);
          r.on('error', () => done());
          r.on('close', done);
        }),
      );
    };
    child.stdin?.on('error', () => undefined); // never written: only its EOF matters, to the child
    drain(child.stdout, (c) => spec.onOutput?.(c, 'stdout'));
    drain(child.stderr, (c) => spec.onOutput?.(c, 'stderr'));
    for (let i = 0; i < (spec.extraPipes ?? 0); i++) {
      extra.push('');
      drain(child.stdio[3 + i] as Readable | null, (c) => {
        extra[i] += c.toString('utf8');
      });
    }
    let wasAborted = false;
    let stopped: Promise<void> = Promise.resolve();
    const onAbort = (): void => {
      wasAborted = true;
      // exitCode/signalCode still null: not reaped yet, so child.pid (and its process group id) cannot have been reused.
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      if (spec.abortByTerm) {
        const pid = child.pid;
        stopped = new Promise((done) => {
          // A launcher that does not end on SIGTERM in time is killed like any step, so the build never hangs on it.
          const late = setTimeout(() => void waitGone(killProcessTree(pid, kill), STOP_TIMEOUT_MS).then(done), STOP_TIMEOUT_MS);
          child.once('exit', () => {
            clearTimeout(late);
            done();
          });
        });
        return void signal(kill, pid, 'SIGTERM');
      }
      stopped = waitGone(killProcessTree(child.pid, kill), STOP_TIMEOUT_MS);
    };
    spec.signal?.addEventListener('abort', onAbort, { once: true });
    const stopReading = (): void => child.stdio.forEach((s) => s?.destroy());
    child.on('exit', () => {
      // A killed step's escaped descendant (in place: no PID namespace) may still hold a pipe: never wait on it.
      if (wasAborted) return void stopped.then(stopReading);
      // As a container ends with its command, so does what the step left running in its process group (the sandbox's
      // PID namespace already went with its init); the pgid cannot be reused while a member lives.
      if (child.pid !== undefined) signal(kill, -child.pid, 'SIGKILL');
      // A daemon that left the group may still hold the pipes: let the output drain, then stop waiting for it.
      setTimeout(stopReading, PIPE_GRACE_MS).unref();
    });
    let settled = false;
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      spec.signal?.removeEventListener('abort', onAbort);
      resolve({ exitCode: err.code === 'ENOENT' ? 127 : 126, extra, spawnError: err });
    });
    child.on('close', (code, sig) => {
      if (settled) return;
      settled = true;
      spec.signal?.removeEventListener('abort', onAbort);
      void Promise.all([...pending, stopped]).then(() => {
        if (wasAborted) return reject(aborted(spec.what));
        if (sig) return resolve({ exitCode: 128 + signalNumber(sig), signal: sig, extra });
        resolve({ exitCode: code ?? 1, extra });
      });
    });
  });
}

/** How long an aborted step's killed processes get to disappear before cleanup goes on regardless. */
const STOP_TIMEOUT_MS = 10_000;
/** How long after a step exits its output pipes may stay open (held by something it left running). */
const PIPE_GRACE_MS = 2_000;

function processTable(): ProcEntry[] {
  const out: ProcEntry[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const e = readProcStat(name);
    if (e) out.push(e);
  }
  return out;
}

function signal(kill: Kill, pid: number, sig: NodeJS.Signals): void {
  try {
    kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/**
 * Stops and kills a step: its process group and every descendant of `rootPid`, including those that left the
 * group with setsid. Each round SIGSTOPs what it finds (a stopped process cannot fork) until a scan finds nothing
 * new, then everything gets SIGKILL. In the sandbox the descendants include the PID namespace's init, whose
 * death kills the whole namespace. Returns what was killed, for waitGone().
 */
export function killProcessTree(rootPid: number, kill: Kill, opts: { spareRoot?: boolean; spareNamed?: string } = {}): ProcEntry[] {
  const found = new Map<number, ProcEntry>();
  const root = readProcStat(rootPid);
  if (root) found.set(rootPid, root);
  // A spared launcher (builder-run) outlives builder on purpose: it stops its step and puts hidden files back itself.
  const spare = (pid: number): boolean => (opts.spareRoot === true && pid === rootPid) || (opts.spareNamed !== undefined && found.get(pid)?.comm === opts.spareNamed);
  for (let round = 0; round < 100; round++) {
    let fresh = 0;
    const table = processTable();
    const children = new Map<number, ProcEntry[]>();
    for (const e of table) {
      const list = children.get(e.ppid);
      if (list) list.push(e);
      else children.set(e.ppid, [e]);
    }
    const queue = [...found.values(), ...table.filter((e) => e.pgrp === rootPid)];
    while (queue.length > 0) {
      const e = queue.pop()!;
      if (!found.has(e.pid) || found.get(e.pid)!.start !== e.start) {
        found.set(e.pid, e);
        fresh++;
      }
      if (!spare(e.pid)) signal(kill, e.pid, 'SIGSTOP');
      for (const c of children.get(e.pid) ?? []) if (!found.has(c.pid)) queue.push(c);
    }
    if (fresh === 0 && round > 0) break;
  }
  for (const e of found.values()) if (!spare(e.pid)) signal(kill, e.pid, 'SIGKILL');
  if (!opts.spareRoot) signal(kill, -rootPid, 'SIGKILL');
  return [...found.values()].filter((e) => !spare(e.pid));
}

/** Resolves when none of the processes lives any more (gone, a zombie, or its pid reused), or after timeoutMs. */
export async function waitGone(procs: ProcEntry[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let left = procs;
  while (left.length > 0 && Date.now() < deadline) {
    left = left.filter((p) => {
      const now = readProcStat(p.pid);
      return now !== undefined && now.start === p.start && now.state !== 'Z' && now.state !== 'X';
    });
    if (left.length > 0) await sleep(20);
  }
}

export function aborted(what: string): BuilderError {
  return new BuilderError('RUN_ABORTED', `RUN ${what} was aborted`, {
    hint: 'The build was cancelled; rerun it to finish.',
    exitCode: 130,
  });
}

/** Short, quoted rendering of argv for messages. */
export function describeArgv(argv: string[]): string {
  const s = argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  return s.length > 200 ? `${s.slice(0, 197)}...` : s;
}
