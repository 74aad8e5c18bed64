// Five details where an image must come out as BuildKit makes it (issue 21), each read from BuildKit's and fsutil's
// source (docs/parity.md has the references): WORKDIR keeps an absolute path as written, backslashes in COPY sources,
// root's supplementary groups in RUN, setuid/setgid bits of context files, and the step's own hostname.
import { createHash } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readLayoutImage, type ImageResult } from '../../conformance/tree.js';
import { resolveWorkdir } from '../../src/executor/config.js';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { Workspace } from './helpers.js';

describe('WORKDIR paths as BuildKit normalises them (util/system NormalizeWorkdir)', () => {
  it('an absolute path is kept as written, a relative one is joined and cleaned', () => {
    expect(resolveWorkdir('/', '/tmp/')).toBe('/tmp/');
    expect(resolveWorkdir('/app', '/srv')).toBe('/srv');
    expect(resolveWorkdir('/tmp/', 'sub/')).toBe('/tmp/sub');
    expect(resolveWorkdir('/a/b', '../c/./d')).toBe('/a/c/d');
    expect(resolveWorkdir(undefined, 'rel')).toBe('/rel');
    expect(resolveWorkdir('/w', '')).toBe('/w');
  });
});

describe('image details that match BuildKit', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  let n = 0;

  useFixture({ prefix: 'builder-bk-details-' }, (f) => ({ reg, ws, base } = f));

  /** Builds ctx (sandbox RUN) into an OCI layout and reads the image back. */
  const build = async (ctx: string): Promise<ImageResult> => {
    const layout = ws.path(`layout-${++n}`);
    await ws.buildOk(ctx, ['--no-push', '--run-mode', 'sandbox', '--oci-layout-path', layout]);
    return readLayoutImage(layout);
  };
  /** What a file of the image holds, as the sha256 the tree reader computed. */
  const holds = (img: ImageResult, p: string): string | undefined => img.tree.get(p)?.sha256;
  const sha = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 16); // the tree reader keeps 16 hex digits

  it('WORKDIR /tmp/ keeps its trailing slash in WorkingDir; RUN runs there', async () => {
    const ctx = await ws.context('ctx-workdir', { Dockerfile: `FROM ${base}\nWORKDIR /tmp/\nRUN pwd > /pwd\nWORKDIR /srv/app/\nWORKDIR sub/\n` });
    const img = await build(ctx);
    expect(img.config.config.WorkingDir).toBe('/srv/app/sub');
    const first = await ws.context('ctx-workdir2', { Dockerfile: `FROM ${base}\nWORKDIR /tmp/\n` });
    expect((await build(first)).config.config.WorkingDir).toBe('/tmp/');
    expect(holds(img, '/pwd')).toBe(sha('/tmp\n'));
    expect(img.tree.get('/srv/app/sub')?.type).toBe('dir');
  });

  it('backslashes in COPY sources: the Dockerfile escape first (BuildKit ProcessWord), then filepath.Match on what is left', async () => {
    const ctx = await ws.context('ctx-escape', {
      Dockerfile: [
        `FROM ${base}`,
        'COPY n\\?pe /a/', // the Dockerfile escape leaves n?pe: a wildcard, both names match
        'COPY n\\\\?pe /b/', // n\?pe has no wildcard left: the file literally named n\?pe
        'COPY n\\\\?p* /c/', // n\?p*: a wildcard with an escaped ?, only n?pe
        'COPY ["n\\\\\\\\?p*", "/d/"]', // JSON form: n\\?p* decoded, then the same escape processing: n\?p*
      ].join('\n'),
      nope: 'nope\n',
      'n?pe': 'question\n',
      'n\\?pe': 'backslash\n',
    });
    const img = await build(ctx);
    const under = (d: string): string[] => [...img.tree.keys()].filter((p) => p.startsWith(`/${d}/`)).sort();
    expect(under('a')).toEqual(['/a/n?pe', '/a/nope']);
    expect(under('b')).toEqual(['/b/n\\?pe']);
    expect(under('c')).toEqual(['/c/n?pe']);
    expect(under('d')).toEqual(['/d/n?pe']);
  });

  it('RUN as the default user, USER 0 and USER root gets root\'s supplementary groups from /etc/group; USER 0:0 does not', async () => {
    const ctx = await ws.context('ctx-groups', {
      Dockerfile: [
        `FROM ${base}`,
        'RUN echo "wheel:x:10:root,app" >> /etc/group && echo "audio:x:29:app,root" >> /etc/group',
        'RUN id -G > /default',
        'USER 0',
        'RUN id -G > /uid0',
        'USER root',
        'RUN id -G > /root-name',
        'USER 0:0',
        'RUN id -G > /explicit',
        '',
      ].join('\n'),
    });
    const img = await build(ctx);
    expect(holds(img, '/default')).toBe(sha('0 10 29\n'));
    expect(holds(img, '/uid0')).toBe(sha('0 10 29\n'));
    expect(holds(img, '/root-name')).toBe(sha('0 10 29\n'));
    expect(holds(img, '/explicit')).toBe(sha('0\n'));
  });

  it('setuid/setgid/sticky bits of context files and directories are kept by COPY, as fsutil does', async () => {
    const ctx = await ws.context('ctx-suid', {
      Dockerfile: `FROM ${base}\nCOPY su sg /bin2/\nCOPY tree /t/\nCOPY --chmod=2750 su /chmodded\n`,
      su: { content: 'u\n', mode: 0o755 },
      sg: { content: 'g\n', mode: 0o755 },
      'tree/f': { content: 'f\n', mode: 0o644 },
    });
    await chmod(path.join(ctx, 'su'), 0o4755);
    await chmod(path.join(ctx, 'sg'), 0o6711);
    await mkdir(path.join(ctx, 'tree/shared'));
    await writeFile(path.join(ctx, 'tree/shared/x'), 'x\n');
    await chmod(path.join(ctx, 'tree/shared'), 0o2775);
    await chmod(path.join(ctx, 'tree/shared/x'), 0o4750);
    await chmod(path.join(ctx, 'tree'), 0o1777);
    const { tree } = await build(ctx);
    const modes = Object.fromEntries(['/bin2/su', '/bin2/sg', '/t', '/t/shared', '/t/shared/x', '/chmodded'].map((p) => [p, tree.get(p)?.mode]));
    expect(modes).toEqual({
      '/bin2/su': '4755',
      '/bin2/sg': '6711',
      '/t': '0755', // the directory made for tree's contents (fsutil prepareTargetDir), not tree's own mode
      '/t/shared': '2775',
      '/t/shared/x': '4750',
      '/chmodded': '2750',
    });
    expect([tree.get('/bin2/su')?.uid, tree.get('/bin2/su')?.gid]).toEqual([0, 0]); // BuildKit's client resets owners
  });

  it('a RUN step sees its own hostname, buildkitsandbox, in uname and /etc/hosts (with --network=host too)', async () => {
    const ctx = await ws.context('ctx-hostname', {
      Dockerfile: `FROM ${base}\nRUN hostname > /h && cat /etc/hosts > /hosts\nRUN --network=host hostname > /h-host\nRUN --network=none uname -n > /h-none\n`,
    });
    const img = await build(ctx);
    expect(holds(img, '/h')).toBe(sha('buildkitsandbox\n'));
    expect(holds(img, '/h-host')).toBe(sha('buildkitsandbox\n'));
    expect(holds(img, '/h-none')).toBe(sha('buildkitsandbox\n'));
    // BuildKit's hosts file (executor/oci initHostsFile), never naming the host
    expect(holds(img, '/hosts')).toBe(sha('127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n'));
  });
});
