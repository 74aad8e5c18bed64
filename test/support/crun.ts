// Running a bundle the way a GitLab runner's docker executor runs a job container: crun, uid 0, no user namespace,
// Docker's 14 default capabilities and default seccomp profile, not privileged, the host network (registries on 127.0.0.1).
import path from 'node:path';
import { dockerSeccomp, writeJobSpec as writeBenchJobSpec, type JobSpec } from '../../bench/support/crun.js';
import { SHARED } from './paths.js';
import { run, RunError } from './tools.js';

export { DOCKER_CAPS, type JobSpec } from '../../bench/support/crun.js';

/** Writes BUNDLE/config.json for the job (Docker's seccomp profile from ../shared, resolved for these capabilities). */
export async function writeJobSpec(bundle: string, spec: JobSpec): Promise<void> {
  await writeBenchJobSpec(bundle, spec, await dockerSeccomp(SHARED));
}

/**
 * Runs the bundle to completion. crun 1.8 refuses this host's hybrid cgroup layout, so its v2 mount is hidden in a
 * private mount namespace of the runtime (../shared/tools/unprivileged/crun-run.sh); never throws for a non-zero exit.
 */
export async function runJob(bundle: string, name: string, timeoutMs = 170_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun --cgroup-manager=disabled --root "$1" run "$0"';
  try {
    const r = await run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, name, path.join(bundle, 'crun-state')], { cwd: bundle, timeoutMs });
    return { code: 0, ...r };
  } catch (err) {
    if (err instanceof RunError) return { code: err.exitCode, stdout: err.stdout, stderr: err.stderr };
    throw err;
  }
}
