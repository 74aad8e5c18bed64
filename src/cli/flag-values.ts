// Parsers for flag values in Go pflag's forms (kaniko's), shared by the commands.
import { BuilderError } from '../errors.js';

/** kaniko's boolean flags accept `--flag`, `--flag=true` and `--flag=false` (Go strconv.ParseBool). */
export function parseBool(v: string | undefined): boolean {
  if (v === undefined || v === '' || /^(true|1|t|yes)$/i.test(v)) return true;
  if (/^(false|0|f|no)$/i.test(v)) return false;
  throw new BuilderError('FLAG_INVALID', `"${v}" is not a boolean`, { hint: 'use true or false' });
}

export const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** A non-negative whole number (kaniko int flags). */
export function parseCount(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim())) throw new BuilderError('FLAG_INVALID', `${flag}=${v} is not a whole number`, { hint: `e.g. ${flag}=3` });
  return Number(v);
}
