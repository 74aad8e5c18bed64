// file:line in front of errors from lower folders (pulls, users, copies), once.
import { BuilderError } from '../errors.js';

/** A rejection handler that puts "file:line: " in front of a BuilderError's message, once (its class kept). */
export function at(where: string): (err: unknown) => never {
  return (err) => {
    if (err instanceof BuilderError && !err.message.startsWith(where)) {
      throw err.relocated(`${where}: ${err.message}`);
    }
    throw err;
  };
}
