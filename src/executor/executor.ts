// What every stage and step handler shares, in three small parts: services (I/O), scheduling (between stages), settings (fixed per build).
import type { LayerChanges } from '../attest/index.js';
import type { BuildCache, RunCache } from '../cache/index.js';
import type { BlobStore, RootfsStore } from '../store/index.js';
import type { Digest } from '../digest/index.js';
import type { BuildContext, FileHashCache } from '../context/index.js';
import type { BuildPlan, StageVars } from '../dockerfile/index.js';
import type { ContainerConfig, HistoryEntry, ImageFormat, Layer, Platform } from '../image/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { RootFs } from '../rootfs/index.js';
import type { RunMode } from '../run/index.js';
import type { BaseImage, ResolvedImage } from './base.js';
import type { StageRoot } from './root.js';
import type { SecretSource } from './options.js';
import type { EventSink } from '../util/events.js';
import type { Host } from '../util/host.js';

export interface Services {
  client: RegistryClient;
  /** Local content-addressed store of downloaded layers. */
  store: BlobStore;
  /** Extracted bases by ChainID (sandbox mode): a warm build clones a base root instead of extracting it. */
  rootfs?: RootfsStore;
  ctx: BuildContext;
  /** Per-file hashes of a directory context under the cache dir, loaded on first use (COPY keys with --cache). */
  fileHashes?: () => Promise<FileHashCache>;
  plan: BuildPlan;
  /** The build's event stream (steps, progress, warnings, messages). */
  emit: EventSink;
  /** RUN output, already prefixed. */
  output: (text: string, stream: 'stdout' | 'stderr') => void;
  /** The registry layer cache (--cache), when enabled. */
  cache?: BuildCache;
  /** RUN --mount=type=cache directories under the cache dir, and who uses each now (shared by every target). */
  runCache: RunCache;
  /** Logs a warning the first time it is seen in this build. */
  warnOnce: (message: string) => void;
  /** With --sbom: what each layer built in this run does, by digest, taken as it was written (see src/attest/scan.ts). */
  sbomLayers?: Map<Digest, LayerChanges>;
}

export interface Scheduling {
  /** Stages by index, as they finish: a stage awaits only the stages it reads (FROM or COPY --from). */
  done: Map<number, Promise<StageResult>>;
  /** Roots materialized for COPY --from and RUN --mount from= (images, and stages in place; stage-sources.ts), by key; shared by concurrent stages. */
  images: Map<string, Promise<RootFs>>;
  /** ADD URL downloads by URL and checksum: the cache key (computed ahead) and the step share one download. */
  downloads: Map<string, Promise<import('./remote.js').Download>>;
  /**
   * Images this executor resolved by reference (FROM, COPY --from, RUN --mount from=), by reference and platform: the
   * manifest digest picked for that platform, for the provenance. One map per executor: each platform has its own bases.
   */
  resolved: Map<string, ResolvedImage>;
  /** How many stages not yet finished (the running one included) depend on each stage. */
  usesLeft: Map<number, number>;
  /** Foreign platforms probed for RUN (emulator, or the image's /bin/sh ran): undefined = runnable, else why not. Shared by targets. */
  runnable: Map<string, Promise<string | undefined>>;
  /** Aborted when any stage fails: the others stop at their next step. */
  signal: AbortSignal;
  /** More than one stage runs: log lines name the stage. */
  multiStage: boolean;
  /** The push permission check, run beside the base pulls: a step runs only once it passed. */
  pushCheck?: Promise<void>;
  /** --run-mode sandbox, or auto outside the executor image: the run-mode probe, deferred (src/executor/build.ts). */
  sandbox?: SandboxCheck;
}

export interface SandboxCheck {
  /** A RUN's own sandbox started and its step succeeded: the probe is not needed. */
  worked(): void;
  /** Runs the probe once unless a RUN worked; rejects with the error choosing the run mode would have thrown. */
  verify(): Promise<void>;
  /** A probe started (and no longer needed, a RUN having worked meanwhile) has finished, its temp dir gone. */
  settled(): Promise<void>;
}

export interface Settings {
  runMode: RunMode;
  /** The target platform (a stage's FROM --platform overrides it for that stage). */
  platform: Platform;
  /** The platform builder runs on: RUN for any other needs an emulator. */
  buildPlatform: Platform;
  /** --platform a,b: the target's name, in stage and step labels. */
  platformTag?: string;
  /** --image-format; default: that of the base image. */
  imageFormat?: ImageFormat;
  /** The image's created time (and every history entry's). */
  created: string;
  /** --reproducible: layer entries get this mtime. */
  mtime?: Date;
  compression?: 'gzip' | 'zstd';
  compressionLevel?: number;
  /** --snapshot-mode full: hash file contents too. */
  hashContents: boolean;
  /** Snapshot excludes: runtime mounts in sandbox mode, ignored paths in place (relative, no leading "/"). */
  exclude: (rel: string) => boolean;
  /** The same excludes as relative path prefixes (in-place wipe keeps their parents). */
  excludePrefixes: readonly string[];
  /** What the build needs of this process (BuildOptions.host). */
  host: Host;
  /** In place: the RUN launcher and the credential files hidden from steps (BuildOptions.inPlace). */
  inPlace?: { launcher?: string; hide: readonly string[]; onStep?: (pid: number | undefined) => Promise<void> };
  /** --secret by id, for RUN --mount=type=secret. */
  secrets: Readonly<Record<string, SecretSource>>;
  stageRoot(index: number): string;
  /** A fresh path in the work dir (layer files, materialized roots). */
  scratchPath(prefix: string): string;
}

export interface Executor {
  services: Services;
  scheduling: Scheduling;
  settings: Settings;
}

/** What a finished stage leaves for later stages and for the output. */
export interface StageResult {
  index: number;
  root: StageRoot;
  base: BaseImage;
  config: ContainerConfig;
  author?: string;
  layers: Layer[];
  history: HistoryEntry[];
  platform: Platform;
  /** ENV and ARG values at the end of the stage: a stage built FROM this one starts with them. */
  vars: StageVars;
  /** With --cache: the key of the stage's last step (a child stage's chain and COPY --from keys start here). */
  cacheKey?: string;
}
