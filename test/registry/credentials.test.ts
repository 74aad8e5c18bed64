// Unit tests: credential lookup (config.json, helpers, DOCKER_AUTH_CONFIG, GitLab CI), challenges, error mapping.
import { mkdtemp, mkdir, rm, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configKeyToRegistry, credentialProvider, parseChallenge, registryError, resolveCredential, type HelperRunner } from '../../src/registry/index.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('resolveCredential', () => {
  let home: string;
  let dcfg: string;
  beforeAll(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'builder-cred-'));
    await mkdir(path.join(home, '.docker'));
    await writeFile(path.join(home, '.docker/config.json'), JSON.stringify({
      auths: {
        'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pw') },
        'registry.example.com:5000': { username: 'u1', password: 'p1' },
        'https://idtok.example.com': { identitytoken: 'refresh-me' },
        'empty.example.com': {},
      },
      credHelpers: { 'helped.example.com': 'fake' },
    }));
    dcfg = path.join(home, 'other');
    await mkdir(dcfg);
    await writeFile(path.join(dcfg, 'config.json'), JSON.stringify({ auths: { 'registry.example.com:5000': { auth: b64('fromdc:pw') } }, credsStore: 'store' }));
  });
  afterAll(async () => rm(home, { recursive: true, force: true }));

  const runner: HelperRunner = async (helper, url) => {
    if (helper === 'fake' && url === 'helped.example.com') return JSON.stringify({ Username: 'hu', Secret: 'hs' });
    if (helper === 'store' && url === 'https://index.docker.io/v1/') return JSON.stringify({ Username: '<token>', Secret: 'idt' });
    if (helper === 'store') return '';
    throw new Error(`unexpected ${helper} ${url}`);
  };

  const table: Array<[string, Record<string, string>, string, unknown]> = [
    ['auth base64 for Docker Hub (password with colon)', {}, 'index.docker.io', { username: 'hubuser', password: 'hub:pw' }],
    ['username/password with port', {}, 'registry.example.com:5000', { username: 'u1', password: 'p1' }],
    ['identity token', {}, 'idtok.example.com', { identityToken: 'refresh-me' }],
    ['credHelpers', {}, 'helped.example.com', { username: 'hu', password: 'hs' }],
    ['empty entry is anonymous', {}, 'empty.example.com', undefined],
    ['unknown registry is anonymous', {}, 'nope.example.com', undefined],
    ['DOCKER_CONFIG wins over ~/.docker', { DOCKER_CONFIG: '<dc>' }, 'registry.example.com:5000', { username: 'fromdc', password: 'pw' }],
    ['an empty DOCKER_CONFIG is unset (as docker): ~/.docker', { DOCKER_CONFIG: '' }, 'registry.example.com:5000', { username: 'u1', password: 'p1' }],
    ['credsStore with <token> user', { DOCKER_CONFIG: '<dc>' }, 'index.docker.io', { identityToken: 'idt' }],
    ['DOCKER_AUTH_CONFIG first', { DOCKER_AUTH_CONFIG: JSON.stringify({ auths: { 'registry.example.com:5000': { auth: b64('env:pw') } } }) }, 'registry.example.com:5000', { username: 'env', password: 'pw' }],
    ['GitLab CI user/password', { CI_REGISTRY: 'gitlab.example.com:5050', CI_REGISTRY_USER: 'gitlab-ci-token', CI_REGISTRY_PASSWORD: 'jobpw' }, 'gitlab.example.com:5050', { username: 'gitlab-ci-token', password: 'jobpw' }],
    ['GitLab CI_JOB_TOKEN', { CI_REGISTRY: 'gitlab.example.com', CI_JOB_TOKEN: 'jt' }, 'gitlab.example.com', { username: 'gitlab-ci-token', password: 'jt' }],
    ['GitLab vars for another registry are ignored', { CI_REGISTRY: 'gitlab.example.com', CI_JOB_TOKEN: 'jt' }, 'other.example.com', undefined],
  ];
  it.each(table)('%s', async (_name, env, registry, want) => {
    const e = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === '<dc>' ? dcfg : v]));
    expect(await resolveCredential(registry, { env: e, homeDir: home, runHelper: runner })).toEqual(want);
  });

  it('invalid DOCKER_AUTH_CONFIG is a clear error', async () => {
    await expect(resolveCredential('x.io', { env: { DOCKER_AUTH_CONFIG: '{nope' }, homeDir: home })).rejects.toMatchObject({ code: 'CREDENTIALS_INVALID' });
  });

  it('runs a real docker-credential-<name> helper from PATH', async () => {
    const bin = path.join(home, 'bin');
    await mkdir(bin, { recursive: true });
    const helper = path.join(bin, 'docker-credential-test');
    await writeFile(helper, '#!/bin/sh\nread url\n[ "$1" = get ] && [ "$url" = "h.example.com" ] && printf \'{"ServerURL":"%s","Username":"hu","Secret":"sec"}\' "$url" && exit 0\necho "credentials not found in native keychain"; exit 1\n');
    await chmod(helper, 0o755);
    const cfg = path.join(home, 'helpercfg');
    await mkdir(cfg, { recursive: true });
    await writeFile(path.join(cfg, 'config.json'), JSON.stringify({ credsStore: 'test' }));
    const env = { PATH: `${bin}:/usr/bin:/bin`, DOCKER_CONFIG: cfg };
    expect(await resolveCredential('h.example.com', { env })).toEqual({ username: 'hu', password: 'sec' });
    expect(await resolveCredential('other.example.com', { env })).toBeUndefined();
    await expect(resolveCredential('x.io', { env: { PATH: '/nonexistent', DOCKER_CONFIG: cfg } })).rejects.toMatchObject({ code: 'CREDENTIAL_HELPER_FAILED' });
  });

  it('normalizes config keys', () => {
    expect(configKeyToRegistry('https://index.docker.io/v1/')).toBe('index.docker.io');
    expect(configKeyToRegistry('docker.io')).toBe('index.docker.io');
    expect(configKeyToRegistry('http://r.io:5000/v2/')).toBe('r.io:5000');
  });
});

