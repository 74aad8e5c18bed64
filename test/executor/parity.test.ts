// Parity: the same Dockerfiles built by builder and by buildah (Debian's 1.28, `bud --isolation chroot`), both FROM the
// same busybox pushed to a real registry; the pushed images are unpacked with skopeo + umoci and their trees and configs
// compared. Differences we know and accept are listed in ALLOWED (each with its reason; see docs/parity.md).
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONFIG_KEYS, normalizedConfig } from '../../conformance/compare.js';
import { pushBusybox } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { compileIfStale } from './helpers.js';
import { run, skopeoCopy, skopeoInspect, umociUnpack, unmountBelow } from '../support/tools.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const haveTools = ['buildah', 'skopeo', 'umoci', 'docker-registry'].every((t) =>
  (process.env.PATH ?? '').split(':').some((d) => existsSync(path.join(d, t))));
// buildah needs root (or a user namespace) for chroot isolation with a private storage root.
const canRun = haveTools && process.getuid?.() === 0;

/** One Dockerfile and its build context (files: path -> content, or {content, mode}; links: path -> target). */
interface Case {
  name: string;
  dockerfile: string;
  files?: Record<string, string | { content: string; mode: number }>;
  links?: Record<string, string>;
  /** Runs in the written context before the builds (archives, hard links); @WEB@ in the Dockerfile is the test's HTTP server. */
  prepare?: (ctx: string) => void;
}

/** A deliberate difference: which case, which path (tree) or config key, what kind, and why it is accepted. */
interface Allowed {
  case: string | RegExp;
  /** Tree path ("/a/b") or "config.<Key>". */
  what: string | RegExp;
  /** 'only-builder' | 'only-buildah' | 'differs' (tree) or 'config'. */
  kind: 'only-builder' | 'only-buildah' | 'differs' | 'config';
  /** Restrict a 'differs' allowance to these attributes (e.g. ['uid', 'gid']). */
  attrs?: string[];
  reason: string;
}

const ALLOWED: Allowed[] = [
  {
    case: /^(copy|multistage)$/, kind: 'differs', what: /^\/(dst\/modes|doc)$/, attrs: ['mode'],
    reason: 'directories COPY --chmod creates on the way to its destination: BuildKit since v0.21 (fsutil 13604323, copy.go ' +
      'Copy/prepareTargetDir: MkdirAll(path, os.FileMode(*ci.Mode))) gives them the octal mode\'s permission bits; buildah 1.28 makes them 0755',
  },
  {
    case: /^(run-fs|meta|cmd-shell|add|run-mount)$/, kind: 'only-buildah', what: /^\/(etc\/(hostname|hosts|resolv\.conf)|run)$/,
    reason: 'buildah leaves the empty mount points of its RUN bind mounts in the layer (containers/buildah#4242); ' +
      'BuildKit removes such stubs (moby/buildkit#1739) and builder never creates them in the root it snapshots',
  },
  {
    case: 'add', kind: 'differs', what: /^\/(x\/keep\/new|x\/hard|z\/d|z\/d\/f)$/, attrs: ['uid', 'gid'],
    reason: 'owners of extracted archive entries: BuildKit (solver/llbsolver/file/unpack.go) untars with moby\'s Untar, which ' +
      'keeps the tar\'s uid/gid, or gives every entry the --chown owner (ChownOpts); buildah 1.28 does neither consistently',
  },
  {
    case: 'run-mount', kind: 'only-buildah', what: /^\/(mnt|var\/cache)$/,
    reason: 'buildah 1.28 leaves the parent directories it created for RUN --mount targets (/mnt/out, /var/cache/pm) in the layer; ' +
      'BuildKit removes mount stubs (moby/buildkit#1739), and builder removes every stub it created (docs/run.md "RUN --mount")',
  },
  {
    case: 'meta', kind: 'only-buildah', what: /^\/(cache|logs)$/,
    reason: 'buildah creates the directory of each VOLUME in the image; in BuildKit (and builder) VOLUME is config only',
  },
  {
    case: 'meta', kind: 'only-builder', what: '/data/after-volume',
    reason: 'a RUN writing into a declared VOLUME: buildah discards the change like the legacy builder; the Dockerfile ' +
      'reference says BuildKit keeps it, as builder does',
  },
  {
    case: /.*/, kind: 'config', what: 'config.Labels.io.buildah.version',
    reason: 'buildah stamps its version as a label; builder (like BuildKit) adds no label of its own',
  },
  {
    case: 'meta', kind: 'config', what: 'config.Env',
    reason: 'order only: re-setting PATH moves it to the end in buildah; BuildKit (and builder) replace the value in place',
  },
  {
    case: 'meta', kind: 'config', what: /^config\.ExposedPorts\.(9000-9001\/tcp|9000\/tcp|9001\/tcp)$/,
    reason: 'EXPOSE 9000-9001: buildah keeps the range as one key; BuildKit expands a range into one key per port (as builder)',
  },
  {
    case: 'shell-form', kind: 'config', what: /^config\.(Cmd|Entrypoint)$/,
    reason: 'buildah 1.28 ignores SHELL for shell-form CMD/ENTRYPOINT (uses /bin/sh -c); BuildKit documents that SHELL ' +
      'applies to the shell form of RUN, CMD and ENTRYPOINT, as builder does',
  },
];

