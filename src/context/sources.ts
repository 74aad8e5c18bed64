// COPY/ADD source selection from the build context with Docker's rules: cleaned paths, Go wildcards, .dockerignore applied, symlinks scoped to the context.
import type { Stats } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { BuilderError } from '../errors.js';
import { BadPatternError, goMatch, hasWildcards } from './gopath.js';
import { contextRel, type BuildContext } from './open.js';

export type SourceType = 'file' | 'dir' | 'symlink';

export interface SourceMatch {
  /** The COPY source as written, that selected this match. */
  readonly pattern: string;
  /** Physical path relative to the context root (`/`-separated, "." for the root). */
  readonly rel: string;
  /** Absolute host path, always inside ctx.dir. */
  readonly abs: string;
  /** lstat type: a symlink named as a source is reported, not followed (see followSymlink). */
  readonly type: SourceType;
  readonly stat: Stats;
  /** The link text, for symlinks. */
  readonly linkTarget?: string;
}

export interface WalkEntry {
  /** Physical path relative to the context root. */
  readonly rel: string;
  /** Path relative to the walked match ("" for the match itself): where it lands under the COPY destination. */
  readonly path: string;
  readonly abs: string;
  readonly type: SourceType;
  readonly stat: Stats;
  readonly linkTarget?: string;
}

const MAX_SYMLINKS = 255;

/**
 * Resolves COPY/ADD sources against the context, in order, like Docker: each source is cleaned as
 * if rooted at the context (`../x` is `x`), intermediate symlinks are followed inside the context,
 * wildcards (Go filepath.Match, per path segment) match non-ignored paths in lexical order, and a
 * wildcard may match nothing. A missing or ignored literal source, or no match at all, is
 * COPY_SOURCE_NOT_FOUND.
 */
export async function resolveSources(ctx: BuildContext, patterns: readonly string[]): Promise<SourceMatch[]> {
  const out: SourceMatch[] = [];
  for (const pattern of patterns) {
    const rel = contextRel(pattern);
    if (!hasWildcards(rel)) {
      const phys = await resolveScoped(ctx, rel, false);
      const m = await matchAt(ctx, pattern, phys);
      if (!m || !(await isVisible(ctx, m.rel, m.stat))) throw notFound(ctx, pattern, rel, m !== undefined);
      out.push(m);
      continue;
    }
    const segs = rel.split('/');
    const firstWild = segs.findIndex((s) => hasWildcards(s));
    try {
      // Go's filepath.Match reports a malformed pattern even when nothing is there to match.
      for (const seg of segs.slice(firstWild)) goMatch(seg, '');
    } catch (err) {
      if (err instanceof BadPatternError) {
        throw new BuilderError('COPY_SOURCE_INVALID', `COPY failed: source "${pattern}" is not a valid pattern`, {
          hint: 'sources use Go filepath.Match wildcards: close every "[", escape literal "*?[" with "\\"',
          cause: err,
        });
      }
      throw err;
    }
    const base = await resolveScoped(ctx, segs.slice(0, firstWild).join('/') || '.', true);
    await matchSegments(ctx, pattern, base, segs.slice(firstWild), out);
  }
  if (out.length === 0) {
    throw new BuilderError('COPY_SOURCE_NOT_FOUND', `COPY failed: no source files were specified (no files in the build context ${ctx.dir} match ${patterns.map((p) => `"${p}"`).join(', ')})`, {
      hint: ignoreHint(ctx, 'check the wildcard patterns are relative to the context root'),
    });
  }
  return out;
}

/** `expandSources` is the name docs/ARCHITECTURE.md gives resolveSources. */
export const expandSources = resolveSources;

/**
 * Lists what copying a match copies: the match itself (path "") and, for a directory, its
 * non-ignored content recursively in lexical (Go filepath.Walk) order, parents before children.
 * Excluded directories that hold re-included paths are listed (before those paths). Symlinks are
 * never followed; sockets, fifos and devices are skipped.
 */
