// Bench: the tools under test. Each gets a fresh private state per iteration ("cold"), and a "warm" rebuild that
// reuses that state (base layers local), then cleans up.
import { copyFile, cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { addMeasured, measure, runCmd, type Measured } from './measure.js';

export type ToolName = 'builder' | 'buildah' | 'kaniko';

export interface BuildJob {
  workload: string;
  ctxDir: string;
  /** "127.0.0.1:PORT" (the counting proxy). */
  registry: string;
  /** "HOST/repo:tag" to push to. */
  destination: string;
  /** Per-iteration scratch dir of this tool (state for cold + warm lives here). */
  stateDir: string;
  logFile: string;
  timeoutMs: number;
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
  cleanup(stateDir: string): Promise<void>;
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

/** cpuProfDir: when set, every builder run writes V8 CPU profiles under cpuProfDir/<log name>/ (node --cpu-prof). */
export async function builderTool(repoRoot: string, cpuProfDir?: string): Promise<Tool> {
  const bin = path.join(repoRoot, 'bin/builder');
  const pkg = JSON.parse(await readFile(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  let rev = '';
  try {
    rev = (await runCmd('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD'])).trim();
    const dirty = (await runCmd('git', ['-C', repoRoot, 'status', '--porcelain', '--', 'src'])).trim();
    if (dirty) rev += '+dirty';
  } catch { /* not a git checkout */ }
  const version = `${pkg.version}${rev ? ` (${rev})` : ''}`;
  const need = ['--context', '--dockerfile', '--destination', '--insecure-registry', '--cache-dir'];
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
  const how = `node bin/builder --context CTX --dockerfile CTX/Dockerfile --destination REG/bench/W:T --insecure-registry REG` +
    ` --cache-dir STATE/cache --work-dir STATE/work${verbosity ? ' --verbosity debug' : ''} (cold: empty cache dir; warm: same cache dir again)`;
  const runOnce = async (job: BuildJob): Promise<ToolRun> => {
    await mkdir(path.join(job.stateDir, 'tmp'), { recursive: true });
    // --cpu-prof is not allowed in NODE_OPTIONS: pass it to node itself.
    const prof = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${path.join(cpuProfDir, path.basename(job.logFile, '.log'))}`] : [];
    const argv = ['node', ...prof, bin, '--context', job.ctxDir, '--dockerfile', path.join(job.ctxDir, 'Dockerfile'),
      '--destination', job.destination, '--insecure-registry', job.registry, '--cache-dir', path.join(job.stateDir, 'cache'),
      '--work-dir', path.join(job.stateDir, 'work')];
    if (verbosity) argv.push('--verbosity', 'debug');
    const m = await measure(argv, {
      logFile: job.logFile, timeoutMs: job.timeoutMs,
      env: {
        ...process.env, TMPDIR: path.join(job.stateDir, 'tmp'),
      },
    });
    const log = await readFile(job.logFile, 'utf8').catch(() => '');
    return { ...m, snapshot: parseSnapshotSeconds(log) };
  };
  return {
    name: 'builder',
    unavailable: missing.length > 0
      ? `build command not available (bin/builder build --help lacks ${missing.join(' ')}${helpError ? `; ${helpError.slice(0, 200)}` : ''})` : undefined,
    version, how,
    cold: runOnce,
    warm: runOnce,
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
  for (const d of ['overlay', 'vfs']) {
    await writeFile(path.join(confDir, `storage-${d}.conf`), `[storage]\ndriver = "${d}"\nrunroot = "${workDir}/buildah-default-runroot"\ngraphroot = "${workDir}/buildah-default-root"\n`);
  }
  const cleanup = async (stateDir: string): Promise<void> => {
    await unmountUnder(stateDir);
    await rm(stateDir, { recursive: true, force: true });
  };

  // Overlay where it works (faster snapshots), vfs otherwise: probe with a one-step build from scratch.
  let driver = 'vfs';
  const probeDir = path.join(workDir, 'buildah-probe');
  await mkdir(path.join(probeDir, 'ctx'), { recursive: true });
  await mkdir(path.join(probeDir, 'tmp'), { recursive: true });
  await writeFile(path.join(probeDir, 'ctx/Dockerfile'), 'FROM scratch\nCOPY a /a\n');
  await writeFile(path.join(probeDir, 'ctx/a'), 'a\n');
  try {
    await runCmd('buildah', [...globals('overlay', probeDir), 'bud', '--isolation', 'chroot', '--layers', '-t', 'probe', path.join(probeDir, 'ctx')],
      { env: envFor('overlay', probeDir) });
    driver = 'overlay';
  } catch { /* vfs */ }
  await cleanup(probeDir);

  const build = async (job: BuildJob, extra: string[]): Promise<ToolRun> => {
    await mkdir(path.join(job.stateDir, 'tmp'), { recursive: true });
    const env = envFor(driver, job.stateDir);
    const g = globals(driver, job.stateDir);
    const bud = await measure(['buildah', ...g, 'bud', '--isolation', 'chroot', '--layers', ...extra, '--tls-verify=false',
      '-f', path.join(job.ctxDir, 'Dockerfile'), '-t', job.destination, job.ctxDir], { logFile: job.logFile, env, timeoutMs: job.timeoutMs });
    if (bud.exitCode !== 0) return bud;
    const push = await measure(['buildah', ...g, 'push', '--tls-verify=false', job.destination, `docker://${job.destination}`],
      { logFile: job.logFile, env, timeoutMs: job.timeoutMs });
    return addMeasured(bud, push);
  };
  return {
    name: 'buildah', version,
    how: `buildah --root/--runroot STATE --storage-driver ${driver} bud --isolation chroot --layers --tls-verify=false -t REG/bench/W:T CTX,` +
      ` then buildah push --tls-verify=false (times summed). Cold: empty storage; warm: same storage, bud --layers --no-cache` +
      ` (base image stored, every step re-run — what the builder's warm rebuild does without a layer cache)`,
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

/**
 * Kaniko builds into "/", so each build gets a fresh minimal root: the executor at /kaniko/executor, the context at
 * /workspace, /proc /dev /sys bound in a private mount namespace, and the executor chrooted into it.
 * UNTESTED here (no executor on this machine); enabled only when KANIKO_EXECUTOR points to one.
 */
export async function kanikoTool(): Promise<Tool> {
  const exe = process.env.KANIKO_EXECUTOR;
  if (!exe) {
    return { name: 'kaniko', unavailable: 'not run (set KANIKO_EXECUTOR to an executor binary)', version: '-', how: '', cold: fail, cleanup: async () => undefined };
  }
  let version = 'unknown';
  try { version = (await runCmd(exe, ['version'])).trim().split('\n')[0] ?? version; } catch { /* keep unknown */ }
  return {
    name: 'kaniko', version,
    how: 'chroot into a fresh minimal root (executor + /workspace + /proc,/dev,/sys binds, private mount ns), ' +
      '/kaniko/executor --context dir:///workspace --destination REG/bench/W:T --insecure --insecure-pull --skip-tls-verify; cold only',
    async cold(job) {
      const root = path.join(job.stateDir, 'root');
      for (const d of ['kaniko', 'proc', 'dev', 'sys', 'etc', 'tmp']) await mkdir(path.join(root, d), { recursive: true });
      await copyFile(exe, path.join(root, 'kaniko/executor'));
      await runCmd('chmod', ['0755', path.join(root, 'kaniko/executor')]);
      await cp(job.ctxDir, path.join(root, 'workspace'), { recursive: true });
      await writeFile(path.join(root, 'etc/resolv.conf'), '');
      const script = `set -e; R=${JSON.stringify(root)}; mount -t proc proc "$R/proc"; mount --rbind /dev "$R/dev"; mount --rbind /sys "$R/sys";` +
        ` exec chroot "$R" /kaniko/executor --context dir:///workspace --dockerfile /workspace/Dockerfile` +
        ` --destination ${job.destination} --insecure --insecure-pull --skip-tls-verify --skip-tls-verify-pull`;
      return measure(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script], { logFile: job.logFile, timeoutMs: job.timeoutMs });
    },
    cleanup: async (stateDir) => {
      await unmountUnder(stateDir);
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}
