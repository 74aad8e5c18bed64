// Platforms: parsing "os/arch[/variant]", mapping Node's process.arch, and matching index entries.
import { BuilderError } from '../errors.js';
import type { Descriptor, ImageConfig, Platform } from './types.js';

// Common spellings users pass, mapped to the OCI names (as containerd's platforms.Normalize does).
const ARCH_ALIASES: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: 'amd64' },
  'x86-64': { architecture: 'amd64' },
  aarch64: { architecture: 'arm64' },
  armhf: { architecture: 'arm', variant: 'v7' },
  armel: { architecture: 'arm', variant: 'v6' },
  i386: { architecture: '386' },
  i686: { architecture: '386' },
};

const KNOWN_OS = new Set(['linux', 'windows', 'darwin', 'freebsd', 'netbsd', 'openbsd', 'solaris', 'illumos', 'aix']);

/** Parses "os/arch[/variant]" (also "arch" alone, meaning linux), normalized; throws PLATFORM_INVALID. */
export function parsePlatform(s: string): Platform {
  const parts = s.trim().toLowerCase().split('/');
  // A lone word is an architecture on linux (containerd's rule), unless it is an OS name.
  if (parts.length === 1 && parts[0] && !KNOWN_OS.has(parts[0])) parts.unshift('linux');
  const [os, architecture, variant, ...rest] = parts;
  if (!os || !architecture || rest.length > 0 || variant === '') {
    throw new BuilderError('PLATFORM_INVALID', `invalid platform "${s}": expected os/arch[/variant]`, {
      hint: 'use os/arch[/variant], e.g. linux/amd64 or linux/arm/v7',
    });
  }
  return normalizePlatform(variant ? { os, architecture, variant } : { os, architecture });
}

/** Applies architecture aliases and drops the default arm64 variant (v8), as containerd does. */
export function normalizePlatform(p: Platform): Platform {
  const alias = ARCH_ALIASES[p.architecture];
  const architecture = alias?.architecture ?? p.architecture;
  let variant = p.variant || alias?.variant;
  if (architecture === 'arm64' && variant === 'v8') variant = undefined;
  if (architecture === 'arm' && !variant) variant = 'v7';
  return variant ? { os: p.os, architecture, variant } : { os: p.os, architecture };
}

/** The platform an image config names (os, architecture, variant). */
export function platformOf(config: Pick<ImageConfig, 'os' | 'architecture' | 'variant'>): Platform {
  return { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) };
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

const ARCH: Record<string, { architecture: string; variant?: string }> = {
  x64: { architecture: 'amd64' },
  arm64: { architecture: 'arm64', variant: 'v8' },
  arm: { architecture: 'arm', variant: 'v7' },
  ia32: { architecture: '386' },
  ppc64: { architecture: 'ppc64le' },
  s390x: { architecture: 's390x' },
  riscv64: { architecture: 'riscv64' },
  loong64: { architecture: 'loong64' },
  mips64el: { architecture: 'mips64le' },
};

/** The OCI platform for Node's process.arch (the CLI passes it in; this module never reads process.*). */
export function platformFromNode(nodeArch: string, os = 'linux'): Platform {
  const a = ARCH[nodeArch] ?? { architecture: nodeArch };
  return a.variant ? { os, architecture: a.architecture, variant: a.variant } : { os, architecture: a.architecture };
}

/** Variant a platform implies when it names none (arm64 means v8). */
function normVariant(p: Platform): string | undefined {
  if (p.variant) return p.variant;
  if (p.architecture === 'arm64') return 'v8';
  return undefined;
}

/** True when an image for `have` runs on `want` (os and arch equal; variant equal when `want` names one). */
export function platformMatches(want: Platform, have: Platform | undefined): boolean {
  if (!have) return false;
  if (want.os !== have.os || want.architecture !== have.architecture) return false;
  const wv = want.variant;
  return wv === undefined || wv === normVariant(have) || (want.architecture === 'arm64' && normVariant(want) === normVariant(have));
}

/** Picks the index entry for a platform: exact variant first, then any variant of the same os/arch. */
export function selectPlatform(manifests: Descriptor[], want: Platform): Descriptor | undefined {
  const exact = manifests.find((m) => m.platform && platformMatches(want, m.platform) && normVariant(m.platform) === normVariant(want));
  if (exact) return exact;
  const loose = manifests.find((m) => platformMatches({ os: want.os, architecture: want.architecture }, m.platform));
  // a loose match is only acceptable when no variant was asked for, or the arch has no variants in this index
  if (loose && (want.variant === undefined || !manifests.some((m) => m.platform?.architecture === want.architecture && m.platform.variant))) return loose;
  return undefined;
}
