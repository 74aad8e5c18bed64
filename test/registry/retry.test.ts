// The retry policy: which errors are retried (a property of the code), how long to wait (backoff, Retry-After), how often.
import { describe, expect, it } from 'vitest';
import { BuilderError } from '../../src/errors.js';
import { DIGEST_ERROR_CODES } from '../../src/digest/index.js';
import { parseRetryAfter, registryError, REGISTRY_ERROR_CODES, RegistryError, retryKind } from '../../src/registry/errors.js';
import { QUICK_RETRY_MS, RetryPolicy } from '../../src/registry/retry.js';

describe('how an error is retried is a property of its code', () => {
  it.each([
    [408, '', 'REGISTRY_TIMEOUT', 'transient'],
    [429, '', 'REGISTRY_TOO_MANY_REQUESTS', 'transient'],
    [500, '', 'REGISTRY_SERVER_ERROR', 'transient'],
    [502, '<html>bad gateway</html>', 'REGISTRY_SERVER_ERROR', 'transient'],
    [503, '', 'REGISTRY_SERVER_ERROR', 'transient'],
    [501, '', 'REGISTRY_UNSUPPORTED', 'never'],
    [505, '', 'REGISTRY_HTTP_ERROR', 'never'],
    [400, '', 'REGISTRY_HTTP_ERROR', 'never'],
    [405, '', 'REGISTRY_HTTP_ERROR', 'never'],
    [400, '{"errors":[{"code":"DIGEST_INVALID"}]}', 'REGISTRY_DIGEST_INVALID', 'session'],
    [404, '{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}', 'REGISTRY_BLOB_UPLOAD_UNKNOWN', 'session'],
    [404, '{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', 'REGISTRY_MANIFEST_UNKNOWN', 'never'],
    [403, '', 'REGISTRY_DENIED', 'never'],
    [401, '', 'REGISTRY_UNAUTHORIZED', 'never'],
  ])('status %i %s -> %s (%s)', (status, body, code, kind) => {
    const e = registryError('r.example', 'GET x', status, body);
    expect(e.code).toBe(code);
    expect(e.retry).toBe(kind);
    expect(retryKind(e)).toBe(kind);
  });

  it('every registry and digest code has a kind; no 4xx but 408/429 is retried as a request; errors of other folders are never retried', () => {
    for (const [code, { retry }] of Object.entries(REGISTRY_ERROR_CODES)) expect(retryKind(new BuilderError(code, 'x'))).toBe(retry);
    for (const [code, { retryable }] of Object.entries(DIGEST_ERROR_CODES)) expect(retryKind(new BuilderError(code, 'x'))).toBe(retryable ? 'transient' : 'never');
    const p = new RetryPolicy();
    for (let status = 400; status < 500; status++) {
      for (const body of ['', '{"errors":[{"code":"DIGEST_INVALID"}]}', '{"errors":[{"code":"BLOB_UPLOAD_INVALID"}]}']) {
        expect(p.shouldRetry(registryError('r.example', 'DELETE x', status, body), 0, 4)).toBe(status === 408 || status === 429);
      }
    }
    expect(retryKind(new BuilderError('BLOB_STORE_WRITE_FAILED', 'disk full'))).toBe('never');
    expect(retryKind(new Error('ECONNRESET'))).toBe('never'); // untyped errors are typed before the policy sees them
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

  it('an unreachable registry gets one quick retry; a rejected upload is retried only with a new session', () => {
    const lo = new RetryPolicy({ baseMs: 500 }, () => 0);
    const hi = new RetryPolicy({ baseMs: 500 }, () => 1);
    const refused = new RegistryError('REGISTRY_UNREACHABLE', 'x');
    expect([0, 1, 2].map((a) => hi.shouldRetry(refused, a, 4))).toEqual([true, false, false]);
    expect(hi.shouldRetry(refused, 0, 0)).toBe(false);
    expect([lo.delay(0, refused), hi.delay(0, refused)]).toEqual([QUICK_RETRY_MS / 2, QUICK_RETRY_MS]);
    const rejected = new RegistryError('REGISTRY_DIGEST_INVALID', 'x');
    expect(hi.shouldRetry(rejected, 0, 4)).toBe(false);
    expect([0, 3, 4].map((a) => hi.shouldRetry(rejected, a, 4, 'session'))).toEqual([true, true, false]);
  });
});
