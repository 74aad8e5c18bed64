// The kaniko flags that must really work, end to end against real registries: the push permission check, mirrors,
// pull-only TLS leniency, mTLS, immutable tags, JSON logs, --ignore-path, and the GitLab defaults.
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy } from '../support/fault-proxy.js';
import { busyboxLayout, pushBusybox } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { existsSync } from 'node:fs';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { run, skopeoCopy, skopeoInspect } from '../support/tools.js';

/** path -> "dir", "link TARGET" or "file CONTENT" for a whole unpacked root. */
async function tree(root: string, rel = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(`${root}/${rel}`)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const st = await lstat(`${root}/${p}`);
    if (st.isDirectory()) {
      out[p] = 'dir';
      Object.assign(out, await tree(root, p));
    } else if (st.isSymbolicLink()) out[p] = `link ${await readlink(`${root}/${p}`)}`;
    else out[p] = `file ${st.size < 4096 ? await readFile(`${root}/${p}`, 'utf8') : st.size}`;
  }
  return out;
}
import { compileIfStale, registryTags, ROOT, Workspace } from '../executor/helpers.js';

describe('build flags against real registries', () => {
  let plain: TestRegistry;
  let mirror: TestRegistry;
  let token: TestRegistry;
  let tls: TestRegistry;
  let ws: Workspace;
  let env: NodeJS.ProcessEnv;
  let base: string;

  beforeAll(async () => {
    await compileIfStale();
    // token mode: tester may push everywhere but under ro/ (pull only); delete on request as by default
    [plain, mirror, token, tls] = await Promise.all([
      startRegistry({ mode: 'plain' }),
      startRegistry({ mode: 'plain' }),
      startRegistry({ mode: 'token', grant: (_u, repo, req) => (repo.startsWith('ro/') ? ['pull'] : [...new Set(['pull', 'push', ...req])]) }),
      startRegistry({ mode: 'htpasswd', tls: true }),
    ]);
    ws = await Workspace.create('builder-build-flags-');
    await ws.context('docker', {
      'config.json': JSON.stringify({ auths: { [token.host]: { auth: Buffer.from(`${token.username}:${token.password}`).toString('base64') } } }),
    });
    // the TLS registry's credentials come from the GitLab variables
    env = { DOCKER_CONFIG: ws.path('docker'), CI_REGISTRY: tls.host, CI_REGISTRY_USER: tls.username, CI_REGISTRY_PASSWORD: tls.password };
    base = await pushBusybox(plain, 'lib/base', 'v1');
  });
  afterAll(async () => {
    await Promise.all([plain?.stop(), mirror?.stop(), token?.stop(), tls?.stop()]);
    await ws?.remove();
  });

  const build = (ctx: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}, cache?: string) =>
    ws.build(ctx, ['--run-mode', 'sandbox', ...args], { env: { ...env, ...extraEnv }, ...(cache ? { cache } : {}) });

  describe('push permission check', () => {
    it('a destination the credentials cannot push to fails before any step, saying the credentials lack the push scope', async () => {
      const ctx = await ws.context('ctx-denied', { Dockerfile: `FROM ${base}\nRUN echo SHOULD-NOT-RUN\n` });
      const t0 = Date.now();
      const r = await build(ctx, ['--destination', `${token.host}/ro/app:1`]);
      expect(r.code).not.toBe(0);
      expect(Date.now() - t0).toBeLessThan(15_000);
      expect(r.stderr).toContain('REGISTRY_INSUFFICIENT_SCOPE');
      expect(r.stderr).toMatch(/credentials were accepted but do not grant ro\/app:pull,push/);
      expect(r.stderr).toContain('--skip-push-permission-check');
      // the check runs beside the base pull ("stage 0: FROM" may be logged), but no step starts: its line would name it
      expect(r.stderr).not.toContain('SHOULD-NOT-RUN');
    });

    it('the cache repository is checked too, but a cache that cannot be written is a warning before the build, never its failure', async () => {
      const ctx = await ws.context('ctx-cache-denied', { Dockerfile: `FROM ${base}\nRUN echo STEP-RAN\n` });
      const r = await build(ctx, ['--destination', `${token.host}/ok/app:1`, '--cache', '--cache-repo', `${token.host}/ro/cache`]);
      expect(r.code, r.stderr).toBe(0);
      const warning = r.stderr.indexOf('warning: the cache repository does not accept a push (REGISTRY_INSUFFICIENT_SCOPE');
      expect(warning).toBeGreaterThanOrEqual(0);
      expect(warning).toBeLessThan(r.stderr.indexOf('STEP-RAN'));
      expect(r.stderr).toContain('ro/cache');
    });

    it('a wrong password fails before any step as unauthorized, and a host nobody listens on as unreachable', async () => {
      const ctx = await ws.context('ctx-badpw', { Dockerfile: `FROM ${base}\nRUN echo SHOULD-NOT-RUN\n` });
      const bad = await build(ctx, ['--destination', `${tls.host}/app:1`, `--registry-certificate=${tls.host}=${tls.caFile}`], { CI_REGISTRY_PASSWORD: 'wrong' });
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain('REGISTRY_UNAUTHORIZED');
      expect(bad.stderr).not.toContain('SHOULD-NOT-RUN');
      const t0 = Date.now();
      const down = await build(ctx, ['--destination', '127.0.0.1:9/app:1']);
      expect(down.code).not.toBe(0);
      expect(down.stderr).toContain('REGISTRY_UNREACHABLE');
      expect(down.stderr).not.toContain('SHOULD-NOT-RUN');
      expect(Date.now() - t0).toBeLessThan(20_000);
    });

    it('the check writes nothing: an upload session opened and cancelled, no tag, no blob', async () => {
      const ctx = await ws.context('ctx-check-only', { Dockerfile: 'FROM scratch\nCOPY a /a\n', a: 'a\n' });
      // the build fails after the check (missing file), so only the check touched the registry
      await ws.context('ctx-check-only', { Dockerfile: 'FROM scratch\nCOPY missing /a\n' });
      const r = await build(ctx, ['--destination', `${plain.host}/check/only:1`]);
      expect(r.code).not.toBe(0);
      const log = (await plain.accessLog()).filter((e) => e.path.startsWith('/v2/check/only/'));
      expect(log.map((e) => `${e.method} ${e.status}`)).toEqual(['POST 202', 'DELETE 204']);
      expect(await registryTags(plain, 'check/only')).toEqual([]);
      const skipped = await build(ctx, ['--destination', `${plain.host}/check/skipped:1`, '--skip-push-permission-check']);
      expect(skipped.code).not.toBe(0);
      expect((await plain.accessLog()).filter((e) => e.path.startsWith('/v2/check/skipped/'))).toEqual([]);
    });
  });

  it('the check passes once its upload session opened: a session the registry fails to cancel is a warning, the build pushes', async () => {
    const proxy = await startFaultProxy(plain.url);
    try {
      proxy.add({ method: 'DELETE', path: /^\/v2\/check\/uncancelled\/blobs\/uploads\//, fault: 'status-500', times: Infinity });
      const ctx = await ws.context('ctx-uncancelled', { Dockerfile: `FROM ${base}\nRUN echo STEP-RAN\n` });
      const r = await build(ctx, ['--destination', `${proxy.host}/check/uncancelled:1`, '--push-retry', '0']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/warning: the push check's upload session in .*check\/uncancelled was not cancelled \(REGISTRY_SERVER_ERROR/);
      expect(r.stderr).toContain('STEP-RAN');
      expect(proxy.log().filter((e) => e.method === 'DELETE').map((e) => e.fault)).toEqual(['status-500']);
      expect(await registryTags(plain, 'check/uncancelled')).toEqual(['1']);
    } finally {
      await proxy.close();
    }
  });

  describe('push permission check beside the base pull', () => {
    it('the base is pulled while the check is unanswered, no step runs before it passes, and SIGTERM still stops the build', async () => {
      const proxy = await startFaultProxy(plain.url);
      try {
        proxy.add({ method: 'POST', path: /^\/v2\/check\/overlap\/blobs\/uploads\//, fault: 'stall' }); // the check never gets its answer
        const ctx = await ws.context('ctx-overlap', { Dockerfile: `FROM ${base}\nRUN echo SHOULD-NOT-RUN\n` });
        let stderr = '';
        const child = spawn('node', [path.join(ROOT, 'bin/builder'), '--run-mode', 'sandbox', '--context', ctx, '--cache-dir', ws.path('cache-overlap'),
          '--work-dir', ws.path('work-overlap'), '--destination', `${proxy.host}/check/overlap:1`], { env: { ...ws.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
        child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
        try {
          // the base's layer comes down (a fresh cache dir) and its root is made while the POST waits
          for (let t = Date.now(); !/base root \(1 layer\)/.test(stderr); await sleep(50)) {
            expect(child.exitCode, stderr).toBeNull();
            expect(Date.now() - t, stderr).toBeLessThan(60_000);
          }
          expect(proxy.log().filter((e) => e.method === 'POST').map((e) => e.fault)).toEqual(['stall']);
          expect((await plain.accessLog()).some((e) => e.method === 'GET' && e.path.startsWith('/v2/lib/base/blobs/'))).toBe(true);
          await sleep(1000);
          expect(stderr).not.toContain('SHOULD-NOT-RUN');
          child.kill('SIGTERM');
          expect(await exit).toBe(143);
        } finally {
          child.kill('SIGKILL');
        }
        expect(stderr).not.toContain('SHOULD-NOT-RUN');
        expect(await registryTags(plain, 'check/overlap')).toEqual([]);
      } finally {
        await proxy.close();
      }
    });
  });

  it('a build that fails first (a Dockerfile error) stops a stalled check: no wait for its timeouts and retries', async () => {
    const proxy = await startFaultProxy(plain.url);
    try {
      proxy.add({ method: 'POST', path: /^\/v2\/check\/early-fail\/blobs\/uploads\//, fault: 'stall', times: Infinity });
      const ctx = await ws.context('ctx-early-fail', { Dockerfile: `FROM ${base}\nNOSUCHINSTRUCTION x\n` });
      // before the fix this waited the 120 s header timeout per attempt (beyond the CLI run's own timeout)
      const r = await build(ctx, ['--destination', `${proxy.host}/check/early-fail:1`]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/Dockerfile:2/);
      // the check's POST is stalled if it left before the Dockerfile failed (the two race): never retried either way
      const posts = proxy.log().filter((e) => e.method === 'POST').map((e) => e.fault);
      expect(posts.length).toBeLessThanOrEqual(1);
      expect(posts.every((f) => f === 'stall')).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  describe('mirrors', () => {
    it('--registry-map pulls the base (manifest and blobs) from the mirror only', async () => {
      await pushBusybox(mirror, 'lib/mapped', 'v1');
      const ctx = await ws.context('ctx-map', { Dockerfile: `FROM ${plain.host}/lib/mapped:v1\nRUN echo mapped > /m\n` });
      // a cache dir of its own: the base layer must come over the network, not from an earlier test's store
      const r = await build(ctx, ['--destination', `${plain.host}/out/mapped:1`, '--registry-map', `${plain.host}=${mirror.host}`], {}, ws.path('cache-map'));
      expect(r.code, r.stderr).toBe(0);
      expect((await plain.accessLog()).filter((e) => e.path.startsWith('/v2/lib/mapped/'))).toEqual([]);
      expect((await mirror.accessLog()).some((e) => e.method === 'GET' && e.path.startsWith('/v2/lib/mapped/blobs/'))).toBe(true);
    });

    it('--registry-mirror serves Docker Hub names (with a path prefix), never reaching Docker Hub', async () => {
      await pushBusybox(mirror, 'hub/library/hubbase', 'v1');
      const ctx = await ws.context('ctx-mirror', { Dockerfile: 'FROM hubbase:v1\nRUN echo hub > /h\n' });
      const r = await build(ctx, ['--destination', `${plain.host}/out/hub:1`, '--registry-mirror', `${mirror.host}/hub`, '--skip-default-registry-fallback']);
      expect(r.code, r.stderr).toBe(0);
    });

    it('a mirror without the image falls back to the registry with a warning, or fails with --skip-default-registry-fallback', async () => {
      const ctx = await ws.context('ctx-fallback', { Dockerfile: `FROM ${base}\nRUN echo fb > /f\n` });
      const ok = await build(ctx, ['--destination', `${plain.host}/out/fb:1`, '--registry-map', `${plain.host}=${mirror.host}`]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stderr).toMatch(new RegExp(`warning: mirror ${mirror.host} could not provide .*falling back to ${plain.host}`));
      const no = await build(ctx, ['--destination', `${plain.host}/out/fb:2`, '--registry-map', `${plain.host}=${mirror.host}`, '--skip-default-registry-fallback']);
      expect(no.code).not.toBe(0);
      expect(no.stderr).toContain('REGISTRY_MIRRORS_FAILED');
    });
  });

  describe('TLS for pulls and mutual TLS', () => {
    it('--skip-tls-verify-pull pulls a base from an unverifiable registry, but pushes there stay verified', async () => {
      const tlsBase = `${tls.host}/lib/tlsbase:v1`;
      await skopeoCopy(`oci:${(await busyboxLayout()).layout}:busybox`, `docker://${tlsBase}`, { reg: tls });
      const ctx = await ws.context('ctx-tls-pull', { Dockerfile: `FROM ${tlsBase}\nRUN echo tls > /t\n` });
      const strict = await build(ctx, ['--destination', `${plain.host}/out/tls:1`]);
      expect(strict.code).not.toBe(0);
      expect(strict.stderr).toContain('REGISTRY_TLS');
      const lenient = await build(ctx, ['--destination', `${plain.host}/out/tls:1`, '--skip-tls-verify-pull']);
      expect(lenient.code, lenient.stderr).toBe(0);
      expect(lenient.stderr).toMatch(/\] RUN /);
      const push = await build(ctx, ['--destination', `${tls.host}/out/tls:1`, '--skip-tls-verify-pull']);
      expect(push.code).not.toBe(0);
      expect(push.stderr).toContain('REGISTRY_TLS');
      // the check runs beside the base pull (the stage may have started), but no step ran
      expect(push.stderr).not.toMatch(/\] RUN /);
    });

    it('--registry-client-cert presents a client certificate to a registry that requires one', async () => {
      const m = await startRegistry({ mode: 'tls', clientCerts: true });
      try {
        const { layout } = await busyboxLayout();
        const ca = `--registry-certificate=${m.host}=${m.caFile}`;
        const without = await ws.cli(['copy', `oci:${layout}:busybox`, `${m.host}/mtls/app:1`, ca]);
        expect(without.code).not.toBe(0);
        expect(without.stderr).toContain('REGISTRY_CLIENT_CERT_REQUIRED');
        expect(without.stderr).toContain('--registry-client-cert');
        if (process.env.SHOW_STDERR) console.log(without.stderr);
        const withCert = await ws.cli(['copy', `oci:${layout}:busybox`, `${m.host}/mtls/app:1`, ca, `--registry-client-cert=${m.host}=${m.clientCert},${m.clientKey}`]);
        expect(withCert.code, withCert.stderr).toBe(0);
        expect(withCert.stdout).toMatch(/^sha256:/);
      } finally {
        await m.stop();
      }
    });
  });

  it('--push-ignore-immutable-tag-errors: a registry refusing to overwrite a tag is a warning with the flag, an error without', async () => {
    // a 127.0.0.1 proxy in front of the real registry answers a PUT over an existing tag as ECR does for immutable repositories
    const proxy = http.createServer((req, res) => {
      const forward = (): void => {
        const up = http.request(`${plain.url}${req.url}`, { method: req.method, headers: { ...req.headers, host: plain.host } }, (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
        });
        up.on('error', () => res.destroy());
        req.pipe(up);
      };
      const m = /^\/v2\/(.+)\/manifests\/([\w][\w.-]*)$/.exec(req.url ?? '');
      if (req.method !== 'PUT' || !m) return forward();
      void fetch(`${plain.url}/v2/${m[1]}/manifests/${m[2]}`, { method: 'HEAD', headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } }).then((h) => {
        if (h.status !== 200) return forward();
        req.resume();
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'TAG_INVALID', message: `The image tag '${m[2]}' already exists in the '${m[1]}' repository and cannot be overwritten because the repository is immutable.` }] }));
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const host = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    try {
      const ctx = await ws.context('ctx-immutable', { Dockerfile: 'FROM scratch\nCOPY a /a\n', a: 'one\n' });
      const first = await build(ctx, ['--destination', `${host}/imm/app:1`]);
      expect(first.code, first.stderr).toBe(0);
      await ws.context('ctx-immutable', { a: 'two\n' });
      const refused = await build(ctx, ['--destination', `${host}/imm/app:1`]);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain('REGISTRY_TAG_INVALID');
      const ignored = await build(ctx, ['--destination', `${host}/imm/app:1`, '--push-ignore-immutable-tag-errors']);
      expect(ignored.code, ignored.stderr).toBe(0);
      expect(ignored.stderr).toMatch(/warning: .*imm\/app:1 was not overwritten: the registry keeps the tag immutable/);
      expect(ignored.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    } finally {
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  it('--log-format json: every stderr line is one JSON object (level, msg, time), RUN output and the error included; stdout is the digest alone', async () => {
    const ctx = await ws.context('ctx-json', { Dockerfile: `FROM ${base}\nRUN echo hello-from-run && echo to-stderr >&2\n` });
    const r = await build(ctx, ['--destination', `${plain.host}/out/json:1`, '--log-format', 'json', '--use-new-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { level: string; msg: string; time: string; source?: string; stream?: string });
    for (const l of lines) {
      expect(typeof l.msg).toBe('string');
      expect(Number.isNaN(Date.parse(l.time))).toBe(false);
    }
    expect(lines.find((l) => l.msg.endsWith('hello-from-run'))).toMatchObject({ level: 'info', source: 'run', stream: 'stdout' });
    expect(lines.find((l) => l.msg.endsWith('to-stderr'))).toMatchObject({ source: 'run', stream: 'stderr' });
    expect(lines.find((l) => l.msg.startsWith('--use-new-run has no effect'))?.level).toBe('warn');

    const bad = await build(ctx, ['--destination', `${plain.host}/out/json:1`, '--log-format=json', '--dockerfile', 'Nope']);
    expect(bad.code).not.toBe(0);
    const last = JSON.parse(bad.stderr.trim().split('\n').pop()!);
    expect(last).toMatchObject({ level: 'error', code: 'DOCKERFILE_NOT_FOUND' });
    expect(last.hint).toBeTruthy();
  });

  it('--verbosity error hides info lines but keeps the error; --log-timestamp starts lines with the time', async () => {
    const ctx = await ws.context('ctx-levels', { Dockerfile: 'FROM scratch\nCOPY a /a\n', a: 'a\n' });
    const quiet = await build(ctx, ['--no-push', '-v', 'error']);
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stderr).toBe('');
    const ts = await build(ctx, ['--no-push', '--log-timestamp']);
    expect(ts.stderr.trim().split('\n').every((l) => /^\d{4}-\d\d-\d\dT[\d:.]+Z builder: /.test(l))).toBe(true);
  });

  it('--single-snapshot: one layer for the stage\'s steps, the same filesystem as step by step (deletes, base deletes, re-created dirs)', async () => {
    const ctx = await ws.context('ctx-single', {
      Dockerfile: [
        `FROM ${base}`,
        'RUN mkdir -p /a /gone /redo && echo 1 > /a/one && echo x > /gone/x && echo old > /redo/old',
        'RUN echo 2 > /a/two && rm -rf /gone /redo && mkdir /redo && echo new > /redo/new',
        'RUN rm /a/one /bin/ls',
        'COPY f /f',
      ].join('\n'),
      f: 'copied\n',
    });
    const many = await build(ctx, ['--destination', `${plain.host}/out/single:many`]);
    expect(many.code, many.stderr).toBe(0);
    const one = await build(ctx, ['--destination', `${plain.host}/out/single:one`, '--single-snapshot']);
    expect(one.code, one.stderr).toBe(0);
    if (process.env.SHOW_STDERR) console.log(one.stderr);
    const baseLayers = (await skopeoInspect(plain, 'lib/base:v1')).Layers.length;
    expect((await skopeoInspect(plain, 'out/single:many')).Layers).toHaveLength(baseLayers + 4);
    expect((await skopeoInspect(plain, 'out/single:one')).Layers).toHaveLength(baseLayers + 1);
    const cfg = JSON.parse((await run('skopeo', ['inspect', '--config', '--tls-verify=false', `docker://${plain.host}/out/single:one`])).stdout);
    expect(cfg.history.filter((h: { empty_layer?: boolean }) => !h.empty_layer)).toHaveLength(baseLayers + 1);
    const baseRoot = await ws.unpack(plain, 'lib/base:v1', 'single-base');
    expect(existsSync(`${baseRoot}/bin/ls`)).toBe(true); // the last RUN deletes a base file
    const a = await tree(await ws.unpack(plain, 'out/single:many', 'single-many'));
    const b = await tree(await ws.unpack(plain, 'out/single:one', 'single-one'));
    expect(b).toEqual(a);
    expect(a['a/one']).toBeUndefined();
    expect(a['bin/ls']).toBeUndefined();
    expect(Object.keys(a).filter((p) => p.startsWith('redo/'))).toEqual(['redo/new']);
    expect(a.f).toBe('file copied\n');
  });

  it('a big blob moving says so while it moves (push and pull progress lines on stderr; stdout stays the digest)', async () => {
    const { randomBytes } = await import('node:crypto');
    const ctx = await ws.context('ctx-big', { Dockerfile: 'FROM scratch\nCOPY big /big\n' });
    const { writeFile } = await import('node:fs/promises');
    await writeFile(`${ctx}/big`, randomBytes(40 << 20));
    const r = await build(ctx, ['--no-push', '--oci-layout-path', ws.path('big-layout')]);
    expect(r.code, r.stderr).toBe(0);
    const fast = { BUILDER_PROGRESS_INTERVAL_MS: '1' };
    const push = await ws.cli(['copy', `oci:${ws.path('big-layout')}`, `${plain.host}/out/big:1`], { ...env, ...fast });
    expect(push.code, push.stderr).toBe(0);
    expect(push.stderr).toMatch(/push [0-9a-f]{12} [\d.]+ MiB\/40 MiB \(\d+%\)/);
    expect(push.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    const pull = await ws.cli(['copy', `${plain.host}/out/big:1`, `oci:${ws.path('big-back')}`], { ...env, ...fast });
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stderr).toMatch(/pull [0-9a-f]{12} [\d.]+ MiB\/40 MiB \(\d+%\)/);
  });

  it('--ignore-path leaves a path out of the layers', async () => {
    const ctx = await ws.context('ctx-ignore', { Dockerfile: `FROM ${base}\nRUN mkdir -p /scratchpad /kept && echo x > /scratchpad/f && echo y > /kept/f\n` });
    const r = await build(ctx, ['--destination', `${plain.host}/out/ignore:1`, '--ignore-path', '/scratchpad']);
    expect(r.code, r.stderr).toBe(0);
    const root = await ws.unpack(plain, 'out/ignore:1', 'ignore');
    expect(existsSync(`${root}/kept/f`)).toBe(true);
    expect(existsSync(`${root}/scratchpad`)).toBe(false);
  });

  it('inside a GitLab job, --context and --destination default to $CI_PROJECT_DIR and $CI_REGISTRY_IMAGE:$CI_COMMIT_SHA (said in the log)', async () => {
    const ctx = await ws.context('ctx-gitlab', { Dockerfile: 'FROM scratch\nCOPY a /a\n', a: 'a\n' });
    const r = await ws.cli(['--run-mode', 'sandbox', '--cache-dir', ws.path('cache'), '--work-dir', ws.path('work')], {
      ...env, GITLAB_CI: 'true', CI_PROJECT_DIR: ctx, CI_REGISTRY_IMAGE: `${plain.host}/group/project`, CI_COMMIT_SHA: 'abc123',
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`--destination defaults to $CI_REGISTRY_IMAGE:$CI_COMMIT_SHA (${plain.host}/group/project:abc123)`);
    expect(r.stderr).toContain(`--context defaults to $CI_PROJECT_DIR (${ctx})`);
    expect(await registryTags(plain, 'group/project')).toEqual(['abc123']);
  });
});
