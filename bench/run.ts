// `npm run bench`: builder vs kaniko v1.24.0 (../shared/anchors, when present) vs buildah vs the machine's
// tar+sha256+gzip limit, side by side in one run, A/B alternating: cold, warm, and a rebuild from the registry layer
// cache with the bytes each moved; and builder's executor image vs kaniko each in its own unprivileged crun container
// (tools builder-crun and kaniko-crun, small and multi-stage). Writes bench/results/<timestamp>.json and BENCHMARKS.md.
//
//   node dist/bench/run.js [--runs N] [--only small,many-files] [--quick] [--big-mb N] [--tools builder,builder-sbom,buildah,kaniko,builder-crun,kaniko-crun]
//                          [--no-baseline] [--write | --no-write] [--keep] [--cpu-prof]
//
// --runs N     iterations per workload (default: per workload, see bench/workloads/index.ts; big-layer stays 1)
// --only W,... workloads to run; start-up and start-up-help (each tool's version and help commands, 5 runs) are
//              among them and run first
// --quick      1 iteration of everything, big-layer 256 MiB: a smoke test (does not overwrite BENCHMARKS.md)
//              BENCH_QUICK=1 in the environment: --quick --only small (cold, warm and cached rebuild: a few minutes)
// --write      write BENCHMARKS.md even with --only/--quick/--runs (default: only for a full default run)
// --cpu-prof   builder runs under node --cpu-prof; profiles in bench/results/profiles/<timestamp>/, summarized with
//              node dist/bench/profile.js DIR
// --render F  only rewrite BENCHMARKS.md from results JSON F (and bench/ANALYSIS.md)
// Env: BENCH_CACHE_DIR (base images, default ~/.cache/builder-bench), BENCH_WORK_DIR (scratch; default: a journaled
//      ext4 image of its own under $TMPDIR, as root, bench/support/workfs.ts),
//      KANIKO_EXECUTOR / KANIKO_WARMER (default ../shared/anchors/kaniko-v1.24.0/{executor,warmer}, or under
//      $BUILDER_SHARED/anchors), BENCH_DEBIAN_MIRROR.
import { mkdir, mkdtemp, readFile, rm, writeFile, stat as fsStat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { measure, runCmd } from './support/measure.js';
import { startBlobMeter, startProxy, startRegistry } from './support/registry.js';
import { baselineTable, summarize, targetsTable, toolTables, type RunRecord } from './support/report.js';
import { buildahTool, builderTool, kanikoAnchor, kanikoTool, type Tool, type ToolRun } from './support/tools.js';
import { builderCrunTool, kanikoCrunTool } from './support/crun.js';
import { WORKLOADS, type BaseImage, type Workload } from './workloads/index.js';
import { benchFilesystem } from './support/workfs.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench
const repoRoot = path.resolve(here, '../..');
const srcBench = path.join(repoRoot, 'bench');

interface Args {
  runs?: number;
  only?: string[];
  quick: boolean;
  bigMb?: number;
  tools?: string[];
  baseline: boolean;
  write?: boolean;
  keep: boolean;
  cpuProf: boolean;
  render?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, baseline: true, keep: false, cpuProf: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const val = (): string => {
      const v = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    const name = arg.split('=')[0];
    switch (name) {
      case '--runs': a.runs = Number(val()); break;
      case '--only': a.only = val().split(',').filter(Boolean); break;
      case '--quick': a.quick = true; break;
      case '--big-mb': a.bigMb = Number(val()); break;
      case '--tools': a.tools = val().split(',').filter(Boolean); break;
      case '--no-baseline': a.baseline = false; break;
      case '--write': a.write = true; break;
      case '--no-write': a.write = false; break;
      case '--keep': a.keep = true; break;
      case '--cpu-prof': a.cpuProf = true; break;
      case '--render': a.render = val(); break;
      case '-h': case '--help':
        process.stdout.write(`${(readFileSyncHead())}\n`);
        process.exit(0);
      // eslint-disable-next-line no-fallthrough
      default: throw new Error(`unknown argument ${arg} (see --help)`);
    }
  }
  if (process.env.BENCH_QUICK === '1') {
    a.quick = true;
    a.only ??= ['small'];
  }
  if (a.runs !== undefined && !(a.runs >= 1)) throw new Error('--runs must be >= 1');
  for (const w of a.only ?? []) if (!START_UP_ROWS.some((r) => r.name === w) && !WORKLOADS.some((x) => x.name === w)) throw new Error(`unknown workload ${w}; have ${WORKLOADS.map((x) => x.name).join(', ')}`);
  return a;
}

function readFileSyncHead(): string {
  return 'usage: npm run bench -- [--runs N] [--only small,many-files] [--quick] [--big-mb N] [--tools builder,buildah] [--no-baseline] [--write|--no-write] [--keep] [--cpu-prof] | --render bench/results/X.json\n' +
    'env: BENCH_QUICK=1 (= --quick --only small), BENCH_CACHE_DIR, BENCH_WORK_DIR, KANIKO_EXECUTOR, KANIKO_WARMER, BENCH_BIG_LAYER_MB';
}

/** Pseudo-workload: each tool's version command, timed (module loading and process start, no build). */
const START_UP = 'start-up';
const START_UP_RUNS = 5;
/** Rows with no build: process start and what a command loads (each tool's version and help commands). */
const START_UP_ROWS: Array<{ name: string; argv: (t: Tool) => string[] | undefined; summary: string }> = [
  { name: START_UP, argv: (t) => t.versionArgv, summary: 'each tool\'s version command (`builder --version`, kaniko\'s `executor version`, `buildah --version`)' },
  { name: `${START_UP}-help`, argv: (t) => t.helpArgv, summary: 'each tool\'s help (`builder --help`, `executor --help`, `buildah --help`)' },
];

const log = (msg: string): void => { process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`); };

async function pushBases(bases: Set<BaseImage>, registry: string, cacheDir: string): Promise<void> {
  for (const b of bases) {
    const t0 = Date.now();
    if (b === 'busybox-multi') {
      await pushMultiBusybox(registry, cacheDir);
      log(`base ${b}: ${registry}/library/busybox-multi:latest (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
      continue;
    }
    const layout = (await runCmd('bash', [path.join(repoRoot, 'scripts/bench-base-images.sh'), cacheDir, b])).trim().split('\n').pop()!;
    const dest = b === 'busybox' ? 'library/busybox:latest' : 'library/debian:bookworm-slim';
    await runCmd('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:${b}`, `docker://${registry}/${dest}`]);
    await addManifestMediaType(registry, dest);
    log(`base ${b}: ${layout} -> ${registry}/${dest} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  }
}

/** A real two-platform base: the host's busybox and Debian's aarch64 one, pushed by tag, then an OCI index of both. */
async function pushMultiBusybox(registry: string, cacheDir: string): Promise<void> {
  const manifests = [];
  for (const image of ['busybox', 'busybox-arm64']) {
    const layout = (await runCmd('bash', [path.join(repoRoot, 'scripts/bench-base-images.sh'), cacheDir, image])).trim().split('\n').pop()!;
    const tag = image === 'busybox' ? 'host' : 'arm64';
    await runCmd('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', '--format', 'oci', `oci:${layout}:busybox`, `docker://${registry}/library/busybox-multi:${tag}`]);
    await addManifestMediaType(registry, `library/busybox-multi:${tag}`);
    const res = await fetch(`http://${registry}/v2/library/busybox-multi/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    const bytes = Buffer.from(await res.arrayBuffer());
    const m = JSON.parse(bytes.toString('utf8')) as { config: { digest: string } };
    const config = await (await fetch(`http://${registry}/v2/library/busybox-multi/blobs/${m.config.digest}`)).json() as { os: string; architecture: string };
    manifests.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: res.headers.get('docker-content-digest'), size: bytes.length,
      platform: { os: config.os, architecture: config.architecture } });
  }
  const index = 'application/vnd.oci.image.index.v1+json';
  const put = await fetch(`http://${registry}/v2/library/busybox-multi/manifests/latest`, {
    method: 'PUT', headers: { 'content-type': index }, body: JSON.stringify({ schemaVersion: 2, mediaType: index, manifests }),
  });
  if (!put.ok) throw new Error(`pushing the busybox-multi index: HTTP ${put.status} ${await put.text()}`);
}

/**
 * umoci writes OCI manifests without the optional mediaType field; images from real registries carry it, and kaniko
 * depends on it: built FROM a warmer-cached base without it, kaniko pushes a manifest with no media type and the
 * registry rejects it. Re-push the base's manifest with the field, so every tool starts from a realistic base.
 */
async function addManifestMediaType(registry: string, repoTag: string): Promise<void> {
  const [repo, tag] = repoTag.split(':') as [string, string];
  const url = `http://${registry}/v2/${repo}/manifests/${tag}`;
  const type = 'application/vnd.oci.image.manifest.v1+json';
  const res = await fetch(url, { headers: { accept: type } });
  const m = await res.json() as Record<string, unknown>;
  if (!res.ok || m.mediaType) return;
  const body = JSON.stringify({ schemaVersion: m.schemaVersion, mediaType: type, ...m });
  const put = await fetch(url, { method: 'PUT', headers: { 'content-type': type }, body });
  if (!put.ok) throw new Error(`re-pushing ${repoTag} with a mediaType: HTTP ${put.status} ${await put.text()}`);
}

async function duBytes(dir: string): Promise<number> {
  const out = await runCmd('du', ['-sb', dir]);
  return Number(out.split('\t')[0]);
}

async function lastError(logFile: string): Promise<string> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const err = lines.filter((l) => /error|fail|denied|cannot|unknown|invalid/i.test(l)).pop();
  return (err ?? lines.slice(-2).join(' / ') ?? 'no output').slice(0, 300);
}

