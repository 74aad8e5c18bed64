// Drop-in for kaniko's executor: every flag of kaniko v1.24.0 (read from the binary's own --help, so the list cannot
// drift) is accepted in kaniko's spelling and Go pflag's forms; then one real build with all of them at once.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineBuildFlags } from '../../src/cli/commands/build.js';
import { pflagShortForms } from '../../src/cli/argv.js';
import { ACCEPTED_WITH_WARNING } from '../../src/cli/kaniko-flags.js';
import { compileIfStale, ROOT, Workspace } from '../executor/helpers.js';
import { run } from '../support/tools.js';

const KANIKO = path.resolve(ROOT, '../shared/anchors/kaniko-v1.24.0/executor');

interface KanikoFlag {
  long: string;
  short?: string;
  /** pflag's value type as --help prints it; undefined for booleans. */
  type?: string;
}

/** Parses cobra's "Flags:" block: `  -c, --context string   Path...` / `      --cache   Use cache...`. */
export function parseKanikoHelp(help: string): KanikoFlag[] {
  const flags: KanikoFlag[] = [];
  const section = help.slice(help.indexOf('Flags:'));
  for (const line of section.split('\n')) {
    const m = /^\s+(?:-(\w), )?--([\w-]+)(?: ([\w-]+(?: type)?))?\s{2,}\S/.exec(line);
    if (m) flags.push({ long: `--${m[2]}`, ...(m[1] ? { short: `-${m[1]}` } : {}), ...(m[3] ? { type: m[3] } : {}) });
  }
  return flags;
}

/** A value each flag accepts (valid, so the test is about spelling and form, not validation). */
const VALUES: Record<string, string> = {
  '--build-arg': 'A=1', '--cache-dir': '/tmp/builder-kaniko-flags-cache', '--cache-repo': '127.0.0.1:5000/app/cache', '--cache-ttl': '6h',
  '--compression': 'gzip', '--compression-level': '3', '--context': '.', '--context-sub-path': 'sub', '--custom-platform': 'linux/amd64',
  '--customPlatform': 'linux/amd64', '--destination': '127.0.0.1:5000/app:1', '--digest-file': 'digest', '--dockerfile': 'Dockerfile',
  '--git': 'branch=main', '--ignore-path': '/var/mail', '--image-download-retry': '2', '--image-fs-extract-retry': '2',
  '--image-name-tag-with-digest-file': 'nt', '--image-name-with-digest-file': 'n', '--insecure-registry': '127.0.0.1:5000',
  '--kaniko-dir': '/tmp/kaniko', '--label': 'a=b', '--log-format': 'json', '--oci-layout-path': 'oci', '--push-retry': '2',
  '--registry-certificate': 'r.example=/ca.crt', '--registry-client-cert': 'r.example=/c.crt,/c.key',
  '--registry-map': 'index.docker.io=mirror.example;quay.io=qmirror.example', '--registry-mirror': 'mirror.example',
  '--skip-tls-verify-registry': 'r.example', '--snapshot-mode': 'redo', '--snapshotMode': 'full', '--tar-path': 'image.tar',
  '--tarPath': 'image.tar', '--target': 'final', '--verbosity': 'debug',
};

/** Parses `builder build ARGS` with the real flag definitions; returns the command (its values) or the usage error. */
function parse(args: string[]): { cmd: Command; deprecated: string[]; error?: CommanderError } {
  const deprecated: string[] = [];
  const program = new Command('builder').exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  const cmd = program.command('build', { isDefault: true }).exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  defineBuildFlags(cmd, deprecated).action(() => undefined);
  try {
    program.parse(pflagShortForms(args, cmd), { from: 'user' });
    return { cmd, deprecated };
  } catch (err) {
    if (err instanceof CommanderError) return { cmd, deprecated, error: err };
    throw err;
  }
}

const help = existsSync(KANIKO) ? (await run(KANIKO, ['--help'])).stdout : '';
const kaniko = parseKanikoHelp(help).filter((f) => f.long !== '--help');

