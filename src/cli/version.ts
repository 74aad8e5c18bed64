// The version printed by `builder --version`: the package's own (package.json two levels above dist/src/cli), or the
// one the executor image's bundle was built with (esbuild defines __BUILDER_VERSION__; no package.json sits beside it).
import { readFileSync } from 'node:fs';

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
