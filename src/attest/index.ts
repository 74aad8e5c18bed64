// Public surface of src/attest: SBOM, provenance and signatures attached to images as OCI 1.1 referrers.
export { attachToLayout, attachToRegistry, imageDescriptor, makeStatements, signImage, type AttestOptions, type PushedImage, type RepoSignature } from './attach.js';
export { artifactManifest, listReferrers, pushArtifact, registerReferrers, mergeIndexTag, referrersTag, EMPTY_CONFIG, type Artifact, type ArtifactBlob } from './referrers.js';
export { cosignSignatures, pushCosignSignature, signatureTag, signaturesIn, type FoundSignature } from './cosign.js';
export {
  parsePublicKey, parseSigningKey, signPayload, simpleSigningPayload, verifyPayload, SIGNATURE_ANNOTATION, SIGNATURE_ARTIFACT_TYPE, SIMPLE_SIGNING_MEDIA_TYPE,
} from './sign.js';
export { layerChangesOf, scanImage, type ImagePackage, type LayerChanges, type ScanResult } from './scan.js';
export * from './packages.js';
export { IN_TOTO_MEDIA_TYPE, PREDICATE_ANNOTATION, SLSA_PREDICATE, SPDX_PREDICATE, BUILD_TYPE, type ProvenanceInput, type Statement } from './statements.js';
export { verifyImage, readAttestations, copyReferrers, copyLayoutReferrers, copyReferrersToLayout, resolveDigest, type VerifiedSignature, type AttestationInfo, type AttestationList, type PlatformAttestations } from './read.js';
