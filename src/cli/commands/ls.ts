// `builder ls REPO`: the tags of a repository, one per line; --json adds digest, media type and created time per tag.
import type { Command } from 'commander';
import { parseRepository } from '../../reference/index.js';
import { describeTags, RegistryClient } from '../../registry/index.js';
import type { CliEnv } from '../env.js';
import { addRegistryFlags, registryOptions, type RegistryFlags } from '../registry-flags.js';

export function register(program: Command, env: CliEnv): void {
  addRegistryFlags(
    program.command('ls').description('list the tags of a repository')
      .argument('<repo>', 'repository, e.g. registry.example.com/group/app')
      .option('--json', 'a JSON array of {tag, digest, mediaType, created, platforms?}, newest first (reads each manifest and config)'),
  ).action(async (repo: string, flags: RegistryFlags & { json?: boolean }) => {
    const ref = parseRepository(repo.startsWith('docker://') ? repo.slice('docker://'.length) : repo);
    const client = new RegistryClient(registryOptions(flags, env));
    try {
      if (!flags.json) {
        for (const t of await client.listTags(ref)) env.stdout.write(`${t}\n`);
        return;
      }
      const infos = await describeTags(client, ref);
      const time = (c?: string): number => (c ? Date.parse(c) || 0 : 0);
      infos.sort((a, b) => time(b.created) - time(a.created) || a.tag.localeCompare(b.tag));
      env.stdout.write(`${JSON.stringify(infos.map((i) => ({ ...i, created: i.created ?? null })), null, 2)}\n`);
    } finally {
      await client.close();
    }
  });
}
