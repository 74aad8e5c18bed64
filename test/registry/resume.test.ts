// Chunked upload resume: the registry already holds part of the upload (a lost PATCH response) -> resume at its Range.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sha256 } from '../../src/digest/index.js';
import { parseReference } from '../../src/reference/index.js';
import type { RegistryClient } from '../../src/registry/index.js';
import { busyboxLayout } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { clientFor, drain } from './helpers.js';

let reg: TestRegistry;
let client: RegistryClient;
beforeAll(async () => {
  reg = await startRegistry({ mode: 'plain' });
  client = clientFor(reg, { chunkedThreshold: 1000, chunkSize: 200_000 });
});
afterAll(async () => {
  await client?.close();
  await reg?.stop();
});

it('resumes a chunked upload from the offset the registry reports', async () => {
  const { layout } = await busyboxLayout();
  const idx = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
  const manifest = JSON.parse(await readFile(path.join(layout, 'blobs/sha256', idx.manifests[0].digest.slice(7)), 'utf8'));
  const desc = manifest.layers[0];
  const bytes = await readFile(path.join(layout, 'blobs/sha256', desc.digest.slice(7)));
  expect(sha256(bytes)).toBe(desc.digest);
  const ref = parseReference(`${reg.host}/resume/app:v1`);

  // someone (a previous attempt whose response was lost) already sent the first 300000 bytes
  const start = await request(`${reg.url}/v2/resume/app/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
  await start.body.dump();
  const loc1 = new URL(String(start.headers.location), reg.url).toString();
  const part = await request(loc1, {
    method: 'PATCH', body: bytes.subarray(0, 300_000),
    headers: { 'content-type': 'application/octet-stream', 'content-length': '300000', 'content-range': '0-299999' },
  });
  await part.body.dump();
  expect(part.statusCode).toBe(202);
  const loc2 = new URL(String(part.headers.location), reg.url).toString();

  const before = (await reg.accessLog()).length;
  // reach the private chunk uploader directly: the public pushBlob always starts a fresh session
  const c = client as unknown as {
    uploadChunks(r: unknown, d: unknown, open: () => Readable, loc: string): Promise<string>;
    finishUpload(r: unknown, d: unknown, loc: string, body: undefined): Promise<void>;
  };
  const loc = await c.uploadChunks(ref, desc, () => Readable.from([bytes]), loc2);
  await c.finishUpload(ref, desc, loc, undefined);
  const log = (await reg.accessLog()).slice(before);
  // it asked the registry where the session stands, then sent only the rest
  expect(log.some((e) => e.method === 'GET' && e.path.includes('/blobs/uploads/') && e.status === 204)).toBe(true);
  expect(log.filter((e) => e.method === 'PATCH')).toHaveLength(Math.ceil((desc.size - 300_000) / 200_000));
  expect(await client.hasBlob(ref, desc.digest)).toBe(true);
  expect(await drain(await client.openBlob(ref, desc))).toBe(desc.size);
});
