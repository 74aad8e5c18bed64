// Foreign-architecture RUN: whether this host runs a platform's binaries natively, else through a binfmt_misc emulator.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Platform } from '../image/index.js';

/** ELF class (64-bit?), byte order and e_machine of each architecture's binaries. */
const ELF: Record<string, { wide: boolean; le: boolean; machine: number }> = {
  amd64: { wide: true, le: true, machine: 62 },
  arm64: { wide: true, le: true, machine: 183 },
  arm: { wide: false, le: true, machine: 40 },
  '386': { wide: false, le: true, machine: 3 },
  ppc64le: { wide: true, le: true, machine: 21 },
  s390x: { wide: true, le: false, machine: 22 },
  riscv64: { wide: true, le: true, machine: 243 },
  mips64le: { wide: true, le: true, machine: 8 },
  loong64: { wide: true, le: true, machine: 258 },
};

/** Architectures a host runs without an emulator besides its own (the kernel's compat modes Linux enables by default). */
const COMPAT: Record<string, string[]> = { amd64: ['386'] };

/** True when `host` executes `target`'s binaries itself. */
export function runsNatively(host: Platform, target: Platform): boolean {
  if (host.os !== target.os) return false;
  return host.architecture === target.architecture || (COMPAT[host.architecture] ?? []).includes(target.architecture);
}

/** The first 20 bytes of an executable ELF of `architecture` (what binfmt_misc matches), or undefined when unknown. */
export function elfHeader(architecture: string): Buffer | undefined {
  const e = ELF[architecture];
  if (!e) return undefined;
  const h = Buffer.alloc(20);
  h.set([0x7f, 0x45, 0x4c, 0x46, e.wide ? 2 : 1, e.le ? 1 : 2, 1]);
  if (e.le) {
    h.writeUInt16LE(2, 16);
    h.writeUInt16LE(e.machine, 18);
  } else {
    h.writeUInt16BE(2, 16);
    h.writeUInt16BE(e.machine, 18);
  }
  return h;
}

/** mounted: false when binfmt_misc is not visible here (a container): the host's kernel may still have a handler. */
export type Emulator = { ok: true; name: string; interpreter: string } | { ok: false; reason: string; mounted: boolean };

/**
 * The binfmt_misc handler that would run `architecture`'s executables (dir: the kernel's /proc/sys/fs/binfmt_misc).
 * Only an enabled handler with the F flag counts: its interpreter is opened at registration, so it works inside a
 * build root that does not contain it (the sandbox's pivot_root, a wiped "/").
 */
export async function findEmulator(architecture: string, dir = '/proc/sys/fs/binfmt_misc'): Promise<Emulator> {
  const header = elfHeader(architecture);
  const status = await readFile(path.join(dir, 'status'), 'utf8').catch(() => undefined);
  if (status === undefined) return { ok: false, reason: `binfmt_misc is not mounted (${dir})`, mounted: false };
  if (!header) return { ok: false, reason: `builder does not know the ELF header of ${architecture} binaries`, mounted: true };
  if (status.trim() !== 'enabled') return { ok: false, reason: 'binfmt_misc is disabled', mounted: true };
  let unfixed: string | undefined;
  for (const name of (await readdir(dir)).filter((n) => n !== 'status' && n !== 'register').sort()) {
    const entry = parseEntry(await readFile(path.join(dir, name), 'utf8').catch(() => ''));
    if (!entry?.enabled || !matches(entry, header)) continue;
    if (entry.flags.includes('F')) return { ok: true, name, interpreter: entry.interpreter };
    unfixed = name;
  }
  if (unfixed !== undefined) return { ok: false, reason: `binfmt_misc handler ${unfixed} lacks the F flag (its interpreter would be looked up inside the build root)`, mounted: true };
  return { ok: false, reason: `no binfmt_misc handler for ${architecture} executables is registered`, mounted: true };
}

interface Entry { enabled: boolean; interpreter: string; flags: string; offset: number; magic: Buffer; mask?: Buffer }

/** One handler file: "enabled", "interpreter PATH", "flags: F", "offset N", "magic HEX", "mask HEX" (extension handlers: no magic). */
function parseEntry(text: string): Entry | undefined {
  const lines = text.split('\n');
  const field = (k: string): string | undefined => lines.find((l) => l.startsWith(`${k} `))?.slice(k.length + 1).trim();
  const magic = field('magic');
  if (magic === undefined) return undefined;
  const mask = field('mask');
  return {
    enabled: lines[0]?.trim() === 'enabled',
    interpreter: field('interpreter') ?? '',
    flags: lines.find((l) => l.startsWith('flags:'))?.slice(6).trim() ?? '',
    offset: Number(field('offset') ?? 0),
    magic: Buffer.from(magic, 'hex'),
    ...(mask !== undefined ? { mask: Buffer.from(mask, 'hex') } : {}),
  };
}

function matches(e: Entry, header: Buffer): boolean {
  if (e.offset + e.magic.length > header.length) return false;
  for (let i = 0; i < e.magic.length; i++) {
    const b = header[e.offset + i]! & (e.mask ? e.mask[i] ?? 0xff : 0xff);
    if (b !== e.magic[i]) return false;
  }
  return true;
}
