// The registry client's events (retries, HTTP trace lines, warnings) through the same renderer as the build's: text, JSON fields, levels.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, type Level, type LogFormat } from '../../src/cli/logger.js';
import { createRenderer, eventLine, logLines } from '../../src/cli/render.js';
import type { BuildEvent } from '../../src/util/events.js';

function sink(format: LogFormat, level: Level = 'info') {
  let raw = '';
  const stream = new Writable({ write(c: Buffer, _e, cb) { raw += c.toString(); cb(); } });
  const logger = createLogger({ format, level, timestamp: false, stream, now: () => new Date(0) });
  return { logger, lines: () => raw.split('\n').filter(Boolean) };
}

const retry: BuildEvent = { type: 'retry', what: 'GET manifest r/app:1', code: 'REGISTRY_SERVER_ERROR', attempt: 1, of: 4, waitMs: 480 };
const http: BuildEvent = { type: 'http', method: 'GET', url: 'https://r.example/v2/', status: 401 };

describe('registry events rendered like build events', () => {
  it('a retry is a warning with its numbers in the text; JSON lines carry them as fields', () => {
    const text = sink('text');
    createRenderer(text.logger).emit(retry);
    expect(text.lines()).toEqual(['builder: warning: retrying GET manifest r/app:1 after REGISTRY_SERVER_ERROR in 480ms (retry 1 of 4)']);
    const json = sink('json');
    createRenderer(json.logger).emit(retry);
    expect(JSON.parse(json.lines()[0]!)).toEqual({
      level: 'warn', msg: 'retrying GET manifest r/app:1 after REGISTRY_SERVER_ERROR in 480ms (retry 1 of 4)', time: new Date(0).toISOString(),
      event: 'retry', what: 'GET manifest r/app:1', code: 'REGISTRY_SERVER_ERROR', attempt: 1, of: 4, waitMs: 480,
    });
  });

  it('HTTP exchanges and trace messages show only at trace level', () => {
    for (const [level, want] of [['info', []], ['trace', ['builder: trace: GET https://r.example/v2/ -> 401', 'builder: trace: r/app:1 resolved through mirror m']]] as const) {
      const s = sink('text', level);
      const r = createRenderer(s.logger);
      r.emit(http);
      r.emit({ type: 'message', level: 'trace', msg: 'r/app:1 resolved through mirror m' });
      expect(s.lines()).toEqual(want);
    }
  });

  it('logLines (a command without progress display): log-line events written, progress dropped', () => {
    const s = sink('text');
    const emit = logLines(s.logger);
    emit({ type: 'warning', msg: 'mirror m could not provide r/app:1' });
    emit({ type: 'progress', phase: 'pull', id: `sha256:${'ab'.repeat(32)}`, bytes: 1, total: 2, done: false });
    emit({ type: 'manifest-pushed', ref: 'r.example/app:1', digest: `sha256:${'cd'.repeat(32)}`, images: 2 });
    expect(s.lines()).toEqual([
      'builder: warning: mirror m could not provide r/app:1',
      `builder: pushed r.example/app:1@sha256:${'cd'.repeat(32)} (index of 2 images)`,
    ]);
  });

  it('a stage\'s typed reports read as the lines they replaced', () => {
    const text = (e: BuildEvent): string | undefined => eventLine(e)?.msg;
    expect(text({ type: 'stage-started', stage: 'stage 0 (build)', base: 'alpine:3', platform: 'linux/arm64' })).toBe('stage 0 (build): FROM alpine:3 --platform=linux/arm64');
    expect(text({ type: 'stage-started', stage: 'stage 1', base: 'scratch' })).toBe('stage 1: FROM scratch');
    expect(text({ type: 'base-extracting', stage: 'stage 0', layers: 1, downloaded: 1 })).toBe('stage 0: extracting 1 layer (1 downloaded, 0 from the local store)');
    expect(text({ type: 'base-cloned', stage: 'stage 0', how: 'overlay', layers: 3, seconds: 0.123, extracted: true }))
      .toBe('stage 0: base root (3 layers) mounted (overlay) on the extracted-base store (extracted into it first) in 0.12s');
    expect(text({ type: 'base-cloned', stage: 'stage 0', how: 'copy', layers: 1, seconds: 2, extracted: false })).toBe('stage 0: base root (1 layer) copied from the extracted-base store in 2.00s');
  });
});
