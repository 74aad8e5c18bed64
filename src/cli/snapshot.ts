// The V8 start-up snapshot's entry (scripts/snapshot.mjs bundles it as CommonJS, node --build-snapshot runs it once):
// the whole CLI and undici are loaded and initialised at build time, so a start deserialises a heap instead of
// compiling and running ≈ 2 MB of JavaScript (≈ 85 ms less per command that talks to a registry; bench/ANALYSIS.md).
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startupSnapshot } from 'node:v8';
import 'undici';
import { launch } from './launch.js';
import { main } from './main.js';

startupSnapshot.setDeserializeMainFunction(() => {
  // import.meta.url stands for this global in the snapshot's bundle: the dist/builder.mjs beside the blob (bin/builder
  // starts node with `--snapshot-blob DIST/builder.blob -- ARGS`), so files are found as from the ESM bundle.
  const i = process.execArgv.indexOf('--snapshot-blob');
  const blob = i < 0 ? undefined : process.execArgv[i + 1];
  if (blob) (globalThis as { __builderUrl?: string }).__builderUrl = pathToFileURL(path.join(path.dirname(path.resolve(blob)), 'builder.mjs')).href;
  launch(main, [process.argv[0]!, 'builder', ...process.argv.slice(1)]);
});
