import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);
import { build } from 'esbuild';
import { undiciOwnHeaders } from '/work/snap/scripts/undici-plugin.mjs';
// builtins whose load binds native state a V8 snapshot cannot hold: functions forwarded, data copied, the rest lazy
const LAZY = { 'node:http': ['STATUS_CODES', 'METHODS', 'maxHeaderSize'], 'node:http2': ['constants'], 'node:tls': [] };
const lazyModule = (name) => {
  const real = require(name);
  let out = `let m; const g = () => (m ??= require(${JSON.stringify(name)}));\n`;
  for (const k of Object.keys(real)) {
    if (LAZY[name].includes(k)) out += `exports[${JSON.stringify(k)}] = ${JSON.stringify(real[k])};\n`;
    else if (typeof real[k] === 'function') out += `exports[${JSON.stringify(k)}] = function (...a) { const f = g()[${JSON.stringify(k)}]; return new.target ? Reflect.construct(f, a, new.target) : f.apply(this, a); };\n`;
    else out += `Object.defineProperty(exports, ${JSON.stringify(k)}, { get: () => g()[${JSON.stringify(k)}], enumerable: true });\n`;
  }
  return out;
};
const lazy = { name: 'lazy-builtins', setup: (b) => {
  b.onResolve({ filter: /^node:(http|http2|tls)$/ }, (a) => a.namespace === 'lazy' ? { path: a.path, external: true } : ({ path: a.path, namespace: 'lazy' }));
  b.onLoad({ filter: /.*/, namespace: 'lazy' }, (a) => ({ contents: lazyModule(a.path), loader: 'js' }));
}};
await build({
  stdin: { contents: `
const m = require('/work/snap/dist/src/cli/main.js');
const v8 = require('node:v8');
if (process.env.WARM) { require('undici'); }
v8.startupSnapshot.setDeserializeMainFunction(() => { m.main([process.argv[0], "builder", ...process.argv.slice(1)]).then(() => process.exit(process.exitCode ?? 0)); });
`, resolveDir: '/work/snap', loader: 'js' },
  bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: '/tmp/snapx/entry.cjs', logLevel: 'warning', minify: !!process.env.MIN, keepNames: true,
  plugins: [undiciOwnHeaders, lazy],
  define: { __BUILDER_VERSION__: '"0.1.0"', 'import.meta.url': '__builderUrl' },
  banner: { js: 'var __builderUrl = "file:///work/snap/dist/builder.mjs";' },
});
