// HTTP transport for one RegistryClient: scheme fallback, per-host TLS agents, auth challenges, token cache, retries.
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { BuilderError } from '../errors.js';
import { registryHostname } from '../reference/index.js';
import type { Platform } from '../image/index.js';
import { parseChallenge, type Challenge } from './challenge.js';
import type { Credential, CredentialProvider } from './credentials.js';
import { networkError, registryError, unauthorized } from './errors.js';

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
  /** Where credentials come from; anonymous when omitted. */
  credentials?: CredentialProvider;
  /** Platform resolveImage picks from an index by default (the CLI passes the host's or --custom-platform). */
  platform?: Platform;
  /** Debug lines (method, URL, status); never receives secrets. */
  logger?: (line: string) => void;
  /** Retries for connection errors, 408, 429 and 5xx (default 4). */
  retries?: number;
  /** First backoff delay in ms, doubled per retry (default 300). */
  retryBaseMs?: number;
  /** Blobs larger than this are uploaded in chunks with PATCH (default 64 MiB). */
  chunkedThreshold?: number;
  /** PATCH chunk size (default 32 MiB). */
  chunkSize?: number;
  userAgent?: string;
  /** Aborts every request in flight and every retry wait (the CLI's SIGINT/SIGTERM): they fail with REGISTRY_ABORTED. */
  signal?: AbortSignal;
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
  /** Set false for non-idempotent requests (uploads): no retry on 5xx or connection errors. */
  retry?: boolean;
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

const RETRY_STATUS = (s: number): boolean => s === 408 || s === 429 || (s >= 500 && s !== 501 && s !== 505);

