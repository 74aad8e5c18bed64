// Bench: the tools under test. Each gets a fresh private state per iteration ("cold"), a "warm" rebuild that
// reuses that state (base layers local), and a registry layer cache run ("cache-fill" then "cached": a rebuild from
// fresh local state that only shares the cache repository), then cleans up.
import { existsSync } from 'node:fs';
import { chmod, copyFile, link, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { addMeasured, measure, runCmd, type Measured } from './measure.js';

export type ToolName = 'builder' | 'builder-sbom' | 'buildah' | 'kaniko' | 'builder-crun' | 'kaniko-crun';

export interface BuildJob {
  workload: string;
  ctxDir: string;
  /** "127.0.0.1:PORT" (the counting proxy). */
  registry: string;
  /** "HOST/repo:tag" to push to. */
  destination: string;
  /** Per-iteration scratch dir of this tool (state for cold + warm lives here; cache runs get their own). */
  stateDir: string;
  logFile: string;
  timeoutMs: number;
  /** "HOST/repo": build with the tool's registry layer cache in this repository. */
  cacheRepo?: string;
  /** The workload's extra builder flags (--platform). */
  builderArgs?: string[];
}

export interface ToolRun extends Measured {
  /** Seconds spent in snapshots, when the tool reports it (builder: lines matching /snapshot .* in N s/). */
  snapshot?: number;
}

export interface Tool {
  name: ToolName;
  /** undefined when usable, else why not (shown in the table). */
  unavailable?: string;
  version: string;
  /** Free-form description of how it is run, for BENCHMARKS.md. */
  how: string;
  cold(job: BuildJob): Promise<ToolRun>;
  /** undefined = this tool has no warm mode here. */
  warm?(job: BuildJob): Promise<ToolRun>;
  /** Untimed, unmetered setup before warm() (kaniko's warmer: a scheduled job, not part of the build). */
  prepareWarm?(job: BuildJob): Promise<void>;
  /** Why cold(job with cacheRepo) cannot run (shown in the cached-rebuild table); undefined = it can. */
  cacheUnavailable?: string;
  cleanup(stateDir: string): Promise<void>;
  /** The command that prints the tool's version: the start-up row times it (no build, no registry). */
  versionArgv?: string[];
  /** The command that prints the tool's help: the start-up-help row times it. */
  helpArgv?: string[];
  /** Only these workloads (default: all). */
  workloads?: string[];
}

/** Sums the seconds in builder log lines like "snapshot ... in 1.23s" (or "... in 850ms"). */
export function parseSnapshotSeconds(log: string): number | undefined {
  let total = 0;
  let found = false;
  for (const m of log.matchAll(/snapshot.* in ([0-9.]+)\s*(ms|s)\b/gi)) {
    found = true;
    total += Number(m[1]) / (m[2]!.toLowerCase() === 'ms' ? 1000 : 1);
  }
  return found ? total : undefined;
}

// ---- builder ------------------------------------------------------------------------------------

/** A builder row with extra flags on some workloads (builder-sbom: the same build with --sbom, issue 20's cost target). */
export interface BuilderVariant { name: ToolName; args: string[]; workloads: string[] }

/** cpuProfDir: when set, every builder run writes V8 CPU profiles under cpuProfDir/<log name>/ (node --cpu-prof). */
export async function builderTool(repoRoot: string, cpuProfDir?: string, variant?: BuilderVariant): Promise<Tool> {
  const bin = path.join(repoRoot, 'bin/builder');
  const pkg = JSON.parse(await readFile(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  let rev = '';
  try {
    rev = (await runCmd('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD'])).trim();
    const dirty = (await runCmd('git', ['-C', repoRoot, 'status', '--porcelain', '--', 'src'])).trim();
    if (dirty) rev += '+dirty';
  } catch { /* not a git checkout */ }
  const version = `${pkg.version}${rev ? ` (${rev})` : ''}`;
  const need = ['--context', '--dockerfile', '--destination', '--insecure-registry', '--cache-dir', '--run-mode'];
  let help = '';
  let missing: string[] = need;
  let helpError = '';
  // dist/ may be mid-rebuild by someone else's tsc: try a few times.
  for (let attempt = 0; attempt < 3 && missing.length > 0; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 3000));
    try {
      help = await runCmd('node', [bin, 'build', '--help']);
    } catch (err) {
      helpError = (err as Error).message.split('\n').filter(Boolean).slice(-1)[0] ?? '';
      help = '';
    }
    missing = need.filter((f) => !help.includes(f));
  }
  const verbosity = help.includes('--verbosity');
  const hasCache = help.includes('--cache-repo');
  const how = `bin/builder --context CTX --dockerfile CTX/Dockerfile --destination REG/bench/W:T --insecure-registry REG` +
    ` --cache-dir STATE/cache --work-dir STATE/work --run-mode sandbox${verbosity ? ' --verbosity debug' : ''} (cold: empty cache dir; warm: same cache dir again;` +
    ` cached: + --cache --cache-repo REG/bench/cache/W-builder-I, fresh cache and work dirs for the fill and for the rebuild)`;
  const runOnce = async (job: BuildJob): Promise<ToolRun> => {
    await mkdir(path.join(job.stateDir, 'tmp'), { recursive: true });
    // Run as users run it (bin/builder as a program adds its V8 flags); --cpu-prof is not allowed in NODE_OPTIONS, so
    // a profiled run passes it to node itself, without the launcher's flags.
    const prof = cpuProfDir ? ['node', '--cpu-prof', `--cpu-prof-dir=${path.join(cpuProfDir, path.basename(job.logFile, '.log'))}`] : [];
    const argv = [...prof, bin, '--context', job.ctxDir, '--dockerfile', path.join(job.ctxDir, 'Dockerfile'),
      '--destination', job.destination, '--insecure-registry', job.registry, '--cache-dir', path.join(job.stateDir, 'cache'),
      '--work-dir', path.join(job.stateDir, 'work'), '--run-mode', 'sandbox'];
    if (verbosity) argv.push('--verbosity', 'debug');
    if (job.cacheRepo) argv.push('--cache', '--cache-repo', job.cacheRepo);
    argv.push(...(job.builderArgs ?? []), ...(variant?.args ?? []));
    const m = await measure(argv, {
      logFile: job.logFile, timeoutMs: job.timeoutMs,
      env: {
        ...process.env, TMPDIR: path.join(job.stateDir, 'tmp'),
      },
    });
    const log = await readFile(job.logFile, 'utf8').catch(() => '');
    return { ...m, snapshot: parseSnapshotSeconds(log) };
  };
  if (variant) {
    return { name: variant.name, version, how: `${how}, plus ${variant.args.join(' ')} (cold only)`, workloads: variant.workloads, cold: runOnce,
      cacheUnavailable: 'cold builds only',
      cleanup: (stateDir) => rm(stateDir, { recursive: true, force: true }),
      unavailable: missing.length > 0 ? 'build command not available' : undefined };
  }
  return {
    name: 'builder',
    versionArgv: [bin, '--version'],
    helpArgv: [bin, '--help'],
    unavailable: missing.length > 0
      ? `build command not available (bin/builder build --help lacks ${missing.join(' ')}${helpError ? `; ${helpError.slice(0, 200)}` : ''})` : undefined,
    version, how,
    cold: runOnce,
    warm: runOnce,
    cacheUnavailable: hasCache ? undefined : 'no --cache-repo in this build of the builder',
    cleanup: (stateDir) => rm(stateDir, { recursive: true, force: true }),
  };
}

