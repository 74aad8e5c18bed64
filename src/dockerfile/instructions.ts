// Typed instructions: AST nodes -> a discriminated union on `kind`, flags parsed and validated as BuildKit does. Words stay raw (unexpanded).
import { BuilderError, type ErrorCode } from '../errors.js';
import { parseHeredocWord } from './heredoc.js';
import { parseDockerfile, type DockerfileAST, type Directive, type Heredoc, type Node } from './parse.js';

export type { Heredoc } from './parse.js';

/** Fields every instruction carries. */
export interface InstructionBase {
  /** 1-based line of the keyword. */
  line: number;
  /** 1-based last line (continuations, heredoc bodies). */
  endLine: number;
  file: string;
  /** The logical line as written (without heredoc bodies). */
  original: string;
}

/** A command in shell form (`shell: true`, cmd = [script]) or exec/JSON form (`shell: false`, cmd = argv). */
export interface CommandLine {
  shell: boolean;
  cmd: string[];
}

/** KEY=VALUE pair; value is raw (quotes and $VARs still present) — expand later. */
export interface KeyValue {
  key: string;
  value: string;
}

export interface FromInstruction extends InstructionBase {
  kind: 'from';
  /** Raw image word (may contain $ARGs). */
  image: string;
  /** Stage name after AS, lowercased (BuildKit matches stage names case-insensitively). */
  as?: string;
  /** Raw --platform value. */
  platform?: string;
}

export interface RunInstruction extends InstructionBase, CommandLine {
  kind: 'run';
  heredocs: Heredoc[];
  /** Raw --mount values, in order (repeatable). */
  mounts: string[];
  /** --network: default | none | host. */
  network?: string;
  /** --security: sandbox | insecure. */
  security?: string;
}

export interface CmdInstruction extends InstructionBase, CommandLine {
  kind: 'cmd';
}

export interface EntrypointInstruction extends InstructionBase, CommandLine {
  kind: 'entrypoint';
}

export interface EnvInstruction extends InstructionBase {
  kind: 'env';
  pairs: KeyValue[];
}

export interface LabelInstruction extends InstructionBase {
  kind: 'label';
  pairs: KeyValue[];
}

export interface MaintainerInstruction extends InstructionBase {
  kind: 'maintainer';
  maintainer: string;
}

export interface ExposeInstruction extends InstructionBase {
  kind: 'expose';
  /** Raw port words, e.g. "80/tcp", "$PORT". */
  ports: string[];
}

/** Fields shared by COPY and ADD. */
export interface CopyLike extends InstructionBase {
  /** Raw source words (heredoc references `<<EOF` removed: they are in `heredocs`). */
  sources: string[];
  /** Raw destination word. */
  dest: string;
  /** Inline files: each heredoc becomes a file named `name` in the destination. */
  heredocs: Heredoc[];
  /** True when written in JSON form. */
  json: boolean;
  chown?: string;
  chmod?: string;
  link: boolean;
  /** Raw --exclude patterns (repeatable). */
  exclude: string[];
}

export interface CopyInstruction extends CopyLike {
  kind: 'copy';
  /** --from: stage name, stage index or image reference (raw). */
  from?: string;
  parents: boolean;
}

export interface AddInstruction extends CopyLike {
  kind: 'add';
  keepGitDir: boolean;
  /** --checksum (e.g. "sha256:..."), raw. */
  checksum?: string;
  /** --unpack=true|false when given (BuildKit 1.16+). */
  unpack?: boolean;
}

export interface VolumeInstruction extends InstructionBase {
  kind: 'volume';
  paths: string[];
}

export interface UserInstruction extends InstructionBase {
  kind: 'user';
  user: string;
}

export interface WorkdirInstruction extends InstructionBase {
  kind: 'workdir';
  path: string;
}

export interface ArgInstruction extends InstructionBase {
  kind: 'arg';
  /** `ARG a=1 b`: value undefined when no default given. Values raw. */
  args: { key: string; value?: string }[];
}

export interface OnbuildInstruction extends InstructionBase {
  kind: 'onbuild';
  /** Trigger text as stored in the image config (`RUN echo hi`). */
  trigger: string;
  /** The trigger parsed (never from/onbuild/maintainer). */
  instruction: Instruction;
}

export interface StopsignalInstruction extends InstructionBase {
  kind: 'stopsignal';
  signal: string;
}

export interface HealthcheckInstruction extends InstructionBase {
  kind: 'healthcheck';
  /** 'NONE' disables the base image's healthcheck. */
  test: 'NONE' | CommandLine;
  /** Durations in nanoseconds (the image config unit); undefined = not set (inherit default). */
  interval?: number;
  timeout?: number;
  startPeriod?: number;
  startInterval?: number;
  retries?: number;
}

