// `builder cache prune --cache-repo REPO --older-than 336h [--dry-run]`: delete expired layer-cache entries.
import path from 'node:path';
import type { Command } from 'commander';
import { ociLayerCache, pruneLayerCache, registryLayerCache } from '../../cache/index.js';
import { BuilderError } from '../../errors.js';
import { parseRepository } from '../../reference/index.js';
import { RegistryClient } from '../../registry/index.js';
import { parseDuration } from '../duration.js';
import type { CliEnv } from '../env.js';
import { addRegistryFlags, registryOptions, type RegistryFlags } from '../registry-flags.js';

interface PruneFlags extends RegistryFlags {
  cacheRepo?: string;
  olderThan: string;
  dryRun?: boolean;
}

export function register(program: Command, env: CliEnv): void {
  const cache = program.command('cache').description('manage the registry layer cache');
  addRegistryFlags(
    cache.command('prune')
      .description('delete layer-cache entries older than --older-than (tags that are not cache keys are left alone); prints each deleted key')
      .option('--cache-repo <repo|oci:dir>', 'the cache repository, as given to the build')
      .option('--older-than <duration>', 'delete entries created longer ago than this (Go duration, e.g. 336h)', '336h')
      .option('--dry-run', 'list what would be deleted, delete nothing'),
  ).action(async (flags: PruneFlags) => {
    if (!flags.cacheRepo) throw new BuilderError('FLAG_MISSING', 'cache prune needs --cache-repo', { hint: 'pass --cache-repo REGISTRY/REPO/cache (or oci:DIR)' });
    const olderThan = parseDuration(flags.olderThan, '--older-than');
    const client = new RegistryClient(registryOptions(flags, env));
    try {
      const layers = flags.cacheRepo.startsWith('oci:')
        ? ociLayerCache(path.resolve(env.cwd, flags.cacheRepo.slice(4)), olderThan)
        : registryLayerCache(client, parseRepository(flags.cacheRepo), olderThan);
      const r = await pruneLayerCache(layers, olderThan, new Date(), {
        ...(flags.dryRun ? { dryRun: true } : {}),
        onDelete: (key, created) => void env.stdout.write(`${key} ${created}\n`),
      });
      env.stderr.write(`builder: cache ${layers.describe}: ${flags.dryRun ? 'would delete' : 'deleted'} ${r.deleted.length}, kept ${r.kept}${r.unknown.length ? `, ${r.unknown.length} without a creation time left alone` : ''}\n`);
    } finally {
      await client.close();
    }
  });
}
