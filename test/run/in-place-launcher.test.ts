// builder-run (the in-place RUN launcher) and the in-place guard, with harmless host commands whose effects stay in a
// mkdtemp dir: hidden files out for the step and back byte for byte (exit, abort, builder killed), leftovers killed,
// Landlock scopes, groups switched; one build per root with cleanup after a dead holder.
import { execFileSync, spawn } from 'node:child_process';
import { chmod, lstat, mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { holdRoot, runStep, type RunStepOptions } from '../../src/run/index.js';
import { collect, waitFor } from './helpers.js';
import { processHost } from '../../src/cli/host.js';

// the CLI hands the library its way to signal processes; these tests signal as this process
const { kill } = processHost();

const isRoot = process.getuid?.() === 0;
const ROOT_DIR = path.resolve(import.meta.dirname, '../..');

describe.skipIf(!isRoot)('builder-run, the in-place RUN launcher', () => {
  let dir: string;
  let launcher: string;
  let cfg: string;
  const content = '{"auths":{"r.example":{"auth":"dXNlcjpzM2NyZXQ="}}}\n';
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'run-launcher-'));
    launcher = path.join(dir, 'builder-run');
    execFileSync('gcc', ['-O2', '-static', '-o', launcher, path.join(ROOT_DIR, 'scripts/executor-image/builder-run.c')]);
    await mkdir(path.join(dir, 'docker'));
    cfg = path.join(dir, 'docker/config.json');
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const writeCfg = async (): Promise<{ mode: number; mtimeMs: number }> => {
    await writeFile(cfg, content, { mode: 0o640 });
    await chmod(cfg, 0o640);
    await utimes(cfg, new Date('2020-01-02T03:04:05Z'), new Date('2021-01-02T03:04:05Z'));
    const st = await stat(cfg);
    return { mode: st.mode, mtimeMs: st.mtimeMs };
  };
  const run = (script: string, extra: Partial<RunStepOptions> = {}) => {
    const out = collect();
    const p = runStep({
      mode: 'in-place', root: '/', argv: ['/bin/sh', '-c', script], env: [`D=${dir}`, `CFG=${cfg}`], user: { uid: 0, gid: 0, groups: [], home: '/root' }, cwd: dir,
      onOutput: out.onOutput, kill, inPlace: { credentials: { uid: 0, gid: 0, groups: [] }, nodePath: process.execPath, launcher, hide: [cfg] }, ...extra,
    });
    return { out, p };
  };

  it('takes the hidden file out for the step and puts it back byte for byte (mode, owner, times), even after the step replaced it', async () => {
    const before = await writeCfg();
    const { out, p } = run('ls -A "$D/docker"; echo fake > "$CFG"; exit 4');
    expect(await p).toEqual({ exitCode: 4 });
    expect(out.stdout()).toBe('');
    expect(await readFile(cfg, 'utf8')).toBe(content);
    const st = await stat(cfg);
    expect({ mode: st.mode, mtimeMs: st.mtimeMs }).toEqual(before);
  });

  it('puts it back when the step removed its directory, and kills what the step left running (a daemon that left its session)', async () => {
    await writeCfg();
    const { p } = run('setsid sh -c \'echo $$ > "$D/daemon.pid"; exec sleep 300\' & while [ ! -s "$D/daemon.pid" ]; do sleep 0.05; done; rm -rf "$D/docker"');
    expect(await p).toEqual({ exitCode: 0 });
    expect(await readFile(cfg, 'utf8')).toBe(content);
    const pid = Number(await readFile(path.join(dir, 'daemon.pid'), 'utf8'));
    expect(await lstat(`/proc/${pid}`).catch(() => 'gone')).toBe('gone');
  });

  it('a step that turns the file\'s directory into a symlink does not get the file written where it points', async () => {
    await writeCfg();
    await mkdir(path.join(dir, 'loot'), { recursive: true });
    const { p } = run('rm -rf "$D/docker" && ln -s "$D/loot" "$D/docker"');
    expect(await p).toEqual({ exitCode: 0 });
    expect((await lstat(path.join(dir, 'docker'))).isDirectory()).toBe(true);
    expect(await readFile(cfg, 'utf8')).toBe(content);
    expect(await lstat(path.join(dir, 'loot/config.json')).catch(() => 'gone')).toBe('gone');
  });

  it('the step cannot signal builder nor read its memory (Landlock scopes)', async () => {
    const { out, p } = run(`kill -0 ${process.pid} 2>/dev/null && echo signalled; dd if=/proc/${process.pid}/mem of=/dev/null bs=1 count=0 2>/dev/null && echo mem-open; kill -0 $$ && echo own`);
    expect(await p).toEqual({ exitCode: 0 });
    expect(out.stdout()).toBe('own\n');
  });

  it('an aborted step: the launcher stops its tree and puts the file back before the step is reported aborted', async () => {
    await writeCfg();
    const ac = new AbortController();
    const { p } = run('touch "$D/started"; sleep 300', { signal: ac.signal });
    await waitFor('the step', async () => (await lstat(path.join(dir, 'started')).catch(() => undefined)) !== undefined);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'RUN_ABORTED' });
    expect(await readFile(cfg, 'utf8')).toBe(content);
  });

  it('an aborted step whose launcher ignores SIGTERM: killed after the stop timeout, the step reported aborted', async () => {
    const stubborn = path.join(dir, 'stubborn-launcher');
    await writeFile(stubborn, `#!/bin/sh\ntrap '' TERM\necho $$ > ${dir}/stubborn.pid\nexec sleep 300\n`, { mode: 0o755 });
    const ac = new AbortController();
    const { p } = run('true', { signal: ac.signal, inPlace: { credentials: { uid: 0, gid: 0, groups: [] }, nodePath: process.execPath, launcher: stubborn, hide: [] } });
    await waitFor('the launcher', async () => (await readFile(path.join(dir, 'stubborn.pid'), 'utf8').catch(() => '')).trim() !== '');
    const pid = Number(await readFile(path.join(dir, 'stubborn.pid'), 'utf8'));
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'RUN_ABORTED' });
    expect(await lstat(`/proc/${pid}`).catch(() => 'gone')).toBe('gone');
  }, 60_000);

  it('a launcher killed with SIGKILL (only the job could): builder writes the file back from its own copy and says so', async () => {
    await writeCfg();
    const { out, p } = run('echo $PPID > "$D/launcher.pid"; exec sleep 300');
    await waitFor('the step', async () => (await readFile(path.join(dir, 'launcher.pid'), 'utf8').catch(() => '')).trim() !== '');
    process.kill(Number(await readFile(path.join(dir, 'launcher.pid'), 'utf8')), 'SIGKILL');
    expect(await p).toEqual({ exitCode: 137, signal: 'SIGKILL' });
    expect(await readFile(cfg, 'utf8')).toBe(content);
    expect((await stat(cfg)).mode & 0o7777).toBe(0o640);
    expect(out.stderr()).toContain(`builder: ${cfg} was not back after the step: restored from builder's copy`);
  });

  it('builder killed with SIGKILL mid-step: the launcher kills the step, puts the file back and removes the secret put in "/"', async () => {
    await writeCfg();
    const secret = path.join(dir, 'secret-target');
    await writeFile(secret, 'tok\n');
    const stepPid = path.join(dir, 'step.pid');
    // a stand-in for builder: node starting the launcher as runInPlace does, then waiting
    const script = `require('node:child_process').spawn(${JSON.stringify(launcher)}, ['--hide', ${JSON.stringify(cfg)}, '--orphan-unlink', ${JSON.stringify(secret)}, '--', 'sh', '-c', 'echo $PPID > ${stepPid}.launcher; echo $$ > ${stepPid}; sleep 300'], { stdio: 'ignore', detached: true }); setInterval(() => undefined, 1000);`;
    const builder = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
    await waitFor('the step', async () => (await readFile(stepPid, 'utf8').catch(() => '')).trim() !== '');
    expect(await lstat(cfg).catch(() => 'gone')).toBe('gone');
    const pid = Number(await readFile(stepPid, 'utf8'));
    builder.kill('SIGKILL');
    await waitFor('the step', async () => (await readFile(cfg, 'utf8').catch(() => '')) === content);
    await waitFor('the step', async () => (await lstat(`/proc/${pid}`).catch(() => 'gone')) === 'gone');
    await waitFor('the step', async () => (await lstat(secret).catch(() => 'gone')) === 'gone');
    const launcherPid = Number(await readFile(`${stepPid}.launcher`, 'utf8'));
    await waitFor('the launcher to exit', async () => ['gone', 'Z'].includes((await readFile(`/proc/${launcherPid}/stat`, 'utf8').catch(() => 'x) gone')).split(') ')[1]!.split(' ')[0]!));
  });
});

