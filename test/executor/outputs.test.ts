// Build outputs end to end: tarball, OCI layout, digest files, several destinations, --reproducible, the base-layer cache.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { run, skopeoInspect, umociUnpack } from '../support/tools.js';
import { registryTags, Workspace } from './helpers.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';

describe('builder build: outputs, reproducibility, base-layer cache', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  let ctx: string;

  useFixture({}, (f) => ({ reg, ws, base } = f));
  beforeAll(async () => {
    ctx = await ws.context('ctx', {
      Dockerfile: `FROM ${base}\nCOPY hello.txt /hello.txt\nRUN echo ran > /ran.txt && chmod 600 /ran.txt\nENV OUT=1\nCMD ["cat", "/hello.txt"]\n`,
      'hello.txt': 'hello\n',
    });
  });

  it('writes a docker-archive, an OCI layout, digest files, and pushes every destination', async () => {
    const dests = [`${reg.host}/test/out:a`, `${reg.host}/test/out:b`, `${reg.host}/test/other:c`];
    const printed = await ws.buildOk(ctx, [
      ...dests.flatMap((d) => ['--destination', d]),
      '--image-format', 'oci',
      '--tar-path', ws.path('image.tar'),
      '--oci-layout-path', ws.path('layout'),
      '--digest-file', ws.path('digest'),
      '--image-name-with-digest-file', ws.path('name-digest'),
      '--image-name-tag-with-digest-file', ws.path('name-tag-digest'),
    ]);

    // every destination resolves to the digest the build printed and wrote
    const digests = await Promise.all(['test/out:a', 'test/out:b', 'test/other:c'].map(async (r) => (await skopeoInspect(reg, r)).Digest as string));
    expect(new Set(digests)).toEqual(new Set([printed]));
    expect((await readFile(ws.path('digest'), 'utf8')).trim()).toBe(printed);
    const lines = (f: string): Promise<string[]> => readFile(ws.path(f), 'utf8').then((t) => t.split('\n').filter(Boolean));
    // as kaniko v1.24.0 (push.go): with --image-name-tag-with-digest-file given, both files hold REPO:TAG@DIGEST
    expect(await lines('name-digest')).toEqual(dests.map((d) => `${d}@${printed}`));
    expect(await lines('name-tag-digest')).toEqual(dests.map((d) => `${d}@${printed}`));

    // --image-format oci on a Docker v2s2 base: manifest and every layer (base ones too) in OCI media types
    const raw = await skopeoInspect(reg, 'test/out:a', { raw: true });
    expect(raw.mediaType).toBe(OCI_MANIFEST);
    expect(raw.config.mediaType).toBe('application/vnd.oci.image.config.v1+json');
    expect(raw.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual([OCI_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER_GZIP]);

    // docker-archive: skopeo reads it, same config
    const tar = JSON.parse((await run('skopeo', ['inspect', `docker-archive:${ws.path('image.tar')}`])).stdout);
    expect(tar.Layers).toHaveLength(3);
    expect(tar.Env).toContain('OUT=1');
    const tarCfg = JSON.parse((await run('skopeo', ['inspect', '--config', `docker-archive:${ws.path('image.tar')}`])).stdout);
    const regCfg = await skopeoInspect(reg, 'test/out:a', { config: true });
    expect(tarCfg.rootfs.diff_ids).toEqual(regCfg.rootfs.diff_ids);
    expect(tarCfg.config.Cmd).toEqual(['cat', '/hello.txt']);

    // OCI layout: the same manifest, unpacked by umoci
    const index = JSON.parse(await readFile(ws.path('layout', 'index.json'), 'utf8'));
    expect(index.manifests.map((m: { digest: string }) => m.digest)).toContain(printed);
    const rootfs = await umociUnpack(ws.path('layout'), 'a', ws.path('layout-bundle'));
    expect(await readFile(path.join(rootfs, 'hello.txt'), 'utf8')).toBe('hello\n');
    expect(await readFile(path.join(rootfs, 'ran.txt'), 'utf8')).toBe('ran\n');
  });

  it('--image-name-with-digest-file alone: REPO@DIGEST per destination, as kaniko v1.24.0, into a directory it creates', async () => {
    const dests = [`${reg.host}/test/alone`, `${reg.host}/test/alone:v2`];
    const file = ws.path('deep/er/name-digest');
    const printed = await ws.buildOk(ctx, [...dests.flatMap((d) => ['-d', d]), '--image-name-with-digest-file', file]);
    expect(await readFile(file, 'utf8')).toBe(`${reg.host}/test/alone@${printed}\n${reg.host}/test/alone@${printed}\n`);
    expect((await skopeoInspect(reg, 'test/alone:latest')).Digest).toBe(printed);
  });

  it('--reproducible: the same digest twice (fresh work and cache dirs), different digests without it', async () => {
    const once = async (n: number, extra: string[]): Promise<string> => {
      const d = await ws.buildOk(ctx, ['--destination', `${reg.host}/test/repro:${n}`, ...extra], {
        cache: ws.path(`repro-cache-${n}`), work: ws.path(`repro-work-${n}`),
      });
      await sleep(1100); // a second apart: a build-time timestamp anywhere would show
      return d;
    };
    const r1 = await once(1, ['--reproducible']);
    const r2 = await once(2, ['--reproducible']);
    expect(r2).toBe(r1);
    const cfg = await skopeoInspect(reg, 'test/repro:1', { config: true });
    expect(cfg.created).toBe('1970-01-01T00:00:00Z');
    for (const h of cfg.history.slice(-4)) expect(h.created).toBe('1970-01-01T00:00:00Z');

    const n1 = await once(3, []);
    const n2 = await once(4, []);
    expect(n1).not.toBe(n2);
    const [c3, c4] = await Promise.all([3, 4].map(async (n) => (await skopeoInspect(reg, `test/repro:${n}`, { config: true })).created as string));
    expect(c3).not.toBe(c4);
    expect(Date.parse(c3!)).toBeGreaterThan(Date.now() - 600_000);
  });

  it('--no-push with --tar-path, --build-arg, --label and SOURCE_DATE_EPOCH', async () => {
    const argCtx = await ws.context('ctx-args', {
      Dockerfile: `ARG BASE=nothing\nFROM \${BASE}\nARG GREETING=default\nLABEL from-file=yes\nRUN echo "$GREETING" > /greeting\n`,
    });
    const tarPath = ws.path('nopush.tar');
    await ws.buildOk(argCtx, [
      '--destination', `${reg.host}/test/nopush:v1`, '--no-push', '--tar-path', tarPath, '--reproducible',
      '--build-arg', `BASE=${base}`, '--build-arg', 'GREETING=hi there', '--label', 'extra=1', '--label', 'from-file=overridden',
    ], { env: { SOURCE_DATE_EPOCH: '1700000000' } });
    expect(await registryTags(reg, 'test/nopush')).toEqual([]);
    const cfg = JSON.parse((await run('skopeo', ['inspect', '--config', `docker-archive:${tarPath}`])).stdout);
    expect(cfg.config.Labels).toEqual({ 'from-file': 'overridden', extra: '1' });
    expect(cfg.created).toBe('2023-11-14T22:13:20Z');
    await run('skopeo', ['copy', '--quiet', `docker-archive:${tarPath}`, `oci:${ws.path('nopush-layout')}:img`]);
    const rootfs = await umociUnpack(ws.path('nopush-layout'), 'img', ws.path('nopush-bundle'));
    expect(await readFile(path.join(rootfs, 'greeting'), 'utf8')).toBe('hi there\n');
    const st = await stat(path.join(rootfs, 'greeting'));
    expect(st.mtimeMs).toBe(1_700_000_000_000); // layer timestamps clamped too
  });

  it('does not download base layers again when they are in --cache-dir', async () => {
    const baseLayers = ((await skopeoInspect(reg, 'library/busybox:latest', { raw: true })).layers as Array<{ digest: string }>).map((l) => l.digest);
    const gets = async (): Promise<number> => (await reg.accessLog()).filter((e) =>
      e.method === 'GET' && baseLayers.some((d) => e.path === `/v2/library/busybox/blobs/${d}`)).length;
    const opts = { cache: ws.path('shared-cache') };
    const before = await gets();
    await ws.buildOk(ctx, ['--destination', `${reg.host}/test/cached:1`], { ...opts, work: ws.path('cw1') });
    const afterFirst = await gets();
    expect(afterFirst - before).toBe(baseLayers.length); // the first build fetched each base layer once
    await ws.buildOk(ctx, ['--destination', `${reg.host}/test/cached:2`], { ...opts, work: ws.path('cw2') });
    expect(await gets()).toBe(afterFirst);
    // the base layers from the store are the same layers
    const [l1, l2] = await Promise.all(['test/cached:1', 'test/cached:2'].map(async (r) => (await skopeoInspect(reg, r)).Layers as string[]));
    expect(l1!.slice(0, baseLayers.length)).toEqual(baseLayers);
    expect(l2!.slice(0, baseLayers.length)).toEqual(baseLayers);
  });
});
