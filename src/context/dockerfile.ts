// Finding the Dockerfile and its ignore file without following a symlink planted in the context (or the working directory) out of it.
import { constants as fsc } from 'node:fs';
import { lstat, open, readlink, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { BuilderError } from '../errors.js';

/** Bytes sniffed for NUL, like git's binary heuristic: a Dockerfile is text. */
const SNIFF = 8000;

function inside(p: string, dir: string): boolean {
  return dir === '/' || p === dir || p.startsWith(`${dir}/`);
}

function isErrno(err: unknown, ...codes: string[]): boolean {
  return codes.includes((err as NodeJS.ErrnoException)?.code ?? '');
}

function unreadable(what: string, p: string, err: unknown): BuilderError {
  return new BuilderError('DOCKERFILE_UNREADABLE', `cannot read ${what} ${p}: ${(err as NodeJS.ErrnoException)?.code ?? String(err)}`, {
    hint: 'check the path and its permissions',
    cause: err,
  });
}

/** The directories whose content comes from the change being built: the context (real path) and the working directory. */
export interface Areas {
  context: string;
  cwd: string;
}

/** The area a symlink at `link` must resolve inside: the context for a link in it (from any working directory), else the working directory holding it. */
function areaOf(link: string, areas: Areas): { dir: string; name: string } | undefined {
  if (inside(link, areas.context)) return { dir: areas.context, name: `the build context ${areas.context}` };
  if (inside(link, areas.cwd)) return { dir: areas.cwd, name: `the working directory ${areas.cwd}` };
  return undefined;
}

/**
 * Resolves `p` component by component. A symlink that lives inside the context must resolve inside the context, as
 * BuildKit reads the Dockerfile through the context, whatever the working directory (`/` and $HOME hold every
 * secret); one in the working directory outside the context must stay in the working directory; symlinks elsewhere
 * (e.g. /tmp -> /private/tmp) are followed freely. Returns the real path, or undefined when it does not exist.
 */
export async function resolveInside(p: string, areas: Areas, what: string): Promise<string | undefined> {
  const parts = path.resolve(p).split('/').filter(Boolean);
  let cur = '/';
  for (let i = 0; i < parts.length; i++) {
    const next = path.join(cur, parts[i]!);
    let st;
    try {
      st = await lstat(next);
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
      throw unreadable(what, p, err);
    }
    if (!st.isSymbolicLink()) {
      cur = next;
      continue;
    }
    let target: string;
    try {
      target = await realpath(next);
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR', 'ELOOP')) return undefined;
      throw unreadable(what, p, err);
    }
    const area = areaOf(next, areas);
    if (area && !inside(target, area.dir)) {
      // The link text is the user's own content; the resolved path names a file, never its content.
      throw new BuilderError('DOCKERFILE_OUTSIDE_CONTEXT', `${what} ${p}: ${next} is a symlink (to "${await readlink(next).catch(() => '?')}") that leads to ${target}, outside ${area.name}`, {
        hint: 'a Dockerfile or ignore file in the build context may link only to files inside it (BuildKit reads it through the context); copy the file into the context, or pass its real path with --dockerfile',
      });
    }
    cur = target;
  }
  return cur;
}

/**
 * The Dockerfile to read: --dockerfile against the working directory first, then the context (kaniko's order).
 * Refuses one reached through a symlink out of the context (or out of the working directory, for a link there), one that is not a regular file,
 * and one that is not text, naming the file and never quoting it (it could be a host secret on its way to CI logs).
 */
export async function locateDockerfile(dockerfile: string, opts: { cwd: string; contextDir: string }): Promise<string | undefined> {
  const candidates = path.isAbsolute(dockerfile) ? [dockerfile] : [path.resolve(opts.cwd, dockerfile), path.join(opts.contextDir, dockerfile)];
  const areas = { context: opts.contextDir, cwd: await realpath(opts.cwd).catch(() => path.resolve(opts.cwd)) };
  for (const c of candidates) {
    const real = await resolveInside(c, areas, 'Dockerfile');
    if (real === undefined) continue;
    await checkTextFile(c, real, 'Dockerfile');
    return c;
  }
  return undefined;
}

/** A regular file without NUL bytes in its first SNIFF bytes. */
export async function checkTextFile(named: string, real: string, what: string): Promise<void> {
  const st = await stat(real);
  if (!st.isFile()) {
    const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : 'not a regular file';
    throw new BuilderError('DOCKERFILE_NOT_A_FILE', `${what} ${named}${real !== named ? ` (${real})` : ''} is ${kind}, not a regular file`, {
      hint: `pass --dockerfile with the path of a text file${what === 'Dockerfile' ? '' : ', or remove it'}`,
    });
  }
  const fh = await open(real, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    const buf = Buffer.alloc(Math.min(SNIFF, st.size));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (buf.subarray(0, bytesRead).includes(0)) {
      throw new BuilderError('DOCKERFILE_NOT_TEXT', `${what} ${named}${real !== named ? ` (${real})` : ''} is not a text file (it contains NUL bytes); its content is not shown`, {
        hint: `check --dockerfile names the ${what}, not a binary or data file`,
      });
    }
  } finally {
    await fh.close();
  }
}
