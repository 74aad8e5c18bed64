// Issue 18 item 4: a cache entry whose layer is not what it records is ignored with a warning and rebuilt, whether every
// step hits (caught from the manifest alone) or a later step needs the root (caught while extracting), and no later
// build is poisoned by it; what is pushed unpacks with umoci, without the swapped-in files.
import { execFileSync } from 'node:child_process';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sha256 } from '../../src/digest/index.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { registryTags, Workspace } from './helpers.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface EntryManifest {
  layers: Array<{ mediaType: string; digest: string; size: number }>;
  annotations: Record<string, string>;
}

describe('corrupt cache entries (--cache)', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;

  useFixture({ prefix: 'builder-cache-corrupt-' }, (f) => ({ reg, ws, base } = f));

  const dockerfile = (extra: string[] = []): string => [
    `FROM ${base}`, 'COPY a.txt /a.txt', 'RUN echo one > /one.txt', 'COPY b.txt /b.txt', 'RUN cat /a.txt /b.txt > /both.txt', ...extra, '',
  ].join('\n');

  const build = async (name: string, repo: string, df: string): Promise<{ stderr: string }> => {
    const ctx = await ws.context(name, { Dockerfile: df, 'a.txt': `a ${repo}\n`, 'b.txt': `b ${repo}\n` });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--reproducible', '--cache', '--destination', `${reg.host}/${repo}:${name}`],
      { cache: ws.path(`${name}-cache`), work: ws.path(`${name}-work`) });
    if (r.code !== 0) throw new Error(`build ${name} exited ${r.code}:\n${r.stderr}`);
    return { stderr: r.stderr };
  };

  const manifest = async (repo: string, tag: string): Promise<EntryManifest> => {
    const res = await fetch(`${reg.url}/v2/${repo}/manifests/${tag}`, { headers: { accept: OCI_MANIFEST } });
    if (!res.ok) throw new Error(`GET ${repo}:${tag}: ${res.status}`);
    return (await res.json()) as EntryManifest;
  };

  /** The tag of the entry recording `step` (picked by step, never by the tags' order). */
  const entryFor = async (repo: string, step: RegExp): Promise<string> => {
    const found: string[] = [];
    for (const t of await registryTags(reg, repo)) if (step.test((await manifest(repo, t)).annotations['dev.builder.cache.step'] ?? '')) found.push(t);
    expect(found).toHaveLength(1);
    return found[0]!;
  };

  /** Uploads a gzip layer holding /evil.txt into repo; returns its descriptor. */
  const evilBlob = async (repo: string): Promise<{ digest: string; size: number }> => {
    const dir = ws.path(`evil-${repo.replace(/\//g, '-')}`);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'evil.txt'), 'swapped in\n');
    const bytes = execFileSync('tar', ['-C', dir, '-czf', '-', 'evil.txt']);
    const digest = sha256(bytes);
    const start = await fetch(`${reg.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    const loc = new URL(start.headers.get('location')!, reg.url);
    loc.searchParams.set('digest', digest);
    const put = await fetch(loc, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
    expect(put.status).toBe(201);
    return { digest, size: bytes.length };
  };

  const putManifest = async (repo: string, tag: string, m: EntryManifest): Promise<void> => {
    const res = await fetch(`${reg.url}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: JSON.stringify(m), headers: { 'content-type': OCI_MANIFEST } });
    expect(res.status).toBe(201);
  };

  const unpacked = async (ref: string, name: string): Promise<string> => ws.unpack(reg, ref, name);
  const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

  it('a layer descriptor pointing at another blob (diff-id unchanged): ignored when every step hits and with one more step; both images unpack without the swapped-in file', async () => {
    await build('one', 'corrupt/swap', dockerfile());
    const cache = 'corrupt/swap/cache';
    const tag = await entryFor(cache, /COPY b\.txt/);
    const m = await manifest(cache, tag);
    const evil = await evilBlob(cache);
    m.layers[0] = { ...m.layers[0]!, ...evil };
    await putManifest(cache, tag, m);

    const all = await build('two', 'corrupt/swap', dockerfile());
    expect(all.stderr).toMatch(new RegExp(`cache entry ${tag.slice(0, 12)} in .* ignored: its layer descriptor points at ${evil.digest}`));
    expect(all.stderr).toContain('3 hits, 1 miss');
    const root2 = await unpacked('corrupt/swap:two', 'swap-two');
    expect(await exists(path.join(root2, 'evil.txt'))).toBe(false);
    expect(await readFile(path.join(root2, 'b.txt'), 'utf8')).toBe('b corrupt/swap\n');

    // the rebuilt entry replaced the swapped one: corrupt it again for the build with one more step
    const again = await manifest(cache, tag);
    again.layers[0] = { ...again.layers[0]!, ...evil };
    await putManifest(cache, tag, again);
    const more = await build('three', 'corrupt/swap', dockerfile(['RUN echo more > /more.txt']));
    expect(more.stderr).toMatch(/ignored: its layer descriptor points at/);
    const root3 = await unpacked('corrupt/swap:three', 'swap-three');
    expect(await exists(path.join(root3, 'evil.txt'))).toBe(false);
    expect(await readFile(path.join(root3, 'more.txt'), 'utf8')).toBe('more\n');
  });

  it('an entry whose layer and its record were both swapped is caught while extracting: that build rebuilds the stage, no later build fails', async () => {
    await build('one', 'corrupt/deep', dockerfile());
    const cache = 'corrupt/deep/cache';
    const tag = await entryFor(cache, /COPY b\.txt/);
    const m = await manifest(cache, tag);
    const evil = await evilBlob(cache);
    // well-formed except for the diff-id, which still names the old layer's content: only reading the layer tells
    m.layers[0] = { ...m.layers[0]!, ...evil };
    m.annotations['dev.builder.cache.layer'] = evil.digest;
    await putManifest(cache, tag, m);

    const more = await build('two', 'corrupt/deep', dockerfile(['RUN echo more > /more.txt']));
    expect(more.stderr).toMatch(new RegExp(`cache entry ${tag.slice(0, 12)} in .* ignored: its layer is not what the entry records \\(ROOTFS_LAYER_DIFF_ID_MISMATCH`));
    const root2 = await unpacked('corrupt/deep:two', 'deep-two');
    expect(await exists(path.join(root2, 'evil.txt'))).toBe(false);
    expect(await readFile(path.join(root2, 'both.txt'), 'utf8')).toBe('a corrupt/deep\nb corrupt/deep\n');

    // the entry was rewritten by the rebuild: the next builds hit it and push a sound image
    const m2 = await manifest(cache, tag);
    expect(m2.layers[0]!.digest).not.toBe(evil.digest);
    const next = await build('three', 'corrupt/deep', dockerfile(['RUN echo more > /more.txt']));
    expect(next.stderr).not.toContain('ignored');
    expect(next.stderr).toContain('5 hits, 0 misses');
    const root3 = await unpacked('corrupt/deep:three', 'deep-three');
    expect(await exists(path.join(root3, 'evil.txt'))).toBe(false);
  });
});
