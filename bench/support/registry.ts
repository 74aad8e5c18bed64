// Bench: a plain-HTTP Distribution 2.8 registry on 127.0.0.1 and a byte-counting TCP proxy in front of it.
// Lean copy of test/support/registry.ts (plain mode only; tsc does not compile test/), plus the proxy.
// The registry runs without the in-memory blob descriptor cache so every run sees the storage as it is.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface BenchRegistry {
  /** "127.0.0.1:PORT" of the registry itself. */
  host: string;
  storageDir: string;
  logFile: string;
  stop(): Promise<void>;
}

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

export async function startRegistry(runDir: string): Promise<BenchRegistry> {
  const storageDir = path.join(runDir, 'data');
  const configFile = path.join(runDir, 'config.yml');
  const logFile = path.join(runDir, 'registry.log');
  await mkdir(storageDir, { recursive: true });
  for (let attempt = 1; ; attempt++) {
    const host = `127.0.0.1:${await freePort()}`;
    await writeFile(configFile, `version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${storageDir}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: ${host}
  secret: builder-bench-secret
`);
    const fd = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn('docker-registry', ['serve', configFile], { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    const kill = (): void => void child.kill('SIGKILL');
    process.once('exit', kill);
    const stop = async (): Promise<void> => {
      process.removeListener('exit', kill);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    };
    const deadline = Date.now() + 20_000;
    let ok = false;
    while (Date.now() < deadline && child.exitCode === null) {
      const status = await new Promise<number>((resolve) => {
        const req = http.get(`http://${host}/v2/`, { timeout: 2000 }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
        req.on('error', () => resolve(0));
        req.on('timeout', () => req.destroy());
      });
      if (status === 200) { ok = true; break; }
      await sleep(50);
    }
    if (ok) return { host, storageDir, logFile, stop };
    await stop();
    const log = await readFile(logFile, 'utf8').catch(() => '');
    if (/address already in use/i.test(log) && attempt < 5) continue;
    throw new Error(`docker-registry did not become ready on ${host}; log:\n${log}`);
  }
}

export interface CountingProxy {
  /** "127.0.0.1:PORT" the tools talk to. */
  host: string;
  /** Bytes client->registry and registry->client since the last reset(). */
  counts(): { sent: number; received: number };
  reset(): void;
  stop(): Promise<void>;
}

/** A TCP proxy on 127.0.0.1 that counts the bytes each way; the same meter for every tool. */
export async function startProxy(target: string): Promise<CountingProxy> {
  const [thost, tport] = target.split(':') as [string, string];
  const c = { sent: 0, received: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(tport), thost);
    sockets.add(client).add(upstream);
    client.on('data', (b: Buffer) => { c.sent += b.length; });
    upstream.on('data', (b: Buffer) => { c.received += b.length; });
    client.pipe(upstream);
    upstream.pipe(client);
    // pipe() forwards each end (FIN) after the buffered bytes: never destroy the other side on 'close', or
    // bytes still queued for it are lost (a client then sees a truncated blob). Only errors tear both down.
    const fail = (): void => { client.destroy(); upstream.destroy(); };
    client.on('error', fail).on('close', () => sockets.delete(client));
    upstream.on('error', fail).on('close', () => sockets.delete(upstream));
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    counts: () => ({ ...c }),
    reset: () => { c.sent = 0; c.received = 0; },
    stop: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

/** Registry bytes by kind since the last reset(): blob bodies only, so HTTP overhead and retries of headers do not count. */
export interface BlobCounts {
  /** Bodies of blob GETs (layers + configs) and of blob uploads (PATCH/PUT/POST), bytes. */
  blobDown: number;
  blobUp: number;
  /** The same without configs (digests seen as a manifest's config): what "layer bytes" means in the tables. */
  layerDown: number;
  layerUp: number;
  /** Blob GETs with a body, finished uploads (PUT/POST with ?digest=), cross-repository mounts that the registry accepted (201). */
  blobGets: number;
  blobPuts: number;
  mounts: number;
  /** Manifest bodies down (GET) and up (PUT), bytes. */
  manifestDown: number;
  manifestUp: number;
}

export interface BlobMeter {
  /** "127.0.0.1:PORT" of the meter (put the counting TCP proxy in front of it). */
  host: string;
  counts(): BlobCounts;
  reset(): void;
  stop(): Promise<void>;
}

const BLOB_RE = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/;
const UPLOAD_RE = /^\/v2\/(.+)\/blobs\/uploads\/?([^/]*)$/;
const MANIFEST_RE = /^\/v2\/(.+)\/manifests\/([^/]+)$/;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'upgrade']);

/**
 * An HTTP proxy on 127.0.0.1 that reads the registry protocol: which bytes are blob downloads and uploads, per digest,
 * and which digests are configs (from the manifests passing through). The registry's own access log cannot do this:
 * distribution's combined log has response sizes only, so uploads would be invisible. Host headers are passed on
 * unchanged, so upload Locations keep pointing at whoever the client talked to.
 */
export async function startBlobMeter(target: string): Promise<BlobMeter> {
  const [thost, tport] = target.split(':') as [string, string];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const configs = new Set<string>(); // all run long: a config pushed in one run is still a config when pulled later
  let down = new Map<string, number>();
  let up = new Map<string, number>();
  let pending = new Map<string, number>(); // upload session -> bytes until its PUT names the digest
  let n = { blobGets: 0, blobPuts: 0, mounts: 0, manifestDown: 0, manifestUp: 0 };
  const add = (m: Map<string, number>, k: string, v: number): void => { m.set(k, (m.get(k) ?? 0) + v); };
  const noteManifest = (body: Buffer): void => {
    try {
      const m = JSON.parse(body.toString('utf8')) as { config?: { digest?: string } };
      if (typeof m.config?.digest === 'string') configs.add(m.config.digest);
    } catch { /* an index or not JSON: no config */ }
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const blob = BLOB_RE.exec(url.pathname);
    const upload = UPLOAD_RE.exec(url.pathname);
    const manifest = MANIFEST_RE.exec(url.pathname);
    const uploadKey = upload ? (upload[2] || `post-${Math.random()}`) : '';
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k)) headers[k] = v;
    const upstream = http.request({ host: thost, port: Number(tport), method, path: req.url, headers, agent }, (ures) => {
      const status = ures.statusCode ?? 0;
      const out: string[] = [];
      for (let i = 0; i < ures.rawHeaders.length; i += 2) {
        if (!HOP_BY_HOP.has(ures.rawHeaders[i]!.toLowerCase())) out.push(ures.rawHeaders[i]!, ures.rawHeaders[i + 1]!);
      }
      res.writeHead(status, ures.statusMessage, out);
      const parts: Buffer[] = [];
      let got = 0;
      ures.on('data', (b: Buffer) => {
        got += b.length;
        if (manifest && method === 'GET' && got < 4 << 20) parts.push(b);
      });
      // 'close' also fires when the client went away mid-body: the bytes it got still moved.
      ures.once('close', () => {
        if (blob && method === 'GET' && status < 300) { add(down, blob[2]!, got); if (got > 0) n.blobGets++; }
        if (manifest && method === 'GET' && status === 200) { n.manifestDown += got; noteManifest(Buffer.concat(parts)); }
        if (upload && method === 'POST' && url.searchParams.has('mount') && status === 201) n.mounts++;
        if (upload && (method === 'PUT' || method === 'POST') && url.searchParams.has('digest') && status === 201) {
          const digest = url.searchParams.get('digest')!;
          add(up, digest, pending.get(uploadKey) ?? 0);
          pending.delete(uploadKey);
          n.blobPuts++;
        }
      });
      ures.pipe(res);
    });
    const parts: Buffer[] = [];
    let sent = 0;
    req.on('data', (b: Buffer) => {
      sent += b.length;
      if (manifest && method === 'PUT' && sent < 4 << 20) parts.push(b);
    });
    req.on('end', () => {
      if (upload && sent > 0) add(pending, uploadKey, sent);
      if (manifest && method === 'PUT') { n.manifestUp += sent; noteManifest(Buffer.concat(parts)); }
    });
    const fail = (): void => { upstream.destroy(); res.destroy(); };
    res.on('close', () => { if (!res.writableFinished) upstream.destroy(); });
    upstream.on('error', fail);
    req.on('error', fail);
    req.pipe(upstream);
  });
  // A 2 GiB layer upload is one request that can take minutes on this machine: no request timeouts.
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.timeout = 0;
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  const port = (server.address() as AddressInfo).port;
  const sum = (m: Map<string, number>, layersOnly: boolean): number =>
    [...m].reduce((a, [d, v]) => a + (layersOnly && configs.has(d) ? 0 : v), 0);
  return {
    host: `127.0.0.1:${port}`,
    counts: () => {
      // Uploads whose PUT never came (aborted) still moved bytes: count them as layer bytes.
      const orphan = [...pending.values()].reduce((a, v) => a + v, 0);
      return {
        blobDown: sum(down, false), blobUp: sum(up, false) + orphan,
        layerDown: sum(down, true), layerUp: sum(up, true) + orphan, ...n,
      };
    },
    reset: () => {
      down = new Map(); up = new Map(); pending = new Map();
      n = { blobGets: 0, blobPuts: 0, mounts: 0, manifestDown: 0, manifestUp: 0 };
    },
    stop: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); agent.destroy(); server.close(() => resolve()); }),
  };
}
