// RUN --mount: one value read into a typed Mount, as BuildKit's instructions/commands_runmount.go parseMount reads it.
import path from 'node:path';
import { BuilderError } from '../errors.js';

export type Sharing = 'shared' | 'private' | 'locked';

export interface BindMount {
  type: 'bind';
  target: string;
  source: string;
  /** A stage name or index, or an image reference; none: the build context. */
  from?: string;
  readonly: boolean;
}

export interface CacheMount {
  type: 'cache';
  target: string;
  id: string;
  sharing: Sharing;
  readonly: boolean;
  mode: number;
  uid: number;
  gid: number;
}

export interface TmpfsMount {
  type: 'tmpfs';
  target: string;
  readonly: boolean;
  size?: number;
}

/** A secret with env= and no target is an environment variable only (no file); with both, both. */
export interface SecretMount {
  type: 'secret';
  target?: string;
  env?: string;
  id: string;
  required: boolean;
  mode: number;
  uid: number;
  gid: number;
}

export type Mount = BindMount | CacheMount | TmpfsMount | SecretMount;

export interface MountOptions {
  /** "file:line" of the RUN, for errors. */
  where: string;
  /** WORKDIR of the step (relative targets resolve under it); undefined when not known before the build. */
  workdir?: string;
  /** Expands one value (BuildKit expands each value after splitting, never the spec as a whole); none: as written. */
  expand?: (word: string) => string;
}

/** One --mount value split into its CSV fields, each value expanded. */
export interface MountFields {
  /** The value as expanded, for messages. */
  text: string;
  fields: readonly string[];
}

const KEYS = new Set(['type', 'source', 'src', 'target', 'dst', 'destination', 'readonly', 'ro', 'readwrite', 'rw', 'required',
  'id', 'sharing', 'from', 'mode', 'uid', 'gid', 'size', 'env']);
const BOOL_KEYS = new Set(['readonly', 'ro', 'readwrite', 'rw', 'required']);
const HINT = 'see https://docs.docker.com/reference/dockerfile/#run---mount';

/**
 * One --mount value, as BuildKit's parseMount reads it: CSV fields key=value (bool keys may stand alone), type bind by
 * default, bind and secret read-only by default, a relative target under WORKDIR, a secret's id from id= or source= (else
 * the target's base name) and its target /run/secrets/ID (none with env= alone), a cache's id its target. ssh is refused here.
 */
export function parseMount(raw: string, opts: MountOptions): Mount {
  return readMount(readMountFields(raw, opts.expand), opts);
}

/** Splits one --mount value and expands each field's value on its own: a comma or quote a variable brings stays in it. */
export function readMountFields(raw: string, expand: (word: string) => string = (w) => w): MountFields {
  const fields = splitCsv(raw).map((field) => {
    const eq = field.indexOf('=');
    return eq < 0 ? expand(field) : `${field.slice(0, eq)}=${expand(field.slice(eq + 1))}`;
  });
  return { text: fields.join(','), fields };
}

/** The typed mount of split, expanded fields (see parseMount). */
export function readMount(f: MountFields, opts: Omit<MountOptions, 'expand'>): Mount {
  return new MountReader(f, opts).mount();
}

/** One field's value (the last given) without reading the rest: a plan's look at a mount only the build can read. */
export function mountField(f: MountFields, key: string): string | undefined {
  let out: string | undefined;
  for (const field of f.fields) {
    const kv = keyValue(field);
    if (kv?.key === key && kv.value !== true) out = kv.value;
  }
  return out;
}

/** A field's lowercased key and its value (true for a bare key), quotes around either removed; undefined when empty. */
function keyValue(field: string): { key: string; value: string | true; unq: string } | undefined {
  const unq = field.trim().replace(/^"(.*)"$/, '$1');
  if (unq === '') return undefined;
  const eq = unq.indexOf('=');
  return { key: (eq < 0 ? unq : unq.slice(0, eq)).toLowerCase(), value: eq < 0 ? true : unq.slice(eq + 1).replace(/^"(.*)"$/, '$1'), unq };
}

/** Splits a --mount CSV value on commas outside double quotes (fields keep their quotes). */
function splitCsv(spec: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of spec) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  out.push(cur);
  return out;
}

/** go-units RAMInBytes: a number with an optional b/k/m/g/t/p suffix (powers of 1024). */
function parseSize(v: string, fail: (why: string) => BuilderError): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$/i.exec(v.trim());
  if (!m) throw fail(`size=${v} is not a size`);
  const pow = ' kmgtp'.indexOf((m[2] || ' ').toLowerCase());
  return Math.floor(Number(m[1]) * 1024 ** pow);
}

/** The expanded fields of one --mount value, read by key; each type's rules in its own method. */
class MountReader {
  private readonly f = new Map<string, string | true>();
  private readonly text: string;
  private readonly type: string;
  private readonly target: string | undefined;
  private readonly readonly: boolean | undefined;

  constructor(fields: MountFields, private readonly opts: Omit<MountOptions, 'expand'>) {
    this.text = fields.text;
    for (const field of fields.fields) {
      const kv = keyValue(field);
      if (kv === undefined) continue;
      if (!KEYS.has(kv.key)) throw this.fail(`unexpected key '${kv.key}'`);
      if (kv.value === true && !BOOL_KEYS.has(kv.key)) throw this.fail(`invalid field '${kv.unq}' must be a key=value pair`);
      this.f.set(kv.key, kv.value);
    }
    this.type = (this.str('type') ?? 'bind').toLowerCase();
    const rawTarget = this.str('target', 'dst', 'destination');
    this.target = rawTarget ? path.posix.resolve(opts.workdir ?? '/', rawTarget) : undefined;
    // Where WORKDIR is not known yet (a plan), only an absolute target can be told to be "/".
    if (this.target === '/' && (opts.workdir !== undefined || rawTarget?.startsWith('/'))) throw this.fail('invalid mount target "/"');
    const ro = this.bool('readonly', 'ro');
    const rw = this.bool('readwrite', 'rw');
    this.readonly = ro ?? (rw === undefined ? undefined : !rw);
  }

