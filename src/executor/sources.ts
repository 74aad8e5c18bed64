// Where COPY reads from: the build context (with .dockerignore) or another stage's / image's root, behind one interface.
import type { Stats } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { BuilderError } from '../errors.js';
import { followSymlink, goMatch, hasWildcards, resolveSources, walkSource, type BuildContext, type WalkOptions } from '../context/index.js';
import type { RootFs } from '../rootfs/index.js';

export type EntryType = 'file' | 'dir' | 'symlink';

export interface CopyEntry {
  /** Path relative to the matched source ("" for the source itself). */
  path: string;
  abs: string;
  type: EntryType;
  stat: Stats;
  linkTarget?: string;
}

export interface CopySourceMatch {
  /** Name the source lands under when the destination is a directory. */
  name: string;
  type: EntryType;
  /** Host path of what is copied (symlinks followed), for ADD's archive check. */
  abs: string;
  /** The source and, for a directory, everything under it, parents first, sorted; `descend` prunes the walk. */
  entries(opts?: WalkOptions): AsyncIterable<CopyEntry>;
}

export interface CopySource {
  describe: string;
  resolve(patterns: readonly string[]): Promise<CopySourceMatch[]>;
}

export function contextSource(ctx: BuildContext): CopySource {
  return {
    describe: 'build context',
    async resolve(patterns) {
      const out: CopySourceMatch[] = [];
      for (const m of await resolveSources(ctx, patterns)) {
        const real = await followSymlink(ctx, m);
        out.push({
          name: path.posix.basename(m.rel === '.' ? '/' : m.rel) || '/',
          type: real.type,
          abs: real.abs,
          entries: (opts?: WalkOptions) => walkSource(ctx, real, opts),
        });
      }
      return out;
    },
  };
}

function typeOf(st: Stats): EntryType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return undefined;
}

async function* walkHost(abs: string, rel: string, opts: WalkOptions = {}): AsyncGenerator<CopyEntry> {
  const names = (await readdir(abs)).sort();
  // A directory's lstats in flight together, as the context walk does (a sequential await per entry is latency-bound).
  const stats = await Promise.all(names.map((name) => lstat(path.join(abs, name))));
  for (const [i, name] of names.entries()) {
    const a = path.join(abs, name);
    const st = stats[i]!;
    const type = typeOf(st);
    if (!type) continue; // sockets, fifos and devices are not copied, as BuildKit does for COPY sources
    const p = rel === '' ? name : `${rel}/${name}`;
    yield { path: p, abs: a, type, stat: st, ...(type === 'symlink' ? { linkTarget: await readlink(a) } : {}) };
    if (type === 'dir' && (opts.descend?.(p) ?? true)) yield* walkHost(a, p, opts);
  }
}

/** Sources inside another stage's (or an image's) root: paths resolved in that root, symlinks followed inside it. */
export function rootSource(rootfs: RootFs, describe: string): CopySource {
  const matchOne = async (pattern: string): Promise<CopySourceMatch[]> => {
    const clean = path.posix.resolve('/', pattern);
    const candidates: string[] = [];
    if (!hasWildcards(clean)) {
      candidates.push(clean);
    } else {
      // Expand wildcards segment by segment inside the root.
      let prefixes = ['/'];
      for (const seg of clean.split('/').filter(Boolean)) {
        const next: string[] = [];
        for (const pre of prefixes) {
          if (!hasWildcards(seg)) {
            next.push(path.posix.join(pre, seg));
            continue;
          }
          const host = await rootfs.resolve(pre, { followFinal: true }).catch(() => undefined);
          const names = host ? await readdir(host).catch(() => [] as string[]) : [];
          for (const n of names.sort()) if (goMatch(seg, n)) next.push(path.posix.join(pre, n));
        }
        prefixes = next;
      }
      candidates.push(...prefixes);
    }
    const out: CopySourceMatch[] = [];
    for (const c of candidates) {
      const host = await rootfs.resolve(c, { followFinal: true });
      const st = await lstat(host).catch(() => undefined);
      const type = st && typeOf(st);
      if (!st || !type) continue;
      out.push({
        name: path.posix.basename(c) || '/',
        type,
        abs: host,
        async *entries(opts?: WalkOptions) {
          yield { path: '', abs: host, type, stat: st };
          if (type === 'dir') yield* walkHost(host, '', opts);
        },
      });
    }
    if (out.length === 0 && !hasWildcards(clean)) {
      throw new BuilderError('COPY_SOURCE_NOT_FOUND', `COPY failed: "${pattern}" not found in ${describe}`, {
        hint: `check the path exists in ${describe} at that point of the build`,
      });
    }
    return out;
  };
  return {
    describe,
    async resolve(patterns) {
      const out: CopySourceMatch[] = [];
      for (const p of patterns) out.push(...(await matchOne(p)));
      if (out.length === 0) {
        throw new BuilderError('COPY_SOURCE_NOT_FOUND', `COPY failed: no source files were specified (${patterns.join(' ')} matched nothing in ${describe})`, {
          hint: 'check the wildcard patterns',
        });
      }
      return out;
    },
  };
}

/** A downloaded file (ADD <url>) as a copy source: one regular file named as BuildKit names it. */
export async function fileMatch(file: string, name: string): Promise<CopySourceMatch> {
  const st = await lstat(file);
  return {
    name,
    type: 'file',
    abs: file,
    async *entries() {
      yield { path: '', abs: file, type: 'file', stat: st };
    },
  };
}
