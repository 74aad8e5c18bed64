// How a process runs one command (bin/builder's modules, the V8 start-up snapshot of src/cli/snapshot.ts): exit as
// soon as the command is done, never a silent success.
type Main = (argv: string[]) => Promise<void>;

export function launch(main: Main, argv: string[]): void {
  // bin/builder hands NODE_EXTRA_CA_CERTS over under this name (node would parse the file at start: src/registry/trust.ts
  // parses it when a verified connection needs it): builder and every child see the variable as the user set it.
  const extraCa = process.env.BUILDER_NODE_EXTRA_CA_CERTS;
  if (extraCa !== undefined) {
    process.env.NODE_EXTRA_CA_CERTS = extraCa;
    delete process.env.BUILDER_NODE_EXTRA_CA_CERTS;
  }
  // A command whose work stops on a promise that never settles would let node exit 0 without a word.
  let finished = false;
  process.on('beforeExit', () => {
    if (finished) return;
    finished = true;
    process.stderr.write('builder: internal error: the command stopped before it finished (nothing left to wait for); this is a bug\n');
    process.exitCode = 70;
  });
  // Exit at once: draining the loop tears node down with its signal handlers already gone, and a signal landing then
  // killed the process instead of the late handler's 128+n (seen with a second SIGTERM).
  main(argv).then(() => {
    finished = true;
    process.exit();
  }, (err: unknown) => {
    finished = true;
    process.stderr.write(`builder: ${err instanceof Error && err.stack ? err.stack : String(err)}\n`);
    process.exit(70);
  });
}
