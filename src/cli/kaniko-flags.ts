// kaniko executor flags that have no meaning here: accepted in kaniko's spelling (so a kaniko job runs unchanged), one warning each.
import { Option, type Command } from 'commander';
import { parseBool } from './flag-values.js';

interface Accepted {
  flags: string;
  /** Why it does nothing here, for the warning line. */
  why: string;
  bool?: boolean;
  /** Repeatable in kaniko: collect the values. */
  repeat?: boolean;
}

/** kaniko flags accepted with one warning line each (they change nothing here). */
export const ACCEPTED_WITH_WARNING: readonly Accepted[] = [
  { flags: '--use-new-run [bool]', bool: true, why: 'RUN steps are always snapshotted from a metadata index, which is what kaniko\'s new run does' },
  { flags: '--compressed-caching [bool]', bool: true, why: 'layers are compressed while they are written, so there is nothing to trade' },
  { flags: '--kaniko-dir <dir>', why: 'builder keeps its files in --work-dir and --cache-dir' },
  { flags: '--force-build-metadata [bool]', bool: true, why: 'metadata-only steps never add empty layers here' },
  { flags: '--git <options>', why: 'git contexts are not supported yet; the option only applies to them' },
  // owned by the retry work (branch faults): placeholders until it lands, skipped when the real flag is defined
  { flags: '--push-retry <n>', why: 'registry requests are retried with backoff by default (4 times); the count is not configurable yet' },
  { flags: '--image-download-retry <n>', why: 'registry requests are retried with backoff by default (4 times); the count is not configurable yet' },
  { flags: '--image-fs-extract-retry <n>', why: 'layer extraction reads verified local blobs; a failed download is retried instead' },
];

/** Deprecated spellings kaniko still accepts (hidden from its --help too): each sets the value of the current flag. */
export const DEPRECATED_ALIASES: ReadonlyArray<{ flags: string; current: string; bool?: boolean }> = [
  { flags: '--customPlatform <platform>', current: '--custom-platform' },
  { flags: '--snapshotMode <mode>', current: '--snapshot-mode' },
  { flags: '--tarPath <file>', current: '--tar-path' },
  // kaniko: BoolVarP(&opts.IgnoreVarRun, "whitelist-var-run", ...) + MarkDeprecated("Please use ignore-var-run instead.")
  { flags: '--whitelist-var-run [bool]', current: '--ignore-var-run', bool: true },
];

const attr = (flags: string): string => flags.split(/[ ,]/)[0]!.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Adds the accepted-with-warning flags a command does not define yet (a real definition elsewhere wins). */
export function addAcceptedFlags(cmd: Command): Command {
  for (const a of ACCEPTED_WITH_WARNING) {
    const long = a.flags.split(' ')[0]!;
    if (cmd.options.some((o) => o.long === long)) continue;
    const o = new Option(a.flags, `accepted for kaniko compatibility; no effect: ${a.why}`);
    if (a.bool) o.argParser(parseBool);
    cmd.addOption(o);
  }
  return cmd;
}

/** One warning per accepted-but-ignored flag that was given. */
export function ignoredFlagWarnings(cmd: Command): string[] {
  const out: string[] = [];
  for (const a of ACCEPTED_WITH_WARNING) {
    const long = a.flags.split(' ')[0]!;
    const opt = cmd.options.find((o) => o.long === long);
    // a flag defined by another module (e.g. the real --push-retry) is not ours to warn about
    if (!opt || opt.description.indexOf('accepted for kaniko compatibility') !== 0) continue;
    if (cmd.getOptionValue(attr(a.flags)) !== undefined) out.push(`${long} has no effect here: ${a.why}`);
  }
  return out;
}

/**
 * Adds the deprecated aliases as hidden options: commander stores `--tarPath` under the same name as `--tar-path`
 * (both camel-case to tarPath); a differently named alias copies its value over. The listener records the warning line.
 */
export function addDeprecatedAliases(cmd: Command, used: string[]): Command {
  for (const a of DEPRECATED_ALIASES) {
    const o = new Option(a.flags).hideHelp();
    if (a.bool) o.argParser(parseBool);
    cmd.addOption(o);
    const target = attr(a.current);
    cmd.on(`option:${o.name()}`, () => {
      // commander's own listener (added first) has parsed and stored the alias's value
      if (target !== o.attributeName()) cmd.setOptionValueWithSource(target, cmd.getOptionValue(o.attributeName()), 'cli');
      used.push(`${o.long} is deprecated (in kaniko too): use ${a.current}`);
    });
  }
  return cmd;
}
