// The one error type every module throws: a stable code, a message saying what and where, and a hint saying what to do.

export interface BuilderErrorOptions {
  /** What the user can do about it, one sentence. */
  hint?: string;
  cause?: unknown;
  /** Process exit code when this error ends the CLI (default 1). */
  exitCode?: number;
}

export class BuilderError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly exitCode: number;

  constructor(code: string, message: string, opts: BuilderErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BuilderError';
    this.code = code;
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? 1;
  }

  /** One line for humans: "CODE: message (hint)". */
  format(): string {
    return `${this.code}: ${this.message}${this.hint ? `\n  hint: ${this.hint}` : ''}`;
  }
}

export function isBuilderError(err: unknown, code?: string): err is BuilderError {
  return err instanceof BuilderError && (code === undefined || err.code === code);
}
