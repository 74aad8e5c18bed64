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
  // short retry waits: distribution 2.8 answers a tag DELETE with 400, which the transport still retries (branch store)
  const cli = (args: string[]) => ws.cli(args, { BUILDER_RETRY_BASE_MS: '5', BUILDER_RETRY_MAX_MS: '10' });

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

  it('delete: a tag goes (with its manifest, on a registry that cannot delete a tag alone, which the output says)', async () => {
    await image('del/app', 'a', 1);
    await image('del/app', 'b', 2);
    const r = await cli(['delete', `${plain.host}/del/app:a`]);
    expect(r.code, r.stderr).toBe(0);
    // distribution 2.8 has no tag delete: the manifest goes, and the output says which tags went with it
    expect(r.stderr).toMatch(/deleted manifest .*del\/app@sha256:[0-9a-f]{64} with its tag a \(this registry cannot delete a tag alone\)/);
    expect(await registryTags(plain, 'del/app')).toEqual(['b']);
    const missing = await cli(['delete', `${plain.host}/del/app:nope`]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/MANIFEST_UNKNOWN|NOT_FOUND/);
  });

  it('delete: a tag sharing its manifest with other tags is refused, naming them, and no tag is lost; --all-tags deletes them all', async () => {
    const d = await image('shared/app', '1', 1);
    await cli(['tag', `${plain.host}/shared/app:1`, 'latest', 'stable']);
    await image('shared/app', 'other', 2);
    const r = await cli(['delete', `${plain.host}/shared/app:1`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('DELETE_SHARED_MANIFEST');
    expect(r.stderr).toMatch(/shares its manifest sha256:[0-9a-f]{64} with \S+shared\/app:latest, \S+shared\/app:stable/);
    expect(r.stderr).toContain('--all-tags');
    // no tag was lost, and nothing was attempted beyond the probe of a tag delete
    expect((await registryTags(plain, 'shared/app')).sort()).toEqual(['1', 'latest', 'other', 'stable']);
    expect((await skopeoInspect(plain, 'shared/app:latest')).Digest).toBe(d);
    const all = await cli(['delete', `${plain.host}/shared/app:1`, '--all-tags']);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stderr).toMatch(/with its tags 1, latest, stable/);
    expect(await registryTags(plain, 'shared/app')).toEqual(['other']);
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

    it('--dry-run lists exactly what the real run deletes (the registry asked what it can delete), names what it cannot, and deletes nothing', async () => {
      const r = await cli(['cleanup', `${plain.host}/${repo}`, ...policy, '--dry-run', '--json']);
      // distribution 2.8 cannot delete a tag alone: v1 shares its manifest with the kept latest, so the run would leave it
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/CLEANUP_INCOMPLETE: the cleanup would leave 1 tag the policy selects: v1/);
      const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { tag: string; fate: string; reason?: string });
      const fate = Object.fromEntries(rows.map((x) => [x.tag, x.fate]));
      expect(fate).toEqual({ v1: 'skipped', v2: 'delete', v3: 'delete', v4: 'keep', v5: 'keep', 'keep-me': 'keep', main: 'keep', xv1: 'keep', latest: 'keep' });
      const why = Object.fromEntries(rows.map((x) => [x.tag, x.reason]));
      expect(why.latest).toMatch(/never/);
      expect(why.xv1).toMatch(/does not match/); // "v.+" is anchored: xv1 is not a v-tag
      expect(why['keep-me']).toMatch(/--name-regex-keep/);
      expect(why.v5).toMatch(/--keep-n/);
      expect(why.v4).toMatch(/--older-than/);
      expect(why.v1).toMatch(/shares its manifest with the kept tag latest/);
      expect((await registryTags(plain, repo)).length).toBe(9);
      // the plain listing: the tags that would go, one a line
      const plainList = await cli(['cleanup', `${plain.host}/${repo}`, ...policy, '--dry-run']);
      expect(plainList.stdout.split('\n').filter(Boolean).sort()).toEqual(['v2', 'v3']);
    });

    it('the real run does what the dry run said: deletes exactly those tags, never a kept tag through a shared manifest, exit 1 naming v1', async () => {
      const dry = (await cli(['cleanup', `${plain.host}/${repo}`, ...policy, '--dry-run'])).stdout;
      const r = await cli(['cleanup', `${plain.host}/${repo}`, ...policy]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe(dry);
      const tags = (await registryTags(plain, repo)).sort();
      expect(tags).toEqual(['keep-me', 'latest', 'main', 'v1', 'v4', 'v5', 'xv1']);
      expect(r.stderr).toMatch(/v1 not deleted: shares its manifest with the kept tag latest/);
      expect(r.stderr).toMatch(/deleted 2, kept 6, skipped 1/);
      expect(r.stderr).toMatch(/CLEANUP_INCOMPLETE: the cleanup left 1 tag the policy selects: v1/);
      expect((await skopeoInspect(plain, `${repo}:latest`)).Digest).toBe(digests.v1);
      // nothing left to do but v1: the same answer again, and nothing deleted
      const again = await cli(['cleanup', `${plain.host}/${repo}`, ...policy]);
      expect([again.code, again.stdout]).toEqual([1, '']);
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
