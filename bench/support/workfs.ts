// Bench: the work dir on a journaled ext4 image of its own, so a run does not pay for the run before it.
// Measured on this VM (bench/ANALYSIS.md "The bench's own disk"): its root is ext4 without a journal, where the kernel
// skips inodes freed in the last 30 s (fs/ext4/ialloc.c recently_deleted(), only when there is no journal) by
// scanning them for every new inode: 20,000 files created right after 20,000 were deleted took 9.3 s instead of
// 1.8 s. Every run removes the state of the one before it, so that cost landed on whichever tool came next.
import { mkdir, mkdtemp, rm, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runCmd } from './measure.js';

export interface WorkFs {
  /** Where the bench makes its work dir. */
  root: string;
  /** For the Machine line of BENCHMARKS.md. */
  describe: string;
  /** True for the image: left mounted by an interrupted or --keep run. */
  mounted: boolean;
  /** The shell command that removes it by hand. */
  removal: string;
  /** Unmounts and removes the image (nothing for a plain directory). */
  stop(): Promise<void>;
}

const GiB = 2 ** 30;

async function fsType(dir: string): Promise<string> {
  return (await runCmd('stat', ['-f', '-c', '%T', dir]).catch(() => '?')).trim();
}

/**
 * BENCH_WORK_DIR when set; else, as root with mkfs.ext4 at hand, a sparse ext4 image (journal on, the mkfs default)
 * loop-mounted under the temp dir (not a tmpfs), sized to half its free space up to 64 GiB; else the temp dir itself.
 */
export async function benchFilesystem(log: (m: string) => void): Promise<WorkFs> {
  const plain = async (dir: string, why: string): Promise<WorkFs> => {
    await mkdir(dir, { recursive: true });
    return { root: dir, describe: `${await fsType(dir)} (${why})`, mounted: false, removal: '', stop: async () => undefined };
  };
  if (process.env.BENCH_WORK_DIR) return plain(process.env.BENCH_WORK_DIR, 'BENCH_WORK_DIR');
  const tmp = os.tmpdir();
  if (process.getuid?.() !== 0) return plain(tmp, 'the temp dir: not root, no image of its own');
  const type = await fsType(tmp);
  if (type === 'tmpfs') return plain(tmp, 'the temp dir: a tmpfs, where an image would be memory');
  // sparse: half the free space, so the disk under it (the base cache is often there too) does not fill before it
  const s = await statfs(tmp);
  const size = Math.min(64 * GiB, Math.floor((s.bavail * s.bsize * 0.5) / GiB) * GiB);
  if (size < 16 * GiB) return plain(tmp, `the temp dir: ${(s.bavail * s.bsize / GiB).toFixed(0)} GiB free, too little for an image`);
  const dir = await mkdtemp(path.join(tmp, 'builder-bench-fs-'));
  const image = path.join(dir, 'ext4.img');
  const mnt = path.join(dir, 'mnt');
  try {
    await mkdir(mnt);
    await runCmd('truncate', ['-s', String(size), image]);
    // Inode tables and journal written now: lazy init would zero them from a kernel thread during the runs.
    await runCmd('mkfs.ext4', ['-q', '-F', '-i', '65536', '-E', 'lazy_itable_init=0,lazy_journal_init=0', image]);
    await runCmd('mount', ['-o', 'loop', image, mnt]);
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    log(`no ext4 image for the work dir (${(e as Error).message.split('\n')[0]}); using ${tmp}`);
    return plain(tmp, 'the temp dir: the ext4 image could not be made');
  }
  return {
    root: mnt,
    mounted: true,
    removal: `umount -l ${mnt} && rm -r ${dir}`,
    describe: `ext4 with a journal (a ${size / GiB} GiB loop image of its own under ${tmp}, on ${type})`,
    stop: async () => {
      await runCmd('umount', [mnt]).catch(() => runCmd('umount', ['-l', mnt]));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
