// --secret id=ID[,src=PATH|,env=VAR][,type=file|env]: BuildKit's CLI flag (buildx parseSecret + the secrets provider's defaults).
import path from 'node:path';
import { BuilderError } from '../errors.js';

export type SecretFlagSource = { file: string } | { value: string };

/**
 * Each --secret to its source. type=env takes src= as the variable's name; with neither src= nor env=, the variable
 * named ID when it is set, else the file ID (relative to the working directory), as BuildKit's secrets provider does.
 * Env values are read here (the CLI is the only reader of the environment); files when a step mounts them.
 */
export function parseSecretFlags(list: readonly string[] | undefined, env: Record<string, string | undefined>, cwd: string): Record<string, SecretFlagSource> {
  const out: Record<string, SecretFlagSource> = {};
  for (const flag of list ?? []) {
    const bad = (why: string): BuilderError =>
      new BuilderError('FLAG_INVALID', `--secret ${flag}: ${why}`, { hint: 'write --secret id=ID,src=FILE or --secret id=ID,env=VARIABLE' });
    let id = '';
    let file: string | undefined;
    let variable: string | undefined;
    let type: string | undefined;
    for (const field of flag.split(',')) {
      const eq = field.indexOf('=');
      if (eq < 0) throw bad(`invalid field '${field}' must be a key=value pair`);
      const key = field.slice(0, eq).trim().toLowerCase();
      const value = field.slice(eq + 1);
      if (key === 'type') {
        if (value !== 'file' && value !== 'env') throw bad(`unsupported secret type "${value}"`);
        type = value;
      } else if (key === 'id') id = value;
      else if (key === 'src' || key === 'source') file = value;
      else if (key === 'env') variable = value;
      else throw bad(`unexpected key '${key}'`);
    }
    if (type === 'env' && variable === undefined) [variable, file] = [file, undefined];
    if (id === '') throw bad('id= is required');
    if (file === undefined && variable === undefined) {
      if (env[id] !== undefined) variable = id;
      else file = id;
    }
    if (variable !== undefined) {
      const value = env[variable];
      if (value === undefined) throw bad(`environment variable ${variable} is not set`);
      out[id] = { value };
    } else out[id] = { file: path.resolve(cwd, file!) };
  }
  return out;
}
