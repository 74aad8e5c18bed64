// Cache keys: every input that changes a step's result changes its key, and crafted near-collisions never share one.
import { describe, expect, it } from 'vitest';
import { instructionText, isCacheKey, stepKey, type StepKeyInput } from '../../src/cache/index.js';

const base: StepKeyInput = { parent: 'image:sha256:aa', instruction: '{"kind":"run"}', env: new Map([['A', '1']]), flags: {} };

describe('stepKey', () => {
  it('is 64 hex digits, stable, and a valid tag', () => {
    expect(isCacheKey(stepKey(base))).toBe(true);
    expect(stepKey({ ...base, env: new Map([['A', '1']]) })).toBe(stepKey(base));
  });

  it('does not depend on the order of env entries or flags', () => {
    const a = stepKey({ ...base, env: new Map([['A', '1'], ['B', '2']]), flags: { x: '1', y: '2' } });
    const b = stepKey({ ...base, env: new Map([['B', '2'], ['A', '1']]), flags: { y: '2', x: '1' } });
    expect(a).toBe(b);
  });

  it('changes with each input on its own', () => {
    const variants: StepKeyInput[] = [
      { ...base, parent: 'image:sha256:bb' },
      { ...base, instruction: '{"kind":"copy"}' },
      { ...base, env: new Map([['A', '2']]) },
      { ...base, env: new Map([['A', '1'], ['B', '1']]) },
      { ...base, flags: { reproducible: '1' } },
      { ...base, sources: 'sha256:1' },
    ];
    expect(new Set([base, ...variants].map(stepKey)).size).toBe(variants.length + 1);
  });

  // Pairs that a plain concatenation (or a naive separator) would hash alike.
  const nearCollisions: Array<[string, StepKeyInput, StepKeyInput]> = [
    ['parent/instruction boundary', { ...base, parent: 'ab', instruction: 'c' }, { ...base, parent: 'a', instruction: 'bc' }],
    ['env key/value boundary', { ...base, env: new Map([['AB', 'C']]) }, { ...base, env: new Map([['A', 'BC']]) }],
    ['one env pair vs two', { ...base, env: new Map([['A', '1\u0000B\u00002']]) }, { ...base, env: new Map([['A', '1'], ['B', '2']]) }],
    ['env vs flags', { ...base, env: new Map([['x', '1']]), flags: {} }, { ...base, env: new Map(), flags: { x: '1' } }],
    ['empty sources vs none', { ...base, sources: '' }, { ...base }],
    ['sources moved into the instruction', { ...base, instruction: 'i', sources: 'sha256:1' }, { ...base, instruction: 'isources:sha256:1' }],
    ['empty env value vs unset', { ...base, env: new Map([['A', '1'], ['B', '']]) }, { ...base, env: new Map([['A', '1']]) }],
    ['length prefix forged in a value', { ...base, env: new Map([['A', '\u0000\u0000\u0000\u0001x']]) }, { ...base, env: new Map([['A', 'x']]) }],
    ['parent differs by one character', { ...base, parent: 'image:sha256:ab' }, { ...base, parent: 'image:sha256:aa' }],
  ];
  it.each(nearCollisions)('two different inputs never share a key: %s', (_name, a, b) => {
    expect(stepKey(a)).not.toBe(stepKey(b));
  });
});

describe('instructionText', () => {
  it('sorts keys and leaves out where the instruction was written', () => {
    const a = instructionText({ kind: 'copy', file: 'Dockerfile', line: 3, endLine: 3, original: 'COPY a b', sources: ['a'], dest: 'b' });
    const b = instructionText({ dest: 'b', sources: ['a'], kind: 'copy', file: 'other/Dockerfile', line: 9, endLine: 9, original: 'COPY  a b' });
    expect(a).toBe(b);
    expect(instructionText({ kind: 'copy', sources: ['a'], dest: 'c' })).not.toBe(a);
  });
});
