// Test harness: hand-made single-platform images (any layer bytes, media types and diff_ids) pushed with the project's registry client.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { parseReference } from '../../src/reference/index.js';
import type { RegistryClient } from '../../src/registry/index.js';
import { hostArch } from './images.js';

export interface RawLayer {
  /** The uncompressed layer tar. */
  tar: Buffer;
  /** gzip it (default true). */
  gzip?: boolean;
  /** Default: the format's gzip (or plain tar) layer type. */
  mediaType?: string;
  /** What the config claims; default the true sha256 of `tar`. */
  diffId?: string;
}

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/**
 * Pushes config, layers and a manifest (Docker schema2 or OCI) to `ref` ("host/repo:tag"); returns the manifest digest.
 * `runConfig` is the config's "config" object (default empty).
 */
export async function pushRawImage(client: RegistryClient, ref: string, layers: RawLayer[], format: 'docker' | 'oci' = 'docker', runConfig: Record<string, unknown> = {}): Promise<string> {
  const r = parseReference(ref);
  const docker = format === 'docker';
  const descs = [];
  for (const l of layers) {
    const gz = l.gzip ?? true;
    const blob = gz ? gzipSync(l.tar) : l.tar;
    const mediaType = l.mediaType ?? (docker ? (gz ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.docker.image.rootfs.diff.tar') : gz ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar');
    const desc = { mediaType, digest: sha(blob), size: blob.length };
    await client.pushBlob(r, desc as never, () => Readable.from([blob]));
    descs.push(desc);
  }
  const config = Buffer.from(JSON.stringify({
    architecture: hostArch(), os: 'linux', config: runConfig,
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId ?? sha(l.tar)) },
    history: layers.map(() => ({ created_by: 'test' })),
  }));
  const configDesc = { mediaType: docker ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length };
  await client.pushBlob(r, configDesc as never, () => Readable.from([config]));
  const mediaType = docker ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json';
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, config: configDesc, layers: descs }));
  return client.putManifest(r, manifest, mediaType);
}
