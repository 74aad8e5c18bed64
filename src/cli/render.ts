// The CLI's renderer of the library's events: log lines (text, color, JSON with the event's fields), progress (live on
// a terminal, periodic lines otherwise) and the final summary.
import type { Writable } from 'node:stream';
import type { BuildEvent, BuildSummary, EventSink } from '../util/events.js';
import { formatBytes } from '../util/bytes.js';
import type { Level, Logger } from './logger.js';
import { liveProgress, progressLines, type ProgressView } from './progress.js';

export interface Renderer {
  emit: EventSink;
  /** The logger to use for everything else written meanwhile (a command's own lines, signals): it erases live lines first. */
  logger: Logger;
  /** RUN output, through the same stream (a live progress block is erased first). */
  output(text: string, stream: 'stdout' | 'stderr'): void;
  /** Ends progress (erasing live lines) and writes a half line of RUN output still held. */
  close(): void;
}

export interface RendererOptions {
  /** Where live progress is drawn: the log stream when it is a terminal and the format is not JSON. */
  live?: Writable & { columns?: number };
  /** Period of progress lines when not live (BUILDER_PROGRESS_INTERVAL_MS, default 5000). */
  intervalMs?: number;
  now?: () => number;
}

const seconds = (s: number): string => `${s.toFixed(1)}s`;

/** "done in 12.3s: sha256:…, 5 layers (2 built, 1 from the cache), 30.1 MiB; down 3.0 MiB, up 30.1 MiB; pull 1.2s, steps 8.0s, snapshot 0.6s, push 1.1s". */
export function summaryLine(s: BuildSummary): string {
  const p = s.phases;
  return `done in ${seconds(s.seconds)}: ${s.digest}, ${s.layers} layers (${s.layersBuilt} built, ${s.layersCached} from the cache), ${formatBytes(s.size)}`
    + (s.images ? ` in ${s.images.length} images (${s.images.map((i) => `${i.platform} ${i.digest}, ${i.layers} layers`).join('; ')})` : '')
    + `; down ${formatBytes(s.bytesDown)}, up ${formatBytes(s.bytesUp)}`
    + `; pull ${seconds(p.pull)}, steps ${seconds(p.steps)}, snapshot ${seconds(p.snapshot)}, push ${seconds(p.push)}`
    + (s.pushed.length ? `; pushed to ${s.pushed.join(', ')}` : '');
}

/** One log line: its level, its text, and the fields a JSON line carries besides level, msg and time. */
export interface EventLine {
  level: Level;
  msg: string;
  fields?: Record<string, unknown>;
}

/** "retrying GET manifest app:1 after REGISTRY_SERVER_ERROR in 480ms (retry 1 of 4)". */
const retryText = (e: Extract<BuildEvent, { type: 'retry' }>): string => `retrying ${e.what} after ${e.code} in ${e.waitMs}ms (retry ${e.attempt} of ${e.of})`;

/** The line of an event that is a plain log line (messages, warnings, the registry's retries and pushes); undefined for steps, progress and the summary. */
export function eventLine(e: BuildEvent): EventLine | undefined {
  switch (e.type) {
    case 'message':
      return { level: e.level, msg: e.msg };
    case 'warning':
      return { level: 'warn', msg: e.msg };
    case 'retry': {
      // retries are worth seeing without --verbose: they explain a slow push on a flaky network (JSON: with their numbers)
      const { type: _t, ...notice } = e;
      return { level: 'warn', msg: retryText(e), fields: { event: 'retry', ...notice } };
    }
    case 'http':
      return { level: 'trace', msg: `${e.method} ${e.url} -> ${e.status}` };
    case 'blobs-pushed':
      return { level: 'info', msg: `pushed blobs to ${e.repository}: ${e.blobs.uploaded} uploaded, ${e.blobs.mounted} mounted, ${e.blobs.exists} already there` };
    case 'manifest-pushed':
      return { level: 'info', msg: `pushed ${e.ref}@${e.digest}${e.images !== undefined ? ` (index of ${e.images} images)` : ''}` };
    case 'image-copied':
      return { level: 'info', msg: `copied ${e.from} into ${e.into}` };
    case 'blob-copied':
      return { level: 'debug', msg: `blob ${e.digest} (${e.size} bytes): ${e.result}` };
    default:
      return buildLine(e);
  }
}

const short = (digest: string): string => digest.slice(7, 19);
const secs2 = (ms: number): string => `${(ms / 1000).toFixed(2)}s`;

/** The lines of the build's typed reports (bases, snapshots, images, outputs, attestations). */
function buildLine(e: BuildEvent): EventLine | undefined {
  const info = (msg: string): EventLine => ({ level: 'info', msg });
  const layers = (n: number): string => `${n} layer${n === 1 ? '' : 's'}`;
  switch (e.type) {
    case 'stage-started':
      return info(`${e.stage}: FROM ${e.base}${e.platform ? ` --platform=${e.platform}` : ''}`);
    case 'base-extracting':
      return info(`${e.stage}: extracting ${layers(e.layers)} (${e.downloaded} downloaded, ${e.layers - e.downloaded} from the local store)`);
    case 'base-cloned':
      return info(`${e.stage}: base root (${layers(e.layers)}) ${e.how === 'overlay' ? 'mounted (overlay) on' : 'copied from'} the extracted-base store${e.extracted ? ' (extracted into it first)' : ''} in ${e.seconds.toFixed(2)}s`);
    case 'base-resolved':
      return info(`base ${e.ref}@${e.digest}: ${e.layers} layers`);
    case 'changes-found':
      return info(`${e.step} snapshot: ${e.changes} changes found in ${secs2(e.ms)}`);
    case 'layer-written':
      return info(`${e.step} snapshot: layer ${short(e.digest)} ${formatBytes(e.size)} (${e.entries} entries) in ${secs2(e.ms)}`);
    case 'layers-merged':
      return info(`single snapshot: ${e.layers} layers merged into ${short(e.digest)} (${e.size} bytes)`);
    case 'image-built':
      return info(`image ${e.digest} (${e.mediaType}, ${e.layers} layers${e.platform ? `, ${e.platform}` : ''})`);
    case 'index-built':
      return info(`index ${e.digest} (${e.mediaType}, ${e.platforms} platforms)`);
    case 'output-written':
      return info(e.kind === 'oci-layout' ? `wrote OCI layout ${e.path}` : `wrote ${e.kind === 'docker-archive' ? 'docker-archive' : 'OCI + docker-archive'} ${e.path}`);
    case 'sbom-made':
      return info(`SBOM: ${e.packages} packages in ${e.layers} layers (${e.ms} ms)`);
    case 'referrers-attached':
      return info(`attached ${e.count} referrer${e.count === 1 ? '' : 's'} to ${e.repository}@${e.subject} (${e.tag === undefined ? 'referrers API' : `referrers tag ${e.tag}`})${e.signature ? ' and the cosign signature tag' : ''}`);
    default:
      return undefined;
  }
}

