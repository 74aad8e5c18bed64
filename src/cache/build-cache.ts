// The layer cache as a build sees it: lookups that never fail a build, background writes counted for the summary.
import { BuilderError, isBuilderError } from '../errors.js';
import { parseReference, parseRepository, type ImageRef } from '../reference/index.js';
import type { Digest } from '../digest/index.js';
import type { Layer, Platform } from '../image/index.js';
import type { CacheEntry, LayerCache } from './layer-cache.js';
import type { Instruction } from '../dockerfile/index.js';

export interface BuildCacheOptions {
  /** Cache RUN layers (kaniko's --cache-run-layers, default true). */
  runLayers: boolean;
  /** Cache COPY/ADD layers (--cache-copy-layers; default true here: content keys make it safe). */
  copyLayers: boolean;
  /** Write new entries (false with --no-push-cache). */
  push: boolean;
}

/** Failures of the connection itself: every later request to the cache would fail the same way, after its retries. */
const UNREACHABLE = new Set<string>(['REGISTRY_UNREACHABLE', 'REGISTRY_TIMEOUT', 'REGISTRY_TLS', 'REGISTRY_CLIENT_CERT_REQUIRED']);

export class BuildCache {
  hits = 0;
  misses = 0;
  writes = 0;
  writeFailures = 0;
  /** Layer digests the cache repository holds after this build's writes: the push mounts them from there. */
  readonly written = new Set<Digest>();
  private readonly pending: Promise<void>[] = [];
  /** Set by the first failure that every later request would repeat (a circuit breaker): why the cache is skipped. */
  private down?: string;
  /** Keys whose entry's layer turned out not to hold what it claims: missed for the rest of the build, and rewritten. */
  private readonly distrusted = new Set<string>();

  constructor(
    readonly layers: LayerCache,
    private readonly opts: BuildCacheOptions,
    private readonly warn: (m: string) => void,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Whether steps of this kind are looked up and written. */
  covers(kind: Instruction['kind']): boolean {
    if (kind === 'run') return this.opts.runLayers;
    if (kind === 'copy' || kind === 'add') return this.opts.copyLayers;
    return kind === 'workdir';
  }

  /** The entry for key, or undefined; a broken entry or an unreachable cache is a warning and a miss. */
  async lookup(key: string): Promise<CacheEntry | undefined> {
    if (this.down || this.distrusted.has(key)) return undefined;
    try {
      const r = await this.layers.lookup(key, this.now());
      if (r.kind === 'hit') return r.entry;
      if (r.kind === 'unusable') this.warn(`cache entry ${key.slice(0, 12)} in ${this.layers.describe} ignored: ${r.reason}; rebuilding the step`);
    } catch (err) {
      const code = isBuilderError(err) ? err.code : 'error';
      if (this.down) return undefined; // a concurrent lookup already said it
      if (UNREACHABLE.has(code)) this.down = code;
      this.warn(`cache lookup in ${this.layers.describe} failed (${code}: ${(err as Error).message}); rebuilding the step${this.down ? '; the cache is skipped for the rest of this build' : ''}`);
    }
    return undefined;
  }

  /** An entry whose layer's content is not what it records (caught while extracting it): warned about, then a miss, so its step is rebuilt and the entry rewritten. */
  distrust(key: string, why: string): void {
    this.distrusted.add(key);
    this.warn(`cache entry ${key.slice(0, 12)} in ${this.layers.describe} ignored: its layer is not what the entry records (${why}); rebuilding the stage from that step`);
  }

  /**
   * Whether a hit fits the layers below it (their ChainID, or undefined for a --link layer that fits any). Another
   * build of a non-reproducible step can have replaced the entry below since this one was written.
   */
  fits(entry: CacheEntry, below: string | undefined): boolean {
    if (below === undefined || entry.parent === below) return true;
    this.warn(`cache entry ${entry.key.slice(0, 12)} in ${this.layers.describe} was built on other layers than this build has below it (another build wrote a different result for an earlier step); rebuilding the step`);
    return false;
  }

  /** Writes an entry in the background; settle() waits for all. `parent`: the ChainID below the step, as in fits(). */
  write(key: string, step: string, layer: Layer | undefined, parent: string | undefined, platform: Platform): void {
    if (!this.opts.push || this.down) return;
    const entry: CacheEntry = { key, step, created: this.now().toISOString(), ...(layer ? { layer } : {}), ...(parent !== undefined ? { parent } : {}) };
    this.pending.push(this.layers.store(entry, platform).then(
      () => {
        this.writes++;
        if (layer) this.written.add(layer.descriptor.digest);
      },
      (err: unknown) => {
        this.writeFailures++;
        const code = isBuilderError(err) ? err.code : 'error';
        if (UNREACHABLE.has(code)) this.down ??= code;
        this.warn(`cache write to ${this.layers.describe} failed (${isBuilderError(err) ? err.code : 'error'}: ${(err as Error).message})`);
      },
    ));
  }

  async settle(): Promise<void> {
    await Promise.all(this.pending);
  }

  summary(): string {
    return `cache ${this.layers.describe}: ${this.hits} hit${this.hits === 1 ? '' : 's'}, ${this.misses} miss${this.misses === 1 ? '' : 'es'}, ${this.writes} written${this.writeFailures ? `, ${this.writeFailures} write failure${this.writeFailures === 1 ? '' : 's'}` : ''}${this.down ? ` (skipped after ${this.down})` : ''}`;
  }
}

/**
 * Where the cache lives when --cache-repo is not given: $CI_REGISTRY_IMAGE/cache in GitLab, else the first destination's
 * repository + "/cache" (kaniko's rule). In GitLab a repository more than two levels below the project is refused up front.
 */
export function cacheRepository(given: string | undefined, destinations: readonly string[], env: Record<string, string | undefined>): ImageRef | { oci: string } {
  if (given?.startsWith('oci:')) {
    if (given.length === 4) throw new BuilderError('CACHE_REPO_INVALID', '--cache-repo oci: names no directory', { hint: 'use --cache-repo oci:/path/to/dir' });
    return { oci: given.slice(4) };
  }
  const project = env.CI_REGISTRY_IMAGE ? parseRepository(env.CI_REGISTRY_IMAGE) : undefined;
  let repo: ImageRef;
  if (given) repo = parseRepository(given);
  else if (project) repo = parseRepository(`${project.name}/cache`);
  else if (destinations[0]) repo = parseRepository(`${parseReference(destinations[0]).name}/cache`);
  else {
    throw new BuilderError('CACHE_REPO_MISSING', '--cache needs a cache repository: there is no --destination to derive it from', {
      hint: 'pass --cache-repo REGISTRY/REPO (or oci:DIR), or a --destination',
    });
  }
  if (project && repo.registry === project.registry && repo.repository.startsWith(`${project.repository}/`)) {
    const depth = repo.repository.slice(project.repository.length + 1).split('/').length;
    if (depth > 2) {
      throw new BuilderError('CACHE_REPO_TOO_DEEP', `cache repository ${repo.name} is ${depth} levels below the GitLab project ${project.name}; GitLab's registry allows at most 2`, {
        hint: `use --cache-repo ${project.name}/cache (the default in GitLab CI)`,
      });
    }
  }
  return repo;
}
