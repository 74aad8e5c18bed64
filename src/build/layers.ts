// Layers of the image being built: where each blob's bytes come from (local store, a new layer file) and where it can be mounted from.
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { VerifyingStream, type Digest } from '../digest/index.js';
import { MediaType, type Descriptor, type ImageFormat } from '../image/index.js';
import type { ImageRef } from '../reference/index.js';
import type { BlobStore } from '../cache/index.js';

export interface BuiltLayer {
  descriptor: Descriptor;
  diffId: Digest;
  /** Opens the blob, verified against its digest while read. */
  open(): Readable;
  /** A repository on a registry that already holds the blob (cross-repo mount candidate). */
  mountFrom?: ImageRef;
}

export function storeLayer(store: BlobStore, descriptor: Descriptor, diffId: Digest, mountFrom?: ImageRef): BuiltLayer {
  return { descriptor, diffId, open: () => store.open(descriptor.digest, descriptor.size), ...(mountFrom ? { mountFrom } : {}) };
}

export function fileLayer(file: string, descriptor: Descriptor, diffId: Digest): BuiltLayer {
  return {
    descriptor,
    diffId,
    open: () => createReadStream(file).pipe(new VerifyingStream(descriptor.digest, descriptor.size, `layer ${descriptor.digest}`)),
  };
}

/** The gzip layer media type of a format; base layers are re-labelled (same bytes) when formats differ. */
export function layerMediaType(format: ImageFormat, current?: string): string {
  const foreign = current === MediaType.DockerForeignLayerGzip;
  if (foreign) return current;
  if (current === MediaType.OciLayer || current === MediaType.OciLayerZstd) return current; // no Docker equivalent: keep
  return format === 'oci' ? MediaType.OciLayerGzip : MediaType.DockerLayerGzip;
}

export function formatOfManifest(mediaType: string | undefined): ImageFormat {
  return mediaType === MediaType.DockerManifest ? 'docker' : 'oci';
}
