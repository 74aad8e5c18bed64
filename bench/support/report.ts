// Bench: summaries (median, min, max), ratios, and the BENCHMARKS.md tables.

/** cache-fill: a build with the registry layer cache from empty local state; cached: the same again, fresh local state, same cache. */
export type Mode = 'cold' | 'warm' | 'cache-fill' | 'cached';

export interface RunRecord {
  workload: string;
  mode: Mode | 'baseline';
  tool: string;
  iteration: number;
  ok: boolean;
  error?: string;
  wall: number;
  user: number;
  sys: number;
  /** Peak sum of RSS over the process tree (bytes). */
  peakRssTree: number;
  /** Largest single process max RSS (bytes). */
  maxRssProcess: number;
  sent: number;
  received: number;
  snapshot?: number;
  /** Layers in the pushed manifest (checked with skopeo against the registry). */
  layers?: number;
  /** Bytes of the tree (baseline rows). */
  treeBytes?: number;
  /** Registry blob bodies this run moved (the blob meter); layer* leave out configs. Absent in older results. */
  layerDown?: number;
  layerUp?: number;
  blobDown?: number;
  blobUp?: number;
  blobGets?: number;
  blobPuts?: number;
  mounts?: number;
}

export interface Stat { median: number; min: number; max: number; n: number }

export function stat(xs: number[]): Stat | undefined {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]!, n: v.length };
}

export interface Summary {
  workload: string;
  mode: string;
  tool: string;
  runs: number;
  failures: number;
  firstError?: string;
  wall?: Stat;
  cpu?: Stat;
  peakRssTree?: Stat;
  maxRssProcess?: Stat;
  sent?: Stat;
  received?: Stat;
  snapshot?: Stat;
  layers?: number;
  treeBytes?: number;
  layerDown?: Stat;
  layerUp?: Stat;
  blobGets?: Stat;
  blobPuts?: Stat;
  mounts?: Stat;
}

export function summarize(records: RunRecord[]): Summary[] {
  const groups = new Map<string, RunRecord[]>();
  for (const r of records) {
    const k = `${r.workload}\0${r.mode}\0${r.tool}`;
    const g = groups.get(k);
    if (g) g.push(r); else groups.set(k, [r]);
  }
  const out: Summary[] = [];
  for (const rs of groups.values()) {
    const ok = rs.filter((r) => r.ok);
    const first = rs[0]!;
    out.push({
      workload: first.workload, mode: first.mode, tool: first.tool, runs: rs.length, failures: rs.length - ok.length,
      firstError: rs.find((r) => !r.ok)?.error,
      wall: stat(ok.map((r) => r.wall)),
      cpu: stat(ok.map((r) => r.user + r.sys)),
      peakRssTree: stat(ok.map((r) => r.peakRssTree)),
      maxRssProcess: stat(ok.map((r) => r.maxRssProcess)),
      sent: stat(ok.map((r) => r.sent)),
      received: stat(ok.map((r) => r.received)),
      snapshot: stat(ok.flatMap((r) => (r.snapshot === undefined ? [] : [r.snapshot]))),
      layers: ok[0]?.layers,
      treeBytes: first.treeBytes,
      layerDown: stat(ok.flatMap((r) => (r.layerDown === undefined ? [] : [r.layerDown]))),
      layerUp: stat(ok.flatMap((r) => (r.layerUp === undefined ? [] : [r.layerUp]))),
      blobGets: stat(ok.flatMap((r) => (r.blobGets === undefined ? [] : [r.blobGets]))),
      blobPuts: stat(ok.flatMap((r) => (r.blobPuts === undefined ? [] : [r.blobPuts]))),
      mounts: stat(ok.flatMap((r) => (r.mounts === undefined ? [] : [r.mounts]))),
    });
  }
  return out;
}

