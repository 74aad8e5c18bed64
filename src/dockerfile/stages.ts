// Build stages: splitting instructions at FROM, stage names and indexes, stage references and the dependency graph.
import { BuilderError } from '../errors.js';
import type { ArgInstruction, FromInstruction, Instruction, TypedDockerfile } from './instructions.js';

/** One FROM and the instructions up to the next FROM, words still raw. */
export interface StageDecl {
  index: number;
  /** Name after AS, as written. */
  name?: string;
  from: FromInstruction;
  /** Instructions after the FROM line (ONBUILD triggers of the base are not included). */
  instructions: Instruction[];
}

export interface SplitStages {
  /** ARG instructions before the first FROM (the global scope). */
  globalArgs: ArgInstruction[];
  stages: StageDecl[];
  warnings: string[];
}

// BuildKit's rule for stage names (checked lowercased).
const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

/** Splits a typed Dockerfile into global ARGs and stages; errors carry file:line. */
export function splitStages(df: TypedDockerfile): SplitStages {
  const globalArgs: ArgInstruction[] = [];
  const stages: StageDecl[] = [];
  const warnings: string[] = [];
  for (const inst of df.instructions) {
    if (inst.kind === 'from') {
      if (inst.as !== undefined) {
        if (!STAGE_NAME.test(inst.as.toLowerCase())) {
          throw new BuilderError(
            'DOCKERFILE_INVALID_STAGE_NAME',
            `${inst.file}:${inst.line}: invalid name for build stage: ${JSON.stringify(inst.as)}, name can't start with a number or contain symbols`,
            { hint: 'Stage names start with a letter and contain only letters, digits, "-", "_" and ".".' },
          );
        }
        const dup = stages.find((s) => sameStageName(s.name, inst.as));
        if (dup) {
          warnings.push(
            `${inst.file}:${inst.line}: duplicate stage name ${JSON.stringify(inst.as)} (first used at line ${dup.from.line}); references resolve to the first`,
          );
        }
      }
      stages.push({ index: stages.length, name: inst.as, from: inst, instructions: [] });
      continue;
    }
    const current = stages[stages.length - 1];
    if (current) {
      current.instructions.push(inst);
    } else if (inst.kind === 'arg') {
      globalArgs.push(inst);
    } else {
      throw new BuilderError(
        'DOCKERFILE_NO_STAGE',
        `${inst.file}:${inst.line}: ${inst.kind.toUpperCase()} before the first FROM: no build stage in current context`,
        { hint: 'Only ARG may come before the first FROM; start the build stage with FROM.' },
      );
    }
  }
  if (stages.length === 0) {
    // Only ARGs (an empty file fails in the parser): point at the first, like every other Dockerfile error.
    throw new BuilderError('DOCKERFILE_NO_STAGE', `${df.file}:${df.instructions[0]?.line ?? 1}: the Dockerfile contains no stages to build (no FROM)`, {
      hint: 'Add a FROM line, e.g. FROM busybox or FROM scratch.',
    });
  }
  return { globalArgs, stages, warnings };
}

/** Stage names compare case-insensitively, as in BuildKit. */
export function sameStageName(a: string | undefined, b: string | undefined): boolean {
  return a !== undefined && b !== undefined && a.toLowerCase() === b.toLowerCase();
}

/** Index of the first stage named `name` among `stages` (case-insensitive), or undefined. */
export function findStageByName(stages: readonly { name?: string; index: number }[], name: string): number | undefined {
  return stages.find((s) => sameStageName(s.name, name))?.index;
}

export type StageRef = { kind: 'stage'; index: number } | { kind: 'image'; ref: string };

/**
 * Resolves a COPY --from / RUN --mount from= value: a stage name, a stage index, or an image reference.
 * Throws DOCKERFILE_STAGE_NOT_FOUND for an index out of range, a value that is neither, or a likely typo.
 */
