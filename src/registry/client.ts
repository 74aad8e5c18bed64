// RegistryClient: Distribution v2 operations (manifests, blobs, uploads, tags, delete) on top of Transport.
import { Readable, Transform } from 'node:stream';
import { BuilderError } from '../errors.js';
import { isDigest, sha256, VerifyingStream, type Digest } from '../digest/index.js';
import { identifier, parseReference, sameRepository, withDigest, type ImageRef } from '../reference/index.js';
import {
  checkManifestDocument, formatPlatform, isIndexMediaType, MANIFEST_ACCEPT, parseConfig, parseIndex, parseManifest, selectPlatform,
  type Descriptor, type ImageData, type Index, type Platform,
} from '../image/index.js';
import { header, Transport, type RegistryClientOptions, type RegResponse } from './transport.js';

const MAX_MANIFEST = 8 * 1024 * 1024;
const MAX_CONFIG = 32 * 1024 * 1024;

export interface ManifestResult {
  digest: Digest;
  mediaType: string;
  bytes: Buffer;
}

/** A single-platform image as found on a registry; `index` is set when `ref` named an index. */
export interface ResolvedImage extends ImageData {
  ref: ImageRef;
  index?: ManifestResult;
}

export type PushBlobResult = 'exists' | 'mounted' | 'uploaded';

export interface PushBlobOptions {
  /** Repositories (same registry) that may already hold the blob; tried with a cross-repo mount. */
  mountFrom?: ImageRef[];
}

const pullScope = (ref: ImageRef): string => `repository:${ref.repository}:pull`;
const pushScope = (ref: ImageRef): string => `repository:${ref.repository}:pull,push`;

