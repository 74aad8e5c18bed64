// BlobStore: put/has/open, verification on write and read, corrupt entries removed, concurrent puts, putFile.
import { mkdtempSync, readdirSync, rmSync, writeFileSync, lstatSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/cache/index.js';
import { sha256 } from '../../src/digest/index.js';

let dir: string;
let store: BlobStore;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'builder-blobs-'));
  store = new BlobStore(dir);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const pieces = (s: string) => Readable.from(s.match(/.{1,5}/gs) ?? []);
const blobDir = () => path.join(dir, 'blobs', 'sha256');

describe('BlobStore', () => {
  it('puts, has, opens (verified) at blobs/sha256/<hex>', async () => {
    const data = 'hello blob store';
    const d = sha256(data);
    expect(await store.has(d)).toBe(false);
    await store.put(d, pieces(data), data.length);
    expect(await store.has(d)).toBe(true);
    expect(store.path(d)).toBe(path.join(dir, 'blobs/sha256', d.slice(7)));
    expect(await text(store.open(d, data.length))).toBe(data);
    expect(readdirSync(blobDir())).toEqual([d.slice(7)]);
  });

  it('rejects a put whose bytes do not match, leaving nothing behind', async () => {
    const d = sha256('expected');
    await expect(store.put(d, pieces('something else'))).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    await expect(store.put(d, pieces('expected'), 3)).rejects.toMatchObject({ code: 'SIZE_MISMATCH' });
    expect(await store.has(d)).toBe(false);
    expect(readdirSync(blobDir())).toEqual([]);
  });

  it('detects a corrupt entry on read, removes it and raises BLOB_STORE_CORRUPT', async () => {
    const d = sha256('good content');
    await store.put(d, pieces('good content'));
    chmodSync(store.path(d), 0o644);
    writeFileSync(store.path(d), 'evil content');
    await expect(text(store.open(d))).rejects.toMatchObject({ code: 'BLOB_STORE_CORRUPT' });
    expect(await store.has(d)).toBe(false);
  });

  it('a missing blob fails the stream with BLOB_STORE_MISSING', async () => {
    await expect(text(store.open(sha256('absent')))).rejects.toMatchObject({ code: 'BLOB_STORE_MISSING' });
  });

  it('concurrent puts of the same digest are safe and leave one file, no temp files', async () => {
    const data = 'x'.repeat(3_000_000);
    const d = sha256(data);
    const chunked = () => Readable.from(data.match(/.{1,65536}/gs) ?? []);
    await Promise.all(Array.from({ length: 8 }, () => store.put(d, chunked())));
    expect(readdirSync(blobDir())).toEqual([d.slice(7)]);
    expect(await text(store.open(d))).toBe(data);
  });

  it('putFile links (same filesystem) after verifying, and refuses a wrong digest', async () => {
    const src = path.join(dir, 'layer.tar.gz');
    writeFileSync(src, 'layer bytes');
    const d = sha256('layer bytes');
    await store.putFile(d, src);
    expect(lstatSync(store.path(d)).ino).toBe(lstatSync(src).ino);
    expect(await text(store.open(d))).toBe('layer bytes');
    await expect(store.putFile(sha256('other'), src)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
  });

  it('fsync mode stores the same way', async () => {
    const synced = new BlobStore(dir, { fsync: true });
    const d = sha256('durable');
    await synced.put(d, pieces('durable'));
    expect(await text(synced.open(d))).toBe('durable');
  });

  it('rejects invalid digests', () => {
    expect(() => store.path('sha256:xyz' as never)).toThrow(expect.objectContaining({ code: 'DIGEST_INVALID' }));
  });
});
