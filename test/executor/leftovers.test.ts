// removeLeftovers against real dirs and real mounts: a dead build's dir goes (mounts first), a live one's never.
import { execFileSync, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildDirPrefix, markKept, removeLeftovers } from '../../src/executor/leftovers.js';

const isRoot = process.getuid?.() === 0;

async function startOf(pid: number): Promise<string> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ')[19]!;
}

async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').map((l) => l.split(' ')[4] ?? '').filter((mp) => mp.startsWith(`${dir}/`));
}

describe.skipIf(!isRoot)('removeLeftovers', () => {
  let work = '';
  afterEach(async () => {
    for (const mp of (await mountsUnder(work)).reverse()) execFileSync('umount', ['-l', mp]);
    await rm(work, { recursive: true, force: true });
  });

  it('removes a dead build\'s dir after unmounting its stage roots; keeps live, foreign, unnamed and --cleanup=false ones', async () => {
    work = await mkdtemp(path.join(tmpdir(), 'leftovers-'));
    const ns = (await readlink('/proc/self/ns/pid')).replace(/\D/g, '');
    // A dead owner: a process that ran and was reaped (its pid with another start time, or no process at all).
    const gone = spawn('true');
    await new Promise((r) => gone.on('exit', r));
    const live = spawn('sleep', ['30']);
    try {
      const dirs = {
        dead: `build-${gone.pid}.1.${ns}-aaaaaa`,
        deadKept: `build-${gone.pid}.1.${ns}-bbbbbb`,
        live: `build-${live.pid}.${await startOf(live.pid!)}.${ns}-cccccc`,
        foreignNs: `build-${gone.pid}.1.1-dddddd`,
        unnamed: 'build-eeeeee',
        mine: path.basename(`${await buildDirPrefix(work)}ffffff`),
      };
      for (const d of Object.values(dirs)) {
        await mkdir(path.join(work, d, 'stages/0'), { recursive: true });
        execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', path.join(work, d, 'stages/0')]);
        await writeFile(path.join(work, d, 'stages/0/file'), 'x');
      }
      await markKept(path.join(work, dirs.deadKept));
      const left = await removeLeftovers(work);
      expect(left).toEqual({ dirs: [dirs.dead], mounts: 2, kept: [] });
      expect((await readdir(work)).sort()).toEqual(Object.values(dirs).filter((d) => d !== dirs.dead).sort());
      expect((await mountsUnder(work)).map((mp) => path.relative(work, mp).split('/')[0]).sort())
        .toEqual([dirs.live, dirs.foreignNs, dirs.unnamed, dirs.mine].sort());
    } finally {
      live.kill('SIGKILL');
    }
  });
});
