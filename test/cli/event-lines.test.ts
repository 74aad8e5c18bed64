// The registry client's events (retries, HTTP trace lines, warnings) through the same renderer as the build's: text, JSON fields, levels.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, type Level, type LogFormat } from '../../src/cli/logger.js';
import { createRenderer, logLines } from '../../src/cli/render.js';
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
});
