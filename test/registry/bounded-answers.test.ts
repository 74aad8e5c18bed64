// Answers retrying cannot fix and answers without end: a token server's huge answer, a redirect loop, a deterministic 4xx, a fault.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseReference } from '../../src/reference/index.js';
import { RegistryClient } from '../../src/registry/index.js';
import { QUICK_RETRY_MS } from '../../src/registry/retry.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { pushBusybox } from '../support/images.js';
import { startRegistry } from '../support/registry.js';
import { caught, clientFor, logTo } from './helpers.js';
import { compileIfStale, Workspace } from '../executor/helpers.js';
import { freePort } from '../support/registry.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});
/** A hostile HTTP server on 127.0.0.1; returns its host:port and a count of the requests it got per path. */
async function hostile(handler: (req: http.IncomingMessage, res: http.ServerResponse, host: string) => void): Promise<{ host: string; hits: Map<string, number> }> {
  const hits = new Map<string, number>();
  let host = '';
  const server = http.createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    hits.set(p, (hits.get(p) ?? 0) + 1);
    handler(req, res, host);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  cleanups.push(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return { host, hits };
}
function client(logs: string[]): RegistryClient {
  const c = new RegistryClient({ retries: 3, retryBaseMs: 20, emit: logTo(logs) });
  cleanups.push(() => c.close());
  return c;
}

describe('bounded answers', () => {
  it('a token server answering 64 MiB is cut off at 8 MiB with REGISTRY_RESPONSE_TOO_LARGE, memory bounded', async () => {
    let sent = 0;
    const srv = await hostile((req, res, host) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(1024 * 1024, 'a');
        let n = 0;
        const more = (): void => {
          while (n < 64) {
            n++;
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', more);
          }
          res.end();
        };
        res.write('{"token":"');
        res.on('error', () => undefined);
        more();
        return;
      }
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${host}/token",service="x"` }).end();
    });
    const logs: string[] = [];
    const before = process.memoryUsage().rss;
    const err = await caught(client(logs).getManifest(parseReference(`${srv.host}/app:v1`)));
    expect(err.code).toBe('REGISTRY_RESPONSE_TOO_LARGE');
    expect(err.message).toContain('token response');
    expect(err.hint).toBeTruthy();
    expect(logs.filter((l) => l.startsWith('retrying'))).toHaveLength(0);
    expect(srv.hits.get('/token')).toBe(1);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
    expect(process.memoryUsage().rss - before).toBeLessThan(150 * 1024 * 1024);
  });

  it('a blob GET answering 307 to itself ends with "too many redirects", not retried', async () => {
    const srv = await hostile((req, res) => {
      if (req.url === '/v2/') return void res.writeHead(200).end('{}');
      res.writeHead(307, { location: req.url ?? '/' }).end();
    });
    const logs: string[] = [];
    const c = client(logs);
    const digest = `sha256:${'a'.repeat(64)}`;
    const err = await caught(c.readBlob(parseReference(`${srv.host}/app:v1`), { digest: digest as `sha256:${string}`, size: 10 }));
    expect(err.code).toBe('REGISTRY_TOO_MANY_REDIRECTS');
    expect(err.message).toContain('too many redirects');
    expect(err.hint).toBeTruthy();
    expect(srv.hits.get(`/v2/app/blobs/${digest}`)).toBe(6); // the request and its 5 redirects, once
    expect(logs.filter((l) => l.startsWith('retrying'))).toHaveLength(0);
  });
});

describe('what is retried against the real registry (through the fault proxy)', () => {
  it('a deterministic 400 (DELETE by tag) is sent once; a reset and a 503 are retried with the backoff', async () => {
    const reg = await startRegistry({ mode: 'plain' });
    cleanups.push(() => reg.stop());
    await pushBusybox(reg, 'policy/app', 'v1');
    const proxy = await startFaultProxy(reg.url);
    cleanups.push(() => proxy.close());
    const logs: string[] = [];
    const c = clientFor({ ...reg, host: proxy.host, url: proxy.url }, { retries: 4, retryBaseMs: 20, emit: logTo(logs) });
    cleanups.push(() => c.close());
    const ref = parseReference(`${proxy.host}/policy/app:v1`);
    const res = await c.deleteTag(ref);
    expect(res).toBe('unsupported');
    expect(proxy.log().filter((e) => e.method === 'DELETE')).toHaveLength(1);
    expect(logs.filter((l) => l.startsWith('retrying'))).toHaveLength(0);

    proxy.clear();
    proxy.add({ method: 'GET', path: /\/manifests\/v1$/, fault: 'reset-request' });
    proxy.add({ method: 'GET', path: /\/manifests\/v1$/, fault: 'status-503' }); // rules count on their own: this one sees the second request first
    await c.getManifest(ref);
    expect(proxy.log().filter((e) => e.method === 'GET' && /\/manifests\/v1$/.test(e.path))).toHaveLength(3);
    const asked = logs.filter((l) => l.startsWith('retrying')).map((l) => /after (\S+) in (\d+)ms \(retry (\d) of 4\)/.exec(l)!.slice(1));
    expect(asked.map((a) => [a[0], a[2]])).toEqual([['REGISTRY_INTERRUPTED', '1'], ['REGISTRY_SERVER_ERROR', '2']]);
    expect(Number(asked[0]![1])).toBeGreaterThanOrEqual(10);
    expect(Number(asked[0]![1])).toBeLessThanOrEqual(20);
    expect(Number(asked[1]![1])).toBeGreaterThanOrEqual(20);
    expect(Number(asked[1]![1])).toBeLessThanOrEqual(40);
  });
});

describe('a build against a registry nobody listens on', () => {
  it.each([
    ['--no-push (the base)', ['--no-push']],
    ['a destination (the push check)', ['--destination', 'DEST/app:1']],
  ])('%s: exit 1 with REGISTRY_UNREACHABLE after one quick retry per request', async (_what, extra) => {
    const [ws, port] = await Promise.all([Workspace.create('builder-unreachable-'), freePort(), compileIfStale()]);
    cleanups.push(() => ws.remove());
    const host = `127.0.0.1:${port}`;
    const ctx = await ws.context('ctx', { Dockerfile: `FROM ${host}/busybox:latest\nRUN true\n` });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', ...extra.map((a) => a.replace('DEST', host))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('REGISTRY_UNREACHABLE');
    expect(r.stderr).toContain('ECONNREFUSED');
    // the policy's promise, not the clock: at most one retry of the failing request, after at most the quick delay
    // (the push check and the base pull are two requests under way at once: each may take its one retry)
    const asked = [...r.stderr.matchAll(/retrying (.*) after REGISTRY_UNREACHABLE in (\d+)ms \(retry (\d+) of \d+\)/g)];
    expect(new Set(asked.map((a) => a[1])).size).toBe(asked.length);
    for (const a of asked) {
      expect(a[3]).toBe('1');
      expect(a[0]).toContain('(retry 1 of 1)');
      expect(Number(a[2])).toBeLessThanOrEqual(QUICK_RETRY_MS);
    }
  });
});
