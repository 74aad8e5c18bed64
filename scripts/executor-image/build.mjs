// npm run executor-image -- DIR [--destination REF]: builder's executor image, built by builder itself FROM scratch,
// written as an OCI layout to DIR (tag latest) and optionally pushed. Everything builder needs lives under /builder,
// independent of the image's /lib: an in-place build replaces every other path.
import { execFileSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { buildSnapshot, launcherFlags } from '../snapshot.mjs';
import { undiciOwnHeaders } from '../undici-plugin.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const argv = process.argv.slice(2);
// --sign-key FILE|env://NAME: the image is signed (cosign-compatible) besides its SBOM and provenance
const keyIndex = argv.indexOf('--sign-key');
const signKey = keyIndex >= 0 ? argv[keyIndex + 1] : undefined;
const args = keyIndex >= 0 ? [...argv.slice(0, keyIndex), ...argv.slice(keyIndex + 2)] : argv;
const out = args.find((a) => !a.startsWith('--'));
const destIndex = args.indexOf('--destination');
const destination = destIndex >= 0 ? args[destIndex + 1] : undefined;
const pushFlags = destIndex >= 0 ? args.slice(destIndex + 2) : [];
if (!out) {
  console.error('usage: npm run executor-image -- DIR [--sign-key FILE|env://NAME] [--destination REF [registry flags...]]');
  process.exit(2);
}
const sh = (cmd, argv, opts = {}) => execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...opts });

