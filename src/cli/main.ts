// argv -> typed options -> library call; the only module that reads process.*.
import { BuilderError } from '../errors.js';

export async function main(argv: string[]): Promise<void> {
  try {
    void argv;
    throw new BuilderError('NOT_IMPLEMENTED', 'the CLI is being assembled');
  } catch (err) {
    if (err instanceof BuilderError) {
      process.stderr.write(`builder: ${err.format()}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    throw err;
  }
}
