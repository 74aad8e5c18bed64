// Byte formats checked against their sources: cosign's simple-signing payload (cosign's own test string), signatures
// openssl verifies, SLSA provenance min vs max, GitLab CI metadata.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parsePublicKey, parseSigningKey, signPayload, simpleSigningPayload, verifyPayload } from '../../src/attest/index.js';
import { slsaProvenance, type ProvenanceInput } from '../../src/attest/statements.js';
import { parseReference } from '../../src/reference/index.js';

const DIGEST = 'sha256:4aa3054270f7a70b4528f2064ee90961788e1e1518703592ae4463de3b889dec';

describe('cosign simple signing', () => {
  it('writes the payload byte for byte as cosign does (pkg/cosign/obsolete_test.go)', () => {
    const payload = simpleSigningPayload(parseReference('docker.io/namespace/image:tag'), DIGEST);
    expect(payload.toString('utf8')).toBe('{"critical":{"identity":{"docker-reference":"index.docker.io/namespace/image"},"image":{"docker-manifest-digest":"sha256:4aa3054270f7a70b4528f2064ee90961788e1e1518703592ae4463de3b889dec"},"type":"cosign container image signature"},"optional":null}');
  });

  it('signs so that openssl verifies, and refuses other curves and key kinds with their codes', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'builder-sign-'));
    try {
      const key = path.join(dir, 'k.pem');
      execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]); // SEC1 "EC PRIVATE KEY"
      const pub = execFileSync('openssl', ['ec', '-in', key, '-pubout'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
      const priv = parseSigningKey(readFileSync(key, 'utf8'), key);
      const payload = simpleSigningPayload(parseReference('127.0.0.1:5000/app'), DIGEST);
      const sig = signPayload(priv, payload);
      await writeFile(path.join(dir, 'p'), payload);
      await writeFile(path.join(dir, 's'), Buffer.from(sig, 'base64'));
      await writeFile(path.join(dir, 'pub.pem'), pub);
      expect(execFileSync('openssl', ['dgst', '-sha256', '-verify', path.join(dir, 'pub.pem'), '-signature', path.join(dir, 's'), path.join(dir, 'p')]).toString()).toContain('Verified OK');
      expect(verifyPayload(parsePublicKey(pub, 'pub'), payload, sig)).toBe(true);
      expect(verifyPayload(parsePublicKey(pub, 'pub'), Buffer.concat([payload, Buffer.from(' ')]), sig)).toBe(false);

      const rsa = execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024']).toString();
      expect(() => parseSigningKey(rsa, 'rsa.pem')).toThrow(expect.objectContaining({ code: 'SIGN_KEY_UNSUPPORTED' }));
      const ed = execFileSync('openssl', ['genpkey', '-algorithm', 'ED25519']).toString();
      expect(() => parseSigningKey(ed, 'ed.pem')).toThrow(expect.objectContaining({ code: 'SIGN_KEY_UNSUPPORTED' }));
      const enc = execFileSync('openssl', ['pkcs8', '-topk8', '-in', key, '-passout', 'pass:x']).toString();
      expect(() => parseSigningKey(enc, 'enc.pem')).toThrow(expect.objectContaining({ code: 'SIGN_KEY_UNREADABLE' }));
      expect(() => parsePublicKey('junk', 'x.pub')).toThrow(expect.objectContaining({ code: 'VERIFY_KEY_UNREADABLE' }));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('SLSA provenance', () => {
  const input: ProvenanceInput = {
    mode: 'min',
    builder: { id: 'https://gitlab.example/g/p/-/runners/7', version: '0.1.0' },
    dockerfile: { path: 'Dockerfile', digest: DIGEST },
    platform: 'linux/amd64',
    buildArgs: { GREETING: 'hello' },
    contextDigest: DIGEST,
    dependencies: [{ uri: 'https://example.com/a.tgz', digest: DIGEST }, { uri: 'https://example.com/a.tgz', digest: DIGEST }],
    ci: { GITLAB_CI: 'true', CI_JOB_URL: 'https://gitlab.example/g/p/-/jobs/9', CI_COMMIT_SHA: 'abc', CI_JOB_TOKEN: 'glcbt-secret' },
    startedOn: '2026-12-07T10:00:00.000Z',
    finishedOn: '2026-12-07T10:01:00.000Z',
  };

  it('min leaves out build args and the context; max has them; secrets and tokens never', () => {
    const min = slsaProvenance(input) as any;
    expect(min.buildDefinition.externalParameters).toEqual({ dockerfile: { path: 'Dockerfile', digest: { sha256: DIGEST.slice(7) } }, platform: 'linux/amd64' });
    const max = slsaProvenance({ ...input, mode: 'max' }) as any;
    expect(max.buildDefinition.externalParameters.buildArgs).toEqual({ GREETING: 'hello' });
    expect(max.buildDefinition.externalParameters.context).toEqual({ digest: { sha256: DIGEST.slice(7) } });
    // duplicates collapse; the Dockerfile is a dependency too
    expect(max.buildDefinition.resolvedDependencies).toHaveLength(2);
    expect(max.runDetails.metadata).toMatchObject({ invocationId: 'https://gitlab.example/g/p/-/jobs/9', gitlab: { CI_COMMIT_SHA: 'abc' } });
    expect(JSON.stringify(max)).not.toContain('glcbt-secret');
  });
});
