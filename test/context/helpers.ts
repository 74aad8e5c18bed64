// Test helpers for src/context: temp trees from a spec, tar archives built entry by entry.
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import * as tarStream from 'tar-stream';
import { isBuilderError } from '../../src/errors.js';

/** A file tree: string = file content, null = directory, { link } = symlink, { content, mode } = file with mode. */
export type TreeSpec = Record<string, string | null | { link: string } | { content: string; mode: number }>;

export async function tempDir(prefix = 'ctx-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function writeTree(root: string, spec: TreeSpec): Promise<void> {
  for (const [rel, v] of Object.entries(spec)) {
    const abs = path.join(root, rel);
    await mkdir(path.dirname(abs), { recursive: true });
    if (v === null) await mkdir(abs, { recursive: true });
    else if (typeof v === 'string') await writeFile(abs, v);
    else if ('link' in v) await symlink(v.link, abs);
    else {
      await writeFile(abs, v.content);
      await chmod(abs, v.mode);
    }
  }
}

export interface TarEntrySpec {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  content?: string;
  linkname?: string;
  mode?: number;
}

/** A tar archive (optionally gzipped) as a Buffer. */
export async function makeTar(entries: TarEntrySpec[], gzip = false): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = { name: e.name, type, mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644), ...(e.linkname !== undefined ? { linkname: e.linkname } : {}) };
    await new Promise<void>((resolve, reject) => {
      pack.entry(header, type === 'file' ? e.content ?? '' : '', (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await collected;
  const tar = Buffer.concat(chunks);
  return gzip ? gzipSync(tar) : tar;
}

export function streamOf(buf: Buffer): Readable {
  // Small odd-sized chunks exercise the gzip sniffing and tar parsing across chunk boundaries.
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += 61) parts.push(buf.subarray(i, i + 61));
  return Readable.from(parts);
}

/** The BuilderError a promise rejects with (its code, message and hint); fails if it resolves or throws something else. */
export async function errorOf(p: Promise<unknown>): Promise<{ code: string; message: string; hint: string | undefined }> {
  try {
    await p;
  } catch (err) {
    if (isBuilderError(err)) return { code: err.code, message: err.message, hint: err.hint };
    throw err;
  }
  throw new Error('expected a BuilderError');
}
