// `builder copy SRC DST`: registry <-> registry, registry -> oci:DIR / docker-archive:, oci:DIR -> registry.
import type { Command } from 'commander';
import { copyImage, parseLocation, RegistryClient } from '../../registry/index.js';
import type { CliEnv } from '../env.js';
import { addRegistryFlags, commandRenderer, registryOptions, type RegistryFlags } from '../registry-flags.js';

export function register(program: Command, env: CliEnv): void {
  addRegistryFlags(
    program
      .command('copy')
      .description('copy an image between REF / docker://REF, oci:DIR[:TAG] and docker-archive:PATH[:REF] (e.g. a kaniko --tar-path file); prints the digest')
      .argument('<src>', 'source image')
      .argument('<dst>', 'destination image')
      .option('--all-platforms', 'copy every image of a multi-platform index, and the index itself'),
  ).action(async (src: string, dst: string, flags: RegistryFlags & { allPlatforms?: boolean }) => {
    const renderer = commandRenderer(flags, env);
    const client = new RegistryClient(registryOptions(flags, env, renderer.logger, renderer.emit));
    try {
      const r = await copyImage(client, parseLocation(src), parseLocation(dst), { allPlatforms: flags.allPlatforms === true, emit: renderer.emit });
      env.stdout.write(`${r.digest}\n`);
      renderer.logger.log('info', `copied ${src} -> ${dst}: ${r.blobs.uploaded} uploaded, ${r.blobs.mounted} mounted, ${r.blobs.exists} already present, ${r.blobs.written} written`);
    } finally {
      renderer.close();
      await client.close();
    }
  });
}
