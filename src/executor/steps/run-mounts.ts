// RUN --mount (typed by src/dockerfile/mount.ts): the host side of each mount (sources, caches, secret files), handed to
// the sandbox as plain bind/tmpfs mounts. Nothing here ever writes into the stage root.
import { chmod, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BuilderError } from '../../errors.js';
import { hashSelection } from '../../context/index.js';
import type { BindMount, CacheMount, ExpandedInstruction, Mount, SecretMount } from '../../dockerfile/index.js';
import { RootFs } from '../../rootfs/index.js';
import type { RunMount } from '../../run/index.js';
import { copyMatches } from '../copy.js';
import { contextSource, rootSource, type CopySource } from '../sources.js';
import { lookupSource, sourceKey, sourceRoot } from '../stage-sources.js';
import { at } from '../where.js';
import type { Executor } from '../executor.js';

type Run = Extract<ExpandedInstruction, { kind: 'run' }>;

/** The source of a bind mount: the context, a stage's root or an image's root. */
async function bindSource(ex: Executor, from: string | undefined, inst: Run, where: string): Promise<{ source: CopySource; kind: 'context' | 'root' }> {
  if (from === undefined) return { source: contextSource(ex.services.ctx), kind: 'context' };
  const src = lookupSource(ex, from, mountPlace(inst));
  return { source: rootSource(await sourceRoot(ex, src, where), src.label), kind: 'root' };
}

const mountPlace = (inst: Run): { file: string; line: number; what: string } => ({ file: inst.file, line: inst.line, what: 'RUN --mount from' });

/**
 * What the mounts add to the step's cache key: each bind's content (context: the digest of what it exposes, .dockerignore
 * applied; a stage: its key; an image: its digest). Caches, tmpfs and secrets add nothing (as BuildKit: a secret's value is
 * never part of a key). null when a source cannot be keyed.
 */
export async function mountsKey(ex: Executor, inst: Run, where: string): Promise<string | undefined | null> {
  const parts: string[] = [];
  for (const spec of inst.mounts) {
    if (spec.type !== 'bind') continue;
    if (spec.from === undefined) {
      const matches = await contextSource(ex.services.ctx).resolve([spec.source]).catch(at(where));
      parts.push(`bind:${await hashSelection(matches.map((m) => ({ name: m.type === 'dir' ? '.' : m.name, entries: m.entries() })))}`);
      continue;
    }
    const k = await sourceKey(ex, lookupSource(ex, spec.from, mountPlace(inst)), where); // the key needs no root
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
export async function prepareMounts(ex: Executor, inst: Run, specs: readonly Mount[], where: string): Promise<PreparedMounts> {
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

async function prepareBind(ex: Executor, inst: Run, spec: BindMount, where: string, cleanup: Array<() => Promise<void>>): Promise<RunMount> {
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
async function prepareCache(ex: Executor, spec: CacheMount, cleanup: Array<() => Promise<void>>): Promise<RunMount> {
  const got = await ex.services.runCache.open(spec, {
    inPlace: ex.settings.runMode === 'in-place',
    scratchPath: () => ex.settings.scratchPath('cache'),
    emit: ex.services.emit,
    signal: ex.scheduling.signal,
  });
  cleanup.push(got.release);
  return { target: spec.target, type: 'bind', source: got.dir, readonly: spec.readonly, keep: true };
}

/** The secret's bytes; undefined for an optional secret that was not given. */
async function secretValue(ex: Executor, spec: SecretMount, where: string): Promise<Buffer | undefined> {
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
async function prepareSecret(ex: Executor, spec: SecretMount & { target: string }, value: Buffer, cleanup: Array<() => Promise<void>>): Promise<RunMount> {
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
