// OCI image layout on disk: oci-layout, index.json (ref.name tags) and blobs/sha256, written atomically and verified.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BuilderError } from '../errors.js';
import { digestHex, sha256, verified, VerifyingStream, type Digest } from '../digest/index.js';
import { manifestMediaType, parseConfig, parseIndex, parseManifest } from './parse.js';
import { selectPlatform, formatPlatform } from './platform.js';
import { writeFileAtomic } from '../util/fs.js';
import {
  isIndexMediaType, MediaType, REF_NAME_ANNOTATION,
  type BlobOpener, type Descriptor, type ImageData, type Index, type Platform,
} from './types.js';

const LAYOUT_FILE = JSON.stringify({ imageLayoutVersion: '1.0.0' });
const MAX_DOC = 16 * 1024 * 1024;

export class OciLayout {
  private constructor(readonly dir: string) {}

  /** Opens an existing layout (fails with OCI_LAYOUT_INVALID if it is not one). */
  static async open(dir: string): Promise<OciLayout> {
    try {
      const j = JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8')) as { imageLayoutVersion?: string };
      if (typeof j.imageLayoutVersion !== 'string') throw new Error('no imageLayoutVersion');
    } catch (err) {
      throw new BuilderError('OCI_LAYOUT_INVALID', `${dir} is not an OCI image layout (${(err as Error).message})`, {
        hint: 'point oci: at a directory containing oci-layout, index.json and blobs/', cause: err,
      });
    }
    return new OciLayout(dir);
  }

  /** Opens the layout at dir, creating an empty one if it does not exist yet. */
  static async create(dir: string): Promise<OciLayout> {
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    const exists = await stat(join(dir, 'oci-layout')).then(() => true, () => false);
    if (!exists) {
      await atomicWrite(join(dir, 'oci-layout'), LAYOUT_FILE);
    }
    const hasIndex = await stat(join(dir, 'index.json')).then(() => true, () => false);
    if (!hasIndex) await atomicWrite(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] }));
    return OciLayout.open(dir);
  }

  blobPath(digest: Digest): string {
    return join(this.dir, 'blobs', 'sha256', digestHex(digest));
  }

  async hasBlob(digest: Digest): Promise<boolean> {
    return stat(this.blobPath(digest)).then((s) => s.isFile(), () => false);
  }

  /** A stream of the blob's bytes that fails with DIGEST_MISMATCH/SIZE_MISMATCH if the file is corrupt. */
  async openBlob(desc: Pick<Descriptor, 'digest' | 'size'>): Promise<Readable> {
    const p = this.blobPath(desc.digest);
    if (!(await this.hasBlob(desc.digest))) {
      throw new BuilderError('OCI_BLOB_MISSING', `blob ${desc.digest} is missing from OCI layout ${this.dir}`, {
        hint: 'the layout is incomplete; re-create it (e.g. builder copy IMAGE oci:DIR)',
      });
    }
    // a read failure reaches the reader typed (BLOB_READ_FAILED), like a corrupt blob does
    return verified(createReadStream(p), desc.digest, desc.size, `blob ${desc.digest} in ${this.dir}`);
  }

  /** Reads a small blob (manifest, config) fully, verified. */
  async readBlob(desc: Pick<Descriptor, 'digest' | 'size'>): Promise<Buffer> {
    if (desc.size > MAX_DOC) throw new BuilderError('OCI_BLOB_TOO_LARGE', `blob ${desc.digest} (${desc.size} bytes) is too large to read as a document`, { hint: 'this is not a manifest or config' });
    const chunks: Buffer[] = [];
    for await (const c of await this.openBlob(desc)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /** Writes a blob via temp file + rename, verifying digest and size; an existing blob is kept. */
  async writeBlob(desc: Pick<Descriptor, 'digest' | 'size'>, src: Readable): Promise<'exists' | 'written'> {
    const dst = this.blobPath(desc.digest);
    if (await this.hasBlob(desc.digest)) {
      src.destroy();
      return 'exists';
    }
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    const tmp = join(this.dir, 'blobs', 'sha256', `.tmp-${digestHex(desc.digest).slice(0, 12)}-${randomBytes(6).toString('hex')}`);
    try {
      await pipeline(src, new VerifyingStream(desc.digest, desc.size, `blob ${desc.digest} written to ${this.dir}`), createWriteStream(tmp));
      await rename(tmp, dst);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    return 'written';
  }

  async writeBytes(bytes: Buffer, mediaType: string): Promise<Descriptor> {
    const desc: Descriptor = { mediaType, digest: sha256(bytes), size: bytes.length };
    await atomicWrite(this.blobPath(desc.digest), bytes, true);
    return desc;
  }

  async readIndex(): Promise<Index> {
    const bytes = await readFile(join(this.dir, 'index.json')).catch((err: unknown) => {
      throw new BuilderError('OCI_LAYOUT_INVALID', `${this.dir}/index.json cannot be read`, { hint: 'the layout is incomplete', cause: err });
    });
    return parseIndex(bytes, `${this.dir}/index.json`);
  }

  /** The index.json entry named `tag` (ref.name), or the only entry when no tag is given. */
  async resolve(tag?: string): Promise<Descriptor> {
    const idx = await this.readIndex();
    if (tag === undefined) {
      if (idx.manifests.length === 1) return idx.manifests[0]!;
      throw new BuilderError('OCI_REF_AMBIGUOUS', `OCI layout ${this.dir} holds ${idx.manifests.length} images and no tag was given`, {
        hint: `name one: oci:${this.dir}:TAG (tags: ${names(idx).join(', ') || 'none'})`,
      });
    }
    const hit = idx.manifests.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag);
    if (!hit) {
      throw new BuilderError('OCI_REF_UNKNOWN', `OCI layout ${this.dir} has no image named "${tag}"`, {
        hint: `available: ${names(idx).join(', ') || 'none'}`,
      });
    }
    return hit;
  }

  /** Adds desc to index.json, replacing any entry with the same tag (or the same digest when untagged). */
  async setRef(desc: Descriptor, tag?: string): Promise<void> {
    const idx = await this.readIndex();
    const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    if (desc.platform) entry.platform = desc.platform;
    if (tag !== undefined) entry.annotations = { [REF_NAME_ANNOTATION]: tag };
    const keep = idx.manifests.filter((m) => {
      const t = m.annotations?.[REF_NAME_ANNOTATION];
      return tag !== undefined ? t !== tag : !(t === undefined && m.digest === desc.digest);
    });
    const out = { ...idx, schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [...keep, entry] };
    await atomicWrite(join(this.dir, 'index.json'), JSON.stringify(out));
  }

  /** Removes the index.json entry named `tag` (its blobs stay until a garbage collection). */
  async removeRef(tag: string): Promise<void> {
    const idx = await this.readIndex();
    const out = { ...idx, manifests: idx.manifests.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] !== tag) };
    await atomicWrite(join(this.dir, 'index.json'), JSON.stringify(out));
  }
}

