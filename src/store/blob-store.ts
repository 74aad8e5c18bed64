// BlobStore: the local content-addressed blob store (dir/blobs/sha256/<hex>) of layers, manifests and configs, verified on write and on read.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, link, lstat, mkdir, open, readdir, readFile, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BuilderError, isBuilderError, type ErrorCode } from '../errors.js';
import { digestHex, isDigest, VerifyingStream, type Digest } from '../digest/index.js';

export interface BlobStoreOptions {
  /**
   * fsync each blob before renaming it into place (default false): a blob torn by a crash is
   * caught by the digest check on read and removed, so durability only saves a re-download.
   */
  fsync?: boolean;
}

export interface PutOptions {
  /** Write even when the blob is present, replacing it atomically (builder warm --force). */
  replace?: boolean;
  /** Each chunk as it goes to the file (before the digest is known good): a second reader that never holds the writer up. */
  observe?: (chunk: Buffer) => void;
}

/** What a check of a stored blob found; a corrupt entry has been removed. */
export type VerifyResult = 'ok' | 'missing' | 'corrupt';

export interface PutFileOptions {
  /** The caller already knows the file's digest is right (e.g. it hashed it while writing): skip re-reading it. */
  verified?: boolean;
}

export class BlobStore {
  readonly dir: string;
  private readonly fsync: boolean;

  constructor(dir: string, opts: BlobStoreOptions = {}) {
    this.dir = path.resolve(dir);
    this.fsync = opts.fsync ?? false;
  }

  /** Where the blob lives (or would live). */
  path(d: Digest): string {
    checkDigest(d);
    return path.join(this.dir, 'blobs', 'sha256', digestHex(d));
  }

  async has(d: Digest): Promise<boolean> {
    try {
      return (await lstat(this.path(d))).isFile();
    } catch (err) {
      if (errno(err) === 'ENOENT') return false;
      throw storeError('BLOB_STORE_READ_FAILED', `cannot stat blob ${d} in ${this.dir}`, err);
    }
  }

  /**
   * A stream of the blob's bytes, verified as they flow: a mismatch at the end removes the entry and
   * fails the stream with BLOB_STORE_CORRUPT; a missing blob fails it with BLOB_STORE_MISSING.
   */
  open(d: Digest, size?: number): Readable {
    const file = this.path(d);
    let identity: { ino: number; dev: number } | undefined;
    const out = new StoreVerifier(d, size, `blob ${d} in ${this.dir}`, () => this.removeCorrupt(file, identity));
    const fail = (err: unknown): void => {
      out.destroy(
        errno(err) === 'ENOENT'
          ? new BuilderError('BLOB_STORE_MISSING', `blob ${d} is not in the store ${this.dir}`, {
              hint: 'check has() before open(), or pull the blob again',
              cause: err,
            })
          : storeError('BLOB_STORE_READ_FAILED', `cannot read blob ${d} from ${this.dir}`, err),
      );
    };
    void (async () => {
      let fh: FileHandle;
      try {
        fh = await open(file, 'r');
        // Remember which inode we read, so a corrupt-entry cleanup never deletes a newer good copy.
        const st = await fh.stat();
        identity = { ino: st.ino, dev: st.dev };
      } catch (err) {
        fail(err);
        return;
      }
      if (out.destroyed) {
        await fh.close().catch(() => undefined);
        return;
      }
      const src = fh.createReadStream({ highWaterMark: 256 * 1024 });
      src.on('error', fail);
      // A consumer that stops early must not leave the file open.
      out.on('close', () => src.destroy());
      src.pipe(out);
    })();
    return out;
  }

  /**
   * Stores a blob: streamed into a temp file next to its final place, verified while writing, then
   * renamed atomically. Concurrent puts of one digest each write their own temp file; the last rename
   * wins with identical bytes. An already-present blob is not rewritten (src is destroyed unread).
   */
  async put(d: Digest, src: Readable, size?: number, opts: PutOptions = {}): Promise<void> {
    const final = this.path(d);
    if (!opts.replace && (await this.has(d))) {
      src.destroy();
      return;
    }
    const tmp = await this.tempPath(final);
    try {
      const verifier = new VerifyingStream(d, size, `blob ${d} being stored in ${this.dir}`);
      const file = createWriteStream(tmp, { flags: 'wx', mode: 0o444, highWaterMark: 256 * 1024 });
      const observe = opts.observe;
      await (observe ? pipeline(src, async function* (chunks: AsyncIterable<Buffer>) {
        for await (const c of chunks) {
          observe(c);
          yield c;
        }
      }, verifier, file) : pipeline(src, verifier, file));
      if (this.fsync) await syncFile(tmp);
      await rename(tmp, final);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      if (isBuilderError(err)) throw err;
      throw storeError('BLOB_STORE_WRITE_FAILED', `cannot store blob ${d} in ${this.dir}`, err);
    }
    await this.recordStored(d);
  }

