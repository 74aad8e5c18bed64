// `npm run conformance`: builds every Dockerfile of ../shared/conformance/kaniko with builder, buildah 1.28 and
// kaniko v1.24.0 from the same local base images, compares the unpacked trees and configs, writes docs/conformance.md.
//   node dist/conformance/run.mjs [--only REGEX] [--jobs N] [--timeout SECONDS] [--tools builder,buildah,kaniko] [--fresh]
// Tools left out of --tools are not rebuilt: their newest cached result is compared.
// Results are cached per Dockerfile and tool under $CONFORMANCE_CACHE (default /tmp/builder-conformance): builder's
// are rebuilt when src/ changes, buildah's and kaniko's only with --fresh. The registry listens on a fixed port
// ($CONFORMANCE_REGISTRY_PORT, default 5917): it is written into the Dockerfiles, which some of them COPY into the image.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { busyboxLayout } from '../test/support/images.js';
import { startRegistry, type TestRegistry } from '../test/support/registry.js';
import { skopeoCopy } from '../test/support/tools.js';
import { BUILD_ARGS, BUILD_ENV, CONTEXT_DIR, CONTEXT_FILES, prepare, TARGET } from './dockerfiles.js';
import { compare, type Difference } from './compare.js';
import { readLayoutImage } from './tree.js';
import { writeReport, type DockerfileResult, type ToolName, type ToolOutcome } from './report.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const suite = path.resolve(repoRoot, '../shared/conformance/kaniko');
const kanikoExe = path.resolve(repoRoot, '../shared/anchors/kaniko-v1.24.0/executor');
const cacheRoot = process.env.CONFORMANCE_CACHE ?? '/tmp/builder-conformance';

interface Options { only?: RegExp; jobs: number; timeoutMs: number; tools: ToolName[]; fresh: boolean }

function parseArgs(argv: string[]): Options {
  const o: Options = { jobs: 1, timeoutMs: 420_000, tools: ['builder', 'buildah', 'kaniko'], fresh: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => { const x = argv[++i]; if (x === undefined) throw new Error(`${a} needs a value`); return x; };
    if (a === '--only') o.only = new RegExp(v());
    else if (a === '--jobs') o.jobs = Math.max(1, Math.min(2, Number(v())));
    else if (a === '--timeout') o.timeoutMs = Number(v()) * 1000;
    else if (a === '--tools') o.tools = v().split(',') as ToolName[];
    else if (a === '--fresh') o.fresh = true;
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

/** Runs a command in its own process group; on timeout the whole group is killed. */
function exec(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs: number; log: string[] }): Promise<number> {
  return new Promise((resolve) => {
    opts.log.push(`$ ${[cmd, ...args].join(' ')}`);
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const onData = (c: Buffer) => opts.log.push(c.toString('utf8').trimEnd());
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    const timer = setTimeout(() => {
      opts.log.push(`TIMEOUT after ${opts.timeoutMs / 1000}s`);
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
    }, opts.timeoutMs);
    child.once('error', (e) => { clearTimeout(timer); opts.log.push(String(e)); resolve(127); });
    child.once('close', (code) => { clearTimeout(timer); resolve(code ?? 137); });
  });
}

async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
  for (const m of mounts) await exec('umount', ['-l', m], { timeoutMs: 30_000, log: [] });
}

async function gitState(): Promise<string> {
  const h = createHash('sha256');
  // The tree of src/ (not the commit): commits elsewhere keep builder's cached results.
  for (const args of [['rev-parse', 'HEAD:src'], ['diff', 'HEAD', '--', 'src']]) {
    const out: string[] = [];
    await exec('git', ['-C', repoRoot, ...args], { timeoutMs: 30_000, log: out });
    h.update(out.slice(1).join('\n'));
  }
  return h.digest('hex').slice(0, 16);
}

