// SIGTERM/SIGINT during a RUN and during a push, sent to the real CLI: no step process, mount, work dir, temp dir or tag left behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, readlink } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { sandboxAvailable } from '../../src/run/index.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { unmountBelow } from '../support/tools.js';
import { registryTags, ROOT, Workspace } from './helpers.js';
import { processHost } from '../../src/cli/host.js';

const probe = await sandboxAvailable(processHost().kill);

interface Proc {
  pid: number;
  /** /proc/PID/stat starttime: a later process reusing the pid is not the same one. */
  start: string;
  why: string;
}

async function procStart(pid: number): Promise<string | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return f[0] === 'Z' ? undefined : f[19]; // a zombie holds no files, mounts or CPU
}

/** Live processes carrying the step's marker variable, or whose root or cwd lies under `dir`. */
async function processesOf(mark: string, dir: string): Promise<Proc[]> {
  const out: Proc[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const why: string[] = [];
    const environ = await readFile(`/proc/${pid}/environ`, 'latin1').catch(() => '');
    if (environ.split('\0').includes(`SIGNAL_TEST_MARK=${mark}`)) why.push('marker');
    for (const link of ['root', 'cwd']) {
      const target = await readlink(`/proc/${pid}/${link}`).catch(() => '');
      if (target === dir || target.startsWith(`${dir}/`)) why.push(`${link} ${target}`);
    }
    const start = why.length > 0 ? await procStart(pid) : undefined;
    if (start !== undefined) out.push({ pid, start, why: why.join(', ') });
  }
  return out;
}

