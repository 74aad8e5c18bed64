// Issue 11 item 6: a Dockerfile symlinked to a host file must not print that file into CI logs (build and plan).
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, RunError } from '../support/tools.js';
import { compileIfStale, ROOT, Workspace } from './helpers.js';

describe('a Dockerfile symlinked out of the context', () => {
  let ws: Workspace;
  let hostDir: string;
  let ctx: string;

  beforeAll(async () => {
    [ws, hostDir] = await Promise.all([Workspace.create('builder-dfleak-'), mkdtemp(path.join(os.tmpdir(), 'builder-host-secret-')), compileIfStale()]);
    await writeFile(path.join(hostDir, 'token'), 'CI_JOB_TOKEN=glpat-SECRET-VALUE-0123\n');
    ctx = await ws.context('ctx', { 'a.txt': 'a' });
    await symlink(path.join(hostDir, 'token'), path.join(ctx, 'Dockerfile'));
  });
  afterAll(async () => {
    await ws?.remove();
    if (hostDir) await rm(hostDir, { recursive: true, force: true });
  });

  it('build: exits 1 with DOCKERFILE_OUTSIDE_CONTEXT, names the file and never prints its content', async () => {
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--no-push', '--dockerfile', 'Dockerfile']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('DOCKERFILE_OUTSIDE_CONTEXT');
    expect(r.stderr).toContain(path.join(hostDir, 'token'));
    expect(r.stdout + r.stderr).not.toContain('SECRET');
  });

  it('plan: the same refusal, nothing quoted', async () => {
    const out = await run('node', [path.join(ROOT, 'bin/builder'), 'plan', '--context', ctx, '--dockerfile', 'Dockerfile'], { cwd: ws.dir, env: ws.env, timeoutMs: 60_000 })
      .then((x) => ({ code: 0, ...x }), (e: unknown) => {
        if (e instanceof RunError) return { code: e.exitCode, stdout: e.stdout, stderr: e.stderr };
        throw e;
      });
    expect(out.code).toBe(1);
    expect(out.stderr).toContain('DOCKERFILE_OUTSIDE_CONTEXT');
    expect(out.stdout + out.stderr).not.toContain('SECRET');
  });
});

// Issue 18 item 6: the check accepted any target under the working directory, so from / or $HOME a context's
// Dockerfile linked to ~/.docker/config.json was read and its auth string quoted in DOCKERFILE_UNKNOWN_INSTRUCTION.
describe('a Dockerfile symlinked to a file in $HOME, built from / and from $HOME', () => {
  const AUTH = Buffer.from('ci-user:glpat-HOME-SECRET-42').toString('base64');
  let ws: Workspace;
  let ctx: string;

  beforeAll(async () => {
    [ws] = await Promise.all([Workspace.create('builder-dfhome-'), compileIfStale()]);
    // the workspace is HOME for the CLI: its docker config is the secret
    await ws.context('.docker', { 'config.json': `{"auths":{"registry.example":{"auth":"${AUTH}"}}}\n` });
    ctx = await ws.context('proj', { 'a.txt': 'a' });
    await symlink(path.join(ws.dir, '.docker/config.json'), path.join(ctx, 'Dockerfile'));
  });
  afterAll(async () => {
    await ws?.remove();
  });

  async function buildFrom(cwd: string, dockerfile: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const args = [path.join(ROOT, 'bin/builder'), '--context', ctx, '--dockerfile', dockerfile, '--run-mode', 'sandbox', '--no-push',
      '--cache-dir', ws.path('cache'), '--work-dir', ws.path('work')];
    return run('node', args, { cwd, env: ws.env, timeoutMs: 60_000 }).then((x) => ({ code: 0, ...x }), (e: unknown) => {
      if (e instanceof RunError) return { code: e.exitCode, stdout: e.stdout, stderr: e.stderr };
      throw e;
    });
  }

  it.each([
    ['/', 'Dockerfile'],
    ['/', path.join('proj', 'Dockerfile')],
    ['$HOME', 'Dockerfile'],
    ['$HOME', 'proj/Dockerfile'],
  ])('cwd %s, --dockerfile %s: DOCKERFILE_OUTSIDE_CONTEXT, the file named, never read or quoted', async (where, dockerfile) => {
    const cwd = where === '/' ? '/' : ws.dir;
    const df = where === '/' && dockerfile !== 'Dockerfile' ? path.relative('/', path.join(ctx, 'Dockerfile')) : dockerfile;
    const r = await buildFrom(cwd, df);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('DOCKERFILE_OUTSIDE_CONTEXT');
    expect(r.stderr).toContain(path.join(ws.dir, '.docker/config.json'));
    const out = r.stdout + r.stderr;
    for (const s of [AUTH, AUTH.toUpperCase(), 'glpat-HOME-SECRET', 'auths']) expect(out).not.toContain(s);
  });
});
