// The one error type every module throws: a stable code, a message saying what and where, and a hint saying what to do.

export interface BuilderErrorOptions {
  /** What the user can do about it, one sentence. */
  hint?: string;
  cause?: unknown;
  /** Process exit code when this error ends the CLI (default 1). */
  exitCode?: number;
  /** The Dockerfile (as the user named it) and 1-based line the error is about, when it is about one. */
  file?: string;
  line?: number;
}

export class BuilderError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly exitCode: number;
  readonly file: string | undefined;
  readonly line: number | undefined;

  constructor(code: string, message: string, opts: BuilderErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BuilderError';
    this.code = code;
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? 1;
    this.file = opts.file;
    this.line = opts.line;
  }

  /** One line for humans: "CODE: message (hint)". */
  format(): string {
    return `${this.code}: ${this.message}${this.hint ? `\n  hint: ${this.hint}` : ''}`;
  }
}

export function isBuilderError(err: unknown, code?: string): err is BuilderError {
  return err instanceof BuilderError && (code === undefined || err.code === code);
}

/**
 * The error located at file:line (fields for JSON logs), with "file:line: " in front of its message once (prefix false:
 * the message is kept as it is). An error already located, or not a BuilderError, is returned as it is.
 */
export function locateError(err: unknown, file: string, line: number, prefix = true): unknown {
  if (!(err instanceof BuilderError) || err.file !== undefined) return err;
  const message = !prefix || err.message.startsWith(`${file}:`) ? err.message : `${file}:${line}: ${err.message}`;
  return new BuilderError(err.code, message, { ...(err.hint ? { hint: err.hint } : {}), cause: err, exitCode: err.exitCode, file, line });
}
