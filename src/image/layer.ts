// A Layer (go-containerregistry's pkg/v1/layer.go, reduced): descriptor, diffId and a lazy opener; where it comes from is the opener's business.
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { sha256, verified, type Digest } from '../digest/index.js';
import type { ImageRef } from '../reference/index.js';
import { MediaType, type Descriptor, type ImageFormat } from './types.js';

export interface Layer {
  /** The compressed blob as it is (or will be) stored in a registry. */
  descriptor: Descriptor;
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffId: Digest;
  /** Opens the blob, verified against its digest while read (downloads it first if it is remote). */
  open(): Promise<Readable>;
  /** A repository on a registry that already holds the blob (cross-repo mount candidate). */
  mountFrom?: ImageRef;
  /** Makes open() cheap (downloads into a local store); true when bytes were downloaded. Absent when open() already is. */
  fetch?(): Promise<boolean>;
  /** With fetch: the blob is in the local store now (not: still to download, or coming down). */
  stored?(): Promise<boolean>;
  /**
   * With fetch: open() without waiting for the download. When the blob has yet to come down, its bytes as they arrive
   * (verified at the end; the store gets them too, and fetch() retries on its own if they break off), that download,
   * and whether those bytes proved bad once the attempt is over (`broken`: it broke off or failed its digest); else open().
   */
  openEarly?(): Promise<{ stream: Readable; download?: Promise<boolean>; broken?: Promise<boolean> }>;
  /** Made by this build (a step's snapshot): most likely on no registry yet, so a push opens its upload while it asks. */
  fresh?: boolean;
}

/** A layer written to a local file by the snapshotter. */
export function fileLayer(file: string, descriptor: Descriptor, diffId: Digest): Layer {
  return {
    descriptor,
    diffId,
    // verified(): a file that cannot be read fails the reader with BLOB_READ_FAILED (a bare pipe() left it unhandled)
    open: async () => verified(createReadStream(file), descriptor.digest, descriptor.size, `layer ${descriptor.digest}`),
  };
}

/** The OCI ChainID of a stack of layers (image-spec config.md): names what lies below a step; '' for no layers. */
export function chainId(layers: readonly Pick<Layer, 'diffId'>[]): string {
  let chain = '';
  for (const l of layers) chain = chain ? sha256(Buffer.from(`${chain} ${l.diffId}`)) : l.diffId;
  return chain;
}

/** The layer media type in a format: only plain gzip layers are re-labelled (same bytes); any other kind keeps its label. */
export function layerMediaType(format: ImageFormat, current?: string): string {
  if (current !== undefined && current !== MediaType.OciLayerGzip && current !== MediaType.DockerLayerGzip) return current;
  return format === 'oci' ? MediaType.OciLayerGzip : MediaType.DockerLayerGzip;
}

export function formatOfManifest(mediaType: string | undefined): ImageFormat {
  return mediaType === MediaType.DockerManifest ? 'docker' : 'oci';
}
