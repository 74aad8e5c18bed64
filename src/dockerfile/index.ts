// Public surface of src/dockerfile: parse -> instructions -> expand -> stages/plan.
export * from './parse.js';
export * from './instructions.js';
export * from './expand.js';
export * from './platform.js';
export * from './stages.js';
export * from './mount.js';
export * from './plan.js';
export * from './targets.js';