async function pushedLayers(registryHost: string, repoTag: string): Promise<number | undefined> {
  try {
    const raw = (ref: string): Promise<string> => runCmd('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registryHost}/${ref}`]);
    const m = JSON.parse(await raw(repoTag)) as { layers?: unknown[]; manifests?: Array<{ digest: string }> };
    if (!m.manifests) return m.layers?.length;
    // an index (--platform a,b): the layers of every platform's image
    const repo = repoTag.slice(0, repoTag.lastIndexOf(':'));
    let n = 0;
    for (const d of m.manifests) n += (JSON.parse(await raw(`${repo}@${d.digest}`)) as { layers?: unknown[] }).layers?.length ?? 0;
    return n;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.render) {
    // Several files: later ones replace the earlier ones' workloads (e.g. a rerun of one workload after a fix).
    const files = args.render.split(',');
    let result: ResultFile | undefined;
    const sources: NonNullable<ResultFile['sources']> = [];
    for (const f of files) {
      const r = JSON.parse(await readFile(f, 'utf8')) as ResultFile;
      sources.push({ file: path.relative(repoRoot, path.resolve(f)), date: r.date, minutes: r.elapsedSeconds / 60, quick: !!r.args?.quick,
        workloads: r.workloads.map((w) => `${w.name} ×${w.runs}`).join(', '), load: `${r.machine.loadavgStart} → ${r.machine.loadavgEnd}` });
      if (!result) { result = r; continue; }
      const names = new Set(r.workloads.map((w) => w.name));
      result.records = [...result.records.filter((x) => !names.has(x.workload)), ...r.records];
      result.workloads = result.workloads.map((w) => r.workloads.find((x) => x.name === w.name) ?? w);
    }
    if (sources.length > 1) result!.sources = sources;
    await writeFile(path.join(repoRoot, 'BENCHMARKS.md'), await renderMarkdown(result!, files.map((f) => path.relative(repoRoot, path.resolve(f))).join('` + `')));
    log(`wrote BENCHMARKS.md from ${args.render}`);
    return;
  }
  const started = new Date();
  const t0 = Date.now();
  const loadStart = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  const cacheDir = process.env.BENCH_CACHE_DIR ?? path.join(os.homedir(), '.cache/builder-bench');
  const workFs = await benchFilesystem(log);
  const work = await mkdtemp(path.join(workFs.root, 'builder-bench-')).catch(async (e: unknown) => {
    await workFs.stop();
    throw e;
  });
  const bigBytes = Math.round((args.bigMb ?? Number(process.env.BENCH_BIG_LAYER_MB ?? (args.quick ? 256 : 2048))) * 1024 * 1024);
  const workloads = WORKLOADS.filter((w) => !args.only || args.only.includes(w.name));
  const runsFor = (w: Workload): number => (args.quick ? 1 : w.name === 'big-layer' ? 1 : args.runs ?? w.defaultRuns);
  const cachedRunsFor = (w: Workload): number => Math.min(w.cachedRuns ?? 1, runsFor(w));
  log(`work dir ${work}; cache ${cacheDir}; workloads ${workloads.map((w) => `${w.name}x${runsFor(w)}`).join(' ')}`);

  let cleanupFns: Array<() => Promise<void>> = [];
  const records: RunRecord[] = [];
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping the registry and proxy; work dir ${work} left behind${workFs.mounted ? ` on a mounted image (remove it with: ${workFs.removal})` : ''}`);
      void Promise.all(cleanupFns.map((c) => c().catch(() => undefined))).finally(() => process.exit(130));
    });
  }
  try {
    const reg = await startRegistry(path.join(work, 'registry'));
    cleanupFns.push(reg.stop);
    // tool -> TCP byte counter (all bytes on the wire) -> blob meter (registry bodies by kind) -> registry.
    const meter = await startBlobMeter(reg.host);
    cleanupFns.push(meter.stop);
    const proxy = await startProxy(meter.host);
    cleanupFns.push(proxy.stop);
    log(`registry ${reg.host}, blob meter ${meter.host}, counting proxy ${proxy.host}`);
    await pushBases(new Set(workloads.flatMap((w) => w.bases)), reg.host, cacheDir);

    const profDir = args.cpuProf ? path.join(srcBench, 'results/profiles', started.toISOString().replace(/[:.]/g, '-')) : undefined;
    const allTools: Tool[] = [await builderTool(repoRoot, profDir), await buildahTool(work), await kanikoTool(repoRoot, work)];
    // the same big-layer build with --sbom, right after builder's: the SBOM's cost A/B (issue 20)
    allTools.push(await builderTool(repoRoot, profDir, { name: 'builder-sbom', args: ['--sbom'], workloads: ['big-layer'] }));
    // The unprivileged-container rows: each tool in its own crun job container, as CI runs them (issue 23).
    const shared = process.env.BUILDER_SHARED ?? path.resolve(repoRoot, '../shared');
    allTools.push(await builderCrunTool(repoRoot, work, shared, allTools[0]!.version),
      await kanikoCrunTool(process.env.KANIKO_EXECUTOR ?? kanikoAnchor(repoRoot, 'executor'), shared, allTools[2]!.version));
    const tools = allTools.filter((t) => !args.tools || args.tools.includes(t.name));
    for (const t of tools) log(`${t.name} ${t.version}: ${t.unavailable ?? 'ok'}`);
    const usable = tools.filter((t) => !t.unavailable);

    for (const row of START_UP_ROWS) {
      if (args.only && !args.only.includes(row.name)) continue;
      for (let i = 0; i < START_UP_RUNS; i++) {
        for (const tool of i % 2 === 0 ? usable : [...usable].reverse()) {
          const argv = row.argv(tool);
          if (!argv) continue;
          const logFile = path.join(work, 'logs', `${row.name}-${tool.name}-${i}.log`);
          await mkdir(path.dirname(logFile), { recursive: true });
          const m = await measure(argv, { logFile, timeoutMs: 60_000 });
          const ok = m.exitCode === 0;
          records.push({ workload: row.name, mode: 'cold', tool: tool.name, iteration: i, ok, error: ok ? undefined : `exit ${m.exitCode}: ${await lastError(logFile)}`,
            wall: m.wall, user: m.user, sys: m.sys, peakRssTree: m.peakRssTree, maxRssProcess: m.maxRssProcess, sent: 0, received: 0 });
          log(`${row.name} #${i + 1}/${START_UP_RUNS} ${tool.name}: ${ok ? `${m.wall.toFixed(3)}s wall, ${(m.user + m.sys).toFixed(2)}s CPU, max RSS ${(m.maxRssProcess / 1048576).toFixed(0)} MB` : `FAILED exit ${m.exitCode}`}`);
        }
      }
    }

    for (const w of workloads) {
      const ctx = w.cachedContext ? path.join(cacheDir, 'contexts', `${w.name}-v1`) : path.join(work, 'ctx', w.name);
      const tw = Date.now();
      await w.prepare(path.join(srcBench, 'workloads', w.name), ctx, { registry: proxy.host, bigBytes });
      let tree: string | undefined;
      let treeBytes: number | undefined;
      if (args.baseline && w.baselineTree) {
        tree = await w.baselineTree(path.join(work, 'tree', w.name), { registry: proxy.host, bigBytes }, ctx);
        treeBytes = await duBytes(tree);
      }
      const failed = new Set<string>();
      const runs = runsFor(w);
      for (let i = 0; i < runs; i++) {
        const runners = usable.filter((t) => !w.tools || (w.tools as readonly string[]).includes(t.name));
        const order = i % 2 === 0 ? runners : [...runners].reverse();
        for (const tool of order) {
          if (failed.has(tool.name) || (tool.workloads && !tool.workloads.includes(w.name))) continue;
          const stateDir = path.join(work, 'state', `${tool.name}-${w.name}-${i}`);
          await mkdir(stateDir, { recursive: true });
          const modes = (['cold', 'warm', 'cache-fill', 'cached'] as const).filter((m) => m === 'cold'
            || (m === 'warm' && w.warm && tool.warm && i < (w.warmRuns ?? runs))
            || ((m === 'cache-fill' || m === 'cached') && !tool.cacheUnavailable && i < cachedRunsFor(w)));
          for (const mode of modes) {
            const repoTag = `bench/${w.name}-${tool.name}-${i}-${mode}:latest`;
            const cached = mode === 'cache-fill' || mode === 'cached';
            const logFile = path.join(work, 'logs', `${w.name}-${tool.name}-${i}-${mode}.log`);
            await mkdir(path.dirname(logFile), { recursive: true });
            let setupError: unknown;
            if (mode === 'warm' && tool.prepareWarm) {
              await tool.prepareWarm({ workload: w.name, ctxDir: ctx, registry: proxy.host, destination: '', stateDir, logFile, timeoutMs: 6 * 60_000 })
                .catch((err: unknown) => { setupError = err; });
            }
            proxy.reset();
            meter.reset();
            // Cache runs start from nothing local (their own state dir each) and share only the cache repository.
            const job = { workload: w.name, ctxDir: ctx, registry: proxy.host, destination: `${proxy.host}/${repoTag}`,
              stateDir: cached ? path.join(stateDir, mode) : stateDir, logFile, timeoutMs: w.name === 'big-layer' ? 15 * 60_000 : 6 * 60_000,
              cacheRepo: cached ? `${proxy.host}/bench/cache/${w.name}-${tool.name}-${i}` : undefined, ...(w.builderArgs ? { builderArgs: w.builderArgs } : {}) };
            await mkdir(job.stateDir, { recursive: true });
            let r: ToolRun;
            try {
              if (setupError) throw setupError;
              r = mode === 'warm' ? await tool.warm!(job) : await tool.cold(job);
            } catch (err) {
              r = { wall: NaN, user: NaN, sys: NaN, maxRssProcess: NaN, peakRssTree: NaN, exitCode: 1, logFile };
              await writeFile(logFile, `bench: ${(err as Error).stack ?? err}\n`, { flag: 'a' });
            }
            const bytes = proxy.counts();
            const blobs = meter.counts();
            const layers = r.exitCode === 0 ? await pushedLayers(reg.host, repoTag) : undefined;
            const ok = r.exitCode === 0 && layers !== undefined;
            const error = ok ? undefined : r.exitCode !== 0 ? `exit ${r.exitCode}: ${await lastError(logFile)}` : 'exit 0 but no manifest at the destination';
            records.push({ workload: w.name, mode, tool: tool.name, iteration: i, ok, error, wall: r.wall, user: r.user, sys: r.sys,
              peakRssTree: r.peakRssTree, maxRssProcess: r.maxRssProcess, sent: bytes.sent, received: bytes.received, snapshot: r.snapshot, layers,
              layerDown: blobs.layerDown, layerUp: blobs.layerUp, blobDown: blobs.blobDown, blobUp: blobs.blobUp,
              blobGets: blobs.blobGets, blobPuts: blobs.blobPuts, mounts: blobs.mounts });
            log(`${w.name} #${i + 1}/${runs} ${tool.name} ${mode}: ${ok ? `${r.wall.toFixed(2)}s wall, ${(r.user + r.sys).toFixed(2)}s CPU, ` +
              `RSS tree ${(r.peakRssTree / 1048576).toFixed(0)} MB, ${(bytes.sent / 1048576).toFixed(1)} MB sent, ` +
              `${(bytes.received / 1048576).toFixed(1)} MB received, layers ${(blobs.layerDown / 1048576).toFixed(2)} MB down / ${(blobs.layerUp / 1048576).toFixed(2)} MB up` +
              ` (${blobs.blobGets} blob GETs, ${blobs.blobPuts} uploads, ${blobs.mounts} mounts)${r.snapshot !== undefined ? `, snapshot ${r.snapshot.toFixed(2)}s` : ''}` : `FAILED ${error} (log ${logFile})`}`);
            if (cached) await tool.cleanup(job.stateDir);
            if (!ok) {
              if (mode === 'cold') { failed.add(tool.name); break; }
              // A failed warm run says nothing about the cache runs, and a failed fill leaves nothing to rebuild from.
              if (mode === 'cache-fill') break;
            }
          }
          await tool.cleanup(stateDir);
        }
        for (const level of tree ? w.baselineLevels ?? [1] : []) {
          // The machine's limit for the same bytes: tar -> sha256 (diffID) and gzip -LEVEL -> file + sha256 (digest).
          const bdir = path.join(work, 'baseline');
          await mkdir(bdir, { recursive: true });
          const script = `set -e; cd ${JSON.stringify(bdir)}; rm -f fifo; mkfifo fifo;` +
            ` (gzip -${level} < fifo | tee layer.tgz | sha256sum > digest) & tar -cf - -C ${JSON.stringify(tree)} . | tee fifo | sha256sum > diffid; wait`;
          const logFile = path.join(work, 'logs', `${w.name}-baseline-gzip${level}-${i}.log`);
          const m = await measure(['bash', '-c', script], { logFile });
          const ok = m.exitCode === 0;
          records.push({ workload: w.name, mode: 'baseline', tool: `gzip-${level}`, iteration: i, ok, error: ok ? undefined : await lastError(logFile),
            wall: m.wall, user: m.user, sys: m.sys, peakRssTree: m.peakRssTree, maxRssProcess: m.maxRssProcess, sent: 0, received: 0, treeBytes });
          log(`${w.name} #${i + 1}/${runs} baseline gzip -${level} (${((treeBytes ?? 0) / 1048576).toFixed(0)} MB tree): ${m.wall.toFixed(2)}s wall, ${(m.user + m.sys).toFixed(2)}s CPU`);
          await rm(bdir, { recursive: true, force: true });
        }
      }
      // Keep the registry's disk use bounded: drop this workload's pushed repositories (blobs stay; small).
      await rm(path.join(reg.storageDir, 'docker/registry/v2/repositories/bench'), { recursive: true, force: true });
      if (tree && !tree.startsWith(ctx)) await rm(tree, { recursive: true, force: true });
      log(`${w.name} done in ${((Date.now() - tw) / 1000).toFixed(0)}s`);
    }

    const elapsed = (Date.now() - t0) / 1000;
    const sums = summarize(records);
    const machine = {
      nproc: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', ramGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
      kernel: os.release(), loadavgStart: loadStart, loadavgEnd: os.loadavg().map((x) => x.toFixed(2)).join(' '), fs: workFs.describe,
    };
    const versions: Record<string, string> = { node: process.version };
    for (const t of allTools) versions[t.name] = t.unavailable ? `${t.version} (${t.unavailable})` : t.version;
    versions.registry = (await runCmd('docker-registry', ['--version']).catch(() => '?')).trim();
    const buildahDriver = (allTools[1] as Tool & { storageDriver?: string }).storageDriver;
    const result = {
      date: started.toISOString(), elapsedSeconds: elapsed, machine, versions, buildahStorageDriver: buildahDriver,
      args: { ...args, bigBytes }, workloads: [
        ...START_UP_ROWS.filter((r) => !args.only || args.only.includes(r.name)).map((r) => (
          { name: r.name, summary: `${r.summary}: process start and module loading, no build; ${START_UP_RUNS} runs`, runs: START_UP_RUNS, warm: false, warmRuns: 0, cachedRuns: 0 })),
        ...workloads.map((w) => ({ name: w.name, summary: w.summary, runs: runsFor(w), warm: w.warm,
          warmRuns: Math.min(w.warmRuns ?? runsFor(w), runsFor(w)), cachedRuns: cachedRunsFor(w) })),
      ],
      tools: allTools.map((t) => ({ name: t.name, version: t.version, unavailable: t.unavailable, cacheUnavailable: t.cacheUnavailable, how: t.how,
        ...(t.workloads ? { workloads: t.workloads } : {}), ...(t.warm ? {} : { noWarm: true }) })),
      summary: sums, records,
    };
    const resultsDir = path.join(srcBench, 'results');
    await mkdir(resultsDir, { recursive: true });
    const jsonFile = path.join(resultsDir, `${started.toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(jsonFile, JSON.stringify(result, null, 2) + '\n');
    log(`results: ${path.relative(repoRoot, jsonFile)} (${elapsed.toFixed(0)}s total)`);

    const md = await renderMarkdown(result, path.relative(repoRoot, jsonFile));
    const fullRun = !args.quick && !args.only && args.runs === undefined && args.bigMb === undefined && !args.tools;
    if (args.write ?? fullRun) {
      await writeFile(path.join(repoRoot, 'BENCHMARKS.md'), md);
      log('wrote BENCHMARKS.md');
    } else {
      await writeFile(path.join(resultsDir, 'last-partial.md'), md);
      log(`partial run: BENCHMARKS.md untouched; tables in ${path.relative(repoRoot, path.join(resultsDir, 'last-partial.md'))}`);
    }
    process.stdout.write(md);
  } finally {
    for (const c of cleanupFns.reverse()) await c().catch(() => undefined);
    cleanupFns = [];
    if (!args.keep) {
      try {
        // buildah state dirs unmount themselves in cleanup; be safe before removing the work dir.
        const mounts = (await readFile('/proc/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(`${work}/`));
        for (const m of mounts.sort((a, b) => b.length - a.length)) await runCmd('umount', ['-l', m]).catch(() => undefined);
        if (!workFs.mounted) await rm(work, { recursive: true, force: true }); // an image goes whole below
      } finally {
        await workFs.stop().catch((e: unknown) => log(`the work dir's image stays: ${(e as Error).message}; remove it with: ${workFs.removal}`));
      }
    } else {
      log(`kept ${work}${workFs.mounted ? ` on a mounted image (remove it with: ${workFs.removal})` : ''}`);
    }
  }
}

