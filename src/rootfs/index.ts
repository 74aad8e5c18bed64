// Public surface of src/rootfs: the symlink-safe root handle and layer extraction.
export { RootFs, cleanPath, splitPath, MAX_SYMLINKS, type ResolveCache, type ResolveOptions, type MkdirOptions, type Resolved } from './rootfs.js';
export { extractLayer, type ExtractOptions, type ExtractResult } from './extract.js';
export { readTar, looksLikeTar, type TarEntry, type TarHeader, type TarEntryType } from './tar-reader.js';
export { readXattrs } from './xattr.js';
