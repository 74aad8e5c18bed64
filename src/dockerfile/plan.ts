// Build planning: ARG scoping (global, per stage, --build-arg, predefined), per-step expansion, --target, unused stages, ONBUILD.
import { BuilderError } from '../errors.js';
import { lex, withLocation, type ExpandEnv, type ExpandOptions, type VarUsage } from './expand.js';
import type {
  ArgInstruction,
  CopyLike,
  FromInstruction,
  Heredoc,
  Instruction,
  InstructionKind,
  KeyValue,
  RunInstruction,
  TypedDockerfile,
} from './instructions.js';
import { mountField, parseMount, readMount, readMountFields, type Mount } from './mount.js';
import { toInstructions } from './instructions.js';
import { parseDockerfile } from './parse.js';
import { formatPlatform, parsePlatform, platformArgs, type PlatformSpec } from './platform.js';
import {
  checkNoCycles,
  findStageByName,
  looksLikeImageReference,
  reachableStages,
  resolveStageRef,
  splitStages,
  stageNameList,
  type StageDecl,
} from './stages.js';

/** ARGs Docker defines without an ARG line; they reach RUN's environment only, and stay out of history. */
export const PREDEFINED_ARGS: readonly string[] = [
  'HTTP_PROXY',
  'http_proxy',
  'HTTPS_PROXY',
  'https_proxy',
  'FTP_PROXY',
  'ftp_proxy',
  'NO_PROXY',
  'no_proxy',
  'ALL_PROXY',
  'all_proxy',
];

/** What expandInstruction needs besides the running env; a BuildPlan satisfies it. */
export interface ExpandContext {
  /** Escape character of the Dockerfile ("\\" or "`"). */
  escape: string;
  /** Resolved --build-arg values. */
  buildArgs: ReadonlyMap<string, string>;
  /** Global-scope values (platform ARGs, ARGs before the first FROM) a re-declared `ARG NAME` picks up. */
  globalArgs: ReadonlyMap<string, string>;
  /** Leave references to unset variables as written (static previews, where the base image env is unknown). */
  skipUnset?: boolean;
  /** Filled with the variables looked up. */
  usage?: VarUsage;
}

/** RUN with its --mount values expanded and read into typed mounts. */
export type ExpandedRun = Omit<RunInstruction, 'mounts'> & { mounts: Mount[] };

/** An instruction with its words expanded (the raw shape; RUN's mounts typed) plus the variables it used. */
export type ExpandedInstruction = (Exclude<Instruction, RunInstruction> | ExpandedRun) & {
  readonly usedVars: readonly string[];
  readonly unsetVars: readonly string[];
};

/**
 * Expands exactly the words BuildKit expands, against `env` (the stage's running env; for FROM, the global args).
 * RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK/MAINTAINER/ONBUILD words are left to the shell or stored as written;
 * RUN --mount values are expanded and read into typed mounts, relative targets under `workdir` (the step's WORKDIR;
 * undefined: not known). ARG values are resolved: --build-arg, else the expanded default, else the global value.
 * Errors carry file:line.
 */
