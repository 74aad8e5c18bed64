// RUN --mount: parsing (BuildKit's instructions/runmount.go rules) and the host side of each mount (sources, caches,
// secret files), handed to the sandbox as plain bind/tmpfs mounts. Nothing here ever writes into the stage root.
import { chmod, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BuilderError } from '../../errors.js';
import { hashSelection } from '../../context/index.js';
import { resolveStageRef, splitCsv, type ExpandedInstruction } from '../../dockerfile/index.js';
import { RootFs } from '../../rootfs/index.js';
import type { RunMount } from '../../run/index.js';
import { copyMatches } from '../copy.js';
import { contextSource, rootSource, type CopySource } from '../sources.js';
import { resolveBase } from '../base.js';
import { at } from '../where.js';
import type { Executor } from '../executor.js';
import { materialize } from './copy.js';

type Run = Extract<ExpandedInstruction, { kind: 'run' }>;

export type Sharing = 'shared' | 'private' | 'locked';

export type MountSpec =
  | { type: 'bind'; target: string; source: string; from?: string; readonly: boolean }
  | { type: 'cache'; target: string; id: string; sharing: Sharing; readonly: boolean; mode: number; uid: number; gid: number }
  | { type: 'tmpfs'; target: string; readonly: boolean; size?: number }
  /** A secret with env= and no target is an environment variable only (no file); with both, both. */
  | { type: 'secret'; target?: string; env?: string; id: string; required: boolean; mode: number; uid: number; gid: number };

/** Where a secret's value comes from (--secret id=ID,src=PATH or id=ID,env=VAR, resolved by the CLI). */
export type SecretSource = { file: string } | { value: string };

const KEYS = new Set(['type', 'source', 'src', 'target', 'dst', 'destination', 'readonly', 'ro', 'readwrite', 'rw', 'required',
  'id', 'sharing', 'from', 'mode', 'uid', 'gid', 'size', 'env']);
const BOOL_KEYS = new Set(['readonly', 'ro', 'readwrite', 'rw', 'required']);

/** go-units RAMInBytes: a number with an optional b/k/m/g/t/p suffix (powers of 1024). */
function parseSize(v: string, fail: (why: string) => BuilderError): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$/i.exec(v.trim());
  if (!m) throw fail(`size=${v} is not a size`);
  const pow = ' kmgtp'.indexOf((m[2] || ' ').toLowerCase());
  return Math.floor(Number(m[1]) * 1024 ** pow);
}

/**
 * One --mount value, as BuildKit's parseMount reads it: CSV fields key=value (bool keys may stand alone), type bind by
 * default, bind and secret read-only by default, a relative target under WORKDIR, a secret's id from id= or source= (else
 * the target's base name) and its target /run/secrets/ID (none with env= alone), a cache's id its target. ssh is refused here.
 */
