// Conformance: an image's final filesystem read straight from its OCI layout (layers applied in memory, whiteouts
// honoured), so owners and xattrs are exactly what the layers say, not what an unpacking tool could reproduce.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import tar from 'tar-stream';

export interface TreeEntry {
  type: 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo' | 'implied-dir';
  mode: string;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  link?: string;
  xattrs?: string;
  /** The smallest path of this file's hardlink group (set only for groups of two or more). */
  hardlinkOf?: string;
}

export interface ImageResult {
  tree: Map<string, TreeEntry>;
  config: any;
  layers: number;
}

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

async function blob(layout: string, digest: string): Promise<Buffer> {
  return readFile(path.join(layout, 'blobs', ...digest.split(':')));
}

/** The first image of the layout (descending into an index). */
export async function readLayoutImage(layout: string): Promise<ImageResult> {
  let desc = (JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: any[] }).manifests[0];
  if (!desc) throw new Error(`${layout}: empty index.json`);
  let manifest = JSON.parse((await blob(layout, desc.digest)).toString('utf8'));
  while (desc.mediaType === OCI_INDEX || desc.mediaType === DOCKER_LIST || manifest.manifests) {
    desc = manifest.manifests[0];
    manifest = JSON.parse((await blob(layout, desc.digest)).toString('utf8'));
  }
  const config = JSON.parse((await blob(layout, manifest.config.digest)).toString('utf8'));
  const tree = new Map<string, TreeEntry>();
  const links = new Map<string, string>(); // path -> path it was hard-linked to
  for (const l of manifest.layers as Array<{ digest: string }>) {
    const file = path.join(layout, 'blobs', ...l.digest.split(':'));
    const fh = await open(file, 'r');
    const magic = Buffer.alloc(4);
    const { bytesRead } = await fh.read(magic, 0, 4, 0).finally(() => fh.close());
    await applyLayer(createReadStream(file), magic.subarray(0, bytesRead), tree, links);
  }
  finishHardlinks(tree, links);
  return { tree, config, layers: manifest.layers.length };
}

function clean(name: string): string {
  const p = path.posix.normalize(`/${name}`).replace(/\/+$/, '');
  return p === '' ? '/' : p;
}

function removeUnder(tree: Map<string, TreeEntry>, links: Map<string, string>, p: string, keepSelf: boolean, except?: Set<string>): void {
  for (const k of [...tree.keys()]) {
    if ((k === p && !keepSelf) || k.startsWith(`${p}/`)) {
      if (except?.has(k)) continue;
      tree.delete(k);
      links.delete(k);
    }
  }
}

/** Sniffs gzip / zstd / plain tar and applies one layer to the tree. */
async function applyLayer(raw: Readable, magic: Buffer, tree: Map<string, TreeEntry>, links: Map<string, string>): Promise<void> {
  const extract = tar.extract();
  const added = new Set<string>();
  extract.on('entry', (h, stream, next) => {
    const name = clean(h.name);
    const base = path.posix.basename(name);
    const dir = path.posix.dirname(name);
    const done = (e?: Error) => (e ? extract.destroy(e) : next());
    if (base === '.wh..wh..opq') {
      removeUnder(tree, links, dir, true, added);
      stream.resume().on('end', () => done());
      return;
    }
    if (base.startsWith('.wh.')) {
      removeUnder(tree, links, path.posix.join(dir, base.slice(4)), false);
      stream.resume().on('end', () => done());
      return;
    }
    const pax = (h as any).pax as Record<string, string> | undefined;
    const xattrs = pax ? Object.entries(pax).filter(([k]) => k.startsWith('SCHILY.xattr.')).map(([k, v]) => `${k.slice(13)}=${Buffer.from(v, 'binary').toString('hex')}`).sort() : [];
    const e: TreeEntry = {
      type: 'file', mode: ((h.mode ?? 0) & 0o7777).toString(8).padStart(4, '0'), uid: h.uid ?? 0, gid: h.gid ?? 0,
      ...(xattrs.length ? { xattrs: xattrs.join(',') } : {}),
    };
    const prev = tree.get(name);
    if (prev && prev.type !== 'dir' && prev.type !== 'implied-dir') links.delete(name);
    switch (h.type) {
      case 'directory': e.type = 'dir'; break;
      case 'symlink': e.type = 'symlink'; e.link = h.linkname ?? ''; e.mode = '-'; break;
      case 'character-device': e.type = 'char'; e.link = `${h.devmajor}:${h.devminor}`; break;
      case 'block-device': e.type = 'block'; e.link = `${h.devmajor}:${h.devminor}`; break;
      case 'fifo': e.type = 'fifo'; break;
      case 'link': {
        const target = tree.get(clean(h.linkname ?? ''));
        if (target) Object.assign(e, { size: target.size, sha256: target.sha256 });
        else e.sha256 = `dangling-hardlink:${clean(h.linkname ?? '')}`;
        links.set(name, clean(h.linkname ?? ''));
        break;
      }
      default: break;
    }
    if (e.type !== 'dir' && prev && (prev.type === 'dir' || prev.type === 'implied-dir')) removeUnder(tree, links, name, true);
    for (let d = path.posix.dirname(name); d !== '/' && !tree.has(d); d = path.posix.dirname(d)) {
      tree.set(d, { type: 'implied-dir', mode: '?', uid: -1, gid: -1 });
    }
    tree.set(name, e);
    added.add(name);
    if (h.type === 'file' || h.type === 'contiguous-file') {
      const hash = createHash('sha256');
      let size = 0;
      stream.on('data', (c: unknown) => { hash.update(c as Buffer); size += (c as Buffer).length; });
      stream.on('end', () => { e.size = size; e.sha256 = hash.digest('hex').slice(0, 16); done(); });
      stream.on('error', done);
    } else {
      stream.resume().on('end', () => done());
    }
  });
  const decoder = magic[0] === 0x1f && magic[1] === 0x8b ? zlib.createGunzip() : undefined;
  if (magic.length >= 4 && magic.readUInt32LE(0) === 0xfd2fb528) throw new Error('zstd layers are not read by the conformance run');
  await pipeline([raw, ...(decoder ? [decoder] : []), extract] as unknown as [NodeJS.ReadableStream, NodeJS.WritableStream]);
}

function finishHardlinks(tree: Map<string, TreeEntry>, links: Map<string, string>): void {
  const root = (p: string): string => {
    const seen = new Set<string>();
    while (links.has(p) && !seen.has(p)) { seen.add(p); p = links.get(p)!; }
    return p;
  };
  const groups = new Map<string, string[]>();
  for (const p of links.keys()) {
    if (!tree.has(p)) continue;
    const r = root(p);
    const g = groups.get(r) ?? (tree.has(r) && !links.has(r) ? [r] : []);
    g.push(p);
    groups.set(r, g);
  }
  for (const members of groups.values()) {
    if (members.length < 2) continue;
    const first = [...members].sort()[0]!;
    for (const m of members) tree.get(m)!.hardlinkOf = first;
  }
}
