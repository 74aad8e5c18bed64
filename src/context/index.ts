// Public API of src/context: build context sources (dir, tar), .dockerignore, COPY source selection and content hashing.
export { openContext, contextRel, type BuildContext, type OpenContextOptions } from './open.js';
export { locateDockerfile } from './dockerfile.js';
export { resolveSources, expandSources, walkSource, followSymlink, type SourceMatch, type SourceType, type WalkEntry, type WalkOptions } from './sources.js';
export { hashSources, hashSelection, type HashableEntry, type HashOptions } from './hash.js';
export { FileHashCache, type FileHashCacheOptions, type FileIdentity } from './hash-cache.js';
export { parseIgnoreFile, PatternMatcher } from './ignore.js';
export { goClean, goMatch, hasWildcards, BadPatternError } from './gopath.js';
export { extractTarContext } from './tar.js';