interface Job { name: string; ctx: string; /** context = ctx/sub */ sub: string; dockerfile: string; out: string; env: NodeJS.ProcessEnv; buildArgs: string[]; target?: string; log: string[] }

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('conformance: run as root (buildah chroot isolation, kaniko chroot)');
  const names = (await readdir(path.join(suite, 'dockerfiles'))).filter((n) => !n.endsWith('.dockerignore')).sort();
  await mkdir(path.join(cacheRoot, 'results'), { recursive: true });
  const work = await mkdtemp(path.join(cacheRoot, 'run-'));
  const builderVersion = await gitState();
  const reg: TestRegistry = await startRegistry({ mode: 'plain', port: Number(process.env.CONFORMANCE_REGISTRY_PORT ?? 5917) });
  const buildahGlobal = ['--root', path.join(cacheRoot, 'buildah/root'), '--runroot', path.join(cacheRoot, 'buildah/runroot'), '--storage-driver', 'vfs'];
  const buildahConf = path.join(cacheRoot, 'buildah-conf');
  await mkdir(buildahConf, { recursive: true });
  await writeFile(path.join(buildahConf, 'registries.conf'), 'unqualified-search-registries = []\n');
  await writeFile(path.join(buildahConf, 'auth.json'), '{}\n');
  try {
    // Base images: busybox (test/support/images.ts) and a debootstrap minbase (scripts/bench-base-images.sh), both cached.
    const bb = await busyboxLayout();
    for (const tag of ['latest', '1.31']) await skopeoCopy(`oci:${bb.layout}:busybox`, `docker://${reg.host}/conformance/busybox:${tag}`, { reg });
    const deb: string[] = [];
    await exec('bash', [path.join(repoRoot, 'scripts/bench-base-images.sh'), path.join(cacheRoot, 'bases'), 'debian'], { timeoutMs: 1_800_000, log: deb });
    const debLayout = deb.map((l) => l.split('\n')).flat().reverse().find((l) => l.startsWith('/'));
    if (!debLayout || !existsSync(path.join(debLayout, 'index.json'))) throw new Error(`debian base: ${deb.join('\n')}`);
    await skopeoCopy(`oci:${debLayout}:debian`, `docker://${reg.host}/conformance/debian:latest`, { reg });

    const results: DockerfileResult[] = [];
    // Quick ones first (scratch, busybox), the Debian-based ones last: a run cut short still covers the most.
    const weight = async (n: string) => ((await readFile(path.join(suite, 'dockerfiles', n), 'utf8')).match(/^\s*FROM\s+\S*(debian|ubuntu)/im) ? 1 : 0);
    const selected = names.filter((n) => !o.only || o.only.test(n));
    const weights = new Map(await Promise.all(selected.map(async (n) => [n, await weight(n)] as const)));
    const queue = selected.sort((a, b) => weights.get(a)! - weights.get(b)! || a.localeCompare(b));
    const worker = async (): Promise<void> => {
      for (let name = queue.shift(); name; name = queue.shift()) results.push(await one(name));
    };
    const one = async (name: string): Promise<DockerfileResult> => {
      const text = await readFile(path.join(suite, 'dockerfiles', name), 'utf8');
      const p = prepare(name, text);
      if ('skip' in p) { console.log(`[conformance] ${name}: skipped (${p.skip})`); return { name, skipped: p.skip, tools: {}, diffs: {} }; }
      const bases = [...new Set(p.bases.map((b) => `${b.from} -> ${b.base}`))];
      const outcomes: Partial<Record<ToolName, ToolOutcome>> = {};
      const dirs: Partial<Record<ToolName, string>> = {};
      for (const tool of ['builder', 'buildah', 'kaniko'] as const) {
        if (!o.tools.includes(tool)) {
          // Not rebuilt this time: the newest result of an earlier run, whatever its key (same registry port assumed).
          const parent = path.join(cacheRoot, 'results', name);
          const found = (await readdir(parent).catch(() => [] as string[])).filter((d) => d.startsWith(`${tool}-`) && existsSync(path.join(parent, d, 'status.json')));
          const newest = (await Promise.all(found.map(async (d) => ({ d, t: (await stat(path.join(parent, d, 'status.json'))).mtimeMs })))).sort((a, b) => b.t - a.t)[0];
          if (newest) {
            dirs[tool] = path.join(parent, newest.d);
            outcomes[tool] = JSON.parse(await readFile(path.join(dirs[tool]!, 'status.json'), 'utf8'));
          }
          continue;
        }
        const version = tool === 'builder' ? builderVersion : tool;
        const key = createHash('sha256').update(JSON.stringify([p.text, BUILD_ARGS[name], TARGET[name], CONTEXT_DIR[name], CONTEXT_FILES[name], version, reg.host, 'v1'])).digest('hex').slice(0, 16);
        const dir = path.join(cacheRoot, 'results', name, `${tool}-${key}`);
        dirs[tool] = dir;
        const statusFile = path.join(dir, 'status.json');
        if (!o.fresh && existsSync(statusFile)) {
          outcomes[tool] = JSON.parse(await readFile(statusFile, 'utf8'));
          console.log(`[conformance] ${name} ${tool}: cached (${outcomes[tool]!.ok ? 'ok' : 'failed'})`);
          continue;
        }
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
        const ctx = path.join(work, name, tool, 'workspace');
        await cp(suite, ctx, { recursive: true });
        await writeFile(path.join(ctx, 'dockerfiles', name), p.text.replaceAll('@REG@', reg.host));
        for (const [rel, content] of Object.entries(CONTEXT_FILES[name] ?? {})) {
          await mkdir(path.dirname(path.join(ctx, rel)), { recursive: true });
          await writeFile(path.join(ctx, rel), content);
        }
        const log: string[] = [];
        const job: Job = {
          name, ctx, sub: CONTEXT_DIR[name] ?? '', dockerfile: path.join(ctx, 'dockerfiles', name), out: path.join(dir, 'oci'),
          env: { ...process.env, ...BUILD_ENV[name] }, buildArgs: (BUILD_ARGS[name] ?? []).flatMap((a) => ['--build-arg', a]), target: TARGET[name], log,
        };
        const started = Date.now();
        let code: number;
        try {
          code = await (tool === 'builder' ? buildBuilder(job) : tool === 'buildah' ? buildBuildah(job) : buildKaniko(job, path.join(work, name, 'kaniko-root')));
        } catch (err) {
          log.push(String((err as Error).stack ?? err));
          code = 1;
        }
        const seconds = Math.round((Date.now() - started) / 100) / 10;
        const outcome: ToolOutcome = { ok: code === 0 && existsSync(path.join(job.out, 'index.json')), seconds, error: undefined };
        if (!outcome.ok) outcome.error = log.join('\n').split('\n').filter((l) => /error|fail|denied|not found|unknown|TIMEOUT/i.test(l)).slice(-3).join(' | ').slice(0, 400) || `exit ${code}`;
        await writeFile(path.join(dir, 'build.log'), log.join('\n'));
        await writeFile(statusFile, JSON.stringify(outcome));
        outcomes[tool] = outcome;
        console.log(`[conformance] ${name} ${tool}: ${outcome.ok ? 'ok' : `FAILED (${outcome.error})`} in ${seconds}s`);
        await rm(path.join(work, name, tool), { recursive: true, force: true });
      }
      const diffs: Partial<Record<'buildah' | 'kaniko', Difference[]>> = {};
      if (outcomes.builder?.ok) {
        const dirOf = async (tool: ToolName) => path.join(dirs[tool]!, 'oci');
        const ours = await readLayoutImage(await dirOf('builder'));
        for (const ref of ['buildah', 'kaniko'] as const) {
          if (!outcomes[ref]?.ok) continue;
          diffs[ref] = compare(ours, await readLayoutImage(await dirOf(ref)), ref);
        }
      }
      return { name, bases, tools: outcomes, diffs };
    };
    await Promise.all(Array.from({ length: o.jobs }, worker));
    results.sort((a, b) => a.name.localeCompare(b.name));
    const partial = o.only !== undefined;
    await writeFile(path.join(cacheRoot, 'results.json'), JSON.stringify(results, null, 1));
    await writeReport(path.join(repoRoot, 'docs/conformance.md'), results, { partial, total: names.length });
    console.log(`[conformance] wrote docs/conformance.md (${results.length} Dockerfiles)`);
  } finally {
    await reg.stop();
    await unmountUnder(work);
    await rm(work, { recursive: true, force: true });
  }
}

