// --platform a,b planning: BuildKit's automatic platform ARGs per target, and which stages every target shares (run once).
import { describe, expect, it } from 'vitest';
import { checkPlatforms, parseDockerfile, parsePlatform, planBuild, sharedStages, toInstructions, type BuildPlan } from '../../src/dockerfile/index.js';
import { BuilderError } from '../../src/errors.js';

const BUILD = parsePlatform('linux/amd64');
const TARGETS = ['linux/amd64', 'linux/arm64', 'linux/arm/v7'].map(parsePlatform);

function plans(text: string, buildArgs: Record<string, string> = {}): BuildPlan[] {
  const df = toInstructions(parseDockerfile(text, 'Dockerfile'));
  return TARGETS.map((platform) => planBuild(df, { buildArgs, env: {}, platform, buildPlatform: BUILD, skipUnusedStages: true }));
}

/** The static text of the step at `line` in each target's plan. */
function stepTexts(ps: BuildPlan[], line: number): string[] {
  return ps.map((p) => p.stages.flatMap((s) => s.steps).find((s) => s.line === line)!.text);
}

describe('automatic platform ARGs per target (BuildKit frontend/dockerfile testPlatformArgs*)', () => {
  it('a stage sees TARGET*/BUILD* only after re-declaring them, with each target\'s values', () => {
    const ps = plans([
      'FROM --platform=$BUILDPLATFORM busybox AS build',
      'ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT',
      'RUN echo $TARGETARCH',
      'FROM scratch',
      'COPY --from=build /x /x',
    ].join('\n'));
    expect(stepTexts(ps, 2)).toEqual([
      'ARG TARGETPLATFORM=linux/amd64 TARGETOS=linux TARGETARCH=amd64 TARGETVARIANT="" BUILDPLATFORM=linux/amd64 BUILDOS=linux BUILDARCH=amd64 BUILDVARIANT=""',
      'ARG TARGETPLATFORM=linux/arm64 TARGETOS=linux TARGETARCH=arm64 TARGETVARIANT="" BUILDPLATFORM=linux/amd64 BUILDOS=linux BUILDARCH=amd64 BUILDVARIANT=""',
      'ARG TARGETPLATFORM=linux/arm/v7 TARGETOS=linux TARGETARCH=arm TARGETVARIANT=v7 BUILDPLATFORM=linux/amd64 BUILDOS=linux BUILDARCH=amd64 BUILDVARIANT=""',
    ]);
    // pinned to $BUILDPLATFORM, yet it reads TARGET*: built per target (as BuildKit's LLB differs per target)
    expect(sharedStages(ps)).toEqual(new Set());
  });

  it('FROM --platform=$TARGETPLATFORM and $BUILDPLATFORM expand per target; --build-arg overrides an automatic ARG', () => {
    const ps = plans('FROM --platform=$TARGETPLATFORM busybox AS t\nFROM --platform=$BUILDPLATFORM busybox AS b\nARG TARGETOS\n', { TARGETOS: 'freebsd' });
    expect(ps.map((p) => p.stages[0]!.platform)).toEqual(TARGETS);
    expect(ps.map((p) => p.stages[1]!.platform)).toEqual([BUILD, BUILD, BUILD]);
    expect(stepTexts(ps, 3)).toEqual(['ARG TARGETOS=freebsd', 'ARG TARGETOS=freebsd', 'ARG TARGETOS=freebsd']);
  });
});

describe('sharedStages: what runs once for every target', () => {
  const cases: Array<[string, string, number[]]> = [
    ['a $BUILDPLATFORM stage reading no TARGET* arg, and what builds on it only',
      'FROM --platform=$BUILDPLATFORM busybox AS build\nARG BUILDPLATFORM\nRUN echo $BUILDPLATFORM\nFROM build AS more\nRUN true\nFROM busybox\nCOPY --from=more /x /x\n', [0, 1]],
    ['not pinned: runs per target', 'FROM busybox AS build\nRUN true\nFROM busybox\nCOPY --from=build /x /x\n', []],
    ['a global ARG derived from TARGETARCH', 'ARG GOARCH=$TARGETARCH\nFROM --platform=$BUILDPLATFORM busybox AS build\nARG GOARCH\nRUN true\nFROM busybox\nCOPY --from=build /x /x\n', []],
    ['a global ARG not derived from the target', 'ARG V=1\nFROM --platform=$BUILDPLATFORM busybox AS build\nARG V\nRUN true\nFROM busybox\nCOPY --from=build /x /x\n', [0]],
    ['COPY --from an image (resolved per target)', 'FROM --platform=$BUILDPLATFORM busybox AS build\nCOPY --from=alpine:3 /x /x\nFROM busybox\nCOPY --from=build /x /x\n', []],
    ['a pinned stage COPYing from a per-target stage', 'FROM busybox AS t\nRUN true\nFROM --platform=$BUILDPLATFORM busybox AS b\nCOPY --from=t /x /x\nFROM scratch\nCOPY --from=b /x /x\n', []],
  ];
  for (const [name, text, want] of cases) it(name, () => expect([...sharedStages(plans(text))].sort()).toEqual(want));

  it('one platform shares nothing', () => {
    const df = toInstructions(parseDockerfile('FROM --platform=$BUILDPLATFORM busybox\n', 'Dockerfile'));
    expect(sharedStages([planBuild(df, { buildArgs: {}, env: {}, platform: BUILD, buildPlatform: BUILD, skipUnusedStages: true })])).toEqual(new Set());
  });

  it('a platform named twice is refused (arm64 and arm64/v8 are one platform)', () => {
    expect(() => checkPlatforms(['linux/arm64', 'linux/amd64', 'linux/arm64/v8'].map(parsePlatform))).toThrow(BuilderError);
    expect(() => checkPlatforms(['linux/arm64', 'linux/arm/v7', 'linux/arm/v6'].map(parsePlatform))).not.toThrow();
  });
});
