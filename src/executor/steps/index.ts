// One handler per instruction that touches the filesystem (BuildKit's dispatchRun, dispatchCopy...); the rest only change the config.
import type { ExpandedInstruction } from '../../dockerfile/index.js';
import type { StepHandler } from '../stage-state.js';
import { copyStep } from './copy.js';
import { runStep } from './run.js';
import { workdirStep } from './workdir.js';

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
