// The codes src/cache throws: BuilderError's code is the union of every folder's table (src/errors.ts).

export const CACHE_ERROR_CODES = ['CACHE_REPO_INVALID', 'CACHE_REPO_MISSING', 'CACHE_REPO_TOO_DEEP'] as const;

export type CacheErrorCode = (typeof CACHE_ERROR_CODES)[number];
