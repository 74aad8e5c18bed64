// Table tests for USER resolution: passwd/group parsing, spec parsing, resolution rules and errors.

import { describe, expect, it } from 'vitest';
import { isBuilderError } from '../../src/errors.js';
import { parseGroup, parsePasswd, parseUserSpec, resolveUser, resolveUserFromTables } from '../../src/run/index.js';

const PASSWD = [
  '# comment',
  'root:x:0:0:root:/root:/bin/ash',
  'daemon:x:2:2:daemon:/sbin:/sbin/nologin',
  '',
  'app:x:1000:1000:App User:/home/app:/bin/sh',
  'broken line',
  'bad:x:notanumber:1:::',
  'nohome:x:1001:1001:::',
  'win:x:1002:1002::/home/win:/bin/sh\r',
].join('\n');

const GROUP = [
  'root:x:0:root',
  'bin:x:1:root,bin,daemon',
  'daemon:x:2:root,bin,daemon',
  'app:x:1000:',
  'extra:x:2000:app, other',
  'extra2:x:2001:other,app',
  'dup:x:2000:app',
  'nohome:x:1001:',
  '#comment:x:5:app',
].join('\n');

describe('parsePasswd', () => {
  it('keeps well-formed entries and skips comments, blanks and malformed lines', () => {
    const p = parsePasswd(PASSWD);
    expect(p.map((e) => e.name)).toEqual(['root', 'daemon', 'app', 'nohome', 'win']);
    expect(p.find((e) => e.name === 'app')).toEqual({ name: 'app', uid: 1000, gid: 1000, home: '/home/app', shell: '/bin/sh' });
    expect(p.find((e) => e.name === 'nohome')?.home).toBe('/');
    expect(p.find((e) => e.name === 'win')?.shell).toBe('/bin/sh');
  });
});

describe('parseGroup', () => {
  it('parses members lists, empty lists and trims spaces', () => {
    const g = parseGroup(GROUP);
    expect(g.find((e) => e.name === 'bin')).toEqual({ name: 'bin', gid: 1, members: ['root', 'bin', 'daemon'] });
    expect(g.find((e) => e.name === 'app')?.members).toEqual([]);
    expect(g.find((e) => e.name === 'extra')?.members).toEqual(['app', 'other']);
    expect(g.some((e) => e.name.startsWith('#'))).toBe(false);
  });
});

describe('parseUserSpec', () => {
  it.each([
    ['app', { user: 'app' }],
    ['1000', { user: '1000' }],
    ['app:extra', { user: 'app', group: 'extra' }],
    ['1234:5678', { user: '1234', group: '5678' }],
    [' app ', { user: 'app' }],
  ])('%j', (spec, want) => expect(parseUserSpec(spec)).toEqual(want));

  it.each(['', ':', 'app:', ':grp', 'a:b:c'])('rejects %j with RUN_USER_INVALID', (spec) => {
    expect(() => parseUserSpec(spec)).toThrow(expect.objectContaining({ code: 'RUN_USER_INVALID' }));
  });
});

describe('resolveUserFromTables', () => {
  const p = parsePasswd(PASSWD);
  const g = parseGroup(GROUP);
  it.each([
    ['root', { uid: 0, gid: 0, groups: [1, 2], home: '/root' }],
    ['0', { uid: 0, gid: 0, groups: [1, 2], home: '/root' }],
    ['app', { uid: 1000, gid: 1000, groups: [2000, 2001], home: '/home/app' }],
    ['1000', { uid: 1000, gid: 1000, groups: [2000, 2001], home: '/home/app' }],
    ['app:extra', { uid: 1000, gid: 2000, groups: [], home: '/home/app' }],
    ['app:42', { uid: 1000, gid: 42, groups: [], home: '/home/app' }],
    ['1234', { uid: 1234, gid: 0, groups: [], home: '/' }],
    ['1234:5678', { uid: 1234, gid: 5678, groups: [], home: '/' }],
    ['1234:app', { uid: 1234, gid: 1000, groups: [], home: '/' }],
    ['nohome', { uid: 1001, gid: 1001, groups: [], home: '/' }],
  ])('%s', (spec, want) => expect(resolveUserFromTables(p, g, spec)).toEqual(want));

  it('resolves root even without passwd (scratch roots)', () => {
    expect(resolveUserFromTables([], [], 'root')).toEqual({ uid: 0, gid: 0, groups: [], home: '/root' });
  });

  it.each([
    ['nobodyhere', 'RUN_USER_UNKNOWN'],
    ['app:nogroup', 'RUN_GROUP_UNKNOWN'],
    ['99999999999', 'RUN_USER_INVALID'],
    ['1:4294967295', 'RUN_USER_INVALID'],
  ])('%s -> %s with a hint', (spec, code) => {
    let err: unknown;
    try {
      resolveUserFromTables(p, g, spec);
    } catch (e) {
      err = e;
    }
    expect(isBuilderError(err, code)).toBe(true);
    expect((err as { hint?: string }).hint).toBeTruthy();
    expect((err as Error).message).toContain(spec.split(':')[spec.includes(':') && code === 'RUN_GROUP_UNKNOWN' ? 1 : 0]);
  });
});

describe('resolveUser', () => {
  it('reads /etc/passwd and /etc/group through the root reader', async () => {
    const files: Record<string, string> = { '/etc/passwd': PASSWD, '/etc/group': GROUP };
    const seen: string[] = [];
    const u = await resolveUser(async (p) => {
      seen.push(p);
      return files[p];
    }, 'app');
    expect(u).toEqual({ uid: 1000, gid: 1000, groups: [2000, 2001], home: '/home/app' });
    expect(seen.sort()).toEqual(['/etc/group', '/etc/passwd']);
  });

  it('allows numeric ids when the files are missing', async () => {
    expect(await resolveUser(async () => undefined, '1234:5678')).toEqual({ uid: 1234, gid: 5678, groups: [], home: '/' });
    await expect(resolveUser(async () => undefined, 'app')).rejects.toMatchObject({ code: 'RUN_USER_UNKNOWN' });
  });
});