export function expandInstruction(inst: Instruction, env: ExpandEnv, ctx: ExpandContext, workdir?: string): ExpandedInstruction {
  const usage: VarUsage = { used: new Set(), unset: new Set() };
  const opts: ExpandOptions = { escape: ctx.escape, skipUnset: ctx.skipUnset, usage };
  const word = (w: string): string => lex(w, env, opts).value;
  const words = (w: string): string[] => lex(w, env, opts).words;
  const opt = (w: string | undefined): string | undefined => (w === undefined ? undefined : word(w));
  const pairs = (ps: KeyValue[]): KeyValue[] => ps.map((p) => ({ key: word(p.key), value: word(p.value) }));
  // Heredoc bodies keep their quotes; BuildKit always uses "\" there, whatever the escape directive.
  const heredocs = (hs: Heredoc[]): Heredoc[] =>
    hs.map((h) =>
      h.expand ? { ...h, content: lex(h.content, env, { escape: '\\', skipQuotes: true, skipUnset: ctx.skipUnset, usage }).value } : h,
    );
  const copyLike = (c: CopyLike) => ({
    sources: c.sources.map(word),
    dest: word(c.dest),
    chown: opt(c.chown),
    chmod: opt(c.chmod),
    exclude: c.exclude.map(word),
    heredocs: heredocs(c.heredocs),
  });
  let out: Instruction | ExpandedRun;
  try {
    switch (inst.kind) {
      case 'from':
        out = { ...inst, image: word(inst.image), platform: opt(inst.platform) };
        break;
      case 'arg':
        out = {
          ...inst,
          args: inst.args.map((a) => {
            const key = word(a.key);
            const value = ctx.buildArgs.has(key)
              ? ctx.buildArgs.get(key)
              : a.value !== undefined
                ? word(a.value)
                : ctx.globalArgs.get(key);
            return value === undefined ? { key } : { key, value };
          }),
        };
        break;
      case 'env':
      case 'label':
        out = { ...inst, pairs: pairs(inst.pairs) };
        break;
      case 'expose':
        out = { ...inst, ports: inst.ports.flatMap(words) };
        break;
      case 'copy':
        out = { ...inst, ...copyLike(inst), from: opt(inst.from) };
        break;
      case 'add':
        out = { ...inst, ...copyLike(inst), checksum: opt(inst.checksum) };
        break;
      case 'volume':
        out = { ...inst, paths: inst.paths.map(word) };
        break;
      case 'user':
        out = { ...inst, user: word(inst.user) };
        break;
      case 'workdir':
        out = { ...inst, path: word(inst.path) };
        break;
      case 'stopsignal':
        out = { ...inst, signal: word(inst.signal) };
        break;
      case 'run':
        out = { ...inst, mounts: inst.mounts.map((m) => parseMount(m, { where: `${inst.file}:${inst.line}`, workdir, expand: word })) };
        break;
      case 'cmd':
      case 'entrypoint':
      case 'shell':
      case 'healthcheck':
      case 'maintainer':
      case 'onbuild':
        out = { ...inst };
        break;
      default: {
        const never: never = inst;
        throw new Error(`unhandled instruction ${JSON.stringify(never)}`);
      }
    }
  } catch (err) {
    throw withLocation(err, inst.file, inst.line);
  }
  if (ctx.usage) {
    for (const u of usage.used) ctx.usage.used.add(u);
    for (const u of usage.unset) ctx.usage.unset.add(u);
  }
  return Object.assign(out, { usedVars: [...usage.used], unsetVars: [...usage.unset] });
}

/** Variables of one stage while it runs: image config Env (base + ENV) and declared ARG values. */
export interface StageVars {
  env: Map<string, string>;
  args: Map<string, string>;
}

/** Starting vars for a stage on an image: its config Env ("K=V" list); on scratch, pass nothing. */
/** BuildKit's system.DefaultPathEnv for Linux: scratch's PATH, and the PATH added to a base config that has none. */
export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** A base config's Env with PATH added when it has none ("make sure that PATH is always set", dockerfile2llb). */
export function withDefaultPath(env: readonly string[] | null | undefined): string[] {
  const list = [...(env ?? [])];
  return list.some((e) => e.startsWith('PATH=')) ? list : [...list, DEFAULT_PATH_ENV];
}

export function stageVarsFromImage(configEnv?: readonly string[] | null): StageVars {
  const env = new Map<string, string>();
  for (const e of configEnv ?? []) {
    const i = e.indexOf('=');
    if (i < 0) env.set(e, '');
    else env.set(e.slice(0, i), e.slice(i + 1));
  }
  return { env, args: new Map() };
}

/** A stage built FROM another stage inherits its ENV and its ARG values (BuildKit keeps ARGs in the state env). */
export function cloneStageVars(v: StageVars): StageVars {
  return { env: new Map(v.env), args: new Map(v.args) };
}

