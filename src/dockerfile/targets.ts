// Multi-platform builds (--platform a,b): the target list, and which stages do not depend on the target (run once for all).
import { BuilderError } from '../errors.js';
import { formatPlatform, type Platform } from '../image/index.js';
import type { BuildPlan, PlannedStage } from './plan.js';

/** Refuses a platform named twice: the index would carry two entries nobody can tell apart. */
export function checkPlatforms(platforms: readonly Platform[]): void {
  const seen = new Set<string>();
  for (const p of platforms) {
    const name = formatPlatform(p);
    if (seen.has(name)) {
      throw new BuilderError('PLATFORM_DUPLICATE', `--platform names ${name} twice`, { hint: 'list each target platform once, e.g. --platform linux/amd64,linux/arm64' });
    }
    seen.add(name);
  }
}

/**
 * Stages whose work is the same for every target (BuildKit gets this from LLB digests being equal): FROM pinned to one
 * platform (--platform=$BUILDPLATFORM), the same expanded steps in every plan (an `ARG TARGETARCH` expands differently),
 * no image named by COPY --from or RUN --mount (resolved per target), and only such stages below them.
 */
export function sharedStages(plans: readonly BuildPlan[]): Set<number> {
  const shared = new Set<number>();
  if (plans.length < 2) return shared;
  const first = plans[0]!;
  for (const st of first.stages) {
    const same = plans.every((p) => {
      const other = p.stages[st.index];
      return other !== undefined && signature(other) === signature(st);
    });
    if (same && st.platform !== undefined && st.imageRefs.length === 0 && st.dependsOn.every((d) => shared.has(d))) shared.add(st.index);
  }
  return shared;
}

function signature(st: PlannedStage): string {
  return JSON.stringify([st.baseName, st.platform ? formatPlatform(st.platform) : '', st.dependsOn, st.steps.map((s) => s.text)]);
}
