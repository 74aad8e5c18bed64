// COPY/ADD --chmod values: octal, or symbolic as chmod(1) reads them, with the BSD setmode(3) rules BuildKit applies.
import { BuilderError } from '../errors.js';

/*
 * BuildKit (dockerfile2llb dispatchCopy, Dockerfile syntax 1.14+) takes a value that parses as octal <= 07777 as an
 * absolute mode; anything else goes to tonistiigi/dchapes-mode, a Go port of BSD's setmode with umask 0, and fsutil's
 * copier applies the result to each copied file's and directory's own source mode (symlinks are never chmodded).
 * The rules below reproduce that behaviour, quirks included, so a mode string builds the same tree as BuildKit.
 */

const SUID = 0o4000;
const SGID = 0o2000;
const STICKY = 0o1000;
const USER = SUID | 0o700;
const GROUP = SGID | 0o070;
const OTHER = 0o007;
/** `a`, and what `=` clears with no who: every bit but sticky (setmode's STANDARD_BITS). */
const STANDARD = SUID | SGID | 0o777;

type Change =
  | { kind: 'set' | 'clear'; bits: number }
  /** X: set `bits` if the source is a directory or has an execute bit for anyone. */
  | { kind: 'ifx'; bits: number }
  /** `u=g`, `go-u`, ...: copy one class's rwx onto the target classes. */
  | { kind: 'copy'; from: 'u' | 'g' | 'o'; to: number; clear: boolean; set: boolean };

/** A parsed symbolic mode: the changes setmode would make, applied in order. */
export interface SymbolicMode {
  readonly text: string;
  /** The mode (permission and setuid/setgid/sticky bits) a file whose source mode is `mode` gets. */
  apply(mode: number, isDir: boolean): number;
}

/** Parses a symbolic mode; undefined when setmode would return a syntax error. */
export function parseSymbolicMode(text: string): SymbolicMode | undefined {
  const changes: Change[] = [];
  // With umask 0 an absent who means every bit, so `who || bits` is setmode's `who ? who & x : mask & x`.
  const add = (op: string, who: number, perm: number): void => {
    if (op === '=') {
      changes.push({ kind: 'clear', bits: who || STANDARD });
      op = '+';
    }
    const bits = who ? who & perm : perm;
    changes.push(op === 'X' ? { kind: 'ifx', bits } : { kind: op === '+' ? 'set' : 'clear', bits });
  };
  const addCopy = (from: 'u' | 'g' | 'o', who: number, op: string): void => {
    // Targets are the classes whose read bit who holds; none given means all three.
    const to = who ? (who & 0o400 ? 4 : 0) | (who & 0o040 ? 2 : 0) | (who & 0o004 ? 1 : 0) : 7;
    changes.push({ kind: 'copy', from, to, clear: op !== '+', set: op !== '-' });
  };

  let i = 0;
  let equalDone = false;
  for (;;) {
    let who = 0;
    for (;;) {
      const c = text[i];
      if (c === undefined) return undefined;
      if (c === 'a') who |= STANDARD;
      else if (c === 'u') who |= USER;
      else if (c === 'g') who |= GROUP;
      else if (c === 'o') who |= OTHER;
      else break;
      i++;
    }
    // One clause: ops follow each other ("u+x-w") until a comma or the end.
    for (;;) {
      const op = text[i++]!;
      if (op !== '+' && op !== '-' && op !== '=') return undefined;
      if (op === '=') equalDone = false;
      who &= ~STICKY;
      let perm = 0;
      let permX = 0;
      for (; ; i++) {
        const b = text[i];
        if (b === 'r') perm |= 0o444;
        else if (b === 'w') perm |= 0o222;
        else if (b === 'x') perm |= 0o111;
        else if (b === 'X') {
          if (op === '-') perm |= 0o111;
          else permX = 0o111;
        } else if (b === 's') {
          // Set-id bits mean nothing for "other" alone.
          if (who === 0 || (who & ~OTHER) !== 0) perm |= SUID | SGID;
        } else if (b === 't') {
          if (who === 0 || (who & ~OTHER) !== 0) {
            who |= STICKY;
            perm |= STICKY;
          }
        } else if (b === 'u' || b === 'g' || b === 'o') {
          if (perm !== 0) {
            add(op, who, perm);
            perm = 0;
          }
          if (op === '=') equalDone = true;
          if (permX !== 0) {
            add('X', who, permX);
            permX = 0;
          }
          addCopy(b, who, op);
        } else {
          if (perm !== 0 || (op === '=' && !equalDone)) {
            if (op === '=') equalDone = true;
            add(op, who, perm);
          }
          if (permX !== 0) add('X', who, permX);
          break;
        }
      }
      if (i >= text.length) return symbolic(text, changes);
      if (text[i] === ',') {
        i++;
        break;
      }
    }
  }
}

function symbolic(text: string, changes: readonly Change[]): SymbolicMode {
  return {
    text,
    apply(mode: number, isDir: boolean): number {
      const old = mode & 0o7777;
      let m = old;
      for (const c of changes) {
        switch (c.kind) {
          case 'set':
            m |= c.bits;
            break;
          case 'clear':
            m &= ~c.bits;
            break;
          case 'ifx':
            // X looks at the source's mode, not at what earlier clauses made of it (setmode tests omode).
            if (isDir || (old & 0o111) !== 0) m |= c.bits;
            break;
          case 'copy': {
            const value = c.from === 'u' ? (m >> 6) & 7 : c.from === 'g' ? (m >> 3) & 7 : m & 7;
            const clr = c.set ? 7 : value;
            for (const [cls, shift] of [[4, 6], [2, 3], [1, 0]] as const) {
              if (!(c.to & cls)) continue;
              if (c.clear) m &= ~(clr << shift);
              if (c.set) m |= value << shift;
            }
            break;
          }
        }
      }
      return m & 0o7777;
    },
  };
}

/** A parsed --chmod: an absolute mode, or a symbolic one applied to each source's own mode. */
export type Chmod = { mode: number } | { symbolic: SymbolicMode };

/**
 * Parses --chmod as BuildKit does: all octal digits and at most 07777 is absolute; something else starting with a
 * digit is refused as a bad octal mode; the rest must be a symbolic mode.
 */
export function parseChmod(s: string, where: string): Chmod {
  if (/^[0-7]+$/.test(s) && parseInt(s, 8) <= 0o7777) return { mode: parseInt(s, 8) };
  if (/^[0-9]/.test(s)) {
    throw new BuilderError('COPY_CHMOD_INVALID', `${where}: invalid --chmod=${s}: an octal mode must be between 0 and 7777`, {
      hint: 'give an octal mode such as --chmod=755 or --chmod=0644',
    });
  }
  const symbolic = parseSymbolicMode(s);
  if (!symbolic) {
    throw new BuilderError('COPY_CHMOD_INVALID', `${where}: invalid --chmod=${s}: not an octal or symbolic mode`, {
      hint: 'give an octal mode (--chmod=755) or a symbolic one as chmod(1) reads it: [ugoa]*[+-=][rwxXst]*, clauses joined by commas (u+x, go-w, a=rX, u=rwx,g=rx,o=)',
    });
  }
  return { symbolic };
}
