// The layer cache: one small image per step, tagged with the step's key, in a registry repository or an OCI layout.
import { isBuilderError } from '../errors.js';
import type { Digest } from '../digest/index.js';
import {
  assembleImage, imageBlobOpener, layerCompression, MediaType, OciLayout, REF_NAME_ANNOTATION, parseManifest, writeImageBlobs,
  type Descriptor, type Image, type Layer, type Manifest, type Platform,
} from '../image/index.js';
import { withDigest, withTag, type ImageRef } from '../reference/index.js';
import { writeImage, type RegistryClient } from '../registry/index.js';
import { remoteLayer, type BlobStore } from '../store/index.js';
import { isCacheKey } from './keys.js';

/** Annotations of an entry's manifest: a lookup needs only the manifest, never the config. */
export const ANNOTATION = {
  key: 'dev.builder.cache.key',
  step: 'dev.builder.cache.step',
  created: 'dev.builder.cache.created',
  diffId: 'dev.builder.cache.diff-id',
  /** The layer's own (compressed) digest beside its diff-id: a descriptor swapped for another blob is caught without a download. */
  layer: 'dev.builder.cache.layer',
  parent: 'dev.builder.cache.parent-chain',
} as const;

export interface CacheEntry {
  key: string;
  /** The step as its history records it (created_by). */
  step: string;
  /** When the entry was written (ISO time): the TTL counts from here. */
  created: string;
  /** The step's layer; absent when the step changed nothing. */
  layer?: Layer;
  /**
   * ChainID of the layers the step ran on ('' for none); absent for a layer that fits any parent (COPY --link). Keys
   * chain on inputs, not outputs: a non-reproducible step written by two builds makes this the only proof of a match.
   */
  parent?: string;
}

export type LookupResult =
  | { kind: 'hit'; entry: CacheEntry }
  | { kind: 'miss' }
  /** There is an entry but it cannot be used: corrupt, for another key, or expired. */
  | { kind: 'unusable'; reason: string };

export interface LayerCache {
  /** "registry.example.com/group/app/cache" or "oci:DIR". */
  readonly describe: string;
  /** A repository a pushed layer of this cache can be mounted from (registry caches only). */
  readonly mountFrom?: ImageRef;
  lookup(key: string, now: Date): Promise<LookupResult>;
  /** Writes the entry (layer blob first, manifest last); an existing entry for the key is replaced. */
  store(entry: CacheEntry, platform: Platform): Promise<void>;
  /** Every entry's key and created time, for pruning (manifests only, no blobs). */
  list(): Promise<Array<{ key: string; created?: string; digest: Digest }>>;
  remove(key: string, digest: Digest): Promise<void>;
}

/** The entry as a one-layer (or empty) OCI image whose config and manifest record key, step and time. */
export function entryImage(entry: CacheEntry, platform: Platform): Image {
  const labels = {
    [ANNOTATION.key]: entry.key, [ANNOTATION.step]: entry.step, [ANNOTATION.created]: entry.created,
    ...(entry.parent !== undefined ? { [ANNOTATION.parent]: entry.parent } : {}),
  };
  const layer = entry.layer;
  // the descriptor as entries have always recorded it: OCI gzip or zstd, no other field
  const mediaType = layer && layerCompression(layer.descriptor.mediaType) === 'zstd' ? MediaType.OciLayerZstd : MediaType.OciLayerGzip;
  return assembleImage({
    format: 'oci',
    architecture: platform.architecture,
    os: platform.os,
    created: entry.created,
    config: { Labels: labels },
    layers: layer ? [{ ...layer, descriptor: { mediaType, digest: layer.descriptor.digest, size: layer.descriptor.size } }] : [],
    history: [{ created: entry.created, created_by: entry.step, ...(layer ? {} : { empty_layer: true }) }],
    annotations: { ...labels, ...(layer ? { [ANNOTATION.diffId]: layer.diffId, [ANNOTATION.layer]: layer.descriptor.digest } : {}) },
  });
}

/** Checks a stored manifest against the key asked for and the TTL; returns the layer descriptor and diffId. */
export function readEntry(bytes: Buffer, key: string, now: Date, ttlMs: number): { ok: true; step: string; created: string; parent?: string; layer?: { descriptor: Descriptor; diffId: Digest } } | { ok: false; reason: string } {
  let m: Manifest;
  try {
    m = parseManifest(bytes, `cache entry ${key}`);
  } catch (err) {
    return { ok: false, reason: `not a manifest (${(err as Error).message})` };
  }
  const a = m.annotations ?? {};
  if (a[ANNOTATION.key] !== key) return { ok: false, reason: `it records key ${a[ANNOTATION.key] ?? 'none'}` };
  const created = a[ANNOTATION.created];
  const t = created ? Date.parse(created) : NaN;
  if (!created || Number.isNaN(t)) return { ok: false, reason: 'it records no creation time' };
  if (now.getTime() - t > ttlMs) return { ok: false, reason: `it expired (created ${created})` };
  if (m.layers.length > 1) return { ok: false, reason: `it has ${m.layers.length} layers` };
  const step = a[ANNOTATION.step] ?? '';
  const parent = a[ANNOTATION.parent];
  const found = { ok: true as const, step, created, ...(parent !== undefined ? { parent } : {}) };
  if (m.layers.length === 0) return found;
  const diffId = a[ANNOTATION.diffId];
  if (!diffId || !/^sha256:[0-9a-f]{64}$/.test(diffId)) return { ok: false, reason: 'its layer has no diff-id' };
  const descriptor = m.layers[0]!;
  if (a[ANNOTATION.layer] !== descriptor.digest) {
    return { ok: false, reason: `its layer descriptor points at ${descriptor.digest}, not at the layer the entry recorded (${a[ANNOTATION.layer] ?? 'none'})` };
  }
  return { ...found, layer: { descriptor, diffId: diffId as Digest } };
}

