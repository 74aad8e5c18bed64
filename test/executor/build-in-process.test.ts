// build() called in this process (no CLI, no registry): FROM scratch with the host's static busybox, --no-push into an
// OCI layout, the step cache in an oci: directory. Each instruction is checked through the layer or config it produced.
import { createHash } from 'node:crypto';
import { copyFile, lstat, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processHost } from '../../src/cli/host.js';
import { BuilderError } from '../../src/errors.js';
import { build, type BuildOptions, type BuildResult } from '../../src/executor/index.js';
import { platformFromNode } from '../../src/image/platform.js';
import { sandboxAvailable } from '../../src/run/index.js';
import type { BuildEvent } from '../../src/util/events.js';
import { HOST_BUSYBOX } from '../support/images.js';
import { layerEntries, layoutImage, listTree, unpackLayers, verifyLayoutBlobs, type LayoutImage } from '../support/oci-layout.js';
import { run, umociUnpack } from '../support/tools.js';
import { Workspace } from './helpers.js';

const probe = await sandboxAvailable(processHost().kill);
const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

interface InProcess { result: BuildResult; events: BuildEvent[]; output: string; layout: string; image: LayoutImage }

describe.skipIf(!probe.ok)('build() in process (sandbox, no registry)', () => {
  let ws: Workspace;
  let n = 0;
  beforeAll(async () => {
    ws = await Workspace.create('builder-in-process-');
  });
  afterAll(async () => {
    await ws?.remove();
  });

  /** A context holding the host's static busybox (as `busybox`) beside `files`. */
  const context = async (files: Record<string, string | { content: string; mode: number }>): Promise<string> => {
    const ctx = await ws.context(`ctx-${++n}`, files);
    await copyFile(HOST_BUSYBOX, path.join(ctx, 'busybox'));
    return ctx;
  };

  /** What the CLI would hand build() for `--no-push --oci-layout-path OUT --run-mode sandbox --reproducible`. */
  const options = (ctx: string, layout: string, events: BuildEvent[], out: string[], over: Partial<BuildOptions>): BuildOptions => {
    const platform = platformFromNode(process.arch);
    return {
      context: ctx, dockerfile: 'Dockerfile', cwd: ctx, destinations: [], noPush: true, ociLayoutPath: layout,
      reproducible: true, platform, buildPlatform: platform, buildArgs: {}, env: {}, skipUnusedStages: true, labels: {},
      runMode: 'sandbox', force: false, snapshotMode: 'time', cacheDir: ws.path('cache'), workDir: ws.path('work'), registry: {},
      host: processHost(), emit: (e) => events.push(e), output: (text) => out.push(text), ...over,
    };
  };

  const buildIn = async (ctx: string, over: Partial<BuildOptions> = {}): Promise<InProcess> => {
    const layout = ws.path(`layout-${++n}`);
    const events: BuildEvent[] = [];
    const out: string[] = [];
    const result = await build(options(ctx, layout, events, out, over));
    return { result, events, output: out.join(''), layout, image: await layoutImage(layout) };
  };

  const steps = (events: BuildEvent[], status: 'cached' | 'finished'): string[] =>
    events.flatMap((e) => (e.type === 'step' && e.status === status ? [e.instruction] : []));

  const PREFIX = ['FROM scratch', 'COPY busybox /bin/busybox', 'RUN ["/bin/busybox", "--install", "-s", "/bin"]'];

  it('each instruction lands in its own layer or in the config, as the result and the layout say', async () => {
    const instructions = [
      ...PREFIX,
      'WORKDIR /app',
      'COPY --chmod=0640 --chown=12:34 a.txt ./a.txt',
      'RUN echo "ran as $(id -u) in $(pwd)" > ran.txt && rm /bin/vi',
      'ENV GREETING="hello world"',
      'USER 1000:1000',
      'LABEL org.example.k=v',
      'CMD ["sh"]',
    ];
    const ctx = await context({ Dockerfile: `${instructions.join('\n')}\n`, 'a.txt': 'A content\n' });
    // a destination only names the layout's tag: --no-push never contacts its registry (OCI types: umoci reads no other)
    const { result, layout, image, events, output } = await buildIn(ctx, { destinations: ['127.0.0.1:9/in-process:v1'], imageFormat: 'oci' });
    expect(output).toBe('');
    expect(image.descriptor.annotations?.['org.opencontainers.image.ref.name']).toBe('v1');
    // the result names what was written, and every blob checks out against its name
    expect(result.manifestDigest).toBe(image.descriptor.digest);
    expect(result.configDigest).toBe(image.manifest.config.digest);
    expect(result.mediaType).toBe(image.descriptor.mediaType);
    expect(image.manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(result.layers).toBe(image.manifest.layers.length);
    expect(result.pushed).toEqual([]);
    expect(await verifyLayoutBlobs(layout)).toBe(2 + image.manifest.layers.length);
    // metadata instructions change the config only
    expect(image.config.config.Env).toContain('GREETING=hello world');
    expect(image.config.config).toMatchObject({ User: '1000:1000', WorkingDir: '/app', Cmd: ['sh'], Labels: { 'org.example.k': 'v' } });
    expect(image.config.architecture).toBe(platformFromNode(process.arch).architecture);
    const history = image.config.history ?? [];
    expect(history.filter((h) => !h.empty_layer)).toHaveLength(image.manifest.layers.length);
    expect(history.filter((h) => h.empty_layer).map((h) => h.created_by?.split(' ')[0])).toEqual(['ENV', 'USER', 'LABEL', 'CMD']);
    expect(steps(events, 'finished')).toHaveLength(instructions.length - 1); // every step but FROM

    // one layer per filesystem step, holding only what that step changed
    const [copied, installed, workdir, chmodded, ran, ...rest] = await unpackLayers(layout, image, ws.path(`layers-${n}`));
    expect(rest).toEqual([]);
    expect(sha256(await readFile(path.join(copied!, 'bin/busybox')))).toBe(sha256(await readFile(HOST_BUSYBOX)));
    expect(await listTree(copied!)).toEqual(['bin/', 'bin/busybox']);
    expect(await readlink(path.join(installed!, 'bin/vi'))).toBe('/bin/busybox');
    expect(await listTree(workdir!)).toEqual(['app/']);
    expect((await layerEntries(layout, image.manifest.layers[3]!)).get('app/a.txt')).toEqual({ type: '-', mode: 0o640, uid: 12, gid: 34 });
    expect(await readFile(path.join(chmodded!, 'app/a.txt'), 'utf8')).toBe('A content\n');
    expect(await readFile(path.join(ran!, 'app/ran.txt'), 'utf8')).toBe('ran as 0 in /app\n');
    expect(await readdir(path.join(ran!, 'bin'))).toEqual(['.wh.vi']);

    // umoci applies the layers (the whiteout included) as a runtime would
    const rootfs = await umociUnpack(layout, 'v1', ws.path(`bundle-${n}`));
    expect(await readFile(path.join(rootfs, 'app/ran.txt'), 'utf8')).toBe('ran as 0 in /app\n');
    await expect(lstat(path.join(rootfs, 'bin/vi'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('reproducible: the same inputs give the same digest; a changed source changes its layer and the ones after only', async () => {
    const dockerfile = [...PREFIX, 'COPY a.txt /a.txt', 'RUN cat /a.txt > /b.txt', ''].join('\n');
    const first = await buildIn(await context({ Dockerfile: dockerfile, 'a.txt': 'one\n' }));
    const again = await buildIn(await context({ Dockerfile: dockerfile, 'a.txt': 'one\n' }));
    const changed = await buildIn(await context({ Dockerfile: dockerfile, 'a.txt': 'two\n' }));
    expect(again.result.manifestDigest).toBe(first.result.manifestDigest);
    expect(changed.result.manifestDigest).not.toBe(first.result.manifestDigest);
    const layers = (r: InProcess): string[] => r.image.manifest.layers.map((l) => l.digest);
    expect(layers(changed).slice(0, 2)).toEqual(layers(first).slice(0, 2));
    expect(layers(changed).slice(2).filter((d) => layers(first).includes(d))).toEqual([]);
  });

  it('the step cache in an oci: directory: a rebuild reuses every layer; a changed input rebuilds from that step on', async () => {
    const cacheDir = ws.path('step-cache');
    const cache = { repo: `oci:${cacheDir}`, ttlMs: 3_600_000, runLayers: true, copyLayers: true, push: true };
    const dockerfile = [...PREFIX, 'ARG FLAVOUR=plain', 'RUN head -c 32 /dev/urandom > /random.bin', 'COPY a.txt /a.txt', 'RUN echo "$FLAVOUR" > /flavour', ''].join('\n');
    const ctx = await context({ Dockerfile: dockerfile, 'a.txt': 'one\n' });
    const first = await buildIn(ctx, { cache });
    expect(steps(first.events, 'cached')).toEqual([]);
    // the random layer comes back byte for byte: only the cache can have kept it
    const second = await buildIn(ctx, { cache });
    expect(steps(second.events, 'cached')).toHaveLength(first.image.manifest.layers.length);
    expect(second.result.manifestDigest).toBe(first.result.manifestDigest);
    // where a line stands and files no step selects are in no key
    const moved = await context({ Dockerfile: `# a comment\n\n${dockerfile}`, 'a.txt': 'one\n', 'unused.txt': 'x\n' });
    expect(steps((await buildIn(moved, { cache })).events, 'cached')).toEqual(steps(second.events, 'cached'));

    await writeFile(path.join(ctx, 'a.txt'), 'two\n');
    const edited = await buildIn(ctx, { cache });
    const built = steps(first.events, 'finished'); // COPY busybox, RUN --install, ARG, RUN random, COPY a.txt, RUN flavour
    expect(steps(edited.events, 'cached')).toEqual(built.slice(0, 4).filter((s) => !s.startsWith('ARG')));
    expect(edited.image.manifest.layers[2]!.digest).toBe(first.image.manifest.layers[2]!.digest);

    const flavoured = await buildIn(ctx, { cache, buildArgs: { FLAVOUR: 'spicy' } });
    // an ARG is in the key of the steps after it only (those that can read it)
    expect(steps(flavoured.events, 'cached')).toEqual(built.slice(0, 2));
    expect(flavoured.image.manifest.layers[2]!.digest).not.toBe(first.image.manifest.layers[2]!.digest);
  });

  // The handlers (RUN, COPY/ADD, WORKDIR) through one-step Dockerfiles: what they add, whatever their signature.
  const USERS = { 'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n', 'etc/group': 'root:x:0:\napp:x:1000:\n' };
  const BASE = [...PREFIX, 'COPY etc /etc/'];
  const layersOf = (r: InProcess): string[] => r.image.manifest.layers.map((l) => l.digest);

  it('a RUN that changes nothing and a WORKDIR that exists add no layer, only an empty history entry', async () => {
    const plain = await buildIn(await context({ Dockerfile: `${BASE.join('\n')}\n`, ...USERS }));
    const empty = await buildIn(await context({ Dockerfile: `${[...BASE, 'RUN true', 'WORKDIR /bin'].join('\n')}\n`, ...USERS }));
    expect(layersOf(empty)).toEqual(layersOf(plain));
    const emptyEntries = (r: InProcess): number => (r.image.config.history ?? []).filter((h) => h.empty_layer).length;
    expect(emptyEntries(empty)).toBe(emptyEntries(plain) + 2);
    expect(empty.image.config.config.WorkingDir).toBe('/bin');
  });

  it('USER: RUN runs as that user, WORKDIR is created owned by it, COPY --chown=name takes its primary group', async () => {
    const r = await buildIn(await context({
      Dockerfile: `${[...BASE, 'USER app', 'WORKDIR /made/by-app', 'RUN id -u > uid && id -g > gid', 'COPY --chown=app a.txt /owned.txt', 'USER 4242', 'WORKDIR /by-uid'].join('\n')}\n`,
      ...USERS, 'a.txt': 'a\n',
    }));
    const own = BASE.length - 1; // the layers after the base's
    const [, ran] = await unpackLayers(r.layout, r.image, ws.path(`layers-${n}`)).then((d) => d.slice(own));
    const owner = async (k: number, p: string): Promise<number[]> => {
      const e = (await layerEntries(r.layout, r.image.manifest.layers[own + k]!)).get(p);
      return [e?.uid ?? -1, e?.gid ?? -1];
    };
    expect(await owner(0, 'made/by-app')).toEqual([1000, 1000]);
    expect(await readFile(path.join(ran!, 'made/by-app/uid'), 'utf8')).toBe('1000\n');
    expect(await readFile(path.join(ran!, 'made/by-app/gid'), 'utf8')).toBe('1000\n');
    expect(await owner(2, 'owned.txt')).toEqual([1000, 1000]);
    expect(await owner(3, 'by-uid')).toEqual([4242, 4242]); // no passwd entry: uid:uid, as BuildKit
  });

  it('COPY --from a stage copies its files; ADD extracts a local tar; COPY --link holds only its files and parents', async () => {
    const ctx = await context({
      Dockerfile: `${['FROM scratch AS main', ...PREFIX.slice(1), 'RUN mkdir -p /out && echo built > /out/f', 'FROM scratch AS other', 'COPY a.txt /other.txt',
        'FROM main', 'COPY --from=other /other.txt /from-stage/', 'ADD files.tar /unpacked/', 'RUN mkdir -p /opt/app && echo old > /opt/app/keep',
        'COPY --link a.txt /opt/app/sub/'].join('\n')}\n`,
      'a.txt': 'a\n',
    });
    await ws.context(`tar-src-${n}`, { 'in/x.txt': 'x\n' });
    await run('tar', ['-cf', path.join(ctx, 'files.tar'), '-C', ws.path(`tar-src-${n}`), 'in']);
    const r = await buildIn(ctx);
    const [fromStage, unpacked, , linked] = (await unpackLayers(r.layout, r.image, ws.path(`layers-${n}`))).slice(PREFIX.length);
    expect(await listTree(fromStage!)).toEqual(['from-stage/', 'from-stage/other.txt']);
    expect(await readFile(path.join(unpacked!, 'unpacked/in/x.txt'), 'utf8')).toBe('x\n');
    expect(await listTree(linked!)).toEqual(['opt/', 'opt/app/', 'opt/app/sub/', 'opt/app/sub/a.txt']);
  });

  it('with the step cache, COPY --link hits even when a step before it changed; the steps after it do not', async () => {
    const cache = { repo: `oci:${ws.path('link-cache')}`, ttlMs: 3_600_000, runLayers: true, copyLayers: true, push: true };
    const dockerfile = (before: string): string => `${[...PREFIX, `RUN echo ${before} > /before`, 'COPY --link a.txt /linked/', 'RUN cat /before /linked/a.txt > /after'].join('\n')}\n`;
    const one = await buildIn(await context({ Dockerfile: dockerfile('one'), 'a.txt': 'a\n' }), { cache });
    const two = await buildIn(await context({ Dockerfile: dockerfile('two'), 'a.txt': 'a\n' }), { cache });
    const built = steps(one.events, 'finished');
    expect(steps(two.events, 'cached')).toEqual([...built.slice(0, PREFIX.length - 1), built[PREFIX.length]]);
    const last = (await unpackLayers(two.layout, two.image, ws.path(`layers-${n}`))).at(-1)!;
    expect(await readFile(path.join(last, 'after'), 'utf8')).toBe('two\na\n');
  });

  it('RUN --mount: a cache mount outlives the build and stays out of the image; a secret is read, never written', async () => {
    const secret = `s3cret-${n}-never-in-a-layer`;
    const dockerfile = `${[...PREFIX, 'RUN --mount=type=cache,target=/c --mount=type=secret,id=tok echo x >> /c/log && wc -l < /c/log > /count && md5sum < /run/secrets/tok > /tok.md5'].join('\n')}\n`;
    const ctx = await context({ Dockerfile: dockerfile });
    const secrets = { tok: { value: secret } };
    const first = await buildIn(ctx, { secrets });
    const second = await buildIn(ctx, { secrets });
    const lastLayer = async (r: InProcess): Promise<string> => (await unpackLayers(r.layout, r.image, ws.path(`layers-${++n}`))).at(-1)!;
    const [a, b] = [await lastLayer(first), await lastLayer(second)];
    expect((await readFile(path.join(a, 'count'), 'utf8')).trim()).toBe('1');
    expect((await readFile(path.join(b, 'count'), 'utf8')).trim()).toBe('2');
    expect(await readFile(path.join(a, 'tok.md5'), 'utf8')).toBe(`${createHash('md5').update(secret).digest('hex')}  -\n`);
    expect(await listTree(a)).toEqual(['count', 'tok.md5']);
    for (const blob of await readdir(path.join(first.layout, 'blobs/sha256'))) {
      const bytes = await readFile(path.join(first.layout, 'blobs/sha256', blob));
      expect(bytes.includes(secret)).toBe(false);
    }
  });

  it('a failing RUN rejects with RUN_FAILED, writes no layout and leaves nothing in the work dir', async () => {
    const ctx = await context({ Dockerfile: [...PREFIX, 'RUN echo partial > /p && exit 3', ''].join('\n') });
    const layout = ws.path('failed-layout');
    const workDir = ws.path('work-failed');
    const events: BuildEvent[] = [];
    const err = await build(options(ctx, layout, events, [], { workDir })).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(BuilderError);
    expect((err as BuilderError).code).toBe('RUN_FAILED');
    expect((err as BuilderError).message).toContain('exit code 3');
    await expect(lstat(layout)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readdir(workDir)).toEqual([]);
    expect(events.some((e) => e.type === 'step' && e.status === 'failed')).toBe(true);
  });

  it('a missing Dockerfile rejects with DOCKERFILE_NOT_FOUND before any step', async () => {
    const ctx = await ws.context('ctx-no-dockerfile', { 'a.txt': 'a\n' });
    const events: BuildEvent[] = [];
    const err = await build(options(ctx, ws.path('none'), events, [], {})).then(() => undefined, (e: unknown) => e);
    expect((err as BuilderError).code).toBe('DOCKERFILE_NOT_FOUND');
    expect(events.filter((e) => e.type === 'step')).toEqual([]);
  });
});