/** After a failed test: SIGKILL, by PID, whatever of this test's build still runs (the CLI, and steps it orphaned). */
async function killLeftovers(cli: Cli, mark: string, work: string): Promise<void> {
  cli.child.kill('SIGKILL');
  for (const p of await processesOf(mark, work)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** Mount points under `dir` in this mount namespace. */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').map((l) => l.split(' ')[4] ?? '').filter((mp) => mp === dir || mp.startsWith(`${dir}/`));
}

interface Cli {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exit: Promise<number | null>;
}

function startCli(ws: Workspace, ctx: string, work: string, tmp: string, args: string[], cache = ws.path('cache')): Cli {
  let stdout = '';
  let stderr = '';
  const child = spawn('node', [
    path.join(ROOT, 'bin/builder'), '--context', ctx, '--cache-dir', cache, '--work-dir', work,
    '--run-mode', 'sandbox', ...args,
  ], { cwd: ws.dir, env: { ...ws.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, stdout: () => stdout, stderr: () => stderr, exit };
}

async function until(what: string, cond: () => boolean | Promise<boolean>, cli: Cli, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline || cli.child.exitCode !== null) {
      throw new Error(`gave up waiting for ${what}\nstdout:\n${cli.stdout()}\nstderr:\n${cli.stderr()}`);
    }
    await sleep(50);
  }
}

interface StallProxy {
  host: string;
  /** "stalled", "forwarded" or "dropped" per stalled request, in order. */
  events: string[];
  close(): Promise<void>;
}

/**
 * An HTTP proxy on 127.0.0.1 in front of the registry that holds requests matching `stall` for `holdMs` (before
 * forwarding them, or with `midBody` after the response headers and 64 KiB of its body), then goes on only if the
 * client is still connected: a builder that ignored the signal would complete the push or the download.
 */
async function startStallProxy(reg: TestRegistry, stall: (method: string, url: string) => boolean, holdMs: number, midBody = false): Promise<StallProxy> {
  const target = new URL(reg.url);
  const events: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let clientGone = false;
    req.on('data', (c: Buffer) => chunks.push(c));
    res.on('close', () => {
      if (!res.writableFinished) clientGone = true;
    });
    const hold = (then: () => void): void => {
      events.push('stalled');
      setTimeout(() => {
        events.push(clientGone ? 'dropped' : 'forwarded');
        if (!clientGone) then();
      }, holdMs);
    };
    const forward = (holdBody: boolean): void => {
      const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        if (!holdBody) return void ur.pipe(res);
        let sent = 0;
        const onData = (c: Buffer): void => {
          res.write(c);
          sent += c.length;
          if (sent < 65536) return;
          ur.off('data', onData);
          ur.pause();
          hold(() => ur.pipe(res));
        };
        ur.on('data', onData);
        ur.on('end', () => res.end());
      });
      up.on('error', () => res.destroy());
      up.end(Buffer.concat(chunks));
    };
    req.on('end', () => {
      const match = stall(req.method ?? '', req.url ?? '');
      if (match && !midBody) hold(() => forward(false));
      else forward(match);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    events,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

describe.skipIf(!probe.ok)('builder build: a signal stops the build and leaves nothing behind', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;

  useFixture({ prefix: 'builder-signals-' }, (f) => ({ reg, ws, base } = f));

  /** What every interrupted build must leave: exit 128+n, no step process, mount, build dir or temp dir. */
  async function expectCleanExit(cli: Cli, sig: NodeJS.Signals, mark: string, work: string, tmp: string, seen: Proc[]): Promise<void> {
    const code = await Promise.race([cli.exit, sleep(60_000).then(() => 'timeout' as const)]);
    expect(code, `stdout:\n${cli.stdout()}\nstderr:\n${cli.stderr()}`).toBe(128 + osConstants.signals[sig]);
    expect(cli.stderr()).toContain(`INTERRUPTED: interrupted by ${sig}`);
    const alive = [];
    for (const p of seen) if ((await procStart(p.pid)) === p.start) alive.push(p);
    expect(alive).toEqual([]);
    expect(await processesOf(mark, work)).toEqual([]);
    expect(await mountsUnder(work)).toEqual([]);
    expect(await readdir(work)).toEqual([]); // the build-* dir with the stage roots and layers is gone
    expect(await readdir(tmp)).toEqual([]); // the sandbox's runtime files (resolv.conf, hosts) too
  }

  async function dirs(name: string): Promise<{ work: string; tmp: string }> {
    const work = ws.path(name, 'work');
    const tmp = ws.path(name, 'tmp');
    await mkdir(work, { recursive: true });
    await mkdir(tmp, { recursive: true });
    return { work, tmp };
  }

  it.each(['SIGTERM', 'SIGINT'] as const)('%s during a RUN kills the whole step, setsid escapee and background loop included', async (sig) => {
    const mark = randomBytes(8).toString('hex');
    const { work, tmp } = await dirs(`run-${sig}`);
    const ctx = await ws.context(`ctx-run-${sig}`, {
      Dockerfile: [
        `FROM ${base}`,
        `ENV SIGNAL_TEST_MARK=${mark}`,
        // A background loop, one that leaves the process group (setsid), and a foreground loop, all writing into the root.
        'RUN (while :; do echo bg >> /bg.log; sleep 0.1; done) & setsid sh -c \'while :; do echo ss >> /ss.log; sleep 0.1; done\' & '
          + 'echo step-started; while :; do echo fg >> /fg.log; sleep 0.1; done',
      ].join('\n'),
    });
    const cli = startCli(ws, ctx, work, tmp, ['--no-push']);
    try {
      await until('the RUN step to start', () => /\] step-started$/m.test(cli.stderr()) /* RUN output is on stderr */, cli);
      let seen: Proc[] = [];
      // The three loops (and their sleeps) must be visible before the signal, or the checks after it prove nothing.
      // Found by the marker in their environment: /proc/PID/root of a process in another mount namespace need not name
      // the stage root (after pivot_root it reads "/"), so the root/cwd scan is only a second net.
      await until('the step processes', async () => (seen = await processesOf(mark, work)).filter((p) => p.why.includes('marker')).length >= 3, cli, 10_000);
      cli.child.kill(sig);
      await expectCleanExit(cli, sig, mark, work, tmp, seen);
    } finally {
      await killLeftovers(cli, mark, work);
    }
  });

  it('a second SIGTERM during cleanup exits at once, and the step is dead even so', async () => {
    const mark = randomBytes(8).toString('hex');
    const { work, tmp } = await dirs('twice');
    const ctx = await ws.context('ctx-twice', {
      Dockerfile: [`FROM ${base}`, `ENV SIGNAL_TEST_MARK=${mark}`, 'RUN (while :; do sleep 0.1; done) & echo step-started; while :; do sleep 0.1; done'].join('\n'),
    });
    const cli = startCli(ws, ctx, work, tmp, ['--no-push']);
    try {
      await until('the RUN step to start', () => /\] step-started$/m.test(cli.stderr()) /* RUN output is on stderr */, cli);
      let seen: Proc[] = [];
      await until('the step processes', async () => (seen = await processesOf(mark, work)).length >= 2, cli, 10_000);
      cli.child.kill('SIGTERM');
      await until('the first signal to be taken', () => cli.stderr().includes('SIGTERM received'), cli, 10_000).catch(() => undefined);
      cli.child.kill('SIGTERM'); // usually lands during cleanup; a build already gone ignores it
      const code = await Promise.race([cli.exit, sleep(30_000).then(() => 'timeout' as const)]);
      expect(code, cli.stderr()).toBe(143);
      // killed before the exit; a loaded machine may take a moment to reap them
      let alive: Proc[] = [];
      const deadline = Date.now() + 5000;
      do {
        alive = [];
        for (const p of seen) if ((await procStart(p.pid)) === p.start) alive.push(p);
        if (alive.length > 0) await sleep(50);
      } while (alive.length > 0 && Date.now() < deadline);
      expect(alive).toEqual([]);
      expect(await processesOf(mark, work)).toEqual([]);
      // the stage root is an overlay mount of the extracted base: process.exit() detaches it on the way out
      expect(cli.stderr()).toContain('mounted (overlay) on the extracted-base store');
      expect(await mountsUnder(work)).toEqual([]);
    } finally {
      await killLeftovers(cli, mark, work);
    }
  });

  it('SIGKILL mid-RUN: no step process 2 s later; the next build removes its mounts and dirs, never a running build\'s', async () => {
    const mark = randomBytes(8).toString('hex');
    const other = randomBytes(8).toString('hex');
    const { work, tmp } = await dirs('kill9');
    const loops = 'RUN (while :; do echo bg >> /bg.log; sleep 0.1; done) & setsid sh -c \'while :; do sleep 0.1; done\' & echo step-started; while :; do sleep 0.1; done';
    const ctx = await ws.context('ctx-kill9', { Dockerfile: [`FROM ${base}`, `ENV SIGNAL_TEST_MARK=${mark}`, loops].join('\n') });
    const ctxRunning = await ws.context('ctx-kill9-running', { Dockerfile: [`FROM ${base}`, `ENV SIGNAL_TEST_MARK=${other}`, loops].join('\n') });
    const ctxNext = await ws.context('ctx-kill9-next', { Dockerfile: [`FROM ${base}`, 'RUN echo next > /next'].join('\n') });
    const killed = startCli(ws, ctx, work, tmp, ['--no-push']);
    let running: Cli | undefined;
    try {
      await until('the RUN step to start', () => /\] step-started$/m.test(killed.stderr()), killed);
      let seen: Proc[] = [];
      await until('the step processes', async () => (seen = await processesOf(mark, work)).filter((p) => p.why.includes('marker')).length >= 3, killed, 10_000);
      killed.child.kill('SIGKILL');
      const deadline = Date.now() + 2000;
      let alive = seen;
      while (alive.length > 0 && Date.now() < deadline) {
        await sleep(50);
        const now = [];
        for (const p of alive) if ((await procStart(p.pid)) === p.start) now.push(p);
        alive = now;
      }
      expect(alive).toEqual([]);
      expect(await processesOf(mark, work)).toEqual([]);
      // What the killed build could not clean: its stage root (an overlay mount) and its build dir; nothing in $TMPDIR.
      const killedDirs = await readdir(work);
      expect(killedDirs).toHaveLength(1);
      expect(await mountsUnder(path.join(work, killedDirs[0]!))).not.toEqual([]);
      expect(await readdir(tmp)).toEqual([]);

      // The next build in this work dir removes them, and says so in one line.
      running = startCli(ws, ctxRunning, work, tmp, ['--no-push']);
      await until('the next build\'s step', () => /\] step-started$/m.test(running!.stderr()), running);
      const report = running.stderr().split('\n').filter((l) => l.includes('killed build'));
      expect(report).toHaveLength(1);
      expect(report[0]).toContain(`unmounted 1 stage root and removed what a killed build left (${killedDirs[0]})`);
      expect(await mountsUnder(path.join(work, killedDirs[0]!))).toEqual([]);
      const runningDir = await readdir(work);
      expect(runningDir).toHaveLength(1);
      expect(runningDir[0]).not.toBe(killedDirs[0]);
      const runningMounts = await mountsUnder(path.join(work, runningDir[0]!));
      expect(runningMounts).not.toEqual([]);

      // A build still running in the same work dir: a later build leaves its dir and mounts alone.
      const next = await ws.build(ctxNext, ['--run-mode', 'sandbox', '--no-push'], { work, env: { TMPDIR: tmp } });
      expect(next.code, next.stderr).toBe(0);
      expect(next.stderr).not.toContain('killed build');
      expect(await readdir(work)).toEqual(runningDir);
      expect(await mountsUnder(path.join(work, runningDir[0]!))).toEqual(runningMounts);
      expect(running.child.exitCode).toBe(null);
      expect((await processesOf(other, work)).length).toBeGreaterThanOrEqual(3);

      running.child.kill('SIGTERM');
      await expectCleanExit(running, 'SIGTERM', other, work, tmp, []);
    } finally {
      await killLeftovers(killed, mark, work);
      if (running) await killLeftovers(running, other, work);
      await unmountBelow(work);
    }
  });

  it.each([
    ['SIGTERM', 'manifest PUT', (m: string, u: string) => m === 'PUT' && u.includes('/manifests/')],
    ['SIGINT', 'blob upload', (m: string, u: string) => m === 'PUT' && u.includes('/blobs/uploads/')],
  ] as const)('%s during the push (%s stalled) pushes no tag', async (sig, what, stall) => {
    const mark = randomBytes(8).toString('hex');
    const { work, tmp } = await dirs(`push-${sig}`);
    const holdMs = 3000;
    const proxy = await startStallProxy(reg, stall, holdMs);
    const repo = `signals/${sig.toLowerCase()}`;
    const ctx = await ws.context(`ctx-push-${sig}`, {
      Dockerfile: [`FROM ${base}`, `ENV SIGNAL_TEST_MARK=${mark}`, 'RUN echo layer > /new-file'].join('\n'),
    });
    const cli = startCli(ws, ctx, work, tmp, ['--destination', `${proxy.host}/${repo}:v1`]);
    try {
      await until(`the ${what} to be stalled`, () => proxy.events.includes('stalled'), cli);
      cli.child.kill(sig);
      await expectCleanExit(cli, sig, mark, work, tmp, []);
      await sleep(holdMs + 500); // past the hold: a request still waiting would have been forwarded by now
      expect(proxy.events).toContain('dropped');
      expect(proxy.events).not.toContain('forwarded');
      expect(await registryTags(reg, repo)).toEqual([]);
    } finally {
      await killLeftovers(cli, mark, work);
      await proxy.close();
    }
  });

  it('SIGTERM in the middle of a base layer download stops it and leaves no blob half-stored', async () => {
    const mark = randomBytes(8).toString('hex');
    const { work, tmp } = await dirs('pull');
    const cache = ws.path('pull', 'cache'); // empty: the base layer must be downloaded
    const proxy = await startStallProxy(reg, (m, u) => m === 'GET' && u.includes('/blobs/sha256:'), 3000, true);
    const ctx = await ws.context('ctx-pull', {
      Dockerfile: [`FROM ${proxy.host}/library/busybox:latest`, `ENV SIGNAL_TEST_MARK=${mark}`, 'RUN true'].join('\n'),
    });
    const cli = startCli(ws, ctx, work, tmp, ['--no-push'], cache);
    try {
      const store = path.join(cache, 'blobs-store');
      const files = async (): Promise<string[]> => (await readdir(store, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile()).map((e) => e.name);
      await until('the blob download to be stalled', () => proxy.events.includes('stalled'), cli);
      await until('the partial blob in the store', async () => (await files()).some((f) => f.startsWith('.tmp-')), cli, 10_000);
      cli.child.kill('SIGTERM');
      await expectCleanExit(cli, 'SIGTERM', mark, work, tmp, []);
      expect((await files()).filter((f) => !/^[0-9a-f]{64}$/.test(f))).toEqual([]);
    } finally {
      await killLeftovers(cli, mark, work);
      await proxy.close();
    }
  });
});
