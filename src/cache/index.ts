// Public surface of src/cache: the local content-addressed blob store (registry layer cache and keys come later).
export { BlobStore, type BlobStoreOptions, type PutFileOptions } from './blob-store.js';
