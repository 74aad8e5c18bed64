// Shell-word lexer and variable expansion with BuildKit's shell/lex.go semantics (quotes, escapes, ${VAR...} forms).
import { BuilderError, locateError, type ErrorCode } from '../errors.js';

/** Variables visible to an expansion; a Record entry whose value is undefined counts as unset. */
export type ExpandEnv = ReadonlyMap<string, string> | Readonly<Record<string, string | undefined>>;

/** Which variables an expansion looked up; the caller owns the sets (filled in place). */
export interface VarUsage {
  /** Names that were found in the env. */
  used: Set<string>;
  /** Names that were referenced but unset (candidates for "undefined variable" warnings). */
  unset: Set<string>;
}

export interface ExpandOptions {
  /** Escape character from the `# escape=` directive: "\\" (default) or "`". */
  escape?: string;
  /** Keep quote characters in the output (BuildKit RawQuotes). */
  rawQuotes?: boolean;
  /** Keep escape characters in the output (BuildKit RawEscapes). */
  rawEscapes?: boolean;
  /** Do not process quotes at all (BuildKit SkipProcessQuotes; heredoc bodies). */
  skipQuotes?: boolean;
  /** Leave references to unset variables as written (BuildKit SkipUnsetEnv); used for static plans. */
  skipUnset?: boolean;
  /** Filled with the names looked up, if given. */
  usage?: VarUsage;
}

export interface LexResult {
  /** The word with quotes removed and variables expanded (ProcessWord). */
  value: string;
  /** The same, split on unquoted whitespace (ProcessWords). */
  words: string[];
  used: Set<string>;
  unset: Set<string>;
}

const EOF = -1;
const WHITE_SPACE = /^\p{White_Space}$/u;
const LETTER = /^\p{L}$/u;
const DIGIT = /^\p{Nd}$/u;

function isSpace(cp: number): boolean {
  return cp !== EOF && WHITE_SPACE.test(String.fromCodePoint(cp));
}
function isLetter(cp: number): boolean {
  return cp !== EOF && LETTER.test(String.fromCodePoint(cp));
}
function isDigit(cp: number): boolean {
  return cp !== EOF && DIGIT.test(String.fromCodePoint(cp));
}
const cp = (s: string): number => s.codePointAt(0) ?? EOF;
const chr = (c: number): string => String.fromCodePoint(c);

// POSIX special parameters; never set in a Dockerfile, but lexed as one-character names.
const SPECIAL_PARAMS = new Set(['@', '*', '#', '?', '-', '$', '!', '0'].map(cp));

/**
 * How much longer than itself one word may grow by expansion (code units). `ENV X=$X$X` repeated, or
 * `${X//?/$0$0...}`, grows without bound (a few hundred bytes of Dockerfile exhausted the heap); no program could
 * receive such a value anyway (Linux caps one environment string at 128 KiB).
 */
export const MAX_EXPANSION = 1 << 20;

function checkSize(s: string, limit: number): string {
  if (s.length > limit) {
    throw new LexFailure(`the expansion grows the word by more than ${MAX_EXPANSION} characters`, 'DOCKERFILE_EXPANSION_TOO_LARGE');
  }
  return s;
}

/** Raised inside the lexer; converted to a BuilderError with the whole word by lex(). */
class LexFailure extends Error {
  constructor(
    message: string,
    readonly code: ErrorCode,
    readonly variable?: string,
  ) {
    super(message);
  }
}

/** Accumulates ProcessWords output: unquoted whitespace from text and expansions splits words. */
class WordsBuilder {
  word = '';
  words: string[] = [];
  inWord = false;