/** The env words expand against: ARG values, overridden by ENV of the same name (ENV always wins, as Docker documents). */
export function expansionEnv(v: StageVars): Map<string, string> {
  const m = new Map(v.args);
  for (const [k, val] of v.env) m.set(k, val);
  return m;
}

/** The environment RUN gets: predefined proxy build args, then ARGs, then ENV (later wins). */
export function runEnvironment(v: StageVars, proxyEnv: ReadonlyMap<string, string>): Map<string, string> {
  const m = new Map(proxyEnv);
  for (const [k, val] of expansionEnv(v)) m.set(k, val);
  return m;
}

/** Records an expanded ENV or ARG in the caller's stage vars (other kinds change nothing here). */
export function applyToStageVars(vars: StageVars, inst: Instruction | ExpandedInstruction): void {
  if (inst.kind === 'env') {
    for (const p of inst.pairs) vars.env.set(p.key, p.value);
  } else if (inst.kind === 'arg') {
    for (const a of inst.args) if (a.value !== undefined) vars.args.set(a.key, a.value);
  }
}

/** --build-arg KEY=V and bare KEY (value from `env`; skipped when unset there, like docker build). */
export function resolveBuildArgs(
  buildArgs: Readonly<Record<string, string | undefined>>,
  env: Readonly<Record<string, string | undefined>>,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of Object.entries(buildArgs)) {
    const value = v ?? env[k];
    if (value !== undefined) out.set(k, value);
  }
  return out;
}

/** Parses repeated `--build-arg` strings ("K=V" or bare "K") into the buildArgs record planBuild takes. */
export function parseBuildArgFlags(flags: readonly string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const f of flags) {
    const i = f.indexOf('=');
    if (i === 0) {
      throw new BuilderError('BUILD_ARG_INVALID', `invalid --build-arg ${JSON.stringify(f)}: empty name`, {
        hint: 'Write --build-arg NAME=value, or --build-arg NAME to take the value from the environment.',
      });
    }
    if (i < 0) out[f] = undefined;
    else out[f.slice(0, i)] = f.slice(i + 1);
  }
  return out;
}

export interface PlanOptions {
  /** --build-arg values; undefined = bare KEY, taken from `env`. */
  buildArgs: Readonly<Record<string, string | undefined>>;
  /** The process environment, for bare --build-arg KEY (library code never reads process.env). */
  env: Readonly<Record<string, string | undefined>>;
  /** --target stage name. */
  target?: string;
  /** Target platform (TARGETPLATFORM...). */
  platform: PlatformSpec;
  /** Platform the builder runs on (BUILDPLATFORM...). */
  buildPlatform: PlatformSpec;
  /** Build only the stages the target needs. */
  skipUnusedStages: boolean;
}

/** How far the builder can expand a step before the build. */
export type StepExpansion = 'static' | 'runtime' | 'shell' | 'none';

export interface PlannedStep {
  line: number;
  kind: InstructionKind;
  /** The instruction rendered with what could be expanded statically. */
  text: string;
  /**
   * static: fully known now; runtime: depends on the base image's ENV;
   * shell: the shell expands it when the step runs; none: no expansion applies.
   */
  expansion: StepExpansion;
}

export interface PlannedStage {
  index: number;
  /** Name after AS, as written. */
  name?: string;
  from: FromInstruction;
  /** Expanded FROM word: an image reference, "scratch", or the name of an earlier stage. */
  baseName: string;
  /** Set when FROM names an earlier stage. */
  baseStage?: number;
  /** Expanded FROM --platform, if given; else that of the stage it is built FROM, if that has one. */
  platform?: PlatformSpec;
  /** Instructions after FROM, words raw (the executor expands them with expandInstruction as the env evolves). */
  instructions: Instruction[];
  /** Stages this one needs: FROM <stage>, COPY --from=<stage>, RUN --mount from=<stage>; sorted. */
  dependsOn: number[];
  /** Images named by COPY --from / RUN --mount from= (not stages). */
  imageRefs: string[];
  /** True when the build runs this stage. */
  needed: boolean;
  /** Static preview of each instruction. */
  steps: PlannedStep[];
}

