// The one error type every module throws: a stable code, a message saying what and where, and a hint saying what to do.
import type { AttestErrorCode } from './attest/codes.js';
import type { CacheErrorCode } from './cache/codes.js';
import type { CliErrorCode } from './cli/codes.js';
import type { ContextErrorCode } from './context/codes.js';
import type { DigestErrorCode } from './digest/codes.js';
import type { DockerfileErrorCode } from './dockerfile/codes.js';
import type { ExecutorErrorCode } from './executor/codes.js';
import type { ImageErrorCode } from './image/codes.js';
import type { ReferenceErrorCode } from './reference/codes.js';
import type { RegistryErrorCode, RegistryOperationErrorCode } from './registry/codes.js';
import type { RootfsErrorCode } from './rootfs/codes.js';
import type { RunErrorCode } from './run/codes.js';
import type { SnapshotErrorCode } from './snapshot/codes.js';
import type { UtilErrorCode } from './util/codes.js';

/** Codes any folder may throw: a flag's bad value or absence, a build aborted by a failure elsewhere, a broken invariant. */
export const COMMON_ERROR_CODES = ['FLAG_INVALID', 'FLAG_MISSING', 'BUILD_ABORTED', 'BUILD_INTERNAL'] as const;

/** Every code a BuilderError may carry: each folder's table (src/<folder>/codes.ts) and the common ones. */
export type ErrorCode =
  | (typeof COMMON_ERROR_CODES)[number] | UtilErrorCode | DigestErrorCode | ReferenceErrorCode | ImageErrorCode | RegistryErrorCode
  | RegistryOperationErrorCode | DockerfileErrorCode | ContextErrorCode | RootfsErrorCode | SnapshotErrorCode | RunErrorCode
  | CacheErrorCode | AttestErrorCode | ExecutorErrorCode | CliErrorCode;

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
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly exitCode: number;
  readonly file: string | undefined;
  readonly line: number | undefined;

  constructor(code: ErrorCode, message: string, opts: BuilderErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BuilderError';
    this.code = code;
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? 1;
    this.file = opts.file;
    this.line = opts.line;
  }

  /**
   * This error told with another message, at file:line or at no place: a copy of the same class (a RegistryError keeps
   * its status and Retry-After), code, hint and exit code, with this error as its cause.
   */
  relocated(message: string, at: { file?: string; line?: number } = {}): this {
    const copy = Object.assign(Object.create(Object.getPrototypeOf(this) as object) as this, this, { file: at.file, line: at.line });
    Object.defineProperties(copy, {
      message: { value: message, writable: true, configurable: true },
      cause: { value: this, writable: true, configurable: true },
    });
    Error.captureStackTrace(copy, BuilderError.prototype.relocated);
    return copy;
  }

  /** One line for humans: "CODE: message (hint)". */
  format(): string {
    return `${this.code}: ${this.message}${this.hint ? `\n  hint: ${this.hint}` : ''}`;
  }
}

/** Whether err is a BuilderError (with that code, or one of those codes, when given). */
export function isBuilderError(err: unknown, code?: ErrorCode | readonly ErrorCode[]): err is BuilderError {
  if (!(err instanceof BuilderError)) return false;
  return code === undefined || (typeof code === 'string' ? err.code === code : code.includes(err.code));
}

/**
 * The error located at file:line (fields for JSON logs), with "file:line: " in front of its message once (prefix false:
 * the message is kept as it is). An error already located, or not a BuilderError, is returned as it is.
 */
export function locateError(err: unknown, file: string, line: number, prefix = true): unknown {
  if (!(err instanceof BuilderError) || err.file !== undefined) return err;
  const message = !prefix || err.message.startsWith(`${file}:`) ? err.message : `${file}:${line}: ${err.message}`;
  return err.relocated(message, { file, line });
}
