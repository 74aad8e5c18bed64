// Test harness: start/stop a real Distribution 2.8 registry (plain, htpasswd, bearer token, TLS) on 127.0.0.1.
import { spawn, type ChildProcess } from 'node:child_process';
import { createSign, randomBytes, X509Certificate } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from './tools.js';

export type RegistryMode = 'plain' | 'htpasswd' | 'token' | 'tls';

export interface AccessLogEntry {
  method: string;
  /** Request path including the query string, e.g. "/v2/a/blobs/uploads/?mount=sha256:..&from=b". */
  path: string;
  status: number;
}

/** Decides which actions a user gets on a repository (token mode); default: pull+push, plus delete/"*" when asked. */
export type GrantFn = (user: string | undefined, repository: string, requested: string[]) => string[];

export interface StartRegistryOptions {
  mode?: RegistryMode;
  /** Serve HTTPS; combines with 'htpasswd' or 'token' ('tls' mode implies it). */
  tls?: boolean;
  /** Users for htpasswd/token modes; default { tester: 's3cret-pw' }. The first one is reg.username/password. */
  users?: Record<string, string>;
  /** Lifetime of issued tokens (token mode), default 300. */
  tokenTtlSeconds?: number;
  /** Token mode: override what is granted (e.g. deny pull on a repository to test mount fallback). */
  grant?: GrantFn;
  /** TLS: require a client certificate signed by a CA the harness makes (mutual TLS); its files are reg.clientCert/clientKey. */
  clientCerts?: boolean;
  /** Readiness timeout, default 20 s. */
  startTimeoutMs?: number;
  /** Listen on this port (default: a free one); the conformance run keeps it fixed so cached images stay comparable. */
  port?: number;
}

export interface TokenServer {
  /** Realm URL the registry advertises in its WWW-Authenticate challenge. */
  url: string;
  service: string;
  /** Number of tokens issued so far (anonymous ones included). */
  issued(): number;
  /** Lifetime (expires_in and exp) for tokens issued from now on. */
  setTtl(seconds: number): void;
  /**
   * Shifts only the `exp` claim of tokens issued from now on, so expires_in stays honest while the registry
   * rejects the token. Distribution 2.8 accepts tokens up to 60 s past exp: use e.g. -61 - ttl to get 401s.
   */
  setExpShift(seconds: number): void;
  /** Every token request seen, newest last: who asked, for what scopes, and the HTTP status answered. */
  requests(): Array<{ user?: string; scopes: string[]; status: number }>;
}

export interface TestRegistry {
  mode: RegistryMode;
  tls: boolean;
  /** "127.0.0.1:PORT" */
  host: string;
  /** "http(s)://127.0.0.1:PORT" */
  url: string;
  username: string;
  password: string;
  /** PEM of the self-signed server certificate (TLS only). */
  caFile?: string;
  /** Directory holding only ca.crt, for skopeo --cert-dir (TLS only). */
  certDir?: string;
  /** mTLS (clientCerts): a client certificate and key the registry accepts. */
  clientCert?: string;
  clientKey?: string;
  /** Directory holding config.yml, log, certs. */
  runDir: string;
  storageDir: string;
  configFile: string;
  logFile: string;
  /** Requests the registry served so far, parsed from its access log. */
  accessLog(): Promise<AccessLogEntry[]>;
  token?: TokenServer;
  stop(): Promise<void>;
}