describe.skipIf(!existsSync(KANIKO))('kaniko v1.24.0 executor flags', () => {
  it('the help of the kaniko binary lists its ~60 flags (the parser of this test works)', () => {
    expect(kaniko.length).toBeGreaterThanOrEqual(55);
    expect(kaniko.find((f) => f.long === '--verbosity')).toEqual({ long: '--verbosity', short: '-v', type: 'string' });
    expect(kaniko.find((f) => f.long === '--cache')).toEqual({ long: '--cache' });
    expect(kaniko.find((f) => f.long === '--registry-map')?.type).toBe('key-multi-value-arg type');
  });

  for (const f of parseKanikoHelp(help).filter((x) => x.long !== '--help')) {
    const forms: string[][] = f.type === undefined
      ? [[f.long], [`${f.long}=true`], [`${f.long}=false`], [`${f.long}=True`]]
      : [[`${f.long}=${VALUES[f.long] ?? 'x'}`], [f.long, VALUES[f.long] ?? 'x'],
        // pflag's short forms: `-c DIR`, `-c=DIR`, `-cDIR`
        ...(f.short ? [[f.short, VALUES[f.long] ?? 'x'], [`${f.short}=${VALUES[f.long] ?? 'x'}`], [`${f.short}${VALUES[f.long] ?? 'x'}`]] : [])];
    it(`${f.long} is accepted in kaniko's spelling (${forms.map((a) => a.join(' ')).join(' | ')})`, () => {
      expect(VALUES[f.long] !== undefined || f.type === undefined, `no sample value for ${f.long} (${f.type})`).toBe(true);
      for (const args of forms) {
        const r = parse(args);
        expect(r.error?.message, `builder ${args.join(' ')}`).toBeUndefined();
        const opt = r.cmd.options.find((o) => o.long === f.long);
        expect(opt, `${f.long} defined`).toBeDefined();
        const value = r.cmd.getOptionValue(opt!.attributeName());
        if (f.type === undefined) {
          // --no-push / --no-push-cache store the positive name inverted
          const want = !args[0]!.endsWith('=false');
          expect(opt!.negate ? !value : value, `builder ${args.join(' ')}`).toBe(want);
        } else {
          expect(JSON.stringify(value), `builder ${args.join(' ')}`).toContain(JSON.stringify(VALUES[f.long]).slice(1, -1).split(';')[0]);
        }
      }
    });
  }

  it('-v is --verbosity (not a version or verbose switch), and a deprecated camelCase flag sets the current one with one warning', () => {
    const r = parse(['-v', 'trace', '--tarPath=/tmp/x.tar', '--customPlatform', 'linux/arm64']);
    expect(r.error).toBeUndefined();
    expect(r.cmd.opts().verbosity).toBe('trace');
    expect(r.cmd.opts().tarPath).toBe('/tmp/x.tar');
    expect(r.cmd.opts().customPlatform).toBe('linux/arm64');
    expect(r.deprecated).toEqual(['--tarPath is deprecated (in kaniko too): use --tar-path', '--customPlatform is deprecated (in kaniko too): use --custom-platform']);
  });

  it('--whitelist-var-run (kaniko\'s deprecated, hidden spelling of --ignore-var-run) sets it, with one deprecation line', async () => {
    // kaniko itself still accepts it, printing its deprecation line
    const k = await run(KANIKO, ['--whitelist-var-run=false', '--help']);
    expect(k.stdout + k.stderr).toContain('Flag --whitelist-var-run has been deprecated, Please use ignore-var-run instead.');
    for (const [args, want] of [[['--whitelist-var-run=false'], false], [['--whitelist-var-run'], true], [['--whitelist-var-run=true'], true]] as const) {
      const r = parse([...args]);
      expect(r.error, args.join(' ')).toBeUndefined();
      expect(r.cmd.opts().ignoreVarRun, args.join(' ')).toBe(want);
      expect(r.deprecated).toEqual(['--whitelist-var-run is deprecated (in kaniko too): use --ignore-var-run']);
    }
    expect(parse(['--ignore-var-run=false']).deprecated).toEqual([]);
  });

  it('a value that is itself `-x=…` stays the value of the option before it, and `--` ends the rewriting', () => {
    const r = parse(['--label', '-c=x', '-f=Dockerfile.k', '--', '-c=y']);
    expect(r.cmd.opts().label).toEqual(['-c=x']);
    expect(r.cmd.opts().dockerfile).toBe('Dockerfile.k');
    expect(r.cmd.opts().context).toBeUndefined();
    expect(pflagShortForms(['-c=a', '--', '-c=b'], r.cmd)).toEqual(['--context=a', '--', '-c=b']);
  });

  it('an unknown flag is still a usage error (the table above cannot pass by accepting everything)', () => {
    expect(parse(['--no-such-kaniko-flag']).error?.code).toBe('commander.unknownOption');
    expect(() => parse(['--cache=maybe'])).toThrow(/not a boolean/);
  });
});

