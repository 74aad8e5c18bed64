// Registry error mapping: HTTP status + distribution error JSON -> BuilderError with stable REGISTRY_* codes.
import { BuilderError } from '../errors.js';

/** Registry error codes (distribution spec) we map one-to-one to REGISTRY_<code>. */
const HINTS: Record<string, string> = {
  MANIFEST_UNKNOWN: 'check the tag or digest exists (builder ls REPO lists tags)',
  BLOB_UNKNOWN: 'the registry lost a blob the manifest references; re-push the image',
  NAME_UNKNOWN: 'check the repository name; it does not exist on this registry',
  NAME_INVALID: 'repository names are lowercase path components',
  TAG_INVALID: 'check the tag',
  DENIED: 'the credentials lack permission for this repository; check the user/token scopes',
  UNAUTHORIZED: 'provide valid credentials (docker config.json, DOCKER_AUTH_CONFIG or CI_REGISTRY_USER/CI_REGISTRY_PASSWORD)',
  MANIFEST_INVALID: 'the manifest was rejected by the registry; it may not support this media type',
  MANIFEST_BLOB_UNKNOWN: 'a blob the manifest references was not uploaded first',
  DIGEST_INVALID: 'the uploaded bytes did not match their digest; retry',
  SIZE_INVALID: 'the uploaded size did not match; retry',
  BLOB_UPLOAD_UNKNOWN: 'the upload session expired; retry',
  BLOB_UPLOAD_INVALID: 'the upload was rejected; retry',
  RANGE_INVALID: 'the upload offset was out of sync; retry',
  UNSUPPORTED: 'the registry does not support this operation',
  TOOMANYREQUESTS: 'the registry is rate limiting; wait and retry, or authenticate',
};

export interface RegistryErrorBody {
  errors?: Array<{ code?: string; message?: string; detail?: unknown }>;
}

/** Builds the error for a failed registry response; `what` says the operation and ref, never a secret. */
export function registryError(registry: string, what: string, status: number, body: string): BuilderError {
  let parsed: RegistryErrorBody | undefined;
  try {
    parsed = JSON.parse(body) as RegistryErrorBody;
  } catch {
    parsed = undefined;
  }
  const first = parsed?.errors?.[0];
  const rcode = typeof first?.code === 'string' ? first.code.toUpperCase() : undefined;
  const detail = first?.message ? `: ${first.message}` : '';
  if (rcode && HINTS[rcode] !== undefined) {
    const code = rcode === 'TOOMANYREQUESTS' ? 'REGISTRY_TOO_MANY_REQUESTS' : `REGISTRY_${rcode}`;
    return new BuilderError(code, `${what} on registry ${registry} failed with ${status} ${rcode}${detail}`, { hint: HINTS[rcode] });
  }
  switch (status) {
    case 401:
      return unauthorized(registry, what);
    case 403:
      return new BuilderError('REGISTRY_DENIED', `${what} on registry ${registry} was denied (403)${detail}`, { hint: HINTS.DENIED });
    case 404:
      return new BuilderError('REGISTRY_NOT_FOUND', `${what} on registry ${registry}: not found (404)${detail}`, { hint: 'check the registry, repository and tag' });
    case 429:
      return new BuilderError('REGISTRY_TOO_MANY_REQUESTS', `${what} on registry ${registry}: rate limited (429)`, { hint: HINTS.TOOMANYREQUESTS });
    default:
      if (status >= 500) {
        return new BuilderError('REGISTRY_SERVER_ERROR', `${what} on registry ${registry} failed with ${status}${detail}`, { hint: 'the registry is failing; retry later' });
      }
      return new BuilderError('REGISTRY_HTTP_ERROR', `${what} on registry ${registry} failed with unexpected status ${status}${detail || (body ? `: ${body.slice(0, 200)}` : '')}`, {
        hint: 'check the registry address and that it speaks the Docker Registry HTTP API v2',
      });
  }
}

export function unauthorized(registry: string, what: string, why = ''): BuilderError {
  return new BuilderError('REGISTRY_UNAUTHORIZED', `${what} on registry ${registry}: authentication failed (401)${why ? `: ${why}` : ''}`, {
    hint: `check the credentials for ${registry} (docker config.json, DOCKER_AUTH_CONFIG, or CI_REGISTRY_USER/CI_REGISTRY_PASSWORD)`,
  });
}

/** Authenticated, but the token does not grant what the request needs (a 401 with error="insufficient_scope"). */
export function insufficientScope(registry: string, what: string, scopes: string[]): BuilderError {
  const wanted = scopes.map((s) => s.replace(/^repository:/, '')).join(', ');
  return new BuilderError('REGISTRY_INSUFFICIENT_SCOPE', `${what} on registry ${registry}: the credentials were accepted but do not grant ${wanted} (401 insufficient_scope)`, {
    hint: 'give this user or token the missing permission on the repository (push needs write access, e.g. a GitLab token with write_registry), or use other credentials',
  });
}

/** Network-level failure (refused, reset, DNS, TLS) after retries. */
export function networkError(registry: string, what: string, err: unknown): BuilderError {
  const e = err as { code?: string; message?: string };
  const msg = e?.message ?? String(err);
  const tls = /certificate|self[- ]signed|SSL|TLS|wrong version number|ERR_TLS|UNABLE_TO_VERIFY|CERT_/i.test(`${e?.code ?? ''} ${msg}`);
  if (tls) {
    return new BuilderError('REGISTRY_TLS', `${what}: TLS connection to registry ${registry} failed: ${msg}`, {
      hint: `trust its CA with --registry-certificate ${registry}=/path/ca.crt, or (unsafe) --skip-tls-verify-registry ${registry}; use --insecure-registry ${registry} for plain HTTP`,
      cause: err,
    });
  }
  return new BuilderError('REGISTRY_UNREACHABLE', `${what}: cannot reach registry ${registry}: ${e?.code ? `${e.code} ` : ''}${msg}`, {
    hint: 'check the registry address, port and network; for a plain-HTTP registry add --insecure-registry HOST',
    cause: err,
  });
}
