// What the stores need to know about this process, read here: the library below src/cli never reads `process`.
import type { StoreHost } from '../store/index.js';

export function processHost(): StoreHost {
  return {
    pid: process.pid,
    ...(process.getuid ? { uid: process.getuid() } : {}),
    onExit: (hook) => {
      process.on('exit', hook);
      return () => void process.off('exit', hook);
    },
  };
}
