// Dockerfile text -> AST (BuildKit parser semantics): directives, continuations, JSON vs shell forms, heredocs, line numbers.
import { BuilderError, type ErrorCode } from '../errors.js';
import { chompHeredocContent, heredocsFromLine, type Heredoc } from './heredoc.js';

export type { Heredoc } from './heredoc.js';

/** One instruction line (after continuations) as BuildKit's parser sees it. */
export interface Node {
  /** Lowercased keyword: "from", "run", ... */
  instruction: string;
  /** The whole logical line as written (continuations joined), without heredoc bodies. */
  original: string;
  /** Raw flags as written, e.g. "--from=build". */
  flags: string[];
  /** Argument values in BuildKit's `Next` order (e.g. ENV: key, value, "=" | ""). */
  next: string[];
  /** True when the arguments came from a JSON array (exec form). */
  json: boolean;
  /** ONBUILD only: the parsed trigger instruction. */
  child?: Node;
  heredocs: Heredoc[];
  /** 1-based line of the keyword. */
  startLine: number;
  /** 1-based last line (including continuations and heredoc bodies). */
  endLine: number;
  /** Comment lines directly above the instruction (without `#`). */
  comments: string[];
}

/** A parser directive from the top of the file (`# escape=`, `# syntax=`, `# check=`). */
export interface Directive {
  name: string;
  value: string;
  line: number;
  /** True when builder reads it but does not act on it (syntax, check). */
  ignored: boolean;
}

export interface DockerfileAST {
  file: string;
  /** Escape character: "\\" or "`". */
  escape: string;
  directives: Directive[];
  nodes: Node[];
  /** Non-fatal findings (e.g. empty continuation lines), each "file:line: text". */
  warnings: string[];
}

/** Parser state for one file; lives only for one parseDockerfile call. */
interface ParseState {
  file: string;
  escape: string;
  continuation: RegExp;
  directivesDone: boolean;
  directives: Directive[];
}

const DIRECTIVE_RE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const KNOWN_DIRECTIVES = new Set(['escape', 'syntax', 'check']);
const WHITESPACE_RE = /[\t\v\f\r ]+/;
const HEREDOC_INSTRUCTIONS = new Set(['run', 'copy', 'add']);

/** Line numbers are 1-based; `endLine` defaults to `line`. */
function syntaxError(st: ParseState, line: number, code: ErrorCode, msg: string, hint: string): BuilderError {
  return new BuilderError(code, `${st.file}:${Math.max(line, 1)}: ${msg}`, { hint, file: st.file, line: Math.max(line, 1) });
}

function continuationRegex(escape: string): RegExp {
  const e = escape === '`' ? '`' : '\\\\';
  // escape at end of line continues it, unless the escape itself is escaped (BuildKit's rule)
  return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
}

function setEscape(st: ParseState, value: string, line: number): void {
  if (value !== '`' && value !== '\\') {
    throw syntaxError(st, line, 'DOCKERFILE_DIRECTIVE', `invalid escape token '${value}' does not match \` or \\`,
      'Use "# escape=\\" or "# escape=`".');
  }
  st.escape = value;
  st.continuation = continuationRegex(value);
}

/** Directives are only honoured before the first instruction, comment or blank line. */
function possibleDirective(st: ParseState, token: string, line: number): void {
  if (st.directivesDone) return;
  const m = DIRECTIVE_RE.exec(token);
  const name = m?.[1]?.toLowerCase();
  if (!m || name === undefined || !KNOWN_DIRECTIVES.has(name)) {
    st.directivesDone = true;
    return;
  }
  if (st.directives.some((d) => d.name === name)) {
    throw syntaxError(st, line, 'DOCKERFILE_DIRECTIVE', `only one ${name} parser directive can be used`,
      `Remove the repeated "# ${name}=" line.`);
  }
  const value = m[2]!;
  if (name === 'escape') setEscape(st, value, line);
  st.directives.push({ name, value, line, ignored: name !== 'escape' });
}

const trimNewline = (s: string): string => s.replace(/[\r\n]+$/, '');
const isComment = (raw: string): boolean => trimNewline(raw).trimStart().startsWith('#');