const isNotFound = (err: unknown): boolean =>
  isBuilderError(err, 'REGISTRY_MANIFEST_UNKNOWN') || isBuilderError(err, 'REGISTRY_NOT_FOUND') || isBuilderError(err, 'REGISTRY_NAME_UNKNOWN');

/** A cache in a registry repository: entries are tags named by key; layers are read through the local blob store when given. */
export function registryLayerCache(client: RegistryClient, repo: ImageRef, ttlMs: number, store?: BlobStore): LayerCache {
  const layerOf = (descriptor: Descriptor, diffId: Digest): Layer => (store
    ? remoteLayer(client, store, repo, descriptor, diffId)
    : { descriptor, diffId, mountFrom: repo, open: () => client.openBlob(repo, descriptor) });
  return {
    describe: repo.name,
    mountFrom: repo,
    async lookup(key, now) {
      let bytes: Buffer;
      try {
        bytes = (await client.getManifest(withTag(repo, key))).bytes;
      } catch (err) {
        if (isNotFound(err)) return { kind: 'miss' };
        throw err;
      }
      const e = readEntry(bytes, key, now, ttlMs);
      if (!e.ok) return { kind: 'unusable', reason: e.reason };
      if (e.layer && !(await client.hasBlob(repo, e.layer.descriptor.digest))) return { kind: 'unusable', reason: `its layer ${e.layer.descriptor.digest} is missing` };
      return {
        kind: 'hit',
        entry: { key, step: e.step, created: e.created, ...(e.parent !== undefined ? { parent: e.parent } : {}), ...(e.layer ? { layer: layerOf(e.layer.descriptor, e.layer.diffId) } : {}) },
      };
    },
    async store(entry, platform) {
      // layer and config at once; the entry's manifest only once both are there
      await writeImage(client, entryImage(entry, platform), [withTag(repo, entry.key)]);
    },
    async list() {
      let tags: string[];
      try {
        tags = await client.listTags(repo);
      } catch (err) {
        if (isNotFound(err)) return [];
        throw err;
      }
      const out: Array<{ key: string; created?: string; digest: Digest }> = [];
      for (const key of tags.filter((t) => isCacheKey(t))) {
        const m = await client.getManifest(withTag(repo, key));
        const created = (parseManifest(m.bytes, `cache entry ${key}`).annotations ?? {})[ANNOTATION.created];
        out.push({ key, digest: m.digest, ...(created ? { created } : {}) });
      }
      return out;
    },
    async remove(_key, digest) {
      await client.deleteManifest(withDigest(repo, digest));
    },
  };
}

/** A cache in a local OCI layout (kaniko's `--cache-repo oci:DIR`): entries are index.json refs named by key. */
export function ociLayerCache(dir: string, ttlMs: number): LayerCache {
  const layout = OciLayout.create(dir);
  // index.json is read, changed and replaced: one update at a time here, and re-checked for another process's update.
  let queue: Promise<unknown> = Promise.resolve();
  const setRef = (l: OciLayout, desc: Descriptor, key: string): Promise<void> => {
    const p = queue.then(async () => {
      for (let attempt = 0; attempt < 5; attempt++) {
        await l.setRef(desc, key);
        if ((await l.readIndex()).manifests.some((m) => m.digest === desc.digest && m.annotations?.[REF_NAME_ANNOTATION] === key)) return;
      }
    });
    queue = p.catch(() => undefined);
    return p;
  };
  return {
    describe: `oci:${dir}`,
    async lookup(key, now) {
      const l = await layout;
      const desc = (await l.readIndex()).manifests.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === key);
      if (!desc) return { kind: 'miss' };
      const bytes = await l.readBlob(desc).catch(() => undefined);
      if (!bytes) return { kind: 'unusable', reason: `its manifest ${desc.digest} is missing or corrupt` };
      const e = readEntry(bytes, key, now, ttlMs);
      if (!e.ok) return { kind: 'unusable', reason: e.reason };
      if (e.layer && !(await l.hasBlob(e.layer.descriptor.digest))) return { kind: 'unusable', reason: `its layer ${e.layer.descriptor.digest} is missing` };
      const d = e.layer?.descriptor;
      return {
        kind: 'hit',
        entry: { key, step: e.step, created: e.created, ...(e.parent !== undefined ? { parent: e.parent } : {}), ...(e.layer && d ? { layer: { descriptor: d, diffId: e.layer.diffId, open: () => l.openBlob(d) } } : {}) },
      };
    },
    async store(entry, platform) {
      const l = await layout;
      const img = entryImage(entry, platform);
      await setRef(l, await writeImageBlobs(l, img, imageBlobOpener(img)), entry.key);
    },
    async list() {
      const l = await layout;
      const out: Array<{ key: string; created?: string; digest: Digest }> = [];
      for (const m of (await l.readIndex()).manifests) {
        const key = m.annotations?.[REF_NAME_ANNOTATION];
        if (!key || !isCacheKey(key)) continue;
        const bytes = await l.readBlob(m).catch(() => undefined);
        const created = bytes ? (parseManifest(bytes).annotations ?? {})[ANNOTATION.created] : undefined;
        out.push({ key, digest: m.digest, ...(created ? { created } : {}) });
      }
      return out;
    },
    async remove(key) {
      await (await layout).removeRef(key);
    },
  };
}