const MB = 1024 * 1024;
const f1 = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const sec = (s?: Stat): string => (s ? (s.n > 1 ? `${f1(s.median)} [${f1(s.min)}–${f1(s.max)}]` : f1(s.median)) : '–');
const mbMax = (s?: Stat): string => (s ? (s.n > 1 ? `${f1(s.median / MB)} (max ${f1(s.max / MB)})` : f1(s.median / MB)) : '–');
const mb = (s?: Stat): string => (s ? f1(s.median / MB) : '–');
const ratio = (a?: Stat, b?: Stat): string => (a && b && b.median > 0 ? `${(a.median / b.median).toFixed(2)}×` : '–');
/** Layer bytes in MB, exact zero shown as 0 (the cached-rebuild goal is "0 layer bytes", not "0.00"). */
const lmb = (s?: Stat): string => (!s ? '–' : s.median === 0 ? '0' : s.median < 0.01 * MB ? `${(s.median / 1024).toFixed(1)} KiB` : f1(s.median / MB));
const n0 = (s?: Stat): string => (s ? String(Math.round(s.median)) : '–');
/** A long error keeps its head (what failed) and its tail (the registry's or tool's reason), escaped for a table cell. */
const errCell = (e = ''): string => (e.length > 200 ? `${e.slice(0, 70)} … ${e.slice(-120)}` : e).replaceAll('|', '\\|');

/**
 * Failures whose cause is known and is the tool's, not the harness's: the reason goes next to the error in the
 * table, so a reader of BENCHMARKS.md does not take it for a broken bench.
 */
export function knownCause(tool: string, mode: string, error = ''): string | undefined {
  if (tool === 'kaniko' && mode === 'warm' && error.includes('MANIFEST_INVALID')) {
    return 'kaniko bug, not the harness (GoogleContainerTools/kaniko#2423, #2713; fix PR #3231 unmerged): built on a warmer-cached OCI base it' +
      ' PUTs its manifest as Docker v2 with an OCI mediaType in the body; the same harness with Docker v2 bases passes (bench/ANALYSIS.md)';
  }
  return undefined;
}
const causeCell = (tool: string, mode: string, e?: string): string => {
  const c = knownCause(tool, mode, e);
  return c ? ` — ${c}` : '';
};

export interface ToolInfo { name: string; unavailable?: string; cacheUnavailable?: string; workloads?: string[]; noWarm?: boolean }

/** Which tool's row a ratio compares with which: builder with each host peer, builder-crun with kaniko-crun. */
function ratioPairs(tools: ToolInfo[]): Array<{ b: string; p: string }> {
  const host = tools.filter((t) => t.name !== 'builder' && !t.name.endsWith('-crun')).map((t) => ({ b: 'builder', p: t.name }));
  const crun = tools.some((t) => t.name === 'builder-crun') && tools.some((t) => t.name === 'kaniko-crun') ? [{ b: 'builder-crun', p: 'kaniko-crun' }] : [];
  return [...host, ...crun];
}
const pairHeader = (pairs: Array<{ b: string; p: string }>): string =>
  `| workload | ${pairs.map((x) => (x.b === 'builder' ? `vs ${x.p}` : `${x.b} vs ${x.p}`)).join(' | ')} |\n|---|${pairs.map(() => '---').join('|')}|\n`;
/** A tool that never runs this workload (or this mode) gets no row. */
const skipRow = (t: ToolInfo, w: string, mode: string): boolean => (t.workloads !== undefined && !t.workloads.includes(w)) || (mode === 'warm' && t.noWarm === true);

