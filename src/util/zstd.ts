// zstd through Debian's `zstd` program as a child process: Node 20's zlib has no zstd, and the program streams and is multithreaded.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { BuilderError } from '../errors.js';

/**
 * The zstd program: the one beside node first (the executor image ships it in /builder/bin, which survives an in-place
 * build that replaces /usr), then $PATH; the CLI says where node and $PATH are (without them: the standard dirs).
 * Undefined when there is none.
 */
export function findZstd(where: { execPath?: string; path?: string | undefined } = {}): string | undefined {
  const dirs = [...(where.execPath ? [path.dirname(where.execPath)] : []), ...(where.path ?? '/usr/local/bin:/usr/bin:/bin').split(':').filter(Boolean)];
  for (const d of dirs) {
    const p = path.join(d, 'zstd');
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The zstd program (the caller's Host.zstd when it has one, else one in the standard dirs), or ZSTD_UNAVAILABLE saying what needs it. */
export function requireZstd(what: string, zstd?: string): string {
  const p = zstd ?? findZstd();
  if (p !== undefined) return p;
  throw new BuilderError('ZSTD_UNAVAILABLE', `${what} needs the zstd program, which is neither beside node nor on PATH`, {
    hint: 'install it (Debian: apt-get install zstd), or use gzip layers (--compression gzip)',
  });
}

/**
 * A Transform through `zstd` (compress or `-d`). It finishes only after the program exited 0, so a pipeline that
 * resolves has every byte; a failure is the stream's error with the program's stderr. Destroying it kills the program.
 */
export class ZstdStream extends Transform {
  private readonly child: ChildProcess;
  private stderr = '';
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; err?: Error }>;
  private outDone: Promise<void>;

  constructor(bin: string, args: readonly string[], private readonly label: string) {
    super({ highWaterMark: 1 << 20 });
    this.child = spawn(bin, ['-q', '-c', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => resolve({ code: null, signal: null, err }));
      this.child.on('close', (code, signal) => resolve({ code, signal }));
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      if (this.stderr.length < 4096) this.stderr += d.toString('utf8');
    });
    // EPIPE when the program died early: its exit status tells why.
    this.child.stdin!.on('error', () => undefined);
    const out = this.child.stdout!;
    this.outDone = new Promise((resolve) => out.on('end', resolve).on('error', () => resolve()));
    out.on('data', (b: Buffer) => {
      if (!this.push(b)) out.pause();
    });
    this.exited.then((r) => {
      if (r.err !== undefined || r.code !== 0) this.destroy(this.failure(r));
    }, () => undefined);
  }

  override _read(size: number): void {
    this.child.stdout!.resume();
    super._read(size);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.child.stdin!.write(chunk)) cb();
    else this.child.stdin!.once('drain', () => cb());
  }

  override _flush(cb: TransformCallback): void {
    this.child.stdin!.end();
    void Promise.all([this.outDone, this.exited]).then(([, r]) => cb(r.err !== undefined || r.code !== 0 ? this.failure(r) : null));
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    if (this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined) this.child.kill('SIGKILL');
    cb(err);
  }

  private failure(r: { code: number | null; signal: NodeJS.Signals | null; err?: Error }): BuilderError {
    const why = r.err?.message ?? (this.stderr.trim() || (r.signal ? `zstd killed by ${r.signal}` : `zstd exited ${r.code}`));
    return new BuilderError('ZSTD_FAILED', `${this.label}: zstd failed: ${why}`, {
      hint: 'for a layer being read the blob is corrupt (pull it again); for one being written check free space',
    });
  }
}
