// Summarize V8 .cpuprofile files (from `npm run bench -- --cpu-prof`): top functions by self time, and by file.
//   node dist/bench/profile.js FILE_OR_DIR... [--top N]
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

async function files(args: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const a of args) {
    if ((await stat(a)).isDirectory()) {
      for (const n of await readdir(a)) if (n.endsWith('.cpuprofile')) out.push(path.join(a, n));
    } else out.push(a);
  }
  return out;
}

export function selfTimes(p: Profile): { total: number; byFn: Map<string, number>; byFile: Map<string, number> } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const dt = (p.timeDeltas[i] ?? 0) / 1000; // ms
    const n = byId.get(id);
    if (!n) return;
    total += dt;
    const url = n.callFrame.url.replace(/^file:\/\//, '').replace(/.*\/(dist|node_modules)\//, '$1/');
    const fn = `${n.callFrame.functionName || '(anonymous)'} ${url ? `${url}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
    byFn.set(fn, (byFn.get(fn) ?? 0) + dt);
    const file = url || `(${n.callFrame.functionName || 'native'})`;
    byFile.set(file, (byFile.get(file) ?? 0) + dt);
  });
  return { total, byFn, byFile };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const ti = argv.indexOf('--top');
  const top = ti >= 0 ? Number(argv.splice(ti, 2)[1]) : 15;
  for (const f of await files(argv)) {
    const p = JSON.parse(await readFile(f, 'utf8')) as Profile;
    const { total, byFn, byFile } = selfTimes(p);
    const wall = (p.endTime - p.startTime) / 1000;
    process.stdout.write(`\n${f}: ${(wall / 1000).toFixed(2)}s profiled, ${(total / 1000).toFixed(2)}s sampled\n  top functions (self):\n`);
    for (const [k, v] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      process.stdout.write(`  ${(v / 1000).toFixed(2).padStart(7)}s ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}\n`);
    }
    process.stdout.write('  top files (self):\n');
    for (const [k, v] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, 8)) {
      process.stdout.write(`  ${(v / 1000).toFixed(2).padStart(7)}s ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}\n`);
    }
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${path.resolve(process.argv[1])}`).href) {
  main().catch((err) => { process.stderr.write(`profile: ${(err as Error).stack ?? err}\n`); process.exit(1); });
}
