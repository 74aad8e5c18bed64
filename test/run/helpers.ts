// Test fixtures for src/run: a busybox build root in a temp dir, tree listings, output collectors.

import { execFileSync } from 'node:child_process';
import { chmod, copyFile, lstat, mkdir, mkdtemp, readdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { OutputStream } from '../../src/run/index.js';

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
