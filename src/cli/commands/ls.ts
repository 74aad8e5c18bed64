// `builder ls REPO`: the tags of a repository, one per line.
import type { Command } from 'commander';
import { parseRepository } from '../../reference/index.js';
import { RegistryClient } from '../../registry/index.js';
import type { CliEnv } from '../env.js';
import { addRegistryFlags, registryOptions, type RegistryFlags } from '../registry-flags.js';

export function register(program: Command, env: CliEnv): void {
  addRegistryFlags(
    program.command('ls').description('list the tags of a repository').argument('<repo>', 'repository, e.g. registry.example.com/group/app'),
  ).action(async (repo: string, flags: RegistryFlags) => {
    const ref = parseRepository(repo.startsWith('docker://') ? repo.slice('docker://'.length) : repo);
    const client = new RegistryClient(registryOptions(flags, env));
    try {
      for (const t of await client.listTags(ref)) env.stdout.write(`${t}\n`);
    } finally {
      await client.close();
    }
  });
}
