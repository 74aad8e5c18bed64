// The registry layer cache end to end: full hits move no layer bytes, a changed COPY rebuilds only what follows, broken entries are rebuilt.
import { readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useFixture } from '../support/fixture.js';
import type { AccessLogEntry, TestRegistry } from '../support/registry.js';
import { skopeoCopy } from '../support/tools.js';
import { registryTags, Workspace } from './helpers.js';

const blobGets = (log: AccessLogEntry[]): AccessLogEntry[] => log.filter((e) => e.method === 'GET' && /\/blobs\/sha256:/.test(e.path));
const uploads = (log: AccessLogEntry[]): AccessLogEntry[] => log.filter((e) => e.method === 'PUT' && e.path.includes('/blobs/uploads/'));
const cachedSteps = (stderr: string): string[] => stderr.split('\n').filter((l) => / \(cached (layer|no change)/.test(l)).map((l) => l.replace(/^builder: /, ''));

describe('registry layer cache (--cache)', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  let dockerfile: string;

  useFixture({ prefix: 'builder-cache-' }, (f) => ({ reg, ws, base } = f));
  beforeAll(async () => {
    dockerfile = [
      `FROM ${base}`,
      'ARG FLAVOUR=plain',
      'COPY a.txt /a.txt',
      'RUN head -c 64 /dev/urandom > /random.bin',
      'WORKDIR /app',
      'COPY b.txt /app/b.txt',
      'RUN cat /app/b.txt /random.bin > /app/both && echo "$FLAVOUR" > /app/flavour',
      'RUN true',
      'CMD ["cat", "/app/b.txt"]',
      '',
    ].join('\n');
  });

  /** A build as on a fresh machine: its own HOME, cache dir and work dir. */
  const fresh = async (name: string, files: Record<string, string>, args: string[]): Promise<{ digest: string; stderr: string; log: AccessLogEntry[] }> => {
    const ctx = await ws.context(name, { Dockerfile: dockerfile, ...files });
    const before = (await reg.accessLog()).length;
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--reproducible', '--cache', ...args], { cache: ws.path(`${name}-cache`), work: ws.path(`${name}-work`) });
    if (r.code !== 0) throw new Error(`build ${name} exited ${r.code}:\n${r.stderr}`);
    return { digest: r.stdout.trim().split('\n').pop()!, stderr: r.stderr, log: (await reg.accessLog()).slice(before) };
  };

  /** The annotations of a cache entry's manifest, read from the registry. */
  const entryAnnotations = async (repo: string, tag: string): Promise<Record<string, string>> => {
    const res = await fetch(`${reg.url}/v2/${repo}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    if (!res.ok) throw new Error(`GET manifest ${repo}:${tag}: ${res.status}`);
    return ((await res.json()) as { annotations?: Record<string, string> }).annotations ?? {};
  };

  it('a rebuild on a clean machine hits every step: same digest, no layer bytes down, no blob uploads', async () => {
    const files = { 'a.txt': 'a\n', 'b.txt': 'b\n' };
    const first = await fresh('full-1', files, ['--destination', `${reg.host}/cache/app:one`]);
    expect(cachedSteps(first.stderr)).toEqual([]);
    // every new layer was uploaded once, to the cache repository; the destination mounted it (and got only its config)
    expect(uploads(first.log).filter((e) => e.path.startsWith('/v2/cache/app/blobs/'))).toHaveLength(1);
    expect(first.log.filter((e) => e.method === 'POST' && e.path.startsWith('/v2/cache/app/blobs/uploads/?mount=') && e.path.includes('from=cache%2Fapp%2Fcache') && e.status === 201)).toHaveLength(5);
    expect(await registryTags(reg, 'cache/app/cache')).toHaveLength(6); // 2 COPY, 3 RUN (one without changes), WORKDIR

    const second = await fresh('full-2', files, ['--destination', `${reg.host}/cache/app:two`]);
    expect(second.digest).toBe(first.digest); // the random bytes came from the cache
    expect(cachedSteps(second.stderr)).toHaveLength(6);
    expect(second.stderr).toContain('6 hits, 0 misses');
    expect(uploads(second.log)).toEqual([]);
    // only the base config is read; no layer of the base or of the cache is downloaded
    expect(blobGets(second.log).map((e) => e.path)).toEqual([expect.stringMatching(/^\/v2\/library\/busybox\/blobs\//)]);
    expect(second.stderr).not.toContain('extracting');
  });

  it('changing the file of a middle COPY keeps earlier steps cached and rebuilds the later ones', async () => {
    await fresh('mid-1', { 'a.txt': 'a\n', 'b.txt': 'b\n' }, ['--destination', `${reg.host}/cache/mid:one`]);
    const changed = await fresh('mid-2', { 'a.txt': 'a\n', 'b.txt': 'B changed\n' }, ['--destination', `${reg.host}/cache/mid:two`]);
    const cached = cachedSteps(changed.stderr).map((l) => l.split(' ')[0]);
    expect(cached).toEqual(['[2/8]', '[3/8]', '[4/8]']); // COPY a.txt, RUN random, WORKDIR
    expect(changed.stderr).toContain('3 hits, 3 misses');
    const root = await ws.unpack(reg, 'cache/mid:two', 'mid');
    expect(await readFile(path.join(root, 'app/b.txt'), 'utf8')).toBe('B changed\n');
    // the RUN after the change saw the cached random bytes: it ran on the cached layers
    const random = await readFile(path.join(root, 'random.bin'));
    expect((await readFile(path.join(root, 'app/both'))).subarray(-64)).toEqual(random);
  });

  it('lookups go on after a miss: a lost entry in the middle is rebuilt and the steps after it still hit', async () => {
    const files = { 'a.txt': 'lost\n', 'b.txt': 'b\n' };
    const first = await fresh('lost-1', files, ['--destination', `${reg.host}/cache/lost:one`]);
    // delete the entry of the WORKDIR step (step 4)
    for (const tag of await registryTags(reg, 'cache/lost/cache')) {
      const res = await fetch(`${reg.url}/v2/cache/lost/cache/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
      const m = (await res.json()) as { annotations: Record<string, string> };
      if (m.annotations['dev.builder.cache.step']?.startsWith('WORKDIR')) {
        const del = await fetch(`${reg.url}/v2/cache/lost/cache/manifests/${res.headers.get('docker-content-digest')}`, { method: 'DELETE' });
        expect(del.status).toBe(202);
      }
    }
    const again = await fresh('lost-2', files, ['--destination', `${reg.host}/cache/lost:two`]);
    expect(again.stderr).toContain('5 hits, 1 miss');
    expect(cachedSteps(again.stderr).map((l) => l.split(' ')[0])).toEqual(['[2/8]', '[3/8]', '[5/8]', '[6/8]', '[7/8]']);
    expect(again.digest).toBe(first.digest);
  });

  it('an unreachable cache repository costs one warning, never the build, and is not asked again', async () => {
    const files = { 'a.txt': 'a\n', 'b.txt': 'unreachable\n' };
    const r = await fresh('down', files, ['--destination', `${reg.host}/cache/down:one`, '--cache-repo', '127.0.0.1:9/nothing/cache']);
    const warnings = r.stderr.split('\n').filter((l) => l.includes('warning: cache'));
    expect(warnings).toEqual([expect.stringMatching(/warning: cache lookup in 127\.0\.0\.1:9\/nothing\/cache failed \(REGISTRY_UNREACHABLE.*skipped for the rest of this build/)]);
    expect(r.stderr).toContain('0 hits, 6 misses, 0 written (skipped after REGISTRY_UNREACHABLE)');
    expect(await registryTags(reg, 'cache/down')).toEqual(['one']);
  });

  it('a build argument in effect is part of the key', async () => {
    const files = { 'a.txt': 'a\n', 'b.txt': 'b\n' };
    await fresh('arg-1', files, ['--destination', `${reg.host}/cache/arg:one`]);
    const other = await fresh('arg-2', files, ['--destination', `${reg.host}/cache/arg:two`, '--build-arg', 'FLAVOUR=spicy']);
    expect(other.stderr).toContain('0 hits, 6 misses');
    const root = await ws.unpack(reg, 'cache/arg:two', 'arg');
    expect(await readFile(path.join(root, 'app/flavour'), 'utf8')).toBe('spicy\n');
  });

  it('an expired entry is ignored with a warning and rebuilt', async () => {
    const files = { 'a.txt': 'expired\n', 'b.txt': 'b\n' };
    await fresh('ttl-1', files, ['--destination', `${reg.host}/cache/ttl:one`]);
    const again = await fresh('ttl-2', files, ['--destination', `${reg.host}/cache/ttl:two`, '--cache-ttl', '1ms']);
    expect(again.stderr).toMatch(/warning: cache entry [0-9a-f]{12} in .* ignored: it expired/);
    expect(again.stderr).toContain('0 hits, 6 misses');
  });

  it('an entry recording another key is ignored with a warning and rebuilt', async () => {
    const files = { 'a.txt': 'mismatch\n', 'b.txt': 'b\n' };
    await fresh('mis-1', files, ['--destination', `${reg.host}/cache/mis:one`]);
    const tags = await registryTags(reg, 'cache/mis/cache');
    // the first step's entry, chosen by the step it records (the tags' sort order is the keys' hash order)
    const first = (await Promise.all(tags.map(async (t) => ({ t, step: (await entryAnnotations('cache/mis/cache', t))['dev.builder.cache.step'] ?? '' }))))
      .filter((e) => e.step.includes('COPY a.txt'));
    expect(first).toHaveLength(1);
    // put the first step's manifest under every other key: that step hits, each later one records another key
    for (const t of tags.filter((x) => x !== first[0]!.t)) await skopeoCopy(`docker://${reg.host}/cache/mis/cache:${first[0]!.t}`, `docker://${reg.host}/cache/mis/cache:${t}`, { reg, extraArgs: ['--preserve-digests'] });
    const again = await fresh('mis-2', files, ['--destination', `${reg.host}/cache/mis:two`, '--no-push-cache']);
    expect(again.stderr).toMatch(/ignored: it records key [0-9a-f]{64}/);
    expect(again.stderr).toContain('1 hit, 5 misses');
  });

  it('--cache-repo oci:DIR keeps entries in a local layout', async () => {
    const files = { 'a.txt': 'oci\n', 'b.txt': 'b\n' };
    const dir = ws.path('oci-cache');
    const one = await fresh('oci-1', files, ['--destination', `${reg.host}/cache/oci:one`, '--cache-repo', `oci:${dir}`]);
    const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: unknown[] };
    expect(index.manifests).toHaveLength(6);
    const two = await fresh('oci-2', files, ['--destination', `${reg.host}/cache/oci:two`, '--cache-repo', `oci:${dir}`]);
    expect(two.digest).toBe(one.digest);
    expect(two.stderr).toContain('6 hits, 0 misses');
  });

  it('multi-stage: COPY --from a stage keys on that stage\'s key; a full hit extracts no stage', async () => {
    const ctx = await ws.context('multi', {
      Dockerfile: `FROM ${base} AS build\nCOPY src.txt /src.txt\nRUN tr a-z A-Z < /src.txt > /out.txt\nFROM ${base}\nCOPY --from=build /out.txt /out.txt\nRUN cat /out.txt > /copy.txt\n`,
      'src.txt': 'hello\n',
    });
    const build = async (n: number, src: string) => {
      await ws.context('multi', { 'src.txt': src });
      const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--reproducible', '--cache', '--destination', `${reg.host}/cache/multi:${n}`], { cache: ws.path(`multi-cache-${n}`), work: ws.path(`multi-work-${n}`) });
      if (r.code !== 0) throw new Error(r.stderr);
      return r;
    };
    await build(1, 'hello\n');
    const hit = await build(2, 'hello\n');
    expect(hit.stderr).toContain('4 hits, 0 misses');
    expect(hit.stderr).not.toContain('extracting');
    const changed = await build(3, 'changed\n');
    expect(changed.stderr).toContain('0 hits, 4 misses'); // the stage's new key reaches the COPY --from and what follows
    const root = await ws.unpack(reg, 'cache/multi:3', 'multi');
    expect(await readFile(path.join(root, 'copy.txt'), 'utf8')).toBe('CHANGED\n');
  });

  it('builder cache prune deletes entries older than --older-than (and --dry-run deletes nothing)', async () => {
    const files = { 'a.txt': 'prune\n', 'b.txt': 'b\n' };
    await fresh('prune-1', files, ['--destination', `${reg.host}/cache/prune:one`]);
    const repo = `${reg.host}/cache/prune/cache`;
    const keys = await registryTags(reg, 'cache/prune/cache');
    expect(keys).toHaveLength(6);
    const prune = async (...args: string[]) => {
      const r = await ws.cli(['cache', 'prune', '--cache-repo', repo, ...args]);
      if (r.code !== 0) throw new Error(`prune exited ${r.code}: ${r.stderr}`);
      return r;
    };
    const young = await prune('--older-than', '1000h');
    expect(young.stdout).toBe('');
    expect(young.stderr).toContain('deleted 0, kept 6');
    const dry = await prune('--older-than', '1ms', '--dry-run');
    expect(dry.stdout.trim().split('\n').map((l) => l.split(' ')[0]).sort()).toEqual([...keys].sort());
    expect(await registryTags(reg, 'cache/prune/cache')).toHaveLength(6);
    await prune('--older-than', '1ms');
    expect(await registryTags(reg, 'cache/prune/cache')).toEqual([]);
    // the image built from those entries is untouched
    expect(await registryTags(reg, 'cache/prune')).toEqual(['one']);
  });

  it('on the same machine, a context file rewritten to the same size and touched back to its mtime misses (its ctime changed)', async () => {
    const ctx = await ws.context('same-machine', { Dockerfile: `FROM ${base}\nCOPY a.txt /a.txt\n`, 'a.txt': 'aaaa\n' });
    const file = path.join(ctx, 'a.txt');
    const old = new Date('2020-01-01T00:00:00Z');
    await utimes(file, old, old);
    await sleep(2100); // past the racy window: the first build remembers the file's hash
    const args = ['--run-mode', 'sandbox', '--cache', '--cache-repo', `${reg.host}/cache/same-machine`, '--no-push'];
    const build = async (): Promise<string> => {
      const r = await ws.build(ctx, args, { cache: ws.path('same-machine-cache') });
      if (r.code !== 0) throw new Error(r.stderr);
      return r.stderr;
    };
    expect(cachedSteps(await build())).toEqual([]);
    expect((await readdir(ws.path('same-machine-cache', 'file-hashes'))).length).toBe(1);
    expect(cachedSteps(await build())).toHaveLength(1); // unchanged: a hit, from the remembered hash
    await writeFile(file, 'bbbb\n');
    await utimes(file, old, old);
    expect(cachedSteps(await build())).toEqual([]);
  });

  /** What the Dockerfile's RUNs promise of any image it builds: /app/both ends with the bytes of /random.bin. */
  const consistent = async (ref: string, name: string): Promise<boolean> => {
    const root = await ws.unpack(reg, ref, name);
    const random = await readFile(path.join(root, 'random.bin'));
    return (await readFile(path.join(root, 'app/both'))).subarray(-64).equals(random);
  };

  it('two builds writing the same keys at once both succeed and leave entries a third build can use', async () => {
    const files = { 'a.txt': 'race\n', 'b.txt': 'b\n' };
    const [x, y] = await Promise.all([
      fresh('race-1', files, ['--destination', `${reg.host}/cache/race:one`]),
      fresh('race-2', files, ['--destination', `${reg.host}/cache/race:two`]),
    ]);
    expect(x.digest).toMatch(/^sha256:/);
    expect(y.digest).toMatch(/^sha256:/);
    await fresh('race-3', files, ['--destination', `${reg.host}/cache/race:three`]);
    expect(await consistent('cache/race:three', 'race-3')).toBe(true);
  });

  it('a hit never stacks a layer on other layers than it was built on (a non-reproducible RUN rewritten below it)', async () => {
    const files = { 'a.txt': 'mixed\n', 'b.txt': 'b\n' };
    const x = await fresh('mix-x', files, ['--destination', `${reg.host}/cache/mix:x`, '--cache-repo', `${reg.host}/cache/mix/cx`]);
    await fresh('mix-y', files, ['--destination', `${reg.host}/cache/mix:y`, '--cache-repo', `${reg.host}/cache/mix/cy`]);
    // y's entry for the RUN writing random bytes replaces x's, as a concurrent build of the same keys would
    const tags = await registryTags(reg, 'cache/mix/cx');
    let replaced = 0;
    for (const tag of tags) {
      const res = await fetch(`${reg.url}/v2/cache/mix/cy/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
      const m = (await res.json()) as { annotations: Record<string, string> };
      if (!m.annotations['dev.builder.cache.step']?.includes('/dev/urandom')) continue;
      await skopeoCopy(`docker://${reg.host}/cache/mix/cy:${tag}`, `docker://${reg.host}/cache/mix/cx:${tag}`, { reg, extraArgs: ['--preserve-digests'] });
      replaced++;
    }
    expect(replaced).toBe(1);
    const third = await fresh('mix-3', files, ['--destination', `${reg.host}/cache/mix:three`, '--cache-repo', `${reg.host}/cache/mix/cx`, '--no-push-cache']);
    expect(await consistent('cache/mix:three', 'mix-3')).toBe(true);
    expect(third.digest).not.toBe(x.digest);
    // COPY a.txt and y's RUN hit; x's WORKDIR entry was built on x's RUN layer: it and every later step are rebuilt
    expect(cachedSteps(third.stderr).map((l) => l.split(' ')[0])).toEqual(['[2/8]', '[3/8]']);
    expect(third.stderr).toMatch(/warning: cache entry [0-9a-f]{12} in .*cache\/mix\/cx was built on other layers/);
    expect(third.stderr).toContain('2 hits, 4 misses');
  });
});
