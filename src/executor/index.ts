// Public surface of src/executor: build() and its options.
export { build } from './build.js';
export type { BuildOptions, BuildResult, RunModeOption, SnapshotMode } from './options.js';
