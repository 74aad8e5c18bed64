// The README's install line: `npm pack` makes a package that installs with `npm install -g` into a fresh prefix and
// runs there (version, a small build) with only its runtime dependencies: no compiler, no bundler, no test runner.
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileIfStale, ROOT } from '../executor/helpers.js';
import { run } from '../support/tools.js';

const DEV_ONLY = ['typescript', 'esbuild', 'vitest', '@types/node', '@types/tar-stream'];

describe('npm pack + npm install -g ./daemonless-builder-*.tgz', () => {
  let tmp: string;
  let prefix: string;
  let env: NodeJS.ProcessEnv;
  let pkg: { version: string; dependencies: Record<string, string>; devDependencies: Record<string, string> };

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'builder-package-'));
    prefix = path.join(tmp, 'prefix');
    pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
    // dist as the sources say now (pretest compiled it); npm pack's prepare script would rewrite dist under other tests
    await compileIfStale();
    const packed = await run('npm', ['pack', '--ignore-scripts', '--pack-destination', tmp], { cwd: ROOT, timeoutMs: 240_000 });
    const tgz = packed.stdout.trim().split('\n').pop()!;
    expect(tgz).toBe(`daemonless-builder-${pkg.version}.tgz`);
    // a machine with node and npm only: no PATH into the checkout, its own HOME; npm's download cache is the user's
    // (--prefer-offline: the three runtime dependencies come from it when there, else from the registry)
    env = { PATH: `${path.join(prefix, 'bin')}:${path.dirname(process.execPath)}:/usr/bin:/bin`, HOME: tmp, npm_config_cache: process.env.npm_config_cache ?? path.join(os.homedir(), '.npm') };
    await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', path.join(tmp, tgz)], { cwd: tmp, env, timeoutMs: 240_000 });
  }, 600_000);
  afterAll(async () => rm(tmp, { recursive: true, force: true }));

  it('installs only its runtime dependencies, and builder --version runs from the prefix', async () => {
    const modules = path.join(prefix, 'lib/node_modules');
    const installed = await readdir(path.join(modules, 'daemonless-builder/node_modules')).catch(() => [] as string[]);
    const scoped = (await Promise.all(installed.filter((n) => n.startsWith('@')).map(async (s) => (await readdir(path.join(modules, 'daemonless-builder/node_modules', s))).map((n) => `${s}/${n}`)))).flat();
    for (const dev of DEV_ONLY) expect([...installed, ...scoped], dev).not.toContain(dev);
    for (const dep of Object.keys(pkg.dependencies)) expect(installed, dep).toContain(dep);
    const v = await run('builder', ['--version'], { cwd: tmp, env });
    expect(v.stdout).toBe(`builder ${pkg.version} (node ${process.version})\n`);
  });

  it('builds an image with --no-push from the installed package (sandbox RUN-less build into a docker-archive)', async () => {
    const ctx = path.join(tmp, 'ctx');
    await mkdir(ctx);
    await writeFile(path.join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY hello /hello\nLABEL from=package\n');
    await writeFile(path.join(ctx, 'hello'), 'hi\n');
    const r = await run('builder', ['-c', ctx, '--no-push', '--tar-path', path.join(tmp, 'image.tar'), '--cache-dir', path.join(tmp, 'cache'), '--work-dir', path.join(tmp, 'work')], { cwd: tmp, env });
    expect(r.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    const cfg = JSON.parse((await run('skopeo', ['inspect', '--config', `docker-archive:${path.join(tmp, 'image.tar')}`])).stdout);
    expect(cfg.config.Labels).toEqual({ from: 'package' });
    expect(cfg.rootfs.diff_ids).toHaveLength(1);
  });
});
