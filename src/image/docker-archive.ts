// docker-archive tarball writer (docker save format: manifest.json, config, layers), streamed entry by entry.
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { digestHex, VerifyingStream, type Digest } from '../digest/index.js';
import { MediaType, REF_NAME_ANNOTATION, type BlobOpener, type Descriptor, type ImageData } from './types.js';

export interface DockerArchiveOptions {
  /** Names for manifest.json RepoTags, e.g. ["registry.io/app:1.0"]; empty for an untagged image. */
  repoTags?: string[];
}

/**
 * Writes `image` as a docker-archive tarball at path (temp file + rename). Layers are stored as they
 * are in the registry (usually gzip), named <hex>.tar.gz like go-containerregistry's tarball writer;
 * docker load and skopeo detect the compression.
 */
export async function writeDockerArchive(path: string, image: ImageData, openBlob: BlobOpener, opts: DockerArchiveOptions = {}): Promise<void> {
  const configName = `${digestHex(image.manifest.config.digest)}.json`;
  const layerNames = image.manifest.layers.map((l) => `${digestHex(l.digest)}.tar${/gzip/.test(l.mediaType) ? '.gz' : /zstd/.test(l.mediaType) ? '.zst' : ''}`);
  const manifestJson = JSON.stringify([{ Config: configName, RepoTags: opts.repoTags ?? [], Layers: layerNames }]);
  await writeTar(path, async (entry, stream) => {
    await entry(configName, image.configBytes);
    const written = new Set<string>();
    for (const [i, l] of image.manifest.layers.entries()) {
      const name = layerNames[i]!;
      if (written.has(name)) continue;
      written.add(name);
      await stream(name, l, openBlob);
    }
    await entry('manifest.json', Buffer.from(manifestJson));
  });
}

/**
 * A multi-platform image as one tarball that is both an OCI layout (oci-layout, index.json naming the index `tag`,
 * blobs/sha256/...) and a docker-archive (manifest.json: one untagged entry per platform, as `docker save` of Docker 25
 * writes): skopeo reads it as oci-archive:FILE:TAG, or one platform as docker-archive:FILE:@N.
 */
export async function writeMultiPlatformArchive(
  path: string, index: { bytes: Buffer; mediaType: string; digest: Digest; images: ReadonlyArray<{ image: ImageData; openBlob: BlobOpener }> }, opts: { tag?: string } = {},
): Promise<void> {
  const blobName = (d: Digest): string => `blobs/sha256/${digestHex(d)}`;
  const top = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [{
    mediaType: index.mediaType, digest: index.digest, size: index.bytes.length, ...(opts.tag ? { annotations: { [REF_NAME_ANNOTATION]: opts.tag } } : {}),
  }] };
  const manifestJson = index.images.map(({ image }) => ({ Config: blobName(image.manifest.config.digest), RepoTags: [], Layers: image.manifest.layers.map((l) => blobName(l.digest)) }));
  const written = new Set<Digest>();
  await writeTar(path, async (entry, stream) => {
    const once = async (d: Digest, write: () => Promise<void>): Promise<void> => {
      if (written.has(d)) return;
      written.add(d);
      await write();
    };
    await entry('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
    for (const { image, openBlob } of index.images) {
      for (const l of image.manifest.layers) await once(l.digest, () => stream(blobName(l.digest), l, openBlob));
      await once(image.manifest.config.digest, () => entry(blobName(image.manifest.config.digest), image.configBytes));
      await once(image.manifestDigest, () => entry(blobName(image.manifestDigest), image.manifestBytes));
    }
    await entry(blobName(index.digest), index.bytes);
    await entry('index.json', Buffer.from(JSON.stringify(top)));
    await entry('manifest.json', Buffer.from(JSON.stringify(manifestJson)));
  });
}

type EntryWriter = (name: string, data: Buffer) => Promise<void>;
type BlobWriter = (name: string, desc: Descriptor, openBlob: BlobOpener) => Promise<void>;

/** A tarball at path written by `fill` (temp file + rename): readers never see half of one, a failure leaves none. */
async function writeTar(path: string, fill: (entry: EntryWriter, stream: BlobWriter) => Promise<void>): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const pack = tar.pack();
  const out = pipeline(pack, createWriteStream(tmp));
  const entry: EntryWriter = (name, data) =>
    new Promise((resolve, reject) => pack.entry({ name, size: data.length, mode: 0o644, mtime: new Date(0) }, data, (e) => (e ? reject(e) : resolve())));
  try {
    await fill(entry, (name, desc, openBlob) => streamEntry(pack, name, desc, openBlob));
    pack.finalize();
    await out;
    await rename(tmp, path);
  } catch (err) {
    pack.destroy();
    await out.catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
}

/** One blob streamed into the tar, verified again so an opener that does not verify cannot put bad bytes in. */
async function streamEntry(pack: tar.Pack, name: string, l: Descriptor, openBlob: BlobOpener): Promise<void> {
  const src = await openBlob(l);
  await new Promise<void>((resolve, reject) => {
    const sink = pack.entry({ name, size: l.size, mode: 0o644, mtime: new Date(0) }, (e) => (e ? reject(e) : resolve()));
    pipeline(src, new VerifyingStream(l.digest, l.size, `layer ${l.digest}`), sink).catch(reject);
  });
}
