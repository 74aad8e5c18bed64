// Test harness: an HTTP proxy on 127.0.0.1 in front of a (plain HTTP) test registry that injects faults into chosen requests.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * What to do to a matching request:
 * - reset-body: forward, then reset the connection halfway through the response body (an empty body: instead
 *   of the answer, so the request took effect and only the answer is lost)
 * - reset-request: reset the connection halfway through reading the request body (no body: at once); the
 *   half that was read is forwarded, so the registry sees a request that broke off
 * - status-500 / status-502 / status-503: answer with that status without forwarding
 * - 429-seconds / 429-date: answer 429 with Retry-After as delta-seconds / as an HTTP date, without forwarding
 * - stall: a response body stops halfway and the connection stays open; no body: never answer
 * - truncate: the response ends (FIN) halfway through a body whose Content-Length promised all of it
 * - short-length: the response claims (and sends) half the body's length, then closes
 * - wrong-bytes: one byte in the middle flipped: of the request body when it has one, else of the response body
 * - manifest-invalid: answer 400 MANIFEST_INVALID without forwarding (a registry refusing a manifest kind, e.g. OCI
 *   artifacts with a subject)
 * - alter-body: the request body arrives as other content that is still valid JSON (a space appended), as from a
 *   middlebox or registry that rewrites what it gets
 * - substitute-body: the response body is the rule's `body` instead (status and headers as the registry sent them)
 * - hold-body: half the response body, then the rest once the rule's `hold` resolves
 */
export type FaultKind =
  | 'reset-body' | 'reset-request' | 'status-500' | 'status-502' | 'status-503' | '429-seconds' | '429-date'
  | 'stall' | 'truncate' | 'short-length' | 'wrong-bytes' | 'alter-body' | 'manifest-invalid' | 'substitute-body' | 'hold-body';

export const FAULT_KINDS: readonly FaultKind[] = [
  'reset-body', 'reset-request', 'status-500', 'status-502', 'status-503', '429-seconds', '429-date',
  'stall', 'truncate', 'short-length', 'wrong-bytes',
];

export interface FaultRule {
  /** HTTP method to match (any when omitted). */
  method?: string;
  /** Matched against the request's path and query. */
  path: RegExp;
  fault: FaultKind;
  /** Which matching request (1-based) gets the fault first (default 1). */
  nth?: number;
  /** How many matching requests from the nth on get it (default 1; Infinity: all). */
  times?: number;
  /** Seconds the 429 faults ask the client to wait (default 1). */
  retryAfterSeconds?: number;
  /** substitute-body: what is sent instead. */
  body?: Buffer;
  /** hold-body: the rest of the body goes once this resolves. */
  hold?: Promise<void>;
}

export interface ProxyLogEntry {
  method: string;
  path: string;
  /** The Range header the client sent, if any. */
  range?: string;
  /** The fault injected into this request, if any. */
  fault?: FaultKind;
}

export interface FaultProxy {
  /** "127.0.0.1:PORT" */
  host: string;
  url: string;
  /** Adds a rule; returns a function telling how many times it fired. */
  add(rule: FaultRule): () => number;
  /** Removes every rule and forgets the log. */
  clear(): void;
  log(): ProxyLogEntry[];
  /** Drop Range headers before forwarding, like a registry (or cache) that does not support ranges. */
  ignoreRange(on: boolean): void;
  close(): Promise<void>;
}

