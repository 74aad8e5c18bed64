// cosign-compatible key signatures: the "simple signing" payload naming the image digest, ECDSA P-256 / SHA-256, DER,
// base64 in the layer annotation dev.cosignproject.cosign/signature (the format of cosign's pkg/oci/static).
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { BuilderError } from '../errors.js';
import type { Digest } from '../digest/index.js';
import type { ImageRef } from '../reference/index.js';

export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
/** cosign's artifactType for a signature stored as an OCI 1.1 referrer (internal/pkg/oci/remote ArtifactType("sig")). */
export const SIGNATURE_ARTIFACT_TYPE = 'application/vnd.dev.cosign.artifact.sig.v1+json';

/** cosign's payload, byte for byte as its Go encoder writes it (keys in this order, no spaces, "optional":null). */
export function simpleSigningPayload(repo: ImageRef, digest: Digest): Buffer {
  return Buffer.from(JSON.stringify({
    critical: { identity: { 'docker-reference': repo.name }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' },
    optional: null,
  }));
}

function checkCurve(key: KeyObject, where: string): void {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType !== 'ec' || curve !== 'prime256v1') {
    throw new BuilderError('SIGN_KEY_UNSUPPORTED', `${where} is a${key.asymmetricKeyType === 'ec' ? `n EC ${curve ?? '?'}` : ` ${key.asymmetricKeyType ?? 'unknown'}`} key; builder signs with ECDSA P-256 only (what cosign verifies with SHA-256)`, {
      hint: 'make a P-256 key: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem (public half: openssl pkey -in key.pem -pubout)',
    });
  }
}

/** A PEM private key (PKCS#8 or SEC1 EC, unencrypted), checked to be ECDSA P-256. `where` names it in errors. */
export function parseSigningKey(pem: string, where: string): KeyObject {
  if (pem.includes('ENCRYPTED SIGSTORE PRIVATE KEY') || pem.includes('ENCRYPTED PRIVATE KEY')) {
    throw new BuilderError('SIGN_KEY_UNREADABLE', `${where} is an encrypted key; builder reads unencrypted PEM keys only`, {
      hint: 'decrypt it (openssl pkcs8 -in enc.pem -out key.pem) and pass it through a masked CI variable: --sign-key env://NAME',
    });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new BuilderError('SIGN_KEY_UNREADABLE', `${where} is not a PEM private key (${(err as Error).message})`, {
      hint: 'give a PEM PKCS#8 ECDSA P-256 key ("-----BEGIN PRIVATE KEY-----"), e.g. from openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256',
      cause: err,
    });
  }
  checkCurve(key, where);
  return key;
}

/** A PEM public key (SPKI, what `cosign generate-key-pair` writes as cosign.pub), checked to be ECDSA P-256. */
export function parsePublicKey(pem: string, where: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new BuilderError('VERIFY_KEY_UNREADABLE', `${where} is not a PEM public key (${(err as Error).message})`, {
      hint: 'give the public half of the signing key: openssl pkey -in key.pem -pubout -out key.pub',
      cause: err,
    });
  }
  checkCurve(key, where);
  return key;
}

/** The base64 DER ECDSA-SHA256 signature of the payload. */
export function signPayload(key: KeyObject, payload: Buffer): string {
  return sign('sha256', payload, { key, dsaEncoding: 'der' }).toString('base64');
}

export function verifyPayload(key: KeyObject, payload: Buffer, signatureB64: string): boolean {
  try {
    return verify('sha256', payload, { key, dsaEncoding: 'der' }, Buffer.from(signatureB64, 'base64'));
  } catch {
    return false;
  }
}
