// Credentials for a registry from docker config.json, credential helpers, DOCKER_AUTH_CONFIG and GitLab CI variables.
import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BuilderError } from '../errors.js';
import { DOCKER_HUB, normalizeRegistry } from '../reference/index.js';
import { writeFileAtomic } from '../util/fs.js';

/** A username/password pair, or an identity token (OAuth2 refresh token) exchanged at the token endpoint. */
export interface Credential {
  username?: string;
  password?: string;
  identityToken?: string;
}

/** Looks up credentials for a registry host (as in ImageRef.registry); undefined means anonymous. */
export type CredentialProvider = (registry: string) => Promise<Credential | undefined>;

/** Runs `docker-credential-<name> get` with stdin = server URL; returns its stdout, or throws. */
export type HelperRunner = (helper: string, serverUrl: string) => Promise<string>;

export interface CredentialSources {
  /** The environment to read (the CLI passes process.env). */
  env: Record<string, string | undefined>;
  /** Home directory for ~/.docker/config.json. */
  homeDir?: string;
  /** Override for tests; default executes docker-credential-<name> on env.PATH. */
  runHelper?: HelperRunner;
  /** A config.json read when the DOCKER_CONFIG (or home) one does not exist: kaniko's /kaniko/.docker in the executor image. */
  fallbackConfig?: string;
  /** Told when fallbackConfig is the config read. */
  onFallback?: (path: string) => void;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

export interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** Normalizes config.json keys ("https://index.docker.io/v1/", "docker.io", "r.io:5000/") to registry hosts. */
export function configKeyToRegistry(key: string): string {
  let k = key.trim().replace(/^[a-z]+:\/\//i, '');
  const slash = k.indexOf('/');
  if (slash >= 0) k = k.slice(0, slash);
  return normalizeRegistry(k);
}

/** The server URL credential helpers expect: Docker Hub's legacy v1 URL, otherwise the host. */
function helperServerUrl(registry: string): string {
  return registry === DOCKER_HUB ? 'https://index.docker.io/v1/' : registry;
}

function badConfig(where: string, why: string): BuilderError {
  return new BuilderError('CREDENTIALS_INVALID', `${where}: ${why}`, { hint: 'fix the docker config JSON (see docs for the config.json format)' });
}

function fromEntry(e: AuthEntry, where: string): Credential | undefined {
  if (e.identitytoken) return { identityToken: e.identitytoken, ...(e.username ? { username: e.username } : {}) };
  if (e.username !== undefined && e.password !== undefined && (e.username || e.password)) return { username: e.username, password: e.password };
  if (e.auth) {
    const dec = Buffer.from(e.auth, 'base64').toString('utf8');
    const i = dec.indexOf(':');
    if (i < 0) throw badConfig(where, 'an "auth" value does not decode to user:password');
    return { username: dec.slice(0, i), password: dec.slice(i + 1) };
  }
  return undefined;
}

function defaultRunner(env: Record<string, string | undefined>): HelperRunner {
  return (helper, serverUrl) =>
    new Promise((resolve, reject) => {
      const child = execFile(`docker-credential-${helper}`, ['get'], { env: env as NodeJS.ProcessEnv, timeout: 30_000, maxBuffer: 1024 * 1024 }, (err, stdout) => {
        if (err) {
          // helpers answer "credentials not found" on stdout with exit 1 when they have nothing
          if (/credentials not found/i.test(String(stdout))) resolve('');
          else reject(err);
        } else resolve(String(stdout));
      });
      // a helper that answers without reading stdin closes it: the exit status and stdout tell, not EPIPE
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(serverUrl);
    });
}

async function fromHelper(helper: string, registry: string, src: CredentialSources): Promise<Credential | undefined> {
  const run = src.runHelper ?? defaultRunner(src.env);
  let out: string;
  try {
    out = await run(helper, helperServerUrl(registry));
  } catch (err) {
    throw new BuilderError('CREDENTIAL_HELPER_FAILED', `credential helper docker-credential-${helper} failed for registry ${registry}: ${(err as Error).message.split('\n')[0]}`, {
      hint: `check docker-credential-${helper} is on PATH and logged in, or remove it from the docker config`,
    });
  }
  if (out.trim() === '') return undefined;
  let j: { Username?: string; Secret?: string };
  try {
    j = JSON.parse(out) as { Username?: string; Secret?: string };
  } catch {
    throw new BuilderError('CREDENTIAL_HELPER_FAILED', `credential helper docker-credential-${helper} returned invalid JSON for registry ${registry}`, { hint: 'check the helper version' });
  }
  if (!j.Secret) return undefined;
  // "<token>" as the user is the helper protocol's way of returning an identity token
  if (j.Username === '<token>') return { identityToken: j.Secret };
  return { username: j.Username ?? '', password: j.Secret };
}

/** Credentials for registry from one parsed docker config: credHelpers, then auths, then credsStore. */
export async function credentialFromConfig(cfg: DockerConfig, registry: string, where: string, src: CredentialSources): Promise<Credential | undefined> {
  for (const [k, helper] of Object.entries(cfg.credHelpers ?? {})) {
    if (configKeyToRegistry(k) === registry) return fromHelper(helper, registry, src);
  }
  for (const [k, e] of Object.entries(cfg.auths ?? {})) {
    if (configKeyToRegistry(k) === registry && e && typeof e === 'object') {
      const c = fromEntry(e, where);
      if (c) return c;
    }
  }
  if (cfg.credsStore) return fromHelper(cfg.credsStore, registry, src);
  return undefined;
}

function parseConfig(text: string, where: string): DockerConfig {
  try {
    const j = JSON.parse(text) as unknown;
    if (typeof j !== 'object' || j === null) throw new Error('not an object');
    return j as DockerConfig;
  } catch (err) {
    throw badConfig(where, `not valid JSON (${(err as Error).message})`);
  }
}

/** The docker config's directory: $DOCKER_CONFIG (empty counts as unset, as docker), else HOME/.docker; undefined without either. */
export function dockerConfigDir(env: Record<string, string | undefined>, home: string | undefined): string | undefined {
  return env.DOCKER_CONFIG || (home ? join(home, '.docker') : undefined);
}

/** Reads $DOCKER_CONFIG/config.json, else ~/.docker/config.json, else src.fallbackConfig; undefined when none exists. */
export async function readDockerConfig(src: CredentialSources): Promise<{ config: DockerConfig; path: string } | undefined> {
  const dir = dockerConfigDir(src.env, src.homeDir);
  if (!dir) return undefined;
  const path = join(dir, 'config.json');
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text !== undefined) return { config: parseConfig(text, path), path };
  const fallback = src.fallbackConfig ? await readFile(src.fallbackConfig, 'utf8').catch(() => undefined) : undefined;
  if (fallback === undefined || !src.fallbackConfig) return undefined;
  src.onFallback?.(src.fallbackConfig);
  return { config: parseConfig(fallback, src.fallbackConfig), path: src.fallbackConfig };
}

/** GitLab CI: CI_REGISTRY with CI_REGISTRY_USER/PASSWORD, or CI_JOB_TOKEN as gitlab-ci-token. */
export function credentialFromGitLabEnv(env: Record<string, string | undefined>, registry: string): Credential | undefined {
  if (!env.CI_REGISTRY || configKeyToRegistry(env.CI_REGISTRY) !== registry) return undefined;
  if (env.CI_REGISTRY_USER && env.CI_REGISTRY_PASSWORD) return { username: env.CI_REGISTRY_USER, password: env.CI_REGISTRY_PASSWORD };
  if (env.CI_JOB_TOKEN) return { username: 'gitlab-ci-token', password: env.CI_JOB_TOKEN };
  return undefined;
}

/**
 * Credentials for registry. Order: DOCKER_AUTH_CONFIG (explicit for this job), the docker config file,
 * then GitLab CI variables; anonymous when none match.
 */
export async function resolveCredential(
  registry: string, src: CredentialSources, configFile: Promise<Awaited<ReturnType<typeof readDockerConfig>>> = readDockerConfig(src),
): Promise<Credential | undefined> {
  const inline = src.env.DOCKER_AUTH_CONFIG;
  if (inline && inline.trim() !== '') {
    const c = await credentialFromConfig(parseConfig(inline, 'DOCKER_AUTH_CONFIG'), registry, 'DOCKER_AUTH_CONFIG', src);
    if (c) return c;
  }
  const file = await configFile;
  if (file) {
    const c = await credentialFromConfig(file.config, registry, file.path, src);
    if (c) return c;
  }
  return credentialFromGitLabEnv(src.env, registry);
}

/**
 * A CredentialProvider over the given sources (what RegistryClientOptions.credentials expects). The config file is
 * read now, once: in place the build later replaces "/" (and a config.json under it) before the push asks.
 */
export function credentialProvider(src: CredentialSources): CredentialProvider {
  const file = readDockerConfig(src);
  file.catch(() => undefined); // reported when a registry first asks
  return (registry) => resolveCredential(registry, src, file);
}

function configPath(src: CredentialSources): string {
  const dir = dockerConfigDir(src.env, src.homeDir);
  if (!dir) throw new BuilderError('CREDENTIALS_NO_HOME', 'no place for the docker config: neither DOCKER_CONFIG nor a home directory is set', { hint: 'set DOCKER_CONFIG=/path/to/dir' });
  return join(dir, 'config.json');
}

/** Docker Hub's config.json key is its v1 URL; every other registry is keyed by host[:port]. */
function configKey(registry: string): string {
  return registry === 'index.docker.io' ? 'https://index.docker.io/v1/' : registry;
}

/** Writes the config back in place of the old one (temp file + rename; owner-only, it holds secrets). */
async function writeConfig(path: string, cfg: DockerConfig): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
}

/** `builder login`: stores user:password for registry in the docker config's auths (other entries untouched). Returns the file. */
export async function saveLogin(src: CredentialSources, registry: string, username: string, password: string): Promise<string> {
  const path = configPath(src);
  const cfg = (await readDockerConfig(src))?.config ?? {};
  const auths = { ...(cfg.auths ?? {}) };
  for (const k of Object.keys(auths)) if (configKeyToRegistry(k) === registry) delete auths[k];
  auths[configKey(registry)] = { auth: Buffer.from(`${username}:${password}`).toString('base64') };
  await writeConfig(path, { ...cfg, auths });
  return path;
}

/** `builder logout`: removes registry's auths entries; false when there was none. */
export async function removeLogin(src: CredentialSources, registry: string): Promise<boolean> {
  const found = await readDockerConfig(src);
  if (!found) return false;
  const auths = { ...(found.config.auths ?? {}) };
  const keys = Object.keys(auths).filter((k) => configKeyToRegistry(k) === registry);
  if (keys.length === 0) return false;
  for (const k of keys) delete auths[k];
  await writeConfig(found.path, { ...found.config, auths });
  return true;
}
