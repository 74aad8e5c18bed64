// The executor image in a CI job: built by builder FROM scratch, run under crun as a GitLab runner would (Docker's
// default capabilities and seccomp profile, no user namespace), building job after job in place without breaking itself.
import { copyFile, lstat, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runJob, writeJobSpec } from '../support/crun.js';
import { pushBusybox } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { run, skopeoCopy, skopeoInspect, umociUnpack } from '../support/tools.js';
import { compileIfStale, ROOT, Workspace } from './helpers.js';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

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

  beforeAll(async () => {
    [anon, auth, ws] = await Promise.all([startRegistry({ mode: 'plain' }), startRegistry({ mode: 'htpasswd' }), Workspace.create('builder-exe-'), compileIfStale()]);
    base = await pushBusybox(anon, 'library/busybox', 'latest');
    const layout = ws.path('executor-layout');
    await run('node', [path.join(ROOT, 'scripts/executor-image/build.mjs'), layout, '--destination', `${anon.host}/tools/builder:latest`], { timeoutMs: 170_000 });
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
  }, 360_000);
  afterAll(async () => {
    await Promise.all([anon?.stop(), auth?.stop()]);
    await ws?.remove();
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
    const version = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')).version as string;
    const r = await job('version', 'builder --version');
    expect(r.stdout).toContain(`builder ${version} (node `);
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
});
