// Issue 11 item 6: the Dockerfile (and its ignore file) is read only from inside the context or working directory when a
// symlink leads there, is a regular text file, and errors name it without ever quoting it.
import { execFileSync } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openContext, type BuildContext } from '../../src/context/index.js';
import { errorOf, tempDir, writeTree } from './helpers.js';

const SECRET = 'root:$6$SECRET-HASH-LINE:19000:0:99999:7:::';

let work: string;
let host: string;
let cleanups: Array<() => Promise<void>> = [];
const opened: BuildContext[] = [];

beforeEach(async () => {
  const [w, h] = await Promise.all([tempDir(), tempDir()]);
  work = w.dir;
  host = h.dir;
  cleanups = [w.cleanup, h.cleanup];
  // A host file outside both the working directory and the context, standing for /etc/shadow or a CI secret.
  await writeFile(path.join(host, 'shadow'), `${SECRET}\nmore\n`);
  await writeTree(work, { 'ctx/a.txt': 'a' });
});
afterEach(async () => {
  for (const c of opened.splice(0)) await c.close();
  for (const c of cleanups) await c();
});

async function open(dockerfile: string, cwd = work): Promise<BuildContext> {
  const ctx = await openContext('ctx', { cwd, tmpDir: path.join(work, 'tmp'), dockerfile });
  opened.push(ctx);
  return ctx;
}

async function refused(dockerfile: string, code: string, names: string): Promise<void> {
  const err = await errorOf(open(dockerfile));
  expect(err).toMatchObject({ code });
  const text = `${err.message}\n${(err as { hint?: string }).hint ?? ''}`;
  expect(text).toContain(names);
  expect(text).not.toContain('SECRET');
}

describe('Dockerfile symlinks and odd files', () => {
  it('a Dockerfile in the context symlinked to a host file is refused, naming the file, never quoting it', async () => {
    await symlink(path.join(host, 'shadow'), path.join(work, 'ctx/Dockerfile'));
    await refused('Dockerfile', 'DOCKERFILE_OUTSIDE_CONTEXT', path.join(host, 'shadow'));
  });

  it('a relative symlink climbing out ("../../../shadow") is refused the same way', async () => {
    await symlink(path.relative(path.join(work, 'ctx'), path.join(host, 'shadow')), path.join(work, 'ctx/Dockerfile'));
    await refused('Dockerfile', 'DOCKERFILE_OUTSIDE_CONTEXT', path.join(host, 'shadow'));
  });

  it('a directory symlink in the working directory leading out (ci -> host dir, --dockerfile ci/shadow) is refused', async () => {
    await symlink(host, path.join(work, 'ci'));
    await refused('ci/shadow', 'DOCKERFILE_OUTSIDE_CONTEXT', host);
  });

  it('a Dockerfile symlinked to /proc/self/environ (regular-looking, holds the CI secrets) is refused', async () => {
    await symlink('/proc/self/environ', path.join(work, 'ctx/Dockerfile'));
    await refused('Dockerfile', 'DOCKERFILE_OUTSIDE_CONTEXT', '/proc/');
  });

  it('a symlink that stays inside the context (Dockerfile -> docker/Dockerfile.prod) is followed', async () => {
    await writeTree(work, { 'ctx/docker/Dockerfile.prod': 'FROM scratch\n' });
    await symlink('docker/Dockerfile.prod', path.join(work, 'ctx/Dockerfile'));
    const ctx = await open('Dockerfile');
    expect(ctx.dockerfilePath).toBe(path.join(work, 'ctx/Dockerfile'));
  });

  it('a Dockerfile named directly outside the context (the caller chose it) is read, also through a symlink outside the context', async () => {
    await writeFile(path.join(host, 'Dockerfile'), 'FROM scratch\n');
    await symlink(host, path.join(host, '..', `${path.basename(host)}-alias`));
    try {
      expect((await open(path.join(host, 'Dockerfile'))).dockerfilePath).toBe(path.join(host, 'Dockerfile'));
      const alias = path.join(host, '..', `${path.basename(host)}-alias`, 'Dockerfile');
      expect((await open(alias)).dockerfilePath).toBe(alias);
    } finally {
      execFileSync('rm', ['-f', path.join(host, '..', `${path.basename(host)}-alias`)]);
    }
  });

  it('a Dockerfile that is a FIFO (a read would block forever) is refused as not a regular file', async () => {
    execFileSync('mkfifo', [path.join(work, 'ctx/Dockerfile')]);
    await refused('Dockerfile', 'DOCKERFILE_NOT_A_FILE', 'FIFO');
  });

  it('a Dockerfile that is a directory is refused as not a regular file', async () => {
    await mkdir(path.join(work, 'ctx/Dockerfile'));
    await refused('Dockerfile', 'DOCKERFILE_NOT_A_FILE', 'directory');
  });

  it('a binary Dockerfile (NUL bytes) is refused without quoting it', async () => {
    await writeFile(path.join(work, 'ctx/Dockerfile'), Buffer.concat([Buffer.from(`${SECRET}\n`), Buffer.from([0, 1, 2])]));
    await refused('Dockerfile', 'DOCKERFILE_NOT_TEXT', 'ctx/Dockerfile');
  });

  it('a .dockerignore symlinked to a host file is refused, never quoted', async () => {
    await writeTree(work, { 'ctx/Dockerfile': 'FROM scratch\n' });
    await symlink(path.join(host, 'shadow'), path.join(work, 'ctx/.dockerignore'));
    await refused('Dockerfile', 'DOCKERFILE_OUTSIDE_CONTEXT', '.dockerignore');
  });
});

