// Bench: run one command under GNU time and sample the RSS of its whole process tree from /proc.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
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

/**
 * Sum of RSS over root's descendants (root itself is GNU time, ~1 MB, not the tool). Walks /proc/PID/task/TID/children
 * from the root instead of scanning all of /proc: a scan of every process every 50 ms costs ~18% of a core, which
 * would slow the tools under test on a 2-core machine; the walk touches only the tree.
 */
export async function treeRss(root: number): Promise<number> {
  let sum = 0;
  const stack = [root];
  const seen = new Set<number>();
  while (stack.length > 0) {
    const pid = stack.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
    const kids = await Promise.all(tasks.map((t) => readFile(`/proc/${pid}/task/${t}/children`, 'utf8').catch(() => '')));
    for (const k of kids.join(' ').split(' ')) if (k) stack.push(Number(k));
    if (pid !== root) {
      const statm = await readFile(`/proc/${pid}/statm`, 'utf8').catch(() => '');
      sum += Number(statm.split(' ')[1] ?? 0) * PAGE;
    }
  }
  return sum;
}

export async function measure(argv: string[], opts: MeasureOptions): Promise<Measured> {
  const timeFile = `${opts.logFile}.time`;
  const out = createWriteStream(opts.logFile, { flags: 'a' });
  const t0 = process.hrtime.bigint();
  const child = spawn(GNU_TIME, ['-f', '%e %U %S %M', '-o', timeFile, '--', ...argv], {
    cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  // Every output line gets the seconds since start, so the logs show where the time goes per step.
  const stamp = (stream: NodeJS.ReadableStream): Promise<void> => new Promise((resolve) => {
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      const t = (Number(process.hrtime.bigint() - t0) / 1e9).toFixed(2);
      for (const l of lines) out.write(`[+${t}s] ${l}\n`);
    });
    stream.on('end', () => {
      if (rest) out.write(`[+${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(2)}s] ${rest}\n`);
      resolve();
    });
  });
  const streamsDone = Promise.all([stamp(child.stdout!), stamp(child.stderr!)]);
  const pid = child.pid!;
  // If the bench is interrupted (process.exit from a signal handler), take the tool's process group down with it.
  const killGroup = (): void => { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } };
  process.once('exit', killGroup);
  let peak = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const rss = await treeRss(pid);
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
  process.removeListener('exit', killGroup);
  await streamsDone;
  await new Promise<void>((resolve) => out.end(resolve));
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