const BASE_PLACEHOLDER = '@BASE@';

/** A tar written by python's tarfile: exact names, owners, modes and links. */
function makeTar(file: string, entries: Array<{ name: string; type?: 'file' | 'dir' | 'symlink' | 'link'; content?: string; mode?: number; uid?: number; gid?: number; link?: string }>): void {
  const script = [
    'import io, json, sys, tarfile',
    "with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:",
    '    for e in json.loads(sys.argv[2]):',
    "        ti = tarfile.TarInfo(e['name']); ti.mode = e.get('mode', 0o644); ti.uid = e.get('uid', 0); ti.gid = e.get('gid', 0); ti.mtime = 1000000000",
    "        k = e.get('type', 'file'); data = None",
    "        if k == 'dir': ti.type = tarfile.DIRTYPE",
    "        elif k == 'symlink': ti.type = tarfile.SYMTYPE; ti.linkname = e['link']",
    "        elif k == 'link': ti.type = tarfile.LNKTYPE; ti.linkname = e['link']",
    "        else: data = e.get('content', '').encode(); ti.size = len(data)",
    '        t.addfile(ti, io.BytesIO(data) if data is not None else None)',
  ].join('\n');
  execFileSync('python3', ['-c', script, file, JSON.stringify(entries)]);
}

