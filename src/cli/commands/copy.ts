// `builder copy SRC DST`: registry <-> registry, registry -> oci:DIR / docker-archive:, oci:DIR -> registry.
import type { Command } from 'commander';
import { copyLayoutReferrers, copyReferrers } from '../../attest/index.js';
import { isIndexMediaType, parseIndex } from '../../image/index.js';
import { withDigest } from '../../reference/index.js';
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
      .option('--all-platforms', 'copy every image of a multi-platform index, and the index itself')
      .option('--no-referrers', 'to a registry: leave the image\'s referrers (SBOM, provenance, signatures; from a registry or an OCI layout) behind'),
  ).action(async (src: string, dst: string, flags: RegistryFlags & { allPlatforms?: boolean; referrers?: boolean }) => {
    const renderer = commandRenderer(flags, env);
    const client = new RegistryClient(registryOptions(flags, env, renderer.logger, renderer.emit));
    try {
      const from = parseLocation(src);
      const to = parseLocation(dst);
      const r = await copyImage(client, from, to, { allPlatforms: flags.allPlatforms === true, emit: renderer.emit });
      if (flags.referrers !== false && from.kind !== 'docker-archive' && to.kind === 'registry') {
        // the copied manifests keep their digests: their referrers (and cosign's .sig tags) apply unchanged
        const children = isIndexMediaType(r.mediaType) ? parseIndex((await client.getManifest(withDigest(to.ref, r.digest))).bytes).manifests.map((m) => m.digest) : [];
        let n = 0;
        for (const d of [r.digest, ...children]) n += from.kind === 'registry' ? await copyReferrers(client, from.ref, to.ref, d) : await copyLayoutReferrers(client, from.dir, to.ref, d);
        if (n > 0) renderer.logger.log('info', `copied ${n} referrer${n === 1 ? '' : 's'} (attestations, signatures)`);
      }
      env.stdout.write(`${r.digest}\n`);
      renderer.logger.log('info', `copied ${src} -> ${dst}: ${r.blobs.uploaded} uploaded, ${r.blobs.mounted} mounted, ${r.blobs.exists} already present, ${r.blobs.written} written`);
    } finally {
      renderer.close();
      await client.close();
    }
  });
}
