// Thin registry commands: tag, delete, cleanup, manifest create, login, logout (the work is in src/registry).
import { homedir } from 'node:os';
import type { Command } from 'commander';
import { BuilderError } from '../../errors.js';
import { normalizeRegistry, parseReference, parseRepository } from '../../reference/index.js';
import { cleanupRepository, createIndex, deleteImage, RegistryClient, removeLogin, saveLogin, tagImage, type TagInfo } from '../../registry/index.js';
import { parseDuration } from '../duration.js';
import type { CliEnv } from '../env.js';
import { parseCount } from '../flag-values.js';
import { builderVersion } from '../version.js';
import { addRegistryFlags, commandRenderer, loggerFromFlags, registryOptions, type RegistryFlags } from '../registry-flags.js';

const stripScheme = (s: string): string => (s.startsWith('docker://') ? s.slice('docker://'.length) : s);

async function withClient<T>(flags: RegistryFlags, env: CliEnv, fn: (c: RegistryClient) => Promise<T>): Promise<T> {
  const client = new RegistryClient(registryOptions(flags, env));
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** GitLab's older_than values ("7d", "14d", "30d", "90d") and Go durations. */
export function parseAge(v: string, flag: string): number {
  const d = /^(\d+)d$/.exec(v);
  return d ? Number(d[1]) * 86_400_000 : parseDuration(v, flag);
}

async function readStdin(env: CliEnv): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of env.stdin) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

interface CleanupFlags extends RegistryFlags {
  nameRegexDelete?: string;
  nameRegexKeep?: string;
  keepN?: string;
  olderThan?: string;
  dryRun?: boolean;
  json?: boolean;
}

/** The registry commands, in the order `--help` lists them. */
export function register(program: Command, env: CliEnv): void {
  registerTag(program, env);
  registerDelete(program, env);
  registerCleanup(program, env);
  registerManifest(program, env);
  registerLogin(program, env);
  registerVersion(program, env);
  registerLogout(program, env);
}

function registerTag(program: Command, env: CliEnv): void {
  addRegistryFlags(
    program.command('tag')
      .description('point more tags at REF\'s manifest (one manifest read, one write per tag; no blob is moved); prints the digest')
      .argument('<ref>', 'source image, REGISTRY/REPO:TAG or @DIGEST')
      .argument('<tags...>', 'new tags in the same repository (TAG or REGISTRY/REPO:TAG)'),
  ).action(async (refArg: string, tags: string[], flags: RegistryFlags) => {
    const log = loggerFromFlags(flags, env);
    const src = parseReference(stripScheme(refArg));
    const r = await withClient(flags, env, (c) => tagImage(c, src, tags));
    for (const t of r.tagged) log.log('info', `tagged ${t} -> ${r.digest}`);
    env.stdout.write(`${r.digest}\n`);
  });
}

function registerDelete(program: Command, env: CliEnv): void {
  addRegistryFlags(
    program.command('delete')
      .description('delete REF: a tag alone where the registry can; where it cannot (distribution 2.x), its manifest, which takes '
        + 'every tag on it: refused when other tags share it, unless --all-tags. REF@DIGEST deletes the manifest')
      .argument('<ref>', 'REGISTRY/REPO:TAG or REGISTRY/REPO@DIGEST')
      .option('--all-tags', 'where only the manifest can be deleted, delete it even though other tags share it (they go too)'),
  ).action(async (refArg: string, flags: RegistryFlags & { allTags?: boolean }) => {
    const log = loggerFromFlags(flags, env);
    const ref = parseReference(stripScheme(refArg));
    const r = await withClient(flags, env, (c) => deleteImage(c, ref, { allTags: flags.allTags === true }));
    if (r.how === 'tag') log.log('info', `deleted tag ${ref}`);
    else {
      const tags = r.removedTags.length ? ` with its tag${r.removedTags.length > 1 ? 's' : ''} ${r.removedTags.join(', ')}` : '';
      log.log('info', `deleted manifest ${ref.name}@${r.digest}${tags}${ref.digest ? '' : ' (this registry cannot delete a tag alone)'}`);
    }
  });
}

