// The final summary's numbers, counted from the build's own events as they pass through (no second bookkeeping in the steps).
import type { BuildEvent, BuildSummary, EventSink, PhaseTimes } from '../util/events.js';

type Timed = keyof PhaseTimes;

export class Tally {
  readonly phases: PhaseTimes = { pull: 0, steps: 0, snapshot: 0, push: 0 };
  layersBuilt = 0;
  layersCached = 0;
  bytesDown = 0;
  bytesUp = 0;
  /** Per phase: what runs now and since when the phase has been busy (overlapping work counts once). */
  private readonly active: Record<Timed, { ids: Set<string>; since: number }> = {
    pull: { ids: new Set(), since: 0 }, steps: { ids: new Set(), since: 0 }, snapshot: { ids: new Set(), since: 0 }, push: { ids: new Set(), since: 0 },
  };

  constructor(private readonly now: () => number = Date.now) {}

  /** emit wrapped: every event is counted, then passed on. */
  wrap(next: EventSink): EventSink {
    return (e) => {
      this.observe(e);
      next(e);
    };
  }

  /** Adds time measured around a whole operation (the outputs' push). */
  add(phase: Timed, ms: number): void {
    this.phases[phase] += ms / 1000;
  }

  summary(fields: Omit<BuildSummary, 'layersBuilt' | 'layersCached' | 'bytesDown' | 'bytesUp' | 'phases'>): BuildSummary {
    const round = (s: number): number => Math.round(s * 1000) / 1000;
    return {
      ...fields,
      layersBuilt: this.layersBuilt,
      layersCached: this.layersCached,
      bytesDown: this.bytesDown,
      bytesUp: this.bytesUp,
      phases: { pull: round(this.phases.pull), steps: round(this.phases.steps), snapshot: round(this.phases.snapshot), push: round(this.phases.push) },
    };
  }

  private observe(e: BuildEvent): void {
    switch (e.type) {
      case 'step':
        if (e.status === 'cached' && e.layer) this.layersCached++;
        if (e.status === 'finished' && e.layer) this.layersBuilt++;
        if (e.status !== 'cached') this.busy('steps', e.step, e.status === 'started');
        return;
      case 'progress': {
        if (e.phase === 'push' && e.done) this.bytesUp += e.bytes;
        if (e.phase === 'pull' && e.done) this.bytesDown += e.bytes;
        // Push time is measured around the whole push (mounts move no bytes but take time); extraction belongs to the step that needed it.
        if (e.phase === 'pull') this.busy('pull', e.id, !e.done);
        if (e.phase === 'snapshot' || e.phase === 'compress') this.busy('snapshot', `${e.phase} ${e.id}`, !e.done);
        return;
      }
      case 'message':
      case 'warning':
      case 'summary':
        return;
    }
  }

  private busy(phase: Timed, id: string, on: boolean): void {
    const a = this.active[phase];
    if (on) {
      if (a.ids.size === 0) a.since = this.now();
      a.ids.add(id);
    } else if (a.ids.delete(id) && a.ids.size === 0) {
      this.phases[phase] += (this.now() - a.since) / 1000;
    }
  }
}
