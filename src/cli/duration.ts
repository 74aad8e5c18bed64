// Go's time.ParseDuration for the flags kaniko users write (--cache-ttl 336h, 6h30m, 90s): -> milliseconds.
import { BuilderError } from '../errors.js';

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(s: string, flag: string): number {
  const bad = (): BuilderError => new BuilderError('FLAG_INVALID', `${flag}=${s} is not a duration`, { hint: `write it as Go does, e.g. ${flag}=336h, 6h30m or 90m` });
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== s.length) throw bad();
  return total;
}
