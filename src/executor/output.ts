// Outputs of a build: push to every destination (all blobs first, manifests last), OCI layout, docker-archive, digest files.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { imageBlobOpener, writeDockerArchive, writeOciLayout, type Image } from '../image/index.js';
import { parseReference, type ImageRef } from '../reference/index.js';
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
  const names = imageNameDigestLines(refs, image.manifestDigest, opts.imageNameTagWithDigestFile !== undefined);
  for (const [file, text] of [[opts.digestFile, image.manifestDigest], [opts.imageNameWithDigestFile, names], [opts.imageNameTagWithDigestFile, names]] as const) {
    if (!file) continue;
    // kaniko creates the file's directory (0700) before writing
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await writeFile(file, text);
  }
  return pushed;
}

/**
 * kaniko v1.24.0's digest-file text (pkg/executor/push.go DoPush): one `REPO@DIGEST` line per destination, or
 * `REPO:TAG@DIGEST` (TAG latest when the destination has none) as soon as --image-name-tag-with-digest-file is given;
 * kaniko writes that same text to both files, and scripts parse it.
 */
export function imageNameDigestLines(refs: readonly ImageRef[], digest: string, withTag: boolean): string {
  return refs.map((r) => `${r.name}${withTag ? `:${r.tag ?? 'latest'}` : ''}@${digest}\n`).join('');
}
