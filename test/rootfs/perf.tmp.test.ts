import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { it } from 'vitest';
import { extractLayer, RootFs } from '../../src/rootfs/index.js';
it('perf', async () => {
  for (const f of ['/tmp/perfsrc/layer.tar', '/tmp/perfsrc/layer.tar.gz']) {
    const root = mkdtempSync('/tmp/perfsrc/out-');
    const before = process.memoryUsage().rss; let peak = before;
    const t = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const t0 = performance.now();
    const r = await extractLayer(new RootFs(root), createReadStream(f));
    const ms = performance.now() - t0; clearInterval(t);
    console.log(f, r.entries, 'entries', (ms/1000).toFixed(2), 's', (r.bytes/1048576/(ms/1000)).toFixed(0), 'MiB/s', (r.entries/(ms/1000)).toFixed(0), 'entries/s', 'rss+', ((peak-before)/1048576).toFixed(1));
    rmSync(root, { recursive: true, force: true });
  }
}, 300000);
