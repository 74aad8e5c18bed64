// Public surface of src/store: the --cache-dir store of base images (documents and layers by digest, extracted bases)
// laid out by CacheDir, the leases that keep a running build's entries from prune, and the warmer that fills it.
export { CacheDir } from './cache-dir.js';
export { BlobStore, type BlobStoreOptions, type PutFileOptions, type PutOptions, type VerifyResult } from './blob-store.js';
export { remoteLayer } from './layers.js';
export { resolveImageCached, type ImageDocument, type ResolveCachedOptions } from './image-store.js';
export { dockerfileTargets, warmImage, warmImages, type DockerfileTargetsOptions, type WarmOptions, type WarmResult, type WarmTarget } from './warm.js';
export { RootfsStore, copyTree, type RootfsStoreEntry, type StoreHost } from './rootfs-store.js';
