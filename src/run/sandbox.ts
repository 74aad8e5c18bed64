// Owns the 'sandbox' RUN mode: a RUN step gets what a Docker container gets (docs/run.md): its own mount, pid,
// ipc, uts [net] namespaces, pivot_root into the build root (host root detached), Docker's 14 capabilities
// (bounding set too), no no_new_privs, read-only/masked /proc paths, nodev; /proc, /dev, /sys,
// resolv.conf and hosts exist only for the run. Set up by builder-sandbox (scripts/executor-image/builder-sandbox.c:
// one static process, the same per-run files) when `npm run build` compiled it, else by util-linux + coreutils:
//   sh stage 0 (forks the watcher that kills the step if the builder dies) -> unshare (namespaces) -> sh stage 1
//   (mounts, host tool view, pivot helper) -> nsenter --root=view -> sh stage 2 (pivot done, old root detached)
//   -> setpriv (gid, groups, caps) -> env -i -S (the step's env, from env's own environment) -> unshare --root=. --setuid
// The host tools after the pivot run from a read-only view of the host's /usr, /bin, /sbin, /lib* (mounted
// under the root's /dev or /proc and covered by the runtime mount there), never from the image.
//
// builder-sandbox: median ≈ 15 ms for the same run where the chain takes ≈ 45 (docs/run.md "Cost"). The chain,
// measured on the dev host (2 cores shared with other jobs, load ~10; `true`, 40 runs, whole runStep(),
// best of three rounds):
//   previous chain (unshare + chroot, all capabilities)   min ~30 ms, median ~50 ms
//   this chain (pivot_root, Docker caps, masks)           min ~43 ms, median ~73 ms
//   `unshare --mount --pid --fork true` alone             min ~3 ms,  median ~4 ms
// Most of it is process starts (17 exec'd per run, the command included: docs/run.md); it is still small next to
// a real RUN step and its snapshot.

import { execFile } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readlink, realpath, rmdir, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BuilderError } from '../errors.js';
import { RootFs } from '../rootfs/index.js';
import {
  findHostTool,
  HOST_TOOL_DIRS,
  checkUser,
  describeArgv,
  groupList,
  spawnStreaming,
  stepEnv,
  type Kill,
  type NetworkMode,
  type OutputStream,
  type RunResult,
  type RunUser,
  type SpawnOutcome,
} from './common.js';

declare const __BUILDER_VERSION__: string | undefined;

/**
 * Paths the sandbox mounts for the duration of a run. They vanish with the mount namespace, and
 * mount points missing from the root are created before and removed after the run, but the
 * snapshot must still exclude these paths (and everything under the directories) so a step can
 * never turn runtime state into a layer.
 */
export const runtimeMounts: readonly string[] = ['/proc', '/dev', '/sys', '/etc/resolv.conf', '/etc/hosts'];

export interface SandboxOptions {
  /** The build root; must be "/" in in-place mode. */
  root: string;
  argv: string[];
  /** "K=V" entries, exactly the step's environment (PATH and HOME added when missing). */
  env: string[];
  user: RunUser;
  /** Absolute path inside the root; must exist. */
  cwd: string;
  /** 'default' and 'host' share the host's network; 'none' gets only loopback (sandbox only). */
  network?: NetworkMode;
  onOutput?: (chunk: Buffer, stream: OutputStream) => void;
  signal?: AbortSignal;
  /** Sends signals (the caller's Host.kill): the step's process group is killed when it ends, all of it on abort. */
  kill: Kill;
  /** RUN --mount: mounted in the step's namespace only, after the runtime mounts, before the pivot. */
  mounts?: RunMount[];
  /**
   * "K=V" entries added to the step's environment (winning over `env`) that never appear in any command line: secrets
   * with env=. They travel in process environments only (readable by root and their owner, unlike /proc/PID/cmdline).
   */
  secretEnv?: string[];
  /**
   * A path for the per-run dir (created 0700, removed after the run); default a fresh builder-run-* in the OS temp dir.
   * The executor names one in its work dir, so what a killed build left is found and removed with that dir.
   */
  runtimeDir?: string;
}

/** One RUN --mount as the sandbox sees it: host sources are prepared by the executor (src/executor/steps/run-mounts.ts). */
export interface RunMount {
  /** Absolute container path. */
  target: string;
  type: 'bind' | 'tmpfs';
  /** bind: the host path (a directory or a file). */
  source?: string;
  readonly: boolean;
  /** tmpfs: size in bytes (0 or absent: the kernel's default). */
  size?: number;
  /** bind: the source is a per-run copy (or secret file) the run may consume; in place it is moved to the target. */
  owned?: boolean;
  /** bind: a cache; in place its content is moved to the target and what the step left there moved back after. */
  keep?: boolean;
}

export interface SandboxTools {
  unshare: string;
  setpriv: string;
  env: string;
  sh: string;
  mount: string;
  umount: string;
  nsenter: string;
  pivotRoot: string;
  mkfifo: string;
  cp: string;
  ip?: string;
  /** Runs stage 2 when present: it can close inherited descriptors above 9. */
  bash?: string;
}

