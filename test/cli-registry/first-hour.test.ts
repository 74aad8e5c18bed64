// What trips a kaniko user in the first hour, through the compiled CLI: a mistyped command, a failing RUN under
// --verbosity error, the fields of JSON error lines, retries as warnings with their attempt.
import { beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { Workspace } from '../executor/helpers.js';

const jsonLines = (stderr: string): Array<Record<string, unknown>> => stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('the first hour of a kaniko user', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  let failing: string;

  useFixture({ prefix: 'builder-first-hour-' }, (f) => ({ reg, ws, base } = f));
  beforeAll(async () => {
    failing = await ws.context('ctx-fail', {
      Dockerfile: `FROM ${base}\nRUN echo fine > /fine\nRUN echo out-of-the-failing-step; echo err-of-the-failing-step >&2; exit 3\n`,
    });
  });

  it('a mistyped command is named unknown with the nearest command; no command word is still the build', async () => {
    const lss = await ws.cli(['lss', `${reg.host}/library/busybox`]);
    expect(lss.code).toBe(2);
    expect(lss.stderr).toContain('UNKNOWN_COMMAND: unknown command "lss"');
    expect(lss.stderr).toContain('did you mean "builder ls"');
    expect(lss.stderr).not.toContain('too many arguments');
    const push = await ws.cli(['push', `${reg.host}/x:1`]);
    expect(push.code).toBe(2);
    expect(push.stderr).toContain('unknown command "push"');
    expect(push.stderr).toMatch(/commands: build, .*copy/);
    expect((await ws.cli(['clenaup', '--help'])).stderr).toContain('did you mean "builder cleanup"');
    // the default command still takes kaniko's command line, short `=` forms included
    const ctx = await ws.context('ctx-ok', { Dockerfile: `FROM ${base}\nRUN echo hi > /hi\n` });
    const ok = await ws.cli([`-c=${ctx}`, `-f=${ctx}/Dockerfile`, `-d=${reg.host}/first/ok:1`, '-v=warn', '--run-mode', 'sandbox', '--cache-dir', ws.path('cache'), '--work-dir', ws.path('work')]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    expect(ok.stderr).toBe(''); // -v=warn: no info lines, so the level was read
  });

  for (const level of ['error', 'warn', 'fatal']) {
    it(`--verbosity ${level}: the failing RUN's output is shown before the error; a passing RUN's is not`, async () => {
      const r = await ws.build(failing, ['--no-push', '--run-mode', 'sandbox', '--verbosity', level]);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain('out-of-the-failing-step');
      expect(r.stderr).toContain('err-of-the-failing-step');
      expect(r.stderr).not.toContain('fine'); // the step that passed stays quiet at this level
      expect(r.stderr.indexOf('err-of-the-failing-step')).toBeLessThan(r.stderr.indexOf('RUN_FAILED'));
    });
  }

  it('--log-format json: the error line carries code, exitCode, file and line; the failing output is JSON too', async () => {
    const r = await ws.build(failing, ['--no-push', '--run-mode', 'sandbox', '--log-format', 'json', '--verbosity', 'error']);
    expect(r.code).toBe(3);
    const lines = jsonLines(r.stderr);
    expect(lines.length, r.stderr).toBe(r.stderr.trim().split('\n').length); // every line parses
    expect(lines.filter((l) => l.source === 'run').map((l) => l.msg)).toEqual(expect.arrayContaining(['[2/2] out-of-the-failing-step', '[2/2] err-of-the-failing-step']));
    const err = lines.at(-1)!;
    expect(err).toMatchObject({ level: 'error', code: 'RUN_FAILED', exitCode: 3, line: 3 });
    expect(String(err.file)).toMatch(/ctx-fail\/Dockerfile$/);

    // a syntax error and a bad base image are located too
    const bad = await ws.context('ctx-bad', { Dockerfile: `FROM ${base}\n\nRUN --mount=type=nope true\n` });
    const e1 = jsonLines((await ws.build(bad, ['--no-push', '--run-mode', 'sandbox', '--log-format', 'json'])).stderr).at(-1)!;
    expect(e1).toMatchObject({ level: 'error', exitCode: 1, line: 3 });
    expect(String(e1.file)).toMatch(/ctx-bad\/Dockerfile$/);
    const missing = await ws.context('ctx-missing', { Dockerfile: `FROM scratch\nFROM ${reg.host}/no/such:image\nRUN true\n` });
    const e2 = jsonLines((await ws.build(missing, ['--no-push', '--run-mode', 'sandbox', '--log-format', 'json'])).stderr).at(-1)!;
    expect(e2).toMatchObject({ level: 'error', line: 2 });
    expect(e2.exitCode).toBeGreaterThan(0);
  });

  it('--log-format json: a retry is a warn line with its attempt, of how many, the error code and the wait', async () => {
    let proxy: FaultProxy | undefined;
    try {
      proxy = await startFaultProxy(reg.url);
      proxy.add({ method: 'GET', path: /\/tags\/list/, fault: 'status-503', times: 2 });
      const r = await ws.cli(['ls', `${proxy.host}/library/busybox`, '--insecure', '--log-format', 'json'], { BUILDER_RETRY_BASE_MS: '10', BUILDER_RETRY_MAX_MS: '20' });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('latest');
      const retries = jsonLines(r.stderr).filter((l) => l.event === 'retry');
      expect(retries.map((l) => [l.level, l.attempt, l.of])).toEqual([['warn', 1, 4], ['warn', 2, 4]]);
      expect(retries[0]).toMatchObject({ code: expect.stringMatching(/503|UNAVAILABLE|SERVER/i) });
      expect(typeof retries[0]!.waitMs).toBe('number');
    } finally {
      await proxy?.close();
    }
  });
});
