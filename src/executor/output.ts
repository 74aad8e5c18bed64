// Outputs of a build: push to every destination (all blobs first, manifests last), OCI layout, docker-archive, digest files.
import { writeFile } from 'node:fs/promises';
import { imageBlobOpener, writeDockerArchive, writeOciLayout, type Image } from '../image/index.js';
import { parseReference } from '../reference/index.js';
import { writeImage, type RegistryClient } from '../registry/index.js';
import type { BuildOptions } from './options.js';

export type OutputOptions = Pick<BuildOptions,
  'destinations' | 'noPush' | 'tarPath' | 'ociLayoutPath' | 'digestFile' | 'imageNameWithDigestFile' | 'imageNameTagWithDigestFile' | 'emit' | 'signal'>;

export async function writeOutputs(client: RegistryClient, image: Image, opts: OutputOptions): Promise<Array<{ destination: string; digest: string }>> {
  const refs = opts.destinations.map((d) => parseReference(d));
  const open = imageBlobOpener(image);
  if (opts.ociLayoutPath) {
    await writeOciLayout(opts.ociLayoutPath, image, open, refs[0]?.tag ? { tag: refs[0].tag } : {});
    opts.emit({ type: 'message', level: 'info', msg: `wrote OCI layout ${opts.ociLayoutPath}` });
  }
  if (opts.tarPath) {
    await writeDockerArchive(opts.tarPath, image, open, { repoTags: refs.filter((r) => r.tag).map((r) => `${r.name}:${r.tag}`) });
    opts.emit({ type: 'message', level: 'info', msg: `wrote docker-archive ${opts.tarPath}` });
  }
  const pushed = opts.noPush ? [] : (await writeImage(client, image, refs, { emit: opts.emit, ...(opts.signal ? { signal: opts.signal } : {}) })).pushed;
  if (opts.digestFile) await writeFile(opts.digestFile, image.manifestDigest);
  if (opts.imageNameWithDigestFile) {
    await writeFile(opts.imageNameWithDigestFile, refs.map((r) => `${r.name}@${image.manifestDigest}\n`).join(''));
  }
  if (opts.imageNameTagWithDigestFile) {
    await writeFile(opts.imageNameTagWithDigestFile, refs.map((r) => `${r.name}:${r.tag ?? 'latest'}@${image.manifestDigest}\n`).join(''));
  }
  return pushed;
}