export function toolTables(sums: Summary[], tools: ToolInfo[], allWorkloads: Array<{ name: string; warm: boolean; cachedRuns?: number }>): string {
  // The start-up rows (version and help commands) belong in the cold table only.
  const builds = allWorkloads.filter((w) => !w.name.startsWith('start-up'));
  const find = (w: string, m: string, t: string): Summary | undefined => sums.find((s) => s.workload === w && s.mode === m && s.tool === t);
  let md = '';
  for (const mode of ['cold', 'warm'] as const) {
    md += mode === 'cold'
      ? '\n### Cold build (empty local state, pull base, build, push)\n\n'
      : '\n### Warm local rebuild (same machine, base layers in the local store, every step re-run)\n\n';
    md += '| workload | tool | runs ok | wall s median [min–max] | CPU s (user+sys) | peak RSS tree MB | max process RSS MB | MB sent / received | layer MB down / up | snapshot s | layers |\n';
    md += '|---|---|---|---|---|---|---|---|---|---|---|\n';
    for (const w of mode === 'cold' ? allWorkloads : builds) {
      if (mode === 'warm' && !w.warm) {
        md += `| ${w.name} | all | – | not measured (cold only, see notes) | | | | | | | |\n`;
        continue;
      }
      for (const t of tools) {
        if (skipRow(t, w.name, mode)) continue;
        const s = find(w.name, mode, t.name);
        if (!s) {
          md += `| ${w.name} | ${t.name} | – | ${t.unavailable ?? 'not run'} | | | | | | | |\n`;
          continue;
        }
        const okRuns = s.runs - s.failures;
        const err = s.failures > 0 ? ` **FAILED ${s.failures}/${s.runs}**: ${errCell(s.firstError)}${causeCell(t.name, mode, s.firstError)}` : '';
        md += `| ${w.name} | ${t.name} | ${okRuns}/${s.runs} | ${sec(s.wall)}${err} | ${sec(s.cpu)} | ${mbMax(s.peakRssTree)} | ${mb(s.maxRssProcess)}` +
          ` | ${mb(s.sent)} / ${mb(s.received)} | ${lmb(s.layerDown)} / ${lmb(s.layerUp)} | ${s.snapshot ? sec(s.snapshot) : 'n/a'} | ${s.layers ?? '–'} |\n`;
      }
    }
    // Ratios builder/peer.
    const pairs = ratioPairs(tools);
    md += `\nRatios builder / peer (median wall, median CPU${mode === 'cold' ? ', median peak RSS tree' : ''}):\n\n`;
    md += pairHeader(pairs);
    for (const w of mode === 'cold' ? allWorkloads : builds) {
      if (mode === 'warm' && !w.warm) continue;
      const cells = pairs.map(({ b: bt, p }) => {
        const b = find(w.name, mode, bt);
        const s = find(w.name, mode, p);
        if (!b?.wall || !s?.wall) return '–';
        return `wall ${ratio(b.wall, s.wall)}, CPU ${ratio(b.cpu, s.cpu)}${mode === 'cold' ? `, RSS ${ratio(b.peakRssTree, s.peakRssTree)}` : ''}`;
      });
      md += `| ${w.name} | ${cells.join(' | ')} |\n`;
    }
  }
  md += '\n### Cached rebuild (registry layer cache; every run starts from empty local state and shares only the cache repository)\n\n';
  md += 'Fill: the first build with the cache (nothing cached yet). Rebuild: the same build again from fresh work and local cache dirs (an empty root for kaniko, empty storage for buildah): what a CI job on a fresh runner pays. ' +
    'Layer MB: registry blob bodies minus configs, counted by the blob meter; GETs / uploads / mounts: blob downloads with a body, finished blob uploads, accepted cross-repository mounts.\n\n';
  md += '| workload | tool | runs ok | fill wall s | fill layer MB down / up | rebuild wall s median [min–max] | rebuild CPU s | rebuild layer MB down / up | rebuild blob GETs / uploads / mounts | rebuild peak RSS tree MB | layers |\n';
  md += '|---|---|---|---|---|---|---|---|---|---|---|\n';
  for (const w of builds) {
    for (const t of tools) {
      if (skipRow(t, w.name, 'cached')) continue;
      const fill = find(w.name, 'cache-fill', t.name);
      const s = find(w.name, 'cached', t.name);
      if (!fill && !s) {
        md += `| ${w.name} | ${t.name} | – | ${t.unavailable ?? t.cacheUnavailable ?? (w.cachedRuns === 0 ? 'not measured' : 'not run')} | | | | | | | |\n`;
        continue;
      }
      const errs = [fill, s].filter((x): x is Summary => !!x && x.failures > 0)
        .map((x) => ` **${x.mode} FAILED ${x.failures}/${x.runs}**: ${errCell(x.firstError)}`).join('');
      md += `| ${w.name} | ${t.name} | ${s ? s.runs - s.failures : 0}/${fill?.runs ?? 0} | ${sec(fill?.wall)} | ${lmb(fill?.layerDown)} / ${lmb(fill?.layerUp)}` +
        ` | ${sec(s?.wall)}${errs} | ${sec(s?.cpu)} | ${lmb(s?.layerDown)} / ${lmb(s?.layerUp)} | ${n0(s?.blobGets)} / ${n0(s?.blobPuts)} / ${n0(s?.mounts)}` +
        ` | ${mbMax(s?.peakRssTree)} | ${s?.layers ?? '–'} |\n`;
    }
  }
  const pairs = ratioPairs(tools);
  md += `\nRatios builder / peer, cached rebuild (median wall, median CPU):\n\n`;
  md += pairHeader(pairs);
  for (const w of builds) {
    md += `| ${w.name} | ${pairs.map(({ b: bt, p }) => {
      const b = find(w.name, 'cached', bt);
      const s = find(w.name, 'cached', p);
      return b?.wall && s?.wall ? `wall ${ratio(b.wall, s.wall)}, CPU ${ratio(b.cpu, s.cpu)}` : '–';
    }).join(' | ')} |\n`;
  }
  return md;
}