interface ActiveRule extends FaultRule {
  seen: number;
  fired: number;
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade', 'te', 'trailer'];

function forwardHeaders(h: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (!HOP_BY_HOP.includes(k) && v !== undefined) out[k] = v;
  return out;
}

/** Starts a proxy forwarding to `upstream` ("http://127.0.0.1:PORT"); keeps the client's Host so Locations point back at the proxy. */
export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const rules: ActiveRule[] = [];
  const entries: ProxyLogEntry[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let stripRange = false;

  const pick = (req: http.IncomingMessage): FaultKind | undefined => {
    for (const r of rules) {
      if (r.method && r.method !== req.method) continue;
      if (!r.path.test(req.url ?? '')) continue;
      r.seen++;
      const nth = r.nth ?? 1;
      if (r.seen >= nth && r.seen < nth + (r.times ?? 1)) {
        r.fired++;
        return r.fault;
      }
    }
    return undefined;
  };
  const ruleFor = (req: http.IncomingMessage, fault: FaultKind): ActiveRule | undefined =>
    rules.find((r) => r.fault === fault && (!r.method || r.method === req.method) && r.path.test(req.url ?? ''));

  /** Sends the request upstream with `body` (already read); resolves with the whole response. */
  const upstreamCall = (req: http.IncomingMessage, body: Buffer): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> =>
    new Promise((resolve, reject) => {
      const headers = forwardHeaders(req.headers);
      if (stripRange) delete headers.range;
      if (body.length > 0 || req.headers['content-length'] !== undefined) headers['content-length'] = String(body.length);
      const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      up.on('error', reject);
      up.end(body);
    });

  const readBody = (req: http.IncomingMessage): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });

  const respond = (res: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders, body: Buffer): void => {
    res.writeHead(status, { ...headers, 'content-length': String(body.length) });
    res.end(body);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const fault = pick(req);
    const range = req.headers.range;
    entries.push({ method: req.method ?? '', path: req.url ?? '', ...(range ? { range } : {}), ...(fault ? { fault } : {}) });
    const socket = req.socket;
    const declared = Number(req.headers['content-length'] ?? 0);
    const hasBody = declared > 0 || req.headers['transfer-encoding'] !== undefined;

    if (fault === 'reset-request') {
      if (!hasBody) {
        socket.resetAndDestroy();
        return;
      }
      // forward the first half as a request that breaks off, then reset the client's connection
      const headers = forwardHeaders(req.headers);
      const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent: false });
      up.on('error', () => undefined);
      up.on('response', (r) => r.resume());
      let got = 0;
      const half = Math.max(1, Math.floor((declared || 2) / 2));
      req.on('data', (c: Buffer) => {
        if (got >= half) return;
        const part = c.subarray(0, half - got);
        got += part.length;
        up.write(part);
        if (got >= half) {
          // let the half reach the registry before both connections break
          const t = setTimeout(() => {
            timers.delete(t);
            up.destroy();
            socket.resetAndDestroy();
          }, 50);
          timers.add(t);
        }
      });
      req.on('error', () => undefined);
      return;
    }

    const body = await readBody(req);
    if (fault === 'status-500' || fault === 'status-502' || fault === 'status-503') {
      const status = Number(fault.slice(7));
      const text = status === 500 ? JSON.stringify({ errors: [{ code: 'UNKNOWN', message: 'injected fault' }] }) : `<html><body><h1>${status}</h1>injected fault</body></html>`;
      respond(res, status, { 'content-type': status === 500 ? 'application/json' : 'text/html' }, Buffer.from(text));
      return;
    }
    if (fault === 'manifest-invalid') {
      respond(res, 400, { 'content-type': 'application/json' }, Buffer.from(JSON.stringify({ errors: [{ code: 'MANIFEST_INVALID', message: 'manifest invalid', detail: 'injected fault' }] })));
      return;
    }
    if (fault === '429-seconds' || fault === '429-date') {
      const secs = ruleFor(req, fault)?.retryAfterSeconds ?? 1;
      const retryAfter = fault === '429-seconds' ? String(secs) : new Date(Date.now() + secs * 1000).toUTCString();
      respond(res, 429, { 'content-type': 'application/json', 'retry-after': retryAfter }, Buffer.from(JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'injected fault' }] })));
      return;
    }
    if (fault === 'stall' && (hasBody || req.method !== 'GET')) return; // never answer; the client gives up and closes

    let sent = body;
    if (fault === 'wrong-bytes' && body.length > 0) {
      sent = Buffer.from(body);
      sent[sent.length >> 1]! ^= 0xff;
    }
    if (fault === 'alter-body') sent = Buffer.concat([body, Buffer.from(' ')]);
    let up: Awaited<ReturnType<typeof upstreamCall>>;
    try {
      up = await upstreamCall(req, sent);
    } catch {
      socket.destroy();
      return;
    }
    const headers = forwardHeaders(up.headers);
    const out = up.body;
    const half = out.length >> 1;
    switch (fault) {
      case 'reset-body':
        if (out.length === 0 || req.method === 'HEAD') {
          // headers alone would be a complete answer: the answer is lost instead
          socket.resetAndDestroy();
          return;
        }
        res.writeHead(up.status, headers);
        res.write(out.subarray(0, half), () => setImmediate(() => socket.resetAndDestroy()));
        return;
      case 'stall':
        res.writeHead(up.status, headers);
        res.write(out.subarray(0, half)); // and nothing more: the socket stays open until the client closes it
        return;
      case 'truncate':
        res.writeHead(up.status, headers);
        res.write(out.subarray(0, half), () => socket.end());
        return;
      case 'short-length':
        respond(res, up.status, { ...headers, connection: 'close' }, out.subarray(0, half));
        return;
      case 'substitute-body':
        respond(res, up.status, headers, ruleFor(req, fault)?.body ?? out);
        return;
      case 'hold-body': {
        const hold = ruleFor(req, fault)?.hold ?? Promise.resolve();
        res.writeHead(up.status, { ...headers, 'content-length': String(out.length) });
        res.write(out.subarray(0, half));
        void hold.then(() => res.end(out.subarray(half)));
        return;
      }
      case 'wrong-bytes':
        if (body.length === 0 && out.length > 0) {
          const bad = Buffer.from(out);
          bad[half]! ^= 0xff;
          respond(res, up.status, headers, bad);
          return;
        }
        respond(res, up.status, headers, out);
        return;
      default:
        if (req.method === 'HEAD') {
          res.writeHead(up.status, headers);
          res.end();
          return;
        }
        respond(res, up.status, headers, out);
    }
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => req.socket.destroy());
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  // a reset from the client side is expected traffic here, not a proxy failure
  server.on('clientError', (_err, s: Socket) => s.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = `127.0.0.1:${port}`;
  return {
    host,
    url: `http://${host}`,
    add(rule) {
      const r: ActiveRule = { ...rule, seen: 0, fired: 0 };
      rules.push(r);
      return () => r.fired;
    },
    clear() {
      rules.length = 0;
      entries.length = 0;
    },
    log: () => [...entries],
    ignoreRange(on) {
      stripRange = on;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
