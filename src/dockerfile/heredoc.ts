// Heredoc detection on an instruction line (`<<EOF`, `<<-EOF`, `<<"EOF"`, several per line), as BuildKit's heredocsFromLine does.

/** One heredoc body attached to a RUN/COPY/ADD line. */
export interface Heredoc {
  /** Delimiter word, without `<<`, `-` or quotes. */
  name: string;
  /** Body text as written (each line keeps its line ending); leading tabs already stripped for `<<-`. */
  content: string;
  /** False when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): no expansion inside the body. */
  expand: boolean;
  /** True for `<<-EOF` (leading tabs were stripped). */
  chomp: boolean;
}

/** Heredoc marker found on a line; the body is read by the parser. */
export type HeredocMarker = Omit<Heredoc, 'content'>;

const HEREDOC_WORD = /^(\d*)<<(-?)([^<]*)$/;

/**
 * Split a line into shell words, keeping quotes and escapes as written (BuildKit lexes with
 * RawQuotes+RawEscapes and the fixed escape `\`). Variables are not touched.
 */
export function rawWords(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    inWord = true;
    if (ch === '\\') {
      word += line.slice(i, i + 2);
      i++;
    } else if (ch === "'" || ch === '"') {
      const end = findQuoteEnd(line, i);
      word += line.slice(i, end + 1);
      i = end;
    } else {
      word += ch;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** Index of the closing quote for the quote at `start` (or the last index when unterminated). */
function findQuoteEnd(line: string, start: number): number {
  const q = line[start];
  for (let i = start + 1; i < line.length; i++) {
    if (q === '"' && line[i] === '\\') i++;
    else if (line[i] === q) return i;
  }
  return line.length - 1;
}

/** Remove quotes and backslash escapes from one raw word (no variable expansion). */
function unquote(word: string): string {
  let out = '';
  for (let i = 0; i < word.length; i++) {
    const ch = word[i]!;
    if (ch === '\\') {
      if (i + 1 < word.length) out += word[++i];
    } else if (ch === "'") {
      const end = word.indexOf("'", i + 1);
      const stop = end < 0 ? word.length : end;
      out += word.slice(i + 1, stop);
      i = stop;
    } else if (ch === '"') {
      for (i++; i < word.length && word[i] !== '"'; i++) {
        // inside double quotes a backslash escapes only these, as in POSIX sh
        if (word[i] === '\\' && i + 1 < word.length && '"\\$`'.includes(word[i + 1]!)) i++;
        out += word[i];
      }
    } else {
      out += ch;
    }
  }
  return out;
}

/** Parse one raw word as a heredoc marker (`<<EOF`, `<<-"EOF"`, `3<<EOF`), or undefined. */
export function parseHeredocWord(word: string): HeredocMarker | undefined {
  const m = HEREDOC_WORD.exec(word);
  if (!m) return undefined;
  const rest = m[3]!;
  if (rest === '' || rawWords(rest).length !== 1) return undefined;
  const name = unquote(rest);
  const quotes = (s: string): number => (s.match(/['"]/g) ?? []).length;
  // BuildKit: any quote removed from the delimiter word means "do not expand the body"
  return { name, expand: quotes(name) === quotes(rest), chomp: m[2] === '-' };
}

/** Every heredoc marker on a logical line, in order. */
export function heredocsFromLine(line: string): HeredocMarker[] {
  const out: HeredocMarker[] = [];
  for (const w of rawWords(line)) {
    const h = parseHeredocWord(w);
    if (h) out.push(h);
  }
  return out;
}

/** Strip leading tabs from every line (for `<<-`). */
export function chompHeredocContent(src: string): string {
  return src.replace(/^\t+/gm, '');
}