  mount(): Mount {
    this.checkKeysForType();
    switch (this.type) {
      case 'bind': {
        const from = this.str('from');
        return { type: 'bind', target: this.needTarget(), source: this.str('source', 'src') || '/', readonly: this.readonly ?? true, ...(from !== undefined ? { from } : {}) };
      }
      case 'cache':
        return this.cache();
      case 'tmpfs': {
        const size = this.str('size');
        return { type: 'tmpfs', target: this.needTarget(), readonly: this.readonly ?? false, ...(size ? { size: parseSize(size, (why) => this.fail(why)) } : {}) };
      }
      case 'secret':
        return this.secret();
      case 'ssh':
        throw new BuilderError('RUN_MOUNT_UNSUPPORTED', `${this.opts.where}: --mount=type=ssh is not supported`, {
          hint: 'builder has no SSH agent forwarding; use a secret mount (--secret id=key,src=FILE) for a deploy key instead',
        });
      default:
        throw this.fail(`unsupported mount type "${this.type}"`, 'use type=bind, cache, tmpfs or secret');
    }
  }

  /** BuildKit's validateMount: file info only where a file or dir is created, required only for secrets, sharing only for caches. */
  private checkKeysForType(): void {
    const type = this.type;
    const fileInfo = type === 'secret' || type === 'ssh' || type === 'cache';
    for (const k of ['mode', 'uid', 'gid']) if (!fileInfo && this.f.has(k)) throw this.fail(`${k} not allowed for "${type}" type mounts`);
    if (this.f.has('required') && type !== 'secret' && type !== 'ssh') throw this.fail(`unexpected key 'required' for mount type '${type}'`);
    if (this.f.has('sharing') && type !== 'cache') throw this.fail(`invalid cache sharing set for ${type} mount`);
    if (this.f.has('size') && type !== 'tmpfs') throw this.fail(`size not allowed for "${type}" type mounts`);
  }

  private cache(): CacheMount {
    if (this.f.has('from') || this.f.has('source') || this.f.has('src')) {
      throw new BuilderError('RUN_MOUNT_UNSUPPORTED', `${this.opts.where}: --mount=${this.text}: a cache mount seeded from= a stage or image is not supported`, {
        hint: 'drop from=/source= (the cache starts empty), or COPY the seed in a step before',
      });
    }
    const sharing = this.str('sharing')?.toLowerCase() ?? 'shared';
    if (sharing !== 'shared' && sharing !== 'private' && sharing !== 'locked') {
      throw this.fail(`unsupported sharing value "${sharing}"`, 'use sharing=shared, private or locked');
    }
    const target = this.needTarget();
    return {
      type: 'cache', target, id: this.str('id') || target, sharing, readonly: this.readonly ?? false,
      mode: this.num('mode', 8, 0o755), uid: this.num('uid', 10, 0), gid: this.num('gid', 10, 0),
    };
  }

  private secret(): SecretMount {
    const env = this.str('env');
    const source = this.str('source', 'src');
    // The name reaches the step's environment through `env -S` in the sandbox: a plain shell identifier only.
    if (env !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(env)) throw this.fail(`env=${env} is not a variable name`, 'use letters, digits and _ (not first)');
    if (this.str('from') !== undefined) throw this.fail('secret mount should not have a from');
    if (source && this.str('id')) throw this.fail("both source and id can't be set");
    // dispatchSecret: source= is another name for id=; without either, the target's base name.
    const id = source || this.str('id') || (this.target ? path.posix.basename(this.target) : '');
    if (!id) throw this.fail('one of source, target required');
    // dispatchSecret: with env= and no target, no file at all; else the target or /run/secrets/<id>.
    const file = this.target ?? (env === undefined ? `/run/secrets/${path.posix.basename(id)}` : undefined);
    return {
      type: 'secret', ...(file !== undefined ? { target: file } : {}), ...(env !== undefined ? { env } : {}), id, required: this.bool('required') ?? false,
      mode: this.num('mode', 8, 0o400), uid: this.num('uid', 10, 0), gid: this.num('gid', 10, 0),
    };
  }

  private fail(why: string, hint = HINT): BuilderError {
    return new BuilderError('RUN_MOUNT_INVALID', `${this.opts.where}: --mount=${this.text}: ${why}`, { hint });
  }

  private needTarget(): string {
    if (!this.target) throw this.fail(`mount type ${this.type} requires a target`);
    return this.target;
  }

  private str(...keys: string[]): string | undefined {
    for (const k of keys) {
      const v = this.f.get(k);
      if (v !== undefined) return v === true ? '' : v;
    }
    return undefined;
  }

  private bool(...keys: string[]): boolean | undefined {
    for (const k of keys) {
      const v = this.f.get(k);
      if (v === undefined) continue;
      if (v === true || /^(1|t|true)$/i.test(v)) return true;
      if (/^(0|f|false)$/i.test(v)) return false;
      throw this.fail(`invalid value for ${k}: ${v}`);
    }
    return undefined;
  }

  private num(key: string, radix: 8 | 10, dflt: number): number {
    const v = this.str(key);
    if (v === undefined) return dflt;
    if (!(radix === 8 ? /^0?[0-7]{1,4}$/ : /^\d{1,10}$/).test(v)) throw this.fail(`invalid value for ${key}: ${v}`);
    return parseInt(v, radix);
  }
}
