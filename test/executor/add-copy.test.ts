// ADD archives and URLs, COPY --exclude/--parents/--link/--chown, hardlinks: end to end through the CLI, checked against
// expectations written by hand from BuildKit's code and tests (frontend/dockerfile/*_test.go, solver/llbsolver/file).
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { lstat, readFile, readdir, readlink, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusybox } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { skopeoInspect } from '../support/tools.js';
import { compileIfStale, Workspace } from './helpers.js';

/** Writes a tar with python's tarfile (exact names, owners, links, and hostile names GNU tar refuses to write). */
function makeTar(file: string, entries: Array<{ name: string; type?: 'file' | 'dir' | 'symlink' | 'link'; content?: string; mode?: number; uid?: number; gid?: number; link?: string }>): void {
  const script = `
import io, json, sys, tarfile
entries = json.loads(sys.argv[2])
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:
    for e in entries:
        ti = tarfile.TarInfo(e['name'])
        ti.mode = e.get('mode', 0o644)
        ti.uid = e.get('uid', 0)
        ti.gid = e.get('gid', 0)
        ti.mtime = 1000000000
        kind = e.get('type', 'file')
        data = None
        if kind == 'dir':
            ti.type = tarfile.DIRTYPE
        elif kind == 'symlink':
            ti.type = tarfile.SYMTYPE; ti.linkname = e['link']
        elif kind == 'link':
            ti.type = tarfile.LNKTYPE; ti.linkname = e['link']
        else:
            data = e.get('content', '').encode(); ti.size = len(data)
        t.addfile(ti, io.BytesIO(data) if data is not None else None)
`;
  execFileSync('python3', ['-c', script, file, JSON.stringify(entries)]);
}

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

