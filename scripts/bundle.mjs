// `npm run build` / `prepare`, after tsc: the CLI as one file, dist/builder.mjs, which bin/builder runs when it is not
// older than dist/src/cli/main.js (one file to read instead of ~110 modules: builder --version starts ≈ 2× faster).
// undici is bundled apart, into dist/undici.mjs, which the CLI imports lazily: only commands that talk to a registry load
// it (src/registry/transport.ts), and one file loads in half the CPU of undici's ~60 CommonJS modules.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdir, readFile, realpath, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { buildSnapshot, launcherFlags } from './snapshot.mjs';
import { undiciOwnHeaders } from './undici-plugin.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const version = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')).version;
await stat(path.join(ROOT, 'dist/src/cli/main.js')); // tsc first
// CommonJS dependencies (commander, tar-stream, undici) call require() for node builtins
const banner = { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" };
// undici's exports as ESM names (a CommonJS entry would give esbuild's ESM output a default export only)
const undiciNames = Object.keys(createRequire(import.meta.url)('undici')).filter((n) => /^[A-Za-z_$][\w$]*$/.test(n));
await build({
  plugins: [undiciOwnHeaders],
  stdin: { contents: `import u from 'undici';\nexport const { ${undiciNames.join(', ')} } = u;\nexport default u;\n`, resolveDir: ROOT, loader: 'js' },
  bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile: path.join(ROOT, `dist/undici.mjs.${process.pid}`), logLevel: 'warning', banner,
});
await build({
  entryPoints: [path.join(ROOT, 'dist/src/cli/main.js')],
  bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile: path.join(ROOT, `dist/builder.mjs.${process.pid}`), logLevel: 'warning',
  plugins: [{ name: 'undici-beside', setup: (b) => b.onResolve({ filter: /^undici$/ }, () => ({ path: './undici.mjs', external: true })) }],
  define: { __BUILDER_VERSION__: JSON.stringify(version) },
  banner,
});
// renamed into place (undici first, which the new bundle imports): a builder started meanwhile (tests run this script
// beside others) never reads half a file
await rename(path.join(ROOT, `dist/undici.mjs.${process.pid}`), path.join(ROOT, 'dist/undici.mjs'));
await rename(path.join(ROOT, `dist/builder.mjs.${process.pid}`), path.join(ROOT, 'dist/builder.mjs'));

// The V8 start-up snapshot bin/builder runs instead of the bundle, under the V8 flags of its sh line, and a link to the
// node binary that built it (bin/builder uses the blob only while `node` on PATH is that file). Without one (a node that
// cannot build snapshots) bin/builder runs the bundle.
const flags = launcherFlags(await readFile(path.join(ROOT, 'bin/builder'), 'utf8'));
const nodeLink = path.join(ROOT, 'dist/builder.node');
await rm(nodeLink, { force: true });
try {
  await buildSnapshot({ entry: path.join(ROOT, 'dist/src/cli/snapshot.js'), blob: path.join(ROOT, 'dist/builder.blob'), flags, version });
  await symlink(await realpath(process.execPath), nodeLink);
} catch (err) {
  await rm(path.join(ROOT, 'dist/builder.blob'), { force: true });
  console.warn(`scripts/bundle.mjs: no V8 start-up snapshot (builder starts ≈ 0.08 s slower): ${String(err.stderr ?? err.message).trim().split('\n').slice(-3).join(' ')}`);
}

// What `builder --version` and `builder --help` print into a pipe, from the bundle itself: bin/builder's sh line answers
// them from these files while they are not older than the bundle and tsc's output (help.txt last: it dates the pair).
const run = (arg) => execFileSync(process.execPath, ['--input-type=module', '-e',
  `const m = await import(${JSON.stringify(path.join(ROOT, 'dist/builder.mjs'))}); await m.main(['node', 'builder', ${JSON.stringify(arg)}]);`],
{ encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
// Each file is renamed into place: tests run this script while other tests read what it wrote.
const writeAtomic = async (file, text) => {
  await writeFile(`${file}.${process.pid}`, text);
  await rename(`${file}.${process.pid}`, file);
};
const nodeSuffix = ` (node ${process.version})\n`;
const versionLine = run('--version');
if (!versionLine.endsWith(nodeSuffix)) throw new Error(`unexpected --version output: ${versionLine}`);
await writeAtomic(path.join(ROOT, 'dist/version.txt'), `${versionLine.slice(0, -nodeSuffix.length)}\n`);
await writeAtomic(path.join(ROOT, 'dist/help.txt'), run('--help'));

// The static C helpers beside the bundle, each renamed into place (a builder started meanwhile never runs half a file):
// builder-xattr (src/rootfs/xattr.ts looks there first) reads a RUN step's extended attributes in ≈ 1 ms CPU instead of
// python3's ≈ 15 ms; builder-run (src/cli/commands/build.ts) fences in-place RUN steps off from builder (Landlock,
// hidden docker config) outside the executor image too; builder-sandbox (src/run/sandbox.ts) sets up a sandboxed RUN
// step in one process instead of a chain of ~16. Without a C compiler builder falls back (python3; no fences; the chain).
await mkdir(path.join(ROOT, 'dist/bin'), { recursive: true });
const compile = async (name) => {
  const out = path.join(ROOT, 'dist/bin', name);
  const cc = (flags) => {
    try {
      execFileSync('cc', [...flags, '-O2', '-o', `${out}.${process.pid}`, path.join(ROOT, `scripts/executor-image/${name}.c`)], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  if (!cc(['-static']) && !cc([])) return false;
  await rename(`${out}.${process.pid}`, out);
  return true;
};
if (!(await compile('builder-xattr'))) console.warn('scripts/bundle.mjs: no C compiler: extended attributes will be read with python3 (slower per RUN step)');
if (!(await compile('builder-sandbox'))) console.warn('scripts/bundle.mjs: no C compiler: sandboxed RUN steps will start through the slower sh + util-linux chain');
if (!(await compile('builder-run'))) console.warn('scripts/bundle.mjs: no C compiler: in-place RUN steps will start without builder-run (not fenced off from builder\'s credentials)');
