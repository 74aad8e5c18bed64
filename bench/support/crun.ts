// Bench: builder's executor image and kaniko each in its own unprivileged container, as a GitLab runner's docker
// executor runs a CI job: crun, uid 0, no user namespace, Docker's 14 default capabilities and seccomp profile, not
// privileged, the host network (the bench registry on 127.0.0.1). Cold and cached runs only (a CI job starts empty).
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { measure, runCmd } from './measure.js';
import type { BuildJob, Tool, ToolRun } from './tools.js';

export const DOCKER_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];
/** The workloads these rows run (a CI job's everyday image and a Debian multi-stage build). */
export const CRUN_WORKLOADS = ['small', 'multi-stage'];

interface Container {
  /** Fills ROOT (an empty dir) with the image's files; returns the image's environment. */
  makeRoot(root: string): Promise<string[]>;
  argv(job: BuildJob): string[];
}

export interface JobSpec {
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
  /** Host directories bind-mounted into the container (a runner's builds volume). */
  binds?: Array<{ source: string; destination: string; readonly?: boolean }>;
}

/** Docker's default seccomp profile (from SHARED/tools/unprivileged) resolved for DOCKER_CAPS, in the OCI runtime form. */
export async function dockerSeccomp(shared: string): Promise<object> {
  const dir = path.join(shared, 'tools/unprivileged');
  return JSON.parse(await runCmd('node', [path.join(dir, 'convert-seccomp.mjs'), path.join(dir, 'docker-seccomp.json'), DOCKER_CAPS.join(',')])) as object;
}

/** Writes BUNDLE/config.json for a job container (also what the executor-image tests run, test/support/crun.ts). */
export async function writeJobSpec(bundle: string, spec: JobSpec, seccomp: object): Promise<void> {
  await mkdir(path.join(bundle, 'etc'), { recursive: true });
  await writeFile(path.join(bundle, 'etc/hosts'), '127.0.0.1 localhost\n');
  await writeFile(path.join(bundle, 'etc/resolv.conf'), 'nameserver 127.0.0.53\n');
  await runCmd('crun', ['spec', '--bundle', bundle]).catch(() => undefined); // already there: rewritten below
  const config = JSON.parse(await readFile(path.join(bundle, 'config.json'), 'utf8')) as Record<string, any>;
  config.root = { path: spec.rootfs, readonly: false };
  config.hostname = 'job';
  config.process = {
    ...config.process, terminal: false, args: spec.args, cwd: spec.cwd, env: spec.env, noNewPrivileges: false,
    capabilities: { bounding: DOCKER_CAPS, effective: DOCKER_CAPS, permitted: DOCKER_CAPS, inheritable: [], ambient: [] },
  };
  config.linux.namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  config.linux.seccomp = seccomp;
  delete config.linux.resources;
  config.mounts.push(
    { destination: '/etc/resolv.conf', type: 'bind', source: path.join(bundle, 'etc/resolv.conf'), options: ['rbind', 'rprivate'] },
    { destination: '/etc/hosts', type: 'bind', source: path.join(bundle, 'etc/hosts'), options: ['rbind', 'rprivate'] },
    ...(spec.binds ?? []).map((b) => ({ destination: b.destination, type: 'bind', source: b.source, options: ['rbind', 'rprivate', ...(b.readonly ? ['ro'] : [])] })),
  );
  await writeFile(path.join(bundle, 'config.json'), JSON.stringify(config, null, 2));
}

/** One tool in a fresh container per run: the image's root copied (untimed), the context copied to /workspace. */
function crunTool(name: 'builder-crun' | 'kaniko-crun', version: string, how: string, shared: string, c: Container): Tool {
  let seccomp: Promise<object> | undefined;
  const run = async (job: BuildJob): Promise<ToolRun> => {
    seccomp ??= dockerSeccomp(shared);
    const bundle = path.join(job.stateDir, 'bundle');
    const root = path.join(bundle, 'rootfs');
    await mkdir(root, { recursive: true });
    const env = await c.makeRoot(root);
    await runCmd('cp', ['-a', `${job.ctxDir}/.`, path.join(root, 'workspace')]);
    await writeJobSpec(bundle, { rootfs: root, args: c.argv(job), env, cwd: '/workspace' }, await seccomp);
    // crun 1.8 refuses this host's hybrid cgroup layout: its v2 mount is hidden in a private mount namespace of the runtime
    const script = 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun --cgroup-manager=disabled --root "$1" run --bundle "$2" "$0"';
    return measure(['unshare', '-m', '--propagation', 'private', 'sh', '-c', script, `bench-${path.basename(job.stateDir)}-${process.pid}`, path.join(bundle, 'state'), bundle],
      { logFile: job.logFile, timeoutMs: job.timeoutMs });
  };
  return { name, version, how, workloads: CRUN_WORKLOADS, cold: run, cleanup: (stateDir) => rm(stateDir, { recursive: true, force: true }) };
}

