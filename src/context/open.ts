// Opening a build context (dir, dir://, tar://file, tar://stdin) with its sub-path and the .dockerignore that applies.
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, realpath, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BuilderError } from '../errors.js';
import { checkTextFile, locateDockerfile, resolveInside } from './dockerfile.js';
import { goClean } from './gopath.js';
import { PatternMatcher, parseIgnoreFile } from './ignore.js';
import { extractTarContext } from './tar.js';

export interface OpenContextOptions {
  /** Directory relative specs and a relative Dockerfile path are resolved against. */
  cwd: string;
  /** --context-sub-path: a directory inside the context that becomes the context. */
  subPath?: string;
  /** --dockerfile as the user gave it: `<Dockerfile>.dockerignore` next to it wins over `.dockerignore`. */
  dockerfile?: string;
  /** The stream `tar://stdin` reads. */
  stdin?: Readable;
  /** Where tar contexts are extracted (a fresh directory inside it); nothing is written elsewhere. */
  tmpDir: string;
}

export interface BuildContext {
  /** The spec as given. */
  readonly spec: string;
  readonly kind: 'dir' | 'tar';
  /** Absolute real path of the context root, sub-path applied. Read-only for everyone. */
  readonly dir: string;
  /** Absolute path of the Dockerfile if found (cwd first, then the context, as kaniko does). */
  readonly dockerfilePath: string | undefined;
  /** Absolute path of the ignore file in effect, if any. */
  readonly ignoreFile: string | undefined;
  /** The cleaned patterns in effect (`!` kept on exceptions). */
  readonly ignorePatterns: readonly string[];
  /** True when the ignore file has `!` exceptions (excluded directories may hold included files). */
  readonly hasIgnoreExceptions: boolean;
  /** Docker's rule: the path (relative to the context, `/`-separated) or a parent is excluded. */
  isIgnored(relPath: string): boolean;
  /** Whether an excluded directory may still contain re-included paths (so walks must enter it). */
  mayReincludeUnder(relDir: string): boolean;
  /** Removes an extracted tar context; a no-op for directories. Idempotent. */
  close(): Promise<void>;
}

const SCHEME_RE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s;

/** Opens the build context named by `spec` (DIR, dir://DIR, tar://FILE[.gz], tar://stdin). */
export async function openContext(spec: string, opts: OpenContextOptions): Promise<BuildContext> {
  const m = SCHEME_RE.exec(spec);
  const scheme = m ? m[1]!.toLowerCase() : 'dir';
  const rest = m ? m[2]! : spec;
  switch (scheme) {
    case 'dir':
      return finish(spec, 'dir', await openDir(rest, spec, opts.cwd), opts, undefined);
    case 'tar':
      return openTar(spec, rest, opts);
    default:
      throw unsupported(spec, scheme);
  }
}

async function openDir(p: string, spec: string, cwd: string): Promise<string> {
  const abs = path.resolve(cwd, p === '' ? '.' : p);
  const st = await stat(abs).catch(() => undefined);
  if (!st) {
    throw new BuilderError('CONTEXT_NOT_FOUND', `build context ${spec}: directory ${abs} does not exist`, {
      hint: 'pass --context with an existing directory (relative paths are resolved against the working directory)',
    });
  }
  if (!st.isDirectory()) {
    throw new BuilderError('CONTEXT_NOT_FOUND', `build context ${spec}: ${abs} is not a directory`, {
      hint: 'for an archive use --context tar://FILE (.tar or .tar.gz)',
    });
  }
  return realpath(abs);
}

async function openTar(spec: string, p: string, opts: OpenContextOptions): Promise<BuildContext> {
  let input: Readable;
  if (p === 'stdin') {
    if (!opts.stdin) {
      throw new BuilderError('CONTEXT_INVALID', `build context ${spec}: no standard input stream was provided`, {
        hint: 'pipe the archive into the builder, e.g. tar -cz -C DIR . | builder --context tar://stdin ...',
      });
    }
    input = opts.stdin;
  } else {
    const abs = path.resolve(opts.cwd, p);
    const st = await stat(abs).catch(() => undefined);
    if (!st || !st.isFile()) {
      throw new BuilderError('CONTEXT_NOT_FOUND', `build context ${spec}: archive ${abs} ${st ? 'is not a file' : 'does not exist'}`, {
        hint: 'pass --context tar://PATH with an existing .tar or .tar.gz file (relative to the working directory)',
      });
    }
    input = createReadStream(abs);
  }
  await mkdir(opts.tmpDir, { recursive: true });
  const dest = await mkdtemp(path.join(opts.tmpDir, 'context-'));
  const cleanup = () => rm(dest, { recursive: true, force: true });
  try {
    await extractTarContext(input, dest, `build context ${spec}`);
    return await finish(spec, 'tar', await realpath(dest), opts, cleanup);
  } catch (err) {
    if (input !== opts.stdin) input.destroy();
    await cleanup();
    throw err;
  }
}

