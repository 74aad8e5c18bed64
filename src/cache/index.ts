// Public surface of src/cache: the --cache step cache (keys, entries in a registry repository or an OCI layout, the
// build's view of it, prune) and the RUN --mount=type=cache directories. The --cache-dir store of bases is src/store.
export { stepKey, instructionText, isCacheKey, CACHE_KEY_VERSION, type StepKeyInput } from './keys.js';
export {
  registryLayerCache, ociLayerCache, entryImage, readEntry, ANNOTATION as CACHE_ANNOTATION,
  type LayerCache, type CacheEntry, type LookupResult,
} from './layer-cache.js';
export { pruneLayerCache, type PruneResult } from './prune.js';
export { BuildCache, cacheRepository, type BuildCacheOptions } from './build-cache.js';
export { RunCache, lockCache, LOCK_STALE_MS, type CacheMountSpec } from './run-cache.js';
