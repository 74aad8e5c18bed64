// Sandbox mode against a real busybox root in a temp dir: exit codes, output, env, cwd, users, /proc /dev /sys, network, leftovers.

import { spawn } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PATH, resolveUser, sandboxAvailable } from '../../src/run/index.js';
import { runSandboxed, type SandboxOptions } from '../../src/run/sandbox.js';
import { compileIfStale, ROOT } from '../executor/helpers.js';
import { collect, listTree, makeBusyboxRoot, processesInRoot, procStart, sandboxVariants, waitFor } from './helpers.js';
import { processHost } from '../../src/cli/host.js';

// the CLI hands the library its way to signal processes; these tests signal as this process
const { kill } = processHost();

const probe = await sandboxAvailable(kill);
const ROOT_USER = { uid: 0, gid: 0, groups: [], home: '/root' };
const variants = await sandboxVariants();

// Every behaviour once through builder-sandbox and once through the sh chain it replaces without a C compiler.
for (const [variant, tools] of variants) {
  describe.skipIf(!probe.ok)(`sandbox runStep with ${variant}`, () => {
    let root: string;
    beforeAll(async () => {
      root = await makeBusyboxRoot();
    });
    afterAll(async () => {
      if (root) await rm(root, { recursive: true, force: true });
    });

    const run = (argv: string[], extra: Partial<SandboxOptions> = {}) => {
      const out = collect();
      const p = runSandboxed({ root, argv, env: [], user: ROOT_USER, cwd: '/', onOutput: out.onOutput, kill, ...extra }, tools);
      return { out, p };
    };

    it('propagates exit codes', async () => {
      expect(await run(['/bin/sh', '-c', 'exit 0']).p).toEqual({ exitCode: 0 });
      expect(await run(['/bin/sh', '-c', 'exit 3']).p).toEqual({ exitCode: 3 });
      expect(await run(['false']).p).toEqual({ exitCode: 1 });
    });

    it('streams stdout and stderr separately and live', async () => {
      const { out, p } = run(['/bin/sh', '-c', 'echo out1; echo err1 >&2; sleep 1; echo out2']);
      const res = await p;
      const done = Date.now();
      expect(res.exitCode).toBe(0);
      expect(out.stdout()).toBe('out1\nout2\n');
      expect(out.stderr()).toBe('err1\n');
      const first = out.chunks.find((c) => c.text.includes('out1'));
      expect(done - (first?.at ?? done)).toBeGreaterThan(700); // seen before the step ended
    });

    it('passes exactly the given env (no host leak), with PATH and HOME defaults', async () => {
      const { out, p } = run(['/bin/env'], { env: ['FOO=bar baz', 'EMPTY='] });
      expect((await p).exitCode).toBe(0);
      expect(out.stdout().trim().split('\n').sort()).toEqual(['EMPTY=', 'FOO=bar baz', 'HOME=/root', `PATH=${DEFAULT_PATH}`].sort());
    });

    it('the env reaches the step without being on any process command line (ps shows argv to every user)', async () => {
      const value = `env-value-${process.pid}-${Date.now()}`;
      const secret = `secret-value-${process.pid}-${Date.now()}`;
      const marker = path.join(root, 'tmp/env-running');
      await rm(marker, { force: true });
      // A key starting with "-" stays an assignment, and one expansion is not expanded again.
      const { out, p } = run(['/bin/sh', '-c', 'tr "\\0" "\\n" < /proc/1/environ | grep -E "^(-odd|VAL|SEC|REF)=" | sort; touch /tmp/env-running; sleep 2'], {
        env: [`VAL=${value}`, '-odd=x y', 'REF=${VAL}', 'SEC=overridden'], secretEnv: [`SEC=${secret}`],
      });
      await waitFor('the step to start', () => lstat(marker).then(() => true, () => false));
      const cmdlines: string[] = [];
      for (const pid of (await readdir('/proc')).filter((n) => /^\d+$/.test(n))) {
        cmdlines.push(await readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => ''));
      }
      expect(cmdlines.some((c) => c.includes('sleep'))).toBe(true); // the step is running while we look
      expect(cmdlines.filter((c) => c.includes(value) || c.includes(secret))).toEqual([]);
      expect((await p).exitCode).toBe(0);
      expect(out.stdout()).toBe(`-odd=x y\nREF=\${VAL}\nSEC=${secret}\nVAL=${value}\n`);
    });

    it('keeps an explicit PATH and HOME and runs in cwd', async () => {
      await mkdir(path.join(root, 'work/sub'), { recursive: true });
      const { out, p } = run(['/bin/sh', '-c', 'pwd; echo "$HOME $PATH"'], { env: ['PATH=/bin', 'HOME=/h'], cwd: '/work/sub' });
      expect((await p).exitCode).toBe(0);
      expect(out.stdout()).toBe('/work/sub\n/h /bin\n');
    });

    it('switches to a named user with supplementary groups', async () => {
      const user = await resolveUser(async (p) => readFile(path.join(root, p), 'utf8').catch(() => undefined), 'app');
      const { out, p } = run(['/bin/sh', '-c', 'id -u; id -g; id -G; echo $HOME; touch /tmp/by-app'], { user });
      expect((await p).exitCode).toBe(0);
      expect(out.stdout()).toBe('1000\n1000\n1000 2000\n/home/app\n');
    });

    it('switches to numeric ids not in passwd', async () => {
      const user = await resolveUser(async (p) => readFile(path.join(root, p), 'utf8').catch(() => undefined), '1234:5678');
      const { out, p } = run(['/bin/sh', '-c', 'id -u; id -g; id -G; echo $HOME; grep -E "^Cap(Eff|Prm)" /proc/self/status'], { user });
      expect((await p).exitCode).toBe(0);
      expect(out.stdout()).toBe('1234\n5678\n5678\n/\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n');
    });

    it('provides /proc in a new pid namespace, /dev, a read-only /sys, resolv.conf and hosts', async () => {
      const { out, p } = run([
        '/bin/sh', '-c',
        'echo pid=$$; grep -c "^Pid:" /proc/self/status; echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | wc -c; ' +
          'test -c /dev/urandom && echo urandom-ok; ls /sys/class >/dev/null && echo sys-ok; ' +
          'touch /sys/x 2>/dev/null || echo sys-ro; test -f /etc/resolv.conf && grep -q localhost /etc/hosts && echo net-files-ok',
      ]);
      expect((await p).exitCode).toBe(0);
      expect(out.stdout()).toBe('pid=1\n1\nnull-ok\n4\nurandom-ok\nsys-ok\nsys-ro\nnet-files-ok\n');
    });

    it('lets files written by the command land in the root', async () => {
      const { p } = run(['/bin/sh', '-c', 'mkdir -p /opt/app && echo hello > /opt/app/file']);
      expect((await p).exitCode).toBe(0);
      expect(await readFile(path.join(root, 'opt/app/file'), 'utf8')).toBe('hello\n');
    });

    it('leaves no /proc, /dev, /sys, resolv.conf or hosts behind, nor a changed mtime on / or /etc', async () => {
      const before = await listTree(root, true);
      const { p } = run(['/bin/sh', '-c', 'ls /proc/self /dev/null /sys/class /etc/resolv.conf /etc/hosts >/dev/null']);
      expect((await p).exitCode).toBe(0);
      expect(await listTree(root, true)).toEqual(before);
      expect(before.some((l) => /^. (proc|dev|sys|etc\/resolv\.conf|etc\/hosts)\b/.test(l))).toBe(false);
    });

    it('keeps mount points the root already had, untouched and empty', async () => {
      const r2 = await makeBusyboxRoot();
      try {
        await mkdir(path.join(r2, 'proc'));
        await writeFile(path.join(r2, 'etc/hosts'), '10.0.0.1 image-hosts\n');
        const before = await listTree(r2);
        const res = await runSandboxed({ root: r2, argv: ['/bin/sh', '-c', 'grep -q localhost /etc/hosts'], env: [], user: ROOT_USER, cwd: '/', kill }, tools);
        expect(res.exitCode).toBe(0);
        expect(await listTree(r2)).toEqual(before);
        expect(await readFile(path.join(r2, 'etc/hosts'), 'utf8')).toBe('10.0.0.1 image-hosts\n');
      } finally {
        await rm(r2, { recursive: true, force: true });
      }
    });

    it('provides /etc when the root has none and removes it afterwards', async () => {
      const r3 = await makeBusyboxRoot({ withEtc: false });
      try {
        const before = await listTree(r3);
        const res = await runSandboxed({ root: r3, argv: ['/bin/cat', '/etc/hosts'], env: [], user: ROOT_USER, cwd: '/', kill }, tools);
        expect(res.exitCode).toBe(0);
        expect(await listTree(r3)).toEqual(before);
      } finally {
        await rm(r3, { recursive: true, force: true });
      }
    });

    it('--network=none has only lo', async () => {
      const { out, p } = run(['/bin/ls', '/sys/class/net'], { network: 'none' });
      expect((await p).exitCode).toBe(0);
      expect(out.stdout().trim().split(/\s+/)).toEqual(['lo']);
    });

    it('a missing command exits 127 with a clear message', async () => {
      const { out, p } = run(['nosuchcmd', 'arg']);
      expect((await p).exitCode).toBe(127);
      expect(out.stderr()).toMatch(/nosuchcmd.*No such file/);
    });

    it('a shell-form missing command exits 127 too', async () => {
      const { out, p } = run(['/bin/sh', '-c', 'nosuchcmd']);
      expect((await p).exitCode).toBe(127);
      expect(out.stderr()).toContain('nosuchcmd');
    });

    it('aborts a running step and kills its whole tree', async () => {
      const ac = new AbortController();
      const { p } = run(['/bin/sh', '-c', 'sleep 30 & sleep 30'], { signal: ac.signal });
      setTimeout(() => ac.abort(), 300);
      const t0 = Date.now();
      await expect(p).rejects.toMatchObject({ code: 'RUN_ABORTED' });
      expect(Date.now() - t0).toBeLessThan(5000);
    });

    it('an aborted step leaves no process in its root: background, setsid and double-forked ones included', async () => {
      const ac = new AbortController();
      const script = '(setsid sh -c "while :; do sleep 0.05; done" &); while :; do sleep 0.05; done & setsid sh -c "while :; do sleep 0.05; done" & echo started; wait';
      const { out, p } = run(['/bin/sh', '-c', script], { signal: ac.signal });
      let seen: Array<{ pid: number; start: string }> = [];
      await waitFor('the step processes', async () => out.stdout().includes('started') && (seen = await processesInRoot(root)).length >= 4);
      ac.abort();
      await expect(p).rejects.toMatchObject({ code: 'RUN_ABORTED' });
      const alive = [];
      for (const s of seen) if ((await procStart(s.pid)) === s.start) alive.push(s);
      expect(alive).toEqual([]);
      expect(await processesInRoot(root)).toEqual([]);
    });

    it.each([
      ['root', ROOT_USER],
      // setpriv --regid and unshare --setuid clear PR_SET_PDEATHSIG on pid 1: the case a pdeathsig alone would miss
      ['a non-root user', { uid: 1000, gid: 1000, groups: [], home: '/' }],
    ])('SIGKILL of the builder mid-RUN (as %s) leaves no process of the step 2 s later', async (_, user) => {
      await compileIfStale();
      // The killed builder cannot remove its per-run dir: it lives in a dir of the test's own, removed after.
      const runParent = await mkdtemp(path.join(tmpdir(), 'sigkill-run-'));
      const opts = { root, env: [], user, cwd: '/', runtimeDir: path.join(runParent, 'run'), argv: ['/bin/sh', '-c', '(while :; do sleep 0.05; done) & setsid sh -c "while :; do sleep 0.05; done" & echo started; while :; do sleep 0.05; done'] };
      const script = `import(${JSON.stringify(path.join(ROOT, 'dist/src/run/sandbox.js'))}).then((m) => m.runSandboxed({ ...${JSON.stringify(opts)}, onOutput: (c) => process.stdout.write(c), kill: (p, s) => process.kill(p, s) }, ${JSON.stringify(tools)}))`;
      const builder = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let stdout = '';
      builder.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      let seen: Array<{ pid: number; start: string }> = [];
      try {
        await waitFor('the step processes', async () => stdout.includes('started') && (seen = await processesInRoot(root)).length >= 4, 30_000);
        builder.kill('SIGKILL');
        const deadline = Date.now() + 2000;
        let alive = seen;
        while (alive.length > 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
          const now = [];
          for (const s of alive) if ((await procStart(s.pid)) === s.start) now.push(s);
          alive = now;
        }
        expect(alive).toEqual([]);
        expect(await processesInRoot(root)).toEqual([]);
      } finally {
        builder.kill('SIGKILL');
        for (const s of await processesInRoot(root)) process.kill(s.pid, 'SIGKILL');
        await rm(runParent, { recursive: true, force: true });
      }
    });

    it('throws RUN_ROOT_MISSING for a missing root and RUN_CWD_INVALID for a relative cwd', async () => {
      await expect(runSandboxed({ root: path.join(root, 'nope'), argv: ['true'], env: [], user: ROOT_USER, cwd: '/', kill }, tools)).rejects.toMatchObject({ code: 'RUN_ROOT_MISSING' });
      await expect(run(['true'], { cwd: 'rel' }).p).rejects.toMatchObject({ code: 'RUN_CWD_INVALID' });
    });
  });

  describe.skipIf(!probe.ok)(`sandbox hostile roots with ${variant}`, () => {
    it('never follows a symlinked mount point out of the root', async () => {
      const r = await makeBusyboxRoot();
      const outside = path.join(path.dirname(r), `outside-${path.basename(r)}`);
      try {
        await symlink(outside, path.join(r, 'etc/resolv.conf'));
        await symlink(`${outside}-dir`, path.join(r, 'sys'));
        const res = await runSandboxed({ root: r, argv: ['/bin/sh', '-c', 'cat /etc/hosts >/dev/null'], env: [], user: ROOT_USER, cwd: '/', kill }, tools);
        expect(res.exitCode).toBe(0);
        await expect(lstat(outside)).rejects.toMatchObject({ code: 'ENOENT' });
        await expect(lstat(`${outside}-dir`)).rejects.toMatchObject({ code: 'ENOENT' });
      } finally {
        await rm(r, { recursive: true, force: true });
      }
    });
  });

  describe.skipIf(!probe.ok)(`sandbox with a symlinked /dev with ${variant}`, () => {
    it('runs without following /dev (the host tool view goes under /proc) and leaves the link alone', async () => {
      const r = await makeBusyboxRoot();
      const outside = path.join(path.dirname(r), `outside-dev-${path.basename(r)}`);
      try {
        await symlink(outside, path.join(r, 'dev'));
        const out = collect();
        const res = await runSandboxed({ root: r, argv: ['/bin/sh', '-c', 'ls /proc/self/status && ls /proc/usr 2>/dev/null; echo done'], env: [], user: ROOT_USER, cwd: '/', onOutput: out.onOutput, kill }, tools);
        expect(res.exitCode).toBe(0);
        expect(out.stdout()).toBe('/proc/self/status\ndone\n');
        await expect(lstat(outside)).rejects.toMatchObject({ code: 'ENOENT' });
        expect((await lstat(path.join(r, 'dev'))).isSymbolicLink()).toBe(true);
      } finally {
        await rm(r, { recursive: true, force: true });
      }
    });
  });

  describe.skipIf(!probe.ok)(`sandbox build root paths with ${variant}`, () => {
    it('works in a build root whose path has spaces, a tab and a backslash (escaped in the mount tables)', async () => {
      const r = await makeBusyboxRoot({ prefix: 'run root \t\\ odd-' });
      try {
        const out = collect();
        const res = await runSandboxed({ root: r, argv: ['/bin/sh', '-c', 'cat /etc/hosts >/dev/null && echo ok > /made'], env: [], user: ROOT_USER, cwd: '/', onOutput: out.onOutput, kill }, tools);
        expect(res.exitCode).toBe(0);
        expect(await readFile(path.join(r, 'made'), 'utf8')).toBe('ok\n');
      } finally {
        await rm(r, { recursive: true, force: true });
      }
    });

    it('a RUN --mount tmpfs whose mount-table line passes 4,095 bytes keeps nodev: a device made there cannot be opened', async () => {
      const r = await makeBusyboxRoot();
      try {
        // getmntent(3) keeps 4,095 bytes of a line: host paths around this length put that cut inside "nosuid,nodev"
        const real = await realpath(r);
        const targets: string[] = [];
        for (let want = 4070 - real.length; targets.length < 12; want++) {
          let t = '';
          while (t.length < want) t += `/${String.fromCharCode(97 + targets.length).repeat(Math.max(1, Math.min(200, want - t.length - 1)))}`;
          targets.push(t);
        }
        const script = 'for t in "$@"; do mknod "$t/dev-null" c 1 3 && cat "$t/dev-null" && echo "OPENED $t"; done; echo done';
        const out = collect();
        const res = await runSandboxed({
          root: r, argv: ['/bin/sh', '-c', script, 'sh', ...targets], env: [], user: ROOT_USER, cwd: '/', onOutput: out.onOutput, kill,
          mounts: targets.map((target) => ({ target, type: 'tmpfs' as const, readonly: false })),
        }, tools);
        expect(res.exitCode).toBe(0);
        expect(out.stdout()).toBe('done\n');
        expect(out.stderr().split('\n').filter((l) => /Permission denied/.test(l))).toHaveLength(targets.length);
      } finally {
        await rm(r, { recursive: true, force: true });
      }
    });
  });
}

