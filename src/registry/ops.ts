// Registry operations behind the CLI's thin commands: push check, tag, describe tags, delete, cleanup policy, multi-platform index.
import { randomBytes } from 'node:crypto';
import { BuilderError, isBuilderError } from '../errors.js';
import type { Digest } from '../digest/index.js';
import { normalizeRegistry, parseReference, repositoryOf, sameRepository, withDigest, withTag, type ImageRef } from '../reference/index.js';
import { isIndexMediaType, MediaType, parseConfig, parseIndex, parseManifest, type Descriptor, type Platform } from '../image/index.js';
import type { EventSink } from '../util/events.js';
import { runPool } from '../util/pool.js';
import type { RegistryClient } from './client.js';
import { copyImage } from './copy.js';

/** "reg=mirror[;reg2=mirror2]" entries (kaniko --registry-map), repeatable; several mirrors per registry keep their order. */
export function parseRegistryMap(specs: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const spec of specs) {
    for (const part of spec.split(';').map((p) => p.trim()).filter(Boolean)) {
      const eq = part.indexOf('=');
      if (eq <= 0 || eq === part.length - 1) {
        throw new BuilderError('FLAG_INVALID', `--registry-map "${part}" is not registry=mirror`, { hint: 'e.g. --registry-map index.docker.io=mirror.example.com;quay.io=quay-mirror.example.com' });
      }
      const from = normalizeRegistry(part.slice(0, eq).trim());
      (out[from] ??= []).push(...part.slice(eq + 1).split(',').map((m) => m.trim()).filter(Boolean));
    }
  }
  return out;
}

/**
 * Before a build: every repository in refs (destinations, the cache repository) accepts a push. Runs the checks at
 * once; returns the repositories checked. The first failure is thrown as the registry reported it.
 */
