// RegistryClient: Distribution v2 operations (manifests, blobs, uploads, tags, delete) on top of Transport.
import { Readable } from 'node:stream';
import { BuilderError } from '../errors.js';
import { isDigest, sha256, verified, type Digest } from '../digest/index.js';
import { identifier, parseReference, sameRepository, withDigest, type ImageRef } from '../reference/index.js';
import {
  checkManifestDocument, formatPlatform, isIndexMediaType, MANIFEST_ACCEPT, MediaType, parseConfig, parseIndex, parseManifest, selectPlatform,
  type Descriptor, type ImageData, type Index, type Platform,
} from '../image/index.js';
import type { Dispatcher } from 'undici';
import type { BuildEvent } from '../util/events.js';
import { header, readAll, transferEvent, Transport, type RegistryClientOptions, type RegResponse } from './transport.js';
import { resumableBody } from './download.js';
import { interruptedError, REGISTRY_ERROR_CODES, RegistryError } from './errors.js';
import { NotRetried } from './retry.js';

/** The largest manifest and config the client reads into memory (the store holds it to the same limits). */
export const MAX_MANIFEST = 8 * 1024 * 1024;
export const MAX_CONFIG = 32 * 1024 * 1024;

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
  /** The blob was just made (a new layer, a config): its upload session opens while HEAD asks, cancelled if it is there after all. */
  likelyMissing?: boolean;
}

const pullScope = (ref: ImageRef): string => `repository:${ref.repository}:pull`;
const pushScope = (ref: ImageRef): string => `repository:${ref.repository}:pull,push`;

