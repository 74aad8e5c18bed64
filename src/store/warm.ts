// The warmer: fills the local store with base images (documents and every layer) ahead of builds, e.g. from a scheduled job.
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { isDigest, type Digest } from '../digest/index.js';
import { BuilderError, isBuilderError } from '../errors.js';
import { planBuild, readDockerfile } from '../dockerfile/index.js';
import { formatPlatform, type Platform } from '../image/index.js';
import { parseReference, withDigest, type ImageRef } from '../reference/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { EventSink } from '../util/events.js';
import { runPool } from '../util/pool.js';
import type { CacheDir } from './cache-dir.js';
import { resolveImageCached } from './image-store.js';
import { formatBytes } from '../util/bytes.js';
import { writeFileAtomic } from '../util/fs.js';

export interface WarmOptions {
  client: RegistryClient;
  /** The --cache-dir whose store (and tag records) this fills. */
  cacheDir: CacheDir;
  /** Download and replace every document and layer even when stored (and ask the registry about tags). */
  force: boolean;
  /** A tag this warmer resolved less than ttlMs ago is taken from the store without asking the registry; 0: always ask. */
  ttlMs: number;
  /** What the warmer does, as events (messages, warnings). */
  emit: EventSink;
  now?: () => number;
  /** Layers downloaded at once (default 3). */
  concurrency?: number;
}

export interface WarmTarget {
  /** An image reference as written (by tag or digest). */
  image: string;
  platform: Platform;
}

export interface WarmResult {
  image: string;
  /** What the reference points to (an index for a multi-platform image). */
  digest: Digest;
  /** The platform's image manifest. */
  manifestDigest: Digest;
  layers: number;
  downloaded: { layers: number; bytes: number };
  /** Layers found in the store and verified; corrupt ones were removed and downloaded (`repaired`). */
  present: number;
  repaired: number;
  /** The tag was not asked of the registry: resolved within --cache-ttl. */
  tagFromRecord: boolean;
}

interface TagRecord {
  ref: string;
  digest: Digest;
  resolvedAt: string;
}

const info = (opts: WarmOptions, msg: string): void => opts.emit({ type: 'message', level: 'info', msg });

/** Warms one image: manifest(s) and config through the store, then every layer (verified if present, else downloaded). */
export async function warmImage(target: WarmTarget, opts: WarmOptions): Promise<WarmResult> {
  const ref = parseReference(target.image);
  const store = opts.cacheDir.blobs();
  const now = opts.now ?? Date.now;
  const label = `${ref} (${formatPlatform(target.platform)})`;
  info(opts, `warming ${label}`);

  let resolveRef: ImageRef = ref;
  let tagFromRecord = false;
  if (!ref.digest && !opts.force && opts.ttlMs > 0) {
    const rec = await readTagRecord(opts.cacheDir, ref);
    const age = rec ? now() - Date.parse(rec.resolvedAt) : Infinity;
    if (rec && age >= 0 && age < opts.ttlMs) {
      resolveRef = withDigest(ref, rec.digest);
      tagFromRecord = true;
      info(opts, `  tag resolved ${formatAge(age)} ago to ${rec.digest} (within the cache TTL): not asking the registry`);
    }
  }
  const resolveOpts = {
    refresh: opts.force,
    strict: true,
    emit: opts.emit,
    onDocument: (kind: string, d: Digest, from: 'store' | 'registry') => info(opts, `  ${kind} ${d} ${from === 'store' ? 'in the store' : 'downloaded'}`),
  };
  const img = await resolveImageCached(opts.client, store, resolveRef, target.platform, resolveOpts).catch((err: unknown) => {
    if (!tagFromRecord) throw err;
    // The recorded digest is gone from the store and the registry: the tag itself is the truth.
    info(opts, `  the recorded digest cannot be resolved (${isBuilderError(err) ? err.code : String(err)}): asking the registry about the tag`);
    tagFromRecord = false;
    return resolveImageCached(opts.client, store, ref, target.platform, resolveOpts);
  });
  const top = img.index?.digest ?? img.manifestDigest;
  if (!ref.digest && !tagFromRecord) await writeTagRecord(opts.cacheDir, { ref: ref.toString(), digest: top, resolvedAt: new Date(now()).toISOString() });

  const layers = img.manifest.layers;
  const result: WarmResult = {
    image: target.image, digest: top, manifestDigest: img.manifestDigest, layers: layers.length,
    downloaded: { layers: 0, bytes: 0 }, present: 0, repaired: 0, tagFromRecord,
  };
  await runPool(layers.map((d, i) => ({ d, n: i + 1 })), opts.concurrency ?? 3, async ({ d, n }) => {
    const what = `  layer ${n}/${layers.length} ${d.digest} (${formatBytes(d.size)})`;
    if (!opts.force) {
      const found = await store.verify(d.digest, d.size);
      if (found === 'ok') {
        result.present++;
        info(opts, `${what} in the store, verified`);
        return;
      }
      if (found === 'corrupt') {
        result.repaired++;
        info(opts, `${what} was corrupt in the store and was removed; downloading it again`);
      }
    }
    await opts.client.fetchBlob(ref, d, (blob) => store.put(d.digest, blob, d.size, { replace: opts.force }));
    result.downloaded.layers++;
    result.downloaded.bytes += d.size;
    info(opts, `${what} downloaded`);
  });
  info(opts, `warmed ${label} -> ${top}: ${layers.length} layer${layers.length === 1 ? '' : 's'}, ${result.downloaded.layers} downloaded (${formatBytes(result.downloaded.bytes)}), ${result.present} already stored`);
  return result;
}

