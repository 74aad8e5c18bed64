// ADD <http(s) URL>: downloaded to a file in the work dir (never into the root), checked against --checksum, named as BuildKit does.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import { BuilderError } from '../errors.js';

export interface Download {
  url: string;
  /** Host path of the downloaded file (mode 0600, mtime from Last-Modified when sent). */
  file: string;
  /** The name it lands under in a directory destination: the URL path's last element, else "__unnamed__" (BuildKit). */
  name: string;
  /** sha256 digest of the content. */
  digest: string;
  lastModified?: string;
}

/** http(s) URLs that are not git repositories (BuildKit's isHTTPSource). */
export function isHttpSource(src: string): boolean {
  return /^https?:\/\//.test(src) && !isGitSource(src);
}

/** What BuildKit would fetch with git: git@host:..., git://, ssh://, or an http(s) URL whose path ends in ".git". */
export function isGitSource(src: string): boolean {
  if (/^(git@[^:]+:|git:\/\/|ssh:\/\/)/.test(src)) return true;
  if (!/^https?:\/\//.test(src)) return false;
  const noFragment = src.split('#')[0]!;
  try {
    return /\.git\/?$/.test(new URL(noFragment).pathname);
  } catch {
    return false;
  }
}

/** BuildKit's file name for a URL source: path.Base of the URL path unless that is "." or "/". */
export function urlFileName(url: string): string {
  let p: string;
  try {
    p = decodeURIComponent(new URL(url).pathname);
  } catch {
    return '__unnamed__';
  }
  const base = path.posix.basename(p.replace(/\/+$/, ''));
  return base === '' || base === '.' || base === '/' ? '__unnamed__' : base;
}

/** Parses --checksum: "sha256:<64 hex>" (also sha384/sha512, as go-digest accepts). */
export function parseChecksum(s: string, where: string): { algorithm: 'sha256' | 'sha384' | 'sha512'; hex: string } {
  const m = /^(sha256|sha384|sha512):([0-9a-f]+)$/.exec(s);
  const lens = { sha256: 64, sha384: 96, sha512: 128 } as const;
  if (!m || m[2]!.length !== lens[m[1] as keyof typeof lens]) {
    throw new BuilderError('ADD_CHECKSUM_INVALID', `${where}: invalid --checksum=${s}`, {
      hint: 'give the digest of the file as sha256:<64 lowercase hex digits> (e.g. from sha256sum)',
    });
  }
  return { algorithm: m[1] as 'sha256' | 'sha384' | 'sha512', hex: m[2]! };
}

/** Downloads url to `file`; fails on a non-2xx status or a --checksum mismatch (the partial file is removed). */
export async function download(url: string, file: string, opts: { checksum?: string; where: string; signal?: AbortSignal; dispatcher?: Dispatcher | undefined }): Promise<Download> {
  const want = opts.checksum === undefined ? undefined : parseChecksum(opts.checksum, opts.where);
  let res: Response;
  try {
    // node's fetch takes undici's dispatcher option (here: one trusting NODE_EXTRA_CA_CERTS, which node did not load)
    const init = { redirect: 'follow', ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}) } as RequestInit;
    res = await fetch(url, init);
  } catch (err) {
    throw new BuilderError('ADD_URL_FAILED', `${opts.where}: cannot download ${url}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`, {
      hint: 'check the URL and that this machine can reach it (proxy settings: HTTP_PROXY/HTTPS_PROXY are not used by ADD)',
      cause: err,
    });
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => undefined);
    throw new BuilderError('ADD_URL_FAILED', `${opts.where}: cannot download ${url}: HTTP ${res.status} ${res.statusText}`, {
      hint: 'check the URL; ADD needs it to answer 200 without credentials',
    });
  }
  const sha256 = createHash('sha256');
  const check = want && want.algorithm !== 'sha256' ? createHash(want.algorithm) : undefined;
  try {
    await pipeline(
      Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>),
      async function* (src: AsyncIterable<Buffer>) {
        for await (const b of src) {
          sha256.update(b);
          check?.update(b);
          yield b;
        }
      },
      createWriteStream(file, { mode: 0o600 }),
    );
  } catch (err) {
    await rm(file, { force: true });
    throw new BuilderError('ADD_URL_FAILED', `${opts.where}: download of ${url} failed: ${(err as Error).message}`, {
      hint: 'the server closed the connection early; try again', cause: err,
    });
  }
  const hex = sha256.digest('hex');
  if (want) {
    const got = check ? check.digest('hex') : hex;
    if (got !== want.hex) {
      await rm(file, { force: true });
      throw new BuilderError('ADD_CHECKSUM_MISMATCH', `${opts.where}: ${url} has digest ${want.algorithm}:${got}, but --checksum says ${want.algorithm}:${want.hex}`, {
        hint: 'the file on the server changed (or the checksum is wrong); verify the download and update --checksum',
      });
    }
  }
  await chmod(file, 0o600);
  const lastModified = res.headers.get('last-modified') ?? undefined;
  const when = lastModified ? new Date(lastModified) : undefined;
  if (when && !Number.isNaN(when.getTime())) await utimes(file, when, when);
  await stat(file);
  return { url, file, name: urlFileName(url), digest: `sha256:${hex}`, ...(lastModified ? { lastModified } : {}) };
}