async function readAll(res: RegResponse, max: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    if (n > max) {
      res.body.destroy();
      throw new BuilderError('REGISTRY_RESPONSE_TOO_LARGE', `${what}: response larger than ${max} bytes`, { hint: 'this does not look like a manifest; check the reference' });
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Registry X (ECR, Harbor, GAR, Artifactory, GitLab protected tags...) refusing to overwrite a tag, as kaniko recognises it. */
export function isImmutableTagError(err: unknown): boolean {
  if (!(err instanceof BuilderError) || !err.code.startsWith('REGISTRY_')) return false;
  return /immutab|cannot be overwritten|already exists|protected tag|status 409\b/i.test(err.message);
}

/** The same image on a mirror: "host[/path]" + ref's repository, tag and digest. */
export function mirrorRef(ref: ImageRef, mirror: string): ImageRef {
  const base = mirror.replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
  return parseReference(`${base}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`);
}

function digestMismatch(what: string, got: Digest, want: string): BuilderError {
  return new BuilderError('DIGEST_MISMATCH', `${what}: content has digest ${got}, registry said ${want}`, {
    hint: 'the registry returned corrupt or different content; retry, and if it persists re-push the image',
  });
}

export class RegistryClient {
  private readonly t: Transport;
  /** Repository name -> the mirror repository its image was resolved through. */
  private readonly pulledVia = new Map<string, ImageRef>();

  constructor(readonly opts: RegistryClientOptions = {}) {
    this.t = new Transport(opts);
  }

  /** src with its bytes counted into opts.onProgress (src itself when nobody listens); errors pass through. */
  private counted(src: Readable, op: 'pull' | 'push', ref: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>): Readable {
    const report = this.opts.onProgress;
    if (!report) return src;
    let done = 0;
    const t = new Transform({
      transform(chunk: Buffer, _e, cb) {
        done += chunk.length;
        report({ op, repository: ref.name, digest: desc.digest, done, total: desc.size });
        cb(null, chunk);
      },
    });
    src.on('error', (e) => t.destroy(e));
    t.on('close', () => {
      if (!src.destroyed) src.destroy();
    });
    return src.pipe(t);
  }

  /** Closes pooled connections; call when done. */
  close(): Promise<void> {
    return this.t.close();
  }

  /** GETs a manifest or index with the full Accept list; the bytes are verified against the digest. */
  async getManifest(ref: ImageRef, accept: readonly string[] = MANIFEST_ACCEPT): Promise<ManifestResult> {
    const what = `GET manifest ${ref}`;
    const res = await this.t.request({
      registry: ref.registry, method: 'GET', path: `/v2/${ref.repository}/manifests/${identifier(ref)}`,
      headers: { accept: accept.join(', ') }, scopes: [pullScope(ref)], what, ok: [200],
    });
    const bytes = await readAll(res, MAX_MANIFEST, what);
    const digest = sha256(bytes);
    if (ref.digest && ref.digest !== digest) throw digestMismatch(what, digest, ref.digest);
    const said = header(res, 'docker-content-digest');
    if (said && isDigest(said) && said !== digest) throw digestMismatch(what, digest, said);
    return { digest, bytes, mediaType: checkManifestDocument(bytes, header(res, 'content-type'), what) };
  }

  /** HEADs a manifest: its digest, media type and size, or undefined when it does not exist. */
  async headManifest(ref: ImageRef): Promise<{ digest: Digest; mediaType: string; size: number } | undefined> {
    const res = await this.t.request({
      registry: ref.registry, method: 'HEAD', path: `/v2/${ref.repository}/manifests/${identifier(ref)}`,
      headers: { accept: MANIFEST_ACCEPT.join(', ') }, scopes: [pullScope(ref)], what: `HEAD manifest ${ref}`, ok: [200, 404],
    });
    await res.body.dump();
    if (res.status === 404) return undefined;
    const d = header(res, 'docker-content-digest');
    if (!d || !isDigest(d)) return undefined;
    return { digest: d, mediaType: header(res, 'content-type') ?? '', size: Number(header(res, 'content-length') ?? 0) };
  }

  /**
   * Resolves ref to one image (choosing `platform`, default opts.platform or linux/amd64, from an index) with its config.
   * With opts.mirrors for ref's registry, the mirrors are tried first, in order; the image's blobs are then read from
   * the mirror that answered (openBlob), and the registry itself is the fallback unless opts.skipDefaultRegistryFallback.
   */
  async resolveImage(ref: ImageRef, platform?: Platform): Promise<ResolvedImage> {
    const mirrors = this.opts.mirrors?.[ref.registry] ?? [];
    if (mirrors.length === 0) return this.resolveDirect(ref, platform);
    const failures: string[] = [];
    for (const m of mirrors) {
      const via = mirrorRef(ref, m);
      try {
        const img = await this.resolveDirect(via, platform);
        this.pulledVia.set(ref.name, via);
        this.opts.logger?.(`${ref} resolved through mirror ${m}`);
        return { ...img, ref };
      } catch (err) {
        const why = err instanceof BuilderError ? `${err.code}: ${err.message}` : String(err);
        failures.push(`${m}: ${why}`);
        this.opts.onWarning?.(`mirror ${m} could not provide ${ref} (${why}); ${m === mirrors[mirrors.length - 1] ? (this.opts.skipDefaultRegistryFallback ? 'no fallback (--skip-default-registry-fallback)' : `falling back to ${ref.registry}`) : 'trying the next mirror'}`);
      }
    }
    if (this.opts.skipDefaultRegistryFallback) {
      throw new BuilderError('REGISTRY_MIRRORS_FAILED', `no mirror could provide ${ref}: ${failures.join('; ')}`, {
        hint: 'check the mirrors (--registry-mirror / --registry-map), or drop --skip-default-registry-fallback to pull from the registry itself',
      });
    }
    return this.resolveDirect(ref, platform);
  }

  private async resolveDirect(ref: ImageRef, platform?: Platform): Promise<ResolvedImage> {
    const want = platform ?? this.opts.platform ?? { os: 'linux', architecture: 'amd64' };
    let top = await this.getManifest(ref);
    let index: ManifestResult | undefined;
    if (isIndexMediaType(top.mediaType)) {
      index = top;
      const idx = parseIndex(top.bytes, `index ${ref}`);
      const pick = selectPlatform(idx.manifests, want);
      if (!pick) {
        throw new BuilderError('PLATFORM_NOT_FOUND', `${ref} has no image for platform ${formatPlatform(want)}`, {
          hint: `choose one with --custom-platform: ${idx.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : '?')).join(', ')}`,
        });
      }
      top = await this.getManifest(withDigest(ref, pick.digest));
    }
    const manifest = parseManifest(top.bytes, `manifest ${ref}`);
    const configBytes = await this.readBlob(ref, manifest.config);
    return {
      ref, manifestDigest: top.digest, manifest, manifestBytes: top.bytes, mediaType: top.mediaType,
      config: parseConfig(configBytes, `config of ${ref}`), configBytes, ...(index ? { index } : {}),
    };
  }

  /** Parses an index fetched with getManifest. */
  parseIndex(m: ManifestResult, ref: ImageRef): Index {
    return parseIndex(m.bytes, `index ${ref}`);
  }

  /** Streams a blob; the stream fails with DIGEST_MISMATCH/SIZE_MISMATCH if the bytes are not what desc says. */
  async openBlob(ref0: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>): Promise<Readable> {
    // a repository whose image came through a mirror has its blobs read there too
    const ref = this.pulledVia.get(ref0.name) ?? ref0;
    const res = await this.t.request({
      registry: ref.registry, method: 'GET', path: `/v2/${ref.repository}/blobs/${desc.digest}`,
      scopes: [pullScope(ref)], what: `GET blob ${desc.digest} of ${ref.name}`, ok: [200],
    });
    const v = new VerifyingStream(desc.digest, desc.size, `blob ${desc.digest} from ${ref.name}`);
    res.body.on('error', (e) => v.destroy(e));
    v.on('close', () => {
      if (!res.body.destroyed) res.body.destroy();
    });
    return this.counted(res.body, 'pull', ref, desc).pipe(v);
  }

  /** Reads a small blob (a config) fully, verified. */
  async readBlob(ref: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>): Promise<Buffer> {
    if (desc.size > MAX_CONFIG) throw new BuilderError('REGISTRY_RESPONSE_TOO_LARGE', `blob ${desc.digest} of ${ref.name} is too large to read into memory`, { hint: 'stream it with openBlob' });
    const chunks: Buffer[] = [];
    for await (const c of await this.openBlob(ref, desc)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  async hasBlob(ref: ImageRef, digest: Digest): Promise<boolean> {
    const res = await this.t.request({
      registry: ref.registry, method: 'HEAD', path: `/v2/${ref.repository}/blobs/${digest}`,
      scopes: [pullScope(ref)], what: `HEAD blob ${digest} in ${ref.name}`, ok: [200, 404],
    });
    await res.body.dump();
    return res.status === 200;
  }

  /**
   * Makes desc's blob exist in ref's repository: already there, mounted from a sibling repository, or
   * uploaded from open() (monolithic, or chunked above opts.chunkedThreshold). Uploads are verified.
   */
  async pushBlob(ref: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>, open: () => Readable | Promise<Readable>, opts: PushBlobOptions = {}): Promise<PushBlobResult> {
    if (await this.hasBlob(ref, desc.digest)) return 'exists';
    let location: string | undefined;
    const from = (opts.mountFrom ?? []).find((r) => r.registry === ref.registry && !sameRepository(r, ref));
    if (from) {
      const res = await this.t.request({
        registry: ref.registry, method: 'POST',
        path: `/v2/${ref.repository}/blobs/uploads/?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(from.repository)}`,
        headers: { 'content-length': '0' }, scopes: [pushScope(ref), pullScope(from)],
        what: `mount blob ${desc.digest} from ${from.name} into ${ref.name}`, ok: [201, 202],
      });
      await res.body.dump();
      if (res.status === 201) return 'mounted';
      // 202: the registry could not mount (no access to the source, or blob absent) and opened an upload instead
      location = this.location(res, ref);
    }
    for (let attempt = 0; ; attempt++) {
      try {
        await this.upload(ref, desc, open, location);
        return 'uploaded';
      } catch (err) {
        location = undefined;
        const retryable = err instanceof BuilderError && ['REGISTRY_UNREACHABLE', 'REGISTRY_SERVER_ERROR', 'REGISTRY_BLOB_UPLOAD_UNKNOWN'].includes(err.code);
        if (!retryable || attempt >= 2) throw err;
        this.opts.logger?.(`upload of ${desc.digest} to ${ref.name} failed (${(err as BuilderError).code}); starting over`);
      }
    }
  }

  /**
   * Proves ref's repository accepts a push without writing anything: starts an upload session (the registry checks
   * the push permission there) and cancels it.
   */
  async checkPush(ref: ImageRef): Promise<void> {
    const loc = await this.startUpload(ref, `push permission check for ${ref.name}`);
    const res = await this.t.request({
      registry: ref.registry, method: 'DELETE', path: loc, scopes: [pushScope(ref)], what: `cancel the upload session of the push check in ${ref.name}`,
      // some registries cannot cancel (405) or already forgot the session (404): the permission was proven either way
      ok: [200, 202, 204, 404, 405],
    });
    await res.body.dump();
  }

  /** Proves the credentials for registry work: GET /v2/ with them (a token with no scope where the registry wants tokens). */
  async checkLogin(registry: string): Promise<void> {
    const res = await this.t.request({ registry, method: 'GET', path: '/v2/', scopes: [], what: `log in to ${registry}`, ok: [200] });
    await res.body.dump();
  }

  /**
   * Removes one tag and nothing else (OCI distribution DELETE by tag). 'unsupported' when the registry cannot: the
   * caller decides whether deleting the manifest, with every tag pointing to it, is acceptable.
   */
  async deleteTag(ref: ImageRef): Promise<'deleted' | 'unsupported'> {
    if (!ref.tag) throw new BuilderError('REFERENCE_INVALID', `${ref} names no tag`, { hint: 'give REPO:TAG' });
    try {
      const res = await this.t.request({
        registry: ref.registry, method: 'DELETE', path: `/v2/${ref.repository}/manifests/${ref.tag}`,
        scopes: [`repository:${ref.repository}:delete`], what: `DELETE tag ${ref}`, ok: [202, 200],
      });
      await res.body.dump();
      return 'deleted';
    } catch (err) {
      // distribution 2.x answers a tag in the digest position with DIGEST_INVALID / UNSUPPORTED / 405
      if (err instanceof BuilderError && /DIGEST_INVALID|UNSUPPORTED|\b405\b|\b400\b/.test(`${err.code} ${err.message}`)) return 'unsupported';
      throw err;
    }
  }

  private async startUpload(ref: ImageRef, what = `start upload to ${ref.name}`): Promise<string> {
    const res = await this.t.request({
      registry: ref.registry, method: 'POST', path: `/v2/${ref.repository}/blobs/uploads/`, headers: { 'content-length': '0' },
      scopes: [pushScope(ref)], what, ok: [202],
    });
    await res.body.dump();
    return this.location(res, ref);
  }

  private location(res: RegResponse, ref: ImageRef): string {
    const loc = header(res, 'location');
    if (!loc) throw new BuilderError('REGISTRY_PROTOCOL', `registry ${ref.registry} started an upload without a Location header`, { hint: 'the registry does not follow the distribution API' });
    return new URL(loc, res.url).toString();
  }

  private async upload(ref: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>, open: () => Readable | Promise<Readable>, started?: string): Promise<void> {
    let loc = started ?? (await this.startUpload(ref));
    const threshold = this.opts.chunkedThreshold ?? 64 * 1024 * 1024;
    if (desc.size > threshold) {
      loc = await this.uploadChunks(ref, desc, open, loc);
      await this.finishUpload(ref, desc, loc, undefined);
      return;
    }
    const body = async (): Promise<Readable> => {
      const src = await open();
      const v = new VerifyingStream(desc.digest, desc.size, `blob ${desc.digest} being pushed to ${ref.name}`);
      src.on('error', (e) => v.destroy(e));
      return this.counted(src, 'push', ref, desc).pipe(v);
    };
    await this.finishUpload(ref, desc, loc, body);
  }

  /** PUT <location>&digest=, keeping the Location's own query (e.g. _state); with the whole body or none. */
  private async finishUpload(ref: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>, loc: string, body: (() => Promise<Readable>) | undefined): Promise<void> {
    const sep = loc.includes('?') ? '&' : '?';
    const res = await this.t.request({
      registry: ref.registry, method: 'PUT', path: `${loc}${sep}digest=${encodeURIComponent(desc.digest)}`,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(body ? desc.size : 0) },
      ...(body ? { body } : {}), scopes: [pushScope(ref)], what: `upload blob ${desc.digest} to ${ref.name}`, ok: [201, 204], retry: false,
    });
    await res.body.dump();
    const said = header(res, 'docker-content-digest');
    if (said && said !== desc.digest) throw digestMismatch(`upload blob to ${ref.name}`, desc.digest, said);
  }

  /**
   * PATCHes the blob in chunks. Starts (and, after a 416 or a broken connection, resumes) at the offset the
   * registry reports for the session: distribution 2.8 ignores Content-Range and appends, so we must ask.
   */
  private async uploadChunks(ref: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>, open: () => Readable | Promise<Readable>, location: string): Promise<string> {
    const chunk = this.opts.chunkSize ?? 32 * 1024 * 1024;
    let { offset, location: loc } = await this.uploadStatus(ref, location);
    let resumes = 0;
    let src = await ChunkReader.open(open, desc, ref, offset);
    try {
      while (offset < desc.size) {
        const len = Math.min(chunk, desc.size - offset);
        const start = offset;
        let res: RegResponse | undefined;
        try {
          res = await this.t.request({
            registry: ref.registry, method: 'PATCH', path: loc,
            headers: { 'content-type': 'application/octet-stream', 'content-length': String(len), 'content-range': `${start}-${start + len - 1}` },
            body: () => src.take(len), scopes: [pushScope(ref)], what: `upload chunk ${start}-${start + len - 1} of ${desc.digest} to ${ref.name}`,
            ok: [202, 204], retry: false,
          });
        } catch (err) {
          if (src.error) throw src.error;
          const resumable = err instanceof BuilderError && (err.code === 'REGISTRY_RANGE_INVALID' || err.code === 'REGISTRY_UNREACHABLE' || / 416\b/.test(err.message));
          if (!resumable || resumes >= 3) throw err;
        }
        if (res) {
          await res.body.dump();
          loc = this.location(res, ref);
          offset = start + len;
          this.opts.onProgress?.({ op: 'push', repository: ref.name, digest: desc.digest, done: offset, total: desc.size });
          const range = /^(?:bytes=)?0-(\d+)$/.exec(header(res, 'range') ?? '');
          if (!range || Number(range[1]) === offset - 1) continue;
          this.opts.logger?.(`registry ${ref.registry} holds ${Number(range[1]) + 1} bytes of ${desc.digest}, expected ${offset}; resyncing`);
        }
        // out of sync (416, broken connection, short write): ask the registry and restart the source there
        resumes++;
        const st = await this.uploadStatus(ref, loc);
        if (st.offset > desc.size) throw new BuilderError('REGISTRY_PROTOCOL', `registry ${ref.registry} holds more bytes than blob ${desc.digest} has`, { hint: 'retry the push' });
        offset = st.offset;
        loc = st.location;
        src.destroy();
        src = await ChunkReader.open(open, desc, ref, offset);
      }
      await src.finish();
      return loc;
    } finally {
      src.destroy();
    }
  }

  /** How many bytes the registry holds for an upload, and the (fresh-state) Location to continue at. */
  private async uploadStatus(ref: ImageRef, loc: string): Promise<{ offset: number; location: string }> {
    const res = await this.t.request({
      registry: ref.registry, method: 'GET', path: loc, scopes: [pushScope(ref)], what: `upload status in ${ref.name}`, ok: [204, 200],
    });
    await res.body.dump();
    const m = /^(?:bytes=)?0-(-?\d+)$/.exec(header(res, 'range') ?? '0--1');
    // distribution answers "0-0" for an empty session as well as for one byte; treat it as empty
    const end = m ? Number(m[1]) : -1;
    return { offset: end <= 0 ? 0 : end + 1, location: header(res, 'location') ? this.location(res, ref) : loc };
  }

  /** PUTs a manifest (after its blobs); returns its digest, checked against what the registry reports. */
  async putManifest(ref: ImageRef, bytes: Buffer, mediaType: string): Promise<Digest> {
    const digest = sha256(bytes);
    if (ref.digest && ref.digest !== digest) throw digestMismatch(`PUT manifest ${ref}`, digest, ref.digest);
    let res: RegResponse;
    try {
      res = await this.t.request({
        registry: ref.registry, method: 'PUT', path: `/v2/${ref.repository}/manifests/${identifier(ref)}`,
        headers: { 'content-type': mediaType }, body: bytes, scopes: [pushScope(ref)], what: `PUT manifest ${ref}`, ok: [201, 200, 202],
      });
    } catch (err) {
      if (this.opts.ignoreImmutableTagErrors && isImmutableTagError(err)) {
        this.opts.onWarning?.(`${ref} was not overwritten: the registry keeps the tag immutable (${(err as BuilderError).message}); ignored (--push-ignore-immutable-tag-errors)`);
        return digest;
      }
      throw err;
    }
    await res.body.dump();
    const said = header(res, 'docker-content-digest');
    if (said && said !== digest) throw digestMismatch(`PUT manifest ${ref}`, digest, said);
    return digest;
  }

  /** All tags of ref's repository, following Link pagination. */
  async listTags(ref: ImageRef): Promise<string[]> {
    const tags: string[] = [];
    let path: string | undefined = `/v2/${ref.repository}/tags/list?n=1000`;
    for (let page = 0; path && page < 10_000; page++) {
      const res = await this.t.request({ registry: ref.registry, method: 'GET', path, scopes: [pullScope(ref)], what: `list tags of ${ref.name}`, ok: [200] });
      const link = header(res, 'link');
      const body = await readAll(res, MAX_MANIFEST, `list tags of ${ref.name}`);
      const j = JSON.parse(body.toString('utf8')) as { tags?: string[] | null };
      tags.push(...(j.tags ?? []));
      const next = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
      path = next ? new URL(next[1]!, res.url).toString() : undefined;
    }
    return tags;
  }

  /** Deletes a manifest (by digest; a tag is resolved first). The registry must allow deletes. */
  async deleteManifest(ref: ImageRef): Promise<void> {
    const digest = ref.digest ?? (await this.headManifest(ref))?.digest;
    if (!digest) throw new BuilderError('REGISTRY_MANIFEST_UNKNOWN', `${ref} does not exist on registry ${ref.registry}`, { hint: 'check the tag' });
    const res = await this.t.request({
      registry: ref.registry, method: 'DELETE', path: `/v2/${ref.repository}/manifests/${digest}`,
      scopes: [`repository:${ref.repository}:delete`], what: `DELETE manifest ${ref.name}@${digest}`, ok: [202, 200],
    });
    await res.body.dump();
  }
}

/** Sequential reader over one opened source that hands out exact-length chunks; verifies the whole blob. */
class ChunkReader {
  error: Error | undefined;
  private pending: Buffer | undefined;
  private constructor(private readonly src: Readable, private readonly it: AsyncIterator<Buffer>) {}

  static async open(open: () => Readable | Promise<Readable>, desc: Pick<Descriptor, 'digest' | 'size'>, ref: ImageRef, skip: number): Promise<ChunkReader> {
    const raw = await open();
    const v = new VerifyingStream(desc.digest, desc.size, `blob ${desc.digest} being pushed to ${ref.name}`);
    raw.on('error', (e) => v.destroy(e));
    const r = new ChunkReader(v, (raw.pipe(v) as Readable)[Symbol.asyncIterator]() as AsyncIterator<Buffer>);
    let left = skip;
    while (left > 0) {
      const b = await r.next(left);
      if (!b) break;
      left -= b.length;
    }
    return r;
  }

  private async next(max: number): Promise<Buffer | undefined> {
    let b = this.pending;
    this.pending = undefined;
    if (!b) {
      try {
        const n = await this.it.next();
        if (n.done) return undefined;
        b = n.value;
      } catch (err) {
        this.error = err as Error;
        throw err;
      }
    }
    if (b.length > max) {
      this.pending = b.subarray(max);
      b = b.subarray(0, max);
    }
    return b;
  }

  take(len: number): Readable {
    const self = this;
    return Readable.from((async function* () {
      let left = len;
      while (left > 0) {
        const b = await self.next(left);
        if (!b) break;
        left -= b.length;
        yield b;
      }
    })(), { objectMode: false });
  }

  /** Reads to the end so the verifier's final digest check runs. */
  async finish(): Promise<void> {
    if (this.pending && this.pending.length > 0) throw new BuilderError('SIZE_MISMATCH', 'blob has more bytes than its descriptor says', { hint: 're-create the image' });
    while (await this.next(Number.MAX_SAFE_INTEGER)) {
      throw new BuilderError('SIZE_MISMATCH', 'blob has more bytes than its descriptor says', { hint: 're-create the image' });
    }
  }

  destroy(): void {
    this.src.destroy();
  }
}
