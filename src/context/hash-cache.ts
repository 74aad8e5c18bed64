// Per-file sha256 remembered by (dev, ino, size, mtime, ctime), as git's index does: a second COPY key on the same machine only stats.
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { EventSink } from '../util/events.js';
import { writeFileAtomic } from '../util/fs.js';

// Bump when the key or the stored value changes meaning.
const FORMAT = 'builder-file-hashes-v2';
// Entries kept per file: those used by the last build first, then older ones up to this many.
const MAX_ENTRIES = 200_000;
// A file changed this recently may change again within the same timestamp tick without its stat changing ("racily
// clean" in git): its hash is used but not remembered.
const RACY_MS = 2_000;

/** The stat fields of the key (node's Stats: times in ms as doubles, i.e. to about 0.25 µs on today's dates). */
export interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface FileHashCacheOptions {
  /** The wall clock, for the racy-file check (tests). */
  now?: () => number;
}

/**
 * One JSON file (written to a temp file and renamed: concurrent builds never see half a file; the last writer wins).
 * A file's key is its inode identity plus size, mtime and ctime: any write changes ctime, and ctime cannot be set
 * back, so a file rewritten to the same size and touched back to its old mtime is hashed again. The walk's own
 * stats are the key (no second stat per file): their sub-microsecond rounding cannot merge two ctimes, because a
 * file is remembered only when its ctime is RACY_MS old, and any later write gets a ctime at least that much newer.
 */
export class FileHashCache {
  private readonly old: Map<string, string>;
  private readonly used = new Map<string, string>();
  private dirty = false;
  private readonly now: () => number;

  private constructor(readonly file: string, old: Map<string, string>, opts: FileHashCacheOptions) {
    this.old = old;
    this.now = opts.now ?? Date.now;
  }

  /** Loads `file`; a missing, unreadable or foreign file is an empty cache (it is only ever a shortcut). */
  static async open(file: string, opts: FileHashCacheOptions = {}): Promise<FileHashCache> {
    const old = new Map<string, string>();
    try {
      const doc = JSON.parse(await readFile(file, 'utf8')) as { format?: string; entries?: Record<string, unknown> };
      if (doc.format === FORMAT && doc.entries && typeof doc.entries === 'object') {
        for (const [k, v] of Object.entries(doc.entries)) if (typeof v === 'string' && /^[0-9a-f]{64}$/.test(v)) old.set(k, v);
      }
    } catch {
      // nothing cached yet, or a file from another version: hash everything
    }
    return new FileHashCache(file, old, opts);
  }

  /** The remembered sha256 (hex) of the file with these stats, or undefined. */
  get(st: FileIdentity): string | undefined {
    const k = keyOf(st);
    const hex = this.used.get(k) ?? this.old.get(k);
    // A hit alone does not make the file worth rewriting: an unchanged context costs no write.
    if (hex !== undefined && !this.used.has(k)) this.used.set(k, hex);
    return hex;
  }

  /**
   * Remembers a hash read between two stats of the file: only when both agree (nothing wrote to it meanwhile) and its
   * last change is older than the racy window.
   */
  set(before: FileIdentity, after: FileIdentity, hex: string): void {
    const k = keyOf(before);
    if (k !== keyOf(after)) return;
    if (after.ctimeMs > this.now() - RACY_MS) return;
    this.used.set(k, hex);
    this.dirty = true;
  }

  /** Writes what this build used (and older entries up to the cap), when anything changed; a failure is only reported. */
  async save(emit?: EventSink): Promise<void> {
    if (!this.dirty) return;
    const entries: Record<string, string> = {};
    let n = 0;
    for (const [k, v] of this.used) {
      entries[k] = v;
      n++;
    }
    for (const [k, v] of this.old) {
      if (n >= MAX_ENTRIES) break;
      if (k in entries) continue;
      entries[k] = v;
      n++;
    }
    try {
      await mkdir(path.dirname(this.file), { recursive: true });
      await writeFileAtomic(this.file, JSON.stringify({ format: FORMAT, entries }));
      this.dirty = false;
    } catch (err) {
      // a cache that cannot be written only costs the next build the hashing
      emit?.({ type: 'warning', msg: `cannot save the file hash cache ${this.file}: ${(err as Error).message}; the next build hashes the context again` });
    }
  }
}

function keyOf(st: FileIdentity): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}