function registerCleanup(program: Command, env: CliEnv): void {
  addRegistryFlags(
    program.command('cleanup')
      .description('delete old tags with GitLab\'s cleanup-policy rules: latest never; only names fully matching --name-regex-delete; '
        + '--name-regex-keep wins; the --keep-n most recent kept; only tags older than --older-than (age from the image config\'s created time). '
        + 'Prints each deleted (or, with --dry-run, deletable) tag; a selected tag the registry cannot delete (a kept tag shares its manifest '
        + 'on a registry without tag deletion) is named and makes the exit status 1, with --dry-run too')
      .argument('<repo>', 'repository, e.g. registry.example.com/group/app')
      .option('--name-regex-delete <regex>', 'tags that may be deleted (required; anchored: ".*" for all, "v.+" for v-tags)')
      .option('--name-regex-keep <regex>', 'tags never deleted (anchored)')
      .option('--keep-n <n>', 'keep this many of the most recent deletable tags')
      .option('--older-than <age>', 'delete only tags created longer ago than this: 7d, 14d, 30d, 90d or a Go duration (e.g. 336h)')
      .option('--dry-run', 'list exactly what the real run would delete (the registry is asked what it can delete); delete nothing')
      .option('--json', 'print one JSON object per tag with its fate (delete, keep, skipped) and why'),
  ).action(async (repoArg: string, flags: CleanupFlags) => {
    const log = loggerFromFlags(flags, env);
    if (!flags.nameRegexDelete) {
      throw new BuilderError('FLAG_MISSING', 'cleanup needs --name-regex-delete (as GitLab\'s policy: nothing is deleted without it)', { hint: 'e.g. --name-regex-delete ".*" --keep-n 10 --older-than 30d' });
    }
    const repo = parseRepository(stripScheme(repoArg));
    const keepN = parseCount(flags.keepN, '--keep-n');
    const olderThanMs = flags.olderThan !== undefined ? parseAge(flags.olderThan, '--older-than') : undefined;
    const policy = {
      nameRegexDelete: flags.nameRegexDelete,
      ...(flags.nameRegexKeep ? { nameRegexKeep: flags.nameRegexKeep } : {}),
      ...(keepN !== undefined ? { keepN } : {}),
      ...(olderThanMs !== undefined ? { olderThanMs } : {}),
    };
    const line = (t: TagInfo, fate: string, reason?: string): string => (flags.json
      ? `${JSON.stringify({ tag: t.tag, digest: t.digest, created: t.created ?? null, fate, ...(reason ? { reason } : {}) })}\n`
      : `${t.tag}\n`);
    const r = await withClient(flags, env, (c) => cleanupRepository(c, repo, policy, {
      ...(flags.dryRun ? { dryRun: true } : {}),
      onDelete: (t) => void env.stdout.write(line(t, 'delete')),
    }));
    if (flags.dryRun) for (const t of r.delete) env.stdout.write(line(t, 'delete'));
    if (flags.json) {
      for (const t of r.keep) env.stdout.write(line(t, 'keep', t.reason));
      for (const t of r.skipped) env.stdout.write(line(t, 'skipped', t.reason));
    }
    for (const t of r.skipped) log.log('warn', `${repo.name}:${t.tag} ${flags.dryRun ? 'would not be' : 'not'} deleted: ${t.reason}`);
    log.log('info', `cleanup ${repo.name}: ${flags.dryRun ? 'would delete' : 'deleted'} ${r.delete.length}, kept ${r.keep.length}${r.skipped.length ? `, skipped ${r.skipped.length}` : ''}`);
    // The policy selected tags this registry cannot delete: the run did not do what it planned (a dry run says it would not)
    if (r.skipped.length > 0) {
      throw new BuilderError('CLEANUP_INCOMPLETE', `${flags.dryRun ? 'the cleanup would leave' : 'the cleanup left'} ${r.skipped.length} tag${r.skipped.length > 1 ? 's' : ''} the policy selects: ${r.skipped.map((t) => t.tag).join(', ')}`, {
        hint: 'each is named above with the reason; on a registry that cannot delete a tag alone, retag or delete the kept tag sharing its manifest, or keep these tags with --name-regex-keep',
      });
    }
  });
}

