// argv -> typed options -> library call; the only module that reads process.*.
import { constants as osConstants } from 'node:os';
import { Command, CommanderError } from 'commander';
import { BuilderError } from '../errors.js';
import { killProcessTree, LAUNCHER } from '../run/index.js';
import { checkCommandName, pflagShortForms, targetCommand } from './argv.js';
import type { CliEnv } from './env.js';
import * as attestCommands from './commands/attest.js';
import * as buildCommand from './commands/build.js';
import * as cacheCommand from './commands/cache.js';
import * as copyCommand from './commands/copy.js';
import * as digestCommand from './commands/digest.js';
import * as inspectCommand from './commands/inspect.js';
import * as lsCommand from './commands/ls.js';
import * as planCommand from './commands/plan.js';
import * as registryCommands from './commands/registry.js';
import * as warmCommand from './commands/warm.js';
import { builderVersion } from './version.js';

// bin/builder runs a command through launch (one exit path for the modules, the bundle and the V8 snapshot)
export { launch } from './launch.js';

/** Each command module exports register(program, env); main wires them and maps errors to exit codes. */
export async function main(argv: string[]): Promise<void> {
  const interrupt = new AbortController();
  const env: CliEnv = {
    // a copy: the build command blanks credentials in the live environment (environ.ts) once read
    env: { ...process.env },
    cwd: process.cwd(),
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    signal: interrupt.signal,
  };
  // First SIGINT/SIGTERM: abort (RUN processes killed, uploads cancelled, work dir removed), exit 128+n like a shell.
  // A second one exits at once, after killing what this process started (the first one's kill may still be
  // under way); only file cleanup is cut short.
  const onSignal = (sig: NodeJS.Signals): void => {
    const code = 128 + ((osConstants.signals as Record<string, number>)[sig] ?? 0);
    // Through the command's logger once it has one: a JSON log stays JSON, a live progress block is erased first.
    const say = (msg: string): void => (env.logger ? env.logger.log('warn', msg) : void env.stderr.write(`builder: ${msg}\n`));
    if (interrupt.signal.aborted) {
      say(`${sig} again: exiting before cleanup has finished`);
      killProcessTree(process.pid, (pid, signal) => process.kill(pid, signal), { spareRoot: true, spareNamed: LAUNCHER });
      process.exit(code);
    }
    say(`${sig} received: stopping and cleaning up (send it again to exit at once)`);
    interrupt.abort(new BuilderError('INTERRUPTED', `interrupted by ${sig}`, {
      hint: 'the command stopped and removed its work dir; nothing was pushed after the signal; rerun it',
      exitCode: code,
    }));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const program = new Command('builder')
    .description('Daemonless, unprivileged container image builder and pusher (kaniko-compatible flags)')
    .exitOverride()
    .version(builderVersion(), '--version', 'print the version of builder');
  const commands: Array<{ register(p: Command, e: CliEnv): void }> = [
    buildCommand,
    attestCommands,
    cacheCommand,
    copyCommand,
    inspectCommand,
    digestCommand,
    lsCommand,
    planCommand,
    registryCommands,
    warmCommand,
  ];
  for (const c of commands) c.register(program, env);
  try {
    const user = argv.slice(2);
    checkCommandName(program, user);
    const { cmd, depth } = targetCommand(program, user, 'build');
    await program.parseAsync([...user.slice(0, depth), ...pflagShortForms(user.slice(depth), cmd)], { from: 'user' });
  } catch (err) {
    // Once interrupted, the interruption is the outcome, not whichever operation it cut short.
    if (!interrupt.signal.aborted) process.exitCode = reportError(err, env);
  } finally {
    // The work is over: a late signal ends the process with 128+n as a shell would, not by node's default death.
    const late = (sig: NodeJS.Signals): never => process.exit(128 + ((osConstants.signals as Record<string, number>)[sig] ?? 0));
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.on('SIGINT', late);
    process.on('SIGTERM', late);
  }
  if (interrupt.signal.aborted) process.exitCode = reportError(interrupt.signal.reason, env);
}

function reportError(err: unknown, env: CliEnv): number {
  if (err instanceof CommanderError) {
    // commander already printed usage errors; help/version exit 0
    return err.exitCode === 0 ? 0 : 2;
  }
  if (err instanceof BuilderError && env.logger?.format === 'json') {
    env.logger.log('error', err.message, {
      code: err.code, exitCode: err.exitCode, ...(err.file !== undefined ? { file: err.file, line: err.line } : {}), ...(err.hint ? { hint: err.hint } : {}),
    });
    return err.exitCode;
  }
  if (err instanceof BuilderError) {
    env.stderr.write(`builder: error ${err.format()}\n`);
    return err.exitCode;
  }
  if (env.logger?.format === 'json') env.logger.log('error', `internal error: ${err instanceof Error ? err.message : String(err)}`, { code: 'INTERNAL', exitCode: 70, ...(err instanceof Error && err.stack ? { stack: err.stack } : {}) });
  else env.stderr.write(`builder: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 70;
}
