// A V8 start-up snapshot of the CLI (scripts/bundle.mjs: dist/builder.blob; scripts/executor-image/build.mjs: the
// image's): src/cli/snapshot.js bundled as CommonJS with undici, run once by `node --build-snapshot` with the V8 flags
// the launcher starts node with (a blob only loads under the same flags and the same node binary).
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { rename, rm } from 'node:fs/promises';
import { build } from 'esbuild';
import { undiciOwnHeaders } from './undici-plugin.mjs';

const require = createRequire(import.meta.url);

// Builtins whose loading binds native state a snapshot cannot hold ("Unknown external reference", measured on node
// 20.20): undici reads a few of their values at load, which are copied here (data of this node binary, the one the
// blob is tied to); functions are forwarded and the rest read on first use. undici's one identity check against
// http.IncomingMessage (a request body that is one) never matches: builder never sends one.
// node:dns is held back too: loaded into a snapshot, it opens a c-ares channel (reading /etc/resolv.conf) at every start,
// ≈ 11 ms of main thread (undici's dns interceptor, which builder never uses, is its only importer).
const COPIED = { 'node:http': ['STATUS_CODES', 'METHODS', 'maxHeaderSize'], 'node:http2': ['constants'], 'node:tls': [], 'node:dns': [] };

function lazyBuiltin(name) {
  const real = require(name);
  const key = JSON.stringify;
  let out = `let m; const g = () => (m ??= require(${key(name)}));\n`;
  for (const k of Object.keys(real)) {
    if (COPIED[name].includes(k)) out += `exports[${key(k)}] = ${JSON.stringify(real[k])};\n`;
    else if (typeof real[k] === 'function') out += `exports[${key(k)}] = function (...a) { const f = g()[${key(k)}]; return new.target ? Reflect.construct(f, a, new.target) : f.apply(this, a); };\n`;
    else out += `Object.defineProperty(exports, ${key(k)}, { get: () => g()[${key(k)}], enumerable: true });\n`;
  }
  return out;
}

const lazyBuiltins = {
  name: 'lazy-builtins',
  setup: (b) => {
    b.onResolve({ filter: /^node:(http|http2|tls|dns)$/ }, (a) => (a.namespace === 'lazy' ? { path: a.path, external: true } : { path: a.path, namespace: 'lazy' }));
    b.onLoad({ filter: /.*/, namespace: 'lazy' }, (a) => ({ contents: lazyBuiltin(a.path), loader: 'js' }));
  },
};

/** The V8 flags bin/builder's sh line starts node with (`F="..."` at its start): the flags a blob must be built under. */
export function launcherFlags(binBuilderText) {
  const flags = binBuilderText.match(/^':' \/\/; F="([^"]*)"/m)?.[1];
  if (flags === undefined) throw new Error('bin/builder: no F="..." (node flags) at the start of its sh line');
  return flags.split(' ');
}

/** Writes `blob` (renamed into place) from tsc's src/cli/snapshot.js; `flags` are the V8 flags the launcher passes. */
export async function buildSnapshot({ entry, blob, flags, version }) {
  const cjs = `${blob}.${process.pid}.cjs`;
  try {
    await build({
      entryPoints: [entry], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: cjs, logLevel: 'warning',
      plugins: [undiciOwnHeaders, lazyBuiltins],
      // set by src/cli/snapshot.ts at start from --snapshot-blob: the dist/builder.mjs beside the blob
      define: { __BUILDER_VERSION__: JSON.stringify(version), 'import.meta.url': 'globalThis.__builderUrl' },
    });
    execFileSync(process.execPath, [...flags, '--snapshot-blob', `${blob}.${process.pid}`, '--build-snapshot', cjs], { stdio: ['ignore', 'ignore', 'pipe'] });
    await rename(`${blob}.${process.pid}`, blob);
  } finally {
    await rm(cjs, { force: true });
    await rm(`${blob}.${process.pid}`, { force: true });
  }
}
