// bin/builder picks the one-file bundle only when it is at least as new as tsc's output: a stale bundle would run old code.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
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
  writeFileSync(bundle, "export function launch() { process.stdout.write('bundle'); }\n");
  writeFileSync(modules, "export function launch() { process.stdout.write('modules'); }\n");
  const now = Date.now() / 1000;
  utimesSync(bundle, now - bundleAge, now - bundleAge);
  utimesSync(modules, now - modulesAge, now - modulesAge);
  return root;
}

const run = (root: string): string => execFileSync('node', [path.join(root, 'bin/builder')], { encoding: 'utf8' });
const runProgram = (root: string, args: string[]): string => execFileSync(path.join(root, 'bin/builder'), args, { encoding: 'utf8' });

/** install() plus the answers bin/builder's sh line prints, `answersAge` seconds old. */
function installWithAnswers(answersAge: number, bundleAge: number, modulesAge: number): string {
  const root = install(bundleAge, modulesAge);
  const t = Date.now() / 1000 - answersAge;
  for (const [name, text] of [['version.txt', 'builder 9.9.9\n'], ['help.txt', 'Usage: from help.txt\n']] as const) {
    writeFileSync(path.join(root, 'dist', name), text);
    utimesSync(path.join(root, 'dist', name), t, t);
  }
  return root;
}

/** install() plus a real V8 snapshot (built under bin/builder's flags) printing the argv it got, `blobAge` seconds old. */
async function installWithSnapshot(blobAge: number, bundleAge: number, modulesAge: number): Promise<string> {
  const root = install(bundleAge, modulesAge);
  const { buildSnapshot, launcherFlags } = await import(path.join(repo, 'scripts/snapshot.mjs')) as {
    buildSnapshot(o: { entry: string; blob: string; flags: string[]; version: string }): Promise<void>;
    launcherFlags(text: string): string[];
  };
  const entry = path.join(root, 'entry.cjs');
  writeFileSync(entry, "require('node:v8').startupSnapshot.setDeserializeMainFunction(() => process.stdout.write('snapshot ' + JSON.stringify(process.argv.slice(1))));\n");
  const blob = path.join(root, 'dist/builder.blob');
  await buildSnapshot({ entry, blob, flags: launcherFlags(readFileSync(path.join(repo, 'bin/builder'), 'utf8')), version: '0.0.0' });
  symlinkSync(realpathSync(process.execPath), path.join(root, 'dist/builder.node'));
  const t = Date.now() / 1000 - blobAge;
  utimesSync(blob, t, t);
  return root;
}

