// .dockerignore reading and matching: a port of moby/patternmatcher (ignorefile.ReadAll + PatternMatcher.MatchesOrParentMatches), Linux semantics.
// Own port, not @balena/dockerignore: it matches case-insensitively by default and follows moby v19.03, missing patternmatcher's prefix/suffix rules ("**file" ~ "dir/xfile").
import { BuilderError } from '../errors.js';
import { BadPatternError, goClean, goMatch, hasWildcards } from './gopath.js';
import { compileRegexNfa } from './regex-nfa.js';

type MatchType = 'exact' | 'prefix' | 'suffix' | 'regexp';

interface Pattern {
  /** The cleaned pattern without its leading `!`. */
  readonly text: string;
  readonly exclusion: boolean;
  readonly type: MatchType;
  readonly regexp: RegExp | undefined;
  /** The same regexp as a linear-time matcher (a hostile pattern must not hang the context walk). */
  readonly nfa: ((path: string) => boolean) | undefined;
}

// Characters that are special in a regexp but literal in filepath.Match (moby's shouldEscape set).
const REGEXP_ONLY_SPECIALS = new Set(['.', '+', '(', ')', '|', '{', '}', '$']);
// Characters that must be escaped to be literal in a unicode-mode JS regexp, outside and inside a class.
const JS_SYNTAX = new Set(['^', '$', '\\', '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '/']);
const JS_CLASS_SYNTAX = new Set(['\\', ']', '-', '^']);

/**
 * ignorefile.ReadAll: strips a UTF-8 BOM, drops `#` comment lines (checked before trimming) and blank
 * lines, trims spaces, cleans each pattern and drops one leading `/`, keeping a `!` prefix.
 */
export function parseIgnoreFile(text: string): string[] {
  const out: string[] = [];
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  for (const raw of body.split('\n')) {
    // bufio.ScanLines drops a trailing \r.
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.startsWith('#')) continue;
    let pattern = goTrimSpace(line);
    if (pattern === '') continue;
    const invert = pattern.startsWith('!');
    if (invert) pattern = goTrimSpace(pattern.slice(1));
    if (pattern.length > 0) {
      pattern = goClean(pattern);
      if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
    }
    out.push(invert ? `!${pattern}` : pattern);
  }
  return out;
}

/** Go's strings.TrimSpace (ASCII and Unicode white space). */
function goTrimSpace(s: string): string {
  return s.replace(/^[\s\u0085]+|[\s\u0085]+$/gu, '');
}

/** An ordered list of ignore patterns; later patterns override earlier ones, `!` re-includes. */
export class PatternMatcher {
  private readonly patterns: readonly Pattern[];
  /** True when any pattern is a `!` exception, so excluded directories may hold included files. */
  readonly hasExclusions: boolean;
  // A walk asks about every file and the parents are the same for a whole directory: matching them again for each
  // file cost 0.8 GB of garbage on a 30,000-file tree.
  private readonly dirs = new Map<string, readonly boolean[]>();
  private readonly none: readonly boolean[];

  /** `where` names the file the patterns came from, for error messages. */
  constructor(patterns: readonly string[], where = '.dockerignore') {
    const compiled: Pattern[] = [];
    for (const raw of patterns) {
      let p = goTrimSpace(raw);
      if (p === '') continue;
      p = goClean(p);
      let exclusion = false;
      if (p.startsWith('!')) {
        if (p.length === 1) {
          throw new BuilderError('DOCKERIGNORE_INVALID', `${where}: illegal exclusion pattern "!"`, {
            hint: 'a "!" line needs a pattern after it, e.g. "!keep.txt"; remove the bare "!"',
          });
        }
        exclusion = true;
        p = p.slice(1);
      }
      compiled.push(compilePattern(p, exclusion, where));
    }
    this.patterns = compiled;
    this.none = compiled.map(() => false);
    this.hasExclusions = compiled.some((p) => p.exclusion);
  }

  /** The cleaned patterns, `!` restored on exceptions. */
  list(): string[] {
    return this.patterns.map((p) => (p.exclusion ? `!${p.text}` : p.text));
  }

  /**
   * Whether an excluded directory must still be walked because an exception could re-include
   * something under it: BuildKit's fsutil rule (any wildcard exception, or a literal one below the dir).
   */
  mayReincludeUnder(dir: string): boolean {
    if (!this.hasExclusions) return false;
    const dirSlash = `${goClean(dir)}/`;
    return this.patterns.some((p) => p.exclusion && (hasWildcards(p.text) || `${p.text}/`.startsWith(dirSlash)));
  }

  /**
   * MatchesOrParentMatches: true when the slash-separated relative path, or one of its parent
   * directories, matches an exclude pattern not overridden by a later exception.
   */
  matches(file: string): boolean {
    const rel = goClean(file);
    // Docker never lets the context root itself be excluded.
    if (rel === '.') return false;
    const slash = rel.lastIndexOf('/');
    const parents = this.parentsMatch(slash < 0 ? '.' : rel.slice(0, slash));
    let matched = false;
    for (let i = 0; i < this.patterns.length; i++) {
      const pattern = this.patterns[i]!;
      // An include already matched needs no more includes; an exception only matters once matched.
      if (pattern.exclusion !== matched) continue;
      if (parents[i] || matchOne(pattern, rel)) matched = !pattern.exclusion;
    }
    return matched;
  }

  /** Per directory, whether each pattern matches it or a directory above it (`dirs`, bounded; `none` for the root). */
  private parentsMatch(dir: string): readonly boolean[] {
    if (dir === '.') return this.none;
    let m = this.dirs.get(dir);
    if (m === undefined) {
      const slash = dir.lastIndexOf('/');
      const up = this.parentsMatch(slash < 0 ? '.' : dir.slice(0, slash));
      m = this.patterns.map((p, i) => up[i]! || matchOne(p, dir));
      // bounded: a walk is depth first, so the directories it is in are found again at once
      if (this.dirs.size >= 4096) this.dirs.clear();
      this.dirs.set(dir, m);
    }
    return m;
  }
}

function matchOne(p: Pattern, path: string): boolean {
  switch (p.type) {
    case 'exact':
      return path === p.text;
    case 'prefix':
      return path.startsWith(p.text.slice(0, -2));
    case 'suffix': {
      const suffix = p.text.slice(2);
      if (path.endsWith(suffix)) return true;
      // "**/foo" also matches "foo" itself.
      return suffix.startsWith('/') && path === suffix.slice(1);
    }
    case 'regexp':
      return p.nfa ? p.nfa(path) : p.regexp!.test(path);
  }
}

/** moby's Pattern.compile: classify as exact/prefix/suffix or translate to an anchored regexp. */
function compilePattern(text: string, exclusion: boolean, where: string): Pattern {
  const bad = (cause?: unknown) =>
    new BuilderError('DOCKERIGNORE_INVALID', `${where}: syntax error in pattern "${exclusion ? '!' : ''}${text}"`, {
      hint: 'patterns use Go filepath.Match syntax: check for an unclosed "[", a reversed range like [z-a], or a trailing "\\"',
      cause,
    });
  // Docker validates each pattern with filepath.Match before use.
  try {
    goMatch(text, '.');
  } catch (err) {
    if (err instanceof BadPatternError) throw bad(err);
    throw err;
  }
  const { re, type } = translatePattern(text);
  let regexp: RegExp | undefined;
  if (type === 'regexp') {
    try {
      regexp = new RegExp(`${re}$`, 'u');
    } catch (err) {
      // Go's regexp rejects some patterns filepath.Match accepts (e.g. [z-a]); Docker fails the build then.
      throw bad(err);
    }
  }
  return { text, exclusion, type, regexp, nfa: regexp ? compileRegexNfa(`${re}$`) : undefined };
}

/** moby's translation of a pattern: its match type and the anchored regexp (without "$") it reads as. */
function translatePattern(text: string): { re: string; type: MatchType } {
  const chars = Array.from(text);
  let re = '^';
  let type: MatchType = 'exact';
  // Whether the emitted regexp is inside a [...] class, so literals are escaped the way Go's regexp reads them.
  let inClass = false;
  for (let i = 0, iter = 0; i < chars.length; i++, iter++) {
    const ch = chars[i]!;
    if (ch === '*') {
      if (chars[i + 1] === '*') {
        i++;
        // "**/" behaves as "**".
        if (chars[i + 1] === '/') i++;
        if (i + 1 >= chars.length) {
          // Trailing "**" accepts everything, like .gitignore.
          if (type === 'exact') type = 'prefix';
          else {
            re += '.*';
            type = 'regexp';
          }
        } else {
          re += '(.*/)?';
          type = 'regexp';
        }
        if (iter === 0) type = 'suffix';
      } else {
        // Inside a class the emitted "]" closes it, exactly as moby's regexp does in Go.
        re += '[^/]*';
        inClass = false;
        type = 'regexp';
      }
    } else if (ch === '?') {
      re += '[^/]';
      inClass = false;
      type = 'regexp';
    } else if (REGEXP_ONLY_SPECIALS.has(ch)) {
      re += `\\${ch}`;
    } else if (ch === '\\') {
      if (i + 1 < chars.length) {
        i++;
        re += literal(chars[i]!, inClass);
        type = 'regexp';
      } else {
        re += '\\\\';
      }
    } else if (ch === '[') {
      re += '[';
      inClass = true;
      type = 'regexp';
    } else if (ch === ']') {
      // Go's regexp reads a "]" outside a class as a literal; a unicode-mode JS regexp needs it escaped.
      re += inClass ? ']' : '\\]';
      inClass = false;
      type = 'regexp';
    } else {
      re += ch;
    }
  }
  return { re, type };
}

/** A pattern character escaped with `\\`, as a literal in the regexp being built. */
function literal(ch: string, inClass: boolean): string {
  return (inClass ? JS_CLASS_SYNTAX : JS_SYNTAX).has(ch) ? `\\${ch}` : ch;
}