async function finish(
  spec: string,
  kind: 'dir' | 'tar',
  root: string,
  opts: OpenContextOptions,
  cleanup: (() => Promise<void>) | undefined,
): Promise<BuildContext> {
  const dir = opts.subPath ? await applySubPath(root, opts.subPath, spec) : root;
  const dockerfilePath = await findDockerfile(opts.dockerfile, opts.cwd, dir);
  const ignoreFile = await findIgnoreFile(dockerfilePath, dir, opts.cwd);
  let patterns: string[] = [];
  if (ignoreFile) {
    const text = await readFile(ignoreFile, 'utf8').catch((err: unknown) => {
      throw new BuilderError('CONTEXT_IGNORE_UNREADABLE', `cannot read ignore file ${ignoreFile}: ${(err as Error).message}`, {
        hint: 'make the file readable or remove it',
        cause: err,
      });
    });
    patterns = parseIgnoreFile(text);
  }
  const matcher = new PatternMatcher(patterns, ignoreFile ?? '.dockerignore');
  let closed = false;
  return {
    spec,
    kind,
    dir,
    dockerfilePath,
    ignoreFile,
    ignorePatterns: matcher.list(),
    hasIgnoreExceptions: matcher.hasExclusions,
    isIgnored: (rel: string) => matcher.matches(contextRel(rel)),
    mayReincludeUnder: (rel: string) => matcher.mayReincludeUnder(contextRel(rel)),
    close: async () => {
      if (closed || !cleanup) return;
      closed = true;
      await cleanup();
    },
  };
}

/** A path as seen from the context root: leading `/` and `..` cannot leave it, like Docker's sources. */
export function contextRel(p: string): string {
  const cleaned = goClean(`/${p}`);
  return cleaned === '/' ? '.' : cleaned.slice(1);
}

async function applySubPath(root: string, subPath: string, spec: string): Promise<string> {
  const cleaned = goClean(subPath.replace(/^\/+/, ''));
  if (cleaned === '..' || cleaned.startsWith('../')) {
    throw new BuilderError('CONTEXT_SUBPATH_INVALID', `--context-sub-path "${subPath}" leaves the build context ${spec}`, {
      hint: 'give a directory inside the context, relative to its root, e.g. --context-sub-path services/api',
    });
  }
  const abs = path.join(root, cleaned);
  const st = await stat(abs).catch(() => undefined);
  if (!st || !st.isDirectory()) {
    throw new BuilderError('CONTEXT_NOT_FOUND', `--context-sub-path "${subPath}": ${cleaned} is not a directory in the build context ${spec}`, {
      hint: 'check the sub-path is relative to the context root and names a directory',
    });
  }
  const real = await realpath(abs);
  // A symlinked sub-path may not lead out of the context.
  if (real !== root && !real.startsWith(`${root}/`)) {
    throw new BuilderError('CONTEXT_SUBPATH_INVALID', `--context-sub-path "${subPath}" resolves through a symlink to ${real}, outside the build context ${spec}`, {
      hint: 'give a real directory inside the context',
    });
  }
  return real;
}

async function findDockerfile(dockerfile: string | undefined, cwd: string, dir: string): Promise<string | undefined> {
  if (!dockerfile) return undefined;
  return locateDockerfile(dockerfile, { cwd, contextDir: dir });
}

/** `<Dockerfile>.dockerignore` next to the Dockerfile, else the context's `.dockerignore`; a symlink may not leave the context. */
async function findIgnoreFile(dockerfilePath: string | undefined, dir: string, cwd: string): Promise<string | undefined> {
  const candidates = [
    ...(dockerfilePath ? [path.join(path.dirname(dockerfilePath), `${path.basename(dockerfilePath)}.dockerignore`)] : []),
    path.join(dir, '.dockerignore'),
  ];
  const areas = { context: dir, cwd: await realpath(cwd).catch(() => path.resolve(cwd)) };
  for (const c of candidates) {
    const real = await resolveInside(c, areas, 'ignore file');
    if (real === undefined) continue;
    const st = await stat(real).catch(() => undefined);
    if (st?.isFile()) {
      await checkTextFile(c, real, 'ignore file');
      return c;
    }
  }
  return undefined;
}

function unsupported(spec: string, scheme: string): BuilderError {
  const hints: Record<string, string> = {
    git: 'clone the repository first (git clone --depth 1 URL DIR) and pass --context DIR',
    s3: 'download the archive first (aws s3 cp s3://BUCKET/ctx.tar.gz .) and pass --context tar://ctx.tar.gz',
    gs: 'download the archive first (gsutil cp gs://BUCKET/ctx.tar.gz .) and pass --context tar://ctx.tar.gz',
    https: 'download the archive first (curl -fLo ctx.tar.gz URL) and pass --context tar://ctx.tar.gz',
    http: 'download the archive first (curl -fLo ctx.tar.gz URL) and pass --context tar://ctx.tar.gz',
  };
  return new BuilderError('CONTEXT_UNSUPPORTED', `build context ${spec}: the ${scheme}:// context source is not supported`, {
    hint: hints[scheme] ?? 'supported contexts are DIR, dir://DIR, tar://FILE (.tar or .tar.gz) and tar://stdin; fetch the context yourself and pass a directory or archive',
  });
}
