// Platform strings ("linux/arm64/v8") for FROM --platform, --custom-platform and the automatic TARGET*/BUILD* ARGs.
import { BuilderError } from '../errors.js';

export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
}

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

/** Parses "os/arch[/variant]" (also "arch" alone, meaning linux); throws DOCKERFILE_BAD_PLATFORM. */
export function parsePlatform(s: string): PlatformSpec {
  const parts = s.trim().toLowerCase().split('/');
  if (parts.length === 1 && parts[0]) parts.unshift('linux');
  const [os, arch, variant, ...rest] = parts;
  if (!os || !arch || rest.length > 0 || variant === '') {
    throw new BuilderError('DOCKERFILE_BAD_PLATFORM', `invalid platform ${JSON.stringify(s)}`, {
      hint: 'Write a platform as os/architecture[/variant], e.g. linux/amd64 or linux/arm/v7.',
    });
  }
  return normalizePlatform({ os, architecture: arch, variant });
}

/** Applies architecture aliases and drops the default arm64 variant (v8), as containerd does. */
export function normalizePlatform(p: PlatformSpec): PlatformSpec {
  const alias = ARCH_ALIASES[p.architecture];
  const architecture = alias?.architecture ?? p.architecture;
  let variant = p.variant || alias?.variant;
  if (architecture === 'arm64' && variant === 'v8') variant = undefined;
  if (architecture === 'arm' && !variant) variant = 'v7';
  return variant ? { os: p.os, architecture, variant } : { os: p.os, architecture };
}

export function formatPlatform(p: PlatformSpec): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/** The automatic platform ARGs BuildKit defines in the global scope. */
export function platformArgs(target: PlatformSpec, build: PlatformSpec): Map<string, string> {
  return new Map([
    ['TARGETPLATFORM', formatPlatform(target)],
    ['TARGETOS', target.os],
    ['TARGETARCH', target.architecture],
    ['TARGETVARIANT', target.variant ?? ''],
    ['BUILDPLATFORM', formatPlatform(build)],
    ['BUILDOS', build.os],
    ['BUILDARCH', build.architecture],
    ['BUILDVARIANT', build.variant ?? ''],
  ]);
}
