// The lazy stage root: FROM fetches only manifest and config; base layers move only when a step needs the filesystem.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useFixture } from '../support/fixture.js';
import type { AccessLogEntry, TestRegistry } from '../support/registry.js';
import { Workspace } from './helpers.js';

const layerGets = (log: AccessLogEntry[], repo: string): AccessLogEntry[] =>
  log.filter((e) => e.method === 'GET' && e.path.startsWith(`/v2/${repo}/blobs/sha256:`));

describe('lazy base: layers are fetched on the first step that needs the filesystem, never before', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;

  useFixture({ repo: 'lazy/base', tag: 'v1' }, (f) => ({ reg, ws, base } = f));

  it('a metadata-only build downloads no base layer and mounts it into the destination', async () => {
    const ctx = await ws.context('meta', { Dockerfile: `FROM ${base}\nENV A=1\nLABEL x=y\nWORKDIR /\nCMD ["sh"]\n` });
    const before = (await reg.accessLog()).length;
    await ws.buildOk(ctx, ['--run-mode', 'sandbox', '--destination', `${reg.host}/lazy/meta:v1`], { cache: ws.path('cache-meta') });
    const log = (await reg.accessLog()).slice(before);
    // Only the config blob of the base is read (one GET); its layer is mounted, never downloaded or uploaded.
    expect(layerGets(log, 'lazy/base')).toHaveLength(1);
    expect(log.filter((e) => e.method === 'POST' && e.path.includes('mount=') && e.status === 201)).toHaveLength(1);
    expect(log.filter((e) => e.method === 'PATCH' || (e.method === 'PUT' && e.path.includes('/blobs/uploads/')))).toHaveLength(1); // the new config
    const root = await ws.unpack(reg, 'lazy/meta:v1', 'meta');
    expect((await readFile(path.join(root, 'bin/busybox'))).length).toBeGreaterThan(100_000);
  });

  it('a RUN step downloads and extracts the base before it runs', async () => {
    const ctx = await ws.context('run', { Dockerfile: `FROM ${base}\nENV A=1\nRUN echo "$A" > /a.txt\n` });
    const before = (await reg.accessLog()).length;
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--destination', `${reg.host}/lazy/run:v1`], { cache: ws.path('cache-run') });
    expect(r.stderr).toContain('extracting 1 layer (1 downloaded, 0 from the local store)');
    expect(layerGets((await reg.accessLog()).slice(before), 'lazy/base')).toHaveLength(2); // config + the layer
    const root = await ws.unpack(reg, 'lazy/run:v1', 'run');
    expect(await readFile(path.join(root, 'a.txt'), 'utf8')).toBe('1\n');
  });
});
