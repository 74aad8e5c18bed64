// Leases on the names of a shared directory (an extracted base, a temp dir being filled): who holds one is judged by
// something real (the holder's pid and its start time, on this boot and in this pid namespace), never by mtimes of
// what is being written.
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, utimes, writeFile, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { isRunning, pidNamespace, readProcStat } from '../util/proc.js';

/** A holder in another pid namespace or boot cannot be looked up: its lease counts while refreshed this recently. */
export const LEASE_STALE_MS = 10 * 60 * 1000;
/** How often a holder refreshes its leases' mtimes (for holders that cannot see it in /proc). */
const LEASE_REFRESH_MS = 2 * 60 * 1000;

interface Holder {
  pid: number;
  /** Start time in clock ticks since boot (/proc/PID/stat field 22): a reused pid has another. */
  start: string;
  boot: string;
  /** The pid namespace ("pid:[4026531836]"): pids of another one mean nothing here. */
  ns: string;
}

async function me(): Promise<Holder | undefined> {
  const boot = await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => undefined);
  const self = readProcStat('self');
  const ns = pidNamespace();
  if (!self?.start || !boot || !ns) return undefined;
  return { pid: self.pid, start: self.start, boot: boot.trim(), ns };
}

/**
 * Leases of one process on names of a shared directory, kept in `dir`: a lease file per (name, holder) records the
 * holder; taken before the name is used, dropped when done (or left by a crash: judged dead then). Refreshed while held.
 */
export class Leases {
  readonly dir: string;
  private readonly held = new Set<string>();
  private self: Promise<Holder | undefined> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Takes a lease on `name` (once per process). */
  async take(name: string): Promise<void> {
    if ([...this.held].some((f) => path.basename(f).startsWith(`${name}@`))) return;
    const holder = await (this.self ??= me());
    const file = path.join(this.dir, `${name}@${holder?.pid ?? 0}-${randomBytes(4).toString('hex')}`);
    await mkdir(this.dir, { recursive: true });
    await writeFile(file, `${JSON.stringify(holder ?? {})}\n`);
    this.held.add(file);
    this.timer ??= setInterval(() => void this.refresh(), LEASE_REFRESH_MS).unref();
  }

  /** Drops the lease on `name`, or every lease of this process. */
  async release(name?: string): Promise<void> {
    for (const f of [...this.held]) {
      if (name !== undefined && !path.basename(f).startsWith(`${name}@`)) continue;
      this.held.delete(f);
      await rm(f, { force: true }).catch(() => undefined);
    }
    if (this.held.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private async refresh(): Promise<void> {
    const now = new Date();
    for (const f of this.held) await utimes(f, now, now).catch(() => undefined);
  }

  /** Names with a live lease (any holder). Dead holders' lease files are removed on the way. */
  async live(now = Date.now()): Promise<Set<string>> {
    const out = new Set<string>();
    const mine = await (this.self ??= me());
    for (const file of await readdir(this.dir).catch(() => [] as string[])) {
      const at = file.lastIndexOf('@');
      if (at <= 0) continue;
      const full = path.join(this.dir, file);
      if (await isLive(full, mine, now)) out.add(file.slice(0, at));
      else await rm(full, { force: true }).catch(() => undefined);
    }
    return out;
  }
}

async function isLive(file: string, mine: Holder | undefined, now: number): Promise<boolean> {
  const [text, st] = await Promise.all([readFile(file, 'utf8').catch(() => undefined), stat(file).catch(() => undefined)]);
  if (text === undefined || !st) return false;
  let h: Partial<Holder>;
  try {
    h = JSON.parse(text) as Partial<Holder>;
  } catch {
    h = {};
  }
  // this boot, this pid namespace: the process is there with the same start time, or the lease is dead
  if (mine && h.boot === mine.boot && h.ns === mine.ns && typeof h.pid === 'number' && typeof h.start === 'string') return isRunning(h.pid, h.start);
  return now - st.mtimeMs < LEASE_STALE_MS;
}
