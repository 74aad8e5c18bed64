// Table tests for ARG scoping, stage references, --target, unused stages, per-step expansion and ONBUILD triggers.
import { describe, expect, it } from 'vitest';
import {
  applyToStageVars,
  cloneStageVars,
  expandInstruction,
  expansionEnv,
  onbuildInstructions,
  parseDockerfile,
  planBuild,
  runEnvironment,
  stageVarsFromImage,
  toInstructions,
  type BuildPlan,
  type PlanOptions,
} from '../../src/dockerfile/index.js';
import { DOCKERFILE_ERROR_CODES } from '../../src/dockerfile/codes.js';
import { BuilderError } from '../../src/errors.js';

const AMD64 = { os: 'linux', architecture: 'amd64' };

function plan(text: string, opts: Partial<PlanOptions> = {}): BuildPlan {
  const df = toInstructions(parseDockerfile(text, 'Dockerfile'));
  return planBuild(df, { buildArgs: {}, env: {}, platform: AMD64, buildPlatform: AMD64, skipUnusedStages: false, ...opts });
}

/** The static text of the step at `line`. */
function step(p: BuildPlan, line: number): string {
  for (const st of p.stages) for (const s of st.steps) if (s.line === line) return s.text;
  throw new Error(`no step at line ${line}`);
}

function planError(text: string, opts: Partial<PlanOptions> = {}): BuilderError {
  try {
    plan(text, opts);
  } catch (err) {
    if (err instanceof BuilderError) return err;
    throw err;
  }
  throw new Error('expected an error');
}

describe('global ARGs and FROM', () => {
  const cases: Array<[string, string, Record<string, string | undefined>, string]> = [
    ['default value', 'ARG TAG=3.18\nFROM alpine:${TAG}\n', {}, 'alpine:3.18'],
    ['build-arg override', 'ARG TAG=3.18\nFROM alpine:${TAG}\n', { TAG: '3.19' }, 'alpine:3.19'],
    ['two levels', 'ARG A=3.9\nARG B=alpine:${A}\nFROM ${B}\n', {}, 'alpine:3.9'],
    ['quotes removed', 'ARG IMAGE_NAME="busybox:latest"\nFROM $IMAGE_NAME\n', {}, 'busybox:latest'],
    ['single quotes', "ARG IMAGE_NAME='busybox:latest'\nFROM $IMAGE_NAME\n", {}, 'busybox:latest'],
    ['empty variant', 'ARG VARIANT=""\nARG VERSION=1\nFROM busybox${VARIANT}:1.3${VERSION}\n', {}, 'busybox:1.31'],
    ['default form', 'ARG V\nFROM alpine:${V:-3.20}\n', {}, 'alpine:3.20'],
    ['platform args', 'FROM busybox:${TARGETARCH}\n', {}, 'busybox:amd64'],
  ];
  for (const [name, text, buildArgs, base] of cases) {
    it(name, () => expect(plan(text, { buildArgs }).stages[0]?.baseName).toBe(base));
  }

  it('FROM --platform expands platform ARGs', () => {
    const p = plan('FROM --platform=$BUILDPLATFORM golang:1 AS b\nFROM alpine\n', {
      platform: { os: 'linux', architecture: 'arm64' },
    });
    expect(p.stages[0]?.platform).toEqual(AMD64);
    expect(p.globalArgs.get('TARGETPLATFORM')).toBe('linux/arm64');
    expect(p.globalArgs.get('TARGETVARIANT')).toBe('');
  });

  it('blank base name is an error with file:line', () => {
    const e = planError('ARG image\nFROM ${image}\n');
    expect(e.code).toBe('DOCKERFILE_EMPTY_BASE');
    expect(e.message).toMatch(/^Dockerfile:2: /);
  });

  it('${VAR:?} in FROM fails with DOCKERFILE_VAR_REQUIRED at the FROM line', () => {
    const e = planError('ARG BASE\nFROM ${BASE:?set_BASE}\n');
    expect(e.code).toBe('DOCKERFILE_VAR_REQUIRED');
    expect(e.message).toContain('Dockerfile:2:');
    expect(e.message).toContain('BASE: set_BASE');
    expect(e.hint).toContain('--build-arg BASE=');
  });

  it('instruction before FROM is an error', () => {
    expect(planError('ENV A=1\nFROM alpine\n').code).toBe('DOCKERFILE_NO_STAGE');
  });

  it('ENV X=$X$X repeated fails at its line instead of exhausting the heap', () => {
    const e = planError(`FROM scratch\nENV X=0123456789abcdef\n${'ENV X=$X$X\n'.repeat(40)}`);
    expect(e.code).toBe('DOCKERFILE_EXPANSION_TOO_LARGE');
    expect(e.message).toMatch(/^Dockerfile:\d+: /);
  });

  it('a Dockerfile of only ARGs is an error with file:line (found by the fuzzer)', () => {
    const e = planError('\nARG A=3.9\nARG B=alpine:${A}\n');
    expect(e.code).toBe('DOCKERFILE_NO_STAGE');
    expect(e.message).toMatch(/^Dockerfile:2: /);
  });
});

