// `builder inspect REF`: the manifest and config of an image (registry or oci:DIR[:TAG]) as JSON.
import type { Command } from 'commander';
import { loadLayoutImage, parseIndex, readOciLayout } from '../../image/index.js';
import { parseLocation, RegistryClient } from '../../registry/index.js';
import { BuilderError } from '../../errors.js';
import type { CliEnv } from '../env.js';
import { addRegistryFlags, platformFromFlags, registryOptions, type RegistryFlags } from '../registry-flags.js';

export function register(program: Command, env: CliEnv): void {
  addRegistryFlags(
    program
      .command('inspect')
      .description('print an image\'s manifest and config as JSON (the platform\'s image when REF is an index)')
      .argument('<ref>', 'REF, docker://REF or oci:DIR[:TAG]')
      .option('--raw', 'print only the top-level manifest or index bytes, unchanged'),
  ).action(async (refArg: string, flags: RegistryFlags & { raw?: boolean }) => {
    const loc = parseLocation(refArg);
    const platform = platformFromFlags(flags);
    if (loc.kind === 'oci') {
      const doc = await readOciLayout(loc.dir, loc.tag);
      if (flags.raw) return void env.stdout.write(doc.bytes);
      const img = await loadLayoutImage(doc, platform);
      env.stdout.write(`${JSON.stringify({ name: refArg, digest: img.manifestDigest, mediaType: img.mediaType, manifest: img.manifest, config: img.config }, null, 2)}\n`);
      return;
    }
    if (loc.kind !== 'registry') throw new BuilderError('LOCATION_UNSUPPORTED', `cannot inspect ${refArg}`, { hint: 'use a registry reference or oci:DIR[:TAG]' });
    const client = new RegistryClient(registryOptions(flags, env));
    try {
      if (flags.raw) return void env.stdout.write((await client.getManifest(loc.ref)).bytes);
      const img = await client.resolveImage(loc.ref, platform);
      const out: Record<string, unknown> = { name: String(loc.ref), digest: img.manifestDigest, mediaType: img.mediaType };
      if (img.index) out.index = { digest: img.index.digest, mediaType: img.index.mediaType, manifests: parseIndex(img.index.bytes).manifests };
      out.manifest = img.manifest;
      out.config = img.config;
      env.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    } finally {
      await client.close();
    }
  });
}
