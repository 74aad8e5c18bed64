// Snapshot micro benchmark (skipped unless SNAPSHOT_PERF=1): indexTree+writeLayer vs tar|sha256|gzip on the same tree.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';
import { tempDir } from './helpers.js';

const enabled = process.env.SNAPSHOT_PERF === '1';
const LEVELS = (process.env.SNAPSHOT_PERF_LEVELS ?? '1,6').split(',').map(Number);
const RUNS = Number(process.env.SNAPSHOT_PERF_RUNS ?? '3');

/** 20,000 x 5 KB random files in 100 dirs + one 100 MB random file, written in small chunks. */
function makeTree(dir: string): void {
  const block = Buffer.alloc(5 * 1024);
  for (let d = 0; d < 100; d++) {
    fs.mkdirSync(path.join(dir, `d${d}`));
    for (let f = 0; f < 200; f++) fs.writeFileSync(path.join(dir, `d${d}`, `f${f}`), randomFillSync(block));
  }
  writeRandomFile(path.join(dir, 'big.bin'), 100 << 20);
}

/** Random-looking data that gzip cannot shrink: a 1 MiB random block repeated (beyond gzip's 32 KiB window). */
function writeRandomFile(p: string, size: number): void {
  const chunk = randomFillSync(Buffer.alloc(1 << 20));
  const fd = fs.openSync(p, 'w');
  for (let done = 0; done < size; done += chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - done));
  fs.closeSync(fd);
}

/** Compiles src/snapshot into `out` so it runs in a plain node child (its own peak RSS). */
function compile(out: string): string {
  const repo = fileURLToPath(new URL('../..', import.meta.url));
  execFileSync('npx', ['tsc', '--outDir', out, '--rootDir', repo, '--module', 'nodenext', '--moduleResolution', 'nodenext',
    '--target', 'es2022', '--skipLibCheck', '--types', 'node', path.join(repo, 'src/snapshot/index.ts')], { cwd: repo, stdio: 'inherit' });
  fs.writeFileSync(path.join(out, 'package.json'), '{"type":"module"}');
  const script = path.join(out, 'run.mjs');
  fs.writeFileSync(script, `
import { indexTree, diffIndexes, toLayerEntries, writeLayer } from './src/snapshot/index.js';
import { performance } from 'node:perf_hooks';
const [root, outFile, level, variant] = process.argv.slice(2);
const t0 = performance.now();
const idx = await indexTree(root);
const t1 = performance.now();
const entries = toLayerEntries(diffIndexes({ root, entries: new Map(), hashContents: false }, idx), idx);
const r = await writeLayer(root, entries, outFile, { compressionLevel: Number(level), mtime: new Date(0) });
const t2 = performance.now();
console.log(JSON.stringify({ indexMs: t1 - t0, writeMs: t2 - t1, totalMs: t2 - t0, entries: idx.entries.size,
  maxRssMB: process.resourceUsage().maxRSS / 1024, size: r.size, uncompressed: r.uncompressedSize }));
`);
  fs.writeFileSync(path.join(out, 'tarstream.mjs'), `
import { pack as tarPack } from '${path.join(repo, 'node_modules/tar-stream/index.js')}';
import { indexTree } from './src/snapshot/index.js';
import { createGzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
const [root, outFile, level] = process.argv.slice(2);
const t0 = performance.now();
const idx = await indexTree(root);
const names = [...idx.entries.keys()].sort();
const pack = tarPack();
const h1 = createHash('sha256'), h2 = createHash('sha256');
const tap = (h) => new Transform({ transform(c, _e, cb) { h.update(c); cb(null, c); } });
const done = pipeline(pack, tap(h1), createGzip({ level: Number(level) }), tap(h2), fs.createWriteStream(outFile));
for (const n of names) {
  const m = idx.entries.get(n);
  const hdr = { name: n, mode: m.mode, uid: m.uid, gid: m.gid, mtime: new Date(0) };
  if (m.type === 'dir') { await new Promise((res, rej) => pack.entry({ ...hdr, type: 'directory' }, (e) => e ? rej(e) : res())); continue; }
  if (m.size <= 262144) { const b = await fs.promises.readFile(root + '/' + n); await new Promise((res, rej) => pack.entry({ ...hdr, size: b.length }, b, (e) => e ? rej(e) : res())); continue; }
  const s = pack.entry({ ...hdr, size: m.size });
  await pipeline(fs.createReadStream(root + '/' + n, { highWaterMark: 1 << 20 }), s);
}
pack.finalize();
await done;
const t1 = performance.now();
console.log(JSON.stringify({ totalMs: t1 - t0, maxRssMB: process.resourceUsage().maxRSS / 1024 }));
`);
  return out;
}

