// COPY and ADD: sources from the context, a stage, an image or a URL, placed with Docker's rules; the written paths become the layer.
import { mkdir, lstat } from 'node:fs/promises';
import path from 'node:path';
import { BuilderError } from '../../errors.js';
import { hashSelection, hasWildcards, type PatternMatcher } from '../../context/index.js';
import type { ExpandedInstruction } from '../../dockerfile/index.js';
import { instructionText, stepKey } from '../../cache/index.js';
import { RootFs } from '../../rootfs/index.js';
import { entriesForPaths } from '../../snapshot/index.js';
import { copyMatches, writeHeredocFile, type CopyOptions } from '../copy.js';
import { parseChmod } from '../chmod.js';
import { contextSource, fileMatch, rootSource, type CopyEntry, type CopySource, type CopySourceMatch } from '../sources.js';
import { archiveKind, unpackArchive, type Compression } from '../archive.js';
import { download, isGitSource, isHttpSource, type Download } from '../remote.js';
import { copyPatterns, descendFor, selectEntries } from '../select.js';
import { lookupSource, sourceKey, sourceRoot } from '../stage-sources.js';
import { chainKey, type KeyContext, type StepContext, type StepHandler, type StepKey } from '../stage-state.js';
import { at } from '../where.js';
import type { Executor } from '../executor.js';
import { chownFor, chownNeedsRoot } from './user.js';

type Copy = Extract<ExpandedInstruction, { kind: 'copy' | 'add' }>;

export const copyStep: StepHandler<Copy> = {
  async key(c) {
    const sources = await sourcesKey(c);
    if (sources === null) return null;
    return linkApplies(c.inst) && !(c.inst.chown && chownNeedsRoot(c.inst.chown)) ? linkedKey(c, sources) : chainKey(c, sources);
  },

  /** --link writes into an empty directory: the root is read only for a --chown by name (its passwd). */
  needsRoot: ({ inst }) => !linkApplies(inst),

  async execute({ ex, stage, inst, step }: StepContext<Copy>) {
    checkInstruction(inst, step.where);
    const workdir = stage.cfg.config.WorkingDir || '/';
    if (linkApplies(inst)) {
      // --link: the files are written into an empty root, so the layer holds only them (BuildKit's MergeOp);
      // the stage root gets the layer like any other when a later step needs it.
      const dir = ex.settings.scratchPath('link');
      await mkdir(dir, { recursive: true });
      const users = inst.chown && chownNeedsRoot(inst.chown) ? await stage.fs() : undefined;
      const written = await copyInstruction(ex, new RootFs(dir), users, workdir, inst, step.where);
      return stage.layerOf(await entriesForPaths(dir, written, { recursive: false }), step, { from: dir });
    }
    const rootfs = await stage.fs();
    const written = await copyInstruction(ex, rootfs, rootfs, workdir, inst, step.where);
    const entries = await entriesForPaths(rootfs.root, written, { exclude: ex.settings.exclude, recursive: false });
    stage.root.noteWritten(entries);
    return stage.layerOf(entries, step);
  },
};

/**
 * What COPY/ADD read, for the key: the digest of the sources as selected (--exclude/--parents applied, symlinks
 * followed, downloads included), a stage's key, an image's digest; null: not cacheable. A URL with --checksum is
 * keyed by the URL and checksum without downloading; without one it is downloaded first and its content hashed.
 */
async function sourcesKey({ ex, inst, step }: KeyContext<Copy>): Promise<string | undefined | null> {
  if (inst.sources.length === 0) return undefined; // heredocs only: their text is in the instruction
  if (inst.kind === 'add' && inst.checksum !== undefined && inst.sources.length === 1 && isHttpSource(inst.sources[0]!)) {
    return `url:${inst.sources[0]}\0${inst.checksum}`;
  }
  const from = inst.kind === 'copy' ? inst.from : undefined;
  if (from !== undefined) return sourceKey(ex, lookupSource(ex, from, { file: inst.file, line: inst.line, what: 'COPY --from' }), step.where);
  const { services } = ex;
  const fileHashes = await services.fileHashes?.();
  const d = await hashSelection(await selectedForKey(ex, inst, step.where), fileHashes ? { fileHashes } : {}).catch(at(step.where));
  await fileHashes?.save(services.emit);
  return d;
}

/**
 * --link: the layer depends on the instruction, its sources and the workdir only, never on the steps before (a
 * --chown by name reads the stage's passwd, so it keeps the chain). The chain goes on through it.
 */
function linkedKey(c: KeyContext<Copy>, sources: string | undefined): StepKey {
  const { os, architecture, variant } = c.platform;
  const linked = stepKey({
    parent: `link:${os}/${architecture}${variant ? `/${variant}` : ''}`,
    instruction: instructionText(c.inst),
    env: new Map(),
    flags: { ...c.flags, workdir: c.workdir },
    ...(sources !== undefined ? { sources } : {}),
  });
  return { chain: stepKey({ parent: c.parent, instruction: 'link', env: new Map(), flags: {}, sources: linked }), linked };
}

