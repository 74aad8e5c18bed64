// The one retry policy of the registry client and its one loop: which failures are retried (the error code says), how
// long to wait, how often; requests, blob downloads (resumed or from the start) and upload sessions all go through it.
import { setTimeout as sleep } from 'node:timers/promises';
import { BuilderError } from '../errors.js';
import type { RetryNotice } from '../util/events.js';
import { RegistryError, retryKind } from './errors.js';

export interface RetrySettings {
  /** First backoff delay in ms; doubled per retry (default 500). */
  baseMs?: number;
  /** Cap of one backoff delay in ms (default 10 000). */
  maxMs?: number;
  /** Cap on a server's Retry-After in ms (default 60 000): a registry asking for an hour gets a minute, then the budget decides. */
  retryAfterMaxMs?: number;
}

export const DEFAULT_RETRIES = 4;
/** The one quick retry of an error retrying rarely fixes (refused connection, unknown host) waits at most this long. */
export const QUICK_RETRY_MS = 100;

/** Where a retry would happen: the same request again, or a new upload session (which may fix what a request cannot). */
export type RetryScope = 'request' | 'session';

export class RetryPolicy {
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly retryAfterMaxMs: number;

  constructor(s: RetrySettings = {}, private readonly random: () => number = Math.random) {
    this.baseMs = s.baseMs ?? 500;
    this.maxMs = s.maxMs ?? 10_000;
    this.retryAfterMaxMs = s.retryAfterMaxMs ?? 60_000;
  }

  /** Whether to try again after `err` when `attempt` retries (0-based) are spent of `budget`. */
  shouldRetry(err: unknown, attempt: number, budget: number, scope: RetryScope = 'request'): boolean {
    return attempt < this.budgetFor(err, budget, scope);
  }

  /** The retries `err` gets out of a request's `budget`: all, one quick one, or none. */
  budgetFor(err: unknown, budget: number, scope: RetryScope = 'request'): number {
    switch (retryKind(err)) {
      case 'transient':
        return budget;
      case 'once':
        return Math.min(1, budget);
      case 'session':
        return scope === 'session' ? budget : 0;
      case 'never':
        return 0;
    }
  }

  /**
   * Wait before retry number `attempt` (0-based): the server's Retry-After when it sent one (capped), a short one
   * for the quick retry, else exponential backoff with jitter in [d/2, d] so clients that failed together do not
   * retry together.
   */
  delay(attempt: number, err?: unknown): number {
    const ra = err instanceof RegistryError ? err.retryAfterMs : undefined;
    if (ra !== undefined) return Math.min(ra, this.retryAfterMaxMs);
    const d = retryKind(err) === 'once' ? Math.min(this.baseMs, QUICK_RETRY_MS) : Math.min(this.maxMs, this.baseMs * 2 ** attempt);
    return d / 2 + (this.random() * d) / 2;
  }
}

/** The build was cancelled (a signal): never retried, never reported as a network failure. */
export function cancelled(what: string): BuilderError {
  return new BuilderError('REGISTRY_ABORTED', `${what} was cancelled`, { hint: 'the operation was interrupted; rerun it', exitCode: 130 });
}

/** Thrown by an attempt for a failure no retry may follow (a blob's source broke, not the registry): `error` is thrown as is. */
export class NotRetried extends Error {
  constructor(readonly error: unknown) {
    super(error instanceof Error ? error.message : String(error));
  }
}

/** One retried operation: its budget, the scope it retries in, how it is named in the retry notice. */
export interface RetryLoop {
  /** Retries allowed after the first attempt. */
  budget: number;
  scope?: RetryScope;
  /** What a retry does, named in its notice (a download names the byte it resumes from). */
  what: string | (() => string);
  /** Types a failure before the policy judges it (a raw network error becomes a REGISTRY_* one); may throw to stop. */
  typed?: (err: unknown) => unknown;
  /** Cuts a wait short (besides the client's own signal), e.g. a download whose reader went away. */
  signal?: AbortSignal;
}

/** The retry loop of one client: the policy, where retry notices go, and the client's cancel signal. */
export class Retrier {
  constructor(readonly policy: RetryPolicy, private readonly notify: (n: RetryNotice) => void, private readonly signal?: AbortSignal) {}

  /** Runs `attempt` until it succeeds, or fails with an error the policy does not retry within the loop's budget. */
  async run<T>(loop: RetryLoop, attempt: (n: number) => Promise<T>): Promise<T> {
    const it = this.stream(loop, async function* (n) {
      return await attempt(n);
    });
    const r = await it.next();
    return r.value as T;
  }

  /**
   * The loop itself, for work that yields as it goes (a blob's bytes): each attempt's items are passed on, and a
   * failure waits out the policy's delay and starts the next attempt (which knows from its state where to resume).
   */
  async *stream<T, R>(loop: RetryLoop, attempt: (n: number) => AsyncGenerator<T, R>): AsyncGenerator<T, R> {
    for (let n = 0; ; n++) {
      try {
        return yield* attempt(n);
      } catch (err) {
        if (err instanceof NotRetried) throw err.error;
        const typed = loop.typed ? loop.typed(err) : err;
        if (!this.policy.shouldRetry(typed, n, loop.budget, loop.scope)) throw typed;
        await this.wait(typeof loop.what === 'string' ? loop.what : loop.what(), typed, n, loop.budget, loop.signal);
      }
    }
  }

  /** Waits out the policy's delay before retry `attempt` (0-based), saying why; a signal cuts it short. */
  async wait(what: string, err: unknown, attempt: number, budget: number, signal?: AbortSignal): Promise<void> {
    const wait = this.policy.delay(attempt, err);
    const code = (err as RegistryError)?.code ?? 'error';
    const of = Math.max(attempt + 1, this.policy.budgetFor(err, budget, 'session'));
    this.notify({ what, code, attempt: attempt + 1, of, waitMs: Math.round(wait) });
    const cut = signal ?? this.signal;
    await sleep(wait, undefined, cut ? { signal: cut } : {}).catch((e: unknown) => {
      if (this.signal?.aborted) throw cancelled(what);
      throw e;
    });
  }
}
