// The executor end to end: Dockerfiles built by the CLI, pushed to a real registry, checked with skopeo and umoci.
import { lstat, readdir, readFile, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { skopeoInspect } from '../support/tools.js';
import { Workspace } from './helpers.js';

interface History { created?: string; created_by?: string; empty_layer?: boolean }

describe('builder build: RUN/COPY/metadata on a busybox base', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  let baseHistory: History[];
  let baseLayers: number;

  useFixture({}, (f) => ({ reg, ws, base } = f));
  beforeAll(async () => {
    baseHistory = (await skopeoInspect(reg, 'library/busybox:latest', { config: true })).history;
    baseLayers = (await skopeoInspect(reg, 'library/busybox:latest')).Layers.length;
  });

  it('builds config and file tree as skopeo and umoci see them', async () => {
    const dockerfile = [
      /* 1 */ `FROM ${base}`,
      /* 2 */ 'ENV APP_HOME=/app GREETING="hello world"',
      /* 3 */ 'WORKDIR $APP_HOME',
      /* 4 */ 'COPY --chmod=0640 a.txt ./a.txt',
      /* 5 */ 'COPY --chown=app:app owned.txt /app/owned.txt',
      /* 6 */ 'COPY --chown=1234:5678 numeric.txt numeric.txt',
      /* 7 */ 'COPY dir/ /app/dir/',
      /* 8 */ 'COPY . /ctx/',
      /* 9 */ 'RUN mkdir -p /data/keep /data/gone /data/dir2file && echo keep > /data/keep/k && echo gone > /data/gone/g'
        + ' && echo inner > /data/dir2file/inner && echo plain > /data/file2dir && echo bye > /data/bye.txt',
      /* 10 */ 'RUN rm -rf /data/gone /data/bye.txt /data/dir2file /data/file2dir && echo now-a-file > /data/dir2file'
        + ' && mkdir /data/file2dir && echo child > /data/file2dir/child && rm -rf /root /etc/shadow-missing-ok',
      /* 11 */ 'RUN chmod 0750 dir/script.sh && chown 1000:1000 dir && chown 42:43 /data/keep/k'
        + ' && ln -s ../a.txt dir/link && ln -s /nonexistent/target /app/dangling'
        + ' && echo same > /data/h1 && ln /data/h1 /data/h2 && echo "$GREETING from $(id -un)" > /data/greeting',
      /* 12 */ 'USER app',
      /* 13 */ 'RUN id -u > /tmp/uid-of-run && pwd > /tmp/pwd-of-run',
      /* 14 */ 'EXPOSE 8080 9090/udp',
      /* 15 */ 'LABEL org.example.title="the title" maintainer=me',
      /* 16 */ 'ENTRYPOINT ["/app/dir/script.sh"]',
      /* 17 */ 'CMD ["arg1", "arg 2"]',
    ].join('\n');
    const ctx = await ws.context('ctx1', {
      Dockerfile: dockerfile,
      '.dockerignore': 'secret.txt\n*.log\n',
      'a.txt': { content: 'A content\n', mode: 0o644 },
      'owned.txt': 'owned\n',
      'numeric.txt': 'numeric\n',
      'dir/script.sh': { content: '#!/bin/sh\necho script\n', mode: 0o644 },
      'dir/sub/nested.txt': 'nested\n',
      'secret.txt': 'do not ship\n',
      'debug.log': 'ignored too\n',
    });
    const digest = await ws.buildOk(ctx, ['--dockerfile', 'Dockerfile', '--destination', `${reg.host}/test/app:v1`]);

    // --- config, as skopeo reads it
    const inspect = await skopeoInspect(reg, 'test/app:v1');
    expect(inspect.Digest).toBe(digest);
    const cfg = await skopeoInspect(reg, 'test/app:v1', { config: true });
    const c = cfg.config;
    expect(c.Env).toEqual(expect.arrayContaining([
      expect.stringMatching(/^PATH=.*\/bin/), 'APP_HOME=/app', 'GREETING=hello world',
    ]));
    expect(c.User).toBe('app');
    expect(c.WorkingDir).toBe('/app');
    expect(c.Entrypoint).toEqual(['/app/dir/script.sh']);
    expect(c.Cmd).toEqual(['arg1', 'arg 2']);
    expect(c.Labels).toEqual({ 'org.example.title': 'the title', maintainer: 'me' });
    expect(Object.keys(c.ExposedPorts).sort()).toEqual(['8080/tcp', '9090/udp']);

    // history: the base's entries, then one per instruction; metadata steps are empty layers
    const hist = cfg.history as History[];
    expect(hist.slice(0, baseHistory.length)).toEqual(baseHistory);
    const ours = hist.slice(baseHistory.length);
    expect(ours).toHaveLength(16);
    const empty = ours.map((h) => h.empty_layer === true);
    //                       ENV   WORKDIR COPY×5                              RUN×3               USER  RUN    EXPOSE LABEL ENTRYP CMD
    expect(empty).toEqual([true, false, false, false, false, false, false, false, false, false, true, false, true, true, true, true]);
    expect(ours[0]!.created_by).toContain('APP_HOME=/app');
    expect(ours[8]!.created_by).toContain('rm -rf /data/gone');
    const layerCount = hist.filter((h) => !h.empty_layer).length;
    expect(inspect.Layers).toHaveLength(layerCount);
    expect(cfg.rootfs.diff_ids).toHaveLength(layerCount);
    expect(inspect.Layers.length).toBe(baseLayers + 10);

    // --- file tree, as umoci unpacks it
    const rootfs = await ws.unpack(reg, 'test/app:v1', 'app');
    const p = (rel: string): string => path.join(rootfs, rel);
    const mode = async (rel: string): Promise<number> => (await lstat(p(rel))).mode & 0o7777;
    const owner = async (rel: string): Promise<string> => {
      const s = await lstat(p(rel));
      return `${s.uid}:${s.gid}`;
    };
    const exists = async (rel: string): Promise<boolean> => lstat(p(rel)).then(() => true, () => false);

    expect(await readFile(p('app/a.txt'), 'utf8')).toBe('A content\n');
    expect(await mode('app/a.txt')).toBe(0o640); // COPY --chmod
    expect(await owner('app/a.txt')).toBe('0:0');
    expect(await owner('app/owned.txt')).toBe('1000:1000'); // --chown=app:app
    expect(await owner('app/numeric.txt')).toBe('1234:5678');
    expect(await readFile(p('app/numeric.txt'), 'utf8')).toBe('numeric\n');
    expect(await readFile(p('app/dir/sub/nested.txt'), 'utf8')).toBe('nested\n');
    expect(await mode('app/dir/script.sh')).toBe(0o750); // RUN chmod over a COPY'd file
    expect(await owner('app/dir')).toBe('1000:1000'); // RUN chown
    expect(await owner('data/keep/k')).toBe('42:43');
    expect(await owner('app/dir/script.sh')).toBe('0:0');

    // .dockerignore'd files are not in the context
    expect(await readFile(p('ctx/a.txt'), 'utf8')).toBe('A content\n');
    expect(await exists('ctx/dir/sub/nested.txt')).toBe(true);
    expect(await exists('ctx/secret.txt')).toBe(false);
    expect(await exists('ctx/debug.log')).toBe(false);

    // deletions in a later RUN are whiteouts (of this build's layers and of the base's)
    expect(await exists('data/keep/k')).toBe(true);
    expect(await exists('data/gone')).toBe(false);
    expect(await exists('data/bye.txt')).toBe(false);
    expect(await exists('root')).toBe(false);
    expect(await exists('bin/busybox')).toBe(true);
    // a directory replaced by a file, a file replaced by a directory
    const d2f = await lstat(p('data/dir2file'));
    expect(d2f.isFile()).toBe(true);
    expect(await readFile(p('data/dir2file'), 'utf8')).toBe('now-a-file\n');
    expect(await exists('data/dir2file/inner')).toBe(false);
    expect((await lstat(p('data/file2dir'))).isDirectory()).toBe(true);
    expect(await readFile(p('data/file2dir/child'), 'utf8')).toBe('child\n');

    // symlinks (relative and dangling absolute) and a hardlink
    expect((await lstat(p('app/dir/link'))).isSymbolicLink()).toBe(true);
    expect(await readlink(p('app/dir/link'))).toBe('../a.txt');
    expect(await readlink(p('app/dangling'))).toBe('/nonexistent/target');
    const [h1, h2] = await Promise.all([stat(p('data/h1')), stat(p('data/h2'))]);
    expect(h1.ino).toBe(h2.ino);
    expect(h1.nlink).toBe(2);
    expect(await readFile(p('data/h2'), 'utf8')).toBe('same\n');

    // RUN saw ENV, ran as root before USER and as app after, in WORKDIR
    expect(await readFile(p('data/greeting'), 'utf8')).toBe('hello world from root\n');
    expect(await readFile(p('tmp/uid-of-run'), 'utf8')).toBe('1000\n');
    expect(await readFile(p('tmp/pwd-of-run'), 'utf8')).toBe('/app\n');
    expect(await owner('tmp/uid-of-run')).toBe('1000:1000');
  });

  it('runs heredocs: RUN <<EOF scripts, #! programs, heredocs read by the shell, COPY <<EOF files', async () => {
    const ctx = await ws.context('ctx-heredoc', {
      Dockerfile: [
        `FROM ${base}`,
        'ENV WHO=world',
        'RUN <<EOF',
        'echo "hello $WHO" > /script.txt',
        'echo second line >> /script.txt',
        'EOF',
        'RUN <<EOF',
        '#!/bin/sh -e',
        'echo "from a program: $0" > /program.txt',
        'EOF',
        'RUN cat <<A > /shell.txt && cat <<-B >> /shell.txt',
        'first $WHO',
        'A',
        '\tsecond',
        '\tB',
        'COPY <<CONF /etc/app.conf',
        'key=$WHO',
        'CONF',
      ].join('\n') + '\n',
    });
    await ws.buildOk(ctx, ['--destination', `${reg.host}/test/heredoc:v1`]);
    const rootfs = await ws.unpack(reg, 'test/heredoc:v1', 'heredoc');
    const read = (rel: string): Promise<string> => readFile(path.join(rootfs, rel), 'utf8');
    expect(await read('script.txt')).toBe('hello world\nsecond line\n');
    expect(await read('program.txt')).toMatch(/^from a program: \/\.builder-heredoc-[0-9a-f]+\n$/);
    expect(await read('shell.txt')).toBe('first world\nsecond\n');
    expect(await read('etc/app.conf')).toBe('key=world\n');
    expect((await readdir(rootfs)).filter((n) => n.startsWith('.builder-heredoc'))).toEqual([]); // the program file is not left behind
  });

  it('adds no layer for a RUN that changes nothing', async () => {
    const ctx = await ws.context('ctx-noop', {
      Dockerfile: `FROM ${base}\nRUN true\nRUN ls / > /dev/null && cat /etc/passwd > /dev/null\nRUN echo changed > /changed\n`,
    });
    await ws.buildOk(ctx, ['--destination', `${reg.host}/test/noop:v1`]);
    const inspect = await skopeoInspect(reg, 'test/noop:v1');
    expect(inspect.Layers).toHaveLength(baseLayers + 1);
    const hist = ((await skopeoInspect(reg, 'test/noop:v1', { config: true })).history as History[]).slice(baseHistory.length);
    expect(hist.map((h) => [h.created_by?.includes('true') || h.created_by?.includes('ls /') || h.created_by?.includes('changed'), h.empty_layer === true]))
      .toEqual([[true, true], [true, true], [true, false]]);
    const rootfs = await ws.unpack(reg, 'test/noop:v1', 'noop');
    expect(await readFile(path.join(rootfs, 'changed'), 'utf8')).toBe('changed\n');
  });

  it('inherits the base config; ENTRYPOINT resets an inherited CMD but not one set in the stage', async () => {
    const ctx = await ws.context('ctx-entry', {
      Dockerfile: `FROM ${base}\nENTRYPOINT ["/bin/echo"]\n`,
      'Dockerfile.cmd': `FROM ${base}\nCMD ["x"]\nENTRYPOINT ["/bin/echo"]\n`,
      'Dockerfile.plain': `FROM ${base}\nENV A=1\n`,
    });
    await ws.buildOk(ctx, ['--destination', `${reg.host}/test/entry:reset`]);
    await ws.buildOk(ctx, ['--dockerfile', 'Dockerfile.cmd', '--destination', `${reg.host}/test/entry:kept`]);
    await ws.buildOk(ctx, ['--dockerfile', 'Dockerfile.plain', '--destination', `${reg.host}/test/entry:plain`]);
    const [reset, kept, plain] = await Promise.all(['reset', 'kept', 'plain'].map(async (t) => (await skopeoInspect(reg, `test/entry:${t}`, { config: true })).config));
    expect(reset.Entrypoint).toEqual(['/bin/echo']);
    expect(reset.Cmd ?? null).toBeNull();
    expect(kept.Entrypoint).toEqual(['/bin/echo']);
    expect(kept.Cmd).toEqual(['x']);
    expect(plain.Cmd).toEqual(['sh']);
    expect(plain.Env).toEqual([...(reset.Env as string[]), 'A=1']);
    // metadata only: the manifest reuses the base layers as they are
    expect((await skopeoInspect(reg, 'test/entry:plain')).Layers).toEqual((await skopeoInspect(reg, 'library/busybox:latest')).Layers);
  });

  it('multi-stage: COPY --from=<name> and --from=<index>, a stage FROM an earlier stage, --target', async () => {
    const dockerfile = [
      `FROM ${base} AS builder`,
      'RUN mkdir /out && echo built > /out/artifact && echo one > /out/one',
      'FROM builder AS derived',
      'ENV DERIVED=yes',
      'RUN echo derived >> /out/artifact && echo "$DERIVED" > /out/env',
      `FROM ${base}`,
      'COPY --from=builder /out/artifact /from-name',
      'COPY --from=0 /out/one /from-index',
      'COPY --from=derived /out/ /from-derived/',
      'RUN cat /from-name /from-index > /combined',
    ].join('\n');
    const ctx = await ws.context('ctx-multi', {
      Dockerfile: dockerfile,
      // --target derived must stop there: the stage after it would fail
      'Dockerfile.target': `${dockerfile.split('\n').slice(0, 5).join('\n')}\nFROM ${base}\nRUN exit 9\n`,
    });
    await ws.buildOk(ctx, ['--destination', `${reg.host}/test/multi:v1`]);
    const rootfs = await ws.unpack(reg, 'test/multi:v1', 'multi');
    const read = (rel: string): Promise<string> => readFile(path.join(rootfs, rel), 'utf8');
    expect(await read('from-name')).toBe('built\n'); // builder's file, not changed by the derived stage
    expect(await read('from-index')).toBe('one\n');
    expect(await read('from-derived/artifact')).toBe('built\nderived\n');
    expect(await read('from-derived/env')).toBe('yes\n');
    expect(await read('combined')).toBe('built\none\n');
    await expect(lstat(path.join(rootfs, 'out'))).rejects.toThrow(); // the final stage starts from the base
    const cfg = await skopeoInspect(reg, 'test/multi:v1', { config: true });
    expect(cfg.config.Env).not.toContain('DERIVED=yes');

    await ws.buildOk(ctx, ['--dockerfile', 'Dockerfile.target', '--target', 'derived', '--destination', `${reg.host}/test/multi:derived`]);
    const troot = await ws.unpack(reg, 'test/multi:derived', 'derived');
    expect(await readFile(path.join(troot, 'out/artifact'), 'utf8')).toBe('built\nderived\n');
    expect(await readFile(path.join(troot, 'out/one'), 'utf8')).toBe('one\n');
    const tcfg = await skopeoInspect(reg, 'test/multi:derived', { config: true });
    expect(tcfg.config.Env).toContain('DERIVED=yes');
    // derived's image = base + builder's RUN layer + its own RUN layer
    expect((await skopeoInspect(reg, 'test/multi:derived')).Layers).toHaveLength(baseLayers + 2);
    expect((tcfg.history as History[]).slice(baseHistory.length).map((h) => h.empty_layer === true)).toEqual([false, true, false]);
  });

  it('a stage FROM an earlier stage that also COPY --from it reads the unchanged parent', async () => {
    const ctx = await ws.context('ctx-self-copy', {
      Dockerfile: [
        `FROM ${base} AS parent`,
        'RUN echo parent > /p.txt',
        'FROM parent',
        'RUN echo child > /p.txt && rm -rf /home',
        'COPY --from=parent /p.txt /copied.txt',
        'COPY --from=parent /home/app /restored-home',
      ].join('\n'),
    });
    await ws.buildOk(ctx, ['--destination', `${reg.host}/test/selfcopy:v1`]);
    const rootfs = await ws.unpack(reg, 'test/selfcopy:v1', 'selfcopy');
    expect(await readFile(path.join(rootfs, 'p.txt'), 'utf8')).toBe('child\n');
    expect(await readFile(path.join(rootfs, 'copied.txt'), 'utf8')).toBe('parent\n');
    expect((await lstat(path.join(rootfs, 'restored-home'))).isDirectory()).toBe(true);
  });
});
