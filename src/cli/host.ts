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
    // looked up at each use, as before: in place "/" is replaced mid-build and the image's own zstd is the one found
    get zstd() {
      return findZstd({ execPath: process.execPath, path: env.PATH });
    },
    kill: (pid, signal) => process.kill(pid, signal),
    pid: process.pid,
    onExit: (hook) => {
      process.on('exit', hook);
      return () => void process.off('exit', hook);
    },
  };
}