describe('ADD and COPY flags (BuildKit semantics)', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  let server: http.Server;
  let web: string;
  const served = new Map<string, { body: Buffer; lastModified?: string }>();

  beforeAll(async () => {
    [reg, ws] = await Promise.all([startRegistry({ mode: 'plain' }), Workspace.create('builder-addcopy-'), compileIfStale()]);
    base = await pushBusybox(reg, 'library/busybox', 'latest', 'v2s2');
    server = http.createServer((req, res) => {
      const f = served.get(req.url ?? '');
      if (!f) {
        res.writeHead(404).end('not found');
        return;
      }
      res.writeHead(200, { 'Content-Length': f.body.length, ...(f.lastModified ? { 'Last-Modified': f.lastModified } : {}) }).end(f.body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    web = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server?.close(r));
    await reg?.stop();
    await ws?.remove();
  });

  const build = async (name: string, dockerfile: string, files: Record<string, string | { content: string; mode: number }> = {}, prepare?: (ctx: string) => void) => {
    const ctx = await ws.context(`ctx-${name}`, { Dockerfile: dockerfile.replaceAll('@BASE@', base), ...files });
    prepare?.(ctx);
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--destination', `${reg.host}/addcopy/${name}:latest`], { work: ws.path(`work-${name}`) });
    return { ...r, ctx };
  };
  const buildOk = async (...a: Parameters<typeof build>): Promise<string> => {
    const r = await build(...a);
    if (r.code !== 0) throw new Error(`build ${a[0]} exited ${r.code}\n${r.stderr}`);
    return ws.unpack(reg, `addcopy/${a[0]}:latest`, a[0]);
  };

  it('ADD extracts local tar archives recognised by their bytes (plain, gzip, bzip2, xz, zstd), merging into the destination', async () => {
    const root = await buildOk('archives', [
      'FROM @BASE@',
      'RUN mkdir -p /x/keep && echo existing > /x/keep/old && echo replaced > /x/over',
      'ADD plain.bin /x',
      // a ".wh." file cannot be stored in a layer (every reader takes it for a whiteout): checked during the build
      'RUN cat /x/.wh.over > /wh-seen && rm /x/.wh.over',
      'ADD gz.data bz.data xz.data zst.data /y/',
      'ADD --chown=1234:5678 owned.tar /z/',
      'ADD notatar.gz fake.tar /files/',
      'ADD --unpack=false plain.bin /kept/',
    ].join('\n'), {}, (ctx) => {
      makeTar(path.join(ctx, 'plain.bin'), [
        { name: 'keep/', type: 'dir', mode: 0o750 },
        { name: 'keep/new', content: 'new\n', uid: 42, gid: 43 },
        { name: 'over', content: 'from tar\n', mode: 0o600 },
        { name: '.wh.over', content: 'not a whiteout\n' },
        { name: 'hard', type: 'link', link: 'keep/new' },
        { name: 'sym', type: 'symlink', link: '/etc/passwd' },
      ]);
      for (const [prog, out] of [['gzip', 'gz.data'], ['bzip2', 'bz.data'], ['xz', 'xz.data'], ['zstd', 'zst.data']] as const) {
        makeTar(path.join(ctx, `${out}.tar`), [{ name: `from-${prog}.txt`, content: `${prog}\n` }]);
        execFileSync('sh', ['-c', `${prog} -c < "$1" > "$2" && rm "$1"`, 'sh', path.join(ctx, `${out}.tar`), path.join(ctx, out)]);
      }
      makeTar(path.join(ctx, 'owned.tar'), [{ name: 'd/', type: 'dir' }, { name: 'd/f', content: 'f\n', uid: 7, gid: 7 }]);
      execFileSync('sh', ['-c', 'echo "just text" | gzip -c > "$1"', 'sh', path.join(ctx, 'notatar.gz')]);
      execFileSync('sh', ['-c', 'echo "named like a tar" > "$1"', 'sh', path.join(ctx, 'fake.tar')]);
    });
    // merged: what was there stays, the archive's entries are added or replace files
    expect(await readFile(path.join(root, 'x/keep/old'), 'utf8')).toBe('existing\n');
    expect(await readFile(path.join(root, 'x/keep/new'), 'utf8')).toBe('new\n');
    expect(await readFile(path.join(root, 'x/over'), 'utf8')).toBe('from tar\n');
    const kept = await stat(path.join(root, 'x/keep/new'));
    expect([kept.uid, kept.gid]).toEqual([42, 43]);
    expect((await stat(path.join(root, 'x/keep'))).mode & 0o7777).toBe(0o750);
    expect((await stat(path.join(root, 'x/over'))).mode & 0o7777).toBe(0o600);
    expect(kept.mtime.getTime()).toBe(1000000000 * 1000);
    // .wh. names are plain files for ADD (moby's Untar has no whiteout converter for it)
    expect(await readFile(path.join(root, 'wh-seen'), 'utf8')).toBe('not a whiteout\n');
    expect((await stat(path.join(root, 'x/hard'))).ino).toBe(kept.ino);
    expect(await readlink(path.join(root, 'x/sym'))).toBe('/etc/passwd');
    for (const prog of ['gzip', 'bzip2', 'xz', 'zstd']) expect(await readFile(path.join(root, `y/from-${prog}.txt`), 'utf8')).toBe(`${prog}\n`);
    // --chown applies to every extracted entry (moby's ChownOpts); the destination is created owned by it too
    for (const p of ['z', 'z/d', 'z/d/f']) {
      const st = await lstat(path.join(root, p));
      expect([p, st.uid, st.gid]).toEqual([p, 1234, 5678]);
    }
    // a compressed file that is not a tar, and a file named .tar that is not one, are copied as they are
    expect(execFileSync('sh', ['-c', 'gzip -dc < "$1"', 'sh', path.join(root, 'files/notatar.gz')]).toString()).toBe('just text\n');
    expect(await readFile(path.join(root, 'files/fake.tar'), 'utf8')).toBe('named like a tar\n');
    // --unpack=false keeps the archive a file
    expect((await stat(path.join(root, 'kept/plain.bin'))).isFile()).toBe(true);
  }, 180_000);

  it('ADD of an archive keeps entries that climb with ".." or absolute symlinks inside the destination', async () => {
    const root = await buildOk('escape', [
      'FROM @BASE@',
      'ADD evil.tar /dest/',
    ].join('\n'), {}, (ctx) => {
      makeTar(path.join(ctx, 'evil.tar'), [
        { name: '../../escaped.txt', content: 'climbed\n' },
        { name: 'etc-link', type: 'symlink', link: '/etc' },
        { name: 'etc-link/written-through', content: 'through a symlink\n' },
      ]);
    });
    expect(await readFile(path.join(root, 'dest/escaped.txt'), 'utf8')).toBe('climbed\n');
    await expect(lstat(path.join(root, 'escaped.txt'))).rejects.toThrow();
    await expect(lstat(path.join(root, 'etc/written-through'))).rejects.toThrow();
    // the absolute symlink is resolved with the destination as its root (moby's chrootarchive)
    expect(await readFile(path.join(root, 'dest/etc/written-through'), 'utf8')).toBe('through a symlink\n');
  }, 120_000);

  it('ADD <url> downloads with mode 0600, Last-Modified as mtime, the URL path name, and never extracts', async () => {
    const body = Buffer.from('remote content\n');
    served.set('/files/remote.txt', { body, lastModified: 'Wed, 21 Oct 2015 07:28:00 GMT' });
    served.set('/files/tree.tar', { body: Buffer.from('') });
    served.set('/', { body: Buffer.from('index\n') });
    const tarFile = ws.path('remote.tar');
    makeTar(tarFile, [{ name: 'inside.txt', content: 'x\n' }]);
    served.set('/files/tree.tar', { body: await readFile(tarFile) });
    const root = await buildOk('url', [
      'FROM @BASE@',
      `ADD ${web}/files/remote.txt /dl/`,
      `ADD --chmod=644 --checksum=sha256:${sha256(body)} ${web}/files/remote.txt /dl/renamed.txt`,
      `ADD ${web}/files/tree.tar /dl/`,
      `ADD ${web}/ /dl/`,
      `ADD --chown=app ${web}/files/remote.txt /dl/owned`,
    ].join('\n'));
    const st = await stat(path.join(root, 'dl/remote.txt'));
    expect(await readFile(path.join(root, 'dl/remote.txt'), 'utf8')).toBe('remote content\n');
    expect(st.mode & 0o7777).toBe(0o600);
    expect(st.mtime.toISOString()).toBe('2015-10-21T07:28:00.000Z');
    expect((await stat(path.join(root, 'dl/renamed.txt'))).mode & 0o7777).toBe(0o644);
    expect((await stat(path.join(root, 'dl/tree.tar'))).isFile()).toBe(true);
    expect(await readFile(path.join(root, 'dl/__unnamed__'), 'utf8')).toBe('index\n');
    const owned = await stat(path.join(root, 'dl/owned'));
    expect([owned.uid, owned.gid]).toEqual([1000, 1000]);
  }, 120_000);

  it('ADD <url> with a wrong --checksum fails with ADD_CHECKSUM_MISMATCH and writes nothing', async () => {
    served.set('/c.txt', { body: Buffer.from('c\n') });
    const r = await build('badsum', `FROM @BASE@\nADD --checksum=sha256:${'0'.repeat(64)} ${web}/c.txt /c.txt\n`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('ADD_CHECKSUM_MISMATCH');
    expect(r.stderr).toContain(`sha256:${sha256('c\n')}`);
  }, 60_000);

  it('ADD of a git repository is refused with ADD_GIT_UNSUPPORTED', async () => {
    for (const src of ['git@github.com:moby/buildkit.git', 'https://github.com/moby/buildkit.git#v0.10.1']) {
      const r = await build('git', `FROM @BASE@\nADD ${src} /src\n`);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('ADD_GIT_UNSUPPORTED');
    }
  }, 60_000);
});