export function baselineTable(sums: Summary[]): string {
  const base = sums.filter((s) => s.mode === 'baseline');
  if (base.length === 0) return '\n(no machine baseline measured in this run)\n';
  let md = '\n### Machine baseline: `tar -cf - -C TREE . | tee FIFO | sha256sum` + `gzip -LEVEL < FIFO | tee layer.tgz | sha256sum`\n\n';
  md += 'gzip-1 is the builder\'s default level (`--compression-level 1`), gzip-6 buildah\'s. The snapshot ratio compares the builder\'s summed snapshot time (diff + layer write of every step, cold build) with gzip-1.\n\n';
  md += '| workload (tree) | level | tree MB | runs | wall s median [min–max] | CPU s | builder snapshot s (median) | snapshot / baseline |\n|---|---|---|---|---|---|---|---|\n';
  for (const s of base) {
    const b = s.tool === 'gzip-1' ? sums.find((x) => x.workload === s.workload && x.mode === 'cold' && x.tool === 'builder') : undefined;
    md += `| ${s.workload} | ${s.tool} | ${s.treeBytes ? f1(s.treeBytes / MB) : '–'} | ${s.runs - s.failures}/${s.runs} | ${sec(s.wall)} | ${sec(s.cpu)}` +
      ` | ${b?.snapshot ? sec(b.snapshot) : 'n/a'} | ${b?.snapshot && s.wall ? ratio(b.snapshot, s.wall) : 'n/a'} |\n`;
  }
  return md;
}

/**
 * For a missed target: the profile's top cost and what was tried (bench/ANALYSIS.md has the measurements). Keyed by
 * the row's label up to " (issue"; only shown while the row is MISSED.
 */
const GAPS: Record<string, string> = {
  'start-up cold wall ≤ kaniko': '`--version` and `--help` into a pipe are answered by bin/builder\'s sh line (no node); any other command starts node on the V8 start-up snapshot (dist/builder.blob): `builder digest` ≈ 0.09 s wall',
  'start-up-help cold wall ≤ kaniko': 'as the start-up row',
  'small cold wall ≤ kaniko': 'stamped bench logs: FROM 0.12 s, base resolved 0.16 s, mounted 0.25 s, last step 0.35 s, pushed 0.45 s against kaniko 0.08 / 0.14 / 0.19 / 0.30 s; node\'s main thread is busy throughout, and a spawn forks all of it (7 per build); tried and kept: V8 snapshot, one sandbox helper, overlay-upper RUN indexes, lazy CAs, shared pings, POST beside HEAD, bases extracted as they download; not kept: per-step uploads, HEAD skipped (bench/ANALYSIS.md)',
  'node-app cold wall ≤ kaniko': 'two samples (13.9, 16.9 s); the code before and after this run\'s change, alternating right after it: 11.2 vs 10.95 s (bench/ANALYSIS.md); the COPY of 30,000 files and its snapshot are the time',
  'small cold wall ≤ 0.5× buildah': 'same costs as the kaniko row',
  'multi-stage cold wall ≤ 0.5× buildah': 'the Debian base extraction (first build) and the 1,000-file RUN; warm rebuild is 0.73× buildah',
  'node-app snapshot ≤ 1.3× machine baseline (gzip -1)': 'the RUN walks the whole root (≈ 40,000 lstats) which the baseline does not; tried: synchronous walk, compact index (1.9× → 1.31× in a quieter run); next: diff while walking',
  'many-files warm rebuild wall ≤ buildah': 'the RUN creating 20k files + 100 MB and its snapshot; the base is an overlay mount (0.03 s) since this session',
  'node-app warm rebuild wall ≤ buildah': 'COPY . /app creating 34,506 files in the overlay root (small files now read and written synchronously; `cp -a` of the same tree into an overlay takes 2.3 s on the bench\'s journaled disk) and removing them at the end (≈ 0.75 s); tried: overlay-mounted bases (2.11× → 1.47×)',
  'node-app cached rebuild ≤ 1 s and 0 layer bytes': 'hashing the 30,000-file context for the COPY key on a fresh runner (the bench starts from an empty cache dir); the per-file hash cache makes a second build on one machine stat-only (≈ 2–5 s)',
};

