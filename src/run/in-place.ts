// Owns the 'in-place' RUN mode (kaniko model: the build root is "/"), container detection and the mount points a snapshot must ignore.

import { BuilderError } from '../errors.js';
import { keepCopies, putBack } from './in-place-guard.js';
import {
  checkUser,
  describeArgv,
  envObject,
  groupList,
  spawnStreaming,
  stepEnv,
  type Kill,
  type OutputStream,
  type RunResult,
  type RunUser,
  type SpawnOutcome,
} from './common.js';

/** Paths an in-place snapshot always ignores, besides mountPointsToIgnore() and the builder's own directory. */
export const IN_PLACE_IGNORED_PATHS: readonly string[] = ['/proc', '/sys', '/dev', '/var/run', '/run'];

/** Written by `npm run executor-image`: builder's own image, where `--run-mode auto` may run in place. */
export const EXECUTOR_IMAGE_MARKER = '/builder/executor-image.json';

/** The marker's content: the image's own paths an in-place build must never wipe or snapshot. */
export async function readExecutorImageMarker(read: (p: string) => Promise<string | undefined>): Promise<{ keep: string[] } | undefined> {
  const text = await read(EXECUTOR_IMAGE_MARKER);
  if (text === undefined) return undefined;
  try {
    const j = JSON.parse(text) as { keep?: unknown };
    return { keep: Array.isArray(j.keep) ? j.keep.filter((p): p is string => typeof p === 'string' && p.startsWith('/')) : [] };
  } catch {
    return { keep: [] };
  }
}

export interface InPlaceOptions {
  argv: string[];
  env: string[];
  /** "K=V" entries added to the step's environment (winning over env), never put in any command line. */
  secretEnv?: string[];
  user: RunUser;
  cwd: string;
  onOutput?: (chunk: Buffer, stream: OutputStream) => void;
  signal?: AbortSignal;
  /** Sends signals (the caller's Host.kill): the step's process group is killed when it ends, all of it on abort. */
  kill: Kill;
  /** builder-run (src/run/in-place-guard.ts): the step runs through it, fenced off from builder (Landlock, own session). */
  launcher?: string;
  /** Credential files builder read: taken out of "/" for the step and put back byte for byte after it (launcher only). */
  hide?: readonly string[];
  /** Files builder put in "/" for the step (secrets): the launcher removes them if builder dies mid-step. */
  orphanUnlink?: readonly string[];
  /** Without a launcher: told the step's pid when it starts and undefined when it ended (the lock records it). */
  onStep?: (pid: number | undefined) => void;
}

/** The builder's own credentials (the caller's Host's ids): this module reads no process state. */
export interface Credentials {
  uid: number;
  gid: number;
  groups: number[];
}

// Runs under `node -e` as the step's parent when supplementary groups must be set: Node's spawn()
// can set uid/gid but always clears supplementary groups, while process.setgroups() can set them
// and a child spawned afterwards inherits them. The payload arrives as argv[1], the env stays empty
// so NODE_OPTIONS & co. from the Dockerfile never reach this helper. The payload (the step's env, secrets with env=
// among it) comes in the helper's environment, not its argv: /proc/PID/cmdline is readable by every user, environ not.
const CREDENTIAL_HELPER = `
const p = JSON.parse(process.env.BUILDER_RUN_PAYLOAD);
process.setgroups(p.groups); process.setgid(p.gid); process.setuid(p.uid);
const c = require('node:child_process').spawn(p.argv[0], p.argv.slice(1), { env: p.env, cwd: p.cwd, stdio: 'inherit' });
const fwd = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'];
for (const s of fwd) process.on(s, () => c.kill(s));
c.on('error', (e) => {
  process.stderr.write(e.code === 'ENOENT' ? 'builder: ' + p.argv[0] + ': command not found\\n' : 'builder: cannot execute ' + p.argv[0] + ': ' + e.message + '\\n');
  process.exit(e.code === 'ENOENT' ? 127 : 126);
});
c.on('exit', (code, sig) => {
  if (!sig) process.exit(code ?? 1);
  for (const s of fwd) process.removeAllListeners(s);
  process.kill(process.pid, sig);
  setTimeout(() => process.exit(128 + (require('node:os').constants.signals[sig] ?? 0)), 100);
});
`;

/** How the step's credentials are applied: inherit ours, spawn uid/gid, or the node helper for groups. */
export function credentialStrategy(current: Credentials, user: RunUser): 'inherit' | 'spawn-ids' | 'helper' {
  const want = groupList(user);
  const have = [current.gid, ...current.groups.filter((g) => g !== current.gid)];
  const sameGroups = want.length === have.length && want.every((g) => have.includes(g));
  if (current.uid === user.uid && current.gid === user.gid && sameGroups) return 'inherit';
  // spawn() with uid/gid leaves exactly [gid] as groups, which is right when there are no others.
  return want.length === 1 ? 'spawn-ids' : 'helper';
}

/**
 * Runs argv directly in this machine's "/" (the builder must itself be the build container).
 * `nodePath` is the node binary for the credential helper (the caller's Host.execPath).
 */
