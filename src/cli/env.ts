// The process surroundings a command may use, passed in so library code never reads process.* itself.
import type { Readable, Writable } from 'node:stream';
import type { Logger } from './logger.js';

export interface CliEnv {
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Set by a command once its log flags are parsed: errors are then reported through it (JSON with --log-format json). */
  logger?: Logger;
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  /** Aborted on the first SIGINT/SIGTERM (reason: a BuilderError INTERRUPTED): commands stop, clean up and return. */
  signal?: AbortSignal;
}
