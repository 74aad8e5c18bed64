// Public surface of src/cache: the local content-addressed blob store and the layers it backs.
export { BlobStore, type BlobStoreOptions, type PutFileOptions } from './blob-store.js';
export { remoteLayer } from './layers.js';
