// Public surface of src/run: runStep (sandbox | in-place), sandboxAvailable, resolveUser, shellArgv, runtimeMounts, container detection.

import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BuilderError } from '../errors.js';
import type { Kill, RunResult } from './common.js';
import { describeArgv } from './common.js';
import { IN_PLACE_IGNORED_PATHS, runInPlace, type Credentials } from './in-place.js';
import { placeMounts } from './in-place-mounts.js';
import { findSandboxTools, runSandboxed, type SandboxOptions } from './sandbox.js';

export { DEFAULT_PATH, findHostTool, killProcessTree, stepEnv, type Kill, type NetworkMode, type OutputStream, type RunResult, type RunUser } from './common.js';
export { runtimeMounts, type RunMount } from './sandbox.js';
export { elfHeader, findEmulator, runsNatively, type Emulator } from './binfmt.js';
export {
  EXECUTOR_IMAGE_MARKER,
  IN_PLACE_IGNORED_PATHS,
  detectContainer,
  readExecutorImageMarker,
  mountPointsToIgnore,
  unescapeMountPath,
  type Credentials,
} from './in-place.js';
export { hideable, holdRoot, launcherWarning, LAUNCHER } from './in-place-guard.js';
export {
  parseGroup,
  parsePasswd,
  parseUserSpec,
  resolveUser,
  resolveUserFromTables,
  type GroupEntry,
  type PasswdEntry,
  type ResolvedUser,
} from './user.js';

export type RunMode = 'sandbox' | 'in-place';

/** What one step needs: the sandbox's options (root, argv, env, user, cwd, network, output, signal) plus the mode. */
export interface RunStepOptions extends SandboxOptions {
  mode: RunMode;
  /**
   * In-place only: who the builder runs as and its node binary (both required in place: the caller's Host's); for
   * RUN --mount, the root-relative paths a mount target may not touch (the build's snapshot exclusions) and a fresh
   * directory outside the snapshot where a target's previous content waits during the step.
   */
  inPlace?: {
    credentials?: Credentials; nodePath?: string; protect?: readonly string[]; stashDir?: string;
    /** builder-run and the credential files it hides for the step (src/run/in-place-guard.ts). */
    launcher?: string; hide?: readonly string[];
    /** Without builder-run: the step's pid while it runs, for the in-place lock (holdRoot's note). */
    onStep?: (pid: number | undefined) => void;
  };
}

/** Runs one RUN step and resolves with its exit status; only infrastructure failures throw. */
export async function runStep(opts: RunStepOptions): Promise<RunResult> {
  switch (opts.mode) {
    case 'sandbox':
      return runSandboxed(opts);
    case 'in-place': {
      if (path.resolve(opts.root) !== '/') {
        throw new BuilderError('RUN_IN_PLACE_ROOT', `in-place RUN needs the build root "/", got ${opts.root}`, {
          hint: 'Use --run-mode sandbox to build into a separate root directory.',
        });
      }
      if (opts.network === 'none') {
        throw new BuilderError('RUN_NETWORK_UNSUPPORTED', 'RUN --network=none needs the sandbox run mode', {
          hint: 'Use --run-mode sandbox, or drop --network=none.',
        });
      }
      const { credentials, nodePath } = opts.inPlace ?? {};
      if (credentials === undefined || nodePath === undefined) {
        throw new BuilderError('BUILD_INTERNAL', 'in-place RUN needs the builder\'s credentials and node binary', {
          hint: 'this is a bug in the caller: pass inPlace.credentials and inPlace.nodePath (the executor passes its Host\'s)',
        });
      }
      const mounts = opts.mounts ?? [];
      const guard = {
        ...(opts.inPlace?.launcher ? { launcher: opts.inPlace.launcher } : {}),
        hide: opts.inPlace?.hide ?? [],
        ...(opts.inPlace?.onStep ? { onStep: opts.inPlace.onStep } : {}),
        // per-run copies and secrets put in "/": the launcher removes them if builder dies mid-step
        orphanUnlink: mounts.filter((m) => m.owned).map((m) => m.target),
      };
      if (mounts.length === 0) return runInPlace({ ...opts, ...guard }, credentials, nodePath);
      const stashDir = opts.inPlace?.stashDir;
      if (stashDir === undefined) {
        throw new BuilderError('RUN_MOUNT_IN_PLACE', 'RUN --mount in place needs a stash directory outside the snapshot', {
          hint: 'this is a bug in the caller: pass inPlace.stashDir (the executor passes a scratch directory)',
        });
      }
      // Without mount(2) the mounts are files put in "/" for the step and taken out again, whatever happens.
      const ignored = IN_PLACE_IGNORED_PATHS.map((p) => p.slice(1));
      const given = opts.inPlace?.protect ?? [];
      const undo = await placeMounts('/', mounts, {
        protect: given.filter((p) => !ignored.includes(p)), excludedOnly: given.filter((p) => ignored.includes(p)), stashDir, what: describeArgv(opts.argv),
      });
      let result: RunResult;
      try {
        result = await runInPlace({ ...opts, ...guard }, credentials, nodePath);
      } catch (err) {
        await undo().catch(() => undefined);
        throw err;
      }
      await undo();
      return result;
    }
    default: {
      const never: never = opts.mode;
      throw new BuilderError('RUN_MODE_INVALID', `unknown run mode ${String(never)}`, {
        hint: 'Use sandbox or in-place.',
      });
    }
  }
}

/**
 * Probes whether the sandbox can work here: host tools present, then one real run of the exact
 * chain (namespaces, mounts, pivot_root, capability drop) on an empty temp root. The executor
 * defaults to sandbox when ok, otherwise in-place.
 */
export async function sandboxAvailable(kill: Kill): Promise<{ ok: boolean; reason?: string }> {
  const tools = await findSandboxTools();
  if ('missing' in tools) return { ok: false, reason: `host tool "${tools.missing}" not found` };
  const dir = path.resolve(await mkdtemp(path.join(tmpdir(), 'builder-probe-')));
  try {
    await chmod(dir, 0o755);
    // The root is empty, so the command cannot exist: reaching its exec (127) proves the setup works.
    await runSandboxed({ root: dir, argv: ['/builder-sandbox-probe'], env: [], user: { uid: 0, gid: 0, groups: [] }, cwd: '/', kill }, tools);
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** argv for a shell-form RUN: the stage's SHELL (default /bin/sh -c) followed by the script. */
export function shellArgv(shell: string[] | undefined, script: string): string[] {
  return [...(shell && shell.length > 0 ? shell : ['/bin/sh', '-c']), script];
}