/** BuildKit links only without --chmod (dispatchCopy: `cfg.link && cfg.chmod == ""`); otherwise a plain copy. */
function linkApplies(inst: Copy): boolean {
  return inst.link && !inst.chmod;
}

function checkInstruction(inst: Copy, where: string): void {
  for (const s of inst.sources) {
    if (inst.kind === 'add' && isGitSource(s)) {
      throw new BuilderError('ADD_GIT_UNSUPPORTED', `${where}: ADD from a git repository is not supported (${s})`, {
        hint: 'clone it in a RUN step (git clone), or check it out into the build context and COPY it',
      });
    }
    if (inst.kind === 'copy' && (isHttpSource(s) || isGitSource(s))) {
      throw new BuilderError('COPY_SOURCE_URL', `${where}: COPY cannot read a URL (${s})`, { hint: 'use ADD for URLs' });
    }
  }
  if (inst.kind === 'add' && inst.checksum !== undefined) {
    if (inst.sources.length !== 1) {
      throw new BuilderError('ADD_CHECKSUM_INVALID', `${where}: --checksum needs exactly one source`, { hint: 'split the ADD into one instruction per URL' });
    }
    if (!isHttpSource(inst.sources[0]!)) {
      throw new BuilderError('ADD_CHECKSUM_INVALID', `${where}: --checksum applies to http(s) sources only (${inst.sources[0]})`, {
        hint: 'remove --checksum for files from the build context',
      });
    }
  }
}

/** Owner of what COPY/ADD writes: --chown resolved against `users` (the stage root), else 0:0. */
async function ownerFor(users: RootFs | undefined, inst: Copy, where: string): Promise<{ uid: number; gid: number }> {
  return inst.chown ? chownFor(users, inst.chown, where) : { uid: 0, gid: 0 };
}

async function copyInstruction(ex: Executor, rootfs: RootFs, users: RootFs | undefined, workdir: string, inst: Copy, where: string): Promise<string[]> {
  const { uid, gid } = await ownerFor(users, inst, where);
  const parents = inst.kind === 'copy' && inst.parents;
  const copyOpts: CopyOptions = {
    // --parents: the kept paths land under the destination, which is always a directory (fsutil CopyDirContents).
    dest: parents && !inst.dest.endsWith('/') ? `${inst.dest}/` : inst.dest,
    workdir,
    uid,
    gid,
    ...(inst.chmod ? parseChmod(inst.chmod, where) : {}),
    // BuildKit keeps the owners of files copied from a stage or an image unless --chown is given.
    ...(inst.kind === 'copy' && inst.from !== undefined && !inst.chown ? { preserveOwner: true } : {}),
    where,
    otherFiles: inst.heredocs.length,
  };
  const written: string[] = [];
  for (const h of inst.heredocs) written.push(await writeHeredocFile(rootfs, h.name, h.content, copyOpts));
  if (inst.sources.length === 0) return written;

  const matches = await selectedMatches(ex, inst, where);
  const plain: CopySourceMatch[] = [];
  for (const m of matches) {
    // ADD extracts local tar archives (compressed or not, known by their bytes); remote files only with --unpack.
    const unpack = inst.kind === 'add' && m.type === 'file' && (m.remote ? inst.unpack === true : inst.unpack !== false);
    const kind = unpack ? await archiveKind(m.abs, `${where}: archive ${m.name}`) : undefined;
    if (kind === undefined) {
      plain.push(m);
      continue;
    }
    written.push(...(await unpackInto(ex, rootfs, m, kind, workdir, inst, { uid, gid }, where)));
  }
  if (plain.length > 0) written.push(...(await copyMatches(rootfs, plain, copyOpts).catch(at(where))));
  return written;
}

/** ADD of an archive: extracted into the destination (always a directory, created owned by --chown), merging. */
async function unpackInto(
  ex: Executor, rootfs: RootFs, m: CopySourceMatch, kind: Compression, workdir: string, inst: Copy,
  owner: { uid: number; gid: number }, where: string,
): Promise<string[]> {
  const destPath = path.posix.resolve(workdir, inst.dest);
  const dest = await rootfs.mkdirAll(destPath, { ...owner, mode: 0o755 });
  const inPlace = ex.settings.runMode === 'in-place';
  const paths = await unpackArchive(new RootFs(dest.host), m.abs, kind, `${where}: archive ${m.name}`, {
    ...(inst.chown ? { chown: owner } : {}),
    ...(inPlace ? { ignore: (p: string) => ex.settings.exclude(path.posix.join(dest.container, p).replace(/^\/+/, '')) } : {}),
    emit: ex.services.emit,
    host: ex.settings.host,
  });
  // Entries the extraction skipped (devices when not root, unsupported types) are not in the layer.
  const out = [dest.container];
  const unique = [...new Set(paths)];
  for (let i = 0; i < unique.length; i += 256) {
    const batch = unique.slice(i, i + 256);
    const there = await Promise.all(batch.map((p) => lstat(path.join(dest.host, p)).then(() => true, () => false)));
    batch.forEach((p, j) => there[j] && out.push(path.posix.join(dest.container, p)));
  }
  return out;
}

