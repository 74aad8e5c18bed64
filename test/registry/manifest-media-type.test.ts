// Issue 11 item 6: a manifest is accepted only when its Content-Type and its document say it is a manifest or index we know.
// The real registry behind a tiny 127.0.0.1 proxy that rewrites what manifest GETs answer.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType } from '../../src/image/index.js';
import { parseReference } from '../../src/reference/index.js';
import { pushBusybox, pushMultiPlatform } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { clientFor } from './helpers.js';

/** How the proxy answers manifest GETs: undefined passes the registry's answer through. */
interface Rewrite {
  /** null: drop the Content-Type header. */
  contentType?: string | null;
  body?: Buffer;
}

describe('manifest media types are checked against Content-Type and document', () => {
  let reg: TestRegistry;
  let proxy: http.Server;
  let host: string;
  let rewrite: Rewrite | undefined;

  beforeAll(async () => {
    reg = await startRegistry({ mode: 'plain' });
    await Promise.all([pushBusybox(reg, 'mt/single', 'v1', 'v2s2'), pushMultiPlatform(reg, 'mt/multi', 'v1')]);
    proxy = http.createServer((req, res) => {
      const up = http.request(`${reg.url}${req.url}`, { method: req.method, headers: { ...req.headers, host: reg.host } }, (ur) => {
        const chunks: Buffer[] = [];
        ur.on('data', (c: Buffer) => chunks.push(c));
        ur.on('end', () => {
          const headers = { ...ur.headers };
          let body: Buffer = Buffer.concat(chunks);
          const isManifest = req.method === 'GET' && /\/manifests\//.test(req.url ?? '') && ur.statusCode === 200;
          if (isManifest && rewrite) {
            if (rewrite.contentType === null) delete headers['content-type'];
            else if (rewrite.contentType !== undefined) headers['content-type'] = rewrite.contentType;
            if (rewrite.body) {
              body = rewrite.body;
              delete headers['docker-content-digest'];
            }
          }
          headers['content-length'] = String(body.length);
          res.writeHead(ur.statusCode ?? 502, headers);
          res.end(body);
        });
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
    await reg?.stop();
  });

  async function resolve(repo: string, rw: Rewrite | undefined): Promise<unknown> {
    rewrite = rw;
    const client = clientFor(reg);
    try {
      return await client.resolveImage(parseReference(`${host}/${repo}`)).catch((e: unknown) => e);
    } finally {
      await client.close();
    }
  }

  it('the registry answers as it is: a schema 2 manifest and an OCI index resolve', async () => {
    expect(await resolve('mt/single:v1', undefined)).toMatchObject({ mediaType: MediaType.DockerManifest });
    expect(await resolve('mt/multi:v1', undefined)).toMatchObject({ mediaType: MediaType.OciManifest, index: { mediaType: MediaType.OciIndex } });
  });

  it('text/html around a real manifest body is refused with MANIFEST_MEDIA_TYPE_UNSUPPORTED', async () => {
    const err = await resolve('mt/single:v1', { contentType: 'text/html; charset=utf-8' });
    expect(err).toMatchObject({ code: 'MANIFEST_MEDIA_TYPE_UNSUPPORTED' });
    expect((err as Error).message).toContain('"text/html"');
  });

  it('a login page (text/html body) is refused and its content is not quoted', async () => {
    const page = Buffer.from('<html><body>Sign in. csrf=SECRET-TOKEN-123</body></html>');
    const err = await resolve('mt/single:v1', { contentType: 'text/html', body: page });
    expect(err).toMatchObject({ code: 'MANIFEST_MEDIA_TYPE_UNSUPPORTED' });
    expect((err as Error).message).not.toContain('SECRET-TOKEN');
    expect((err as { hint?: string }).hint).toMatch(/proxy or login page/);
  });

  it('an HTML body under application/json (a generic type) is refused as MANIFEST_INVALID, not quoted', async () => {
    const err = await resolve('mt/single:v1', { contentType: 'application/json', body: Buffer.from('SECRET-TOKEN-123 <html></html>') });
    expect(err).toMatchObject({ code: 'MANIFEST_INVALID' });
    expect((err as Error).message).not.toContain('SECRET');
  });

  it('a missing Content-Type or application/json lets the document decide (as containerd does)', async () => {
    expect(await resolve('mt/single:v1', { contentType: null })).toMatchObject({ mediaType: MediaType.DockerManifest });
    expect(await resolve('mt/multi:v1', { contentType: 'application/json' })).toMatchObject({ index: { mediaType: MediaType.OciIndex } });
  });

  it('a Content-Type that contradicts the document (manifest type on an index body) is refused', async () => {
    const err = await resolve('mt/multi:v1', { contentType: MediaType.DockerManifest });
    expect(err).toMatchObject({ code: 'MANIFEST_INVALID' });
  });

  it('a JSON body that is no manifest (wrong schemaVersion, no config/layers, artifact mediaType) is refused', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ schemaVersion: 3, config: {}, layers: [] }, 'MANIFEST_INVALID'],
      [{ schemaVersion: 2, hello: 'world' }, 'MANIFEST_INVALID'],
      [{ schemaVersion: 2, mediaType: 'application/vnd.oci.artifact.manifest.v1+json', blobs: [] }, 'MANIFEST_MEDIA_TYPE_UNSUPPORTED'],
      [{ schemaVersion: 1, fsLayers: [], name: 'x' }, 'MANIFEST_MEDIA_TYPE_UNSUPPORTED'],
    ];
    for (const [doc, code] of cases) {
      const err = await resolve('mt/single:v1', { contentType: 'application/json', body: Buffer.from(JSON.stringify(doc)) });
      expect(err, JSON.stringify(doc)).toMatchObject({ code });
    }
  });

  it('a Docker schema 1 Content-Type is refused as unsupported', async () => {
    const err = await resolve('mt/single:v1', { contentType: 'application/vnd.docker.distribution.manifest.v1+prettyjws' });
    expect(err).toMatchObject({ code: 'MANIFEST_MEDIA_TYPE_UNSUPPORTED' });
    expect((err as Error).message).toMatch(/schema 1/);
  });
});
