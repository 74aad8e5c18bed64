// Outputs of a build: push to every destination (all blobs first, manifests last), OCI layout, docker-archive, digest files.
import { writeFile } from 'node:fs/promises';
import { BuilderError } from '../errors.js';
import { writeDockerArchive, writeOciLayout, bufferStream, type BlobOpener } from '../image/index.js';
import { parseReference, type ImageRef } from '../reference/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { AssembledImage } from './assemble.js';
import { throwIfCancelled, type BuildOptions } from './options.js';
import { runPool } from './pool.js';

export type OutputOptions = Pick<BuildOptions,
  'destinations' | 'noPush' | 'tarPath' | 'ociLayoutPath' | 'digestFile' | 'imageNameWithDigestFile' | 'imageNameTagWithDigestFile' | 'log' | 'signal'>;

function opener(image: AssembledImage): BlobOpener {
  const byDigest = new Map(image.layers.map((l) => [l.descriptor.digest, l]));
  return async (desc) => {
    if (desc.digest === image.manifest.config.digest) return bufferStream(image.configBytes);
    const l = byDigest.get(desc.digest);
    if (!l) throw new BuilderError('BUILD_INTERNAL', `no source for blob ${desc.digest}`, { hint: 'this is a bug; please report it' });
    return l.open();
  };
}

/** Pushes blobs to every destination repository, then the manifest to every tag; returns the registry's digests. */
export async function pushImage(client: RegistryClient, image: AssembledImage, destinations: readonly ImageRef[], log: (l: string) => void, signal?: AbortSignal): Promise<Array<{ destination: string; digest: string }>> {
  const repos = new Map<string, ImageRef>();
  for (const d of destinations) repos.set(d.name, d);
  for (const repo of repos.values()) {
    const counts = { exists: 0, mounted: 0, uploaded: 0 };
    // Two uploads at a time: gzip'd layers are I/O bound and the registry handles parallel uploads.
    await runPool(image.layers, 2, async (l) => {
      throwIfCancelled(signal);
      counts[await client.pushBlob(repo, l.descriptor, () => l.open(), l.mountFrom ? { mountFrom: [l.mountFrom] } : {})]++;
    });
    await client.pushBlob(repo, image.manifest.config, () => bufferStream(image.configBytes));
    log(`pushed blobs to ${repo.name}: ${counts.uploaded} uploaded, ${counts.mounted} mounted, ${counts.exists} already there`);
  }
  const out: Array<{ destination: string; digest: string }> = [];
  for (const d of destinations) {
    // Once cancelled, no further tag: an interrupted push leaves no tag, or tags on complete images only.
    throwIfCancelled(signal);
    const digest = await client.putManifest(d, image.manifestBytes, image.mediaType);
    if (digest !== image.manifestDigest) {
      throw new BuilderError('PUSH_DIGEST_MISMATCH', `${d}: registry reports manifest digest ${digest}, expected ${image.manifestDigest}`, {
        hint: 'the registry rewrote the manifest; check that it supports this media type',
      });
    }
    log(`pushed ${d}@${digest}`);
    out.push({ destination: d.toString(), digest });
  }
  return out;
}

export async function writeOutputs(client: RegistryClient, image: AssembledImage, opts: OutputOptions): Promise<Array<{ destination: string; digest: string }>> {
  const refs = opts.destinations.map((d) => parseReference(d));
  const open = opener(image);
  if (opts.ociLayoutPath) {
    await writeOciLayout(opts.ociLayoutPath, image, open, refs[0]?.tag ? { tag: refs[0].tag } : {});
    opts.log(`wrote OCI layout ${opts.ociLayoutPath}`);
  }
  if (opts.tarPath) {
    await writeDockerArchive(opts.tarPath, image, open, { repoTags: refs.filter((r) => r.tag).map((r) => `${r.name}:${r.tag}`) });
    opts.log(`wrote docker-archive ${opts.tarPath}`);
  }
  const pushed = opts.noPush ? [] : await pushImage(client, image, refs, opts.log, opts.signal);
  if (opts.digestFile) await writeFile(opts.digestFile, image.manifestDigest);
  if (opts.imageNameWithDigestFile) {
    await writeFile(opts.imageNameWithDigestFile, refs.map((r) => `${r.name}@${image.manifestDigest}\n`).join(''));
  }
  if (opts.imageNameTagWithDigestFile) {
    await writeFile(opts.imageNameTagWithDigestFile, refs.map((r) => `${r.name}:${r.tag ?? 'latest'}@${image.manifestDigest}\n`).join(''));
  }
  return pushed;
}
