// Reading what is attached to an image: signatures checked with a public key, attestations listed or printed, and
// referrers carried along by `builder copy`.
import type { KeyObject } from 'node:crypto';
import { BuilderError } from '../errors.js';
import type { Digest } from '../digest/index.js';
import {
  bufferStream, formatPlatform, isIndexMediaType, MediaType, OciLayout, parseIndex, parseManifest, platformMatches, type Descriptor, type Manifest, type Platform,
} from '../image/index.js';
import { withDigest, withTag, type ImageRef } from '../reference/index.js';
import type { RegistryClient } from '../registry/index.js';
import { cosignSignatures, pushCosignSignature, readSigManifest, signatureTag, signaturesIn, type FoundSignature } from './cosign.js';
import { listReferrers, registerReferrers } from './referrers.js';
import { SIGNATURE_ARTIFACT_TYPE, verifyPayload } from './sign.js';
import { IN_TOTO_MEDIA_TYPE, PREDICATE_ANNOTATION } from './statements.js';

/** The digest `ref` names (its tag resolved). */
export async function resolveDigest(client: RegistryClient, ref: ImageRef): Promise<Digest> {
  if (ref.digest) return ref.digest;
  const head = await client.headManifest(ref);
  if (!head) throw new BuilderError('IMAGE_NOT_FOUND', `${ref} does not exist`, { hint: 'check the reference (and that you are logged in to its registry)' });
  return head.digest;
}

async function readManifest(client: RegistryClient, repo: ImageRef, d: Descriptor): Promise<Manifest> {
  const m = await client.getManifest(withDigest(repo, d.digest));
  return parseManifest(m.bytes, `referrer ${d.digest}`);
}

export interface VerifiedSignature {
  source: string;
  payload: unknown;
}

/** Signatures of `ref`'s digest (cosign's .sig tag and signature referrers) valid under `key`, and how many were checked. */
export async function verifyImage(client: RegistryClient, ref: ImageRef, key: KeyObject): Promise<{ digest: Digest; valid: VerifiedSignature[]; checked: number }> {
  const digest = await resolveDigest(client, ref);
  const found: FoundSignature[] = await cosignSignatures(client, ref, digest);
  const { manifests } = await listReferrers(client, ref, digest);
  for (const d of manifests.filter((m) => (m as { artifactType?: string }).artifactType === SIGNATURE_ARTIFACT_TYPE)) {
    found.push(...(await signaturesIn(client, ref, await readManifest(client, ref, d), `referrer ${d.digest}`)));
  }
  const valid: VerifiedSignature[] = [];
  for (const s of found) {
    if (!verifyPayload(key, s.payload, s.signature)) continue;
    let payload: { critical?: { image?: { 'docker-manifest-digest'?: string }; type?: string } };
    try {
      payload = JSON.parse(s.payload.toString('utf8')) as typeof payload;
    } catch {
      continue;
    }
    // a valid signature of another image (a copied .sig tag, a replayed payload) does not count
    if (payload.critical?.image?.['docker-manifest-digest'] === digest && payload.critical.type === 'cosign container image signature') valid.push({ source: s.source, payload });
  }
  return { digest, valid, checked: found.length };
}

export interface AttestationInfo {
  digest: Digest;
  artifactType: string;
  predicateType?: string;
  statement?: unknown;
}

/** The referrers of one manifest digest; with `predicateType` only those, each with its in-toto statement read. */
export interface AttestationList {
  digest: Digest;
  via: 'api' | 'tag';
  items: AttestationInfo[];
}

/** An index's platform image and its referrers. */
export interface PlatformAttestations extends AttestationList {
  platform: string;
}

async function attestationsOf(client: RegistryClient, ref: ImageRef, digest: Digest, predicateType?: string): Promise<AttestationList> {
  const { via, manifests } = await listReferrers(client, ref, digest);
  const items: AttestationInfo[] = [];
  for (const d of manifests) {
    const artifactType = (d as { artifactType?: string }).artifactType ?? '';
    const m = await readManifest(client, ref, d);
    const layer = m.layers.find((l) => l.mediaType === IN_TOTO_MEDIA_TYPE);
    const pt = layer?.annotations?.[PREDICATE_ANNOTATION] ?? d.annotations?.[PREDICATE_ANNOTATION];
    if (predicateType !== undefined && pt !== predicateType) continue;
    const info: AttestationInfo = { digest: d.digest, artifactType: artifactType || ((m as { artifactType?: string }).artifactType ?? m.config.mediaType), ...(pt ? { predicateType: pt } : {}) };
    if (layer && predicateType !== undefined) info.statement = JSON.parse((await client.readBlob(ref, layer)).toString('utf8'));
    items.push(info);
  }
  return { digest, via, items };
}

/**
 * The referrers of `ref`'s digest and, when it is a multi-platform index, of each platform image it lists (a
 * multi-platform build attaches the SBOM and provenance per image, the index gets only its signature). `platform`
 * keeps one image of the index (PLATFORM_NOT_FOUND if it has none, FLAG_INVALID if `ref` is not an index); the index's
 * own referrers are listed either way.
 */
