// cosign's own storage of key signatures: an OCI manifest under the tag `sha256-<hex>.sig`, one simple-signing layer
// per signature (pkg/oci/remote SignatureTag; a second signer appends a layer). Also read back for `builder verify`.
import { setTimeout as sleep } from 'node:timers/promises';
import { BuilderError } from '../errors.js';
import { digestHex, sha256, type Digest } from '../digest/index.js';
import { bufferStream, MediaType, parseManifest, type Descriptor, type Manifest } from '../image/index.js';
import { withTag, type ImageRef } from '../reference/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { ArtifactBlob } from './referrers.js';
import { SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE } from './sign.js';

export function signatureTag(subject: Digest): string {
  return `sha256-${digestHex(subject)}.sig`;
}

/** The manifest under cosign's `.sig` tag `ref`, or undefined when there is none. */
export async function readSigManifest(client: RegistryClient, ref: ImageRef): Promise<Manifest | undefined> {
  try {
    const m = await client.getManifest(ref);
    return parseManifest(m.bytes, `signature manifest ${ref}`);
  } catch (err) {
    if (err instanceof BuilderError && (err.code === 'REGISTRY_MANIFEST_UNKNOWN' || err.code === 'REGISTRY_NOT_FOUND')) return undefined;
    throw err;
  }
}

const sameSig = (a: Descriptor, b: Descriptor): boolean => a.digest === b.digest && a.annotations?.[SIGNATURE_ANNOTATION] === b.annotations?.[SIGNATURE_ANNOTATION];

/** The signature manifest: the layers, and a config listing them as diff_ids (what ggcr's empty image + AppendLayers gives cosign). */
function sigManifest(layers: Descriptor[]): { manifest: Buffer; config: Buffer } {
  const config = Buffer.from(JSON.stringify({
    architecture: '', created: '0001-01-01T00:00:00Z', history: layers.map(() => ({ created: '0001-01-01T00:00:00Z' })), os: '',
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) }, config: {},
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, size: config.length, digest: sha256(config) },
    layers,
  }));
  return { manifest, config };
}

/** Adds one signature layer to cosign's `.sig` tag of `subject` in repo, keeping the signatures already there. */
export async function pushCosignSignature(client: RegistryClient, repo: ImageRef, subject: Digest, layer: ArtifactBlob, attempts = 5): Promise<void> {
  const ref = withTag(repo, signatureTag(subject));
  const desc: Descriptor = { mediaType: layer.mediaType, digest: sha256(layer.bytes), size: layer.bytes.length, ...(layer.annotations ? { annotations: layer.annotations } : {}) };
  await client.pushBlob(repo, desc, () => bufferStream(layer.bytes));
  let current = await readSigManifest(client, ref);
  for (let i = 0; i < attempts && !current?.layers.some((l) => sameSig(l, desc)); i++) {
    const { manifest, config } = sigManifest([...(current?.layers ?? []), desc]);
    await client.pushBlob(repo, { digest: sha256(config), size: config.length }, () => bufferStream(config));
    await client.putManifest(ref, manifest, MediaType.OciManifest);
    // no conditional PUT on distribution: read back after a pause; a concurrent signer that dropped ours -> append again
    await sleep(150 + Math.floor(Math.random() * 250));
    current = await readSigManifest(client, ref);
  }
  if (!current?.layers.some((l) => sameSig(l, desc))) {
    throw new BuilderError('ATTEST_TAG_CONFLICT', `cosign's signature tag ${ref} kept changing under ${attempts} updates`, {
      hint: 'the image is pushed and its signature is stored as a referrer; rerun to add it to the .sig tag',
    });
  }
}

/** One signature found for an image: the payload bytes and the base64 signature. */
export interface FoundSignature {
  payload: Buffer;
  signature: string;
  source: string;
}

/** The simple-signing layers of a signature manifest, payloads read (verified against their digests). */
export async function signaturesIn(client: RegistryClient, repo: ImageRef, manifest: Manifest, source: string): Promise<FoundSignature[]> {
  const out: FoundSignature[] = [];
  for (const l of manifest.layers) {
    const sig = l.annotations?.[SIGNATURE_ANNOTATION];
    if (l.mediaType !== SIMPLE_SIGNING_MEDIA_TYPE || sig === undefined || l.size > 1024 * 1024) continue;
    out.push({ payload: await client.readBlob(repo, l), signature: sig, source });
  }
  return out;
}

/** The signatures in cosign's `.sig` tag of `subject`. */
export async function cosignSignatures(client: RegistryClient, repo: ImageRef, subject: Digest): Promise<FoundSignature[]> {
  const ref = withTag(repo, signatureTag(subject));
  const m = await readSigManifest(client, ref);
  return m ? signaturesIn(client, repo, m, ref.toString()) : [];
}
