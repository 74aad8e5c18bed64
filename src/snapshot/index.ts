// Public surface of src/snapshot: index a root, diff two indexes, write a layer from the changes.
export { indexTree, normalizeRelPath, type EntryType, type IndexEntry, type IndexOptions, type TreeIndex } from './index-tree.js';
export { comparePaths, diffIndexes, isEmpty, toLayerEntries, type Change, type LayerEntry } from './diff.js';
export {
  DEFAULT_COMPRESSION_LEVEL,
  entriesForPaths,
  writeLayer,
  type LayerResult,
  type WriteLayerOptions,
} from './layer-writer.js';
