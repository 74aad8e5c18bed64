// COPY/ADD --chmod with symbolic modes (Dockerfile syntax 1.14, moby/buildkit#5734): chmod(1)'s grammar with BSD
// setmode's rules and umask 0 (tonistiigi/dchapes-mode, what BuildKit uses), applied to each source's own mode.
// Expectations are worked out by hand from those rules; where GNU chmod differs, the row says so.
import { mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readLayoutImage } from '../../conformance/tree.js';
import { BuilderError } from '../../src/errors.js';
import { parseChmod, parseSymbolicMode } from '../../src/executor/chmod.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { skopeoCopy } from '../support/tools.js';
import { Workspace } from './helpers.js';

const FILE = 0o100000;
const DIR = 0o040000;

describe('symbolic --chmod applied to a source mode', () => {
  const rows: Array<[hazard: string, mode: string, source: number, expected: number]> = [
    ['u+x adds to the source mode', 'u+x', FILE | 0o644, 0o744],
    ['go-w removes from a file', 'go-w', FILE | 0o666, 0o644],
    ['go-w removes from a directory', 'go-w', DIR | 0o777, 0o755],
    ['X on a file without any x adds nothing', 'a+X', FILE | 0o644, 0o644],
    ['X on a file with x for anyone adds x for all', 'a+X', FILE | 0o704, 0o715],
    ['X on a directory adds x whatever its mode', 'a+X', DIR | 0o600, 0o711],
    ['= clears the class before setting (file without x)', 'a=rX', FILE | 0o644, 0o444],
    ['= with X keeps x for a file that had it', 'a=rX', FILE | 0o700, 0o555],
    ['= with X on a directory', 'a=rX', DIR | 0o700, 0o555],
    ['comma list, "o=" clears other', 'u=rwx,g=rx,o=', FILE | 0o666, 0o750],
    ['comma list applied left to right', 'u+rw,g+r,o-x,o+w', DIR | 0o755, 0o756],
    ['-X removes x whatever the source mode', 'a-X', FILE | 0o755, 0o644],
    ['several ops in one clause', 'u+x-w', FILE | 0o644, 0o544],
    ['no who means all classes, the umask is not applied (BuildKit parses with umask 0)', '+w', FILE | 0o444, 0o666],
    ['X looks at the source mode, not at earlier clauses (BSD; GNU chmod would give 0754)', 'u+x,g+X', FILE | 0o644, 0o744],
    ['setuid and setgid of the source are kept when not named', 'go-w', FILE | 0o4775, 0o4755],
    ['u+s sets setuid only', 'u+s', FILE | 0o755, 0o4755],
    ['+s with no who sets setuid and setgid', '+s', FILE | 0o755, 0o6755],
    ['o+s is ignored', 'o+s', FILE | 0o755, 0o755],
    ['+t sets the sticky bit', '+t', DIR | 0o777, 0o1777],
    ['u= clears setuid as well as u\'s rwx', 'u=', FILE | 0o4755, 0o055],
    ['u=rwx on a directory clears its setuid (BSD; GNU chmod keeps a directory\'s set-id bits)', 'u=rwx', DIR | 0o4755, 0o755],
    ['a= does not clear the sticky bit (BSD; GNU chmod would)', 'a=r', DIR | 0o1777, 0o1444],
    ['g=u copies the user bits', 'g=u', FILE | 0o740, 0o770],
    ['go=u-w copies then removes', 'go=u-w', FILE | 0o700, 0o755],
    ['u+ changes nothing', 'u+', FILE | 0o640, 0o640],
  ];
  it.each(rows)('%s: %s', (_hazard, mode, source, expected) => {
    const m = parseSymbolicMode(mode);
    expect(m, mode).toBeDefined();
    expect(m!.apply(source, (source & DIR) === DIR).toString(8)).toBe(expected.toString(8));
  });

  it('octal values are absolute, as BuildKit parses them (any number of octal digits up to 7777)', () => {
    expect(parseChmod('755', 'Dockerfile:1')).toEqual({ mode: 0o755 });
    expect(parseChmod('04755', 'Dockerfile:1')).toEqual({ mode: 0o4755 });
    expect(parseChmod('7', 'Dockerfile:1')).toEqual({ mode: 0o7 });
  });

  const invalid: Array<[hazard: string, mode: string, message: RegExp]> = [
    ['an unknown permission letter', 'u+z', /not an octal or symbolic mode/],
    ['a permission with no operator', 'x', /not an octal or symbolic mode/],
    ['a trailing comma', 'u+x,', /not an octal or symbolic mode/],
    ['a leading comma', ',u+x', /not an octal or symbolic mode/],
    ['a space between clauses', 'u+x g+w', /not an octal or symbolic mode/],
    ['an octal value above 7777', '17777', /octal mode must be between 0 and 7777/],
    ['a digit that is not octal', '8', /octal mode must be between 0 and 7777/],
    ['octal digits followed by letters', '755x', /octal mode must be between 0 and 7777/],
    ['a negative number', '-1', /not an octal or symbolic mode/],
  ];
  it.each(invalid)('%s (%s) is a COPY_CHMOD_INVALID BuilderError naming the Dockerfile line', (_hazard, mode, message) => {
    let err: unknown;
    try {
      parseChmod(mode, 'Dockerfile:7');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BuilderError);
    expect((err as BuilderError).code).toBe('COPY_CHMOD_INVALID');
    expect((err as BuilderError).message).toContain(`Dockerfile:7: invalid --chmod=${mode}`);
    expect((err as BuilderError).message).toMatch(message);
  });
});

