// builder tag / ls --json / delete / cleanup / manifest create / login / logout, end to end against real registries.
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { run, skopeoInspect } from '../support/tools.js';
import { compileIfStale, registryTags, ROOT, Workspace } from '../executor/helpers.js';

const DAY = 86_400;

describe('registry commands', () => {
  let plain: TestRegistry;
  let auth: TestRegistry;
  let ws: Workspace;
  const now = Math.floor(Date.now() / 1000);

  beforeAll(async () => {
    await compileIfStale();
    [plain, auth] = await Promise.all([startRegistry({ mode: 'plain' }), startRegistry({ mode: 'htpasswd' })]);
    ws = await Workspace.create('builder-regcmd-');
  });
  afterAll(async () => {
    await Promise.all([plain?.stop(), auth?.stop()]);
    await ws?.remove();
  });

  /** Builds a one-file image created `daysAgo` days ago (SOURCE_DATE_EPOCH) and pushes it to repo:tag; returns its digest. */
  async function image(repo: string, tag: string, daysAgo: number, extra: string[] = []): Promise<string> {
    const ctx = await ws.context(`ctx-${repo.replace(/\W/g, '-')}-${tag}`, { Dockerfile: 'FROM scratch\nCOPY f /f\n', f: `${repo}:${tag}\n` });
    return ws.buildOk(ctx, ['--run-mode', 'sandbox', '--reproducible', '--destination', `${plain.host}/${repo}:${tag}`, ...extra], {
      env: { SOURCE_DATE_EPOCH: String(now - daysAgo * DAY) },
    });
  }
  const cli = (args: string[]) => ws.cli(args);

  it('tag: new tags point at the same manifest with one manifest read and one write each, and no blob request', async () => {
    const d = await image('tags/app', 'build-1', 1);
    const before = (await plain.accessLog()).length;
    const r = await cli(['tag', `${plain.host}/tags/app:build-1`, 'v1.2.3', 'latest', `${plain.host}/tags/app:stable`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(d);
    const after = (await plain.accessLog()).slice(before);
    expect(after.filter((e) => e.path.includes('/blobs/'))).toEqual([]);
    expect(after.filter((e) => e.method === 'PUT').map((e) => e.path)).toEqual(['/v2/tags/app/manifests/v1.2.3', '/v2/tags/app/manifests/latest', '/v2/tags/app/manifests/stable']);
    expect((await registryTags(plain, 'tags/app')).sort()).toEqual(['build-1', 'latest', 'stable', 'v1.2.3']);
    expect((await skopeoInspect(plain, 'tags/app:v1.2.3')).Digest).toBe(d);
    const other = await cli(['tag', `${plain.host}/tags/app:build-1`, `${plain.host}/elsewhere/app:1`]);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toContain('TAG_OTHER_REPOSITORY');
  });

  it('ls --json: every tag with its digest, media type and the config\'s created time, newest first', async () => {
    const old = await image('ls/app', 'old', 30);
    const fresh = await image('ls/app', 'new', 2);
    const r = await cli(['ls', '--json', `${plain.host}/ls/app`]);
    expect(r.code, r.stderr).toBe(0);
    const list = JSON.parse(r.stdout) as Array<{ tag: string; digest: string; created: string; mediaType: string }>;
    expect(list.map((t) => [t.tag, t.digest])).toEqual([['new', fresh], ['old', old]]);
    expect(Date.parse(list[1]!.created) / 1000).toBe(now - 30 * DAY);
    expect(list[0]!.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    expect((await cli(['ls', `${plain.host}/ls/app`])).stdout.split('\n').filter(Boolean).sort()).toEqual(['new', 'old']);
  });

  it('delete: a tag goes (with the manifest, on a registry that cannot delete a tag alone, which the output says)', async () => {
    await image('del/app', 'a', 1);
    await image('del/app', 'b', 2);
    const r = await cli(['delete', `${plain.host}/del/app:a`]);
    expect(r.code, r.stderr).toBe(0);
    // distribution 2.8 has no tag delete: the manifest goes, and the output says every tag on it went too
    expect(r.stderr).toMatch(/deleted manifest .*del\/app@sha256:[0-9a-f]{64} \(with every tag pointing to it/);
    expect(await registryTags(plain, 'del/app')).toEqual(['b']);
    const missing = await cli(['delete', `${plain.host}/del/app:nope`]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/MANIFEST_UNKNOWN|NOT_FOUND/);
  });

  describe('cleanup (GitLab cleanup-policy semantics)', () => {
    const repo = 'clean/app';
    let digests: Record<string, string>;
    beforeAll(async () => {
      digests = {};
      const ages: Record<string, number> = { v1: 100, v2: 50, v3: 20, v4: 5, v5: 1, 'keep-me': 100, main: 100, xv1: 100 };
      for (const [tag, age] of Object.entries(ages)) digests[tag] = await image(repo, tag, age);
      // latest shares its manifest with v1: deleting v1 by digest would take latest with it
      await cli(['tag', `${plain.host}/${repo}:v1`, 'latest']);
    });
    const policy = ['--name-regex-delete', 'v.+|keep-me', '--name-regex-keep', 'keep-.*', '--keep-n', '1', '--older-than', '10d'];

    it('--name-regex-delete is required (nothing is deleted without it)', async () => {
      const r = await cli(['cleanup', `${plain.host}/${repo}`]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('FLAG_MISSING');
    });

    it('--dry-run lists what would go and deletes nothing: keep rules win, regexes anchored, keep-n newest, older-than from the config', async () => {
      const r = await cli(['cleanup', `${plain.host}/${repo}`, ...policy, '--dry-run', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { tag: string; fate: string; reason?: string });
      const fate = Object.fromEntries(rows.map((x) => [x.tag, x.fate]));
      expect(fate).toEqual({ v1: 'delete', v2: 'delete', v3: 'delete', v4: 'keep', v5: 'keep', 'keep-me': 'keep', main: 'keep', xv1: 'keep', latest: 'keep' });
      const why = Object.fromEntries(rows.map((x) => [x.tag, x.reason]));
      expect(why.latest).toMatch(/never/);
      expect(why.xv1).toMatch(/does not match/); // "v.+" is anchored: xv1 is not a v-tag
      expect(why['keep-me']).toMatch(/--name-regex-keep/);
      expect(why.v5).toMatch(/--keep-n/);
      expect(why.v4).toMatch(/--older-than/);
      expect((await registryTags(plain, repo)).length).toBe(9);
    });

    it('deletes only the planned tags, and never a kept tag through a shared manifest', async () => {
      const r = await cli(['cleanup', `${plain.host}/${repo}`, ...policy]);
      expect(r.code, r.stderr).toBe(0);
      const tags = (await registryTags(plain, repo)).sort();
      expect(tags).toContain('latest');
      expect(tags).not.toContain('v2');
      expect(tags).not.toContain('v3');
      for (const t of ['v4', 'v5', 'keep-me', 'main', 'xv1']) expect(tags).toContain(t);
      // distribution 2.8 cannot delete a tag alone (only a manifest): v1 stays, with a warning naming the kept tag
      expect(tags).toContain('v1');
      expect(r.stderr).toMatch(/v1 not deleted: shares its manifest with the kept tag latest/);
      expect(r.stderr).toMatch(/deleted 2, kept 6, skipped 1/);
      expect((await skopeoInspect(plain, `${repo}:latest`)).Digest).toBe(digests.v1);
    });
  });

  it('manifest create: a multi-platform index from single-platform images (platform from each config), sources copied in', async () => {
    const amd = await image('mp/amd64', 'v1', 1, ['--custom-platform', 'linux/amd64']);
    const arm = await image('mp/app', 'arm', 1, ['--custom-platform', 'linux/arm/v7']);
    const r = await cli(['manifest', 'create', `${plain.host}/mp/app:v1`, `${plain.host}/mp/amd64:v1`, `${plain.host}/mp/app:arm`]);
    expect(r.code, r.stderr).toBe(0);
    const raw = await skopeoInspect(plain, 'mp/app:v1', { raw: true });
    expect(raw.mediaType).toBe('application/vnd.docker.distribution.manifest.list.v2+json');
    expect(raw.manifests.map((m: { digest: string; platform: object }) => [m.digest, m.platform])).toEqual([
      [amd, { os: 'linux', architecture: 'amd64' }],
      [arm, { os: 'linux', architecture: 'arm', variant: 'v7' }],
    ]);
    expect(r.stdout.trim()).toBe((await ws.cli(['digest', `${plain.host}/mp/app:v1`])).stdout.trim());
    expect((await ws.cli(['digest', '--custom-platform', 'linux/arm/v7', `${plain.host}/mp/app:v1`])).stdout.trim()).toBe(arm);
    // the amd64 image lived in another repository: it is readable through the index's repository now
    expect((await ws.cli(['digest', '--custom-platform', 'linux/amd64', `${plain.host}/mp/app:v1`])).stdout.trim()).toBe(amd);
    const dup = await cli(['manifest', 'create', `${plain.host}/mp/app:bad`, `${plain.host}/mp/amd64:v1`, `${plain.host}/mp/amd64:v1`]);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toContain('MANIFEST_PLATFORM_DUPLICATE');
  });

  it('copy reads docker-archive:FILE: kaniko\'s --tar-path hand-off (gzip layers) and docker save\'s (plain tar layers, gzipped on the way)', async () => {
    const ctx = await ws.context('ctx-archive', { Dockerfile: 'FROM scratch\nCOPY f /f\nCOPY g /g\n', f: 'f\n', g: 'g\n' });
    const tarPath = ws.path('built.tar');
    await ws.buildOk(ctx, ['--run-mode', 'sandbox', '--no-push', '--tar-path', tarPath, '--destination', `${plain.host}/arch/app:built`]);
    const r = await cli(['copy', `docker-archive:${tarPath}`, `${plain.host}/arch/app:v1`]);
    expect(r.code, r.stderr).toBe(0);
    const cfg = (ref: string) => run('skopeo', ['inspect', '--config', '--tls-verify=false', ref]).then((x) => x.stdout);
    const want = await cfg(`docker-archive:${tarPath}`);
    expect(await cfg(`docker://${plain.host}/arch/app:v1`)).toBe(want);
    expect(r.stdout.trim()).toBe((await skopeoInspect(plain, 'arch/app:v1')).Digest);
    // docker save's format: uncompressed layer tars (skopeo writes it that way)
    const saved = ws.path('saved.tar');
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${plain.host}/arch/app:v1`, `docker-archive:${saved}:arch/app:v1`]);
    const man = JSON.parse((await run('tar', ['-xOf', saved, 'manifest.json'])).stdout) as Array<{ Layers: string[] }>;
    expect((await run('tar', ['-xOf', saved, man[0]!.Layers[0]!])).stdout.charCodeAt(0)).not.toBe(0x1f); // not gzip
    const r2 = await cli(['copy', `docker-archive:${saved}`, `${plain.host}/arch/app:v2`]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(await cfg(`docker://${plain.host}/arch/app:v2`)).toBe(want);
    const bundle = await ws.unpack(plain, 'arch/app:v2', 'arch');
    expect(await readFile(`${bundle}/g`, 'utf8')).toBe('g\n');
    const missing = await cli(['copy', `docker-archive:${ws.path('nope.tar')}`, `${plain.host}/arch/app:v3`]);
    expect(missing.stderr).toContain('DOCKER_ARCHIVE_NOT_FOUND');
  });

  it('login --password-stdin checks the password, stores it in the docker config for later commands; logout removes it', async () => {
    const dc = ws.path('dockercfg');
    const env = { ...ws.env, DOCKER_CONFIG: dc };
    const bin = `${ROOT}/bin/builder`;
    const wrong = await run('node', [bin, 'login', auth.host, '-u', auth.username, '--password-stdin'], { env, input: 'nope\n' }).catch((e) => e);
    expect(wrong.exitCode).not.toBe(0);
    expect(wrong.stderr).toContain('REGISTRY_UNAUTHORIZED');
    await expect(readFile(`${dc}/config.json`)).rejects.toThrow();
    await run('node', [bin, 'login', auth.host, '-u', auth.username, '--password-stdin'], { env, input: `${auth.password}\n` });
    const cfg = JSON.parse(await readFile(`${dc}/config.json`, 'utf8'));
    expect(Buffer.from(cfg.auths[auth.host].auth, 'base64').toString()).toBe(`${auth.username}:${auth.password}`);
    await run('node', [bin, 'ls', `${auth.host}/none`], { env }).catch((e) => {
      // an empty repository is NAME_UNKNOWN, never an auth failure once logged in
      expect(e.stderr).not.toContain('UNAUTHORIZED');
    });
    await run('node', [bin, 'logout', auth.host], { env });
    expect(JSON.parse(await readFile(`${dc}/config.json`, 'utf8')).auths).toEqual({});
  });
});
