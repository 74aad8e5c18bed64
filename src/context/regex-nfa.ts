// Linear-time full matching for the small regexps .dockerignore patterns compile to (moby matches them with Go's
// RE2; a backtracking JS RegExp takes exponential time on `*a*a*a*a*b` against a long file name).

type Node =
  | { kind: 'char'; test: (c: string) => boolean; next: number }
  | { kind: 'split'; a: number; b: number }
  | { kind: 'jump'; next: number }
  | { kind: 'start'; next: number } // "^": only at position 0
  | { kind: 'end'; next: number } // "$": only at the end
  | { kind: 'match' };

/** A fragment under construction: its entry node and the nodes whose `next` (or split arm) must be patched. */
interface Frag {
  start: number;
  outs: Array<(to: number) => void>;
}

/**
 * Compiles the subset of JS regexp syntax that compilePattern emits (literals, `\x` identity escapes, `.`, classes,
 * groups, `*` and `?`, `^` and `$`) to an NFA; undefined for anything else, so the caller keeps its RegExp.
 */
export function compileRegexNfa(source: string): ((s: string) => boolean) | undefined {
  const parser = new Parser(source);
  const whole = parser.sequence();
  if (whole === undefined || !parser.atEnd()) return undefined;
  const nodes = parser.nodes;
  parser.patch(whole, parser.add({ kind: 'match' }));
  const entry = whole.start;
  // reused by every call (a context walk matches every path): the states of this position and the next, the
  // position each node was last added at, and closure's stack (each node is pushed at most twice per position)
  let states = new Int32Array(nodes.length);
  let next = new Int32Array(nodes.length);
  const seen = new Int32Array(nodes.length);
  const stack = new Int32Array(2 * nodes.length + 1);
  return (s: string): boolean => {
    // code points, as a unicode-mode RegExp reads them; a string without surrogates is its own
    const chars: ArrayLike<string> = /[\uD800-\uDFFF]/.test(s) ? Array.from(s) : s;
    seen.fill(-1);
    let count = 0;
    const into = (p: number): void => void (next[count++] = p);
    let matched = closure(nodes, seen, stack, chars.length, entry, 0, into);
    [states, next] = [next, states];
    let live = count;
    for (let pos = 0; pos < chars.length && live > 0; pos++) {
      const c = chars[pos]!;
      count = 0;
      matched = false;
      for (let k = 0; k < live; k++) {
        const n = nodes[states[k]!] as Extract<Node, { kind: 'char' }>;
        if (n.test(c) && closure(nodes, seen, stack, chars.length, n.next, pos + 1, into)) matched = true;
      }
      [states, next] = [next, states];
      live = count;
    }
    return matched;
  };
}

/**
 * Follows jumps, splits and assertions from `pc` at position `pos` of an input `length` characters long; passes
 * the states that read a character to `into`; true when the match state is reached at the end.
 */
function closure(nodes: readonly Node[], seen: Int32Array, stack: Int32Array, length: number, pc: number, pos: number, into: (p: number) => void): boolean {
  let top = 0;
  stack[top++] = pc;
  let matched = false;
  while (top > 0) {
    const p = stack[--top]!;
    if (p < 0 || seen[p] === pos) continue;
    seen[p] = pos;
    const n = nodes[p]!;
    switch (n.kind) {
      case 'char': into(p); break;
      case 'split': stack[top++] = n.b; stack[top++] = n.a; break;
      case 'jump': stack[top++] = n.next; break;
      case 'start': if (pos === 0) stack[top++] = n.next; break;
      case 'end': if (pos === length) stack[top++] = n.next; break;
      case 'match': if (pos === length) matched = true; break;
    }
  }
  return matched;
}

/** A recursive-descent parser of the pattern into NFA nodes (Thompson construction). */
class Parser {
  readonly nodes: Node[] = [];
  private readonly src: string[];
  private i = 0;

  constructor(source: string) {
    this.src = Array.from(source);
  }

  atEnd(): boolean {
    return this.i === this.src.length;
  }

  add(n: Node): number {
    return this.nodes.push(n) - 1;
  }

  patch(f: Frag, to: number): void {
    f.outs.forEach((o) => o(to));
  }

  /** Atoms in a row, up to ")" or the end. */
  sequence(): Frag | undefined {
    const j = this.add({ kind: 'jump', next: -1 });
    let cur: Frag = { start: j, outs: [this.setNext(j)] };
    while (this.i < this.src.length && this.src[this.i] !== ')') {
      const f = this.quantified();
      if (f === undefined) return undefined;
      this.patch(cur, f.start);
      cur = { start: cur.start, outs: f.outs };
    }
    return cur;
  }

  /** An atom with an optional `*` or `?` (`+` and `{}` are never emitted). */
  private quantified(): Frag | undefined {
    const f = this.atom();
    if (f === undefined) return undefined;
    const q = this.src[this.i];
    if (q === '*') {
      this.i++;
      const s = this.add({ kind: 'split', a: f.start, b: -1 });
      this.patch(f, s);
      return { start: s, outs: [this.setSplitB(s)] };
    }
    if (q === '?') {
      this.i++;
      const s = this.add({ kind: 'split', a: f.start, b: -1 });
      return { start: s, outs: [...f.outs, this.setSplitB(s)] };
    }
    if (q === '+' || q === '{') return undefined;
    return f;
  }

  private atom(): Frag | undefined {
    const c = this.src[this.i];
    if (c === undefined) return undefined;
    if (c === '\\') {
      const n = this.src[this.i + 1];
      if (n === undefined || /[A-Za-z0-9]/.test(n)) return undefined; // \d, \b, \u...: not emitted
      this.i += 2;
      return this.single((x) => x === n);
    }
    if (c === '.') {
      this.i++;
      return this.single((x) => x !== '\n' && x !== '\r' && x !== '\u2028' && x !== '\u2029'); // JS "." in u mode
    }
    if (c === '[') return this.charClass();
    if (c === '(') {
      this.i++;
      const inner = this.sequence();
      if (inner === undefined || this.src[this.i] !== ')') return undefined;
      this.i++;
      return inner;
    }
    if (c === '^' || c === '$') {
      this.i++;
      const n = this.add({ kind: c === '^' ? 'start' : 'end', next: -1 });
      return { start: n, outs: [this.setNext(n)] };
    }
    if ('*+?{}|)]'.includes(c)) return undefined;
    this.i++;
    return this.single((x) => x === c);
  }

  /** The class as JS reads it: up to the first unescaped "]" (so "[]" is empty); tested one character at a time. */
  private charClass(): Frag | undefined {
    const src = this.src;
    let j = this.i + 1;
    if (src[j] === '^') j++;
    while (j < src.length && src[j] !== ']') j += src[j] === '\\' ? 2 : 1;
    if (j >= src.length) return undefined;
    let re: RegExp;
    try {
      re = new RegExp(`^${src.slice(this.i, j + 1).join('')}$`, 'u');
    } catch {
      return undefined;
    }
    this.i = j + 1;
    return this.single((x) => re.test(x));
  }

  private single(test: (c: string) => boolean): Frag {
    const n = this.add({ kind: 'char', test, next: -1 });
    return { start: n, outs: [this.setNext(n)] };
  }

  private setNext(n: number): (to: number) => void {
    return (to) => void ((this.nodes[n] as { next: number }).next = to);
  }

  private setSplitB(s: number): (to: number) => void {
    return (to) => void ((this.nodes[s] as { b: number }).b = to);
  }
}
