// HTTP transport for one RegistryClient: scheme fallback, per-host TLS agents, auth challenges, token cache, the retry loop.
import { setMaxListeners } from 'node:events';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { connect as tlsConnect, rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import type { Agent, Dispatcher } from 'undici';
import { BuilderError } from '../errors.js';
import { registryHostname } from '../reference/index.js';
import type { Platform } from '../image/index.js';
import type { BuildEvent, EventSink } from '../util/events.js';
import { parseChallenge, type Challenge } from './challenge.js';
import { connectTrust, type ExtraCa, type ExtraTrust } from './trust.js';
import type { Credential, CredentialProvider } from './credentials.js';

// undici is imported when a command first talks to a registry (≈ 150 ms from the bundle; the V8 snapshot has it loaded).
let undici: Promise<typeof import('undici')> | undefined;
const loadUndici = (): Promise<typeof import('undici')> => (undici ??= import('undici'));
import { insufficientScope, interruptedError, networkError, registryError, RegistryError, unauthorized } from './errors.js';
import { cancelled, DEFAULT_RETRIES, Retrier, RetryPolicy } from './retry.js';

export interface RegistryClientOptions {
  /** Allow plain HTTP (after trying HTTPS without verification) for every registry (kaniko --insecure). */
  insecure?: boolean;
  /** Registries (host[:port]) that may use plain HTTP and unverified TLS (--insecure-registry). */
  insecureRegistries?: string[];
  /** Skip TLS verification for every registry (--skip-tls-verify). */
  skipTlsVerify?: boolean;
  /** Registries to skip TLS verification for (--skip-tls-verify-registry). */
  skipTlsVerifyRegistries?: string[];
  /** Extra CA certificate (PEM file path) per registry host[:port] or hostname (--registry-certificate). */
  registryCertificates?: Record<string, string>;
  /**
   * CA certificates (NODE_EXTRA_CA_CERTS) added to node's default store for every verified connection to a registry
   * without its own --registry-certificate, as node itself would add them; read once for every client given it.
   */
  extraCa?: ExtraCa;
  /** Client certificate and key (PEM file paths) per registry host[:port] or hostname, for mutual TLS (--registry-client-cert). */
  clientCertificates?: Record<string, { cert: string; key: string }>;
  /** Plain HTTP / unverified TLS for every registry not in pushRegistries (kaniko --insecure-pull, --skip-tls-verify-pull). */
  insecurePull?: boolean;
  skipTlsVerifyPull?: boolean;
  /** Registries pushed to: never made lenient by insecurePull/skipTlsVerifyPull. */
  pushRegistries?: string[];
  /** Pull-through mirrors per registry (index.docker.io for Docker Hub), tried in order by resolveImage (--registry-mirror, --registry-map). */
  mirrors?: Record<string, string[]>;
  /** With mirrors: fail when no mirror has the image instead of falling back to the registry itself. */
  skipDefaultRegistryFallback?: boolean;
  /** putManifest: a registry refusing to overwrite an immutable tag is logged, not thrown (--push-ignore-immutable-tag-errors). */
  ignoreImmutableTagErrors?: boolean;
  /** Where credentials come from; anonymous when omitted. */
  credentials?: CredentialProvider;
  /** Platform resolveImage picks from an index by default (the CLI passes the host's or --custom-platform). */
  platform?: Platform;
  /**
   * The client's one output channel: warnings (a mirror failing, an immutable tag left alone), retries, bytes moved
   * per blob (progress: called often, keep it cheap), trace details (each HTTP exchange). Never receives secrets.
   */
  emit?: EventSink;
  /** Retry budget of every request when the two below are not set (default 4). */
  retries?: number;
  /** Retries per request while pushing (uploads, mounts, manifest PUT), and new upload sessions per blob (--push-retry). */
  pushRetries?: number;
  /** Retries per request (and resumes per blob download) while pulling (--image-download-retry). */
  downloadRetries?: number;
  /** First backoff delay in ms, doubled per retry with jitter (default 500). */
  retryBaseMs?: number;
  /** Cap of one backoff delay in ms (default 10 000). */
  retryMaxMs?: number;
  /** Cap on a registry's Retry-After in ms (default 60 000). */
  retryAfterMaxMs?: number;
  /** A registry that sends no headers, or no body bytes, for this long is treated as a broken connection (default 120 s / 300 s). */
  stallTimeoutMs?: number;
  /** Blobs larger than this are uploaded in chunks with PATCH (default 64 MiB). */
  chunkedThreshold?: number;
  /** PATCH chunk size (default 32 MiB). */
  chunkSize?: number;
  userAgent?: string;
  /** Aborts every request in flight and every retry wait (the CLI's SIGINT/SIGTERM): they fail with REGISTRY_ABORTED. */
  signal?: AbortSignal;
  /**
   * Ping results shared by clients made from the same options (the build's push check and its pulls): a registry is
   * pinged once (its scheme and auth challenge), not once per client. One that failed is pinged again by the next.
   */
  pings?: RegistryPings;
}

/** What pinging /v2/ found per registry: see RegistryClientOptions.pings. */
export type RegistryPings = Map<string, Promise<{ base: string; challenge: Challenge | undefined }>>;

export interface TransferProgress {
  op: 'pull' | 'push';
  /** registry/repository */
  repository: string;
  digest: string;
  done: number;
  total: number;
}

/** A transfer's progress as an event of the client's stream. */
export function transferEvent(p: TransferProgress): BuildEvent {
  return { type: 'progress', phase: p.op, id: p.digest, bytes: p.done, total: p.total, done: p.done >= p.total };
}

export interface RegRequest {
  registry: string;
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path under the registry ("/v2/...") or an absolute URL (an upload Location). */
  path: string;
  headers?: Record<string, string>;
  /** A buffer, or a factory so the body can be re-sent after a 401. */
  body?: Buffer | (() => Promise<Readable> | Readable);
  /** Token scopes, e.g. "repository:app:pull". */
  scopes: string[];
  /** What is being done, for error messages, e.g. "GET manifest app:1". */
  what: string;
  /** Statuses that are success; anything else becomes a typed error. */
  ok: number[];
  /** Set false for requests whose caller retries them itself (upload bodies: a new session or a resume). */
  retry?: boolean;
  /** Whose retry budget applies (default: 'pull' for GET/HEAD, else 'push'). */
  budget?: 'push' | 'pull';
}

export interface RegResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable & { text(): Promise<string>; dump(): Promise<void> };
  url: URL;
}

