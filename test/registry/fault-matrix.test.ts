// Faults x operations through the CLI: every injected fault ends in a good image or in exit 1 with a typed error and no tag.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { registryTags, ROOT, Workspace, type CliResult } from '../executor/helpers.js';
import { FAULT_KINDS, startFaultProxy, type FaultKind, type FaultProxy, type FaultRule } from '../support/fault-proxy.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { run, RunError, skopeoCopy, umociUnpack } from '../support/tools.js';

type Operation = 'manifest-get' | 'config-get' | 'layer-get' | 'blob-put' | 'blob-patch' | 'manifest-put';
const OPERATIONS: readonly Operation[] = ['manifest-get', 'config-get', 'layer-get', 'blob-put', 'blob-patch', 'manifest-put'];

/** Faults that only exist for a response with a body: the upload operations answer with none. */
const BODY_ONLY: readonly FaultKind[] = ['truncate', 'short-length'];

function applies(fault: FaultKind, op: Operation): boolean {
  return op === 'manifest-get' || op === 'config-get' || op === 'layer-get' || !BODY_ONLY.includes(fault);
}

// short waits so the matrix stays fast; the stall timeout is what a "stall" costs each time it fires
const FAST_ENV = {
  BUILDER_RETRY_BASE_MS: '20',
  BUILDER_RETRY_MAX_MS: '200',
  BUILDER_RETRY_AFTER_MAX_MS: '1500',
  BUILDER_REGISTRY_STALL_TIMEOUT_MS: '2000',
};
const CHUNK = 64 * 1024;

interface Cell {
  fault: FaultKind;
  op: Operation;
  /** Every matching request fails (the budget runs out) instead of only the first. */
  persistent?: boolean;
  /** CLI flags for this cell. */
  args?: string[];
}

interface Outcome {
  cell: Cell;
  result: CliResult;
  fired: number;
  tags: string[];
  corrupt?: string;
}

