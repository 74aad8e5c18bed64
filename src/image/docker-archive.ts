// docker-archive tarball writer (docker save format: manifest.json, config, layers), streamed entry by entry.
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { digestHex, VerifyingStream } from '../digest/index.js';
import type { BlobOpener, ImageData } from './types.js';

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
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const pack = tar.pack();
  const out = pipeline(pack, createWriteStream(tmp));
  const entry = (name: string, data: Buffer): Promise<void> =>
    new Promise((resolve, reject) => pack.entry({ name, size: data.length, mode: 0o644, mtime: new Date(0) }, data, (e) => (e ? reject(e) : resolve())));
  try {
    await entry(configName, image.configBytes);
    const written = new Set<string>();
    for (const [i, l] of image.manifest.layers.entries()) {
      const name = layerNames[i]!;
      if (written.has(name)) continue;
      written.add(name);
      const src = await openBlob(l);
      await new Promise<void>((resolve, reject) => {
        const sink = pack.entry({ name, size: l.size, mode: 0o644, mtime: new Date(0) }, (e) => (e ? reject(e) : resolve()));
        // verify again here so an opener that does not verify cannot put bad bytes in the archive
        pipeline(src, new VerifyingStream(l.digest, l.size, `layer ${l.digest}`), sink).catch(reject);
      });
    }
    await entry('manifest.json', Buffer.from(manifestJson));
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
