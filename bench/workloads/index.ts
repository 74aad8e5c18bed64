// Bench workloads: each is bench/workloads/<name>/ (Dockerfile + static context files) plus a generator here for
// the parts too big to keep in git, and optionally a host tree for the machine baseline (tar | sha256 + gzip -6).
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';

export type BaseImage = 'busybox' | 'debian' | 'busybox-multi';

export interface WorkloadParams {
  /** "127.0.0.1:PORT" the Dockerfiles pull their bases from (the counting proxy). */
  registry: string;
  bigBytes: number;
}

export interface Workload {
  name: string;
  summary: string;
  bases: BaseImage[];
  /** Default number of A/B iterations (cold + warm per tool each); `--runs N` overrides (big-layer stays at 1 unless --big-runs). */
  defaultRuns: number;
  warm: boolean;
  /** Warm rebuilds are measured in the first warmRuns iterations only (time budget); default: every iteration. */
  warmRuns?: number;
  /** Cached rebuilds (cache fill + rebuild from the registry layer cache) in the first cachedRuns iterations; default 1. */
  cachedRuns?: number;
  /** gzip levels of the machine baseline (1 = the builder's default level, 6 = buildah's / gzip's default). */
  baselineLevels?: number[];
  /** Only these tools run it (default: every tool). */
  tools?: Array<'builder' | 'buildah' | 'kaniko'>;
  /** Extra flags for builder (e.g. --platform). */
  builderArgs?: string[];
  /** Generated part of the context is cached under BENCH_CACHE_DIR (big, deterministic). */
  cachedContext?: boolean;
  /** Fill ctxDir: the workload's static files with placeholders substituted, plus generated files. */
  prepare(srcDir: string, ctxDir: string, p: WorkloadParams): Promise<void>;
  /** Write the tree whose layer the machine baseline measures; returns the directory to tar. */
  baselineTree?(scratchDir: string, p: WorkloadParams, ctxDir: string): Promise<string>;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

async function copyStatic(srcDir: string, ctxDir: string, p: WorkloadParams, skip: string[] = [], clean = true): Promise<void> {
  if (clean) await rm(ctxDir, { recursive: true, force: true });
  await cp(srcDir, ctxDir, { recursive: true, filter: (s) => !skip.includes(path.basename(s)) });
  const df = path.join(ctxDir, 'Dockerfile');
  const text = (await readFile(df, 'utf8')).replaceAll('{{REGISTRY}}', p.registry).replaceAll('{{BIG_BYTES}}', String(p.bigBytes));
  await writeFile(df, text);
}

/** Deterministic PRNG (mulberry32) so generated contexts (and the fuzz test's mutations) are the same on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ['module', 'exports', 'function', 'return', 'const', 'require', 'value', 'options', 'callback', 'buffer',
  'stream', 'promise', 'resolve', 'reject', 'index', 'length', 'object', 'string', 'number', 'undefined', 'this', 'new'];

function jsText(rnd: () => number, bytes: number): string {
  let s = "'use strict';\n";
  while (s.length < bytes) {
    const n = 3 + Math.floor(rnd() * 8);
    const words: string[] = [];
    for (let i = 0; i < n; i++) words.push(WORDS[Math.floor(rnd() * WORDS.length)]!);
    s += `${words.join(' ')}(${Math.floor(rnd() * 1e6)});\n`;
  }
  return s.slice(0, bytes);
}

/** ~30,000 files: 1,500 packages x (package.json, index.js, README.md, LICENSE, 15 lib files, 1 bin or test file). */
async function writeNodeModules(root: string): Promise<void> {
  const rnd = prng(20250601);
  const jobs: Array<Promise<void>> = [];
  const flush = async (): Promise<void> => { await Promise.all(jobs.splice(0)); };
  for (let p = 0; p < 1500; p++) {
    const name = `pkg-${p.toString(36).padStart(3, '0')}`;
    const dir = path.join(root, 'node_modules', name);
    await mkdir(path.join(dir, 'lib'), { recursive: true });
    const hasBin = p % 10 === 0;
    if (hasBin) await mkdir(path.join(dir, 'bin'));
    else await mkdir(path.join(dir, 'test'));
    const files: Array<[string, string]> = [
      ['package.json', JSON.stringify({ name, version: `1.${p % 17}.${p % 5}`, main: 'index.js', license: 'MIT',
        dependencies: { [`pkg-${((p * 7) % 1500).toString(36).padStart(3, '0')}`]: '^1.0.0' } }, null, 2)],
      ['index.js', jsText(rnd, 200 + Math.floor(rnd() * 1500))],
      ['README.md', `# ${name}\n\n${jsText(rnd, 300 + Math.floor(rnd() * 2500))}`],
      ['LICENSE', 'MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining a copy...\n'],
    ];
    for (let f = 0; f < 15; f++) files.push([`lib/m${f}.js`, jsText(rnd, 100 + Math.floor(rnd() * 3000))]);
    files.push(hasBin ? [`bin/${name}`, `#!/usr/bin/env node\nrequire('../index.js');\n`] : ['test/index.test.js', jsText(rnd, 400)]);
    for (const [rel, text] of files) jobs.push(writeFile(path.join(dir, rel), text));
    if (jobs.length > 400) await flush();
  }
  await flush();
}

async function writeRandomFile(file: string, bytes: number): Promise<void> {
  const chunk = 1 << 20;
  let left = bytes;
  const src = Readable.from((function* () {
    while (left > 0) {
      const n = Math.min(chunk, left);
      left -= n;
      yield randomBytes(n);
    }
  })());
  await pipeline(src, createWriteStream(file));
}

const HOST_PLATFORM = `linux/${process.arch === 'x64' ? 'amd64' : process.arch}`;

export const WORKLOADS: Workload[] = [
  {
    name: 'small',
    summary: 'busybox; LABEL/ENV/WORKDIR; COPY a few files (+ .dockerignore); 2 RUNs; USER; ENTRYPOINT/CMD',
    bases: ['busybox'],
    defaultRuns: 5,
    warm: true,
    cachedRuns: 3,
    async prepare(src, ctx, p) {
      await copyStatic(src, ctx, p);
      // Files the .dockerignore must keep out of the build.
      await writeFile(path.join(ctx, 'debug.log'), 'x'.repeat(10_000));
      await writeFile(path.join(ctx, 'secret.txt'), 'not for the image\n');
      await mkdir(path.join(ctx, 'tmp'));
      await writeRandomFile(path.join(ctx, 'tmp/scratch.bin'), 1 << 20);
    },
  },
  {
    name: 'many-files',
    summary: 'busybox; RUN writes 20,000 x 5 KiB random files in 100 dirs + 100 MiB random file; RUN deletes 2 dirs + 1 file, modifies 1',
    bases: ['busybox'],
    defaultRuns: 3,
    warm: true,
    warmRuns: 1,
    baselineLevels: [1, 6],
    prepare: (src, ctx, p) => copyStatic(src, ctx, p),
    async baselineTree(dir) {
      // Same shape and entropy as the first RUN's layer: 100 dirs x 200 x 5 KiB + 100 MiB, random bytes.
      const data = path.join(dir, 'data');
      for (let i = 0; i < 100; i++) {
        await mkdir(path.join(data, `d${i}`), { recursive: true });
        const buf = randomBytes(200 * 5120);
        await Promise.all(Array.from({ length: 200 }, (_, j) =>
          writeFile(path.join(data, `d${i}`, `f${j}`), buf.subarray(j * 5120, (j + 1) * 5120))));
      }
      await writeRandomFile(path.join(data, 'big.bin'), 100 * 1024 * 1024);
      return dir;
    },
  },
  {
    name: 'multi-stage',
    summary: 'Debian stage: ~1,000 files + 10 MiB payload; busybox tools stage; final busybox stage COPY --from both',
    bases: ['debian', 'busybox'],
    defaultRuns: 5,
    warm: true,
    warmRuns: 2,
    cachedRuns: 2,
    prepare: (src, ctx, p) => copyStatic(src, ctx, p),
  },
  {
    name: 'node-app',
    summary: 'Debian; COPY a context with a node_modules tree of ~30,000 small files (generated); RUN a script over it',
    bases: ['debian'],
    defaultRuns: 2,
    warm: true,
    warmRuns: 1,
    baselineLevels: [1, 6],
    cachedContext: true,
    async prepare(src, ctx, p) {
      if (await exists(`${ctx}.complete`)) {
        // Generated tree cached from an earlier run: refresh only the static files (the Dockerfile names the registry).
        await copyStatic(src, ctx, p, [], false);
        return;
      }
      await copyStatic(src, ctx, p);
      await writeFile(path.join(ctx, 'package.json'), JSON.stringify({ name: 'bench-node-app', version: '1.0.0', main: 'server.js' }, null, 2));
      await writeFile(path.join(ctx, 'server.js'), "require('http').createServer((q, r) => r.end('ok')).listen(8080);\n");
      await writeFile(path.join(ctx, 'npm-debug.log'), 'ignored\n');
      await writeNodeModules(ctx);
      await writeFile(`${ctx}.complete`, '');
    },
    // The COPY layer's content is the context itself.
    baselineTree: async (_scratch, _p, ctx) => ctx,
  },
  {
    name: 'cross-two',
    summary: 'two-platform cross build (builder only): a $BUILDPLATFORM busybox stage "compiles" (RUN, ~40 MB hashed), a final stage per target COPYs its $TARGETARCH output; --platform host,linux/arm64 pushes one index (compare with cross-one: ≤ 1.3x is the aim)',
    bases: ['busybox-multi'],
    defaultRuns: 3,
    warm: true,
    warmRuns: 1,
    tools: ['builder'],
    builderArgs: ['--platform', [...new Set([HOST_PLATFORM, 'linux/arm64'])].join(',')],
    prepare: (src, ctx, p) => copyStatic(src, ctx, p),
  },
  {
    name: 'cross-one',
    summary: 'cross-two\'s Dockerfile for the host platform alone (builder only): the one-platform reference of the cross build',
    bases: ['busybox-multi'],
    defaultRuns: 3,
    warm: true,
    warmRuns: 1,
    tools: ['builder'],
    builderArgs: ['--platform', HOST_PLATFORM],
    prepare: (src, ctx, p) => copyStatic(path.join(src, '../cross-two'), ctx, p),
  },
  {
    name: 'big-layer',
    summary: 'busybox; one RUN writing one random file of 2 GiB (peak memory check); cold only, 1 run per tool',
    bases: ['busybox'],
    defaultRuns: 1,
    warm: false,
    baselineLevels: [1],
    prepare: (src, ctx, p) => copyStatic(src, ctx, p),
    async baselineTree(dir, p) {
      await mkdir(dir, { recursive: true });
      await writeRandomFile(path.join(dir, 'big.bin'), p.bigBytes);
      return dir;
    },
  },
];
