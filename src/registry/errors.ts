// RegistryError and the mapping HTTP status + distribution error JSON -> RegistryError (the codes and their retry kinds: codes.ts).
import { BuilderError, type BuilderErrorOptions } from '../errors.js';
import { DIGEST_ERROR_CODES } from '../digest/index.js';

import { REGISTRY_ERROR_CODES, type RegistryErrorCode, type RetryKind } from './codes.js';

export { REGISTRY_ERROR_CODES, type RegistryErrorCode, type RetryKind };

export interface RegistryErrorOptions extends BuilderErrorOptions {
  /** HTTP status that caused it, when there was a response. */
  status?: number;
  /** The server's Retry-After, already converted to ms (uncapped). */
  retryAfterMs?: number;
}

/** A BuilderError whose code is one of REGISTRY_ERROR_CODES. */
export class RegistryError extends BuilderError {
  declare readonly code: RegistryErrorCode;
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(code: RegistryErrorCode, message: string, opts: RegistryErrorOptions = {}) {
    super(code, message, opts);
    this.status = opts.status;
    this.retryAfterMs = opts.retryAfterMs;
  }

  get retry(): RetryKind {
    return REGISTRY_ERROR_CODES[this.code].retry;
  }
}

/** How the retry policy treats an error, by its code (registry and digest codes; errors of other folders: never). */
export function retryKind(err: unknown): RetryKind {
  if (!(err instanceof BuilderError)) return 'never';
  const reg = (REGISTRY_ERROR_CODES as Record<string, { retry: RetryKind }>)[err.code];
  if (reg) return reg.retry;
  // bytes that came over a network may be right the next time
  return (DIGEST_ERROR_CODES as Record<string, { retryable: boolean }>)[err.code]?.retryable ? 'transient' : 'never';
}

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

