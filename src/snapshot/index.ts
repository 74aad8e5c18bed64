// Public surface of src/snapshot: index a root, diff two indexes, write a layer from the changes.
//
// Paths: root-relative POSIX, no leading "/" or "./", no trailing "/" ("etc/passwd" is /etc/passwd);
// the root itself is never an entry. Tar names use the same form (directories end in "/").
// Flow per RUN:  before = indexTree(root, {exclude}); run; after = indexTree(root, {exclude});
//   changes = diffIndexes(before, after); if (isEmpty(changes)) -> no layer (history empty_layer);
//   else writeLayer(root, toLayerEntries(changes, after), tmpFile, {compressionLevel, mtime}).
// COPY/ADD/WORKDIR: writeLayer(root, await entriesForPaths(root, touchedPaths), tmpFile, opts).
// Decisions: gzip level 1 by default (kaniko via go-containerregistry uses gzip.BestSpeed), deflated in parallel
// 1 MiB chunks (compress.ts); zstd through the zstd program (src/util/zstd.ts); no opaque
// whiteouts (per-child whiteouts instead); xattrs are written only when a caller supplies them in
// IndexEntry.xattrs (Node cannot read xattrs); whiteouts are mode 0, 0:0, mtime = opts.mtime or 0.
export { EntryTable } from './entry-table.js';
export type { EntryType, IndexEntry, TreeIndex } from './entry.js';
export { indexTree, normalizeRelPath, type IndexOptions } from './index-tree.js';
export { indexFromUpper } from './overlay-index.js';
export { comparePaths, diffIndexes, isEmpty, toLayerEntries, type Change, type LayerEntry } from './diff.js';
export { withXattrs } from './xattrs.js';
export {
  DEFAULT_COMPRESSION_LEVEL,
  entriesForPaths,
  writeLayer,
  type WriteLayerOptions,
  type WrittenEntry,
} from './layer-writer.js';
export { squashLayers } from './squash.js';
export type { LayerResult } from './tar-output.js';
export { createLayerCompressor, checkCompressionLevel, DEFAULT_ZSTD_LEVEL, ParallelGzip, type LayerCompression } from './compress.js';
