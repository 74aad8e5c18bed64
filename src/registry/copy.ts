// Copying images between registries, OCI layouts and docker-archive tarballs (the engine behind `builder copy`).
import { tmpdir } from 'node:os';
import type { Readable } from 'node:stream';
import { BuilderError } from '../errors.js';
import { sha256, type Digest } from '../digest/index.js';
import { parseReference, withDigest, withTag, type ImageRef } from '../reference/index.js';
import {
  bufferStream, formatPlatform, isIndexMediaType, MediaType, OciLayout, parseIndex, parseManifest, readOciLayout, selectPlatform,
  writeDockerArchive, readDockerArchive, parseConfig, type Descriptor, type Image, type Layer, type Platform,
} from '../image/index.js';
import type { EventSink } from '../util/events.js';
import { runPool } from '../util/pool.js';
import type { ManifestResult, PushBlobResult, RegistryClient } from './client.js';
import { writeImage } from './write.js';

/** Where an image lives: a registry reference, an OCI layout (oci:DIR[:tag]) or a docker-archive tarball. */
export type ImageLocation =
  | { kind: 'registry'; ref: ImageRef }
  | { kind: 'oci'; dir: string; tag?: string }
  | { kind: 'docker-archive'; path: string; ref?: ImageRef };

/** Parses "oci:DIR[:tag]", "docker-archive:PATH[:ref]", "docker://REF" or a plain reference. */
export function parseLocation(s: string): ImageLocation {
  if (s.startsWith('oci:')) {
    const rest = s.slice(4);
    const c = rest.lastIndexOf(':');
    // a trailing ":name" without "/" is the tag; anything else is part of the path
    if (c > 0 && !rest.slice(c + 1).includes('/') && rest.slice(c + 1) !== '') return { kind: 'oci', dir: rest.slice(0, c), tag: rest.slice(c + 1) };
    if (rest === '') throw new BuilderError('LOCATION_INVALID', `"${s}" names no directory`, { hint: 'use oci:DIR or oci:DIR:TAG' });
    return { kind: 'oci', dir: rest };
  }
  if (s.startsWith('docker-archive:')) {
    const rest = s.slice('docker-archive:'.length);
    const c = rest.indexOf(':');
    if (c > 0) return { kind: 'docker-archive', path: rest.slice(0, c), ref: parseReference(rest.slice(c + 1)) };
    return { kind: 'docker-archive', path: rest };
  }
  return { kind: 'registry', ref: parseReference(s.startsWith('docker://') ? s.slice('docker://'.length) : s) };
}

export function formatLocation(l: ImageLocation): string {
  switch (l.kind) {
    case 'registry': return String(l.ref);
    case 'oci': return `oci:${l.dir}${l.tag !== undefined ? `:${l.tag}` : ''}`;
    case 'docker-archive': return `docker-archive:${l.path}${l.ref ? `:${l.ref}` : ''}`;
  }
}

export interface CopyOptions {
  /** Copy every image of an index (otherwise the one for `platform`). */
  allPlatforms?: boolean;
  /** Platform to pick from an index when not copying all (default: client's default platform or linux/amd64). */
  platform?: Platform;
  /** What the copy did: a message per repository, manifest and blob (blobs at debug level). */
  emit?: EventSink;
  /** Parallel blob copies (default 3). */
  concurrency?: number;
  /** Where a docker-archive source is extracted (default: the system temp dir); removed after the copy. */
  tmpDir?: string;
}

export interface CopyResult {
  /** Digest of what was written at the destination's top level (index or manifest). */
  digest: Digest;
  mediaType: string;
  blobs: Record<PushBlobResult | 'written', number>;
}

interface Source {
  top(): Promise<ManifestResult>;
  manifest(desc: Descriptor): Promise<ManifestResult>;
  openBlob(desc: Descriptor): Promise<Readable>;
  mountRef?: ImageRef;
}

