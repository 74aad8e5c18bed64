// The codes src/util throws: BuilderError's code is the union of every folder's table (src/errors.ts).

export const UTIL_ERROR_CODES = [
  'ZSTD_FAILED', 'ZSTD_UNAVAILABLE',
] as const;

export type UtilErrorCode = (typeof UTIL_ERROR_CODES)[number];