function processLine(st: ParseState, raw: string, stripLeft: boolean, line: number): string {
  let token = trimNewline(raw);
  if (stripLeft) token = token.trimStart();
  possibleDirective(st, token, line);
  return token.startsWith('#') ? '' : token;
}

function trimContinuation(st: ParseState, line: string): [string, boolean] {
  if (st.continuation.test(line)) return [line.replace(st.continuation, '$1'), false];
  return [line, true];
}

/** Split text into lines, each keeping its line ending (heredoc bodies are kept byte for byte). */
function splitLines(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

export function parseDockerfile(text: string, file: string): DockerfileAST {
  const st: ParseState = { file, escape: '\\', continuation: continuationRegex('\\'), directivesDone: false, directives: [] };
  const lines = splitLines(text.replace(/^\uFEFF/, ''));
  const nodes: Node[] = [];
  const warnings: string[] = [];
  let comments: string[] = [];
  let current = 0;
  let i = 0;
  while (i < lines.length) {
    const raw = lines[i++]!;
    if (isComment(raw)) comments.push(trimNewline(raw).trimStart().slice(1).trim());
    const first = processLine(st, raw, true, current + 1);
    current++;
    const startLine = current;
    let [line, eol] = trimContinuation(st, first);
    if (eol && line === '') continue;
    let emptyContinuation = false;
    while (!eol && i < lines.length) {
      const next = lines[i++]!;
      const token = processLine(st, next, false, current + 1);
      current++;
      if (isComment(next)) continue; // comment lines inside a continuation are dropped
      if (token.trim() === '') {
        emptyContinuation = true;
        continue;
      }
      let part: string;
      [part, eol] = trimContinuation(st, token);
      line += part;
    }
    if (emptyContinuation) warnings.push(`${file}:${startLine}: empty continuation line (will become an error in BuildKit)`);
    const node = nodeFromLine(st, line, startLine);
    node.comments = comments;
    comments = [];
    if (canContainHeredoc(node)) {
      for (const marker of heredocsFromLine(line)) {
        let content = '';
        let terminated = false;
        while (i < lines.length) {
          const body = lines[i++]!;
          current++;
          let candidate = trimNewline(body);
          if (marker.chomp) candidate = candidate.replace(/^\t+/, '');
          if (candidate === marker.name) {
            terminated = true;
            break;
          }
          content += body;
        }
        if (!terminated) {
          throw syntaxError(st, startLine, 'DOCKERFILE_HEREDOC_UNTERMINATED',
            `unterminated heredoc <<${marker.name} (reached end of file at line ${current})`,
            `End the heredoc with a line containing only "${marker.name}".`);
        }
        node.heredocs.push({ ...marker, content: marker.chomp ? chompHeredocContent(content) : content });
      }
    }
    node.startLine = startLine;
    node.endLine = current;
    if (node.child) {
      node.child.endLine = current;
      node.child.heredocs = node.heredocs;
    }
    nodes.push(node);
  }
  if (nodes.length === 0) {
    throw syntaxError(st, current, 'DOCKERFILE_EMPTY', 'file with no instructions',
      'Add at least a FROM instruction to the Dockerfile.');
  }
  return { file, escape: st.escape, directives: st.directives, nodes, warnings };
}

function canContainHeredoc(node: Node): boolean {
  const target = node.instruction === 'onbuild' && node.child ? node.child : node;
  return HEREDOC_INSTRUCTIONS.has(target.instruction) && !target.json;
}

/** Parsed arguments of one instruction. */
interface Args {
  next: string[];
  json: boolean;
  child?: Node;
}

function nodeFromLine(st: ParseState, line: string, lineNo: number): Node {
  const { cmd, flags, args } = splitCommand(line);
  const parsed = dispatch(st, cmd, args, lineNo);
  return {
    instruction: cmd,
    original: line,
    flags,
    next: parsed.next,
    json: parsed.json,
    ...(parsed.child ? { child: parsed.child } : {}),
    heredocs: [],
    startLine: lineNo,
    endLine: lineNo,
    comments: [],
  };
}

function dispatch(st: ParseState, cmd: string, rest: string, line: number): Args {
  switch (cmd) {
    case 'add':
    case 'copy':
    case 'volume':
      return parseMaybeJSONToList(st, rest, line);
    case 'arg':
      return { next: parseWords(rest, st.escape), json: false };
    case 'cmd':
    case 'entrypoint':
    case 'run':
    case 'shell':
      return parseMaybeJSON(st, rest, line);
    case 'env':
    case 'label':
      return { next: parseNameVal(st, rest, cmd.toUpperCase(), line), json: false };
    case 'expose':
    case 'from':
      return { next: splitWhitespace(rest), json: false };
    case 'healthcheck':
      return parseHealthConfig(st, rest, line);
    case 'maintainer':
    case 'stopsignal':
    case 'user':
    case 'workdir':
      return { next: rest === '' ? [] : [rest], json: false };
    case 'onbuild':
      return rest === '' ? { next: [], json: false } : { next: [], json: false, child: nodeFromLine(st, rest, line) };
    default:
      // unknown instructions are rejected by the typed layer, like BuildKit's instructions.Parse
      return { next: [], json: false };
  }
}

/** Keyword, leading `--flags` (quotes removed, `--` ends them) and the trimmed rest. */
function splitCommand(line: string): { cmd: string; flags: string[]; args: string } {
  const trimmed = line.trim();
  const m = /[\t\v\f\r ]+/.exec(trimmed);
  const cmd = (m ? trimmed.slice(0, m.index) : trimmed).toLowerCase();
  if (!m) return { cmd, flags: [], args: '' };
  const { rest, flags } = extractBuilderFlags(trimmed.slice(m.index + m[0].length));
  return { cmd, flags, args: rest.trim() };
}

const isSpace = (ch: string): boolean => /\s/.test(ch);

function extractBuilderFlags(line: string): { rest: string; flags: string[] } {
  const flags: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= line.length; pos++) {
    const ch = pos < line.length ? line[pos]! : '';
    if (phase === 'spaces') {
      if (pos === line.length) break;
      if (isSpace(ch)) continue;
      // flags are only the leading words that start with "--"
      if (ch !== '-' || pos + 1 === line.length || line[pos + 1] !== '-') return { rest: line.slice(pos), flags };
      phase = 'word';
    }
    if (pos === line.length) {
      if (word !== '--' && (blankOK || word.length > 0)) flags.push(word);
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch)) {
        phase = 'spaces';
        if (word === '--') return { rest: line.slice(pos), flags };
        if (blankOK || word.length > 0) flags.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
        continue;
      }
      if (ch === '\\') {
        if (pos + 1 === line.length) continue;
        pos++;
      }
      word += line[pos];
      continue;
    }
    if (ch === quote) {
      phase = 'word';
      continue;
    }
    if (ch === '\\') {
      if (pos + 1 === line.length) {
        phase = 'word';
        continue;
      }
      pos++;
    }
    word += line[pos];
  }
  return { rest: '', flags };
}

