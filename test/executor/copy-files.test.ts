// COPY of regular files on both sides of the 64 KiB line (small ones are read and written synchronously, larger ones
// copied with copyFile): the same bytes, mode, setuid bit, owner and modification time either way, into the layer.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLayoutImage } from '../../conformance/tree.js';
import { compileIfStale, Workspace } from './helpers.js';

const SIZES = [0, 1, 65_535, 65_536, 65_537, 300_000];
const MODES = [0o640, 0o755, 0o4755, 0o777, 0o666, 0o2755, 0o2644, 0o1777];
/** What chown(2) by root leaves of a regular file's mode (Linux): setuid cleared, setgid too when group-executable. */
const afterChown = (m: number): number => m & ~0o4000 & ~(m & 0o010 ? 0o2000 : 0);

/** path -> mtime (seconds) of every entry in the image's layers, read by python's tarfile (not our reader). */
function layerMtimes(layout: string): Map<string, number> {
  const script = `
import glob, json, sys, tarfile
out = {}
for blob in glob.glob(sys.argv[1] + '/blobs/sha256/*'):
    try:
        with tarfile.open(blob, 'r:*') as t:
            for m in t.getmembers():
                out['/' + m.name.lstrip('./').rstrip('/')] = int(m.mtime)
    except tarfile.TarError:
        pass
json.dump(out, sys.stdout)
`;
  return new Map(Object.entries(JSON.parse(execFileSync('python3', ['-c', script, layout]).toString()) as Record<string, number>));
}

describe('COPY of regular files, small and large', () => {
  let ws: Workspace;
  beforeAll(async () => {
    [ws] = await Promise.all([Workspace.create('builder-copyfiles-'), compileIfStale()]);
  });
  afterAll(async () => {
    await ws?.remove();
  });

  it('keeps content, mode (set-id and sticky bits too) and mtime; --chown sets the owner and drops what chown(2) drops', async () => {
    const ctx = await ws.context('ctx', { Dockerfile: 'FROM scratch\nCOPY files /a/\nCOPY --chown=123:45 files /b/\n' });
    await mkdir(path.join(ctx, 'files'));
    const want = new Map<string, { sha256: string; mode: number; mtime: number }>(); // sha256: the tree's 16-digit prefix
    // every mode on both sides of the line; umask (022) must not show, nor the write order of mode and owner
    for (const [k, size] of SIZES.entries()) {
      for (const mode of MODES) {
        const name = `f${size}-${mode.toString(8)}`;
        const body = randomBytes(size);
        const mtime = 1_000_000_000 + k * 86_400 + mode;
        const file = path.join(ctx, 'files', name);
        await writeFile(file, body);
        await chmod(file, mode);
        await utimes(file, mtime, mtime);
        want.set(name, { sha256: createHash('sha256').update(body).digest('hex').slice(0, 16), mode, mtime });
      }
    }
    const out = ws.path('layout');
    await mkdir(out, { recursive: true });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--no-push', '--oci-layout-path', out]);
    expect(r.code, r.stderr).toBe(0);
    const { tree } = await readLayoutImage(out);
    const mtimes = layerMtimes(out);
    for (const [name, w] of want) {
      const a = tree.get(`/a/${name}`);
      expect(a, name).toMatchObject({ type: 'file', sha256: w.sha256, mode: w.mode.toString(8).padStart(4, '0'), uid: 0, gid: 0 });
      expect(mtimes.get(`/a/${name}`), name).toBe(w.mtime);
      const b = tree.get(`/b/${name}`);
      expect(b, name).toMatchObject({ type: 'file', sha256: w.sha256, mode: afterChown(w.mode).toString(8).padStart(4, '0'), uid: 123, gid: 45 });
      expect(mtimes.get(`/b/${name}`), name).toBe(w.mtime);
    }
  }, 120_000);

  it('into a full disk: STEP_DISK_FULL at its line, the file named, no stack; nothing left in the work dir', async () => {
    const small = ws.path('small');
    await mkdir(small, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', small]);
    try {
      const ctx = await ws.context('ctx-full', { Dockerfile: 'FROM scratch\nCOPY files /a/\n' });
      await mkdir(path.join(ctx, 'files'));
      for (let i = 0; i < 40; i++) await writeFile(path.join(ctx, 'files', `f${i}`), randomBytes(32 * 1024));
      const work = path.join(small, 'work');
      const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--no-push'], { cache: ws.path('cache-full'), work });
      expect(r.code).toBe(1);
      // the step's line, the file that did not fit, a hint: not an "internal error" with a stack (as it was)
      expect(r.stderr).toMatch(/error STEP_DISK_FULL: \S*Dockerfile:2: the disk is full: ENOSPC.*files\/f\d+/);
      expect(r.stderr).toMatch(/hint: free space/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(await readdir(work).catch(() => [])).toEqual([]);
    } finally {
      execFileSync('umount', ['-l', small]);
    }
  }, 120_000);
});