export async function readAttestations(
  client: RegistryClient, ref: ImageRef, predicateType?: string, platform?: Platform,
): Promise<AttestationList & { platforms?: PlatformAttestations[] }> {
  const digest = await resolveDigest(client, ref);
  const top = await client.getManifest(withDigest(ref, digest));
  if (!isIndexMediaType(top.mediaType)) {
    if (platform) throw new BuilderError('FLAG_INVALID', `${ref.name}@${digest} is a single image, not a multi-platform index: --platform ${formatPlatform(platform)} has nothing to pick`, { hint: 'leave out --platform for a single image' });
    return attestationsOf(client, ref, digest, predicateType);
  }
  // entries without a platform, or unknown/unknown (BuildKit's attestation manifests), are not images of a platform
  let entries = parseIndex(top.bytes, `index ${digest}`).manifests.filter((m) => m.platform && m.platform.os !== 'unknown');
  if (platform) {
    entries = entries.filter((m) => platformMatches(platform, m.platform));
    if (entries.length === 0) throw new BuilderError('PLATFORM_NOT_FOUND', `${ref.name}@${digest} has no image for ${formatPlatform(platform)}`, { hint: '`builder attestations REF` lists the platforms the index holds' });
  }
  const own = await attestationsOf(client, ref, digest, predicateType);
  const platforms: PlatformAttestations[] = [];
  for (const m of entries) platforms.push({ platform: formatPlatform(m.platform!), ...(await attestationsOf(client, ref, m.digest, predicateType)) });
  return { ...own, digest, platforms };
}

/** Copies the referrers of `subject` (and cosign's .sig tag) from one repository to another; returns how many. */
export async function copyReferrers(client: RegistryClient, src: ImageRef, dst: ImageRef, subject: Digest): Promise<number> {
  const { manifests } = await listReferrers(client, src, subject);
  const mount = src.registry === dst.registry ? { mountFrom: [src] } : {};
  const pushed = [];
  for (const d of manifests) {
    const m = await client.getManifest(withDigest(src, d.digest));
    const doc = parseManifest(m.bytes, `referrer ${d.digest}`);
    for (const b of [doc.config, ...doc.layers]) await client.pushBlob(dst, b, () => client.openBlob(src, b), mount);
    pushed.push({ descriptor: d, said: (await client.pushManifest(withDigest(dst, d.digest), m.bytes, m.mediaType || MediaType.OciManifest)).subject });
  }
  if (pushed.length > 0) await registerReferrers(client, dst, subject, pushed);
  const sigManifest = await readSigManifest(client, withTag(src, signatureTag(subject)));
  for (const l of sigManifest?.layers ?? []) {
    const bytes = await client.readBlob(src, l);
    await pushCosignSignature(client, dst, subject, { mediaType: l.mediaType, bytes, ...(l.annotations ? { annotations: l.annotations } : {}) });
  }
  return manifests.length + (sigManifest ? 1 : 0);
}

/** The artifacts of an OCI layout (index.json entries) whose subject is `subject`. */
async function layoutReferrers(layout: OciLayout, subject: Digest): Promise<Array<{ descriptor: Descriptor; bytes: Buffer; manifest: Manifest & { subject?: Descriptor } }>> {
  const out = [];
  for (const d of (await layout.readIndex()).manifests) {
    if (d.mediaType !== MediaType.OciManifest || d.digest === subject) continue;
    const bytes = await layout.readBlob(d);
    const manifest = parseManifest(bytes, `${layout.dir} ${d.digest}`) as Manifest & { subject?: Descriptor; artifactType?: string };
    if (manifest.subject?.digest !== subject) continue;
    out.push({ descriptor: { ...d, ...(manifest.artifactType ? { artifactType: manifest.artifactType } : {}) } as Descriptor, bytes, manifest });
  }
  return out;
}

/** Pushes the referrers an OCI layout holds for `subject` (what --oci-layout-path wrote) to a registry repository. */
export async function copyLayoutReferrers(client: RegistryClient, dir: string, dst: ImageRef, subject: Digest): Promise<number> {
  const layout = await OciLayout.open(dir);
  const found = await layoutReferrers(layout, subject);
  const pushed = [];
  for (const r of found) {
    for (const b of [r.manifest.config, ...r.manifest.layers]) await client.pushBlob(dst, b, async () => bufferStream(await layout.readBlob(b)));
    pushed.push({ descriptor: r.descriptor, said: (await client.pushManifest(withDigest(dst, r.descriptor.digest), r.bytes, MediaType.OciManifest)).subject });
  }
  if (pushed.length > 0) await registerReferrers(client, dst, subject, pushed);
  // a signature found here also goes where cosign looks by default
  for (const r of found.filter((x) => (x.manifest as { artifactType?: string }).artifactType === SIGNATURE_ARTIFACT_TYPE)) {
    for (const l of r.manifest.layers) await pushCosignSignature(client, dst, subject, { mediaType: l.mediaType, bytes: await layout.readBlob(l), ...(l.annotations ? { annotations: l.annotations } : {}) });
  }
  return found.length;
}

/** Writes the referrers of `subject` in a registry repository into an OCI layout (untagged index.json entries). */
export async function copyReferrersToLayout(client: RegistryClient, src: ImageRef, dir: string, subject: Digest): Promise<number> {
  const { manifests } = await listReferrers(client, src, subject);
  const layout = await OciLayout.create(dir);
  for (const d of manifests) {
    const m = await client.getManifest(withDigest(src, d.digest));
    const doc = parseManifest(m.bytes, `referrer ${d.digest}`);
    for (const b of [doc.config, ...doc.layers]) if (!(await layout.hasBlob(b.digest))) await layout.writeBlob(b, await client.openBlob(src, b));
    await layout.setRef(await layout.writeBytes(m.bytes, m.mediaType));
  }
  return manifests.length;
}
