// The Digest type and streaming sha256: hashing and verifying bytes as they flow, never buffering them.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { BuilderError } from '../errors.js';

export type Digest = `sha256:${string}`;

export { DIGEST_ERROR_CODES, type DigestErrorCode } from './codes.js';

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function isDigest(s: string): s is Digest {
  return DIGEST_RE.test(s);
}

export function parseDigest(s: string, where = 'digest'): Digest {
  if (!isDigest(s)) {
    throw new BuilderError('DIGEST_INVALID', `${where}: "${s}" is not a sha256 digest`, {
      hint: 'a digest looks like sha256: followed by 64 lowercase hex characters',
    });
  }
  return s;
}

export function sha256(data: string | Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Hex part of a digest, e.g. for blob file names. */
export function digestHex(d: Digest): string {
  return d.slice('sha256:'.length);
}

/** A pass-through stream that hashes and counts what flows through it. */
export class HashingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private count = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.count += chunk.length;
    cb(null, chunk);
  }

  /** Valid after the stream has ended. */
  result(): { digest: Digest; size: number } {
    return { digest: `sha256:${this.hash.copy().digest('hex')}`, size: this.count };
  }
}

/**
 * A pass-through stream that fails (DIGEST_MISMATCH / SIZE_MISMATCH) at end if the bytes do not
 * match the expected digest and size; too many bytes fail as soon as they arrive.
 */
export class VerifyingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private count = 0;

  constructor(
    private readonly expected: Digest,
    private readonly expectedSize: number | undefined,
    private readonly what: string,
  ) {
    super();
    // a failure before the consumer attaches (it is still checking its cache) must not be an unhandled 'error'
    // event that kills the process: the stream stays errored and pipeline/for-await report it to the reader
    this.on('error', () => undefined);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.count += chunk.length;
    if (this.expectedSize !== undefined && this.count > this.expectedSize) {
      cb(sizeMismatch(this.what, this.expectedSize, this.count, true));
      return;
    }
    this.hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.expectedSize !== undefined && this.count !== this.expectedSize) {
      cb(sizeMismatch(this.what, this.expectedSize, this.count, false));
      return;
    }
    const got: Digest = `sha256:${this.hash.digest('hex')}`;
    if (got !== this.expected) {
      cb(new BuilderError('DIGEST_MISMATCH', `${this.what}: content has digest ${got}, expected ${this.expected}`, {
        hint: 'the blob is corrupt or was tampered with; retry, and if it persists remove the cached copy or re-push the source image',
      }));
      return;
    }
    cb();
  }
}

function sizeMismatch(what: string, expected: number, got: number, atLeast: boolean): BuilderError {
  return new BuilderError('SIZE_MISMATCH', `${what}: got ${atLeast ? 'more than ' : ''}${atLeast ? expected : got} bytes, expected ${expected}`, {
    hint: 'the blob is truncated or corrupt; retry, and if it persists re-push the source image',
  });
}

/**
 * src piped through a VerifyingStream. A failure of src reaches the result as a BuilderError: src's own
 * BuilderError as is, anything else through `typed` (default BLOB_READ_FAILED), so consumers see typed errors only.
 */
export function verified(
  src: Readable,
  expected: Digest,
  expectedSize: number | undefined,
  what: string,
  typed: (err: unknown) => BuilderError = (err) => new BuilderError('BLOB_READ_FAILED', `${what}: reading failed: ${(err as Error)?.message ?? String(err)}`, {
    hint: 'check the source of the blob and retry', cause: err,
  }),
): VerifyingStream {
  const v = new VerifyingStream(expected, expectedSize, what);
  src.on('error', (err) => v.destroy(err instanceof BuilderError ? err : typed(err)));
  // a consumer that stops early must not leave src (a socket, a file) open
  v.on('close', () => {
    if (!src.destroyed) src.destroy();
  });
  return src.pipe(v);
}
