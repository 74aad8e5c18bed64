// Unit tests for stage splitting, stage references, image-reference syntax and --mount from=.
import { describe, expect, it } from 'vitest';
import {
  checkNoCycles,
  looksLikeImageReference,
  parseDockerfile,
  parseMount,
  parsePlatform,
  reachableStages,
  resolveStageRef,
  splitStages,
  toInstructions,
} from '../../src/dockerfile/index.js';

const where = { file: 'Dockerfile', line: 9, what: 'COPY --from' };
const stages = [
  { index: 0, name: 'build' },
  { index: 1 },
  { index: 2, name: 'Final' },
];

/** from= of a --mount value, read through the typed mount (a bind's source stage or image). */
const mountFrom = (spec: string): string | undefined => {
  const m = parseMount(spec, { where: 'Dockerfile:1' });
  return m.type === 'bind' ? m.from : undefined;
};
describe('splitStages', () => {
  it('keeps global ARGs apart and numbers stages', () => {
    const df = toInstructions(parseDockerfile('ARG A=1\nARG B\nFROM alpine AS x\nRUN true\nFROM x\nENV a=b\n', 'Dockerfile'));
    const s = splitStages(df);
    expect(s.globalArgs.map((a) => a.args.map((x) => x.key))).toEqual([['A'], ['B']]);
    expect(s.stages.map((st) => [st.index, st.name, st.instructions.length])).toEqual([
      [0, 'x', 1],
      [1, undefined, 1],
    ]);
  });

  it('warns on duplicate stage names and resolves to the first', () => {
    const df = toInstructions(parseDockerfile('FROM alpine AS a\nFROM alpine AS A\n', 'Dockerfile'));
    const s = splitStages(df);
    expect(s.warnings[0]).toMatch(/^Dockerfile:2: duplicate stage name/);
  });
});

describe('resolveStageRef', () => {
  it('names (case-insensitive) and indexes', () => {
    expect(resolveStageRef(stages, 'BUILD', where)).toEqual({ kind: 'stage', index: 0 });
    expect(resolveStageRef(stages, 'final', where)).toEqual({ kind: 'stage', index: 2 });
    expect(resolveStageRef(stages, '1', where)).toEqual({ kind: 'stage', index: 1 });
  });
  it('images', () => {
    expect(resolveStageRef(stages, 'debian:12', where)).toEqual({ kind: 'image', ref: 'debian:12' });
    expect(resolveStageRef(stages, 'alpine', where)).toEqual({ kind: 'image', ref: 'alpine' });
  });
  it('missing stages', () => {
    expect(() => resolveStageRef(stages, '3', where)).toThrow(expect.objectContaining({ code: 'DOCKERFILE_STAGE_NOT_FOUND' }));
    expect(() => resolveStageRef(stages, 'biuld', where)).toThrow(/Dockerfile:9: COPY --from=biuld: no stage named "biuld"/);
    expect(() => resolveStageRef(stages, 'Not An Image', where)).toThrow(/not a valid image reference/);
  });
});

describe('helpers', () => {
  it('looksLikeImageReference', () => {
    for (const ok of ['alpine', 'debian:10.13', 'gcr.io/distroless/base:latest', 'localhost:5000/a/b:c', 'fedora@sha256:c4cc32b09c6ae3f1353e7e33a8dda93dc41676b923d6d89afa996b421cc5aa48', 'busybox:1.31']) {
      expect(looksLikeImageReference(ok), ok).toBe(true);
    }
    for (const bad of ['', 'Alpine', 'a b', 'a:', ':tag', 'a//b']) expect(looksLikeImageReference(bad), bad).toBe(false);
  });
  it('mountFrom', () => {
    expect(mountFrom('type=cache,target=/root/.cache')).toBeUndefined();
    expect(mountFrom('type=bind,from=builder,source=/out,target=/in')).toBe('builder');
  });
  it('reachableStages and cycles', () => {
    expect([...reachableStages([[], [0], [], [1]], 3)].sort()).toEqual([0, 1, 3]);
    const st = [0, 1].map((index) => ({ index, from: { file: 'Dockerfile', line: index + 1 } }));
    expect(() => checkNoCycles(st, [[1], [0]])).toThrow(expect.objectContaining({ code: 'DOCKERFILE_CIRCULAR_DEPENDENCY' }));
  });
  it('parsePlatform', () => {
    expect(parsePlatform('linux/arm64/v8')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parsePlatform('linux/x86_64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(parsePlatform('linux/arm')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(() => parsePlatform('linux/')).toThrow(expect.objectContaining({ code: 'PLATFORM_INVALID' }));
  });
});