const CASES: Case[] = [
  {
    // RUN: files created, changed, deleted (also from the base layer), dir<->file replacement, chmod, chown, links.
    name: 'run-fs',
    dockerfile: `FROM ${BASE_PLACEHOLDER}
RUN mkdir -p /data/sub /data/todir /data/gone && echo hello > /data/a.txt && echo b > /data/sub/b \\
 && echo file > /data/todir.f && ln -s a.txt /data/link \\
 && ln /data/a.txt /data/hard && echo x > /data/gone/x
RUN chmod 640 /data/a.txt && chown 1000:1000 /data/sub/b && chmod 2750 /data/sub && chown 65534:1000 /data/sub \\
 && chmod 4755 /data/todir.f && mkdir -m 1777 /data/sticky
RUN rm -rf /data/gone /data/todir && echo now-a-file > /data/todir && rm /data/todir.f && mkdir /data/todir.f \\
 && echo inside > /data/todir.f/in && rm /data/link && ln -s sub /data/link
RUN rm -rf /home/app && echo was-a-dir > /home/app && rm /bin/vi /usr/bin/wc && rm -rf /var \\
 && echo changed >> /etc/passwd && touch -d 2001-01-01 /etc/group
RUN rm -rf /home/app && mkdir -p /home/app/again && chown -R 1000:1000 /home/app && truncate -s 0 /data/a.txt
RUN touch /data/nochange && rm /data/nochange
`,
  },
  {
    // COPY from the context: destination rules, wildcards, --chown, --chmod, .dockerignore, symlinks in the context.
    name: 'copy',
    dockerfile: `FROM ${BASE_PLACEHOLDER}
COPY a.txt /dst/file1
COPY a.txt /dst/dir1/
COPY a.txt b.txt /dst/two/
COPY *.txt /dst/txts/
COPY d?r/sub /dst/wild/
COPY dir /dst/dircopy
COPY dir/ /dst/dircopy2/
COPY dir /dst/dircopy2/
COPY --chown=app:app dir /home/app/dir
COPY --chown=1000 a.txt /dst/owned
COPY --chown=65534:1000 a.txt /dst/new/parents/owned
COPY --chmod=600 b.txt exec.sh /dst/modes/
COPY --chmod=755 dir /dst/dirmode
COPY exec.sh link.txt /dst/links/
COPY . /dst/all/
COPY a.txt /dst/dircopy
COPY a.txt /etc/passwd
WORKDIR /dst/rel
COPY b.txt .
COPY b.txt ./b2
COPY b.txt ../b3
`,
    files: {
      '.dockerignore': '**/*.log\nsecret.txt\ndir/sub/skip-*\n!dir/sub/skip-keep\n',
      'a.txt': 'aaa\n',
      'b.txt': 'bbb\n',
      'c.md': '# c\n',
      'secret.txt': 'do not copy\n',
      'top.log': 'ignored\n',
      'exec.sh': { content: '#!/bin/sh\necho hi\n', mode: 0o755 },
      'private': { content: 'p\n', mode: 0o600 },
      'dir/x': 'x\n',
      'dir/ro': { content: 'ro\n', mode: 0o444 },
      'dir/sub/y': 'y\n',
      'dir/sub/z.log': 'ignored\n',
      'dir/sub/skip-me': 'ignored\n',
      'dir/sub/skip-keep': 'kept\n',
      'dir/empty/.keep': '',
    },
    links: { 'link.txt': 'a.txt', 'dangling': 'nowhere', 'dir/sub/up': '../x' },
  },
  {
    // Metadata: ARG/ENV use, WORKDIR creation, USER, EXPOSE, LABEL, VOLUME, HEALTHCHECK, STOPSIGNAL, SHELL, ENTRYPOINT/CMD.
    name: 'meta',
    dockerfile: `FROM ${BASE_PLACEHOLDER}
ARG VERSION=1.2.3
ARG UNUSED
ENV APP_HOME=/opt/app APP_VERSION=$VERSION
ENV PATH=$APP_HOME/bin:$PATH
WORKDIR $APP_HOME/work
RUN echo "$VERSION $APP_VERSION \${UNUSED:-unset}" > version && pwd > pwd.txt && echo "$PATH" > path.txt
LABEL org.example.version=$VERSION "org.example.name"="parity test" multi="a b"
EXPOSE 8080 53/udp 9000-9001
USER app
RUN id -u > /tmp/uid.txt && id -g >> /tmp/uid.txt && echo $HOME > /tmp/home.txt && touch /home/app/made-by-app
WORKDIR sub/dir
USER 1000:1000
WORKDIR /var/app
USER root
HEALTHCHECK --interval=30s --timeout=5s --start-period=2s --retries=4 CMD wget -q -O- http://localhost:8080/ || exit 1
STOPSIGNAL SIGQUIT
SHELL ["/bin/sh", "-ec"]
RUN echo "shell \${0}" > /tmp/shell.txt
ENV EMPTY=
LABEL empty=
VOLUME /data
VOLUME ["/cache", "/logs"]
RUN mkdir -p /data && echo kept > /data/after-volume
ENTRYPOINT ["/bin/echo", "entry"]
CMD ["hello", "world"]
`,
  },
  {
    // Multi-stage: COPY --from a named stage and by index; owners and links from the other stage; FROM an earlier stage.
    name: 'multistage',
    dockerfile: `FROM ${BASE_PLACEHOLDER} AS build
ARG MSG=built
RUN mkdir -p /out/bin /out/share/doc && echo "$MSG" > /out/bin/tool && chmod 755 /out/bin/tool \\
 && ln -s tool /out/bin/alias && echo doc > /out/share/doc/README && chown -R 1000:1000 /out/share \\
 && chmod 0600 /out/share/doc/README

FROM build AS child
RUN echo child > /out/child.txt && rm /out/bin/alias

FROM ${BASE_PLACEHOLDER}
COPY --from=build /out /opt/
COPY --from=build /out/bin/tool /usr/local/bin/
COPY --from=0 --chown=app:app /out/bin /app-bin
COPY --from=child /out/child.txt /out/bin/alias* /from-child/
COPY --from=build --chmod=700 /out/share/doc/README /doc/README
COPY --from=build /out/bin/alias /alias-link
COPY --from=build /out/share /share-copy
CMD ["tool"]
`,
  },
  {
    // Shell-form CMD/ENTRYPOINT after SHELL, and CMD reset by ENTRYPOINT (config only).
    name: 'cmd-shell',
    dockerfile: `FROM ${BASE_PLACEHOLDER}
CMD echo before-entrypoint
ENTRYPOINT ["/bin/sh", "-c"]
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
HEALTHCHECK NONE
RUN echo ok | cat > /ok.txt
`,
  },
  {
    // ADD: local archives (by content, every compression), non-archives copied as is, URLs; --chown by user name
    // (primary group); hard links in a copied tree; WORKDIR under a bare uid; ONBUILD of a parent stage.
    name: 'add',
    dockerfile: `FROM ${BASE_PLACEHOLDER} AS parent
ONBUILD RUN echo triggered > /onbuild-ran
FROM parent
RUN mkdir -p /x/keep && echo existing > /x/keep/old && echo web:x:2000:3000::/home/web:/bin/sh >> /etc/passwd
ADD plain.bin /x
ADD gz.data bz.data xz.data /y/
ADD --chown=1234:5678 owned.tar /z/
ADD notatar.gz fake.tar /files/
ADD @WEB@/files/remote.txt /dl/
ADD --chmod=644 @WEB@/files/remote.txt /dl/renamed.txt
ADD @WEB@/files/tree.tar /dl/
COPY --chown=web a.txt /owned-by-web
COPY --chown=4242 a.txt /owned-by-4242
COPY hard/ /hard/
USER 4242
WORKDIR /made-by-uid
USER root
`,
    files: { 'a.txt': 'a\n', 'hard/one': 'same\n' },
    prepare: (ctx) => {
      makeTar(path.join(ctx, 'plain.bin'), [
        { name: 'keep/', type: 'dir', mode: 0o750 },
        { name: 'keep/new', content: 'new\n', uid: 42, gid: 43 },
        { name: 'hard', type: 'link', link: 'keep/new' },
        { name: 'sym', type: 'symlink', link: '/etc/passwd' },
      ]);
      for (const [prog, out] of [['gzip', 'gz.data'], ['bzip2', 'bz.data'], ['xz', 'xz.data']] as const) {
        makeTar(path.join(ctx, `${out}.tar`), [{ name: `from-${prog}.txt`, content: `${prog}\n` }]);
        execFileSync('sh', ['-c', `${prog} -c < "$1" > "$2" && rm "$1"`, 'sh', path.join(ctx, `${out}.tar`), path.join(ctx, out)]);
      }
      makeTar(path.join(ctx, 'owned.tar'), [{ name: 'd/', type: 'dir' }, { name: 'd/f', content: 'f\n', uid: 7, gid: 7 }]);
      execFileSync('sh', ['-c', 'echo "just text" | gzip -n -c > "$1"', 'sh', path.join(ctx, 'notatar.gz')]);
      execFileSync('sh', ['-c', 'echo "named like a tar" > "$1"', 'sh', path.join(ctx, 'fake.tar')]);
      execFileSync('ln', [path.join(ctx, 'hard/one'), path.join(ctx, 'hard/two')]);
    },
  },
  {
    // Shell-form ENTRYPOINT and CMD after SHELL (config only).
    name: 'shell-form',
    dockerfile: `FROM ${BASE_PLACEHOLDER}
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
ENTRYPOINT exec /bin/echo "$0"
CMD echo after-shell
`,
  },
  {
    // RUN --mount: a read-only context bind, a cache, a tmpfs and a bind from a stage; none of them reaches the image.
    name: 'run-mount',
    dockerfile: `FROM ${BASE_PLACEHOLDER} AS build
RUN mkdir -p /out && echo built > /out/b.txt
FROM ${BASE_PLACEHOLDER}
RUN --mount=type=bind,target=/src cat /src/in.txt > /from-ctx && (touch /src/x 2>/dev/null && echo rw || echo ro) > /ctx-mode
RUN --mount=type=cache,target=/var/cache/pm,id=pm echo c > /var/cache/pm/c && cat /var/cache/pm/c > /from-cache
RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && cat /scratch/t > /from-tmpfs
RUN --mount=type=bind,from=build,source=/out,target=/mnt/out cat /mnt/out/b.txt > /from-stage
`,
    files: { 'in.txt': 'ctx\n' },
  },
];

