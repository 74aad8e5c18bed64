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
