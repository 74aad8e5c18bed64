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

export function parseConfig(bytes: Buffer, what = 'image config'): ImageConfig {
  return parseJson(bytes, what) as unknown as ImageConfig;
}
