// What /proc says of a process: its stat line (start time tells it from a later one reusing its pid) and this
// process's pid namespace (pids of another namespace mean nothing here). One reader for leases, build dirs and locks.
import { readFileSync, readlinkSync } from 'node:fs';

export interface ProcEntry {
  pid: number;
  ppid: number;
  pgrp: number;
  /** Start time in clock ticks since boot (field 22): tells a process from a later one that reuses its pid. */
  start: string;
  state: string;
  comm: string;
}

/** The stat line of pid ('self' for this process), or undefined when no such process is visible. */
export function readProcStat(pid: number | string): ProcEntry | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid pgrp ... starttime ...": the comm may hold spaces and ')', so fields count after its last ')'
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const comm = text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'));
  const own = Number(text.slice(0, text.indexOf(' ')));
  return { pid: own, state: f[0] ?? '', ppid: Number(f[1]), pgrp: Number(f[2]), start: f[19] ?? '', comm };
}

/** Whether the process that had this pid and start time still runs (false once its pid is reused). */
export function isRunning(pid: number, start: string): boolean {
  return readProcStat(pid)?.start === start;
}

/** This process's pid namespace ("pid:[4026531836]"), or undefined when /proc does not say. */
export function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}