describe('sandbox failures', () => {
  const tools = { setpriv: '/usr/bin/setpriv', env: '/usr/bin/env', sh: '/bin/sh', mount: '/usr/bin/mount', umount: '/usr/bin/umount', nsenter: '/usr/bin/nsenter', pivotRoot: '/usr/sbin/pivot_root', mkfifo: '/usr/bin/mkfifo', cp: '/usr/bin/cp' };
  it('reports namespaces that cannot be created as RUN_SANDBOX_SETUP and cleans up', async () => {
    const r = await makeBusyboxRoot();
    try {
      const before = await listTree(r);
      await expect(
        runSandboxed({ root: r, argv: ['true'], env: [], user: ROOT_USER, cwd: '/', kill }, { ...tools, unshare: '/bin/false' }),
      ).rejects.toMatchObject({ code: 'RUN_SANDBOX_SETUP' });
      await expect(
        runSandboxed({ root: r, argv: ['true'], env: [], user: ROOT_USER, cwd: '/', kill }, { ...tools, unshare: '/nonexistent/unshare' }),
      ).rejects.toMatchObject({ code: 'RUN_SANDBOX_UNAVAILABLE' });
      expect(await listTree(r)).toEqual(before);
    } finally {
      await rm(r, { recursive: true, force: true });
    }
  });
});