async function buildBuilder(j: Job): Promise<number> {
  return exec('node', [path.join(repoRoot, 'bin/builder'), '--context', path.join(j.ctx, j.sub), '--dockerfile', j.dockerfile, '--no-push',
    '--oci-layout-path', j.out, '--insecure', '--run-mode', 'sandbox', '--cache-dir', path.join(cacheRoot, 'builder-cache'),
    '--work-dir', path.join(path.dirname(j.ctx), 'work'), ...j.buildArgs, ...(j.target ? ['--target', j.target] : [])],
  { env: j.env, timeoutMs: TIMEOUT.ms, log: j.log });
}

async function buildBuildah(j: Job): Promise<number> {
  const conf = path.join(cacheRoot, 'buildah-conf');
  const g = ['--root', path.join(cacheRoot, 'buildah/root'), '--runroot', path.join(cacheRoot, 'buildah/runroot'), '--storage-driver', 'vfs'];
  const env = { ...j.env, BUILDAH_ISOLATION: 'chroot', CONTAINERS_REGISTRIES_CONF: path.join(conf, 'registries.conf'), REGISTRY_AUTH_FILE: path.join(conf, 'auth.json') };
  const tag = `localhost/conformance/${j.name.toLowerCase()}:latest`;
  let code = await exec('buildah', [...g, 'bud', '--isolation', 'chroot', '--tls-verify=false', '-f', j.dockerfile, '-t', tag,
    ...j.buildArgs, ...(j.target ? ['--target', j.target] : []), path.join(j.ctx, j.sub)], { env, timeoutMs: TIMEOUT.ms, log: j.log });
  if (code === 0) code = await exec('buildah', [...g, 'push', tag, `oci:${j.out}:img`], { env, timeoutMs: TIMEOUT.ms, log: j.log });
  await exec('buildah', [...g, 'rmi', '-f', tag], { env, timeoutMs: 120_000, log: [] });
  return code;
}