/** builder-sandbox (scripts/executor-image/builder-sandbox.c): the whole chain in one static process. */
export interface SandboxHelper {
  helper: string;
}

interface MountPoint {
  /** Container path, e.g. "/etc/resolv.conf". */
  path: string;
  kind: 'dir' | 'file';
  /** Flag the setup script checks. */
  flag: string;
}

const MOUNT_POINTS: readonly MountPoint[] = [
  { path: '/proc', kind: 'dir', flag: 'proc' },
  { path: '/dev', kind: 'dir', flag: 'dev' },
  { path: '/sys', kind: 'dir', flag: 'sys' },
  { path: '/etc/resolv.conf', kind: 'file', flag: 'resolv' },
  { path: '/etc/hosts', kind: 'file', flag: 'hosts' },
];

/** Docker's default capability set (moby oci/caps/defaults.go); everything else leaves the bounding set. */
export const DOCKER_CAPS: readonly string[] = [
  'chown', 'dac_override', 'fsetid', 'fowner', 'mknod', 'net_raw', 'setgid', 'setuid',
  'setfcap', 'setpcap', 'net_bind_service', 'sys_chroot', 'kill', 'audit_write',
];

/** Top-level host entries the host tools need after the pivot (binaries, libraries, the loader). */
const HOST_VIEW_ENTRIES = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32', 'usr'];

// Stage 0, in the host's namespaces: ties the step to the builder's life, then becomes the outer unshare. A SIGKILL
// (or the OOM killer) of the builder closes its end of fd 0; the watcher forked here then SIGKILLs the step's pid 1
// (its death empties the PID namespace) and the unshare. PR_SET_PDEATHSIG alone cannot do it: setpriv --regid and
// unshare --setuid clear it on pid 1 for any non-root USER, and pid 1 must stay the step's command (as in Docker).
// The watcher only acts while the unshare it was forked for lives (pid and start time unchanged).
const WATCH_SCRIPT = `
U=$$
read -r _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ S _ < /proc/$U/stat
# fd 5: a background list's stdin is /dev/null in a shell without job control.
exec 5<&0
(
  exec 1>/dev/null 2>&1 3>&-
  read -r W _ < /proc/self/stat
  read -r _ <&5 && exit 0
  read -r _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ T _ < /proc/$U/stat && [ "$T" = "$S" ] || exit 0
  read -r K < /proc/$U/task/$U/children
  for k in $K; do [ "$k" = "$W" ] || kill -KILL "$k"; done
  kill -KILL "$U"
) &
exec "$@" </dev/null 5<&-
`;

// Stage 1, in the new namespaces with the host root: the mounts (batched in fstab files written by
// runSandboxed, one mount(8) process each), the host tool view, the pivot helper. Fixed text, every
// variable part is a positional arg. Errors go to fd 3 so they are never mistaken for the command's
// own output or exit code.
/** The hostname a sandboxed step gets (BuildKit's defaultHostname). */
export const SANDBOX_HOSTNAME = 'buildkitsandbox';

const SETUP_SCRIPT = `
R=$1; T=$2; F=" $3 "; V=$4; IP=$5; STAGE2=$6; SH=$7; BASH=$8; shift 8
fail() { echo "$*" >&3; exit 125; }
has() { case "$F" in *" $1 "*) return 0;; esac; return 1; }
# The step's own hostname, as BuildKit's (its UTS namespace is ours alone): a step never sees or records the host's.
echo ${SANDBOX_HOSTNAME} 2>/dev/null >/proc/sys/kernel/hostname
# -c: the root's own nodev bind (first line, target spelled "R/.") is never skipped as already mounted (an overlay
# root is a mount point), which mount -a does after canonicalising; nodev stands in for Docker's device cgroup.
mount -a -c -T "$T/root.fstab" 2>&3 || fail "cannot bind-mount the build root or the host tool view"
exec 6<"$V" || fail "cannot open the host tool view"
mount -a -T "$T/proc-dev.fstab" 2>&3 || fail "cannot mount /proc or /dev"
if has dev; then cp -a "$T/dev/." "$R/dev/" 2>&3 || fail "cannot populate /dev"; fi
if has sys; then
  mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys" 2>/dev/null ||
    mount --bind -o ro,nosuid,nodev,noexec /sys "$R/sys" 2>&3 || fail "cannot mount /sys"
fi
mount -a -T "$T/runtime.fstab" 2>&3 || fail "cannot provide /dev, /sys, /etc/resolv.conf, /etc/hosts or the RUN --mount targets"
if has lo && [ -n "$IP" ]; then "$IP" link set lo up 2>/dev/null; fi
mkfifo -m 600 "$T/go" "$T/done" 2>&3 || fail "cannot create the pivot handshake"
# The helper pivots once this shell sits in the host tool view, whose root the pivot leaves alone.
( exec 8<"$T/go" 9>"$T/done" 2>&3; read _ <&8 && cd "$R" && pivot_root . .; echo $? >&9 ) &
exec 8>"$T/go" 9<"$T/done" 4<"$R"
for f in /proc/self/fd/[1-9][0-9]*; do [ ! -e "$f" ] || [ -z "$BASH" ] || SH=$BASH; done
exec nsenter --root=/proc/self/fd/6 --wd=/proc/self/fd/6 -- "$SH" -c "$STAGE2" builder-sandbox "$@"
`;