/** Words split on whitespace with quotes and escapes kept (they are removed at expansion time). */
function parseWords(rest: string, escape: string): string[] {
  const words: string[] = [];
  const chars = Array.from(rest);
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let quote = '';
  let blankOK = false;
  let word = '';
  for (let pos = 0; pos <= chars.length; pos++) {
    let ch = pos < chars.length ? chars[pos]! : '';
    if (phase === 'spaces') {
      if (pos === chars.length) break;
      if (isSpace(ch)) continue;
      phase = 'word';
    }
    if (pos === chars.length) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === escape) {
        if (pos + 1 === chars.length) continue; // a trailing escape is dropped
        word += ch;
        ch = chars[++pos]!;
      }
      word += ch;
      continue;
    }
    if (ch === quote) phase = 'word';
    // inside single quotes the escape character is literal
    if (ch === escape && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = 'word';
        continue;
      }
      word += ch;
      ch = chars[++pos]!;
    }
    word += ch;
  }
  return words;
}

/** ENV/LABEL: `key value` (legacy, one pair) or `k=v k2=v2`; Next is key, value, "=" | "" per pair. */
function parseNameVal(st: ParseState, rest: string, key: string, line: number): string[] {
  const words = parseWords(rest, st.escape);
  if (words.length === 0) return [];
  if (!words[0]!.includes('=')) {
    const m = WHITESPACE_RE.exec(rest);
    if (!m) {
      throw syntaxError(st, line, 'DOCKERFILE_SYNTAX', `${key} must have two arguments`,
        `Write "${key} ${rest}=<value>" or "${key} ${rest} <value>".`);
    }
    return [rest.slice(0, m.index), rest.slice(m.index + m[0].length), ''];
  }
  const out: string[] = [];
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq < 0) {
      throw syntaxError(st, line, 'DOCKERFILE_SYNTAX', `Syntax error - can't find = in ${JSON.stringify(w)}. Must be of the form: name=value`,
        `Give every ${key} entry as name=value (quote values containing spaces).`);
    }
    out.push(w.slice(0, eq), w.slice(eq + 1), '=');
  }
  return out;
}