const DEFAULT_USERS: Record<string, string> = { tester: 's3cret-pw' };
const TOKEN_SERVICE = 'builder-test-registry';
const TOKEN_ISSUER = 'builder-test-token-issuer';

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  const mode = opts.mode ?? 'plain';
  const tls = mode === 'tls' || opts.tls === true;
  const users = opts.users ?? DEFAULT_USERS;
  const [username, password] = Object.entries(users)[0] ?? ['', ''];
  const runDir = await mkdtemp(path.join(os.tmpdir(), 'builder-test-registry-'));
  const storageDir = path.join(runDir, 'data');
  const configFile = path.join(runDir, 'config.yml');
  const logFile = path.join(runDir, 'registry.log');
  await mkdir(storageDir);

  const cleanups: Array<() => Promise<void>> = [() => rm(runDir, { recursive: true, force: true })];
  const cleanup = async (): Promise<void> => {
    // splice: a second stop() is a no-op.
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  };

  try {
    let authYaml = '';
    let token: TokenServer | undefined;
    if (mode === 'htpasswd') {
      const file = path.join(runDir, 'htpasswd');
      let content = '';
      for (const [u, p] of Object.entries(users)) {
        content += (await run('htpasswd', ['-Bbn', u, p])).stdout.trim() + '\n';
      }
      await writeFile(file, content);
      authYaml = `auth:\n  htpasswd:\n    realm: builder-test-registry\n    path: ${file}\n`;
    } else if (mode === 'token') {
      const ts = await startTokenServer(runDir, users, opts.tokenTtlSeconds ?? 300, opts.grant);
      cleanups.push(ts.close);
      token = ts.server;
      authYaml =
        `auth:\n  token:\n    realm: ${ts.server.url}\n    service: ${TOKEN_SERVICE}\n` +
        `    issuer: ${TOKEN_ISSUER}\n    rootcertbundle: ${ts.certFile}\n`;
    }

    let caFile: string | undefined;
    let clientCert: string | undefined;
    let clientKey: string | undefined;
    let certDir: string | undefined;
    let tlsYaml = '';
    if (tls) {
      const dir = path.join(runDir, 'tls');
      certDir = path.join(runDir, 'certs.d');
      await mkdir(dir);
      await mkdir(certDir);
      caFile = path.join(dir, 'server.crt');
      const key = path.join(dir, 'server.key');
      await selfSignedCert(key, caFile, '127.0.0.1', [
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        'basicConstraints=critical,CA:TRUE',
        'keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign',
        'extendedKeyUsage=serverAuth',
      ]);
      // containers/image treats every *.key in a cert dir as a client key: only the CA goes there.
      await writeFile(path.join(certDir, 'ca.crt'), await readFile(caFile));
      tlsYaml = `  tls:\n    certificate: ${caFile}\n    key: ${key}\n`;
      if (opts.clientCerts) {
        const clientCa = path.join(dir, 'client-ca.crt');
        const clientCaKey = path.join(dir, 'client-ca.key');
        await selfSignedCert(clientCaKey, clientCa, 'builder-test-client-ca', ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign']);
        clientKey = path.join(dir, 'client.key');
        clientCert = path.join(dir, 'client.crt');
        const csr = path.join(dir, 'client.csr');
        await run('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', clientKey, '-out', csr, '-subj', '/CN=builder-test-client']);
        const ext = path.join(dir, 'client.ext');
        await writeFile(ext, 'extendedKeyUsage=clientAuth\n');
        await run('openssl', ['x509', '-req', '-in', csr, '-CA', clientCa, '-CAkey', clientCaKey, '-CAcreateserial', '-out', clientCert, '-days', '365', '-sha256', '-extfile', ext]);
        tlsYaml += `    clientcas:\n      - ${clientCa}\n`;
      }
    }
    const ca = caFile ? await readFile(caFile) : undefined;

    // A free port can be taken between probing and binding: retry with a fresh one.
    for (let attempt = 1; ; attempt++) {
      const port = opts.port ?? await freePort();
      const host = `127.0.0.1:${port}`;
      const url = `${tls ? 'https' : 'http'}://${host}`;
      await writeFile(configFile, registryConfig({ host, storageDir, tlsYaml, authYaml }));
      await writeFile(logFile, '');
      const child = spawnRegistry(configFile, logFile);
      const killOnExit = (): void => void child.kill('SIGKILL');
      process.once('exit', killOnExit);
      const stopChild = async (): Promise<void> => {
        process.removeListener('exit', killOnExit);
        await killAndWait(child);
      };
      const client = clientCert && clientKey ? { cert: await readFile(clientCert), key: await readFile(clientKey) } : undefined;
      const ready = await waitReady(child, url, ca, opts.startTimeoutMs ?? 20_000, client);
      if (ready !== 'ok') {
        await stopChild();
        const log = await readFile(logFile, 'utf8').catch(() => '');
        if (ready === 'exited' && /address already in use/i.test(log) && attempt < 5) continue;
        throw new Error(`registry (${mode}${tls ? '+tls' : ''}) at ${url} did not become ready (${ready}); log:\n${log}`);
      }
      cleanups.push(stopChild);
      return {
        mode, tls, host, url, username, password, caFile, certDir, clientCert, clientKey,
        runDir, storageDir, configFile, logFile, token,
        accessLog: async () => parseAccessLog(await readFile(logFile, 'utf8')),
        stop: cleanup,
      };
    }
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Parses the combined-log-format lines the registry writes for each request. */
export function parseAccessLog(text: string): AccessLogEntry[] {
  const out: AccessLogEntry[] = [];
  const re = /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) /;
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (m) out.push({ method: m[1]!, path: m[2]!, status: Number(m[3]) });
  }
  return out;
}

function registryConfig(c: { host: string; storageDir: string; tlsYaml: string; authYaml: string }): string {
  return `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${c.storageDir}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: ${c.host}
  secret: builder-test-secret-${randomBytes(8).toString('hex')}
  headers:
    X-Content-Type-Options: [nosniff]
${c.tlsYaml}${c.authYaml}`;
}

