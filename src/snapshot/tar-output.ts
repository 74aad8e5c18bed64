// Owns a layer's output bytes: tar gathered in 1 MiB chunks -> sha256 (diffID) -> gzip or zstd -> sha256 (digest) -> file.
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Transform, Writable } from 'node:stream';
import { HashingStream, type Digest } from '../digest/index.js';
import { createLayerCompressor, type LayerCompression } from './compress.js';
import { BLOCK, encodeHeaderInto, planHeader, type TarHeader } from './tar-header.js';

// Output chunk: large enough that hashing and gzip see few, big writes.
const CHUNK = 1 << 20;

/** What writing a layer produced. */
export interface LayerResult {
  /** sha256 of the file as written (compressed when gzip). */
  digest: Digest;
  /** sha256 of the uncompressed tar. */
  diffId: Digest;
  /** Bytes in the file. */
  size: number;
  /** Bytes of the uncompressed tar. */
  uncompressedSize: number;
}

/**
 * The tar stream being written: callers reserve() room, then put bytes into the current chunk; full chunks are hashed
 * and handed to the compressor. `compress` undefined writes the tar as is (digest === diffId).
 */
export class TarOutput {
  private readonly fileHash = new HashingStream();
  private readonly gz: Transform | undefined;
  private readonly sink: Writable;
  private readonly finished: Promise<void>;
  private sinkError: unknown;
  private readonly tarHash = createHash('sha256');
  private tarBytes = 0;
  // Chunks the compressor has fully consumed come back here, so RSS stays at a handful of chunks instead of
  // waiting for GC to notice external memory. Uncompressed output is not recycled: the file stream
  // still holds the chunk after the hashing stream's write callback.
  private readonly spare: Buffer[] = [];
  private buf: Buffer;
  private pos = 0;

  constructor(
    private readonly outFile: string,
    compress: { compression: LayerCompression; level: number; zstd: string | undefined } | undefined,
    private readonly onProgress: ((bytes: number, total: number) => void) | undefined,
    private readonly expected: number,
  ) {
    const file = fs.createWriteStream(outFile, { highWaterMark: 1 << 20 });
    this.gz = compress ? createLayerCompressor(compress.compression, compress.level, compress.zstd ? { zstd: compress.zstd } : {}) : undefined;
    this.sink = this.gz ?? this.fileHash;
    this.finished = this.gz ? pipeline(this.gz, this.fileHash, file) : pipeline(this.fileHash, file);
    // Keep a rejection from going unhandled while the producer is busy; it is rethrown by flush() and end().
    this.finished.catch((e: unknown) => {
      this.sinkError = e;
    });
    this.buf = this.takeChunk();
  }

  /** Room left in the current chunk. */
  room(): number {
    return this.buf.length - this.pos;
  }

  /** Hands the current chunk to the compressor (waiting while it is busy). */
  async flush(): Promise<void> {
    if (this.pos === 0) return;
    const whole = this.buf;
    const chunk = this.buf.subarray(0, this.pos);
    this.tarHash.update(chunk);
    this.tarBytes += this.pos;
    this.onProgress?.(this.tarBytes, this.expected);
    this.buf = this.takeChunk();
    this.pos = 0;
    const recycle = this.gz !== undefined && whole.length === CHUNK;
    const ok = this.sink.write(chunk, recycle ? (err) => { if (!err) this.spare.push(whole); } : undefined);
    if (!ok) await waitDrain(this.sink);
    if (this.sinkError !== undefined) throw this.sinkError;
  }

  /** Makes room for `n` contiguous bytes in the current chunk. */
  async reserve(n: number): Promise<void> {
    if (this.pos + n <= this.buf.length) return;
    await this.flush();
    if (n > this.buf.length) this.buf = Buffer.allocUnsafeSlow(n);
  }

  async putHeader(h: TarHeader): Promise<void> {
    const plan = planHeader(h);
    await this.reserve(plan.length);
    this.pos += encodeHeaderInto(this.buf, this.pos, h, plan);
  }

  /** Copies `content` and then `pad` zero bytes (room reserved by the caller). */
  put(content: Buffer, pad: number): void {
    content.copy(this.buf, this.pos);
    this.pos += content.length;
    this.zeros(pad);
  }

  /** Writes `n` zero bytes (room reserved by the caller). */
  zeros(n: number): void {
    this.buf.fill(0, this.pos, this.pos + n);
    this.pos += n;
  }

  /** Reads up to `want` bytes of `fd` (at its position) into the current chunk. */
  async readFrom(fd: number, want: number): Promise<number> {
    const n = await new Promise<number>((resolve, reject) => fs.read(fd, this.buf, this.pos, want, null, (e, k) => (e ? reject(e) : resolve(k))));
    this.pos += n;
    return n;
  }

  /** Ends the archive (two zero blocks, no padding to a 10 KiB record, as Go and BuildKit do) and waits for the file. */
  async end(): Promise<LayerResult> {
    await this.reserve(BLOCK * 2);
    this.zeros(BLOCK * 2);
    await this.flush();
    this.sink.end();
    await this.finished;
    if (this.sinkError !== undefined) throw this.sinkError;
    const written = this.fileHash.result();
    return { digest: written.digest, diffId: `sha256:${this.tarHash.digest('hex')}`, size: written.size, uncompressedSize: this.tarBytes };
  }

  /** Stops the streams and removes the partial file. */
  async abort(): Promise<void> {
    this.sink.destroy();
    await this.finished.catch(() => undefined);
    await fs.promises.rm(this.outFile, { force: true }).catch(() => undefined);
  }

  private takeChunk(): Buffer {
    return this.spare.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
  }
}

/** Resolves on 'drain'; rejects if the stream errors or closes first (a destroyed stream never drains). */
function waitDrain(s: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed) {
      reject((s.errored as Error | null) ?? new Error('the layer output stream closed before the layer was written'));
      return;
    }
    const cleanup = (): void => {
      s.off('drain', onDrain);
      s.off('error', onError);
      s.off('close', onClose);
    };
    const onDrain = (): void => {
      cleanup();
      resolve();
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error('the layer output stream closed before the layer was written'));
    };
    s.on('drain', onDrain);
    s.on('error', onError);
    s.on('close', onClose);
  });
}
