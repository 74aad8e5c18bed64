// RUN --mount end to end through the CLI in the sandbox: secrets, caches, binds, tmpfs, and what must never reach the image.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { commandLinesDuring, Workspace } from './helpers.js';

const SECRET = 'S3cr3t-value-4f9a1c7e-never-in-the-image';

/** Every blob of an OCI layout, uncompressed when gzip: layers as tar bytes, the config, the manifest, the index. */
async function layoutBlobs(layout: string): Promise<Buffer[]> {
  const dir = path.join(layout, 'blobs/sha256');
  const out: Buffer[] = [await readFile(path.join(layout, 'index.json'))];
  for (const name of await readdir(dir)) {
    const b = await readFile(path.join(dir, name));
    out.push(b[0] === 0x1f && b[1] === 0x8b ? gunzipSync(b) : b);
  }
  return out;
}

/** Entry names of the tar layers among the blobs (ustar magic at 257). */
function tarNames(blobs: Buffer[]): string[] {
  const names: string[] = [];
  for (const b of blobs) {
    if (b.length < 512 || b.toString('latin1', 257, 262) !== 'ustar') continue;
    for (let off = 0; off + 512 <= b.length;) {
      const name = b.toString('utf8', off, off + 100).replace(/\0.*$/s, '');
      if (name === '') break;
      const prefix = b.toString('utf8', off + 345, off + 500).replace(/\0.*$/s, '');
      const size = parseInt(b.toString('latin1', off + 124, off + 136).replace(/\0.*$/s, '').trim() || '0', 8);
      names.push(prefix ? `${prefix}/${name}` : name);
      off += 512 + Math.ceil(size / 512) * 512;
    }
  }
  return names;
}

/** Name -> content of every entry of the tar layers among the blobs (later layers win). */
function tarFiles(blobs: Buffer[]): Map<string, string> {
  const files = new Map<string, string>();
  for (const b of blobs) {
    if (b.length < 512 || b.toString('latin1', 257, 262) !== 'ustar') continue;
    for (let off = 0; off + 512 <= b.length;) {
      const name = b.toString('utf8', off, off + 100).replace(/\0.*$/s, '');
      if (name === '') break;
      const size = parseInt(b.toString('latin1', off + 124, off + 136).replace(/\0.*$/s, '').trim() || '0', 8);
      files.set(name, b.toString('utf8', off + 512, off + 512 + size));
      off += 512 + Math.ceil(size / 512) * 512;
    }
  }
  return files;
}

/** Entry names of each layer of the image in an OCI layout, in manifest order. */
async function layerNames(layout: string): Promise<string[][]> {
  const blob = (d: string): Promise<Buffer> => readFile(path.join(layout, 'blobs/sha256', d.replace(/^sha256:/, '')));
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const manifest = JSON.parse((await blob(index.manifests[0]!.digest)).toString('utf8')) as { layers: { digest: string }[] };
  const out: string[][] = [];
  for (const l of manifest.layers) out.push(tarNames([gunzipSync(await blob(l.digest))]));
  return out;
}

