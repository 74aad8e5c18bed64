// Parsing manifest and index bytes into typed values with clear errors.
import { BuilderError } from '../errors.js';
import { isIndexMediaType, isManifestMediaType, MediaType, type ImageConfig, type Index, type Manifest } from './types.js';

function bad(what: string, why: string): BuilderError {
  return new BuilderError('MANIFEST_INVALID', `${what}: ${why}`, { hint: 'the image is malformed; re-push it with a standard tool' });
}

function parseJson(bytes: Buffer, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw bad(what, `not valid JSON (${(err as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(what, 'not a JSON object');
  return v as Record<string, unknown>;
}

/** Media type of a manifest document: the declared one, else inferred from its shape. */
export function manifestMediaType(bytes: Buffer, declared?: string): string {
  if (declared && (isIndexMediaType(declared) || isManifestMediaType(declared))) return declared;
  const j = parseJson(bytes, 'manifest');
  if (typeof j.mediaType === 'string') return j.mediaType;
  return Array.isArray(j.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
}

/** Content types that say nothing about the document: its body decides, as containerd does for registries that send none. */
const GENERIC_CONTENT_TYPES = new Set(['', 'application/json', 'text/plain', 'application/octet-stream']);
const SCHEMA1_TYPES = new Set<string>([MediaType.DockerManifestSchema1, MediaType.DockerManifestSchema1Signed]);

function unsupportedType(what: string, why: string): BuilderError {
  return new BuilderError('MANIFEST_MEDIA_TYPE_UNSUPPORTED', `${what}: ${why}`, {
    hint: 'builder reads Docker schema 2 and OCI image manifests and indexes: check the reference and the registry address (is a proxy or login page answering?), or re-push the image with a current tool',
  });
}

/**
 * The media type of a manifest or index a registry served with `contentType`, checked against the document:
 * a known manifest/index Content-Type must agree with the body's mediaType and shape; a generic or missing one
 * (application/json, text/plain, none) lets the body decide; anything else (text/html, schema 1, artifacts) is refused.
 * The body is never quoted in errors: it may be a page that is not meant for logs.
 */
export function checkManifestDocument(bytes: Buffer, contentType: string | undefined, what = 'manifest'): string {
  const ct = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const known = (mt: string): boolean => isManifestMediaType(mt) || isIndexMediaType(mt);
  if (SCHEMA1_TYPES.has(ct)) throw unsupportedType(what, `the registry serves a Docker schema 1 manifest (${ct}), which is deprecated and not supported`);
  if (!known(ct) && !GENERIC_CONTENT_TYPES.has(ct)) throw unsupportedType(what, `the registry answered with Content-Type "${ct}", which is not an image manifest or index`);
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw bad(what, `the ${bytes.length}-byte body${ct ? ` (Content-Type ${ct})` : ''} is not JSON, so not a manifest`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(what, 'the body is not a JSON object, so not a manifest');
  const doc = v as Record<string, unknown>;
  if (doc.schemaVersion === 1 || doc.fsLayers !== undefined) throw unsupportedType(what, 'the registry serves a Docker schema 1 manifest, which is deprecated and not supported');
  if (doc.schemaVersion !== 2) throw bad(what, `schemaVersion ${JSON.stringify(doc.schemaVersion) ?? 'missing'} is not 2`);
  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  if (declared !== undefined && !known(declared)) throw unsupportedType(what, `the document's mediaType "${declared}" is not an image manifest or index`);
  if (known(ct) && declared !== undefined && declared !== ct) throw bad(what, `Content-Type ${ct} but the document says mediaType ${declared}`);
  const looksIndex = Array.isArray(doc.manifests);
  const looksManifest = typeof doc.config === 'object' && doc.config !== null && Array.isArray(doc.layers);
  const mt = known(ct) ? ct : declared ?? (looksIndex && !looksManifest ? MediaType.OciIndex : looksManifest && !looksIndex ? MediaType.OciManifest : undefined);
  if (mt === undefined) throw bad(what, 'the document is neither a manifest (config and layers) nor an index (manifests)');
  // containerd's check: the shape must be the one the type says.
  if (isManifestMediaType(mt) && (!looksManifest || looksIndex)) throw bad(what, `${mt} expected, but the document is not an image manifest (config and layers)`);
  if (isIndexMediaType(mt) && (!looksIndex || doc.config !== undefined || doc.layers !== undefined)) throw bad(what, `${mt} expected, but the document is not an index (manifests)`);
  return mt;
}

export function parseManifest(bytes: Buffer, what = 'manifest'): Manifest {
  const j = parseJson(bytes, what);
  if (j.schemaVersion !== 2) throw bad(what, `schemaVersion ${String(j.schemaVersion)} is not supported (only 2)`);
  if (typeof j.config !== 'object' || j.config === null || !Array.isArray(j.layers)) throw bad(what, 'missing config or layers');
  return j as unknown as Manifest;
}

export function parseIndex(bytes: Buffer, what = 'index'): Index {
  const j = parseJson(bytes, what);
  if (j.schemaVersion !== 2 || !Array.isArray(j.manifests)) throw bad(what, 'not a schemaVersion 2 index');
  return j as unknown as Index;
}

/**
 * A config's own size, checked before parsing (JSON.parse takes about 6x the text): real configs take kilobytes, a
 * few hundred history entries included.
 */
const CONFIG_MAX_BYTES = 4 * 1024 * 1024;

/**
 * What a config's Env may hold. Every RUN gets it through execve, whose kernel limit is about 2 MiB for argv and
 * environment together (128 KiB per entry): a bigger Env could never run a step, and 1e6 entries once took 19 s and
 * 850 MB before exec refused them. Docker's own images hold a few dozen.
 */
const CONFIG_ENV_LIMITS = { entries: 4096, bytes: 1024 * 1024 } as const;

export function parseConfig(bytes: Buffer, what = 'image config'): ImageConfig {
  if (bytes.length > CONFIG_MAX_BYTES) {
    throw new BuilderError('IMAGE_CONFIG_TOO_LARGE', `${what}: ${bytes.length} bytes, more than builder reads (${CONFIG_MAX_BYTES}); an Env of that size could not run a step anyway`, {
      hint: 'the base image config is oversized (a huge Env, labels or history); rebuild the base image with a smaller config',
    });
  }
  const config = parseJson(bytes, what) as unknown as ImageConfig;
  checkConfigEnv(config.config?.Env, what);
  return config;
}

function checkConfigEnv(env: unknown, what: string): void {
  if (env === undefined || env === null) return;
  if (!Array.isArray(env) || env.some((e) => typeof e !== 'string')) throw bad(what, 'config.Env is not a list of strings');
  let bytes = 0;
  for (const e of env as string[]) bytes += Buffer.byteLength(e) + 1;
  if (env.length > CONFIG_ENV_LIMITS.entries || bytes > CONFIG_ENV_LIMITS.bytes) {
    throw new BuilderError('IMAGE_CONFIG_ENV_TOO_LARGE', `${what}: its Env holds ${env.length} entries (${bytes} bytes), more than builder accepts (${CONFIG_ENV_LIMITS.entries} entries, ${CONFIG_ENV_LIMITS.bytes} bytes)`, {
      hint: 'no RUN step could start with that environment (the kernel refuses it at exec); rebuild the base image with a smaller ENV',
    });
  }
}
