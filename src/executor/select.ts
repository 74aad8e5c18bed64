// COPY --exclude and --parents: which entries of a source's walk are copied, with fsutil's copy rules (BuildKit).
import { goMatch, PatternMatcher } from '../context/index.js';
import { BuilderError } from '../errors.js';
import type { CopyEntry } from './sources.js';

export interface Selection {
  /** --parents: only entries matching (or under a match of) these, relative to the source (fsutil IncludePatterns). */
  include?: PatternMatcher;
  /** --exclude: entries matching these (or under a match) are left out (fsutil ExcludePatterns). */
  exclude?: PatternMatcher;
}

/** Compiles --exclude (or --parents) patterns (.dockerignore syntax, `!` exceptions allowed); errors name the instruction. */
export function copyPatterns(patterns: readonly string[], where: string, flag: '--exclude' | '--parents'): PatternMatcher | undefined {
  if (patterns.length === 0) return undefined;
  try {
    return new PatternMatcher(patterns, `${where}: ${flag}`);
  } catch (err) {
    throw new BuilderError('COPY_PATTERN_INVALID', `${where}: invalid ${flag} pattern (${patterns.join(', ')})`, {
      hint: 'patterns use .dockerignore syntax: Go filepath.Match wildcards, "**" for any directories, "!" for exceptions',
      cause: err,
    });
  }
}

/**
 * Filters a walk (parents before children, the source itself first with path "") as fsutil's copier does: the source
 * itself is always kept; an excluded or not-included file is dropped; such a directory is held back and placed only
 * when something under it is kept (then with its own metadata), and an excluded directory is not entered at all unless
 * an exception ("!x") could re-include something under it.
 */
export async function* selectEntries(entries: AsyncIterable<CopyEntry>, sel: Selection): AsyncGenerator<CopyEntry> {
  if (!sel.include && !sel.exclude) {
    yield* entries;
    return;
  }
  const held: CopyEntry[] = [];
  let skipUnder: string | undefined;
  for await (const e of entries) {
    if (e.path === '') {
      yield e;
      continue;
    }
    if (skipUnder !== undefined && e.path.startsWith(skipUnder)) continue;
    skipUnder = undefined;
    // Held directories that are not parents of this entry had nothing kept under them: never placed.
    while (held.length > 0 && !e.path.startsWith(`${held[held.length - 1]!.path}/`)) held.pop();
    const excluded = sel.exclude?.matches(e.path) ?? false;
    const included = !excluded && (sel.include?.matches(e.path) ?? true);
    if (included) {
      for (const h of held) yield h;
      held.length = 0;
      yield e;
      continue;
    }
    if (e.type !== 'dir') continue;
    if (excluded && !sel.exclude!.hasExclusions) {
      skipUnder = `${e.path}/`;
      continue;
    }
    held.push(e);
  }
}

/**
 * Which directories the walk must enter for a selection: not an excluded one (unless an exception could re-include
 * something under it), and with --parents only one on the way to a match or under one. Pruning only: selectEntries
 * decides what is kept.
 */
export function descendFor(sel: Selection): ((dir: string) => boolean) | undefined {
  if (!sel.include && !sel.exclude) return undefined;
  const includes = sel.include?.list().filter((p) => !p.startsWith('!')).map((p) => p.split('/'));
  return (dir) => {
    if (sel.exclude && !sel.exclude.hasExclusions && sel.exclude.matches(dir)) return false;
    if (!includes || sel.include!.matches(dir)) return true;
    const segs = dir.split('/');
    return includes.some((ps) => couldLeadTo(ps, segs));
  };
}

/** True when something under the directory `dir` could match the pattern (segment-wise; "**" matches any depth). */
function couldLeadTo(pattern: string[], dir: string[]): boolean {
  for (let i = 0; i < dir.length; i++) {
    const p = pattern[i];
    if (p === undefined) return true;
    if (p === '**') return true;
    try {
      if (!goMatch(p, dir[i]!)) return false;
    } catch {
      return true;
    }
  }
  return true;
}
