// The process facts the library asks for (src/util/host.ts), taken from `process` here, where the CLI reads it.
import type { Host } from '../util/host.js';
import { findZstd } from '../util/zstd.js';

export function processHost(env: Readonly<Record<string, string | undefined>> = process.env): Host {
  return {
    uid: process.getuid?.() ?? -1,
    gid: process.getgid?.() ?? -1,
    groups: process.getgroups?.() ?? [],
    umask: process.umask(),
    execPath: process.execPath,
    zstd: findZstd({ execPath: process.execPath, path: env.PATH }),
    kill: (pid, signal) => process.kill(pid, signal),
  };
}
