// The codes src/snapshot throws: BuilderError's code is the union of every folder's table (src/errors.ts).

export const SNAPSHOT_ERROR_CODES = [
  'SNAPSHOT_FILE_CHANGED', 'SNAPSHOT_OPTION_INVALID', 'SNAPSHOT_PATH_INVALID', 'SNAPSHOT_PATH_MISSING',
  'SNAPSHOT_READ_FAILED', 'SNAPSHOT_ROOT_MISSING', 'SNAPSHOT_SQUASH_FAILED', 'SNAPSHOT_WALK_FAILED',
  'SNAPSHOT_WRITE_FAILED',
] as const;

export type SnapshotErrorCode = (typeof SNAPSHOT_ERROR_CODES)[number];