function spawnRegistry(configFile: string, logFile: string): ChildProcess {
  const fd = openSync(logFile, 'a');
  try {
    return spawn('docker-registry', ['serve', configFile], { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
}

async function waitReady(child: ChildProcess, url: string, ca: Buffer | undefined, timeoutMs: number, client?: { cert: Buffer; key: Buffer }): Promise<'ok' | 'exited' | string> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return 'exited';
    try {
      const status = await probe(`${url}/v2/`, ca, client);
      if (status === 200 || status === 401) return 'ok';
      last = `HTTP ${status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(50);
  }
  return `timeout after ${timeoutMs} ms, last: ${last}`;
}

function probe(url: string, ca: Buffer | undefined, client?: { cert: Buffer; key: Buffer }): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? https : http).get(url, { ca, timeout: 2000, ...(client ?? {}) }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('probe timeout')));
    req.on('error', reject);
  });
}

async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Asks the kernel for a free ephemeral port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function selfSignedCert(keyFile: string, certFile: string, cn: string, exts: string[]): Promise<void> {
  await run('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '365',
    '-keyout', keyFile, '-out', certFile, '-subj', `/CN=${cn}`,
    ...exts.flatMap((e) => ['-addext', e]),
  ]);
}

// ---- token server -------------------------------------------------------------------------------

const ALWAYS: readonly string[] = ['pull', 'push'];
const ON_REQUEST: readonly string[] = ['delete', '*'];

function defaultGrant(_user: string | undefined, _repo: string, requested: string[]): string[] {
  return [...ALWAYS, ...requested.filter((a) => ON_REQUEST.includes(a))];
}

interface Access { type: string; name: string; actions: string[] }

/** Splits "repository:name:pull,push" (the name itself may hold no ':' but be defensive). */
function parseScope(scope: string): Access | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last === first) return undefined;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope.slice(last + 1).split(',').filter(Boolean),
  };
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

async function startTokenServer(
  runDir: string,
  users: Record<string, string>,
  initialTtl: number,
  grant: GrantFn = defaultGrant,
): Promise<{ server: TokenServer; certFile: string; close: () => Promise<void> }> {
  const dir = path.join(runDir, 'token');
  await mkdir(dir);
  const keyFile = path.join(dir, 'token.key');
  const certFile = path.join(dir, 'token.crt');
  await selfSignedCert(keyFile, certFile, 'builder-test-token-signer', []);
  const key = await readFile(keyFile, 'utf8');
  const der = new X509Certificate(await readFile(certFile)).raw.toString('base64');

  const state = { ttl: initialTtl, expShift: 0, issued: 0, requests: [] as Array<{ user?: string; scopes: string[]; status: number }> };

  const sign = (sub: string | undefined, access: Access[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c: [der] };
    const claims = {
      iss: TOKEN_ISSUER, sub: sub ?? '', aud: TOKEN_SERVICE,
      exp: now + state.ttl + state.expShift, nbf: now - 1, iat: now, jti: randomBytes(12).toString('hex'), access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(input).sign(key);
    return `${input}.${b64url(sig)}`;
  };

  const handle = (req: http.IncomingMessage, body: string, res: http.ServerResponse): void => {
    const u = new URL(req.url ?? '/', 'http://x');
    // GET realm?service=&scope= (Docker token protocol) or POST form (OAuth2 password grant).
    const params = req.method === 'POST' ? new URLSearchParams(body) : u.searchParams;
    const scopes = params.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean);
    let user: string | undefined;
    let pass: string | undefined;
    const authz = req.headers.authorization;
    if (authz?.startsWith('Basic ')) {
      const dec = Buffer.from(authz.slice(6), 'base64').toString('utf8');
      const i = dec.indexOf(':');
      user = i < 0 ? dec : dec.slice(0, i);
      pass = i < 0 ? '' : dec.slice(i + 1);
    } else if (req.method === 'POST' && params.get('grant_type') === 'password') {
      user = params.get('username') ?? undefined;
      pass = params.get('password') ?? '';
    }
    const reply = (status: number, obj: unknown): void => {
      state.requests.push({ user, scopes, status });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(obj));
    };
    if (u.pathname !== '/token') return reply(404, { errors: [{ code: 'NOT_FOUND', message: 'use /token' }] });
    if (user !== undefined && users[user] !== pass) {
      return reply(401, { errors: [{ code: 'UNAUTHORIZED', message: 'bad username or password' }] });
    }
    // Anonymous callers get a valid token that grants nothing, like Docker Hub for private repos.
    const access: Access[] = [];
    if (user !== undefined) {
      for (const s of scopes) {
        const a = parseScope(s);
        if (!a) continue;
        const actions = a.type === 'repository' ? grant(user, a.name, a.actions) : a.actions;
        if (actions.length > 0) access.push({ type: a.type, name: a.name, actions: [...new Set(actions)] });
      }
    }
    const token = sign(user, access);
    state.issued++;
    reply(200, { token, access_token: token, expires_in: state.ttl, issued_at: new Date().toISOString() });
  };

  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, Buffer.concat(chunks).toString('utf8'), res));
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = srv.address() as AddressInfo;
  return {
    certFile,
    server: {
      url: `http://127.0.0.1:${port}/token`,
      service: TOKEN_SERVICE,
      issued: () => state.issued,
      setTtl: (s: number) => void (state.ttl = s),
      setExpShift: (s: number) => void (state.expShift = s),
      requests: () => [...state.requests],
    },
    close: () => new Promise<void>((resolve) => {
      srv.closeAllConnections();
      srv.close(() => resolve());
    }),
  };
}
