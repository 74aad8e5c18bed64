// Garbage collection of the layer cache (kaniko never had one): delete entries older than a cutoff.
import type { LayerCache } from './layer-cache.js';

export interface PruneResult {
  deleted: Array<{ key: string; created: string }>;
  kept: number;
  /** Tags that look like keys but record no creation time: left alone. */
  unknown: string[];
}

/** Deletes (or with dryRun only lists) the entries created more than olderThanMs before now. */
export async function pruneLayerCache(cache: LayerCache, olderThanMs: number, now: Date, opts: { dryRun?: boolean; onDelete?: (key: string, created: string) => void } = {}): Promise<PruneResult> {
  const result: PruneResult = { deleted: [], kept: 0, unknown: [] };
  for (const e of await cache.list()) {
    const t = e.created ? Date.parse(e.created) : NaN;
    if (!e.created || Number.isNaN(t)) {
      result.unknown.push(e.key);
    } else if (now.getTime() - t > olderThanMs) {
      if (!opts.dryRun) await cache.remove(e.key, e.digest);
      opts.onDelete?.(e.key, e.created);
      result.deleted.push({ key: e.key, created: e.created });
    } else {
      result.kept++;
    }
  }
  return result;
}
