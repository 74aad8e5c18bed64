// The codes src/cli throws: BuilderError's code is the union of every folder's table (src/errors.ts).

export const CLI_ERROR_CODES = [
  'ATTESTATION_NOT_FOUND', 'CLEANUP_INCOMPLETE', 'FLAG_CONFLICT', 'INTERRUPTED', 'UNKNOWN_COMMAND', 'VERIFY_FAILED',
] as const;

export type CliErrorCode = (typeof CLI_ERROR_CODES)[number];
