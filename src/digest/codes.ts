// The codes src/digest throws: BuilderError's code is the union of every folder's table (src/errors.ts).

/**
 * Mismatches are retryable: bytes that came over a network may be right next time (a local copy that is corrupt
 * fails the same way again, which the retry budget bounds).
 */
export const DIGEST_ERROR_CODES = {
  DIGEST_INVALID: { retryable: false },
  DIGEST_MISMATCH: { retryable: true },
  SIZE_MISMATCH: { retryable: true },
  BLOB_READ_FAILED: { retryable: false },
} as const satisfies Record<string, { retryable: boolean }>;

export type DigestErrorCode = keyof typeof DIGEST_ERROR_CODES;