function names(idx: Index): string[] {
  return idx.manifests.map((m) => m.annotations?.[REF_NAME_ANNOTATION]).filter((x): x is string => x !== undefined);
}

async function atomicWrite(path: string, data: string | Buffer, skipIfExists = false): Promise<void> {
  if (skipIfExists && (await stat(path).then(() => true, () => false))) return;
  await writeFileAtomic(path, data);
}

/** A manifest or index read from a layout: the entry, its exact bytes and media type. */
export interface LayoutDocument {
  layout: OciLayout;
  descriptor: Descriptor;
  mediaType: string;
  bytes: Buffer;
}

/** Reads the manifest or index named `tag` (or the only one) from an OCI layout, verified. */
export async function readOciLayout(dir: string, tag?: string): Promise<LayoutDocument> {
  const layout = await OciLayout.open(dir);
  const descriptor = await layout.resolve(tag);
  const bytes = await layout.readBlob(descriptor);
  return { layout, descriptor, bytes, mediaType: manifestMediaType(bytes, descriptor.mediaType) };
}

/** Loads one image from a layout document, choosing `platform` when it is an index. */
export async function loadLayoutImage(doc: LayoutDocument, platform: Platform): Promise<ImageData> {
  let { bytes, mediaType, descriptor } = doc;
  if (isIndexMediaType(mediaType)) {
    const idx = parseIndex(bytes, `index ${descriptor.digest}`);
    const pick = selectPlatform(idx.manifests, platform);
    if (!pick) {
      throw new BuilderError('PLATFORM_NOT_FOUND', `OCI layout ${doc.layout.dir} has no image for ${formatPlatform(platform)}`, {
        hint: `pick one with --custom-platform: ${idx.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : '?')).join(', ')}`,
      });
    }
    descriptor = pick;
    bytes = await doc.layout.readBlob(pick);
    mediaType = manifestMediaType(bytes, pick.mediaType);
  }
  const manifest = parseManifest(bytes, `manifest ${descriptor.digest}`);
  const configBytes = await doc.layout.readBlob(manifest.config);
  return { manifestDigest: descriptor.digest, manifest, manifestBytes: bytes, mediaType, config: parseConfig(configBytes), configBytes };
}

/** Writes one image (config, layers from `openBlob`, manifest) into the layout at dir and names it `tag`. */
export async function writeOciLayout(dir: string, image: ImageData, openBlob: BlobOpener, opts: { tag?: string } = {}): Promise<Descriptor> {
  const layout = await OciLayout.create(dir);
  const desc = await writeImageBlobs(layout, image, openBlob);
  await layout.setRef(desc, opts.tag);
  return desc;
}

/** Writes every image of a multi-platform index, then the index itself, named `tag`: index.json points at the index. */
export async function writeOciLayoutIndex(
  dir: string, index: { bytes: Buffer; mediaType: string; images: ReadonlyArray<{ image: ImageData; openBlob: BlobOpener }> }, opts: { tag?: string } = {},
): Promise<Descriptor> {
  const layout = await OciLayout.create(dir);
  for (const { image, openBlob } of index.images) await writeImageBlobs(layout, image, openBlob);
  const desc = await layout.writeBytes(index.bytes, index.mediaType);
  await layout.setRef(desc, opts.tag);
  return desc;
}

/** Writes one image into an open layout (layers it lacks, config, manifest), naming it nowhere: the manifest's descriptor. */
export async function writeImageBlobs(layout: OciLayout, image: ImageData, openBlob: BlobOpener): Promise<Descriptor> {
  for (const l of image.manifest.layers) {
    if (!(await layout.hasBlob(l.digest))) await layout.writeBlob(l, await openBlob(l));
  }
  await layout.writeBlob(image.manifest.config, bufferStream(image.configBytes));
  return layout.writeBytes(image.manifestBytes, image.mediaType);
}

/** A stream of an in-memory document (manifests and configs are small). */
export function bufferStream(b: Buffer): Readable {
  return Readable.from([b], { objectMode: false });
}