interface ResultFile {
  args?: { quick?: boolean };
  /** Set by --render A,B: where each workload's rows come from (later files replace earlier ones' workloads). */
  sources?: Array<{ file: string; date: string; minutes: number; quick: boolean; workloads: string; load: string }>;
  date: string; elapsedSeconds: number; machine: Record<string, unknown>; versions: Record<string, string>;
  workloads: Array<{ name: string; summary: string; runs: number; warm: boolean; warmRuns: number; cachedRuns?: number }>;
  tools: Array<{ name: string; version: string; unavailable?: string; cacheUnavailable?: string; how: string; workloads?: string[]; noWarm?: boolean }>;
  records: RunRecord[];
}

/** BENCHMARKS.md from a results JSON (also `node dist/bench/run.js --render bench/results/X.json`), plus bench/ANALYSIS.md. */
async function renderMarkdown(result: ResultFile, jsonRel: string): Promise<string> {
  const sums = summarize(result.records);
  const tools = result.tools;
  const workloads = result.workloads;
  const runsFor = (w: { runs: number }): number => w.runs;
  const m = result.machine as { nproc: number; cpu: string; ramGiB: number; kernel: string; fs: string; loadavgStart?: string; loadavgEnd?: string };
  let md = `# Benchmarks\n\n`;
  md += `Generated by \`npm run bench\` (bench/run.ts; issues 5, 8, 13). Raw data: \`${jsonRel}\`.\n\n`;
  if (!result.sources) md += `- Date: ${result.date} (run took ${(result.elapsedSeconds / 60).toFixed(1)} min)\n`;
  md += `- Machine: ${m.nproc} CPUs (${m.cpu}), ${m.ramGiB} GiB RAM, kernel ${m.kernel}, work dir on ${m.fs}${m.loadavgStart ? `; load average (1/5/15 min) at start ${m.loadavgStart}, at end ${m.loadavgEnd} — other jobs on the machine add noise; compare tools within one run` : ''}\n`;
  md += `- Versions: ${Object.entries(result.versions).map(([k, v]) => `${k} ${v}`).join('; ')}\n`;
  md += `- Runs: ${workloads.map((w) => `${w.name} ×${runsFor(w)}${w.cachedRuns ? ` (cached rebuild ×${w.cachedRuns})` : ''}`).join(', ')} (A/B alternating: the tool order flips every iteration)` +
    `${!result.sources && result.args?.quick ? '. **Quick mode** (`--quick` / `BENCH_QUICK=1`): one iteration each, a smoke test, not a measurement to quote' : ''}\n`;
  if (result.sources) {
    md += `- Merged from ${result.sources.length} runs; each workload's rows come from one run (the last that has it), so tools are compared within one run:\n`;
    for (const x of result.sources) {
      md += `  - \`${x.file}\`: ${x.date}, ${x.minutes.toFixed(1)} min, ${x.workloads}${x.quick ? ' (**quick mode**: one iteration each)' : ''}; load average ${x.load}\n`;
    }
  }
  md += `\n## How it is measured\n\n`;
  md += `- Every tool pulls the base images from and pushes to the same local registry (docker-registry, 127.0.0.1) through a byte-counting TCP proxy: "MB sent / received" are all bytes on the wire in each direction (HTTP included). Each run pushes to a fresh repository.\n`;
  md += `- Behind the TCP proxy a blob meter (bench/support/registry.ts) reads the registry protocol: "layer MB down / up" are the bodies of blob GETs and blob uploads (PATCH/PUT/POST) minus configs (digests seen as a manifest's config); it also counts blob GETs, finished uploads and accepted cross-repository mounts. The registry's access log cannot do this (its combined log has response sizes only, so uploads are invisible).\n`;
  md += `- wall: our clock around the tool's process(es); CPU: user+sys of the whole process tree (GNU time); peak RSS tree: the largest sum of RSS over the tool's process tree, sampled from /proc every 50 ms; max process RSS: GNU time's %M (largest single process).\n`;
  md += `- snapshot: seconds summed from builder log lines matching \`/snapshot .* in ([0-9.]+)s/\`; n/a when the tool prints none.\n`;
  for (const t of tools) md += `- ${t.name}: ${t.unavailable ?? t.how}\n`;
  md += `- Machine baseline: the same bytes (many-files: a host tree of the same shape and random content; node-app: the context; big-layer: one random file) through tar, sha256 of the tar, and gzip (level 1 = the builder's default, and level 6 = buildah's) written to a file with its sha256 — the floor for a snapshot (tar + diffID + compress + digest). Measured in the same run, once per iteration.\n`;
  md += `- Time budget: big-layer runs once per tool, no warm rebuild (a 2 GiB layer costs minutes); warm rebuilds are measured in the first iterations only: ${workloads.filter((w) => w.warm).map((w) => `${w.name} ${w.warmRuns}`).join(', ')}; cached rebuilds (a fill and a rebuild each) in the first ${workloads.filter((w) => !w.name.startsWith(START_UP)).map((w) => `${w.name} ${w.cachedRuns ?? 0}`).join(', ')}.\n`;
  md += `- Compression is not equal: the builder writes gzip level 1 by default, buildah gzip level 6 (pgzip, parallel). Both are measured as users run them.\n`;
  md += `\n## Results\n`;
  md += toolTables(sums, tools, workloads);
  md += baselineTable(sums);
  md += targetsTable(sums);
  const analysis = await readFile(path.join(srcBench, 'ANALYSIS.md'), 'utf8').catch(() => '');
  if (analysis) md += `\n${analysis.trim()}\n`;
  md += `\n## Workloads\n\n${workloads.map((w) => `- **${w.name}**: ${w.summary}${w.name.startsWith(START_UP) ? '' : ` (bench/workloads/${w.name}/)`}`).join('\n')}\n`;
  md += `\n## Running it\n\n\`\`\`\nnpm run bench                          # full run, rewrites this file\nBENCH_QUICK=1 npm run bench            # small only, 1 run: cold, warm, cached rebuild (a few minutes)\nnode dist/bench/check-meter.js         # self-check of the blob meter against a real registry\nnpm run bench -- --quick               # 1 run of everything, big-layer 256 MiB (smoke)\nnode dist/bench/run.js --only small,many-files --runs 3\n\`\`\`\n`;
  md += `Needs root (debootstrap, buildah chroot isolation, kaniko's throwaway roots) and the Debian packages in scripts/install-deps.sh. Base images are cached in ~/.cache/builder-bench (BENCH_CACHE_DIR); the Debian one takes a few minutes the first time. Every tool's state, the registry's storage and the generated contexts live in a work dir on a journaled ext4 image the run makes, loop-mounts and removes (BENCH_WORK_DIR to choose a directory instead): on an ext4 without a journal the kernel makes each new inode scan the ones freed in the last 30 s, so a run paid for the cleanup of the run before it (bench/support/workfs.ts). Kaniko v1.24.0's executor and warmer are taken from ../shared/anchors when present (KANIKO_EXECUTOR / KANIKO_WARMER override); kaniko only ever runs chrooted into a fresh root in a private mount namespace, never on the host's "/". The builder-crun and kaniko-crun rows run each build in a fresh crun container (crun, umoci, and Docker's seccomp profile from ../shared/tools/unprivileged; builder's executor image is built once per run). \`BENCH_QUICK=1 npm run bench\` runs the small workload once (cold, warm, cached rebuild) in a few minutes.\n`;
  return md;
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