export async function* walkSource(ctx: BuildContext, match: SourceMatch, opts: WalkOptions = {}): AsyncGenerator<WalkEntry> {
  yield { rel: match.rel, path: '', abs: match.abs, type: match.type, stat: match.stat, ...(match.linkTarget !== undefined ? { linkTarget: match.linkTarget } : {}) };
  if (match.type === 'dir') yield* walkDir(ctx, match.rel, '', opts);
}

export interface WalkOptions {
  /** Called with a directory's path below the match: false lists the directory but not what is under it. */
  descend?: (path: string) => boolean;
}

/**
 * Follows a symlink match to what it points at, resolved inside the context (an absolute or `..`
 * target cannot leave it), as BuildKit does for a named source. Non-symlinks are returned as is.
 */
export async function followSymlink(ctx: BuildContext, match: SourceMatch): Promise<SourceMatch> {
  if (match.type !== 'symlink') return match;
  const phys = await resolveScoped(ctx, match.rel, true);
  const m = await matchAt(ctx, match.pattern, phys);
  if (!m || !(await isVisible(ctx, m.rel, m.stat))) {
    throw new BuilderError('COPY_SOURCE_NOT_FOUND', `COPY failed: source "${match.pattern}" is a symlink to "${match.linkTarget}", which is not in the build context`, {
      hint: ignoreHint(ctx, 'symlinks are resolved inside the context; point the link at a path in the context'),
    });
  }
  return m;
}

async function* walkDir(ctx: BuildContext, dirRel: string, dirPath: string, opts: WalkOptions = {}): AsyncGenerator<WalkEntry> {
  const names = await sortedNames(ctx, dirRel);
  const rels = names.map((name) => (dirRel === '.' ? name : `${dirRel}/${name}`));
  // One directory's lstats in flight together: a sequential await per entry made large trees I/O-latency bound.
  const stats = await Promise.all(rels.map((rel) => lstatOrThrow(path.join(ctx.dir, rel), rel)));
  for (const [i, name] of names.entries()) {
    const rel = rels[i]!;
    const p = dirPath === '' ? name : `${dirPath}/${name}`;
    const abs = path.join(ctx.dir, rel);
    const st = stats[i]!;
    const type = typeOf(st);
    if (!type) continue;
    const entry: WalkEntry = { rel, path: p, abs, type, stat: st, ...(type === 'symlink' ? { linkTarget: await readlink(abs) } : {}) };
    if (!ctx.isIgnored(rel)) {
      yield entry;
      if (type === 'dir' && (opts.descend?.(p) ?? true)) yield* walkDir(ctx, rel, p, opts);
    } else if (type === 'dir' && ctx.mayReincludeUnder(rel) && (opts.descend?.(p) ?? true)) {
      // Buffer only this subtree: the directory is listed only if something under it is re-included.
      const inner: WalkEntry[] = [];
      for await (const e of walkDir(ctx, rel, p, opts)) inner.push(e);
      if (inner.length > 0) {
        yield entry;
        yield* inner;
      }
    }
  }
}

async function matchSegments(ctx: BuildContext, pattern: string, dirRel: string, segs: string[], out: SourceMatch[]): Promise<void> {
  const seg = segs[0]!;
  const last = segs.length === 1;
  const st = await lstat(path.join(ctx.dir, dirRel)).catch(() => undefined);
  if (!st?.isDirectory()) return;
  for (const name of await sortedNames(ctx, dirRel)) {
    // filepath.Match on every segment, so "\[" in a literal segment still means "[".
    if (!goMatch(seg, name)) continue;
    const rel = dirRel === '.' ? name : `${dirRel}/${name}`;
    const m = await matchAt(ctx, pattern, rel);
    if (!m || !(await isVisible(ctx, rel, m.stat))) continue;
    if (last) out.push(m);
    // Like filepath.Walk, the wildcard part never descends through symlinks.
    else if (m.type === 'dir') await matchSegments(ctx, pattern, rel, segs.slice(1), out);
  }
}

