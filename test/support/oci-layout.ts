// Reads an image out of an OCI layout as a registry would serve it: blobs checked against their names, layers
// unpacked one by one with GNU tar (a tool we did not write) so a test sees exactly what each layer holds.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from './tools.js';

export interface Descriptor { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }

export interface LayoutImage {
  /** The index.json entry of the image. */
  descriptor: Descriptor;
  manifest: { mediaType?: string; config: Descriptor; layers: Descriptor[] };
  config: {
    architecture: string;
    os: string;
    config: { Env?: string[]; Cmd?: string[]; Entrypoint?: string[]; User?: string; WorkingDir?: string; Labels?: Record<string, string> };
    rootfs: { diff_ids: string[] };
    history?: Array<{ created_by?: string; empty_layer?: boolean }>;
  };
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A blob of the layout; throws unless its bytes hash to its name (what every reader of the layout relies on). */
export async function layoutBlob(layout: string, digest: string): Promise<Buffer> {
  const bytes = await readFile(path.join(layout, 'blobs/sha256', digest.replace(/^sha256:/, '')));
  if (sha256(bytes) !== digest) throw new Error(`blob ${digest} of ${layout} holds other bytes (${sha256(bytes)})`);
  return bytes;
}

/** The image index.json names (the only one, or the one whose ref.name is `tag`). */
export async function layoutImage(layout: string, tag?: string): Promise<LayoutImage> {
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  const found = tag === undefined ? index.manifests : index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (found.length !== 1) throw new Error(`${layout}: ${found.length} images${tag ? ` tagged ${tag}` : ''} in index.json`);
  const descriptor = found[0]!;
  const manifest = JSON.parse((await layoutBlob(layout, descriptor.digest)).toString('utf8')) as LayoutImage['manifest'];
  const config = JSON.parse((await layoutBlob(layout, manifest.config.digest)).toString('utf8')) as LayoutImage['config'];
  return { descriptor, manifest, config };
}

/** Every blob file of the layout checks out against its name; returns how many there are. */
export async function verifyLayoutBlobs(layout: string): Promise<number> {
  const names = await readdir(path.join(layout, 'blobs/sha256'));
  for (const n of names) await layoutBlob(layout, `sha256:${n}`);
  return names.length;
}

/** Unpacks each layer into `into`/0, `into`/1, ... (whiteouts stay as .wh. files; owners: see layerEntries); returns those directories. */
export async function unpackLayers(layout: string, image: LayoutImage, into: string): Promise<string[]> {
  const dirs: string[] = [];
  for (const [k, l] of image.manifest.layers.entries()) {
    const dir = path.join(into, String(k));
    await mkdir(dir, { recursive: true });
    await layoutBlob(layout, l.digest);
    await run('tar', ['-xzf', path.join(layout, 'blobs/sha256', l.digest.replace(/^sha256:/, '')), '-C', dir]);
    dirs.push(dir);
  }
  return dirs;
}

export interface TarEntry { type: string; mode: number; uid: number; gid: number }

/** Each entry of a layer as GNU tar lists it (type letter, permission bits, numeric owner): right whoever unpacks it. */
export async function layerEntries(layout: string, layer: Descriptor): Promise<Map<string, TarEntry>> {
  await layoutBlob(layout, layer.digest);
  const { stdout } = await run('tar', ['--numeric-owner', '--quoting-style=literal', '-tvzf', path.join(layout, 'blobs/sha256', layer.digest.replace(/^sha256:/, ''))]);
  const out = new Map<string, TarEntry>();
  for (const line of stdout.split('\n').filter(Boolean)) {
    // "-rw-r----- 12/34 10 2026-12-07 17:00 app/a.txt" (symlinks end in " -> target", hard links in " link to target")
    const m = /^(\S)(\S{9}) (\d+)\/(\d+) +\d+ \S+ \S+ (.*?)(?: -> .*| link to .*)?$/.exec(line);
    if (!m) throw new Error(`tar listed a line this reader does not know: ${line}`);
    out.set(m[5]!.replace(/\/$/, ''), { type: m[1]!, mode: permBits(m[2]!), uid: Number(m[3]), gid: Number(m[4]) });
  }
  return out;
}

/** "rwsr-x--T" as tar prints it -> 0o5754. */
function permBits(p: string): number {
  let mode = 0;
  for (let i = 0; i < 9; i++) if (!'-ST'.includes(p[i]!)) mode |= 1 << (8 - i);
  if ('sS'.includes(p[2]!)) mode |= 0o4000;
  if ('sS'.includes(p[5]!)) mode |= 0o2000;
  if ('tT'.includes(p[8]!)) mode |= 0o1000;
  return mode;
}

/** Paths under dir, relative, sorted (directories with a trailing slash). */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out.push(`${p}/`);
        await walk(p);
      } else out.push(p);
    }
  };
  await walk('');
  return out.sort();
}
