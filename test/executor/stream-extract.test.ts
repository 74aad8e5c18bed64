// A base layer is extracted as it downloads: bytes that fail the layer's digest never stay in the root, and a download
// that breaks off is finished and the layer applied again from the verified copy.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { gz, makeTar } from '../rootfs/tar-helpers.js';
import type { Workspace } from './helpers.js';

// The 1st blob GET of the base is its config (resolved first); the 2nd its one layer.
const LAYER_GET = { method: 'GET', path: /\/library\/busybox\/blobs\/sha256:/, nth: 2 } as const;

describe('base layers extracted while they download', () => {
  let reg: TestRegistry;
  let ws: Workspace;

  useFixture({}, (f) => ({ reg, ws } = f));

  async function withProxy(run: (proxy: FaultProxy) => Promise<void>): Promise<void> {
    const proxy = await startFaultProxy(reg.url);
    try {
      await run(proxy);
    } finally {
      await proxy.close();
    }
  }

  const layerGets = (proxy: FaultProxy): number => proxy.log().filter((e) => e.method === 'GET' && /\/library\/busybox\/blobs\//.test(e.path)).length;

  it('a body that is another valid layer (a file /evil) is extracted, fails the digest, and nothing of it stays: the layer is applied again from the verified download', async () => {
    await withProxy(async (proxy) => {
      const evil = gz(await makeTar([{ name: 'evil', content: 'not from this layer\n' }, { name: 'bin/busybox', content: 'not busybox\n', mode: 0o755 }]));
      const fired = proxy.add({ ...LAYER_GET, fault: 'substitute-body', body: evil });
      const ctx = await ws.context('substituted', { Dockerfile: `FROM ${proxy.host}/library/busybox:latest\nRUN test ! -e /evil && /bin/busybox true && echo clean > /clean\n` });
      const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--insecure-registry', proxy.host, '--destination', `${reg.host}/stream/substituted:1`], { cache: ws.path('cache-substituted') });
      expect(r.stderr).toContain('extracting 1 layer (1 downloaded, 0 from the local store)');
      expect(r.code, r.stderr).toBe(0);
      expect(fired()).toBe(1);
      // the config, the substituted body, then the real layer (after a resume from where the short body ended)
      expect(layerGets(proxy)).toBeGreaterThanOrEqual(3);
      const root = await ws.unpack(reg, 'stream/substituted:1', 'substituted');
      expect(await readFile(path.join(root, 'clean'), 'utf8')).toBe('clean\n');
      await expect(readFile(path.join(root, 'evil'))).rejects.toThrow(/ENOENT/);
      expect((await readFile(path.join(root, 'bin/busybox'))).length).toBeGreaterThan(100_000);
    });
  });

  it('a download reset halfway is retried and the whole layer applied', async () => {
    await withProxy(async (proxy) => {
      const fired = proxy.add({ ...LAYER_GET, fault: 'reset-body' });
      const ctx = await ws.context('reset', { Dockerfile: `FROM ${proxy.host}/library/busybox:latest\nRUN /bin/busybox --list | wc -l > /applets\n` });
      const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--insecure-registry', proxy.host, '--destination', `${reg.host}/stream/reset:1`], { cache: ws.path('cache-reset') });
      expect(r.code, r.stderr).toBe(0);
      expect(fired()).toBe(1);
      const root = await ws.unpack(reg, 'stream/reset:1', 'reset');
      const base = await ws.unpack(reg, 'library/busybox:latest', 'reset-base');
      expect(await readFile(path.join(root, 'bin/busybox'))).toEqual(await readFile(path.join(base, 'bin/busybox')));
      expect(Number((await readFile(path.join(root, 'applets'), 'utf8')).trim())).toBeGreaterThan(100);
    });
  });

  it('extraction starts while the layer is still downloading: its first entries are in the root before the second half of its bytes is sent', async () => {
    await withProxy(async (proxy) => {
      let release!: (by: 'extracted' | 'timer') => void;
      const released = new Promise<'extracted' | 'timer'>((resolve) => (release = resolve));
      proxy.add({ ...LAYER_GET, fault: 'hold-body', hold: released.then(() => undefined) });
      const cache = ws.path('cache-held');
      // the base is extracted into a temp dir of the extracted-base store; without streaming nothing lands there while the bytes are held
      const extracted = async (): Promise<boolean> => {
        const store = path.join(cache, 'rootfs-store', 'v1');
        const temps = (await readdir(store).catch(() => [] as string[])).filter((n) => n.startsWith('.tmp-'));
        for (const t of temps) if ((await readdir(path.join(store, t, 'root')).catch(() => [] as string[])).length > 0) return true;
        return false;
      };
      const poll = setInterval(() => void extracted().then((yes) => yes && release('extracted')), 25);
      const timer = setTimeout(() => release('timer'), 20_000); // lets a build that does not stream end, and the test fail
      try {
        const ctx = await ws.context('held', { Dockerfile: `FROM ${proxy.host}/library/busybox:latest\nRUN true\n` });
        const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--insecure-registry', proxy.host, '--no-push'], { cache });
        expect(r.code, r.stderr).toBe(0);
        expect(await released).toBe('extracted');
      } finally {
        clearInterval(poll);
        clearTimeout(timer);
      }
    });
  });
});
