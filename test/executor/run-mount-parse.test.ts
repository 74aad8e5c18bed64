// RUN --mount values and --secret flags read as BuildKit reads them (instructions/commands_runmount.go, dispatchSecret, buildx parseSecret); the in-place cache lock.
import { describe, expect, it } from 'vitest';
import { LOCK_STALE_MS, lockCache } from '../../src/cache/run-cache.js';
import { parseMount } from '../../src/dockerfile/index.js';
import { parseSecretFlags } from '../../src/cli/secrets.js';

const p = (s: string, workdir = '/work') => parseMount(s, { workdir, where: 'Dockerfile:2' });

describe('parseMount', () => {
  it('defaults: type bind, read-only, source the root; relative targets under WORKDIR', () => {
    expect(p('target=src')).toEqual({ type: 'bind', target: '/work/src', source: '/', readonly: true });
    expect(p('type=bind,src=a,dst=/x,rw')).toEqual({ type: 'bind', target: '/x', source: 'a', readonly: false });
    expect(p('type=bind,target=/x,from=build,readonly=false')).toMatchObject({ from: 'build', readonly: false });
  });

  it('cache: id defaults to the target, rw, 0755 root-owned, sharing shared', () => {
    expect(p('type=cache,target=/root/.cache')).toEqual({ type: 'cache', target: '/root/.cache', id: '/root/.cache', sharing: 'shared', readonly: false, mode: 0o755, uid: 0, gid: 0 });
    expect(p('type=cache,id=go,target=/c,sharing=locked,mode=0700,uid=1000,gid=100')).toMatchObject({ id: 'go', sharing: 'locked', mode: 0o700, uid: 1000, gid: 100 });
  });

  it('secret: id from id=, source= or the target\'s base name; target /run/secrets/ID; mode 0400', () => {
    expect(p('type=secret,id=tok')).toEqual({ type: 'secret', target: '/run/secrets/tok', id: 'tok', required: false, mode: 0o400, uid: 0, gid: 0 });
    expect(p('type=secret,source=npmrc,target=/root/.npmrc,required')).toMatchObject({ id: 'npmrc', target: '/root/.npmrc', required: true });
    expect(p('type=secret,target=/etc/key.pem')).toMatchObject({ id: 'key.pem' });
  });

  it('secret env=: a variable only (no target) unless a target is given too (dispatchSecret)', () => {
    expect(p('type=secret,id=tok,env=TOKEN')).toEqual({ type: 'secret', env: 'TOKEN', id: 'tok', required: false, mode: 0o400, uid: 0, gid: 0 });
    expect(p('type=secret,id=tok,env=TOKEN,target=/etc/tok')).toMatchObject({ env: 'TOKEN', target: '/etc/tok' });
  });

  it('tmpfs: rw, size with units', () => {
    expect(p('type=tmpfs,target=/t,size=64m')).toEqual({ type: 'tmpfs', target: '/t', readonly: false, size: 64 * 1024 * 1024 });
  });

  it.each([
    ['type=bind', 'RUN_MOUNT_INVALID'], // no target
    ['type=bind,target=/', 'RUN_MOUNT_INVALID'],
    ['type=bind,target=/x,mode=0644', 'RUN_MOUNT_INVALID'], // file info only for secret, ssh, cache
    ['type=bind,target=/x,required', 'RUN_MOUNT_INVALID'],
    ['type=tmpfs,target=/x,sharing=locked', 'RUN_MOUNT_INVALID'],
    ['type=cache,target=/x,sharing=exclusive', 'RUN_MOUNT_INVALID'],
    ['type=secret', 'RUN_MOUNT_INVALID'],
    ['type=secret,id=a,source=b', 'RUN_MOUNT_INVALID'],
    ['type=secret,id=a,from=build', 'RUN_MOUNT_INVALID'],
    ['type=bind,target=/x,bogus=1', 'RUN_MOUNT_INVALID'],
    ['type=bind,target=/x,ro=maybe', 'RUN_MOUNT_INVALID'],
    ['type=volume,target=/x', 'RUN_MOUNT_INVALID'],
    ['type=ssh', 'RUN_MOUNT_UNSUPPORTED'],
    ['type=secret,id=a,env=', 'RUN_MOUNT_INVALID'],
    ['type=secret,id=a,env=A-B', 'RUN_MOUNT_INVALID'], // goes into an `env -S` string: identifiers only
    ['type=secret,env=A', 'RUN_MOUNT_INVALID'], // no id, no target
    ['type=cache,target=/x,from=build', 'RUN_MOUNT_UNSUPPORTED'],
  ])('refuses %s with %s', (spec, code) => {
    expect(() => p(spec)).toThrow(expect.objectContaining({ code }));
  });
});

