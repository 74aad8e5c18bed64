// in-toto statements (https://in-toto.io/Statement/v1) around an SPDX 2.3 SBOM and a SLSA v1 provenance.
import type { Digest } from '../digest/index.js';
import { digestHex } from '../digest/index.js';
import type { ImagePackage } from './scan.js';

export const IN_TOTO_MEDIA_TYPE = 'application/vnd.in-toto+json';
export const PREDICATE_ANNOTATION = 'in-toto.io/predicate-type';
export const SPDX_PREDICATE = 'https://spdx.dev/Document';
export const SLSA_PREDICATE = 'https://slsa.dev/provenance/v1';
export const BUILD_TYPE = 'https://gitlab.com/builder/buildtypes/dockerfile/v1';

export interface Statement<P> {
  _type: 'https://in-toto.io/Statement/v1';
  subject: Array<{ name: string; digest: { sha256: string } }>;
  predicateType: string;
  predicate: P;
}

/** The statement's subject: the image by digest, once per repository it was pushed to (or its digest alone). */
export function statement<P>(names: readonly string[], digest: Digest, predicateType: string, predicate: P): Statement<P> {
  const hex = digestHex(digest);
  const list = names.length > 0 ? names : [digest];
  return { _type: 'https://in-toto.io/Statement/v1', subject: list.map((name) => ({ name, digest: { sha256: hex } })), predicateType, predicate };
}

const spdxId = (i: number): string => `SPDXRef-Package-${i}`;

/** An SPDX 2.3 document of the image: one package for the image, one per package found, with its purl and layer. */
export function spdxDocument(opts: { name: string; digest: Digest; created: string; tool: string; packages: readonly ImagePackage[]; skipped: readonly string[] }): Record<string, unknown> {
  const packages = opts.packages.map((p, i) => ({
    name: p.name,
    SPDXID: spdxId(i),
    versionInfo: p.version,
    downloadLocation: 'NOASSERTION',
    filesAnalyzed: false,
    sourceInfo: `found in /${p.path}, added by layer ${p.layer}`,
    externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: p.purl }],
    annotations: [{ annotationType: 'OTHER', annotator: `Tool: ${opts.tool}`, annotationDate: opts.created, comment: `layer: ${p.layer}` }],
  }));
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: `${opts.name}@${opts.digest}`,
    documentNamespace: `https://spdx.org/spdxdocs/builder/${digestHex(opts.digest)}`,
    creationInfo: { created: opts.created, creators: [`Tool: ${opts.tool}`], ...(opts.skipped.length > 0 ? { comment: `not scanned: ${opts.skipped.join('; ')}` } : {}) },
    packages: [
      { name: opts.name, SPDXID: 'SPDXRef-Image', versionInfo: opts.digest, downloadLocation: 'NOASSERTION', filesAnalyzed: false, primaryPackagePurpose: 'CONTAINER' },
      ...packages,
    ],
    relationships: [
      { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: 'SPDXRef-Image' },
      ...packages.map((p) => ({ spdxElementId: 'SPDXRef-Image', relationshipType: 'CONTAINS', relatedSpdxElement: p.SPDXID })),
    ],
  };
}

/** What the build recorded for its provenance (src/executor fills it). */
export interface ProvenanceInput {
  mode: 'min' | 'max';
  builder: { id: string; version: string };
  dockerfile: { path: string; digest: Digest };
  target?: string;
  platform: string;
  /** --build-arg values (max only; secrets never reach them: they travel as --secret). */
  buildArgs: Record<string, string | undefined>;
  /** The context's content digest (max only). */
  contextDigest?: Digest;
  /** Base images and COPY --from images by reference and digest; ADD URLs with their sha256. */
  dependencies: Array<{ uri: string; digest: Digest }>;
  /** The CI job's environment (GitLab's CI_* variables), read by the CLI. */
  ci: Record<string, string | undefined>;
  startedOn: string;
  finishedOn: string;
}

/** GitLab CI's job, pipeline and commit, when the variables are there. */
function gitlabMetadata(ci: Record<string, string | undefined>): Record<string, string> | undefined {
  if (!ci.GITLAB_CI && !ci.CI_JOB_URL) return undefined;
  const pick = ['CI_JOB_URL', 'CI_JOB_ID', 'CI_PIPELINE_URL', 'CI_PIPELINE_ID', 'CI_PROJECT_URL', 'CI_PROJECT_PATH', 'CI_COMMIT_SHA', 'CI_COMMIT_REF_NAME', 'CI_SERVER_URL', 'CI_RUNNER_ID'];
  const out: Record<string, string> = {};
  for (const k of pick) if (ci[k]) out[k] = ci[k]!;
  return out;
}

const hexOf = (d: Digest): { sha256: string } => ({ sha256: digestHex(d) });

/** A SLSA v1 provenance predicate for one built image. */
export function slsaProvenance(p: ProvenanceInput): Record<string, unknown> {
  const gitlab = gitlabMetadata(p.ci);
  const externalParameters: Record<string, unknown> = {
    dockerfile: { path: p.dockerfile.path, digest: hexOf(p.dockerfile.digest) },
    ...(p.target ? { target: p.target } : {}),
    platform: p.platform,
    ...(p.mode === 'max' ? { buildArgs: p.buildArgs, ...(p.contextDigest ? { context: { digest: hexOf(p.contextDigest) } } : {}) } : {}),
  };
  const deps = [...new Map(p.dependencies.map((d) => [`${d.uri} ${d.digest}`, d])).values()];
  return {
    buildDefinition: {
      buildType: BUILD_TYPE,
      externalParameters,
      internalParameters: { provenanceMode: p.mode },
      resolvedDependencies: [
        { uri: p.dockerfile.path, digest: hexOf(p.dockerfile.digest), name: 'dockerfile' },
        ...deps.map((d) => ({ uri: d.uri, digest: hexOf(d.digest) })),
      ],
    },
    runDetails: {
      builder: { id: p.builder.id, version: { builder: p.builder.version } },
      metadata: {
        ...(gitlab?.CI_JOB_URL ? { invocationId: gitlab.CI_JOB_URL } : {}),
        startedOn: p.startedOn,
        finishedOn: p.finishedOn,
        ...(gitlab ? { gitlab } : {}),
      },
    },
  };
}
