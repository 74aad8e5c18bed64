// RUN: run the command in the stage root (sandbox or in place), then snapshot what changed into a layer.
import { chmod, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { BuilderError, isBuilderError } from '../../errors.js';
import { runEnvironment, type ExpandedInstruction } from '../../dockerfile/index.js';
import { findEmulator, runsNatively, runStep as runCommand, shellArgv, type RunMount } from '../../run/index.js';
import { formatPlatform } from '../../image/index.js';
import { diffIndexes, indexTree, toLayerEntries, withXattrs, type Change } from '../../snapshot/index.js';
import { chainKey, EMPTY, type StepContext, type StepHandler } from '../stage-state.js';
import { userFor } from './user.js';
import { mountsKey, prepareMounts } from './run-mounts.js';

type Run = Extract<ExpandedInstruction, { kind: 'run' }>;

export const runStep: StepHandler<Run> = {
  /** RUN reads its bind mounts' sources: their content is in the key (caches, tmpfs and secrets are not, as BuildKit). */
  async key(c) {
    const sources = c.inst.mounts.length === 0 ? undefined : await mountsKey(c.ex, c.inst, c.step.where);
    return sources === null ? null : chainKey(c, sources);
  },

  needsRoot: () => true,

  async execute(c: StepContext<Run>) {
    const { ex: { settings, services }, stage, inst, step } = c;
    if (inst.security !== undefined && inst.security !== 'sandbox') {
      throw new BuilderError('RUN_SECURITY_UNSUPPORTED', `${step.where}: RUN --security=${inst.security} is not supported`, {
        hint: 'a step never gets more than Docker\'s default capabilities here; drop --security=insecure',
      });
    }
    await checkRunnable(c);
    const rootfs = await stage.fs();
    const snapshotOpts = { exclude: settings.exclude, hashContents: settings.hashContents, signal: c.ex.scheduling.signal };
    const before = stage.root.index ?? (await indexTree(rootfs.root, snapshotOpts));
    const prepared = await prepareMounts(c.ex, inst, inst.mounts, step.where);
    let exit: number;
    // Where the sandbox will put each target (symlinks resolved inside the root, as it does), before the step can change them.
    let targets: string[] = [];
    try {
      targets = await Promise.all(prepared.mounts.map(async (m) => (await rootfs.resolveFull(m.target, { followFinal: true })).container.replace(/^\/+/, '')));
      exit = await runCommandIn(c, prepared.mounts, prepared.secretEnv).catch(async (e: unknown) => {
        // a sandbox that cannot start here is told as the run-mode probe tells it, as when the probe ran first
        if (isBuilderError(e, 'RUN_SANDBOX_SETUP') || isBuilderError(e, 'RUN_SANDBOX_UNAVAILABLE')) await c.ex.scheduling.sandbox?.verify();
        throw e;
      });
      if (exit === 0) c.ex.scheduling.sandbox?.worked();
    } finally {
      await prepared.release();
    }
    if (exit !== 0) {
      throw new BuilderError('RUN_FAILED', `${step.where}: step ${step.number}/${step.total} "${step.by}" failed with exit code ${exit}`, {
        hint: 'read the step output above; nothing was pushed', exitCode: exit > 0 && exit < 256 ? exit : 1,
      });
    }
    const t0 = Date.now();
    services.emit({ type: 'progress', phase: 'snapshot', id: step.label, bytes: 0, done: false });
    const after = await stage.root.reindex(before, snapshotOpts).finally(() => services.emit({ type: 'progress', phase: 'snapshot', id: step.label, bytes: 0, done: true }));
    // Mount targets' stubs are gone again; their parents may show a ctime-only change, like the runtime mount points'.
    // In place a target that existed went aside and came back by rename: only its ctime may differ.
    const changes = withoutMountPointTouches(diffIndexes(before, after), [...settings.excludePrefixes, ...targets], new Set(targets));
    stage.root.index = after;
    services.emit({ type: 'changes-found', step: step.label, changes: changes.length, ms: Date.now() - t0 });
    if (changes.length === 0) return EMPTY;
    // RUN can set file capabilities (setcap) and other xattrs: carry them into the layer.
    const { entries, warning } = await withXattrs(rootfs.root, toLayerEntries(changes, after));
    if (warning) services.warnOnce(warning);
    return stage.layerOf(entries, step);
  },
};

/** Runs the command as the stage's USER in its WORKDIR with its ENV; returns the exit code. */
async function runCommandIn({ ex: { settings, services, scheduling }, stage, inst, step }: StepContext<Run>, mounts: RunMount[], secretEnv: string[]): Promise<number> {
  const rootfs = await stage.fs();
  const shell = stage.cfg.config.Shell;
  const cleanup: string[] = [];
  let argv: string[];
  if (!inst.shell) {
    argv = [...inst.cmd];
  } else if (inst.heredocs.length === 1 && /^<<-?(["']?)([^"'\s]+)\1$/.test((inst.cmd[0] ?? '').trim())) {
    // RUN <<EOF: the body is the script; with a #! line it is run as a program, like BuildKit.
    const body = inst.heredocs[0]!.content;
    if (body.startsWith('#!')) {
      const name = `/.builder-heredoc-${randomBytes(6).toString('hex')}`;
      const host = await rootfs.resolve(name);
      await writeFile(host, body, { mode: 0o755 });
      await chmod(host, 0o755);
      cleanup.push(host);
      argv = [name];
    } else {
      argv = shellArgv(shell, body);
    }
  } else {
    // The shell reads the heredocs itself: hand it the line followed by the bodies.
    const script = [inst.cmd.join(' '), ...inst.heredocs.map((h) => `${h.content}${h.content.endsWith('\n') || h.content === '' ? '' : '\n'}${h.name}`)].join('\n');
    argv = shellArgv(shell, script);
  }
  const user = await userFor(rootfs, stage.cfg.config.User, step.where);
  const cwd = stage.cfg.config.WorkingDir || '/';
  await rootfs.mkdirAll(cwd, { uid: 0, gid: 0, mode: 0o755 });
  const envList = [...runEnvironment(stage.vars, services.plan.proxyEnv)].map(([k, v]) => `${k}=${v}`);
  const out = lineWriter(`${step.label} `, services.output);
  try {
    const r = await runCommand({
      mode: settings.runMode,
      root: rootfs.root,
      argv,
      env: envList,
      user,
      cwd,
      network: (inst.network as 'default' | 'none' | 'host' | undefined) ?? 'default',
      onOutput: out.write,
      signal: scheduling.signal,
      kill: settings.host.kill,
      ...(mounts.length > 0 ? { mounts } : {}),
      ...(secretEnv.length > 0 ? { secretEnv } : {}),
      ...(settings.runMode === 'sandbox' ? { runtimeDir: settings.scratchPath('run') } : {}),
      ...(settings.runMode === 'in-place' ? {
        inPlace: {
          credentials: { uid: settings.host.uid, gid: settings.host.gid, groups: [...settings.host.groups] },
          nodePath: settings.host.execPath,
          ...(settings.inPlace?.launcher ? { launcher: settings.inPlace.launcher } : {}),
          hide: settings.inPlace?.hide ?? [],
          ...(settings.inPlace?.onStep ? { onStep: settings.inPlace.onStep } : {}),
          ...(mounts.length > 0 ? { protect: settings.excludePrefixes, stashDir: settings.scratchPath('stash') } : {}),
        },
      } : {}),
    });
    out.flush();
    return r.exitCode;
  } finally {
    for (const f of cleanup) await rm(f, { force: true });
  }
}

/**
 * The sandbox creates missing mount points (/etc/resolv.conf, /etc/hosts, ...) for the run and removes them after,
 * restoring the parents' mtime; their ctime cannot be restored. A parent directory whose only difference is its
 * ctime is not a change of the step (else `RUN true` would add a layer holding /etc). The same holds for `restored`:
 * in-place mount targets whose previous content was moved aside for the step and renamed back after it.
 */
function withoutMountPointTouches(changes: Change[], excludePrefixes: readonly string[], restored: ReadonlySet<string> = new Set()): Change[] {
  const parents = new Set<string>();
  for (const p of excludePrefixes) for (let d = path.posix.dirname(p); d !== '.' && d !== '/' && d !== ''; d = path.posix.dirname(d)) parents.add(d);
  return changes.filter((c) => {
    if (c.kind !== 'modified' || !(restored.has(c.path) || (c.entry.type === 'dir' && parents.has(c.path)))) return true;
    const a = c.before;
    const b = c.entry;
    if (a.type !== b.type || a.size !== b.size || a.linkTarget !== b.linkTarget || (a.contentHash !== undefined && a.contentHash !== b.contentHash)) return true;
    // utimes() restores the mtime to about a microsecond (a double of seconds), not to the nanosecond
    const drift = a.mtimeNs > b.mtimeNs ? a.mtimeNs - b.mtimeNs : b.mtimeNs - a.mtimeNs;
    return a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid || drift >= 1_000_000n || a.ino !== b.ino;
  });
}

/** Prefixes each output line with the step; partial lines are held until their newline. */
function lineWriter(prefix: string, sink: (text: string, stream: 'stdout' | 'stderr') => void): { write: (chunk: Buffer, stream: 'stdout' | 'stderr') => void; flush: () => void } {
  const pending = { stdout: '', stderr: '' };
  return {
    write(chunk, stream) {
      const text = pending[stream] + chunk.toString('utf8');
      const lines = text.split('\n');
      pending[stream] = lines.pop() ?? '';
      if (lines.length) sink(lines.map((l) => `${prefix}${l}\n`).join(''), stream);
    },
    flush() {
      for (const s of ['stdout', 'stderr'] as const) {
        if (pending[s]) sink(`${prefix}${pending[s]}\n`, s);
        pending[s] = '';
      }
    },
  };
}

/** A stage of another architecture runs only under a binfmt_misc emulator: without one, stop before the step, never guess. */
async function checkRunnable(c: StepContext<Run>): Promise<void> {
  const { ex: { settings, scheduling }, stage, step } = c;
  if (runsNatively(settings.buildPlatform, stage.platform)) return;
  const want = formatPlatform(stage.platform);
  // probed once per platform for the build (a probe can be a whole /bin/sh step); a failure is probed again (another image's shell)
  let probe = scheduling.runnable.get(want);
  if (!probe) {
    probe = probeRunnable(c);
    scheduling.runnable.set(want, probe);
  }
  const reason = await probe;
  if (reason === undefined) return;
  if (scheduling.runnable.get(want) === probe) scheduling.runnable.delete(want);
  throw new BuilderError('RUN_FOREIGN_PLATFORM', `${step.where}: ${stage.label}, step ${step.label} "${step.by}": the stage is ${want} and this host (${formatPlatform(settings.buildPlatform)}) cannot run its binaries: ${reason}`, {
    hint: `build that stage FROM --platform=$BUILDPLATFORM and cross-compile for $TARGETOS/$TARGETARCH, or install qemu-user-static and register its binfmt_misc handlers with the F flag (e.g. docker run --privileged tonistiigi/binfmt --install ${stage.platform.architecture}) on the build host`,
  });
}

/** Whether this stage's platform runs here: undefined if so (with a warning saying how), else why not. */
async function probeRunnable(c: StepContext<Run>): Promise<string | undefined> {
  const { ex: { services }, stage } = c;
  const want = formatPlatform(stage.platform);
  const emulator = await findEmulator(stage.platform.architecture);
  if (emulator.ok) {
    services.warnOnce(`RUN steps for ${want} run under the emulator ${emulator.interpreter} (binfmt_misc ${emulator.name}): slower than a cross-compiling stage`);
    return undefined;
  }
  if (emulator.mounted) return emulator.reason;
  // Inside a container binfmt_misc is rarely mounted, yet the host's kernel may have a handler: a no-op of the image's own shell tells.
  const exit = await runCommandIn({ ...c, inst: { ...c.inst, shell: false, cmd: ['/bin/sh', '-c', 'true'], heredocs: [], mounts: [] } }, [], [])
    .then((code) => `exit ${code}`, (err: unknown) => (err instanceof Error ? err.message : String(err)));
  if (exit === 'exit 0') {
    services.warnOnce(`RUN steps for ${want} run emulated: binfmt_misc is not visible here, but the kernel ran the image's /bin/sh`);
    return undefined;
  }
  return `${emulator.reason}, and the kernel could not run the image's /bin/sh (${exit})`;
}
