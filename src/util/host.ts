// What the library needs of the process it runs in. The CLI takes it from `process` (src/cli/host.ts) and hands it
// down in options: below src/cli nothing reads process state, so a library caller (or a test) says what it is.

export interface Host {
  /** This process's pid: named in the temp dirs and locks it fills (who left one is then plain to see). */
  pid: number;
  /** Real uid, gid and supplementary groups: RUN in place runs as them unless USER says otherwise; root extracts owners and devices. */
  uid: number;
  gid: number;
  groups: readonly number[];
  /** The file mode creation mask: extraction skips an fchmod when it strips none of a file's mode bits. */
  umask: number;
  /** The node binary: the credential helper of RUN in place. */
  execPath: string;
  /** The zstd program: beside node first (the executor image's /builder/bin), then on $PATH (src/util/zstd.ts findZstd); read at use. */
  readonly zstd: string | undefined;
  /** Sends a signal to a pid (a process group when negative): an aborted RUN step's processes are stopped and killed through it. */
  kill(pid: number, signal: NodeJS.Signals): void;
  /** Runs `hook` synchronously at process exit (a second signal's process.exit()) until the returned function is called. */
  onExit(hook: () => void): () => void;
}
