// The version printed by `builder --version`: the package's own (package.json two levels above dist/src/cli).
import { readFileSync } from 'node:fs';

export function builderVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { name?: string; version?: string };
    return `builder ${pkg.version ?? 'unknown'} (node ${process.version})`;
  } catch {
    return 'builder unknown';
  }
}
