// The conformance run reads images layer by layer in memory: whiteouts, opaque directories and hard links must come
// out as an unpacker would leave them, or every comparison it makes is wrong.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { readLayoutImage } from '../../conformance/tree.js';

type E = { name: string; type?: 'file' | 'directory' | 'symlink' | 'link'; content?: string; mode?: number; uid?: number; linkname?: string; pax?: Record<string, string> };

async function tarOf(entries: E[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise((r) => pack.on('end', r));
  for (const e of entries) {
    const { content, ...h } = e;
    await new Promise<void>((r, j) => pack.entry({ mode: 0o644, uid: 0, gid: 0, ...h }, content ?? '', (err) => (err ? j(err) : r())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

async function layout(layers: Buffer[]): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'builder-conftree-'));
  dirs.push(dir);
  await mkdir(path.join(dir, 'blobs/sha256'), { recursive: true });
  const put = async (b: Buffer) => { await writeFile(path.join(dir, 'blobs/sha256', sha(b)), b); return { digest: `sha256:${sha(b)}`, size: b.length }; };
  const ls = [];
  for (const [i, l] of layers.entries()) ls.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...(await put(i % 2 ? l : gzipSync(l))) });
  const config = await put(Buffer.from(JSON.stringify({ config: { Env: ['A=1'] } })));
  const manifest = await put(Buffer.from(JSON.stringify({ schemaVersion: 2, config, layers: ls })));
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({ manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest }] }));
  return dir;
}

describe('conformance tree reader', () => {
  it('applies whiteouts, opaque directories and replacements, and groups hard links', async () => {
    const l1 = await tarOf([
      { name: 'a/', type: 'directory', mode: 0o755 }, { name: 'a/x', content: 'x' }, { name: 'a/y', content: 'y' },
      { name: 'o/', type: 'directory' }, { name: 'o/old', content: 'old' }, { name: 'gone', content: 'g' },
      { name: 'h1', content: 'same', uid: 7 }, { name: 'h2', type: 'link', linkname: 'h1' },
      { name: 'd/', type: 'directory' }, { name: 'd/in', content: 'i' },
    ]);
    const l2 = await tarOf([
      { name: 'a/.wh.x' }, { name: '.wh.gone' }, { name: 'o/', type: 'directory' }, { name: 'o/.wh..wh..opq' },
      { name: 'o/new', content: 'new' }, { name: 'd', type: 'symlink', linkname: 'a' },
      { name: 'attr', content: 'z', pax: { 'SCHILY.xattr.user.k': 'v' } },
    ]);
    const { tree, config, layers } = await readLayoutImage(await layout([l1, l2]));
    expect(layers).toBe(2);
    expect(config.config.Env).toEqual(['A=1']);
    expect([...tree.keys()].sort()).toEqual(['/a', '/a/y', '/attr', '/d', '/h1', '/h2', '/o', '/o/new']);
    expect(tree.get('/d')).toMatchObject({ type: 'symlink', link: 'a' });
    expect(tree.get('/h2')).toMatchObject({ hardlinkOf: '/h1', sha256: sha('same').slice(0, 16), size: 4 });
    expect(tree.get('/h1')).toMatchObject({ hardlinkOf: '/h1', uid: 7 });
    expect(tree.get('/attr')?.xattrs).toBe(`user.k=${Buffer.from('v').toString('hex')}`);
  });
});
