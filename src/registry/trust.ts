// Extra CA certificates (NODE_EXTRA_CA_CERTS) for builder's own TLS. bin/builder hands node's variable over under
// another name, so node does not parse the file at every start (≈ 40 ms for a system bundle, needed by no plain-HTTP or
// unverified registry); it is read here, once, for the first verified connection, and trusted beside node's roots.
import { readFile } from 'node:fs/promises';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';

export interface ExtraTrust {
  /** The file's PEM text. */
  pem: string;
  /** node's bundled roots and the file's certificates: what node's default store trusts with the variable set. */
  context: SecureContext;
}

/**
 * The file named by NODE_EXTRA_CA_CERTS, read and parsed once by the first verified connection of any client given this
 * object (the CLI makes one per command: the build's push check and its pulls share it).
 */
export class ExtraCa {
  private loaded: Promise<ExtraTrust | undefined> | undefined;

  constructor(readonly file: string) {}

  /** undefined (with `warn` told why) when unreadable or not PEM: node ignores such a file too. */
  trust(warn: (msg: string) => void): Promise<ExtraTrust | undefined> {
    this.loaded ??= readFile(this.file, 'utf8').then((pem) => ({ pem, context: createSecureContext({ ca: [...rootCertificates, pem] }) })).catch((err: unknown) => {
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
  // the extra CAs' one shared context (parsed once); with a client certificate, their PEM beside node's roots
  if (extra && !mtls.cert) return { secureContext: extra.context };
  const caList = ca ?? (extra ? [...rootCertificates, extra.pem] : undefined);
  return { ...(caList ? { ca: caList } : {}), ...mtls };
}
