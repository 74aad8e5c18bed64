// The CLI's one log stream: events with a level, a message and fields, rendered as text, color or JSON lines (stderr).
import type { Writable } from 'node:stream';
import { BuilderError } from '../errors.js';

/** kaniko's (logrus) levels, most verbose first. */
export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'panic'] as const;
export type Level = (typeof LEVELS)[number];
export const LOG_FORMATS = ['text', 'color', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface LoggerOptions {
  format: LogFormat;
  /** Lowest level written (default info). */
  level: Level;
  /** Prefix text lines with the time (JSON lines always carry it). */
  timestamp: boolean;
  stream: Writable;
  now?: () => Date;
}

export interface Logger {
  readonly format: LogFormat;
  enabled(level: Level): boolean;
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
  /**
   * Adapter for RUN output chunks: split into lines; JSON mode wraps each in an event so every line parses. Shown at
   * info, or whatever the level with always (the output of a step that failed).
   */
  output(text: string, stream: 'stdout' | 'stderr', always?: boolean): void;
  /** Writes a half line of RUN output kept by output() (always: as output's). */
  flush(always?: boolean): void;
}

export function parseLevel(v: string | undefined, flag = '--verbosity'): Level {
  if (v === undefined) return 'info';
  const l = v.toLowerCase() === 'warning' ? 'warn' : v.toLowerCase();
  if (!(LEVELS as readonly string[]).includes(l)) {
    throw new BuilderError('FLAG_INVALID', `${flag}=${v} is not a log level`, { hint: `use one of ${LEVELS.join(', ')}` });
  }
  return l as Level;
}

export function parseLogFormat(v: string | undefined): LogFormat {
  if (v === undefined) return 'text';
  if (!(LOG_FORMATS as readonly string[]).includes(v)) {
    throw new BuilderError('FLAG_INVALID', `--log-format=${v} is not one of ${LOG_FORMATS.join(', ')}`, { hint: 'use text, color or json' });
  }
  return v as LogFormat;
}

const COLORS: Record<Level, string> = { trace: '90', debug: '90', info: '36', warn: '33', error: '31', fatal: '31', panic: '31' };

export function createLogger(opts: LoggerOptions): Logger {
  const min = LEVELS.indexOf(opts.level);
  const now = opts.now ?? (() => new Date());
  const pending: Record<'stdout' | 'stderr', string> = { stdout: '', stderr: '' };
  const enabled = (level: Level): boolean => LEVELS.indexOf(level) >= min;
  const write = (level: Level, msg: string, fields: Record<string, unknown> = {}): void => {
    if (opts.format === 'json') {
      opts.stream.write(`${JSON.stringify({ level, msg, time: now().toISOString(), ...fields })}\n`);
      return;
    }
    const ts = opts.timestamp ? `${now().toISOString()} ` : '';
    const tag = level === 'info' ? '' : `${level === 'warn' ? 'warning' : level}: `;
    const extra = Object.entries(fields).map(([k, v]) => ` ${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join('');
    const head = opts.format === 'color' && tag ? `\x1b[${COLORS[level]}m${tag}\x1b[0m` : tag;
    opts.stream.write(`${ts}builder: ${head}${msg}${extra}\n`);
  };
  const log = (level: Level, msg: string, fields?: Record<string, unknown>): void => {
    if (enabled(level)) write(level, msg, fields);
  };
  const emitRun = (line: string, stream: 'stdout' | 'stderr', always = false): void => {
    // RUN output is the build's own output: shown at info, never filtered by its content
    if (!always && !enabled('info')) return;
    if (opts.format === 'json') write('info', line, { source: 'run', stream });
    else opts.stream.write(`${opts.timestamp ? `${now().toISOString()} ` : ''}${line}\n`);
  };
  return {
    format: opts.format,
    enabled,
    log,
    output(text, stream, always) {
      const all = pending[stream] + text;
      const lines = all.split('\n');
      pending[stream] = lines.pop() ?? '';
      for (const l of lines) emitRun(l, stream, always);
    },
    flush(always) {
      for (const s of ['stdout', 'stderr'] as const) {
        if (pending[s]) emitRun(pending[s], s, always);
        pending[s] = '';
      }
    },
  };
}
