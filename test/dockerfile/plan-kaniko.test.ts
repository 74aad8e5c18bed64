// Every Dockerfile of kaniko's integration suite parses and plans, with the build args kaniko's own tests pass.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatPlan, parseDockerfile, planBuild, toInstructions } from '../../src/dockerfile/index.js';

import { CONFORMANCE } from '../support/paths.js';
const DIR = `${CONFORMANCE}/kaniko/dockerfiles`;
const AMD64 = { os: 'linux', architecture: 'amd64' };

// kaniko integration/images.go argsMap / envsMap / additionalKanikoFlagsMap.
const ARGS: Record<string, Record<string, string | undefined>> = {
  Dockerfile_test_run: { file: '/file' },
  Dockerfile_test_run_new: { file: '/file' },
  Dockerfile_test_run_redo: { file: '/file' },
  Dockerfile_test_workdir: { workdir: '/arg/workdir' },
  Dockerfile_test_add: { file: 'context/foo' },
  Dockerfile_test_arg_secret: { SSH_PRIVATE_KEY: undefined, SSH_PUBLIC_KEY: 'Pµbl1cK€Y' },
  Dockerfile_test_onbuild: { file: '/tmp/onbuild' },
  Dockerfile_test_scratch: { image: 'scratch', hello: 'hello-value', file: 'context/foo', file3: 'context/b*' },
  Dockerfile_test_multistage: { file: '/foo2' },
};
const ENV: Record<string, Record<string, string>> = { Dockerfile_test_arg_secret: { SSH_PRIVATE_KEY: 'ThEPriv4t3Key' } };
const TARGET: Record<string, string> = { Dockerfile_test_target: 'second' };

const files = readdirSync(DIR).filter((f) => !f.endsWith('.dockerignore'));

describe('kaniko dockerfiles plan without error', () => {
  it('covers the corpus', () => expect(files.length).toBeGreaterThanOrEqual(80));
  for (const f of files) {
    it(f, () => {
      const df = toInstructions(parseDockerfile(readFileSync(join(DIR, f), 'utf8'), f));
      for (const skipUnusedStages of [false, true]) {
        const plan = planBuild(df, {
          buildArgs: ARGS[f] ?? {},
          env: ENV[f] ?? {},
          target: TARGET[f],
          platform: AMD64,
          buildPlatform: AMD64,
          skipUnusedStages,
        });
        expect(plan.stages.length).toBeGreaterThan(0);
        expect(plan.stages[plan.target]?.needed).toBe(true);
        expect(formatPlan(plan)).toContain('stage 0');
      }
    });
  }

  it('spot checks', () => {
    const load = (f: string, buildArgs: Record<string, string | undefined> = ARGS[f] ?? {}, target?: string) =>
      planBuild(toInstructions(parseDockerfile(readFileSync(join(DIR, f), 'utf8'), f)), {
        buildArgs,
        env: ENV[f] ?? {},
        target,
        platform: AMD64,
        buildPlatform: AMD64,
        skipUnusedStages: true,
      });
    const secret = load('Dockerfile_test_arg_secret');
    expect(secret.buildArgs.get('SSH_PRIVATE_KEY')).toBe('ThEPriv4t3Key');
    const scratch = load('Dockerfile_test_scratch');
    expect(scratch.stages[0]?.baseName).toBe('scratch');
    expect(scratch.stages[0]?.steps.map((s) => s.text)).toContain('COPY context/bar/bam/bat /env');
    const meta = load('Dockerfile_test_meta_arg');
    expect(meta.stages.map((s) => s.baseName)).toEqual(['docker.io/debian:9.11', 'docker.io/debian:9.11']);
    const target = load('Dockerfile_test_target', {}, 'second');
    expect(target.target).toBe(1);
    expect(target.stages.map((s) => s.needed)).toEqual([true, true, false]);
    const capital = load('Dockerfile_test_from_multistage_capital');
    expect(capital.stages.map((s) => s.baseStage)).toEqual([undefined, 0, 1]);
  });
});
