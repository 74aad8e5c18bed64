// docker-archive reader (docker save, kaniko --tar-path, builder --tar-path): one image out of the tarball, ready to push.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import { BuilderError } from '../errors.js';
import { HashingStream, sha256, type Digest } from '../digest/index.js';
import { fileLayer, type Layer } from './layer.js';
import type { Image } from './mutate.js';
import { parseConfig } from './parse.js';
import { MediaType, type Manifest } from './types.js';

interface Entry {
  file: string;
  digest: Digest;
  size: number;
  head: Buffer;
}

export interface ArchiveImage {
  image: Image;
  /** RepoTags of the chosen image in manifest.json. */
  repoTags: string[];
  /** Removes the extracted files. */
  close(): Promise<void>;
}

const bad = (file: string, why: string): BuilderError =>
  new BuilderError('DOCKER_ARCHIVE_INVALID', `${file} is not a usable docker-archive: ${why}`, { hint: 'write it with docker save, kaniko --tar-path or builder --tar-path' });

/** Copies a stream to a file, returning its sha256, size and first bytes (to tell gzip from plain tar). */
async function store(src: Readable, file: string): Promise<Omit<Entry, 'file'>> {
  const hash = new HashingStream();
  let head = Buffer.alloc(0);
  const sniff = new Transform({
    transform(chunk: Buffer, _e, cb) {
      if (head.length < 4) head = Buffer.concat([head, chunk.subarray(0, 4 - head.length)]);
      cb(null, chunk);
    },
  });
  await pipeline(src, sniff, hash, createWriteStream(file));
  return { ...hash.result(), head };
}

/**
 * Extracts the archive into a fresh directory under tmpDir (entries stored under numbers: names from the archive
 * never become paths) and returns the image named `ref` in manifest.json (or the only one). Plain-tar layers are
 * gzipped so the image can go to any registry; each layer's uncompressed digest must match the config's diff_id.
 */
export async function readDockerArchive(archive: string, tmpDir: string, ref?: string): Promise<ArchiveImage> {
  const dir = await mkdtemp(path.join(tmpDir, 'docker-archive-'));
  const close = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    const entries = new Map<string, Entry>();
    const links = new Map<string, string>();
    let n = 0;
    const extract = tar.extract();
    extract.on('entry', (h, stream, next) => {
      const name = path.posix.normalize(h.name).replace(/^(\.\/)+/, '');
      if (h.type === 'file') {
        const file = path.join(dir, String(++n));
        store(stream as unknown as Readable, file).then((e) => { entries.set(name, { file, ...e }); next(); }, next);
        return;
      }
      // docker save (25+) links duplicate blobs
      if ((h.type === 'symlink' || h.type === 'link') && h.linkname) {
        links.set(name, h.type === 'symlink' ? path.posix.normalize(path.posix.join(path.posix.dirname(name), h.linkname)) : path.posix.normalize(h.linkname));
      }
      stream.resume();
      stream.on('end', () => next());
    });
    try {
      await pipeline(createReadStream(archive), extract);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') throw new BuilderError('DOCKER_ARCHIVE_NOT_FOUND', `${archive} does not exist`, { hint: 'check the path after docker-archive:' });
      throw bad(archive, (err as Error).message);
    }
    const get = (name: string): Entry => {
      const n0 = path.posix.normalize(name);
      const e = entries.get(n0) ?? entries.get(links.get(n0) ?? '');
      if (!e) throw bad(archive, `manifest.json names ${name}, which is not in the archive`);
      return e;
    };
    let list: Array<{ Config?: string; RepoTags?: string[] | null; Layers?: string[] }>;
    try {
      list = JSON.parse(await readFile(get('manifest.json').file, 'utf8')) as typeof list;
    } catch (err) {
      if (err instanceof BuilderError) throw err;
      throw bad(archive, 'manifest.json is not JSON');
    }
    if (!Array.isArray(list) || list.length === 0) throw bad(archive, 'manifest.json lists no image');
    const pick = ref === undefined
      ? (list.length === 1 ? list[0] : undefined)
      : list.find((m) => (m.RepoTags ?? []).some((t) => t === ref || t.endsWith(`/${ref}`)));
    if (!pick) {
      throw new BuilderError('DOCKER_ARCHIVE_AMBIGUOUS', ref ? `${archive} has no image tagged ${ref}` : `${archive} holds ${list.length} images`, {
        hint: `name one: docker-archive:${archive}:${list.flatMap((m) => m.RepoTags ?? [])[0] ?? 'REPO:TAG'}`,
      });
    }
    if (!pick.Config || !Array.isArray(pick.Layers)) throw bad(archive, 'its manifest.json entry has no Config or Layers');
    const cfgEntry = get(pick.Config);
    const configBytes = await readFile(cfgEntry.file);
    const config = parseConfig(configBytes, `config in ${archive}`);
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== pick.Layers.length) throw bad(archive, `${pick.Layers.length} layers but ${diffIds.length} diff_ids in the config`);
    const layers: Layer[] = [];
    for (const [i, name] of pick.Layers.entries()) {
      const e = get(name);
      const diffId = diffIds[i]!;
      if (e.head[0] === 0x1f && e.head[1] === 0x8b) {
        layers.push(fileLayer(e.file, { mediaType: MediaType.DockerLayerGzip, digest: e.digest, size: e.size }, diffId));
        continue;
      }
      if (e.head.readUInt32LE(0) === 0xfd2fb528) throw new BuilderError('DOCKER_ARCHIVE_UNSUPPORTED', `layer ${name} in ${archive} is zstd-compressed`, { hint: 'zstd layers are not read yet; save the image with gzip layers' });
      if (e.digest !== diffId) throw bad(archive, `layer ${name} has digest ${e.digest}, the config says ${diffId}`);
      const gz = `${e.file}.gz`;
      const out = await store((createReadStream(e.file) as Readable).pipe(createGzip({ level: 1 })), gz);
      layers.push(fileLayer(gz, { mediaType: MediaType.DockerLayerGzip, digest: out.digest, size: out.size }, diffId));
    }
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MediaType.DockerManifest,
      config: { mediaType: MediaType.DockerConfig, digest: sha256(configBytes), size: configBytes.length },
      layers: layers.map((l) => l.descriptor),
    };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    return {
      image: { manifestDigest: sha256(manifestBytes), manifest, manifestBytes, mediaType: MediaType.DockerManifest, config, configBytes, layers },
      repoTags: pick.RepoTags ?? [],
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