export function targetsTable(sums: Summary[]): string {
  const g = (w: string, m: string, t: string): Summary | undefined => sums.find((s) => s.workload === w && s.mode === m && s.tool === t);
  const rows: string[] = [];
  for (const w of ['small', 'multi-stage']) {
    const b = g(w, 'cold', 'builder'); const p = g(w, 'cold', 'buildah');
    const r = b?.wall && p?.wall ? b.wall.median / p.wall.median : undefined;
    rows.push(`| ${w} cold wall ≤ 0.5× buildah (issue 5) | ${r === undefined ? 'n/a' : `${r.toFixed(2)}×`} | ${r === undefined ? 'not measured' : r <= 0.5 ? 'met' : 'MISSED'} |`);
  }
  // Issue 13: builder's median wall ≤ kaniko's on every workload, cold and warm.
  // (the cross-* workloads run builder alone: they compare two platforms with one, below)
  const workloads = [...new Set(sums.filter((s) => s.mode === 'cold' && !s.workload.startsWith('cross-')).map((s) => s.workload))];
  for (const mode of ['cold', 'warm'] as const) {
    for (const w of workloads) {
      const b = g(w, mode, 'builder'); const k = g(w, mode, 'kaniko');
      if (!b && !k) continue;
      const r = b?.wall && k?.wall ? b.wall.median / k.wall.median : undefined;
      const why = k && !k.wall
        ? `not measured (kaniko failed every run${knownCause('kaniko', mode, k.firstError) ? ': its warmer/OCI bug, see the table' : ', see the table'})`
        : b && !b.wall ? 'builder failed' : 'not measured';
      rows.push(`| ${w} ${mode} wall ≤ kaniko (issue 13) | ${r === undefined ? 'n/a' : `${r.toFixed(2)}×`} | ${r === undefined ? why : r <= 1 ? 'met' : 'MISSED'} |`);
    }
  }
  // Issue 13: snapshots near the machine's limit, a big layer faster than buildah's pgzip, warm rebuilds ≤ buildah.
  for (const w of ['many-files', 'node-app']) {
    const b = g(w, 'cold', 'builder'); const base = g(w, 'baseline', 'gzip-1');
    const rs = b?.snapshot && base?.wall ? b.snapshot.median / base.wall.median : undefined;
    rows.push(`| ${w} snapshot ≤ 1.3× machine baseline (gzip -1) | ${rs === undefined ? 'n/a' : `${rs.toFixed(2)}×`} | ${rs === undefined ? 'not measured' : rs <= 1.3 ? 'met' : 'MISSED'} |`);
  }
  const ratioRow = (label: string, b: Summary | undefined, p: Summary | undefined, limit: number): string => {
    const r = b?.wall && p?.wall ? b.wall.median / p.wall.median : undefined;
    return `| ${label} | ${r === undefined ? 'n/a' : `${r.toFixed(2)}×`} | ${r === undefined ? 'not measured' : r <= limit ? 'met' : 'MISSED'} |`;
  };
  for (const mode of ['cold', 'warm'] as const) {
    rows.push(ratioRow(`cross-two ${mode} wall ≤ 1.3× cross-one (issue 19)`, g('cross-two', mode, 'builder'), g('cross-one', mode, 'builder'), 1.3));
  }
  rows.push(ratioRow('big-layer cold wall ≤ 0.9× buildah (issue 13)', g('big-layer', 'cold', 'builder'), g('big-layer', 'cold', 'buildah'), 0.9));
  // Issue 20: the same big-layer build with --sbom (run right after builder's): extra wall and extra peak RSS
  const plain = g('big-layer', 'cold', 'builder'); const sbom = g('big-layer', 'cold', 'builder-sbom');
  if (plain?.wall && sbom?.wall) {
    const extra = sbom.wall.median / plain.wall.median - 1;
    const mem = (sbom.peakRssTree?.max ?? 0) - (plain.peakRssTree?.max ?? 0);
    rows.push(`| big-layer --sbom: extra wall ≤ 10% of the build, extra peak RSS ≤ 50 MB (issue 20) | ${(extra * 100).toFixed(1)}%, ${f1(mem / MB)} MB | ${extra <= 0.1 && mem <= 50 * MB ? 'met' : 'MISSED'} |`);
  }
  for (const w of workloads) {
    if (g(w, 'warm', 'builder')) rows.push(ratioRow(`${w} warm rebuild wall ≤ buildah (issue 13)`, g(w, 'warm', 'builder'), g(w, 'warm', 'buildah'), 1));
  }
  // Issue 23: in an unprivileged CI container (crun), builder's executor image against kaniko's, cold and all-cached.
  for (const w of [...new Set(sums.filter((s) => s.tool === 'builder-crun').map((s) => s.workload))]) {
    for (const mode of ['cold', 'cached'] as const) {
      rows.push(ratioRow(`${w} unprivileged ${mode} wall ≤ kaniko (issue 23)`, g(w, mode, 'builder-crun'), g(w, mode, 'kaniko-crun'), 1));
    }
  }
  // Issue 8: a cached rebuild costs ≤ 1 s and moves no layer bytes (worst run of every workload counts).
  for (const s of sums.filter((x) => x.mode === 'cached' && x.tool === 'builder')) {
    if (!s.wall) {
      rows.push(`| ${s.workload} cached rebuild ≤ 1 s and 0 layer bytes (issue 8) | failed | MISSED |`);
      continue;
    }
    const bytes = (s.layerDown?.max ?? 0) + (s.layerUp?.max ?? 0);
    const k = g(s.workload, 'cached', 'kaniko');
    rows.push(`| ${s.workload} cached rebuild ≤ 1 s and 0 layer bytes (issue 8) | ${f1(s.wall.max)} s, ${bytes === 0 ? '0' : `${f1(bytes / MB)} MB`} layer bytes` +
      `${k?.wall ? ` (kaniko ${f1(k.wall.median)} s, ${f1(((k.layerDown?.median ?? 0) + (k.layerUp?.median ?? 0)) / MB)} MB)` : ''} | ${s.wall.max <= 1 && bytes === 0 ? 'met' : 'MISSED'} |`);
  }
  const rss = sums.filter((s) => s.tool === 'builder' && s.peakRssTree);
  const worst = rss.reduce<Summary | undefined>((a, s) => (!a || s.peakRssTree!.max > a.peakRssTree!.max ? s : a), undefined);
  rows.push(`| builder peak RSS ≤ 150 MB on every workload | ${worst ? `${f1(worst.peakRssTree!.max / MB)} MB (${worst.workload} ${worst.mode})` : 'n/a'} | ${worst ? (worst.peakRssTree!.max <= 150 * MB ? 'met' : 'MISSED') : 'not measured'} |`);
  const withGaps = rows.map((r) => {
    const label = r.slice(2, r.indexOf(' |')).replace(/ \(issue \d+\)$/, '');
    return `${r} ${r.endsWith('| MISSED |') && GAPS[label] ? GAPS[label] : ''} |`;
  });
  return `\n### Targets\n\n| target | now | status | top cost of a miss, and what was tried |\n|---|---|---|---|\n${withGaps.join('\n')}\n`;
}
