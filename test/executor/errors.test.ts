// Failing builds through the CLI: non-zero exit, file:line in the message, nothing pushed.
import { describe, expect, it } from 'vitest';
import { startFaultProxy } from '../support/fault-proxy.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { skopeoInspect } from '../support/tools.js';
import { registryTags, Workspace } from './helpers.js';

describe('builder build: failures', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;

  useFixture({}, (f) => ({ reg, ws, base } = f));

  it('a failing RUN exits with its code, names Dockerfile:line and the step, and pushes nothing', async () => {
    const ctx = await ws.context('ctx-fail', {
      Dockerfile: `FROM ${base}\nRUN echo first > /first\n\nRUN echo about-to-fail && exit 3\nRUN echo never > /never\n`,
    });
    const before = (await reg.accessLog()).length;
    const r = await ws.build(ctx, ['--destination', `${reg.host}/test/failed:v1`]);
    expect(r.code).toBe(3);
    expect(r.stdout).not.toMatch(/sha256:/);
    expect(r.stderr).toContain('Dockerfile:4');
    expect(r.stderr).toContain('exit 3');
    expect(r.stderr).toMatch(/step 2\/3/);
    expect(r.stderr).toContain('about-to-fail'); // the step's output was streamed
    expect(r.stderr).not.toContain('RUN echo never');

    // nothing reached the registry: no tag, no upload, no manifest
    expect(await registryTags(reg, 'test/failed')).toEqual([]);
    await expect(skopeoInspect(reg, 'test/failed:v1')).rejects.toThrow(/manifest unknown|not found|name unknown/i);
    // only the push permission check ran: an upload session opened and cancelled before the build
    const writes = (await reg.accessLog()).slice(before).filter((e) => e.path.startsWith('/v2/test/failed') && e.method !== 'GET' && e.method !== 'HEAD');
    expect(writes.map((e) => `${e.method} ${e.path.replace(/uploads\/.*/, 'uploads/')}`)).toEqual(['POST /v2/test/failed/blobs/uploads/', 'DELETE /v2/test/failed/blobs/uploads/']);
  });

  it('a base layer that fails to download while the push check is out is told at the FROM line, with no step started or failed', async () => {
    const proxy = await startFaultProxy(reg.url);
    try {
      // the 1st blob GET is the config (resolved first); every later one, the layer, answers 500 (no retry)
      proxy.add({ method: 'GET', path: /\/blobs\/sha256:/, fault: 'status-500', nth: 2, times: Infinity });
      const ctx = await ws.context('ctx-from-pull-fails', { Dockerfile: `FROM ${proxy.host}/library/busybox:latest\nRUN true\n` });
      const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--verbosity', 'debug', '--image-download-retry', '0', '--destination', `${reg.host}/test/from-fails:1`], { cache: ws.path('cache-from-fails') });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/Dockerfile:1: /);
      expect(r.stderr).not.toMatch(/Dockerfile:2/);
      expect(r.stderr).not.toMatch(/failed after \d/); // no step event: the step never started
      expect(await registryTags(reg, 'test/from-fails')).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it('a RUN creating a ".wh."-named file fails: in a layer it would be a whiteout deleting its sibling', async () => {
    const ctx = await ws.context('ctx-wh-name', {
      Dockerfile: `FROM ${base}\nRUN echo keep > /etc/keep\nRUN mkdir -p /data && touch /data/.wh.keep\n`,
    });
    const r = await ws.build(ctx, ['--destination', `${reg.host}/test/whname:v1`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/SNAPSHOT_WHITEOUT_NAME: \S*Dockerfile:3: the step created \/data\/\.wh\.keep;/);
    expect(await registryTags(reg, 'test/whname')).toEqual([]);
  });

  it('stages run concurrently; one failing stops the others and its own error is the one reported', async () => {
    const ctx = await ws.context('ctx-concurrent-fail', {
      Dockerfile: [
        `FROM ${base} AS slow`,
        'RUN sleep 30 && echo slept > /slept',
        `FROM ${base} AS broken`,
        'RUN echo breaking && exit 4',
        `FROM ${base}`,
        'COPY --from=slow /slept /a',
        'COPY --from=broken /etc/passwd /b',
      ].join('\n'),
    });
    const t0 = Date.now();
    const r = await ws.build(ctx, ['--destination', `${reg.host}/test/concurrent:v1`]);
    expect(r.code, r.stderr).toBe(4);
    expect(Date.now() - t0).toBeLessThan(20_000); // the 30 s sleep of the other stage was cut short
    expect(r.stderr).toContain('Dockerfile:4');
    expect(r.stderr).toContain('[broken 1/1] breaking'); // RUN output goes to stderr (stdout is the digest alone), prefixed with stage and step
    expect(r.stdout).not.toContain('breaking');
    expect(r.stderr).not.toMatch(/error RUN_ABORTED|error BUILD_ABORTED/);
    expect(await registryTags(reg, 'test/concurrent')).toEqual([]);
  });

  const cases: Array<{ name: string; dockerfile: (host: string) => string; line: number; message: RegExp }> = [
    { name: 'unknown instruction', dockerfile: () => 'FROM scratch\nCOPY a /a\nFROBNICATE /x\n', line: 3, message: /FROBNICATE/i },
    { name: 'bad flag', dockerfile: () => 'FROM scratch\n\nCOPY --bogus=1 a /a\n', line: 3, message: /bogus/ },
    { name: 'COPY of a missing file', dockerfile: () => 'FROM scratch\nCOPY a /a\nCOPY missing.txt /m\n', line: 3, message: /missing\.txt/ },
    // (a --from name that is no stage is an image reference, as in Docker: see the pull failure below)
    { name: 'COPY --from a missing stage', dockerfile: () => 'FROM scratch AS one\nCOPY a /a\nFROM scratch\nCOPY --from=3 /a /b\n', line: 4, message: /stage/ },
    { name: 'COPY --from an image that does not exist', dockerfile: (h) => `FROM scratch\nCOPY a /a\nCOPY --from=${h}/no/such:img /a /b\n`, line: 3, message: /no\/such/ },
    { name: 'FROM an image that does not exist', dockerfile: (h) => `FROM scratch AS one\nCOPY a /a\n\nFROM ${h}/no/such:img\n`, line: 4, message: /no\/such/ },
    { name: '${VAR:?message}', dockerfile: () => 'FROM scratch\nARG VAR\nENV X="${VAR:?must be set}"\n', line: 3, message: /must be set/ },
  ];
  for (const c of cases) {
    it(`fails with file:line for ${c.name}`, async () => {
      const ctx = await ws.context(`ctx-${c.name.replace(/\W+/g, '-')}`, { Dockerfile: c.dockerfile(reg.host), a: 'a\n' });
      const repo = `test/err-${c.line}-${c.name.replace(/\W+/g, '').toLowerCase()}`;
      const r = await ws.build(ctx, ['--destination', `${reg.host}/${repo}:v1`]);
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.code).not.toBeNull();
      expect(r.stderr).toContain(`Dockerfile:${c.line}`);
      expect(r.stderr).toMatch(c.message);
      expect(r.stderr).not.toMatch(/\n\s+at .*\.js:\d+/); // a reported error, not a stack trace
      expect(await registryTags(reg, repo)).toEqual([]);
    });
  }
});
