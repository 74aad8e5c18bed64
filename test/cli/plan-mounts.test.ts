// `builder plan` reads RUN --mount as the build does: a bad mount fails plan with the build's error (issue 22).
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileIfStale, Workspace } from '../executor/helpers.js';

describe('builder plan: RUN --mount', () => {
  let ws: Workspace;
  beforeAll(async () => {
    [ws] = await Promise.all([Workspace.create('builder-plan-mounts-'), compileIfStale()]);
  });
  afterAll(async () => {
    await ws?.remove();
  });

  it('a bad --mount (its value from an ARG) fails plan with exit 1 and the error build gives, code, line and hint', async () => {
    const ctx = await ws.context('bad', { Dockerfile: 'FROM scratch\nARG S=exclusive\nRUN --mount=type=cache,target=/c,sharing=$S true\n' });
    const dockerfile = path.join(ctx, 'Dockerfile');
    const plan = await ws.cli(['plan', '--context', ctx, '--dockerfile', dockerfile]);
    const build = await ws.build(ctx, ['--dockerfile', dockerfile, '--no-push', '--run-mode', 'sandbox']);
    expect(plan.code, plan.stderr).toBe(1);
    expect(plan.stderr).toContain(`RUN_MOUNT_INVALID: ${dockerfile}:3: --mount=type=cache,target=/c,sharing=exclusive: unsupported sharing value "exclusive"`);
    expect(plan.stderr).toContain('hint: use sharing=shared, private or locked');
    expect(build.code, build.stderr).toBe(1);
    // the build names the Dockerfile relative to where it runs, plan as given: the rest is the same text
    const text = (stderr: string): string => stderr.trim().replace(/\S*Dockerfile:3:/g, 'Dockerfile:3:');
    expect(text(build.stderr)).toBe(text(plan.stderr));
  });

  it('good mounts plan: a bind from= a stage is a dependency', async () => {
    const ctx = await ws.context('good', {
      Dockerfile: 'FROM scratch AS deps\nFROM scratch\nRUN --mount=type=bind,from=deps,target=/d --mount=type=cache,target=/c,sharing=locked true\n',
    });
    const plan = await ws.cli(['plan', '--context', ctx, '--dockerfile', 'Dockerfile']);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/stage 1: FROM scratch \[depends on 0\]/);
  });
});