export function parseMount(raw: string, workdir: string, where: string): MountSpec {
  const fail = (why: string, hint = 'see https://docs.docker.com/reference/dockerfile/#run---mount'): BuilderError =>
    new BuilderError('RUN_MOUNT_INVALID', `${where}: --mount=${raw}: ${why}`, { hint });
  const f = new Map<string, string | true>();
  for (const field of splitCsv(raw)) {
    const unq = field.trim().replace(/^"(.*)"$/, '$1');
    if (unq === '') continue;
    const eq = unq.indexOf('=');
    const key = (eq < 0 ? unq : unq.slice(0, eq)).toLowerCase();
    if (!KEYS.has(key)) throw fail(`unexpected key '${key}'`);
    if (eq < 0 && !BOOL_KEYS.has(key)) throw fail(`invalid field '${unq}' must be a key=value pair`);
    f.set(key, eq < 0 ? true : unq.slice(eq + 1).replace(/^"(.*)"$/, '$1'));
  }
  const str = (...keys: string[]): string | undefined => {
    for (const k of keys) {
      const v = f.get(k);
      if (v !== undefined) return v === true ? '' : v;
    }
    return undefined;
  };
  const bool = (...keys: string[]): boolean | undefined => {
    for (const k of keys) {
      const v = f.get(k);
      if (v === undefined) continue;
      if (v === true || /^(1|t|true)$/i.test(v)) return true;
      if (/^(0|f|false)$/i.test(v)) return false;
      throw fail(`invalid value for ${k}: ${v}`);
    }
    return undefined;
  };
  const num = (key: string, radix: 8 | 10, dflt: number): number => {
    const v = str(key);
    if (v === undefined) return dflt;
    if (!(radix === 8 ? /^0?[0-7]{1,4}$/ : /^\d{1,10}$/).test(v)) throw fail(`invalid value for ${key}: ${v}`);
    return parseInt(v, radix);
  };
  const type = (str('type') ?? 'bind').toLowerCase();
  const rawTarget = str('target', 'dst', 'destination');
  const target = rawTarget ? path.posix.resolve(workdir || '/', rawTarget) : undefined;
  if (target === '/') throw fail('invalid mount target "/"');
  const ro = bool('readonly', 'ro');
  const rw = bool('readwrite', 'rw');
  const readonly = ro ?? (rw === undefined ? undefined : !rw);
  const from = str('from');
  const source = str('source', 'src');
  const sharing = str('sharing')?.toLowerCase();
  // BuildKit's parseMount: file info only where a file or dir is created, required only for secrets, sharing only for caches.
  const fileInfo = type === 'secret' || type === 'ssh' || type === 'cache';
  for (const k of ['mode', 'uid', 'gid']) if (!fileInfo && f.has(k)) throw fail(`${k} not allowed for "${type}" type mounts`);
  if (f.has('required') && type !== 'secret' && type !== 'ssh') throw fail(`unexpected key 'required' for mount type '${type}'`);
  if (sharing !== undefined && type !== 'cache') throw fail(`invalid cache sharing set for ${type} mount`);
  if (f.has('size') && type !== 'tmpfs') throw fail(`size not allowed for "${type}" type mounts`);
  const needTarget = (): string => {
    if (!target) throw fail(`mount type ${type} requires a target`);
    return target;
  };
  switch (type) {
    case 'bind':
      return { type, target: needTarget(), source: source || '/', readonly: readonly ?? true, ...(from !== undefined ? { from } : {}) };
    case 'cache': {
      if (from !== undefined || source !== undefined) {
        throw new BuilderError('RUN_MOUNT_UNSUPPORTED', `${where}: --mount=${raw}: a cache mount seeded from= a stage or image is not supported`, {
          hint: 'drop from=/source= (the cache starts empty), or COPY the seed in a step before',
        });
      }
      if (sharing !== undefined && sharing !== 'shared' && sharing !== 'private' && sharing !== 'locked') {
        throw fail(`unsupported sharing value "${sharing}"`, 'use sharing=shared, private or locked');
      }
      const t = needTarget();
      return {
        type, target: t, id: str('id') || t, sharing: (sharing ?? 'shared') as Sharing, readonly: readonly ?? false,
        mode: num('mode', 8, 0o755), uid: num('uid', 10, 0), gid: num('gid', 10, 0),
      };
    }
    case 'tmpfs': {
      const size = str('size');
      return { type, target: needTarget(), readonly: readonly ?? false, ...(size ? { size: parseSize(size, fail) } : {}) };
    }
    case 'secret': {
      const env = str('env');
      // The name reaches the step's environment through `env -S` in the sandbox: a plain shell identifier only.
      if (env !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(env)) throw fail(`env=${env} is not a variable name`, 'use letters, digits and _ (not first)');
      if (from !== undefined) throw fail('secret mount should not have a from');
      if (source && str('id')) throw fail("both source and id can't be set");
      // dispatchSecret: source= is another name for id=; without either, the target's base name.
      const id = source || str('id') || (target ? path.posix.basename(target) : '');
      if (!id) throw fail('one of source, target required');
      // dispatchSecret: with env= and no target, no file at all; else the target or /run/secrets/<id>.
      const file = target ?? (env === undefined ? `/run/secrets/${path.posix.basename(id)}` : undefined);
      return {
        type, ...(file !== undefined ? { target: file } : {}), ...(env !== undefined ? { env } : {}), id, required: bool('required') ?? false,
        mode: num('mode', 8, 0o400), uid: num('uid', 10, 0), gid: num('gid', 10, 0),
      };
    }
    case 'ssh':
      throw new BuilderError('RUN_MOUNT_UNSUPPORTED', `${where}: --mount=type=ssh is not supported`, {
        hint: 'builder has no SSH agent forwarding; use a secret mount (--secret id=key,src=FILE) for a deploy key instead',
      });
    default:
      throw fail(`unsupported mount type "${type}"`, 'use type=bind, cache, tmpfs or secret');
  }
}

