// Bench: run one command under GNU time and sample the RSS of its whole process tree from /proc.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';

export const GNU_TIME = '/usr/bin/time';
const PAGE = 4096;

export interface Measured {
  /** Wall time in seconds (our clock, around the whole process). */
  wall: number;
  /** user + sys CPU seconds of the process and every descendant it waited for (GNU time %U + %S). */
  user: number;
  sys: number;
  /** Largest single-process max RSS in the tree, bytes (GNU time %M). */
  maxRssProcess: number;
  /** Largest sum of RSS over the live process tree, sampled every 50 ms, bytes. */
  peakRssTree: number;
  exitCode: number;
  /** Combined stdout+stderr is in this file. */
  logFile: string;
}

export interface MeasureOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  logFile: string;
  timeoutMs?: number;
  sampleMs?: number;
}

async function readTree(): Promise<Map<number, { ppid: number; rss: number }>> {
  const out = new Map<number, { ppid: number; rss: number }>();
  let names: string[];
  try { names = await readdir('/proc'); } catch { return out; }
  await Promise.all(names.map(async (n) => {
    if (!/^\d+$/.test(n)) return;
    try {
      const stat = await readFile(`/proc/${n}/stat`, 'utf8');
      // pid (comm) state ppid ... ; comm may hold spaces/parens: split after the last ')'.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(rest[1]);
      const rssPages = Number(rest[21]);
      out.set(Number(n), { ppid, rss: rssPages * PAGE });
    } catch { /* process gone */ }
  }));
  return out;
}

function treeRss(procs: Map<number, { ppid: number; rss: number }>, root: number): number {
  const children = new Map<number, number[]>();
  for (const [pid, p] of procs) {
    const list = children.get(p.ppid);
    if (list) list.push(pid); else children.set(p.ppid, [pid]);
  }
  let sum = 0;
  // Descendants of root; root itself is GNU time (~1 MB), not the tool.
  const stack = [...(children.get(root) ?? [])];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    sum += procs.get(pid)?.rss ?? 0;
    stack.push(...(children.get(pid) ?? []));
  }
  return sum;
}

export async function measure(argv: string[], opts: MeasureOptions): Promise<Measured> {
  const timeFile = `${opts.logFile}.time`;
  const fd = openSync(opts.logFile, 'a');
  const t0 = process.hrtime.bigint();
  let child;
  try {
    child = spawn(GNU_TIME, ['-f', '%e %U %S %M', '-o', timeFile, '--', ...argv], {
      cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', fd, fd], detached: true,
    });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid!;
  let peak = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const rss = treeRss(await readTree(), pid);
      if (rss > peak) peak = rss;
      await new Promise((r) => setTimeout(r, opts.sampleMs ?? 50));
    }
  })();
  let timedOut = false;
  const timer = opts.timeoutMs
    ? setTimeout(() => { timedOut = true; try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } }, opts.timeoutMs)
    : undefined;
  const exitCode = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (timer) clearTimeout(timer);
  sampling = false;
  await sampler;
  const timeLine = (await readFile(timeFile, 'utf8').catch(() => '')).trim().split('\n').pop() ?? '';
  await rm(timeFile, { force: true });
  const [, u, s, m] = timeLine.split(' ').map(Number);
  return {
    wall, user: u ?? NaN, sys: s ?? NaN, maxRssProcess: (m ?? NaN) * 1024, peakRssTree: peak,
    exitCode: timedOut ? 124 : exitCode, logFile: opts.logFile,
  };
}

/** Sum of two measurements of consecutive commands (buildah bud + buildah push). */
export function addMeasured(a: Measured, b: Measured): Measured {
  return {
    wall: a.wall + b.wall, user: a.user + b.user, sys: a.sys + b.sys,
    maxRssProcess: Math.max(a.maxRssProcess, b.maxRssProcess), peakRssTree: Math.max(a.peakRssTree, b.peakRssTree),
    exitCode: a.exitCode !== 0 ? a.exitCode : b.exitCode, logFile: b.logFile,
  };
}

/** Runs a command to completion and returns stdout; throws with output on failure (setup steps, not measured). */
export function runCmd(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.once('error', reject);
    child.once('close', (code) => {
      const so = Buffer.concat(out).toString();
      if (code === 0) return resolve(so);
      reject(new Error(`${cmd} ${args.join(' ')} failed (exit ${code})\n${so}\n${Buffer.concat(err).toString()}`));
    });
  });
}
