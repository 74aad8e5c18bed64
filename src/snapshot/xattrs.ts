// Extended attributes for layer entries (security.capability, user.*): read from the root, kept in the tar as PAX records.
import { readXattrs } from '../rootfs/index.js';
import type { LayerEntry } from './diff.js';
import { hostPath } from './index-tree.js';

// SELinux labels describe the build host, not the image (containerd's tar writer drops them too).
const SKIP = new Set(['security.selinux']);

/**
 * The same entries with the xattrs found on files and directories attached to their metadata. Symlinks are
 * skipped (Linux allows no user xattrs on them). `warning` is set when attributes could not be read at all.
 */
export async function withXattrs(root: string, entries: readonly LayerEntry[]): Promise<{ entries: LayerEntry[]; warning?: string }> {
  const candidates = entries.filter((e) => e.kind === 'entry' && e.meta && (e.meta.type === 'file' || e.meta.type === 'dir'));
  const { attrs, unavailable } = await readXattrs(candidates.map((e) => hostPath(root, e.path)));
  const out = entries.map((e) => {
    if (e.kind !== 'entry' || !e.meta) return e;
    const found = attrs.get(hostPath(root, e.path));
    if (!found) return e;
    const kept = Object.fromEntries(Object.entries(found).filter(([n]) => !SKIP.has(n)));
    return Object.keys(kept).length > 0 ? { ...e, meta: { ...e.meta, xattrs: kept } } : e;
  });
  return unavailable ? { entries: out, warning: `extended attributes (e.g. file capabilities) not recorded: ${unavailable}` } : { entries: out };
}