export interface BuildPlan extends ExpandContext {
  file: string;
  stages: PlannedStage[];
  /** Index of the stage whose image is the result. */
  target: number;
  /** Predefined proxy ARGs given as --build-arg: added to RUN's environment without an ARG line. */
  proxyEnv: Map<string, string>;
  targetPlatform: PlatformSpec;
  buildPlatform: PlatformSpec;
  /** Non-fatal findings, each "file:line: text" where a line applies. */
  warnings: string[];
}

/** Plans a build: stages, global ARGs, FROM expansion, dependencies, target and needed stages, static step preview. */
export function planBuild(df: TypedDockerfile, opts: PlanOptions): BuildPlan {
  const { globalArgs: globalArgInsts, stages: decls, warnings } = splitStages(df);
  const escape = df.escape;
  const buildArgs = resolveBuildArgs(opts.buildArgs, opts.env);
  const proxyEnv = new Map([...buildArgs].filter(([k]) => PREDEFINED_ARGS.includes(k)));
  const declared = new Set<string>();
  const globalArgs = globalScope(globalArgInsts, buildArgs, opts, escape, declared);
  const ctx: ExpandContext = { escape, buildArgs, globalArgs };
  const stages = plannedStages(decls, ctx, declared, warnings);
  const walk: StageWalk = { decls, ctx, declared, warnings, ends: [] };
  for (const st of stages) walkStage(st, stages, walk);
  checkNoCycles(stages, stages.map((s) => s.dependsOn));
  const target = targetStage(stages, opts.target, df.file);
  const reachable = reachableStages(stages.map((s) => s.dependsOn), target);
  for (const st of stages) {
    // Without --skip-unused-stages every stage up to the target runs, as kaniko does.
    st.needed = reachable.has(st.index) || (!opts.skipUnusedStages && st.index <= target);
  }

  const unused = [...buildArgs.keys()].filter((k) => !declared.has(k) && !PREDEFINED_ARGS.includes(k) && !globalArgs.has(k));
  if (unused.length > 0) warnings.push(`one or more build-args [${unused.join(' ')}] were not consumed`);

  return {
    file: df.file,
    escape,
    buildArgs,
    globalArgs,
    proxyEnv,
    stages,
    target,
    targetPlatform: opts.platform,
    buildPlatform: opts.buildPlatform,
    warnings: [...df.warnings, ...warnings],
  };
}

/** Global scope: platform ARGs (overridable by --build-arg), then ARGs before the first FROM, in order; their names go to `declared`. */
function globalScope(
  insts: readonly ArgInstruction[], buildArgs: ReadonlyMap<string, string>, opts: PlanOptions, escape: string, declared: Set<string>,
): Map<string, string> {
  const globalArgs = platformArgs(opts.platform, opts.buildPlatform);
  for (const k of globalArgs.keys()) {
    const v = buildArgs.get(k);
    if (v !== undefined) globalArgs.set(k, v);
  }
  for (const inst of insts) {
    for (const a of inst.args) {
      declared.add(a.key);
      let value = buildArgs.get(a.key);
      if (value === undefined && a.value !== undefined) {
        try {
          value = lex(a.value, globalArgs, { escape }).value;
        } catch (err) {
          throw withLocation(err, inst.file, inst.line);
        }
      }
      if (value !== undefined) globalArgs.set(a.key, value);
    }
  }
  return globalArgs;
}

