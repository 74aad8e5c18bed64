// The codes src/registry throws: BuilderError's code is the union of every folder's table (src/errors.ts).

/**
 * How the retry policy treats an error:
 * - transient: may pass by itself (resets, timeouts, 408/429/5xx, bytes damaged in flight): retried while the budget lasts;
 * - once: a refused connection or an unknown host: retrying rarely helps, so one quick retry at most (a registry restarting);
 * - session: an upload the registry rejected or lost: the same request would fail again, a new upload session may not;
 * - never: a deterministic answer (any 4xx but 408/429, TLS, configuration, content).
 */
export type RetryKind = 'transient' | 'once' | 'session' | 'never';

/** Every code a registry operation throws, with how the retry policy treats it (the policy reads this and nothing else). */
export const REGISTRY_ERROR_CODES = {
  // distribution spec error codes, mapped one-to-one to REGISTRY_<code>
  REGISTRY_MANIFEST_UNKNOWN: { retry: 'never' },
  REGISTRY_BLOB_UNKNOWN: { retry: 'never' },
  REGISTRY_NAME_UNKNOWN: { retry: 'never' },
  REGISTRY_NAME_INVALID: { retry: 'never' },
  REGISTRY_TAG_INVALID: { retry: 'never' },
  REGISTRY_DENIED: { retry: 'never' },
  REGISTRY_UNAUTHORIZED: { retry: 'never' },
  REGISTRY_MANIFEST_INVALID: { retry: 'never' },
  REGISTRY_MANIFEST_BLOB_UNKNOWN: { retry: 'never' },
  REGISTRY_UNSUPPORTED: { retry: 'never' },
  // an upload the registry rejected or lost: a new session may succeed (bytes damaged in flight, session expired);
  // any other request answered so (a DELETE by tag gets 400 DIGEST_INVALID) gets the same answer again
  REGISTRY_DIGEST_INVALID: { retry: 'session' },
  REGISTRY_SIZE_INVALID: { retry: 'session' },
  REGISTRY_BLOB_UPLOAD_UNKNOWN: { retry: 'session' },
  REGISTRY_BLOB_UPLOAD_INVALID: { retry: 'session' },
  REGISTRY_RANGE_INVALID: { retry: 'session' },
  // transient by nature
  REGISTRY_TOO_MANY_REQUESTS: { retry: 'transient' },
  REGISTRY_SERVER_ERROR: { retry: 'transient' },
  REGISTRY_TIMEOUT: { retry: 'transient' },
  REGISTRY_INTERRUPTED: { retry: 'transient' },
  // refused, unknown host, no route: one quick retry
  REGISTRY_UNREACHABLE: { retry: 'once' },
  // permanent: configuration, protocol or content problems
  REGISTRY_NOT_FOUND: { retry: 'never' },
  REGISTRY_HTTP_ERROR: { retry: 'never' },
  REGISTRY_TLS: { retry: 'never' },
  REGISTRY_CERTIFICATE_UNREADABLE: { retry: 'never' },
  REGISTRY_AUTH_INVALID: { retry: 'never' },
  REGISTRY_PROTOCOL: { retry: 'never' },
  REGISTRY_RESPONSE_TOO_LARGE: { retry: 'never' },
  REGISTRY_TOO_MANY_REDIRECTS: { retry: 'never' },
  // authenticated, but the token lacks the scope (push); a server demanding mutual TLS; every pull mirror failed
  REGISTRY_INSUFFICIENT_SCOPE: { retry: 'never' },
  REGISTRY_CLIENT_CERT_REQUIRED: { retry: 'never' },
  REGISTRY_MIRRORS_FAILED: { retry: 'never' },
  // the caller's abort signal fired (exit code 130)
  REGISTRY_ABORTED: { retry: 'never' },
} as const satisfies Record<string, { retry: RetryKind }>;

export type RegistryErrorCode = keyof typeof REGISTRY_ERROR_CODES;

/** Codes of the operations above the protocol (credentials, copy, manifest lists, cleanup): thrown as BuilderError, never retried. */
export const REGISTRY_OPERATION_ERROR_CODES = [
  'CLEANUP_FAILED', 'CREDENTIALS_INVALID', 'CREDENTIALS_NO_HOME', 'CREDENTIAL_HELPER_FAILED', 'DELETE_SHARED_MANIFEST',
  'LOCATION_INVALID', 'LOCATION_UNSUPPORTED', 'MANIFEST_PLATFORM_DUPLICATE', 'MANIFEST_SOURCE_INDEX', 'TAG_OTHER_REPOSITORY',
] as const;

export type RegistryOperationErrorCode = (typeof REGISTRY_OPERATION_ERROR_CODES)[number];