/** Retry-After as ms from now: delta-seconds or an HTTP date; undefined when absent or unparseable. */
export function parseRetryAfter(v: string | undefined, now = Date.now()): number | undefined {
  if (v === undefined || v.trim() === '') return undefined;
  const t = v.trim();
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  const at = Date.parse(t);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

/** The code a bare status maps to (no error body), used to decide retries before reading the body. */
export function codeForStatus(status: number): RegistryErrorCode {
  if (status === 401) return 'REGISTRY_UNAUTHORIZED';
  if (status === 403) return 'REGISTRY_DENIED';
  if (status === 404) return 'REGISTRY_NOT_FOUND';
  if (status === 408) return 'REGISTRY_TIMEOUT';
  if (status === 429) return 'REGISTRY_TOO_MANY_REQUESTS';
  if (status === 501) return 'REGISTRY_UNSUPPORTED';
  if (status >= 500 && status !== 505) return 'REGISTRY_SERVER_ERROR';
  return 'REGISTRY_HTTP_ERROR';
}

/** Builds the error for a failed registry response; `what` says the operation and ref, never a secret. */
export function registryError(registry: string, what: string, status: number, body: string, retryAfter?: string): RegistryError {
  let parsed: RegistryErrorBody | undefined;
  try {
    parsed = JSON.parse(body) as RegistryErrorBody;
  } catch {
    parsed = undefined;
  }
  const first = parsed?.errors?.[0];
  const rcode = typeof first?.code === 'string' ? first.code.toUpperCase() : undefined;
  const detail = first?.message ? `: ${first.message}` : '';
  const ra = parseRetryAfter(retryAfter);
  const extra: RegistryErrorOptions = { status, ...(ra !== undefined ? { retryAfterMs: ra } : {}) };
  // a 408, 429 or 5xx is transient whatever its body says: the status decides how it is retried
  const byStatus = status === 408 || status === 429 || status >= 500;
  if (rcode && HINTS[rcode] !== undefined && (!byStatus || rcode === 'TOOMANYREQUESTS')) {
    const code = (rcode === 'TOOMANYREQUESTS' ? 'REGISTRY_TOO_MANY_REQUESTS' : `REGISTRY_${rcode}`) as RegistryErrorCode;
    return new RegistryError(code, `${what} on registry ${registry} failed with ${status} ${rcode}${detail}`, { hint: HINTS[rcode], ...extra });
  }
  const code = codeForStatus(status);
  switch (code) {
    case 'REGISTRY_UNAUTHORIZED':
      return unauthorized(registry, what);
    case 'REGISTRY_DENIED':
      return new RegistryError(code, `${what} on registry ${registry} was denied (403)${detail}`, { hint: HINTS.DENIED, ...extra });
    case 'REGISTRY_NOT_FOUND':
      return new RegistryError(code, `${what} on registry ${registry}: not found (404)${detail}`, { hint: 'check the registry, repository and tag', ...extra });
    case 'REGISTRY_TIMEOUT':
      return new RegistryError(code, `${what} on registry ${registry}: the registry timed out waiting for the request (408)`, { hint: 'the network or registry is slow; retry later', ...extra });
    case 'REGISTRY_TOO_MANY_REQUESTS':
      return new RegistryError(code, `${what} on registry ${registry}: rate limited (429)`, { hint: HINTS.TOOMANYREQUESTS, ...extra });
    case 'REGISTRY_SERVER_ERROR':
      return new RegistryError(code, `${what} on registry ${registry} failed with ${status}${detail}`, { hint: 'the registry is failing; retry later', ...extra });
    case 'REGISTRY_UNSUPPORTED':
      return new RegistryError(code, `${what} on registry ${registry}: not implemented (501)${detail}`, { hint: HINTS.UNSUPPORTED, ...extra });
    default:
      return new RegistryError('REGISTRY_HTTP_ERROR', `${what} on registry ${registry} failed with unexpected status ${status}${detail || (body ? `: ${body.slice(0, 200)}` : '')}`, {
        hint: 'check the registry address and that it speaks the Docker Registry HTTP API v2', ...extra,
      });
  }
}

export function unauthorized(registry: string, what: string, why = ''): RegistryError {
  return new RegistryError('REGISTRY_UNAUTHORIZED', `${what} on registry ${registry}: authentication failed (401)${why ? `: ${why}` : ''}`, {
    hint: `check the credentials for ${registry} (docker config.json, DOCKER_AUTH_CONFIG, or CI_REGISTRY_USER/CI_REGISTRY_PASSWORD)`,
    status: 401,
  });
}

/** Authenticated, but the token does not grant what the request needs (a 401 with error="insufficient_scope"). */
export function insufficientScope(registry: string, what: string, scopes: string[]): RegistryError {
  const wanted = scopes.map((s) => s.replace(/^repository:/, '')).join(', ');
  return new RegistryError('REGISTRY_INSUFFICIENT_SCOPE', `${what} on registry ${registry}: the credentials were accepted but do not grant ${wanted} (401 insufficient_scope)`, {
    hint: 'give this user or token the missing permission on the repository (push needs write access, e.g. a GitLab token with write_registry), or use other credentials',
  });
}

const TIMEOUT_CODES = ['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT'];
/** The connection was up and broke (as opposed to never being made). */
const BROKEN_CODES = ['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'];

/** Network-level failure before a response (refused, reset, DNS, TLS, no answer in time). */
export function networkError(registry: string, what: string, err: unknown): BuilderError {
  // already typed (a CA file that cannot be read, a blob source that failed): keep its code
  if (err instanceof BuilderError) return err;
  const e = err as { code?: string; message?: string };
  const msg = e?.message ?? String(err);
  const tls = /certificate|self[- ]signed|SSL|TLS|wrong version number|ERR_TLS|UNABLE_TO_VERIFY|CERT_/i.test(`${e?.code ?? ''} ${msg}`);
  if (tls) {
    return new RegistryError('REGISTRY_TLS', `${what}: TLS connection to registry ${registry} failed: ${msg}`, {
      hint: `trust its CA with --registry-certificate ${registry}=/path/ca.crt, or (unsafe) --skip-tls-verify-registry ${registry}; use --insecure-registry ${registry} for plain HTTP`,
      cause: err,
    });
  }
  if (TIMEOUT_CODES.includes(e?.code ?? '')) {
    return new RegistryError('REGISTRY_TIMEOUT', `${what}: registry ${registry} sent nothing for too long (${e.code})`, {
      hint: 'the network or registry is stalled; retry later', cause: err,
    });
  }
  if (BROKEN_CODES.includes(e?.code ?? '')) return interruptedError(registry, what, err);
  return new RegistryError('REGISTRY_UNREACHABLE', `${what}: cannot reach registry ${registry}: ${e?.code ? `${e.code} ` : ''}${msg}`, {
    hint: 'check the registry address, port and network; for a plain-HTTP registry add --insecure-registry HOST',
    cause: err,
  });
}

/** A connection that broke off (reset, closed early, stalled) while a request or its response was under way. */
export function interruptedError(registry: string, what: string, err: unknown, got?: number, want?: number): RegistryError {
  const e = err as { code?: string; message?: string } | undefined;
  const counts = got !== undefined && want !== undefined ? ` after ${got} of ${want} bytes` : '';
  if (TIMEOUT_CODES.includes(e?.code ?? '')) {
    return new RegistryError('REGISTRY_TIMEOUT', `${what}: registry ${registry} stalled${counts} (${e!.code})`, { hint: 'the network or registry is stalled; retry later', cause: err });
  }
  const why = e ? `${e.code ? `${e.code} ` : ''}${e.message ?? String(err)}` : 'the body ended early';
  return new RegistryError('REGISTRY_INTERRUPTED', `${what}: the connection to registry ${registry} broke off${counts}: ${why}`, {
    hint: 'the connection to the registry is unreliable; retry, or allow more retries', cause: err,
  });
}
