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

export type BuildEvent =
  /** A plain line worth a reader's attention (debug: only with -v debug). */
  | { type: 'message'; level: 'debug' | 'info'; msg: string }
  | { type: 'warning'; msg: string }
  /** step: "[2/5]"; instruction: the history's created_by; finished/failed carry its duration, finished the layer it added. */
  | { type: 'step'; status: 'started' | 'cached' | 'finished' | 'failed'; step: string; instruction: string; ms?: number; layer?: { digest: string; size: number } }
  /** id: a digest, or the step label for snapshots; one event with done: true ends it. */
  | { type: 'progress'; phase: ProgressPhase; id: string; bytes: number; total?: number; done: boolean }
  | { type: 'summary'; summary: BuildSummary };

export type EventSink = (e: BuildEvent) => void;
