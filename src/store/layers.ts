// Layers whose bytes live in the local blob store, downloaded from a registry on first need (never before).
import { PassThrough, type Readable } from 'node:stream';
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
  let tap: ((blob: Readable) => void) | undefined;
  const check = (): Promise<VerifyResult> => (checked ??= store.check(descriptor.digest, descriptor.size));
  const fetch = (): Promise<boolean> => {
    pending ??= (async () => {
      // A stored copy changed since it was verified is re-read first: a corrupt one is removed and downloaded again, never half extracted.
      const found = await check();
      if (found === 'ok') return false;
      const corrupt = `layer ${descriptor.digest} in the cache ${store.dir} was corrupt and was removed; downloading it again`;
      // without a listener of its own, a detail for the client's trace
      if (found === 'corrupt') (emit ? emit({ type: 'warning', msg: corrupt }) : client.emit({ type: 'message', level: 'trace', msg: corrupt }));
      // fetchBlob starts over when the bytes arrive wrong (put() keeps nothing of a failed download)
      await client.fetchBlob(ref, descriptor, (blob) => store.put(descriptor.digest, tapped(blob), descriptor.size));
      return true;
    })().catch((err: unknown) => {
      pending = undefined; // a later caller may try again
      checked = undefined;
      throw err;
    });
    return pending;
  };
  const tapped = (blob: Readable): Readable => {
    const receive = tap;
    tap = undefined;
    if (!receive) return blob;
    // both sides read at the pace of the slower one; a side that stops (destroyed) is unpiped and the other goes on
    const toStore = new PassThrough();
    const toTap = new PassThrough();
    blob.on('error', (err) => {
      toStore.destroy(err);
      toTap.destroy(err);
    });
    blob.pipe(toStore);
    blob.pipe(toTap);
    receive(toTap);
    return toStore;
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
    stored: async () => pending === undefined && (await check()) === 'ok',
    open,
    openEarly: async () => {
      if (pending === undefined) {
        const early = new Promise<Readable | undefined>((resolve) => {
          tap = resolve;
          // no body to hand over: the blob was stored, or every attempt failed (open() below throws that error)
          fetch().then(() => resolve(undefined), () => resolve(undefined)).finally(() => { tap = undefined; });
        });
        const live = await early;
        if (live) return { stream: verified(live, descriptor.digest, descriptor.size, `layer ${descriptor.digest} being downloaded from ${ref.name}`), downloading: true };
      }
      return { stream: await open(), downloading: false };
    },
  };
}
