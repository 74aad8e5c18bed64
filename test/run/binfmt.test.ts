// Foreign-architecture RUN: which binfmt_misc handler would run a platform's executables. The entries are written in the
// kernel's own /proc/sys/fs/binfmt_misc format (qemu-user-static's magic and mask), since registering one on a test
// host is out of the question; the ELF headers are checked against real binaries (the host's and Debian's aarch64 busybox).
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { elfHeader, findEmulator, runsNatively } from '../../src/run/index.js';
import { arm64Busybox, hostArch } from '../support/images.js';

// As qemu's scripts/qemu-binfmt-conf.sh registers them (the e_type byte masked to allow EXEC and DYN).
const AARCH64 = { magic: '7f454c460201010000000000000000000200b700', mask: 'ffffffffffffff00fffffffffffffffffeffffff' };
const ARM = { magic: '7f454c4601010100000000000000000002002800', mask: 'ffffffffffffff00fffffffffffffffffeffffff' };

function entry(e: { magic: string; mask: string }, flags: string, enabled = true): string {
  return `${enabled ? 'enabled' : 'disabled'}\ninterpreter /usr/libexec/qemu-binfmt/x-binfmt-P\nflags: ${flags}\noffset 0\nmagic ${e.magic}\nmask ${e.mask}\n`;
}

/** The bytes of `header` kept by `mask` equal `magic`: the kernel's check. */
function kernelMatches(header: Buffer, e: { magic: string; mask: string }): boolean {
  const magic = Buffer.from(e.magic, 'hex');
  const mask = Buffer.from(e.mask, 'hex');
  return [...magic].every((b, i) => ((header[i] ?? 0) & (mask[i] ?? 0xff)) === b);
}

describe('binfmt_misc emulators', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'builder-binfmt-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('elfHeader matches real binaries as qemu\'s handlers match them', async () => {
    const arm64 = (await readFile(await arm64Busybox())).subarray(0, 20);
    expect(kernelMatches(arm64, AARCH64)).toBe(true);
    expect(kernelMatches(elfHeader('arm64')!, AARCH64)).toBe(true);
    const host = (await readFile('/bin/busybox')).subarray(0, 20);
    expect(kernelMatches(host, AARCH64)).toBe(hostArch() === 'arm64');
    // the host's own header is what elfHeader says for its architecture, up to e_type (EXEC or DYN)
    expect(host.readUInt16LE(18)).toBe(elfHeader(hostArch())!.readUInt16LE(18));
    expect(elfHeader('sparc')).toBeUndefined();
  });

  it('finds an enabled F-flag handler for the architecture, and says why there is none otherwise', async () => {
    const d = path.join(dir, 'a');
    expect(await findEmulator('arm64', d)).toEqual({ ok: false, reason: `binfmt_misc is not mounted (${d})`, mounted: false });
    await mkdir(d);
    await writeFile(path.join(d, 'status'), 'enabled\n');
    await writeFile(path.join(d, 'register'), '');
    await writeFile(path.join(d, 'qemu-arm'), entry(ARM, 'POCF'));
    expect(await findEmulator('arm64', d)).toEqual({ ok: false, reason: 'no binfmt_misc handler for arm64 executables is registered', mounted: true });
    await writeFile(path.join(d, 'qemu-aarch64'), entry(AARCH64, 'POC'));
    expect(await findEmulator('arm64', d)).toMatchObject({ ok: false, reason: expect.stringMatching(/qemu-aarch64 lacks the F flag/) });
    await writeFile(path.join(d, 'qemu-aarch64'), entry(AARCH64, 'POCF', false));
    expect((await findEmulator('arm64', d)).ok).toBe(false);
    await writeFile(path.join(d, 'qemu-aarch64'), entry(AARCH64, 'POCF'));
    expect(await findEmulator('arm64', d)).toEqual({ ok: true, name: 'qemu-aarch64', interpreter: '/usr/libexec/qemu-binfmt/x-binfmt-P' });
    expect(await findEmulator('arm', d)).toMatchObject({ ok: true, name: 'qemu-arm' });
    expect((await findEmulator('riscv64', d)).ok).toBe(false);
    await writeFile(path.join(d, 'status'), 'disabled\n');
    expect(await findEmulator('arm64', d)).toEqual({ ok: false, reason: 'binfmt_misc is disabled', mounted: true });
  });

  it('runsNatively: same os and architecture, or a compat mode (386 on amd64)', () => {
    const p = (architecture: string, variant?: string) => ({ os: 'linux', architecture, ...(variant ? { variant } : {}) });
    expect(runsNatively(p('amd64'), p('amd64'))).toBe(true);
    expect(runsNatively(p('amd64'), p('386'))).toBe(true);
    expect(runsNatively(p('amd64'), p('arm64'))).toBe(false);
    expect(runsNatively(p('arm64', 'v8'), p('arm64'))).toBe(true);
    expect(runsNatively(p('amd64'), { os: 'windows', architecture: 'amd64' })).toBe(false);
  });
});
