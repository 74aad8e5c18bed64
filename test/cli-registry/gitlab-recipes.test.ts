// docs/gitlab-ci.md, job by job: each recipe's script lines run in bash as GitLab would (one shell per job, `set -e`),
// with the CI variables of a tag pipeline, against local registries (a token-auth "GitLab" one and a second one).
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusybox } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { run, RunError, skopeoInspect, umociUnpack } from '../support/tools.js';
import { compileIfStale, ROOT, Workspace } from '../executor/helpers.js';

interface Job {
  name: string;
  image?: string;
  script: string[];
  matrix?: Record<string, string[]>;
}

/** The jobs of the recipes: one job per ```yaml block (the `default:` block has no script). */
export function parseRecipes(md: string): Job[] {
  const jobs: Job[] = [];
  for (const block of md.matchAll(/```yaml\n([\s\S]*?)```/g)) {
    const lines = block[1]!.split('\n');
    const name = /^([\w-]+):$/.exec(lines[0] ?? '')?.[1];
    if (!name) continue;
    const job: Job = { name, script: [] };
    let key = '';
    for (const line of lines.slice(1)) {
      const top = /^ {2}([\w_]+):\s*(.*)$/.exec(line);
      if (top) {
        key = top[1]!;
        if (key === 'image') job.image = top[2]!;
        continue;
      }
      const item = /^ {4}- (.*)$/.exec(line);
      if (item && key === 'script') job.script.push(item[1]!);
      const m = /^ {6}- (\w+): \[(.*)\]$/.exec(line);
      if (m && key === 'parallel') job.matrix = { [m[1]!]: m[2]!.split(',').map((s) => s.trim()) };
    }
    if (job.script.length > 0) jobs.push(job);
  }
  return jobs;
}

