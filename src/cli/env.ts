// The process surroundings a command may use, passed in so library code never reads process.* itself.
import type { Readable, Writable } from 'node:stream';

export interface CliEnv {
  env: NodeJS.ProcessEnv;
  cwd: string;
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
}