/** bin/builder run as a program with this node first on PATH (the one the snapshot was built by). */
const runWithNode = (root: string, args: string[], env: NodeJS.ProcessEnv = {}): string => execFileSync(path.join(root, 'bin/builder'), args, {
  encoding: 'utf8',
  env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}`, ...env },
});

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
    // `build --help`: `--version` alone may be answered by the sh line without node (next tests)
    const r = spawnSync(path.join(repo, 'bin/builder'), ['build', '--help'], { encoding: 'utf8', env });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stderr)).toEqual([['--max-semi-space-size=4', '--optimize-for-size', '--liftoff-only', '--initial-old-space-size=32'], '131072']);
    // a threshold the user set is kept
    const own = spawnSync(path.join(repo, 'bin/builder'), ['build', '--help'], { encoding: 'utf8', env: { ...env, MALLOC_MMAP_THRESHOLD_: '65536' } });
    expect(JSON.parse(own.stderr)).toEqual([['--max-semi-space-size=4', '--optimize-for-size', '--liftoff-only', '--initial-old-space-size=32'], '65536']);
    const direct = spawnSync('node', [path.join(repo, 'bin/builder'), 'build', '--help'], { encoding: 'utf8', env });
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

  it('the bundle\'s undici is one file beside it, with the names the CLI uses, and does not make node load its own undici', () => {
    execFileSync('node', [path.join(repo, 'scripts/bundle.mjs')]);
    expect(readFileSync(path.join(repo, 'dist/builder.mjs'), 'utf8')).toContain('import("./undici.mjs")');
    const loaded = JSON.parse(execFileSync('node', ['--input-type=module', '-e',
      `const u = await import(${JSON.stringify(path.join(repo, 'dist/undici.mjs'))}); console.log(JSON.stringify([typeof u.Agent, typeof u.request, process.moduleLoadList.filter((m) => m.includes('undici'))]));`],
    { encoding: 'utf8' })) as unknown;
    expect(loaded).toEqual(['function', 'function', []]);
  });

  it('--help and --version alone into a pipe are answered by sh from the answer files, node printing only its version', () => {
    const root = installWithAnswers(1, 60, 60);
    expect(runProgram(root, ['--help'])).toBe('Usage: from help.txt\n');
    expect(runProgram(root, ['-h'])).toBe('Usage: from help.txt\n');
    expect(runProgram(root, ['--version'])).toBe(`builder 9.9.9 (node ${process.version})\n`);
    expect(runProgram(root, ['version'])).toBe(`builder 9.9.9 (node ${process.version})\n`);
    // anything else is the CLI's: more arguments, other commands
    expect(runProgram(root, ['--help', 'build'])).toBe('bundle');
    expect(runProgram(root, ['build'])).toBe('bundle');
    // through a symlink (npm's node_modules/.bin/builder), the answers are found beside the real file
    const link = path.join(root, 'link-to-builder');
    symlinkSync(path.join(root, 'bin/builder'), link);
    expect(execFileSync(link, ['--help'], { encoding: 'utf8' })).toBe('Usage: from help.txt\n');
  });

  it('answers older than the bundle or than tsc output are stale: the CLI answers', () => {
    expect(runProgram(installWithAnswers(120, 60, 1), ['--help'])).toBe('modules');
    expect(runProgram(installWithAnswers(30, 1, 60), ['--version'])).toBe('bundle');
  });

  it('on a terminal the CLI answers (commander wraps help to its width)', () => {
    const root = installWithAnswers(1, 60, 60);
    const out = execFileSync('script', ['-qec', `${path.join(root, 'bin/builder')} --help`, '/dev/null'], { encoding: 'utf8' });
    expect(out.trim()).toBe('bundle');
  });

  it('the real answer files print what the CLI prints', () => {
    execFileSync('node', [path.join(repo, 'scripts/bundle.mjs')]);
    const preload = `data:text/javascript,${encodeURIComponent("process.stderr.write('js ran')")}`;
    const env = { ...process.env, NODE_OPTIONS: `--import ${preload}` };
    for (const arg of ['--help', '-h', '--version', 'version']) {
      const fast = spawnSync(path.join(repo, 'bin/builder'), [arg], { encoding: 'utf8', env });
      expect(fast.stderr).toBe(''); // no JavaScript started
      const cli = spawnSync('node', [path.join(repo, 'bin/builder'), arg], { encoding: 'utf8', env });
      expect(cli.stderr).toBe('js ran');
      expect(fast.stdout).toBe(cli.stdout);
    }
  });

  it('a V8 snapshot not older than the bundle and tsc output runs instead of them, with the arguments after "--"', async () => {
    const root = await installWithSnapshot(1, 60, 60);
    expect(runWithNode(root, ['build', '--context', 'x'])).toBe('snapshot ["build","--context","x"]');
  });

  it('a snapshot is left alone when stale, when NODE_OPTIONS is set, or when node is not the binary that built it', async () => {
    expect(runWithNode(await installWithSnapshot(120, 60, 1), ['build'])).toBe('modules');
    expect(runWithNode(await installWithSnapshot(120, 1, 60), ['build'])).toBe('bundle');
    const root = await installWithSnapshot(1, 60, 60);
    // V8 flags in NODE_OPTIONS would not match the blob's (node would refuse it): the bundle runs
    expect(runWithNode(root, ['build'], { NODE_OPTIONS: '--max-old-space-size=200' })).toBe('bundle');
    rmSync(path.join(root, 'dist/builder.node'));
    expect(runWithNode(root, ['build'])).toBe('bundle');
    symlinkSync('/bin/sh', path.join(root, 'dist/builder.node'));
    expect(runWithNode(root, ['build'])).toBe('bundle');
  });

  it('the real snapshot runs the CLI: node starts from dist/builder.blob and a command fails as the bundle\'s does', async () => {
    execFileSync('node', [path.join(repo, 'scripts/bundle.mjs')]);
    expect(realpathSync(path.join(repo, 'dist/builder.node'))).toBe(realpathSync(process.execPath));
    const env = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}` };
    delete env.NODE_OPTIONS;
    // login waits for the password on stdin: long enough to read which program sh exec'd
    const child = spawn(path.join(repo, 'bin/builder'), ['login', '127.0.0.1:1', '-u', 'u', '--password-stdin'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    // the same pid is sh until it execs node
    let cmdline = ['/bin/sh'];
    while (cmdline[0] === '/bin/sh') {
      await new Promise((r) => setTimeout(r, 5));
      cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
    }
    expect(cmdline.slice(cmdline.indexOf('--snapshot-blob'))).toEqual(['--snapshot-blob', `${repo.replace(/\/$/, '')}/bin/../dist/builder.blob`, '--', 'login', '127.0.0.1:1', '-u', 'u', '--password-stdin', '']);
    child.stdin.end('secret\n');
    expect(await exited).not.toBe(0);
    const viaBundle = spawnSync('node', [path.join(repo, 'bin/builder'), 'login', '127.0.0.1:1', '-u', 'u', '--password-stdin'], { input: 'secret\n', encoding: 'utf8', env });
    // the retry's warning names a random back-off: the error and its hint are compared
    const final = (text: string): string => text.slice(text.indexOf('builder: error '));
    expect(final(stderr)).toMatch(/^builder: error REGISTRY_UNREACHABLE: log in to 127\.0\.0\.1:1 /);
    expect(final(stderr)).toBe(final(viaBundle.stderr));
  });
});