function registerManifest(program: Command, env: CliEnv): void {
  const manifest = program.command('manifest').description('multi-platform images');
  addRegistryFlags(
    manifest.command('create')
      .description('push DST as a multi-platform index of the single-platform images SRC... (platforms read from their configs; '
        + 'images in other repositories are copied into DST\'s first); prints the index digest')
      .argument('<dst>', 'the index to push, REGISTRY/REPO:TAG')
      .argument('<srcs...>', 'single-platform images'),
  ).action(async (dstArg: string, srcs: string[], flags: RegistryFlags) => {
    const renderer = commandRenderer(flags, env);
    const dst = parseReference(stripScheme(dstArg));
    const client = new RegistryClient(registryOptions(flags, env, renderer.logger, renderer.emit));
    const r = await createIndex(client, dst, srcs.map((s) => parseReference(stripScheme(s))), { emit: renderer.emit }).finally(async () => {
      renderer.close();
      await client.close();
    });
    renderer.logger.log('info', `pushed ${dst} (${r.manifests.map((m) => `${m.platform!.os}/${m.platform!.architecture}${m.platform!.variant ? `/${m.platform!.variant}` : ''}`).join(', ')})`);
    env.stdout.write(`${r.digest}\n`);
  });
}

function registerLogin(program: Command, env: CliEnv): void {
  addRegistryFlags(
    program.command('login')
      .description('check credentials against REGISTRY and store them in the docker config ($DOCKER_CONFIG/config.json or ~/.docker/config.json)')
      .argument('<registry>', 'registry host[:port]')
      .option('-u, --username <user>', 'user name')
      .option('-p, --password <password>', 'password (visible in the process list: prefer --password-stdin)')
      .option('--password-stdin', 'read the password from standard input'),
  ).action(async (registryArg: string, flags: RegistryFlags & { username?: string; password?: string; passwordStdin?: boolean }) => {
    const log = loggerFromFlags(flags, env);
    const registry = normalizeRegistry(stripScheme(registryArg).replace(/\/.*$/, ''));
    if (!flags.username) throw new BuilderError('FLAG_MISSING', 'login needs --username', { hint: `builder login ${registry} -u USER --password-stdin` });
    const password = flags.passwordStdin ? (await readStdin(env)).replace(/\r?\n$/, '') : flags.password;
    if (!password) throw new BuilderError('FLAG_MISSING', 'login needs a password', { hint: 'pipe it in with --password-stdin' });
    const opts = registryOptions(flags, env);
    const client = new RegistryClient({ ...opts, credentials: async (r) => (r === registry ? { username: flags.username!, password } : undefined) });
    try {
      await client.checkLogin(registry);
    } finally {
      await client.close();
    }
    const file = await saveLogin({ env: env.env, homeDir: env.env.HOME ?? homedir() }, registry, flags.username, password);
    log.log('info', `logged in to ${registry}; credentials stored in ${file}`);
  });
}

function registerVersion(program: Command, env: CliEnv): void {
  // kaniko's `executor version`
  program.command('version').description('print the version of builder (as --version)').action(() => void env.stdout.write(`${builderVersion()}\n`));
}

function registerLogout(program: Command, env: CliEnv): void {
  program.command('logout')
    .description('remove REGISTRY\'s credentials from the docker config')
    .argument('<registry>', 'registry host[:port]')
    .action(async (registryArg: string) => {
      const registry = normalizeRegistry(stripScheme(registryArg).replace(/\/.*$/, ''));
      const removed = await removeLogin({ env: env.env, homeDir: env.env.HOME ?? homedir() }, registry);
      env.stderr.write(`builder: ${removed ? `removed the credentials for ${registry}` : `no credentials were stored for ${registry}`}\n`);
    });
}