export async function checkPushAccess(client: RegistryClient, refs: readonly ImageRef[]): Promise<string[]> {
  const repos = new Map<string, ImageRef>();
  for (const r of refs) repos.set(r.name, repositoryOf(r));
  const results = await Promise.allSettled([...repos.values()].map((r) => client.checkPush(r)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    const e = failed.reason;
    if (e instanceof BuilderError) {
      throw new BuilderError(e.code, `before building: ${e.message}`, { ...(e.hint ? { hint: `${e.hint} (or skip this check with --skip-push-permission-check)` } : {}), cause: e, exitCode: e.exitCode });
    }
    throw e;
  }
  return [...repos.keys()];
}

/** Points each new tag at src's manifest: one manifest GET and one PUT per tag, no blob traffic (same repository). */
export async function tagImage(client: RegistryClient, src: ImageRef, tags: readonly string[]): Promise<{ digest: Digest; tagged: ImageRef[] }> {
  const targets = tags.map((t) => {
    const ref = /[/:@]/.test(t) ? parseReference(t) : withTag(src, t);
    if (!sameRepository(ref, src)) {
      throw new BuilderError('TAG_OTHER_REPOSITORY', `${t} is in another repository than ${src.name}`, { hint: 'tag within one repository; to put an image in another repository use builder copy' });
    }
    if (!ref.tag || ref.digest) throw new BuilderError('REFERENCE_INVALID', `${t} is not a tag`, { hint: 'give tags, e.g. v1.2.3 or latest' });
    return ref;
  });
  const m = await client.getManifest(src);
  for (const t of targets) await client.putManifest(t, m.bytes, m.mediaType);
  return { digest: m.digest, tagged: targets };
}

export interface TagInfo {
  tag: string;
  digest: Digest;
  mediaType: string;
  /** The image config's created time (for an index: of the image for the client's platform, else the first). */
  created?: string;
  platforms?: string[];
}

/** Describes tags of a repository: digest, media type and created time (manifest + config per tag, 8 at a time). */
export async function describeTags(client: RegistryClient, repo: ImageRef, tags?: readonly string[]): Promise<TagInfo[]> {
  const list = tags ?? (await client.listTags(repo));
  const out = new Map<string, TagInfo>();
  const configs = new Map<string, Promise<string | undefined>>();
  const createdOf = (manifestRef: ImageRef, bytes: Buffer): Promise<string | undefined> => {
    const man = parseManifest(bytes, `manifest ${manifestRef}`);
    let p = configs.get(man.config.digest);
    if (!p) {
      p = client.readBlob(manifestRef, man.config).then((b) => parseConfig(b, `config of ${manifestRef}`).created);
      configs.set(man.config.digest, p);
    }
    return p;
  };
  await runPool(list, 8, async (tag) => {
    const ref = withTag(repo, tag);
    let m;
    try {
      m = await client.getManifest(ref);
    } catch (err) {
      // a tag deleted between the list and the read is simply gone
      if (isBuilderError(err) && /MANIFEST_UNKNOWN|NOT_FOUND/.test(err.code)) return;
      throw err;
    }
    const info: TagInfo = { tag, digest: m.digest, mediaType: m.mediaType };
    if (isIndexMediaType(m.mediaType)) {
      const idx = parseIndex(m.bytes, `index ${ref}`);
      info.platforms = idx.manifests.filter((d) => d.platform).map((d) => `${d.platform!.os}/${d.platform!.architecture}${d.platform!.variant ? `/${d.platform!.variant}` : ''}`);
      const first = idx.manifests.find((d) => !isIndexMediaType(d.mediaType));
      if (first) {
        const child = await client.getManifest(withDigest(repo, first.digest));
        const c = await createdOf(withDigest(repo, first.digest), child.bytes);
        if (c) info.created = c;
      }
    } else {
      const c = await createdOf(ref, m.bytes);
      if (c) info.created = c;
    }
    out.set(tag, info);
  });
  return list.filter((t) => out.has(t)).map((t) => out.get(t)!);
}

export interface CleanupPolicy {
  /** Full-match regex (RE2 syntax as GitLab): tags that may be deleted. Required. */
  nameRegexDelete: string;
  /** Full-match regex: tags always kept. */
  nameRegexKeep?: string;
  /** Keep the N most recent deletable tags. */
  keepN?: number;
  /** Only tags created longer ago than this (ms) are deleted. */
  olderThanMs?: number;
}

export interface CleanupPlan {
  delete: TagInfo[];
  keep: Array<TagInfo & { reason: string }>;
}

function anchored(re: string, flag: string): RegExp {
  try {
    return new RegExp(`^(?:${re})$`);
  } catch (err) {
    throw new BuilderError('FLAG_INVALID', `${flag} "${re}" is not a valid regular expression: ${(err as Error).message}`, { hint: 'GitLab cleanup regexes use RE2 syntax, e.g. .* or v.+' });
  }
}

/**
 * GitLab's cleanup-policy order: latest never; only names fully matching the delete regex; names fully matching the
 * keep regex kept; the keep-n most recent kept; tags newer than older-than kept. Pure: deciding, not deleting.
 */
export function planCleanup(tags: readonly TagInfo[], policy: CleanupPolicy, now: Date): CleanupPlan {
  const del = anchored(policy.nameRegexDelete, '--name-regex-delete');
  const keepRe = policy.nameRegexKeep ? anchored(policy.nameRegexKeep, '--name-regex-keep') : undefined;
  const keep: CleanupPlan['keep'] = [];
  let candidates: TagInfo[] = [];
  for (const t of tags) {
    if (t.tag === 'latest') keep.push({ ...t, reason: 'latest is never deleted' });
    else if (!del.test(t.tag)) keep.push({ ...t, reason: 'does not match --name-regex-delete' });
    else if (keepRe?.test(t.tag)) keep.push({ ...t, reason: 'matches --name-regex-keep' });
    else candidates.push(t);
  }
  const time = (t: TagInfo): number => (t.created ? Date.parse(t.created) : NaN);
  // newest first; tags without a created time count as oldest (GitLab orders by created date)
  candidates.sort((a, b) => (Number.isNaN(time(b)) ? -Infinity : time(b)) - (Number.isNaN(time(a)) ? -Infinity : time(a)) || a.tag.localeCompare(b.tag));
  if (policy.keepN !== undefined && policy.keepN > 0) {
    for (const t of candidates.slice(0, policy.keepN)) keep.push({ ...t, reason: `one of the ${policy.keepN} most recent (--keep-n)` });
    candidates = candidates.slice(policy.keepN);
  }
  const out: TagInfo[] = [];
  for (const t of candidates) {
    if (policy.olderThanMs !== undefined) {
      const age = now.getTime() - time(t);
      if (Number.isNaN(age)) {
        keep.push({ ...t, reason: 'no created time in its config: age unknown (--older-than)' });
        continue;
      }
      if (age < policy.olderThanMs) {
        keep.push({ ...t, reason: 'newer than --older-than' });
        continue;
      }
    }
    out.push(t);
  }
  return { delete: out, keep };
}

export interface CleanupResult extends CleanupPlan {
  /** Tags the policy selects that this registry cannot delete (a kept tag shares the manifest, or no deletes at all). */
  skipped: Array<TagInfo & { reason: string }>;
}

/** What a registry lets a client delete, found without deleting anything. */
export interface DeleteSupport {
  /** A tag alone (DELETE /manifests/TAG): distribution 3, GitLab, Harbor; not distribution 2.x. */
  tags: boolean;
  /** A manifest by digest; false with why when the registry refuses deletes. */
  manifests: boolean;
  why?: string;
}

const status = (err: unknown): number | undefined => (err as { status?: number }).status;

/**
 * Asks the registry what it deletes, with DELETEs of a tag and a digest that do not exist: 404 means the operation is
 * there (and found nothing); distribution 2.x answers a tag with 400 DIGEST_INVALID, and 405 UNSUPPORTED to both
 * when deletes are off. Other failures (no permission) are thrown: the real run would meet them too.
 */
export async function probeDeletes(client: RegistryClient, repo: ImageRef): Promise<DeleteSupport> {
  const probeTag = `builder-delete-probe-${randomBytes(8).toString('hex')}`;
  const tags = await client.deleteTag(withTag(repo, probeTag)).then(
    (r) => r === 'deleted',
    (err: unknown) => {
      if (status(err) === 404) return true;
      throw err;
    },
  );
  try {
    await client.deleteManifest(withDigest(repo, `sha256:${'0'.repeat(64)}` as Digest));
    return { tags, manifests: true };
  } catch (err) {
    if (status(err) === 404) return { tags, manifests: true };
    if (status(err) === 405 || isBuilderError(err, 'REGISTRY_UNSUPPORTED')) {
      return { tags: false, manifests: false, why: `registry ${repo.registry} does not allow deletes (405: its storage delete setting is off)` };
    }
    throw err;
  }
}

/** One deletion of a schedule: a tag alone, its manifest (the first tag of it), or a tag that goes with that manifest. */
export interface ScheduledDelete {
  tag: TagInfo;
  by: 'tag' | 'manifest' | 'with-manifest';
}

/**
 * What the real run does with a plan on a registry: each tag alone where it can; else by manifest, but only when no
 * kept tag shares it (a kept tag is never lost through a shared digest). Pure, so a dry run says exactly this.
 */
export function scheduleDeletes(plan: CleanupPlan, support: DeleteSupport): { deletes: ScheduledDelete[]; skipped: CleanupResult['skipped'] } {
  const kept = new Map<string, string>();
  for (const k of plan.keep) if (!kept.has(k.digest)) kept.set(k.digest, k.tag);
  const manifests = new Set<string>();
  const deletes: ScheduledDelete[] = [];
  const skipped: CleanupResult['skipped'] = [];
  for (const t of plan.delete) {
    const keeper = kept.get(t.digest);
    if (!support.manifests && !support.tags) skipped.push({ ...t, reason: support.why ?? 'the registry does not allow deletes' });
    else if (support.tags) deletes.push({ tag: t, by: 'tag' });
    else if (keeper !== undefined) skipped.push({ ...t, reason: `shares its manifest with the kept tag ${keeper}, and this registry cannot delete a tag alone` });
    else {
      deletes.push({ tag: t, by: manifests.has(t.digest) ? 'with-manifest' : 'manifest' });
      manifests.add(t.digest);
    }
  }
  return { deletes, skipped };
}

/**
 * Applies planCleanup as scheduleDeletes says (after probing what the registry deletes); a dry run stops before
 * deleting and returns the same result. A deletion failing midway throws CLEANUP_FAILED naming what was deleted.
 */
export async function cleanupRepository(
  client: RegistryClient, repo: ImageRef, policy: CleanupPolicy, opts: { now?: Date; dryRun?: boolean; onDelete?: (t: TagInfo) => void } = {},
): Promise<CleanupResult> {
  const tags = await describeTags(client, repo);
  const plan = planCleanup(tags, policy, opts.now ?? new Date());
  if (plan.delete.length === 0) return { ...plan, skipped: [] };
  const { deletes, skipped } = scheduleDeletes(plan, await probeDeletes(client, repo));
  const result = { delete: deletes.map((d) => d.tag), keep: plan.keep, skipped };
  if (opts.dryRun) return result;
  const done: string[] = [];
  for (const d of deletes) {
    try {
      if (d.by === 'tag' && (await client.deleteTag(withTag(repo, d.tag.tag))) !== 'deleted') {
        throw new BuilderError('REGISTRY_UNSUPPORTED', `registry ${repo.registry} refused to delete the tag alone, although it answered the probe as if it could`, { hint: 'report this registry' });
      }
      else if (d.by === 'manifest') await client.deleteManifest(withDigest(repo, d.tag.digest));
    } catch (err) {
      throw new BuilderError('CLEANUP_FAILED', `cleanup of ${repo.name} stopped at ${d.tag.tag} after deleting ${done.length ? done.join(', ') : 'nothing'}: ${(err as Error).message}`, {
        hint: 'fix the cause and run the cleanup again (tags already deleted are not listed again)', cause: err,
      });
    }
    done.push(d.tag.tag);
    opts.onDelete?.(d.tag);
  }
  return result;
}

/** The tags of repo whose manifest is digest, sorted (one HEAD per tag, 8 at a time). */
export async function tagsOnManifest(client: RegistryClient, repo: ImageRef, digest: Digest): Promise<string[]> {
  const tags = await client.listTags(repo);
  const on = new Set<string>();
  await runPool(tags, 8, async (tag) => {
    if ((await client.headManifest(withTag(repo, tag)))?.digest === digest) on.add(tag);
  });
  return tags.filter((t) => on.has(t)).sort();
}

export interface DeleteResult {
  digest?: Digest;
  /** tag: the tag alone went; manifest: the manifest went, and with it `removedTags`. */
  how: 'tag' | 'manifest';
  removedTags: string[];
}

/**
 * Deletes REF: a tag alone where the registry can. Where it cannot (distribution 2.x), only by deleting its manifest,
 * which removes every tag on it: refused, naming them, when other tags share it, unless allTags. REF@digest deletes
 * the manifest (the tags on it are reported).
 */
export async function deleteImage(client: RegistryClient, ref: ImageRef, opts: { allTags?: boolean } = {}): Promise<DeleteResult> {
  if (ref.tag && !ref.digest) {
    if ((await client.deleteTag(ref)) === 'deleted') return { how: 'tag', removedTags: [ref.tag] };
  }
  const digest = ref.digest ?? (await client.headManifest(ref))?.digest;
  if (!digest) throw new BuilderError('REGISTRY_MANIFEST_UNKNOWN', `${ref} does not exist on registry ${ref.registry}`, { hint: 'check the tag (builder ls REPO)' });
  const removedTags = await tagsOnManifest(client, repositoryOf(ref), digest);
  const others = removedTags.filter((t) => t !== ref.tag);
  if (ref.tag && !ref.digest && others.length > 0 && !opts.allTags) {
    throw new BuilderError('DELETE_SHARED_MANIFEST', `${ref} shares its manifest ${digest} with ${others.map((t) => `${ref.name}:${t}`).join(', ')}; `
      + `registry ${ref.registry} cannot delete a tag alone, and deleting the manifest would remove ${others.length === 1 ? 'that tag' : 'those tags'} too. Nothing was deleted`, {
      hint: `pass --all-tags to delete the manifest with all ${removedTags.length} tags, or leave ${ref.tag} in place`,
    });
  }
  await client.deleteManifest(withDigest(ref, digest));
  return { digest, how: 'manifest', removedTags };
}

/**
 * Pushes a multi-platform index at dst made of single-platform images (each platform read from its config). Sources in
 * other repositories are copied into dst's repository by digest first (mounted where the registry allows).
 */
export async function createIndex(client: RegistryClient, dst: ImageRef, sources: readonly ImageRef[], opts: { emit?: EventSink } = {}): Promise<{ digest: Digest; mediaType: string; manifests: Descriptor[] }> {
  if (sources.length === 0) throw new BuilderError('FLAG_MISSING', 'manifest create needs at least one source image', { hint: 'builder manifest create DST SRC1 SRC2...' });
  const manifests: Descriptor[] = [];
  let oci = 0;
  for (const src of sources) {
    const m = await client.getManifest(src);
    if (isIndexMediaType(m.mediaType)) {
      throw new BuilderError('MANIFEST_SOURCE_INDEX', `${src} is already a multi-platform index`, { hint: 'name its single-platform images (REF@sha256:...) instead' });
    }
    const man = parseManifest(m.bytes, `manifest ${src}`);
    const config = parseConfig(await client.readBlob(src, man.config), `config of ${src}`);
    const platform: Platform = { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) };
    const key = `${platform.os}/${platform.architecture}/${platform.variant ?? ''}`;
    const dup = manifests.find((d) => `${d.platform?.os}/${d.platform?.architecture}/${d.platform?.variant ?? ''}` === key);
    if (dup) throw new BuilderError('MANIFEST_PLATFORM_DUPLICATE', `${src} and ${dup.digest} are both ${key.replace(/\/$/, '')}`, { hint: 'give one image per platform' });
    if (!sameRepository(src, dst)) {
      await copyImage(client, { kind: 'registry', ref: withDigest(src, m.digest) }, { kind: 'registry', ref: withDigest(repositoryOf(dst), m.digest) }, opts.emit ? { emit: opts.emit } : {});
      opts.emit?.({ type: 'image-copied', from: src.toString(), into: dst.name });
    }
    if (m.mediaType === MediaType.OciManifest) oci++;
    manifests.push({ mediaType: m.mediaType, digest: m.digest, size: m.bytes.length, platform });
  }
  // Docker sources get a Docker manifest list (what docker manifest create makes); any OCI source makes it an OCI index
  const mediaType = oci > 0 ? MediaType.OciIndex : MediaType.DockerManifestList;
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests }));
  const digest = await client.putManifest(dst, bytes, mediaType);
  return { digest, mediaType, manifests };
}