describe('parseSecretFlags', () => {
  const env = { TOKEN: 'from-env', other: 'o' };
  it('src= is a file (relative to the working directory), env= a variable read now, type=env takes src as the variable', () => {
    expect(parseSecretFlags(['id=a,src=s.txt', 'id=b,env=TOKEN', 'id=c,type=env,src=TOKEN', 'id=d,source=/abs'], env, '/cwd')).toEqual({
      a: { file: '/cwd/s.txt' }, b: { value: 'from-env' }, c: { value: 'from-env' }, d: { file: '/abs' },
    });
  });
  it('id alone: the variable of that name when set, else the file of that name', () => {
    expect(parseSecretFlags(['id=TOKEN', 'id=missing'], env, '/cwd')).toEqual({ TOKEN: { value: 'from-env' }, missing: { file: '/cwd/missing' } });
  });
  it.each(['src=x', 'id=a,bogus=1', 'id=a,type=ssh', 'id=a,env=UNSET', 'id'])('refuses %s', (flag) => {
    expect(() => parseSecretFlags([flag], env, '/cwd')).toThrow(expect.objectContaining({ code: 'FLAG_INVALID' }));
  });
});

describe('lockCache (in place: one build at a time holds a cache, its content moves into "/")', () => {
  const setup = async () => {
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(`${tmpdir()}/lock-cache-`);
    return { dir, lock: `${dir}/c.lock`, signal: new AbortController().signal, lines: [] as string[] };
  };

  it('sharing=locked or shared waits for the holder\'s release; private gets "busy" (a throwaway cache) at once', async () => {
    const { dir, lock, signal, lines } = await setup();
    const release = await lockCache(lock, { id: 'c', sharing: 'shared' }, (e) => void (e.type === 'message' && lines.push(e.msg)), signal);
    expect(release).not.toBe('busy');
    expect(await lockCache(lock, { id: 'c', sharing: 'private' }, (e) => void (e.type === 'message' && lines.push(e.msg)), signal)).toBe('busy');
    let second: unknown;
    const waiting = lockCache(lock, { id: 'c', sharing: 'locked' }, (e) => void (e.type === 'message' && lines.push(e.msg)), signal).then((r) => (second = r));
    await new Promise((r) => setTimeout(r, 600));
    expect(second).toBeUndefined();
    expect(lines).toEqual(['cache mount c: in use by another build, waiting for it']);
    await (release as () => Promise<void>)();
    await waiting;
    expect(typeof second).toBe('function');
    await (second as () => Promise<void>)();
    const { rm } = await import('node:fs/promises');
    await rm(dir, { recursive: true });
  });

  it('a lock left by a build that died (not refreshed for LOCK_STALE_MS) is taken over', async () => {
    const { dir, lock, signal } = await setup();
    const { writeFile, utimes, rm } = await import('node:fs/promises');
    await writeFile(lock, '12345\n');
    const old = new Date(Date.now() - LOCK_STALE_MS - 5_000);
    await utimes(lock, old, old);
    const release = await lockCache(lock, { id: 'c', sharing: 'locked' }, () => undefined, signal);
    expect(typeof release).toBe('function');
    await (release as () => Promise<void>)();
    await rm(dir, { recursive: true });
  });
});
