// --sbom, --provenance, --sign-key end to end against distribution 2.8 (no referrers API: the referrers tag schema),
// checked with skopeo (manifests) and openssl (the signature); verify, attestations and copy through the CLI.
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { readFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { artifactManifest, listReferrers, mergeIndexTag, pushArtifact, referrersTag } from '../../src/attest/index.js';
import { parseReference } from '../../src/reference/index.js';
import { RegistryClient } from '../../src/registry/index.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { useFixture } from '../support/fixture.js';
import { pushBusybox } from '../support/images.js';
import type { TestRegistry } from '../support/registry.js';
import { run, skopeoInspect } from '../support/tools.js';
import { ecKeyPair, registryBlob } from './helpers.js';
import { registryTags, Workspace } from '../executor/helpers.js';

const STATUS = `Package: hello
Status: install ok installed
Architecture: amd64
Version: 2.10-3

Package: oldtool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1
`;

const LOCK = JSON.stringify({
  name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true,
  packages: { '': { name: 'app', version: '1.0.0' }, 'node_modules/left-pad': { version: '1.3.0' }, 'node_modules/@scope/util': { version: '2.0.1' } },
});

interface Desc { mediaType: string; digest: string; size: number; artifactType?: string; annotations?: Record<string, string> }

describe('supply chain: SBOM, provenance and signature as OCI referrers', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  let ctx: string;

  const blob = (repo: string, digest: string): Promise<Buffer> => registryBlob(reg, repo, digest);
  const raw = (ref: string): Promise<any> => skopeoInspect(reg, ref, { raw: true });

  useFixture({ prefix: 'builder-attest-', format: 'oci' }, (f) => ({ reg, ws, base } = f));
  beforeAll(async () => {
    ctx = await ws.context('ctx', {
      Dockerfile: `FROM ${base}\nARG GREETING=hi\nCOPY status /var/lib/dpkg/status\nCOPY package-lock.json /app/package-lock.json\nRUN echo "$GREETING" > /greeting\n`,
      status: STATUS,
      'package-lock.json': LOCK,
    });
    await ecKeyPair(ws.path('key.pem'), ws.path('key.pub'));
    await ecKeyPair(ws.path('other.pem'), ws.path('other.pub'));
    await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384', '-out', ws.path('p384.pem')]);
  });

  it('pushes the image unchanged, with SBOM, provenance and a signature openssl verifies, under the referrers tag', async () => {
    const args = ['--reproducible', '--build-arg', 'GREETING=hello', '--image-format', 'oci'];
    const plain = await ws.buildOk(ctx, [...args, '--destination', `${reg.host}/test/plain:1`]);
    const gitlab = {
      GITLAB_CI: 'true', CI_SERVER_URL: 'https://gitlab.example', CI_PROJECT_PATH: 'g/app', CI_RUNNER_ID: '42',
      CI_JOB_URL: 'https://gitlab.example/g/app/-/jobs/7', CI_PIPELINE_URL: 'https://gitlab.example/g/app/-/pipelines/3', CI_COMMIT_SHA: 'c0ffee',
      CI_JOB_TOKEN: 'job-token-never-recorded', NPM_TOKEN: 'secret-never-recorded',
    };
    const digest = await ws.buildOk(ctx, [...args, '--destination', `${reg.host}/test/app:1`, '--secret', 'id=npm,env=NPM_TOKEN',
      '--sbom', '--provenance=max', '--sign-key', ws.path('key.pem'), '--oci-layout-path', ws.path('layout')], { env: gitlab });
    // attestations never change the image
    expect(digest).toBe(plain);
    expect((await skopeoInspect(reg, 'test/app:1')).Digest).toBe(digest);

    const hex = digest.slice('sha256:'.length);
    expect(await registryTags(reg, 'test/app')).toEqual(expect.arrayContaining(['1', `sha256-${hex}`, `sha256-${hex}.sig`]));
    const index = await raw(`test/app:sha256-${hex}`);
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    const referrers = index.manifests as Desc[];
    expect(referrers).toHaveLength(3);
    const byType = new Map<string, any>();
    for (const d of referrers) {
      const m = await raw(`test/app@${d.digest}`);
      expect(m.subject.digest).toBe(digest);
      expect(m.artifactType).toBe(d.artifactType);
      byType.set(m.layers[0].annotations?.['in-toto.io/predicate-type'] ?? m.artifactType, m);
    }

    const statement = async (m: any): Promise<any> => JSON.parse((await blob('test/app', m.layers[0].digest)).toString('utf8'));
    const sbom = await statement(byType.get('https://spdx.dev/Document'));
    expect(sbom._type).toBe('https://in-toto.io/Statement/v1');
    expect(sbom.subject).toEqual([{ name: `${reg.host}/test/app`, digest: { sha256: hex } }]);
    expect(sbom.predicate.spdxVersion).toBe('SPDX-2.3');
    const pkgs = new Map<string, any>(sbom.predicate.packages.map((p: any) => [p.name, p]));
    expect(pkgs.get('hello')?.versionInfo).toBe('2.10-3');
    expect(pkgs.has('oldtool')).toBe(false);
    expect(pkgs.get('left-pad')?.versionInfo).toBe('1.3.0');
    expect(pkgs.get('@scope/util')?.externalRefs[0].referenceLocator).toBe('pkg:npm/%40scope/util@2.0.1');
    // the layer that added it: the COPY of the status file, one of the image's layers (not the base's)
    const manifest = await raw(`test/app@${digest}`);
    const hello = pkgs.get('hello');
    expect(hello.externalRefs[0].referenceLocator).toMatch(/^pkg:deb\/[a-z]+\/hello@2\.10-3\?arch=amd64$/);
    const layer = /added by layer (sha256:[0-9a-f]{64})/.exec(hello.sourceInfo)?.[1];
    expect(manifest.layers.map((l: Desc) => l.digest).indexOf(layer)).toBe(1);

    const prov = await statement(byType.get('https://slsa.dev/provenance/v1'));
    expect(prov.subject[0].digest.sha256).toBe(hex);
    expect(prov.predicate.buildDefinition.externalParameters.buildArgs).toEqual({ GREETING: 'hello' });
    expect(prov.predicate.buildDefinition.externalParameters.context.digest.sha256).toMatch(/^[0-9a-f]{64}$/);
    const baseDigest = (await skopeoInspect(reg, 'library/busybox:latest')).Digest as string;
    expect(prov.predicate.buildDefinition.resolvedDependencies).toContainEqual({
      uri: `pkg:docker/library/busybox@latest?repository_url=${encodeURIComponent(reg.host)}&platform=${encodeURIComponent(prov.predicate.buildDefinition.externalParameters.platform)}`,
      digest: { sha256: baseDigest.slice(7) },
    });
    expect(prov.predicate.buildDefinition.externalParameters.dockerfile.digest.sha256).toBe(createHash('sha256').update(await readFile(`${ctx}/Dockerfile`)).digest('hex'));
    expect(prov.predicate.runDetails.metadata.startedOn <= prov.predicate.runDetails.metadata.finishedOn).toBe(true);
    // GitLab's job: the runner as builder id, job and pipeline URLs, the commit; no token or secret value anywhere
    expect(prov.predicate.runDetails.builder.id).toBe('https://gitlab.example/g/app/-/runners/42');
    expect(prov.predicate.runDetails.metadata.invocationId).toBe(gitlab.CI_JOB_URL);
    expect(prov.predicate.runDetails.metadata.gitlab).toMatchObject({ CI_PIPELINE_URL: gitlab.CI_PIPELINE_URL, CI_COMMIT_SHA: 'c0ffee' });
    expect(JSON.stringify(prov)).not.toMatch(/never-recorded/);

    // the signature, as cosign stores it: payload naming the digest, base64 DER ECDSA in the annotation; openssl agrees
    const sigManifest = await raw(`test/app:sha256-${hex}.sig`);
    const layer0 = sigManifest.layers[0];
    expect(layer0.mediaType).toBe('application/vnd.dev.cosign.simplesigning.v1+json');
    const payload = await blob('test/app', layer0.digest);
    expect(JSON.parse(payload.toString('utf8')).critical.image['docker-manifest-digest']).toBe(digest);
    await writeFile(ws.path('payload'), payload);
    await writeFile(ws.path('sig.der'), Buffer.from(layer0.annotations['dev.cosignproject.cosign/signature'], 'base64'));
    const ok = await run('openssl', ['dgst', '-sha256', '-verify', ws.path('key.pub'), '-signature', ws.path('sig.der'), ws.path('payload')]);
    expect(ok.stdout).toContain('Verified OK');
    const bad = await run('openssl', ['dgst', '-sha256', '-verify', ws.path('other.pub'), '-signature', ws.path('sig.der'), ws.path('payload')]).then(() => 0, (e) => e.exitCode);
    expect(bad).not.toBe(0);
    // the same signature is a referrer too
    expect(byType.get('application/vnd.dev.cosign.artifact.sig.v1+json').layers[0].annotations['dev.cosignproject.cosign/signature'])
      .toBe(layer0.annotations['dev.cosignproject.cosign/signature']);

    // the OCI layout holds the image and its three artifacts
    const layout = JSON.parse(await readFile(ws.path('layout', 'index.json'), 'utf8'));
    expect(layout.manifests.map((m: Desc) => m.digest)).toEqual(expect.arrayContaining([digest, ...referrers.map((r) => r.digest)]));

    // builder verify / attestations
    expect((await ws.cli(['verify', '--key', ws.path('key.pub'), `${reg.host}/test/app:1`])).code).toBe(0);
    const wrong = await ws.cli(['verify', '--key', ws.path('other.pub'), `${reg.host}/test/app:1`]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('VERIFY_FAILED');
    expect((await ws.cli(['verify', '--key', ws.path('key.pub'), `${reg.host}/test/plain:1`])).code).toBe(1); // same digest, other repo: unsigned there
    const listed = await ws.cli(['attestations', '--json', `${reg.host}/test/app:1`]);
    expect(JSON.parse(listed.stdout).referrers).toHaveLength(3);
    const printed = await ws.cli(['attestations', '--type', 'provenance', `${reg.host}/test/app@${digest}`]);
    expect(JSON.parse(printed.stdout.trim()).predicateType).toBe('https://slsa.dev/provenance/v1');

    // copy carries the referrers and the .sig tag; --no-referrers does not
    const copied = await ws.cli(['copy', `${reg.host}/test/app:1`, `${reg.host}/test/copy:1`]);
    expect(copied.code).toBe(0);
    expect((await raw(`test/copy:sha256-${hex}`)).manifests).toHaveLength(3);
    expect((await ws.cli(['verify', '--key', ws.path('key.pub'), `${reg.host}/test/copy:1`])).code).toBe(0);
    expect((await ws.cli(['copy', '--no-referrers', `${reg.host}/test/app:1`, `${reg.host}/test/bare:1`])).code).toBe(0);
    expect(await registryTags(reg, 'test/bare')).toEqual(['1']);
    // through an OCI layout and back: the referrers travel both ways, the signature still verifies
    expect((await ws.cli(['copy', `${reg.host}/test/app:1`, `oci:${ws.path('copied-layout')}:app`])).code).toBe(0);
    const copiedIndex = JSON.parse(await readFile(ws.path('copied-layout', 'index.json'), 'utf8'));
    expect(copiedIndex.manifests.map((m: Desc) => m.digest)).toEqual(expect.arrayContaining(referrers.map((r) => r.digest)));
    expect((await ws.cli(['copy', `oci:${ws.path('copied-layout')}:app`, `${reg.host}/test/back:1`])).code).toBe(0);
    expect((await raw(`test/back:sha256-${hex}`)).manifests).toHaveLength(3);
    expect((await ws.cli(['verify', '--key', ws.path('key.pub'), `${reg.host}/test/back:1`])).code).toBe(0); // the digest is what is signed (as cosign checks)
    expect((await ws.cli(['attestations', '--type', 'sbom', `${reg.host}/test/back:1`])).code).toBe(0);
  }, 400_000); // two builds and some twenty CLI runs: minutes when the machine is busy

  it('fails fast on a key of another curve, an unreadable key or an unset variable: nothing built, nothing pushed', async () => {
    const cases: Array<[string[], string, NodeJS.ProcessEnv]> = [
      [['--sign-key', ws.path('p384.pem')], 'SIGN_KEY_UNSUPPORTED', {}],
      [['--sign-key', ws.path('missing.pem')], 'SIGN_KEY_UNREADABLE', {}],
      [['--sign-key', 'env://BUILDER_TEST_NO_SUCH_KEY'], 'SIGN_KEY_UNREADABLE', {}],
      [['--sign-key', 'env://KEYTEXT'], 'SIGN_KEY_UNREADABLE', { KEYTEXT: 'not a key' }],
      [['--sign-key', ws.path('key.pub')], 'SIGN_KEY_UNREADABLE', {}],
      [['--provenance=maximum'], 'FLAG_INVALID', {}],
    ];
    for (const [flags, code, env] of cases) {
      const r = await ws.build(ctx, ['--destination', `${reg.host}/test/nokey:1`, ...flags], { env });
      expect(r.code, `${flags.join(' ')}: ${r.stderr}`).not.toBe(0);
      expect(r.stderr).toContain(code);
      expect(r.stderr).not.toContain('FROM'); // failed before the first step
    }
    expect(await registryTags(reg, 'test/nokey')).toEqual([]);
  });

  it('a registry refusing artifact manifests: a clear error, and the image stays pushed', async () => {
    const proxy = await startFaultProxy(reg.url);
    try {
      proxy.add({ method: 'PUT', path: /\/manifests\/sha256:/, fault: 'manifest-invalid', times: Infinity });
      const r = await ws.build(ctx, ['--destination', `${proxy.host}/test/refused:1`, '--digest-file', ws.path('refused-digest'), '--sign-key', 'env://SIGNKEY'],
        { env: { SIGNKEY: await readFile(ws.path('key.pem'), 'utf8') } });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('ATTEST_PUSH_REFUSED');
      expect(r.stderr).toContain('the image itself is pushed');
      const digest = (await readFile(ws.path('refused-digest'), 'utf8')).trim();
      expect((await skopeoInspect(reg, 'test/refused:1')).Digest).toBe(digest);
      expect(await registryTags(reg, 'test/refused')).toEqual(['1']);
    } finally {
      await proxy.close();
    }
  });

  it('the referrers tag keeps other tools\' entries and both of two writers updating it at once', async () => {
    await pushBusybox(reg, 'test/race', 'img', 'oci');
    const repo = parseReference(`${reg.host}/test/race`);
    const clients = [new RegistryClient(), new RegistryClient(), new RegistryClient()];
    try {
      const img = await clients[0]!.getManifest(parseReference(`${reg.host}/test/race:img`));
      const subjectDigest = img.digest;
      expect(subjectDigest).toBe((await skopeoInspect(reg, 'test/race:img')).Digest);
      const subject = { mediaType: img.mediaType, digest: subjectDigest, size: img.bytes.length };
      const make = (type: string, n: number) => artifactManifest(subject, type, [{ mediaType: 'application/json', bytes: Buffer.from(JSON.stringify({ n })) }]);
      const foreign = make('application/vnd.example.other+json', 0);
      const a = [make('application/vnd.example.a+json', 1), make('application/vnd.example.a+json', 2)];
      const b = [make('application/vnd.example.b+json', 3), make('application/vnd.example.b+json', 4)];
      for (const x of [foreign, ...a, ...b]) await pushArtifact(clients[0]!, repo, x);
      await mergeIndexTag(clients[0]!, repo, referrersTag(subjectDigest), [foreign.descriptor]);
      await Promise.all([
        mergeIndexTag(clients[1]!, repo, referrersTag(subjectDigest), a.map((x) => x.descriptor)),
        mergeIndexTag(clients[2]!, repo, referrersTag(subjectDigest), b.map((x) => x.descriptor)),
      ]);
      const index = await raw(`test/race:${referrersTag(subjectDigest)}`);
      expect(new Set(index.manifests.map((m: Desc) => m.digest))).toEqual(new Set([foreign, ...a, ...b].map((x) => x.descriptor.digest)));
      const listed = await listReferrers(clients[0]!, repo, subjectDigest);
      expect(listed.via).toBe('tag');
      expect(listed.manifests.find((m) => m.digest === foreign.descriptor.digest)).toMatchObject({ artifactType: 'application/vnd.example.other+json' });
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});