// Stage 2, rooted in the host tool view: wait for the pivot, detach the old root, then exec the
// privilege drop (setpriv) and the final chroot into the new mount namespace root (unshare --root=.).
const STAGE2_SCRIPT = `
exec 6<&-
fail() { echo "$*" >&3; exit 125; }
echo go >&8; read rc <&9; read _ <&9
[ "$rc" = 0 ] || fail "pivot_root into the build root failed"
cd -P /proc/self/fd/4 2>&- || fail "cannot enter the build root after pivot_root"
# Descriptors the builder inherited without close-on-exec must not reach the step (runc closes them too);
# dash cannot name fds above 9, so stage 1 picks bash when there are such fds.
for f in /proc/self/fd/*; do
  n=\${f##*/}
  case $n in 0|1|2|3) ;; [4-9]) eval "exec $n<&-" ;; *) [ -z "$BASH_VERSION" ] || eval "exec $n<&-" ;; esac
done
# Detach the old root (stacked on "." by pivot_root), then this view's /proc: neither may outlive setup.
umount -c -l . /proc 2>&3 || fail "cannot detach the host root"
echo ready >&3; exec 3>&-
exec "$@"
`;

/** secretEnv entries checked without ever quoting one: a secret's value may not reach a message. */
function checkSecretEntries(entries: readonly string[], what: string): void {
  for (const kv of entries) {
    const i = kv.indexOf('=');
    if (i <= 0 || kv.includes('\0')) {
      throw new BuilderError('RUN_ENV_INVALID', `invalid secret environment entry for RUN ${what} (variable "${kv.slice(0, Math.max(i, 0))}")`, {
        hint: 'A secret env= entry is NAME=VALUE with a non-empty NAME and no NUL byte.',
      });
    }
  }
}

/**
 * The step's environment reaches the last `env -i` through its own environment (BUILDER_ENV_n="K=V", expanded by
 * GNU env's -S), never through argv, where any local user could read it with ps; busybox's env has no -S.
 */
async function checkEnvSplitString(envTool: string): Promise<void> {
  const ok = await new Promise<boolean>((resolve) => {
    execFile(envTool, ['-i', '-S', '-- ${B}', envTool], { env: { B: 'A=probe' }, timeout: 10_000 }, (err, stdout) => resolve(!err && stdout === 'A=probe\n'));
  });
  if (!ok) {
    throw new BuilderError('RUN_SANDBOX_UNAVAILABLE', `the sandbox needs GNU env with -S on this host (${envTool} has none)`, {
      hint: 'install GNU coreutils (its env carries the step\'s environment without putting it on a command line), or use --run-mode in-place inside a container',
    });
  }
}

/** The environment of the spawned chain: the host tools' own, plus each step entry under a name env -S expands. */
function chainEnv(entries: readonly string[]): { env: Record<string, string>; split: string } {
  const env: Record<string, string> = { PATH: HOST_TOOL_DIRS.join(':'), LC_ALL: 'C' };
  entries.forEach((kv, i) => {
    env[`BUILDER_ENV_${i}`] = kv;
  });
  // "--" first: an entry whose key starts with "-" is an assignment, not an option of env.
  return { env, split: ['--', ...entries.map((_, i) => `\${BUILDER_ENV_${i}}`)].join(' ') };
}

/** dist/bin/builder-sandbox beside the bundle or tsc's modules (scripts/bundle.mjs), when it was built and may be run here (not on a noexec mount). */
function findHelper(): string | undefined {
  const own = fileURLToPath(new URL(typeof __BUILDER_VERSION__ === 'string' ? './bin/builder-sandbox' : '../../bin/builder-sandbox', import.meta.url));
  try {
    accessSync(own, fsConstants.X_OK);
    return own;
  } catch {
    return undefined;
  }
}

/** builder-sandbox when built, else the host tools the chain needs, or which one is missing. */
export async function findSandboxTools(): Promise<SandboxTools | SandboxHelper | { missing: string }> {
  const helper = findHelper();
  return helper !== undefined ? { helper } : findChainTools();
}

