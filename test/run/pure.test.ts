// Table tests for the pure parts of src/run: env composition, shellArgv, container detection, mountinfo, credential strategy.

import { describe, expect, it } from 'vitest';
import { credentialStrategy } from '../../src/run/in-place.js';
import {
  DEFAULT_PATH,
  detectContainer,
  mountPointsToIgnore,
  runtimeMounts,
  shellArgv,
  stepEnv,
  unescapeMountPath,
} from '../../src/run/index.js';

describe('stepEnv', () => {
  it.each<[string[], string | undefined, string[]]>([
    [[], undefined, [`PATH=${DEFAULT_PATH}`, 'HOME=/']],
    [['A=1'], '/home/app', ['A=1', `PATH=${DEFAULT_PATH}`, 'HOME=/home/app']],
    [['PATH=/x', 'HOME=/h'], '/home/app', ['PATH=/x', 'HOME=/h']],
    [['A=1', 'B=', 'A=2=3'], '/r', ['A=2=3', 'B=', `PATH=${DEFAULT_PATH}`, 'HOME=/r']],
  ])('%j home=%s', (env, home, want) => expect(stepEnv(env, home)).toEqual(want));

  it.each(['NOEQUALS', '=value', 'A=b\0c'])('rejects %j', (kv) => {
    expect(() => stepEnv([kv], '/')).toThrow(expect.objectContaining({ code: 'RUN_ENV_INVALID' }));
  });

  it('refuses what exec would refuse with E2BIG (one 128 KiB entry, 5000 entries, 2 MiB), naming no value', () => {
    const big = `BIG=${'v'.repeat(128 * 1024)}`;
    expect(() => stepEnv([big], '/', 'true')).toThrow(expect.objectContaining({ code: 'RUN_ENV_TOO_LARGE', message: expect.stringMatching(/^environment variable BIG for RUN true is \d+ bytes/) }));
    const many = Array.from({ length: 5000 }, (_, i) => `V${i}=x`);
    expect(() => stepEnv(many, '/')).toThrow(expect.objectContaining({ code: 'RUN_ENV_TOO_LARGE', message: expect.stringContaining('5002 entries') }));
    const heavy = Array.from({ length: 20 }, (_, i) => `V${i}=${'v'.repeat(100_000)}`);
    expect(() => stepEnv(heavy, '/')).toThrow(expect.objectContaining({ code: 'RUN_ENV_TOO_LARGE', message: expect.not.stringContaining('vvv') }));
    expect(stepEnv(Array.from({ length: 4000 }, (_, i) => `V${i}=x`), '/')).toHaveLength(4002);
  });
});

describe('shellArgv', () => {
  it.each<[string[] | undefined, string[]]>([
    [undefined, ['/bin/sh', '-c', 'echo hi']],
    [[], ['/bin/sh', '-c', 'echo hi']],
    [['/bin/bash', '-o', 'pipefail', '-c'], ['/bin/bash', '-o', 'pipefail', '-c', 'echo hi']],
    [['cmd', '/S', '/C'], ['cmd', '/S', '/C', 'echo hi']],
  ])('%j', (shell, want) => expect(shellArgv(shell, 'echo hi')).toEqual(want));
});

describe('detectContainer', () => {
  const files = (f: Record<string, string>) => async (p: string) => f[p];
  it.each<[string, Record<string, string>, Record<string, string>, boolean]>([
    ['nothing', {}, {}, false],
    ['/.dockerenv (empty file)', { '/.dockerenv': '' }, {}, true],
    ['/run/.containerenv', { '/run/.containerenv': 'engine="podman"' }, {}, true],
    ['cgroup v1 docker', { '/proc/1/cgroup': '12:pids:/docker/0123abcd\n' }, {}, true],
    ['cgroup kubepods', { '/proc/1/cgroup': '0::/kubepods/besteffort/pod1/abc\n' }, {}, true],
    ['cgroup containerd', { '/proc/1/cgroup': '0::/system.slice/containerd.service\n' }, {}, true],
    ['cgroup v2 host', { '/proc/1/cgroup': '0::/init.scope\n' }, {}, false],
    ['kubernetes env', {}, { KUBERNETES_SERVICE_HOST: '10.0.0.1' }, true],
    ['empty kubernetes env', {}, { KUBERNETES_SERVICE_HOST: '' }, false],
    ['container= env', {}, { container: 'podman' }, true],
  ])('%s', async (_name, f, env, want) => expect(await detectContainer(files(f), env)).toBe(want));
});

describe('mountinfo', () => {
  it.each([
    ['/mnt/with\\040space', '/mnt/with space'],
    ['/a\\011tab\\012nl', '/a\ttab\nnl'],
    ['/back\\134slash', '/back\\slash'],
    ['/plain', '/plain'],
  ])('unescapes %s', (s, want) => expect(unescapeMountPath(s)).toBe(want));

  it('lists mount points except "/" sorted and unique', () => {
    const text = [
      '1089 1030 0:85 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u',
      '1090 1089 0:88 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw',
      '1091 1089 0:89 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755',
      '1097 1089 8:1 /var/lib/docker/containers/x/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/sda1 rw',
      '1100 1089 8:1 /builds /builds\\040dir rw,relatime shared:5 master:3 - ext4 /dev/sda1 rw',
      '1101 1090 0:88 /bus /proc/bus ro,nosuid - proc proc rw',
      '1102 1089 0:90 / /dev rw - tmpfs tmpfs rw',
      '',
      'garbage',
    ].join('\n');
    expect(mountPointsToIgnore(text)).toEqual(['/builds dir', '/dev', '/etc/resolv.conf', '/proc', '/proc/bus']);
  });
});

describe('credentialStrategy', () => {
  const root = { uid: 0, gid: 0, groups: [0] };
  it.each<[string, { uid: number; gid: number; groups: number[] }, 'inherit' | 'spawn-ids' | 'helper']>([
    ['same as builder', { uid: 0, gid: 0, groups: [] }, 'inherit'],
    ['uid/gid only', { uid: 1234, gid: 5678, groups: [] }, 'spawn-ids'],
    ['supplementary groups', { uid: 1000, gid: 1000, groups: [2000] }, 'helper'],
    ['root with extra groups', { uid: 0, gid: 0, groups: [1, 2] }, 'helper'],
  ])('%s', (_n, user, want) => expect(credentialStrategy(root, user)).toBe(want));
});

describe('runtimeMounts', () => {
  it('names every path the sandbox provides', () => {
    expect([...runtimeMounts].sort()).toEqual(['/dev', '/etc/hosts', '/etc/resolv.conf', '/proc', '/sys']);
  });
});
