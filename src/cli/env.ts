// The process surroundings a command may use, passed in so library code never reads process.* itself.
import type { Readable, Writable } from 'node:stream';

export interface CliEnv {
  env: NodeJS.ProcessEnv;
  cwd: string;
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  /** Aborted on the first SIGINT/SIGTERM (reason: a BuilderError INTERRUPTED): commands stop, clean up and return. */
  signal?: AbortSignal;
}