  addChar(c: number): void {
    if (isSpace(c)) {
      if (this.inWord && this.word.length !== 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else {
      this.addRawChar(c);
    }
  }
  addRawChar(c: number): void {
    this.word += chr(c);
    this.inWord = true;
  }
  addString(s: string): void {
    for (const ch of s) this.addChar(cp(ch));
  }
  addRawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }
  finish(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

/** One expansion run over one word; all state lives here, per call. */
class ShellWord {
  private pos = 0;
  private readonly chars: number[];
  private readonly escapeToken: number;
  private rawEscapes: boolean;
  /** Longest result allowed: the word's own length plus MAX_EXPANSION. */
  private readonly limit: number;

  constructor(
    word: string,
    private readonly env: ExpandEnv,
    private readonly opts: ExpandOptions,
    readonly used: Set<string>,
    readonly unset: Set<string>,
  ) {
    this.chars = Array.from(word, (c) => cp(c));
    this.limit = word.length + MAX_EXPANSION;
    this.escapeToken = cp(opts.escape ?? '\\');
    this.rawEscapes = opts.rawEscapes ?? false;
  }

  private peek(): number {
    return this.pos < this.chars.length ? (this.chars[this.pos] as number) : EOF;
  }
  private next(): number {
    if (this.pos >= this.chars.length) return EOF;
    return this.chars[this.pos++] as number;
  }

  run(): { value: string; words: string[] } {
    return this.processStopOn(EOF, this.rawEscapes);
  }

  private processStopOn(stop: number, rawEscapes: boolean): { value: string; words: string[] } {
    let result = '';
    const words = new WordsBuilder();
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      while (this.peek() !== EOF) {
        let c = this.peek();
        if (stop !== EOF && c === stop) {
          this.next();
          return { value: result, words: words.finish() };
        }
        if (c === 0x24 /* $ */) {
          const tmp = this.processDollar();
          result = checkSize(result + tmp, this.limit);
          words.addString(tmp);
        } else if (!this.opts.skipQuotes && (c === 0x27 || c === 0x22) /* ' " */) {
          const tmp = c === 0x27 ? this.processSingleQuote() : this.processDoubleQuote();
          result = checkSize(result + tmp, this.limit);
          words.addRawString(tmp);
        } else {
          c = this.next();
          if (c === this.escapeToken) {
            if (this.rawEscapes) {
              words.addRawChar(c);
              result += chr(c);
            }
            // The escape character escapes the next one; a trailing escape is dropped.
            c = this.next();
            if (c === EOF) break;
            words.addRawChar(c);
          } else {
            words.addChar(c);
          }
          result += chr(c);
        }
      }
      if (stop !== EOF) {
        throw new LexFailure(
          `unexpected end of statement while looking for matching ${chr(stop)}`,
          'DOCKERFILE_BAD_SUBSTITUTION',
        );
      }
      return { value: result, words: words.finish() };
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processSingleQuote(): string {
    // Everything up to the next ' is literal; a ' cannot be escaped inside.
    let result = '';
    let c = this.next();
    if (this.opts.rawQuotes) result += chr(c);
    for (;;) {
      c = this.next();
      if (c === EOF) {
        throw new LexFailure(
          'unexpected end of statement while looking for matching single-quote',
          'DOCKERFILE_UNTERMINATED_QUOTE',
        );
      }
      if (c === 0x27) {
        if (this.opts.rawQuotes) result += chr(c);
        return result;
      }
      result += chr(c);
    }
  }

  private processDoubleQuote(): string {
    // Literal except $ and the escape character, which escapes only " $ and itself.
    let result = '';
    const open = this.next();
    if (this.opts.rawQuotes) result += chr(open);
    for (;;) {
      const p = this.peek();
      if (p === EOF) {
        throw new LexFailure(
          'unexpected end of statement while looking for matching double-quote',
          'DOCKERFILE_UNTERMINATED_QUOTE',
        );
      }
      if (p === 0x22) {
        const c = this.next();
        if (this.opts.rawQuotes) result += chr(c);
        return result;
      }
      if (p === 0x24) {
        result = checkSize(result + this.processDollar(), this.limit);
        continue;
      }
      let c = this.next();
      if (c === this.escapeToken) {
        if (this.rawEscapes) result += chr(c);
        const n = this.peek();
        if (n === EOF) continue; // an escape right before the end is dropped; the EOF check then fails
        if (n === 0x22 || n === 0x24 || n === this.escapeToken) c = this.next();
      }
      result += chr(c);
    }
  }

  private processDollar(): string {
    this.next(); // the $
    if (this.peek() !== 0x7b /* { */) {
      const name = this.processName();
      if (name === '') return '$';
      const [value, found] = this.getEnv(name);
      if (!found && this.opts.skipUnset) return '$' + name;
      return value;
    }
    this.next(); // the {
    const first = this.peek();
    if (first === EOF) throw new LexFailure("syntax error: missing '}'", 'DOCKERFILE_BAD_SUBSTITUTION');
    if (first === 0x7b || first === 0x7d || first === 0x3a /* { } : */) {
      throw new LexFailure('syntax error: bad substitution', 'DOCKERFILE_BAD_SUBSTITUTION');
    }
    const name = this.processName();
    let c = this.next();
    let modifier = c === EOF ? '' : chr(c);
    let nullIsUnset = false;

    if (c === 0x7d /* } */) {
      const [value, found] = this.getEnv(name);
      if (!found && this.opts.skipUnset) return `\${${name}}`;
      return value;
    }
    if (c === 0x2f /* / */) return this.processReplace(name);
    if (c === 0x3a /* : */) {
      nullIsUnset = true;
      c = this.next();
      modifier += c === EOF ? '' : chr(c);
    }
    if (!nullIsUnset && !isModifier(c)) {
      throw new LexFailure(`unsupported modifier (${modifier}) in substitution`, 'DOCKERFILE_BAD_SUBSTITUTION');
    }
    // Pattern operands keep their escapes so the glob can tell \* from *.
    const rawEscapes = c === 0x23 || c === 0x25; /* # % */
    const word = this.stopOnOrMissingBrace(0x7d, rawEscapes, "syntax error: missing '}'");

    const [value, set] = this.getEnv(name);
    if (this.opts.skipUnset && !set) return `\${${name}${modifier}${word}}`;

    switch (c) {
      case 0x2d /* - */:
        return !set || (nullIsUnset && value === '') ? word : value;
      case 0x2b /* + */:
        return !set || (nullIsUnset && value === '') ? '' : word;
      case 0x3f /* ? */:
        if (!set) throw requiredFailure(name, word || 'is not allowed to be unset');
        if (nullIsUnset && value === '') throw requiredFailure(name, word || 'is not allowed to be empty');
        return value;
      case 0x25 /* % */:
      case 0x23 /* # */: {
        // Single #/% is the shortest match, doubled ##/%% the longest.
        let pattern = word;
        let greedy = false;
        if (pattern.length > 0 && cp(pattern) === c) {
          greedy = true;
          pattern = pattern.slice(1);
        }
        return c === 0x25 ? trimSuffix(pattern, value, greedy) : trimPrefix(pattern, value, greedy);
      }
      default:
        throw new LexFailure(`unsupported modifier (${modifier}) in substitution`, 'DOCKERFILE_BAD_SUBSTITUTION');
    }
  }

  private processReplace(name: string): string {
    const replaceAll = this.peek() === 0x2f;
    if (replaceAll) this.next();
    const pattern = this.stopOnOrMissingBrace(0x2f, true, "syntax error: missing '/' in ${}");
    const replacement = this.stopOnOrMissingBrace(0x7d, true, "syntax error: missing '}'");
    const [value, set] = this.getEnv(name);
    if (this.opts.skipUnset && !set) return `\${${name}/${pattern}/${replacement}}`;
    const tokens = compileShellPattern(pattern);
    if (replaceAll) return goReplaceAll(tokens, value, replacement, this.limit);
    const chars = Array.from(value);
    const m = globFind(tokens, true, chars, 0, false);
    if (!m) return value;
    return chars.slice(0, m[0]).join('') + replacement + chars.slice(m[1]).join('');
  }

  private stopOnOrMissingBrace(stop: number, rawEscapes: boolean, missing: string): string {
    try {
      return this.processStopOn(stop, rawEscapes).value;
    } catch (err) {
      // BuildKit reports any failure that ran off the end as the missing delimiter.
      if (err instanceof LexFailure && this.peek() === EOF && err.code !== 'DOCKERFILE_VAR_REQUIRED') {
        throw new LexFailure(missing, 'DOCKERFILE_BAD_SUBSTITUTION');
      }
      throw err;
    }
  }

  private processName(): string {
    // A name is letters/digits/_; a leading digit reads all digits; a special parameter is one character.
    let name = '';
    while (this.peek() !== EOF) {
      let c = this.peek();
      if (name.length === 0 && isDigit(c)) {
        while (isDigit(this.peek())) name += chr(this.next());
        return name;
      }
      if (name.length === 0 && SPECIAL_PARAMS.has(c)) {
        c = this.next();
        return chr(c);
      }
      if (!isLetter(c) && !isDigit(c) && c !== 0x5f /* _ */) break;
      name += chr(this.next());
    }
    return name;
  }

  private getEnv(name: string): [string, boolean] {
    const value = lookup(this.env, name);
    if (value === undefined) {
      this.unset.add(name);
      return ['', false];
    }
    this.used.add(name);
    return [value, true];
  }
}

function isModifier(c: number): boolean {
  return c === 0x2b || c === 0x2d || c === 0x3f || c === 0x23 || c === 0x25; // + - ? # %
}

function requiredFailure(name: string, message: string): LexFailure {
  return new LexFailure(`${name}: ${message}`, 'DOCKERFILE_VAR_REQUIRED', name);
}

function lookup(env: ExpandEnv, name: string): string | undefined {
  if (env instanceof Map) return (env as ReadonlyMap<string, string>).get(name);
  const rec = env as Readonly<Record<string, string | undefined>>;
  return Object.prototype.hasOwnProperty.call(rec, name) ? rec[name] : undefined;
}

/** One element of a compiled shell pattern: a literal code point, `?` (any one), or `*` (any run). */
type GlobToken = { kind: 'lit'; c: string } | { kind: 'any' } | { kind: 'star' };

/**
 * Shell glob (`*`, `?`, `\` escapes; no bracket expressions, as BuildKit) -> tokens for globFind.
 * `\}` and `\/` lose their backslash: they only protect the ${} delimiters.
 */
export function compileShellPattern(pattern: string): GlobToken[] {
  const chars = Array.from(pattern);
  const out: GlobToken[] = [];
  for (let i = 0; i < chars.length; i++) {
    const tok = chars[i] as string;
    if (tok === '*') out.push({ kind: 'star' });
    else if (tok === '?') out.push({ kind: 'any' });
    else if (tok === '\\') {
      const n = chars[i + 1];
      if (n === '}' || n === '/') continue;
      i++;
      if (n !== '*' && n !== '?' && n !== '\\') {
        throw new LexFailure(`invalid pattern (${pattern}) in substitution: invalid escape '\\${n ?? ''}'`, 'DOCKERFILE_BAD_SUBSTITUTION');
      }
      out.push({ kind: 'lit', c: n });
    } else out.push({ kind: 'lit', c: tok });
  }
  return out;
}

/**
 * The leftmost-first match of a compiled pattern in `s` (code points) at or after `from` (only at `from` when
 * anchored): the match Go's regexp (BuildKit) and a backtracking engine agree on, where `?` and `*` match any
 * code point but "\n" and `*` is greedy or lazy. A Pike VM: O(length x pattern) whatever the input, where a
 * backtracking RegExp takes exponential time on patterns like *a*a*a*b (a Dockerfile could hang the build).
 * Returns [start, end) in code points, or undefined.
 */
export function globFind(tokens: readonly GlobToken[], greedy: boolean, s: readonly string[], from: number, anchored: boolean): [number, number] | undefined {
  const m = tokens.length;
  // A thread waits to consume token pc (m: it has matched); `start` is where its match began. Lists are in priority order.
  type Thread = { pc: number; start: number };
  const mark = new Int32Array(m + 1).fill(-1);
  let gen = 0; // the list being built; a state already in it was reached by a higher-priority thread
  const add = (list: Thread[], pc: number, start: number): void => {
    if (mark[pc] === gen) return;
    mark[pc] = gen;
    if (tokens[pc]?.kind !== 'star') return void list.push({ pc, start });
    // A star's thread consumes one more character and stays; greedy prefers that, lazy prefers moving on.
    if (greedy) list.push({ pc, start });
    add(list, pc + 1, start);
    if (!greedy) list.push({ pc, start });
  };
  let found: [number, number] | undefined;
  let clist: Thread[] = [];
  for (let pos = from; pos <= s.length; pos++) {
    // A match starting here ranks below every thread that started earlier.
    if (found === undefined && (pos === from || !anchored)) add(clist, 0, pos);
    if (clist.length === 0) break;
    gen++;
    const nlist: Thread[] = [];
    const ch = s[pos];
    for (const t of clist) {
      if (t.pc === m) {
        found = [t.start, pos];
        break; // the threads after this one rank lower
      }
      const tok = tokens[t.pc]!;
      if (ch !== undefined && (tok.kind === 'lit' ? tok.c === ch : ch !== '\n')) add(nlist, tok.kind === 'star' ? t.pc : t.pc + 1, t.start);
    }
    clist = nlist;
  }
  return found;
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const chars = Array.from(value);
  const m = globFind(compileShellPattern(pattern), greedy, chars, 0, true);
  return m ? chars.slice(m[1]).join('') : value;
}

// Reverse a pattern by code points, keeping each escape in front of the character it escapes.
function reversePattern(pattern: string): string {
  const chars = Array.from(pattern);
  const out: string[] = new Array<string>(chars.length);
  const last = chars.length - 1;
  for (let i = 0; i <= last; ) {
    const tok = chars[i] as string;
    const o = last - i;
    if (tok === '\\' && i !== last) {
      out[o - 1] = tok;
      out[o] = chars[i + 1] as string;
      i += 2;
    } else {
      out[o] = tok;
      i++;
    }
  }
  return out.join('');
}

const reverseString = (s: string): string => Array.from(s).reverse().join('');

function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  // Regexes find leftmost matches only: reverse both to find the shortest/longest rightmost one.
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}

// Go's Regexp.ReplaceAllString: skips an empty match right after a match, expands $n/${n}/$$ in the template.
function goReplaceAll(tokens: readonly GlobToken[], src: string, template: string, limit: number): string {
  const s = Array.from(src);
  let out = '';
  let lastMatchEnd = 0;
  let searchPos = 0;
  while (searchPos <= s.length) {
    const m = globFind(tokens, true, s, searchPos, false);
    if (!m) break;
    const [start, end] = m;
    out += s.slice(lastMatchEnd, start).join('');
    if (end > lastMatchEnd || start === 0) out = checkSize(out + goExpandTemplate(template, s.slice(start, end).join('')), limit);
    lastMatchEnd = end;
    searchPos = end > searchPos ? end : searchPos + 1; // always advance at least one character
  }
  return out + s.slice(lastMatchEnd).join('');
}

// The pattern has no capture groups: $0 is the match, any other reference is empty.
function goExpandTemplate(template: string, match: string): string {
  let out = '';
  let i = 0;
  while (i < template.length) {
    const dollar = template.indexOf('$', i);
    if (dollar < 0) {
      out += template.slice(i);
      break;
    }
    out += template.slice(i, dollar);
    const rest = template.slice(dollar + 1);
    if (rest.startsWith('$')) {
      out += '$';
      i = dollar + 2;
      continue;
    }
    const m = /^\{([\p{L}\p{Nd}_]+)\}/u.exec(rest) ?? /^([\p{L}\p{Nd}_]+)/u.exec(rest);
    if (!m) {
      out += '$';
      i = dollar + 1;
      continue;
    }
    const name = m[1] as string;
    if (/^\d+$/.test(name) && Number(name) === 0) out += match;
    i = dollar + 1 + m[0].length;
  }
  return out;
}

/** Expands one word and returns the joined value, the split words and the variables looked up. */
export function lex(word: string, env: ExpandEnv, opts: ExpandOptions = {}): LexResult {
  const used = opts.usage?.used ?? new Set<string>();
  const unset = opts.usage?.unset ?? new Set<string>();
  const sw = new ShellWord(word, env, opts, used, unset);
  try {
    const { value, words } = sw.run();
    return { value, words, used, unset };
  } catch (err) {
    if (!(err instanceof LexFailure)) throw err;
    const hint =
      err.code === 'DOCKERFILE_VAR_REQUIRED'
        ? `Set ${err.variable} with --build-arg ${err.variable}=... or give it a value with ARG/ENV before this line.`
        : err.code === 'DOCKERFILE_UNTERMINATED_QUOTE'
          ? 'Close the quote, or escape it with the escape character.'
          : err.code === 'DOCKERFILE_EXPANSION_TOO_LARGE'
            ? 'A variable grows with each use (e.g. ENV X=$X$X); put large data in a file instead of a variable.'
            : 'Check the ${...} syntax: supported forms are ${VAR} ${VAR:-w} ${VAR:+w} ${VAR:?m} ${VAR#p} ${VAR%p} ${VAR/p/r}.';
    throw new BuilderError(err.code, `failed to process ${JSON.stringify(word)}: ${err.message}`, { hint });
  }
}

/** ProcessWord: one word, quotes removed, variables expanded. */
export function expandWord(word: string, env: ExpandEnv, opts: ExpandOptions = {}): string {
  return lex(word, env, opts).value;
}

/** ProcessWords: expanded, then split on unquoted whitespace (as for ADD/COPY/EXPOSE arguments). */
export function expandWords(word: string, env: ExpandEnv, opts: ExpandOptions = {}): string[] {
  return lex(word, env, opts).words;
}

/** Re-throws an expansion error with "file:line: " in front of its message (code and hint kept). */
export function withLocation(err: unknown, file: string, line: number): unknown {
  return locateError(err, file, line);
}

/** Turns Docker's ["K=V", ...] env list into a Map (later entries win; "K" alone is K=""). */
export function envListToMap(list: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of list) {
    const i = e.indexOf('=');
    if (i < 0) m.set(e, '');
    else m.set(e.slice(0, i), e.slice(i + 1));
  }
  return m;
}
