// verify and attestations pick no image by platform: --custom-platform (a shared registry flag) stays out of their help.
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { register } from '../../src/cli/commands/attest.js';
import { register as registerCopy } from '../../src/cli/commands/copy.js';
import type { CliEnv } from '../../src/cli/env.js';

function commands(): Command {
  const program = new Command();
  register(program, {} as CliEnv);
  registerCopy(program, {} as CliEnv);
  return program;
}

const help = (name: string): string => commands().commands.find((c) => c.name() === name)!.helpInformation();

describe('--help of verify and attestations', () => {
  it('lists no --custom-platform; attestations keeps its own --platform; copy (which picks by platform) keeps it', () => {
    expect(help('verify')).not.toContain('--custom-platform');
    expect(help('verify')).toContain('--insecure-registry');
    expect(help('attestations')).not.toContain('--custom-platform');
    expect(help('attestations')).toContain('--platform <os/arch[/variant]>');
    expect(help('copy')).toContain('--custom-platform');
  });
});
