// Running a bundle the way a GitLab runner's docker executor runs a job container: crun, uid 0, no user namespace,
// Docker's 14 default capabilities and default seccomp profile, not privileged, the host network (registries on 127.0.0.1).
import path from 'node:path';
import { dockerSeccomp, writeJobSpec as writeBenchJobSpec, type JobSpec as BenchJobSpec } from '../../bench/support/crun.js';
import { SHARED } from './paths.js';
import { run, RunError } from './tools.js';

export { DOCKER_CAPS } from '../../bench/support/crun.js';

export interface JobSpec extends BenchJobSpec {
  /** Syscalls answered with this errno instead of running (e.g. Landlock's with ENOSYS: a kernel without it). */
  refuse?: { names: string[]; errno: number };
}

/** Writes BUNDLE/config.json for the job (Docker's seccomp profile from ../shared, resolved for these capabilities). */
export async function writeJobSpec(bundle: string, spec: JobSpec): Promise<void> {
  const seccomp = await dockerSeccomp(SHARED) as { syscalls: Array<{ names: string[]; action: string; errnoRet?: number }> };
  if (spec.refuse) {
    const refused = spec.refuse.names;
    seccomp.syscalls = seccomp.syscalls.map((s) => ({ ...s, names: s.names.filter((n) => !refused.includes(n)) })).filter((s) => s.names.length > 0);
    seccomp.syscalls.push({ names: refused, action: 'SCMP_ACT_ERRNO', errnoRet: spec.refuse.errno });
  }
  await writeBenchJobSpec(bundle, spec, seccomp);
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
