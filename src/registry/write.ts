// Pushing one image (go-containerregistry's remote.Write): every blob to every repository first (mounts where possible), manifests last.
import type { Digest } from '../digest/index.js';
import { bufferStream, MediaType, type Image } from '../image/index.js';
import { withDigest, type ImageRef } from '../reference/index.js';
import type { EventSink } from '../util/events.js';
import { runPool } from '../util/pool.js';
import type { PushBlobResult, RegistryClient } from './client.js';

export interface WriteImageOptions {
  /** Parallel blob uploads per repository (default 2: gzip'd layers are I/O bound). */
  concurrency?: number;
  /** Where the config blob (and layers naming no repository) can be mounted from: the image's source repository. */
  mountFrom?: ImageRef;
  /** Once aborted, no further blob or tag: an interrupted push leaves no tag, or tags on complete images only. */
  signal?: AbortSignal;
  /** One message per repository and per manifest. */
  emit?: EventSink;
  /** Awaited after the blobs, before the first manifest: a check still running beside the upload (it fails the push). */
  ready?: Promise<void>;
}

export interface WriteImageResult {
  pushed: Array<{ destination: string; digest: Digest }>;
  blobs: Record<PushBlobResult, number>;
}

const SMALL_BLOB = 1 << 20;
const SMALL_BLOB_CONCURRENCY = 8;

/** Pushes the image's blobs to each destination repository, then its manifest to each reference (tag or digest). */
export async function writeImage(client: RegistryClient, image: Image, destinations: readonly ImageRef[], opts: WriteImageOptions = {}): Promise<WriteImageResult> {
  const repos = new Map<string, ImageRef>();
  for (const d of destinations) repos.set(d.name, d);
  const blobs: Record<PushBlobResult, number> = { exists: 0, mounted: 0, uploaded: 0 };
  // Foreign layers (Windows base layers) are never pushed; their URLs point elsewhere.
  const layers = image.layers.filter((l) => l.descriptor.mediaType !== MediaType.DockerForeignLayerGzip);
  for (const repo of repos.values()) {
    const counts: Record<PushBlobResult, number> = { exists: 0, mounted: 0, uploaded: 0 };
    const seen = new Set<string>();
    // The config goes beside the layers (the manifest waits for all of them); blobs up to SMALL_BLOB, and those a
    // mount should bring, cost round trips, not bandwidth: they go all at once beside the big uploads' bounded pool.
    const todo = [
      ...layers.filter((l) => !seen.has(l.descriptor.digest) && seen.add(l.descriptor.digest)),
      { descriptor: image.manifest.config, open: async () => bufferStream(image.configBytes), mountFrom: undefined, fresh: true },
    ];
    // the first failure stops both pools taking new blobs (a failed small one does not wait for every big one)
    let failure: { reason: unknown } | undefined;
    const push = async (b: (typeof todo)[number]): Promise<void> => {
      opts.signal?.throwIfAborted();
      if (failure) throw failure.reason;
      const from = b.mountFrom ?? opts.mountFrom;
      try {
        counts[await client.pushBlob(repo, b.descriptor, () => b.open(), { ...(from ? { mountFrom: [from] } : {}), ...(b.fresh ? { likelyMissing: true } : {}) })]++;
      } catch (err) {
        failure ??= { reason: err };
        throw err;
      }
    };
    const cheap = (b: (typeof todo)[number]): boolean => b.descriptor.size <= SMALL_BLOB || (b.mountFrom ?? opts.mountFrom)?.registry === repo.registry;
    await Promise.allSettled([
      runPool(todo.filter((b) => !cheap(b)), opts.concurrency ?? 2, push),
      runPool(todo.filter(cheap), SMALL_BLOB_CONCURRENCY, push),
    ]);
    if (failure) throw failure.reason;
    for (const k of Object.keys(counts) as PushBlobResult[]) blobs[k] += counts[k];
    opts.emit?.({ type: 'blobs-pushed', repository: repo.name, blobs: { ...counts } });
  }
  await opts.ready;
  const pushed: WriteImageResult['pushed'] = [];
  for (const d of destinations) {
    opts.signal?.throwIfAborted();
    // putManifest checks the registry's digest and a digest reference against the bytes.
    const digest = await client.putManifest(d, image.manifestBytes, image.mediaType);
    opts.emit?.({ type: 'manifest-pushed', ref: d.toString(), digest });
    pushed.push({ destination: d.toString(), digest });
  }
  return { pushed, blobs };
}

/**
 * Pushes a multi-platform image: each platform's image by digest to every destination repository (blobs first), then
 * the index to each reference, so no tag ever names an index whose manifests are not all there.
 */
export async function writeIndex(
  client: RegistryClient, index: { bytes: Buffer; mediaType: string; images: readonly Image[] }, destinations: readonly ImageRef[], opts: WriteImageOptions = {},
): Promise<WriteImageResult> {
  const repos = new Map<string, ImageRef>();
  for (const d of destinations) repos.set(d.name, d);
  const blobs: Record<PushBlobResult, number> = { exists: 0, mounted: 0, uploaded: 0 };
  for (const image of index.images) {
    const r = await writeImage(client, image, [...repos.values()].map((d) => withDigest(d, image.manifestDigest)), opts);
    for (const k of Object.keys(blobs) as PushBlobResult[]) blobs[k] += r.blobs[k];
  }
  const pushed: WriteImageResult['pushed'] = [];
  for (const d of destinations) {
    opts.signal?.throwIfAborted();
    const digest = await client.putManifest(d, index.bytes, index.mediaType);
    opts.emit?.({ type: 'manifest-pushed', ref: d.toString(), digest, images: index.images.length });
    pushed.push({ destination: d.toString(), digest });
  }
  return { pushed, blobs };
}