describe.skipIf(variants.length === 0)('builder-sandbox failures', () => {
  const helper = (variants[0]?.[1] as { helper: string } | undefined)?.helper ?? '';
  // fd 0 held open as builder holds it (its EOF means builder died), fd 3 the setup report
  const direct = (args: string[]) =>
    new Promise<{ status: number | null; report: string }>((resolve) => {
      const child = spawn(helper, args, { stdio: ['pipe', 'ignore', 'ignore', 'pipe'] });
      let report = '';
      (child.stdio[3] as NodeJS.ReadableStream).on('data', (c: Buffer) => (report += c.toString()));
      child.on('close', (status) => {
        child.stdin?.end();
        resolve({ status, report });
      });
    });

  it('a built helper that cannot be run here (dist on a noexec mount) is passed over: the chain runs the steps', async () => {
    await compileIfStale();
    // in a private mount namespace only: dist/bin replaced by a noexec tmpfs holding a copy of the helper
    const probe = `import(${JSON.stringify(path.join(ROOT, 'dist/src/run/sandbox.js'))}).then((m) => m.findSandboxTools()).then((t) => process.stdout.write('helper' in t ? 'helper' : 'missing' in t ? 'missing' : 'chain'))`;
    const script = 'set -e; B="$1"; cp "$B/builder-sandbox" /tmp/noexec-helper-$$; mount -t tmpfs -o noexec tmpfs "$B"; cp /tmp/noexec-helper-$$ "$B/builder-sandbox"; rm /tmp/noexec-helper-$$; shift; exec "$@"';
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', path.join(ROOT, 'dist/bin'), process.execPath, '--input-type=module', '-e', probe], { stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout.on('data', (b: Buffer) => (text += b.toString()));
      child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`exit ${code}`))));
    });
    expect(out).toBe('chain');
  });

  it('a helper that cannot be started is RUN_SANDBOX_UNAVAILABLE, one that never reports is RUN_SANDBOX_SETUP; the root is left as it was', async () => {
    const r = await makeBusyboxRoot();
    try {
      const before = await listTree(r);
      const opts = { root: r, argv: ['true'], env: [], user: ROOT_USER, cwd: '/', kill };
      await expect(runSandboxed(opts, { helper: '/nonexistent/builder-sandbox' })).rejects.toMatchObject({ code: 'RUN_SANDBOX_UNAVAILABLE' });
      await expect(runSandboxed(opts, { helper: '/bin/false' })).rejects.toMatchObject({ code: 'RUN_SANDBOX_SETUP', message: expect.stringContaining('cannot create namespaces') });
      expect(await listTree(r)).toEqual(before);
    } finally {
      await rm(r, { recursive: true, force: true });
    }
  });

  it('refuses malformed arguments on fd 3 with exit 125, before any namespace or mount', async () => {
    const good = ['/tmp', '/tmp', 'dev', 'h', '0', '0', '0', '/', '--', 'true'];
    for (const bad of [good.slice(0, 9), good.map((a) => (a === '--' ? '-' : a)), ['/tmp', '/tmp', 'dev', 'h', '-1', ...good.slice(5)],
      ['/tmp', '/tmp', 'dev', 'h', '0', '0x1', ...good.slice(6)], ['/tmp', '/tmp', 'dev', 'h', '0', '0', '1,,x', ...good.slice(7)],
      ['/tmp', '/tmp', 'dev', 'h', '4294967295', ...good.slice(5)], ['rel', ...good.slice(1)], ['/tmp', 'rel', ...good.slice(2)], [...good.slice(0, 7), 'rel', ...good.slice(8)]]) {
      expect(await direct(bad)).toEqual({ status: 125, report: 'builder-sandbox: invalid arguments\n' });
    }
  });

  it.skipIf(!probe.ok)('reports a mount that fails on fd 3 with the step\'s message and exits 125 without running the step', async () => {
    const r = await makeBusyboxRoot();
    try {
      const res = await direct([r, path.join(r, 'no-such-run-dir'), 'dev', 'h', '0', '0', '0', '/', '--', '/bin/touch', '/ran']);
      expect(res.status).toBe(125);
      expect(res.report).toBe(`${path.join(r, 'no-such-run-dir/root.fstab')}: No such file or directory\ncannot bind-mount the build root or the host tool view\n`);
      await expect(lstat(path.join(r, 'ran'))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await rm(r, { recursive: true, force: true });
    }
  });
});

describe('sandboxAvailable', () => {
  it('answers ok here (root with namespaces) or gives a reason', () => {
    expect(probe.ok || typeof probe.reason === 'string').toBe(true);
  });
});
