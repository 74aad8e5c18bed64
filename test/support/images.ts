// Test harness: base images built without docker (busybox, a two-platform index), cached on disk across runs.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, chown, copyFile, cp, mkdir, mkdtemp, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestRegistry } from './registry.js';
import { run, skopeoCopy, umociRootless, umociUnpack } from './tools.js';

/** Bump when the image recipe changes, so stale caches are not reused. */
const RECIPE_VERSION = 'busybox-v1';
/** The host's static busybox (busybox-static), the one binary every busybox test image holds. */
export const HOST_BUSYBOX = '/bin/busybox';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const REF_NAME = 'org.opencontainers.image.ref.name';
const LOCK_STALE_MS = 10 * 60_000;

/** Where cached test images live (shared by all test files, workers and runs). */
export function testCacheDir(): string {
  return path.join(os.tmpdir(), 'builder-test-cache');
}

/** Go-style architecture name of this host, as image configs spell it. */
export function hostArch(): string {
  switch (process.arch) {
    case 'x64': return 'amd64';
    case 'ia32': return '386';
    default: return process.arch; // arm64, ppc64, s390x, riscv64 already match
  }
}

async function fileSha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

/**
 * Returns `final` (a directory whose index.json marks it complete), building it with `build(tmpDir)` if missing. An mkdir lock keeps parallel workers
 * from building twice; the build goes to a temp dir renamed into place so readers never see half an image.
 */
export async function cachedDir(final: string, build: (into: string) => Promise<void>): Promise<string> {
  const lock = `${final}.lock`;
  await mkdir(path.dirname(final), { recursive: true });
  for (;;) {
    if (await exists(path.join(final, 'index.json'))) return final;
    try {
      await mkdir(lock);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // Someone else builds it; a lock whose owner died (or that is very old) is left over from a killed run.
      if (await lockIsStale(lock)) await rm(lock, { recursive: true, force: true });
      await sleep(200);
      continue;
    }
    try {
      await writeFile(path.join(lock, 'pid'), String(process.pid));
      if (await exists(path.join(final, 'index.json'))) return final;
      const tmp = await mkdtemp(`${final}.tmp-`);
      try {
        await build(path.join(tmp, 'out'));
        await rm(final, { recursive: true, force: true });
        await rename(path.join(tmp, 'out'), final);
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
      return final;
    } finally {
      await rm(lock, { recursive: true, force: true });
    }
  }
}

async function lockIsStale(lock: string): Promise<boolean> {
  const st = await stat(lock).catch(() => undefined);
  if (!st) return false;
  const pid = Number(await readFile(path.join(lock, 'pid'), 'utf8').catch(() => ''));
  if (pid > 0) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true;
    }
  } else if (Date.now() - st.mtimeMs > 10_000) {
    return true; // the owner never managed to write its pid
  }
  return Date.now() - st.mtimeMs > LOCK_STALE_MS;
}

/**
 * An OCI layout (READ-ONLY, shared cache: use copyLayout() before changing it) whose tag `busybox`
 * is a one-layer image: static busybox with applet symlinks, root/nobody/app users, /tmp 1777, Cmd ["sh"].
 */
export async function busyboxLayout(): Promise<{ layout: string; tag: 'busybox' }> {
  const key = createHash('sha256').update(`${RECIPE_VERSION}\0${await fileSha256(HOST_BUSYBOX)}`).digest('hex').slice(0, 16);
  const layout = await cachedDir(path.join(testCacheDir(), `busybox-${key}`), buildBusybox);
  return { layout, tag: 'busybox' };
}

async function buildBusybox(layout: string): Promise<void> {
  await buildBusyboxFrom(layout, HOST_BUSYBOX, hostArch());
}

/** A one-layer busybox image of `binary` (an ELF of `arch`) in a new layout, tag `busybox`; nothing of it is run. */
async function buildBusyboxFrom(layout: string, binary: string, arch: string): Promise<void> {
  const image = `${layout}:busybox`;
  const bundle = `${layout}.bundle`;
  try {
    await run('umoci', ['init', '--layout', layout]);
    await run('umoci', ['new', '--image', image]);
    const root = await umociUnpack(layout, 'busybox', bundle);
    await populateBusyboxRoot(root, binary);
    await run('umoci', ['repack', ...umociRootless(), '--image', image,
      '--history.created_by', 'busybox-static + applet symlinks + /etc/passwd,group', bundle]);
    await run('umoci', ['config', '--image', image, '--config.cmd', 'sh',
      '--config.env', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      '--os', 'linux', '--architecture', arch, '--history.created_by', 'CMD ["sh"]']);
    await run('umoci', ['gc', '--layout', layout]);
  } finally {
    await rm(bundle, { recursive: true, force: true });
  }
}

