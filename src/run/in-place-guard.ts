// Trust in place: the RUN launcher (builder-run) and its Landlock probe, builder's own copies of the credential files a
// step must not read, and one build per root (a lock that also tells the next build what a killed one left).
import { execFile } from 'node:child_process';
import { access, chmod, chown, constants, lstat, mkdir, readFile, readdir, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BuilderError } from '../errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { isRunning, readProcStat } from '../util/proc.js';
import { killProcessTree, waitGone, type Kill } from './common.js';

/** The launcher's name: also its comm, which the CLI's last-resort kill spares. */
export const LAUNCHER = 'builder-run';
/** Landlock ABI with the signal scope (6): below it a step may still signal builder. */
const SCOPE_ABI = 6;

/** The warning to print at start when a step is less fenced off than it should be, or undefined when all is there. */
export async function launcherWarning(launcher: string | undefined): Promise<string | undefined> {
  if (!launcher) return `RUN steps start without ${LAUNCHER} (the executor image ships it; npm run build compiles it into dist/bin where a C compiler is): they can read builder's memory, signal it and read its credential files`;
  const out = await new Promise<string>((resolve) => execFile(launcher, ['probe'], (err, stdout) => resolve(err ? '' : String(stdout))));
  const abi = Number(/landlock (\d+)/.exec(out)?.[1] ?? 0);
  if (abi === 0) return 'this kernel has no Landlock (or seccomp refuses it): RUN steps can read builder\'s memory and signal it (its credential files and environment stay hidden); use a kernel with Landlock (5.13+, signal scope 6.12+)';
  if (abi < SCOPE_ABI) return `this kernel's Landlock (ABI ${abi}) has no signal scope: RUN steps can signal builder (its memory, files and environment stay hidden); a kernel 6.12+ closes it`;
  return undefined;
}

/**
 * The credential files that can be taken out of "/" for a step (regular files in a writable directory, not mount
 * points), and those that cannot (a read-only secret volume, a symlink into one): those stay readable.
 */
export async function hideable(paths: readonly string[], mountPoints: readonly string[]): Promise<{ hide: string[]; exposed: string[] }> {
  const hide: string[] = [];
  const exposed: string[] = [];
  for (const p of paths) {
    const st = await lstat(p).catch(() => undefined);
    if (!st) continue;
    const writable = await access(path.dirname(p), constants.W_OK).then(() => true, () => false);
    (st.isFile() && writable && !mountPoints.includes(p) ? hide : exposed).push(p);
  }
  return { hide, exposed };
}

/** A credential file as builder saw it before a step: what putBack writes again if the step's end did not. */
export interface FileCopy {
  path: string;
  data: Buffer;
  mode: number;
  uid: number;
  gid: number;
  atime: Date;
  mtime: Date;
}

/** Copies of the regular files among paths (others skipped: the launcher hides regular files only). */
export async function keepCopies(paths: readonly string[]): Promise<FileCopy[]> {
  const out: FileCopy[] = [];
  for (const p of paths) {
    const st = await lstat(p).catch(() => undefined);
    if (!st?.isFile()) continue;
    out.push({ path: p, data: await readFile(p), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, atime: st.atime, mtime: st.mtime });
  }
  return out;
}

/** Writes back every copy whose file is missing or differs (temp file + rename); returns the paths it wrote. */
export async function putBack(copies: readonly FileCopy[]): Promise<string[]> {
  const wrote: string[] = [];
  for (const c of copies) {
    const now = await readFile(c.path).catch(() => undefined);
    if (now?.equals(c.data)) continue;
    await mkdir(path.dirname(c.path), { recursive: true });
    await writeFileAtomic(c.path, c.data, { mode: 0o600 });
    await chown(c.path, c.uid, c.gid);
    await chmod(c.path, c.mode);
    await utimes(c.path, c.atime, c.mtime);
    wrote.push(c.path);
  }
  return wrote;
}

/** Who holds the root: written O_EXCL at the start of an in-place build, removed at its end. */
interface Holder {
  pid: number;
  /** /proc/PID/stat start time: a later process reusing the pid is not the holder. */
  start: string;
  /** The RUN step running without builder-run (its pid is its process group), killed by the next build. */
  step?: { pid: number; start: string };
}

const alive = (h: Holder): boolean => isRunning(h.pid, h.start);

