// Public surface of src/executor: build() and its options.
export { build } from './build.js';
export type { AttestRequest, BuildOptions, BuildResult, RunModeOption, SnapshotMode } from './options.js';
