// Everything one build needs, as one typed value scoped to the call (the CLI fills it from flags and the environment).
import type { Readable } from 'node:stream';
import { BuilderError } from '../errors.js';
import type { Descriptor, ImageFormat, Platform } from '../image/index.js';
import type { RegistryClientOptions } from '../registry/index.js';
import type { RunMode } from '../run/index.js';
import type { BuildSummary, EventSink } from '../util/events.js';
import type { Host } from '../util/host.js';

/** auto: the sandbox where namespaces are allowed, else in place inside a container (kaniko's model). */
export type RunModeOption = RunMode | 'auto';
export type SnapshotMode = 'time' | 'full';

/** Where a secret's value comes from (--secret id=ID,src=PATH or id=ID,env=VAR, resolved by the CLI). */
export type SecretSource = { file: string } | { value: string };

export interface BuildOptions {
  /** --context: DIR, dir://DIR, tar://FILE, tar://stdin. */
  context: string;
  contextSubPath?: string;
  /** --dockerfile as given (relative to cwd, then to the context). */
  dockerfile: string;
  cwd: string;
  stdin?: Readable;
  /** --destination, repeatable: every tag gets the same image. */
  destinations: string[];
  noPush: boolean;
  tarPath?: string;
  ociLayoutPath?: string;
  digestFile?: string;
  imageNameWithDigestFile?: string;
  imageNameTagWithDigestFile?: string;
  /** Default: follow the base image (Docker schema2 for scratch, like kaniko). */
  imageFormat?: ImageFormat;
  reproducible: boolean;
  /** SOURCE_DATE_EPOCH, seconds. */
  sourceDateEpoch?: number;
  /** The target platform of a one-platform build (--custom-platform, or --platform with one value). */
  platform: Platform;
  /** --platform a,b: every target platform, built in one run and output as one index; absent or one: `platform` only. */
  platforms?: Platform[];
  buildPlatform: Platform;
  buildArgs: Record<string, string | undefined>;
  /** Process environment for bare --build-arg KEY. */
  env: Record<string, string | undefined>;
  target?: string;
  skipUnusedStages: boolean;
  labels: Record<string, string>;
  runMode: RunModeOption;
  /** In-place mode outside a detected container. */
  force: boolean;
  snapshotMode: SnapshotMode;
  /** --compression: gzip (default) or zstd (needs the zstd program; OCI media types only). */
  compression?: 'gzip' | 'zstd';
  /** --compression-level: gzip 0-9 (default 1), zstd 1-19 (default 3). */
  compressionLevel?: number;
  /** The registry layer cache (--cache); absent: off. */
  cache?: CacheOptions;
  /** Local content-addressed store of base layers (kept between builds). */
  cacheDir: string;
  /** --secret: RUN --mount=type=secret sources by id (never in a layer, the config, the history or a cache key). */
  secrets?: Record<string, SecretSource>;
  /** Scratch space for stage roots and layer files (removed at the end unless keepWorkDir). */
  workDir: string;
  keepWorkDir?: boolean;
  registry: RegistryClientOptions;
  /** --single-snapshot: the final stage's own layers are merged into one (base layers untouched). */
  singleSnapshot?: boolean;
  /** --ignore-path: absolute paths left out of every snapshot (and, in place, out of the wipe). */
  ignorePaths?: string[];
  /** false keeps /var/run in snapshots (kaniko's --ignore-var-run=false); default true: left out, in both run modes. */
  ignoreVarRun?: boolean;
  /** The builder's own install dir and node binary: never snapshotted or wiped in place. */
  selfPaths?: string[];
  /**
   * In place: builder-run (the RUN launcher beside node, when there), the credential files builder read (hidden from
   * every RUN step), and the pid that holds the root (one build at a time per container).
   */
  inPlace?: { launcher?: string; hide: string[]; pid: number };
  /** What the build needs of this process (ids, umask, node binary, zstd, kill): the CLI takes it from `process`. */
  host: Host;
  /** Everything the build reports (steps, progress, warnings, the summary), as typed events for the caller to render. */
  emit: EventSink;
  /** RUN output, already prefixed. */
  output: (text: string, stream: 'stdout' | 'stderr') => void;
  /** Current time, injectable for tests. */
  now?: () => Date;
  /** --sbom, --provenance, --sign-key: attached to the pushed image as OCI referrers (the image digest stays the same). */
  attest?: AttestRequest;
  /** Cancels the build (the CLI's SIGINT/SIGTERM): RUN processes killed, nothing more pushed, work dir removed. */
  signal?: AbortSignal;
  /** The CLI's push permission check, run beside the base pulls: no step runs and nothing is pushed before it passed. */
  pushCheck?: Promise<void>;
}

/** Throws the cancellation (the signal's reason when it is a BuilderError) once `signal` is aborted. */
export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  throw signal.reason instanceof BuilderError
    ? signal.reason
    : new BuilderError('BUILD_CANCELLED', 'the build was cancelled', { hint: 'rerun the build', exitCode: 130 });
}

export interface AttestRequest {
  sbom: boolean;
  provenance?: 'min' | 'max';
  /** A parsed ECDSA P-256 private key (the CLI reads and checks it before the build starts). */
  signKey?: import('node:crypto').KeyObject;
  /** The provenance's runDetails.builder.id, and builder's version ("0.1.0"). */
  builderId: string;
  version: string;
  /** CI_* variables of the job (GitLab), for the provenance's metadata. */
  ci: Record<string, string | undefined>;
}

export interface CacheOptions {
  /** --cache-repo: REGISTRY/REPO or oci:DIR; default: the first destination's repository + "/cache" ($CI_REGISTRY_IMAGE/cache in GitLab). */
  repo?: string;
  /** --cache-ttl in milliseconds (default 336h): older entries are ignored and rebuilt. */
  ttlMs: number;
  runLayers: boolean;
  copyLayers: boolean;
  /** false with --no-push-cache: look up, never write. */
  push: boolean;
}

/** Options after the run mode is decided. */
export type ResolvedBuildOptions = BuildOptions & { runMode: RunMode };

export interface BuildResult {
  /** The image's manifest digest, or the index's with several platforms. */
  manifestDigest: string;
  /** The image's config (one platform only: an index has none). */
  configDigest?: string;
  mediaType: string;
  /** Each platform's image (one for a one-platform build): what an attestation or signature per pushed image names. */
  images: Array<{ platform: Platform; descriptor: Descriptor & { platform: Platform }; configDigest: string; layers: number }>;
  /** Each destination with the digest the registry reported. */
  pushed: Array<{ destination: string; digest: string }>;
  /** Layers of every platform's image (as the summary): each image's own count is in `images`. */
  layers: number;
  /** What the final summary event said. */
  summary: BuildSummary;
}