describe('builder build: RUN --mount (sandbox)', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;

  useFixture({ prefix: 'builder-mount-', format: 'oci' }, (f) => ({ reg, ws, base } = f));

  const sandbox = ['--run-mode', 'sandbox', '--no-push'];

  it('a secret is readable by the step (file and env sources, mode, uid) and absent from every layer, the config and the history', async () => {
    const secretFile = ws.path('secret.txt');
    await writeFile(secretFile, SECRET);
    // The step proves it read the value by its md5 and length; the value itself is never written by the step.
    const ctx2 = await ws.context('ctx-secret2', {
      Dockerfile: [
        `FROM ${base}`,
        'RUN --mount=type=secret,id=tok md5sum < /run/secrets/tok | cut -c1-32 > /tok-md5 && stat -c "%a %u" /run/secrets/tok > /tok-mode',
        'RUN --mount=type=secret,id=fromenv,target=/etc/app/key,uid=1000,mode=0440 stat -c "%a %u" /etc/app/key > /key-mode && wc -c < /etc/app/key > /key-len',
        'USER 1000',
        'RUN --mount=type=secret,id=fromenv,uid=1000 cat /run/secrets/fromenv > /dev/null && echo ok > /tmp/user-read',
        'RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo none > /tmp/optional',
      ].join('\n'),
    });
    const layout2 = ws.path('secret-layout2');
    await ws.buildOk(ctx2, [...sandbox, '--secret', `id=tok,src=${secretFile}`, '--secret', 'id=fromenv,env=MY_SECRET', '--oci-layout-path', layout2],
      { env: { MY_SECRET: SECRET } });
    const blobs = await layoutBlobs(layout2);
    for (const b of blobs) expect(b.includes(SECRET)).toBe(false);
    const names = tarNames(blobs);
    expect(names).toContain('tok-md5');
    expect(names.filter((n) => /^run\/secrets|^etc\/app/.test(n))).toEqual([]);
    const { createHash } = await import('node:crypto');
    const files = tarFiles(blobs);
    // The base layer, then one layer per step with exactly what the step wrote: no stub, no parent of one.
    expect((await layerNames(layout2)).slice(1)).toEqual([['tok-md5', 'tok-mode'], ['key-len', 'key-mode'], ['tmp/', 'tmp/user-read'], ['tmp/', 'tmp/optional']]);
    expect(files.get('tok-md5')?.trim()).toBe(createHash('md5').update(SECRET).digest('hex'));
    expect(files.get('tok-mode')?.trim()).toBe('400 0');
    expect(files.get('key-mode')?.trim()).toBe('440 1000');
    expect(files.get('key-len')?.trim()).toBe(String(SECRET.length));
    expect(files.get('tmp/user-read')?.trim()).toBe('ok');
    expect(files.get('tmp/optional')?.trim()).toBe('none');
  }, 180_000);

  it('a secret with env= is the step\'s variable only (no file, wins over ENV for that RUN), in no process\'s command line, layer, config or history', async () => {
    const value = `${SECRET}-as-env-${process.pid}`;
    const ctx = await ws.context('ctx-secret-env', {
      Dockerfile: [
        `FROM ${base}`,
        'ENV TOKEN=from-dockerfile',
        // md5 of the value, no file, no command line in the step's namespace holding it (awk reads it from ENVIRON); then a
        // pause during which the test scans the host's /proc (where the sandbox's own processes are).
        'RUN --mount=type=secret,id=tok,env=TOKEN echo "$TOKEN" | md5sum | cut -c1-32 > /env-md5 && ! test -e /run/secrets/tok && \\',
        '    for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f"; echo; done | awk \'index($0, ENVIRON["TOKEN"]) { n++ } END { print n + 0 }\' > /hits && sleep 2',
        'RUN --mount=type=secret,id=tok,env=TOKEN,target=/etc/tok test "$(cat /etc/tok)" = "$TOKEN" && echo both > /both',
        'RUN echo "$TOKEN" > /after',
      ].join('\n'),
    });
    const layout = ws.path('secret-env-layout');
    const build = ws.buildOk(ctx, [...sandbox, '--secret', 'id=tok,env=MY_TOKEN', '--oci-layout-path', layout], { env: { MY_TOKEN: value } });
    expect((await commandLinesDuring([value], 'builder-sandbox', build)).seen).toEqual([]);
    const blobs = await layoutBlobs(layout);
    for (const b of blobs) expect(b.includes(value)).toBe(false);
    const { createHash } = await import('node:crypto');
    const files = tarFiles(blobs);
    expect(files.get('env-md5')?.trim()).toBe(createHash('md5').update(`${value}\n`).digest('hex'));
    expect(files.get('hits')).toBe('0\n');
    expect(files.get('both')).toBe('both\n');
    expect(files.get('after')).toBe('from-dockerfile\n');
    expect((await layerNames(layout)).slice(1)).toEqual([['env-md5', 'hits'], ['both'], ['after']]);
  }, 180_000);

  it('a required secret that was not given fails the build before the step runs', async () => {
    const ctx = await ws.context('ctx-required', { Dockerfile: `FROM ${base}\nRUN --mount=type=secret,id=need,required true\n` });
    const r = await ws.build(ctx, sandbox);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('RUN_SECRET_MISSING');
  }, 120_000);

  it('a cache mount keeps its content between builds on this machine and never reaches the image', async () => {
    const cache = ws.path('cache-shared');
    const ctx = await ws.context('ctx-cache', {
      Dockerfile: `FROM ${base}\nRUN --mount=type=cache,target=/var/cache/thing echo x >> /var/cache/thing/log && wc -l < /var/cache/thing/log > /count\n`,
    });
    const one = ws.path('cache-one');
    const two = ws.path('cache-two');
    await ws.buildOk(ctx, [...sandbox, '--oci-layout-path', one], { cache });
    await ws.buildOk(ctx, [...sandbox, '--oci-layout-path', two], { cache });
    const blobs = await layoutBlobs(two);
    expect((await layerNames(two)).slice(1)).toEqual([['count']]);
    const counts = blobs.filter((b) => b.toString('latin1', 257, 262) === 'ustar').map((b) => b.toString('utf8', 512, 514));
    expect(counts).toContain('2\n');
  }, 180_000);

  it('a bind mount from the context is read-only by default, honours .dockerignore, and rw writes are discarded', async () => {
    const ctx = await ws.context('ctx-bind', {
      Dockerfile: [
        `FROM ${base}`,
        'RUN --mount=type=bind,target=/src cat /src/app.txt > /app-copy && ! test -e /src/ignored.txt && ! touch /src/new 2>/dev/null && echo ro > /ro',
        'RUN --mount=type=bind,source=sub,target=/w,rw echo changed > /w/s.txt && cat /w/s.txt > /rw-saw',
        'RUN --mount=type=bind,source=sub,target=/w cat /w/s.txt > /after-rw',
        'RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && cat /scratch/t > /tmpfs-saw',
      ].join('\n'),
      'app.txt': 'APP\n',
      'ignored.txt': 'no\n',
      '.dockerignore': 'ignored.txt\n',
      'sub/s.txt': 'orig\n',
    });
    const layout = ws.path('bind-layout');
    await ws.buildOk(ctx, [...sandbox, '--oci-layout-path', layout]);
    expect((await layerNames(layout)).slice(1)).toEqual([['app-copy', 'ro'], ['rw-saw'], ['after-rw'], ['tmpfs-saw']]);
    expect(await readFile(path.join(ctx, 'sub/s.txt'), 'utf8')).toBe('orig\n');
    const blobs = await layoutBlobs(layout);
    const all = Buffer.concat(blobs.filter((b) => b.toString('latin1', 257, 262) === 'ustar')).toString('latin1');
    expect(all).toContain('APP\n');
    expect(all).toContain('changed\n');
    expect(all).toContain('orig\n');
  }, 180_000);

  it('a bind mount from a stage or an image sees its files', async () => {
    const ctx = await ws.context('ctx-bind-stage', {
      Dockerfile: [
        `FROM ${base} AS build`,
        'RUN echo built > /out.txt',
        `FROM ${base}`,
        'RUN --mount=type=bind,from=build,source=/out.txt,target=/in.txt cp /in.txt /got',
        `RUN --mount=type=bind,from=${base},source=/bin,target=/img/bin cmp /img/bin/busybox /bin/busybox && echo same > /img-same`,
      ].join('\n'),
    });
    const layout = ws.path('stage-layout');
    await ws.buildOk(ctx, [...sandbox, '--oci-layout-path', layout]);
    expect((await layerNames(layout)).slice(1)).toEqual([['got'], ['img-same']]);
  }, 180_000);

  it('RUN --network=none sees only loopback; the default shares the host\'s interfaces', async () => {
    const ctx = await ws.context('ctx-net', {
      Dockerfile: `FROM ${base}\nRUN --network=none ls /sys/class/net > /none\nRUN --network=default ls /sys/class/net > /default\n`,
    });
    const layout = ws.path('net-layout');
    await ws.buildOk(ctx, [...sandbox, '--oci-layout-path', layout]);
    const text = (await layoutBlobs(layout)).filter((b) => b.toString('latin1', 257, 262) === 'ustar').map((b) => b.toString('utf8', 0, 1024));
    const none = text.find((t) => t.startsWith('none'))!;
    const dflt = text.find((t) => t.startsWith('default'))!;
    expect(none.slice(512).replace(/\0.*$/s, '')).toBe('lo\n');
    expect(dflt.slice(512).replace(/\0.*$/s, '').split('\n').filter(Boolean).length).toBeGreaterThan(1);
  }, 120_000);

  it('a mount target through a symlink to a host path lands inside the build root, never on the host', async () => {
    const hostDir = ws.path('host-only');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(hostDir);
    const ctx = await ws.context('ctx-symlink-target', {
      Dockerfile: [
        `FROM ${base}`,
        `RUN mkdir -p ${hostDir} && ln -s ${hostDir} /esc && ln -s ../../../../../../../.. /up`,
        'RUN --mount=type=tmpfs,target=/esc/m --mount=type=bind,target=/up/x,source=f.txt cat /esc/../x > /seen; echo $? > /rc; ls -d /esc/m > /m',
      ].join('\n'),
      'f.txt': 'F\n',
    });
    const layout = ws.path('symlink-layout');
    await ws.buildOk(ctx, [...sandbox, '--oci-layout-path', layout]);
    // on the host nothing was created under the symlink's target
    expect(await readdir(hostDir)).toEqual([]);
    // in the root, the mounts went where the symlinks lead inside it (and their stubs are gone again)
    const layers = await layerNames(layout);
    expect(layers.at(-1)).toEqual(['m', 'rc', 'seen']);
  }, 120_000);

  it('sharing=locked: two stages running at once never hold the same cache together', async () => {
    const step = (n: string) => `RUN --mount=type=cache,id=lk,target=/c,sharing=locked mkdir /c/held && sleep 2 && rmdir /c/held && echo ${n} > /done`;
    const ctx = await ws.context('ctx-locked', {
      Dockerfile: `FROM ${base} AS a\n${step('a')}\nFROM ${base} AS b\n${step('b')}\nFROM ${base}\nCOPY --from=a /done /a\nCOPY --from=b /done /b\n`,
    });
    await ws.buildOk(ctx, [...sandbox]);
  }, 120_000);

  it('ssh mounts and --security=insecure are refused with their codes', async () => {
    const ssh = await ws.context('ctx-ssh', { Dockerfile: `FROM ${base}\nRUN --mount=type=ssh true\n` });
    const r1 = await ws.build(ssh, sandbox);
    expect(r1.code).not.toBe(0);
    expect(r1.stderr).toContain('RUN_MOUNT_UNSUPPORTED');
    const sec = await ws.context('ctx-security', { Dockerfile: `FROM ${base}\nRUN --security=insecure true\n` });
    const r2 = await ws.build(sec, sandbox);
    expect(r2.code).not.toBe(0);
    expect(r2.stderr).toContain('RUN_SECURITY_UNSUPPORTED');
  }, 120_000);

  it('with --cache, a RUN with a context bind mount keys on the bound content; secrets are not in the key', async () => {
    const cacheRepo = ws.path('bind-cache');
    const secretFile = ws.path('key-secret.txt');
    const run = async (n: string, content: string, secret: string): Promise<string[]> => {
      await writeFile(secretFile, secret);
      const ctx = await ws.context(`ctx-bindkey-${n}`, {
        Dockerfile: `FROM ${base}\nRUN --mount=type=bind,source=in.txt,target=/in.txt --mount=type=secret,id=s cat /in.txt > /out\n`,
        'in.txt': content,
        'other.txt': n,
      });
      const r = await ws.build(ctx, [...sandbox, '--reproducible', '--cache', '--cache-repo', `oci:${cacheRepo}`, '--secret', `id=s,src=${secretFile}`],
        { cache: ws.path(`cache-bk-${n}`), work: ws.path(`work-bk-${n}`) });
      if (r.code !== 0) throw new Error(r.stderr);
      return r.stderr.split('\n').filter((l) => / \(cached /.test(l));
    };
    expect(await run('one', 'A\n', 'x')).toEqual([]);
    expect(await run('two', 'A\n', 'y')).toHaveLength(1);
    expect(await run('three', 'B\n', 'y')).toEqual([]);
  }, 240_000);

  it('with --cache, a bind at a relative target (--mount=target=.) lands under WORKDIR and keys on the context, as without', async () => {
    // the key once read the mount under "/" (not the step's WORKDIR): target=. was "/" and the build failed
    const cacheRepo = ws.path('dot-cache');
    const ctx = await ws.context('ctx-dot', { Dockerfile: `FROM ${base}\nWORKDIR /src\nRUN --mount=target=. cat in.txt > /out\n`, 'in.txt': 'dot\n' });
    const layout = ws.path('dot-layout');
    for (const n of ['one', 'two']) {
      const r = await ws.build(ctx, [...sandbox, '--cache', '--cache-repo', `oci:${cacheRepo}`, ...(n === 'one' ? ['--oci-layout-path', layout] : [])],
        { cache: ws.path(`cache-dot-${n}`), work: ws.path(`work-dot-${n}`) });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr.split('\n').filter((l) => / \(cached /.test(l))).toHaveLength(n === 'one' ? 0 : 2); // WORKDIR and RUN
    }
    expect((await layerNames(layout)).at(-1)).toEqual(['out']);
  }, 240_000);
});
