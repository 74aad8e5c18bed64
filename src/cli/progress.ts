// Progress on long work (pulls, pushes, extraction, snapshots, compression), rendered two ways: for CI logs one line
// every few seconds while something long runs, and on a terminal a live line per operation, rewritten in place.
import type { Writable } from 'node:stream';
import type { BuildEvent, ProgressPhase } from '../util/events.js';
import type { Logger } from './logger.js';

type ProgressEvent = Extract<BuildEvent, { type: 'progress' }>;

const MIB = 1 << 20;
const fmt = (n: number): string => (n >= 10 * MIB ? `${(n / MIB).toFixed(0)} MiB` : `${(n / MIB).toFixed(1)} MiB`);

interface Active {
  phase: ProgressPhase;
  id: string;
  bytes: number;
  total?: number;
  started: number;
}

/** Pulls and pushes are named by digest (12 hex), steps by their label. */
const label = (a: Pick<Active, 'phase' | 'id'>): string => `${a.phase} ${a.id.startsWith('sha256:') ? a.id.slice(7, 19) : a.id}`;

/** "pull 0123456789ab 45 MiB/300 MiB (15%)", or with no known total "snapshot [2/3] 12 MiB, 6s". */
export function describeProgress(a: Active, now: number): string {
  if (a.total && a.total > 0) return `${label(a)} ${fmt(Math.min(a.bytes, a.total))}/${fmt(a.total)} (${Math.floor((100 * Math.min(a.bytes, a.total)) / a.total)}%)`;
  return `${label(a)} ${a.bytes > 0 ? `${fmt(a.bytes)}, ` : ''}${Math.floor((now - a.started) / 1000)}s`;
}

/** Transfers smaller than this never get a line of their own: only work that is long by size or by time does. */
const worthShowing = (a: Active, now: number, interval: number): boolean =>
  now - a.started >= interval / 2 && ((a.phase !== 'pull' && a.phase !== 'push') || (a.total ?? 0) >= MIB);

export interface ProgressView {
  update(e: ProgressEvent): void;
  /** Stops timers and, on a terminal, erases the live lines. */
  close(): void;
}

/** The operations under way, by phase and id; `tick` runs every periodMs while there is one (unref'd: never keeps the process alive). */
function tracker(now: () => number, periodMs: number, tick: () => void) {
  const active = new Map<string, Active>();
  let timer: NodeJS.Timeout | undefined;
  const stop = (): void => {
    if (timer) clearInterval(timer);
    timer = undefined;
  };
  return {
    active,
    stop,
    /** The operation after e (removed from active when e ends it); undefined for the end of one never seen. */
    update(e: ProgressEvent): Active | undefined {
      const key = `${e.phase} ${e.id}`;
      let a = active.get(key);
      if (!a) {
        if (e.done) return undefined;
        a = { phase: e.phase, id: e.id, bytes: 0, started: now() };
        active.set(key, a);
        timer ??= setInterval(tick, periodMs).unref();
      }
      a.bytes = e.bytes;
      if (e.total !== undefined) a.total = e.total;
      if (e.done) active.delete(key);
      return a;
    },
  };
}

/** CI logs: every intervalMs one line naming whatever long work is under way, and a closing line for big transfers. */
export function progressLines(logger: Logger, opts: { intervalMs?: number; now?: () => number } = {}): ProgressView {
  const now = opts.now ?? Date.now;
  const interval = opts.intervalMs ?? 5000;
  const tick = (): void => {
    const t = now();
    const moving = [...ops.active.values()].filter((a) => worthShowing(a, t, interval));
    if (moving.length === 0) return;
    logger.log('info', moving.map((a) => describeProgress(a, t)).join(', '),
      logger.format === 'json' ? { progress: moving.map((a) => ({ phase: a.phase, id: a.id, bytes: a.bytes, ...(a.total ? { total: a.total } : {}) })) } : {});
  };
  const ops = tracker(now, interval, tick);
  return {
    update(e) {
      const a = ops.update(e);
      if (!a || !e.done) return;
      const secs = (now() - a.started) / 1000;
      const total = a.total ?? 0;
      if ((e.phase === 'pull' || e.phase === 'push') && total >= 8 * MIB && secs >= 1) {
        logger.log('info', `${e.phase === 'pull' ? 'pulled' : 'pushed'} ${e.id.slice(7, 19)} ${fmt(total)} in ${secs.toFixed(1)}s (${fmt(total / secs)}/s)`);
      }
      if (ops.active.size === 0) ops.stop();
    },
    close: ops.stop,
  };
}

/**
 * A terminal: one line per operation running for a moment, redrawn at most every redrawMs below the log, erased before
 * any other output (which then scrolls above it) and at the end. Nothing but the lines' own text is left behind.
 */
export function liveProgress(stream: Writable & { columns?: number }, opts: { redrawMs?: number; now?: () => number; showAfterMs?: number } = {}): ProgressView & {
  /** Erases the live lines before other output is written; they come back at the next redraw. */
  clear(): void;
} {
  const now = opts.now ?? Date.now;
  const redraw = opts.redrawMs ?? 150;
  const showAfter = opts.showAfterMs ?? 300;
  let drawn = 0;
  const clear = (): void => {
    if (drawn > 0) stream.write('\x1b[1A\x1b[2K'.repeat(drawn));
    drawn = 0;
  };
  const draw = (): void => {
    const t = now();
    const lines = [...ops.active.values()].filter((a) => t - a.started >= showAfter).map((a) => describeProgress(a, t));
    // A pty without a size reports 0 columns: assume 80.
    const width = Math.max(20, (stream.columns || 80) - 1);
    clear();
    // Cut to the terminal width: a wrapped line would leave a stray row when erased.
    for (const l of lines) stream.write(`${l.length > width ? l.slice(0, width) : l}\n`);
    drawn = lines.length;
    if (ops.active.size === 0) ops.stop();
  };
  const ops = tracker(now, redraw, draw);
  return {
    update(e) {
      ops.update(e);
    },
    clear,
    close() {
      ops.stop();
      ops.active.clear();
      clear();
    },
  };
}