/**
 * Warms each target in turn; a failure does not stop the others. Throws the failure when one image failed,
 * WARM_FAILED when several did. Leftover temp files of killed writers (older than a day) are removed first.
 */
export async function warmImages(targets: readonly WarmTarget[], opts: WarmOptions): Promise<WarmResult[]> {
  if (targets.length === 0) {
    throw new BuilderError('WARM_NO_IMAGES', 'nothing to warm: no image given', {
      hint: 'give at least one registry image reference',
    });
  }
  const removed = await opts.cacheDir.blobs().removeStaleTemp(24 * 3600_000, (opts.now ?? Date.now)());
  if (removed > 0) info(opts, `removed ${removed} temp files left by interrupted downloads`);
  const results: WarmResult[] = [];
  const failures: Array<{ target: WarmTarget; err: unknown }> = [];
  for (const t of targets) {
    try {
      results.push(await warmImage(t, opts));
    } catch (err) {
      failures.push({ target: t, err });
      opts.emit({ type: 'warning', msg: `failed to warm ${t.image}: ${isBuilderError(err) ? `${err.code}: ${err.message}` : String(err)}` });
    }
  }
  if (failures.length === 1) throw failures[0]!.err;
  if (failures.length > 1) {
    throw new BuilderError('WARM_FAILED', `${failures.length} of ${targets.length} images could not be warmed: ${failures.map((f) => f.target.image).join(', ')}`, {
      hint: 'see the error of each image above; the images that were warmed stay in the cache',
    });
  }
  return results;
}

export interface DockerfileTargetsOptions {
  buildArgs: Readonly<Record<string, string | undefined>>;
  env: Readonly<Record<string, string | undefined>>;
  platform: Platform;
  buildPlatform: Platform;
}

/** Every registry image a Dockerfile's stages start FROM (each with its FROM --platform) or COPY --from, once each. */
export function dockerfileTargets(text: string, file: string, opts: DockerfileTargetsOptions): WarmTarget[] {
  const plan = planBuild(readDockerfile(text, file), { ...opts, skipUnusedStages: false });
  const out = new Map<string, WarmTarget>();
  const add = (image: string, platform: Platform): void => void out.set(`${image}\0${formatPlatform(platform)}`, { image, platform });
  for (const s of plan.stages) {
    if (s.baseStage === undefined && s.baseName !== 'scratch') add(s.baseName, s.platform ?? opts.platform);
    // The executor pulls COPY --from images for the target platform.
    for (const r of s.imageRefs) add(r, opts.platform);
  }
  return [...out.values()];
}

async function readTagRecord(dir: CacheDir, ref: ImageRef): Promise<TagRecord | undefined> {
  try {
    const j = JSON.parse(await readFile(dir.tagRecord(ref.toString()), 'utf8')) as Partial<TagRecord>;
    // A record for another reference (hash collision) or a damaged one is the same as none.
    if (j.ref !== ref.toString() || typeof j.digest !== 'string' || !isDigest(j.digest) || typeof j.resolvedAt !== 'string') return undefined;
    return j as TagRecord;
  } catch {
    return undefined;
  }
}

/** Temp file + rename: a concurrent warmer reads the old record or the new one, never half of one. */
async function writeTagRecord(dir: CacheDir, rec: TagRecord): Promise<void> {
  const file = dir.tagRecord(parseReference(rec.ref).toString());
  try {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomic(file, JSON.stringify(rec));
  } catch (err) {
    throw new BuilderError('WARM_RECORD_FAILED', `cannot record the resolution of ${rec.ref} in ${path.dirname(file)}: ${(err as Error).message}`, {
      hint: 'check that the cache directory is writable',
      cause: err,
    });
  }
}

function formatAge(ms: number): string {
  const m = Math.round(ms / 60_000);
  return m < 120 ? `${m}m` : `${Math.round(m / 60)}h`;
}
