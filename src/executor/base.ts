// Base images for FROM and COPY --from: resolving fetches only the manifest and config; layers download when a root needs them.
import type { Digest } from '../digest/index.js';
import { BuilderError } from '../errors.js';
import { formatOfManifest, formatPlatform, normalizePlatform, platformOf, type ImageConfig, type ImageFormat, type Layer, type Platform } from '../image/index.js';
import { parseReference, type ImageRef } from '../reference/index.js';
import type { RegistryClient } from '../registry/index.js';
import { remoteLayer, resolveImageCached, type BlobStore } from '../store/index.js';
import { DEFAULT_PATH_ENV, withDefaultPath } from '../dockerfile/index.js';
import type { EventSink } from '../util/events.js';

export interface BaseImage {
  ref?: ImageRef;
  manifestDigest?: Digest;
  format: ImageFormat;
  config: ImageConfig;
  layers: Layer[];
}

/** BuildKit's emptyImage: PATH set (not on Windows) and WorkingDir "/". */
export function scratchConfig(platform: Platform): ImageConfig {
  return {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: platform.os === 'windows' ? { WorkingDir: '/' } : { Env: [DEFAULT_PATH_ENV], WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  };
}

/** An image reference as resolved for one platform (the provenance's resolvedDependencies). */
export interface ResolvedImage {
  ref: ImageRef;
  digest: Digest;
  platform: Platform;
}

/**
 * Resolves an image reference to its manifest and config; its layers are remote until fetched.
 * `forFrom`: a stage's base (another platform's image is an error); else only its files are used (COPY --from, RUN
 * --mount=from: another platform's single image is a warning, as BuildKit, since arch-neutral files are common).
 */
export async function resolveBase(client: RegistryClient, store: BlobStore, name: string, platform: Platform, onWarning?: (m: string) => void, resolved?: Map<string, ResolvedImage>, forFrom = false): Promise<BaseImage> {
  const ref = parseReference(name);
  // By digest with a warm store: no registry request; by tag: one manifest GET.
  const emit: EventSink | undefined = onWarning && ((e) => { if (e.type === 'warning') onWarning(e.msg); });
  const img = await resolveImageCached(client, store, ref, platform, emit ? { emit } : {});
  checkBasePlatform(ref, img.config, platform, img.index !== undefined, forFrom ? undefined : (m) => onWarning?.(m));
  resolved?.set(`${ref} ${formatPlatform(platform)}`, { ref, digest: img.manifestDigest, platform }); // the provenance's resolvedDependencies
  const diffIds = img.config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== img.manifest.layers.length) {
    throw new BuilderError('IMAGE_INVALID', `${ref}: manifest has ${img.manifest.layers.length} layers but its config lists ${diffIds.length} diff_ids`, {
      hint: 'the base image is malformed; rebuild or re-push it',
    });
  }
  // dockerfile2llb makes sure PATH is always set: a base config without one gets the default appended.
  const config = img.config.os === 'windows' || img.config.config?.Env?.some((e) => e.startsWith('PATH='))
    ? img.config
    : { ...img.config, config: { ...(img.config.config ?? {}), Env: withDefaultPath(img.config.config?.Env) } };
  return {
    ref,
    manifestDigest: img.manifestDigest,
    format: formatOfManifest(img.mediaType),
    config,
    layers: img.manifest.layers.map((d, i) => remoteLayer(client, store, ref, d, diffIds[i]!, emit)),
  };
}

/**
 * An image of another os/architecture than the stage's would run the wrong binaries (or none): BuildKit only warns,
 * builder stops. Variants are not compared for a single image (arm64 == arm64/v8; an index entry was already matched).
 */
function checkBasePlatform(ref: ImageRef, config: ImageConfig, want: Platform, fromIndex: boolean, warn?: (m: string) => void): void {
  if (!config.architecture || !config.os) return; // nothing to compare (a hand-made config)
  const have = normalizePlatform(platformOf(config));
  const w = normalizePlatform(want);
  if (have.os === w.os && have.architecture === w.architecture) return;
  if (warn) {
    warn(`${ref} is a ${formatPlatform(have)} image${fromIndex ? ' (picked from its index)' : ''}; its files are used in a stage that builds for ${formatPlatform(w)}`);
    return;
  }
  throw new BuilderError('BASE_PLATFORM_MISMATCH', `${ref} is a ${formatPlatform(have)} image${fromIndex ? ' (picked from its index)' : ''}, but this stage builds for ${formatPlatform(w)}`, {
    hint: `use a multi-platform base (an index with ${formatPlatform(w)}), a base image for ${formatPlatform(w)}, or FROM --platform=${formatPlatform(have)} if the stage is meant to run there`,
  });
}
