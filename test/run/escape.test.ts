// Hostile RUN steps against the sandbox: the chroot escape, host processes, capabilities, mounts, the old root, devices, setuid.

import { execFileSync } from 'node:child_process';
import { chmod, copyFile, chown, lstat, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxAvailable } from '../../src/run/index.js';
import { runSandboxed, type SandboxOptions } from '../../src/run/sandbox.js';
import { collect, makeBusyboxRoot, sandboxVariants } from './helpers.js';
import { processHost } from '../../src/cli/host.js';

// the CLI hands the library its way to signal processes; these tests signal as this process
const { kill } = processHost();

const probe = await sandboxAvailable(kill);
const HOSTILE_C = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/hostile.c');
const ROOT_USER = { uid: 0, gid: 0, groups: [], home: '/root' };
const APP_USER = { uid: 1000, gid: 1000, groups: [2000], home: '/home/app' };
/** Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP. */
const DOCKER_CAPS_HEX = '00000000a80425fb';
const variants = await sandboxVariants();

// Every attack once through builder-sandbox and once through the sh chain it replaces without a C compiler.
for (const [variant, tools] of variants) {
  describe.skipIf(!probe.ok)(`sandbox against hostile RUN steps with ${variant}`, () => {
    let root: string;
    /** Outside the build root: where an escaped step would leave its marker. */
    let hostDir: string;
    let hostile: string;

    beforeAll(async () => {
      hostDir = await mkdtemp(path.join(tmpdir(), 'escape-host-'));
      hostile = path.join(hostDir, 'hostile');
      execFileSync('gcc', ['-static', '-O2', '-o', hostile, HOSTILE_C]);
      execFileSync('gcc', ['-shared', '-fPIC', '-DPRELOAD', '-O2', '-o', path.join(hostDir, 'hostile.so'), HOSTILE_C]);
      root = await makeBusyboxRoot();
      await copyFile(hostile, path.join(root, 'hostile'));
      await chmod(path.join(root, 'hostile'), 0o755);
    });
    afterAll(async () => {
      if (root) await rm(root, { recursive: true, force: true });
      if (hostDir) await rm(hostDir, { recursive: true, force: true });
    });

    const run = async (argv: string[], extra: Partial<SandboxOptions> = {}) => {
      const out = collect();
      const res = await runSandboxed({ root, argv, env: [], user: ROOT_USER, cwd: '/', onOutput: out.onOutput, kill, ...extra }, tools);
      return { ...res, stdout: out.stdout(), stderr: out.stderr() };
    };
    const sh = (script: string, extra: Partial<SandboxOptions> = {}) => run(['/bin/sh', '-c', script], extra);
    const exists = (p: string) => lstat(p).then(() => true, () => false);

    it('the chroot escape (chroot into a subdir, chdir .. repeatedly, chroot .) cannot write to the host', async () => {
      // Control: in a plain chroot, as the sandbox used to be, the same binary does reach the host.
      const control = path.join(hostDir, 'marker-control');
      const plain = execFileSync('chroot', [root, '/hostile', 'escape', control], { encoding: 'utf8' });
      expect(plain).toContain('ESCAPED');
      expect(await exists(control)).toBe(true);

      const marker = path.join(hostDir, 'marker-sandbox');
      const res = await run(['/hostile', 'escape', marker]);
      expect(res.stdout).toMatch(/^blocked: /);
      expect(res.exitCode).toBe(3);
      expect(await exists(marker)).toBe(false);
    });

    it('the chroot escape fails for a non-root user too, even through a setuid-root copy', async () => {
      const suid = path.join(root, 'hostile-suid');
      await copyFile(hostile, suid);
      await chown(suid, 0, 0);
      await chmod(suid, 0o4755);
      const marker = path.join(hostDir, 'marker-suid');
      const res = await run(['/hostile-suid', 'escape', marker], { user: APP_USER });
      expect(res.stdout).toMatch(/^blocked: /);
      expect(await exists(marker)).toBe(false);
    });

    it('an LD_PRELOAD from the image, loaded by the host helper, cannot write to the host either', async () => {
      await copyFile(path.join(hostDir, 'hostile.so'), path.join(root, 'hostile.so'));
      const marker = path.join(hostDir, 'marker-preload');
      // Relative: resolved by the loader of the last host helper (cwd = the build root) before it chroots.
      const res = await run(['/bin/true'], { env: ['LD_PRELOAD=./hostile.so', `HOSTILE_MARKER=${marker}`] });
      if ('helper' in tools) {
        // builder-sandbox is static and execs the step with its env: no host-side loader ever sees the image's library.
        expect(res.stderr).not.toContain('PRELOAD-RAN');
      } else {
        expect(res.stderr).toContain('PRELOAD-RAN uid=0 proc=absent usr-write=Read-only file system');
        expect(res.stdout).toMatch(/blocked: /);
      }
      expect(await exists(marker)).toBe(false);
      expect(res.exitCode).toBe(0);
    });

    it('a RUN sees only its own processes', async () => {
      // Globbed by the shell itself (pid 1), so no helper process of the sandbox may show up, not even a zombie.
      const res = await sh('echo /proc/[0-9]*; ps -o pid,comm');
      expect(res.exitCode).toBe(0);
      expect(res.stdout.split('\n')[0]).toBe('/proc/1');
      // ps is exec'd by the shell as its last command, so it is pid 1 and alone.
      const pids = res.stdout.split('\n').slice(2).filter(Boolean).map((l) => l.trim().split(/\s+/)[0]);
      expect(pids).toEqual(['1']);
    });

    it("a RUN gets Docker's 14 capabilities, bounding set included, and no_new_privs is not set", async () => {
      const res = await sh('grep -E "^(Cap|NoNewPrivs)" /proc/self/status');
      expect(res.exitCode).toBe(0);
      expect(res.stdout).toBe(
        `CapInh:\t0000000000000000\nCapPrm:\t${DOCKER_CAPS_HEX}\nCapEff:\t${DOCKER_CAPS_HEX}\nCapBnd:\t${DOCKER_CAPS_HEX}\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n`,
      );
      const app = await sh('grep -E "^Cap(Eff|Bnd)" /proc/self/status', { user: APP_USER });
      expect(app.stdout).toBe(`CapEff:\t0000000000000000\nCapBnd:\t${DOCKER_CAPS_HEX}\n`);
    });

    it('a RUN cannot mount or unmount (no CAP_SYS_ADMIN)', async () => {
      const res = await sh('mount -t tmpfs none /tmp && echo MOUNTED; umount /proc && echo UNMOUNTED; umount -l /etc/hosts && echo DETACHED; test -r /proc/self/status && echo proc-still-there');
      expect(res.stdout).toBe('proc-still-there\n');
      expect(res.stderr).toMatch(/mount/);
    });

    it('the host root is detached after pivot_root: no host path, old root or helper fd is reachable', async () => {
      const secret = path.join(hostDir, 'host-only-file');
      await writeFile(secret, 'host\n');
      const res = await sh(
        `cat ${secret} 2>/dev/null && echo SEEN-DIRECT; cd / && cd .. && cd .. && cat .${secret} 2>/dev/null && echo SEEN-DOTDOT; ` +
          `cat /proc/1/root${secret} 2>/dev/null && echo SEEN-PROC-ROOT; ls -a / | grep -E "old|pivot" && echo OLD-ROOT-NAMED; ` +
          'ls /dev/usr /proc/usr /dev/etc 2>/dev/null && echo VIEW-VISIBLE; cat /proc/self/mountinfo',
      );
      expect(res.exitCode).toBe(0);
      const mounts = res.stdout.trim().split('\n');
      expect(res.stdout).not.toMatch(/SEEN-|OLD-ROOT|VIEW-VISIBLE/);
      // Only stdio reaches the step: no descriptor of the sandbox's helpers or inherited from the builder's parent.
      const fds = await sh('ls /proc/1/fd; true');
      expect(fds.stdout.trim().split('\n').sort()).toEqual(['0', '1', '2']);
      // The root mount is the build root itself, and nothing mounted is the host's "/" or below it but outside the root.
      const realRoot = await realpath(root);
      const rootLine = mounts.find((l) => l.split(' ')[4] === '/');
      expect(rootLine?.split(' ')[3]).toBe(realRoot);
      expect(rootLine?.split(' ')[5]).toContain('nodev');
      for (const l of mounts) expect(l.split(' ')[4]).toMatch(/^\/(proc|dev|sys|etc\/hosts|etc\/resolv\.conf)?(\/|$)/);
    });

    it('device nodes a RUN creates cannot be opened (nodev in place of a device cgroup)', async () => {
      const res = await sh('mknod /tmp/mem c 1 1 && echo made; head -c1 /tmp/mem >/dev/null 2>&1 || echo refused; ' +
        'mknod /dev/mem2 c 1 1 && head -c1 /dev/mem2 >/dev/null 2>&1 || echo refused-dev; echo x > /dev/null && echo null-ok');
      expect(res.stdout).toBe('made\nrefused\nrefused-dev\nnull-ok\n');
      await rm(path.join(root, 'tmp/mem'), { force: true });
    });

    it('on an overlay root (a base from the extracted-base store) device nodes a RUN creates cannot be opened; /dev still works', async () => {
      // The build root is already a mount point here: the nodev bind must not be skipped as "already mounted".
      const layers = await mkdtemp(path.join(tmpdir(), 'escape-overlay-'));
      const merged = path.join(layers, 'merged');
      execFileSync('mkdir', ['-p', `${layers}/upper`, `${layers}/work`, merged]);
      execFileSync('chmod', ['755', layers, merged]);
      execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${root},upperdir=${layers}/upper,workdir=${layers}/work`, merged]);
      try {
        // kvm, fuse, loop-control and the block device behind /dev/loop0: made (MKNOD is Docker's too), never opened.
        const nodes = [['kvm', 'c 10 232'], ['fuse', 'c 10 229'], ['loopctl', 'c 10 237'], ['mem', 'c 1 1'], ['loop0', 'b 7 0']];
        const script = nodes.map(([n, spec]) => `mknod /tmp/${n} ${spec} && echo made-${n}; (exec 3<> /tmp/${n}) 2>/dev/null && echo OPENED-${n};`).join(' ') +
          ' mknod /dev/kvm2 c 10 232 && (exec 3<> /dev/kvm2) 2>/dev/null && echo OPENED-dev;' +
          ' head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; head -c 4 /dev/random | wc -c; echo x > /dev/null && echo null-ok;' +
          ' { echo x > /dev/full; } 2>&1 | grep -q "No space" && echo full-ok; echo s > /dev/shm/s && cat /dev/shm/s; test -c /dev/ptmx && test -d /dev/pts && echo pts-ok;' +
          ' grep " / / " /proc/self/mountinfo';
        const res = await run(['/bin/sh', '-c', script], { root: merged });
        expect(res.stdout).not.toContain('OPENED');
        const lines = res.stdout.trim().split('\n');
        expect(lines.slice(0, nodes.length)).toEqual(nodes.map(([n]) => `made-${n}`));
        expect(lines.slice(nodes.length, -1)).toEqual(['4', '4', '4', 'null-ok', 'full-ok', 's', 'pts-ok']);
        expect(lines.at(-1)!.split(' ')[5]).toContain('nodev');
        expect(res.exitCode).toBe(0);
      } finally {
        execFileSync('umount', [merged]);
        await rm(layers, { recursive: true, force: true });
      }
    });

    it('sysctls, sysrq-trigger and /sys are read-only; kcore, keys and timer_list are masked', async () => {
      // kernel.hostname is per uts namespace: harmless even if the write went through.
      const res = await sh('echo probe > /proc/sys/kernel/hostname 2>/dev/null || echo sysctl-ro; ' +
        'grep -E " /proc/(sysrq-trigger|sys|irq|bus) " /proc/self/mountinfo | grep -c " ro,"; ' +
        'cat /proc/kcore /proc/keys /proc/timer_list 2>/dev/null | wc -c; touch /sys/x 2>/dev/null || echo sys-ro');
      expect(res.stdout.trim().split('\n')).toEqual(['sysctl-ro', expect.stringMatching(/^[34]$/), '0', 'sys-ro']);
    });

    it('a setuid-root binary runs with euid 0 for a non-root user, as in docker build', async () => {
      const suid = path.join(root, 'euid-suid');
      await copyFile(hostile, suid);
      await chown(suid, 0, 0);
      await chmod(suid, 0o4755);
      const res = await run(['/euid-suid', 'euid'], { user: APP_USER });
      expect(res.exitCode).toBe(0);
      expect(res.stdout).toBe('euid=0 uid=1000\n');
      expect((await run(['/hostile', 'euid'], { user: APP_USER })).stdout).toBe('euid=1000 uid=1000\n');
    });
  });
}
