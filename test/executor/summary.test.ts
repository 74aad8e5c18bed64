// The summary's numbers as counted from the build's events: overlapping work is wall time once, bytes only for finished transfers.
import { describe, expect, it } from 'vitest';
import { Tally } from '../../src/executor/summary.js';
import type { BuildEvent } from '../../src/util/events.js';

describe('build summary tally', () => {
  it('two pulls at once count their wall time once, not twice; a snapshot walk and its compression are one snapshot phase', () => {
    let t = 0;
    const tally = new Tally(() => t);
    const seen: BuildEvent[] = [];
    const emit = tally.wrap((e) => seen.push(e));
    const pull = (id: string, bytes: number, done: boolean): void => emit({ type: 'progress', phase: 'pull', id, bytes, total: 100, done });
    pull('sha256:a', 0, false);
    t = 1000;
    pull('sha256:b', 0, false);
    t = 3000;
    pull('sha256:a', 100, true);
    t = 4000;
    pull('sha256:b', 100, true);
    emit({ type: 'step', status: 'started', step: '[1/2]', instruction: 'RUN x' });
    emit({ type: 'progress', phase: 'snapshot', id: '[1/2]', bytes: 0, done: false });
    t = 4500;
    emit({ type: 'progress', phase: 'snapshot', id: '[1/2]', bytes: 0, done: true });
    emit({ type: 'progress', phase: 'compress', id: '[1/2]', bytes: 50, total: 50, done: false });
    t = 5000;
    emit({ type: 'progress', phase: 'compress', id: '[1/2]', bytes: 0, total: 0, done: true });
    emit({ type: 'step', status: 'finished', step: '[1/2]', instruction: 'RUN x', ms: 1000, layer: { digest: 'sha256:l', size: 1 } });
    emit({ type: 'step', status: 'cached', step: '[2/2]', instruction: 'COPY a /a', layer: { digest: 'sha256:c', size: 1 } });
    // an upload that never finished (a failed push) moves no byte into the count
    emit({ type: 'progress', phase: 'push', id: 'sha256:l', bytes: 10, total: 20, done: false });
    tally.add('push', 700);
    const s = tally.summary({ digest: 'sha256:d', mediaType: 'm', size: 2, layers: 3, pushed: [], seconds: 6 });
    expect(s.phases).toEqual({ pull: 4, steps: 1, snapshot: 1, push: 0.7 });
    expect(s).toMatchObject({ bytesDown: 200, bytesUp: 0, layersBuilt: 1, layersCached: 1 });
    // every event still reaches the renderer
    expect(seen).toHaveLength(12);
  });
});
