// The codes src/reference throws: BuilderError's code is the union of every folder's table (src/errors.ts).

export const REFERENCE_ERROR_CODES = [
  'REFERENCE_INVALID',
] as const;

export type ReferenceErrorCode = (typeof REFERENCE_ERROR_CODES)[number];
