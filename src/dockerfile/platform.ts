// Platform strings ("linux/arm64/v8") for FROM --platform, --custom-platform and the automatic TARGET*/BUILD* ARGs.
import { formatPlatform, normalizePlatform, parsePlatform, type Platform } from '../image/index.js';

/** A platform as FROM --platform and the automatic platform ARGs see it; parsing lives in src/image. */
export type PlatformSpec = Platform;
export { formatPlatform, normalizePlatform, parsePlatform };

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
