// OCI 1.1 referrers: artifacts as image manifests with `subject` + `artifactType`, stored through the referrers API or,
// where the registry has none, the referrers tag schema (an index under the tag `sha256-<hex>` of the subject).
import { setTimeout as sleep } from 'node:timers/promises';
import { BuilderError } from '../errors.js';
import { digestHex, sha256, type Digest } from '../digest/index.js';
import { bufferStream, MediaType, parseIndex, type Descriptor, type Index } from '../image/index.js';
import { withDigest, withTag, type ImageRef } from '../reference/index.js';
import { isImmutableTagError, type RegistryClient } from '../registry/index.js';

/** The OCI empty descriptor's blob ("{}"), the config of an artifact that has none. */
export const EMPTY_JSON = Buffer.from('{}');
export const EMPTY_CONFIG: Descriptor = { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(EMPTY_JSON), size: 2 };

/** One blob of an artifact, held in memory (statements and signatures are small). */
export interface ArtifactBlob {
  mediaType: string;
  bytes: Buffer;
  annotations?: Record<string, string>;
}

/** An artifact manifest ready to push: its exact bytes, its blobs, and the descriptor a referrers index lists. */
export interface Artifact {
  artifactType: string;
  bytes: Buffer;
  descriptor: Descriptor & { artifactType: string };
  blobs: ArtifactBlob[];
}

/** An OCI image manifest naming `subject`, with `artifactType` and the empty config (the image-spec 1.1 guidance). */
export function artifactManifest(subject: Descriptor, artifactType: string, layers: ArtifactBlob[], annotations: Record<string, string> = {}): Artifact {
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    artifactType,
    config: EMPTY_CONFIG,
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: sha256(l.bytes), size: l.bytes.length, ...(l.annotations ? { annotations: l.annotations } : {}) })),
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const descriptor = {
    mediaType: MediaType.OciManifest, digest: sha256(bytes), size: bytes.length, artifactType,
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
  return { artifactType, bytes, descriptor, blobs: [{ mediaType: EMPTY_CONFIG.mediaType, bytes: EMPTY_JSON }, ...layers] };
}

/** The referrers tag schema's tag for a subject digest: `<alg>-<hex>`. */
export function referrersTag(subject: Digest): string {
  return `sha256-${digestHex(subject)}`;
}

function refused(what: string, repo: ImageRef, err: unknown): BuilderError {
  return new BuilderError('ATTEST_PUSH_REFUSED', `${what} for ${repo.name}: the registry refused it (${(err as Error).message})`, {
    hint: 'the image itself is pushed and unchanged; the registry does not store OCI artifact manifests or the referrers tag (use a registry with OCI 1.1 support, or leave out --sbom/--provenance/--sign-key)',
    cause: err,
  });
}

/** Reads an index by tag, or undefined when the tag does not exist. */
async function readIndexTag(client: RegistryClient, ref: ImageRef): Promise<{ index: Index } | undefined> {
  try {
    const m = await client.getManifest(ref, [MediaType.OciIndex]);
    return { index: parseIndex(m.bytes, `referrers index ${ref}`) };
  } catch (err) {
    if (err instanceof BuilderError && (err.code === 'REGISTRY_MANIFEST_UNKNOWN' || err.code === 'REGISTRY_NOT_FOUND')) return undefined;
    throw err;
  }
}

/**
 * Adds `entries` to the index under `tag`, keeping every entry another tool put there. Distribution has no
 * conditional PUT, so a concurrent writer is caught after the fact: read back after a random pause, and merge again
 * while one of ours is missing (the other writer dropped it). `attempts` bounds the loop.
 */
export async function mergeIndexTag(client: RegistryClient, repo: ImageRef, tag: string, entries: Descriptor[], attempts = 5): Promise<void> {
  const ref = withTag(repo, tag);
  const missing = (idx: Index | undefined): Descriptor[] => entries.filter((e) => !idx?.manifests.some((m) => m.digest === e.digest));
  let current = await readIndexTag(client, ref);
  for (let i = 0; i < attempts; i++) {
    const add = missing(current?.index);
    if (add.length === 0) return;
    const index: Index = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [...(current?.index.manifests ?? []), ...add] };
    await client.putManifest(ref, Buffer.from(JSON.stringify(index)), MediaType.OciIndex);
    await sleep(150 + Math.floor(Math.random() * 250));
    current = await readIndexTag(client, ref);
  }
  if (missing(current?.index).length > 0) {
    throw new BuilderError('ATTEST_TAG_CONFLICT', `the referrers tag ${ref} kept changing under ${attempts} updates: another writer replaces it`, {
      hint: 'the image and its artifacts are pushed; rerun to list them under the tag, or use a registry with the referrers API',
    });
  }
}

/** Pushes the artifact's blobs and manifest (by digest) into repo; returns the OCI-Subject the registry answered, if any. */
export async function pushArtifact(client: RegistryClient, repo: ImageRef, artifact: Artifact): Promise<string | undefined> {
  try {
    for (const b of artifact.blobs) {
      await client.pushBlob(repo, { digest: sha256(b.bytes), size: b.bytes.length }, () => bufferStream(b.bytes));
    }
    return (await client.pushManifest(withDigest(repo, artifact.descriptor.digest), artifact.bytes, MediaType.OciManifest)).subject;
  } catch (err) {
    if (err instanceof BuilderError && /^REGISTRY_(MANIFEST_INVALID|UNSUPPORTED|DENIED|HTTP_ERROR|MANIFEST_BLOB_UNKNOWN)$/.test(err.code)) throw refused(`${artifact.artifactType} artifact`, repo, err);
    throw err;
  }
}

/**
 * Makes pushed referrers of `subject` findable: where the registry answered OCI-Subject (it indexes them itself)
 * nothing more, else they are merged into the referrers tag in one update.
 */
export async function registerReferrers(client: RegistryClient, repo: ImageRef, subject: Digest, pushed: ReadonlyArray<{ descriptor: Descriptor; said: string | undefined }>): Promise<'api' | 'tag'> {
  const untracked = pushed.filter((p) => p.said !== subject).map((p) => p.descriptor);
  if (untracked.length === 0) return 'api';
  try {
    await mergeIndexTag(client, repo, referrersTag(subject), untracked);
  } catch (err) {
    if (err instanceof BuilderError && (isImmutableTagError(err) || err.code === 'REGISTRY_MANIFEST_INVALID' || err.code === 'REGISTRY_DENIED')) throw refused(`referrers tag ${referrersTag(subject)}`, repo, err);
    throw err;
  }
  return 'tag';
}

/** The referrers of `subject` in repo: through the API where the registry has it, else from the referrers tag. */
export async function listReferrers(client: RegistryClient, repo: ImageRef, subject: Digest): Promise<{ via: 'api' | 'tag'; manifests: Descriptor[] }> {
  const api = await client.getReferrers(repo, subject);
  if (api) return { via: 'api', manifests: api.manifests };
  const tagged = await readIndexTag(client, withTag(repo, referrersTag(subject)));
  return { via: 'tag', manifests: tagged?.index.manifests ?? [] };
}
