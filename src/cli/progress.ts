// Pull/push progress for long transfers: one line every few seconds while any blob over 1 MiB is moving, and a
// closing line for big ones, so a 300 MB layer is never 20 s of silence (CI logs and terminals alike).
import type { TransferProgress } from '../registry/index.js';
import type { Logger } from './logger.js';

const MIB = 1 << 20;
const fmt = (n: number): string => (n >= 10 * MIB ? `${(n / MIB).toFixed(0)} MiB` : `${(n / MIB).toFixed(1)} MiB`);

interface Transfer extends TransferProgress {
  started: number;
}

export function progressReporter(logger: Logger, opts: { intervalMs?: number; now?: () => number } = {}): (e: TransferProgress) => void {
  const now = opts.now ?? Date.now;
  const interval = opts.intervalMs ?? 5000;
  const active = new Map<string, Transfer>();
  let timer: NodeJS.Timeout | undefined;
  const tick = (): void => {
    const moving = [...active.values()].filter((t) => t.total >= MIB && now() - t.started >= interval / 2);
    if (moving.length === 0) return;
    const parts = moving.map((t) => `${t.op} ${t.digest.slice(7, 19)} ${fmt(t.done)}/${fmt(t.total)} (${Math.floor((100 * t.done) / t.total)}%)`);
    logger.log('info', parts.join(', '), logger.format === 'json' ? { progress: moving.map(({ started: _s, ...t }) => t) } : {});
  };
  return (e) => {
    const key = `${e.op} ${e.repository} ${e.digest}`;
    let t = active.get(key);
    if (!t) {
      t = { ...e, started: now() };
      active.set(key, t);
      // unref'd: progress never keeps the process alive
      timer ??= setInterval(tick, interval).unref();
    }
    t.done = e.done;
    if (e.done < e.total) return;
    active.delete(key);
    const secs = (now() - t.started) / 1000;
    if (e.total >= 8 * MIB && secs >= 1) logger.log('info', `${e.op === 'pull' ? 'pulled' : 'pushed'} ${e.digest.slice(7, 19)} ${fmt(e.total)} in ${secs.toFixed(1)}s (${fmt(e.total / secs)}/s)`);
    if (active.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}