// ---- tree and config snapshots ----------------------------------------------------------------------------------

interface TreeEntry {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  link?: string;
  sha256?: string;
  size?: number;
  /** Files with more than one link: the first path (in walk order) of the same inode. */
  hardlinkOf?: string;
}

async function snapshotTree(root: string): Promise<Map<string, TreeEntry>> {
  const out = new Map<string, TreeEntry>();
  const inodes = new Map<number, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(root, rel))).sort()) {
      const r = `${rel}/${name}`;
      const abs = path.join(root, r);
      const st = await lstat(abs);
      const e: TreeEntry = {
        type: st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other',
        mode: (st.mode & 0o7777).toString(8).padStart(4, '0'),
        uid: st.uid,
        gid: st.gid,
      };
      if (st.isSymbolicLink()) {
        e.link = await readlink(abs);
        e.mode = '-'; // symlink permissions are meaningless on Linux
      }
      if (st.isFile()) {
        const buf = await readFile(abs);
        e.size = buf.length;
        e.sha256 = createHash('sha256').update(buf).digest('hex').slice(0, 16);
        if (st.nlink > 1) {
          if (!inodes.has(st.ino)) inodes.set(st.ino, r);
          e.hardlinkOf = inodes.get(st.ino);
        }
      }
      out.set(r, e);
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return out;
}

