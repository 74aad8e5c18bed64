// --single-snapshot: several layers on top of a base merged into one, as if one snapshot were taken after the last step.
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { HashingStream } from '../digest/index.js';
import { BuilderError } from '../errors.js';
import { layerCompression, type Layer } from '../image/index.js';
import { requireZstd, ZstdStream } from '../util/zstd.js';
import { createLayerCompressor, type LayerCompression } from './compress.js';
import type { LayerResult } from './tar-output.js';

const WH = '.wh.';
const OPAQUE = '.wh..wh..opq';

const clean = (name: string): string => path.posix.normalize(name.replace(/^\.?\/+/, '')).replace(/\/+$/, '');
const under = (p: string, dir: string): boolean => p.startsWith(`${dir}/`);

/** The entries of one layer, in order, with a callback per header (stream drained unless consumed). */
async function eachEntry(layer: Layer, fn: (h: tar.Header, body: Readable) => Promise<void>, zstdBin?: string): Promise<void> {
  const extract = tar.extract();
  const done = (async () => {
    for await (const entry of extract) {
      await fn(entry.header, entry as unknown as Readable);
      entry.resume();
    }
  })();
  const src = await layer.open();
  const zstd = layerCompression(layer.descriptor.mediaType) === 'zstd';
  const inflate = zstd ? new ZstdStream(requireZstd('reading a zstd layer', zstdBin), ['-d'], `layer ${layer.descriptor.digest}`) : createGunzip();
  await Promise.all([pipeline(src, inflate, extract), done]);
}

/**
 * Merges `layers` (applied in order over some base) into one compressed layer at outFile. Pass one decides, per path,
 * which layer's entry survives (a later entry or whiteout wins; a whiteout drops what earlier merged layers had below
 * it and stays only to hide the base's files). Pass two copies the surviving entries, streaming. A directory that was
 * whited out and then created again gets an opaque marker so the base's old contents stay hidden.
 */
export async function squashLayers(layers: readonly Layer[], outFile: string, opts: { compressionLevel?: number; compression?: LayerCompression; mtime?: Date; zstd?: string } = {}): Promise<LayerResult> {
  const { winner, whiteout, opaque } = await planSquash(layers, opts.zstd);
  const pack = tar.pack();
  const diff = new HashingStream();
  const digest = new HashingStream();
  const written = pipeline(pack, diff, createLayerCompressor(opts.compression ?? 'gzip', opts.compressionLevel, opts.zstd ? { zstd: opts.zstd } : {}), digest, createWriteStream(outFile));
  const mtime = opts.mtime;
  const put = (h: Partial<tar.Header> & { name: string }, body?: Readable): Promise<void> => new Promise((resolve, reject) => {
    const header = { ...h, ...(mtime ? { mtime } : {}) } as tar.Header;
    if (!body || h.type !== 'file') {
      // an empty buffer: without one tar-stream waits for the entry's body to be written
      pack.entry({ ...header, size: 0 }, Buffer.alloc(0), (e) => (e ? reject(e) : resolve()));
      return;
    }
    const sink = pack.entry(header, (e) => (e ? reject(e) : resolve()));
    pipeline(body, sink).catch(reject);
  });
  try {
    const opaqueWritten = new Set<string>();
    for (const [k, layer] of layers.entries()) {
      await eachEntry(layer, async (h, body) => {
        const name = clean(h.name);
        const base = path.posix.basename(name);
        const dir = path.posix.dirname(name) === '.' ? '' : path.posix.dirname(name);
        if (base === OPAQUE) return; // written with its directory, below
        if (base.startsWith(WH)) {
          if (whiteout.get(path.posix.join(dir, base.slice(WH.length))) === k) await put({ ...h, name, size: 0 });
          return;
        }
        if (winner.get(name) !== k) return;
        await put({ ...h, name: h.type === 'directory' ? `${name}/` : name }, body);
        if (h.type === 'directory' && opaque.has(name) && !opaqueWritten.has(name)) {
          opaqueWritten.add(name);
          await put({ name: `${name}/${OPAQUE}`, type: 'file', size: 0, mode: 0, uid: 0, gid: 0, mtime: mtime ?? new Date(0) });
        }
      }, opts.zstd);
    }
    // an opaque directory that no merged layer re-created (only its marker): keep the marker
    for (const d of opaque) {
      if (!opaqueWritten.has(d) && !winner.has(d) && d !== '') await put({ name: `${d}/${OPAQUE}`, type: 'file', size: 0, mode: 0, uid: 0, gid: 0, mtime: mtime ?? new Date(0) });
    }
    pack.finalize();
    await written;
  } catch (err) {
    pack.destroy();
    await written.catch(() => undefined);
    throw err instanceof BuilderError ? err : new BuilderError('SNAPSHOT_SQUASH_FAILED', `merging ${layers.length} layers into one failed: ${(err as Error).message}`, { hint: 'build without --single-snapshot and report this', cause: err });
  }
  const d = digest.result();
  const u = diff.result();
  return { digest: d.digest, size: d.size, diffId: u.digest, uncompressedSize: u.size };
}

/** Which layer's entry survives per path (pass one of squashLayers), the whiteouts kept, and the opaque directories. */
interface SquashPlan {
  winner: Map<string, number>;
  whiteout: Map<string, number>;
  opaque: Set<string>;
}

async function planSquash(layers: readonly Layer[], zstdBin: string | undefined): Promise<SquashPlan> {
  const winner = new Map<string, number>();
  const whiteout = new Map<string, number>();
  const opaque = new Set<string>();
  for (const [k, layer] of layers.entries()) {
    await eachEntry(layer, async (h) => {
      const name = clean(h.name);
      const base = path.posix.basename(name);
      const dir = path.posix.dirname(name) === '.' ? '' : path.posix.dirname(name);
      if (base === OPAQUE) {
        for (const p of [...winner.keys()]) if (under(p, dir)) winner.delete(p);
        for (const p of [...whiteout.keys()]) if (under(p, dir)) whiteout.delete(p);
        opaque.add(dir);
        return;
      }
      if (base.startsWith(WH)) {
        const target = path.posix.join(dir, base.slice(WH.length));
        for (const p of [...winner.keys()]) if (p === target || under(p, target)) winner.delete(p);
        // whiteouts and opaque markers below it are covered by this one
        for (const p of [...whiteout.keys()]) if (under(p, target)) whiteout.delete(p);
        for (const p of [...opaque]) if (p === target || under(p, target)) opaque.delete(p);
        whiteout.set(target, k);
        return;
      }
      if (whiteout.has(name)) {
        // created again after a whiteout: a directory must still hide what the base had in it
        if (h.type === 'directory') opaque.add(name);
        whiteout.delete(name);
      }
      winner.set(name, k);
    }, zstdBin);
  }
  return { winner, whiteout, opaque };
}