const ctx = await mkdtemp(path.join(os.tmpdir(), 'builder-executor-ctx-'));
try {
  const B = path.join(ctx, 'builder');
  await mkdir(path.join(B, 'bin'), { recursive: true });
  await mkdir(path.join(B, 'lib'));
  await mkdir(path.join(B, 'certs'));
  await mkdir(path.join(B, '.docker'));

  // node (and zstd, for --compression zstd and zstd base layers) with their own loader and libraries: they must start
  // after an in-place build replaced /lib
  const bundleBinary = async (src, name) => {
    const real = await realpath(src);
    await copyFile(real, path.join(B, 'bin', name));
    for (const line of sh('ldd', [real]).split('\n')) {
      const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S*ld-linux\S*)/.exec(line);
      if (m) await copyFile(await realpath(m[1]), path.join(B, 'lib', path.basename(m[1])));
    }
    const loader = sh('ldd', [real]).match(/\/\S*ld-linux[^\s]*/)[0];
    sh('patchelf', ['--set-interpreter', `/builder/lib/${path.basename(loader)}`, '--set-rpath', '/builder/lib', path.join(B, 'bin', name)]);
  };
  await bundleBinary(process.execPath, 'node');
  // builder looks for zstd beside node first (src/util/zstd.ts), so the image's own /usr/bin never matters
  await bundleBinary(sh('sh', ['-c', 'command -v zstd']).trim(), 'zstd');

  // the CLI as one file (starts faster than hundreds of modules), run by that node
  const version = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')).version;
  const bundle = path.join(B, 'lib/builder.mjs');
  await build({
    stdin: { contents: `import { launch, main } from ${JSON.stringify(path.join(ROOT, 'dist/src/cli/main.js'))};\nlaunch(main, process.argv);\n`, resolveDir: ROOT, loader: 'js' },
    bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile: bundle, logLevel: 'warning', plugins: [undiciOwnHeaders],
    define: { __BUILDER_VERSION__: JSON.stringify(version) },
    // CommonJS dependencies call require() for node builtins
    banner: { js: "#!/builder/bin/node --max-semi-space-size=4\nimport { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
  await chmod(bundle, 0o755);
  // `--version` and `--help` alone into a pipe: answered by sh from what this bundle prints (node, the same binary as
  // /builder/bin/node, would take ≈ 0.1 s to start); on a terminal commander wraps help to its width, so node answers
  const answer = (arg) => sh(process.execPath, [bundle, arg]);
  // this node is the image's /builder/bin/node (before patchelf), so its blob loads there
  const flags = launcherFlags(await readFile(path.join(ROOT, 'bin/builder'), 'utf8'));
  await buildSnapshot({ entry: path.join(ROOT, 'dist/src/cli/snapshot.js'), blob: path.join(B, 'lib/builder.blob'), flags, version });
  await writeFile(path.join(B, 'lib/help.txt'), answer('--help'));
  const versionLine = answer('--version').trim();
  // Through busybox's sh, as bin/builder does: a shebang passes one argument, and these flags keep peak RSS near 130 MB
  await writeFile(path.join(B, 'bin/builder'), [
    '#!/busybox/sh',
    'if [ "$#" = 1 ] && [ ! -t 1 ]; then',
    '  case "$1" in',
    '    --help|-h) exec /busybox/cat /builder/lib/help.txt;;',
    `    --version|version) echo ${JSON.stringify(versionLine)}; exit 0;;`,
    '  esac',
    'fi',
    'export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-131072}"',
    // node would parse NODE_EXTRA_CA_CERTS at start: builder parses it when a verified connection needs it (bin/builder)
    '[ -z "$NODE_EXTRA_CA_CERTS" ] || { export BUILDER_NODE_EXTRA_CA_CERTS="$NODE_EXTRA_CA_CERTS"; unset NODE_EXTRA_CA_CERTS; }',
    // the V8 start-up snapshot unless NODE_OPTIONS (the job's) could carry V8 flags the blob was not built under
    `[ -n "$NODE_OPTIONS" ] || exec /builder/bin/node ${flags.join(' ')} --snapshot-blob /builder/lib/builder.blob -- "$@"`,
    `exec /builder/bin/node ${flags.join(' ')} /builder/lib/builder.mjs "$@"`,
    '',
  ].join('\n'), { mode: 0o755 });

  sh('gcc', ['-O2', '-static', '-o', path.join(B, 'bin/builder-xattr'), path.join(ROOT, 'scripts/executor-image/builder-xattr.c')]);
  // the in-place RUN launcher (Landlock, hidden credential files, steps that die with builder): beside node, where builder looks
  sh('gcc', ['-O2', '-static', '-o', path.join(B, 'bin/builder-run'), path.join(ROOT, 'scripts/executor-image/builder-run.c')]);
  await copyFile('/etc/ssl/certs/ca-certificates.crt', path.join(B, 'certs/ca-certificates.crt'));
  await writeFile(path.join(B, '.docker/config.json'), '{"auths":{}}\n');
  // The marker: --run-mode auto may run in place here, and these paths survive every build (/workspace: the WORKDIR)
  await writeFile(path.join(B, 'executor-image.json'), `${JSON.stringify({ keep: ['/builder', '/busybox', '/workspace'] })}\n`);

  // a busybox shell at /busybox: GitLab runs the job's script: lines in the image (kaniko's :debug)
  const bb = path.join(ctx, 'busybox');
  await mkdir(bb);
  await copyFile('/bin/busybox', path.join(bb, 'busybox'));
  await chmod(path.join(bb, 'busybox'), 0o755);
  for (const applet of sh('/bin/busybox', ['--list']).split('\n').filter(Boolean)) {
    if (applet !== 'busybox') await symlink('busybox', path.join(bb, applet));
  }

  await writeFile(path.join(ctx, 'Dockerfile'), [
    'FROM scratch',
    'COPY builder /builder',
    'COPY busybox /busybox',
    'ENV PATH=/builder/bin:/busybox HOME=/root DOCKER_CONFIG=/builder/.docker \\',
    '    SSL_CERT_FILE=/builder/certs/ca-certificates.crt NODE_EXTRA_CA_CERTS=/builder/certs/ca-certificates.crt',
    'WORKDIR /workspace',
    'ENTRYPOINT ["/builder/bin/builder"]',
    '',
  ].join('\n'));
  await writeFile(path.join(ctx, '.dockerignore'), 'Dockerfile\n');

  const layout = path.resolve(out);
  const cli = path.join(ROOT, 'bin/builder');
  // named after the destination (not pushed yet): the signature's payload names the repository it will live in
  const name = destination ?? 'builder-executor:latest';
  const tag = /:([^/:@]+)$/.exec(name.split('@')[0])?.[1] ?? 'latest';
  sh('node', [cli, '--run-mode', 'sandbox', '--context', ctx, '--dockerfile', path.join(ctx, 'Dockerfile'), '--reproducible',
    '--image-format', 'oci', '--no-push', '--destination', name, '--oci-layout-path', layout,
    '--sbom', '--provenance=max', ...(signKey ? ['--sign-key', signKey] : [])], { stdio: ['ignore', 'inherit', 'inherit'] });
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
  const top = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  const manifest = JSON.parse(await readFile(path.join(layout, 'blobs/sha256', top.digest.slice(7)), 'utf8'));
  const size = manifest.layers.reduce((n, l) => n + l.size, 0);
  console.error(`executor image: oci:${layout}:${tag} ${top.digest}, ${(size / 1e6).toFixed(1)} MB compressed, with its SBOM and provenance${signKey ? ' and signature' : ''}`);
  // copy carries the layout's referrers (SBOM, provenance, signature) to the registry
  if (destination) sh('node', [cli, 'copy', ...pushFlags, `oci:${layout}:${tag}`, destination], { stdio: ['ignore', 'inherit', 'inherit'] });
} finally {
  await rm(ctx, { recursive: true, force: true });
}
