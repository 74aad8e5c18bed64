// `builder cache prune [--cache-repo REPO] [--cache-dir DIR] --older-than 336h [--dry-run]`: delete expired layer-cache entries and unused extracted bases.
import path from 'node:path';
import type { Command } from 'commander';
import { ociLayerCache, pruneLayerCache, registryLayerCache } from '../../cache/index.js';
import { BuilderError } from '../../errors.js';
import { parseRepository } from '../../reference/index.js';
import { RegistryClient } from '../../registry/index.js';
import { CacheDir } from '../../store/index.js';
import { parseDuration } from '../duration.js';
import type { CliEnv } from '../env.js';
import { addRegistryFlags, loggerFromFlags, registryOptions, type RegistryFlags } from '../registry-flags.js';

interface PruneFlags extends RegistryFlags {
  cacheRepo?: string;
  cacheDir?: string;
  olderThan: string;
  dryRun?: boolean;
}

export function register(program: Command, env: CliEnv): void {
  const cache = program.command('cache').description('manage the registry layer cache and the local extracted-base store');
  addRegistryFlags(
    cache.command('prune')
      .description('delete layer-cache entries older than --older-than (tags that are not cache keys are left alone), and with --cache-dir the extracted bases not used for that long; prints each deleted key')
      .option('--cache-repo <repo|oci:dir>', 'the cache repository, as given to the build')
      .option('--cache-dir <dir>', "the build's --cache-dir: remove extracted bases (rootfs-store/) unused for --older-than and not in use by a running build (safe during builds)")
      .option('--older-than <duration>', 'delete entries created longer ago than this (Go duration, e.g. 336h)', '336h')
      .option('--dry-run', 'list what would be deleted, delete nothing'),
  ).action(async (flags: PruneFlags) => {
    if (!flags.cacheRepo && !flags.cacheDir) {
      throw new BuilderError('FLAG_MISSING', 'cache prune needs --cache-repo or --cache-dir', { hint: 'pass --cache-repo REGISTRY/REPO/cache (or oci:DIR), and/or the --cache-dir the builds use' });
    }
    const olderThan = parseDuration(flags.olderThan, '--older-than');
    const log = loggerFromFlags(flags, env);
    if (flags.cacheDir) {
      const store = new CacheDir(path.resolve(env.cwd, flags.cacheDir)).rootfs();
      const r = await store.prune(olderThan, new Date(), {
        ...(flags.dryRun ? { dryRun: true } : {}),
        onDelete: (e) => void env.stdout.write(`${e.chainId} ${e.used.toISOString()}\n`),
      });
      log.log('info', `extracted bases in ${store.dir}: ${flags.dryRun ? 'would delete' : 'deleted'} ${r.deleted.length}, kept ${r.kept}${r.temps ? `, ${r.temps} abandoned temp dir${r.temps === 1 ? '' : 's'}` : ''}`);
    }
    if (!flags.cacheRepo) return;
    const client = new RegistryClient(registryOptions(flags, env, log));
    try {
      const layers = flags.cacheRepo.startsWith('oci:')
        ? ociLayerCache(path.resolve(env.cwd, flags.cacheRepo.slice(4)), olderThan)
        : registryLayerCache(client, parseRepository(flags.cacheRepo), olderThan);
      const r = await pruneLayerCache(layers, olderThan, new Date(), {
        ...(flags.dryRun ? { dryRun: true } : {}),
        onDelete: (key, created) => void env.stdout.write(`${key} ${created}\n`),
      });
      log.log('info', `cache ${layers.describe}: ${flags.dryRun ? 'would delete' : 'deleted'} ${r.deleted.length}, kept ${r.kept}${r.unknown.length ? `, ${r.unknown.length} without a creation time left alone` : ''}`);
    } finally {
      await client.close();
    }
  });
}