function timeShell(cmd: string): number {
  const t = process.hrtime.bigint();
  execFileSync('bash', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'] });
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

describe.skipIf(!enabled)('snapshot performance (SNAPSHOT_PERF=1)', () => {
  it('many-files: indexTree + writeLayer vs tar | sha256sum | gzip | sha256sum', { timeout: 900_000 }, () => {
    const work = tempDir('snap-perf-');
    try {
      const tree = path.join(work, 'tree');
      fs.mkdirSync(tree);
      makeTree(tree);
      const bin = compile(path.join(work, 'dist'));
      const out = path.join(work, 'layer.tgz');
      execFileSync('bash', ['-c', `tar -cf - -C ${tree} . > /dev/null`]); // warm the page cache for both sides
      const rows: string[] = [];
      for (const level of LEVELS) {
        const base: number[] = [];
        const ours: Array<Record<string, number>> = [];
        const ts: Array<Record<string, number>> = [];
        for (let i = 0; i < RUNS; i++) {
          // Same bytes, same compressor and level, written to a file too: the machine's limit.
          base.push(timeShell(`set -o pipefail; tar --sort=name -cf - -C ${tree} . | tee >(sha256sum >/dev/null) | gzip -${level} | tee ${out} | sha256sum >/dev/null`));
          const o = JSON.parse(execFileSync('node', [path.join(bin, 'run.mjs'), tree, out, String(level)], { encoding: 'utf8' })) as Record<string, number>;
          ours.push(o);
          if (i === 0) ts.push(JSON.parse(execFileSync('node', [path.join(bin, 'tarstream.mjs'), tree, out, String(level)], { encoding: 'utf8' })) as Record<string, number>);
        }
        const b = median(base);
        const t = median(ours.map((o) => o.totalMs!));
        rows.push(
          `gzip -${level}: baseline ${b.toFixed(0)} ms | builder ${t.toFixed(0)} ms (index ${median(ours.map((o) => o.indexMs!)).toFixed(0)} ms, ` +
          `write ${median(ours.map((o) => o.writeMs!)).toFixed(0)} ms) ratio ${(t / b).toFixed(2)}x | peak RSS ${Math.max(...ours.map((o) => o.maxRssMB!)).toFixed(0)} MB | ` +
          `tar-stream variant ${ts[0]!.totalMs!.toFixed(0)} ms, RSS ${ts[0]!.maxRssMB!.toFixed(0)} MB | entries ${ours[0]!.entries}, tar ${(ours[0]!.uncompressed! / 1048576).toFixed(0)} MiB`,
        );
      }
      if (process.env.SNAPSHOT_PERF_BIG === '1') {
        const bigTree = path.join(work, 'big');
        fs.mkdirSync(bigTree);
        writeRandomFile(path.join(bigTree, 'huge.bin'), 1 << 30);
        const o = JSON.parse(execFileSync('node', [path.join(bin, 'run.mjs'), bigTree, out, '1'], { encoding: 'utf8' })) as Record<string, number>;
        const b = timeShell(`set -o pipefail; tar -cf - -C ${bigTree} . | tee >(sha256sum >/dev/null) | gzip -1 | tee ${out} | sha256sum >/dev/null`);
        rows.push(`1 GiB file, gzip -1: baseline ${b.toFixed(0)} ms | builder ${o.totalMs!.toFixed(0)} ms | peak RSS ${o.maxRssMB!.toFixed(0)} MB`);
      }
      console.log(`\nsnapshot perf (${RUNS} runs, medians)\n${rows.join('\n')}\n`);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});