describe.skipIf(!existsSync(KANIKO))('a kaniko command line with every flag runs', () => {
  let ws: Workspace;
  beforeAll(async () => {
    await compileIfStale();
    ws = await Workspace.create('builder-kaniko-flags-');
  });
  afterAll(async () => ws?.remove());

  it('builds with all kaniko flags at once: exit 0, the digest alone on stdout, one warning per flag without effect here', async () => {
    const ctx = await ws.context('ctx', { 'sub/Dockerfile': 'FROM scratch AS final\nARG A\nCOPY hello /hello\n', 'sub/hello': 'hi\n' });
    const values: Record<string, string> = {
      ...VALUES, '--context': ctx, '--context-sub-path': 'sub', '--dockerfile': 'Dockerfile', '--cache-dir': ws.path('cache'),
      '--cache-repo': `oci:${ws.path('layer-cache')}`, '--digest-file': ws.path('digest'), '--oci-layout-path': ws.path('oci'),
      '--tar-path': ws.path('image.tar'), '--tarPath': ws.path('image.tar'), '--image-name-with-digest-file': ws.path('n'),
      '--image-name-tag-with-digest-file': ws.path('nt'), '--kaniko-dir': ws.path('kaniko'), '--log-format': 'text',
      '--verbosity': 'info', '--registry-certificate': `r.example=${ws.path('none.crt')}`, '--registry-client-cert': `r.example=${ws.path('c.crt')},${ws.path('c.key')}`,
      '--compression-level': '1',
    };
    const args: string[] = [];
    for (const f of kaniko) {
      if (f.type === undefined) {
        // booleans that would change what this build is: given explicitly false
        args.push(['--no-push', '--force', '--skip-push-permission-check', '--cleanup', '--skip-unused-stages', '--reproducible'].includes(f.long)
          ? `${f.long}=${f.long === '--no-push' || f.long === '--reproducible'}` : f.long);
      } else if (f.long !== '--destination') args.push(`${f.short ?? f.long}=${values[f.long]}`); // pflag's `-c=DIR` where there is a short form
    }
    const r = await ws.cli([...args, '--whitelist-var-run', '--destination', '127.0.0.1:9/never/pushed:1', '--run-mode', 'sandbox', '--work-dir', ws.path('work')]);
    expect(r.stderr).not.toMatch(/unknown option/i);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    expect(await readFile(ws.path('digest'), 'utf8')).toBe(r.stdout.trim());
    const defined = parse([]).cmd.options;
    for (const a of ACCEPTED_WITH_WARNING) {
      const long = a.flags.split(' ')[0]!;
      if (!kaniko.some((f) => f.long === long)) continue;
      // a flag that got its real implementation (e.g. --push-retry from the retry work) has no warning to give
      if (!defined.find((o) => o.long === long)?.description.startsWith('accepted for kaniko compatibility')) continue;
      expect(r.stderr.split('\n').filter((l) => l.includes(`${long} has no effect here`)), long).toHaveLength(1);
    }
    expect(r.stderr).toContain('--tarPath is deprecated');
    expect(r.stderr).toContain('--whitelist-var-run is deprecated');
    if (process.env.SHOW_STDERR) console.log(r.stderr);
  });
});
