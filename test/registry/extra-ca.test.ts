// NODE_EXTRA_CA_CERTS: bin/builder starts node without it (node would parse the file at every start) and builder
// trusts it itself: TLS registries and ADD URLs verify against it, every child sees the variable as the user set it.
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, type Workspace } from '../executor/helpers.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { run, RunError } from '../support/tools.js';

describe('NODE_EXTRA_CA_CERTS, read by builder instead of node at start', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  let server: https.Server;
  let web: string;
  let bundle: string;
  useFixture({ registry: { mode: 'htpasswd', tls: true }, prefix: 'builder-extra-ca-' }, (f) => ({ reg, ws, base } = f));

  beforeAll(async () => {
    // the ADD server's own self-signed certificate (openssl), and one bundle trusting it and the registry's
    const dir = ws.path('web-tls');
    await mkdir(dir);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=builder-extra-ca-web',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    const [key, cert] = await Promise.all([readFile(path.join(dir, 'key.pem')), readFile(path.join(dir, 'cert.pem'))]);
    bundle = ws.path('extra-ca.pem');
    await writeFile(bundle, Buffer.concat([await readFile(reg.caFile!), cert]));
    server = https.createServer({ key, cert }, (_req, res) => res.end('served over verified TLS\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    web = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // the registry's credential helper, reporting the environment builder gave it
    await mkdir(ws.path('helpers'));
    await writeFile(ws.path('helpers/docker-credential-envprobe'), [
      '#!/bin/sh',
      'env > "$PROBE_DIR/helper.env"',
      `echo '${JSON.stringify({ ServerURL: reg.host, Username: reg.username, Secret: reg.password })}'`,
      '',
    ].join('\n'));
    await chmod(ws.path('helpers/docker-credential-envprobe'), 0o755);
    await mkdir(ws.path('docker'));
    await writeFile(ws.path('docker/config.json'), JSON.stringify({ credHelpers: { [reg.host]: 'envprobe' } }));
  });
  afterAll(async () => {
    await new Promise((r) => server?.close(r));
  });

  /** bin/builder run as a program (its sh line, then node), as users run it. */
  const build = async (name: string, extraCa: string | undefined): Promise<{ code: number; stderr: string; probes: string }> => {
    const ctx = await ws.context(`ctx-${name}`, { Dockerfile: `FROM ${base}\nADD ${web}/hello.txt /hello.txt\n` });
    const probes = ws.path(`probes-${name}`);
    await mkdir(probes);
    const env: NodeJS.ProcessEnv = {
      ...process.env, DOCKER_CONFIG: ws.path('docker'), PATH: `${ws.path('helpers')}:${process.env.PATH ?? ''}`, PROBE_DIR: probes,
    };
    delete env.NODE_EXTRA_CA_CERTS;
    delete env.NODE_OPTIONS;
    if (extraCa !== undefined) env.NODE_EXTRA_CA_CERTS = extraCa;
    const args = ['--context', ctx, '--destination', `${reg.host}/extra-ca/${name}:latest`, '--run-mode', 'sandbox',
      '--cache-dir', ws.path(`cache-${name}`), '--work-dir', ws.path(`work-${name}`)];
    try {
      const r = await run(path.join(ROOT, 'bin/builder'), args, { cwd: ws.dir, env, timeoutMs: 110_000 });
      return { code: 0, stderr: r.stderr, probes };
    } catch (err) {
      if (err instanceof RunError) return { code: err.exitCode, stderr: err.stderr, probes };
      throw err;
    }
  };

  it('verifies the TLS registry and an ADD URL against the file; the credential helper sees the variable as set', async () => {
    const r = await build('trusted', bundle);
    expect(r.stderr).not.toMatch(/warning/);
    expect(r.code).toBe(0);
    const root = await ws.unpack(reg, 'extra-ca/trusted:latest', 'trusted');
    expect(await readFile(path.join(root, 'hello.txt'), 'utf8')).toBe('served over verified TLS\n');
    const lines = async (file: string): Promise<string[]> => (await readFile(path.join(r.probes, file), 'utf8')).split('\n');
    const helper = await lines('helper.env');
    expect(helper).toContain(`NODE_EXTRA_CA_CERTS=${bundle}`);
    expect(helper.filter((l) => l.startsWith('BUILDER_NODE_EXTRA_CA_CERTS='))).toEqual([]);
  });

  it('without the variable the same registry is refused: the trust came from the file', async () => {
    const r = await build('untrusted', undefined);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/certificate/i);
  });

  it('an unreadable file is ignored with builder\'s warning (node never read it at start), and the registry is refused', async () => {
    const r = await build('unreadable', ws.path('no-such-ca.pem'));
    expect(r.code).not.toBe(0);
    // node's own start-up warning would say "Warning: Ignoring extra certs from"
    expect(r.stderr).not.toContain('Ignoring extra certs');
    expect(r.stderr).toContain(`builder: warning: ignoring the extra CA certificates in ${ws.path('no-such-ca.pem')} (NODE_EXTRA_CA_CERTS): ENOENT`);
    expect(r.stderr).toMatch(/certificate/i);
  });

  it('an unreadable --registry-certificate is the build\'s error with its code and hint: no crash, nothing left in the work dir', async () => {
    const ctx = await ws.context('ctx-badcert', { Dockerfile: `FROM ${base}\nRUN true\n` });
    const work = ws.path('work-badcert');
    const r = await ws.build(ctx, ['--destination', `${reg.host}/extra-ca/badcert:latest`, '--run-mode', 'sandbox',
      '--registry-certificate', `${reg.host}=${ws.path('missing.pem')}`], { work });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^builder: error REGISTRY_CERTIFICATE_UNREADABLE: (before building: )?cannot read the CA certificate /m);
    expect(r.stderr).toContain('hint: check the path given to --registry-certificate HOST=PATH');
    expect(r.stderr).not.toMatch(/Node\.js v|UnhandledPromiseRejection|at .*\.js:\d+/);
    expect(await readdir(work).catch(() => [])).toEqual([]);
  });
});
