// Conformance: differences between builder's image and a reference's (tree entry by entry, config key by key).
import type { ImageResult, TreeEntry } from './tree.js';

export interface Difference {
  kind: 'only-builder' | 'only-ref' | 'differs' | 'config';
  what: string;
  attrs?: string[];
  detail: string;
}

export const CONFIG_KEYS = ['Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'User', 'ExposedPorts', 'Labels', 'Volumes', 'StopSignal', 'Healthcheck', 'Shell', 'OnBuild'] as const;
const PER_KEY = new Set<string>(['Labels', 'ExposedPorts', 'Volumes']);

/** Config fields compared; absent, null and empty are the same thing (Docker treats them alike). */
export function normalizedConfig(cfg: any): Record<string, unknown> {
  const c = cfg?.config ?? {};
  const out: Record<string, unknown> = {};
  for (const k of CONFIG_KEYS) {
    const v = c[k];
    const empty = v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0) ||
      (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0);
    out[k] = empty ? null : v;
  }
  return out;
}

function brief(e: TreeEntry): string {
  return [e.type, e.mode, `${e.uid}:${e.gid}`, e.size !== undefined ? `${e.size}B` : '', e.link ? `-> ${e.link}` : '', e.hardlinkOf ? `hardlink of ${e.hardlinkOf}` : '']
    .filter(Boolean).join(' ');
}

export function compare(ours: ImageResult, theirs: ImageResult, ref: string): Difference[] {
  const out: Difference[] = [];
  for (const [p, a] of ours.tree) {
    const b = theirs.tree.get(p);
    if (!b) { out.push({ kind: 'only-builder', what: p, detail: brief(a) }); continue; }
    const attrs = (Object.keys({ ...a, ...b }) as Array<keyof TreeEntry>).filter((k) => a[k] !== b[k]).sort();
    if (attrs.length) {
      out.push({ kind: 'differs', what: p, attrs, detail: attrs.map((k) => `${k}: builder=${String(a[k])} ${ref}=${String(b[k])}`).join(', ') });
    }
  }
  for (const [p, b] of theirs.tree) if (!ours.tree.has(p)) out.push({ kind: 'only-ref', what: p, detail: brief(b) });
  const ca = normalizedConfig(ours.config);
  const cb = normalizedConfig(theirs.config);
  for (const k of CONFIG_KEYS) {
    if (PER_KEY.has(k)) {
      const a = (ca[k] ?? {}) as Record<string, unknown>;
      const b = (cb[k] ?? {}) as Record<string, unknown>;
      for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
        const av = JSON.stringify(a[key]);
        const bv = JSON.stringify(b[key]);
        if (av !== bv) out.push({ kind: 'config', what: `config.${k}.${key}`, detail: `builder=${av} ${ref}=${bv}` });
      }
      continue;
    }
    const a = JSON.stringify(ca[k]);
    const b = JSON.stringify(cb[k]);
    if (a !== b) out.push({ kind: 'config', what: `config.${k}`, detail: `builder=${a} ${ref}=${b}` });
  }
  return out;
}
