// --platform linux/amd64,linux/arm64 end to end, with a real second platform (Debian's aarch64 busybox): one run pushes
// an index of two images, the $BUILDPLATFORM stage runs once, each image has its own base, files and label; a RUN for
// a platform this host cannot execute stops with a clear error (or runs, where an emulator is registered).
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { findEmulator } from '../../src/run/index.js';
import { runJob, writeJobSpec } from '../support/crun.js';
import { useFixture } from '../support/fixture.js';
import { hostArch, pushArm64Busybox, pushCrossPlatform } from '../support/images.js';
import type { TestRegistry } from '../support/registry.js';
import { run, skopeoFlags, skopeoInspect, umociUnpack } from '../support/tools.js';
import { registryTags, ROOT, Workspace } from './helpers.js';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const ELF_MACHINE: Record<string, number> = { amd64: 62, arm64: 183 };

/** e_machine of an ELF file (little-endian: both test platforms are). */
async function elfMachine(file: string): Promise<number> {
  return (await readFile(file)).readUInt16LE(18);
}

interface IndexEntry { mediaType: string; digest: string; platform: { os: string; architecture: string; variant?: string } }

describe('builder build --platform a,b', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  let ctx: string;
  const platforms = `linux/${hostArch()},linux/arm64`;

  useFixture({ prefix: 'builder-platform-', push: (r) => pushCrossPlatform(r) }, (f) => ({ reg, ws, base } = f));
  beforeAll(async () => {
    ctx = await ws.context('ctx', {
      Dockerfile: [
        'ARG BASE',
        'FROM --platform=$BUILDPLATFORM $BASE AS build',
        'ARG BUILDPLATFORM',
        'RUN mkdir /out && echo "built on $BUILDPLATFORM by $(uname -m)" > /out/build.txt && echo native-build-step-ran',
        'FROM $BASE',
        'ARG TARGETARCH',
        'ARG TARGETPLATFORM',
        'COPY --from=build /out/build.txt /build.txt',
        'COPY arch/$TARGETARCH.txt /arch.txt',
        'LABEL arch=$TARGETARCH platform=$TARGETPLATFORM',
        '',
      ].join('\n'),
      [`arch/${hostArch()}.txt`]: `for ${hostArch()}\n`,
      'arch/arm64.txt': 'for arm64\n',
    });
  });

  /** skopeo --override-arch ARCH copy of the tag, unpacked with umoci; returns the rootfs and the copied manifest's digest. */
  async function unpackFor(ref: string, arch: string, name: string): Promise<{ rootfs: string; digest: string }> {
    const layout = ws.path(`${name}-layout`);
    await run('skopeo', ['--override-arch', arch, 'copy', '--quiet', ...skopeoFlags({ reg }, 'src-'), `docker://${reg.host}/${ref}`, `oci:${layout}:img`]);
    const top = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    return { rootfs: await umociUnpack(layout, 'img', ws.path(`${name}-bundle`)), digest: top.manifests[0]!.digest };
  }

  it('pushes one index of an amd64 and an arm64 image, the $BUILDPLATFORM stage built once', async () => {
    const r = await ws.build(ctx, [
      '--destination', `${reg.host}/multi/app:v1`, '--platform', platforms, '--build-arg', `BASE=${base}`,
      '--digest-file', ws.path('digest'), '--image-name-with-digest-file', ws.path('name-digest'), '--run-mode', 'sandbox',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const printed = r.stdout.trim();
    // the native build stage ran once for both targets
    expect(r.stderr.split('\n').filter((l) => l.includes('native-build-step-ran') && !l.includes('RUN'))).toHaveLength(1);

    const index = await skopeoInspect(reg, 'multi/app:v1', { raw: true });
    expect(index.mediaType).toBe(OCI_INDEX);
    const entries = index.manifests as IndexEntry[];
    expect(entries.map((m) => `${m.platform.os}/${m.platform.architecture}`).sort()).toEqual([`linux/${hostArch()}`, 'linux/arm64'].sort());
    expect((await readFile(ws.path('digest'), 'utf8')).trim()).toBe(printed);
    expect((await skopeoInspect(reg, 'multi/app:v1')).Digest).toBe(printed);
    expect((await readFile(ws.path('name-digest'), 'utf8')).trim()).toBe(`${reg.host}/multi/app@${printed}`);
    // the summary names each platform's image
    for (const m of entries) expect(r.stderr).toContain(`${m.platform.os}/${m.platform.architecture} ${m.digest}`);

    for (const arch of new Set([hostArch(), 'arm64'])) {
      const entry = entries.find((m) => m.platform.architecture === arch)!;
      const { rootfs, digest } = await unpackFor('multi/app:v1', arch, `app-${arch}`);
      expect(digest).toBe(entry.digest);
      const config = await skopeoInspect(reg, `multi/app@${entry.digest}`, { config: true });
      expect(config.architecture).toBe(arch);
      expect(config.os).toBe('linux');
      expect(config.config.Labels).toMatchObject({ arch, platform: `linux/${arch}` });
      // its own platform's base: an aarch64 busybox in the arm64 image
      expect(await elfMachine(path.join(rootfs, 'bin/busybox'))).toBe(ELF_MACHINE[arch]);
      expect(await readFile(path.join(rootfs, 'arch.txt'), 'utf8')).toBe(`for ${arch}\n`);
      // the build stage ran on the build platform, natively
      expect(await readFile(path.join(rootfs, 'build.txt'), 'utf8')).toBe(`built on linux/${hostArch()} by ${hostArch() === 'amd64' ? 'x86_64' : 'aarch64'}\n`);
    }
  });

  it('rebuilds both platforms from the layer cache, writes the index to --oci-layout-path and --tar-path, and a Docker manifest list with --image-format docker', async () => {
    const args = ['--platform', platforms, '--build-arg', `BASE=${base}`, '--cache=true', '--cache-repo', `${reg.host}/multi/cache`, '--run-mode', 'sandbox', '--reproducible'];
    const first = await ws.build(ctx, [...args, '--destination', `${reg.host}/multi/cached:1`]);
    expect(first.code, first.stderr).toBe(0);
    const second = await ws.build(ctx, [...args, '--destination', `${reg.host}/multi/cached:2`, '--no-push',
      '--oci-layout-path', ws.path('out-layout'), '--tar-path', ws.path('out.tar')]);
    expect(second.code, second.stderr).toBe(0);
    // same index, nothing rebuilt: the RUN and both platforms' COPYs came from the cache
    expect(second.stdout.trim()).toBe(first.stdout.trim());
    expect(second.stderr).toMatch(/0 built/);
    expect(await registryTags(reg, 'multi/cached')).toEqual(['1']);

    // OCI layout: index.json names the index; skopeo picks each platform out of it
    const top = JSON.parse(await readFile(ws.path('out-layout/index.json'), 'utf8')) as { manifests: Array<{ digest: string; mediaType: string }> };
    expect(top.manifests.map((m) => [m.digest, m.mediaType])).toEqual([[second.stdout.trim(), OCI_INDEX]]);
    const armFromLayout = await run('skopeo', ['--override-arch', 'arm64', 'inspect', '--config', `oci:${ws.path('out-layout')}:2`]);
    expect(JSON.parse(armFromLayout.stdout).architecture).toBe('arm64');
    // --tar-path: an OCI archive and a docker-archive at once
    const fromTar = await run('skopeo', ['--override-arch', 'arm64', 'inspect', '--config', `oci-archive:${ws.path('out.tar')}:2`]);
    expect(JSON.parse(fromTar.stdout).architecture).toBe('arm64');
    const archives = await Promise.all([0, 1].map(async (n) => JSON.parse((await run('skopeo', ['inspect', '--config', `docker-archive:${ws.path('out.tar')}:@${n}`])).stdout).architecture as string));
    expect(archives.sort()).toEqual([hostArch(), 'arm64'].sort());

    const docker = await ws.build(ctx, [...args.slice(0, 4), '--destination', `${reg.host}/multi/docker:1`, '--image-format', 'docker', '--run-mode', 'sandbox', '--log-format', 'json']);
    expect(docker.code, docker.stderr).toBe(0);
    const list = await skopeoInspect(reg, 'multi/docker:1', { raw: true });
    expect(list.mediaType).toBe(DOCKER_LIST);
    expect((list.manifests as IndexEntry[]).map((m) => m.platform.architecture).sort()).toEqual([hostArch(), 'arm64'].sort());
    // the JSON summary: the index's digest, and each platform's image as the list names it
    const summary = docker.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.event === 'summary').summary;
    expect(summary.digest).toBe(docker.stdout.trim());
    expect(summary.mediaType).toBe(DOCKER_LIST);
    expect(summary.images.map((i: { platform: string; digest: string }) => [i.platform, i.digest]).sort())
      .toEqual((list.manifests as IndexEntry[]).map((m) => [`linux/${m.platform.architecture}`, m.digest]).sort());
  });

  it('builder warm --platform fills the store for every platform; builder plan shows the shared stage', async () => {
    const cache = ws.path('warm-cache');
    const w = await ws.cli(['warm', '--cache-dir', cache, '--platform', platforms, '-i', base]);
    expect(w.code, w.stderr).toBe(0);
    const before = (await reg.accessLog()).length;
    const r = await ws.build(ctx, ['--platform', platforms, '--build-arg', `BASE=${base}`, '--no-push', '--run-mode', 'sandbox'], { cache });
    expect(r.code, r.stderr).toBe(0);
    // both platforms' layers came from the warm store: not one blob request for the base
    const log = (await reg.accessLog()).slice(before);
    expect(log.filter((e) => e.path.startsWith('/v2/library/cross/blobs/'))).toEqual([]);
    expect(log.filter((e) => e.path.startsWith('/v2/library/cross/manifests/')).length).toBeGreaterThan(0);

    const plan = await ws.cli(['plan', '--context', ctx, '--dockerfile', path.join(ctx, 'Dockerfile'), '--platform', platforms, '--build-arg', `BASE=${base}`]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout.match(/^platform: .*$/gm)).toEqual([`platform: linux/${hostArch()} (build platform linux/${hostArch()})`, 'platform: linux/arm64 (build platform linux/' + hostArch() + ')']);
    expect(plan.stdout.match(/^stage 0 build: .*$/gm)!.every((l) => l.endsWith('runs once, shared by every platform'))).toBe(true);
    expect(plan.stdout.match(/^stage 1: .*$/gm)!.every((l) => l.endsWith('— runs'))).toBe(true);
  });

  it('a RUN for a platform this host cannot execute: stops before the step naming stage, step and platform (or runs under a registered emulator)', async () => {
    const foreign = await ws.context('foreign', { Dockerfile: `ARG BASE\nFROM $BASE AS final\nRUN uname -m\n` });
    const r = await ws.build(foreign, ['--destination', `${reg.host}/multi/foreign:1`, '--platform', platforms, '--build-arg', `BASE=${base}`, '--run-mode', 'sandbox']);
    const emulator = await findEmulator('arm64');
    if (r.code === 0) {
      // a machine with qemu-user-static registered (visible here or only to the kernel): the step ran emulated
      expect(r.stderr).toMatch(/\[linux\/arm64 final 1\/1\] aarch64/);
      expect(r.stderr).toMatch(/RUN steps for linux\/arm64 run (under the emulator|emulated)/);
      return;
    }
    expect(emulator.ok).toBe(false);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('RUN_FOREIGN_PLATFORM');
    expect(r.stderr).toMatch(/linux\/arm64 stage 0 \(final\), step \[linux\/arm64 final 1\/1\] "RUN \/bin\/sh -c uname -m": the stage is linux\/arm64 and this host \(linux\/\w+\) cannot run its binaries/);
    expect(r.stderr).toContain('Dockerfile:3');
    if (!emulator.ok && emulator.mounted) expect(r.stderr).toContain(emulator.reason);
    // binfmt_misc not mounted (these machines): the kernel was asked with the image's own shell, and refused it
    else {
      expect(r.stderr).toMatch(/binfmt_misc is not mounted .*, and the kernel could not run the image's \/bin\/sh \(exit \d+\)/);
      expect(r.stderr).toMatch(/\[linux\/arm64 final 1\/1\] .*[Ee]xec format error/); // what the kernel said to the image's shell
    }
    expect(r.stderr).not.toContain('aarch64');
    expect(r.stderr).toMatch(/qemu-user-static/);
    expect(await registryTags(reg, 'multi/foreign')).toEqual([]);
  });

  it('refuses a platform named twice, --platform with --custom-platform, and a target stage pinned to one platform', async () => {
    const twice = await ws.build(ctx, ['--no-push', '--platform', 'linux/arm64,linux/amd64,linux/arm64/v8', '--build-arg', `BASE=${base}`]);
    expect(twice.code).not.toBe(0);
    expect(twice.stderr).toMatch(/PLATFORM_DUPLICATE: --platform names linux\/arm64 twice/);
    const both = await ws.build(ctx, ['--no-push', '--platform', platforms, '--custom-platform', 'linux/arm64', '--build-arg', `BASE=${base}`]);
    expect(both.code).not.toBe(0);
    expect(both.stderr).toContain('FLAG_CONFLICT');
    const pinned = await ws.context('pinned', { Dockerfile: 'ARG BASE\nFROM --platform=$BUILDPLATFORM $BASE AS build\nFROM build\nCOPY Dockerfile /x\n' });
    const r = await ws.build(pinned, ['--destination', `${reg.host}/multi/pinned:1`, '--platform', platforms, '--build-arg', `BASE=${base}`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`BUILD_TARGET_PINNED: pinned/Dockerfile:3: the target stage is FROM --platform=linux/${hostArch()}`));
    expect(await registryTags(reg, 'multi/pinned')).toEqual([]);
    // one platform: today's build, the pinned stage's image
    const one = await ws.build(pinned, ['--destination', `${reg.host}/multi/pinned:2`, '--platform', 'linux/arm64', '--build-arg', `BASE=${base}`]);
    expect(one.code, one.stderr).toBe(0);
    expect((await skopeoInspect(reg, 'multi/pinned:2', { config: true })).architecture).toBe(hostArch());
  });

  it('a single-platform base of another architecture is an error naming both platforms', async () => {
    const arm = await pushArm64Busybox(reg);
    const c = await ws.context('mismatch', { Dockerfile: `FROM ${arm}\nCOPY Dockerfile /x\n` });
    const r = await ws.build(c, ['--destination', `${reg.host}/multi/mismatch:1`, '--platform', `linux/${hostArch()}`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('BASE_PLATFORM_MISMATCH');
    expect(r.stderr).toContain(`is a linux/arm64 image, but this stage builds for linux/${hostArch()}`);
    // the same base is fine for an arm64 target (COPY only: nothing to execute)
    const ok = await ws.build(c, ['--destination', `${reg.host}/multi/mismatch:2`, '--platform', 'linux/arm64/v8']);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await skopeoInspect(reg, 'multi/mismatch:2', { config: true })).architecture).toBe('arm64');
    // COPY --from that image (its files only, as BuildKit): a warning for the other platform, not an error
    const files = await ws.context('mismatch-copy', { Dockerfile: `ARG BASE\nFROM $BASE\nCOPY --from=${arm} /bin/busybox /arm-busybox\n` });
    const copied = await ws.build(files, ['--destination', `${reg.host}/multi/mismatch:3`, '--platform', platforms, '--build-arg', `BASE=${base}`]);
    expect(copied.code, copied.stderr).toBe(0);
    expect(copied.stderr).toContain(`is a linux/arm64 image; its files are used in a stage that builds for linux/${hostArch()}`);
    expect(copied.stderr).not.toContain('BASE_PLATFORM_MISMATCH');
  });
});

describe.skipIf(process.getuid?.() !== 0)('builder --platform a,b in place, in the executor image as an unprivileged CI job (crun)', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  let rootfs: string;
  let imageEnv: string[];
  const platforms = `linux/${hostArch()},linux/arm64`;

  useFixture({ prefix: 'builder-platform-inplace-', push: (r) => pushCrossPlatform(r) }, (f) => ({ reg, ws, base } = f));
  beforeAll(async () => {
    const layout = ws.path('executor-layout');
    await run('node', [path.join(ROOT, 'scripts/executor-image/build.mjs'), layout], { timeoutMs: 170_000 });
    rootfs = await umociUnpack(layout, 'latest', ws.path('executor-bundle'));
    imageEnv = (JSON.parse(await readFile(ws.path('executor-bundle', 'config.json'), 'utf8')) as { process: { env: string[] } }).process.env;
    await ws.context('jobws/cross', {
      Dockerfile: `ARG BASE\nFROM --platform=$BUILDPLATFORM $BASE AS build\nARG BUILDPLATFORM\nRUN echo "built on $BUILDPLATFORM by $(uname -m)" > /build.txt\nFROM $BASE\nARG TARGETARCH\nCOPY --from=build /build.txt /build.txt\nRUN echo $TARGETARCH > /arch.txt\n`,
    });
  }, 360_000);

  it('builds the shared stage once in "/", and stops at the foreign RUN before running it (or runs it emulated)', async () => {
    const bundle = ws.path('job');
    await mkdir(bundle, { recursive: true });
    const args = ['/builder/bin/builder', '--context', '/workspace/cross', '--platform', platforms, '--build-arg', `BASE=${base}`, '--destination', `${reg.host}/inplace/app:1`];
    await writeJobSpec(bundle, { rootfs, args, env: imageEnv, cwd: '/workspace', binds: [{ source: ws.path('jobws'), destination: '/workspace' }] });
    const r = await runJob(bundle, `builder-test-platform-${process.pid}`);
    expect(r.stderr).toMatch(/running in place/);
    expect(r.stderr.split('\n').filter((l) => /\[build 2\/2\] RUN/.test(l))).toHaveLength(1);
    if (r.code === 0) {
      // an emulator the kernel has: both images, the arm64 one's RUN run under it
      const root = await ws.unpack(reg, 'inplace/app:1', 'inplace');
      expect(await readFile(path.join(root, 'build.txt'), 'utf8')).toMatch(/^built on linux\//);
      return;
    }
    expect(r.stderr).toMatch(/RUN_FOREIGN_PLATFORM: cross\/Dockerfile:8: linux\/arm64 stage 1, step \[linux\/arm64 1 3\/3\] "RUN \/bin\/sh -c echo \$TARGETARCH > \/arch.txt": the stage is linux\/arm64/);
    // the host platform's image was built in place before the arm64 one stopped; nothing was pushed
    expect(r.stderr).toMatch(/\[linux\/\w+ 1 3\/3\] snapshot: 1 changes/);
    expect(await registryTags(reg, 'inplace/app')).toEqual([]);
  });
});