/** Writes the events that are log lines through `logger` (JSON lines with their fields); progress and the rest are dropped. */
export function logLines(logger: Logger): EventSink {
  return (e) => {
    const line = eventLine(e);
    if (line) logger.log(line.level, line.msg, logger.format === 'json' ? line.fields : undefined);
  };
}

/** The most RUN output held back per build while the level hides it (the tail is what explains a failure). */
const HELD_MAX = 1 << 20;

/**
 * When the level hides RUN output (--verbosity warn or above): hold it while steps run, and show it if a step fails
 * (the error then points at it, as kaniko, which always shows RUN output). Parallel stages share the one buffer,
 * cleared whenever no step is running.
 */
function heldOutput(logger: Logger): { add(text: string, stream: 'stdout' | 'stderr'): void; step(status: string, what: string): void } | undefined {
  if (logger.enabled('info')) return undefined;
  let chunks: Array<{ text: string; stream: 'stdout' | 'stderr' }> = [];
  let bytes = 0;
  let dropped = 0;
  let running = 0;
  return {
    add(text, stream) {
      chunks.push({ text, stream });
      bytes += text.length;
      while (bytes > HELD_MAX && chunks.length > 1) {
        const c = chunks.shift()!;
        bytes -= c.text.length;
        dropped += c.text.length;
      }
    },
    step(status, what) {
      if (status === 'started') running++;
      if (status !== 'finished' && status !== 'failed') return;
      running = Math.max(0, running - 1);
      if (status === 'failed' && chunks.length > 0) {
        logger.log('error', `${what} failed; its output (hidden by the log level)${dropped ? `, the last ${HELD_MAX >> 20} MiB` : ''}:`);
        for (const c of chunks) logger.output(c.text, c.stream, true);
        logger.flush(true);
      }
      if (running === 0 || status === 'failed') {
        chunks = [];
        bytes = 0;
        dropped = 0;
      }
    },
  };
}

export function createRenderer(logger: Logger, opts: RendererOptions = {}): Renderer {
  const json = logger.format === 'json';
  const showProgress = logger.enabled('info');
  const live = opts.live && !json ? liveProgress(opts.live, opts.now ? { now: opts.now } : {}) : undefined;
  const view: ProgressView = live ?? progressLines(logger, { ...(opts.intervalMs ? { intervalMs: opts.intervalMs } : {}), ...(opts.now ? { now: opts.now } : {}) });
  // JSON lines carry the event's own fields next to level, msg and time.
  const fields = (f: Record<string, unknown>): Record<string, unknown> => (json ? f : {});
  const log: Logger['log'] = (level, msg, f) => {
    live?.clear();
    logger.log(level, msg, f);
  };
  const held = heldOutput(logger);
  const wrapped: Logger = {
    ...logger,
    log,
    output: (text, stream) => {
      live?.clear();
      if (held) held.add(text, stream);
      else logger.output(text, stream);
    },
  };
  const emit = (e: BuildEvent): void => {
    switch (e.type) {
      case 'step': {
        held?.step(e.status, `${e.step} ${e.instruction}`);
        const { type: _t, ...f } = e;
        if (e.status === 'started') log('info', `${e.step} ${e.instruction}`, fields({ event: 'step', ...f }));
        else if (e.status === 'cached') log('info', `${e.step} ${e.instruction} (cached ${e.layer ? `layer ${short(e.layer.digest)}` : 'no change'})`, fields({ event: 'step', ...f }));
        // The text log already has the step's snapshot line; JSON readers get the timing as its own event.
        else if (e.status === 'failed') log(json ? 'info' : 'debug', `${e.step} failed after ${secs2(e.ms ?? 0)}`, fields({ event: 'step', ...f }));
        else log(json ? 'info' : 'debug', `${e.step} finished in ${secs2(e.ms ?? 0)}`, fields({ event: 'step', ...f }));
        return;
      }
      case 'progress':
        if (showProgress) view.update(e);
        return;
      case 'summary':
        log('info', summaryLine(e.summary), fields({ event: 'summary', summary: e.summary }));
        return;
      default: {
        const line = eventLine(e);
        // a registry's trace lines come by the hundred: one the level hides must not erase the live progress either
        if (line && (line.level !== 'trace' || logger.enabled('trace'))) log(line.level, line.msg, fields(line.fields ?? {}));
      }
    }
  };
  return {
    emit,
    logger: wrapped,
    output: wrapped.output,
    close() {
      view.close();
      logger.flush();
    },
  };
}
