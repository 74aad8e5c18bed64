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
  const src = Array.from(source);
  const nodes: Node[] = [];
  let i = 0;
  const add = (n: Node): number => nodes.push(n) - 1;
  const single = (test: (c: string) => boolean): Frag => {
    const n = add({ kind: 'char', test, next: -1 });
    return { start: n, outs: [(to) => void ((nodes[n] as { next: number }).next = to)] };
  };
  const patch = (f: Frag, to: number): void => f.outs.forEach((o) => o(to));

  const atom = (): Frag | undefined => {
    const c = src[i];
    if (c === undefined) return undefined;
    if (c === '\\') {
      const n = src[i + 1];
      if (n === undefined || /[A-Za-z0-9]/.test(n)) return undefined; // \d, \b, \u...: not emitted
      i += 2;
      return single((x) => x === n);
    }
    if (c === '.') {
      i++;
      return single((x) => x !== '\n' && x !== '\r' && x !== '\u2028' && x !== '\u2029'); // JS "." in u mode
    }
    if (c === '[') {
      // The class as JS reads it: up to the first unescaped "]" (so "[]" is empty); tested one character at a time.
      let j = i + 1;
      if (src[j] === '^') j++;
      while (j < src.length && src[j] !== ']') j += src[j] === '\\' ? 2 : 1;
      if (j >= src.length) return undefined;
      let re: RegExp;
      try {
        re = new RegExp(`^${src.slice(i, j + 1).join('')}$`, 'u');
      } catch {
        return undefined;
      }
      i = j + 1;
      return single((x) => re.test(x));
    }
    if (c === '(') {
      i++;
      const inner = sequence();
      if (inner === undefined || src[i] !== ')') return undefined;
      i++;
      return inner;
    }
    if (c === '^' || c === '$') {
      i++;
      const n = add({ kind: c === '^' ? 'start' : 'end', next: -1 });
      return { start: n, outs: [(to) => void ((nodes[n] as { next: number }).next = to)] };
    }
    if ('*+?{}|)]'.includes(c)) return undefined;
    i++;
    return single((x) => x === c);
  };

  const quantified = (): Frag | undefined => {
    const f = atom();
    if (f === undefined) return undefined;
    const q = src[i];
    if (q === '*') {
      i++;
      const s = add({ kind: 'split', a: f.start, b: -1 });
      patch(f, s);
      return { start: s, outs: [(to) => void ((nodes[s] as { b: number }).b = to)] };
    }
    if (q === '?') {
      i++;
      const s = add({ kind: 'split', a: f.start, b: -1 });
      return { start: s, outs: [...f.outs, (to) => void ((nodes[s] as { b: number }).b = to)] };
    }
    if (q === '+' || q === '{') return undefined;
    return f;
  };

  const sequence = (): Frag | undefined => {
    const j = add({ kind: 'jump', next: -1 });
    let cur: Frag = { start: j, outs: [(to) => void ((nodes[j] as { next: number }).next = to)] };
    while (i < src.length && src[i] !== ')') {
      const f = quantified();
      if (f === undefined) return undefined;
      patch(cur, f.start);
      cur = { start: cur.start, outs: f.outs };
    }
    return cur;
  };

  const whole = sequence();
  if (whole === undefined || i !== src.length) return undefined;
  patch(whole, add({ kind: 'match' }));
  const entry = whole.start;

  return (s: string): boolean => {
    const chars = Array.from(s);
    const seen = new Int32Array(nodes.length).fill(-1);
    // Follows jumps, splits and assertions from `pc` at position `pos`; collects the states that read a character.
    const closure = (pc: number, pos: number, into: number[]): boolean => {
      const stack = [pc];
      let matched = false;
      while (stack.length > 0) {
        const p = stack.pop()!;
        if (p < 0 || seen[p] === pos) continue;
        seen[p] = pos;
        const n = nodes[p]!;
        switch (n.kind) {
          case 'char': into.push(p); break;
          case 'split': stack.push(n.b, n.a); break;
          case 'jump': stack.push(n.next); break;
          case 'start': if (pos === 0) stack.push(n.next); break;
          case 'end': if (pos === chars.length) stack.push(n.next); break;
          case 'match': if (pos === chars.length) matched = true; break;
        }
      }
      return matched;
    };
    let states: number[] = [];
    let matched = closure(entry, 0, states);
    for (let pos = 0; pos < chars.length && states.length > 0; pos++) {
      const c = chars[pos]!;
      const next: number[] = [];
      matched = false;
      for (const p of states) {
        const n = nodes[p] as Extract<Node, { kind: 'char' }>;
        if (n.test(c) && closure(n.next, pos + 1, next)) matched = true;
      }
      states = next;
    }
    return matched;
  };
}
