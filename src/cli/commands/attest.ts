// `builder verify --key PUB REF` and `builder attestations REF [--type sbom|provenance] [--json]`.
import type { Command } from 'commander';
import { BuilderError } from '../../errors.js';
import { readAttestations, SLSA_PREDICATE, SPDX_PREDICATE, verifyImage, type AttestationList } from '../../attest/index.js';
import { parsePlatform } from '../../image/index.js';
import { parseReference } from '../../reference/index.js';
import { RegistryClient } from '../../registry/index.js';
import type { CliEnv } from '../env.js';
import { readPublicKey } from '../attest-flags.js';
import { addRegistryFlags, registryOptions, type RegistryFlags } from '../registry-flags.js';

const TYPES = { sbom: SPDX_PREDICATE, provenance: SLSA_PREDICATE } as const;

export function register(program: Command, env: CliEnv): void {
  addRegistryFlags(
    program
      .command('verify')
      .description('check that REF\'s digest carries a valid cosign-compatible signature under a public key (exit 0 only then)')
      .argument('<ref>', 'image reference (tag or digest)')
      .requiredOption('--key <file|env://NAME>', 'PEM ECDSA P-256 public key (e.g. cosign.pub, or openssl pkey -pubout)'),
  ).action(async (refArg: string, flags: RegistryFlags & { key: string }) => {
    const key = readPublicKey(flags.key, env); // before any request
    const ref = parseReference(refArg);
    const client = new RegistryClient(registryOptions(flags, env));
    try {
      const r = await verifyImage(client, ref, key);
      if (r.valid.length === 0) {
        throw new BuilderError('VERIFY_FAILED', `${ref.name}@${r.digest}: no valid signature under the key (${r.checked} signature${r.checked === 1 ? '' : 's'} checked)`, {
          hint: 'the image is unsigned, signed with another key, or was changed after signing; sign with --sign-key at build time',
          exitCode: 1,
        });
      }
      for (const v of r.valid) env.stderr.write(`verified: ${ref.name}@${r.digest} (${v.source})\n`);
      env.stdout.write(`${JSON.stringify(r.valid.map((v) => v.payload))}\n`);
    } finally {
      await client.close();
    }
  });

  addRegistryFlags(
    program
      .command('attestations')
      .description('list the OCI referrers (SBOM, provenance, signatures) of REF, or print one type\'s in-toto statements')
      .argument('<ref>', 'image reference (tag or digest)')
      .option('--type <sbom|provenance>', 'print the statements of this type (one JSON document per line)')
      .option('--platform <os/arch[/variant]>', 'of a multi-platform index: only this platform\'s image')
      .option('--json', 'list as JSON'),
  ).action(async (refArg: string, flags: RegistryFlags & { type?: string; platform?: string; json?: boolean }) => {
    if (flags.type !== undefined && !(flags.type in TYPES)) {
      throw new BuilderError('FLAG_INVALID', `--type ${flags.type} is not sbom or provenance`, { hint: 'use --type sbom or --type provenance' });
    }
    const predicate = flags.type ? TYPES[flags.type as keyof typeof TYPES] : undefined;
    const platform = flags.platform !== undefined ? parsePlatform(flags.platform) : undefined;
    const ref = parseReference(refArg);
    const client = new RegistryClient(registryOptions(flags, env));
    try {
      const r = await readAttestations(client, ref, predicate, platform);
      // an index: its own referrers (the signature of the tag) unless --platform, then each platform image's
      const lists: Array<{ label?: string; list: AttestationList }> = r.platforms
        ? [...(platform ? [] : [{ label: 'index', list: r }]), ...r.platforms.map((p) => ({ label: p.platform, list: p }))]
        : [{ list: r }];
      if (predicate !== undefined) {
        const statements = lists.flatMap((l) => l.list.items.map((i) => i.statement));
        if (statements.length === 0) throw new BuilderError('ATTESTATION_NOT_FOUND', `${ref.name}@${r.digest} has no ${flags.type} attestation${r.platforms ? ' (nor has any of its platform images)' : ''}`, { hint: 'build with --sbom / --provenance; `builder attestations REF` lists what is there', exitCode: 1 });
        for (const st of statements) env.stdout.write(`${JSON.stringify(st)}\n`);
        return;
      }
      if (flags.json) {
        const platforms = r.platforms?.map((p) => ({ platform: p.platform, subject: p.digest, via: p.via, referrers: p.items }));
        return void env.stdout.write(`${JSON.stringify({ subject: r.digest, via: r.via, referrers: r.items, ...(platforms ? { platforms } : {}) }, null, 2)}\n`);
      }
      for (const { label, list } of lists) {
        for (const i of list.items) env.stdout.write(`${label ? `${label}\t` : ''}${i.digest}\t${i.artifactType}${i.predicateType ? `\t${i.predicateType}` : ''}\n`);
      }
    } finally {
      await client.close();
    }
  });
}
