// COPY of a directory copies its contents: a destination it has to create is made 0755 (fsutil's prepareTargetDir
// MkdirAll(dest, 0755); moby/buildkit#1941), not given the source directory's own mode. Found by `npm run conformance`.
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLayoutImage } from '../../conformance/tree.js';
import { compileIfStale, Workspace } from './helpers.js';

describe('COPY <dir>: the destination directory it creates', () => {
  let ws: Workspace;
  beforeAll(async () => {
    [ws] = await Promise.all([Workspace.create('builder-copydest-'), compileIfStale()]);
  });
  afterAll(async () => {
    await ws?.remove();
  });

  it('is 0755 whatever the source directory\'s mode; entries below keep theirs', async () => {
    const ctx = await ws.context('ctx', {
      Dockerfile: 'FROM scratch\nCOPY dir /new\nCOPY dir/ /slash/\nCOPY --chmod=0711 dir /chmod\n',
      'dir/f': { content: 'f\n', mode: 0o600 },
      'dir/sub/g': { content: 'g\n', mode: 0o644 },
    });
    await chmod(path.join(ctx, 'dir/sub'), 0o750);
    await chmod(path.join(ctx, 'dir'), 0o500);
    const out = ws.path('layout');
    await mkdir(out, { recursive: true });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--no-push', '--oci-layout-path', out]);
    expect(r.code, r.stderr).toBe(0);
    const { tree } = await readLayoutImage(out);
    const mode = (p: string) => tree.get(p)?.mode;
    expect([mode('/new'), mode('/new/f'), mode('/new/sub')]).toEqual(['0755', '0600', '0750']);
    expect(mode('/slash')).toBe('0755');
    expect(mode('/chmod')).toBe('0711'); // --chmod still applies to every copied directory
  }, 120_000);
});
