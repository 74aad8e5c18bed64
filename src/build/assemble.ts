// Image assembly: config and manifest bytes (OCI or Docker media types) from layers, history and the container config.
import { sha256 } from '../digest/index.js';
import { MediaType, type ContainerConfig, type HistoryEntry, type ImageConfig, type ImageData, type ImageFormat, type Manifest } from '../image/index.js';
import { layerMediaType, type BuiltLayer } from './layers.js';

export interface AssembleInput {
  format: ImageFormat;
  /** Base config: unknown fields (os.version, variant...) are carried over. */
  base: ImageConfig;
  config: ContainerConfig;
  layers: readonly BuiltLayer[];
  history: readonly HistoryEntry[];
  created: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
}

export interface AssembledImage extends ImageData {
  layers: BuiltLayer[];
}

export function assembleImage(input: AssembleInput): AssembledImage {
  const { container_config: _cc, docker_version: _dv, container: _c, ...baseRest } = input.base as ImageConfig & Record<string, unknown>;
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
