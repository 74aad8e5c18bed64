// The one retry policy of the registry client: which failures are retried (the error code says), how long to wait, how often.
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