interface Difference {
  case: string;
  kind: Allowed['kind'];
  what: string;
  detail: string;
  attrs?: string[];
}

function diffTrees(name: string, ours: Map<string, TreeEntry>, theirs: Map<string, TreeEntry>): Difference[] {
  const out: Difference[] = [];
  for (const [p, a] of ours) {
    const b = theirs.get(p);
    if (!b) {
      out.push({ case: name, kind: 'only-builder', what: p, detail: JSON.stringify(a) });
      continue;
    }
    const attrs = (Object.keys({ ...a, ...b }) as Array<keyof TreeEntry>).filter((k) => a[k] !== b[k]);
    if (attrs.length) {
      out.push({
        case: name, kind: 'differs', what: p, attrs,
        detail: attrs.map((k) => `${k}: builder=${String(a[k])} buildah=${String(b[k])}`).join(', '),
      });
    }
  }
  for (const [p, b] of theirs) if (!ours.has(p)) out.push({ case: name, kind: 'only-buildah', what: p, detail: JSON.stringify(b) });
  return out;
}

/** Object-valued keys are compared key by key ("config.Labels.<key>"), the others as a whole ("config.<Key>"). */
const PER_KEY = new Set<string>(['Labels', 'ExposedPorts', 'Volumes']);

function diffConfigs(name: string, ours: Record<string, unknown>, theirs: Record<string, unknown>): Difference[] {
  const out: Difference[] = [];
  for (const k of CONFIG_KEYS) {
    if (PER_KEY.has(k)) {
      const a = (ours[k] ?? {}) as Record<string, unknown>;
      const b = (theirs[k] ?? {}) as Record<string, unknown>;
      for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
        const av = JSON.stringify(a[key]);
        const bv = JSON.stringify(b[key]);
        if (av !== bv) out.push({ case: name, kind: 'config', what: `config.${k}.${key}`, detail: `builder=${av} buildah=${bv}` });
      }
      continue;
    }
    const a = JSON.stringify(ours[k]);
    const b = JSON.stringify(theirs[k]);
    if (a !== b) out.push({ case: name, kind: 'config', what: `config.${k}`, detail: `builder=${a} buildah=${b}` });
  }
  return out;
}

