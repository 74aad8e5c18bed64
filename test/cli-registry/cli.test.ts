// The copy/inspect/digest/ls commands end to end: the compiled CLI against real registries.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxLayout, hostArch, pushBusybox, pushMultiPlatform } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { compileIfStale } from '../executor/helpers.js';
import { run, RunError, skopeoInspect } from '../support/tools.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('builder copy / inspect / digest / ls', () => {
  let plain: TestRegistry;
  let token: TestRegistry;
  let tls: TestRegistry;
  let tmp: string;
  let env: NodeJS.ProcessEnv;
  const builder = (...args: string[]) => run('node', [path.join(root, 'bin/builder'), ...args], { env, cwd: tmp });
  const fails = async (...args: string[]): Promise<RunError> => {
    try {
      await builder(...args);
    } catch (err) {
      return err as RunError;
    }
    throw new Error(`builder ${args.join(' ')} succeeded`);
  };

  beforeAll(async () => {
    // the CLI runs from dist/: compiled when src is newer (never rewritten under another test's running builder)
    await compileIfStale();
    [plain, token, tls] = await Promise.all([startRegistry({ mode: 'plain' }), startRegistry({ mode: 'token' }), startRegistry({ mode: 'htpasswd', tls: true })]);
    tmp = await mkdtemp(path.join(os.tmpdir(), 'builder-cli-'));
    const dc = path.join(tmp, 'docker');
    await mkdir(dc);
    await writeFile(path.join(dc, 'config.json'), JSON.stringify({
      auths: { [token.host]: { auth: Buffer.from(`${token.username}:${token.password}`).toString('base64') } },
    }));
    // credentials for the TLS registry come from the GitLab CI variables
    env = { PATH: process.env.PATH, HOME: tmp, DOCKER_CONFIG: dc, CI_REGISTRY: tls.host, CI_REGISTRY_USER: tls.username, CI_REGISTRY_PASSWORD: tls.password };
  });
  afterAll(async () => {
    await Promise.all([plain?.stop(), token?.stop(), tls?.stop()]);
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('copies registry -> registry (digest kept), oci -> registry over TLS, and lists/inspects', async () => {
    const src = await pushBusybox(plain, 'cli/src', 'v1');
    const want = (await skopeoInspect(plain, 'cli/src:v1')).Digest as string;
    const out = await builder('copy', src, `${token.host}/cli/dst:v1`);
    expect(out.stdout.trim()).toBe(want);
    expect((await builder('digest', `${token.host}/cli/dst:v1`)).stdout.trim()).toBe(want);
    expect((await builder('ls', `${token.host}/cli/dst`)).stdout.trim().split('\n')).toEqual(['v1']);
    const insp = JSON.parse((await builder('inspect', `${token.host}/cli/dst:v1`)).stdout);
    expect(insp.digest).toBe(want);
    expect(insp.config.config.Cmd).toEqual(['sh']);
    expect(insp.manifest.layers).toHaveLength(1);

    const { layout, tag } = await busyboxLayout();
    const cert = `--registry-certificate=${tls.host}=${tls.caFile}`;
    const pushed = await builder('copy', `oci:${layout}:${tag}`, `docker://${tls.host}/cli/tls:v1`, cert);
    expect((await skopeoInspect(tls, 'cli/tls:v1')).Digest).toBe(pushed.stdout.trim());
    const e = await fails('digest', `${tls.host}/cli/tls:v1`);
    expect(e.exitCode).not.toBe(0);
    expect(e.stderr).toContain('REGISTRY_TLS');
    expect(e.stderr).toContain('hint:');
    expect((await builder('digest', `${tls.host}/cli/tls:v1`, '--skip-tls-verify-registry', tls.host)).stdout.trim()).toBe(pushed.stdout.trim());
  });

  it('copies inside one registry with mounts, and multi-platform with --all-platforms', async () => {
    await builder('copy', `oci:${(await busyboxLayout()).layout}:busybox`, `${token.host}/cli/a:v1`);
    const r = await builder('copy', `${token.host}/cli/a:v1`, `${token.host}/cli/b:v1`);
    expect(r.stderr).toContain('2 mounted');
    const multi = await pushMultiPlatform(plain, 'cli/multi', 'v1');
    const all = await builder('copy', '--all-platforms', multi, `${token.host}/cli/multi:v1`);
    expect((await skopeoInspect(token, 'cli/multi:v1', { raw: true })).manifests).toHaveLength(2);
    expect(all.stdout.trim()).toBe((await builder('digest', multi)).stdout.trim());
    const arm = await builder('digest', multi, '--custom-platform', 'linux/arm64');
    const host = await builder('digest', multi, '--custom-platform', `linux/${hostArch()}`);
    expect(arm.stdout).not.toBe(host.stdout);
    const dir = path.join(tmp, 'out');
    await builder('copy', multi, `oci:${dir}:one`);
    expect((await builder('digest', `oci:${dir}:one`)).stdout).toBe(host.stdout);
  });

  it('reports errors with code, message and hint, and a non-zero exit', async () => {
    const missing = await fails('inspect', `${plain.host}/cli/none:nope`);
    expect(missing.stderr).toMatch(/REGISTRY_(NAME|MANIFEST)_UNKNOWN/);
    expect(missing.stderr).toContain(plain.host);
    const bad = await fails('digest', 'Not/Valid');
    expect(bad.stderr).toContain('REFERENCE_INVALID');
    const saved = env;
    env = { ...env, DOCKER_CONFIG: path.join(tmp, 'no-such-dir') };
    try {
      const noauth = await fails('ls', `${token.host}/cli/dst`);
      expect(noauth.stderr).toContain('REGISTRY_UNAUTHORIZED');
      expect(noauth.stderr).toContain(token.host);
    } finally {
      env = saved;
    }
  });
});
