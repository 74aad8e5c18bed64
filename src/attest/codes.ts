// The codes src/attest throws: BuilderError's code is the union of every folder's table (src/errors.ts).

export const ATTEST_ERROR_CODES = [
  'ATTEST_PUSH_REFUSED', 'ATTEST_TAG_CONFLICT', 'IMAGE_NOT_FOUND', 'SIGN_KEY_UNREADABLE', 'SIGN_KEY_UNSUPPORTED',
  'VERIFY_KEY_UNREADABLE',
] as const;

export type AttestErrorCode = (typeof ATTEST_ERROR_CODES)[number];
