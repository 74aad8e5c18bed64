// --platform host,arm64 with --sbom --provenance=max --sign-key against distribution 2.8: every platform image gets
// its own SBOM, provenance (its platform, its base) and signature (openssl verifies it); the index is signed too; the
// index digest is what a build without the flags pushes; `builder attestations` lists per platform; the OCI layout
// holds every artifact.
import { readFile, writeFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { useFixture } from '../support/fixture.js';
import { hostArch, pushCrossPlatform } from '../support/images.js';
import type { TestRegistry } from '../support/registry.js';
import { run, skopeoInspect } from '../support/tools.js';
import { ecKeyPair, registryBlob } from './helpers.js';
import { Workspace } from '../executor/helpers.js';

interface Desc { mediaType: string; digest: string; size: number; artifactType?: string; platform?: { os: string; architecture: string }; annotations?: Record<string, string> }

const SPDX = 'https://spdx.dev/Document';
const SLSA = 'https://slsa.dev/provenance/v1';
const SIG = 'application/vnd.dev.cosign.artifact.sig.v1+json';

describe('supply chain of a multi-platform build', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  let ctx: string;
  const host = hostArch();
  const platforms = `linux/${host},linux/arm64`;

  const blob = (repo: string, digest: string): Promise<Buffer> => registryBlob(reg, repo, digest);
  const raw = (ref: string): Promise<any> => skopeoInspect(reg, ref, { raw: true });

  useFixture({ prefix: 'builder-attest-multi-', push: (r) => pushCrossPlatform(r) }, (f) => ({ reg, ws, base } = f));
  beforeAll(async () => {
    ctx = await ws.context('ctx', {
      Dockerfile: [
        'ARG BASE',
        'FROM --platform=$BUILDPLATFORM $BASE AS build',
        'ARG BUILDPLATFORM',
        'RUN mkdir /out && echo "built on $BUILDPLATFORM" > /out/build.txt',
        'FROM $BASE',
        'ARG TARGETARCH',
        'COPY --from=build /out/build.txt /build.txt',
        'COPY arch/$TARGETARCH/ /',
        '',
      ].join('\n'),
      // a package per platform: each SBOM lists its own image's
      [`arch/${host}/var/lib/dpkg/status`]: `Package: tool-${host}\nStatus: install ok installed\nArchitecture: ${host}\nVersion: 1.0-${host}\n`,
      'arch/arm64/var/lib/dpkg/status': 'Package: tool-arm64\nStatus: install ok installed\nArchitecture: arm64\nVersion: 1.0-arm64\n',
    });
    await ecKeyPair(ws.path('key.pem'), ws.path('key.pub'));
    await ecKeyPair(ws.path('other.pem'), ws.path('other.pub'));
  });

  it('attaches an SBOM, a provenance and a signature to each platform image, signs the index, and leaves the index digest as it was', async () => {
    const args = ['--platform', platforms, '--build-arg', `BASE=${base}`, '--reproducible', '--run-mode', 'sandbox'];
    const plain = await ws.buildOk(ctx, [...args, '--destination', `${reg.host}/multi/plain:1`]);
    const digest = await ws.buildOk(ctx, [...args, '--destination', `${reg.host}/multi/app:1`,
      '--sbom', '--provenance=max', '--sign-key', ws.path('key.pem'), '--oci-layout-path', ws.path('layout')]);
    // attestations never change what is pushed: the same index (and so the same images) as without them
    expect(digest).toBe(plain);
    const index = await raw('multi/app:1');
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect((await skopeoInspect(reg, 'multi/app:1')).Digest).toBe(digest);
    const entries = index.manifests as Desc[];
    expect(entries.map((e) => e.platform!.architecture).sort()).toEqual([host, 'arm64'].sort());

    // the base's own per-platform images, as skopeo reads them
    const baseIndex = await raw('library/cross:latest');
    const baseDigestOf = (arch: string): string => (baseIndex.manifests as Desc[]).find((m) => m.platform?.architecture === arch)!.digest;
    expect(baseDigestOf('arm64')).not.toBe(baseDigestOf(host));
    const layoutArtifacts: string[] = [];

    for (const entry of entries) {
      const arch = entry.platform!.architecture;
      const hex = entry.digest.slice('sha256:'.length);
      const referrers = (await raw(`multi/app:sha256-${hex}`)).manifests as Desc[];
      expect(referrers).toHaveLength(3);
      layoutArtifacts.push(...referrers.map((r) => r.digest));
      const byType = new Map<string, any>();
      for (const d of referrers) {
        const m = await raw(`multi/app@${d.digest}`);
        expect(m.subject.digest).toBe(entry.digest);
        byType.set(m.layers[0].annotations?.['in-toto.io/predicate-type'] ?? m.artifactType, m);
      }
      const statement = async (m: any): Promise<any> => JSON.parse((await blob('multi/app', m.layers[0].digest)).toString('utf8'));

      const sbom = await statement(byType.get(SPDX));
      expect(sbom.subject).toEqual([{ name: `${reg.host}/multi/app`, digest: { sha256: hex } }]);
      const names = sbom.predicate.packages.map((p: any) => p.name);
      expect(names).toContain(`tool-${arch}`);
      expect(names.filter((n: string) => n.startsWith('tool-'))).toHaveLength(1);

      const prov = await statement(byType.get(SLSA));
      expect(prov.subject[0].digest.sha256).toBe(hex);
      const params = prov.predicate.buildDefinition.externalParameters;
      expect(params.platform).toBe(`linux/${arch}`);
      expect(params.buildArgs).toEqual({ BASE: base });
      const deps = prov.predicate.buildDefinition.resolvedDependencies as Array<{ uri: string; digest: { sha256: string } }>;
      const baseDeps = deps.filter((d) => d.uri.startsWith('pkg:docker/library/cross@latest?'));
      const depFor = (p: string): string | undefined => baseDeps.find((d) => d.uri.endsWith(`&platform=${encodeURIComponent(p)}`))?.digest.sha256;
      // its own platform's base, and the build stage's base for the build platform (the host)
      expect(depFor(`linux/${arch}`)).toBe(baseDigestOf(arch).slice(7));
      expect(depFor(`linux/${host}`)).toBe(baseDigestOf(host).slice(7));
      expect(baseDeps).toHaveLength(new Set([arch, host]).size);

      // the signature names this image's digest, and openssl agrees with the public key
      const sigLayer = byType.get(SIG).layers[0];
      const payload = await blob('multi/app', sigLayer.digest);
      expect(JSON.parse(payload.toString('utf8')).critical.image['docker-manifest-digest']).toBe(entry.digest);
      await writeFile(ws.path(`payload-${arch}`), payload);
      await writeFile(ws.path(`sig-${arch}.der`), Buffer.from(sigLayer.annotations['dev.cosignproject.cosign/signature'], 'base64'));
      const ok = await run('openssl', ['dgst', '-sha256', '-verify', ws.path('key.pub'), '-signature', ws.path(`sig-${arch}.der`), ws.path(`payload-${arch}`)]);
      expect(ok.stdout).toContain('Verified OK');
      expect((await raw(`multi/app:sha256-${hex}.sig`)).layers[0].digest).toBe(sigLayer.digest);
      expect((await ws.cli(['verify', '--key', ws.path('key.pub'), `${reg.host}/multi/app@${entry.digest}`])).code).toBe(0);
    }

    // the index is signed too: verify of the tag checks what the tag names
    const indexHex = digest.slice('sha256:'.length);
    const indexReferrers = (await raw(`multi/app:sha256-${indexHex}`)).manifests as Desc[];
    expect(indexReferrers.map((r) => r.artifactType)).toEqual([SIG]);
    layoutArtifacts.push(...indexReferrers.map((r) => r.digest));
    const verified = await ws.cli(['verify', '--key', ws.path('key.pub'), `${reg.host}/multi/app:1`]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(JSON.parse(verified.stdout)[0].critical.image['docker-manifest-digest']).toBe(digest);
    expect((await ws.cli(['verify', '--key', ws.path('other.pub'), `${reg.host}/multi/app:1`])).code).toBe(1);
    expect((await ws.cli(['verify', '--key', ws.path('key.pub'), `${reg.host}/multi/plain:1`])).code).toBe(1);

    // the OCI layout: the index (tagged) and all seven artifacts
    const layout = JSON.parse(await readFile(ws.path('layout', 'index.json'), 'utf8')) as { manifests: Desc[] };
    expect(layout.manifests.map((m) => m.digest).sort()).toEqual([digest, ...layoutArtifacts].sort());
    for (const a of layoutArtifacts) await readFile(ws.path('layout', 'blobs', 'sha256', a.slice(7)));
  }, 400_000);

  it('builder attestations of an index lists each platform image\'s referrers; --type prints every platform\'s, --platform one', async () => {
    const ref = `${reg.host}/multi/app:1`;
    const index = await raw('multi/app:1');
    const entries = index.manifests as Desc[];
    const listed = await ws.cli(['attestations', '--json', ref]);
    expect(listed.code, listed.stderr).toBe(0);
    const j = JSON.parse(listed.stdout);
    expect(j.referrers.map((r: any) => r.artifactType)).toEqual([SIG]);
    expect(j.platforms.map((p: any) => [p.platform, p.subject]).sort()).toEqual(entries.map((e) => [`linux/${e.platform!.architecture}`, e.digest]).sort());
    for (const p of j.platforms) expect(p.referrers.map((r: any) => r.predicateType ?? r.artifactType).sort()).toEqual([SIG, SLSA, SPDX].sort());

    const text = await ws.cli(['attestations', ref]);
    const lines = text.stdout.trim().split('\n').map((l) => l.split('\t'));
    expect(lines.map((l) => l[0]).sort()).toEqual(['index', ...Array(3).fill(`linux/${host}`), ...Array(3).fill('linux/arm64')].sort());

    const provs = (await ws.cli(['attestations', '--type', 'provenance', ref])).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(provs.map((p) => p.predicate.buildDefinition.externalParameters.platform).sort()).toEqual([`linux/${host}`, 'linux/arm64'].sort());
    const arm = await ws.cli(['attestations', '--type', 'sbom', '--platform', 'linux/arm64', ref]);
    expect(arm.code, arm.stderr).toBe(0);
    const armSboms = arm.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(armSboms).toHaveLength(1);
    expect(armSboms[0].subject[0].digest.sha256).toBe(entries.find((e) => e.platform!.architecture === 'arm64')!.digest.slice(7));

    const missing = await ws.cli(['attestations', '--platform', 'linux/s390x', ref]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('PLATFORM_NOT_FOUND');
    const single = await ws.cli(['attestations', '--platform', 'linux/arm64', `${reg.host}/multi/app@${entries[0]!.digest}`]);
    expect(single.code).not.toBe(0);
    expect(single.stderr).toContain('FLAG_INVALID');

    // builder copy --all-platforms carries every image's referrers and the index's signature along
    expect((await ws.cli(['copy', '--all-platforms', ref, `${reg.host}/multi/copy:1`])).code).toBe(0);
    const copied = JSON.parse((await ws.cli(['attestations', '--json', `${reg.host}/multi/copy:1`])).stdout);
    expect(copied.subject).toBe(j.subject);
    expect(copied.platforms.map((p: any) => [p.platform, p.referrers.length]).sort()).toEqual(j.platforms.map((p: any) => [p.platform, 3]).sort());
    expect((await ws.cli(['verify', '--key', ws.path('key.pub'), `${reg.host}/multi/copy:1`])).code).toBe(0);
  });
});