export function resolveStageRef(
  stages: readonly { name?: string; index: number }[],
  value: string,
  where: { file: string; line: number; what: string },
): StageRef {
  const byName = findStageByName(stages, value);
  if (byName !== undefined) return { kind: 'stage', index: byName };
  const names = stageNameList(stages);
  if (/^\d+$/.test(value)) {
    const index = Number(value);
    if (index < stages.length) return { kind: 'stage', index };
    throw new BuilderError(
      'DOCKERFILE_STAGE_NOT_FOUND',
      `${where.file}:${where.line}: ${where.what}=${value}: invalid stage index ${index} (the Dockerfile has ${stages.length} stage${stages.length === 1 ? '' : 's'}: 0..${stages.length - 1})`,
      { hint: `Use a stage index below ${stages.length} or a stage name${names ? ` (${names})` : ''}.` },
    );
  }
  const close = stages.find((s) => s.name !== undefined && editDistance(s.name.toLowerCase(), value.toLowerCase()) <= 2);
  const bare = !/[:/@]/.test(value);
  if (!looksLikeImageReference(value) || (bare && close)) {
    throw new BuilderError(
      'DOCKERFILE_STAGE_NOT_FOUND',
      `${where.file}:${where.line}: ${where.what}=${value}: no stage named ${JSON.stringify(value)}${looksLikeImageReference(value) ? '' : ' and not a valid image reference'}`,
      {
        hint: close?.name
          ? `Did you mean ${JSON.stringify(close.name)}? Stages: ${names}.`
          : names
            ? `Name one of the stages (${names}), a stage index, or a full image reference.`
            : 'Name the source stage with FROM ... AS <name>, or give a full image reference.',
      },
    );
  }
  return { kind: 'image', ref: value };
}

export function stageNameList(stages: readonly { name?: string; index: number }[]): string {
  return stages
    .filter((s) => s.name !== undefined)
    .map((s) => s.name as string)
    .join(', ');
}

// Docker's reference grammar, simplified: [domain[:port]/]path[:tag][@digest], lowercase path.
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN = '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?|\\[[0-9a-fA-F:]+\\](?::[0-9]+)?)';
const REFERENCE = new RegExp(
  `^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*(?::[\\w][\\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`,
);

/** True when `s` is syntactically an image reference (no network check). */
export function looksLikeImageReference(s: string): boolean {
  return s.length > 0 && s.length <= 255 + 128 + 80 && REFERENCE.test(s);
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] as number;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j] as number;
      prev[j] = Math.min((prev[j] as number) + 1, (prev[j - 1] as number) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length] as number;
}

/** Stages reachable from `target` through `dependsOn` (the target included). */
export function reachableStages(dependsOn: readonly (readonly number[])[], target: number): Set<number> {
  const seen = new Set<number>();
  const stack = [target];
  while (stack.length > 0) {
    const i = stack.pop() as number;
    if (seen.has(i)) continue;
    seen.add(i);
    for (const d of dependsOn[i] ?? []) stack.push(d);
  }
  return seen;
}

/** Throws DOCKERFILE_CIRCULAR_DEPENDENCY naming the cycle, if the stage graph has one. */
export function checkNoCycles(
  stages: readonly { index: number; name?: string; from: { file: string; line: number } }[],
  dependsOn: readonly (readonly number[])[],
): void {
  const state = new Map<number, 'visiting' | 'done'>();
  const path: number[] = [];
  const label = (i: number): string => stages[i]?.name ?? String(i);
  const visit = (i: number): void => {
    if (state.get(i) === 'done') return;
    if (state.get(i) === 'visiting') {
      const cycle = [...path.slice(path.indexOf(i)), i].map(label).join(' -> ');
      const at = stages[i]?.from;
      throw new BuilderError(
        'DOCKERFILE_CIRCULAR_DEPENDENCY',
        `${at ? `${at.file}:${at.line}: ` : ''}circular dependency detected on stage: ${cycle}`,
        { hint: 'A stage cannot COPY --from (or mount from) itself or a stage that depends on it.' },
      );
    }
    state.set(i, 'visiting');
    path.push(i);
    for (const d of dependsOn[i] ?? []) visit(d);
    path.pop();
    state.set(i, 'done');
  };
  for (let i = 0; i < dependsOn.length; i++) visit(i);
}