/**
 * kaniko builds into "/": a throwaway root per build (../shared/anchors/README.md), chrooted in a private mount and
 * pid namespace (--kill-child: nothing outlives a timeout); the context bind-mounted onto itself so kaniko keeps it.
 */
async function buildKaniko(j: Job, root: string): Promise<number> {
  await rm(root, { recursive: true, force: true });
  for (const d of ['kaniko', 'proc', 'dev', 'workspace', 'etc', 'tmp']) await mkdir(path.join(root, d), { recursive: true });
  await writeFile(path.join(root, 'kaniko/executor'), '');
  await writeFile(path.join(root, 'etc/resolv.conf'), '');
  const rel = path.relative(j.ctx, j.dockerfile);
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const devs = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];
  const script = [
    'set -e', `R=${q(root)}`,
    'mount -t proc proc "$R/proc"', 'mount -t tmpfs -o mode=755 dev "$R/dev"',
    ...devs.map((d) => `touch "$R/dev/${d}" && mount --bind /dev/${d} "$R/dev/${d}"`),
    `mount --bind ${q(kanikoExe)} "$R/kaniko/executor"`,
    `mount --bind ${q(j.ctx)} "$R/workspace"`,
    `exec chroot "$R" /kaniko/executor --force --context ${q(`dir:///workspace${j.sub ? `/${j.sub}` : ''}`)} --dockerfile ${q(`/workspace/${rel}`)} --no-push` +
      ` --oci-layout-path /kaniko/out --insecure-pull --skip-tls-verify-pull ${j.buildArgs.map(q).join(' ')}${j.target ? ` --target ${q(j.target)}` : ''}`,
  ].join('\n');
  const code = await exec('unshare', ['--mount', '--pid', '--kill-child', '--propagation', 'private', 'sh', '-c', script],
    { env: j.env, timeoutMs: TIMEOUT.ms, log: j.log });
  await unmountUnder(root);
  if (code === 0) await cp(path.join(root, 'kaniko/out'), j.out, { recursive: true });
  await rm(root, { recursive: true, force: true });
  return code;
}

const TIMEOUT = { ms: 420_000 };

const opts = process.argv.slice(2);
const ti = opts.indexOf('--timeout');
if (ti >= 0) TIMEOUT.ms = Number(opts[ti + 1]) * 1000;
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
