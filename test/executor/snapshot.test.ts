// Snapshot edge cases end to end: what RUN steps change must reach the image exactly, as umoci unpacks it.
import { lstat, readFile, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { Workspace } from './helpers.js';

const LONG = `${'long-directory-name-'.repeat(4)}/${'a-very-long-file-name-'.repeat(6)}.txt`;

describe('builder build: snapshot edge cases', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;

  useFixture({ format: 'oci' }, (f) => ({ reg, ws, base } = f));

  it('content rewrites that keep size and mtime, recreated dirs, links across layers, special modes, long names', async () => {
    const dockerfile = [
      `FROM ${base}`,
      'COPY a.txt /app/a.txt',
      'RUN mkdir -p /data/keep /data/sym2dir && echo aaaa > /data/same && touch -d "2001-02-03 04:05:06" /data/same'
        + ' && echo old > /data/keep/old && ln -s /etc /data/sym2dir/link && ln -s keep /data/dirlink'
        + ' && echo x > /tmp/t && mkdir -p "/data/with space" && echo s > "/data/with space/f ü.txt"',
      'RUN printf "bbbb\\n" > /data/same && touch -d "2001-02-03 04:05:06" /data/same'
        + ' && rm -rf /data/keep && mkdir /data/keep && echo new > /data/keep/new'
        + ' && rm /data/dirlink && mkdir /data/dirlink && echo in > /data/dirlink/in'
        + ' && ln /app/a.txt /app/hard && cp /bin/busybox /data/suid && chmod 4755 /data/suid && chmod 2775 /data/keep'
        + ` && mkdir -p "/data/$(dirname ${LONG})" && echo long > "/data/${LONG}" && : > /data/empty && rm /tmp/t`,
      'USER app',
      'RUN echo by-app > /tmp/by-app',
    ].join('\n');
    const ctx = await ws.context('ctx', { Dockerfile: dockerfile, 'a.txt': 'A\n' });
    await ws.buildOk(ctx, ['--destination', `${reg.host}/test/snap:v1`]);
    const rootfs = await ws.unpack(reg, 'test/snap:v1', 'snap');
    const p = (rel: string): string => path.join(rootfs, rel);
    const exists = (rel: string): Promise<boolean> => lstat(p(rel)).then(() => true, () => false);

    // same size, same mtime, different content: caught by ctime
    expect(await readFile(p('data/same'), 'utf8')).toBe('bbbb\n');
    expect((await stat(p('data/same'))).mtime.toISOString().slice(0, 10)).toBe('2001-02-03');
    // a directory deleted and recreated: the old child is gone
    expect(await exists('data/keep/old')).toBe(false);
    expect(await readFile(p('data/keep/new'), 'utf8')).toBe('new\n');
    expect((await lstat(p('data/keep'))).mode & 0o7777).toBe(0o2775);
    // a symlink replaced by a directory
    expect((await lstat(p('data/dirlink'))).isDirectory()).toBe(true);
    expect(await readFile(p('data/dirlink/in'), 'utf8')).toBe('in\n');
    expect(await readlink(p('data/sym2dir/link'))).toBe('/etc');
    // a hardlink to a file of an earlier layer
    const [a, h] = await Promise.all([stat(p('app/a.txt')), stat(p('app/hard'))]);
    expect(h.ino).toBe(a.ino);
    expect(await readFile(p('app/hard'), 'utf8')).toBe('A\n');
    // setuid, empty file, long and non-ASCII names
    expect((await lstat(p('data/suid'))).mode & 0o7777).toBe(0o4755);
    expect((await lstat(p('data/empty'))).size).toBe(0);
    expect(await readFile(p(`data/${LONG}`), 'utf8')).toBe('long\n');
    expect(await readFile(p('data/with space/f ü.txt'), 'utf8')).toBe('s\n');
    // /tmp keeps its sticky mode through the layers that touch it; deleted file gone
    expect((await lstat(p('tmp'))).mode & 0o7777).toBe(0o1777);
    expect(await exists('tmp/t')).toBe(false);
    const byApp = await lstat(p('tmp/by-app'));
    expect(`${byApp.uid}:${byApp.gid}`).toBe('1000:1000');
  });
});
