// Images resolved through the local store: manifests, indexes and configs are blobs by digest, so a pinned reference needs no registry.
import type { Digest } from '../digest/index.js';
import { BuilderError, isBuilderError } from '../errors.js';
import { BLOB_STORE_ERROR_CODES } from './codes.js';
import { checkManifestDocument, formatPlatform, isIndexMediaType, parseConfig, parseIndex, parseManifest, selectPlatform, type Platform } from '../image/index.js';
import { withDigest, type ImageRef } from '../reference/index.js';
import { MAX_CONFIG, MAX_MANIFEST, type ManifestResult, type RegistryClient, type ResolvedImage } from '../registry/index.js';
import type { EventSink } from '../util/events.js';
import type { BlobStore } from './blob-store.js';

export type ImageDocument = 'index' | 'manifest' | 'config';

export interface ResolveCachedOptions {
  /** Fetch every document from the registry again and replace the stored copies (builder warm --force). */
  refresh?: boolean;
  /** Warnings: a stored document was corrupt (removed and fetched again), unreadable, or could not be stored. */
  emit?: EventSink;
  /** Fail when the store cannot be read or written (the warmer); default: warn and use the registry, the image is resolved anyway. */
  strict?: boolean;
  /** Where each document came from, for progress output. */
  onDocument?: (kind: ImageDocument, digest: Digest, from: 'store' | 'registry') => void;
}

/**
 * client.resolveImage through `store`: a reference by digest whose documents are stored makes no request;
 * a reference by tag costs the one GET of its manifest; whatever is fetched is stored. Same checks as the
 * client: digests verified, the document's type checked, the platform picked from an index (PLATFORM_NOT_FOUND), manifest and config parsed.
 */
export async function resolveImageCached(client: RegistryClient, store: BlobStore, ref: ImageRef, platform?: Platform, opts: ResolveCachedOptions = {}): Promise<ResolvedImage> {
  // pull mirrors (--registry-mirror/--registry-map) first, where configured; the image keeps the name it was asked by
  const img = await client.withMirrors(ref, (from) => resolveFrom(client, store, from, platform, opts));
  return { ...img, ref };
}

async function resolveFrom(client: RegistryClient, store: BlobStore, ref: ImageRef, platform: Platform | undefined, opts: ResolveCachedOptions): Promise<ResolvedImage> {
  const want = platform ?? client.opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const replace = { replace: opts.refresh === true };
  // to a listener of its own a warning; else through the client: a detail for its trace, a lost cache write a warning
  const say = (msg: string, level: 'trace' | 'warning'): void => {
    if (opts.emit) opts.emit({ type: 'warning', msg });
    else client.emit(level === 'warning' ? { type: 'warning', msg } : { type: 'message', level, msg });
  };
  const stored = async (d: Digest, max: number, size?: number): Promise<Buffer | undefined> => {
    if (opts.refresh) return undefined;
    try {
      return await store.read(d, { max, ...(size !== undefined ? { size } : {}) });
    } catch (err) {
      if (isBuilderError(err, 'BLOB_STORE_CORRUPT')) say(`${err.message}; fetching it again`, 'trace');
      else if (!opts.strict && isBuilderError(err, 'BLOB_STORE_READ_FAILED')) say(`${err.message}; fetching it from the registry`, 'trace');
      else throw err;
      return undefined;
    }
  };
  // documents are stored while the next one is fetched: the resolve waits for them only at its end
  const storing: Promise<void>[] = [];
  const keep = (d: Digest, bytes: Buffer): void => {
    const p = store.putBytes(d, bytes, replace).catch((err: unknown) => {
      if (opts.strict || !isBuilderError(err, BLOB_STORE_ERROR_CODES)) throw err;
      say(`${err.message}; going on without caching it`, 'warning');
    });
    p.catch(() => undefined); // awaited at the end, after a failure too
    storing.push(p);
  };
  const manifestAt = async (r: ImageRef): Promise<ManifestResult & { from: 'store' | 'registry' }> => {
    const bytes = r.digest ? await stored(r.digest, MAX_MANIFEST) : undefined;
    // Stored bytes have no Content-Type: the client's document check with none lets the body decide the type.
    if (bytes && r.digest) return { digest: r.digest, bytes, mediaType: checkManifestDocument(bytes, undefined, `manifest ${r} (stored)`), from: 'store' };
    const m = await client.getManifest(r);
    keep(m.digest, m.bytes);
    return { ...m, from: 'registry' };
  };

  try {
    let top = await manifestAt(ref);
    let index: ManifestResult | undefined;
    if (isIndexMediaType(top.mediaType)) {
      opts.onDocument?.('index', top.digest, top.from);
      index = { digest: top.digest, bytes: top.bytes, mediaType: top.mediaType };
      const idx = parseIndex(top.bytes, `index ${ref}`);
      const pick = selectPlatform(idx.manifests, want);
      if (!pick) {
        throw new BuilderError('PLATFORM_NOT_FOUND', `${ref} has no image for platform ${formatPlatform(want)}`, {
          hint: `choose one of: ${idx.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : '?')).join(', ')}`,
        });
      }
      top = await manifestAt(withDigest(ref, pick.digest));
    }
    opts.onDocument?.('manifest', top.digest, top.from);
    const manifest = parseManifest(top.bytes, `manifest ${ref}`);
    let configBytes = await stored(manifest.config.digest, MAX_CONFIG, manifest.config.size);
    const configFrom = configBytes ? 'store' : 'registry';
    if (!configBytes) {
      configBytes = await client.readBlob(ref, manifest.config);
      keep(manifest.config.digest, configBytes);
    }
    opts.onDocument?.('config', manifest.config.digest, configFrom);
    await Promise.all(storing);
    return {
      ref, manifestDigest: top.digest, manifest, manifestBytes: top.bytes, mediaType: top.mediaType,
      config: parseConfig(configBytes, `config of ${ref}`), configBytes, ...(index ? { index } : {}),
    };
  } finally {
    await Promise.allSettled(storing); // a resolve that failed leaves no store write running behind it
  }
}
