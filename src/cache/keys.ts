// Layer-cache keys: sha256 over a versioned, length-prefixed encoding, so no two different inputs can share a key by concatenation.
import { createHash } from 'node:crypto';

/**
 * Bump when what goes into a key or an entry changes: every older entry stops matching (v2: entries record their parent
 * chain; v3: entries record their layer's digest beside its diff-id).
 */
export const CACHE_KEY_VERSION = 'builder-layer-cache-key-v3';

export interface StepKeyInput {
  /** The previous step's key; the chain starts at the base (manifest digest, "scratch" and platform, or the parent stage's key). */
  parent: string;
  /** The expanded instruction, canonically encoded (see instructionText). */
  instruction: string;
  /** ARG and ENV values in effect for the step. */
  env: ReadonlyMap<string, string>;
  /** Build settings that change the layer's bytes (e.g. reproducible timestamps). */
  flags: Readonly<Record<string, string>>;
  /** COPY/ADD: content digest of the sources as selected, or the key of the stage copied from. */
  sources?: string;
}

/** 64 hex digits: a valid registry tag on its own. */
export function stepKey(input: StepKeyInput): string {
  const h = createHash('sha256');
  const field = (s: string): void => {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    h.update(len);
    h.update(b);
  };
  const pairs = (entries: Iterable<[string, string]>): void => {
    const sorted = [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    field(String(sorted.length));
    for (const [k, v] of sorted) {
      field(k);
      field(v);
    }
  };
  field(CACHE_KEY_VERSION);
  field(input.parent);
  field(input.instruction);
  pairs(input.env);
  pairs(Object.entries(input.flags));
  field(input.sources === undefined ? '' : `sources:${input.sources}`);
  return h.digest('hex');
}

/** The instruction as canonical JSON (sorted keys), without where it was written: moving a line does not change its key. */
export function instructionText(inst: object): string {
  const canon = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canon);
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) {
        if (k === 'file' || k === 'line' || k === 'endLine' || k === 'original') continue;
        out[k] = canon((v as Record<string, unknown>)[k]);
      }
      return out;
    }
    return v;
  };
  return JSON.stringify(canon(inst));
}

/** True for a string that can be a cache key (and so a cache tag). */
export function isCacheKey(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}
