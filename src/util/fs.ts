// Files that readers see whole: the old content or the new, never half of one; trees removed.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';

/** Writes data to a temp file beside path, then renames it over path (atomic within one filesystem); the temp file never stays. */
export async function writeFileAtomic(path: string, data: string | Buffer, opts: { mode?: number } = {}): Promise<void> {
  // 64 random bits name the temp file apart from any other writer's (no pid: the library reads no process state)
  const tmp = `${path}.tmp-${randomBytes(8).toString('hex')}`;
  try {
    await writeFile(tmp, data, opts.mode !== undefined ? { mode: opts.mode } : {});
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/**
 * Removes a directory tree with coreutils' `rm -rf --one-file-system` (34,500 files: 0.75 s and 0.7 s of CPU, where
 * node's rm took 1.0-1.2 s and 1.6-1.9 s), else, where rm is missing, lacks the option or fails, with node's rm, which
 * reports any error. Runs the host's rm from PATH: never call it once "/" may be an image's (in place).
 */
export async function removeTree(dir: string): Promise<void> {
  const removed = await new Promise<boolean>((resolve) => {
    const child = spawn('rm', ['-rf', '--one-file-system', '--', dir], { stdio: 'ignore' });
    child.once('error', () => resolve(false));
    child.once('close', (code) => resolve(code === 0));
  });
  if (!removed || existsSync(dir)) await rm(dir, { recursive: true, force: true });
}