export function header(res: { headers: Record<string, string | string[] | undefined> }, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

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
  private readonly tokens = new Map<string, Promise<Token>>();
  private readonly creds = new Map<string, Promise<Credential | undefined>>();

  constructor(readonly opts: RegistryClientOptions) {}

  async close(): Promise<void> {
    const agents = await Promise.all(this.agents.values());
    this.agents.clear();
    await Promise.all(agents.map((a) => a.close()));
  }

  private log(line: string): void {
    this.opts.logger?.(line);
  }

  private insecureFor(host: string): boolean {
    return this.opts.insecure === true || (this.opts.insecureRegistries ?? []).includes(host);
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
    const skip = this.opts.skipTlsVerify === true || (this.opts.skipTlsVerifyRegistries ?? []).includes(host) || this.insecureFor(host);
    const certs = this.opts.registryCertificates ?? {};
    const caFile = certs[host] ?? certs[registryHostname(host)];
    let ca: string[] | undefined;
    if (caFile) {
      try {
        ca = [...rootCertificates, await readFile(caFile, 'utf8')];
      } catch (err) {
        throw new BuilderError('REGISTRY_CERTIFICATE_UNREADABLE', `cannot read the CA certificate ${caFile} for registry ${host}`, {
          hint: 'check the path given to --registry-certificate HOST=PATH', cause: err,
        });
      }
    }
    return new Agent({ connect: { rejectUnauthorized: !skip, ...(ca ? { ca } : {}) }, headersTimeout: 120_000, bodyTimeout: 300_000 });
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
      b = this.ping(registry, what);
      this.bases.set(registry, b);
      b.catch(() => this.bases.delete(registry));
    }
    return b;
  }

  private async ping(registry: string, what: string): Promise<string> {
    const httpOk = this.httpAllowed(registry);
    const tryOne = async (scheme: string, retries: number): Promise<string> => {
      const url = new URL(`${scheme}://${registry}/v2/`);
      const res = await this.send(url, { method: 'GET', headers: {} }, retries, true);
      const body = await res.body.text().catch(() => '');
      if (res.status === 400 && /HTTP request to an HTTPS server/i.test(body)) {
        throw new BuilderError('REGISTRY_TLS', `registry ${registry} speaks HTTPS but its certificate could not be used`, {
          hint: `trust its CA with --registry-certificate ${registry}=/path/ca.crt or use --skip-tls-verify-registry ${registry}`,
        });
      }
      this.challenges.set(registry, res.status === 401 ? parseChallenge(header(res, 'www-authenticate')) : undefined);
      return `${scheme}://${registry}`;
    };
    try {
      return await tryOne('https', httpOk ? 0 : this.retries());
    } catch (err) {
      if (err instanceof BuilderError) throw err;
      if (!httpOk || isCertError(err)) throw networkError(registry, what, err);
      this.log(`https to ${registry} failed (${(err as Error).message}); trying plain http`);
      try {
        return await tryOne('http', this.retries());
      } catch (err2) {
        if (err2 instanceof BuilderError) throw err2;
        throw networkError(registry, `${what} (tried https and http)`, err2);
      }
    }
  }

  private retries(): number {
    return this.opts.retries ?? 4;
  }

  private backoff(attempt: number, retryAfter?: string): number {
    if (retryAfter) {
      const secs = Number(retryAfter);
      const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(retryAfter) - Date.now();
      if (Number.isFinite(ms) && ms >= 0) return Math.min(ms, 60_000);
    }
    const base = this.opts.retryBaseMs ?? 300;
    return Math.min(base * 2 ** attempt, 10_000) * (0.75 + Math.random() * 0.5);
  }

  /**
   * Sends one request with retries on connection errors and retryable statuses, following redirects
   * (dropping Authorization when the host changes). Returns the final response, body unread.
   */
  private async send(
    url: URL,
    init: { method: string; headers: Record<string, string>; body?: RegRequest['body'] },
    retries: number,
    redirects: boolean,
  ): Promise<RegResponse> {
    for (let attempt = 0; ; attempt++) {
      let cur = url;
      let headers = init.headers;
      try {
        for (let hop = 0; ; hop++) {
          const dispatcher: Dispatcher = await this.agentFor(cur.host);
          const body = init.body === undefined ? undefined : Buffer.isBuffer(init.body) ? init.body : await init.body();
          const res = await request(cur, {
            dispatcher,
            method: init.method as Dispatcher.HttpMethod,
            headers: { 'user-agent': this.opts.userAgent ?? 'builder/0.1', ...headers },
            ...(body !== undefined ? { body } : {}),
            ...(this.opts.signal ? { signal: this.opts.signal } : {}),
          });
          this.log(`${init.method} ${cur.origin}${cur.pathname} -> ${res.statusCode}`);
          const location = header({ headers: res.headers }, 'location');
          if (redirects && [301, 302, 303, 307, 308].includes(res.statusCode) && location && hop < 5 && init.body === undefined) {
            await res.body.dump();
            const next = new URL(location, cur);
            if (next.host !== cur.host) {
              const { authorization: _drop, ...rest } = headers;
              headers = rest;
            }
            cur = next;
            continue;
          }
          if (RETRY_STATUS(res.statusCode) && attempt < retries) {
            const wait = this.backoff(attempt, header({ headers: res.headers }, 'retry-after'));
            await res.body.dump();
            this.log(`retrying ${init.method} ${cur.pathname} after ${res.statusCode} in ${Math.round(wait)}ms`);
            await sleep(wait, undefined, this.opts.signal ? { signal: this.opts.signal } : {}).catch(() => this.throwIfAborted(init.method, cur));
            break;
          }
          return { status: res.statusCode, headers: res.headers, body: res.body, url: cur };
        }
      } catch (err) {
        this.throwIfAborted(init.method, cur);
        if (err instanceof BuilderError || attempt >= retries || isCertError(err)) throw err;
        const wait = this.backoff(attempt);
        this.log(`retrying ${init.method} ${cur.pathname} after ${(err as Error).message} in ${Math.round(wait)}ms`);
        await sleep(wait, undefined, this.opts.signal ? { signal: this.opts.signal } : {}).catch(() => this.throwIfAborted(init.method, cur));
      }
    }
  }

  private throwIfAborted(method: string, url: URL): void {
    if (!this.opts.signal?.aborted) return;
    throw new BuilderError('REGISTRY_ABORTED', `${method} ${url.host}${url.pathname} was cancelled`, {
      hint: 'the operation was interrupted; rerun it', exitCode: 130,
    });
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

  private async fetchToken(registry: string, ch: Challenge, scopes: string[], cred: Credential | undefined, what: string): Promise<Token> {
    const realm = ch.params.realm;
    if (!realm) throw new BuilderError('REGISTRY_AUTH_INVALID', `registry ${registry} asked for a bearer token without a realm`, { hint: 'the registry auth configuration is broken' });
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new BuilderError('REGISTRY_AUTH_INVALID', `registry ${registry} sent an invalid token realm "${realm}"`, { hint: 'the registry auth configuration is broken' });
    }
    let res: RegResponse;
    try {
      if (cred?.identityToken) {
        // OAuth2 refresh-token grant, as docker does for identity tokens
        const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: cred.identityToken, client_id: 'builder', ...(ch.params.service ? { service: ch.params.service } : {}), scope: scopes.join(' ') });
        res = await this.send(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Buffer.from(form.toString()) }, this.retries(), false);
      } else {
        if (ch.params.service) url.searchParams.set('service', ch.params.service);
        for (const s of scopes) url.searchParams.append('scope', s);
        const headers: Record<string, string> = {};
        if (cred?.username !== undefined) {
          url.searchParams.set('account', cred.username);
          headers.authorization = `Basic ${Buffer.from(`${cred.username}:${cred.password ?? ''}`).toString('base64')}`;
        }
        res = await this.send(url, { method: 'GET', headers }, this.retries(), true);
      }
    } catch (err) {
      if (err instanceof BuilderError) throw err;
      throw networkError(`${registry} (token server ${url.host})`, what, err);
    }
    const text = await res.body.text();
    if (res.status === 401 || res.status === 403) throw unauthorized(registry, what, cred ? 'the token server rejected the credentials' : 'no credentials were found for it');
    if (res.status !== 200) throw registryError(`${registry} (token server ${url.host})`, `${what}: token request`, res.status, text);
    let j: { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
    try {
      j = JSON.parse(text) as typeof j;
    } catch {
      throw new BuilderError('REGISTRY_AUTH_INVALID', `the token server of registry ${registry} returned invalid JSON`, { hint: 'the registry auth configuration is broken' });
    }
    const value = j.token ?? j.access_token;
    if (!value) throw new BuilderError('REGISTRY_AUTH_INVALID', `the token server of registry ${registry} returned no token`, { hint: 'the registry auth configuration is broken' });
    const ttl = (typeof j.expires_in === 'number' && j.expires_in > 0 ? j.expires_in : 60) * 1000;
    const issued = j.issued_at ? Date.parse(j.issued_at) : NaN;
    const start = Number.isFinite(issued) && issued <= Date.now() ? issued : Date.now();
    // renew a little early so a token does not expire between our check and the registry's
    return { value, expiresAt: start + ttl - Math.min(10_000, ttl / 10) };
  }

  /** One registry API call: auth (re-challenging once on 401), retries, typed errors for statuses not in `ok`. */
  async request(req: RegRequest): Promise<RegResponse> {
    const base = await this.base(req.registry, req.what);
    const url = /^https?:\/\//.test(req.path) ? new URL(req.path) : new URL(req.path, base);
    const retries = req.retry === false ? 0 : this.retries();
    let fresh = false;
    for (let authTry = 0; ; authTry++) {
      const auth = await this.authorization(req.registry, req.scopes, req.what, fresh);
      const headers = { ...(req.headers ?? {}), ...(auth ? { authorization: auth } : {}) };
      let res: RegResponse;
      try {
        res = await this.send(url, { method: req.method, headers, body: req.body }, retries, req.method === 'GET' || req.method === 'HEAD');
      } catch (err) {
        if (err instanceof BuilderError) throw err;
        throw networkError(req.registry, req.what, err);
      }
      if (res.status === 401 && authTry === 0) {
        // expired/insufficient token, or a registry that only challenges on this path: re-challenge once
        await res.body.dump();
        const ch = parseChallenge(header(res, 'www-authenticate'));
        if (ch) this.challenges.set(req.registry, ch);
        fresh = true;
        continue;
      }
      if (req.ok.includes(res.status)) return res;
      const text = req.method === 'HEAD' ? '' : await res.body.text().catch(() => '');
      if (req.method === 'HEAD') await res.body.dump().catch(() => undefined);
      throw registryError(req.registry, req.what, res.status, text);
    }
  }
}