describe('fault matrix: builds through a fault-injecting proxy', () => {
  let reg: TestRegistry;
  let proxy: FaultProxy;
  let ws: Workspace;
  let ctx: string;
  let data: Buffer;
  let baseManifest: Buffer;
  let baseMediaType: string;
  let configDigest: string;
  let layerDigest: string;
  const unpacked = new Map<string, Promise<Buffer>>();

  useFixture({ prefix: 'builder-faults-', repo: 'faults/base', tag: 'v1' }, (f) => ({ reg, ws } = f));
  beforeAll(async () => {
    proxy = await startFaultProxy(reg.url);
    const res = await fetch(`${reg.url}/v2/faults/base/manifests/v1`, { headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
    baseManifest = Buffer.from(await res.arrayBuffer());
    baseMediaType = res.headers.get('content-type') ?? '';
    const m = JSON.parse(baseManifest.toString('utf8')) as { config: { digest: string }; layers: Array<{ digest: string }> };
    configDigest = m.config.digest;
    layerDigest = m.layers[0]!.digest;
    // incompressible, several chunks long: the new layer goes up in PATCH chunks when BUILDER_UPLOAD_CHUNK_SIZE is small
    data = randomBytes(4 * CHUNK + 1234);
    ctx = await ws.context('ctx', { Dockerfile: 'ARG BASE\nFROM $BASE\nCOPY data.bin /data.bin\n' });
    await writeFile(path.join(ctx, 'data.bin'), data);
  });
  afterAll(async () => {
    await proxy?.close();
  });

  /** A repository holding the base image, made by mounting its blobs (no proxy, no faults). */
  async function seedBase(repo: string): Promise<void> {
    for (const d of [configDigest, layerDigest]) {
      const r = await fetch(`${reg.url}/v2/${repo}/blobs/uploads/?mount=${d}&from=faults/base`, { method: 'POST' });
      if (r.status !== 201) throw new Error(`mount ${d} into ${repo}: ${r.status}`);
    }
    const r = await fetch(`${reg.url}/v2/${repo}/manifests/v1`, { method: 'PUT', headers: { 'content-type': baseMediaType }, body: baseManifest });
    if (r.status !== 201) throw new Error(`seed manifest ${repo}: ${r.status}`);
  }

  function ruleFor(cell: Cell, baseRepo: string, dstRepo: string): FaultRule {
    const times = cell.persistent ? Infinity : 1;
    const at = (method: string, p: RegExp, nth = 1): FaultRule => ({ method, path: p, fault: cell.fault, nth, times });
    switch (cell.op) {
      case 'manifest-get': return at('GET', new RegExp(`^/v2/${baseRepo}/manifests/`));
      case 'config-get': return at('GET', new RegExp(`^/v2/${baseRepo}/blobs/${configDigest}`));
      case 'layer-get': return at('GET', new RegExp(`^/v2/${baseRepo}/blobs/${layerDigest}`));
      case 'blob-put': return at('PUT', new RegExp(`^/v2/${dstRepo}/blobs/uploads/`));
      // the second chunk: the session already holds bytes when it breaks
      case 'blob-patch': return at('PATCH', new RegExp(`^/v2/${dstRepo}/blobs/uploads/`), 2);
      case 'manifest-put': return at('PUT', new RegExp(`^/v2/${dstRepo}/manifests/`));
    }
  }

  async function runCell(cell: Cell, i: number, extraArgs: string[] = []): Promise<Outcome> {
    const name = `${i}-${cell.op}-${cell.fault}`;
    const baseRepo = `faults/base-${i}`;
    const dstRepo = `faults/dst-${i}`;
    await seedBase(baseRepo);
    const fired = proxy.add(ruleFor(cell, baseRepo, dstRepo));
    const result = await ws.build(ctx, [
      '--build-arg', `BASE=${proxy.host}/${baseRepo}:v1`, '--destination', `${proxy.host}/${dstRepo}:v1`,
      '--run-mode', 'sandbox', '--reproducible', ...extraArgs, ...(cell.args ?? []),
    ], {
      cache: ws.path(`cache-${i}`), work: ws.path(`work-${i}`),
      env: { ...FAST_ENV, ...(cell.op === 'blob-patch' ? { BUILDER_UPLOAD_CHUNK_SIZE: String(CHUNK) } : {}) },
    });
    const tags = await registryTags(reg, dstRepo);
    const out: Outcome = { cell, result, fired: fired(), tags };
    if (tags.length > 0) out.corrupt = await checkImage(dstRepo, name);
    return out;
  }

  /** undefined when skopeo copies the pushed image (every blob there, digests right) and umoci unpacks it with our file in it. */
  async function checkImage(repo: string, name: string): Promise<string | undefined> {
    const layout = ws.path(`layout-${name}`);
    try {
      await skopeoCopy(`docker://${reg.host}/${repo}:v1`, `oci:${layout}:img`, { reg });
      const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
      const digest = index.manifests[0]!.digest;
      // equal digests were checked blob by blob by skopeo: unpack each distinct image once
      let p = unpacked.get(digest);
      if (!p) {
        p = umociUnpack(layout, 'img', ws.path(`bundle-${name}`)).then((root) => readFile(path.join(root, 'data.bin')));
        unpacked.set(digest, p);
      }
      const got = await p;
      return got.equals(data) ? undefined : 'data.bin differs';
    } catch (err) {
      return (err as Error).message.split('\n')[0];
    }
  }

  /** What is wrong with an outcome, or undefined: a good image, or exit 1 with a typed error and no tag. */
  function verdict(o: Outcome, mustSucceed: boolean): string | undefined {
    const { code, stderr } = o.result;
    if (o.fired === 0) return 'the fault never fired (the operation did not happen?)';
    if (/internal error|Unhandled|uncaught/i.test(stderr)) return `crashed: ${stderr.slice(-3000)}`;
    if (code === 0) {
      if (o.tags.join() !== 'v1') return `exit 0 but tags are [${o.tags.join()}]`;
      if (o.corrupt) return `CORRUPT image: ${o.corrupt}`;
      // the fault was met by the retry policy (each retry is one stderr line), not slipped past
      if (!/^builder: warning: retrying .* after [A-Z_]+ in \d+ms \(retry \d+ of \d+\)$/m.test(stderr)) return `recovered without a logged retry: ${stderr.slice(-400)}`;
      return undefined;
    }
    if (o.tags.length > 0) return `exit ${code} but the tag was pushed${o.corrupt ? ` (and is corrupt: ${o.corrupt})` : ''}`;
    if (code !== 1) return `exit ${code}: ${stderr.slice(-400)}`;
    if (!/builder: error [A-Z][A-Z0-9_]+: /.test(stderr)) return `exit 1 without a typed error: ${stderr.slice(-400)}`;
    if (mustSucceed) return `failed although one retry recovers: ${stderr.split('\n').filter((l) => l.includes('error')).join(' | ')}`;
    return undefined;
  }

  async function runAll(cells: Cell[], first: number, extraArgs: string[] = []): Promise<Outcome[]> {
    const out: Outcome[] = new Array(cells.length);
    let next = 0;
    // four builds at a time: much of a cell is waiting (Retry-After, stall timeouts)
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < cells.length) {
        const i = next++;
        out[i] = await runCell(cells[i]!, first + i, extraArgs);
      }
    }));
    return out;
  }

  it('every fault once in every operation: recovered, with a valid image; 0 corrupt images', async () => {
    const cells: Cell[] = [];
    for (const op of OPERATIONS) for (const fault of FAULT_KINDS) if (applies(fault, op)) cells.push({ fault, op });
    const outcomes = await runAll(cells, 1);
    const problems = outcomes.flatMap((o) => {
      // one fault, then a clean registry: every cell must recover
      const v = verdict(o, true);
      return v ? [`${o.cell.op} × ${o.cell.fault}: ${v}`] : [];
    });
    const corrupt = outcomes.filter((o) => o.corrupt).length;
    const failed = outcomes.filter((o) => o.result.code !== 0).map((o) => `${o.cell.op} × ${o.cell.fault}`);
    console.log(`${FAULT_KINDS.length} faults × ${OPERATIONS.length} operations, ${corrupt} corrupt images`
      + ` (${cells.length} cells apply: ${cells.length - failed.length} recovered, ${failed.length} failed typed: ${failed.join(', ') || 'none'})`);
    expect(problems).toEqual([]);
    expect(corrupt).toBe(0);
  }, 300_000); // ~40 s on an idle 2-core machine; shared CI machines are slower

  it('a fault that persists past the budget: exit 1 with the typed error, no tag, 0 corrupt images', async () => {
    const cases: Array<[Cell, string]> = [
      [{ op: 'layer-get', fault: 'reset-body', persistent: true }, 'REGISTRY_INTERRUPTED'],
      [{ op: 'manifest-get', fault: 'stall', persistent: true }, 'REGISTRY_TIMEOUT'],
      [{ op: 'config-get', fault: 'status-502', persistent: true }, 'REGISTRY_SERVER_ERROR'],
      [{ op: 'blob-put', fault: '429-seconds', persistent: true }, 'REGISTRY_TOO_MANY_REQUESTS'],
      [{ op: 'blob-patch', fault: 'reset-request', persistent: true }, 'REGISTRY_'],
      [{ op: 'manifest-put', fault: 'status-503', persistent: true }, 'REGISTRY_SERVER_ERROR'],
    ];
    const outcomes = await runAll(cases.map(([c]) => c), 1000, ['--push-retry', '1', '--image-download-retry', '1']);
    const problems = outcomes.flatMap((o, i) => {
      const v = verdict(o, false) ?? (o.result.code === 0 ? 'succeeded although every attempt failed' : undefined)
        ?? (o.result.stderr.includes(`builder: error ${cases[i]![1]}`) ? undefined : `expected ${cases[i]![1]}: ${o.result.stderr.slice(-300)}`);
      return v ? [`${o.cell.op} × ${o.cell.fault} (always): ${v}`] : [];
    });
    expect(problems).toEqual([]);
    expect(outcomes.filter((o) => o.corrupt)).toEqual([]);
  });

  it('--push-retry 0 / --image-download-retry 0 turn retries off, each for its own side only', async () => {
    const cases: Array<[Cell, string | undefined]> = [
      [{ op: 'manifest-put', fault: 'status-503', args: ['--push-retry', '0'] }, 'REGISTRY_SERVER_ERROR'],
      [{ op: 'manifest-get', fault: 'status-503', args: ['--push-retry', '0'] }, undefined],
      [{ op: 'layer-get', fault: 'reset-body', args: ['--image-download-retry', '0'] }, 'REGISTRY_INTERRUPTED'],
      [{ op: 'blob-put', fault: 'status-503', args: ['--image-download-retry', '0'] }, undefined],
    ];
    const outcomes = await runAll(cases.map(([c]) => c), 2000);
    const problems = outcomes.flatMap((o, i) => {
      const want = cases[i]![1];
      const v = verdict(o, want === undefined)
        ?? (want && o.result.code === 0 ? 'succeeded although retries were off' : undefined)
        ?? (want && !o.result.stderr.includes(`builder: error ${want}`) ? `expected ${want}: ${o.result.stderr.slice(-300)}` : undefined);
      return v ? [`${o.cell.op} × ${o.cell.fault} ${o.cell.args!.join(' ')}: ${v}`] : [];
    });
    expect(problems).toEqual([]);
  });

  it('builder copy registry -> registry through faults on both sides lands a valid image', async () => {
    const baseRepo = 'faults/copy-src';
    const dstRepo = 'faults/copy-dst';
    await seedBase(baseRepo);
    // a second proxy makes the destination another registry to the client: blobs travel instead of being mounted
    const out = await startFaultProxy(reg.url);
    onTestFinished(() => out.close());
    const fired = [
      proxy.add({ method: 'GET', path: new RegExp(`^/v2/${baseRepo}/manifests/`), fault: 'truncate' }),
      proxy.add({ method: 'GET', path: new RegExp(`^/v2/${baseRepo}/blobs/${layerDigest}`), fault: 'reset-body' }),
      proxy.add({ method: 'GET', path: new RegExp(`^/v2/${baseRepo}/blobs/${layerDigest}`), fault: 'stall', nth: 2 }),
      out.add({ method: 'PUT', path: new RegExp(`^/v2/${dstRepo}/blobs/uploads/`), fault: '429-date' }),
      out.add({ method: 'PATCH', path: new RegExp(`^/v2/${dstRepo}/blobs/uploads/`), fault: 'reset-request', nth: 3 }),
      out.add({ method: 'PUT', path: new RegExp(`^/v2/${dstRepo}/manifests/`), fault: 'reset-body' }),
    ];
    const r = await run('node', [path.join(ROOT, 'bin/builder'), 'copy', `${proxy.host}/${baseRepo}:v1`, `${out.host}/${dstRepo}:v1`], {
      cwd: ws.dir, env: { ...ws.env, ...FAST_ENV, BUILDER_UPLOAD_CHUNK_SIZE: String(4 * CHUNK) },
    }).then((x) => ({ code: 0, ...x }), (e: unknown) => {
      if (e instanceof RunError) return { code: e.exitCode, stdout: e.stdout, stderr: e.stderr };
      throw e;
    });
    expect(r.code, r.stderr).toBe(0);
    expect(fired.map((f) => f())).toEqual([1, 1, 1, 1, 1, 1]);
    // the copy keeps the digest; skopeo copies it out and umoci unpacks it
    expect(r.stdout.trim()).toBe(`sha256:${(await import('node:crypto')).createHash('sha256').update(baseManifest).digest('hex')}`);
    const layout = ws.path('layout-copy');
    await skopeoCopy(`docker://${reg.host}/${dstRepo}:v1`, `oci:${layout}:img`, { reg });
    const root = await umociUnpack(layout, 'img', ws.path('bundle-copy'));
    expect((await readFile(path.join(root, 'bin/busybox'))).length).toBeGreaterThan(100_000);
  });

  it('refuses a retry budget that is not a count, naming the flag', async () => {
    const r = await run('node', [path.join(ROOT, 'bin/builder'), 'digest', `${proxy.host}/faults/base:v1`, '--push-retry', 'many'], { cwd: ws.dir, env: ws.env })
      .then(() => undefined, (e: unknown) => e as RunError);
    expect(r?.exitCode).toBe(1);
    expect(r?.stderr).toContain('FLAG_INVALID: --push-retry=many');
  });
});
