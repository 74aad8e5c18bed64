// The --cache-dir layout in one place (as cacache's lib/content/path.js): every path directly under it is named here.
import { createHash } from 'node:crypto';
import path from 'node:path';
import { BlobStore } from './blob-store.js';
import { RootfsStore, type StoreHost } from './rootfs-store.js';

const hex = (s: string): string => createHash('sha256').update(s).digest('hex');

/**
 * <dir>/blobs-store/   base images' manifests, indexes, configs and layers by digest (BlobStore)
 * <dir>/rootfs-store/  extracted bases by ChainID, and the leases of the builds using them (RootfsStore)
 * <dir>/tags/          when the warmer last resolved each tag: one JSON record per reference
 * <dir>/run-cache/     RUN --mount=type=cache directories by sha256(id), kept between builds (src/cache/run-cache.ts)
 * <dir>/file-hashes/   the context hasher's remembered file hashes, one file per context directory
 */
export class CacheDir {
  readonly dir: string;

  /** `host`: what the CLI read from `process` (pid, uid, exit hook), handed to the stores that need it. */
  constructor(dir: string, private readonly host: StoreHost = {}) {
    this.dir = path.resolve(dir);
  }

  blobs(): BlobStore {
    return new BlobStore(path.join(this.dir, 'blobs-store'));
  }

  /** A new instance per build: it tracks that build's overlay mounts and leases. */
  rootfs(opts: { maxBytes?: number } = {}): RootfsStore {
    return new RootfsStore(path.join(this.dir, 'rootfs-store'), { ...opts, ...this.host });
  }

  /** The warmer's record of what `ref` (a reference as written by tag) resolved to. */
  tagRecord(ref: string): string {
    return path.join(this.dir, 'tags', `${hex(ref)}.json`);
  }

  get runCache(): string {
    return path.join(this.dir, 'run-cache');
  }

  /** The file-hash cache of one context directory (an extracted tar context is new every build: it has none). */
  fileHashes(contextDir: string): string {
    return path.join(this.dir, 'file-hashes', `${hex(contextDir).slice(0, 32)}.json`);
  }
}
