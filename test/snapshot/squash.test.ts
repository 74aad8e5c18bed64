// --single-snapshot's merge of layers into one: whiteouts, re-created directories, contents from the right layer.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/digest/index.js';
import type { Layer } from '../../src/image/index.js';
import { squashLayers } from '../../src/snapshot/index.js';

type E = { name: string; type?: 'file' | 'directory' | 'symlink'; body?: string; linkname?: string };

async function tarOf(entries: E[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    const type = e.type ?? 'file';
    await new Promise<void>((resolve, reject) => pack.entry({ name: e.name, type, mode: type === 'directory' ? 0o755 : 0o644, mtime: new Date(0), ...(e.linkname ? { linkname: e.linkname } : {}) }, type === 'file' ? (e.body ?? '') : undefined, (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function layer(entries: E[]): Promise<Layer> {
  const raw = await tarOf(entries);
  const gz = gzipSync(raw);
  return { descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(gz), size: gz.length }, diffId: sha256(raw), open: async () => Readable.from([gz]) };
}

async function entriesOf(file: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const ex = tar.extract();
  const done = (async () => {
    for await (const e of ex) {
      const chunks: Buffer[] = [];
      for await (const c of e) chunks.push(c as Buffer);
      out[e.header.name] = e.header.type === 'file' ? `file ${Buffer.concat(chunks).toString()}` : e.header.type === 'symlink' ? `link ${e.header.linkname}` : e.header.type;
    }
  })();
  Readable.from([gunzipSync(await readFile(file))]).pipe(ex);
  await done;
  return out;
}

describe('squashLayers', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'builder-squash-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('a later layer wins; a file deleted later leaves only its whiteout (the base may have one to hide); a base file deleted keeps its whiteout', async () => {
    const l1 = await layer([{ name: 'a/', type: 'directory' }, { name: 'a/one', body: '1' }, { name: 'a/keep', body: 'old' }]);
    const l2 = await layer([{ name: 'a/.wh.one' }, { name: 'a/keep', body: 'new' }, { name: 'etc/.wh.base-file' }]);
    const out = path.join(dir, 'l.tar.gz');
    const r = await squashLayers([l1, l2], out);
    expect(await entriesOf(out)).toEqual({ 'a/': 'directory', 'a/.wh.one': 'file ', 'a/keep': 'file new', 'etc/.wh.base-file': 'file ' });
    expect(r.digest).toBe(sha256(await readFile(out)));
    expect(r.diffId).toBe(sha256(gunzipSync(await readFile(out))));
  });

  it('a directory deleted and created again hides the base\'s old contents with an opaque marker', async () => {
    const l1 = await layer([{ name: 'd/.wh.x' }]);
    const l2 = await layer([{ name: '.wh.d' }]);
    const l3 = await layer([{ name: 'd/', type: 'directory' }, { name: 'd/new', body: 'n' }, { name: 'l', type: 'symlink', linkname: 'd/new' }]);
    const out = path.join(dir, 'opq.tar.gz');
    await squashLayers([l1, l2, l3], out);
    expect(await entriesOf(out)).toEqual({ 'd/': 'directory', 'd/.wh..wh..opq': 'file ', 'd/new': 'file n', l: 'link d/new' });
  });

  it('is deterministic: the same layers give the same digest', async () => {
    const ls = [await layer([{ name: 'x', body: 'x' }]), await layer([{ name: 'y', body: 'y' }])];
    const a = await squashLayers(ls, path.join(dir, 'a.tar.gz'), { mtime: new Date(0) });
    const b = await squashLayers(ls, path.join(dir, 'b.tar.gz'), { mtime: new Date(0) });
    expect(a.digest).toBe(b.digest);
  });
});
