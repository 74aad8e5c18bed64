// Shared helpers for the executor's end-to-end tests: the compiled CLI as a child process, contexts, unpacking.
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { TestRegistry } from '../support/registry.js';
import { run, RunError, skopeoCopy, umociUnpack } from '../support/tools.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, await newestMtime(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, (await stat(p)).mtimeMs);
  }
  return newest;
}

/**
 * Compiles the CLI when dist/ is older than src/ (type errors elsewhere do not block emit). Test files run in
 * parallel: a lock dir keeps two of them from rewriting dist/ under each other's running builds.
 */
export async function compileIfStale(): Promise<void> {
  const lock = path.join(os.tmpdir(), 'builder-test-build-tsc.lock');
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      const st = await stat(lock).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 180_000) await rm(lock, { recursive: true, force: true });
      await sleep(200);
    }
  }
  try {
    const built = await stat(path.join(ROOT, 'dist/src/cli/main.js')).then((s) => s.mtimeMs, () => 0);
    if ((await newestMtime(path.join(ROOT, 'src'))) > built) {
      await run('npx', ['tsc', '-p', ROOT], { cwd: ROOT, timeoutMs: 170_000 }).catch(() => undefined);
    }
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A scratch directory with its own cache and work dirs for the CLI; `remove()` cleans up. */
export class Workspace {
  private constructor(readonly dir: string, readonly env: NodeJS.ProcessEnv) {}

  static async create(prefix = 'builder-build-', env: NodeJS.ProcessEnv = {}): Promise<Workspace> {
    const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
    // HOME in the scratch dir: no credentials or caches of the host user leak in.
    return new Workspace(dir, { PATH: process.env.PATH, HOME: dir, ...env });
  }

  path(...p: string[]): string {
    return path.join(this.dir, ...p);
  }

  /** Writes a build context: name -> content (string) or { content, mode }. Returns its directory. */
  async context(name: string, files: Record<string, string | { content: string; mode: number }>): Promise<string> {
    const dir = this.path(name);
    for (const [rel, f] of Object.entries(files)) {
      const p = path.join(dir, rel);
      await mkdir(path.dirname(p), { recursive: true });
      if (typeof f === 'string') await writeFile(p, f);
      else await writeFile(p, f.content, { mode: f.mode });
    }
    return dir;
  }

  /**
   * Runs bin/builder --context CTX ARGS... (as cli() does) with --cache-dir/--work-dir in this workspace (override with
   * `cache`/`work`); never throws for a non-zero exit.
   */
  async build(ctx: string, args: string[], o: { cache?: string; work?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
    return this.cli(['--context', ctx, '--cache-dir', o.cache ?? this.path('cache'), '--work-dir', o.work ?? this.path('work'), ...args], o.env);
  }

  /** Runs bin/builder ARGS... as a program, as users do (its sh line, then the V8 snapshot when fresh); never throws for a non-zero exit. */
  async cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
    try {
      const r = await run(path.join(ROOT, 'bin/builder'), args, { cwd: this.dir, env: { ...this.env, ...env }, timeoutMs: 110_000 });
      return { code: 0, ...r };
    } catch (err) {
      if (err instanceof RunError) return { code: err.exitCode, stdout: err.stdout, stderr: err.stderr };
      throw err;
    }
  }

  /** Like build() but fails the test (with the CLI's output) unless the exit status is 0; returns the digest printed. */
  async buildOk(ctx: string, args: string[], o: { cache?: string; work?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
    const r = await this.build(ctx, args, o);
    if (r.code !== 0) throw new Error(`builder ${args.join(' ')} exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    const digest = r.stdout.trim().split('\n').pop() ?? '';
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error(`builder printed no digest: ${r.stdout}`);
    return digest;
  }

  /** skopeo copy docker://HOST/ref -> oci layout, then umoci unpack; returns the rootfs directory. */
  async unpack(reg: TestRegistry, ref: string, name: string): Promise<string> {
    const layout = this.path(`${name}-layout`);
    await skopeoCopy(`docker://${reg.host}/${ref}`, `oci:${layout}:img`, { reg });
    return umociUnpack(layout, 'img', this.path(`${name}-bundle`));
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** The `"host/repo": [tags]` the registry reports, or [] when the repository does not exist. */
export async function registryTags(reg: TestRegistry, repo: string): Promise<string[]> {
  const res = await fetch(`${reg.url}/v2/${repo}/tags/list`);
  if (res.status === 404) return [];
  if (!res.ok) throw new Error(`tags/list ${repo}: HTTP ${res.status}`);
  return ((await res.json()) as { tags?: string[] | null }).tags ?? [];
}

/**
 * Reads every /proc/PID/cmdline (what `ps` shows any local user) every 50 ms while `during` runs: the command lines
 * holding any of `values`, and how many held `running` (proof the scan saw what it was meant to watch).
 */
export async function commandLinesDuring<T>(values: string[], running: string, during: Promise<T>): Promise<{ seen: string[]; running: number }> {
  let done = false;
  const out = { seen: [] as string[], running: 0 };
  const scan = (async () => {
    while (!done) {
      for (const pid of await readdir('/proc').catch(() => [] as string[])) {
        if (!/^\d+$/.test(pid)) continue;
        const cmd = await readFile(`/proc/${pid}/cmdline`).catch(() => Buffer.alloc(0));
        if (cmd.includes(running)) out.running++;
        if (values.some((v) => cmd.includes(v))) out.seen.push(cmd.toString('utf8').replace(/\0/g, ' '));
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  try {
    await during;
  } finally {
    done = true;
    await scan;
  }
  return out;
}
