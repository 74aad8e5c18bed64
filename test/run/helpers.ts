// Test fixtures for src/run: a busybox build root in a temp dir, tree listings, output collectors.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, copyFile, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OutputStream } from '../../src/run/index.js';
import { findChainTools, type SandboxHelper, type SandboxTools } from '../../src/run/sandbox.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const PASSWD = 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app user:/home/app:/bin/sh\n';
export const GROUP = 'root:x:0:\napp:x:1000:\nextra:x:2000:app,other\n';

/** A temp root with a static busybox, its applets as symlinks, /etc/passwd and /etc/group. */
export async function makeBusyboxRoot(opts: { withEtc?: boolean; prefix?: string } = {}): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), opts.prefix ?? 'run-root-'));
  await chmod(root, 0o755); // mkdtemp gives 0700: a non-root step could not even reach /bin.
  await mkdir(path.join(root, 'bin'));
  await copyFile('/bin/busybox', path.join(root, 'bin/busybox'));
  await chmod(path.join(root, 'bin/busybox'), 0o755);
  const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const a of applets) if (a !== 'busybox') await symlink('busybox', path.join(root, 'bin', a));
  await mkdir(path.join(root, 'tmp'), { mode: 0o1777 });
  await chmod(path.join(root, 'tmp'), 0o1777);
  if (opts.withEtc !== false) {
    await mkdir(path.join(root, 'etc'));
    await writeFile(path.join(root, 'etc/passwd'), PASSWD);
    await writeFile(path.join(root, 'etc/group'), GROUP);
  }
  return root;
}

/** Every path under root with its type and (for dirs) mtime, to compare before and after a run. */
export async function listTree(root: string, withMtime = false): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const p = path.join(dir, name);
      const st = await lstat(p);
      const kind = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : 'f';
      out.push(`${kind} ${path.relative(root, p)}${withMtime && kind === 'd' ? ` ${st.mtimeMs}` : ''}`);
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return out;
}

export interface Collected {
  stdout: () => string;
  stderr: () => string;
  chunks: { stream: OutputStream; text: string; at: number }[];
  onOutput: (chunk: Buffer, stream: OutputStream) => void;
}

export function collect(): Collected {
  const chunks: Collected['chunks'] = [];
  return {
    chunks,
    stdout: () => chunks.filter((c) => c.stream === 'stdout').map((c) => c.text).join(''),
    stderr: () => chunks.filter((c) => c.stream === 'stderr').map((c) => c.text).join(''),
    onOutput: (chunk, stream) => chunks.push({ stream, text: chunk.toString('utf8'), at: Date.now() }),
  };
}

/** /proc/PID/stat start time of a live process (undefined when gone or a zombie): tells it from a later one reusing the pid. */
export async function procStart(pid: number): Promise<string | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return f[0] === 'Z' ? undefined : f[19];
}

/** Live processes whose root directory is `root` (a sandboxed step's processes, seen from the host). */
export async function processesInRoot(root: string): Promise<Array<{ pid: number; start: string }>> {
  const out: Array<{ pid: number; start: string }> = [];
  // after pivot_root, /proc/PID/root reads "/" for a step: compare the directory itself (device and inode)
  const want = await stat(root);
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = await stat(`/proc/${name}/root`).catch(() => undefined);
    if (!st || st.dev !== want.dev || st.ino !== want.ino) continue;
    const start = await procStart(Number(name));
    if (start !== undefined) out.push({ pid: Number(name), start });
  }
  return out;
}

/** Polls until cond() holds; throws after ms. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The two ways a sandboxed step starts, for tests that run once with each: builder-sandbox compiled from its source
 * (as scripts/bundle.mjs does) and the sh + util-linux chain it replaces where no C compiler is. Empty when the host
 * lacks the chain's tools (the sandbox tests then skip anyway).
 */
export async function sandboxVariants(): Promise<Array<[string, SandboxTools | SandboxHelper]>> {
  const chain = await findChainTools();
  if ('missing' in chain) return [];
  // One binary per version of the source, renamed into place (test files compile it at once), kept for the next run.
  const source = path.join(REPO, 'scripts/executor-image/builder-sandbox.c');
  const hash = createHash('sha256').update(await readFile(source)).digest('hex').slice(0, 16);
  const helper = path.join(tmpdir(), `builder-sandbox-test-${hash}`);
  if (!(await stat(helper).then(() => true, () => false))) {
    execFileSync('cc', ['-static', '-O2', '-o', `${helper}.${process.pid}`, source]);
    await rename(`${helper}.${process.pid}`, helper);
  }
  return [['builder-sandbox', { helper }], ['the sh chain', chain]];
}
