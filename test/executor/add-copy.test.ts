// ADD archives and URLs, COPY --exclude/--parents/--link/--chown, hardlinks: end to end through the CLI, checked against
// expectations written by hand from BuildKit's code and tests (frontend/dockerfile/*_test.go, solver/llbsolver/file).
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { lstat, readFile, readdir, readlink, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { skopeoInspect } from '../support/tools.js';
import { Workspace } from './helpers.js';

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

  useFixture({ prefix: 'builder-addcopy-' }, (f) => ({ reg, ws, base } = f));
  beforeAll(async () => {
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

  it('ADD of an archive with a ".wh." entry extracts a plain file, which no layer can carry: the step fails', async () => {
    const r = await build('whname', ['FROM @BASE@', 'RUN echo kept > /over', 'ADD wh.tar /'].join('\n'), {}, (ctx) => {
      makeTar(path.join(ctx, 'wh.tar'), [{ name: '.wh.over', content: 'not a whiteout\n' }]);
    });
    expect(r.code).toBe(1);
    // extracted as a file (moby's Untar has no whiteout converter for ADD), not applied as a whiteout of /over
    expect(r.stderr).toMatch(/SNAPSHOT_WHITEOUT_NAME: \S*Dockerfile:3: the step created \/\.wh\.over;/);
  });

  it('ADD extracts local tar archives recognised by their bytes (plain, gzip, bzip2, xz, zstd), merging into the destination', async () => {
    const root = await buildOk('archives', [
      'FROM @BASE@',
      'RUN mkdir -p /x/keep && echo existing > /x/keep/old && echo replaced > /x/over',
      'ADD plain.bin /x',
      'ADD gz.data bz.data xz.data zst.data /y/',
      'ADD --chown=1234:5678 owned.tar /z/',
      'ADD notatar.gz fake.tar /files/',
      'ADD --unpack=false plain.bin /kept/',
    ].join('\n'), {}, (ctx) => {
      makeTar(path.join(ctx, 'plain.bin'), [
        { name: './', type: 'dir', mode: 0o700, uid: 99, gid: 99 },
        { name: 'keep/', type: 'dir', mode: 0o750 },
        { name: 'keep/new', content: 'new\n', uid: 42, gid: 43 },
        { name: 'over', content: 'from tar\n', mode: 0o600 },
        { name: 'hard', type: 'link', link: 'keep/new' },
        { name: 'sym', type: 'symlink', link: '/etc/passwd' },
      ]);
      for (const [prog, out] of [['gzip', 'gz.data'], ['bzip2', 'bz.data'], ['xz', 'xz.data'], ['zstd', 'zst.data']] as const) {
        makeTar(path.join(ctx, `${out}.tar`), [{ name: './', type: 'dir', mode: 0o700, uid: 99 }, { name: `from-${prog}.txt`, content: `${prog}\n` }]);
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
    expect((await stat(path.join(root, 'x/hard'))).ino).toBe(kept.ino);
    expect(await readlink(path.join(root, 'x/sym'))).toBe('/etc/passwd');
    // the archive's "./" entry leaves the destination's own metadata alone (moby's Untar skips "." when it exists)
    for (const p of ['x', 'y']) {
      const st = await stat(path.join(root, p));
      expect([p, st.mode & 0o7777, st.uid, st.gid]).toEqual([p, 0o755, 0, 0]);
    }
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
      `ADD --chmod=g+r ${web}/files/remote.txt /dl/symbolic`,
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
    // a symbolic --chmod applies to the download's 0600 (BuildKit's HTTP source), not to 0644
    expect((await stat(path.join(root, 'dl/symbolic'))).mode & 0o7777).toBe(0o640);
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

  /** Every path under root (dirs with a trailing "/", symlinks as "name -> target"), sorted. */
  const tree = async (root: string, rel = ''): Promise<string[]> => {
    const out: string[] = [];
    for (const n of (await readdir(path.join(root, rel))).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const st = await lstat(path.join(root, r));
      if (st.isDirectory()) out.push(`${r}/`, ...(await tree(root, r)));
      else if (st.isSymbolicLink()) out.push(`${r} -> ${await readlink(path.join(root, r))}`);
      else out.push(r);
    }
    return out;
  };

  it('COPY/ADD --exclude leave out matching paths below each source (BuildKit testExcludedFilesOnCopy)', async () => {
    const files: Record<string, string | { content: string; mode: number }> = {
      'dir1/file-101.png': '2', 'dir1/file-102.txt': '3', 'dir1/file-103.jpeg': '4',
      'dir2/file-201.pdf': '6', 'dir2/file-202.jpeg': '7', 'dir2/file-203.png': '8',
      'dir3/file-301.mp3': '9', 'dir3/file-302.mpeg': '10', 'dir4/file-401.txt': '11',
      'nested/keep/a.log': 'a', 'nested/keep/b.txt': 'b', 'nested/drop/c.txt': 'c',
    };
    const root = await buildOk('exclude', [
      'FROM scratch AS builder1',
      'COPY --exclude=*/*.png --exclude=*/*.jpeg . /1',
      'FROM scratch AS builder2',
      'COPY --exclude=*/*.pdf --exclude=*/*.txt . /2',
      'FROM scratch AS builder3',
      'ADD --exclude=*.mp3 dir3/ /3/',
      'FROM scratch AS builder4',
      'COPY --exclude=*.mp3 --exclude=*.jpeg --exclude=*.png --exclude=*.pdf --exclude=*.txt dir* /4/',
      'FROM scratch AS builder5',
      'ADD --exclude=*.mp* --exclude=*.jpeg --exclude=*.png --exclude=*.pdf dir* /5',
      'FROM scratch AS builder6',
      'ADD --exclude=* dir* /6',
      'FROM scratch AS builder7',
      // exceptions: an excluded directory is entered only to find what "!" re-includes
      'COPY --exclude=nested/* --exclude=!nested/keep/*.txt --exclude=Dockerfile --exclude=dir* . /7/',
      'FROM scratch',
      ...[1, 2, 3, 4, 5, 6, 7].map((n) => `COPY --from=builder${n} / /builder${n}`),
    ].join('\n'), files, (ctx) => {
      execFileSync('ln', ['-s', 'file-401.txt', path.join(ctx, 'dir4/file-402.txt')]);
      execFileSync('ln', ['-s', 'file-404.txt', path.join(ctx, 'dir4/file-403.txt')]);
    });
    const t = await tree(root);
    const under = (p: string) => t.filter((x) => x.startsWith(p) && x !== p).map((x) => x.slice(p.length));
    expect(under('builder1/1/').filter((x) => x.startsWith('dir'))).toEqual([
      'dir1/', 'dir1/file-102.txt', 'dir2/', 'dir2/file-201.pdf', 'dir3/', 'dir3/file-301.mp3', 'dir3/file-302.mpeg',
      'dir4/', 'dir4/file-401.txt', 'dir4/file-402.txt -> file-401.txt', 'dir4/file-403.txt -> file-404.txt',
    ]);
    expect(under('builder2/2/').filter((x) => x.startsWith('dir'))).toEqual([
      'dir1/', 'dir1/file-101.png', 'dir1/file-103.jpeg', 'dir2/', 'dir2/file-202.jpeg', 'dir2/file-203.png',
      'dir3/', 'dir3/file-301.mp3', 'dir3/file-302.mpeg', 'dir4/',
    ]);
    expect(under('builder3/3/')).toEqual(['file-302.mpeg']);
    expect(under('builder4/4/')).toEqual(['file-302.mpeg']);
    expect(under('builder5/5/')).toEqual(['file-102.txt', 'file-401.txt', 'file-402.txt -> file-401.txt', 'file-403.txt -> file-404.txt']);
    expect(under('builder6/6/')).toEqual([]);
    expect(t).toContain('builder6/6/');
    expect(under('builder7/7/')).toEqual(['nested/', 'nested/keep/', 'nested/keep/b.txt']);
  }, 180_000);

  it('COPY --parents keeps the source path below the "./" pivot (BuildKit testCopyParents / testCopyRelativeParents)', async () => {
    const root = await buildOk('parents', [
      'FROM @BASE@ AS base',
      'WORKDIR /test',
      'RUN mkdir -p a/b/c/d/e a/b2/c/d/e a/b/c2/d/e a/b/c2/d/e2 && touch a/b/c/d/foo a/b/c/d/e/bay a/b2/c/d/e/bar a/b/c2/d/e/baz a/b/c2/d/e2/baz',
      'FROM scratch',
      'COPY --parents foo1/foo2/bar /',
      'WORKDIR /test',
      'COPY --parents foo1/foo2/ba* .',
      'COPY --from=base --parents /test/a/b/./c/d /middle/',
      'COPY --from=base --parents /test/a/b/c/d/. /end/',
      'COPY --from=base --parents ./test/a/b/c/d /start/',
      'COPY --from=base --parents /test/a/./b/./c /double/',
      'COPY --from=base --parents /test/a/./*/c /wildcard/',
      'COPY --from=base --parents /test/a/b*/./c/**/e /doublewildcard/',
      'COPY --from=base --parents /test/a/b/c*/./d/**/baz /test/a/b*/./c/**/bar /doubleinputs/',
      'COPY --from=base --parents /test/a/b3*/c /test/a/b/./c9* /wildcard-nonexistent/',
      'COPY --from=base --parents --exclude=**/foo /test/a/b/./c /with-exclude/',
      'COPY --from=base --parents /test/a/b/c/./ /pivot-only/',
    ].join('\n'), { 'foo1/foo2/bar': 'testing', 'foo1/foo2/baz': 'testing2', 'foo1/other': 'no' });
    const t = await tree(root);
    expect(await readFile(path.join(root, 'foo1/foo2/bar'), 'utf8')).toBe('testing');
    expect(t.filter((x) => x.startsWith('foo1'))).toEqual(['foo1/', 'foo1/foo2/', 'foo1/foo2/bar']);
    expect(t.filter((x) => x.startsWith('test/'))).toEqual(['test/', 'test/foo1/', 'test/foo1/foo2/', 'test/foo1/foo2/bar', 'test/foo1/foo2/baz']);
    const under = (p: string) => t.filter((x) => x.startsWith(p) && x !== p).map((x) => x.slice(p.length));
    expect(under('middle/')).toEqual(['c/', 'c/d/', 'c/d/e/', 'c/d/e/bay', 'c/d/foo']);
    expect(under('end/')).toContain('test/a/b/c/d/foo');
    expect(under('start/')).toContain('test/a/b/c/d/e/bay');
    expect(under('double/')).toEqual(['b/', 'b/c/', 'b/c/d/', 'b/c/d/e/', 'b/c/d/e/bay', 'b/c/d/foo']);
    expect(under('wildcard/')).toEqual(['b/', 'b/c/', 'b/c/d/', 'b/c/d/e/', 'b/c/d/e/bay', 'b/c/d/foo', 'b2/', 'b2/c/', 'b2/c/d/', 'b2/c/d/e/', 'b2/c/d/e/bar']);
    expect(under('doublewildcard/')).toEqual(['c/', 'c/d/', 'c/d/e/', 'c/d/e/bar', 'c/d/e/bay']);
    expect(under('doubleinputs/')).toEqual(['c/', 'c/d/', 'c/d/e/', 'c/d/e/bar', 'd/', 'd/e/', 'd/e/baz', 'd/e2/', 'd/e2/baz']);
    expect(under('wildcard-nonexistent/')).toEqual([]);
    expect(t).toContain('wildcard-nonexistent/');
    expect(under('with-exclude/')).toEqual(['c/', 'c/d/', 'c/d/e/', 'c/d/e/bay']);
    expect(under('pivot-only/')).toEqual(['d/', 'd/e/', 'd/e/bay', 'd/foo']);
  }, 180_000);

  it('COPY --parents of a missing path without wildcards fails with COPY_SOURCE_NOT_FOUND', async () => {
    const r = await build('parents-missing', 'FROM scratch\nCOPY --parents nonexistent/file /out/\n', { 'x': 'x' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('COPY_SOURCE_NOT_FOUND');
  }, 60_000);

  it('COPY --chown=name takes the primary group from passwd; a numeric user is uid:uid even when unknown', async () => {
    const root = await buildOk('chown', [
      'FROM @BASE@',
      'RUN echo "web:x:2000:3000::/home/web:/bin/sh" >> /etc/passwd && echo "webgrp:x:3000:" >> /etc/group',
      'COPY --chown=web a /by-name',
      'COPY --chown=1000 a /numeric-known',
      'COPY --chown=4242 a /numeric-unknown',
      'COPY --chown=web:app a /name-group',
      'COPY --chown=4242:4343 a /both-numeric',
    ].join('\n'), { a: 'a\n' });
    const ids = async (p: string) => { const st = await stat(path.join(root, p)); return [st.uid, st.gid]; };
    expect(await ids('by-name')).toEqual([2000, 3000]);
    expect(await ids('numeric-known')).toEqual([1000, 1000]);
    expect(await ids('numeric-unknown')).toEqual([4242, 4242]);
    expect(await ids('name-group')).toEqual([2000, 1000]);
    expect(await ids('both-numeric')).toEqual([4242, 4343]);
  }, 120_000);

  it('hard links inside a copied tree stay hard links', async () => {
    const root = await buildOk('hardlinks', [
      'FROM @BASE@ AS src',
      'RUN mkdir -p /t/sub && echo same > /t/one && ln /t/one /t/sub/two && echo solo > /t/solo',
      'FROM @BASE@',
      'COPY --from=src /t /from-stage/',
      'COPY ctx/ /from-context/',
    ].join('\n'), { 'ctx/x': 'x\n' }, (ctx) => execFileSync('ln', [path.join(ctx, 'ctx/x'), path.join(ctx, 'ctx/y')]));
    const ino = async (p: string) => (await stat(path.join(root, p))).ino;
    expect(await ino('from-stage/one')).toBe(await ino('from-stage/sub/two'));
    expect(await ino('from-stage/solo')).not.toBe(await ino('from-stage/one'));
    expect(await ino('from-context/x')).toBe(await ino('from-context/y'));
  }, 120_000);

  /** Names in the last layer of a pushed image (skopeo to an OCI layout, then tar -t). */
  const lastLayerNames = async (ref: string, name: string): Promise<string[]> => {
    const layout = ws.path(`${name}-layers`);
    execFileSync('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/${ref}`, `oci:${layout}:img`], { stdio: 'ignore' });
    const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
    const blob = (d: string) => path.join(layout, 'blobs', ...d.split(':'));
    const manifest = JSON.parse(await readFile(blob(index.manifests[0].digest), 'utf8'));
    const last = manifest.layers[manifest.layers.length - 1].digest;
    return execFileSync('tar', ['-tzf', blob(last)]).toString().trim().split('\n').sort();
  };

  it('COPY --link writes a layer holding only its files and their parents, applied over what is there', async () => {
    const root = await buildOk('link', [
      'FROM @BASE@',
      'RUN mkdir -p /opt/app && echo old > /opt/app/keep',
      'WORKDIR /opt/app',
      'COPY --link a.txt sub/',
    ].join('\n'), { 'a.txt': 'a\n' });
    expect(await readFile(path.join(root, 'opt/app/keep'), 'utf8')).toBe('old\n');
    expect(await readFile(path.join(root, 'opt/app/sub/a.txt'), 'utf8')).toBe('a\n');
    expect(await lastLayerNames('addcopy/link:latest', 'link')).toEqual(['opt/', 'opt/app/', 'opt/app/sub/', 'opt/app/sub/a.txt']);
  }, 120_000);

  it('with --cache, a COPY --link step hits even when the steps before it changed; the steps after it do not', async () => {
    const cacheRepo = ws.path('link-cache');
    const run = async (n: string, before: string) => {
      const ctx = await ws.context(`ctx-link-${n}`, {
        Dockerfile: `FROM ${base}\nRUN echo ${before} > /before\nCOPY --link a.txt /linked/\nRUN cat /before /linked/a.txt > /after\n`,
        'a.txt': 'a\n',
      });
      const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--reproducible', '--cache', '--cache-repo', `oci:${cacheRepo}`,
        '--destination', `${reg.host}/addcopy/link-cache:${n}`], { cache: ws.path(`cache-${n}`), work: ws.path(`work-link-${n}`) });
      if (r.code !== 0) throw new Error(r.stderr);
      return r.stderr.split('\n').filter((l) => / \(cached /.test(l));
    };
    expect(await run('one', 'one')).toEqual([]);
    const second = await run('two', 'two');
    expect(second).toHaveLength(1);
    expect(second[0]).toContain('COPY --link a.txt /linked/');
    const root = await ws.unpack(reg, 'addcopy/link-cache:two', 'link-cache-two');
    expect(await readFile(path.join(root, 'after'), 'utf8')).toBe('two\na\n');
  }, 180_000);

  it('with --cache, COPY --exclude/--parents keys hash what they select: a change elsewhere still hits', async () => {
    const cacheRepo = ws.path('select-cache');
    const run = async (n: string, files: Record<string, string>) => {
      const ctx = await ws.context(`ctx-select-${n}`, {
        Dockerfile: `FROM ${base}\nCOPY --parents src/./keep/*.txt /p/\nCOPY --exclude=*.log src/ /src/\n`,
        ...files,
      });
      const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--reproducible', '--cache', '--cache-repo', `oci:${cacheRepo}`,
        '--destination', `${reg.host}/addcopy/select-cache:${n}`], { cache: ws.path(`cache-s-${n}`), work: ws.path(`work-s-${n}`) });
      if (r.code !== 0) throw new Error(r.stderr);
      return r.stderr.split('\n').filter((l) => / \(cached /.test(l)).map((l) => l.replace(/^builder: \[\d+\/\d+\] /, '').replace(/ \(cached.*$/, ''));
    };
    const files = { 'src/a.txt': 'a', 'src/debug.log': 'one', 'src/keep/k.txt': 'k', 'src/keep/other.md': 'o' };
    expect(await run('one', files)).toEqual([]);
    // only a file neither step selects changed: both hit
    expect(await run('two', { ...files, 'src/debug.log': 'two' })).toEqual(['COPY --parents src/./keep/*.txt /p/', 'COPY --exclude=*.log src/ /src/']);
    // a file only the second step selects changed: the --parents step still hits, the other runs again
    expect(await run('three', { ...files, 'src/keep/other.md': 'changed' })).toEqual(['COPY --parents src/./keep/*.txt /p/']);
  }, 180_000);

  it('with --cache, ADD <url> keys on --checksum without downloading, else on the downloaded bytes', async () => {
    const cacheRepo = ws.path('url-cache');
    const body = Buffer.from('v1\n');
    const run = async (n: string) => {
      const ctx = await ws.context(`ctx-urlc-${n}`, {
        Dockerfile: `FROM ${base}\nADD --checksum=sha256:${sha256(body)} ${web}/pinned.txt /pinned\nADD ${web}/moving.txt /moving\n`,
      });
      const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--reproducible', '--cache', '--cache-repo', `oci:${cacheRepo}`,
        '--destination', `${reg.host}/addcopy/url-cache:${n}`], { cache: ws.path(`cache-u-${n}`), work: ws.path(`work-u-${n}`) });
      if (r.code !== 0) throw new Error(r.stderr);
      return r.stderr.split('\n').filter((l) => / \(cached /.test(l)).map((l) => l.replace(/^builder: \[\d+\/\d+\] /, '').split(' ')[0] + (l.includes('/pinned') ? ' pinned' : ' moving'));
    };
    served.set('/pinned.txt', { body });
    served.set('/moving.txt', { body: Buffer.from('m1\n') });
    expect(await run('one')).toEqual([]);
    // the pinned file is gone from the server: a hit needs no download; the moving one is unchanged: a hit too
    served.delete('/pinned.txt');
    expect(await run('two')).toEqual(['ADD pinned', 'ADD moving']);
    served.set('/moving.txt', { body: Buffer.from('m2\n') });
    expect(await run('three')).toEqual(['ADD pinned']);
    const root = await ws.unpack(reg, 'addcopy/url-cache:three', 'url-cache-three');
    expect(await readFile(path.join(root, 'moving'), 'utf8')).toBe('m2\n');
  }, 180_000);

  describe('stages, ONBUILD, WORKDIR owner, scratch defaults', () => {
    const dockerfile = [
      'FROM @BASE@ AS parent',
      'ONBUILD RUN echo triggered > /onbuild-ran',
      'ONBUILD ENV FROM_TRIGGER=yes',
      'FROM parent AS child',
      'USER 4242',
      'WORKDIR /made-by-uid',
      'USER app',
      'WORKDIR /made-by-app',
      'USER root',
      'FROM @BASE@ AS unused',
      'RUN echo "this stage is not needed" && exit 1',
      'FROM scratch AS bare',
      'ENV P=$PATH',
      'FROM child',
      'COPY --from=bare / /',
    ].join('\n');

    it('an earlier stage\'s ONBUILD triggers run at the start of the child, which does not carry them; unused stages are skipped', async () => {
      const root = await buildOk('stages', dockerfile);
      expect(await readFile(path.join(root, 'onbuild-ran'), 'utf8')).toBe('triggered\n');
      const cfg = (await skopeoInspect(reg, 'addcopy/stages:latest', { config: true })).config;
      expect(cfg.Env).toContain('FROM_TRIGGER=yes');
      expect(cfg.OnBuild ?? []).toEqual([]);
      // WORKDIR under a bare uid with no passwd entry: uid:uid, as BuildKit's mkdir with llb.WithUser
      const made = await stat(path.join(root, 'made-by-uid'));
      expect([made.uid, made.gid]).toEqual([4242, 4242]);
      const byApp = await stat(path.join(root, 'made-by-app'));
      expect([byApp.uid, byApp.gid]).toEqual([1000, 1000]);
    }, 120_000);

    it('--skip-unused-stages=false builds every stage up to the target, as kaniko did', async () => {
      const r = await build('stages-all', dockerfile);
      expect(r.code).toBe(0);
      const ctx = r.ctx;
      const all = await ws.build(ctx, ['--run-mode', 'sandbox', '--skip-unused-stages=false', '--no-push']);
      expect(all.code).not.toBe(0);
      expect(all.stderr).toContain('this stage is not needed');
    }, 120_000);

    it('a scratch stage gets BuildKit\'s default PATH and WorkingDir "/"', async () => {
      const ctx = await ws.context('ctx-bare', { Dockerfile: dockerfile.replaceAll('@BASE@', base) });
      const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--target', 'bare', '--destination', `${reg.host}/addcopy/bare:latest`]);
      expect(r.code, r.stderr).toBe(0);
      const cfg = (await skopeoInspect(reg, 'addcopy/bare:latest', { config: true })).config;
      const path0 = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
      expect(cfg.Env).toEqual([`PATH=${path0}`, `P=${path0}`]);
      expect(cfg.WorkingDir).toBe('/');
    }, 120_000);
  });
});