describe('COPY --chmod=<symbolic> end to end', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  useFixture({ prefix: 'builder-chmod-' }, (f) => ({ reg, ws, base } = f));

  it('applies the mode to each file and directory copied, relative to its own mode; created parents and the created top directory are 0755', async () => {
    const ctx = await ws.context('ctx', {
      Dockerfile: [
        `FROM ${base}`,
        'COPY --chmod=a+X plain exec /x/',
        'COPY --chmod=go-w suid /keep/suid',
        'COPY --chmod=a=rX tree /t',
        'COPY --chmod=u=rwx,g=rx,o= plain /eq/deep/plain',
        'COPY --chmod=+x <<EOF /h/script',
        'echo hi',
        'EOF',
        'ARG M=o-r',
        'COPY --chmod=$M plain /arg/plain',
      ].join('\n'),
      plain: { content: 'p\n', mode: 0o644 },
      exec: { content: 'e\n', mode: 0o754 },
      suid: { content: 's\n', mode: 0o4775 },
      'tree/a': { content: 'a\n', mode: 0o600 },
      'tree/sub/b': { content: 'b\n', mode: 0o750 },
    });
    await symlink('a', path.join(ctx, 'tree/link'));
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--destination', `${reg.host}/chmod/symbolic:latest`]);
    expect(r.code, r.stderr).toBe(0);
    const layout = ws.path('layout');
    await mkdir(layout, { recursive: true });
    await skopeoCopy(`docker://${reg.host}/chmod/symbolic:latest`, `oci:${layout}:img`, { reg });
    const { tree } = await readLayoutImage(layout);
    const mode = (p: string) => [p, tree.get(p)?.mode];
    const expectModes = (m: Record<string, string>) => expect(Object.keys(m).map(mode)).toEqual(Object.entries(m));
    expectModes({
      '/x': '0755', // created on the way: 0755, not the mode applied to anything
      '/x/plain': '0644', // X: no x anywhere in the source
      '/x/exec': '0755', // X: the source had x
      '/keep/suid': '4755', // setuid of the source kept
      '/t': '0755', // the directory made for tree's contents is not given the mode (fsutil prepareTargetDir)
      '/t/a': '0444',
      '/t/sub': '0555', // X on a directory
      '/t/sub/b': '0555',
      '/eq': '0755',
      '/eq/deep': '0755',
      '/eq/deep/plain': '0750',
      '/h/script': '0755', // a heredoc starts at 0644 (BuildKit's Mkfile) before the mode applies
      '/arg/plain': '0640', // the value is expanded before it is parsed
    });
    expect(tree.get('/t/link')?.type).toBe('symlink');
  }, 180_000);

  it('an invalid symbolic --chmod fails the build with COPY_CHMOD_INVALID at its Dockerfile line', async () => {
    const ctx = await ws.context('ctx-bad', { Dockerfile: `FROM ${base}\nCOPY --chmod=u+z plain /\n`, plain: 'p\n' });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--no-push']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/COPY_CHMOD_INVALID: \S*Dockerfile:2: invalid --chmod=u\+z: not an octal or symbolic mode/);
  }, 120_000);
});