function matches(p: string | RegExp, s: string): boolean {
  return typeof p === 'string' ? p === s : p.test(s);
}

function allowedFor(d: Difference): Allowed | undefined {
  return ALLOWED.find((a) => matches(a.case, d.case) && a.kind === d.kind && matches(a.what, d.what) &&
    (!a.attrs || (d.attrs ?? []).every((x) => a.attrs!.includes(x))));
}

// ---- the test ----------------------------------------------------------------------------------------------------

describe.skipIf(!canRun)('parity with buildah (bud --isolation chroot)', () => {
  let reg: TestRegistry;
  let tmp: string;
  let base: string;
  let buildahGlobal: string[];
  let server: http.Server | undefined;
  let web = '';
  const results = new Map<string, { differences: Difference[]; layers: { builder: number; buildah: number } }>();

  const buildah = (args: string[], cwd?: string) =>
    run('buildah', [...buildahGlobal, ...args], { timeoutMs: 300_000, ...(cwd ? { cwd } : {}), env: { ...process.env, BUILDAH_ISOLATION: 'chroot' } });

  beforeAll(async () => {
    // the CLI runs from dist/: compiled when src is newer (never rewritten under another test's running builder)
    await compileIfStale();
    reg = await startRegistry({ mode: 'plain' });
    base = await pushBusybox(reg, 'parity/busybox', 'latest', 'v2s2');
    tmp = await mkdtemp(path.join(os.tmpdir(), 'builder-parity-'));
    // ADD <url> sources: a fixed file with a Last-Modified, and a tar (remote archives are not extracted).
    const tarFile = path.join(tmp, 'remote.tar');
    makeTar(tarFile, [{ name: 'inside.txt', content: 'x\n' }]);
    const bodies: Record<string, Buffer> = { '/files/remote.txt': Buffer.from('remote content\n'), '/files/tree.tar': await readFile(tarFile) };
    server = http.createServer((req, res) => {
      const body = bodies[req.url ?? ''];
      if (!body) res.writeHead(404).end();
      else res.writeHead(200, { 'Content-Length': body.length, 'Last-Modified': 'Wed, 21 Oct 2015 07:28:00 GMT' }).end(body);
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    web = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    buildahGlobal = ['--root', path.join(tmp, 'buildah/root'), '--runroot', path.join(tmp, 'buildah/runroot'), '--storage-driver', 'vfs'];
  }, 300_000);

  afterAll(async () => {
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    if (tmp) {
      await buildah(['rm', '--all']).catch(() => undefined);
      await buildah(['rmi', '--all', '--force']).catch(() => undefined);
      await unmountBelow(tmp);
      await rm(tmp, { recursive: true, force: true });
    }
    await reg?.stop();
  }, 300_000);

  async function writeContext(c: Case): Promise<string> {
    const ctx = path.join(tmp, 'ctx', c.name);
    await mkdir(ctx, { recursive: true });
    for (const [rel, v] of Object.entries(c.files ?? {})) {
      const file = path.join(ctx, rel);
      await mkdir(path.dirname(file), { recursive: true });
      const { content, mode } = typeof v === 'string' ? { content: v, mode: 0o644 } : v;
      await writeFile(file, content);
      await chmod(file, mode);
    }
    for (const [rel, target] of Object.entries(c.links ?? {})) {
      await mkdir(path.dirname(path.join(ctx, rel)), { recursive: true });
      await symlink(target, path.join(ctx, rel));
    }
    c.prepare?.(ctx);
    await writeFile(path.join(ctx, 'Dockerfile'), c.dockerfile.replaceAll(BASE_PLACEHOLDER, base).replaceAll('@WEB@', web));
    return ctx;
  }

  async function unpack(ref: string, as: string): Promise<{ tree: Map<string, TreeEntry>; config: any; layers: number }> {
    const layout = path.join(tmp, 'oci', as);
    await mkdir(path.dirname(layout), { recursive: true });
    await skopeoCopy(`docker://${ref}`, `oci:${layout}:img`, { reg });
    const rootfs = await umociUnpack(layout, 'img', path.join(tmp, 'bundle', as));
    const config = await skopeoInspect(reg, ref.slice(reg.host.length + 1), { config: true });
    const manifest = await skopeoInspect(reg, ref.slice(reg.host.length + 1), { raw: true });
    return { tree: await snapshotTree(rootfs), config, layers: manifest.layers.length };
  }

  async function buildBoth(c: Case): Promise<void> {
    const ctx = await writeContext(c);
    const ours = `${reg.host}/parity/${c.name}:builder`;
    const theirs = `${reg.host}/parity/${c.name}:buildah`;
    await run('node', [path.join(repoRoot, 'bin/builder'), '--context', ctx, '--dockerfile', path.join(ctx, 'Dockerfile'),
      '--destination', ours, '--cache-dir', path.join(tmp, 'cache'), '--work-dir', path.join(tmp, 'work', c.name)],
    { timeoutMs: 300_000 });
    const img = `localhost/parity-${c.name}:latest`;
    await buildah(['bud', '--isolation', 'chroot', '--tls-verify=false', '--format', 'docker', '-f', path.join(ctx, 'Dockerfile'), '-t', img, ctx]);
    await buildah(['push', '--tls-verify=false', img, `docker://${theirs}`]);
    const a = await unpack(ours, `${c.name}-builder`);
    const b = await unpack(theirs, `${c.name}-buildah`);
    const differences = [...diffTrees(c.name, a.tree, b.tree), ...diffConfigs(c.name, normalizedConfig(a.config), normalizedConfig(b.config))];
    results.set(c.name, { differences, layers: { builder: a.layers, buildah: b.layers } });
  }

  for (const c of CASES) {
    it(`${c.name}: same tree and config as buildah, except the allowed differences`, async () => {
      await buildBoth(c);
      const r = results.get(c.name)!;
      const unexpected = r.differences.filter((d) => !allowedFor(d));
      const report = (ds: Difference[]) => ds.map((d) => `  ${d.kind} ${d.what}: ${d.detail}`).join('\n');
      // Layer counts are noted, not compared: buildah bud (without --layers) commits all steps as one layer.
      console.log(`[parity] ${c.name}: layers builder=${r.layers.builder} buildah=${r.layers.buildah}; ` +
        `${r.differences.length - unexpected.length} allowed difference(s)\n${report(r.differences.filter((d) => allowedFor(d)))}`);
      if (unexpected.length) console.log(`[parity] ${c.name}: UNEXPECTED\n${report(unexpected)}`);
      expect(report(unexpected), `unexpected differences in ${c.name}`).toBe('');
    }, 600_000);
  }

  it('every allow-list entry is still needed (no stale allowances)', () => {
    const ran = CASES.filter((c) => results.has(c.name)).map((c) => c.name);
    if (ran.length !== CASES.length) return; // a case failed before comparing: its own failure says why
    const used = new Set<Allowed>();
    for (const r of results.values()) for (const d of r.differences) { const a = allowedFor(d); if (a) used.add(a); }
    const stale = ALLOWED.filter((a) => !used.has(a)).map((a) => `${String(a.case)} ${a.kind} ${String(a.what)}: ${a.reason}`);
    expect(stale).toEqual([]);
  });
});