describe('parseChallenge', () => {
  it.each([
    ['Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"', 'bearer',
      { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:a/b:pull,push' }],
    ['Basic realm="Registry Realm"', 'basic', { realm: 'Registry Realm' }],
    ['bearer realm=https://x/t, service=svc, error="insufficient_scope"', 'bearer', { realm: 'https://x/t', service: 'svc', error: 'insufficient_scope' }],
  ])('%s', (h, scheme, params) => {
    expect(parseChallenge(h)).toEqual({ scheme, params });
  });
  it('absent', () => expect(parseChallenge(undefined)).toBeUndefined());
});

describe('registryError', () => {
  it.each([
    [404, '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}', 'REGISTRY_MANIFEST_UNKNOWN'],
    [404, '{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}', 'REGISTRY_BLOB_UNKNOWN'],
    [404, '{"errors":[{"code":"NAME_UNKNOWN"}]}', 'REGISTRY_NAME_UNKNOWN'],
    [403, '{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}', 'REGISTRY_DENIED'],
    [401, '{"errors":[{"code":"UNAUTHORIZED"}]}', 'REGISTRY_UNAUTHORIZED'],
    [401, '', 'REGISTRY_UNAUTHORIZED'],
    [403, 'nope', 'REGISTRY_DENIED'],
    [429, '{"errors":[{"code":"TOOMANYREQUESTS"}]}', 'REGISTRY_TOO_MANY_REQUESTS'],
    [503, '', 'REGISTRY_SERVER_ERROR'],
    [418, 'teapot', 'REGISTRY_HTTP_ERROR'],
  ])('%d %s', (status, body, code) => {
    const e = registryError('r.example.com', 'GET manifest r.example.com/a:b', status, body);
    expect(e.code).toBe(code);
    expect(e.message).toContain('r.example.com');
    expect(e.hint).toBeTruthy();
  });
});

describe('credentialProvider', () => {
  it('reads config.json when made: a build that later replaces "/" (in place) still pushes with it', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'builder-cred-early-'));
    try {
      await writeFile(path.join(dir, 'config.json'), JSON.stringify({ auths: { 'push.example.com': { auth: b64('ci:secret') } } }));
      const provider = credentialProvider({ env: { DOCKER_CONFIG: dir }, homeDir: dir });
      await new Promise((r) => setTimeout(r, 50));
      await rm(path.join(dir, 'config.json'));
      expect(await provider('push.example.com')).toEqual({ username: 'ci', password: 'secret' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('credential helpers (real processes)', () => {
  it('a helper that answers without reading stdin does not crash the build (EPIPE)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'builder-cred-helper-'));
    try {
      // closes stdin before builder's write can land, as a busybox script in the executor image did
      await writeFile(path.join(dir, 'docker-credential-closed'), '#!/bin/sh\nexec 0<&-\necho \'{"Username":"u","Secret":"p"}\'\n', { mode: 0o755 });
      await writeFile(path.join(dir, 'config.json'), JSON.stringify({ credHelpers: { 'helped.example.com': 'closed' } }));
      for (let i = 0; i < 20; i++) {
        expect(await resolveCredential('helped.example.com', { env: { PATH: `${dir}:/usr/bin:/bin`, DOCKER_CONFIG: dir }, homeDir: dir })).toEqual({ username: 'u', password: 'p' });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('fallbackConfig (kaniko\'s /kaniko/.docker/config.json in the executor image)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'builder-cred-fallback-'));
    await mkdir(path.join(dir, 'empty'));
    await mkdir(path.join(dir, 'full'));
    await writeFile(path.join(dir, 'full/config.json'), JSON.stringify({ auths: { 'r.example': { auth: b64('primary:pw') } } }));
    await writeFile(path.join(dir, 'kaniko.json'), JSON.stringify({ auths: { 'r.example': { auth: b64('kaniko:pw') } } }));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('is read, and said once, only when $DOCKER_CONFIG has no config.json', async () => {
    const said: string[] = [];
    const fallback = { fallbackConfig: path.join(dir, 'kaniko.json'), onFallback: (p: string) => void said.push(p) };
    const viaFallback = credentialProvider({ env: { DOCKER_CONFIG: path.join(dir, 'empty') }, ...fallback });
    expect(await viaFallback('r.example')).toEqual({ username: 'kaniko', password: 'pw' });
    expect(await viaFallback('r.example')).toEqual({ username: 'kaniko', password: 'pw' });
    expect(said).toEqual([path.join(dir, 'kaniko.json')]);
    const primary = credentialProvider({ env: { DOCKER_CONFIG: path.join(dir, 'full') }, ...fallback });
    expect(await primary('r.example')).toEqual({ username: 'primary', password: 'pw' });
    expect(said).toHaveLength(1);
    // without the option (outside the executor image) the file is never looked at
    expect(await credentialProvider({ env: { DOCKER_CONFIG: path.join(dir, 'empty') } })('r.example')).toBeUndefined();
  });
});
