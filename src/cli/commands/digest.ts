// `builder digest REF`: the manifest digest REF points to (the index's, or the platform's with --custom-platform).
import type { Command } from 'commander';
import { loadLayoutImage, readOciLayout } from '../../image/index.js';
import { parseLocation, RegistryClient } from '../../registry/index.js';
import { BuilderError } from '../../errors.js';
import type { CliEnv } from '../env.js';
import { addRegistryFlags, platformFromFlags, registryOptions, type RegistryFlags } from '../registry-flags.js';

export function register(program: Command, env: CliEnv): void {
  addRegistryFlags(
    program
      .command('digest')
      .description('print the digest of REF (of the index for multi-platform images, unless --custom-platform is given)')
      .argument('<ref>', 'REF, docker://REF or oci:DIR[:TAG]'),
  ).action(async (refArg: string, flags: RegistryFlags) => {
    const loc = parseLocation(refArg);
    if (loc.kind === 'oci') {
      const doc = await readOciLayout(loc.dir, loc.tag);
      const d = flags.customPlatform ? (await loadLayoutImage(doc, platformFromFlags(flags))).manifestDigest : doc.descriptor.digest;
      return void env.stdout.write(`${d}\n`);
    }
    if (loc.kind !== 'registry') throw new BuilderError('LOCATION_UNSUPPORTED', `cannot read ${refArg}`, { hint: 'use a registry reference or oci:DIR[:TAG]' });
    const client = new RegistryClient(registryOptions(flags, env));
    try {
      const d = flags.customPlatform ? (await client.resolveImage(loc.ref, platformFromFlags(flags))).manifestDigest : (await client.getManifest(loc.ref)).digest;
      env.stdout.write(`${d}\n`);
    } finally {
      await client.close();
    }
  });
}
