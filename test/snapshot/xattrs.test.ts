// Extended attributes a step leaves on files (file capabilities, user.*) reach the layer and come back on extraction.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createReadStream } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffIndexes, indexTree, toLayerEntries, withXattrs, writeLayer } from '../../src/snapshot/index.js';
import { extractLayer, readXattrs, RootFs } from '../../src/rootfs/index.js';
import { setXattrs } from '../../src/rootfs/xattr.js';
import { REPO_ROOT } from '../support/paths.js';

describe('xattrs in RUN layers', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'snap-xattr-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('records security.capability and user.* of changed files, and extraction restores them (checked with getcap)', async () => {
    const root = path.join(work, 'root');
    await mkdir(path.join(root, 'bin'), { recursive: true });
    const before = await indexTree(root);
    await writeFile(path.join(root, 'bin', 'ping'), '#!/bin/sh\n', { mode: 0o755 });
    await writeFile(path.join(root, 'plain'), 'no attributes\n');
    execFileSync('setcap', ['cap_net_raw+ep', path.join(root, 'bin', 'ping')]);
    execFileSync('python3', ['-c', `import os; os.setxattr(${JSON.stringify(path.join(root, 'plain'))}, 'user.origin', b'builder')`]);
    const after = await indexTree(root);

    const { entries, warning } = await withXattrs(root, toLayerEntries(diffIndexes(before, after), after));
    expect(warning).toBeUndefined();
    const ping = entries.find((e) => e.path === 'bin/ping');
    expect(ping?.kind === 'entry' && Object.keys(ping.meta?.xattrs ?? {})).toEqual(['security.capability']);

    const layer = path.join(work, 'layer.tar.gz');
    await writeLayer(root, entries, layer);
    const out = path.join(work, 'out');
    await mkdir(out);
    await extractLayer(new RootFs(out), createReadStream(layer));
    expect(execFileSync('getcap', [path.join(out, 'bin', 'ping')], { encoding: 'utf8' })).toMatch(/cap_net_raw[=+]ep/);
    const { attrs } = await readXattrs([path.join(out, 'plain')]);
    expect(attrs.get(path.join(out, 'plain'))?.['user.origin']?.toString()).toBe('builder');
  });
});

describe('builder-xattr: extended attributes where there is no python3 (the executor image, in place)', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'snap-xattr-helper-'));
    await mkdir(path.join(work, 'bin'));
    execFileSync('gcc', ['-O2', '-static', '-o', path.join(work, 'bin', 'builder-xattr'), path.join(REPO_ROOT, 'scripts/executor-image/builder-xattr.c')]);
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('reads and sets attributes through the static helper, found on PATH before python3', async () => {
    const file = path.join(work, 'f');
    await writeFile(file, 'x');
    const ops = [
      { path: file, name: 'user.a', value: Buffer.from([0, 1, 2, 255]) },
      { path: path.join(work, 'missing'), name: 'user.b', value: Buffer.from('v') },
    ];
    // PATH holds only the helper: python3 and setfattr cannot be what worked
    const saved = process.env.PATH;
    process.env.PATH = path.join(work, 'bin');
    try {
      const set = await setXattrs(ops);
      expect(set.unavailable).toBeUndefined();
      expect(set.failed.map((f) => [f.op.name, f.reason])).toEqual([['user.b', 'No such file or directory']]);
      const { attrs, unavailable } = await readXattrs([file, path.join(work, 'bin')]);
      expect(unavailable).toBeUndefined();
      expect([...attrs.keys()]).toEqual([file]);
      expect(attrs.get(file)).toEqual({ 'user.a': Buffer.from([0, 1, 2, 255]) });
    } finally {
      process.env.PATH = saved;
    }
  });

  it('npm run build compiles the helper into dist/bin, where builder finds it with nothing on PATH (no python3 per RUN step)', async () => {
    execFileSync('node', [path.join(REPO_ROOT, 'scripts/bundle.mjs')]);
    const file = path.join(work, 'g');
    await writeFile(file, 'x');
    execFileSync(path.join(REPO_ROOT, 'dist/bin/builder-xattr'), ['set'], { input: `${file}\0user.c\0${Buffer.from('from-c').toString('hex')}\0` });
    // tsc's modules, as bin/builder runs them when no bundle is fresh, in a process whose PATH has no tool at all
    // (every program it starts recorded: /usr/bin/python3 is found without PATH, so the answer alone proves nothing)
    const script = `import cp from 'node:child_process'; import { syncBuiltinESMExports } from 'node:module';
      const started = []; const spawn = cp.spawn; cp.spawn = (cmd, ...rest) => (started.push(cmd), spawn(cmd, ...rest)); syncBuiltinESMExports();
      const m = await import(${JSON.stringify(path.join(REPO_ROOT, 'dist/src/rootfs/xattr.js'))});
      const r = await m.readXattrs([${JSON.stringify(file)}]);
      process.stdout.write(JSON.stringify([r.unavailable ?? null, r.attrs.get(${JSON.stringify(file)})?.['user.c']?.toString() ?? null, started]));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: path.join(work, 'empty') } });
    expect(JSON.parse(out)).toEqual([null, 'from-c', [path.join(REPO_ROOT, 'dist/bin/builder-xattr')]]);
  });
});

