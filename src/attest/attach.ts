// Attestations and signatures of ONE pushed image (call once per platform image of an index): made before the push,
// attached after it as referrers of the image's digest. The image itself is never changed or undone.
import type { KeyObject } from 'node:crypto';
import type { Digest } from '../digest/index.js';
import { OciLayout, type Descriptor, type Image } from '../image/index.js';
import type { ImageRef } from '../reference/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { EventSink } from '../util/events.js';
import { pushCosignSignature } from './cosign.js';
import { artifactManifest, pushArtifact, referrersTag, registerReferrers, type Artifact, type ArtifactBlob } from './referrers.js';
import { scanImage, type LayerChanges } from './scan.js';
import { SIGNATURE_ANNOTATION, SIGNATURE_ARTIFACT_TYPE, SIMPLE_SIGNING_MEDIA_TYPE, signPayload, simpleSigningPayload } from './sign.js';
import {
  IN_TOTO_MEDIA_TYPE, PREDICATE_ANNOTATION, SLSA_PREDICATE, SPDX_PREDICATE, slsaProvenance, spdxDocument, statement, type ProvenanceInput,
} from './statements.js';

export interface AttestOptions {
  sbom: boolean;
  /** Provenance of this build (finishedOn filled in here); absent: none. */
  provenance?: Omit<ProvenanceInput, 'finishedOn'>;
  /** Layers built in this run, by digest: what they do, taken while they were written (their blobs are not read again). */
  builtLayers?: ReadonlyMap<Digest, LayerChanges>;
  /** "builder 0.1.0", for the SBOM's creator. */
  tool: string;
  /** The SBOM's creation time (the image's created time: reproducible builds stay reproducible). */
  created: string;
  emit?: EventSink;
  /** The zstd program (the CLI's Host.zstd), for zstd layers; absent: one in the standard dirs. */
  zstd?: string;
}

/** The image as pushed: its manifest descriptor (the referrers' subject) and its layers. */
export interface PushedImage {
  descriptor: Descriptor;
  image: Image;
}

export function imageDescriptor(image: Image): Descriptor {
  return { mediaType: image.mediaType, digest: image.manifestDigest, size: image.manifestBytes.length };
}

function statementArtifact(subject: Descriptor, predicateType: string, body: unknown): Artifact {
  const annotations = { [PREDICATE_ANNOTATION]: predicateType };
  return artifactManifest(subject, IN_TOTO_MEDIA_TYPE, [{ mediaType: IN_TOTO_MEDIA_TYPE, bytes: Buffer.from(JSON.stringify(body)), annotations }], annotations);
}

/** The SBOM and provenance artifacts of the image (`names`: the repositories it goes to, the statements' subjects). */
export async function makeStatements(pushed: PushedImage, names: readonly string[], opts: AttestOptions): Promise<Artifact[]> {
  const { descriptor: subject, image } = pushed;
  const out: Artifact[] = [];
  if (opts.sbom) {
    const t0 = Date.now();
    const scan = await scanImage(image.layers, opts.builtLayers, opts.zstd);
    for (const s of scan.skipped) opts.emit?.({ type: 'warning', msg: `SBOM: ${s}` });
    const doc = spdxDocument({ name: names[0] ?? subject.digest, digest: subject.digest, created: opts.created, tool: opts.tool, packages: scan.packages, skipped: scan.skipped });
    out.push(statementArtifact(subject, SPDX_PREDICATE, statement(names, subject.digest, SPDX_PREDICATE, doc)));
    opts.emit?.({ type: 'sbom-made', packages: scan.packages.length, layers: image.layers.length, ms: Date.now() - t0 });
  }
  if (opts.provenance) {
    const predicate = slsaProvenance({ ...opts.provenance, finishedOn: new Date().toISOString() });
    out.push(statementArtifact(subject, SLSA_PREDICATE, statement(names, subject.digest, SLSA_PREDICATE, predicate)));
  }
  return out;
}

/** A signature of the image for one repository: cosign's layer (for the .sig tag) and the same as a referrer. */
export interface RepoSignature {
  repo: ImageRef;
  layer: ArtifactBlob;
  artifact: Artifact;
}

/** Signs the image digest for each repository (the payload names the repository: cosign's docker-reference). */
export function signImage(key: KeyObject, repos: readonly ImageRef[], subject: Descriptor): RepoSignature[] {
  return repos.map((repo) => {
    const payload = simpleSigningPayload(repo, subject.digest);
    const layer = { mediaType: SIMPLE_SIGNING_MEDIA_TYPE, bytes: payload, annotations: { [SIGNATURE_ANNOTATION]: signPayload(key, payload) } };
    return { repo, layer, artifact: artifactManifest(subject, SIGNATURE_ARTIFACT_TYPE, [layer]) };
  });
}

/** Pushes the statements and the repository's signature to every repository, as referrers of the image. */
export async function attachToRegistry(client: RegistryClient, repos: readonly ImageRef[], subject: Descriptor, statements: readonly Artifact[], signatures: readonly RepoSignature[], emit?: EventSink): Promise<void> {
  for (const repo of repos) {
    const sig = signatures.find((s) => s.repo.name === repo.name);
    const artifacts = [...statements, ...(sig ? [sig.artifact] : [])];
    const pushed = [];
    for (const a of artifacts) pushed.push({ descriptor: a.descriptor, said: await pushArtifact(client, repo, a) });
    const via = await registerReferrers(client, repo, subject.digest, pushed);
    if (sig) await pushCosignSignature(client, repo, subject.digest, sig.layer);
    emit?.({ type: 'referrers-attached', count: artifacts.length, repository: repo.name, subject: subject.digest, ...(via === 'api' ? {} : { tag: referrersTag(subject.digest) }), signature: sig !== undefined });
  }
}

/** Writes artifacts into an OCI layout beside the image, listed untagged in index.json (how ORAS keeps referrers). */
export async function attachToLayout(dir: string, artifacts: readonly Artifact[]): Promise<void> {
  const layout = await OciLayout.create(dir);
  for (const a of artifacts) {
    for (const b of a.blobs) await layout.writeBytes(b.bytes, b.mediaType);
    await layout.setRef(await layout.writeBytes(a.bytes, a.descriptor.mediaType));
  }
}