export interface ShellInstruction extends InstructionBase {
  kind: 'shell';
  /** JSON argv, e.g. ["/bin/sh", "-c"]. */
  shell: string[];
}

export type Instruction =
  | FromInstruction
  | RunInstruction
  | CmdInstruction
  | EntrypointInstruction
  | EnvInstruction
  | LabelInstruction
  | MaintainerInstruction
  | ExposeInstruction
  | AddInstruction
  | CopyInstruction
  | VolumeInstruction
  | UserInstruction
  | WorkdirInstruction
  | ArgInstruction
  | OnbuildInstruction
  | StopsignalInstruction
  | HealthcheckInstruction
  | ShellInstruction;

export type InstructionKind = Instruction['kind'];

export interface TypedDockerfile {
  file: string;
  directives: Directive[];
  /** Escape character for word expansion: "\\" or "`". */
  escape: string;
  instructions: Instruction[];
  warnings: string[];
}

type FlagType = 'string' | 'strings' | 'bool';
type FlagSpec = Record<string, FlagType>;
/** Parsed flag values: string for string/bool ("true"/"false"), string[] for repeatable flags. */
type FlagValues = Map<string, string | string[]>;

const FLAGS: Record<string, FlagSpec> = {
  from: { platform: 'string' },
  run: { mount: 'strings', network: 'string', security: 'string' },
  copy: { from: 'string', chown: 'string', chmod: 'string', link: 'bool', exclude: 'strings', parents: 'bool' },
  add: { chown: 'string', chmod: 'string', link: 'bool', exclude: 'strings', 'keep-git-dir': 'bool', checksum: 'string', unpack: 'bool' },
  healthcheck: { interval: 'string', timeout: 'string', 'start-period': 'string', 'start-interval': 'string', retries: 'string' },
};

const INSTRUCTION_NAMES = ['from', 'run', 'cmd', 'entrypoint', 'env', 'label', 'maintainer', 'expose', 'add', 'copy',
  'volume', 'user', 'workdir', 'arg', 'onbuild', 'stopsignal', 'healthcheck', 'shell'];

/** Edit distance, to suggest the instruction a typo meant. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length]!;
}

function unknownInstructionHint(name: string): string {
  const best = INSTRUCTION_NAMES.map((n) => [n, distance(name, n)] as const).sort((x, y) => x[1] - y[1])[0]!;
  if (best[1] <= 2) return `Did you mean ${best[0].toUpperCase()}?`;
  return `Use one of ${INSTRUCTION_NAMES.map((n) => n.toUpperCase()).join(', ')}.`;
}

/** Error at a node, message "file:line: KEYWORD: text". */
function fail(file: string, node: Node, code: ErrorCode, msg: string, hint: string): BuilderError {
  return new BuilderError(code, `${file}:${node.startLine}: ${node.instruction.toUpperCase()}: ${msg}`, { hint });
}

/** Validate raw `--name[=value]` flags against an instruction's spec, as BuildKit's BFlags.Parse. */
function parseFlags(file: string, node: Node, spec: FlagSpec): FlagValues {
  const values: FlagValues = new Map();
  const kw = node.instruction.toUpperCase();
  const known = Object.keys(spec).map((k) => `--${k}`).join(', ') || 'none';
  for (const raw of node.flags) {
    if (raw === '--') break;
    const eq = raw.indexOf('=');
    const name = raw.slice(2, eq < 0 ? undefined : eq);
    const value = eq < 0 ? undefined : raw.slice(eq + 1);
    const type = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (type === undefined) {
      throw fail(file, node, 'DOCKERFILE_UNKNOWN_FLAG', `unknown flag: --${name}`, `Flags accepted by ${kw}: ${known}.`);
    }
    if (values.has(name) && type !== 'strings') {
      throw fail(file, node, 'DOCKERFILE_BAD_FLAG', `duplicate flag specified: --${name}`, `Give --${name} once.`);
    }
    if (type === 'bool') {
      if (value === '') throw fail(file, node, 'DOCKERFILE_BAD_FLAG', `missing a value on flag: --${name}`, `Write --${name} or --${name}=true|false.`);
      const v = (value ?? 'true').toLowerCase();
      if (v !== 'true' && v !== 'false') {
        throw fail(file, node, 'DOCKERFILE_BAD_FLAG', `expecting boolean value for flag --${name}, not: ${value}`, `Write --${name}=true or --${name}=false.`);
      }
      values.set(name, v);
    } else {
      if (value === undefined) throw fail(file, node, 'DOCKERFILE_BAD_FLAG', `missing a value on flag: --${name}`, `Write --${name}=<value>.`);
      if (type === 'strings') values.set(name, [...((values.get(name) as string[] | undefined) ?? []), value]);
      else values.set(name, value);
    }
  }
  return values;
}