async function populateBusyboxRoot(root: string, binary: string): Promise<void> {
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'root', 'home/app', 'tmp', 'var', 'dev', 'proc', 'sys']) {
    await mkdir(path.join(root, d), { recursive: true });
  }
  await copyFile(binary, path.join(root, 'bin/busybox'));
  await chmod(path.join(root, 'bin/busybox'), 0o755);
  // Same links `busybox --install -s` makes, but relative, and without running anything in the host root
  // (the host's busybox lists them: Debian ships the same version for every architecture).
  const { stdout } = await run(HOST_BUSYBOX, ['--list-full']);
  for (const rel of stdout.split('\n').map((l) => l.trim())) {
    if (!rel || !rel.includes('/') || rel === 'bin/busybox') continue;
    const at = path.join(root, rel);
    await mkdir(path.dirname(at), { recursive: true });
    await symlink(path.relative(path.dirname(rel), 'bin/busybox'), at).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  await writeFile(path.join(root, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n');
  await writeFile(path.join(root, 'etc/group'), 'root:x:0:\nnobody:x:65534:\napp:x:1000:\n');
  await chmod(path.join(root, 'tmp'), 0o1777);
  await chmod(path.join(root, 'root'), 0o700);
  // Ownership only sticks as root; rootless umoci records everything as root anyway.
  if (process.getuid?.() === 0) await chown(path.join(root, 'home/app'), 1000, 1000);
}

/** A private, writable copy of a layout in a fresh temp dir (caller removes it). */
export async function copyLayout(layout: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'builder-test-layout-'));
  await cp(layout, dir, { recursive: true });
  return dir;
}

/** Pushes the busybox image with skopeo; returns "host/repo:tag". */
export async function pushBusybox(
  reg: TestRegistry, repo = 'library/busybox', tag = 'latest', format: 'oci' | 'v2s2' = 'v2s2',
): Promise<string> {
  const { layout } = await busyboxLayout();
  const ref = `${reg.host}/${repo}:${tag}`;
  await skopeoCopy(`oci:${layout}:busybox`, `docker://${ref}`, { reg, format });
  return ref;
}

interface Desc { mediaType: string; digest: string; size: number; platform?: Record<string, string>; annotations?: Record<string, string> }

async function writeBlob(layout: string, bytes: Buffer, mediaType: string): Promise<Desc> {
  const hex = createHash('sha256').update(bytes).digest('hex');
  await writeFile(path.join(layout, 'blobs/sha256', hex), bytes);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
}

async function readBlob(layout: string, digest: string): Promise<Buffer> {
  return readFile(path.join(layout, 'blobs/sha256', digest.replace(/^sha256:/, '')));
}

/**
 * An OCI layout (READ-ONLY, cached) whose tag `multi` is an OCI index of two image manifests,
 * linux/<host arch> (busybox) and linux/arm64/v8 (same layers, config saying arm64/v8); tag `busybox` stays too.
 */
export async function multiPlatformLayout(): Promise<{ layout: string; tag: 'multi' }> {
  const bb = await busyboxLayout();
  const layout = await cachedDir(`${bb.layout}-multi`, async (out) => {
    await cp(bb.layout, out, { recursive: true });
    const top = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8')) as { manifests: Desc[] };
    const host = top.manifests.find((m) => m.annotations?.[REF_NAME] === 'busybox');
    if (!host) throw new Error(`${bb.layout}: no busybox tag in index.json`);
    const manifest = JSON.parse((await readBlob(out, host.digest)).toString('utf8'));
    const config = JSON.parse((await readBlob(out, manifest.config.digest)).toString('utf8'));
    const armConfig = await writeBlob(out, Buffer.from(JSON.stringify({ ...config, architecture: 'arm64', variant: 'v8' })), manifest.config.mediaType);
    const armManifest = await writeBlob(out, Buffer.from(JSON.stringify({ ...manifest, config: armConfig })), OCI_MANIFEST);
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, digest: host.digest, size: host.size, platform: { architecture: config.architecture, os: 'linux' } },
        { ...armManifest, platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
      ],
    };
    const indexDesc = await writeBlob(out, Buffer.from(JSON.stringify(index)), OCI_INDEX);
    top.manifests.push({ ...indexDesc, annotations: { [REF_NAME]: 'multi' } });
    await writeFile(path.join(out, 'index.json'), JSON.stringify(top));
  });
  return { layout, tag: 'multi' };
}

