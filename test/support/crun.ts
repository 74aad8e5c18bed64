// Running a bundle the way a GitLab runner's docker executor runs a job container: crun, uid 0, no user namespace,
// Docker's 14 default capabilities and default seccomp profile, not privileged, the host network (registries on 127.0.0.1).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SHARED } from './paths.js';
import { run, RunError } from './tools.js';

export const DOCKER_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

export interface JobSpec {
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
  /** Host directories bind-mounted into the container (a runner's builds volume). */
  binds?: Array<{ source: string; destination: string }>;
  /** Syscalls answered with this errno instead of running (e.g. Landlock's with ENOSYS: a kernel without it). */
  refuse?: { names: string[]; errno: number };
}

/** Writes BUNDLE/config.json for the job (Docker's seccomp profile from ../shared, resolved for these capabilities). */
export async function writeJobSpec(bundle: string, spec: JobSpec): Promise<void> {
  await mkdir(path.join(bundle, 'etc'), { recursive: true });
  await writeFile(path.join(bundle, 'etc/hosts'), '127.0.0.1 localhost\n');
  await writeFile(path.join(bundle, 'etc/resolv.conf'), 'nameserver 127.0.0.53\n');
  const seccomp = JSON.parse((await run('node', [
    path.join(SHARED, 'tools/unprivileged/convert-seccomp.mjs'), path.join(SHARED, 'tools/unprivileged/docker-seccomp.json'), DOCKER_CAPS.join(','),
  ])).stdout) as { syscalls: Array<{ names: string[]; action: string; errnoRet?: number }> };
  if (spec.refuse) {
    const refused = spec.refuse.names;
    seccomp.syscalls = seccomp.syscalls.map((s) => ({ ...s, names: s.names.filter((n) => !refused.includes(n)) })).filter((s) => s.names.length > 0);
    seccomp.syscalls.push({ names: refused, action: 'SCMP_ACT_ERRNO', errnoRet: spec.refuse.errno });
  }
  await run('crun', ['spec'], { cwd: bundle }).catch(() => undefined);
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
    ...(spec.binds ?? []).map((b) => ({ destination: b.destination, type: 'bind', source: b.source, options: ['rbind', 'rprivate'] })),
  );
  await writeFile(path.join(bundle, 'config.json'), JSON.stringify(config, null, 2));
}

/**
 * Runs the bundle to completion. crun 1.8 refuses this host's hybrid cgroup layout, so its v2 mount is hidden in a
 * private mount namespace of the runtime (../shared/tools/unprivileged/crun-run.sh); never throws for a non-zero exit.
 */
export async function runJob(bundle: string, name: string, timeoutMs = 170_000, input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun --cgroup-manager=disabled --root "$1" run "$0"';
  try {
    // input: the job's stdin (a GitLab runner pipes the job script to the shell this way, never in its argv)
    const r = await run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, name, path.join(bundle, 'crun-state')], { cwd: bundle, timeoutMs, ...(input !== undefined ? { input } : {}) });
    return { code: 0, ...r };
  } catch (err) {
    if (err instanceof RunError) return { code: err.exitCode, stdout: err.stdout, stderr: err.stderr };
    throw err;
  }
}
