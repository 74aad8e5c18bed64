// Outputs of a build: push to every destination (all blobs first, manifests last), OCI layout, docker-archive, digest files.
import { writeFile } from 'node:fs/promises';
import {
  imageBlobOpener, writeDockerArchive, writeMultiPlatformArchive, writeOciLayout, writeOciLayoutIndex, type Image, type ImageIndex,
} from '../image/index.js';
import { parseReference } from '../reference/index.js';
import { writeImage, writeIndex, type RegistryClient } from '../registry/index.js';
import type { BuildOptions } from './options.js';

export type OutputOptions = Pick<BuildOptions,
  'destinations' | 'noPush' | 'tarPath' | 'ociLayoutPath' | 'digestFile' | 'imageNameWithDigestFile' | 'imageNameTagWithDigestFile' | 'emit' | 'signal'>;

/** Writes one image, or a multi-platform index of several (--platform a,b): every output gets the index then. */
export async function writeOutputs(client: RegistryClient, built: Image | ImageIndex, opts: OutputOptions): Promise<Array<{ destination: string; digest: string }>> {
  const refs = opts.destinations.map((d) => parseReference(d));
  const tag = refs[0]?.tag ? { tag: refs[0].tag } : {};
  const signal = opts.signal ? { signal: opts.signal } : {};
  let digest: string;
  let pushed: Array<{ destination: string; digest: string }> = [];
  if ('images' in built) {
    digest = built.digest;
    const withOpeners = { ...built, images: built.images.map((image) => ({ image, openBlob: imageBlobOpener(image) })) };
    if (opts.ociLayoutPath) await writeOciLayoutIndex(opts.ociLayoutPath, withOpeners, tag);
    if (opts.tarPath) await writeMultiPlatformArchive(opts.tarPath, withOpeners, tag);
    if (!opts.noPush) pushed = (await writeIndex(client, built, refs, { emit: opts.emit, ...signal })).pushed;
  } else {
    digest = built.manifestDigest;
    const open = imageBlobOpener(built);
    if (opts.ociLayoutPath) await writeOciLayout(opts.ociLayoutPath, built, open, tag);
    if (opts.tarPath) await writeDockerArchive(opts.tarPath, built, open, { repoTags: refs.filter((r) => r.tag).map((r) => `${r.name}:${r.tag}`) });
    if (!opts.noPush) pushed = (await writeImage(client, built, refs, { emit: opts.emit, ...signal })).pushed;
  }
  if (opts.ociLayoutPath) opts.emit({ type: 'message', level: 'info', msg: `wrote OCI layout ${opts.ociLayoutPath}` });
  if (opts.tarPath) opts.emit({ type: 'message', level: 'info', msg: `wrote ${'images' in built ? 'OCI + docker-archive' : 'docker-archive'} ${opts.tarPath}` });
  if (opts.digestFile) await writeFile(opts.digestFile, digest);
  if (opts.imageNameWithDigestFile) {
    await writeFile(opts.imageNameWithDigestFile, refs.map((r) => `${r.name}@${digest}\n`).join(''));
  }
  if (opts.imageNameTagWithDigestFile) {
    await writeFile(opts.imageNameTagWithDigestFile, refs.map((r) => `${r.name}:${r.tag ?? 'latest'}@${digest}\n`).join(''));
  }
  return pushed;
}