const str = (f: FlagValues, k: string): string | undefined => f.get(k) as string | undefined;
const bool = (f: FlagValues, k: string): boolean => f.get(k) === 'true';
const list = (f: FlagValues, k: string): string[] => (f.get(k) as string[] | undefined) ?? [];
const opt = <K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } => (v === undefined ? {} : ({ [key]: v } as { [P in K]?: V }));

const DURATION_UNITS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Go's time.ParseDuration (unsigned), in nanoseconds; undefined when malformed. */
export function parseGoDuration(s: string): number | undefined {
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  return s.length > 0 ? Math.round(total) : undefined;
}

function commandLine(node: Node): CommandLine {
  return { shell: !node.json, cmd: node.next };
}

function requireArgs(file: string, node: Node, ok: boolean, what: string): void {
  if (!ok) {
    throw fail(file, node, 'DOCKERFILE_ARGS', `requires ${what}`,
      `See the Dockerfile reference for ${node.instruction.toUpperCase()}.`);
  }
}

function pairs(file: string, node: Node): KeyValue[] {
  requireArgs(file, node, node.next.length >= 3, 'at least one argument');
  const out: KeyValue[] = [];
  for (let i = 0; i + 1 < node.next.length; i += 3) {
    const key = node.next[i]!;
    if (key === '') throw fail(file, node, 'DOCKERFILE_ARGS', 'names can not be blank', 'Write name=value with a non-empty name.');
    out.push({ key, value: node.next[i + 1]! });
  }
  return out;
}

const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

function fromInstruction(file: string, node: Node, base: InstructionBase): FromInstruction {
  const args = node.next;
  const f = parseFlags(file, node, FLAGS.from!);
  let as: string | undefined;
  if (args.length === 3 && args[1]!.toLowerCase() === 'as') {
    as = args[2]!.toLowerCase();
    if (!STAGE_NAME.test(as)) {
      throw fail(file, node, 'DOCKERFILE_ARGS', `invalid name for build stage: ${JSON.stringify(args[2])}, name can't start with a number or contain symbols`,
        'Use a stage name of letters, digits, "-", "_" and ".", starting with a letter.');
    }
  } else {
    requireArgs(file, node, args.length === 1, 'either one or three arguments (FROM image [AS name])');
  }
  return { kind: 'from', ...base, image: args[0]!, ...opt('as', as), ...opt('platform', str(f, 'platform')) };
}

function copyLike(file: string, node: Node): Omit<CopyLike, keyof InstructionBase> {
  const kw = node.instruction.toUpperCase();
  if (node.next.length < 2) {
    throw fail(file, node, 'DOCKERFILE_ARGS', 'requires at least two arguments, but only one was provided. Destination could not be determined',
      `Write ${kw} <src>... <dest>.`);
  }
  const dest = node.next[node.next.length - 1]!;
  if (!node.json && parseHeredocWord(dest)) {
    throw fail(file, node, 'DOCKERFILE_ARGS', 'cannot accept a heredoc as a destination', 'Put the heredoc before the destination path.');
  }
  const sources: string[] = [];
  const heredocs: Heredoc[] = [];
  for (const src of node.next.slice(0, -1)) {
    const marker = node.json ? undefined : parseHeredocWord(src);
    const body = marker && node.heredocs.find((h) => h.name === marker.name);
    if (body) heredocs.push(body);
    else sources.push(src);
  }
  return { sources, dest, heredocs, json: node.json, link: false, exclude: [] };
}

const NETWORK_MODES = new Set(['default', 'none', 'host']);
const SECURITY_MODES = new Set(['sandbox', 'insecure']);

function runInstruction(file: string, node: Node, base: InstructionBase): RunInstruction {
  const f = parseFlags(file, node, FLAGS.run!);
  requireArgs(file, node, node.next.length > 0, 'at least one argument');
  const network = str(f, 'network');
  if (network !== undefined && !NETWORK_MODES.has(network)) {
    throw fail(file, node, 'DOCKERFILE_BAD_FLAG', `unsupported network mode ${JSON.stringify(network)}`, 'Use --network=default, none or host.');
  }
  const security = str(f, 'security');
  if (security !== undefined && !SECURITY_MODES.has(security)) {
    throw fail(file, node, 'DOCKERFILE_BAD_FLAG', `unsupported security mode ${JSON.stringify(security)}`, 'Use --security=sandbox or insecure.');
  }
  return { kind: 'run', ...base, ...commandLine(node), heredocs: node.heredocs, mounts: list(f, 'mount'), ...opt('network', network), ...opt('security', security) };
}