interface Token {
  value: string;
  expiresAt: number;
}

export function header(res: { headers: Record<string, string | string[] | undefined> }, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** The whole body, at most `max` bytes; a body shorter than its Content-Length is an interruption, not a result. */
export async function readAll(res: RegResponse, max: number, what: string, registry: string, hint = 'this does not look like a manifest; check the reference'): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    if (n > max) {
      res.body.destroy();
      throw new RegistryError('REGISTRY_RESPONSE_TOO_LARGE', `${what}: response larger than ${max} bytes`, { hint });
    }
    chunks.push(c as Buffer);
  }
  const declared = Number(header(res, 'content-length') ?? NaN);
  if (Number.isFinite(declared) && n < declared) throw interruptedError(registry, what, undefined, n, declared);
  return Buffer.concat(chunks);
}

/** Redirects followed for one request (a blob GET goes to storage once, maybe via a CDN). */
const MAX_REDIRECTS = 5;
/** A token server's answer is capped like a manifest. */
const MAX_TOKEN_ANSWER = 8 * 1024 * 1024;

function isLoopback(registry: string): boolean {
  const h = registryHostname(registry).toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Certificate verification failures mean the server speaks TLS: falling back to HTTP would not help. */
function isCertError(err: unknown): boolean {
  const c = String((err as { code?: string })?.code ?? '') + ' ' + String((err as Error)?.message ?? '');
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS_CERT_ALTNAME/i.test(c);
}

export class Transport {
  private readonly bases = new Map<string, Promise<string>>();
  private readonly challenges = new Map<string, Challenge | undefined>();
  private readonly agents = new Map<string, Promise<Agent>>();
  private dispatcher: Promise<Dispatcher | undefined> | undefined;
  private readonly tokens = new Map<string, Promise<Token>>();
  private readonly creds = new Map<string, Promise<Credential | undefined>>();
  readonly retrier: Retrier;

  constructor(readonly opts: RegistryClientOptions) {
    // every request in flight listens on the signal (a push has a dozen at once): the pools bound them, not this warning's 10
    if (opts.signal) setMaxListeners(0, opts.signal);
    const policy = new RetryPolicy({
      ...(opts.retryBaseMs !== undefined ? { baseMs: opts.retryBaseMs } : {}),
      ...(opts.retryMaxMs !== undefined ? { maxMs: opts.retryMaxMs } : {}),
      ...(opts.retryAfterMaxMs !== undefined ? { retryAfterMaxMs: opts.retryAfterMaxMs } : {}),
    });
    this.retrier = new Retrier(policy, (n) => this.emit({ type: 'retry', ...n }), opts.signal);
  }

  /** Closes every agent that was made: one that failed to be made (an unreadable certificate) was that request's error. */
  async close(): Promise<void> {
    const made = await Promise.allSettled([...this.agents.values(), ...(this.dispatcher ? [this.dispatcher] : [])]);
    this.agents.clear();
    this.dispatcher = undefined;
    await Promise.allSettled(made.map((a) => (a.status === 'fulfilled' && a.value ? a.value.close() : undefined)));
  }

  emit(e: BuildEvent): void {
    this.opts.emit?.(e);
  }

  /** Retries a request of this kind gets (and a blob download gets resumes, an upload new sessions). */
  retries(budget: 'push' | 'pull'): number {
    const n = budget === 'push' ? this.opts.pushRetries : this.opts.downloadRetries;
    return Math.max(0, n ?? this.opts.retries ?? DEFAULT_RETRIES);
  }

  private insecureFor(host: string): boolean {
    return this.opts.insecure === true || (this.opts.insecureRegistries ?? []).includes(host) || (this.opts.insecurePull === true && this.pullOnly(host));
  }

  private pullOnly(host: string): boolean {
    return !(this.opts.pushRegistries ?? []).includes(host);
  }

  private httpAllowed(host: string): boolean {
    return this.insecureFor(host) || isLoopback(host);
  }

  /** One undici Agent per host so each gets its own TLS settings (CA, verification). */
  private agentFor(host: string): Promise<Agent> {
    let a = this.agents.get(host);
    if (!a) {
      a = this.makeAgent(host);
      this.agents.set(host, a);
    }
    return a;
  }

  private async makeAgent(host: string): Promise<Agent> {
    const skip = this.opts.skipTlsVerify === true || (this.opts.skipTlsVerifyRegistries ?? []).includes(host) || this.insecureFor(host)
      || (this.opts.skipTlsVerifyPull === true && this.pullOnly(host));
    const certs = this.opts.registryCertificates ?? {};
    const caFile = certs[host] ?? certs[registryHostname(host)];
    let ca: string[] | undefined;
    if (caFile) {
      try {
        ca = [...rootCertificates, await readFile(caFile, 'utf8')];
      } catch (err) {
        throw new RegistryError('REGISTRY_CERTIFICATE_UNREADABLE', `cannot read the CA certificate ${caFile} for registry ${host}`, {
          hint: 'check the path given to --registry-certificate HOST=PATH', cause: err,
        });
      }
    }
    const stall = this.opts.stallTimeoutMs;
    const mtls = await this.clientCertificate(host);
    const extra = !skip && !ca ? await this.extraTrust() : undefined;
    const trust = connectTrust(skip, ca, extra, mtls);
    const { Agent } = await loadUndici();
    return new Agent({
      connect: { rejectUnauthorized: !skip, ...trust, ...(stall ? { timeout: stall } : {}) },
      headersTimeout: stall ?? 120_000,
      bodyTimeout: stall ?? 300_000,
    });
  }

  /** The extra CA certificates (opts.extraCa), read once; undefined when there are none or they cannot be read (a warning). */
  private extraTrust(): Promise<ExtraTrust | undefined> {
    return this.opts.extraCa?.trust((msg) => this.emit({ type: 'warning', msg })) ?? Promise.resolve(undefined);
  }

  /** An undici dispatcher trusting the extra CA certificates for fetch() outside the registry (ADD URLs); undefined: node's default store. */
  fetchDispatcher(): Promise<Dispatcher | undefined> {
    this.dispatcher ??= this.extraTrust().then(async (extra) => (extra ? new (await loadUndici()).Agent({ connect: { secureContext: extra.context } }) : undefined));
    return this.dispatcher;
  }

  private async clientCertificate(host: string): Promise<{ cert?: string; key?: string }> {
    const all = this.opts.clientCertificates ?? {};
    const pair = all[host] ?? all[registryHostname(host)];
    if (!pair) return {};
    try {
      return { cert: await readFile(pair.cert, 'utf8'), key: await readFile(pair.key, 'utf8') };
    } catch (err) {
      throw new RegistryError('REGISTRY_CERTIFICATE_UNREADABLE', `cannot read the client certificate ${pair.cert} or key ${pair.key} for registry ${host}`, {
        hint: 'check the paths given to --registry-client-cert HOST=CERT,KEY', cause: err,
      });
    }
  }

  private credential(registry: string): Promise<Credential | undefined> {
    let c = this.creds.get(registry);
    if (!c) {
      c = this.opts.credentials ? this.opts.credentials(registry) : Promise.resolve(undefined);
      this.creds.set(registry, c);
    }
    return c;
  }

  /** "https://host" or "http://host", decided once per host by pinging /v2/ (docker's fallback rules). */
  base(registry: string, what: string): Promise<string> {
    let b = this.bases.get(registry);
    if (!b) {
      b = this.sharedPing(registry, what);
      this.bases.set(registry, b);
      b.catch(() => this.bases.delete(registry));
    }
    return b;
  }

  /** Another client's ping of the registry when there is one that did not fail (opts.pings), else our own, shared. */
  private async sharedPing(registry: string, what: string): Promise<string> {
    const shared = this.opts.pings;
    const theirs = await shared?.get(registry)?.catch(() => undefined);
    if (theirs) {
      this.challenges.set(registry, theirs.challenge);
      return theirs.base;
    }
    const mine = this.ping(registry, what).then((base) => ({ base, challenge: this.challenges.get(registry) }));
    if (shared) {
      shared.set(registry, mine);
      mine.catch(() => {
        if (shared.get(registry) === mine) shared.delete(registry);
      });
    }
    return (await mine).base;
  }

  /** One try per scheme: a failure is typed (REGISTRY_UNREACHABLE gets one quick retry) and the caller's retry loop pings again. */
  private async ping(registry: string, what: string): Promise<string> {
    const httpOk = this.httpAllowed(registry);
    let httpsError: unknown;
    const tryOne = async (scheme: string): Promise<string> => {
      const url = new URL(`${scheme}://${registry}/v2/`);
      const res = await this.sendOnce(url, { method: 'GET', headers: {} }, true);
      const body = await res.body.text().catch(() => '');
      if (res.status === 400 && /HTTP request to an HTTPS server/i.test(body)) {
        const why = httpsError ? `${(httpsError as { code?: string }).code ?? ''} ${(httpsError as Error).message ?? ''}` : '';
        throw new RegistryError('REGISTRY_TLS', `registry ${registry} speaks HTTPS but its certificate could not be used${why.trim() ? `: ${why.trim()}` : ''}`, {
          hint: `trust its CA with --registry-certificate ${registry}=/path/ca.crt or use --skip-tls-verify-registry ${registry}`,
        });
      }
      if (res.status >= 500 || res.status === 429 || res.status === 408) throw registryError(registry, `${what}: ping /v2/`, res.status, body, header(res, 'retry-after'));
      this.challenges.set(registry, res.status === 401 ? parseChallenge(header(res, 'www-authenticate')) : undefined);
      return `${scheme}://${registry}`;
    };
    try {
      return await tryOne('https');
    } catch (err) {
      if (err instanceof BuilderError) throw err;
      if (!isCertError(err)) await this.clientCertRefusal(registry, err);
      if (!httpOk || isCertError(err)) throw networkError(registry, what, err);
      httpsError = err;
      this.emit({ type: 'message', level: 'trace', msg: `https to ${registry} failed (${(err as Error).message}); trying plain http` });
      try {
        return await tryOne('http');
      } catch (err2) {
        if (err2 instanceof BuilderError) throw err2;
        throw networkError(registry, `${what} (tried https and http)`, err2);
      }
    }
  }

  /**
   * A server demanding a client certificate (mutual TLS) just closes the connection, which undici reports as "other
   * side closed": one raw TLS connection reads the alert so the error can say what is missing.
   */
  private async clientCertRefusal(registry: string, err: unknown): Promise<void> {
    if (!/UND_ERR_SOCKET|ECONNRESET|EPIPE|other side closed|socket hang up/i.test(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`)) return;
    const host = registryHostname(registry);
    const port = Number(/:(\d+)$/.exec(registry)?.[1] ?? 443);
    const mtls = await this.clientCertificate(registry);
    const alert = await new Promise<string | undefined>((resolve) => {
      const sock = tlsConnect({ host, port, rejectUnauthorized: false, ...(isIP(host) ? {} : { servername: host }), ...mtls }, () => {
        sock.write(`GET /v2/ HTTP/1.1\r\nHost: ${registry}\r\nConnection: close\r\n\r\n`);
      });
      sock.setTimeout(3000, () => sock.destroy());
      sock.on('error', (e: Error & { code?: string }) => resolve(`${e.code ?? ''} ${e.message}`));
      sock.on('data', () => sock.destroy());
      sock.on('close', () => resolve(undefined));
    });
    if (!alert || !/CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|alert number (116|42|46|48)/i.test(alert)) return;
    throw new RegistryError('REGISTRY_CLIENT_CERT_REQUIRED', mtls.cert
      ? `registry ${registry} refused the client certificate given with --registry-client-cert (${alert.trim()})`
      : `registry ${registry} requires a client certificate (mutual TLS): ${alert.trim()}`, {
      hint: mtls.cert
        ? `give a certificate signed by a CA the registry trusts: --registry-client-cert ${registry}=/path/client.crt,/path/client.key`
        : `pass --registry-client-cert ${registry}=/path/client.crt,/path/client.key`,
    });
  }

  /**
   * Sends one request, following redirects (dropping Authorization when the host changes). Returns the final
   * response, body unread; connection errors are thrown raw for the caller to type. Never retries.
   */
  private async sendOnce(url: URL, init: { method: string; headers: Record<string, string>; body?: RegRequest['body'] }, redirects: boolean): Promise<RegResponse> {
    let cur = url;
    let headers = init.headers;
    for (let hop = 0; ; hop++) {
      const dispatcher: Dispatcher = await this.agentFor(cur.host);
      const body = init.body === undefined ? undefined : Buffer.isBuffer(init.body) ? init.body : await init.body();
      const { request } = await loadUndici();
      const res = await request(cur, {
        dispatcher,
        method: init.method as Dispatcher.HttpMethod,
        headers: { 'user-agent': this.opts.userAgent ?? 'builder/0.1', ...headers },
        ...(body !== undefined ? { body } : {}),
        ...(this.opts.signal ? { signal: this.opts.signal } : {}),
      });
      // a body that breaks while nobody reads it must not be an unhandled 'error' event; readers still see the error
      res.body.on('error', () => undefined);
      this.emit({ type: 'http', method: init.method, url: `${cur.origin}${cur.pathname}`, status: res.statusCode });
      const location = header({ headers: res.headers }, 'location');
      if (redirects && [301, 302, 303, 307, 308].includes(res.statusCode) && location && init.body === undefined) {
        await res.body.dump().catch(() => undefined);
        const next = new URL(location, cur);
        if (hop >= MAX_REDIRECTS) {
          // origin and path only: a storage redirect's query may carry a signature
          throw new RegistryError('REGISTRY_TOO_MANY_REDIRECTS', `${init.method} ${url.origin}${url.pathname}: too many redirects (more than ${MAX_REDIRECTS}, the last to ${next.origin}${next.pathname})`, {
            hint: 'the registry (or a proxy in front of it) redirects in a loop; check its storage/redirect configuration',
          });
        }
        if (next.host !== cur.host) {
          const { authorization: _drop, ...rest } = headers;
          headers = rest;
        }
        cur = next;
        continue;
      }
      return { status: res.statusCode, headers: res.headers, body: res.body, url: cur };
    }
  }

  /** The Authorization header for these scopes on registry, fetching a bearer token if needed. */
  private async authorization(registry: string, scopes: string[], what: string, fresh: boolean): Promise<string | undefined> {
    const ch = this.challenges.get(registry);
    if (!ch) return undefined;
    const cred = await this.credential(registry);
    if (ch.scheme === 'basic') {
      if (!cred || cred.username === undefined) return undefined;
      return `Basic ${Buffer.from(`${cred.username}:${cred.password ?? ''}`).toString('base64')}`;
    }
    if (ch.scheme !== 'bearer') return undefined;
    const all = [...new Set([...scopes, ...(ch.params.scope ? ch.params.scope.split(' ') : [])])].sort();
    const key = `${registry} ${all.join(' ')}`;
    const cached = this.tokens.get(key);
    if (cached && !fresh) {
      const t = await cached.catch(() => undefined);
      if (t && t.expiresAt > Date.now()) return `Bearer ${t.value}`;
    }
    // the promise is cached so parallel blob copies share one token request
    const p = this.fetchToken(registry, ch, all, cred, what);
    this.tokens.set(key, p);
    p.catch(() => {
      if (this.tokens.get(key) === p) this.tokens.delete(key);
    });
    return `Bearer ${(await p).value}`;
  }

  /** One token request; failures are typed and the caller's retry loop asks again when they are transient. */
  private async fetchToken(registry: string, ch: Challenge, scopes: string[], cred: Credential | undefined, what: string): Promise<Token> {
    const realm = ch.params.realm;
    if (!realm) throw new RegistryError('REGISTRY_AUTH_INVALID', `registry ${registry} asked for a bearer token without a realm`, { hint: 'the registry auth configuration is broken' });
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RegistryError('REGISTRY_AUTH_INVALID', `registry ${registry} sent an invalid token realm "${realm}"`, { hint: 'the registry auth configuration is broken' });
    }
    const server = `${registry} (token server ${url.host})`;
    let res: RegResponse;
    let text: string;
    try {
      if (cred?.identityToken) {
        // OAuth2 refresh-token grant, as docker does for identity tokens
        const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: cred.identityToken, client_id: 'builder', ...(ch.params.service ? { service: ch.params.service } : {}), scope: scopes.join(' ') });
        res = await this.sendOnce(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Buffer.from(form.toString()) }, false);
      } else {
        if (ch.params.service) url.searchParams.set('service', ch.params.service);
        for (const s of scopes) url.searchParams.append('scope', s);
        const headers: Record<string, string> = {};
        if (cred?.username !== undefined) {
          url.searchParams.set('account', cred.username);
          headers.authorization = `Basic ${Buffer.from(`${cred.username}:${cred.password ?? ''}`).toString('base64')}`;
        }
        res = await this.sendOnce(url, { method: 'GET', headers }, true);
      }
    } catch (err) {
      throw networkError(server, what, err);
    }
    try {
      // a token is a few KiB: a server answering without end must not fill memory
      text = (await readAll(res, MAX_TOKEN_ANSWER, `${what}: token response of ${server}`, server, 'the token server is broken or hostile; check the registry\'s auth configuration')).toString('utf8');
    } catch (err) {
      throw err instanceof BuilderError ? err : interruptedError(server, `${what}: token response`, err);
    }
    if (res.status === 401 || res.status === 403) throw unauthorized(registry, what, cred ? 'the token server rejected the credentials' : 'no credentials were found for it');
    if (res.status !== 200) throw registryError(server, `${what}: token request`, res.status, text, header(res, 'retry-after'));
    let j: { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
    try {
      j = JSON.parse(text) as typeof j;
    } catch {
      throw new RegistryError('REGISTRY_AUTH_INVALID', `the token server of registry ${registry} returned invalid JSON`, { hint: 'the registry auth configuration is broken' });
    }
    const value = j.token ?? j.access_token;
    if (!value) throw new RegistryError('REGISTRY_AUTH_INVALID', `the token server of registry ${registry} returned no token`, { hint: 'the registry auth configuration is broken' });
    const ttl = (typeof j.expires_in === 'number' && j.expires_in > 0 ? j.expires_in : 60) * 1000;
    const issued = j.issued_at ? Date.parse(j.issued_at) : NaN;
    const start = Number.isFinite(issued) && issued <= Date.now() ? issued : Date.now();
    // renew a little early so a token does not expire between our check and the registry's
    return { value, expiresAt: start + ttl - Math.min(10_000, ttl / 10) };
  }

  /** One registry API call: auth (re-challenging once on 401), typed errors for statuses not in `ok`; no retries. */
  private async attempt(req: RegRequest): Promise<RegResponse> {
    const base = await this.base(req.registry, req.what);
    const url = /^https?:\/\//.test(req.path) ? new URL(req.path) : new URL(req.path, base);
    let fresh = false;
    for (let authTry = 0; ; authTry++) {
      const auth = await this.authorization(req.registry, req.scopes, req.what, fresh);
      const headers = { ...(req.headers ?? {}), ...(auth ? { authorization: auth } : {}) };
      let res: RegResponse;
      try {
        res = await this.sendOnce(url, { method: req.method, headers, body: req.body }, req.method === 'GET' || req.method === 'HEAD');
      } catch (err) {
        if (this.opts.signal?.aborted) throw cancelled(req.what);
        throw networkError(req.registry, req.what, err);
      }
      if (res.status === 401 && authTry === 0) {
        // expired/insufficient token, or a registry that only challenges on this path: re-challenge once
        await res.body.dump().catch(() => undefined);
        const ch = parseChallenge(header(res, 'www-authenticate'));
        if (ch) this.challenges.set(req.registry, ch);
        fresh = true;
        continue;
      }
      if (req.ok.includes(res.status)) return res;
      if (res.status === 401 && auth && /error="?insufficient_scope/i.test(header(res, 'www-authenticate') ?? '')) {
        await res.body.dump().catch(() => undefined);
        const cred = await this.credential(req.registry);
        // anonymous tokens grant nothing: that is missing credentials, not missing permission
        if (cred && (cred.username !== undefined || cred.identityToken)) throw insufficientScope(req.registry, req.what, req.scopes);
        throw unauthorized(req.registry, req.what, 'no credentials were found for it');
      }
      const text = req.method === 'HEAD' ? '' : await res.body.text().catch(() => '');
      if (req.method === 'HEAD') await res.body.dump().catch(() => undefined);
      throw registryError(req.registry, req.what, res.status, text, header(res, 'retry-after'));
    }
  }

  /** A registry API call with the retry policy; the body is left unread. */
  request(req: RegRequest): Promise<RegResponse> {
    return this.exchange(req, async (res) => res);
  }

  /** A registry API call whose body does not matter (uploads, HEADs, PUTs): drained under the retry policy too. */
  call(req: RegRequest): Promise<Omit<RegResponse, 'body'>> {
    return this.exchange(req, async ({ body, ...rest }) => {
      await body.dump();
      return rest;
    });
  }

  /**
   * A registry API call whose response `consume` reads (e.g. a manifest): a failure anywhere, from connecting to
   * the last body byte, is retried as one unit while its code's retry kind and the request's budget allow.
   */
  async exchange<T>(req: RegRequest, consume: (res: RegResponse) => Promise<T>): Promise<T> {
    const budget = req.retry === false ? 0 : this.retries(req.budget ?? (req.method === 'GET' || req.method === 'HEAD' ? 'pull' : 'push'));
    const typed = (err: unknown): unknown => {
      if (this.opts.signal?.aborted) throw cancelled(req.what);
      return err instanceof BuilderError ? err : networkError(req.registry, req.what, err);
    };
    return this.retrier.run({ budget, what: req.what, typed }, async () => {
      const res = await this.attempt(req);
      try {
        return await consume(res);
      } catch (err) {
        if (!res.body.destroyed) res.body.destroy();
        throw err instanceof BuilderError ? err : interruptedError(req.registry, req.what, err);
      }
    });
  }
}