/** The stages with their FROM lines expanded against the global scope only (base name, base stage, platform). */
function plannedStages(decls: readonly StageDecl[], ctx: ExpandContext, declared: ReadonlySet<string>, warnings: string[]): PlannedStage[] {
  const stages: PlannedStage[] = [];
  for (const d of decls) {
    const from = expandInstruction(d.from, ctx.globalArgs, ctx) as FromInstruction & ExpandedInstruction;
    for (const v of from.unsetVars.filter((n) => !declared.has(n))) {
      warnings.push(`${d.from.file}:${d.from.line}: FROM uses ${v}, which is not a global ARG (declare ARG ${v} before the first FROM)`);
    }
    const baseName = from.image;
    if (baseName === '') {
      throw new BuilderError(
        'DOCKERFILE_EMPTY_BASE',
        `${d.from.file}:${d.from.line}: base name (${d.from.image}) should not be blank`,
        { hint: `Give the variables in FROM a value: --build-arg, or a default in an ARG before the first FROM.` },
      );
    }
    const baseStage = findStageByName(stages, baseName);
    if (baseStage === undefined && baseName !== 'scratch' && !looksLikeImageReference(baseName)) {
      throw new BuilderError(
        'DOCKERFILE_INVALID_BASE',
        `${d.from.file}:${d.from.line}: FROM ${baseName}: not an earlier stage and not a valid image reference`,
        {
          hint: `Use an image reference (lowercase, e.g. debian:12) or a stage defined above${stages.length ? ` (${stageNameList(stages) || 'unnamed'})` : ''}.`,
        },
      );
    }
    let platform: PlatformSpec | undefined;
    if (from.platform !== undefined) {
      try {
        platform = parsePlatform(from.platform);
      } catch (err) {
        throw withLocation(err, d.from.file, d.from.line);
      }
    }
    // A stage built FROM another stage runs on that stage's platform (BuildKit: the base's platform carries over).
    if (platform === undefined && baseStage !== undefined) platform = stages[baseStage]?.platform;
    stages.push({
      index: d.index, name: d.name, from: d.from, baseName, baseStage, platform, instructions: d.instructions,
      dependsOn: [], imageRefs: [], needed: false, steps: [],
    });
  }
  return stages;
}

/** What the static walk knows at the end of each stage walked so far, and what it shares between stages. */
interface StageWalk {
  decls: readonly StageDecl[];
  ctx: ExpandContext;
  declared: Set<string>;
  warnings: string[];
  /** Per stage walked: its vars as far as known, whether its base env is known, the names whose value is not. */
  ends: Array<{ vars: StageVars; known: boolean; unsure: Set<string> }>;
}

/** A COPY --from or RUN --mount from= value met in the walk; `runtime` when it may change with the base image's ENV. */
interface StepRef {
  value: string;
  what: string;
  runtime: boolean;
}

/** Static walk of one stage: its vars as far as known, the step preview, its dependencies and image references. */
function walkStage(st: PlannedStage, stages: readonly PlannedStage[], walk: StageWalk): void {
  const { ctx, declared } = walk;
  const parent = st.baseStage !== undefined ? walk.ends[st.baseStage] : undefined;
  const vars = parent ? cloneStageVars(parent.vars) : stageVarsFromImage(st.baseName === 'scratch' ? [DEFAULT_PATH_ENV] : undefined);
  const known = parent ? parent.known : st.baseName === 'scratch';
  const unsure = new Set(parent?.unsure ?? []);
  const deps = new Set<number>(st.baseStage !== undefined ? [st.baseStage] : []);
  if (st.baseStage !== undefined) for (const d of onbuildDeps(stages[st.baseStage]!, vars, walk)) deps.add(d);
  for (const inst of st.instructions) {
    if (inst.kind === 'arg') for (const a of inst.args) declared.add(a.key);
    const env = expansionEnv(vars);
    let refs: StepRef[];
    let text: string;
    let runtime = false;
    if (inst.kind === 'run') {
      // RUN expands only its --mount values: each is read here when its words are known.
      refs = runMountRefs(inst, env, ctx, { known, unsure });
      text = renderInstruction(inst);
    } else {
      const ex = expandInstruction(inst, env, { ...ctx, skipUnset: !known });
      runtime = ex.unsetVars.length > 0 && !known ? true : ex.usedVars.some((v) => unsure.has(v));
      if (ex.kind === 'arg') for (const a of ex.args) declared.add(a.key);
      if (runtime && (ex.kind === 'env' || ex.kind === 'arg')) {
        for (const k of ex.kind === 'env' ? ex.pairs.map((p) => p.key) : ex.args.map((a) => a.key)) unsure.add(k);
      }
      applyToStageVars(vars, ex);
      refs = ex.kind === 'copy' && ex.from !== undefined ? [{ value: ex.from, what: 'COPY --from', runtime }] : [];
      text = renderInstruction(ex);
    }
    st.steps.push({ line: inst.line, kind: inst.kind, text, expansion: stepExpansion(inst, runtime) });
    for (const r of refs) addRef(st, deps, r, inst, walk);
  }
  st.dependsOn = [...deps].sort((a, b) => a - b);
  walk.ends.push({ vars, known, unsure });
}