function healthDuration(file: string, node: Node, f: FlagValues, name: string): number | undefined {
  const raw = str(f, name);
  if (raw === undefined || raw === '') return undefined;
  const ns = parseGoDuration(raw);
  if (ns === undefined) throw fail(file, node, 'DOCKERFILE_BAD_FLAG', `invalid duration for --${name}: ${JSON.stringify(raw)}`, 'Use a duration such as 30s, 1m30s or 500ms.');
  if (ns !== 0 && ns < 1e6) throw fail(file, node, 'DOCKERFILE_BAD_FLAG', `Interval "${name}" cannot be less than 1ms`, `Give --${name} at least 1ms (or 0 for the default).`);
  return ns;
}

function healthcheckInstruction(file: string, node: Node, base: InstructionBase): HealthcheckInstruction {
  requireArgs(file, node, node.next.length > 0, 'at least one argument');
  const typ = node.next[0]!.toUpperCase();
  const args = node.next.slice(1);
  if (typ === 'NONE') {
    // BuildKit does not look at flags for NONE
    if (args.length > 0) throw fail(file, node, 'DOCKERFILE_ARGS', 'NONE takes no arguments', 'Write just HEALTHCHECK NONE.');
    return { kind: 'healthcheck', ...base, test: 'NONE' };
  }
  const f = parseFlags(file, node, FLAGS.healthcheck!);
  if (typ !== 'CMD') throw fail(file, node, 'DOCKERFILE_ARGS', `unknown type ${JSON.stringify(typ)} (try CMD)`, 'Write HEALTHCHECK [options] CMD <command> or HEALTHCHECK NONE.');
  if (args.length === 0) throw fail(file, node, 'DOCKERFILE_ARGS', 'missing command after CMD', 'Give the command to run, e.g. HEALTHCHECK CMD curl -f http://localhost/.');
  let retries: number | undefined;
  const rawRetries = str(f, 'retries');
  if (rawRetries !== undefined && rawRetries !== '') {
    retries = /^[+-]?\d+$/.test(rawRetries) ? Number(rawRetries) : NaN;
    if (!Number.isSafeInteger(retries) || retries > 2 ** 31 - 1) throw fail(file, node, 'DOCKERFILE_BAD_FLAG', `invalid --retries value ${JSON.stringify(rawRetries)}`, 'Give --retries a whole number.');
    if (retries < 0) throw fail(file, node, 'DOCKERFILE_BAD_FLAG', `--retries cannot be negative (${retries})`, 'Give --retries a number >= 0.');
  }
  return {
    kind: 'healthcheck', ...base, test: { shell: !node.json, cmd: args },
    ...opt('interval', healthDuration(file, node, f, 'interval')),
    ...opt('timeout', healthDuration(file, node, f, 'timeout')),
    ...opt('startPeriod', healthDuration(file, node, f, 'start-period')),
    ...opt('startInterval', healthDuration(file, node, f, 'start-interval')),
    ...opt('retries', retries),
  };
}

function onbuildInstruction(file: string, node: Node, base: InstructionBase): OnbuildInstruction {
  parseFlags(file, node, {});
  const child = node.child;
  requireArgs(file, node, child !== undefined, 'at least one argument');
  const trigger = child!.instruction;
  if (trigger === 'onbuild') throw fail(file, node, 'DOCKERFILE_ONBUILD', 'Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed', 'Remove the nested ONBUILD.');
  if (trigger === 'maintainer' || trigger === 'from') throw fail(file, node, 'DOCKERFILE_ONBUILD', `${trigger.toUpperCase()} isn't allowed as an ONBUILD trigger`, 'Move it out of the ONBUILD.');
  let text = node.original.replace(/^\s*ONBUILD\s*/i, '');
  // heredoc bodies travel with the trigger so it can be re-parsed from the image config
  for (const h of node.heredocs) text += `\n${h.content}${h.name}`;
  return { kind: 'onbuild', ...base, trigger: text, instruction: convert(file, child!) };
}

function exactlyOne(file: string, node: Node): string {
  parseFlags(file, node, {});
  requireArgs(file, node, node.next.length === 1, 'exactly one argument');
  return node.next[0]!;
}

