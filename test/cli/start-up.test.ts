// bin/builder picks the one-file bundle only when it is at least as new as tsc's output: a stale bundle would run old code.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'builder-start-up-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A copy of bin/builder beside a bundle and a main.js that each print which one ran. */
function install(bundleAge: number, modulesAge: number): string {
  const root = mkdtempSync(path.join(dir, 'pkg-'));
  mkdirSync(path.join(root, 'bin'));
  mkdirSync(path.join(root, 'dist/src/cli'), { recursive: true });
  copyFileSync(path.join(repo, 'bin/builder'), path.join(root, 'bin/builder'));
  writeFileSync(path.join(root, 'package.json'), '{"type":"module"}');
  const bundle = path.join(root, 'dist/builder.mjs');
  const modules = path.join(root, 'dist/src/cli/main.js');
  writeFileSync(bundle, "export async function main() { process.stdout.write('bundle'); }\n");
  writeFileSync(modules, "export async function main() { process.stdout.write('modules'); }\n");
  const now = Date.now() / 1000;
  utimesSync(bundle, now - bundleAge, now - bundleAge);
  utimesSync(modules, now - modulesAge, now - modulesAge);
  return root;
}

const run = (root: string): string => execFileSync('node', [path.join(root, 'bin/builder')], { encoding: 'utf8' });

describe('bin/builder entry point', () => {
  it('a bundle older than tsc output is stale: the modules run', () => {
    expect(run(install(60, 1))).toBe('modules');
  });

  it('a bundle made after tsc runs', () => {
    expect(run(install(1, 60))).toBe('bundle');
  });

  it('run as a program, bin/builder starts node with its memory flags and the malloc threshold (sh line); node itself skips that line', () => {
    const preload = `data:text/javascript,${encodeURIComponent('process.stderr.write(JSON.stringify([process.execArgv, process.env.MALLOC_MMAP_THRESHOLD_ ?? null]))')}`;
    const env = { ...process.env, NODE_OPTIONS: `--import ${preload}` };
    delete env.MALLOC_MMAP_THRESHOLD_;
    const r = spawnSync(path.join(repo, 'bin/builder'), ['--version'], { encoding: 'utf8', env });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stderr)).toEqual([['--max-semi-space-size=4', '--optimize-for-size'], '131072']);
    // a threshold the user set is kept
    const own = spawnSync(path.join(repo, 'bin/builder'), ['--version'], { encoding: 'utf8', env: { ...env, MALLOC_MMAP_THRESHOLD_: '65536' } });
    expect(JSON.parse(own.stderr)).toEqual([['--max-semi-space-size=4', '--optimize-for-size'], '65536']);
    const direct = spawnSync('node', [path.join(repo, 'bin/builder'), '--version'], { encoding: 'utf8', env });
    expect(JSON.parse(direct.stderr)).toEqual([[], null]);
    expect(direct.stdout).toBe(r.stdout);
  });

  it('the real bundle knows the package version without a package.json beside it, and runs a command', () => {
    execFileSync('node', [path.join(repo, 'scripts/bundle.mjs')]);
    const version = (JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string }).version;
    const viaBundle = (args: string[]): string => execFileSync('node', ['--input-type=module', '-e',
      `const m = await import(${JSON.stringify(path.join(repo, 'dist/builder.mjs'))}); await m.main(['node', 'builder', ...${JSON.stringify(args)}]);`],
    { encoding: 'utf8' });
    expect(viaBundle(['--version'])).toContain(`builder ${version} `);
    expect(viaBundle(['build', '--help'])).toContain('--destination');
  });
});
