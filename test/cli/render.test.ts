// The CLI's rendering of build events: live progress on a terminal, periodic lines in CI logs, JSON lines, the summary.
import { Writable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { createLogger, type LogFormat } from '../../src/cli/logger.js';
import { createRenderer, summaryLine } from '../../src/cli/render.js';
import type { BuildEvent, BuildSummary } from '../../src/util/events.js';

const MIB = 1 << 20;

/** A stream that records raw writes and, like a terminal, applies "cursor up + erase line" to what is on screen. */
class FakeTerminal extends Writable {
  raw = '';
  readonly isTTY: boolean;
  constructor(tty: boolean, readonly columns = 80) {
    super();
    this.isTTY = tty;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.raw += chunk.toString();
    cb();
  }
  /** The lines left on screen. */
  screen(): string[] {
    const lines: string[] = [];
    for (const part of this.raw.split(/(\x1b\[1A\x1b\[2K)/)) {
      if (part === '\x1b[1A\x1b[2K') lines.pop();
      else lines.push(...part.split('\n').slice(0, -1));
    }
    return lines;
  }
}

function setup(o: { format?: LogFormat; tty?: boolean; columns?: number } = {}) {
  vi.useFakeTimers();
  let t = 0;
  const term = new FakeTerminal(o.tty === true, o.columns);
  const logger = createLogger({ format: o.format ?? 'text', level: 'info', timestamp: false, stream: term, now: () => new Date(t) });
  const r = createRenderer(logger, { intervalMs: 5000, now: () => t, ...(o.tty ? { live: term } : {}) });
  return { term, r, advance: (ms: number) => { t += ms; vi.advanceTimersByTime(ms); } };
}

const summary: BuildSummary = {
  digest: `sha256:${'12'.repeat(32)}`, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 3 * MIB, layers: 3,
  layersBuilt: 1, layersCached: 1, bytesDown: 2 * MIB, bytesUp: MIB, pushed: ['reg/app:v1'], seconds: 4.2,
  phases: { pull: 1.5, steps: 2, snapshot: 0.5, push: 0.7 },
};

describe('event renderer', () => {
  it('a terminal gets one live line per long operation, rewritten in place, with log lines above it and nothing left at the end', () => {
    const { term, r, advance } = setup({ tty: true });
    try {
      const big = (bytes: number, done = false): BuildEvent => ({ type: 'progress', phase: 'compress', id: '[2/3]', bytes, total: 300 * MIB, done });
      r.emit({ type: 'step', status: 'started', step: '[2/3]', instruction: 'RUN make' });
      r.emit(big(0));
      advance(1000);
      r.emit(big(30 * MIB));
      advance(1000);
      expect(term.screen().at(-1)).toBe('compress [2/3] 30 MiB/300 MiB (10%)');
      r.emit({ type: 'message', level: 'info', msg: 'between' });
      r.emit(big(150 * MIB));
      advance(1000);
      // the message scrolled above the live line, and the line was redrawn, not repeated
      expect(term.screen()).toEqual(['builder: [2/3] RUN make', 'builder: between', 'compress [2/3] 150 MiB/300 MiB (50%)']);
      expect(term.raw.split('compress [2/3]').length - 1).toBeGreaterThanOrEqual(3);
      r.emit(big(300 * MIB, true));
      r.emit({ type: 'summary', summary });
      r.close();
      expect(term.screen()).toEqual(['builder: [2/3] RUN make', 'builder: between', `builder: ${summaryLine(summary)}`]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a line written meanwhile through the renderer\'s logger (a registry warning, a retry) scrolls above the live line instead of breaking it', () => {
    const { term, r, advance } = setup({ tty: true });
    try {
      r.emit({ type: 'progress', phase: 'pull', id: `sha256:${'ab'.repeat(32)}`, bytes: 2 * MIB, total: 40 * MIB, done: false });
      advance(1000);
      r.logger.log('warn', 'retrying GET');
      r.logger.log('info', 'plain line');
      advance(1000);
      expect(term.screen()).toEqual(['builder: warning: retrying GET', 'builder: plain line', 'pull abababababab 2.0 MiB/40 MiB (5%)']);
      r.close();
      expect(term.screen()).toEqual(['builder: warning: retrying GET', 'builder: plain line']);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a live line longer than the terminal is cut to its width (a wrapped line would leave a stray row when erased)', () => {
    const { term, r, advance } = setup({ tty: true, columns: 30 });
    try {
      r.emit({ type: 'progress', phase: 'pull', id: `sha256:${'ab'.repeat(32)}`, bytes: 12 * MIB, total: 300 * MIB, done: false });
      advance(1000);
      expect(term.screen()).toHaveLength(1);
      expect(term.screen()[0]!.length).toBeLessThanOrEqual(29);
      r.close();
      expect(term.screen()).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('not a terminal: a 300 MB compression and a slow snapshot walk give a line every few seconds, not 20 s of silence', () => {
    const { term, r, advance } = setup();
    try {
      r.emit({ type: 'progress', phase: 'snapshot', id: '[2/3]', bytes: 0, done: false });
      advance(12_000);
      r.emit({ type: 'progress', phase: 'snapshot', id: '[2/3]', bytes: 0, done: true });
      for (let s = 0; s <= 20; s++) {
        r.emit({ type: 'progress', phase: 'compress', id: '[2/3]', bytes: s * 15 * MIB, total: 300 * MIB, done: s === 20 });
        advance(1000);
      }
      r.close();
      const lines = term.screen();
      expect(lines.filter((l) => /^builder: snapshot \[2\/3\] \d+s$/.test(l)).length).toBeGreaterThanOrEqual(2);
      expect(lines.filter((l) => /^builder: compress \[2\/3\] \d+ MiB\/300 MiB \(\d+%\)$/.test(l)).length).toBeGreaterThanOrEqual(3);
      // no cursor movement in a CI log
      expect(term.raw).not.toContain('\x1b[');
    } finally {
      vi.useRealTimers();
    }
  });

  it('JSON: every line parses and carries level, msg, time and the event\'s fields (steps, progress, summary, RUN output)', () => {
    const { term, r, advance } = setup({ format: 'json' });
    try {
      r.emit({ type: 'step', status: 'started', step: '[1/2]', instruction: 'RUN echo hi' });
      r.output('hi\nhalf', 'stdout');
      r.emit({ type: 'progress', phase: 'push', id: `sha256:${'cd'.repeat(32)}`, bytes: 2 * MIB, total: 4 * MIB, done: false });
      advance(5000);
      r.emit({ type: 'step', status: 'finished', step: '[1/2]', instruction: 'RUN echo hi', ms: 1234, layer: { digest: `sha256:${'ef'.repeat(32)}`, size: 99 } });
      r.emit({ type: 'warning', msg: 'careful' });
      r.emit({ type: 'step', status: 'cached', step: '[2/2]', instruction: 'COPY a /a' });
      r.emit({ type: 'summary', summary });
      r.close();
      const events = term.raw.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      for (const e of events) expect(Object.keys(e).slice(0, 3)).toEqual(['level', 'msg', 'time']);
      expect(events.map((e) => e.event ?? e.source ?? (e.progress ? 'progress' : e.level))).toEqual(['step', 'run', 'progress', 'step', 'warn', 'step', 'summary', 'run']);
      expect(events[0]).toMatchObject({ level: 'info', msg: '[1/2] RUN echo hi', status: 'started', step: '[1/2]', instruction: 'RUN echo hi' });
      expect(events[2]!.progress).toEqual([{ phase: 'push', id: `sha256:${'cd'.repeat(32)}`, bytes: 2 * MIB, total: 4 * MIB }]);
      expect(events[3]).toMatchObject({ status: 'finished', ms: 1234, layer: { size: 99 } });
      expect(events[5]).toMatchObject({ msg: '[2/2] COPY a /a (cached no change)', status: 'cached' });
      expect(events[6]).toMatchObject({ level: 'info', summary });
      expect(events[7]).toMatchObject({ msg: 'half', stream: 'stdout' });
    } finally {
      vi.useRealTimers();
    }
  });

  it('the summary line names digest, size, layers built and cached, bytes both ways and time per phase', () => {
    expect(summaryLine(summary)).toBe(
      `done in 4.2s: sha256:${'12'.repeat(32)}, 3 layers (1 built, 1 from the cache), 3.0 MiB; down 2.0 MiB, up 1.0 MiB; `
      + 'pull 1.5s, steps 2.0s, snapshot 0.5s, push 0.7s; pushed to reg/app:v1',
    );
  });
});

describe('RUN output above info (--verbosity warn/error)', () => {
  const step = (status: 'started' | 'finished' | 'failed', n: number): BuildEvent => ({ type: 'step', status, step: `[${n}/3]`, instruction: `RUN step${n}` });

  it('is held while steps run, dropped when they pass, and shown (with a half line) when one fails', () => {
    const term = new FakeTerminal(false);
    const logger = createLogger({ format: 'text', level: 'error', timestamp: false, stream: term });
    const r = createRenderer(logger);
    r.emit(step('started', 1));
    r.output('passing output\n', 'stdout');
    r.emit(step('finished', 1));
    r.emit(step('started', 2));
    r.output('line one\nhalf', 'stdout');
    r.output('to stderr\n', 'stderr');
    r.emit(step('failed', 2));
    r.close();
    expect(term.screen()).toEqual(['builder: error: [2/3] RUN step2 failed; its output (hidden by the log level):', 'line one', 'to stderr', 'half']);
  });

  it('shows nothing extra at info: the output went through as it came', () => {
    const term = new FakeTerminal(false);
    const r = createRenderer(createLogger({ format: 'text', level: 'info', timestamp: false, stream: term }));
    r.emit(step('started', 1));
    r.output('live\n', 'stdout');
    r.emit(step('failed', 1));
    r.close();
    expect(term.screen().filter((l) => l.includes('live') || l.includes('its output'))).toEqual(['live']);
  });
});
