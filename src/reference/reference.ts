// Image reference parsing and normalization (docker's grammar: registry[:port]/path[:tag][@digest]).
import { BuilderError } from '../errors.js';
import { isDigest, type Digest } from '../digest/index.js';

/** The canonical registry host for Docker Hub (what `docker.io` and bare names resolve to). */
export const DOCKER_HUB = 'index.docker.io';

export interface ImageRef {
  /** Registry host, with port if any, e.g. "index.docker.io", "localhost:5000", "[::1]:5000". */
  readonly registry: string;
  /** Repository path without registry, e.g. "library/busybox". */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: Digest;
  /** "registry/repository". */
  readonly name: string;
  /** Canonical "registry/repo:tag", "registry/repo@digest" or "registry/repo:tag@digest". */
  toString(): string;
}

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const MAX_NAME = 255;

function invalid(s: string, why: string): BuilderError {
  return new BuilderError('REFERENCE_INVALID', `invalid image reference "${s}": ${why}`, {
    hint: 'use [registry[:port]/]repository[:tag][@sha256:digest], e.g. registry.example.com:5000/group/app:1.0',
  });
}

/** Docker's rule: the first path component is a registry if it has a dot or colon, is localhost, or has uppercase. */
function looksLikeDomain(first: string): boolean {
  return first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[') || first !== first.toLowerCase();
}

/** Maps the Docker Hub aliases to one canonical host so auth and equality work. */
export function normalizeRegistry(host: string): string {
  const h = host.toLowerCase();
  if (h === 'docker.io' || h === 'index.docker.io' || h === 'registry-1.docker.io' || h === 'registry.hub.docker.com') return DOCKER_HUB;
  return host;
}

class Ref implements ImageRef {
  readonly name: string;
  constructor(
    readonly registry: string,
    readonly repository: string,
    readonly tag: string | undefined,
    readonly digest: Digest | undefined,
  ) {
    this.name = `${registry}/${repository}`;
  }
  toString(): string {
    return `${this.name}${this.tag !== undefined ? `:${this.tag}` : ''}${this.digest !== undefined ? `@${this.digest}` : ''}`;
  }
}

/** Parses and normalizes an image reference; a reference without tag or digest gets tag "latest". */
export function parseReference(input: string): ImageRef {
  const r = parseParts(input);
  return new Ref(r.registry, r.repository, r.tag === undefined && r.digest === undefined ? 'latest' : r.tag, r.digest);
}

/** Parses a repository name (no tag or digest allowed), e.g. for listing tags. */
export function parseRepository(input: string): ImageRef {
  const r = parseParts(input);
  if (r.tag !== undefined || r.digest !== undefined) throw invalid(input, 'expected a repository without tag or digest');
  return new Ref(r.registry, r.repository, undefined, undefined);
}

function parseParts(input: string): { registry: string; repository: string; tag?: string; digest?: Digest } {
  const s = input.trim();
  if (s === '') throw invalid(input, 'it is empty');
  if (/\s/.test(s)) throw invalid(input, 'it contains whitespace');
  if (s.includes('://')) throw invalid(input, 'a reference has no scheme (drop "http://" or "https://")');

  let rest = s;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) throw invalid(input, `"${d}" is not a sha256 digest (sha256: followed by 64 lowercase hex characters)`);
    digest = d;
    rest = rest.slice(0, at);
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  // a colon after the last slash separates the tag; before it, it is a registry port
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw invalid(input, `tag "${tag}" must be 1-128 characters of letters, digits, "_", "." or "-", not starting with "." or "-"`);
  }

  let registry = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0 && looksLikeDomain(rest.slice(0, slash))) {
    registry = rest.slice(0, slash);
    repository = rest.slice(slash + 1);
    if (!DOMAIN_RE.test(registry)) throw invalid(input, `"${registry}" is not a valid registry host[:port]`);
    registry = normalizeRegistry(registry);
  } else if (slash < 0 && rest.includes(':')) {
    throw invalid(input, 'a registry needs a repository after it');
  }
  if (repository === '') throw invalid(input, 'the repository name is empty');
  if (repository !== repository.toLowerCase()) throw invalid(input, `repository "${repository}" must be lowercase`);
  for (const part of repository.split('/')) {
    if (part === '') throw invalid(input, 'the repository has an empty path component (double or trailing "/")');
    if (!PATH_COMPONENT_RE.test(part)) {
      throw invalid(input, `path component "${part}" may only contain lowercase letters, digits and single separators (".", "_", "__", "-") between them`);
    }
  }
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (`${registry}/${repository}`.length > MAX_NAME) throw invalid(input, `the name is longer than ${MAX_NAME} characters`);
  return { registry, repository, tag, digest };
}

export function withTag(ref: ImageRef, tag: string): ImageRef {
  if (!TAG_RE.test(tag)) throw invalid(`${ref.name}:${tag}`, `tag "${tag}" is not valid`);
  return new Ref(ref.registry, ref.repository, tag, undefined);
}

export function withDigest(ref: ImageRef, digest: Digest): ImageRef {
  if (!isDigest(digest)) throw invalid(`${ref.name}@${digest}`, `"${digest}" is not a sha256 digest`);
  return new Ref(ref.registry, ref.repository, undefined, digest);
}

/** Same registry and repository, no tag or digest. */
export function repositoryOf(ref: ImageRef): ImageRef {
  return new Ref(ref.registry, ref.repository, undefined, undefined);
}

/** What goes in /v2/<repo>/manifests/<identifier>: the digest if present, else the tag. */
export function identifier(ref: ImageRef): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

export function sameRepository(a: ImageRef, b: ImageRef): boolean {
  return a.registry === b.registry && a.repository === b.repository;
}

/** Hostname without port or IPv6 brackets, e.g. for loopback checks. */
export function registryHostname(registry: string): string {
  if (registry.startsWith('[')) return registry.slice(1, registry.indexOf(']'));
  const c = registry.lastIndexOf(':');
  return c >= 0 ? registry.slice(0, c) : registry;
}