/** An earlier stage's ONBUILD triggers run at the start of this one (BuildKit): their COPY --from are dependencies. */
function onbuildDeps(parent: PlannedStage, vars: StageVars, walk: StageWalk): number[] {
  const out: number[] = [];
  for (const inst of parent.instructions) {
    if (inst.kind !== 'onbuild' || inst.instruction.kind !== 'copy' || inst.instruction.from === undefined) continue;
    const from = expandInstruction(inst.instruction, expansionEnv(vars), { ...walk.ctx, skipUnset: true });
    if (from.kind !== 'copy' || from.from === undefined || /\$/.test(from.from)) continue;
    const ref = resolveStageRef(walk.decls, from.from, { file: inst.file, line: inst.line, what: 'ONBUILD COPY --from' });
    if (ref.kind === 'stage') out.push(ref.index);
  }
  return out;
}

/**
 * RUN --mount in the plan: a mount whose words are known before the build is read as the build reads it (a bad one
 * fails the plan with the build's error; only a relative target's WORKDIR is left to the build); a mount using the
 * base image's ENV is read by the build. Returns their from= values.
 */
function runMountRefs(inst: RunInstruction, env: ExpandEnv, ctx: ExpandContext, view: { known: boolean; unsure: ReadonlySet<string> }): StepRef[] {
  const refs: StepRef[] = [];
  const where = `${inst.file}:${inst.line}`;
  try {
    for (const raw of inst.mounts) {
      const usage: VarUsage = { used: new Set(), unset: new Set() };
      const fields = readMountFields(raw, (w) => lex(w, env, { escape: ctx.escape, skipUnset: !view.known, usage }).value);
      const runtime = usage.unset.size > 0 && !view.known ? true : [...usage.used].some((v) => view.unsure.has(v));
      const mount = runtime ? undefined : readMount(fields, { where });
      const from = runtime ? mountField(fields, 'from') : mount?.type === 'bind' ? mount.from : undefined;
      if (from !== undefined) refs.push({ value: from, what: 'RUN --mount from', runtime });
    }
  } catch (err) {
    throw withLocation(err, inst.file, inst.line);
  }
  return refs;
}

/** Records a --from reference: a stage is a dependency, an image is pulled (a bare name that is no stage is warned about). */
function addRef(st: PlannedStage, deps: Set<number>, r: StepRef, inst: Instruction, walk: StageWalk): void {
  if (/\$/.test(r.value) && r.runtime) {
    walk.warnings.push(`${inst.file}:${inst.line}: ${r.what}=${r.value} depends on the base image's ENV; resolved at build time`);
    return;
  }
  const ref = resolveStageRef(walk.decls, r.value, { file: inst.file, line: inst.line, what: r.what });
  if (ref.kind === 'stage') {
    deps.add(ref.index);
    return;
  }
  if (!st.imageRefs.includes(ref.ref)) st.imageRefs.push(ref.ref);
  if (!/[:/@]/.test(ref.ref) && walk.decls.some((s) => s.name !== undefined)) {
    walk.warnings.push(`${inst.file}:${inst.line}: ${r.what}=${r.value} is not a stage name; it is pulled as the image ${r.value}`);
  }
}