describe('holdRoot: one in-place build per root', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'run-hold-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('refuses a second build while the first one lives, at once and saying so', async () => {
    const lock = path.join(dir, 'live.lock');
    const held = await holdRoot(lock, { pid: process.pid }, kill);
    const other = spawn('sleep', ['30']);
    await expect(holdRoot(lock, { pid: other.pid! }, kill)).rejects.toMatchObject({ code: 'BUILD_IN_PLACE_BUSY' });
    other.kill('SIGKILL');
    await held.release();
    const again = await holdRoot(lock, { pid: process.pid }, kill);
    await again.release();
  });

  it('takes over from a dead holder at once (its work dir is leftovers.ts\'s to remove)', async () => {
    const lock = path.join(dir, 'dead.lock');
    const child = spawn('true');
    const pid = child.pid!;
    await new Promise((r) => child.once('exit', r));
    await writeFile(lock, JSON.stringify({ pid, start: '1' }));
    const held = await holdRoot(lock, { pid: process.pid }, kill);
    // nothing recorded to kill (orphan launchers of other tests' containers may show in the host's /proc)
    expect(held.cleaned ?? '').not.toContain('RUN step\'s processes');
    expect(JSON.parse(await readFile(lock, 'utf8'))).toMatchObject({ pid: process.pid });
    await held.release();
  });

  it('a killed build\'s launcher still running after the wait is named in a warning, not counted as done', async () => {
    const lock = path.join(dir, 'slow.lock');
    // an orphan named builder-run (its parent is not node) that outlives the 10 s wait
    const launcher = path.join(dir, 'builder-run');
    await writeFile(launcher, await readFile(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim()));
    await chmod(launcher, 0o755);
    execFileSync('sh', ['-c', `${launcher} 120 </dev/null >/dev/null 2>&1 & echo $! > ${dir}/launcher.pid`]);
    const pid = Number(await readFile(path.join(dir, 'launcher.pid'), 'utf8'));
    try {
      const dead = spawn('true');
      await new Promise((r) => dead.once('exit', r));
      await writeFile(lock, JSON.stringify({ pid: dead.pid, start: '1' }));
      const held = await holdRoot(lock, { pid: process.pid }, kill);
      expect(held.cleaned).toMatch(new RegExp(`\\d+ RUN step launcher\\(s\\) \\(pid [\\d, ]*\\b${pid}\\b[\\d, ]*\\) still running`));
      await held.release();
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  }, 30_000);

  it('without builder-run the running step is on record: the next build kills it and what it started (setsid too)', async () => {
    const lock = path.join(dir, 'step.lock');
    const step = spawn('sh', ['-c', `setsid sleep 300 & echo $! > ${dir}/grandchild.pid; wait`], { detached: true, stdio: 'ignore' });
    await waitFor('the grandchild', async () => (await readFile(path.join(dir, 'grandchild.pid'), 'utf8').catch(() => '')).trim() !== '');
    const grandchild = Number(await readFile(path.join(dir, 'grandchild.pid'), 'utf8'));
    // a holder that died mid-step: its record names the step (written by note, as the build does)
    const dead = spawn('true');
    await new Promise((r) => dead.once('exit', r));
    const first = await holdRoot(lock, { pid: process.pid }, kill);
    await first.note(step.pid!);
    const record = JSON.parse(await readFile(lock, 'utf8')) as { step?: { pid: number } };
    expect(record.step?.pid).toBe(step.pid);
    await writeFile(lock, JSON.stringify({ ...record, pid: dead.pid, start: '1' }));
    const held = await holdRoot(lock, { pid: process.pid }, kill);
    expect(held.cleaned).toContain(`its RUN step's processes (pid ${step.pid} and below) killed`);
    expect(await lstat(`/proc/${step.pid}`).catch(() => 'gone')).toBe('gone');
    await waitFor('the grandchild to go', async () => (await lstat(`/proc/${grandchild}`).catch(() => 'gone')) === 'gone');
    await held.release();
    expect(await lstat(lock).catch(() => 'gone')).toBe('gone');
  });
});
