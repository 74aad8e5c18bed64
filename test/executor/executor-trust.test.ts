// Trust in the job container (issue 17's "done when"): one GitLab-like job in one unprivileged crun container (Docker's
// capabilities and seccomp, no user namespace) runs the executor image in place: a hostile build looking for the job's
// credentials everywhere, two builds at once, a build killed with SIGKILL mid-RUN, and the next one. Then the same image
// on a "kernel" without Landlock (seccomp answers ENOSYS) must say so at start.
import { readFile, writeFile, mkdir, stat, lstat, copyFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runJob, writeJobSpec } from '../support/crun.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { run, umociUnpack } from '../support/tools.js';
import { ROOT, Workspace } from './helpers.js';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const rev = (s: string): string => [...s].reverse().join('');

// The hostile step (busybox sh; @{ stands for the shell's ${). Needles arrive reversed (the Dockerfile must not hold them), and everything it learns
// is counted into /builds/res/hostile (the job's volume): environ of every process outside its session, every file
// of the container, the writable memory of every process it may open, signals to builder and the job's shell. A
// process of its own in another session, holding a control needle in memory, proves the memory scan works.
const HOSTILE = String.raw`
set -u
out=/builds/res/$1; mkdir -p $out /run/hostile /var/run/hostile
rev /needles.rev > /run/hostile/needles
rev /control.rev > /run/hostile/control
setsid sh -c 'c=$(cat /run/hostile/control); echo $$ > /run/hostile/control-sid; touch /run/hostile/control-up; while :; do sleep 1; done' &
while [ ! -e /run/hostile/control-up ]; do sleep 0.1; done
sid=$(awk '{print $6}' /proc/$$/stat)
: > $out/fd-open; : > $out/env-hits; : > $out/env-read; : > $out/mem-open; : > $out/mem-hits; : > $out/control-hits; : > $out/signalled; : > $out/signal-tried
for p in /proc/[0-9]*; do
  pid=@{p#/proc/}
  [ "$(awk '{print $6}' $p/stat 2>/dev/null)" = "$sid" ] && continue
  comm=$(cat $p/comm 2>/dev/null)
  if cat $p/environ > /run/hostile/env 2>/dev/null; then
    echo "$pid $comm" >> $out/env-read
    tr '\0' '\n' < /run/hostile/env | grep -q -F -f /run/hostile/needles && echo "$pid $comm" >> $out/env-hits
  fi
  for f in $p/fd/*; do readlink $f > /dev/null 2>&1 && { echo "$pid $comm" >> $out/fd-open; break; }; done
  if dd if=$p/mem of=/dev/null bs=1 count=0 2>/dev/null; then
    echo "$pid $comm" >> $out/mem-open
    [ "@{2:-}" = open-only ] && continue
    while read range perms rest; do
      case $perms in rw*) ;; *) continue ;; esac
      s=$((0x@{range%-*})); e=$((0x@{range#*-}))
      dd if=$p/mem bs=4096 skip=$((s / 4096)) count=$(((e - s) / 4096)) 2>/dev/null > /run/hostile/region
      tr '\0' '\n' < /run/hostile/region > /run/hostile/lines
      grep -q -F -f /run/hostile/needles /run/hostile/lines && echo "$pid $comm $range" >> $out/mem-hits
      grep -q -F -f /run/hostile/control /run/hostile/lines && echo "$pid $comm" >> $out/control-hits
    done < $p/maps
  fi
  [ "$(awk '{print $6}' $p/stat 2>/dev/null)" = "$(cat /run/hostile/control-sid)" ] && continue
  case $comm in node|builder-run|sh)
    echo "$pid $comm" >> $out/signal-tried
    kill -0 $pid 2>/dev/null && echo "$pid $comm" >> $out/signalled ;;
  esac
done
rm -f /run/hostile/region /run/hostile/lines /run/hostile/env
for d in /*; do
  case $d in /proc|/sys|/dev) ;; *) grep -r -l -F -f /run/hostile/needles "$d" 2>/dev/null ;; esac
done | grep -v '^/run/hostile/' > $out/files
ls -A /root/.docker > $out/root-docker 2>&1
echo done > $out/finished
`.replace(/@\{/g, '${');

// Killed mid-RUN: a writer that left the session keeps going, a secret sits at /etc/tok.
const KILLED = String.raw`
setsid sh -c 'echo $$ > /builds/res/orphan.pid; while :; do date > /run/orphan-alive; sleep 0.2; done' &
while [ ! -s /builds/res/orphan.pid ]; do sleep 0.1; done
echo leak > /var/run/leak-k
touch /builds/res/k-started
sleep 600
`;

// The build after the killed one: what it can still see.
const NEXT = String.raw`
pid=$(cat /builds/res/orphan.pid)
if [ -d /proc/$pid ]; then echo alive; else echo gone; fi > /builds/res/n-orphan
cat /etc/tok > /builds/res/n-tok 2>&1 || echo unreadable >> /builds/res/n-tok
ls -A /run /var/run > /builds/res/n-run 2>&1
`;

describe.skipIf(!isRoot)('trust in place: the executor image in one unprivileged job (crun, Docker\'s capabilities and seccomp)', () => {
  let auth: TestRegistry;
  let ws: Workspace;
  let rootfs: string;
  let imageEnv: string[];
  let base: string;
  const jobToken = `jobtok-${randomBytes(12).toString('hex')}`;
  const control = `control-${randomBytes(12).toString('hex')}`;

  const authString = (): string => Buffer.from(`${auth.username}:${auth.password}`).toString('base64');
  const hostileContext = (from: string, out: string, needles: string[], mode = ''): Record<string, string> => ({
    Dockerfile: `${from}\nCOPY . /\nRUN sh /hostile.sh ${out} ${mode}\n`, 'hostile.sh': HOSTILE, 'needles.rev': `${needles.map(rev).join('\n')}\n`, 'control.rev': `${rev(control)}\n`,
  });

  useFixture({ registry: { mode: 'htpasswd' }, prefix: 'builder-trust-' }, (f) => ({ reg: auth, ws, base } = f));
  beforeAll(async () => {
    const layout = ws.path('executor-layout');
    await run('node', [path.join(ROOT, 'scripts/executor-image/build.mjs'), layout], { timeoutMs: 170_000 });
    rootfs = await umociUnpack(layout, 'latest', ws.path('executor-bundle'));
    imageEnv = (JSON.parse(await readFile(ws.path('executor-bundle', 'config.json'), 'utf8')) as { process: { env: string[] } }).process.env;
  }, 360_000);

  it('RUN steps find no credential (files, environ, memory), cannot signal builder; builds never mix, a killed one is cleaned, the job\'s files survive', async () => {
    const needles = [auth.password, jobToken, authString()];
    const configJson = `${JSON.stringify({ auths: { [auth.host]: { auth: authString() } } })}\n`;
    const from = `FROM ${base}\n`;
    await ws.context('jobws/hostile', hostileContext(`FROM ${base}`, 'hostile', needles));
    await ws.context('jobws/a', { Dockerfile: `${from}RUN touch /builds/res/a-started && while [ ! -e /builds/res/go ]; do sleep 0.1; done && echo a > /a.txt\n` });
    await ws.context('jobws/b', { Dockerfile: `${from}RUN echo b > /b.txt\n` });
    await ws.context('jobws/f', { Dockerfile: `${from}RUN ls -A /root/.docker > /builds/res/f-ls; exit 3\n` });
    await ws.context('jobws/t', { Dockerfile: `${from}RUN touch /builds/res/t-started && sleep 600\n` });
    await ws.context('jobws/k', { Dockerfile: `${from}COPY k.sh /k.sh\nRUN --mount=type=secret,id=tok,target=/etc/tok sh /k.sh\n`, 'k.sh': KILLED });
    await ws.context('jobws/n', { Dockerfile: `${from}COPY n.sh /n.sh\nRUN sh /n.sh\n`, 'n.sh': NEXT });
    await writeFile(ws.path('jobws/secret.txt'), 'build-secret-value\n');
    await mkdir(ws.path('jobws/res'), { recursive: true });
    // the image's WORKDIR with the job's file in it (the job's volume is mounted elsewhere, at /builds), and Docker's marker
    await writeFile(path.join(rootfs, 'workspace/keep.txt'), 'kept\n');
    await writeFile(path.join(rootfs, '.dockerenv'), '');

    const b = (ctx: string, dest: string, more = ''): string => `builder --context /builds/${ctx} --dockerfile /builds/${ctx}/Dockerfile --destination ${auth.host}/trust/${dest} ${more}`;
    const wait = (f: string): string => `n=0; while [ ! -e ${f} ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done`;
    // GitLab's docker executor pipes the job script to the shell: the variables are exported, in no argv or initial environ
    const script = [
      `export CI_REGISTRY=${auth.host} CI_REGISTRY_USER=${auth.username} CI_REGISTRY_PASSWORD=${auth.password} CI_JOB_TOKEN=${jobToken}`,
      `export CI_REGISTRY_IMAGE=${auth.host}/trust/app DOCKER_AUTH_CONFIG='${JSON.stringify({ auths: { [auth.host]: { auth: authString() } } })}'`,
      'export DOCKER_CONFIG=/root/.docker NODE_EXTRA_CA_CERTS=/etc/job-ca.pem',
      'mkdir -p /root/.docker && cp /builder/certs/ca-certificates.crt /etc/job-ca.pem',
      `printf '%s\\n' '${configJson.trim()}' > /root/.docker/config.json`,
      'md5sum /root/.docker/config.json > /builds/res/config.md5',
      `${b('hostile', 'hostile:1')} > /builds/res/hostile.out 2>&1; echo $? > /builds/res/hostile.rc`,
      // a failing build and one stopped by SIGTERM mid-RUN
      `${b('f', 'f:1')} > /builds/res/f.out 2>&1; echo $? > /builds/res/f.rc`,
      `${b('t', 't:1')} > /builds/res/t.out 2>&1 & tpid=$!`,
      wait('/builds/res/t-started'),
      'kill -TERM $tpid; wait $tpid; echo $? > /builds/res/t.rc',
      'md5sum -c /builds/res/config.md5 && echo CONFIG-KEPT-FT',
      // two builds at once: the second one starts while the first one's RUN runs
      `${b('a', 'a:1')} > /builds/res/a.out 2>&1 & apid=$!`,
      wait('/builds/res/a-started'),
      `${b('b', 'b:1')} > /builds/res/b.out 2>&1; echo $? > /builds/res/b.rc`,
      'touch /builds/res/go; wait $apid; echo $? > /builds/res/a.rc',
      // SIGKILL mid-RUN, then the next build
      `${b('k', 'k:1', '--secret id=tok,src=/builds/secret.txt')} > /builds/res/k.out 2>&1 & kpid=$!`,
      wait('/builds/res/k-started'),
      'kill -9 $kpid; wait $kpid; echo $? > /builds/res/k.rc',
      `${b('n', 'n:1')} > /builds/res/n.out 2>&1; echo $? > /builds/res/n.rc`,
      'test -f /etc/job-ca.pem && test -f /workspace/keep.txt && test -e /.dockerenv && echo JOB-DONE',
    ].join('\n');
    const bundle = ws.path('job-trust');
    await mkdir(bundle, { recursive: true });
    await writeJobSpec(bundle, { rootfs, args: ['/busybox/sh', '-s'], env: imageEnv, cwd: '/workspace', binds: [{ source: ws.path('jobws'), destination: '/builds' }] });
    const r = await runJob(bundle, `builder-test-trust-${process.pid}`, 400_000, `${script}\n`);
    const res = (f: string): Promise<string> => readFile(ws.path('jobws/res', f), 'utf8').catch(() => '');
    const show = async (n: string): Promise<string> => `${n}: rc ${await res(`${n}.rc`)}\n${await res(`${n}.out`)}`;
    const context = `job exit ${r.code}\n${r.stdout}\n${r.stderr}\n${await show('hostile')}\n${await show('a')}\n${await show('b')}\n${await show('n')}`;
    const found = async (n: string): Promise<string> => (await Promise.all(['env-read', 'env-hits', 'fd-open', 'mem-open', 'mem-hits', 'control-hits', 'signal-tried', 'signalled', 'files'].map(async (f) => `${f}: ${await res(`${n}/${f}`)}`))).join('\n');
    expect(r.stdout, context).toContain('JOB-DONE');

    // the hostile build ran to its end and pushed (so builder had the credentials)
    expect((await res('hostile.rc')).trim(), context).toBe('0');
    expect(await res('hostile/finished')).toBe('done\n');
    const seen = await found('hostile');
    expect(await res('hostile/env-hits'), seen).toBe('');
    expect(await res('hostile/files'), seen).toBe('');
    expect(await res('hostile/mem-hits'), seen).toBe('');
    expect(await res('hostile/control-hits'), `the memory scan finds the control needle in the step's own process\n${seen}`).toMatch(/ sh\n/);
    expect(await res('hostile/mem-open'), seen).not.toMatch(/ (node|builder-run)\n/);
    expect(await res('hostile/fd-open'), seen).not.toMatch(/ (node|builder-run)\n/);
    expect(await res('hostile/fd-open'), 'the fd listing works where it may').toMatch(/ sh\n/);
    expect(await res('hostile/signal-tried'), seen).toMatch(/ node\n/);
    expect(await res('hostile/signalled'), seen).toBe('');

    // while a step runs the config is out of "/"; after a failed and a SIGTERMed build it is back
    expect(await res('hostile/root-docker')).toBe('');
    expect(await res('f-ls')).toBe('');
    expect((await res('f.rc')).trim()).toBe('3');
    expect((await res('t.rc')).trim()).toBe('143');
    expect(r.stdout).toContain('CONFIG-KEPT-FT');

    // two builds at once: the second refused at once, saying why; the first one unharmed
    expect((await res('b.rc')).trim()).toBe('1');
    expect(await res('b.out')).toMatch(/BUILD_IN_PLACE_BUSY: another in-place build \(pid \d+\) is running in this container/);
    expect((await res('a.rc')).trim(), context).toBe('0');

    // SIGKILL mid-RUN: nothing of it runs on, its secret is gone, /run and /var/run hold nothing of earlier builds
    expect((await res('k.rc')).trim()).toBe('137');
    expect((await res('n.rc')).trim(), context).toBe('0');
    expect(await res('n.out')).toMatch(/work dir: removed what a killed build left/);
    expect(await res('n-orphan')).toBe('gone\n');
    expect(await res('n-tok')).toContain('unreadable');
    expect(await res('n-run')).not.toMatch(/hostile|leak|orphan/);

    // the job's own files, byte for byte
    expect(await readFile(path.join(rootfs, 'root/.docker/config.json'), 'utf8')).toBe(configJson);
    expect(await readFile(path.join(rootfs, 'workspace/keep.txt'), 'utf8')).toBe('kept\n');
    expect((await lstat(path.join(rootfs, '.dockerenv'))).isFile()).toBe(true);
    expect((await stat(path.join(rootfs, 'etc/job-ca.pem'))).size).toBe((await stat(path.join(rootfs, 'builder/certs/ca-certificates.crt'))).size);
  }, 420_000);

  it('without Landlock (seccomp answers ENOSYS) the build says so in one warning at start; builder\'s environ and the hidden files still hold no credential', async () => {
    // memory is open here (the warning says so): only which processes, not a scan of builder's heap
    await ws.context('jobws/plain', hostileContext(`FROM ${base}`, 'nolandlock', [auth.password, jobToken, authString()], 'open-only'));
    const authJson = JSON.stringify({ auths: { [auth.host]: { auth: authString() } } });
    const bundle = ws.path('job-nolandlock');
    await mkdir(bundle, { recursive: true });
    await writeJobSpec(bundle, {
      rootfs, args: ['/busybox/sh', '-s'], env: imageEnv, cwd: '/workspace', binds: [{ source: ws.path('jobws'), destination: '/builds' }],
      refuse: { names: ['landlock_create_ruleset', 'landlock_add_rule', 'landlock_restrict_self'], errno: 38 },
    });
    const script = `export CI_REGISTRY_PASSWORD=${auth.password} CI_JOB_TOKEN=${jobToken}\necho '${authJson}' > "$DOCKER_CONFIG/config.json"\nbuilder --context /builds/plain --dockerfile /builds/plain/Dockerfile --destination ${auth.host}/trust/plain:1\n`;
    const r = await runJob(bundle, `builder-test-nolandlock-${process.pid}`, 170_000, script);
    if (r.code !== 0) throw new Error(`job exited ${r.code}\n${r.stdout}\n${r.stderr}`);
    const lines = r.stderr.split('\n').filter((l) => l.includes('no Landlock'));
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/RUN steps can read builder's memory and signal it/);
    const res = (f: string): Promise<string> => readFile(ws.path('jobws/res/nolandlock', f), 'utf8').catch(() => '');
    expect(await res('finished')).toBe('done\n');
    // without Landlock builder's environ is open to the step: it holds no credential any more
    expect(await res('env-read')).toMatch(/ node\n/);
    expect(await res('env-hits')).toBe('');
    expect(await res('files')).toBe('');
    // what the warning says: its memory is open to the step now
    expect(await res('mem-open')).toMatch(/ node\n/);
  }, 200_000);
});
