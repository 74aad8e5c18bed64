// Layers whose bytes live in the local blob store, downloaded from a registry on first need (never before).
import type { Digest } from '../digest/index.js';
import type { Descriptor, Layer } from '../image/index.js';
import type { ImageRef } from '../reference/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { BlobStore } from './blob-store.js';

/** A layer of a registry image: fetch() downloads it into the store once; a push mounts it from `ref` without reading it. */
export function remoteLayer(client: RegistryClient, store: BlobStore, ref: ImageRef, descriptor: Descriptor, diffId: Digest): Layer & { fetch(): Promise<boolean> } {
  let pending: Promise<boolean> | undefined;
  const fetch = (): Promise<boolean> => {
    pending ??= (async () => {
      if (await store.has(descriptor.digest)) return false;
      await store.put(descriptor.digest, await client.openBlob(ref, descriptor), descriptor.size);
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
