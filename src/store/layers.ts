// Layers whose bytes live in the local blob store, downloaded from a registry on first need (never before).
import type { Digest } from '../digest/index.js';
import type { Descriptor, Layer } from '../image/index.js';
import type { ImageRef } from '../reference/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { EventSink } from '../util/events.js';
import type { BlobStore } from './blob-store.js';

/** A layer of a registry image: fetch() downloads it into the store once; a push mounts it from `ref` without reading it. */
export function remoteLayer(
  client: RegistryClient, store: BlobStore, ref: ImageRef, descriptor: Descriptor, diffId: Digest, emit?: EventSink,
): Layer & { fetch(): Promise<boolean> } {
  let pending: Promise<boolean> | undefined;
  const fetch = (): Promise<boolean> => {
    pending ??= (async () => {
      // A stored copy changed since it was verified is re-read first: a corrupt one is removed and downloaded again, never half extracted.
      const found = await store.check(descriptor.digest, descriptor.size);
      if (found === 'ok') return false;
      const corrupt = `layer ${descriptor.digest} in the cache ${store.dir} was corrupt and was removed; downloading it again`;
      // without a listener of its own, a detail for the client's trace
      if (found === 'corrupt') (emit ? emit({ type: 'warning', msg: corrupt }) : client.emit({ type: 'message', level: 'trace', msg: corrupt }));
      // fetchBlob starts over when the bytes arrive wrong (put() keeps nothing of a failed download)
      await client.fetchBlob(ref, descriptor, (blob) => store.put(descriptor.digest, blob, descriptor.size));
      return true;
    })().catch((err: unknown) => {
      pending = undefined; // a later caller may try again
      throw err;
    });
    return pending;
  };
  return {
    descriptor,
    diffId,
    mountFrom: ref,
    fetch,
    open: async () => {
      await fetch();
      return store.open(descriptor.digest, descriptor.size);
    },
  };
}
