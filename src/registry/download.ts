// A blob download that survives a broken connection: it asks again from the first missing byte (Range) while the retry budget lasts.
import { Readable } from 'node:stream';
import { BuilderError } from '../errors.js';
import { interruptedError, RegistryError } from './errors.js';
import type { Retrier } from './retry.js';
import { header, type RegResponse } from './transport.js';

export interface ResumableOptions {
  registry: string;
  what: string;
  /** Bytes the blob has (its descriptor's size). */
  size: number;
  /** Retries (resumes) allowed for this blob. */
  retries: number;
  /** GET the blob again from `offset` ("Range: bytes=offset-"), without retries of its own. */
  reopen: (offset: number) => Promise<RegResponse>;
}

/**
 * The blob's bytes from `first` and, after a reset, truncation or stall, from ranged re-requests (a registry that
 * ignores Range sends everything again and we skip what we have). Fails only with typed errors, after the budget.
 * It does not verify the digest: wrap it in a VerifyingStream.
 */
export function resumableBody(retrier: Retrier, first: RegResponse, o: ResumableOptions): Readable {
  // a destroyed stream closes at once, but its generator would wait out a backoff and then ask again: stop it
  const stop = new AbortController();
  let res: RegResponse | undefined = first;
  let offset = 0;
  /** One try: the rest of the blob from `res`, or from a ranged re-request; a failure drops the response for the next. */
  async function* attempt(): AsyncGenerator<Buffer, void> {
    try {
      let skip = 0;
      if (!res) {
        res = await o.reopen(offset);
        skip = rangeStart(res, offset, o) === offset ? 0 : offset;
      }
      for await (const chunk of res.body) {
        let b = chunk as Buffer;
        if (skip > 0) {
          const n = Math.min(skip, b.length);
          skip -= n;
          b = b.subarray(n);
          if (b.length === 0) continue;
        }
        offset += b.length;
        yield b;
      }
      // more bytes than the descriptor says: the verifier downstream reports it; fewer is a break
      if (offset < o.size) throw interruptedError(o.registry, o.what, undefined, offset, o.size);
    } catch (err) {
      if (res && !res.body.destroyed) res.body.destroy();
      res = undefined;
      throw err instanceof BuilderError ? err : interruptedError(o.registry, o.what, err, offset, o.size);
    }
  }
  const loop = { budget: o.retries, what: () => `${o.what} from byte ${offset}`, signal: stop.signal };
  const r = Readable.from(retrier.stream(loop, attempt), { objectMode: false, highWaterMark: 256 * 1024 });
  const destroy = r._destroy.bind(r);
  r._destroy = (err, cb) => {
    stop.abort();
    destroy(err, cb);
  };
  return r;
}

/** Where a re-request's body starts: `offset` for a 206 that says so, 0 for a 200 (Range ignored: skip what we have). */
function rangeStart(res: RegResponse, offset: number, o: ResumableOptions): number {
  if (res.status === 200) return 0;
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header(res, 'content-range') ?? '');
  if (res.status === 206 && m && Number(m[1]) === offset) return offset;
  throw new RegistryError('REGISTRY_PROTOCOL', `${o.what}: asked registry ${o.registry} for bytes ${offset}- and got ${res.status} with Content-Range "${header(res, 'content-range') ?? ''}"`, {
    hint: 'the registry (or a proxy) answers range requests wrongly; retry, or pull through another path',
  });
}
