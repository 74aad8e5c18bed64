// Layers whose bytes live in the local blob store, downloaded from a registry on first need (never before).
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { verified, type Digest } from '../digest/index.js';
import type { Descriptor, Layer } from '../image/index.js';
import type { ImageRef } from '../reference/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { EventSink } from '../util/events.js';
import type { BlobStore, VerifyResult } from './blob-store.js';

/** A layer of a registry image: fetch() downloads it into the store once; a push mounts it from `ref` without reading it. */
export function remoteLayer(
  client: RegistryClient, store: BlobStore, ref: ImageRef, descriptor: Descriptor, diffId: Digest, emit?: EventSink,
): Layer & { fetch(): Promise<boolean> } {
  let checked: Promise<VerifyResult> | undefined;
  let pending: Promise<boolean> | undefined;
  // openEarly()'s receiver: the first download attempt that gets a body hands its bytes here as well
  let tap: ((blob: LayerTap) => void) | undefined;
  // remembered from stored() for the fetch that follows; a failure to ask is not
  const check = (): Promise<VerifyResult> => (checked ??= store.check(descriptor.digest, descriptor.size).catch((err: unknown) => {
    checked = undefined;
    throw err;
  }));
  const fetch = (): Promise<boolean> => {
    pending ??= (async () => {
      // A stored copy changed since it was verified is re-read first: a corrupt one is removed and downloaded again, never half extracted.
      const found = await check();
      // another layer object of the same digest (FROM and COPY --from one base) may have stored it since stored() asked
      if (found === 'ok' || await store.has(descriptor.digest)) return false;
      const corrupt = `layer ${descriptor.digest} in the cache ${store.dir} was corrupt and was removed; downloading it again`;
      // without a listener of its own, a detail for the client's trace
      if (found === 'corrupt') (emit ? emit({ type: 'warning', msg: corrupt }) : client.emit({ type: 'message', level: 'trace', msg: corrupt }));
      // fetchBlob starts over when the bytes arrive wrong (put() keeps nothing of a failed download)
      await client.fetchBlob(ref, descriptor, put);
      return true;
    })().catch((err: unknown) => {
      pending = undefined; // a later caller may try again
      checked = undefined;
      throw err;
    });
    return pending;
  };
  // the first attempt that gets a body also hands its bytes to openEarly's reader, as they are written to the store
  const put = async (blob: Readable): Promise<void> => {
    const receive = tap;
    tap = undefined;
    if (!receive) return store.put(descriptor.digest, blob, descriptor.size);
    let settle!: (broke: boolean) => void;
    const t = new LayerTap((offset) => pending!.then(() => createReadStream(store.path(descriptor.digest), { start: offset })), new Promise((r) => (settle = r)));
    receive(t);
    await store.put(descriptor.digest, blob, descriptor.size, { observe: (c) => t.offer(c) }).then(() => {
      settle(false);
      t.written();
    }, (err: unknown) => {
      settle(true); // broke off, or its bytes failed their digest
      t.destroy(err as Error);
      throw err;
    });
  };
  const open = async (): Promise<Readable> => {
    await fetch();
    return store.open(descriptor.digest, descriptor.size);
  };
  return {
    descriptor,
    diffId,
    mountFrom: ref,
    fetch,
    stored: async () => (pending === undefined ? (await check()) === 'ok' : store.has(descriptor.digest)),
    open,
    openEarly: async () => {
      if (pending === undefined) {
        let download!: Promise<boolean>;
        const early = new Promise<LayerTap | undefined>((resolve) => {
          tap = resolve;
          download = fetch();
          // no body to hand over: the blob was stored already, or every attempt failed (awaited below: its error)
          download.then(() => resolve(undefined), () => resolve(undefined)).finally(() => { tap = undefined; });
        });
        const live = await early;
        if (live) return { stream: verified(live, descriptor.digest, descriptor.size, `layer ${descriptor.digest} being downloaded from ${ref.name}`), download, broken: live.broken };
        await download; // failed for good: its error, not a second download with a new retry budget
        return { stream: store.open(descriptor.digest, descriptor.size) };
      }
      return { stream: await open() };
    },
  };
}

/** How far a tap may fall behind its download, in memory, before it reads the rest from the stored blob instead. */
const TAP_BUFFER = 8 << 20;
const GATHER = 64 << 10;

/**
 * A download's bytes for a second reader that never holds the download up (the store's writer sets its pace, as
 * without a reader): up to TAP_BUFFER bytes wait in memory; past that the tap stops taking chunks and, once the blob
 * is stored, goes on from the file at that offset. Paused under backpressure, undici's parser crashes on a connection
 * the server closes (nodejs/undici#5360, fixed in undici 8): a reader lagging must not pause it.
 */
class LayerTap extends Readable {
  private taken = 0;
  private behind = false;
  private rest: Readable | undefined;
  // network-sized chunks gathered into larger ones: the extractor's cost is per chunk
  private gathered: Buffer[] = [];
  private gatheredBytes = 0;

  /** @param broken whether the download attempt feeding it broke off or failed its digest, once the store's put settled */
  constructor(private readonly fromStore: (offset: number) => Promise<Readable>, readonly broken: Promise<boolean>) {
    super();
  }

  offer(chunk: Buffer): void {
    if (this.behind || this.destroyed) return;
    if (this.readableLength + this.gatheredBytes + chunk.length > TAP_BUFFER) {
      this.behind = true;
      this.gathered = []; // read again from the store, from `taken` on
      this.gatheredBytes = 0;
      return;
    }
    this.gathered.push(chunk);
    this.gatheredBytes += chunk.length;
    if (this.gatheredBytes >= GATHER) this.flush();
  }

  /** The blob is stored (and proved its digest): the rest comes from what was gathered, or from the file. */
  written(): void {
    if (this.destroyed) return;
    // nothing came through (another build stored the blob meanwhile, and put() took none of it): all from the file
    if (!this.behind && this.taken + this.gatheredBytes > 0) {
      this.flush();
      this.push(null);
      return;
    }
    this.fromStore(this.taken).then((r) => this.follow(r), (err: unknown) => this.destroy(err as Error));
  }

  private flush(): void {
    if (this.gatheredBytes === 0) return;
    const chunk = this.gathered.length === 1 ? this.gathered[0]! : Buffer.concat(this.gathered, this.gatheredBytes);
    this.taken += chunk.length;
    this.gathered = [];
    this.gatheredBytes = 0;
    this.push(chunk);
  }

  private follow(r: Readable): void {
    if (this.destroyed) {
      r.destroy();
      return;
    }
    this.rest = r;
    r.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) r.pause();
    });
    r.on('end', () => this.push(null));
    r.on('error', (err) => this.destroy(err));
  }

  override _read(): void {
    this.rest?.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.rest?.destroy();
    cb(err);
  }
}