/** The match at a physical relative path, or undefined if nothing (usable) is there. */
async function matchAt(ctx: BuildContext, pattern: string, rel: string): Promise<SourceMatch | undefined> {
  const abs = rel === '.' ? ctx.dir : path.join(ctx.dir, rel);
  const st = await lstat(abs).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw readFailed(rel, err);
  });
  if (!st) return undefined;
  const type = typeOf(st);
  if (!type) return undefined;
  return { pattern, rel, abs, type, stat: st, ...(type === 'symlink' ? { linkTarget: await readlink(abs) } : {}) };
}

/** In the context Docker sees: not ignored, or an ignored directory holding re-included paths. */
async function isVisible(ctx: BuildContext, rel: string, st: Stats): Promise<boolean> {
  if (!ctx.isIgnored(rel)) return true;
  if (!st.isDirectory() || !ctx.mayReincludeUnder(rel)) return false;
  const first = await walkDir(ctx, rel, '').next();
  return first.done !== true;
}

/**
 * Resolves a cleaned context-relative path component by component, following symlinks (all but the
 * last unless followFinal) with the context as "/": the result is a physical path inside it.
 */
async function resolveScoped(ctx: BuildContext, rel: string, followFinal: boolean): Promise<string> {
  let todo = rel === '.' ? [] : rel.split('/');
  const done: string[] = [];
  let links = 0;
  while (todo.length > 0) {
    const part = todo.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    if (todo.length === 0 && !followFinal) {
      done.push(part);
      break;
    }
    const abs = path.join(ctx.dir, ...done, part);
    const st = await lstat(abs).catch(() => undefined);
    if (st?.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) {
        throw new BuilderError('CONTEXT_SYMLINK_LOOP', `too many levels of symlinks resolving "${rel}" in the build context ${ctx.dir}`, {
          hint: 'fix the symlink loop in the context',
        });
      }
      const target = await readlink(abs);
      if (target.startsWith('/')) done.length = 0;
      todo = [...target.split('/'), ...todo];
      continue;
    }
    done.push(part);
  }
  return done.length > 0 ? done.join('/') : '.';
}

async function sortedNames(ctx: BuildContext, dirRel: string): Promise<string[]> {
  const abs = dirRel === '.' ? ctx.dir : path.join(ctx.dir, dirRel);
  const names = await readdir(abs).catch((err: NodeJS.ErrnoException) => {
    throw readFailed(dirRel, err);
  });
  // Go sorts names by bytes (code points): UTF-16 order differs only where a surrogate pair meets U+E000 and above.
  return names.some((n) => /[\uD800-\uDFFF]/.test(n)) ? names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))) : names.sort();
}

async function lstatOrThrow(abs: string, rel: string): Promise<Stats> {
  return lstat(abs).catch((err: NodeJS.ErrnoException) => {
    throw readFailed(rel, err);
  });
}

function typeOf(st: Stats): SourceType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return undefined;
}

function notFound(ctx: BuildContext, pattern: string, rel: string, ignored: boolean): BuilderError {
  return new BuilderError(
    'COPY_SOURCE_NOT_FOUND',
    `COPY failed: file not found in build context or excluded by .dockerignore: stat ${rel}: file does not exist (source "${pattern}", context ${ctx.dir})`,
    {
      hint: ignored && ctx.ignoreFile
        ? `"${rel}" exists but is excluded by ${ctx.ignoreFile}; add "!${rel}" to it or stop ignoring it`
        : ignoreHint(ctx, 'sources are relative to the context root, not to the Dockerfile; check the --context and the path'),
    },
  );
}

function ignoreHint(ctx: BuildContext, base: string): string {
  return ctx.ignoreFile ? `${base}, and that ${ctx.ignoreFile} does not exclude it` : base;
}

function readFailed(rel: string, err: NodeJS.ErrnoException): BuilderError {
  return new BuilderError('CONTEXT_READ_FAILED', `cannot read "${rel}" in the build context: ${err.message}`, {
    hint: 'make the context readable by the user running the builder',
    cause: err,
  });
}