describe('GitLab CI recipes (docs/gitlab-ci.md)', () => {
  let gitlab: TestRegistry;
  let prod: TestRegistry;
  let ws: Workspace;
  let env: NodeJS.ProcessEnv;
  let jobs: Job[];
  const sha = 'c0ffee1234567890c0ffee1234567890c0ffee12';
  const job = (name: string): Job => {
    const j = jobs.find((x) => x.name === name);
    if (!j) throw new Error(`docs/gitlab-ci.md has no job ${name}`);
    return j;
  };
  /** Runs a job's script as GitLab does: one bash, `set -e`, the CI variables (plus `extra`) in the environment. */
  const runJob = async (j: Job, extra: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> => {
    try {
      return await run('bash', ['-ec', j.script.join('\n')], { cwd: env.CI_PROJECT_DIR!, env: { ...env, ...extra }, timeoutMs: 110_000 });
    } catch (err) {
      if (err instanceof RunError) throw new Error(`job ${j.name} failed (exit ${err.exitCode}):\n${err.stderr}`);
      throw err;
    }
  };

  beforeAll(async () => {
    await compileIfStale();
    jobs = parseRecipes(await readFile(path.join(ROOT, 'docs/gitlab-ci.md'), 'utf8'));
    [gitlab, prod] = await Promise.all([
      startRegistry({ mode: 'token', users: { 'gitlab-ci-token': 'job-token', 'cleanup-bot': 'cleanup-token' } }),
      startRegistry({ mode: 'htpasswd', users: { deployer: 'prod-secret' } }),
    ]);
    ws = await Workspace.create('builder-recipes-');
    const base = await pushBusybox(gitlab, 'lib/base', 'v1');
    const project = await ws.context('project', {
      Dockerfile: `FROM ${base}\nCOPY VERSION /app/VERSION\nRUN test -s /app/VERSION\n`,
      VERSION: '1.2.3\n',
      'api/Dockerfile': `FROM ${base}\nRUN echo api > /role\n`,
      'worker/Dockerfile': `FROM ${base}\nRUN echo worker > /role\n`,
    });
    // `builder` on PATH as the npm package would put it; builds in the sandbox (never in place on this host)
    const bin = ws.path('bin');
    await mkdir(bin);
    await writeFile(path.join(bin, 'builder'), `#!/bin/sh
case "$1" in -*|build) exec node ${ROOT}/bin/builder "$@" --run-mode sandbox ;; *) exec node ${ROOT}/bin/builder "$@" ;; esac
`);
    await chmod(path.join(bin, 'builder'), 0o755);
    env = {
      PATH: `${bin}:${process.env.PATH}`, HOME: ws.dir, TMPDIR: ws.dir,
      GITLAB_CI: 'true', CI: 'true', CI_PROJECT_DIR: project, CI_PROJECT_NAME: 'project',
      CI_REGISTRY: gitlab.host, CI_REGISTRY_IMAGE: `${gitlab.host}/group/project`,
      CI_REGISTRY_USER: 'gitlab-ci-token', CI_REGISTRY_PASSWORD: 'job-token',
      CI_COMMIT_SHA: sha, CI_COMMIT_REF_SLUG: 'main', CI_COMMIT_TAG: 'v1.2.3', CI_PIPELINE_SOURCE: 'push',
      PROD_REGISTRY: prod.host, PROD_REGISTRY_USER: 'deployer', PROD_REGISTRY_PASSWORD: 'prod-secret',
      CLEANUP_TOKEN: 'cleanup-token',
    };
  });
  afterAll(async () => {
    await Promise.all([gitlab?.stop(), prod?.stop()]);
    await ws?.remove();
  });

  const digestOf = async (ref: string): Promise<string> => (await run('node', [path.join(ROOT, 'bin/builder'), 'digest', ref], { env })).stdout.trim();

  it('the recipes parse: every workflow has its job', () => {
    expect(jobs.map((j) => j.name)).toEqual(['build', 'release-tags', 'test', 'promote', 'cleanup', 'warm', 'build-images', 'debug']);
  });

  it('build: pushed under the sha and the branch slug, layers in $CI_REGISTRY_IMAGE/cache; stdout is the digest', async () => {
    const r = await runJob(job('build'));
    expect(r.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    const tags = (await registryTagsAuth(gitlab, 'group/project')).sort();
    expect(tags).toEqual([sha, 'main'].sort());
    expect((await registryTagsAuth(gitlab, 'group/project/cache')).length).toBeGreaterThan(0);
    expect(await digestOf(`${gitlab.host}/group/project:main`)).toBe(r.stdout.trim());
  });

  it('release-tags: 1.2.3, 1.2 and latest point at the commit\'s image', async () => {
    await runJob(job('release-tags'));
    const want = await digestOf(`${gitlab.host}/group/project:${sha}`);
    for (const t of ['1.2.3', '1.2', 'latest']) expect(await digestOf(`${gitlab.host}/group/project:${t}`), t).toBe(want);
  });

  it('test: the job image resolves with the job\'s credentials and its script runs in it', async () => {
    const image = job('test').image!.replace(/\$(\w+)/g, (_, v: string) => env[v] ?? '');
    expect(await digestOf(image)).toMatch(/^sha256:/);
    // what the runner does: pull the image with the job's credentials and start the script in it
    await run('skopeo', ['copy', '--src-tls-verify=false', '--src-creds', 'gitlab-ci-token:job-token', `docker://${image}`, `oci:${ws.path('test-layout')}:img`]);
    const root = await umociUnpack(ws.path('test-layout'), 'img', ws.path('test-bundle'));
    const out = await run('chroot', [root, '/bin/sh', '-ec', job('test').script.join('\n')]);
    expect(out.stdout).toBe('1.2.3\n');
  });

  it('promote: the same digest on the second registry, logged in with its own credentials', async () => {
    await runJob(job('promote'));
    const want = await digestOf(`${gitlab.host}/group/project:${sha}`);
    expect((await skopeoInspect(prod, 'project:v1.2.3')).Digest).toBe(want);
    expect(JSON.parse(await readFile(ws.path('.docker/config.json'), 'utf8')).auths[prod.host]).toBeDefined();
  });

  it('cleanup: old tags beyond the 10 most recent go; latest, version tags and recent ones stay', async () => {
    const now = Math.floor(Date.now() / 1000);
    const old = Array.from({ length: 11 }, (_, i) => `old-${i + 1}`);
    for (const [i, t] of old.entries()) {
      const ctx = await ws.context(`old-${i}`, { Dockerfile: 'FROM scratch\nCOPY f /f\n', f: `${t}\n` });
      const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--reproducible', '--destination', `${gitlab.host}/group/project:${t}`], {
        env: { ...env, GITLAB_CI: '', SOURCE_DATE_EPOCH: String(now - (40 + i) * 86_400) },
      });
      expect(r.code, r.stderr).toBe(0);
    }
    const r = await runJob(job('cleanup'), { CI_PIPELINE_SOURCE: 'schedule', TASK: 'cleanup' });
    const tags = (await registryTagsAuth(gitlab, 'group/project')).sort();
    // candidates newest first: sha, main, 1.2 (today), old-1..old-11; 10 kept, the 4 oldest are past 30 days
    expect(tags).toEqual([sha, '1.2', '1.2.3', 'latest', 'main', ...old.slice(0, 7)].sort());
    expect(r.stdout.trim().split('\n').sort()).toEqual(old.slice(7).sort());
  });

  it('warm: the base images of the Dockerfile land in the cache dir', async () => {
    const cache = ws.path('warm-cache');
    // the recipe's /cache is the runner's volume: here a temp dir
    await runJob({ ...job('warm'), script: job('warm').script.map((l) => l.replace(/\/cache\b/g, cache)) }, { CI_PIPELINE_SOURCE: 'schedule', TASK: 'warm' });
    expect((await run('find', [cache, '-type', 'f'])).stdout.split('\n').filter(Boolean).length).toBeGreaterThan(0);
  });

  it('build-images: one image and one cache per matrix entry', async () => {
    const j = job('build-images');
    for (const image of j.matrix!.IMAGE!) await runJob(j, { IMAGE: image });
    for (const image of ['api', 'worker']) {
      expect(await registryTagsAuth(gitlab, `group/project/${image}`)).toEqual([sha]);
      expect((await registryTagsAuth(gitlab, `group/project/${image}/cache`)).length).toBeGreaterThan(0);
    }
  });

  it('debug: tag list as JSON, the image as JSON, and a build whose every stderr line is JSON', async () => {
    const j = job('debug');
    const lines = j.script;
    const [ls, inspect, buildLine] = await Promise.all(lines.map((l) => run('bash', ['-ec', l], { cwd: env.CI_PROJECT_DIR!, env, timeoutMs: 110_000 })));
    expect((JSON.parse(ls!.stdout) as Array<{ tag: string }>).some((t) => t.tag === sha)).toBe(true);
    expect(JSON.parse(inspect!.stdout).config.config).toBeDefined();
    const log = buildLine!.stderr.trim().split('\n').map((l) => JSON.parse(l) as { level: string });
    expect(log.some((l) => l.level === 'trace')).toBe(true);
  });
});

/** Tags via the token registry's API with the CI job's credentials. */
async function registryTagsAuth(reg: TestRegistry, repo: string): Promise<string[]> {
  const r = await run('node', [path.join(ROOT, 'bin/builder'), 'ls', `${reg.host}/${repo}`], {
    env: { PATH: process.env.PATH, HOME: '/nonexistent', CI_REGISTRY: reg.host, CI_REGISTRY_USER: 'gitlab-ci-token', CI_REGISTRY_PASSWORD: 'job-token' },
  }).catch((e: RunError) => (/NAME_UNKNOWN|NOT_FOUND/.test(e.stderr) ? { stdout: '' } : Promise.reject(e)));
  return r.stdout.split('\n').filter(Boolean);
}
