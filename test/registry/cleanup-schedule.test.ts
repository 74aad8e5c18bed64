// The cleanup's schedule (pure): what the real run deletes on a registry, which is what --dry-run prints.
import { describe, expect, it } from 'vitest';
import type { Digest } from '../../src/digest/index.js';
import { scheduleDeletes, type CleanupPlan, type TagInfo } from '../../src/registry/ops.js';

const tag = (t: string, d: string): TagInfo => ({ tag: t, digest: `sha256:${d.repeat(64)}` as Digest, mediaType: 'application/vnd.oci.image.manifest.v1+json' });
// a shares its manifest with the kept latest; b and c share one manifest; d is alone
const plan: CleanupPlan = {
  delete: [tag('a', '1'), tag('b', '2'), tag('c', '2'), tag('d', '3')],
  keep: [{ ...tag('latest', '1'), reason: 'latest is never deleted' }],
};
const fates = (s: ReturnType<typeof scheduleDeletes>): Record<string, string> => Object.fromEntries([
  ...s.deletes.map((d) => [d.tag.tag, d.by]), ...s.skipped.map((t) => [t.tag, `skipped: ${t.reason}`]),
]);

describe('scheduleDeletes', () => {
  it('a registry that deletes tags alone: every planned tag goes alone, latest kept', () => {
    expect(fates(scheduleDeletes(plan, { tags: true, manifests: true }))).toEqual({ a: 'tag', b: 'tag', c: 'tag', d: 'tag' });
  });

  it('distribution 2.x (manifests only): a manifest a kept tag shares is skipped; two deletable tags of one manifest go with one DELETE', () => {
    const f = fates(scheduleDeletes(plan, { tags: false, manifests: true }));
    expect(f).toEqual({ a: expect.stringMatching(/^skipped: shares its manifest with the kept tag latest/), b: 'manifest', c: 'with-manifest', d: 'manifest' });
  });

  it('a registry with deletes off: everything planned is skipped, with the reason', () => {
    const s = scheduleDeletes(plan, { tags: false, manifests: false, why: 'registry r does not allow deletes (405)' });
    expect(s.deletes).toEqual([]);
    expect(s.skipped.map((t) => [t.tag, t.reason])).toEqual(['a', 'b', 'c', 'd'].map((t) => [t, 'registry r does not allow deletes (405)']));
  });
});