// ---- buildah ------------------------------------------------------------------------------------

async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/mounts', 'utf8')).split('\n')
    .map((l) => l.split(' ')[1] ?? '').filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await runCmd('umount', ['-l', m]).catch(() => undefined);
}

const BLOB_INFO_CACHE = '/var/lib/containers/cache';

export async function buildahTool(workDir: string): Promise<Tool> {
  let version = 'missing';
  try {
    version = (await runCmd('buildah', ['--version'])).trim().replace(/^buildah version /, '');
  } catch {
    return { name: 'buildah', unavailable: 'buildah not installed', version, how: '', cold: fail, cleanup: async () => undefined };
  }
  const confDir = path.join(workDir, 'buildah-conf');
  await mkdir(confDir, { recursive: true });
  await writeFile(path.join(confDir, 'auth.json'), '{}\n');
  await writeFile(path.join(confDir, 'registries.conf'), 'unqualified-search-registries = []\n');
  const envFor = (driver: string, stateDir: string): NodeJS.ProcessEnv => ({
    ...process.env,
    REGISTRY_AUTH_FILE: path.join(confDir, 'auth.json'),
    CONTAINERS_REGISTRIES_CONF: path.join(confDir, 'registries.conf'),
    CONTAINERS_STORAGE_CONF: path.join(confDir, `storage-${driver}.conf`),
    BUILDAH_ISOLATION: 'chroot',
    TMPDIR: path.join(stateDir, 'tmp'),
  });
  const globals = (driver: string, stateDir: string): string[] =>
    ['--root', path.join(stateDir, 'root'), '--runroot', path.join(stateDir, 'runroot'), '--storage-driver', driver];
  // containers/image remembers which repository holds which blob in a host-wide file (root: /var/lib/containers/cache)
  // and mounts instead of uploading when it knows: every buildah command gets its state's own copy, bound over the
  // host's in a private mount namespace, so "empty local state" really is empty and other runs leave no trace.
  const privateCache = existsSync(BLOB_INFO_CACHE);
  const wrap = (stateDir: string, argv: string[]): string[] => (privateCache
    ? ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `mount --bind "$0" ${BLOB_INFO_CACHE} && exec "$@"`,
      path.join(stateDir, 'blob-info-cache'), ...argv]
    : argv);
  for (const d of ['overlay', 'vfs']) {
    await writeFile(path.join(confDir, `storage-${d}.conf`), `[storage]\ndriver = "${d}"\nrunroot = "${workDir}/buildah-default-runroot"\ngraphroot = "${workDir}/buildah-default-root"\n`);
  }
  const cleanup = async (stateDir: string): Promise<void> => {
    await unmountUnder(stateDir);
    await rm(stateDir, { recursive: true, force: true });
  };
  const prepare = async (stateDir: string): Promise<void> => {
    await mkdir(path.join(stateDir, 'tmp'), { recursive: true });
    await mkdir(path.join(stateDir, 'blob-info-cache'), { recursive: true });
  };

  // Overlay where it works (faster snapshots), vfs otherwise: probe with a one-step build from scratch.
  let driver = 'vfs';
  const probeDir = path.join(workDir, 'buildah-probe');
  await mkdir(path.join(probeDir, 'ctx'), { recursive: true });
  await prepare(probeDir);
  await writeFile(path.join(probeDir, 'ctx/Dockerfile'), 'FROM scratch\nCOPY a /a\n');
  await writeFile(path.join(probeDir, 'ctx/a'), 'a\n');
  try {
    const [cmd, ...args] = wrap(probeDir, ['buildah', ...globals('overlay', probeDir), 'bud', '--isolation', 'chroot', '--layers', '-t', 'probe', path.join(probeDir, 'ctx')]);
    await runCmd(cmd!, args, { env: envFor('overlay', probeDir) });
    driver = 'overlay';
  } catch { /* vfs */ }
  await cleanup(probeDir);

  const build = async (job: BuildJob, extra: string[]): Promise<ToolRun> => {
    await prepare(job.stateDir);
    const env = envFor(driver, job.stateDir);
    const g = globals(driver, job.stateDir);
    const cache = job.cacheRepo ? ['--cache-from', job.cacheRepo, '--cache-to', job.cacheRepo] : [];
    const bud = await measure(wrap(job.stateDir, ['buildah', ...g, 'bud', '--isolation', 'chroot', '--layers', ...cache, ...extra, '--tls-verify=false',
      '-f', path.join(job.ctxDir, 'Dockerfile'), '-t', job.destination, job.ctxDir]), { logFile: job.logFile, env, timeoutMs: job.timeoutMs });
    if (bud.exitCode !== 0) return bud;
    const push = await measure(wrap(job.stateDir, ['buildah', ...g, 'push', '--tls-verify=false', job.destination, `docker://${job.destination}`]),
      { logFile: job.logFile, env, timeoutMs: job.timeoutMs });
    return addMeasured(bud, push);
  };
  return {
    name: 'buildah', version,
    versionArgv: ['buildah', '--version'],
    helpArgv: ['buildah', '--help'],
    how: `buildah --root/--runroot STATE --storage-driver ${driver} bud --isolation chroot --layers --tls-verify=false -t REG/bench/W:T CTX,` +
      ` then buildah push --tls-verify=false (times summed)${privateCache ? `, each in a private mount namespace with its own ${BLOB_INFO_CACHE} (blob-info cache) from STATE` : ''}.` +
      ` Cold: empty storage; warm: same storage, bud --layers --no-cache` +
      ` (base image stored, every step re-run — what the builder's warm rebuild does without a layer cache);` +
      ` cached: + --cache-from/--cache-to REG/bench/cache/W-buildah-I, empty storage for the fill and for the rebuild`,
    cold: (job) => build(job, []),
    warm: (job) => build(job, ['--no-cache']),
    cleanup,
    storageDriver: driver,
  } as Tool & { storageDriver: string };
}

