// The executor image in a CI job: built by builder FROM scratch, run under crun as a GitLab runner would (Docker's
// default capabilities and seccomp profile, no user namespace), building job after job in place without breaking itself.
import { createHash } from 'node:crypto';
import { copyFile, lstat, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runJob, writeJobSpec } from '../support/crun.js';
import { useFixture } from '../support/fixture.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { run, skopeoCopy, skopeoInspect, umociUnpack } from '../support/tools.js';
import { ROOT, Workspace } from './helpers.js';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const MOUNT_SECRET = 'in-place-S3cret-7d1e0b9a-never-in-the-image';

/** Every layer of an image, uncompressed (skopeo to an OCI layout, then the blobs read here). */
async function layerTars(ws: Workspace, reg: TestRegistry, ref: string, name: string): Promise<Buffer[]> {
  const layout = ws.path(`${name}-layers`);
  await skopeoCopy(`docker://${reg.host}/${ref}`, `oci:${layout}:x`, { reg });
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
  const manifest = JSON.parse(await readFile(path.join(layout, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
  return Promise.all((manifest.layers as Array<{ digest: string }>).map(async (l) => gunzipSync(await readFile(path.join(layout, 'blobs/sha256', l.digest.slice(7))))));
}

/** Every entry name of every layer of an image, per layer. */
async function layerEntries(ws: Workspace, reg: TestRegistry, ref: string, name: string): Promise<string[][]> {
  const out: string[][] = [];
  for (const tar of await layerTars(ws, reg, ref, name)) out.push((await run('tar', ['-t', '-f', '-'], { input: tar })).stdout.split('\n').filter(Boolean));
  return out;
}

describe.skipIf(!isRoot)('the executor image in an unprivileged CI job (crun, Docker\'s capabilities and seccomp)', () => {
  let anon: TestRegistry;
  let auth: TestRegistry;
  let ws: Workspace;
  let rootfs: string;
  let imageEnv: string[];
  let base: string;

  useFixture({ prefix: 'builder-exe-' }, (f) => ({ reg: anon, ws, base } = f));
  beforeAll(async () => {
    auth = await startRegistry({ mode: 'htpasswd' });
    const layout = ws.path('executor-layout');
    await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', ws.path('sign.pem')]);
    await run('openssl', ['pkey', '-in', ws.path('sign.pem'), '-pubout', '-out', ws.path('sign.pub')]);
    await run('node', [path.join(ROOT, 'scripts/executor-image/build.mjs'), layout, '--sign-key', ws.path('sign.pem'), '--destination', `${anon.host}/tools/builder:latest`], { timeoutMs: 170_000 });
    rootfs = await umociUnpack(layout, 'latest', ws.path('executor-bundle'));
    imageEnv = (JSON.parse(await readFile(ws.path('executor-bundle', 'config.json'), 'utf8')) as { process: { env: string[] } }).process.env;

    // the runner's builds volume, bind-mounted at /workspace
    const jobws = ws.path('jobws');
    await ws.context('jobws/ctx1', {
      Dockerfile: [
        `FROM ${base}`,
        'COPY builder-xattr /usr/local/bin/builder-xattr',
        "RUN mkdir -p /home/app && echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && printf 'app:x:1000:\\nextra:x:1500:app\\n' >> /etc/group && chown 1000:1000 /home/app",
        // an xattr set by RUN (the image being built has no python3, nor has the executor image)
        "RUN echo data > /xattr.txt && echo -n '/xattr.txt|user.origin|626f6f|' | tr '|' '\\000' | builder-xattr set",
        'USER app',
        'RUN /bin/busybox id > /home/app/id.txt',
        '',
      ].join('\n'),
    });
    await copyFile(path.join(rootfs, 'builder/bin/builder-xattr'), path.join(jobws, 'ctx1/builder-xattr'));
    await ws.context('jobws/ctx2', {
      Dockerfile: `FROM ${base} AS build\nRUN echo built > /out.txt\nFROM ${base}\nCOPY --from=build /out.txt /out.txt\nRUN cat /out.txt > /copied.txt\n`,
    });
    await ws.context('jobws/ctx3', { Dockerfile: `FROM ${base}\nRUN echo again > /again.txt\n` });
    // RUN --mount in place: every mount type in one step, a cache target that holds image content, a bind from a stage
    await ws.context('jobws/mounts', {
      Dockerfile: [
        `FROM ${base} AS stage`,
        'RUN echo staged > /staged.txt',
        `FROM ${base}`,
        'RUN mkdir -p /var/cache/thing && echo image > /var/cache/thing/orig',
        'RUN --mount=type=secret,id=tok,mode=0440,uid=1000 --mount=type=cache,target=/var/cache/thing --mount=type=bind,target=/src \\',
        '    --mount=type=tmpfs,target=/scratch --mount=type=bind,from=stage,source=/staged.txt,target=/opt/in/staged.txt \\',
        '    md5sum < /run/secrets/tok | cut -c1-32 > /tok-md5 && stat -c "%a %u" /run/secrets/tok > /tok-mode && \\',
        '    echo x >> /var/cache/thing/log && wc -l < /var/cache/thing/log > /count && ls /var/cache/thing > /cache-ls && \\',
        '    cat /src/app.txt > /app-copy && echo t > /scratch/t && stat -c %a /scratch > /scratch-mode && cat /opt/in/staged.txt > /staged-copy',
        // a secret as a variable: no process of the container (builder's included) has it in its command line
        'RUN --mount=type=secret,id=tok,env=TOKEN echo "$TOKEN" | md5sum | cut -c1-32 > /env-md5 && \\',
        '    for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f"; echo; done | awk \'index($0, ENVIRON["TOKEN"]) { n++ } END { print n + 0 }\' > /env-hits',
        // targets that hold builder's own paths here (its cache dir /root/.cache/builder, its work dir /tmp/builder)
        'RUN --mount=type=cache,target=/root/.cache --mount=type=tmpfs,target=/tmp echo y >> /root/.cache/log && wc -l < /root/.cache/log > /root-count && ls -A /tmp > /tmp-ls',
        '',
      ].join('\n'),
      'app.txt': 'APP\n',
    });
    await ws.context('jobws/mounts-fail', {
      Dockerfile: `FROM ${base}\nRUN --mount=type=secret,id=tok,target=/etc/tok --mount=type=cache,id=failing,target=/c echo kept > /c/f && cat /etc/tok > /dev/null && exit 3\n`,
    });
    await ws.context('jobws/mounts-abort', {
      Dockerfile: `FROM ${base}\nRUN --mount=type=secret,id=tok,target=/etc/tok --mount=type=tmpfs,target=/var/scratch touch /started && sleep 60\n`,
    });
    await writeFile(ws.path('jobws/mounts-secret.txt'), MOUNT_SECRET);
  }, 360_000);
  afterAll(async () => {
    await auth?.stop();
  });

  const job = async (name: string, script: string): Promise<{ code: number | null; stdout: string; stderr: string }> => {
    const bundle = ws.path(`job-${name}`);
    await mkdir(bundle, { recursive: true });
    await writeJobSpec(bundle, { rootfs, args: ['/busybox/sh', '-c', script], env: imageEnv, cwd: '/workspace', binds: [{ source: ws.path('jobws'), destination: '/workspace' }] });
    return runJob(bundle, `builder-test-${name}-${process.pid}`);
  };

  it('npm run executor-image writes the OCI layout (tag latest) and pushes the same image with --destination', async () => {
    const index = JSON.parse(await readFile(ws.path('executor-layout', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
    const latest = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === 'latest');
    expect((await skopeoInspect(anon, 'tools/builder:latest')).Digest).toBe(latest?.digest);
    const cfg = await skopeoInspect(anon, 'tools/builder:latest', { config: true });
    expect(cfg.config.Entrypoint).toEqual(['/builder/bin/builder']);
    expect(cfg.config.WorkingDir).toBe('/workspace');
    expect(cfg.config.Env).toContain('DOCKER_CONFIG=/builder/.docker');
    // its SBOM, provenance and signature came along from the layout (referrers tag), and the signature verifies
    const referrers = await skopeoInspect(anon, `tools/builder:sha256-${latest!.digest.slice(7)}`, { raw: true });
    expect(referrers.manifests.map((m: { artifactType: string }) => m.artifactType).sort())
      .toEqual(['application/vnd.dev.cosign.artifact.sig.v1+json', 'application/vnd.in-toto+json', 'application/vnd.in-toto+json']);
    expect((await ws.cli(['verify', '--key', ws.path('sign.pub'), `${anon.host}/tools/builder:latest`])).code).toBe(0);
    const version = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')).version as string;
    const r = await job('version', 'builder --version');
    expect(r.stdout).toContain(`builder ${version} (node `);
    // into a pipe, the launcher answers --version and --help itself; node running the bundle prints the same
    const both = await job('answers', 'for a in --version --help; do builder "$a"; /builder/bin/node /builder/lib/builder.mjs "$a"; done');
    const [fastVersion, nodeVersion] = [r.stdout, (await job('node-version', '/builder/bin/node /builder/lib/builder.mjs --version')).stdout];
    expect(fastVersion).toBe(nodeVersion);
    const help = both.stdout.slice(2 * fastVersion.length);
    expect(help.slice(0, help.length / 2)).toBe(help.slice(help.length / 2));
    expect(help).toContain('Usage: builder [options] [command]');
    // every other command starts from the image's V8 snapshot (login waits on stdin: long enough to read what sh exec'd)
    const snap = await job('snapshot', 'mkfifo snap-fifo; builder login 127.0.0.1:1 -u u --password-stdin < snap-fifo & p=$!; exec 3>snap-fifo; rm snap-fifo; '
      + 'while :; do c="$(tr "\\0" " " < /proc/$p/cmdline)"; case "$c" in *node*) break;; esac; done; echo "$c"; kill $p');
    expect(snap.stdout.trim()).toMatch(/^\/builder\/bin\/node .* --snapshot-blob \/builder\/lib\/builder\.blob -- login 127\.0\.0\.1:1 -u u --password-stdin$/);
  });

  it('writes credentials into $DOCKER_CONFIG, builds and pushes twice in place, then once more through a credential helper in /builder/bin', async () => {
    await writeFile(path.join(rootfs, 'builder/bin/docker-credential-fake'), `#!/busybox/sh\necho '${JSON.stringify({ Username: auth.username, Secret: auth.password })}'\n`, { mode: 0o755 });
    const authJson = JSON.stringify({ auths: { [auth.host]: { auth: Buffer.from(`${auth.username}:${auth.password}`).toString('base64') } } });
    const build = (ctx: string, dest: string): string => `builder --context /workspace/${ctx} --dockerfile /workspace/${ctx}/Dockerfile --destination ${auth.host}/${dest}`;
    const r = await job('main', [
      'set -e',
      `echo '${authJson}' > "$DOCKER_CONFIG/config.json"`,
      build('ctx1', 'exe/groups:v1'),
      build('ctx2', 'exe/multi:v1'),
      // a credential helper under /builder/bin (kept by every build) answers for the third push
      `echo '${JSON.stringify({ credHelpers: { [auth.host]: 'fake' } })}' > "$DOCKER_CONFIG/config.json"`,
      build('ctx3', 'exe/again:v1'),
      'echo JOB-OK',
    ].join('\n'));
    expect(r.stdout + r.stderr).toContain('running in place in the executor image');
    if (r.code !== 0) throw new Error(`job exited ${r.code}\n${r.stdout}\n${r.stderr}`);
    expect(r.stdout).toContain('JOB-OK');

    const groups = await ws.unpack(auth, 'exe/groups:v1', 'groups');
    expect(await readFile(path.join(groups, 'home/app/id.txt'), 'utf8')).toMatch(/groups=.*1500\(extra\)/);
    const multi = await ws.unpack(auth, 'exe/multi:v1', 'multi');
    expect(await readFile(path.join(multi, 'copied.txt'), 'utf8')).toBe('built\n');
    const again = await ws.unpack(auth, 'exe/again:v1', 'again');
    expect(await readFile(path.join(again, 'again.txt'), 'utf8')).toBe('again\n');

    // the xattr set by RUN is in its layer (a PAX record), read by the static helper in the executor image
    const tars = await layerTars(ws, auth, 'exe/groups:v1', 'groups-raw');
    expect(tars.some((t) => t.includes('SCHILY.xattr.user.origin=boo'))).toBe(true);

    // no file of the container (its /builder, /busybox, caches, work dir, the job's volume) is in any new layer
    for (const [ref, name] of [['exe/groups:v1', 'g'], ['exe/multi:v1', 'm'], ['exe/again:v1', 'a']] as const) {
      const layers = await layerEntries(ws, auth, ref, name);
      for (const entry of layers.slice(1).flat()) expect(entry).not.toMatch(/^(\.\/)?(builder|busybox|workspace|root\/\.cache|tmp\/builder)(\/|$)/);
    }
    // the container is intact for the next job step
    expect((await stat(path.join(rootfs, 'builder/bin/node'))).isFile()).toBe(true);
    expect((await lstat(path.join(rootfs, 'busybox/sh'))).isSymbolicLink()).toBe(true);
  });

  it('the README\'s GitLab job runs as written (script lines from the README, GitLab\'s CI variables)', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const block = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('builder --context "${CI_PROJECT_DIR}"'))!;
    const lines = block.split('script:\n')[1]!.split('\n').filter((l) => l.startsWith('    - ')).map((l) => l.slice(6));
    expect(lines.length).toBeGreaterThan(0);
    await ws.context('jobws/gl', { Dockerfile: `FROM ${base}\nRUN echo gitlab > /gl.txt\n` });
    const bundle = ws.path('job-gitlab');
    await mkdir(bundle, { recursive: true });
    const ci = [
      `CI_REGISTRY=${auth.host}`, `CI_REGISTRY_USER=${auth.username}`, `CI_REGISTRY_PASSWORD=${auth.password}`, 'CI_PROJECT_DIR=/workspace/gl',
      `CI_REGISTRY_IMAGE=${auth.host}/group/project`, 'CI_COMMIT_SHORT_SHA=abc1234',
    ];
    await writeJobSpec(bundle, { rootfs, args: ['/busybox/sh', '-c', ['set -e', ...lines].join('\n')], env: [...imageEnv, ...ci], cwd: '/workspace', binds: [{ source: ws.path('jobws'), destination: '/workspace' }] });
    const r = await runJob(bundle, `builder-test-gitlab-${process.pid}`);
    if (r.code !== 0) throw new Error(`job exited ${r.code}\n${r.stdout}\n${r.stderr}`);
    const root = await ws.unpack(auth, 'group/project:abc1234', 'gitlab');
    expect(await readFile(path.join(root, 'gl.txt'), 'utf8')).toBe('gitlab\n');
    expect(r.stderr).toContain(`layer cache: ${auth.host}/group/project/cache`);
  });

  it('the README\'s Kubernetes Job runs as written (its args, the workspace and the mounted docker config)', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const block = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('kind: Job'))!;
    const args = (JSON.parse(/args: (\[.*\])/.exec(block)![1]!) as string[]).map((a) => a.replace('registry.example.com/group/app', `${auth.host}/k8s/app`));
    const wsDir = await ws.context('k8s-workspace', { Dockerfile: `FROM ${base}\nRUN echo k8s > /k8s.txt\n` });
    const cfgDir = ws.path('k8s-docker-config');
    await mkdir(cfgDir, { recursive: true });
    await writeFile(path.join(cfgDir, 'config.json'), JSON.stringify({ auths: { [auth.host]: { auth: Buffer.from(`${auth.username}:${auth.password}`).toString('base64') } } }));
    const bundle = ws.path('job-k8s');
    await mkdir(bundle, { recursive: true });
    await writeJobSpec(bundle, {
      rootfs, args: ['/builder/bin/builder', ...args], env: imageEnv, cwd: '/workspace',
      binds: [{ source: wsDir, destination: '/workspace' }, { source: cfgDir, destination: '/builder/.docker' }],
    });
    const r = await runJob(bundle, `builder-test-k8s-${process.pid}`);
    if (r.code !== 0) throw new Error(`job exited ${r.code}\n${r.stdout}\n${r.stderr}`);
    const root = await ws.unpack(auth, 'k8s/app:1.0.0', 'k8s');
    expect(await readFile(path.join(root, 'k8s.txt'), 'utf8')).toBe('k8s\n');
  });

  it('RUN --mount in place (secret, cache, bind, tmpfs): the step sees each, a second build sees the cache, no stub nor secret in any layer, config or history', async () => {
    const build = (tag: string): string => `builder --context /workspace/mounts --dockerfile /workspace/mounts/Dockerfile --secret id=tok,src=/workspace/mounts-secret.txt --destination ${anon.host}/exe/mounts:${tag}`;
    const r = await job('mounts', ['set -e', build('v1'), build('v2'), 'echo JOB-OK'].join('\n'));
    if (r.code !== 0) throw new Error(`job exited ${r.code}\n${r.stdout}\n${r.stderr}`);
    expect(r.stdout + r.stderr).toContain('running in place in the executor image');
    for (const [tag, count] of [['v1', '1'], ['v2', '2']] as const) {
      const root = await ws.unpack(anon, `exe/mounts:${tag}`, `mounts-${tag}`);
      const read = (f: string): Promise<string> => readFile(path.join(root, f), 'utf8').then((t) => t.trim());
      expect(await read('tok-md5')).toBe(createHash('md5').update(MOUNT_SECRET).digest('hex'));
      expect(await read('tok-mode')).toBe('440 1000');
      expect(await read('count')).toBe(count);
      expect(await read('cache-ls')).toBe('log'); // the image's own /var/cache/thing/orig is hidden under the cache...
      expect(await read('var/cache/thing/orig')).toBe('image'); // ...and still there after the step
      expect(await read('app-copy')).toBe('APP');
      expect(await read('scratch-mode')).toBe('1777');
      expect(await read('staged-copy')).toBe('staged');
      expect(await read('env-md5')).toBe(createHash('md5').update(`${MOUNT_SECRET}\n`).digest('hex'));
      expect(await read('env-hits')).toBe('0');
      expect(await read('root-count')).toBe(count);
      expect(await read('tmp-ls')).toBe('builder'); // the work dir stays visible (it cannot move); nothing else of /tmp
      // the mount step's layer holds exactly what the step wrote: no target, no stub, no parent of one
      const layers = await layerEntries(ws, anon, `exe/mounts:${tag}`, `mounts-${tag}-names`);
      expect(layers.at(-3)!.map((e) => e.replace(/^\.\//, '')).sort()).toEqual(['app-copy', 'cache-ls', 'count', 'scratch-mode', 'staged-copy', 'tok-md5', 'tok-mode']);
      expect(layers.at(-2)!.map((e) => e.replace(/^\.\//, '')).sort()).toEqual(['env-hits', 'env-md5']);
      expect(layers.at(-1)!.map((e) => e.replace(/^\.\//, '')).sort()).toEqual(['root-count', 'tmp-ls']);
      // the secret's value in no blob of the image: layers, config (and its history), manifest
      const layout = ws.path(`mounts-${tag}-blobs`);
      await skopeoCopy(`docker://${anon.host}/exe/mounts:${tag}`, `oci:${layout}:x`, { reg: anon });
      for (const name of await readdir(path.join(layout, 'blobs/sha256'))) {
        const b = await readFile(path.join(layout, 'blobs/sha256', name));
        expect((b[0] === 0x1f && b[1] === 0x8b ? gunzipSync(b) : b).includes(MOUNT_SECRET)).toBe(false);
      }
      const cfg = await skopeoInspect(anon, `exe/mounts:${tag}`, { config: true });
      expect(JSON.stringify(cfg)).not.toContain(MOUNT_SECRET);
    }
    // the container's root keeps no trace of the mounts either
    for (const p of ['run/secrets', 'src', 'scratch', 'opt/in']) expect(await lstat(path.join(rootfs, p)).catch(() => 'gone')).toBe('gone');
  });

  it('RUN --mount in place: a failing step still takes its secret out of the root and keeps what it wrote to the cache', async () => {
    const r = await job('mounts-fail', 'builder --context /workspace/mounts-fail --dockerfile /workspace/mounts-fail/Dockerfile --secret id=tok,src=/workspace/mounts-secret.txt --no-push');
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('RUN_FAILED');
    expect(await lstat(path.join(rootfs, 'etc/tok')).catch(() => 'gone')).toBe('gone');
    expect(await lstat(path.join(rootfs, 'c')).catch(() => 'gone')).toBe('gone');
    const cacheDir = path.join(rootfs, 'root/.cache/builder/run-cache', createHash('sha256').update('failing').digest('hex'));
    expect(await readFile(path.join(cacheDir, 'f'), 'utf8')).toBe('kept\n');
  });

  it('RUN --mount in place: a build stopped by SIGTERM mid-step takes the secret and the stubs out of the root before it exits', async () => {
    const r = await job('mounts-abort', [
      'builder --context /workspace/mounts-abort --dockerfile /workspace/mounts-abort/Dockerfile --secret id=tok,src=/workspace/mounts-secret.txt --no-push &',
      'pid=$!',
      // the step's own marker in "/" (in place the job's root is the build root): the secret is in place now
      'n=0; while [ ! -e /started ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done',
      'test -e /etc/tok && echo SECRET-PLACED',
      'kill -TERM $pid; wait $pid; echo "exit=$?"',
    ].join('\n'));
    expect(r.stdout).toContain('SECRET-PLACED');
    expect(r.stdout).toContain('exit=143');
    expect(r.stderr).toContain('INTERRUPTED: interrupted by SIGTERM');
    expect(await lstat(path.join(rootfs, 'etc/tok')).catch(() => 'gone')).toBe('gone');
    expect(await lstat(path.join(rootfs, 'var/scratch')).catch(() => 'gone')).toBe('gone');
  });

  it('in place, zstd layers are written and then extracted as a base with the image\'s own zstd (the image built has none)', async () => {
    await ws.context('jobws/zst1', { Dockerfile: `FROM ${base}\nRUN echo zstd > /z.txt\n` });
    await ws.context('jobws/zst2', { Dockerfile: `FROM ${anon.host}/exe/zstd:v1\nRUN cat /z.txt > /again.txt && ! command -v zstd\n` });
    const build = (ctx: string, dest: string): string => `builder --insecure --compression zstd --context /workspace/${ctx} --dockerfile /workspace/${ctx}/Dockerfile --destination ${anon.host}/${dest}`;
    const r = await job('zstd', ['set -e', build('zst1', 'exe/zstd:v1'), build('zst2', 'exe/zstd:v2'), 'echo JOB-OK'].join('\n'));
    if (r.code !== 0) throw new Error(`job exited ${r.code}\n${r.stdout}\n${r.stderr}`);
    const m = await skopeoInspect(anon, 'exe/zstd:v2', { raw: true });
    expect(m.layers.slice(1).map((l: { mediaType: string }) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar+zstd', 'application/vnd.oci.image.layer.v1.tar+zstd']);
    const dir = ws.path('zstd-dir');
    await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', '--src-no-creds', '--dest-decompress', `docker://${anon.host}/exe/zstd:v2`, `dir:${dir}`]);
    const last = (await skopeoInspect(anon, 'exe/zstd:v2', { config: true })).rootfs.diff_ids.at(-1) as string;
    expect((await run('tar', ['-x', '-O', '-f', path.join(dir, last.slice(7)), 'again.txt'])).stdout).toBe('zstd\n');
  });

  it('--run-mode sandbox inside the container fails before touching anything, with a clear message', async () => {
    await writeFile(path.join(rootfs, 'sentinel'), 'still here\n');
    const r = await job('sandbox', `builder --run-mode sandbox --context /workspace/ctx3 --dockerfile /workspace/ctx3/Dockerfile --destination ${auth.host}/exe/never:v1`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/RUN_SANDBOX_UNAVAILABLE: the sandbox cannot start here/);
    expect(await readFile(path.join(rootfs, 'sentinel'), 'utf8')).toBe('still here\n');
    await rm(path.join(rootfs, 'sentinel'));
  });

  it('a kaniko GitLab job writing /kaniko/.docker/config.json pushes unchanged: read when $DOCKER_CONFIG has none, said in one line', async () => {
    const authJson = JSON.stringify({ auths: { [auth.host]: { auth: Buffer.from(`${auth.username}:${auth.password}`).toString('base64') } } });
    const r = await job('kaniko-config', [
      'set -e',
      'rm -f "$DOCKER_CONFIG/config.json"',
      // kaniko's GitLab recipe, as copied
      'mkdir -p /kaniko/.docker',
      `echo '${authJson}' > /kaniko/.docker/config.json`,
      `builder --context /workspace/ctx3 --dockerfile /workspace/ctx3/Dockerfile --destination ${auth.host}/exe/kaniko-config:v1`,
    ].join('\n'));
    if (r.code !== 0) throw new Error(`job exited ${r.code}\n${r.stdout}\n${r.stderr}`);
    expect(r.stderr.split('\n').filter((l) => l.includes('/kaniko/.docker/config.json'))).toEqual([
      'builder: registry credentials from /kaniko/.docker/config.json (kaniko\'s place): /builder/.docker/config.json does not exist',
    ]);
    const root = await ws.unpack(auth, 'exe/kaniko-config:v1', 'kaniko-config');
    expect(await readFile(path.join(root, 'again.txt'), 'utf8')).toBe('again\n');
    for (const entry of (await layerEntries(ws, auth, 'exe/kaniko-config:v1', 'kc')).slice(1).flat()) expect(entry).not.toMatch(/^(\.\/)?kaniko(\/|$)/);
  });
});
