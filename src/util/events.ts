// The library's one output channel: typed events a caller renders (text, JSON, a live terminal); nothing here formats for a terminal.
// Modelled on go-containerregistry's progress Update channel and BuildKit's progress writer: emitters call one function.

export type ProgressPhase = 'pull' | 'extract' | 'snapshot' | 'compress' | 'push';

/** Seconds spent per phase: wall time while at least one operation of that phase ran (overlaps counted once). */
export interface PhaseTimes {
  pull: number;
  /** Steps (RUN, COPY...) from start to finish, their snapshots included. */
  steps: number;
  /** Finding changes and writing layers (snapshot + compress). */
  snapshot: number;
  push: number;
}

export interface BuildSummary {
  digest: string;
  mediaType: string;
  /** Bytes of the image: config and layers (compressed). */
  size: number;
  layers: number;
  /** Layers written by this build's steps, and layers taken from the layer cache. */
  layersBuilt: number;
  layersCached: number;
  /** Blob bytes downloaded from and uploaded to registries. */
  bytesDown: number;
  bytesUp: number;
  /** --platform a,b: each platform's image in the index (digest, size and layers above are the index's and the sums). */
  images?: Array<{ platform: string; digest: string; size: number; layers: number }>;
  pushed: string[];
  seconds: number;
  phases: PhaseTimes;
}

/** A registry request about to be tried again: what, after which error code, the retry (1-based) of how many, the wait. */
export interface RetryNotice {
  what: string;
  code: string;
  attempt: number;
  of: number;
  waitMs: number;
}

/** Blobs one push put in a repository, by how each got there. */
export interface BlobCounts {
  uploaded: number;
  mounted: number;
  exists: number;
}

export type BuildEvent =
  /** A plain line worth a reader's attention (debug: only with -v debug; trace: the registry client's details). */
  | { type: 'message'; level: 'trace' | 'debug' | 'info'; msg: string }
  | { type: 'warning'; msg: string }
  /** A registry request failed and is retried after waitMs (shown without --verbosity: it explains a slow push). */
  | ({ type: 'retry' } & RetryNotice)
  /** One HTTP exchange with a registry (trace): origin and path only, never a query or a header. */
  | { type: 'http'; method: string; url: string; status: number }
  /** writeImage's blobs in one repository (`repository`: registry/name). */
  | { type: 'blobs-pushed'; repository: string; blobs: BlobCounts }
  /** A manifest (or an index of `images` images) put at a reference: "registry/name:tag" or "registry/name". */
  | { type: 'manifest-pushed'; ref: string; digest: string; images?: number }
  /** An image copied by digest into another repository (to sit in an index there). */
  | { type: 'image-copied'; from: string; into: string }
  /** A stage begins: its label ("stage 0 (build)"), its FROM, and FROM --platform's os/architecture. */
  | { type: 'stage-started'; stage: string; base: string; platform?: string }
  /** A stage's base root is extracted: `layers` layers, `downloaded` of them fetched now (the rest were in the local store). */
  | { type: 'base-extracting'; stage: string; layers: number; downloaded: number }
  /** A stage's base root made from the extracted-base store, by an overlay mount or a copy (extracted: into the store first). */
  | { type: 'base-cloned'; stage: string; how: 'overlay' | 'copy'; layers: number; seconds: number; extracted: boolean }
  /** A registry base resolved: its reference, manifest digest and layer count. */
  | { type: 'base-resolved'; ref: string; digest: string; layers: number }
  /** A step's snapshot compared the root before and after it: `changes` paths changed, in ms. */
  | { type: 'changes-found'; step: string; changes: number; ms: number }
  /** A step's layer written: its digest, compressed size, entries, and the time to write it. */
  | { type: 'layer-written'; step: string; digest: string; size: number; entries: number; ms: number }
  /** --single-snapshot: the build's own `layers` merged into one layer. */
  | { type: 'layers-merged'; layers: number; digest: string; size: number }
  /** An image assembled (platform: set when the build makes several). */
  | { type: 'image-built'; digest: string; mediaType: string; layers: number; platform?: string }
  /** The index over the platforms' images. */
  | { type: 'index-built'; digest: string; mediaType: string; platforms: number }
  /** The image written to a file: an OCI layout dir, or a tar (docker-archive, with the OCI layout inside for an index). */
  | { type: 'output-written'; kind: 'oci-layout' | 'docker-archive' | 'oci-docker-archive'; path: string }
  /** --sbom: `packages` found in `layers` layers, in ms. */
  | { type: 'sbom-made'; packages: number; layers: number; ms: number }
  /** Referrers (attestations) attached to `subject` in `repository`: through the referrers API, or `tag` kept by hand where it has none. */
  | { type: 'referrers-attached'; count: number; repository: string; subject: string; tag?: string; signature: boolean }
  /** One blob copied into an OCI layout (debug), and how: already there or written. */
  | { type: 'blob-copied'; digest: string; size: number; result: string }
  /** step: "[2/5]"; instruction: the history's created_by; finished/failed carry its duration, finished the layer it added. */
  | { type: 'step'; status: 'started' | 'cached' | 'finished' | 'failed'; step: string; instruction: string; ms?: number; layer?: { digest: string; size: number } }
  /** id: a digest, or the step label for snapshots; one event with done: true ends it. */
  | { type: 'progress'; phase: ProgressPhase; id: string; bytes: number; total?: number; done: boolean }
  | { type: 'summary'; summary: BuildSummary };

export type EventSink = (e: BuildEvent) => void;