async function fail(): Promise<ToolRun> {
  throw new Error('tool unavailable');
}

// ---- kaniko -------------------------------------------------------------------------------------

/** The kaniko anchors beside the checkout (../shared/anchors, or $BUILDER_SHARED/anchors, as test/support/paths.ts). */
export function kanikoAnchor(repoRoot: string, file: 'executor' | 'warmer'): string {
  const shared = process.env.BUILDER_SHARED ?? path.resolve(repoRoot, '../shared');
  return path.join(shared, 'anchors/kaniko-v1.24.0', file);
}

/** FROM images of a Dockerfile that are not earlier stages (what the warmer must fetch). */
export function baseImages(dockerfile: string): string[] {
  const stages = new Set<string>();
  const out: string[] = [];
  for (const line of dockerfile.split('\n')) {
    const m = /^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (!m) continue;
    if (!stages.has(m[1]!.toLowerCase()) && m[1] !== 'scratch' && !out.includes(m[1]!)) out.push(m[1]!);
    if (m[2]) stages.add(m[2].toLowerCase());
  }
  return out;
}

/**
 * Kaniko builds into "/" and deletes what it finds there between stages: every run gets a fresh throwaway root in a
 * private mount namespace (the host never sees its mounts): the executor at /kaniko, the context bound read-only at
 * /workspace (a mount point, which kaniko leaves alone), a fresh /proc, a tmpfs /dev with the few device nodes a RUN
 * uses, and for warm runs the warmer's base-image cache at /cache. Inside a chroot kaniko cannot tell it is in a
 * container: --force. KANIKO_EXECUTOR (and KANIKO_WARMER) override the anchors.
 */
