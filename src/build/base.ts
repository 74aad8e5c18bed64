// Base images for FROM and COPY --from: resolve on the registry, keep layers in the local blob store, extract into a root.
import { mkdir } from 'node:fs/promises';
import type { Digest } from '../digest/index.js';
import { BuilderError } from '../errors.js';
import type { ImageConfig, Platform } from '../image/index.js';
import { parseReference, type ImageRef } from '../reference/index.js';
import type { RegistryClient, ResolvedImage } from '../registry/index.js';
import { extractLayer, RootFs } from '../rootfs/index.js';
import type { BlobStore } from '../cache/index.js';
import { formatOfManifest, storeLayer, type BuiltLayer } from './layers.js';
import { runPool } from './pool.js';
import type { ImageFormat } from '../image/index.js';

export interface BaseImage {
  ref?: ImageRef;
  manifestDigest?: Digest;
  format: ImageFormat;
  config: ImageConfig;
  layers: BuiltLayer[];
}

export function scratchConfig(platform: Platform): ImageConfig {
  return {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {},
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  };
}

/** Resolves an image reference and makes sure every layer is in the local store (downloads two at a time). */
export async function pullBase(
  client: RegistryClient,
  store: BlobStore,
  name: string,
  platform: Platform,
  log: (line: string) => void,
): Promise<BaseImage> {
  const ref = parseReference(name);
  const img: ResolvedImage = await client.resolveImage(ref, platform);
  const diffIds = img.config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== img.manifest.layers.length) {
    throw new BuilderError('IMAGE_INVALID', `${ref}: manifest has ${img.manifest.layers.length} layers but its config lists ${diffIds.length} diff_ids`, {
      hint: 'the base image is malformed; rebuild or re-push it',
    });
  }
  let fetched = 0;
  await runPool(img.manifest.layers, 2, async (d) => {
    if (await store.has(d.digest)) return;
    await store.put(d.digest, await client.openBlob(ref, d), d.size);
    fetched++;
  });
  log(`base ${ref}@${img.manifestDigest}: ${img.manifest.layers.length} layers (${fetched} downloaded, ${img.manifest.layers.length - fetched} from the local store)`);
  return {
    ref,
    manifestDigest: img.manifestDigest,
    format: formatOfManifest(img.mediaType),
    config: img.config,
    layers: img.manifest.layers.map((d, i) => storeLayer(store, d, diffIds[i]!, ref)),
  };
}

/** Extracts layers in order into root (created if missing). */
export async function extractLayers(root: string, layers: readonly BuiltLayer[], opts: { ignore?: (p: string) => boolean; onWarning?: (m: string) => void } = {}): Promise<RootFs> {
  await mkdir(root, { recursive: true });
  const rootfs = new RootFs(root);
  for (const l of layers) {
    await extractLayer(rootfs, l.open(), {
      layer: l.descriptor.digest,
      ...(opts.ignore ? { ignore: opts.ignore } : {}),
      ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
    });
  }
  return rootfs;
}