describe('ARG scoping inside stages', () => {
  it('global ARG is not visible in a stage until re-declared', () => {
    const p = plan('ARG V=1\nFROM scratch\nENV A=x$V\nARG V\nENV B=x$V\n');
    expect(step(p, 3)).toBe('ENV A=x');
    expect(step(p, 5)).toBe('ENV B=x1');
  });

  it('re-declared ARG picks up the build-arg override of the global value', () => {
    const p = plan('ARG V=1\nFROM scratch\nARG V\nENV B=$V\n', { buildArgs: { V: '2' } });
    expect(step(p, 4)).toBe('ENV B=2');
  });

  it('--build-arg overrides a stage ARG default; bare KEY reads the injected env', () => {
    const text = 'FROM scratch\nARG A=def\nARG B=def\nARG C=def\nWORKDIR /$A/$B/$C\n';
    const p = plan(text, { buildArgs: { A: 'cli', B: undefined, C: undefined }, env: { B: 'fromenv' } });
    expect(step(p, 5)).toBe('WORKDIR /cli/fromenv/def');
    expect(p.buildArgs.has('C')).toBe(false);
  });

  it('ENV wins over ARG of the same name, in either order and against --build-arg', () => {
    const text = 'FROM scratch\nARG A=arg\nENV A=env\nARG A=arg2\nWORKDIR /$A\n';
    expect(step(plan(text), 5)).toBe('WORKDIR /env');
    expect(step(plan(text, { buildArgs: { A: 'cli' } }), 5)).toBe('WORKDIR /env');
  });

  it('ARG default expands against the stage env, and ARG values carry into child stages (kaniko #1911)', () => {
    const text = [
      'ARG OTHER="fix"',
      'FROM scratch AS base',
      'ARG NAME="base"',
      'FROM base AS dev',
      'ARG NAME="$NAME-dev"',
      'WORKDIR /$NAME',
      'FROM dev AS custom',
      'ARG NAME',
      'WORKDIR /$NAME/$OTHER',
      'FROM custom AS custom2',
      'ARG OTHER',
      'WORKDIR /$NAME/$OTHER',
    ].join('\n');
    const p = plan(text);
    expect(step(p, 6)).toBe('WORKDIR /base-dev');
    expect(step(p, 9)).toBe('WORKDIR /base-dev/');
    expect(step(p, 12)).toBe('WORKDIR /base-dev/fix');
  });

  it('automatic platform ARGs need a re-declaration inside a stage', () => {
    const p = plan('FROM scratch\nENV A=$TARGETARCH\nARG TARGETARCH\nENV B=$TARGETARCH\n', {
      platform: { os: 'linux', architecture: 'arm', variant: 'v7' },
    });
    expect(step(p, 2)).toBe('ENV A=""');
    expect(step(p, 4)).toBe('ENV B=arm');
  });

  it('predefined proxy ARGs reach RUN without declaration but are not expanded in words', () => {
    const p = plan('FROM scratch\nENV P=$HTTP_PROXY\nRUN true\n', { buildArgs: { HTTP_PROXY: 'http://proxy:3128', unused: 'x' } });
    expect(step(p, 2)).toBe('ENV P=""');
    expect([...p.proxyEnv]).toEqual([['HTTP_PROXY', 'http://proxy:3128']]);
    expect(p.warnings).toContain('one or more build-args [unused] were not consumed');
    const vars = stageVarsFromImage(['PATH=/bin']);
    expect(runEnvironment(vars, p.proxyEnv).get('HTTP_PROXY')).toBe('http://proxy:3128');
  });

  it('steps depending on the base image env are marked runtime', () => {
    const p = plan('FROM alpine\nARG X=1\nENV A=$X B=$HOME\nWORKDIR $B\nWORKDIR /$X\nRUN echo $X\n');
    const steps = p.stages[0]?.steps ?? [];
    expect(steps.map((s) => s.expansion)).toEqual(['static', 'runtime', 'runtime', 'static', 'shell']);
    expect(steps[1]?.text).toBe('ENV A=1 B=$HOME');
  });
});