export async function runInPlace(opts: InPlaceOptions, current: Credentials, nodePath: string): Promise<RunResult> {
  const what = describeArgv(opts.argv);
  if (opts.argv.length === 0) {
    throw new BuilderError('RUN_ARGV_EMPTY', 'RUN has no command', { hint: 'Give RUN a command.' });
  }
  if (!opts.cwd.startsWith('/')) {
    throw new BuilderError('RUN_CWD_INVALID', `working directory "${opts.cwd}" for RUN ${what} is not absolute`, {
      hint: 'WORKDIR must resolve to an absolute path.',
    });
  }
  checkUser(opts.user, what);
  const env = { ...envObject(stepEnv(opts.env, opts.user.home, what)), ...envObject(opts.secretEnv ?? []) };
  const strategy = credentialStrategy(current, opts.user);
  if (strategy !== 'inherit' && current.uid !== 0) {
    throw new BuilderError(
      'RUN_USER_SWITCH_DENIED',
      `RUN ${what} should run as ${opts.user.uid}:${opts.user.gid} but the builder runs as uid ${current.uid}`,
      { hint: 'Run the builder as root in its container to honour USER in in-place mode.' },
    );
  }
  const common = {
    what,
    kill: opts.kill,
    ...(opts.onOutput ? { onOutput: opts.onOutput } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  };
  // Without builder-run nothing kills a step if builder is SIGKILLed: its pid goes on record for the next build.
  const recorded = opts.launcher || !opts.onStep ? {} : { onSpawn: opts.onStep };
  const out = opts.launcher
    ? await launch(opts, opts.launcher, strategy === 'inherit' ? undefined : opts.user, env, common)
    : strategy === 'helper'
      ? await spawnStreaming({
          ...common,
          ...recorded,
          file: nodePath,
          args: ['-e', CREDENTIAL_HELPER],
          env: { BUILDER_RUN_PAYLOAD: JSON.stringify({ ...opts.user, groups: groupList(opts.user), argv: opts.argv, env, cwd: opts.cwd }) },
          cwd: '/',
        })
      : await spawnStreaming({
          ...common,
          ...recorded,
          file: opts.argv[0]!,
          args: opts.argv.slice(1),
          env,
          cwd: opts.cwd,
          ...(strategy === 'spawn-ids' ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
        });
  if (!opts.launcher) opts.onStep?.(undefined);
  if (out.spawnError) {
    if (opts.launcher) {
      throw new BuilderError('RUN_SPAWN_FAILED', `cannot start ${opts.launcher} for RUN ${what}: ${out.spawnError.message}`, {
        hint: 'builder-run ships beside node in the executor image; rebuild the image (npm run executor-image)',
        cause: out.spawnError,
      });
    }
    const code = out.spawnError.code;
    if (code !== 'ENOENT' && code !== 'EACCES') {
      throw new BuilderError('RUN_SPAWN_FAILED', `cannot start RUN ${what}: ${out.spawnError.message}`, {
        hint: 'Check the working directory exists and the user may enter it.',
        cause: out.spawnError,
      });
    }
    // Same text and codes a shell would give, so build logs read the same in both modes.
    const msg = code === 'ENOENT' ? `builder: ${opts.argv[0]}: command not found\n` : `builder: ${opts.argv[0]}: permission denied\n`;
    opts.onOutput?.(Buffer.from(msg), 'stderr');
  }
  return out.signal ? { exitCode: out.exitCode, signal: out.signal } : { exitCode: out.exitCode };
}

/** Runs the step through builder-run; builder keeps its own copy of the hidden files and checks they came back. */
async function launch(
  opts: InPlaceOptions, launcher: string, user: RunUser | undefined, env: Record<string, string>,
  common: { what: string; kill: Kill; onOutput?: (chunk: Buffer, stream: OutputStream) => void; signal?: AbortSignal },
): Promise<SpawnOutcome> {
  const ids = user ? ['--uid', String(user.uid), '--gid', String(user.gid), '--groups', groupList(user).join(',')] : [];
  const hide = opts.hide ?? [];
  const copies = await keepCopies(hide);
  try {
    return await spawnStreaming({
      ...common,
      file: launcher,
      args: [...ids, '--cwd', opts.cwd, ...hide.flatMap((p) => ['--hide', p]), ...(opts.orphanUnlink ?? []).flatMap((p) => ['--orphan-unlink', p]), '--', ...opts.argv],
      env,
      cwd: '/',
      abortByTerm: true,
    });
  } finally {
    for (const p of await putBack(copies)) opts.onOutput?.(Buffer.from(`builder: ${p} was not back after the step: restored from builder's copy\n`), 'stderr');
  }
}

/**
 * True when this process looks like it runs inside a container (Docker, Podman, containerd,
 * Kubernetes), the only place in-place mode may rewrite "/".
 */
export async function detectContainer(
  readFile: (path: string) => Promise<string | undefined>,
  env: Record<string, string | undefined> = {},
): Promise<boolean> {
  if (env.KUBERNETES_SERVICE_HOST) return true;
  if (env.container) return true; // set by podman, systemd-nspawn, LXC for PID 1 and inherited
  const [dockerenv, containerenv, cgroup] = await Promise.all([
    readFile('/.dockerenv'),
    readFile('/run/.containerenv'),
    readFile('/proc/1/cgroup'),
  ]);
  if (dockerenv !== undefined || containerenv !== undefined) return true;
  return cgroup !== undefined && /docker|kubepods|containerd|libpod|crio|lxc|buildkit/.test(cgroup);
}

/** Undoes the kernel's octal escapes in mountinfo fields ("\040" space, "\011" tab, "\012" newline, "\134" backslash). */
export function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * Mount points from /proc/self/mountinfo text, "/" excluded, sorted and unique: an in-place
 * snapshot must not descend into them (secrets, the workspace, the builder's own volume).
 */
export function mountPointsToIgnore(mountinfoText: string): string[] {
  const out = new Set<string>();
  for (const line of mountinfoText.split('\n')) {
    const fields = line.trim().split(' ');
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    if (fields.length < 5 || !/^\d+$/.test(fields[0] ?? '')) continue;
    const mp = unescapeMountPath(fields[4] ?? '');
    if (mp.startsWith('/') && mp !== '/') out.add(mp.length > 1 ? mp.replace(/\/+$/, '') : mp);
  }
  return [...out].sort();
}