export function parseMounts(inst: Run, workdir: string, where: string): MountSpec[] {
  return inst.mounts.map((m) => parseMount(m, workdir, where));
}

/** The source of a bind mount: the context, a stage's root or an image's root. */
async function bindSource(ex: Executor, from: string | undefined, inst: Run, where: string): Promise<{ source: CopySource; kind: 'context' | 'root'; key: () => Promise<string | null> }> {
  const { services, scheduling, settings } = ex;
  if (from === undefined) return { source: contextSource(services.ctx), kind: 'context', key: async () => null };
  const ref = resolveStageRef(services.plan.stages.map((s) => ({ index: s.index, ...(s.name ? { name: s.name } : {}) })), from, { file: inst.file, line: inst.line, what: 'RUN --mount from' });
  if (ref.kind === 'stage') {
    const done = await scheduling.done.get(ref.index);
    if (!done) throw new BuilderError('BUILD_INTERNAL', `${where}: stage ${ref.index} was not built before it is used`, { hint: 'this is a bug; please report it' });
    // In place, "/" has moved on: the stage is materialized from its layers once, in the work dir (as COPY --from does).
    const root = settings.runMode === 'in-place' ? await materialize(ex, `stage:${ref.index}`, async () => done.layers) : await done.root.get(done.layers);
    return { source: rootSource(root, `stage ${from}`), kind: 'root', key: async () => done.cacheKey ?? null };
  }
  const img = await resolveBase(services.client, services.store, ref.ref, settings.platform, services.warnOnce, ex.scheduling.resolved).catch(at(where));
  const rootfs = await materialize(ex, `image:${ref.ref}`, async () => img.layers);
  return { source: rootSource(rootfs, `image ${ref.ref}`), kind: 'root', key: async () => (img.manifestDigest ? `image:${img.manifestDigest}` : null) };
}

/**
 * What the mounts add to the step's cache key: each bind's content (context: the digest of what it exposes, .dockerignore
 * applied; a stage: its key; an image: its digest). Caches, tmpfs and secrets add nothing (as BuildKit: a secret's value is
 * never part of a key). null when a source cannot be keyed.
 */
export async function mountsKey(ex: Executor, inst: Run, where: string): Promise<string | undefined | null> {
  const parts: string[] = [];
  for (const spec of parseMounts(inst, '/', where)) {
    if (spec.type !== 'bind') continue;
    if (spec.from === undefined) {
      const matches = await contextSource(ex.services.ctx).resolve([spec.source]).catch(at(where));
      parts.push(`bind:${await hashSelection(matches.map((m) => ({ name: m.type === 'dir' ? '.' : m.name, entries: m.entries() })))}`);
      continue;
    }
    const k = await (await bindSource(ex, spec.from, inst, where)).key();
    if (k === null) return null;
    parts.push(`bind:${k}`);
  }
  return parts.length === 0 ? undefined : parts.join('\0');
}

export interface PreparedMounts {
  mounts: RunMount[];
  /** Secrets with env=: "NAME=value" entries for the step's environment only (never in argv, a layer or the config). */
  secretEnv: string[];
  /** Removes the per-run copies and secret files, releases cache locks. Idempotent. */
  release(): Promise<void>;
}

/** Makes the host side of every mount ready; the caller must call release() after the run, whatever happens. */
export async function prepareMounts(ex: Executor, inst: Run, specs: readonly MountSpec[], where: string): Promise<PreparedMounts> {
  const mounts: RunMount[] = [];
  const secretEnv: string[] = [];
  const cleanup: Array<() => Promise<void>> = [];
  const release = async (): Promise<void> => {
    for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
  };
  try {
    for (const spec of specs) {
      switch (spec.type) {
        case 'tmpfs':
          mounts.push({ target: spec.target, type: 'tmpfs', readonly: spec.readonly, ...(spec.size ? { size: spec.size } : {}) });
          break;
        case 'bind':
          mounts.push(await prepareBind(ex, inst, spec, where, cleanup));
          break;
        case 'cache':
          mounts.push(await prepareCache(ex, spec, cleanup));
          break;
        case 'secret': {
          const value = await secretValue(ex, spec, where);
          if (value === undefined) break; // BuildKit: an optional secret that was not given is neither mounted nor set
          if (spec.env !== undefined) secretEnv.push(`${spec.env}=${value.toString('utf8')}`);
          if (spec.target !== undefined) mounts.push(await prepareSecret(ex, { ...spec, target: spec.target }, value, cleanup));
          break;
        }
      }
    }
  } catch (err) {
    await release();
    throw err;
  }
  return { mounts, secretEnv, release };
}