describe('stages, references and the target', () => {
  const multi = [
    'FROM alpine AS Builder', // 0
    'RUN make',
    'FROM alpine AS unused', // 1
    'RUN true',
    'FROM scratch AS assets', // 2
    'COPY x /x',
    'FROM BUILDER AS final', // 3
    'COPY --from=assets /x /x',
    'COPY --from=0 /bin /bin',
  ].join('\n');

  it('builds the graph with case-insensitive names and numeric indexes', () => {
    const p = plan(multi);
    expect(p.stages.map((s) => s.dependsOn)).toEqual([[], [], [], [0, 2]]);
    expect(p.stages[3]?.baseStage).toBe(0);
    expect(p.stages[3]?.baseName).toBe('BUILDER');
    expect(p.target).toBe(3);
    expect(p.stages.map((s) => s.needed)).toEqual([true, true, true, true]);
  });

  it('--skip-unused-stages runs only what the target needs', () => {
    expect(plan(multi, { skipUnusedStages: true }).stages.map((s) => s.needed)).toEqual([true, false, true, true]);
  });

  it('--target by name (case-insensitive) drops later stages', () => {
    const p = plan(multi, { target: 'UNUSED' });
    expect(p.target).toBe(1);
    expect(p.stages.map((s) => s.needed)).toEqual([true, true, false, false]);
    expect(plan(multi, { target: 'unused', skipUnusedStages: true }).stages.map((s) => s.needed)).toEqual([false, true, false, false]);
  });

  it('unknown --target lists the stage names', () => {
    const e = planError(multi, { target: 'nope' });
    expect(e.code).toBe('DOCKERFILE_TARGET_NOT_FOUND');
    expect(e.hint?.toLowerCase()).toContain('builder, unused, assets, final');
  });

  it('COPY --from an index out of range is DOCKERFILE_STAGE_NOT_FOUND at file:line', () => {
    const e = planError('FROM alpine\nCOPY --from=3 /a /b\n');
    expect(e.code).toBe('DOCKERFILE_STAGE_NOT_FOUND');
    expect(e.message).toMatch(/^Dockerfile:2: COPY --from=3/);
  });

  it('COPY --from a misspelt stage suggests the stage', () => {
    const e = planError('FROM alpine AS builder\nFROM alpine\nCOPY --from=buidler /a /b\n');
    expect(e.code).toBe('DOCKERFILE_STAGE_NOT_FOUND');
    expect(e.message).toContain('Dockerfile:3:');
    expect(e.hint).toContain('"builder"');
  });

  it('COPY --from an image reference is an image dependency', () => {
    const p = plan('FROM alpine AS a\nFROM alpine\nCOPY --from=debian:12 /etc/os-release /x\nCOPY --from=busybox /bin/sh /sh\n');
    expect(p.stages[1]?.imageRefs).toEqual(['debian:12', 'busybox']);
    expect(p.warnings.some((w) => w.includes('busybox is not a stage name'))).toBe(true);
  });

  it('COPY --from with a variable resolves statically', () => {
    const p = plan('ARG SRC=build\nFROM alpine AS build\nFROM scratch\nARG SRC\nCOPY --from=$SRC /a /b\n');
    expect(p.stages[1]?.dependsOn).toEqual([0]);
  });

  it('RUN --mount from=<stage> is a dependency', () => {
    const p = plan('FROM alpine AS deps\nFROM alpine AS other\nFROM alpine\nRUN --mount=type=bind,from=deps,target=/d true\n', {
      skipUnusedStages: true,
    });
    expect(p.stages.map((s) => s.needed)).toEqual([true, false, true]);
  });

  it('a cycle is an error', () => {
    const e = planError('FROM alpine AS a\nCOPY --from=b / /\nFROM alpine AS b\nCOPY --from=a / /\n');
    expect(e.code).toBe('DOCKERFILE_CIRCULAR_DEPENDENCY');
  });

  it('FROM a stage name defined later is an image, and an invalid base is an error', () => {
    expect(plan('FROM later\nFROM alpine AS later\n').stages[0]?.baseStage).toBeUndefined();
    expect(planError('ARG B=Not_Valid\nFROM $B\n').code).toBe('DOCKERFILE_INVALID_BASE');
  });

  it('invalid stage names are rejected', () => {
    // The parser or splitStages rejects it; either way a coded error naming the line.
    const e = planError('FROM alpine AS 1abc\n');
    expect(DOCKERFILE_ERROR_CODES).toContain(e.code);
    expect(e.message).toContain('Dockerfile:1');
  });
});

