// Extended attributes (security.capability, user.*) without a native addon: builder-xattr (the static helper `npm run
// build` and the executor image compile), python3 or setfattr, batched.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

declare const __BUILDER_VERSION__: string | undefined;

export interface XattrOp {
  /** Host path; symlinks are not followed. */
  path: string;
  name: string;
  value: Buffer;
}

export interface XattrResult {
  /** Attributes that could not be set, with the reason. */
  failed: Array<{ op: XattrOp; reason: string }>;
  /** Set when no tool was found: nothing was applied. */
  unavailable?: string;
}

// One python3 process per batch: os.setxattr with follow_symlinks=False is exactly lsetxattr(2).
const PY = `
import sys, json, os
out = []
for p, n, v in json.load(sys.stdin):
    try:
        os.setxattr(p, n, bytes.fromhex(v), follow_symlinks=False)
    except OSError as e:
        out.append([p, n, e.strerror or str(e)])
json.dump(out, sys.stdout)
`;

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  missing: boolean;
}

// builder-xattr speaks NUL-separated records (see scripts/executor-image/builder-xattr.c).
const records = (fields: string[]): string => fields.map((f) => `${f}\0`).join('');
const fieldsOf = (out: string): string[] => out.split('\0').slice(0, -1);

function run(cmd: string, args: string[], input?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err: NodeJS.ErrnoException) => resolve({ code: null, stdout, stderr: err.message, missing: err.code === 'ENOENT' }));
    child.on('close', (code) => resolve({ code, stdout, stderr, missing: false }));
    // A child that dies early closes stdin: ignore EPIPE, the exit status tells.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

let helperPath: string | undefined;
/** dist/bin/builder-xattr beside the bundle or tsc's modules (scripts/bundle.mjs), else one on PATH (the executor image's). */
function helperCommand(): string {
  if (helperPath === undefined) {
    const own = fileURLToPath(new URL(typeof __BUILDER_VERSION__ === 'string' ? './bin/builder-xattr' : '../../bin/builder-xattr', import.meta.url));
    helperPath = existsSync(own) ? own : 'builder-xattr';
  }
  return helperPath;
}

// Debian's own python3 when present: a version manager's shim on PATH (pyenv) costs ~0.1 s per RUN step; -I -S: the
// stdlib only (no site, no PYTHON* variables), which is all these scripts use, and ten times faster to start.
// Looked up at the call, not at load: the V8 start-up snapshot loads this module on the machine that built it.
const python = (script: string, input: string): Promise<RunResult> =>
  run(existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3', ['-I', '-S', '-c', script], input);

/** Applies the attributes in order: builder-xattr or python3 in one process when present, else setfattr per attribute. */
export async function setXattrs(ops: XattrOp[]): Promise<XattrResult> {
  if (ops.length === 0) return { failed: [] };
  const helper = await run(helperCommand(), ['set'], records(ops.flatMap((o) => [o.path, o.name, o.value.toString('hex')])));
  if (!helper.missing && helper.code === 0) {
    const f = fieldsOf(helper.stdout);
    const failed: XattrResult['failed'] = [];
    for (let i = 0; i + 2 < f.length; i += 3) failed.push({ op: ops.find((o) => o.path === f[i] && o.name === f[i + 1])!, reason: f[i + 2]! });
    return { failed };
  }
  const payload = JSON.stringify(ops.map((o) => [o.path, o.name, o.value.toString('hex')]));
  const py = await python(PY, payload);
  if (!py.missing && py.code === 0) {
    const failed = (JSON.parse(py.stdout || '[]') as Array<[string, string, string]>).map(([p, n, reason]) => ({
      op: ops.find((o) => o.path === p && o.name === n)!,
      reason,
    }));
    return { failed };
  }
  const failed: XattrResult['failed'] = [];
  for (const op of ops) {
    const r = await run('setfattr', ['-h', '-n', op.name, '-v', '0x' + op.value.toString('hex'), '--', op.path]);
    if (r.missing) {
      return { failed: [], unavailable: `neither python3 (${py.stderr.trim() || 'exit ' + py.code}) nor setfattr is available` };
    }
    if (r.code !== 0) failed.push({ op, reason: r.stderr.trim() });
  }
  return { failed };
}

// One python3 process for all paths: os.listxattr/os.getxattr without following symlinks (llistxattr/lgetxattr).
const PY_READ = `
import sys, json, os
out = {}
for p in json.load(sys.stdin):
    try:
        names = os.listxattr(p, follow_symlinks=False)
    except OSError:
        continue
    attrs = {}
    for n in names:
        try:
            attrs[n] = os.getxattr(p, n, follow_symlinks=False).hex()
        except OSError:
            pass
    if attrs:
        out[p] = attrs
json.dump(out, sys.stdout)
`;

/** Extended attributes of the given host paths (only paths that have some); `unavailable` when neither builder-xattr nor python3 is there. */
export async function readXattrs(paths: string[]): Promise<{ attrs: Map<string, Record<string, Buffer>>; unavailable?: string }> {
  const attrs = new Map<string, Record<string, Buffer>>();
  if (paths.length === 0) return { attrs };
  const helper = await run(helperCommand(), ['get'], records(paths));
  if (!helper.missing && helper.code === 0) {
    const f = fieldsOf(helper.stdout);
    for (let i = 0; i + 2 < f.length; i += 3) {
      const a = attrs.get(f[i]!) ?? {};
      a[f[i + 1]!] = Buffer.from(f[i + 2]!, 'hex');
      attrs.set(f[i]!, a);
    }
    return { attrs };
  }
  const r = await python(PY_READ, JSON.stringify(paths));
  if (r.missing || r.code !== 0) return { attrs, unavailable: `python3 is needed to read extended attributes (${r.stderr.trim() || `exit ${r.code}`})` };
  for (const [p, values] of Object.entries(JSON.parse(r.stdout || '{}') as Record<string, Record<string, string>>)) {
    attrs.set(p, Object.fromEntries(Object.entries(values).map(([n, hex]) => [n, Buffer.from(hex, 'hex')])));
  }
  return { attrs };
}
