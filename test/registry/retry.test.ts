// The retry policy: which errors are retried (a property of the code), how long to wait (backoff, Retry-After), how often.
import { describe, expect, it } from 'vitest';
import { BuilderError } from '../../src/errors.js';
import { DIGEST_ERROR_CODES } from '../../src/digest/index.js';
import { isRetryable, parseRetryAfter, registryError, REGISTRY_ERROR_CODES, RegistryError } from '../../src/registry/errors.js';
import { RetryPolicy } from '../../src/registry/retry.js';

describe('retryable is a property of the error code', () => {
  it.each([
    [408, '', 'REGISTRY_TIMEOUT', true],
    [429, '', 'REGISTRY_TOO_MANY_REQUESTS', true],
    [500, '', 'REGISTRY_SERVER_ERROR', true],
    [502, '<html>bad gateway</html>', 'REGISTRY_SERVER_ERROR', true],
    [503, '', 'REGISTRY_SERVER_ERROR', true],
    [501, '', 'REGISTRY_UNSUPPORTED', false],
    [505, '', 'REGISTRY_HTTP_ERROR', false],
    [400, '{"errors":[{"code":"DIGEST_INVALID"}]}', 'REGISTRY_DIGEST_INVALID', true],
    [404, '{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}', 'REGISTRY_BLOB_UPLOAD_UNKNOWN', true],
    [404, '{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', 'REGISTRY_MANIFEST_UNKNOWN', false],
    [403, '', 'REGISTRY_DENIED', false],
    [401, '', 'REGISTRY_UNAUTHORIZED', false],
  ])('status %i %s -> %s (retryable: %s)', (status, body, code, retryable) => {
    const e = registryError('r.example', 'GET x', status, body);
    expect(e.code).toBe(code);
    expect(e.retryable).toBe(retryable);
    expect(isRetryable(e)).toBe(retryable);
  });

  it('every registry and digest code has a flag; errors of other folders are never retried', () => {
    for (const [code, { retryable }] of Object.entries({ ...REGISTRY_ERROR_CODES, ...DIGEST_ERROR_CODES })) {
      expect(isRetryable(new BuilderError(code, 'x'))).toBe(retryable);
    }
    expect(isRetryable(new BuilderError('BLOB_STORE_WRITE_FAILED', 'disk full'))).toBe(false);
    expect(isRetryable(new Error('ECONNRESET'))).toBe(false); // untyped errors are typed before the policy sees them
  });
});

describe('Retry-After', () => {
  it('reads delta-seconds and HTTP dates, ignores garbage', () => {
    const now = Date.parse('2026-11-25T12:00:00Z');
    expect(parseRetryAfter('3', now)).toBe(3000);
    expect(parseRetryAfter('Wed, 25 Nov 2026 12:00:07 GMT', now)).toBe(7000);
    expect(parseRetryAfter('Wed, 25 Nov 2026 11:00:00 GMT', now)).toBe(0); // in the past: now
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  it('a 429 carries it, and the policy waits exactly that long, capped', () => {
    const e = registryError('r.example', 'PUT blob', 429, '', '5');
    expect(e.retryAfterMs).toBe(5000);
    expect(new RetryPolicy({ baseMs: 10 }).delay(0, e)).toBe(5000);
    expect(new RetryPolicy({ retryAfterMaxMs: 2000 }).delay(0, e)).toBe(2000);
    const date = registryError('r.example', 'PUT blob', 429, '', new Date(Date.now() + 30_000).toUTCString());
    expect(new RetryPolicy().delay(0, date)).toBeGreaterThan(25_000);
    expect(new RetryPolicy().delay(0, date)).toBeLessThanOrEqual(30_000);
  });
});

describe('backoff', () => {
  it('doubles per retry with jitter in [d/2, d], capped', () => {
    const lo = new RetryPolicy({ baseMs: 100, maxMs: 1000 }, () => 0);
    const hi = new RetryPolicy({ baseMs: 100, maxMs: 1000 }, () => 1);
    expect([0, 1, 2, 3, 4, 5].map((a) => lo.delay(a))).toEqual([50, 100, 200, 400, 500, 500]);
    expect([0, 1, 2, 3, 4, 5].map((a) => hi.delay(a))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('retries a retryable error while the budget lasts, never a permanent one', () => {
    const p = new RetryPolicy();
    const busy = new RegistryError('REGISTRY_SERVER_ERROR', 'x');
    expect([0, 1, 2].map((a) => p.shouldRetry(busy, a, 3))).toEqual([true, true, true]);
    expect(p.shouldRetry(busy, 3, 3)).toBe(false);
    expect(p.shouldRetry(busy, 0, 0)).toBe(false);
    expect(p.shouldRetry(new RegistryError('REGISTRY_DENIED', 'x'), 0, 3)).toBe(false);
  });
});
