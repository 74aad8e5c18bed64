// Extra CA certificates (NODE_EXTRA_CA_CERTS) for builder's own TLS. bin/builder hands node's variable over under
// another name, so node does not parse the file at every start (≈ 40 ms for a system bundle, needed by no plain-HTTP or
// unverified registry); it is read at the command's start and parsed here, once, for the first verified connection.
import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContext } from 'node:tls';

export interface ExtraTrust {
  /** The file's PEM text. */
  pem: string;
  /** node's default store (its bundled roots, or OpenSSL's with --use-openssl-ca) and the file's certificates. */
  context: SecureContext;
}

/** `ctx` trusting `pem` beside the store it started with, as node adds NODE_EXTRA_CA_CERTS to its default store. */
function withExtra(ctx: SecureContext, pem: string): SecureContext {
  (ctx.context as { addCACert(pem: string): void }).addCACert(pem);
  return ctx;
}

/**
 * The file named by NODE_EXTRA_CA_CERTS: read when the command starts (before any step could rewrite it), parsed once
 * by the first verified connection of any client given this object (the build's push check and its pulls share it).
 */
export class ExtraCa {
  private readonly text: Promise<string>;
  private loaded: Promise<ExtraTrust | undefined> | undefined;

  constructor(readonly file: string) {
    this.text = readFile(file, 'utf8');
    this.text.catch(() => undefined); // told by trust(), if ever asked
  }

  /** undefined (with `warn` told why) when unreadable or without a certificate: node ignores such a file too. */
  trust(warn: (msg: string) => void): Promise<ExtraTrust | undefined> {
    this.loaded ??= this.text.then((pem) => {
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
      return { pem, context: withExtra(createSecureContext(), pem) };
    }).catch((err: unknown) => {
      warn(`ignoring the extra CA certificates in ${this.file} (NODE_EXTRA_CA_CERTS): ${(err as Error).message}`);
      return undefined;
    });
    return this.loaded;
  }
}

/** What one registry agent's TLS connections trust: options for tls.connect (through undici's connector). */
export function connectTrust(
  skipVerify: boolean,
  ca: string[] | undefined,
  extra: ExtraTrust | undefined,
  mtls: { cert?: string; key?: string },
): { secureContext: SecureContext } | { ca?: string[]; cert?: string; key?: string } {
  // unverified: no CA at all (node's default context parses its ≈ 140 bundled roots, ≈ 20 ms, to trust nothing here)
  if (skipVerify) return { secureContext: createSecureContext({ ca: [], ...mtls }) };
  if (extra) return { secureContext: mtls.cert ? withExtra(createSecureContext(mtls), extra.pem) : extra.context };
  return { ...(ca ? { ca } : {}), ...mtls };
}