export async function kanikoTool(repoRoot: string, workDir: string): Promise<Tool> {
  const exe = process.env.KANIKO_EXECUTOR ?? kanikoAnchor(repoRoot, 'executor');
  const warmerSrc = process.env.KANIKO_WARMER ?? path.join(path.dirname(exe), 'warmer');
  if (!existsSync(exe)) {
    return { name: 'kaniko', unavailable: `not run (no executor at ${exe}; set KANIKO_EXECUTOR)`, version: '-', how: '', cold: fail, cleanup: async () => undefined };
  }
  let version = 'unknown';
  try { version = (await runCmd(exe, ['version'])).trim().split('\n')[0]?.replace(/^Kaniko version\s*:\s*/, '') ?? version; } catch { /* keep unknown */ }
  // ../shared is laid out read-only: one writable copy per bench run, hard-linked into every root.
  const binDir = path.join(workDir, 'kaniko-bin');
  await mkdir(binDir, { recursive: true });
  await copyFile(exe, path.join(binDir, 'executor'));
  await chmod(path.join(binDir, 'executor'), 0o755);
  const hasWarmer = existsSync(warmerSrc);
  if (hasWarmer) {
    await copyFile(warmerSrc, path.join(binDir, 'warmer'));
    await chmod(path.join(binDir, 'warmer'), 0o755);
  }

  /** A fresh root under stateDir; the shell script that mounts it up and chroots into it to run argv. */
  const inRoot = async (job: BuildJob, argv: string[], cacheDir?: string): Promise<string[]> => {
    const root = await mkdtemp(path.join(job.stateDir, 'root-'));
    for (const d of ['kaniko', 'proc', 'dev', 'etc', 'tmp', 'workspace', 'cache']) await mkdir(path.join(root, d), { recursive: true });
    await chmod(path.join(root, 'tmp'), 0o1777);
    for (const f of ['executor', 'warmer']) {
      if (existsSync(path.join(binDir, f))) await link(path.join(binDir, f), path.join(root, 'kaniko', f)).catch(() => copyFile(path.join(binDir, f), path.join(root, 'kaniko', f)));
    }
    await writeFile(path.join(root, 'etc/resolv.conf'), '');
    const q = JSON.stringify;
    const script = [
      'set -e', `R=${q(root)}`,
      'mount -t proc proc "$R/proc"',
      'mount -t tmpfs -o mode=0755,nosuid tmpfs "$R/dev"',
      'for d in null zero full random urandom tty; do [ -e /dev/$d ] || continue; touch "$R/dev/$d"; mount --bind /dev/$d "$R/dev/$d"; done',
      'ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"',
      'mkdir "$R/dev/shm"; mount -t tmpfs tmpfs "$R/dev/shm"',
      // Read-only: kaniko must not be able to touch the host's context, whatever it deletes.
      `mount --bind ${q(job.ctxDir)} "$R/workspace"`, 'mount -o remount,bind,ro "$R/workspace"',
      ...(cacheDir ? [`mount --bind ${q(cacheDir)} "$R/cache"`] : []),
      `exec chroot "$R" ${argv.map((a) => q(a)).join(' ')}`,
    ].join('\n');
    return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script];
  };
  const executor = async (job: BuildJob, cacheDir?: string): Promise<ToolRun> => {
    await mkdir(job.stateDir, { recursive: true });
    const argv = ['/kaniko/executor', '--force', '--context', 'dir:///workspace', '--dockerfile', '/workspace/Dockerfile',
      '--destination', job.destination, '--insecure', '--insecure-pull', '--skip-tls-verify', '--skip-tls-verify-pull'];
    if (job.cacheRepo) argv.push('--cache=true', '--cache-repo', job.cacheRepo);
    // Kaniko reads its base-image cache (--cache-dir) only with --cache=true; no step layers: a warm build re-runs every step.
    else if (cacheDir) argv.push('--cache=true', '--cache-dir', '/cache', '--cache-run-layers=false', '--cache-copy-layers=false');
    return measure(await inRoot(job, argv, cacheDir), { logFile: job.logFile, timeoutMs: job.timeoutMs });
  };
  return {
    name: 'kaniko', version,
    // A static Go binary that only prints: run as is, outside the throwaway root the builds use.
    versionArgv: [exe, 'version'],
    helpArgv: [exe, '--help'],
    how: 'a fresh throwaway root per run (private mount namespace: executor at /kaniko, context bound read-only at /workspace, fresh /proc,' +
      ' tmpfs /dev), chroot, /kaniko/executor --force --context dir:///workspace --destination REG/bench/W:T --insecure --insecure-pull' +
      ' --skip-tls-verify --skip-tls-verify-pull. Cold: nothing cached;' +
      (hasWarmer ? ' warm: the warmer (not timed) fills STATE/cache with the Dockerfile\'s base images, bound at /cache;' +
        ' + --cache=true --cache-dir /cache --cache-run-layers=false --cache-copy-layers=false (kaniko reads --cache-dir only with --cache=true; no step layers cached, every step re-run);' : '') +
      ' cached: + --cache=true --cache-repo REG/bench/cache/W-kaniko-I (kaniko\'s defaults otherwise: RUN layers cached, COPY layers not), fresh root for the fill and for the rebuild',
    cold: (job) => executor(job),
    // Kaniko's executor never fills its base-image cache; the warmer does, as a scheduled job would.
    prepareWarm: hasWarmer ? async (job) => {
      const cacheDir = path.join(job.stateDir, 'kaniko-cache');
      if (!existsSync(path.join(cacheDir, '.warmed'))) {
        await mkdir(cacheDir, { recursive: true });
        const images = baseImages(await readFile(path.join(job.ctxDir, 'Dockerfile'), 'utf8'));
        const argv = ['/kaniko/warmer', '--cache-dir', '/cache', '--insecure-pull', '--skip-tls-verify-pull', ...images.flatMap((i) => ['--image', i])];
        const w = await measure(await inRoot(job, argv, cacheDir), { logFile: `${job.logFile}.warmer`, timeoutMs: job.timeoutMs });
        if (w.exitCode !== 0) throw new Error(`kaniko warmer failed (exit ${w.exitCode}); log ${job.logFile}.warmer`);
        await writeFile(path.join(cacheDir, '.warmed'), '');
      }
    } : undefined,
    warm: hasWarmer ? (job) => executor(job, path.join(job.stateDir, 'kaniko-cache')) : undefined,
    cleanup: async (stateDir) => {
      await unmountUnder(stateDir);
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}
