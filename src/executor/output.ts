// Outputs of a build: push to every destination (all blobs first, manifests last), OCI layout, docker-archive, digest files.
import { writeFile } from 'node:fs/promises';
import { attachToLayout, attachToRegistry, imageDescriptor, signImage, type Artifact } from '../attest/index.js';
import { imageBlobOpener, writeDockerArchive, writeOciLayout, type Image } from '../image/index.js';
import { parseReference } from '../reference/index.js';
import { writeImage, type RegistryClient } from '../registry/index.js';
import type { BuildOptions } from './options.js';

export type OutputOptions = Pick<BuildOptions,
  'destinations' | 'noPush' | 'tarPath' | 'ociLayoutPath' | 'digestFile' | 'imageNameWithDigestFile' | 'imageNameTagWithDigestFile' | 'emit' | 'signal' | 'attest'>;

/**
 * `statements`: the image's SBOM/provenance artifacts, attached (with a signature when opts.attest has a key) after the
 * push. Still being made while the image is pushed (the SBOM scan is CPU, the push network); never left running after.
 */
export async function writeOutputs(client: RegistryClient, image: Image, opts: OutputOptions, statements: Promise<readonly Artifact[]> = Promise.resolve([])): Promise<Array<{ destination: string; digest: string }>> {
  statements.catch(() => undefined); // observed below, or after a failure
  try {
    return await writeAll(client, image, opts, statements);
  } finally {
    await statements.catch(() => undefined);
  }
}

async function writeAll(client: RegistryClient, image: Image, opts: OutputOptions, statements: Promise<readonly Artifact[]>): Promise<Array<{ destination: string; digest: string }>> {
  const refs = opts.destinations.map((d) => parseReference(d));
  const open = imageBlobOpener(image);
  const subject = imageDescriptor(image);
  const repos = [...new Map(refs.map((r) => [r.name, r])).values()];
  // one signature per repository (its payload names it), the same bytes in the layout and the registry
  const signatures = opts.attest?.signKey ? signImage(opts.attest.signKey, repos, subject) : [];
  if (opts.ociLayoutPath) {
    await writeOciLayout(opts.ociLayoutPath, image, open, refs[0]?.tag ? { tag: refs[0].tag } : {});
    await attachToLayout(opts.ociLayoutPath, [...(await statements), ...signatures.slice(0, 1).map((s) => s.artifact)]);
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
  // after the digest files: a registry refusing artifacts fails the build with the image pushed and recorded
  const made = await statements;
  if ((made.length > 0 || signatures.length > 0) && !opts.noPush) await attachToRegistry(client, repos, subject, made, signatures, opts.emit);
  return pushed;
}