/** Launchers whose builder (node) is gone: a killed build's, stopping its step and putting its hidden files back. */
async function orphanLaunchers(): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const e = readProcStat(name);
    if (e?.comm === LAUNCHER && e.state !== 'Z' && readProcStat(e.ppid)?.comm !== 'node') out.push(e.pid);
  }
  return out;
}

/**
 * Cleans what a killed build left in "/" (its step, launchers still stopping theirs) and says what it did; its work
 * dir (secret copies, stashes) goes with every dead build's (src/executor/leftovers.ts).
 */
async function cleanAfter(dead: Holder, kill: Kill): Promise<string | undefined> {
  const done: string[] = [];
  const step = dead.step;
  if (step && isRunning(step.pid, step.start)) {
    await waitGone(killProcessTree(step.pid, kill), 10_000);
    done.push(`its RUN step's processes (pid ${step.pid} and below) killed`);
  }
  const launchers = await orphanLaunchers();
  // A launcher left behind ends its step and restores the hidden files on its own: wait, never kill it mid-write.
  for (let i = 0; i < 200 && launchers.some((pid) => readProcStat(pid) !== undefined); i++) await new Promise((r) => setTimeout(r, 50));
  const left = launchers.filter((pid) => readProcStat(pid) !== undefined);
  const gone = launchers.length - left.length;
  if (gone > 0) done.push(`${gone} RUN step(s) stopped and their hidden files put back`);
  if (left.length > 0) done.push(`${left.length} RUN step launcher(s) (pid ${left.join(', ')}) still running after 10s: their hidden files may not be back yet`);
  return done.length > 0 ? `a killed in-place build (pid ${dead.pid}) left this container: ${done.join('; ')}` : undefined;
}

/**
 * Takes the root for this build: fails at once while another live build holds it; cleans after a dead holder first.
 * Returns the line saying what was cleaned (if anything) and the release function. `kill` (the caller's Host.kill)
 * kills a dead holder's step.
 */
export async function holdRoot(lockFile: string, who: { pid: number }, kill: Kill): Promise<{
  cleaned?: string; release: () => Promise<void>; note: (stepPid: number | undefined) => Promise<void>;
}> {
  const start = readProcStat(who.pid)?.start;
  if (start === undefined) throw new BuilderError('BUILD_IN_PLACE_LOCK', `cannot read /proc/${who.pid}/stat to take the in-place lock`, { hint: 'in-place builds need /proc mounted' });
  const me: Holder = { ...who, start };
  let cleaned: string | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(lockFile, `${JSON.stringify(me)}\n`, { flag: 'wx', mode: 0o600 });
      // Record writes and the release run in order: a late write must never bring a released lock back.
      let chain: Promise<void> = Promise.resolve();
      const release = (): Promise<void> => (chain = chain.then(() => unlink(lockFile)).catch(() => undefined));
      const note = (stepPid: number | undefined): Promise<void> => {
        const start = stepPid === undefined ? undefined : readProcStat(stepPid)?.start;
        const record = stepPid !== undefined && start !== undefined ? { ...me, step: { pid: stepPid, start } } : me;
        return (chain = chain.then(() => writeFileAtomic(lockFile, `${JSON.stringify(record)}\n`, { mode: 0o600 })).catch(() => undefined));
      };
      return { ...(cleaned ? { cleaned } : {}), release, note };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const text = await readFile(lockFile, 'utf8').catch(() => undefined);
    let other: Holder | undefined;
    try {
      other = text === undefined ? undefined : (JSON.parse(text) as Holder);
    } catch {
      other = undefined;
    }
    if (other && alive(other)) {
      throw new BuilderError('BUILD_IN_PLACE_BUSY', `another in-place build (pid ${other.pid}) is running in this container: two builds would mix their files in "/"`, {
        hint: 'run in-place builds one after another in a container (wait for the first), or give each build its own job container',
      });
    }
    if (other) cleaned = await cleanAfter(other, kill);
    // Only the stale record goes: a build that took the root meanwhile wrote another text.
    if ((await readFile(lockFile, 'utf8').catch(() => undefined)) === text) await unlink(lockFile).catch(() => undefined);
  }
  throw new BuilderError('BUILD_IN_PLACE_BUSY', `cannot take ${lockFile}: other builds keep taking it`, { hint: 'run in-place builds one after another' });
}