/** builder's executor image (npm run executor-image, built once per bench run) in a job container, --run-mode auto: in place. */
export async function builderCrunTool(repoRoot: string, workDir: string, shared: string, version: string): Promise<Tool> {
  if (!existsSync(path.join(shared, 'tools/unprivileged/docker-seccomp.json'))) {
    return { name: 'builder-crun', unavailable: `not run (no ${shared}/tools/unprivileged)`, version, how: '', cold: failed, cleanup: async () => undefined };
  }
  let image: Promise<{ rootfs: string; env: string[] }> | undefined;
  const unpacked = async (): Promise<{ rootfs: string; env: string[] }> => {
    const layout = path.join(workDir, 'executor-image');
    const unpackedDir = path.join(workDir, 'executor-image-bundle');
    await runCmd('node', [path.join(repoRoot, 'scripts/executor-image/build.mjs'), layout]);
    await runCmd('umoci', ['unpack', '--image', `${layout}:latest`, unpackedDir]);
    const config = JSON.parse(await readFile(path.join(unpackedDir, 'config.json'), 'utf8')) as { process: { env: string[] } };
    return { rootfs: path.join(unpackedDir, 'rootfs'), env: config.process.env };
  };
  const how = 'builder\'s executor image (npm run executor-image) in a crun job container (uid 0, no user namespace, Docker\'s capabilities and seccomp profile,' +
    ' host network), the context copied to /workspace: /builder/bin/builder --context /workspace --destination REG/bench/W:T --insecure-registry REG' +
    ' --verbosity debug (--run-mode auto: in place); cached: + --cache --cache-repo REG/bench/cache/W-builder-crun-I, a fresh container for the fill and for the rebuild';
  return crunTool('builder-crun', version, how, shared, {
    async makeRoot(root) {
      image ??= unpacked();
      const { rootfs, env } = await image;
      await runCmd('cp', ['-a', `${rootfs}/.`, root]);
      await mkdir(path.join(root, 'workspace'), { recursive: true });
      return env;
    },
    argv: (job) => ['/builder/bin/builder', '--context', '/workspace', '--dockerfile', '/workspace/Dockerfile', '--destination', job.destination,
      '--insecure-registry', job.registry, '--verbosity', 'debug', ...(job.cacheRepo ? ['--cache', '--cache-repo', job.cacheRepo] : [])],
  });
}

/** kaniko v1.24.0's executor at /kaniko in an otherwise empty job container (as gcr.io/kaniko-project/executor). */
export async function kanikoCrunTool(exe: string, shared: string, version: string): Promise<Tool> {
  if (!existsSync(exe) || !existsSync(path.join(shared, 'tools/unprivileged/docker-seccomp.json'))) {
    return { name: 'kaniko-crun', unavailable: `not run (no ${exe} or ${shared}/tools/unprivileged)`, version, how: '', cold: failed, cleanup: async () => undefined };
  }
  const how = 'kaniko\'s executor at /kaniko in an otherwise empty crun job container (as builder-crun), the context copied to /workspace:' +
    ' /kaniko/executor --force --context dir:///workspace --ignore-path /workspace --destination REG/bench/W:T --insecure --insecure-pull --skip-tls-verify' +
    ' --skip-tls-verify-pull; cached: + --cache=true --cache-repo REG/bench/cache/W-kaniko-crun-I';
  return crunTool('kaniko-crun', version, how, shared, {
    async makeRoot(root) {
      for (const d of ['kaniko', 'etc', 'tmp', 'workspace']) await mkdir(path.join(root, d), { recursive: true });
      await chmod(path.join(root, 'tmp'), 0o1777);
      await copyFile(exe, path.join(root, 'kaniko/executor'));
      await chmod(path.join(root, 'kaniko/executor'), 0o755);
      return ['PATH=/usr/local/bin:/kaniko:/usr/bin:/bin', 'HOME=/root', 'DOCKER_CONFIG=/kaniko/.docker/'];
    },
    // --ignore-path: kaniko empties "/" between stages except its ignore list; the copied context must stay
    argv: (job) => ['/kaniko/executor', '--force', '--context', 'dir:///workspace', '--dockerfile', '/workspace/Dockerfile', '--ignore-path', '/workspace',
      '--destination', job.destination, '--insecure', '--insecure-pull', '--skip-tls-verify', '--skip-tls-verify-pull',
      ...(job.cacheRepo ? ['--cache=true', '--cache-repo', job.cacheRepo] : [])],
  });
}

async function failed(): Promise<ToolRun> {
  throw new Error('unavailable');
}
