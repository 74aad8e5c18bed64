// Public surface of src/cache: the local content-addressed store of base images (documents and layers) and its warmer.
export { BlobStore, type BlobStoreOptions, type PutFileOptions, type PutOptions, type VerifyResult } from './blob-store.js';
export { remoteLayer } from './layers.js';
export { stepKey, instructionText, isCacheKey, CACHE_KEY_VERSION, type StepKeyInput } from './keys.js';
export {
  registryLayerCache, ociLayerCache, entryImage, readEntry, ANNOTATION as CACHE_ANNOTATION,
  type LayerCache, type CacheEntry, type LookupResult,
} from './layer-cache.js';
export { pruneLayerCache, type PruneResult } from './prune.js';
export { resolveImageCached, type ImageDocument, type ResolveCachedOptions } from './image-store.js';
export { dockerfileTargets, imageStore, warmImage, warmImages, type DockerfileTargetsOptions, type WarmOptions, type WarmResult, type WarmTarget } from './warm.js';
export { RootfsStore, copyTree, type RootfsStoreEntry } from './rootfs-store.js';