describe('expandInstruction at build time', () => {
  const ctx = { escape: '\\', buildArgs: new Map([['V', 'cli']]), globalArgs: new Map([['G', 'global']]) };
  const insts = (text: string) => toInstructions(parseDockerfile(`FROM scratch\n${text}`, 'Dockerfile')).instructions.slice(1);

  it('runs against the evolving stage env', () => {
    const vars = stageVarsFromImage(['PATH=/usr/bin', 'HOME=/root']);
    const out: string[] = [];
    for (const inst of insts('ENV PATH=/opt/bin:$PATH\nARG G\nARG V=def\nWORKDIR $HOME/$G/$V\nRUN echo $PATH\nENV PORTS="80 443"\nEXPOSE $PORTS 8080\n')) {
      const ex = expandInstruction(inst, expansionEnv(vars), ctx);
      applyToStageVars(vars, ex);
      if (ex.kind === 'workdir') out.push(ex.path);
      if (ex.kind === 'run') out.push(ex.cmd.join(' '));
      if (ex.kind === 'expose') out.push(ex.ports.join(','));
    }
    expect(out).toEqual(['/root/global/cli', 'echo $PATH', '80,443,8080']);
    expect(vars.env.get('PATH')).toBe('/opt/bin:/usr/bin');
    expect(cloneStageVars(vars).args.get('V')).toBe('cli');
  });

  it('expands COPY flags, sources and heredoc bodies (quotes kept), and reports variables', () => {
    const [copy] = insts('COPY --chown=$U:$U --from=$S <<EOF src/$F /dst/\necho "$F" \'x\'\nEOF\n');
    const ex = expandInstruction(copy!, new Map([['U', 'app'], ['S', 'build'], ['F', 'f.txt']]), ctx);
    if (ex.kind !== 'copy') throw new Error('not copy');
    expect(ex.chown).toBe('app:app');
    expect(ex.from).toBe('build');
    expect(ex.sources).toEqual(['src/f.txt']);
    expect(ex.heredocs[0]?.content).toBe('echo "f.txt" \'x\'\n');
    expect([...ex.usedVars].sort()).toEqual(['F', 'S', 'U']);
  });

  it('uses the escape directive', () => {
    const df = toInstructions(parseDockerfile('# escape=`\nFROM scratch\nWORKDIR C:\\a\\$X`$Y\n', 'Dockerfile'));
    const ex = expandInstruction(df.instructions[1]!, { X: 'x' }, { ...ctx, escape: df.escape });
    expect(ex.kind === 'workdir' && ex.path).toBe('C:\\a\\x$Y');
  });

  it('errors carry file:line and the code', () => {
    const [w] = insts('\n\nWORKDIR ${NOPE:?must be set}\n');
    expect(() => expandInstruction(w!, {}, ctx)).toThrow(/^Dockerfile:4: .*NOPE: must be set/);
  });
});

