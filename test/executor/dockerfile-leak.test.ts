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