  /** Stores bytes already in memory (a manifest or config) under d, verified like put(). */
  putBytes(d: Digest, bytes: Buffer, opts: PutOptions = {}): Promise<void> {
    return this.put(d, Readable.from([bytes]), bytes.length, opts);
  }

  /**
   * Reads a small blob whole, verified: undefined when absent or larger than `max` (then it is not what the
   * caller is looking for); a corrupt entry is removed and fails with BLOB_STORE_CORRUPT.
   */
  async read(d: Digest, opts: { max: number; size?: number }): Promise<Buffer | undefined> {
    let bytes: number;
    try {
      bytes = (await lstat(this.path(d))).size;
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw storeError('BLOB_STORE_READ_FAILED', `cannot stat blob ${d} in ${this.dir}`, err);
    }
    if (bytes > opts.max) return undefined;
    const chunks: Buffer[] = [];
    try {
      for await (const c of this.open(d, opts.size)) chunks.push(c as Buffer);
    } catch (err) {
      if (isBuilderError(err, 'BLOB_STORE_MISSING')) return undefined; // removed between stat and open
      throw err;
    }
    return Buffer.concat(chunks);
  }

  /** Reads a stored blob through the verifier: 'corrupt' entries are removed, so the caller can fetch them again. */
  async verify(d: Digest, size?: number): Promise<VerifyResult> {
    try {
      const before = await this.fingerprint(d);
      for await (const _ of this.open(d, size)) {
        // hashed by the verifier
      }
      // Recorded only when the file read is still the file at the path (no concurrent replace in between).
      if (before !== undefined && before === (await this.fingerprint(d))) await this.recordVerified(d, before);
      return 'ok';
    } catch (err) {
      if (isBuilderError(err, 'BLOB_STORE_MISSING')) return 'missing';
      if (isBuilderError(err, 'BLOB_STORE_CORRUPT')) return 'corrupt';
      throw err;
    }
  }

  /**
   * verify() without re-reading a file already verified in its current state (same inode, size, mtime, ctime):
   * a stored blob is never rewritten in place, so a changed fingerprint means tampering and triggers a full read.
   * Damage that leaves the fingerprint alone (bad sectors) is still caught by open() on the read that uses it.
   */
  async check(d: Digest, size?: number): Promise<VerifyResult> {
    const now = await this.fingerprint(d);
    if (now === undefined) return 'missing';
    const known = await readFile(this.verifiedPath(d), 'utf8').catch(() => undefined);
    return known === now ? 'ok' : this.verify(d, size);
  }