describe('RUN --mount: typed once, with the RUN', () => {
  /** The error the build gives for the RUN at `line`: its expansion against `env` and WORKDIR /work, as the executor does it. */
  function buildError(text: string, line: number, env: Map<string, string> = new Map()): BuilderError {
    const inst = toInstructions(parseDockerfile(text, 'Dockerfile')).instructions.find((i) => i.line === line)!;
    try {
      expandInstruction(inst, env, { escape: '\\', buildArgs: new Map(), globalArgs: new Map() }, '/work');
    } catch (err) {
      if (err instanceof BuilderError) return err;
      throw err;
    }
    throw new Error('expected an error');
  }

  it.each([
    ['FROM scratch\nRUN --mount=type=cache,target=/c,sharing=exclusive true\n', 'RUN_MOUNT_INVALID'],
    ['FROM scratch\nRUN --mount=type=bind,target=/x,bogus=1 true\n', 'RUN_MOUNT_INVALID'],
    ['FROM scratch\nRUN --mount=type=bind,target=/ true\n', 'RUN_MOUNT_INVALID'],
    ['FROM scratch\nRUN --mount=type=ssh true\n', 'RUN_MOUNT_UNSUPPORTED'],
    ['FROM scratch AS a\nFROM scratch\nRUN --mount=type=cache,target=/c,from=a true\n', 'RUN_MOUNT_UNSUPPORTED'],
    ['FROM scratch\nARG S=exclusive\nRUN --mount=type=cache,target=/c,sharing=$S true\n', 'RUN_MOUNT_INVALID'],
  ])('the plan refuses a bad mount with the error the build gives: %j', (text, code) => {
    const line = text.split('\n').length - 1;
    const e = planError(text);
    const b = buildError(text, line, new Map([['S', 'exclusive']]));
    expect(e.code).toBe(code);
    expect({ code: e.code, message: e.message, hint: e.hint }).toEqual({ code: b.code, message: b.message, hint: b.hint });
    expect(e.message).toMatch(new RegExp(`^Dockerfile:${line}: `));
  });

  it('a mount using the base image\'s ENV, or a relative target (WORKDIR unknown), waits for the build', () => {
    expect(plan('FROM alpine\nRUN --mount=type=cache,target=/c,uid=$APP_UID true\n').stages[0]?.steps).toHaveLength(1);
    expect(plan('FROM alpine\nRUN --mount=target=. true\n').stages[0]?.steps).toHaveLength(1);
    // where the whole env is known (scratch), an unset variable is empty, as in the build
    expect(planError('FROM scratch\nRUN --mount=type=cache,target=/c,uid=$APP_UID true\n').code).toBe('RUN_MOUNT_INVALID');
  });

  it('the build reads each mount once, expanded per value, relative targets under the step\'s WORKDIR', () => {
    const p = plan('FROM scratch\nARG T="/a,b"\nRUN --mount=type=cache,target=$T --mount=target=src,from=build true\n');
    const run = p.stages[0]!.instructions[1]!;
    const ex = expandInstruction(run, new Map([['T', '/a,b']]), p, '/work');
    expect(ex.kind === 'run' && ex.mounts).toEqual([
      { type: 'cache', target: '/a,b', id: '/a,b', sharing: 'shared', readonly: false, mode: 0o755, uid: 0, gid: 0 },
      { type: 'bind', target: '/work/src', source: '/', from: 'build', readonly: true },
    ]);
  });
});

describe('ONBUILD triggers', () => {
  it('parses a base image config OnBuild list into instructions pointing at the FROM line', () => {
    const out = onbuildInstructions(['RUN echo "onbuild" > /tmp/onbuild', 'RUN  mkdir $dir', 'WORKDIR /new/workdir'], {
      file: 'Dockerfile',
      line: 1,
      baseName: 'onbuild-base',
    });
    expect(out.map((i) => i.kind)).toEqual(['run', 'run', 'workdir']);
    expect(out.every((i) => i.line === 1 && i.file === 'Dockerfile')).toBe(true);
    expect(onbuildInstructions(null, { file: 'Dockerfile', line: 1, baseName: 'x' })).toEqual([]);
  });

  it('rejects FROM/ONBUILD/MAINTAINER triggers', () => {
    expect(() => onbuildInstructions(['FROM alpine'], { file: 'Dockerfile', line: 3, baseName: 'b' })).toThrow(
      expect.objectContaining({ code: 'DOCKERFILE_ONBUILD_TRIGGER', message: expect.stringMatching(/^Dockerfile:3: /) }),
    );
  });
});
