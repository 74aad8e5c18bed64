// --run-mode in-place end to end, without ever touching the host's "/": the CLI runs chrooted into a throwaway tmpfs
// root in its own mount + pid namespaces, so the "/" it wipes and extracts into is that tmpfs.
//
// The sandbox (SETUP below): a tmpfs at NEWROOT; the host's /usr, /bin, /sbin, /lib, /lib64, /etc and the project dir
// bind-mounted read-only (node and a shell for RUN); the workspace bound writable at /sbx (context, cache, work dir,
// results); a fresh proc; a tmpfs /dev holding binds of a few device nodes (which cannot be unlinked). Then
// `chroot NEWROOT env -i ... /bin/sh /sbx/steps.sh`. Mounts live in the private namespace only and vanish with it.
// Even a builder that ignored mountinfo could only empty the tmpfs: the binds are read-only or hold nothing of the host.
import { lstat, mkdir, mkdtemp, readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '../../src/registry/index.js';
import { makeTar } from '../rootfs/tar-helpers.js';
import { useFixture } from '../support/fixture.js';
import { pushRawImage } from '../support/raw-image.js';
import type { TestRegistry } from '../support/registry.js';
import { run, RunError, skopeoCopy, skopeoInspect, umociUnpack } from '../support/tools.js';
import { ROOT, Workspace } from './helpers.js';

const isRoot = process.getuid?.() === 0;

/** $1 NEWROOT, $2 writable dir (-> /sbx), $3 project dir (same path inside), then `--` and the command to chroot into. */
const SETUP = `
set -eu
new=$1; rw=$2; proj=$3; shift 3
[ "\${1:-}" = -- ] && shift
mount -t tmpfs -o mode=0755 builder-inplace-root "$new"
[ "$(findmnt -n -o FSTYPE --mountpoint "$new")" = tmpfs ] || { echo "sandbox: $new is not a tmpfs" >&2; exit 97; }
robind() { mkdir -p "$2"; mount --bind "$1" "$2"; mount -o remount,bind,ro "$2"; }
for d in usr bin sbin lib lib64 etc; do
  if [ -e "/$d" ]; then robind "/$d" "$new/$d"; fi
done
robind "$proj" "$new$proj"
mkdir -p "$new/sbx"; mount --bind "$rw" "$new/sbx"
mkdir -p "$new/proc"; mount -t proc proc "$new/proc"
mkdir -p "$new/dev"; mount -t tmpfs -o mode=0755,nosuid builder-inplace-dev "$new/dev"
for n in null zero full random urandom tty; do : > "$new/dev/$n"; mount --bind "/dev/$n" "$new/dev/$n"; done
mkdir -p "$new/tmp"; chmod 1777 "$new/tmp"  # the project may live under /tmp (a CI clone)
exec chroot "$new" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/sbx "$@"
`;

/** Runs `/bin/sh /sbx/steps.sh` (written from `steps`) chrooted in a fresh sandbox over `rw`; never throws on exit status. */
async function inSandbox(rw: string, steps: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const newRoot = await mkdtemp(path.join(os.tmpdir(), 'builder-inplace-root-'));
  // Every script refuses to run anywhere but in the tmpfs root, whatever happened in SETUP.
  await writeFile(path.join(rw, 'steps.sh'), `set -u\n[ "$(stat -f -c %T /)" = tmpfs ] || { echo "steps: / is not the tmpfs" >&2; exit 99; }\n${steps}`);
  try {
    const r = await run('unshare', [
      '--mount', '--pid', '--fork', '--kill-child=SIGKILL', '--propagation', 'private', '--',
      'sh', '-c', SETUP, 'sandbox', newRoot, rw, ROOT, '--', '/bin/sh', '/sbx/steps.sh',
    ], { timeoutMs: 170_000 });
    return { code: 0, ...r };
  } catch (err) {
    if (err instanceof RunError) return { code: err.exitCode, stdout: err.stdout, stderr: err.stderr };
    throw err;
  } finally {
    // rmdir, not rm -r: the mount point is empty in this namespace; anything else there would be a bug to see.
    await rmdir(newRoot);
  }
}

/** The builder CLI inside the sandbox: `res NAME ARGS...` leaves /sbx/res/NAME.{out,err,rc}. */
const RES_FN = `mkdir -p /sbx/res\nres() { n=$1; shift; node ${ROOT}/bin/builder "$@" >/sbx/res/$n.out 2>/sbx/res/$n.err; echo $? >/sbx/res/$n.rc; }\n`;
/** Everything on the tmpfs root itself (-xdev: mount points listed, never entered). */
const TREE = (name: string): string => `find / -xdev | LC_ALL=C sort > /sbx/res/${name}.tree\n`;

interface Res { rc: number; out: string; err: string }

describe.skipIf(!isRoot)('builder --run-mode in-place, in a throwaway tmpfs root', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  const res = async (n: string): Promise<Res> => ({
    rc: Number((await readFile(ws.path('res', `${n}.rc`), 'utf8')).trim()),
    out: await readFile(ws.path('res', `${n}.out`), 'utf8'),
    err: await readFile(ws.path('res', `${n}.err`), 'utf8'),
  });
  const tree = async (n: string): Promise<string[]> => (await readFile(ws.path('res', `${n}.tree`), 'utf8')).split('\n').filter(Boolean);
  const show = (r: Res): string => `exit ${r.rc}\nstdout:\n${r.out}\nstderr:\n${r.err}`;

  /** New layers (beyond the base's) of an image, each as its sorted list of paths ("app/out.txt", no "./"). */
  async function newLayerPaths(ref: string, name: string): Promise<string[][]> {
    const layout = ws.path(`${name}-layout`);
    await skopeoCopy(`docker://${reg.host}/${ref}`, `oci:${layout}:img`, { reg });
    const baseLayers = (await skopeoInspect(reg, 'library/busybox:latest')).Layers as string[];
    const layers = (await skopeoInspect(reg, ref)).Layers as string[];
    expect(layers.slice(0, baseLayers.length)).toEqual(baseLayers);
    const out: string[][] = [];
    for (const d of layers.slice(baseLayers.length)) {
      const { stdout } = await run('tar', ['-tzf', path.join(layout, 'blobs/sha256', d.replace(/^sha256:/, ''))]);
      out.push(stdout.split('\n').filter(Boolean).map((p) => p.replace(/^\.?\/+/, '').replace(/\/$/, '')).sort());
    }
    return out;
  }
  const unpack = async (ref: string, name: string): Promise<string> => {
    const layout = ws.path(`${name}-layout`);
    await skopeoCopy(`docker://${reg.host}/${ref}`, `oci:${layout}:unpack`, { reg });
    return umociUnpack(layout, 'unpack', ws.path(`${name}-bundle`));
  };
  const gone = async (p: string): Promise<boolean> => lstat(p).then(() => false, () => true);

  useFixture({ prefix: 'builder-inplace-' }, (f) => ({ reg, ws, base } = f));

  it('the sandbox is what the builder will see: "/" a tmpfs, host paths read-only mount points', async () => {
    await mkdir(ws.path('probe'), { recursive: true });
    const r = await inSandbox(ws.dir, [
      'cat /proc/self/mountinfo > /sbx/probe/mountinfo',
      'ls -A / > /sbx/probe/ls',
      'for d in /usr /etc /bin /sbin /lib; do touch $d/.builder-probe 2>/dev/null && echo "$d writable"; done > /sbx/probe/writable',
      `touch ${ROOT}/.builder-probe 2>/dev/null && echo "${ROOT} writable" >> /sbx/probe/writable`,
      'rm -f /dev/null 2>/dev/null && echo "/dev/null removed" >> /sbx/probe/writable',
      'echo ok > /sbx/probe/done',
    ].join('\n'));
    expect(r.code, r.stderr).toBe(0);
    const mi = (await readFile(ws.path('probe/mountinfo'), 'utf8')).split('\n').filter(Boolean).map((l) => l.split(' '));
    const byMp = new Map(mi.map((f) => [f[4]!, { opts: f[5]!, fstype: f[f.indexOf('-') + 1]! }]));
    expect(byMp.get('/')?.fstype).toBe('tmpfs');
    for (const mp of ['/usr', '/bin', '/etc', ROOT]) expect(byMp.get(mp)?.opts.split(',')).toContain('ro');
    expect(byMp.get('/sbx')).toBeDefined();
    expect(byMp.get('/proc')?.fstype).toBe('proc');
    // Nothing of the host's root is reachable except through those mounts.
    expect(await readFile(ws.path('probe/writable'), 'utf8')).toBe('');
    const ls = (await readFile(ws.path('probe/ls'), 'utf8')).split('\n').filter(Boolean).sort();
    expect(ls).toEqual(expect.arrayContaining(['bin', 'dev', 'etc', 'proc', 'sbx', 'tmp', 'usr', ROOT.split('/')[1]!]));
    expect(ls).not.toContain('root');
    expect(ls).not.toContain('.dockerenv');
    // And none of it leaked into the host's mount namespace.
    expect(await readFile('/proc/self/mountinfo', 'utf8')).not.toContain('builder-inplace');
  });

  describe('three CLI runs in one sandbox session', () => {
    beforeAll(async () => {
      await ws.context('ctx1', {
        Dockerfile: [
          `FROM ${base}`,
          'COPY hello.txt /app/hello.txt',
          'RUN echo "built in place" > /app/out.txt && cp /app/hello.txt /app/copy.txt && echo junk > /sbx/junk-from-run'
            + ' && mkdir -p /var/run && echo 1 > /var/run/ignored.pid && (touch /usr/should-fail 2>/dev/null || echo ro > /app/usr-was-ro)',
          'RUN rm /etc/passwd 2>/dev/null || echo kept > /app/etc-is-mounted',
          'RUN true',
          'USER 1000:1000',
          'RUN id -u > /tmp/uid && id -g >> /tmp/uid',
        ].join('\n'),
        'hello.txt': 'hello from the context\n',
      });
      await ws.context('ctx2', {
        Dockerfile: [
          `FROM ${base} AS s0`,
          'RUN echo stage0 > /stage0.txt',
          `FROM ${base} AS s1`,
          // The wipe before this stage removed both the first build's files and stage 0's.
          'RUN test ! -e /stage0.txt && test ! -e /app && echo clean > /clean.txt',
          'COPY --from=0 /stage0.txt /x',
          'FROM s1',
          'RUN test -f /x && test -f /clean.txt && test ! -e /stage0.txt && echo derived > /derived.txt',
        ].join('\n'),
      });
      await ws.context('ctx3', { Dockerfile: `FROM ${base}\nRUN echo never > /never.txt\n` });
      const common = '--cache-dir /sbx/cache --work-dir /sbx/work';
      // The first build's work dir is reached through a symlink on the root: the wipe must not follow it.
      await mkdir(ws.path('realwork'), { recursive: true });
      await writeFile(ws.path('realwork/precious'), 'keep me\n');
      const r = await inSandbox(ws.dir, [
        RES_FN,
        'ln -s /sbx/realwork /linkwork',
        `res build1 --run-mode in-place --force --context /sbx/ctx1 --dockerfile /sbx/ctx1/Dockerfile --destination ${reg.host}/inplace/one:v1 --cache-dir /sbx/cache --work-dir /linkwork/work`,
        TREE('after1'),
        // The second build's cache is a symlink to a directory on the root itself: kept under its real name too.
        'mkdir /realcache && ln -s /realcache /linkcache',
        `res build2 --run-mode in-place --force --context /sbx/ctx2 --dockerfile /sbx/ctx2/Dockerfile --destination ${reg.host}/inplace/multi:v1 --cache-dir /linkcache/c2 --work-dir /sbx/work`,
        TREE('after2'),
        // No --force, and nothing here looks like a container (no /.dockerenv, env cleared, pid 1 is ours).
        `res refused --run-mode in-place --context /sbx/ctx3 --dockerfile /sbx/ctx3/Dockerfile --destination ${reg.host}/inplace/refused:v1 ${common}`,
        TREE('after3'),
      ].join('\n'));
      if (r.code !== 0) throw new Error(`sandbox session failed: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    });

    it('RUN and COPY land in the image; nothing from the mount points or ignored paths does', async () => {
      const b1 = await res('build1');
      expect(b1.rc, show(b1)).toBe(0);
      expect(b1.out.trim().split('\n').pop()).toMatch(/^sha256:[0-9a-f]{64}$/);

      const layers = await newLayerPaths('inplace/one:v1', 'one');
      expect(layers).toEqual([
        ['app', 'app/hello.txt'],
        // var: its mtime changed (mkdir /var/run); /var/run itself is ignored, like kaniko.
        ['app', 'app/copy.txt', 'app/out.txt', 'app/usr-was-ro', 'var'],
        ['app', 'app/etc-is-mounted'],
        ['tmp', 'tmp/uid'],
      ]);
      const hist = (await skopeoInspect(reg, 'inplace/one:v1', { config: true })).history as Array<{ created_by?: string; empty_layer?: boolean }>;
      expect(hist.find((h) => h.created_by?.endsWith('-c true'))?.empty_layer).toBe(true);
      const rootfs = await unpack('inplace/one:v1', 'one');
      expect(await readFile(path.join(rootfs, 'app/hello.txt'), 'utf8')).toBe('hello from the context\n');
      expect(await readFile(path.join(rootfs, 'app/out.txt'), 'utf8')).toBe('built in place\n');
      expect(await readFile(path.join(rootfs, 'app/copy.txt'), 'utf8')).toBe('hello from the context\n');
      // The base layer is reused as is (busybox, not the host's /bin), the host's files are nowhere.
      expect((await lstat(path.join(rootfs, 'bin/busybox'))).size).toBe((await lstat('/bin/busybox')).size);
      for (const p of ['etc/os-release', 'usr/bin/node', 'sbx', 'work', 'var/run/ignored.pid', 'proc/self', 'dev/null']) {
        expect(await gone(path.join(rootfs, p)), p).toBe(true);
      }
      // The RUN did write into the writable mount; that file is simply not part of the image.
      expect(await readFile(ws.path('junk-from-run'), 'utf8')).toBe('junk\n');
      expect(await readFile(path.join(rootfs, 'tmp/uid'), 'utf8')).toBe('1000\n1000\n');
      expect((await lstat(path.join(rootfs, 'tmp/uid'))).uid).toBe(1000);
      // What lives next to the work dir, behind the symlink, survived the wipe.
      expect(await readFile(ws.path('realwork/precious'), 'utf8')).toBe('keep me\n');
    });

    it('the build root was the tmpfs: base extracted there, except under the mount points', async () => {
      const t = await tree('after1');
      expect(t).toEqual(expect.arrayContaining(['/app/out.txt', '/app/hello.txt', '/home/app', '/root', '/var/run/ignored.pid', '/usr', '/bin', '/etc', '/sbx']));
      // Nothing was written through the read-only binds (the busybox applets under /bin, /usr/bin are skipped).
      expect(t.filter((p) => /^\/(usr|bin|sbin|lib|lib64|etc|proc|sbx|dev)\//.test(p) || p.startsWith(`${ROOT}/`))).toEqual([]);
    });

    it('multi-stage in place: the wipe resets "/" between stages, COPY --from reads the materialized stage', async () => {
      const b2 = await res('build2');
      expect(b2.rc, show(b2)).toBe(0);
      const rootfs = await unpack('inplace/multi:v1', 'multi');
      expect(await readFile(path.join(rootfs, 'x'), 'utf8')).toBe('stage0\n');
      expect(await readFile(path.join(rootfs, 'clean.txt'), 'utf8')).toBe('clean\n');
      expect(await readFile(path.join(rootfs, 'derived.txt'), 'utf8')).toBe('derived\n');
      for (const p of ['stage0.txt', 'app']) expect(await gone(path.join(rootfs, p)), p).toBe(true);
      expect(await newLayerPaths('inplace/multi:v1', 'multi')).toEqual([['clean.txt'], ['x'], ['derived.txt']]);
      // "/" now holds the last stage; the first build's files are gone, the mount points untouched.
      const t = await tree('after2');
      expect(t).toEqual(expect.arrayContaining(['/x', '/clean.txt', '/derived.txt', '/usr', '/etc', '/sbx', '/proc', '/dev', ROOT, '/linkcache', '/realcache/c2']));
      expect(t).not.toContain('/app');
      expect(t).not.toContain('/stage0.txt');
    });

    it('refuses without --force outside a container, before touching anything', async () => {
      const r = await res('refused');
      expect(r.rc).not.toBe(0);
      expect(r.err).toContain('RUN_IN_PLACE_REFUSED');
      expect(await tree('after3')).toEqual(await tree('after2'));
      expect((await skopeoInspect(reg, 'inplace/refused:v1').then(() => 'pushed', () => 'absent'))).toBe('absent');
      expect(await readdir(ws.path('work')).catch(() => [])).toEqual([]);
    });
  });

  // Issue 11 item 2: in place the parent of the build root is "/" itself; a whiteout naming ".." (or ".") used to
  // delete "/" minus what the ignore list matched, and it matched "/../sbx" against "sbx" as a string: the mounts went too.
  it('a base layer entry ".wh..." in place is refused: "/" and its mount points (the workspace) stay', async () => {
    const client = new RegistryClient({});
    try {
      await pushRawImage(client, `${reg.host}/hostile/inplace-wh:v1`, [
        { tar: await makeTar([{ name: 'ok', content: 'lower layer' }]) },
        { tar: await makeTar([{ name: '.wh...', content: '' }]) },
      ]);
    } finally {
      await client.close();
    }
    await ws.context('ctxwh', { Dockerfile: `FROM ${reg.host}/hostile/inplace-wh:v1\nRUN true\n` });
    await writeFile(ws.path('wh-sentinel'), 'workspace\n');
    const r = await inSandbox(ws.dir, [
      RES_FN,
      `res wh --run-mode in-place --force --context /sbx/ctxwh --dockerfile /sbx/ctxwh/Dockerfile --destination ${reg.host}/inplace/wh:v1 --cache-dir /sbx/cache --work-dir /sbx/work`,
      TREE('afterwh'),
    ].join('\n'));
    expect(r.code, r.stderr).toBe(0);
    const wh = await res('wh');
    expect(wh.rc, show(wh)).toBe(1);
    expect(wh.err).toContain('ROOTFS_WHITEOUT_INVALID');
    expect(wh.err).toContain('entry ".wh..."');
    const t = await tree('afterwh');
    expect(t).toEqual(expect.arrayContaining(['/ok', '/sbx', '/usr', '/etc', '/proc', '/dev', ROOT]));
    expect(await readFile(ws.path('wh-sentinel'), 'utf8')).toBe('workspace\n');
    expect(await readFile(ws.path('ctxwh/Dockerfile'), 'utf8')).toContain('inplace-wh');
    expect((await skopeoInspect(reg, 'inplace/wh:v1').then(() => 'pushed', () => 'absent'))).toBe('absent');
  });
});
