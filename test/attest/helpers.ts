// Shared by the supply-chain tests: blobs read straight from the registry (digest checked), P-256 key pairs from openssl.
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import type { TestRegistry } from '../support/registry.js';
import { run } from '../support/tools.js';

/** A blob of `repo` as the registry serves it; its bytes must hash to `digest`. */
export async function registryBlob(reg: TestRegistry, repo: string, digest: string): Promise<Buffer> {
  const res = await fetch(`${reg.url}/v2/${repo}/blobs/${digest}`);
  expect(res.status).toBe(200);
  const b = Buffer.from(await res.arrayBuffer());
  expect(`sha256:${createHash('sha256').update(b).digest('hex')}`).toBe(digest);
  return b;
}

/** openssl's P-256 private key at `pem` and its public key at `pub`. */
export async function ecKeyPair(pem: string, pub: string): Promise<void> {
  await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', pem]);
  await run('openssl', ['pkey', '-in', pem, '-pubout', '-out', pub]);
}