/** Registry X (ECR, Harbor, GAR, Artifactory, GitLab protected tags...) refusing to overwrite a tag, as kaniko recognises it. */
export function isImmutableTagError(err: unknown): boolean {
  if (!(err instanceof BuilderError) || !(err.code in REGISTRY_ERROR_CODES)) return false;
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
  /** Requests still under way after the call that made them returned (a push check's cancellation): close() waits for them. */
  private readonly trailing: Promise<void>[] = [];

  constructor(readonly opts: RegistryClientOptions = {}) {
    this.t = new Transport(opts);
  }

  /** Sends an event down the client's one channel (opts.emit): what borrows the client (stores, warmers) reports through it too. */
  emit(e: BuildEvent): void {
    this.opts.emit?.(e);
  }

  /**
   * src with its bytes counted into progress events (src itself when nobody listens). Counts at src's own push(),
   * so the pipeline keeps its shape: no stream stage is added between a registry response and its verifier.
   */
  private counted(src: Readable, op: 'pull' | 'push', ref: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>): Readable {
    const report = this.opts.emit;
    if (!report) return src;
    let done = 0;
    const push = src.push.bind(src);
    src.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
      if (chunk !== null && chunk !== undefined) {
        done += (chunk as Buffer).length;
        report(transferEvent({ op, repository: ref.name, digest: desc.digest, done, total: desc.size }));
      }
      return push(chunk, encoding);
    };
    return src;
  }

  /** For fetch() beyond the registry (ADD URLs): a dispatcher trusting the extra CA certificates, when there are any. */
  fetchDispatcher(): Promise<Dispatcher | undefined> {
    return this.t.fetchDispatcher();
  }

  /** Closes pooled connections once the requests still under way are done; call when done. */
  async close(): Promise<void> {
    await Promise.allSettled(this.trailing);
    await this.t.close();
  }

  /** GETs a manifest or index with the full Accept list; the bytes are verified against the digest. */
  async getManifest(ref: ImageRef, accept: readonly string[] = MANIFEST_ACCEPT): Promise<ManifestResult> {
    const what = `GET manifest ${ref}`;
    // a body that breaks off or does not match its digest is fetched again, under the same retry budget
    return this.t.exchange({
      registry: ref.registry, method: 'GET', path: `/v2/${ref.repository}/manifests/${identifier(ref)}`,
      headers: { accept: accept.join(', ') }, scopes: [pullScope(ref)], what, ok: [200],
    }, async (res) => {
      const bytes = await readAll(res, MAX_MANIFEST, what, ref.registry);
      const digest = sha256(bytes);
      if (ref.digest && ref.digest !== digest) throw digestMismatch(what, digest, ref.digest);
      const said = header(res, 'docker-content-digest');
      if (said && isDigest(said) && said !== digest) throw digestMismatch(what, digest, said);
      return { digest, bytes, mediaType: checkManifestDocument(bytes, header(res, 'content-type'), what) };
    });
  }

  /** HEADs a manifest: its digest, media type and size, or undefined when it does not exist. */
  async headManifest(ref: ImageRef): Promise<{ digest: Digest; mediaType: string; size: number } | undefined> {
    const res = await this.t.call({
      registry: ref.registry, method: 'HEAD', path: `/v2/${ref.repository}/manifests/${identifier(ref)}`,
      headers: { accept: MANIFEST_ACCEPT.join(', ') }, scopes: [pullScope(ref)], what: `HEAD manifest ${ref}`, ok: [200, 404],
    });
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
    const img = await this.withMirrors(ref, (r) => this.resolveDirect(r, platform));
    return { ...img, ref };
  }

  /**
   * Runs a pull of ref's image through its mirrors first (opts.mirrors, in order), then ref itself unless
   * opts.skipDefaultRegistryFallback. A mirror failing is a warning; the image's blobs are then read where it was found.
   */
  async withMirrors<T>(ref: ImageRef, pull: (from: ImageRef) => Promise<T>): Promise<T> {
    const mirrors = this.opts.mirrors?.[ref.registry] ?? [];
    if (mirrors.length === 0) return pull(ref);
    const failures: string[] = [];
    for (const m of mirrors) {
      const via = mirrorRef(ref, m);
      try {
        const r = await pull(via);
        this.pulledVia.set(ref.name, via);
        this.emit({ type: 'message', level: 'trace', msg: `${ref} resolved through mirror ${m}` });
        return r;
      } catch (err) {
        const why = err instanceof BuilderError ? `${err.code}: ${err.message}` : String(err);
        failures.push(`${m}: ${why}`);
        const next = m !== mirrors[mirrors.length - 1] ? 'trying the next mirror' : this.opts.skipDefaultRegistryFallback ? 'no fallback (--skip-default-registry-fallback)' : `falling back to ${ref.registry}`;
        this.emit({ type: 'warning', msg: `mirror ${m} could not provide ${ref} (${why}); ${next}` });
      }
    }
    if (this.opts.skipDefaultRegistryFallback) {
      throw new RegistryError('REGISTRY_MIRRORS_FAILED', `no mirror could provide ${ref}: ${failures.join('; ')}`, {
        hint: 'check the mirrors (--registry-mirror / --registry-map), or drop --skip-default-registry-fallback to pull from the registry itself',
      });
    }
    return pull(ref);
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

  /**
   * Streams a blob, verified: the stream fails with DIGEST_MISMATCH/SIZE_MISMATCH if the bytes are not what desc
   * says, and with a typed REGISTRY_* error when the download breaks off more often than the retry budget allows
   * (each break resumes from the first missing byte with a Range request).
   */
  async openBlob(ref0: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>): Promise<Readable> {
    // a repository whose image came through a mirror has its blobs read there too
    const ref = this.pulledVia.get(ref0.name) ?? ref0;
    const what = `GET blob ${desc.digest} of ${ref.name}`;
    const get = (offset: number, retry: boolean): Promise<RegResponse> => this.t.request({
      registry: ref.registry, method: 'GET', path: `/v2/${ref.repository}/blobs/${desc.digest}`,
      ...(offset > 0 ? { headers: { range: `bytes=${offset}-` } } : {}),
      scopes: [pullScope(ref)], what, ok: offset > 0 ? [200, 206] : [200], retry,
    });
    const first = await get(0, true);
    const body = resumableBody(this.t.retrier, first, {
      registry: ref.registry, what, size: desc.size, retries: this.t.retries('pull'), reopen: (offset) => get(offset, false),
    });
    return verified(this.counted(body, 'pull', ref, desc), desc.digest, desc.size, `blob ${desc.digest} from ${ref.name}`, (err) => interruptedError(ref.registry, what, err));
  }

  /**
   * Streams a blob into `sink` (which must read it to the end, and leave nothing behind when it fails, like
   * BlobStore.put), starting over when the bytes arrive wrong (DIGEST_MISMATCH / SIZE_MISMATCH) or the download
   * breaks beyond its resumes, under the download budget. openBlob cannot do this itself: its bytes are already
   * downstream when the digest is checked at the end.
   */
  async fetchBlob(ref: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>, sink: (blob: Readable) => Promise<void>): Promise<void> {
    const what = `GET blob ${desc.digest} of ${ref.name} (from the start)`;
    await this.t.retrier.run({ budget: this.t.retries('pull'), what }, async () => sink(await this.openBlob(ref, desc)));
  }

  /** Reads a small blob (a config) fully, verified; a corrupt or broken read is fetched again under the retry budget. */
  async readBlob(ref: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>): Promise<Buffer> {
    if (desc.size > MAX_CONFIG) throw new RegistryError('REGISTRY_RESPONSE_TOO_LARGE', `blob ${desc.digest} of ${ref.name} is too large to read into memory`, { hint: 'stream it with openBlob' });
    const what = `GET blob ${desc.digest} of ${ref.name}`;
    return this.t.exchange({
      registry: ref.registry, method: 'GET', path: `/v2/${ref.repository}/blobs/${desc.digest}`, scopes: [pullScope(ref)], what, ok: [200],
    }, async (res) => {
      const chunks: Buffer[] = [];
      const v = verified(res.body, desc.digest, desc.size, `blob ${desc.digest} from ${ref.name}`, (err) => interruptedError(ref.registry, what, err));
      for await (const c of v) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    });
  }

  async hasBlob(ref: ImageRef, digest: Digest, budget: 'push' | 'pull' = 'pull'): Promise<boolean> {
    const res = await this.t.call({
      registry: ref.registry, method: 'HEAD', path: `/v2/${ref.repository}/blobs/${digest}`,
      scopes: [pullScope(ref)], what: `HEAD blob ${digest} in ${ref.name}`, ok: [200, 404], budget,
    });
    return res.status === 200;
  }

  /**
   * Makes desc's blob exist in ref's repository: already there, mounted from a sibling repository, or
   * uploaded from open() (monolithic, or chunked above opts.chunkedThreshold). Uploads are verified.
   */
  async pushBlob(ref: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>, open: () => Readable | Promise<Readable>, opts: PushBlobOptions = {}): Promise<PushBlobResult> {
    const from = (opts.mountFrom ?? []).find((r) => r.registry === ref.registry && !sameRepository(r, ref));
    // one round trip less for a blob that is most likely missing; HEAD's answer still decides
    const early = opts.likelyMissing && !from ? this.startUpload(ref) : undefined;
    early?.catch(() => undefined);
    const there = await this.hasBlob(ref, desc.digest, 'push').catch(async (err: unknown) => {
      await this.cancelUpload(ref, early);
      throw err;
    });
    if (there) {
      await this.cancelUpload(ref, early);
      return 'exists';
    }
    // a session that did not open is opened again inside the upload's own retries, as without one ahead
    let location = await early?.catch(() => undefined);
    if (from) {
      const res = await this.t.call({
        registry: ref.registry, method: 'POST',
        path: `/v2/${ref.repository}/blobs/uploads/?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(from.repository)}`,
        headers: { 'content-length': '0' }, scopes: [pushScope(ref), pullScope(from)],
        what: `mount blob ${desc.digest} from ${from.name} into ${ref.name}`, ok: [201, 202],
      });
      if (res.status === 201) return 'mounted';
      // 202: the registry could not mount (no access to the source, or blob absent) and opened an upload instead
      location = this.location(res, ref);
    }
    // one budget of new upload sessions: after a failure the old session's state is unknown, so never reuse it
    const loop = { budget: this.t.retries('push'), scope: 'session' as const, what: `upload of ${desc.digest} to ${ref.name} (new session)` };
    return this.t.retrier.run<PushBlobResult>(loop, async (attempt) => {
      // the last upload may have completed with only its response lost (a failure to ask is final, as it was the wait's)
      if (attempt > 0 && await this.hasBlob(ref, desc.digest, 'push').catch((err: unknown) => { throw new NotRetried(err); })) return 'uploaded';
      await this.upload(ref, desc, open, attempt === 0 ? location : undefined);
      return 'uploaded';
    });
  }

  /**
   * Proves ref's repository accepts a push without writing anything: starts an upload session (the registry checks
   * the push permission there) and cancels it. The session opening is the proof: it is cancelled after this returns,
   * and close() waits for that.
   */
  async checkPush(ref: ImageRef): Promise<void> {
    const loc = await this.startUpload(ref, `push permission check for ${ref.name}`);
    this.trailing.push(this.deleteUpload(ref, loc, `cancel the upload session of the push check in ${ref.name}`).catch((err: unknown) => {
      if (this.opts.signal?.aborted) return; // the check was stopped (the build failed first): the registry expires the session
      this.emit({ type: 'warning', msg: `the push check's upload session in ${ref.name} was not cancelled (${err instanceof BuilderError ? `${err.code}: ` : ''}${(err as Error).message}); the registry drops it when it expires` });
    }));
  }

  private async deleteUpload(ref: ImageRef, loc: string, what: string, retry = true): Promise<void> {
    await this.t.call({
      registry: ref.registry, method: 'DELETE', path: loc, scopes: [pushScope(ref)], what,
      // some registries cannot cancel (405) or already forgot the session (404): the permission was proven either way
      ok: [200, 202, 204, 404, 405], retry,
    });
  }

  /** Cancels an upload session opened ahead that is not needed (the blob is there, or asking failed); a failure to cancel costs nothing. */
  private async cancelUpload(ref: ImageRef, session: Promise<string> | undefined): Promise<void> {
    const loc = await session?.catch(() => undefined);
    // one try: a session left open expires, and retries would hold the push up for nothing
    if (loc) await this.deleteUpload(ref, loc, `cancel an unneeded upload session in ${ref.name}`, false).catch(() => undefined);
  }

  /** Proves the credentials for registry work: GET /v2/ with them (a token with no scope where the registry wants tokens). */
  async checkLogin(registry: string): Promise<void> {
    await this.t.call({ registry, method: 'GET', path: '/v2/', scopes: [], what: `log in to ${registry}`, ok: [200] });
  }

  /**
   * Removes one tag and nothing else (OCI distribution DELETE by tag). 'unsupported' when the registry cannot: the
   * caller decides whether deleting the manifest, with every tag pointing to it, is acceptable.
   */
  async deleteTag(ref: ImageRef): Promise<'deleted' | 'unsupported'> {
    if (!ref.tag) throw new BuilderError('REFERENCE_INVALID', `${ref} names no tag`, { hint: 'give REPO:TAG' });
    try {
      await this.t.call({
        registry: ref.registry, method: 'DELETE', path: `/v2/${ref.repository}/manifests/${ref.tag}`,
        scopes: [`repository:${ref.repository}:delete`], what: `DELETE tag ${ref}`, ok: [202, 200],
      });
      return 'deleted';
    } catch (err) {
      // distribution 2.x answers a tag in the digest position with DIGEST_INVALID / UNSUPPORTED / 405
      if (err instanceof BuilderError && /DIGEST_INVALID|UNSUPPORTED|\b405\b|\b400\b/.test(`${err.code} ${err.message}`)) return 'unsupported';
      throw err;
    }
  }

  private async startUpload(ref: ImageRef, what = `start upload to ${ref.name}`): Promise<string> {
    const res = await this.t.call({
      registry: ref.registry, method: 'POST', path: `/v2/${ref.repository}/blobs/uploads/`, headers: { 'content-length': '0' },
      scopes: [pushScope(ref)], what, ok: [202],
    });
    return this.location(res, ref);
  }

  private location(res: Pick<RegResponse, 'headers' | 'url'>, ref: ImageRef): string {
    const loc = header(res, 'location');
    if (!loc) throw new RegistryError('REGISTRY_PROTOCOL', `registry ${ref.registry} started an upload without a Location header`, { hint: 'the registry does not follow the distribution API' });
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
    let sourceError: BuilderError | undefined;
    const body = async (): Promise<Readable> => {
      const v = verified(this.counted(await open(), 'push', ref, desc), desc.digest, desc.size, `blob ${desc.digest} being pushed to ${ref.name}`);
      // typed errors come from the source or the verifier; a raw one is undici aborting the body after a network failure
      v.on('error', (e) => {
        if (e instanceof BuilderError) sourceError ??= e;
      });
      return v;
    };
    try {
      await this.finishUpload(ref, desc, loc, body);
    } catch (err) {
      throw sourceError ? new NotRetried(sourceError) : err;
    }
  }

  /** PUT <location>&digest=, keeping the Location's own query (e.g. _state); with the whole body or none. */
  private async finishUpload(ref: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>, loc: string, body: (() => Promise<Readable>) | undefined): Promise<void> {
    const sep = loc.includes('?') ? '&' : '?';
    const res = await this.t.call({
      registry: ref.registry, method: 'PUT', path: `${loc}${sep}digest=${encodeURIComponent(desc.digest)}`,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(body ? desc.size : 0) },
      ...(body ? { body } : {}), scopes: [pushScope(ref)], what: `upload blob ${desc.digest} to ${ref.name}`, ok: [201, 204], retry: false,
    });
    const said = header(res, 'docker-content-digest');
    if (said && said !== desc.digest) throw digestMismatch(`upload blob to ${ref.name}`, desc.digest, said);
  }

  /**
   * PATCHes the blob in chunks. Starts (and, after a failed PATCH or a short write, resumes) at the offset the
   * registry reports for the session: distribution 2.8 ignores Content-Range and appends, so we must ask. A session
   * the registry gave up on (it cancels one whose state we got out of step with) fails to pushBlob, which starts anew.
   */
  private async uploadChunks(ref: ImageRef, desc: Pick<Descriptor, 'digest' | 'size'>, open: () => Readable | Promise<Readable>, location: string): Promise<string> {
    const chunk = this.opts.chunkSize ?? 32 * 1024 * 1024;
    const budget = this.t.retries('push');
    let { offset, location: loc } = await this.uploadStatus(ref, location);
    let resumes = 0;
    let src = await ChunkReader.open(open, desc, ref, offset);
    try {
      while (offset < desc.size) {
        const len = Math.min(chunk, desc.size - offset);
        const start = offset;
        const what = `upload chunk ${start}-${start + len - 1} of ${desc.digest} to ${ref.name}`;
        try {
          const res = await this.t.call({
            registry: ref.registry, method: 'PATCH', path: loc,
            headers: { 'content-type': 'application/octet-stream', 'content-length': String(len), 'content-range': `${start}-${start + len - 1}` },
            body: () => src.take(len), scopes: [pushScope(ref)], what, ok: [202, 204], retry: false,
          });
          loc = this.location(res, ref);
          offset = start + len;
          this.emit(transferEvent({ op: 'push', repository: ref.name, digest: desc.digest, done: offset, total: desc.size }));
          const range = /^(?:bytes=)?0-(\d+)$/.exec(header(res, 'range') ?? '');
          if (!range || Number(range[1]) === offset - 1) continue;
          this.emit({ type: 'message', level: 'trace', msg: `registry ${ref.registry} holds ${Number(range[1]) + 1} bytes of ${desc.digest}, expected ${offset}; resyncing` });
          if (resumes >= budget) throw new RegistryError('REGISTRY_RANGE_INVALID', `${what}: registry ${ref.registry} keeps holding a different number of bytes than were sent`, { hint: 'retry the push' });
        } catch (err) {
          if (src.error) throw new NotRetried(src.error);
          if (!this.t.retrier.policy.shouldRetry(err, resumes, budget, 'session')) throw err;
          await this.t.retrier.wait(what, err, resumes, budget);
        }
        // out of sync (failed PATCH, short write): ask the registry and restart the source there
        resumes++;
        const st = await this.uploadStatus(ref, loc);
        if (st.offset > desc.size) throw new RegistryError('REGISTRY_PROTOCOL', `registry ${ref.registry} holds more bytes than blob ${desc.digest} has`, { hint: 'retry the push' });
        offset = st.offset;
        loc = st.location;
        src.destroy();
        src = await ChunkReader.open(open, desc, ref, offset);
      }
      try {
        await src.finish();
      } catch (err) {
        throw err instanceof BuilderError ? new NotRetried(err) : err;
      }
      return loc;
    } finally {
      src.destroy();
    }
  }

  /** How many bytes the registry holds for an upload, and the (fresh-state) Location to continue at. */
  private async uploadStatus(ref: ImageRef, loc: string): Promise<{ offset: number; location: string }> {
    // no retries of its own: a session in doubt is abandoned by pushBlob, which starts a new one
    const res = await this.t.call({
      registry: ref.registry, method: 'GET', path: loc, scopes: [pushScope(ref)], what: `upload status in ${ref.name}`, ok: [204, 200], retry: false,
    });
    const m = /^(?:bytes=)?0-(-?\d+)$/.exec(header(res, 'range') ?? '0--1');
    // distribution answers "0-0" for an empty session as well as for one byte; treat it as empty
    const end = m ? Number(m[1]) : -1;
    return { offset: end <= 0 ? 0 : end + 1, location: header(res, 'location') ? this.location(res, ref) : loc };
  }

  /** PUTs a manifest (after its blobs); returns its digest, checked against what the registry reports. */
  async putManifest(ref: ImageRef, bytes: Buffer, mediaType: string): Promise<Digest> {
    return (await this.pushManifest(ref, bytes, mediaType)).digest;
  }

  /**
   * putManifest, also returning the OCI-Subject header: a registry with the referrers API sets it when it indexed the
   * manifest's `subject` (OCI distribution 1.1); without it the client keeps the referrers tag itself.
   */
  async pushManifest(ref: ImageRef, bytes: Buffer, mediaType: string): Promise<{ digest: Digest; subject?: string }> {
    const digest = sha256(bytes);
    if (ref.digest && ref.digest !== digest) throw digestMismatch(`PUT manifest ${ref}`, digest, ref.digest);
    const what = `PUT manifest ${ref}`;
    try {
      const subject = await this.put(ref, bytes, mediaType, digest, what);
      return { digest, ...(subject ? { subject } : {}) };
    } catch (err) {
      if (this.opts.ignoreImmutableTagErrors && isImmutableTagError(err)) {
        this.emit({ type: 'warning', msg: `${ref} was not overwritten: the registry keeps the tag immutable (${(err as BuilderError).message}); ignored (--push-ignore-immutable-tag-errors)` });
        return { digest };
      }
      throw err;
    }
  }

  /** GET /v2/<name>/referrers/<digest>: the referrers index, or undefined where the registry has no referrers API (404). */
  async getReferrers(ref: ImageRef, digest: Digest): Promise<Index | undefined> {
    const what = `GET referrers of ${ref.name}@${digest}`;
    return this.t.exchange({
      registry: ref.registry, method: 'GET', path: `/v2/${ref.repository}/referrers/${digest}`,
      headers: { accept: MediaType.OciIndex }, scopes: [pullScope(ref)], what, ok: [200, 404],
    }, async (res) => {
      if (res.status === 404) {
        await res.body.dump();
        return undefined;
      }
      const bytes = await readAll(res, MAX_MANIFEST, what, ref.registry);
      const ct = (header(res, 'content-type') ?? '').split(';')[0]!.trim();
      // a registry without the API may answer 200 with something else (an HTML page, a proxy's answer): not an index
      if (ct !== MediaType.OciIndex) return undefined;
      return parseIndex(bytes, what);
    });
  }

  private async put(ref: ImageRef, bytes: Buffer, mediaType: string, digest: Digest, what: string): Promise<string | undefined> {
    return this.t.exchange({
      registry: ref.registry, method: 'PUT', path: `/v2/${ref.repository}/manifests/${identifier(ref)}`,
      headers: { 'content-type': mediaType }, body: bytes, scopes: [pushScope(ref)], what, ok: [201, 200, 202],
    }, async (res) => {
      await res.body.dump();
      const said = header(res, 'docker-content-digest');
      // other bytes arrived (damaged on the way) and sit under the tag: sending ours again (a retry) repairs it.
      // Never delete what the registry stored: a registry that rewrites manifests may share it with other tags.
      if (said && said !== digest) {
        throw new BuilderError('DIGEST_MISMATCH', `${what}: the registry stored a manifest with digest ${said}, not the ${digest} that was sent`, {
          hint: 'the tag may now point at that manifest; the registry rewrites manifests (check it supports this media type) or the network damages them',
        });
      }
      return header(res, 'oci-subject');
    });
  }

  /** All tags of ref's repository, following Link pagination. */
  async listTags(ref: ImageRef): Promise<string[]> {
    const tags: string[] = [];
    let path: string | undefined = `/v2/${ref.repository}/tags/list?n=1000`;
    for (let page = 0; path && page < 10_000; page++) {
      const what = `list tags of ${ref.name}`;
      const page1: { link: string | undefined; body: Buffer; url: URL } = await this.t.exchange({ registry: ref.registry, method: 'GET', path, scopes: [pullScope(ref)], what, ok: [200] },
        async (res) => ({ link: header(res, 'link'), body: await readAll(res, MAX_MANIFEST, what, ref.registry), url: res.url }));
      const { link, body, url } = page1;
      const j = JSON.parse(body.toString('utf8')) as { tags?: string[] | null };
      tags.push(...(j.tags ?? []));
      const next = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
      path = next ? new URL(next[1]!, url).toString() : undefined;
    }
    return tags;
  }

  /** Deletes a manifest (by digest; a tag is resolved first). The registry must allow deletes. */
  async deleteManifest(ref: ImageRef): Promise<void> {
    const digest = ref.digest ?? (await this.headManifest(ref))?.digest;
    if (!digest) throw new RegistryError('REGISTRY_MANIFEST_UNKNOWN', `${ref} does not exist on registry ${ref.registry}`, { hint: 'check the tag' });
    await this.t.call({
      registry: ref.registry, method: 'DELETE', path: `/v2/${ref.repository}/manifests/${digest}`,
      scopes: [`repository:${ref.repository}:delete`], what: `DELETE manifest ${ref.name}@${digest}`, ok: [202, 200],
    });
  }
}

/** Sequential reader over one opened source that hands out exact-length chunks; verifies the whole blob. */
class ChunkReader {
  error: BuilderError | undefined;
  private pending: Buffer | undefined;
  private constructor(private readonly src: Readable, private readonly it: AsyncIterator<Buffer>) {}

  static async open(open: () => Readable | Promise<Readable>, desc: Pick<Descriptor, 'digest' | 'size'>, ref: ImageRef, skip: number): Promise<ChunkReader> {
    const v = verified(await open(), desc.digest, desc.size, `blob ${desc.digest} being pushed to ${ref.name}`);
    const r = new ChunkReader(v, v[Symbol.asyncIterator]() as AsyncIterator<Buffer>);
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
        this.error = err instanceof BuilderError ? err : new BuilderError('BLOB_READ_FAILED', `reading a blob to push failed: ${(err as Error)?.message ?? String(err)}`, { hint: 'check the source of the blob', cause: err });
        throw this.error;
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
