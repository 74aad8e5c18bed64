// The codes src/cache throws: BuilderError's code is the union of every folder's table (src/errors.ts).

/** The blob store's own failures: a pull may go on without storing (or reading) the blob. */
export const BLOB_STORE_ERROR_CODES = ['BLOB_STORE_CORRUPT', 'BLOB_STORE_MISSING', 'BLOB_STORE_READ_FAILED', 'BLOB_STORE_WRITE_FAILED'] as const;

/** The extracted-base store's failures (src/executor's root throws the last two): a stage may extract its base instead. */
export const ROOTFS_STORE_ERROR_CODES = ['ROOTFS_STORE_READ_FAILED', 'ROOTFS_STORE_WRITE_FAILED', 'ROOTFS_STORE_FULL', 'ROOTFS_STORE_ENTRY_VANISHED'] as const;

export const CACHE_ERROR_CODES = [...BLOB_STORE_ERROR_CODES, ...ROOTFS_STORE_ERROR_CODES, 'WARM_FAILED', 'WARM_NO_IMAGES', 'WARM_RECORD_FAILED'] as const;

export type CacheErrorCode = (typeof CACHE_ERROR_CODES)[number];