  /** Removes temp files older than `olderThanMs` that a killed writer left behind; returns how many. */
  async removeStaleTemp(olderThanMs: number, now = Date.now()): Promise<number> {
    const dir = path.join(this.dir, 'blobs', 'sha256');
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (errno(err) === 'ENOENT') return 0;
      throw storeError('BLOB_STORE_READ_FAILED', `cannot list ${dir}`, err);
    }
    let removed = 0;
    for (const name of names.filter((n) => n.startsWith('.tmp-'))) {
      const file = path.join(dir, name);
      const st = await lstat(file).catch(() => undefined);
      // Young temp files belong to a writer that may still be running (another job on the same volume).
      if (!st || now - st.mtimeMs < olderThanMs) continue;
      if (await unlink(file).then(() => true, () => false)) removed++;
    }
    return removed;
  }

  /** Stores an existing file under d: hard-linked when on the same filesystem, copied otherwise. */
  async putFile(d: Digest, existingPath: string, opts: PutFileOptions = {}): Promise<void> {
    if (!opts.verified) {
      // Reading it through the verifier proves the claim before it is trusted by every later build.
      await pipeline(createReadStream(existingPath), new VerifyingStream(d, undefined, `file ${existingPath} stored as ${d}`), async function* (s) {
        for await (const _ of s) {
          // hashed by the verifier
        }
      }).catch((err) => {
        if (isBuilderError(err)) throw err;
        throw storeError('BLOB_STORE_WRITE_FAILED', `cannot read ${existingPath} to store it as ${d}`, err);
      });
    }
    const final = this.path(d);
    if (await this.has(d)) return;
    const tmp = await this.tempPath(final);
    try {
      try {
        await link(existingPath, tmp);
      } catch (err) {
        // Other filesystem, or links not permitted there: fall back to a copy.
        if (!['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP'].includes(errno(err) ?? '')) throw err;
        await copyFile(existingPath, tmp);
        if (this.fsync) await syncFile(tmp);
      }
      await rename(tmp, final);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw storeError('BLOB_STORE_WRITE_FAILED', `cannot store ${existingPath} as blob ${d} in ${this.dir}`, err);
    }
    await this.recordStored(d);
  }

  /** Removes a blob; absent is fine. */
  async remove(d: Digest): Promise<void> {
    await unlink(this.path(d)).catch((err) => {
      if (errno(err) !== 'ENOENT') throw storeError('BLOB_STORE_WRITE_FAILED', `cannot remove blob ${d} from ${this.dir}`, err);
    });
  }

  /** "ino:size:mtime:ctime" of the stored file (ns precision), or undefined when absent. */
  private async fingerprint(d: Digest): Promise<string | undefined> {
    const st = await lstat(this.path(d), { bigint: true }).catch(() => undefined);
    return st ? `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : undefined;
  }

  private verifiedPath(d: Digest): string {
    return path.join(this.dir, 'verified', digestHex(d));
  }

  /** After a verified write: whichever put's rename won, the file at the path was verified by its writer. */
  private async recordStored(d: Digest): Promise<void> {
    const fp = await this.fingerprint(d);
    if (fp !== undefined) await this.recordVerified(d, fp);
  }

  /** Best effort: a missing or torn record only costs a full read next time. */
  private async recordVerified(d: Digest, fingerprint: string): Promise<void> {
    await mkdir(path.dirname(this.verifiedPath(d)), { recursive: true })
      .then(() => writeFile(this.verifiedPath(d), fingerprint))
      .catch(() => undefined);
  }

  private async tempPath(final: string): Promise<string> {
    const dir = path.dirname(final);
    await mkdir(dir, { recursive: true }).catch((err) => {
      throw storeError('BLOB_STORE_WRITE_FAILED', `cannot create the blob store directory ${dir}`, err);
    });
    // Same directory as the final name: rename(2) is atomic only within one filesystem.
    return path.join(dir, `.tmp-${path.basename(final).slice(0, 12)}-${randomBytes(8).toString('hex')}`);
  }

  /** Removes a corrupt entry, unless a concurrent put already replaced it with a different (good) file. */
  private async removeCorrupt(file: string, identity: { ino: number; dev: number } | undefined): Promise<void> {
    try {
      const now = await lstat(file);
      if (identity && (identity.ino !== now.ino || identity.dev !== now.dev)) return;
      await unlink(file);
    } catch {
      // Already gone: the error the caller gets is the same.
    }
  }
}

/** VerifyingStream whose failures remove the entry and become BLOB_STORE_CORRUPT. */
class StoreVerifier extends VerifyingStream {
  constructor(
    private readonly blob: Digest,
    size: number | undefined,
    private readonly label: string,
    private readonly onCorrupt: () => Promise<void>,
  ) {
    super(blob, size, label);
  }

  override _transform(chunk: Buffer, enc: BufferEncoding, cb: TransformCallback): void {
    super._transform(chunk, enc, (err, data) => (err ? this.corrupt(err, cb) : cb(null, data)));
  }

  override _flush(cb: TransformCallback): void {
    super._flush((err) => (err ? this.corrupt(err, cb) : cb()));
  }

  private corrupt(err: unknown, cb: TransformCallback): void {
    void this.onCorrupt().then(() =>
      cb(
        new BuilderError('BLOB_STORE_CORRUPT', `${this.label} is corrupt and was removed (${err instanceof Error ? err.message : String(err)})`, {
          hint: `fetch ${this.blob} again; if this repeats, check the disk holding the cache`,
          cause: err,
        }),
      ),
    );
  }
}

/** fsync through a fresh descriptor: it flushes the inode's data whichever fd wrote it. */
async function syncFile(file: string): Promise<void> {
  const fh = await open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function checkDigest(d: string): void {
  if (!isDigest(d)) {
    throw new BuilderError('DIGEST_INVALID', `"${d}" is not a sha256 digest`, {
      hint: 'a digest looks like sha256: followed by 64 lowercase hex characters',
    });
  }
}

function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
}

function storeError(code: ErrorCode, message: string, err: unknown): BuilderError {
  const e = err as NodeJS.ErrnoException;
  return new BuilderError(code, `${message}: ${e?.code ?? ''} ${e?.message ?? String(err)}`.trim(), {
    hint: e?.code === 'ENOSPC' ? 'the cache disk is full; free space or use another --cache-dir' : 'check that the cache directory exists and is writable',
    cause: err,
  });
}