/** The host tools the sh + util-linux chain needs, or which one is missing. */
export async function findChainTools(): Promise<SandboxTools | { missing: string }> {
  const names = ['unshare', 'setpriv', 'env', 'sh', 'mount', 'umount', 'nsenter', 'pivot_root', 'mkfifo', 'cp'] as const;
  const found = await Promise.all(names.map(findHostTool));
  const [ip, bash] = await Promise.all([findHostTool('ip'), findHostTool('bash')]);
  for (let i = 0; i < names.length; i++) if (found[i] === undefined) return { missing: names[i]! };
  const [unshare, setpriv, env, sh, mount, umount, nsenter, pivotRoot, mkfifo, cp] = found as string[];
  return { unshare: unshare!, setpriv: setpriv!, env: env!, sh: sh!, mount: mount!, umount: umount!, nsenter: nsenter!, pivotRoot: pivotRoot!, mkfifo: mkfifo!, cp: cp!, ...(ip ? { ip } : {}), ...(bash ? { bash } : {}) };
}

/** The namespace flags of the outer unshare. */
function namespaceArgs(network: NetworkMode): string[] {
  const args = ['--mount', '--pid', '--ipc', '--uts', '--fork', '--kill-child=SIGKILL', '--propagation', 'private'];
  if (network === 'none') args.push('--net');
  return args;
}

interface Prepared {
  flags: string[];
  /** Paths we created in the root, deepest last; removed after the run. */
  created: { hostPath: string; kind: 'dir' | 'file' }[];
  /** Parent dirs whose times we restore after removing what we created. */
  parents: Map<string, { atime: number; mtime: number }>;
}

/** A dir's atime/mtime in seconds with microseconds (a Date keeps only ms, and utimes then lands below the original ms). */
async function parentTimes(dir: string): Promise<{ atime: number; mtime: number }> {
  const st = await lstat(dir, { bigint: true });
  return { atime: Number(st.atimeNs / 1000n) / 1e6, mtime: Number(st.mtimeNs / 1000n) / 1e6 };
}

/**
 * Makes each mount point exist in the root without ever following a symlink (a hostile image could
 * point /etc at the host). A mount point that is a symlink or of the wrong type is skipped.
 */
async function prepareMountPoints(root: string): Promise<Prepared> {
  const prepared: Prepared = { flags: [], created: [], parents: new Map() };
  const rememberParent = async (dir: string): Promise<void> => {
    if (prepared.parents.has(dir)) return;
    prepared.parents.set(dir, await parentTimes(dir));
  };
  for (const mp of MOUNT_POINTS) {
    const parts = mp.path.split('/').filter(Boolean);
    let cur = root;
    let ok = true;
    for (let i = 0; i < parts.length && ok; i++) {
      const next = path.join(cur, parts[i]!);
      const last = i === parts.length - 1;
      const want = last ? mp.kind : 'dir';
      const st = await lstat(next).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
      if (st === undefined) {
        await rememberParent(cur);
        if (want === 'dir') await mkdir(next, { mode: 0o755 });
        else await writeFile(next, '', { mode: 0o644, flag: 'wx' });
        prepared.created.push({ hostPath: next, kind: want });
      } else if (st.isSymbolicLink() || (want === 'dir' ? !st.isDirectory() : !st.isFile())) {
        ok = false;
      }
      cur = next;
    }
    if (ok) prepared.flags.push(mp.flag);
  }
  return prepared;
}

/** Paths under which a RUN --mount target is refused: the runtime mounts cover them (and the host tool view sits there). */
const RESERVED_TARGETS = ['proc', 'dev', 'sys'];

/**
 * Resolves each RUN --mount target inside the root (symlinks followed within it, never out of it) and creates the
 * missing stubs (dirs, or an empty file for a file bind), recorded in `prepared` so they are removed after the run.
 * Returns one fstab line per mount, shallowest first.
 */
async function prepareUserMounts(root: string, mounts: readonly RunMount[], prepared: Prepared, what: string): Promise<string> {
  const rootfs = new RootFs(root);
  const resolved: { m: RunMount; host: string; rel: string; kind: 'dir' | 'file' }[] = [];
  for (const m of mounts) {
    const host = await rootfs.resolve(m.target, { followFinal: true });
    const rel = path.relative(root, host);
    const bad = (why: string): BuilderError =>
      new BuilderError('RUN_MOUNT_TARGET_INVALID', `RUN ${what}: --mount target ${m.target} ${why}`, { hint: 'mount somewhere else, e.g. under /mnt, /run or /tmp' });
    if (rel === '' || rel.startsWith('..')) throw bad('is the root');
    if (RESERVED_TARGETS.some((r) => rel === r || rel.startsWith(`${r}/`))) throw bad('is under /proc, /dev or /sys, which the runtime provides');
    const kind: 'dir' | 'file' = m.type === 'bind' && m.source !== undefined && (await kindOf(m.source)) === 'file' ? 'file' : 'dir';
    resolved.push({ m, host, rel, kind });
  }
  resolved.sort((a, b) => a.rel.split('/').length - b.rel.split('/').length);
  for (const a of resolved) {
    for (const b of resolved) {
      if (a !== b && (b.rel === a.rel || b.rel.startsWith(`${a.rel}/`))) {
        throw new BuilderError('RUN_MOUNT_TARGET_INVALID', `RUN ${what}: --mount targets ${a.m.target} and ${b.m.target} overlap`, {
          hint: 'give each mount its own directory; nested mount targets are not supported',
        });
      }
    }
  }
  let tab = '';
  for (const r of resolved) {
    const parts = r.rel.split('/');
    let cur = root;
    for (let i = 0; i < parts.length; i++) {
      const next = path.join(cur, parts[i]!);
      const want = i === parts.length - 1 ? r.kind : 'dir';
      const st = await lstat(next).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
      if (st === undefined) {
        if (!prepared.parents.has(cur)) prepared.parents.set(cur, await parentTimes(cur));
        if (want === 'dir') await mkdir(next, { mode: 0o755 });
        else await writeFile(next, '', { mode: 0o644, flag: 'wx' });
        prepared.created.push({ hostPath: next, kind: want });
      } else if (st.isSymbolicLink() || (want === 'dir' ? !st.isDirectory() : !st.isFile())) {
        throw new BuilderError('RUN_MOUNT_TARGET_INVALID', `RUN ${what}: --mount target ${r.m.target} is not a ${want === 'dir' ? 'directory' : 'file'} in the image`, {
          hint: 'pick a target that does not exist or has the type of the mount source',
        });
      }
      cur = next;
    }
    if (r.m.type === 'tmpfs') tab += fstabLine('tmpfs', r.host, 'tmpfs', `nosuid,nodev${r.m.readonly ? ',ro' : ''}${r.m.size ? `,size=${r.m.size}` : ''}`);
    else tab += fstabLine(r.m.source!, r.host, 'none', `bind,nodev${r.m.readonly ? ',ro' : ''}`);
  }
  return tab;
}

