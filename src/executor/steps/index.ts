// One handler per instruction that touches the filesystem (BuildKit's dispatchRun, dispatchCopy...); the rest only change the config.
import type { ExpandedInstruction } from '../../dockerfile/index.js';
import type { Executor } from '../executor.js';
import type { StageState, Step } from '../stage.js';
import { copyStep } from './copy.js';
import { runStep } from './run.js';
import { workdirStep } from './workdir.js';

export interface StepContext<I extends ExpandedInstruction = ExpandedInstruction> {
  ex: Executor;
  stage: StageState;
  inst: I;
  step: Step;
}

export interface StepHandler<I extends ExpandedInstruction = ExpandedInstruction> {
  /**
   * What the step reads beyond its instruction, ARG/ENV and the steps before it, for its cache key (called before
   * anything runs): a content digest or key; undefined when there is nothing more; null when it cannot be known.
   */
  key?(c: Pick<StepContext<I>, 'ex' | 'inst' | 'step'>): Promise<string | undefined | null>;
  /** Does the step: writes into the stage root and appends a layer (or an empty history entry). */
  execute(c: StepContext<I>): Promise<void>;
}

type Kind = ExpandedInstruction['kind'];
type Of<K extends Kind> = Extract<ExpandedInstruction, { kind: K }>;

const handlers: { [K in Kind]?: StepHandler<Of<K>> } = {
  run: runStep,
  copy: copyStep,
  add: copyStep,
  workdir: workdirStep,
};

/** The handler of a kind, or undefined for metadata-only instructions (their effect is applyMetadata's). */
export function handlerFor<K extends Kind>(kind: K): StepHandler<Of<K>> | undefined {
  return handlers[kind] as StepHandler<Of<K>> | undefined;
}
