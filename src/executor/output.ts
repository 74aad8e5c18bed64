// Outputs of a build: push to every destination (all blobs first, manifests last), OCI layout, docker-archive, digest files.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { attachToLayout, attachToRegistry, imageDescriptor, signImage, type Artifact, type RepoSignature } from '../attest/index.js';
import {
  imageBlobOpener, type Descriptor, writeDockerArchive, writeMultiPlatformArchive, writeOciLayout, writeOciLayoutIndex, type Image, type ImageIndex,
} from '../image/index.js';
import { parseReference, type ImageRef } from '../reference/index.js';
import { writeImage, writeIndex, type RegistryClient } from '../registry/index.js';
import type { BuildOptions } from './options.js';

export type OutputOptions = Pick<BuildOptions,
  'destinations' | 'noPush' | 'tarPath' | 'ociLayoutPath' | 'digestFile' | 'imageNameWithDigestFile' | 'imageNameTagWithDigestFile' | 'emit' | 'signal' | 'attest'>;

/** What is attached to one pushed manifest: its statements (still being made) and its signatures. */
interface Attachment {
  subject: Descriptor;
  statements: Promise<readonly Artifact[]>;
  signatures: RepoSignature[];
}

/**
 * Writes one image, or a multi-platform index of several (--platform a,b: every output gets the index then).
 * `statements[k]`: image k's SBOM/provenance artifacts, attached (with a signature when opts.attest has a key) after
 * the push. Still being made while the image is pushed (the SBOM scan is CPU, the push network); never left running after.
 * `ready`: what must have passed before any manifest is pushed or any file written (blobs go up meanwhile).
 */
export async function writeOutputs(
  client: RegistryClient, built: Image | ImageIndex, opts: OutputOptions, statements: ReadonlyArray<Promise<readonly Artifact[]>> = [], ready: Promise<void> = Promise.resolve(),
): Promise<Array<{ destination: string; digest: string }>> {
  for (const s of statements) s.catch(() => undefined); // observed below, or after a failure
  try {
    return await writeAll(client, built, opts, statements, ready);
  } finally {
    await Promise.allSettled(statements);
  }
}

async function writeAll(
  client: RegistryClient, built: Image | ImageIndex, opts: OutputOptions, statements: ReadonlyArray<Promise<readonly Artifact[]>>, ready: Promise<void>,
): Promise<Array<{ destination: string; digest: string }>> {
  const refs = opts.destinations.map((d) => parseReference(d));
  const tag = refs[0]?.tag ? { tag: refs[0].tag } : {};
  const signal = opts.signal ? { signal: opts.signal } : {};
  if (opts.ociLayoutPath || opts.tarPath) await ready;
  const repos = [...new Map(refs.map((r) => [r.name, r])).values()];
  const attachments = attachmentsOf(built, opts, statements, repos);
  let digest: string;
  let pushed: Array<{ destination: string; digest: string }> = [];
  if ('images' in built) {
    digest = built.digest;
    const withOpeners = { ...built, images: built.images.map((image) => ({ image, openBlob: imageBlobOpener(image) })) };
    if (opts.ociLayoutPath) await writeOciLayoutIndex(opts.ociLayoutPath, withOpeners, tag);
    if (opts.tarPath) await writeMultiPlatformArchive(opts.tarPath, withOpeners, tag);
    if (!opts.noPush) pushed = (await writeIndex(client, built, refs, { emit: opts.emit, ready, ...signal })).pushed;
  } else {
    digest = built.manifestDigest;
    const open = imageBlobOpener(built);
    if (opts.ociLayoutPath) await writeOciLayout(opts.ociLayoutPath, built, open, tag);
    if (opts.tarPath) await writeDockerArchive(opts.tarPath, built, open, { repoTags: refs.filter((r) => r.tag).map((r) => `${r.name}:${r.tag}`) });
    if (!opts.noPush) pushed = (await writeImage(client, built, refs, { emit: opts.emit, ready, ...signal })).pushed;
  }
  if (opts.ociLayoutPath) {
    for (const a of attachments) await attachToLayout(opts.ociLayoutPath, [...(await a.statements), ...a.signatures.slice(0, 1).map((s) => s.artifact)]);
    opts.emit({ type: 'output-written', kind: 'oci-layout', path: opts.ociLayoutPath });
  }
  if (opts.tarPath) opts.emit({ type: 'output-written', kind: 'images' in built ? 'oci-docker-archive' : 'docker-archive', path: opts.tarPath });
  const names = imageNameDigestLines(refs, digest, opts.imageNameTagWithDigestFile !== undefined);
  for (const [file, text] of [[opts.digestFile, digest], [opts.imageNameWithDigestFile, names], [opts.imageNameTagWithDigestFile, names]] as const) {
    if (!file) continue;
    // kaniko creates the file's directory (0700) before writing
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await writeFile(file, text);
  }
  // after the digest files: a registry refusing artifacts fails the build with the image pushed and recorded
  for (const a of attachments) {
    const made = await a.statements;
    if ((made.length > 0 || a.signatures.length > 0) && !opts.noPush) await attachToRegistry(client, repos, a.subject, made, a.signatures, opts.emit);
  }
  return pushed;
}

/**
 * One attachment per platform image (its statements and signature) and, for an index, the index's own signature, so
 * `builder verify REF` / `cosign verify` of the tag check what the tag names.
 */
function attachmentsOf(
  built: Image | ImageIndex, opts: OutputOptions, statements: ReadonlyArray<Promise<readonly Artifact[]>>, repoRefs: readonly ImageRef[],
): Attachment[] {
  const key = opts.attest?.signKey;
  const images = 'images' in built ? built.images : [built];
  const subjects = images.map((image, k) => ({ subject: imageDescriptor(image), statements: statements[k] ?? Promise.resolve([]) }));
  if ('images' in built) subjects.push({ subject: { mediaType: built.mediaType, digest: built.digest, size: built.bytes.length }, statements: Promise.resolve([]) });
  return subjects.map((s) => ({ ...s, signatures: key ? signImage(key, repoRefs, s.subject) : [] }));
}

/**
 * kaniko v1.24.0's digest-file text (pkg/executor/push.go DoPush): one `REPO@DIGEST` line per destination, or
 * `REPO:TAG@DIGEST` (TAG latest when the destination has none) as soon as --image-name-tag-with-digest-file is given;
 * kaniko writes that same text to both files, and scripts parse it.
 */
export function imageNameDigestLines(refs: readonly ImageRef[], digest: string, withTag: boolean): string {
  return refs.map((r) => `${r.name}${withTag ? `:${r.tag ?? 'latest'}` : ''}@${digest}\n`).join('');
}