/** Removes what prepareMountPoints created (only if still empty) and restores parents' times. */
async function cleanupMountPoints(prepared: Prepared): Promise<void> {
  for (const c of [...prepared.created].reverse()) {
    try {
      if (c.kind === 'dir') await rmdir(c.hostPath);
      else if ((await lstat(c.hostPath)).size === 0) await unlink(c.hostPath);
    } catch {
      // The step put something there (e.g. files under a /etc we created): it belongs to the layer.
    }
  }
  for (const [dir, t] of prepared.parents) await utimes(dir, t.atime, t.mtime).catch(() => undefined);
}

/** Docker's read-only /proc paths and masked /proc and /sys paths (moby oci/defaults.go). */
const PROC_READONLY = ['bus', 'fs', 'irq', 'sys', 'sysrq-trigger'];
const PROC_MASKED = ['asound', 'acpi', 'kcore', 'keys', 'latency_stats', 'timer_list', 'timer_stats', 'sched_debug', 'scsi'];
const SYS_MASKED = ['firmware', 'devices/virtual/powercap'];
const DEV_NODES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];
const DEV_LINKS: readonly [string, string][] = [
  ['fd', '/proc/self/fd'], ['stdin', '/proc/self/fd/0'], ['stdout', '/proc/self/fd/1'], ['stderr', '/proc/self/fd/2'], ['ptmx', 'pts/ptmx'],
];

/** Every path runSandboxed may create in its per-run dir, relative, deepest first (for removal). */
const RUNTIME_ENTRIES: readonly string[] = [
  ...HOST_VIEW_ENTRIES.map((e) => `view/${e}`), 'view/etc/ld.so.cache', 'view/etc', 'view/proc', 'view',
  ...[...DEV_NODES, ...DEV_LINKS.map(([n]) => n), 'shm', 'pts'].map((e) => `dev/${e}`), 'dev',
  'root.fstab', 'proc-dev.fstab', 'runtime.fstab', 'resolv.conf', 'hosts', 'go', 'done',
];

