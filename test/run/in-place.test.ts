// In-place mode with harmless host commands whose only effects stay inside a mkdtemp dir.

import { chmod, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PATH, runStep, type RunStepOptions } from '../../src/run/index.js';
import { collect, procStart, waitFor } from './helpers.js';
import { processHost } from '../../src/cli/host.js';

// the CLI hands the library its way to signal processes; these tests signal as this process
const { kill } = processHost();

const ROOT_USER = { uid: 0, gid: 0, groups: [], home: '/root' };
const isRoot = process.getuid?.() === 0;

describe('in-place runStep', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'run-inplace-'));
    await chmod(dir, 0o777); // so switched users can write their marker files here
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // Running as ourselves keeps in-place steps from needing privileges; the switch tests opt in.
  const self = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, groups: [] as number[], home: '/root' };
  const run = (argv: string[], { inPlace, ...extra }: Partial<RunStepOptions> = {}) => {
    const out = collect();
    const p = runStep({
      mode: 'in-place', root: '/', argv, env: [`OUT=${dir}`], user: self, cwd: dir, onOutput: out.onOutput, kill,
      // the node binary for the credential helper: the CLI hands the library its own
      inPlace: { nodePath: process.execPath, ...(inPlace ?? { credentials: { uid: self.uid, gid: self.gid, groups: [] } }) },
      ...extra,
    });
    return { out, p };
  };

  it('runs in cwd and its writes stay in the temp dir', async () => {
    const { out, p } = run(['/bin/sh', '-c', 'pwd; echo x > "$OUT/written"; echo rel > relative']);
    expect(await p).toEqual({ exitCode: 0 });
    expect(out.stdout()).toBe(`${dir}\n`);
    expect(await readFile(path.join(dir, 'written'), 'utf8')).toBe('x\n');
    expect(await readFile(path.join(dir, 'relative'), 'utf8')).toBe('rel\n');
  });

  it('propagates exit codes and signals', async () => {
    expect(await run(['/bin/sh', '-c', 'exit 7']).p).toEqual({ exitCode: 7 });
    expect(await run(['/bin/sh', '-c', 'kill -TERM $$']).p).toEqual({ exitCode: 143, signal: 'SIGTERM' });
  });

  it('streams stdout and stderr', async () => {
    const { out, p } = run(['/bin/sh', '-c', 'echo o; echo e >&2']);
    expect((await p).exitCode).toBe(0);
    expect(out.stdout()).toBe('o\n');
    expect(out.stderr()).toBe('e\n');
  });

  it('passes exactly the given env', async () => {
    const { out, p } = run(['env'], { env: ['A=1'] });
    expect((await p).exitCode).toBe(0);
    expect(out.stdout().trim().split('\n').sort()).toEqual(['A=1', 'HOME=/root', `PATH=${DEFAULT_PATH}`]);
  });

  it('a missing command exits 127 with a clear message', async () => {
    const { out, p } = run(['nosuchcmd-xyz']);
    expect((await p).exitCode).toBe(127);
    expect(out.stderr()).toBe('builder: nosuchcmd-xyz: command not found\n');
  });

  it.skipIf(!isRoot)('switches to uid/gid with supplementary groups (node helper)', async () => {
    const { out, p } = run(['/bin/sh', '-c', 'id -u; id -g; id -G; echo $HOME; pwd; touch "$OUT/by-1000"'], {
      user: { uid: 1000, gid: 1000, groups: [2000], home: '/home/app' },
      inPlace: { credentials: { uid: 0, gid: 0, groups: [0] } },
    });
    expect(await p).toEqual({ exitCode: 0 });
    expect(out.stdout()).toBe(`1000\n1000\n1000 2000\n/home/app\n${dir}\n`);
    expect((await readdir(dir)).includes('by-1000')).toBe(true);
  });

  it.skipIf(!isRoot)('switches to numeric uid:gid (spawn ids)', async () => {
    const { out, p } = run(['/bin/sh', '-c', 'id -u; id -g; id -G'], {
      user: { uid: 1234, gid: 5678, groups: [] },
      inPlace: { credentials: { uid: 0, gid: 0, groups: [0] } },
    });
    expect(await p).toEqual({ exitCode: 0 });
    expect(out.stdout()).toBe('1234\n5678\n5678\n');
  });

  it.skipIf(!isRoot)('the helper reports a missing command with 127 and forwards signals as exit status', async () => {
    const user = { uid: 1000, gid: 1000, groups: [2000] };
    const creds = { credentials: { uid: 0, gid: 0, groups: [0] } };
    const a = run(['nosuchcmd-xyz'], { user, inPlace: creds });
    expect((await a.p).exitCode).toBe(127);
    expect(a.out.stderr()).toContain('nosuchcmd-xyz: command not found');
    expect(await run(['/bin/sh', '-c', 'kill -TERM $$'], { user, inPlace: creds }).p).toEqual({ exitCode: 143, signal: 'SIGTERM' });
  });

  it.skipIf(!isRoot)('a secret env entry reaches the step (winning over env) and no process\'s command line, through the helper too', async () => {
    const value = `in-place-secret-${process.pid}-${Date.now()}`;
    // The step reads every /proc/*/cmdline on this machine (the builder's, the helper's) for the value, by awk's ENVIRON.
    const script = 'echo "$TOKEN" | md5sum | cut -c1-32; for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f" 2>/dev/null; echo; done | awk \'index($0, ENVIRON["TOKEN"]) { n++ } END { print n + 0 }\'';
    const { createHash } = await import('node:crypto');
    const md5 = createHash('md5').update(`${value}\n`).digest('hex');
    for (const extra of [{}, { user: { uid: 1000, gid: 1000, groups: [2000], home: '/home/app' }, inPlace: { credentials: { uid: 0, gid: 0, groups: [0] } } }]) {
      const { out, p } = run(['/bin/sh', '-c', script], { env: ['TOKEN=from-env'], secretEnv: [`TOKEN=${value}`], ...extra });
      expect(await p).toEqual({ exitCode: 0 });
      expect(out.stdout()).toBe(`${md5}\n0\n`);
    }
  });

  it('refuses a user switch when the builder is not root', async () => {
    await expect(
      run(['true'], { user: { uid: 1000, gid: 1000, groups: [] }, inPlace: { credentials: { uid: 1001, gid: 1001, groups: [] } } }).p,
    ).rejects.toMatchObject({ code: 'RUN_USER_SWITCH_DENIED' });
  });

  it('rejects a root other than "/" and --network=none', async () => {
    await expect(run(['true'], { root: dir }).p).rejects.toMatchObject({ code: 'RUN_IN_PLACE_ROOT' });
    await expect(run(['true'], { network: 'none' }).p).rejects.toMatchObject({ code: 'RUN_NETWORK_UNSUPPORTED' });
  });

  it('aborts a running step', async () => {
    const ac = new AbortController();
    const { p } = run(['/bin/sh', '-c', 'sleep 30'], { signal: ac.signal });
    setTimeout(() => ac.abort(), 200);
    await expect(p).rejects.toMatchObject({ code: 'RUN_ABORTED' });
  });

  it('a background process the step leaves behind dies when the step exits (as with a container) instead of holding the build', async () => {
    const t0 = Date.now();
    const { out, p } = run(['/bin/sh', '-c', 'sleep 60 & echo "pid=$!"']);
    expect((await p).exitCode).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    const pid = Number(/pid=(\d+)/.exec(out.stdout())![1]);
    await waitFor('the background sleep to die', async () => (await procStart(pid)) === undefined, 5000);
  });

  it('a daemon that left the step\'s session and holds its output does not hold the step past its exit', async () => {
    const t0 = Date.now();
    const { out, p } = run(['/bin/sh', '-c', '(setsid sleep 60 & echo "pid=$!")']);
    expect((await p).exitCode).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    const pid = Number(/pid=(\d+)/.exec(out.stdout())![1]);
    const start = await procStart(pid);
    if (start !== undefined) process.kill(pid, 'SIGKILL'); // out of reach without a PID namespace (docs/run.md)
  });

  it('an aborted step\'s child that left the process group (setsid) is killed too', async () => {
    const ac = new AbortController();
    const { out, p } = run(['/bin/sh', '-c', 'setsid sh -c "while :; do sleep 0.05; done" & echo "pid=$!"; wait'], { signal: ac.signal });
    await waitFor('the setsid child', () => /pid=\d+/.test(out.stdout()));
    const pid = Number(/pid=(\d+)/.exec(out.stdout())![1]);
    const start = await procStart(pid);
    expect(start).toBeDefined();
    try {
      ac.abort();
      await expect(p).rejects.toMatchObject({ code: 'RUN_ABORTED' });
      expect(await procStart(pid)).not.toBe(start); // gone (or the pid reused by another process)
    } finally {
      if ((await procStart(pid)) === start) process.kill(pid, 'SIGKILL');
    }
  });

  it('an aborted step does not wait on its output pipe held by a daemon that escaped it', async () => {
    // Without a PID namespace a double-forked, setsid daemon is out of reach (it survives; in a container the
    // container's end takes it): the abort must still return instead of waiting for the pipe to close.
    const ac = new AbortController();
    const { out, p } = run(['/bin/sh', '-c', '(setsid sleep 60 & echo "pid=$!"); sleep 60'], { signal: ac.signal });
    await waitFor('the daemon', () => /pid=\d+/.test(out.stdout()));
    const pid = Number(/pid=(\d+)/.exec(out.stdout())![1]);
    const start = await procStart(pid);
    try {
      const t0 = Date.now();
      ac.abort();
      await expect(p).rejects.toMatchObject({ code: 'RUN_ABORTED' });
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      if (start !== undefined && (await procStart(pid)) === start) process.kill(pid, 'SIGKILL');
    }
  });
});
