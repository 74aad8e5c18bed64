// Keeps credentials out of builder's /proc/PID/environ, which any root process of the container can read (a RUN step
// in place too where Landlock is missing, and ../shared/DESIGN.md measured it readable even under Landlock). The values
// are copied first; the CLI hands the copy to the library.
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';

/** Variables that carry (or may carry) a credential: never left in builder's environment once read. */
export function isCredentialName(name: string): boolean {
  return /PASS|TOKEN|SECRET|AUTH|CRED|PRIVATE|_KEY$|^KEY$|ACCESS_KEY|API_KEY/i.test(name);
}

/**
 * Blanks every value in this process's initial environment block (what /proc/PID/environ shows, fixed at exec) by
 * writing zeros over it through /proc/self/mem, then sets the non-credential variables again (glibc copies them to
 * the heap, which Landlock keeps a step from reading) and drops the credential ones from the live environment, so
 * children spawned with the default environment get none either. Returns the names it dropped; [] where it cannot.
 */
export function scrubEnvironment(env: NodeJS.ProcessEnv, copy: Readonly<Record<string, string | undefined>>): string[] {
  let start: number;
  let end: number;
  try {
    const f = readFileSync('/proc/self/stat', 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    // fields 50 and 51 of stat (env_start, env_end), counted from the state field (3)
    start = Number(fields[47]);
    end = Number(fields[48]);
  } catch {
    return [];
  }
  if (!(start > 0 && end > start)) return [];
  let fd: number;
  try {
    fd = openSync('/proc/self/mem', 'r+');
  } catch {
    return [];
  }
  try {
    const block = Buffer.alloc(end - start);
    readSync(fd, block, 0, block.length, start);
    let i = 0;
    while (i < block.length) {
      const stop = block.indexOf(0, i);
      const entryEnd = stop < 0 ? block.length : stop;
      const eq = block.indexOf(0x3d, i);
      if (eq >= 0 && eq < entryEnd) block.fill(0, eq + 1, entryEnd);
      i = entryEnd + 1;
    }
    writeSync(fd, block, 0, block.length, start);
  } catch {
    return [];
  } finally {
    closeSync(fd);
  }
  const dropped: string[] = [];
  for (const [k, v] of Object.entries(copy)) {
    if (v === undefined) continue;
    if (isCredentialName(k)) {
      delete env[k];
      dropped.push(k);
    } else env[k] = v;
  }
  return dropped;
}