/** An fstab field: libmount and getmntent(3) unescape \ooo octal, so spaces and friends in paths survive. */
function fstabField(s: string): string {
  return s.replace(/[\\ \t\n]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

const fstabLine = (src: string, dst: string, type: string, options: string): string => `${fstabField(src)} ${fstabField(dst)} ${type} ${options} 0 0\n`;

const kindOf = async (p: string): Promise<'dir' | 'file' | undefined> => {
  const st = await lstat(p).catch(() => undefined);
  return st === undefined ? undefined : st.isDirectory() ? 'dir' : 'file';
};

/** Promise.all that waits for every one before throwing the first failure: nothing still writes when cleanup runs. */
async function settleAll(work: readonly Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(work)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * The host tool view the chain's stages run from after the pivot: its skeleton in dir/view (top-level symlinks copied
 * for merged /usr, mount points for the system dirs and ld.so.cache) and its root.fstab lines. Mounted under the
 * root's /dev (or /proc), so the runtime mount there covers it once stage 2 holds it as its root.
 */
async function writeToolView(root: string, dir: string, has: (f: string) => boolean): Promise<{ tab: string; viewAt: string }> {
  if (!has('dev') && !has('proc')) {
    throw new BuilderError('RUN_SANDBOX_SETUP', `the build root ${root} has neither a /dev nor a /proc directory`, {
      hint: 'The base image replaced /dev and /proc with symlinks or files; the sandbox needs one of them as a directory.',
    });
  }
  const view = path.join(dir, 'view');
  const viewAt = path.join(root, has('dev') ? 'dev' : 'proc');
  await mkdir(path.join(view, 'etc'), { recursive: true, mode: 0o755 });
  await mkdir(path.join(view, 'proc'), { mode: 0o755 });
  let tab = fstabLine(view, viewAt, 'none', 'bind,ro');
  // Stage 2 reads its fds and umount reads mountinfo here; a bind in this batch costs no mount(8) of its own.
  tab += fstabLine('/proc', path.join(viewAt, 'proc'), 'none', 'bind,nosuid,nodev,noexec');
  for (const name of HOST_VIEW_ENTRIES) {
    const st = await lstat(`/${name}`).catch(() => undefined);
    if (st?.isSymbolicLink()) await symlink(await readlink(`/${name}`), path.join(view, name));
    else if (st?.isDirectory()) {
      await mkdir(path.join(view, name), { mode: 0o755 });
      tab += fstabLine(`/${name}`, path.join(viewAt, name), 'none', 'bind,ro');
    }
  }
  if ((await kindOf('/etc/ld.so.cache')) === 'file') {
    await writeFile(path.join(view, 'etc/ld.so.cache'), '', { mode: 0o644 });
    tab += fstabLine('/etc/ld.so.cache', path.join(viewAt, 'etc/ld.so.cache'), 'none', 'bind,ro');
  }
  return { tab, viewAt };
}

/**
 * Writes the per-run files the setup needs into dir: the host tool view (the chain only), the /dev template, and
 * the three fstab files mounted in order (the RUN --mount lines last in the third). Returns where the view is
 * mounted ('' without one).
 */
async function writeSetupFiles(root: string, dir: string, flags: string[], userTab: string, withView: boolean): Promise<string> {
  const has = (f: string): boolean => flags.includes(f);
  // The root's own nodev bind comes first (pivot_root needs a mount point; nodev stands in for Docker's device
  // cgroup); the view is mounted on top of it.
  let rootTab = fstabLine(root, `${root}/.`, 'none', 'bind,nodev');
  const view = withView ? await writeToolView(root, dir, has) : { tab: '', viewAt: '' };
  rootTab += view.tab;

  let procDevTab = '';
  let runtimeTab = '';
  if (has('proc')) {
    const proc = path.join(root, 'proc');
    procDevTab += fstabLine('proc', proc, 'proc', 'nosuid,nodev,noexec');
    // The kernel is the host's, so the host's /proc says which of these exist.
    const [readonly, masked] = await Promise.all([PROC_READONLY, PROC_MASKED].map((l) => Promise.all(l.map((p) => kindOf(`/proc/${p}`)))));
    PROC_READONLY.forEach((p, i) => {
      if (readonly![i]) procDevTab += fstabLine(path.join(proc, p), path.join(proc, p), 'none', 'bind,ro,nosuid,nodev,noexec');
    });
    PROC_MASKED.forEach((p, i) => {
      if (masked![i] === 'dir') procDevTab += fstabLine('tmpfs', path.join(proc, p), 'tmpfs', 'ro,nosuid,nodev,noexec');
      else if (masked![i] === 'file') procDevTab += fstabLine('/dev/null', path.join(proc, p), 'none', 'bind');
    });
  }
  if (has('dev')) {
    const dev = path.join(root, 'dev');
    procDevTab += fstabLine('tmpfs', dev, 'tmpfs', 'nosuid,nodev,strictatime,mode=755,size=65536k');
    const tpl = path.join(dir, 'dev');
    await mkdir(tpl, { mode: 0o755 });
    await settleAll([
      ...DEV_NODES.map((d) => writeFile(path.join(tpl, d), '', { mode: 0o644 })),
      ...DEV_LINKS.map(([name, target]) => symlink(target, path.join(tpl, name))),
      ...['shm', 'pts'].map((d) => mkdir(path.join(tpl, d), { mode: 0o755 })),
    ]);
    for (const d of DEV_NODES) runtimeTab += fstabLine(`/dev/${d}`, path.join(dev, d), 'none', 'bind');
    runtimeTab += fstabLine('shm', path.join(dev, 'shm'), 'tmpfs', 'nosuid,nodev,mode=1777');
    runtimeTab += fstabLine('devpts', path.join(dev, 'pts'), 'devpts', 'nosuid,noexec,newinstance,ptmxmode=0666,mode=0620');
  }
  if (has('sys')) {
    const kinds = await Promise.all(SYS_MASKED.map((p) => kindOf(`/sys/${p}`)));
    SYS_MASKED.forEach((p, i) => {
      if (kinds[i] === 'dir') runtimeTab += fstabLine('tmpfs', path.join(root, 'sys', p), 'tmpfs', 'ro,nosuid,nodev,noexec');
    });
  }
  if (has('resolv')) runtimeTab += fstabLine(path.join(dir, 'resolv.conf'), path.join(root, 'etc/resolv.conf'), 'none', 'bind');
  if (has('hosts')) runtimeTab += fstabLine(path.join(dir, 'hosts'), path.join(root, 'etc/hosts'), 'none', 'bind');
  await settleAll([
    writeFile(path.join(dir, 'root.fstab'), rootTab, { mode: 0o600 }),
    writeFile(path.join(dir, 'proc-dev.fstab'), procDevTab, { mode: 0o600 }),
    // RUN --mount targets last, in the same batch (one mount(8) process fewer): after /etc/hosts, before the pivot.
    writeFile(path.join(dir, 'runtime.fstab'), runtimeTab + userTab, { mode: 0o600 }),
  ]);
  return view.viewAt;
}

/**
 * Removes the per-run dir entry by entry, never recursing: the view's mount points are mounted only
 * inside the step's namespace, but if one ever leaked to the host, rmdir fails (EBUSY) where a
 * recursive rm would walk into the host's /usr.
 */
async function removeRuntimeDir(dir: string): Promise<void> {
  const remove = async (rel: string): Promise<void> => {
    const p = path.join(dir, rel);
    const st = await lstat(p).catch(() => undefined);
    if (st) await (st.isDirectory() ? rmdir(p) : unlink(p)).catch(() => undefined);
  };
  // Deepest first, each depth at once: a directory goes only after everything in it.
  const depth = (rel: string): number => rel.split('/').length;
  for (const d of [...new Set(RUNTIME_ENTRIES.map(depth))].sort((a, b) => b - a)) {
    await Promise.all(RUNTIME_ENTRIES.filter((e) => depth(e) === d).map(remove));
  }
  await remove('.');
}

/** resolv.conf and hosts copies the step may read (or even write) without touching the host's. */
async function writeRuntimeFiles(dir: string, network: NetworkMode): Promise<void> {
  const resolv = network === 'none' ? '' : await readFile('/etc/resolv.conf', 'utf8').catch(() => 'nameserver 8.8.8.8\n');
  // BuildKit's hosts file (executor/oci initHostsFile): the step's hostname, never the host's
  const hosts = `127.0.0.1\tlocalhost ${SANDBOX_HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
  await settleAll([writeFile(path.join(dir, 'resolv.conf'), resolv, { mode: 0o644 }), writeFile(path.join(dir, 'hosts'), hosts, { mode: 0o644 })]);
}

/** What the chain is spawned with: sh stage 0, the namespaces, stage 1 with stage 2, then setpriv, env -S, unshare --root. */
function chainArgs(found: SandboxTools, opts: SandboxOptions, run: { root: string; runtimeDir: string; flags: string[]; viewAt: string; split: string }): string[] {
  return [
    '-c', WATCH_SCRIPT, 'builder-sandbox-watch', found.unshare,
    ...namespaceArgs(opts.network ?? 'default'),
    '--',
    found.sh, '-c', SETUP_SCRIPT, 'builder-sandbox', run.root, run.runtimeDir, run.flags.join(' '), run.viewAt, found.ip ?? '', STAGE2_SCRIPT, found.sh, found.bash ?? '',
    // Still uid 0, rooted in the host tool view: gid, groups, and Docker's caps (bounding set too); no no_new_privs, as in Docker.
    found.setpriv, `--regid=${opts.user.gid}`, `--groups=${groupList(opts.user).join(',')}`, '--inh-caps=-all',
    `--bounding-set=-all,${DOCKER_CAPS.map((c) => `+${c}`).join(',')}`, '--',
    // The step's env is applied here and nowhere earlier (expanded from BUILDER_ENV_n, never on a command line);
    // unshare passes it to the command unchanged.
    found.env, '-i', '-S', run.split,
    // chroot(".") into the pivoted root (the cwd stage 2 left), chdir, then drop to the uid.
    found.unshare, '--root=.', `--wd=${opts.cwd}`, `--setuid=${opts.user.uid}`, '--',
    ...opts.argv,
  ];
}

/** builder-sandbox's arguments (its usage line); the step's env reaches it as BUILDER_ENV_n, as the chain's env -S. */
function helperArgs(opts: SandboxOptions, run: { root: string; runtimeDir: string; flags: string[] }): string[] {
  const { uid, gid } = opts.user;
  return [run.root, run.runtimeDir, run.flags.join(' '), SANDBOX_HOSTNAME, `${uid}`, `${gid}`, groupList(opts.user).join(','), opts.cwd, '--', ...opts.argv];
}

/** The step's status, or the setup's failure (fd 3's report, or a starter that never got to report) as a BuilderError. */
async function outcome(out: SpawnOutcome, found: SandboxTools | SandboxHelper, what: string): Promise<RunResult> {
  const starter = 'helper' in found ? found.helper : found.unshare;
  const startHint = 'helper' in found
    ? `Check that ${found.helper} runs here (npm run build makes it), or use --run-mode in-place inside a container.`
    : 'Check that util-linux unshare runs here, or use --run-mode in-place inside a container.';
  if (out.spawnError) {
    throw new BuilderError('RUN_SANDBOX_UNAVAILABLE', `cannot start the sandbox for RUN ${what}: ${out.spawnError.message}`, { hint: startHint, cause: out.spawnError });
  }
  const report = (out.extra[0] ?? '').split('\n').filter((l) => l.trim() !== '');
  const setupError = report.filter((l) => l !== 'ready').join('; ');
  if (setupError) {
    throw new BuilderError('RUN_SANDBOX_SETUP', `cannot set up the sandbox for RUN ${what}: ${setupError}`, {
      hint: 'Namespaces or mounts are not permitted here; use --run-mode in-place inside a container.',
    });
  }
  if (!report.includes('ready') && !out.signal) {
    if (out.exitCode === 126 || out.exitCode === 127) {
      throw new BuilderError('RUN_SANDBOX_UNAVAILABLE', `cannot start the sandbox for RUN ${what}: ${starter} could not be executed`, { hint: startHint });
    }
    // The namespaces could not be made before the setup ran: the starter's own message went to stderr.
    throw new BuilderError('RUN_SANDBOX_SETUP', `cannot create namespaces for RUN ${what} (${'helper' in found ? 'builder-sandbox' : 'unshare'} exited ${out.exitCode})`, {
      hint: 'Namespaces are not permitted here; use --run-mode in-place inside a container.',
    });
  }
  // An env without -S fails every step (GNU env with 125, busybox's with 1): checked only then, never on success.
  if (!('helper' in found) && (out.exitCode === 125 || out.exitCode === 1)) await checkEnvSplitString(found.env);
  return out.signal ? { exitCode: out.exitCode, signal: out.signal } : { exitCode: out.exitCode };
}

/** Runs argv chrooted into opts.root in fresh namespaces as opts.user; see the file header. */
export async function runSandboxed(opts: SandboxOptions, tools?: SandboxTools | SandboxHelper): Promise<RunResult> {
  const what = describeArgv(opts.argv);
  if (opts.argv.length === 0) {
    throw new BuilderError('RUN_ARGV_EMPTY', 'RUN has no command', { hint: 'Give RUN a command.' });
  }
  if (!path.posix.isAbsolute(opts.cwd)) {
    throw new BuilderError('RUN_CWD_INVALID', `working directory "${opts.cwd}" for RUN ${what} is not absolute`, {
      hint: 'WORKDIR must resolve to an absolute path.',
    });
  }
  checkUser(opts.user, what);
  checkSecretEntries(opts.secretEnv ?? [], what);
  // Secrets come last and win; stepEnv never quotes an entry that is valid.
  const env = chainEnv(stepEnv([...opts.env, ...(opts.secretEnv ?? [])], opts.user.home, what));
  const found = tools ?? (await findSandboxTools());
  if ('missing' in found) {
    throw new BuilderError('RUN_SANDBOX_UNAVAILABLE', `cannot run ${what} in a sandbox: host tool "${found.missing}" not found`, {
      hint: 'Install util-linux (unshare, setpriv, nsenter, mount, pivot_root) and coreutils, or use --run-mode in-place inside a container.',
    });
  }
  const root = await realpath(opts.root).catch((cause: unknown) => {
    throw new BuilderError('RUN_ROOT_MISSING', `build root ${opts.root} for RUN ${what} does not exist`, {
      hint: 'Extract the base image into the root before running steps.',
      cause,
    });
  });
  if (root === '/') {
    throw new BuilderError('RUN_ROOT_INVALID', `sandbox RUN ${what} needs a build root other than "/"`, {
      hint: 'Use --run-mode in-place to build into "/".',
    });
  }
  const network = opts.network ?? 'default';
  const prepared = await prepareMountPoints(root);
  // absolute: builder-sandbox refuses a relative run dir (a relative TMPDIR)
  const runtimeDir = path.resolve(opts.runtimeDir ?? (await mkdtemp(path.join(tmpdir(), 'builder-run-'))));
  if (opts.runtimeDir !== undefined) await mkdir(runtimeDir, { mode: 0o700 });
  try {
    const setup = prepareUserMounts(root, opts.mounts ?? [], prepared, what).then((userTab) => writeSetupFiles(root, runtimeDir, prepared.flags, userTab, !('helper' in found)));
    await settleAll([writeRuntimeFiles(runtimeDir, network), setup]);
    const viewAt = await setup;
    const run = { root, runtimeDir, flags: [...prepared.flags, ...(network === 'none' ? ['lo'] : [])], viewAt, split: env.split };
    const out = await spawnStreaming({
      ...('helper' in found ? { file: found.helper, args: helperArgs(opts, run) } : { file: found.sh, args: chainArgs(found, opts, run) }),
      env: env.env,
      holdStdin: true,
      extraPipes: 1,
      what,
      kill: opts.kill,
      ...(opts.onOutput ? { onOutput: opts.onOutput } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    return await outcome(out, found, what);
  } finally {
    await removeRuntimeDir(runtimeDir);
    await cleanupMountPoints(prepared);
  }
}
