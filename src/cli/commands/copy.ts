// `builder copy SRC DST`: registry <-> registry, registry -> oci:DIR / docker-archive:, oci:DIR -> registry.
import type { Command } from 'commander';
import { copyImage, parseLocation, RegistryClient } from '../../registry/index.js';
import type { CliEnv } from '../env.js';
import { addRegistryFlags, loggerFromFlags, registryOptions, type RegistryFlags } from '../registry-flags.js';

export function register(program: Command, env: CliEnv): void {
  addRegistryFlags(
    program
      .command('copy')
      .description('copy an image between REF / docker://REF, oci:DIR[:TAG] and docker-archive:PATH[:REF] (e.g. a kaniko --tar-path file); prints the digest')
      .argument('<src>', 'source image')
      .argument('<dst>', 'destination image')
      .option('--all-platforms', 'copy every image of a multi-platform index, and the index itself'),
  ).action(async (src: string, dst: string, flags: RegistryFlags & { allPlatforms?: boolean }) => {
    const log = loggerFromFlags(flags, env);
    const opts = registryOptions(flags, env, log);
    const client = new RegistryClient(opts);
    try {
      const r = await copyImage(client, parseLocation(src), parseLocation(dst), {
        allPlatforms: flags.allPlatforms === true,
        ...(opts.logger ? { logger: opts.logger } : {}),
      });
      env.stdout.write(`${r.digest}\n`);
      log.log('info', `copied ${src} -> ${dst}: ${r.blobs.uploaded} uploaded, ${r.blobs.mounted} mounted, ${r.blobs.exists} already present, ${r.blobs.written} written`);
    } finally {
      await client.close();
    }
  });
}
