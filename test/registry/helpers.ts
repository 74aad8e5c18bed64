// Shared helpers for registry integration tests: a client configured for a TestRegistry.
import { eventLine } from '../../src/cli/render.js';
import type { BuilderError } from '../../src/errors.js';
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/index.js';
import type { EventSink } from '../../src/util/events.js';
import type { TestRegistry } from '../support/registry.js';

/** A client that reaches reg with its credentials and CA (plain HTTP allowed on 127.0.0.1 like docker). */
export function clientFor(regs: TestRegistry | TestRegistry[], extra: Partial<RegistryClientOptions> = {}, password?: string): RegistryClient {
  const list = Array.isArray(regs) ? regs : [regs];
  const certs: Record<string, string> = {};
  for (const r of list) if (r.caFile) certs[r.host] = r.caFile;
  return new RegistryClient({
    registryCertificates: certs,
    credentials: async (host) => {
      const r = list.find((x) => x.host === host);
      if (!r || r.mode === 'plain' || r.mode === 'tls') return undefined;
      return { username: r.username, password: password ?? r.password };
    },
    retries: 1,
    retryBaseMs: 50,
    ...extra,
  });
}

/** A client's retries and trace details as the lines the CLI logs, into `lines`. */
export function logTo(lines: string[]): EventSink {
  return (e) => {
    const l = eventLine(e);
    if (l && (e.type === 'retry' || l.level === 'trace')) lines.push(l.msg);
  };
}

export async function drain(s: NodeJS.ReadableStream): Promise<number> {
  let n = 0;
  for await (const c of s) n += (c as Buffer).length;
  return n;
}

/** The error a promise rejects with (fails the test when it resolves). */
export async function caught(p: Promise<unknown>): Promise<BuilderError> {
  try {
    await p;
  } catch (err) {
    return err as BuilderError;
  }
  throw new Error('expected a rejection');
}