/** One AST node -> typed instruction (exhaustive over BuildKit's instruction set). */
function convert(file: string, node: Node): Instruction {
  const base: InstructionBase = { line: node.startLine, endLine: node.endLine, file, original: node.original };
  switch (node.instruction) {
    case 'from':
      return fromInstruction(file, node, base);
    case 'run':
      return runInstruction(file, node, base);
    case 'cmd':
    case 'entrypoint':
      parseFlags(file, node, {});
      return { kind: node.instruction, ...base, ...commandLine(node) };
    case 'env':
    case 'label':
      parseFlags(file, node, {});
      return { kind: node.instruction, ...base, pairs: pairs(file, node) };
    case 'maintainer':
      return { kind: 'maintainer', ...base, maintainer: exactlyOne(file, node) };
    case 'expose':
      parseFlags(file, node, {});
      requireArgs(file, node, node.next.length > 0, 'at least one argument');
      return { kind: 'expose', ...base, ports: node.next };
    case 'copy': {
      const f = parseFlags(file, node, FLAGS.copy!);
      return {
        kind: 'copy', ...base, ...copyLike(file, node), ...opt('from', str(f, 'from')), ...opt('chown', str(f, 'chown')),
        ...opt('chmod', str(f, 'chmod')), link: bool(f, 'link'), exclude: list(f, 'exclude'), parents: bool(f, 'parents'),
      };
    }
    case 'add': {
      const f = parseFlags(file, node, FLAGS.add!);
      const unpack = str(f, 'unpack');
      return {
        kind: 'add', ...base, ...copyLike(file, node), ...opt('chown', str(f, 'chown')), ...opt('chmod', str(f, 'chmod')),
        link: bool(f, 'link'), exclude: list(f, 'exclude'), keepGitDir: bool(f, 'keep-git-dir'),
        ...opt('checksum', str(f, 'checksum')), ...opt('unpack', unpack === undefined ? undefined : unpack === 'true'),
      };
    }
    case 'volume': {
      parseFlags(file, node, {});
      requireArgs(file, node, node.next.length > 0, 'at least one argument');
      const paths = node.next.map((v) => v.trim());
      if (paths.includes('')) throw fail(file, node, 'DOCKERFILE_ARGS', 'specified can not be an empty string', 'Remove the empty path.');
      return { kind: 'volume', ...base, paths };
    }
    case 'user':
      return { kind: 'user', ...base, user: exactlyOne(file, node) };
    case 'workdir':
      return { kind: 'workdir', ...base, path: exactlyOne(file, node) };
    case 'arg': {
      parseFlags(file, node, {});
      requireArgs(file, node, node.next.length > 0, 'at least one argument');
      const args = node.next.map((w) => {
        const eq = w.indexOf('=');
        if (eq === 0) throw fail(file, node, 'DOCKERFILE_ARGS', 'names can not be blank', 'Write ARG name or ARG name=default.');
        return eq < 0 ? { key: w } : { key: w.slice(0, eq), value: w.slice(eq + 1) };
      });
      return { kind: 'arg', ...base, args };
    }
    case 'onbuild':
      return onbuildInstruction(file, node, base);
    case 'stopsignal':
      return { kind: 'stopsignal', ...base, signal: exactlyOne(file, node) };
    case 'healthcheck':
      return healthcheckInstruction(file, node, base);
    case 'shell':
      parseFlags(file, node, {});
      requireArgs(file, node, node.next.length > 0, 'at least one argument');
      if (!node.json) throw fail(file, node, 'DOCKERFILE_ARGS', 'requires the arguments to be in JSON form', 'Write SHELL ["executable", "parameters"].');
      return { kind: 'shell', ...base, shell: node.next };
    default:
      throw fail(file, node, 'DOCKERFILE_UNKNOWN_INSTRUCTION', `unknown instruction: ${node.instruction.toUpperCase()}`, unknownInstructionHint(node.instruction));
  }
}

/** Typed instructions for every node of a parsed Dockerfile; throws BuilderError at the first bad one. */
export function toInstructions(ast: DockerfileAST): TypedDockerfile {
  return {
    file: ast.file,
    directives: ast.directives,
    escape: ast.escape,
    instructions: ast.nodes.map((n) => convert(ast.file, n)),
    warnings: ast.warnings,
  };
}

/** parseDockerfile + toInstructions in one call, keeping the AST for callers that dump or re-read it. */
export function readDockerfile(text: string, file: string): TypedDockerfile & { ast: DockerfileAST } {
  const ast = parseDockerfile(text, file);
  return { ...toInstructions(ast), ast };
}