interface Sink {
  putBlob(desc: Descriptor, open: () => Promise<Readable>): Promise<'exists' | 'written'>;
  /** top: the entry the user named (tag); otherwise stored by digest only. */
  putManifest(m: ManifestResult, top: boolean, platform?: Platform): Promise<void>;
}

function registrySource(client: RegistryClient, ref: ImageRef): Source {
  return {
    top: () => client.getManifest(ref),
    manifest: (d) => client.getManifest(withDigest(ref, d.digest)),
    openBlob: (d) => client.openBlob(ref, d),
    mountRef: ref,
  };
}

async function ociSource(dir: string, tag: string | undefined): Promise<Source> {
  const doc = await readOciLayout(dir, tag);
  const read = async (layout: OciLayout, d: Descriptor): Promise<ManifestResult> => {
    const bytes = await layout.readBlob(d);
    const mt = d.mediaType || (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType || MediaType.OciManifest;
    return { digest: d.digest, mediaType: mt, bytes };
  };
  return {
    top: async () => ({ digest: doc.descriptor.digest, mediaType: doc.mediaType, bytes: doc.bytes }),
    manifest: (d) => read(doc.layout, d),
    openBlob: (d) => doc.layout.openBlob(d),
  };
}

/** The source's image behind manifest m, its layers opened lazily from the source. */
async function sourceImage(source: Source, m: ManifestResult): Promise<Image> {
  const manifest = parseManifest(m.bytes, `manifest ${m.digest}`);
  const configBytes = await readAllStream(await source.openBlob(manifest.config));
  const config = parseConfig(configBytes);
  const diffIds = config.rootfs?.diff_ids ?? [];
  return {
    manifestDigest: m.digest, manifest, manifestBytes: m.bytes, mediaType: m.mediaType, config, configBytes,
    layers: manifest.layers.map((descriptor, i): Layer => ({
      descriptor, diffId: diffIds[i]!, open: () => source.openBlob(descriptor), ...(source.mountRef ? { mountFrom: source.mountRef } : {}),
    })),
  };
}

async function ociSink(dir: string, tag: string | undefined): Promise<Sink> {
  const layout = await OciLayout.create(dir);
  return {
    putBlob: async (desc, open) => ((await layout.hasBlob(desc.digest)) ? 'exists' : layout.writeBlob(desc, await open())),
    putManifest: async (m, top, platform) => {
      await layout.writeBlob({ digest: m.digest, size: m.bytes.length }, bufferStream(m.bytes));
      if (top) await layout.setRef({ mediaType: m.mediaType, digest: m.digest, size: m.bytes.length, ...(platform ? { platform } : {}) }, tag);
    },
  };
}

/** Copies an image (or a whole index with allPlatforms) from src to dst, blobs first and manifests last. */
export async function copyImage(client: RegistryClient, src: ImageLocation, dst: ImageLocation, opts: CopyOptions = {}): Promise<CopyResult> {
  if (src.kind === 'docker-archive') {
    const archive = await readDockerArchive(src.path, opts.tmpDir ?? tmpdir(), src.ref ? String(src.ref) : undefined);
    try {
      return await copyFrom(client, archiveSource(archive.image), src, dst, opts);
    } finally {
      await archive.close();
    }
  }
  const source = src.kind === 'registry' ? registrySource(client, src.ref) : await ociSource(src.dir, src.tag);
  return copyFrom(client, source, src, dst, opts);
}

/** A docker-archive's image as a copy source: one manifest, blobs from the extracted files. */
function archiveSource(image: Image): Source {
  const top: ManifestResult = { digest: image.manifestDigest, mediaType: image.mediaType, bytes: image.manifestBytes };
  return {
    top: async () => top,
    manifest: async () => top,
    openBlob: async (d) => {
      if (d.digest === image.manifest.config.digest) return bufferStream(image.configBytes);
      const l = image.layers.find((x) => x.descriptor.digest === d.digest);
      if (!l) throw new BuilderError('DOCKER_ARCHIVE_INVALID', `the archive has no blob ${d.digest}`, { hint: 'the archive is incomplete' });
      return l.open();
    },
  };
}

async function copyFrom(client: RegistryClient, source: Source, src: ImageLocation, dst: ImageLocation, opts: CopyOptions): Promise<CopyResult> {
  const platform = opts.platform ?? client.opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const blobs: CopyResult['blobs'] = { exists: 0, mounted: 0, uploaded: 0, written: 0 };

  let top = await source.top();
  if (isIndexMediaType(top.mediaType) && !opts.allPlatforms) {
    const idx = parseIndex(top.bytes, `index of ${formatLocation(src)}`);
    const pick = selectPlatform(idx.manifests, platform);
    if (!pick) {
      throw new BuilderError('PLATFORM_NOT_FOUND', `${formatLocation(src)} has no image for platform ${formatPlatform(platform)}`, {
        hint: `use --all-platforms, or --custom-platform one of: ${idx.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : '?')).join(', ')}`,
      });
    }
    top = await source.manifest(pick);
  }

  if (dst.kind === 'docker-archive') {
    if (isIndexMediaType(top.mediaType)) throw new BuilderError('LOCATION_UNSUPPORTED', 'a docker-archive holds one image, not an index', { hint: 'drop --all-platforms' });
    const image = await sourceImage(source, top);
    await writeDockerArchive(dst.path, image, (d) => source.openBlob(d), { repoTags: dst.ref ? [String(dst.ref)] : [] });
    return { digest: top.digest, mediaType: top.mediaType, blobs: { ...blobs, written: image.layers.length + 1 } };
  }

  const sink = dst.kind === 'oci' ? await ociSink(dst.dir, dst.tag) : undefined;
  const copyTree = async (m: ManifestResult, isTop: boolean): Promise<void> => {
    if (sha256(m.bytes) !== m.digest) throw new BuilderError('DIGEST_MISMATCH', `manifest ${m.digest} bytes do not match its digest`, { hint: 'the source is corrupt' });
    if (dst.kind === 'registry') {
      const target = isTop && dst.ref.tag !== undefined ? withTag(dst.ref, dst.ref.tag) : withDigest(dst.ref, m.digest);
      if (!isIndexMediaType(m.mediaType)) {
        const r = await writeImage(client, await sourceImage(source, m), [target], { concurrency: opts.concurrency ?? 3, ...(source.mountRef ? { mountFrom: source.mountRef } : {}), ...(opts.emit ? { emit: opts.emit } : {}) });
        for (const k of ['exists', 'mounted', 'uploaded'] as const) blobs[k] += r.blobs[k];
        return;
      }
      for (const child of parseIndex(m.bytes, `index ${m.digest}`).manifests) await copyTree(await source.manifest(child), false);
      await client.putManifest(target, m.bytes, m.mediaType);
      return;
    }
    if (isIndexMediaType(m.mediaType)) {
      for (const child of parseIndex(m.bytes, `index ${m.digest}`).manifests) await copyTree(await source.manifest(child), false);
    } else {
      const manifest = parseManifest(m.bytes, `manifest ${m.digest}`);
      const seen = new Set<string>();
      const all = [manifest.config, ...manifest.layers].filter((d) => d.mediaType !== MediaType.DockerForeignLayerGzip && !seen.has(d.digest) && seen.add(d.digest));
      await runPool(all, opts.concurrency ?? 3, async (d) => {
        const r = await sink!.putBlob(d, () => source.openBlob(d));
        blobs[r]++;
        opts.emit?.({ type: 'blob-copied', digest: d.digest, size: d.size, result: r });
      });
    }
    await sink!.putManifest(m, isTop);
  };
  await copyTree(top, true);
  return { digest: top.digest, mediaType: top.mediaType, blobs };
}

async function readAllStream(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
