// Making images (go-containerregistry's mutate/, reduced): config and manifest bytes from layers, history and the container config.
import { BuilderError } from '../errors.js';
import { sha256 } from '../digest/index.js';
import { layerMediaType, type Layer } from './layer.js';
import { bufferStream } from './oci-layout.js';
import { platformOf } from './platform.js';
import type { Digest } from '../digest/index.js';
import { MediaType, type BlobOpener, type Descriptor, type ContainerConfig, type HistoryEntry, type ImageConfig, type ImageData, type ImageFormat, type Manifest } from './types.js';

export interface AssembleInput {
  format: ImageFormat;
  /** Base config: unknown fields (os.version, variant...) are carried over. None: an image of these layers alone. */
  base?: ImageConfig;
  config: ContainerConfig;
  layers: readonly Layer[];
  history: readonly HistoryEntry[];
  created: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  /** The manifest's annotations (a layer-cache entry records its key there). */
  annotations?: Record<string, string>;
}

/** A single-platform image whose blobs can all be opened: what every writer (registry, layout, archive) takes. */
export interface Image extends ImageData {
  layers: Layer[];
}

export function assembleImage(input: AssembleInput): Image {
  const { container_config: _cc, docker_version: _dv, container: _c, ...baseRest } = (input.base ?? {}) as ImageConfig & Record<string, unknown>;
  const config: ImageConfig = {
    ...baseRest,
    architecture: input.architecture,
    os: input.os,
    ...(input.variant ? { variant: input.variant } : {}),
    created: input.created,
    ...(input.author !== undefined ? { author: input.author } : {}),
    config: input.config,
    rootfs: { type: 'layers', diff_ids: input.layers.map((l) => l.diffId) },
    history: [...input.history],
  };
  if (!input.variant) delete config.variant;
  const configBytes = Buffer.from(JSON.stringify(config));
  const layers = input.layers.map((l) => ({ ...l, descriptor: { ...l.descriptor, mediaType: layerMediaType(input.format, l.descriptor.mediaType) } }));
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: input.format === 'oci' ? MediaType.OciManifest : MediaType.DockerManifest,
    config: {
      mediaType: input.format === 'oci' ? MediaType.OciConfig : MediaType.DockerConfig,
      digest: sha256(configBytes),
      size: configBytes.length,
    },
    layers: layers.map((l) => {
      const { platform: _p, ...d } = l.descriptor;
      return d;
    }),
    ...(input.annotations ? { annotations: input.annotations } : {}),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  return {
    manifest,
    manifestBytes,
    manifestDigest: sha256(manifestBytes),
    mediaType: manifest.mediaType!,
    config,
    configBytes,
    layers,
  };
}

/** Opens any blob of the image: the config from memory, layers through their openers. */
export function imageBlobOpener(image: Image): BlobOpener {
  const byDigest = new Map(image.layers.map((l) => [l.descriptor.digest, l]));
  return async (desc) => {
    if (desc.digest === image.manifest.config.digest) return bufferStream(image.configBytes);
    const l = byDigest.get(desc.digest);
    if (!l) throw new BuilderError('IMAGE_BLOB_UNKNOWN', `image ${image.manifestDigest} has no blob ${desc.digest}`, { hint: 'this is a bug; please report it' });
    return l.open();
  };
}

/** A multi-platform image: its index document and one single-platform image per entry, in the same order. */
export interface ImageIndex {
  mediaType: string;
  bytes: Buffer;
  digest: Digest;
  /** The index's entries: each image's manifest descriptor with its platform. */
  manifests: Descriptor[];
  images: Image[];
}

/** Docker manifests only make a Docker manifest list (what --image-format docker asks for); any OCI manifest an OCI index. */
export function assembleIndex(images: readonly Image[]): ImageIndex {
  const docker = images.every((i) => i.mediaType === MediaType.DockerManifest);
  const mediaType = docker ? MediaType.DockerManifestList : MediaType.OciIndex;
  const manifests: Descriptor[] = images.map((i) => ({
    mediaType: i.mediaType,
    digest: i.manifestDigest,
    size: i.manifestBytes.length,
    platform: platformOf(i.config),
  }));
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests }));
  return { mediaType, bytes, digest: sha256(bytes), manifests, images: [...images] };
}
