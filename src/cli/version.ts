// The version printed by `builder --version`: the package's own (package.json two levels above dist/src/cli), or the
// one the executor image's bundle was built with (esbuild defines __BUILDER_VERSION__; no package.json sits beside it).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

declare const __BUILDER_VERSION__: string | undefined;

export function builderVersion(): string {
  if (typeof __BUILDER_VERSION__ === 'string') return `builder ${__BUILDER_VERSION__} (node ${process.version})`;
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { name?: string; version?: string };
    return `builder ${pkg.version ?? 'unknown'} (node ${process.version})`;
  } catch {
    return 'builder unknown';
  }
}

/**
 * The directory builder runs from, which an in-place build must keep: the package root (two levels above
 * dist/src/cli), or the directory above a bundle (dist/builder.mjs, the executor image's /builder/lib/builder.mjs).
 */
export function installDir(): string {
  return fileURLToPath(new URL(typeof __BUILDER_VERSION__ === 'string' ? '..' : '../../..', import.meta.url));
}