/** Pushes the two-platform index with `skopeo copy --all` (kept as an OCI index); returns "host/repo:tag". */
export async function pushMultiPlatform(reg: TestRegistry, repo = 'library/multi', tag = 'latest'): Promise<string> {
  const { layout } = await multiPlatformLayout();
  const ref = `${reg.host}/${repo}:${tag}`;
  await skopeoCopy(`oci:${layout}:multi`, `docker://${ref}`, { reg, all: true });
  return ref;
}

/** Debian's aarch64 busybox-static binary, fetched once into the test cache by scripts/arm64-busybox.sh (never run here). */
export async function arm64Busybox(): Promise<string> {
  const script = path.join(path.dirname(new URL(import.meta.url).pathname), '../../scripts/arm64-busybox.sh');
  const { stdout } = await run('bash', [script, path.join(testCacheDir(), 'arm64-busybox', 'busybox')]);
  return stdout.trim();
}

/** An OCI layout (READ-ONLY, cached) whose tag `busybox` is a busybox image for linux/arm64 holding Debian's aarch64 busybox. */
export async function arm64BusyboxLayout(): Promise<{ layout: string; tag: 'busybox' }> {
  const bin = await arm64Busybox();
  const key = createHash('sha256').update(`busybox-arm64-v1\0${await fileSha256(bin)}`).digest('hex').slice(0, 16);
  const layout = await cachedDir(path.join(testCacheDir(), `busybox-arm64-${key}`), (out) => buildBusyboxFrom(out, bin, 'arm64'));
  return { layout, tag: 'busybox' };
}

/**
 * An OCI layout (READ-ONLY, cached) whose tag `cross` is an OCI index of two real platforms: linux/<host arch> (the
 * host's busybox) and linux/arm64 (Debian's aarch64 busybox), each manifest with its own layer and config.
 */
export async function crossPlatformLayout(): Promise<{ layout: string; tag: 'cross' }> {
  const host = await busyboxLayout();
  const arm = await arm64BusyboxLayout();
  const layout = await cachedDir(`${arm.layout}-cross-${path.basename(host.layout)}`, async (out) => {
    await cp(host.layout, out, { recursive: true });
    await cp(path.join(arm.layout, 'blobs/sha256'), path.join(out, 'blobs/sha256'), { recursive: true });
    const entry = async (dir: string): Promise<Desc> => {
      const top = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Desc[] };
      const d = top.manifests.find((m) => m.annotations?.[REF_NAME] === 'busybox');
      if (!d) throw new Error(`${dir}: no busybox tag in index.json`);
      const manifest = JSON.parse((await readBlob(dir, d.digest)).toString('utf8'));
      const config = JSON.parse((await readBlob(dir, manifest.config.digest)).toString('utf8'));
      return { mediaType: OCI_MANIFEST, digest: d.digest, size: d.size, platform: { architecture: config.architecture, os: config.os } };
    };
    const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [await entry(host.layout), await entry(arm.layout)] };
    const indexDesc = await writeBlob(out, Buffer.from(JSON.stringify(index)), OCI_INDEX);
    const top = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8')) as { manifests: Desc[] };
    top.manifests.push({ ...indexDesc, annotations: { [REF_NAME]: 'cross' } });
    await writeFile(path.join(out, 'index.json'), JSON.stringify(top));
  });
  return { layout, tag: 'cross' };
}

/** Pushes the real two-platform index (host + arm64 busybox) with `skopeo copy --all`; returns "host/repo:tag". */
export async function pushCrossPlatform(reg: TestRegistry, repo = 'library/cross', tag = 'latest'): Promise<string> {
  const { layout } = await crossPlatformLayout();
  const ref = `${reg.host}/${repo}:${tag}`;
  await skopeoCopy(`oci:${layout}:cross`, `docker://${ref}`, { reg, all: true });
  return ref;
}

/** Pushes the arm64-only busybox image; returns "host/repo:tag". */
export async function pushArm64Busybox(reg: TestRegistry, repo = 'library/busybox-arm64', tag = 'latest'): Promise<string> {
  const { layout } = await arm64BusyboxLayout();
  const ref = `${reg.host}/${repo}:${tag}`;
  await skopeoCopy(`oci:${layout}:busybox`, `docker://${ref}`, { reg, format: 'oci' });
  return ref;
}