function splitWhitespace(rest: string): string[] {
  return rest === '' ? [] : rest.split(WHITESPACE_RE);
}

/** A JSON array of strings, or undefined when `rest` is not valid JSON (then it is shell form). */
function parseJSON(st: ParseState, rest: string, line: number): string[] | undefined {
  const text = rest.trimStart();
  if (!text.startsWith('[')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return undefined;
  if (!value.every((v): v is string => typeof v === 'string')) {
    throw syntaxError(st, line, 'DOCKERFILE_JSON', 'when using JSON array syntax, arrays must be comprised of strings only',
      'Quote every element of the JSON array, e.g. ["echo", "1"].');
  }
  return value;
}

function parseMaybeJSON(st: ParseState, rest: string, line: number): Args {
  if (rest === '') return { next: [], json: false };
  const json = parseJSON(st, rest, line);
  return json ? { next: json, json: true } : { next: [rest], json: false };
}

function parseMaybeJSONToList(st: ParseState, rest: string, line: number): Args {
  const json = parseJSON(st, rest, line);
  return json ? { next: json, json: true } : { next: splitWhitespace(rest), json: false };
}

/** HEALTHCHECK: first word is the type (CMD/NONE), the rest is like CMD. */
function parseHealthConfig(st: ParseState, rest: string, line: number): Args {
  const m = /\s/.exec(rest);
  if (rest === '') return { next: [], json: false };
  const typ = m ? rest.slice(0, m.index) : rest;
  const cmd = parseMaybeJSON(st, m ? rest.slice(m.index).trimStart() : '', line);
  return { next: [typ, ...cmd.next], json: cmd.json };
}

/** Go's strconv.Quote, so dumps compare byte for byte with BuildKit's `result` files. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    switch (ch) {
      case '"': out += '\\"'; continue;
      case '\\': out += '\\\\'; continue;
      case '\x07': out += '\\a'; continue;
      case '\b': out += '\\b'; continue;
      case '\f': out += '\\f'; continue;
      case '\n': out += '\\n'; continue;
      case '\r': out += '\\r'; continue;
      case '\t': out += '\\t'; continue;
      case '\v': out += '\\v'; continue;
    }
    if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp !== 0x20 && /[\p{C}\p{Z}]/u.test(ch)) out += cp > 0xffff ? `\\U${cp.toString(16).padStart(8, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return out + '"';
}

/** One node in BuildKit's Dump notation, e.g. `(copy ["--from=a"] "x" "/y")`. */
export function dumpNode(node: Node): string {
  let s = node.instruction;
  if (node.flags.length > 0) s += ` [${node.flags.map(goQuote).join(' ')}]`;
  if (node.child) s += ` ${dumpNode(node.child)}`;
  for (const v of node.next) s += ` ${goQuote(v)}`;
  return `(${s})`;
}

/** The whole AST in BuildKit's `result` file notation, one line per instruction. */
export function dumpAST(ast: DockerfileAST): string {
  return ast.nodes.map(dumpNode).join('\n') + '\n';
}
