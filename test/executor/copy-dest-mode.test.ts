// COPY of a directory copies its contents: a destination it has to create is made 0755 (fsutil's prepareTargetDir
// MkdirAll(dest, 0755); moby/buildkit#1941), not given the source directory's own mode. Found by `npm run conformance`.
// With an octal --chmod, every directory COPY creates on the way gets that mode's permission bits (BuildKit v0.21).
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

  it('parents it creates get the --chmod mode\'s permission bits (BuildKit v0.21), 0755 without --chmod; existing ones are left alone', async () => {
    const ctx = await ws.context('ctx-parents', {
      Dockerfile: [
        'FROM scratch',
        'COPY f /plain/a/f',
        'COPY --chmod=0640 f /c640/a/b/f',
        'COPY --chmod=4751 f /suid/a/',
        'COPY --chmod=0700 dir /cdir/x/',
        'COPY --chmod=0600 <<EOF /heredoc/a/h',
        'h',
        'EOF',
        'COPY --chmod=0700 f /plain/a/g',
      ].join('\n'),
      f: 'f\n',
      'dir/d': 'd\n',
    });
    const out = ws.path('layout-parents');
    await mkdir(out, { recursive: true });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--no-push', '--oci-layout-path', out]);
    expect(r.code, r.stderr).toBe(0);
    const { tree } = await readLayoutImage(out);
    const mode = (p: string) => tree.get(p)?.mode;
    expect([mode('/plain'), mode('/plain/a'), mode('/plain/a/f'), mode('/plain/a/g')]).toEqual(['0755', '0755', '0644', '0700']);
    expect([mode('/c640'), mode('/c640/a'), mode('/c640/a/b'), mode('/c640/a/b/f')]).toEqual(['0640', '0640', '0640', '0640']);
    // a destination ending in / is made by the same MkdirAll; the raw setuid bit is not a Go FileMode bit there
    expect([mode('/suid'), mode('/suid/a'), mode('/suid/a/f')]).toEqual(['0751', '0751', '4751']);
    expect([mode('/cdir'), mode('/cdir/x'), mode('/cdir/x/d')]).toEqual(['0700', '0700', '0700']);
    expect([mode('/heredoc'), mode('/heredoc/a'), mode('/heredoc/a/h')]).toEqual(['0600', '0600', '0600']);
  }, 120_000);
});
