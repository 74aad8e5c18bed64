// argv before commander sees it: the command it is for, Go pflag's `-c=DIR` short form, and a mistyped command name.
import type { Command } from 'commander';
import { BuilderError } from '../errors.js';

/** The (sub)command argv is for: leading words naming commands, else the default command (build). */
export function targetCommand(program: Command, args: readonly string[], defaultName: string): { cmd: Command; depth: number } {
  let cmd = program;
  let depth = 0;
  for (const word of args) {
    const child = cmd.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!child) break;
    cmd = child;
    depth++;
  }
  if (cmd === program) cmd = program.commands.find((c) => c.name() === defaultName) ?? program;
  return { cmd, depth };
}

/**
 * pflag reads `-c=DIR` as `-c DIR` (commander would read the value `=DIR`): rewritten as `--context=DIR`, for every
 * short flag of cmd, booleans included (`-x=false`). A value given to the option before it, and whatever follows
 * `--`, is left alone.
 */
export function pflagShortForms(args: readonly string[], cmd: Command): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return [...out, ...args.slice(i)];
    const m = /^(-[A-Za-z0-9])=([\s\S]*)$/.exec(a);
    const short = m ? cmd.options.find((o) => o.short === m[1]) : undefined;
    if (m && short?.long) {
      out.push(`${short.long}=${m[2]}`);
      continue;
    }
    out.push(a);
    // `--label VALUE` / `-c VALUE`: the next word is this option's value whatever it looks like (pflag does the same)
    const opt = /^--?[^=]+$/.test(a) ? cmd.options.find((o) => o.long === a || o.short === a) : undefined;
    if (opt?.required && i + 1 < args.length) out.push(args[++i]!);
  }
  return out;
}

/** Damerau-Levenshtein distance (an adjacent swap counts one), enough to find the command a typo meant. */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The commands nearest to word (at most 2 edits, or a prefix of it), closest first. */
export function nearestCommands(word: string, names: readonly string[]): string[] {
  const scored = names.map((n) => ({ n, d: n.startsWith(word) || word.startsWith(n) ? Math.min(1, distance(word, n)) : distance(word, n) }));
  return scored.filter((s) => s.d <= Math.max(1, Math.min(2, Math.floor(word.length / 2)))).sort((x, y) => x.d - y.d || (x.n < y.n ? -1 : 1)).map((s) => s.n);
}

/**
 * The build takes no operands, so a first word that names no command is a mistyped command, not a build argument:
 * say so (commander would report "too many arguments for 'build'") and name the nearest commands.
 */
export function checkCommandName(program: Command, args: readonly string[]): void {
  const word = args[0];
  if (word === undefined || word.startsWith('-') || word === 'help') return;
  const names = program.commands.map((c) => c.name());
  if (program.commands.some((c) => c.name() === word || c.aliases().includes(word))) return;
  const near = nearestCommands(word, names);
  throw new BuilderError('UNKNOWN_COMMAND', `unknown command "${word}"`, {
    hint: `${near.length ? `did you mean ${near.slice(0, 3).map((n) => `"builder ${n}"`).join(' or ')}? ` : ''}commands: ${names.join(', ')}; `
      + 'a build needs no command word (`builder --destination REF` builds); see builder --help',
    exitCode: 2,
  });
}
