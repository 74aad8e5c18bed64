// BlobStore: put/has/open/read/verify, verification on write and read, corrupt entries removed, concurrent puts, replace, putFile, stale temp files.
import { mkdtempSync, readdirSync, rmSync, writeFileSync, lstatSync, chmodSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/store/index.js';
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

  it('verify() reports ok, missing, or corrupt (and removes the corrupt entry)', async () => {
    const d = sha256('verified');
    expect(await store.verify(d)).toBe('missing');
    await store.putBytes(d, Buffer.from('verified'));
    expect(await store.verify(d, 8)).toBe('ok');
    chmodSync(store.path(d), 0o644);
    writeFileSync(store.path(d), 'tampered');
    expect(await store.verify(d)).toBe('corrupt');
    expect(await store.has(d)).toBe(false);
  });

  it('check() trusts a blob verified in its current state without reading it, and re-reads a changed one', async () => {
    class Counting extends BlobStore {
      reads = 0;
      override verify(d: Parameters<BlobStore['verify']>[0], size?: number) {
        this.reads++;
        return super.verify(d, size);
      }
    }
    const counting = new Counting(dir);
    const d = sha256('layer once verified');
    await counting.putBytes(d, Buffer.from('layer once verified'));
    expect(await counting.check(d)).toBe('ok');
    expect(counting.reads).toBe(0); // verified while written
    chmodSync(counting.path(d), 0o644);
    writeFileSync(counting.path(d), 'layer twice verified'.slice(0, 19)); // same size, other bytes
    expect(await counting.check(d)).toBe('corrupt');
    expect(counting.reads).toBe(1);
    expect(await counting.has(d)).toBe(false);
    expect(await counting.check(d)).toBe('missing');
  });

  it('read() returns small blobs whole, undefined when absent or above max', async () => {
    const d = sha256('{"a":1}');
    expect(await store.read(d, { max: 100 })).toBeUndefined();
    await store.putBytes(d, Buffer.from('{"a":1}'));
    expect((await store.read(d, { max: 100 }))?.toString()).toBe('{"a":1}');
    expect(await store.read(d, { max: 3 })).toBeUndefined();
  });

  it('put with replace rewrites a present blob by rename (a reader of the old file is unaffected)', async () => {
    const d = sha256('same bytes');
    await store.putBytes(d, Buffer.from('same bytes'));
    const before = lstatSync(store.path(d)).ino;
    await store.putBytes(d, Buffer.from('same bytes'));
    expect(lstatSync(store.path(d)).ino).toBe(before); // not rewritten without replace
    await store.putBytes(d, Buffer.from('same bytes'), { replace: true });
    expect(lstatSync(store.path(d)).ino).not.toBe(before);
    expect(readdirSync(blobDir())).toEqual([d.slice(7)]);
  });

  it('removeStaleTemp removes only temp files older than the limit (a young one may be another job\'s write in progress)', async () => {
    await store.putBytes(sha256('x'), Buffer.from('x'));
    const old = path.join(blobDir(), '.tmp-aaaaaaaaaaaa-old');
    const young = path.join(blobDir(), '.tmp-bbbbbbbbbbbb-young');
    writeFileSync(old, 'partial');
    writeFileSync(young, 'partial');
    utimesSync(old, new Date(Date.now() - 2 * 86_400_000), new Date(Date.now() - 2 * 86_400_000));
    expect(await store.removeStaleTemp(86_400_000)).toBe(1);
    expect(readdirSync(blobDir()).sort()).toEqual(['.tmp-bbbbbbbbbbbb-young', sha256('x').slice(7)].sort());
  });

  it('rejects invalid digests', () => {
    expect(() => store.path('sha256:xyz' as never)).toThrow(expect.objectContaining({ code: 'DIGEST_INVALID' }));
  });
});