describe('Dockerfile symlinks, whatever the working directory (issue 18 item 6)', () => {
  async function openAt(cwd: string, dockerfile: string): Promise<BuildContext> {
    const ctx = await openContext(path.join(work, 'ctx'), { cwd, tmpDir: path.join(work, 'tmp'), dockerfile });
    opened.push(ctx);
    return ctx;
  }

  it.each(['/', 'home'])('from cwd %s, a context Dockerfile linked to a file beside the context is refused', async (where) => {
    // "home" holds the context and the secret, as $HOME holds a checkout and ~/.docker/config.json
    const cwd = where === '/' ? '/' : work;
    await writeFile(path.join(work, 'config.json'), `${SECRET}\n`);
    await symlink('../config.json', path.join(work, 'ctx/Dockerfile'));
    const err = await errorOf(openAt(cwd, 'Dockerfile'));
    expect(err).toMatchObject({ code: 'DOCKERFILE_OUTSIDE_CONTEXT' });
    expect(err.message).toContain(path.join(work, 'config.json'));
    expect(err.message).toContain('outside the build context');
    expect(`${err.message}\n${(err as { hint?: string }).hint}`).not.toContain('SECRET');
  });

  it('named through the working directory (cwd /, --dockerfile path/to/ctx/Dockerfile) it is refused the same way', async () => {
    await writeFile(path.join(work, 'config.json'), `${SECRET}\n`);
    await symlink('../config.json', path.join(work, 'ctx/Dockerfile'));
    const err = await errorOf(openAt('/', path.relative('/', path.join(work, 'ctx/Dockerfile'))));
    expect(err).toMatchObject({ code: 'DOCKERFILE_OUTSIDE_CONTEXT' });
  });

  it('from a working directory inside the context, a link to another file of the context is followed', async () => {
    await writeTree(work, { 'ctx/Dockerfile.base': 'FROM scratch\n', 'ctx/sub/x': 'x' });
    await symlink('../Dockerfile.base', path.join(work, 'ctx/sub/Dockerfile'));
    const ctx = await openAt(path.join(work, 'ctx/sub'), 'Dockerfile');
    expect(ctx.dockerfilePath).toBe(path.join(work, 'ctx/sub/Dockerfile'));
  });
});
