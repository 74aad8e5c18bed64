// The one retry loop (Retrier) that requests, blob downloads and upload sessions share: what it retries, what it says, where it resumes.
import { describe, expect, it } from 'vitest';
import { BuilderError } from '../../src/errors.js';
import { RegistryError } from '../../src/registry/errors.js';
import { NotRetried, Retrier, RetryPolicy } from '../../src/registry/retry.js';
import type { RetryNotice } from '../../src/util/events.js';

const fail = (code: 'REGISTRY_SERVER_ERROR' | 'REGISTRY_BLOB_UPLOAD_UNKNOWN' | 'REGISTRY_UNREACHABLE' | 'REGISTRY_DENIED'): RegistryError =>
  new RegistryError(code, `GET x: ${code}`, { hint: 'test' });

function retrier(): { r: Retrier; notices: RetryNotice[] } {
  const notices: RetryNotice[] = [];
  return { r: new Retrier(new RetryPolicy({ baseMs: 2, maxMs: 4 }), (n) => notices.push(n)), notices };
}

describe('Retrier', () => {
  it('run: retries a transient failure within the budget, saying what, after which code, and which retry of how many', async () => {
    const { r, notices } = retrier();
    let calls = 0;
    const got = await r.run({ budget: 3, what: 'GET manifest app:1' }, async (n) => {
      calls++;
      if (n < 2) throw fail('REGISTRY_SERVER_ERROR');
      return `answer ${n}`;
    });
    expect(got).toBe('answer 2');
    expect(calls).toBe(3);
    expect(notices.map(({ waitMs: _w, ...n }) => n)).toEqual([
      { what: 'GET manifest app:1', code: 'REGISTRY_SERVER_ERROR', attempt: 1, of: 3 },
      { what: 'GET manifest app:1', code: 'REGISTRY_SERVER_ERROR', attempt: 2, of: 3 },
    ]);
  });

  it('run: gives up with the last error once the budget is spent; a refused connection gets one quick retry only', async () => {
    const { r, notices } = retrier();
    let calls = 0;
    const err = await r.run({ budget: 2, what: 'x' }, async () => {
      calls++;
      throw fail('REGISTRY_SERVER_ERROR');
    }).catch((e: unknown) => e);
    expect((err as BuilderError).code).toBe('REGISTRY_SERVER_ERROR');
    expect(calls).toBe(3);
    calls = 0;
    notices.length = 0;
    const refused = await r.run({ budget: 4, what: 'x' }, async () => {
      calls++;
      throw fail('REGISTRY_UNREACHABLE');
    }).catch((e: unknown) => e);
    expect((refused as BuilderError).code).toBe('REGISTRY_UNREACHABLE');
    expect(calls).toBe(2);
    expect(notices).toHaveLength(1);
  });

  it('a session error is retried only by a loop that starts a new session; a never error not at all', async () => {
    const { r } = retrier();
    for (const [scope, want] of [['request', 1], ['session', 3]] as const) {
      let calls = 0;
      await r.run({ budget: 2, scope, what: 'upload' }, async () => {
        calls++;
        throw fail('REGISTRY_BLOB_UPLOAD_UNKNOWN');
      }).catch(() => undefined);
      expect(calls).toBe(want);
    }
    let calls = 0;
    await r.run({ budget: 2, scope: 'session', what: 'x' }, async () => {
      calls++;
      throw fail('REGISTRY_DENIED');
    }).catch(() => undefined);
    expect(calls).toBe(1);
  });

  it('NotRetried: the wrapped error is thrown as is, with no retry and no notice', async () => {
    const { r, notices } = retrier();
    const source = new BuilderError('DIGEST_MISMATCH', 'the local blob is corrupt', { hint: 'test' });
    let calls = 0;
    const err = await r.run({ budget: 3, what: 'x' }, async () => {
      calls++;
      throw new NotRetried(source);
    }).catch((e: unknown) => e);
    expect(err).toBe(source);
    expect(calls).toBe(1);
    expect(notices).toEqual([]);
  });

  it('typed: a raw failure is typed before the policy judges it (and the notice names the typed code)', async () => {
    const { r, notices } = retrier();
    const got = await r.run({ budget: 1, what: 'x', typed: (e) => (e instanceof BuilderError ? e : fail('REGISTRY_SERVER_ERROR')) }, async (n) => {
      if (n === 0) throw new Error('socket hang up');
      return 'ok';
    });
    expect(got).toBe('ok');
    expect(notices.map((n) => n.code)).toEqual(['REGISTRY_SERVER_ERROR']);
  });

  it('stream: what each attempt yielded is passed on, and the next attempt resumes where its state says (the notice names it)', async () => {
    const { r, notices } = retrier();
    const data = [1, 2, 3, 4, 5, 6];
    let offset = 0;
    const out: number[] = [];
    const gen = r.stream({ budget: 3, what: () => `blob from byte ${offset}` }, async function* (n) {
      for (; offset < data.length; offset++) {
        // each attempt breaks off after two items, as a connection reset would
        if (offset === 2 * (n + 1) && n < 2) throw fail('REGISTRY_SERVER_ERROR');
        yield data[offset]!;
      }
    });
    for await (const x of gen) out.push(x);
    expect(out).toEqual(data);
    expect(notices.map((n) => n.what)).toEqual(['blob from byte 2', 'blob from byte 4']);
  });
});
