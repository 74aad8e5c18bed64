// Layer compression: gzip in 1 MiB chunks deflated in parallel on libuv's threadpool (one gzip member, pigz-style), or zstd.
import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { constants, deflateRaw } from 'node:zlib';
import { BuilderError } from '../errors.js';
import { requireZstd, ZstdStream } from '../util/zstd.js';

export type LayerCompression = 'gzip' | 'zstd';

export const DEFAULT_COMPRESSION_LEVEL = 1;
/** zstd's own default: what go-containerregistry (kaniko) writes without --compression-level. */
export const DEFAULT_ZSTD_LEVEL = 3;

/** Uncompressed bytes per independently started deflate: big enough that the lost context costs <1% of size. */
export const GZIP_CHUNK = 1 << 20;
// Room for a whole chunk's deflate output (deflateBound of 1 MiB is ~1 MiB + 400 bytes): one threadpool task per chunk,
// instead of one round trip through the main thread per 256 KiB of output.
const OUT_CHUNK = GZIP_CHUNK + (64 << 10);
// Deflate keeps a 32 KiB window: the previous chunk's tail is the next one's dictionary, as pigz does.
const WINDOW = 32 << 10;
// An empty final fixed-Huffman block: ends a deflate stream whose chunks all ended with a sync flush.
const FINAL_BLOCK = Buffer.from([0x03, 0x00]);

// zlib.crc32 exists from Node 20.15; a named import would make older 20.x fail to load the module at all.
const crc32: (data: Buffer, value: number) => number = (zlib as { crc32?: (d: Buffer, v: number) => number }).crc32 ?? crc32Js;

const CRC_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE), table-driven: the fallback for Node < 20.15. */
export function crc32Js(data: Buffer, value = 0): number {
  let c = ~value >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** Checks a level for the compression; the CLI and writeLayer share the rule. */
export function checkCompressionLevel(compression: LayerCompression, level: number): void {
  const [lo, hi] = compression === 'zstd' ? [1, 19] : [0, 9];
  if (!Number.isInteger(level) || level < lo || level > hi) {
    throw new BuilderError('SNAPSHOT_OPTION_INVALID', `${compression} compression level ${level} is not an integer from ${lo} to ${hi}`, {
      hint: compression === 'zstd' ? 'pass --compression-level between 1 (fast) and 19 (smallest); default 3' : 'pass --compression-level between 0 (store) and 9 (smallest); default 1',
    });
  }
}

/** A Transform from tar bytes to the compressed layer. */
export function createLayerCompressor(compression: LayerCompression, level?: number, opts: { parallel?: number; zstd?: string } = {}): Transform {
  if (compression === 'zstd') {
    const l = level ?? DEFAULT_ZSTD_LEVEL;
    checkCompressionLevel('zstd', l);
    // -T0: one worker per core; --no-check: no content checksum, the layer digests already cover the bytes (as Go's writers).
    return new ZstdStream(requireZstd('--compression zstd', opts.zstd), [`-${l}`, '-T0', '--no-check'], 'layer');
  }
  const l = level ?? DEFAULT_COMPRESSION_LEVEL;
  checkCompressionLevel('gzip', l);
  return new ParallelGzip(l, opts.parallel ?? defaultParallelism());
}

/**
 * Deflates in flight: one more than the cores, so a core never idles while the main thread (descheduled on a busy
 * machine) has not yet handed out the next chunk; at most 3 so one of libuv's 4 threads stays free for the file reads.
 */
function defaultParallelism(): number {
  return Math.max(1, Math.min(3, availableParallelism() + 1));
}

interface Job {
  out?: Buffer;
  done: Promise<void>;
}

/**
 * gzip in one member whose deflate stream is a run of independently compressed chunks, each ended by a sync flush (byte
 * aligned, not final) and primed with the previous chunk's last 32 KiB; an empty final block and the trailer close it.
 * Any inflater reads it as one ordinary stream (Go's compress/gzip, zlib, containerd). Output depends only on the bytes
 * and the level, never on how they were written: chunks are cut at fixed offsets.
 */
export class ParallelGzip extends Transform {
  private block: Buffer;
  private fill = 0;
  private dict: Buffer | undefined;
  private crc = 0;
  private total = 0;
  private readonly jobs: Job[] = [];
  private readonly spare: Buffer[] = [];
  private waiting: (() => void) | undefined;
  private failed: Error | undefined;

  constructor(
    private readonly level: number,
    private readonly parallel: number,
  ) {
    super({ highWaterMark: 4 << 20 });
    this.block = Buffer.allocUnsafeSlow(GZIP_CHUNK);
    // Header: deflate, no name, mtime 0; XFL says fastest/best like zlib; OS 3 (Unix) like zlib and Node.
    this.push(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, level === 1 ? 4 : level === 9 ? 2 : 0, 3]));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.crc = crc32(chunk, this.crc);
    this.total += chunk.length;
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, GZIP_CHUNK - this.fill);
      chunk.copy(this.block, this.fill, off, off + n);
      this.fill += n;
      off += n;
      if (this.fill === GZIP_CHUNK) this.dispatch();
    }
    this.whenRoom(cb);
  }

  override _flush(cb: TransformCallback): void {
    if (this.fill > 0) this.dispatch();
    void Promise.all(this.jobs.map((j) => j.done)).then(() => {
      if (this.failed) return cb(this.failed);
      this.emitDone();
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(this.crc >>> 0, 0);
      trailer.writeUInt32LE(this.total % 2 ** 32, 4);
      this.push(FINAL_BLOCK);
      cb(null, trailer);
    });
  }

  /** Starts deflating the current block on the threadpool and takes a fresh one. */
  private dispatch(): void {
    const input = this.block.subarray(0, this.fill);
    const whole = this.block;
    const opts = { level: this.level, finishFlush: constants.Z_SYNC_FLUSH, chunkSize: OUT_CHUNK, ...(this.dict ? { dictionary: this.dict } : {}) };
    // The next chunk's dictionary is a copy: this block goes back to the spares when its own deflate is done.
    this.dict = Buffer.from(input.subarray(Math.max(0, input.length - WINDOW)));
    const job: Job = { done: Promise.resolve() };
    job.done = new Promise<void>((resolve) => {
      deflateRaw(input, opts, (err, out) => {
        if (err) this.failed ??= err;
        else job.out = out;
        if (whole.length === GZIP_CHUNK) this.spare.push(whole);
        this.emitDone();
        resolve();
      });
    });
    this.jobs.push(job);
    this.block = this.spare.pop() ?? Buffer.allocUnsafeSlow(GZIP_CHUNK);
    this.fill = 0;
  }

  /** Pushes finished chunks in order, and releases a writer waiting for room. */
  private emitDone(): void {
    while (this.jobs.length > 0 && this.jobs[0]!.out !== undefined) {
      this.push(this.jobs.shift()!.out);
    }
    if (this.failed) {
      this.destroy(this.failed);
      return;
    }
    if (this.waiting && this.jobs.length < this.parallel) {
      const w = this.waiting;
      this.waiting = undefined;
      w();
    }
  }

  private whenRoom(cb: TransformCallback): void {
    if (this.failed) return cb(this.failed);
    if (this.jobs.length < this.parallel) return cb();
    this.waiting = () => cb();
  }
}