async function prepareBind(ex: Executor, inst: Run, spec: Extract<MountSpec, { type: 'bind' }>, where: string, cleanup: Array<() => Promise<void>>): Promise<RunMount> {
  const { source, kind } = await bindSource(ex, spec.from, inst, where);
  const matches = await source.resolve([spec.source]).catch(at(where));
  if (matches.length !== 1) {
    throw new BuilderError('RUN_MOUNT_INVALID', `${where}: bind mount source ${spec.source} matches ${matches.length} paths`, { hint: 'name exactly one file or directory' });
  }
  const m = matches[0]!;
  // A stage or image root read-only: bound as it is (in the sandbox). The context (its .dockerignore applies), any rw
  // bind and every bind in place (moved into "/" for the step): a per-run copy, so the step sees only what COPY could
  // see and its writes are discarded with the copy.
  if (kind === 'root' && spec.readonly && ex.settings.runMode !== 'in-place') return { target: spec.target, type: 'bind', source: m.abs, readonly: true };
  const dir = ex.settings.scratchPath('bind');
  await mkdir(dir, { recursive: true, mode: 0o755 });
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  await copyMatches(new RootFs(dir), [m], { dest: '/', workdir: '/', uid: 0, gid: 0, preserveOwner: kind === 'root', where }).catch(at(where));
  return { target: spec.target, type: 'bind', source: m.type === 'dir' ? dir : path.join(dir, m.name), readonly: spec.readonly, owned: true };
}

/** Cache mounts are directories of the build's RunCache (src/cache/run-cache.ts), kept between builds on this machine. */
async function prepareCache(ex: Executor, spec: Extract<MountSpec, { type: 'cache' }>, cleanup: Array<() => Promise<void>>): Promise<RunMount> {
  const got = await ex.services.runCache.open(spec, {
    inPlace: ex.settings.runMode === 'in-place',
    scratchPath: () => ex.settings.scratchPath('cache'),
    log: (msg) => ex.services.emit({ type: 'message', level: 'info', msg }),
    signal: ex.scheduling.signal,
  });
  cleanup.push(got.release);
  return { target: spec.target, type: 'bind', source: got.dir, readonly: spec.readonly, keep: true };
}

/** The secret's bytes; undefined for an optional secret that was not given. */
async function secretValue(ex: Executor, spec: Extract<MountSpec, { type: 'secret' }>, where: string): Promise<Buffer | undefined> {
  const src = ex.settings.secrets[spec.id];
  if (src === undefined) {
    if (!spec.required) return undefined;
    throw new BuilderError('RUN_SECRET_MISSING', `${where}: secret "${spec.id}" is required but was not given`, {
      hint: `pass --secret id=${spec.id},src=FILE or --secret id=${spec.id},env=VARIABLE`,
    });
  }
  const value = 'value' in src ? Buffer.from(src.value) : await readFile(src.file).catch((cause: unknown) => {
    throw new BuilderError('RUN_SECRET_UNREADABLE', `${where}: cannot read secret "${spec.id}" from ${src.file}`, { hint: 'check the path given to --secret', cause });
  });
  if (spec.env !== undefined && value.includes(0)) {
    throw new BuilderError('RUN_SECRET_INVALID', `${where}: secret "${spec.id}" holds a NUL byte and cannot be the variable ${spec.env}`, {
      hint: 'mount it as a file instead (drop env=, or add target=)',
    });
  }
  return value;
}

/** A secret is a 0400 (or mode=) file in a fresh 0700 dir outside the root, bound read-only and removed after the run. */
async function prepareSecret(ex: Executor, spec: Extract<MountSpec, { type: 'secret' }> & { target: string }, value: Buffer, cleanup: Array<() => Promise<void>>): Promise<RunMount> {
  // In the build's scratch dir: outside the root (in place the host's temp dir is the root being snapshotted), and
  // removed with the work dir by the next build when this one is killed.
  const dir = ex.settings.scratchPath('secret');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'secret');
  await writeFile(file, value, { mode: 0o600 });
  await chown(file, spec.uid, spec.gid);
  await chmod(file, spec.mode);
  return { target: spec.target, type: 'bind', source: file, readonly: true, owned: true };
}
