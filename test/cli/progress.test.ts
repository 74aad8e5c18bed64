// Progress lines for long transfers: what a CI log shows while a big blob moves, and nothing for small ones.
import { PassThrough } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/cli/logger.js';
import { progressLines } from '../../src/cli/progress.js';
import { transferEvent, type TransferProgress } from '../../src/registry/index.js';

const MIB = 1 << 20;

function setup(format: 'text' | 'json' = 'text') {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString()));
  let t = 0;
  const logger = createLogger({ format, level: 'info', timestamp: false, stream: out, now: () => new Date(t) });
  const view = progressLines(logger, { intervalMs: 5000, now: () => t });
  const report = (e: TransferProgress): void => view.update(transferEvent(e));
  return { report, advance: (ms: number) => { t += ms; vi.advanceTimersByTime(ms); }, lines: () => text.trim().split('\n').filter(Boolean) };
}

describe('progress reporter', () => {
  it('a 300 MB pull says how far it is every few seconds and how long it took', () => {
    vi.useFakeTimers();
    try {
      const p = setup();
      const e = { op: 'pull' as const, repository: 'r/app', digest: `sha256:${'ab'.repeat(32)}`, total: 300 * MIB };
      p.report({ ...e, done: 0 });
      for (let s = 1; s <= 20; s++) {
        p.advance(1000);
        p.report({ ...e, done: Math.min(e.total, s * 15 * MIB) });
      }
      const lines = p.lines();
      expect(lines.filter((l) => /pull abababababab \d+ MiB\/300 MiB \(\d+%\)/.test(l)).length).toBeGreaterThanOrEqual(3);
      expect(lines.at(-1)).toMatch(/pulled abababababab 300 MiB in 20\.0s \(15 MiB\/s\)/);
    } finally {
      vi.useRealTimers();
    }
  });

  it('small blobs make no progress lines; JSON progress lines carry the numbers', () => {
    vi.useFakeTimers();
    try {
      const p = setup('json');
      p.report({ op: 'push', repository: 'r/app', digest: `sha256:${'cd'.repeat(32)}`, done: 10, total: 1000 });
      p.advance(20_000);
      expect(p.lines()).toEqual([]);
      p.report({ op: 'push', repository: 'r/app', digest: `sha256:${'ef'.repeat(32)}`, done: MIB, total: 4 * MIB });
      p.advance(5000);
      const j = JSON.parse(p.lines()[0]!);
      expect(j.progress).toEqual([{ phase: 'push', id: `sha256:${'ef'.repeat(32)}`, bytes: MIB, total: 4 * MIB }]);
    } finally {
      vi.useRealTimers();
    }
  });
});