/** Target: the stage named by --target, or the last one. */
function targetStage(stages: readonly PlannedStage[], name: string | undefined, file: string): number {
  if (name === undefined) return stages.length - 1;
  const t = findStageByName(stages, name);
  if (t !== undefined) return t;
  const names = stageNameList(stages);
  throw new BuilderError('DOCKERFILE_TARGET_NOT_FOUND', `${file}: target stage ${JSON.stringify(name)} could not be found`, {
    hint: names ? `Stages in ${file}: ${names}.` : `No stage in ${file} has a name; add AS <name> to a FROM line.`,
  });
}

function stepExpansion(inst: Instruction, runtime: boolean): StepExpansion {
  switch (inst.kind) {
    case 'run':
      return 'shell';
    case 'cmd':
    case 'entrypoint':
    case 'healthcheck':
    case 'shell':
    case 'maintainer':
    case 'onbuild':
      return 'none';
    default:
      return runtime ? 'runtime' : 'static';
  }
}

const q = (s: string): string => (s === '' || /[\s"'\\]/.test(s) ? JSON.stringify(s) : s);

/** Renders an (expanded) instruction back to Dockerfile-like text for `builder plan`. */
export function renderInstruction(inst: Instruction | ExpandedInstruction): string {
  const kw = inst.kind.toUpperCase();
  const flag = (name: string, v: string | undefined): string => (v === undefined ? '' : ` --${name}=${v}`);
  switch (inst.kind) {
    case 'from':
      return `FROM${flag('platform', inst.platform)} ${inst.image}${inst.as ? ` AS ${inst.as}` : ''}`;
    case 'arg':
      return `ARG ${inst.args.map((a) => (a.value === undefined ? a.key : `${a.key}=${q(a.value)}`)).join(' ')}`;
    case 'env':
    case 'label':
      return `${kw} ${inst.pairs.map((p) => `${p.key}=${q(p.value)}`).join(' ')}`;
    case 'expose':
      return `EXPOSE ${inst.ports.join(' ')}`;
    case 'copy':
    case 'add': {
      let flags = '';
      if (inst.kind === 'copy') flags += flag('from', inst.from);
      flags += flag('chown', inst.chown) + flag('chmod', inst.chmod);
      if (inst.kind === 'add') flags += flag('checksum', inst.checksum);
      for (const e of inst.exclude) flags += flag('exclude', e);
      if (inst.link) flags += ' --link';
      if (inst.kind === 'copy' && inst.parents) flags += ' --parents';
      const srcs = [...inst.sources.map(q), ...inst.heredocs.map((h) => `<<${h.name}`)];
      return `${kw}${flags} ${srcs.join(' ')} ${q(inst.dest)}`;
    }
    case 'volume':
      return `VOLUME ${inst.paths.map(q).join(' ')}`;
    case 'user':
      return `USER ${inst.user}`;
    case 'workdir':
      return `WORKDIR ${q(inst.path)}`;
    case 'stopsignal':
      return `STOPSIGNAL ${inst.signal}`;
    case 'run':
    case 'cmd':
    case 'entrypoint':
    case 'shell':
    case 'healthcheck':
    case 'maintainer':
    case 'onbuild':
      return inst.original.replace(/\s*\n\s*/g, ' ').trim();
    default: {
      const never: never = inst;
      return String(never);
    }
  }
}

/**
 * Parses a base image's config OnBuild triggers into instructions to run right after FROM.
 * Errors name the FROM line that pulled the triggers in (DOCKERFILE_ONBUILD_TRIGGER for forbidden triggers).
 */
export function onbuildInstructions(
  triggers: readonly string[] | null | undefined,
  from: { file: string; line: number; baseName: string },
): Instruction[] {
  const out: Instruction[] = [];
  for (const trigger of triggers ?? []) {
    const where = `${from.file}:${from.line}: ONBUILD trigger ${JSON.stringify(trigger)} of ${from.baseName}`;
    const word = trigger.trim().split(/\s+/, 1)[0]?.toUpperCase() ?? '';
    if (word === 'ONBUILD' || word === 'FROM' || word === 'MAINTAINER') {
      throw new BuilderError('DOCKERFILE_ONBUILD_TRIGGER', `${where}: ${word} isn't allowed as an ONBUILD trigger`, {
        hint: `Rebuild ${from.baseName} without that ONBUILD line, or use a different base image.`,
      });
    }
    let parsed: Instruction[];
    try {
      // Triggers were stored without their escape directive: BuildKit parses them with the default "\".
      parsed = toInstructions(parseDockerfile(`${trigger}\n`, `${from.baseName} ONBUILD`)).instructions;
    } catch (err) {
      const e = err instanceof BuilderError ? err : undefined;
      throw new BuilderError(e?.code ?? 'DOCKERFILE_ONBUILD_TRIGGER', `${where}: ${err instanceof Error ? err.message : String(err)}`, {
        hint: e?.hint ?? `The base image ${from.baseName} carries an ONBUILD trigger builder cannot parse.`,
        cause: err,
      });
    }
    // Point errors of the injected steps at the FROM line that brought them in.
    for (const inst of parsed) out.push({ ...inst, file: from.file, line: from.line, endLine: from.line });
  }
  return out;
}

/** One line per stage and step, for `builder plan`. */
/** `shared`: with --platform a,b, the stages every platform shares (they run once). */
export function formatPlan(plan: BuildPlan, shared: ReadonlySet<number> = new Set()): string {
  const lines: string[] = [];
  lines.push(`Dockerfile: ${plan.file}`);
  lines.push(`platform: ${formatPlatform(plan.targetPlatform)} (build platform ${formatPlatform(plan.buildPlatform)})`);
  const visible = [...plan.globalArgs].filter(([k]) => !k.startsWith('TARGET') && !k.startsWith('BUILD'));
  if (visible.length > 0) lines.push(`global args: ${visible.map(([k, v]) => `${k}=${q(v)}`).join(' ')}`);
  const target = plan.stages[plan.target];
  lines.push(`target: stage ${plan.target}${target?.name ? ` (${target.name})` : ''}`);
  for (const st of plan.stages) {
    const label = `stage ${st.index}${st.name ? ` ${st.name}` : ''}`;
    const base = st.baseStage !== undefined ? `${st.baseName} (stage ${st.baseStage})` : st.baseName;
    const extra = [
      st.platform ? `platform ${formatPlatform(st.platform)}` : '',
      st.dependsOn.length ? `depends on ${st.dependsOn.join(', ')}` : '',
      st.imageRefs.length ? `images ${st.imageRefs.join(', ')}` : '',
    ].filter(Boolean);
    lines.push('');
    lines.push(`${label}: FROM ${base}${extra.length ? ` [${extra.join('; ')}]` : ''} — ${!st.needed ? 'skipped' : shared.has(st.index) ? 'runs once, shared by every platform' : 'runs'}`);
    lines.push(`  ${st.from.line}: ${renderInstruction({ ...st.from, image: st.baseName, platform: st.from.platform !== undefined && st.platform ? formatPlatform(st.platform) : undefined })}`);
    for (const step of st.steps) {
      const note = step.expansion === 'static' || step.expansion === 'none' ? '' : `  (${step.expansion === 'shell' ? 'runtime: shell' : 'runtime'})`;
      lines.push(`  ${step.line}: ${step.text}${note}`);
    }
  }
  if (plan.warnings.length > 0) {
    lines.push('');
    for (const w of plan.warnings) lines.push(`warning: ${w}`);
  }
  return lines.join('\n') + '\n';
}