interface Match extends CopySourceMatch {
  /** Downloaded from a URL (ADD extracts it only with --unpack). */
  remote?: Download;
}

/** The instruction's sources, resolved and filtered by --exclude and --parents (BuildKit's dispatchCopy + fsutil copy). */
async function selectedMatches(ex: Executor, inst: Copy, where: string): Promise<Match[]> {
  const exclude = copyPatterns(inst.exclude, where, '--exclude');
  const out: Match[] = [];
  const local: string[] = [];
  for (const s of inst.sources) {
    if (inst.kind === 'add' && isHttpSource(s)) {
      const d = await downloadOnce(ex, s, inst.checksum, where);
      out.push({ ...(await fileMatch(d.file, d.name)), remote: d });
    } else local.push(s);
  }
  if (local.length === 0) return out;
  const source = await sourceFor(ex, inst.kind === 'copy' ? inst.from : undefined, inst);
  const filtered = (m: CopySourceMatch, include: { include?: PatternMatcher }): Match => {
    const sel = { ...include, ...(exclude ? { exclude } : {}) };
    const descend = descendFor(sel);
    return { ...m, entries: () => selectEntries(m.entries(descend ? { descend } : {}), sel) };
  };
  if (!(inst.kind === 'copy' && inst.parents)) {
    for (const m of await source.resolve(local).catch(at(where))) out.push(filtered(m, {}));
    return out;
  }
  for (const s of local) {
    const { pivot, pattern } = splitParents(s);
    const wild = hasWildcards(pivot) || hasWildcards(pattern);
    // Without wildcards the path must exist (BuildKit's RequiredPaths); with them, no match copies nothing.
    if (!wild) await source.resolve([path.posix.join(pivot, pattern)]).catch(at(where));
    const pivots = await source.resolve([pivot]).catch((err: unknown) => {
      if (wild && err instanceof BuilderError && err.code === 'COPY_SOURCE_NOT_FOUND') return [] as CopySourceMatch[];
      throw at(where)(err);
    });
    // "src/./" keeps everything under the pivot.
    const include = pattern === '.' ? undefined : copyPatterns([pattern], where, '--parents');
    for (const m of pivots) out.push(filtered(m, include ? { include } : {}));
  }
  return out;
}

/**
 * --parents: "a/./b/c" keeps "b/c" under the destination (the part after the first "/./"); without a pivot the whole
 * path is kept, from the source root. The kept part is matched as an include pattern (wildcards and "**" allowed).
 */
export function splitParents(src: string): { pivot: string; pattern: string } {
  const i = src.indexOf('/./');
  const pivot = i < 0 ? '/' : src.slice(0, i) || '/';
  const rest = i < 0 ? src : src.slice(i + 3);
  const pattern = path.posix.resolve('/', rest).slice(1) || '.';
  return { pivot, pattern };
}

/** One download per URL and checksum per build: the cache key (computed ahead) and the step share it. */
function downloadOnce(ex: Executor, url: string, checksum: string | undefined, where: string): Promise<Download> {
  const key = `${url}\0${checksum ?? ''}`;
  let p = ex.scheduling.downloads.get(key);
  if (!p) {
    const file = ex.settings.scratchPath('download');
    // any URL may redirect to https: the extra CA certificates, when set, come along
    p = ex.services.client.fetchDispatcher().then((d) => download(url, file, { where, signal: ex.scheduling.signal, dispatcher: d, ...(checksum !== undefined ? { checksum } : {}) }));
    ex.scheduling.downloads.set(key, p);
  }
  return p;
}

async function sourceFor(ex: Executor, from: string | undefined, { file, line }: { file: string; line: number }): Promise<CopySource> {
  if (from === undefined) return contextSource(ex.services.ctx);
  const src = lookupSource(ex, from, { file, line, what: 'COPY --from' });
  return rootSource(await sourceRoot(ex, src, `${file}:${line}`), src.label);
}

/** The sources of a COPY/ADD as selected (for the cache key): same resolution and filters as the step itself. */
async function selectedForKey(ex: Executor, inst: Copy, where: string): Promise<Array<{ name: string; entries: AsyncIterable<CopyEntry> }>> {
  checkInstruction(inst, where);
  // A download's name and Last-Modified (the file's mtime) are part of what is placed; its bytes are hashed like a file's.
  return (await selectedMatches(ex, inst, where)).map((m) => ({
    name: m.remote ? `url\0${m.name}\0${m.remote.lastModified ?? ''}` : m.type === 'dir' ? '.' : m.name,
    entries: m.entries(),
  }));
}
