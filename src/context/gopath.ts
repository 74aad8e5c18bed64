// Ports of Go's path.Clean and path/filepath.Match (Linux semantics), which Docker's COPY and .dockerignore rules are defined in terms of.

/** Thrown by goMatch for a malformed pattern, like Go's filepath.ErrBadPattern. */
export class BadPatternError extends Error {
  constructor(readonly pattern: string) {
    super(`syntax error in pattern "${pattern}"`);
    this.name = 'BadPatternError';
  }
}

/** Go's path.Clean: lexical shortest equivalent path; "" becomes ".", no trailing slash except for "/". */
export function goClean(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  if (rooted) return `/${joined}`;
  return joined === '' ? '.' : joined;
}

/** Docker's containsWildcards: an unescaped `*`, `?` or `[` makes a COPY source a pattern. */
export function hasWildcards(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '\\') i++;
    else if (ch === '*' || ch === '?' || ch === '[') return true;
  }
  return false;
}

/**
 * Go's filepath.Match on Linux: `*` and `?` never match `/`, `[...]` classes with `^` negation and
 * ranges, `\` escapes. Throws BadPatternError for malformed patterns (even when the name does not match).
 */
export function goMatch(pattern: string, name: string): boolean {
  // Work on code points so `?` and classes consume one character, like Go's rune decoding.
  let pat = Array.from(pattern);
  let str = Array.from(name);
  outer: while (pat.length > 0) {
    const { star, chunk, rest } = scanChunk(pat);
    pat = rest;
    if (star && chunk.length === 0) return !str.includes('/');
    const first = matchChunk(chunk, str, pattern);
    if (first !== null && (first.length === 0 || pat.length > 0)) {
      str = first;
      continue;
    }
    if (star) {
      for (let i = 0; i < str.length && str[i] !== '/'; i++) {
        const t = matchChunk(chunk, str.slice(i + 1), pattern);
        if (t !== null) {
          if (pat.length === 0 && t.length > 0) continue;
          str = t;
          continue outer;
        }
      }
    }
    // Go validates the rest of the pattern before reporting a mismatch.
    while (pat.length > 0) {
      const next = scanChunk(pat);
      pat = next.rest;
      matchChunk(next.chunk, [], pattern);
    }
    return false;
  }
  return str.length === 0;
}

function scanChunk(pat: string[]): { star: boolean; chunk: string[]; rest: string[] } {
  let star = false;
  let p = pat;
  while (p.length > 0 && p[0] === '*') {
    p = p.slice(1);
    star = true;
  }
  let inRange = false;
  let i = 0;
  scan: for (; i < p.length; i++) {
    switch (p[i]) {
      case '\\':
        if (i + 1 < p.length) i++;
        break;
      case '[':
        inRange = true;
        break;
      case ']':
        inRange = false;
        break;
      case '*':
        if (!inRange) break scan;
        break;
      default:
        break;
    }
  }
  return { star, chunk: p.slice(0, i), rest: p.slice(i) };
}

/** Returns the unmatched remainder of s, or null when the chunk does not match its start. */
function matchChunk(chunkIn: string[], sIn: string[], whole: string): string[] | null {
  let chunk = chunkIn;
  let s = sIn;
  let failed = false;
  while (chunk.length > 0) {
    if (!failed && s.length === 0) failed = true;
    const c = chunk[0];
    if (c === '[') {
      let r = -1;
      if (!failed) {
        r = s[0]!.codePointAt(0)!;
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
      let negated = false;
      if (chunk.length > 0 && chunk[0] === '^') {
        negated = true;
        chunk = chunk.slice(1);
      }
      let matched = false;
      let nrange = 0;
      for (;;) {
        if (chunk.length > 0 && chunk[0] === ']' && nrange > 0) {
          chunk = chunk.slice(1);
          break;
        }
        const lo = getEsc(chunk, whole);
        chunk = lo.rest;
        let hi = lo.r;
        if (chunk[0] === '-') {
          const h = getEsc(chunk.slice(1), whole);
          chunk = h.rest;
          hi = h.r;
        }
        if (lo.r <= r && r <= hi) matched = true;
        nrange++;
      }
      if (matched === negated) failed = true;
    } else if (c === '?') {
      if (!failed) {
        if (s[0] === '/') failed = true;
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
    } else {
      let lit = c;
      if (c === '\\') {
        chunk = chunk.slice(1);
        if (chunk.length === 0) throw new BadPatternError(whole);
        lit = chunk[0];
      }
      if (!failed) {
        if (lit !== s[0]) failed = true;
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
    }
  }
  return failed ? null : s;
}

function getEsc(chunkIn: string[], whole: string): { r: number; rest: string[] } {
  let chunk = chunkIn;
  if (chunk.length === 0 || chunk[0] === '-' || chunk[0] === ']') throw new BadPatternError(whole);
  if (chunk[0] === '\\') {
    chunk = chunk.slice(1);
    if (chunk.length === 0) throw new BadPatternError(whole);
  }
  const r = chunk[0]!.codePointAt(0)!;
  const rest = chunk.slice(1);
  if (rest.length === 0) throw new BadPatternError(whole);
  return { r, rest };
}
