// `builder copy SRC DST`: registry <-> registry, registry -> oci:DIR / docker-archive:, oci:DIR -> registry.
import type { Command } from 'commander';
import { copyLayoutReferrers, copyReferrers, copyReferrersToLayout } from '../../attest/index.js';
import { isIndexMediaType, parseIndex } from '../../image/index.js';
import type { Digest } from '../../digest/index.js';
import { withDigest } from '../../reference/index.js';
import { copyImage, parseLocation, RegistryClient, type ImageLocation } from '../../registry/index.js';
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
      .option('--no-referrers', 'leave the image\'s referrers (SBOM, provenance, signatures) behind (registries and OCI layouts carry them; docker-archive cannot)'),
  ).action(async (src: string, dst: string, flags: RegistryFlags & { allPlatforms?: boolean; referrers?: boolean }) => {
    const renderer = commandRenderer(flags, env);
    const client = new RegistryClient(registryOptions(flags, env, renderer.logger, renderer.emit));
    try {
      const from = parseLocation(src);
      const to = parseLocation(dst);
      const r = await copyImage(client, from, to, { allPlatforms: flags.allPlatforms === true, emit: renderer.emit });
      // the copied manifests keep their digests: their referrers (and cosign's .sig tags) apply unchanged
      const carry = referrerCopier(client, from, to);
      if (flags.referrers !== false && carry) {
        const listed = to.kind === 'registry' ? to.ref : from.kind === 'registry' ? from.ref : undefined;
        const children = isIndexMediaType(r.mediaType) && listed ? parseIndex((await client.getManifest(withDigest(listed, r.digest))).bytes).manifests.map((m) => m.digest) : [];
        let n = 0;
        for (const d of [r.digest, ...children]) n += await carry(d);
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

/** How referrers of a copied digest go from `from` to `to`; undefined where one side cannot hold them (docker-archive). */
function referrerCopier(client: RegistryClient, from: ImageLocation, to: ImageLocation): ((d: Digest) => Promise<number>) | undefined {
  if (from.kind === 'registry' && to.kind === 'registry') return (d) => copyReferrers(client, from.ref, to.ref, d);
  if (from.kind === 'oci' && to.kind === 'registry') return (d) => copyLayoutReferrers(client, from.dir, to.ref, d);
  if (from.kind === 'registry' && to.kind === 'oci') return (d) => copyReferrersToLayout(client, from.ref, to.dir, d);
  return undefined;
}
