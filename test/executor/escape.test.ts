// A hostile build through the CLI in sandbox mode: a COPYed static binary doing the chroot escape never writes to the host.
import { execFileSync } from 'node:child_process';
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxAvailable } from '../../src/run/index.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { commandLinesDuring, registryTags, ROOT, Workspace } from './helpers.js';
import { processHost } from '../../src/cli/host.js';

const probe = await sandboxAvailable(processHost().kill);
const exists = (p: string) => lstat(p).then(() => true, () => false);

describe.skipIf(!probe.ok)('builder --run-mode sandbox: a hostile RUN', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  /** Outside every build root and work dir: where an escaped step would leave its marker. */
  let hostDir: string;
  let ctx: string;

  useFixture({}, (f) => ({ reg, ws, base } = f));
  beforeAll(async () => {
    hostDir = await mkdtemp(path.join(tmpdir(), 'escape-build-host-'));
    ctx = await ws.context('ctx-escape', { placeholder: '' });
    execFileSync('gcc', ['-static', '-O2', '-o', path.join(ctx, 'hostile'), path.join(ROOT, 'test/run/fixtures/hostile.c')]);
  });
  afterAll(async () => {
    if (hostDir) await rm(hostDir, { recursive: true, force: true });
  });

  it('the chroot escape in a RUN fails the build and writes nothing on the host', async () => {
    const marker = path.join(hostDir, 'marker-fail');
    await ws.context('ctx-escape', { Dockerfile: `FROM ${base}\nCOPY hostile /hostile\nRUN /hostile escape ${marker}\n` });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--destination', `${reg.host}/test/escape:v1`]);
    expect({ code: r.code, out: r.stdout + r.stderr }).toMatchObject({ code: 3, out: expect.stringContaining('blocked:') });
    expect(await exists(marker)).toBe(false);
    expect(await registryTags(reg, 'test/escape')).toEqual([]);
  });

  it('a RUN that tolerates the failed escape builds, and still nothing reached the host', async () => {
    const marker = path.join(hostDir, 'marker-ok');
    await ws.context('ctx-escape', {
      Dockerfile: `FROM ${base}\nCOPY hostile /hostile\nRUN /hostile escape ${marker}; test $? -eq 3 && echo contained > /contained\n`,
    });
    await ws.buildOk(ctx, ['--run-mode', 'sandbox', '--destination', `${reg.host}/test/escape-ok:v1`]);
    expect(await exists(marker)).toBe(false);
    expect(await registryTags(reg, 'test/escape-ok')).toEqual(['v1']);
  });

  it('a build argument\'s value and an ENV value are on no process\'s command line while the step runs', async () => {
    const arg = `arg-value-${process.pid}-${Date.now()}`;
    const env = `env-value-${process.pid}-${Date.now()}`;
    const argCtx = await ws.context('ctx-argv', {
      Dockerfile: [`FROM ${base}`, 'ARG TOKEN', `ENV OTHER=${env}`, 'RUN test "$TOKEN" = "$(cat /proc/1/environ | tr "\\0" "\\n" | sed -n "s/^TOKEN=//p")" && echo same > /same && sleep 2'].join('\n'),
    });
    // Bare --build-arg TOKEN: the value comes from builder's environment, so not even builder's own argv holds it.
    const build = ws.buildOk(argCtx, ['--run-mode', 'sandbox', '--build-arg', 'TOKEN', '--no-push'], { env: { TOKEN: arg } });
    const lines = await commandLinesDuring([arg, env], 'builder-sandbox', build);
    expect(lines.running).toBeGreaterThan(0); // the scan saw the step's chain running
    expect(lines.seen).toEqual([]);
  });
});
