// --run-mode in-place outside the executor image (issue 17's gap): builder run from the project (bin/builder, node from
// the host's /usr) in an unprivileged crun job container finds the builder-run that `npm run build` compiled into
// dist/bin, with none on PATH nor beside node, so its RUN steps are fenced off as in the executor image.
import { access, chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { constants, existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runJob, writeJobSpec } from '../support/crun.js';
import { pushBusybox } from '../support/images.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { run } from '../support/tools.js';
import { compileIfStale, ROOT, Workspace } from './helpers.js';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// The step: what it sees of the docker config, and the names of its ancestors up to pid 1.
const STEP = String.raw`
ls -A /root/.docker > /builds/res/step-ls 2>&1
p=$$; while [ "$p" -gt 1 ]; do cat /proc/$p/comm; p=$(awk '{print $4}' /proc/$p/stat); done > /builds/res/step-ancestors
`;

describe.skipIf(!isRoot)('in place from the project: the launcher npm run build put in dist/bin', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;
  beforeAll(async () => {
    [reg, ws] = await Promise.all([startRegistry({ mode: 'plain' }), Workspace.create('builder-dist-launcher-'), compileIfStale()]);
    // `npm ci` / `npm run build` leave it there; a checkout where only tsc ran gets it the same way
    if (!existsSync(path.join(ROOT, 'dist/bin/builder-run'))) await run('node', [path.join(ROOT, 'scripts/bundle.mjs')], { cwd: ROOT, timeoutMs: 170_000 });
    base = await pushBusybox(reg, 'library/busybox', 'latest');
  }, 240_000);
  afterAll(async () => {
    await reg?.stop();
    await ws?.remove();
  });

  it('RUN steps start through dist/bin/builder-run: no warning, the docker config out of "/" during the step and back after', async () => {
    // none on PATH nor beside node: only dist/bin can be where builder finds it
    for (const dir of [...PATH.split(':'), path.dirname(process.execPath)]) {
      expect(await access(path.join(dir, 'builder-run'), constants.X_OK).then(() => dir, () => undefined)).toBeUndefined();
    }
    await ws.context('jobws/ctx', { Dockerfile: `FROM ${base}\nCOPY step.sh /step.sh\nRUN sh /step.sh\n`, 'step.sh': STEP });
    await mkdir(ws.path('jobws/res'), { recursive: true });
    // the job container: the host's /usr and /etc and the project read-only, the job's volume at /builds, "/" its own
    const rootfs = await mkdtemp(path.join(ws.dir, 'rootfs-'));
    // /tmp first: the project's mount point may lie below it (a CI clone in /tmp/ci/main)
    await mkdir(path.join(rootfs, 'tmp'));
    await chmod(path.join(rootfs, 'tmp'), 0o1777);
    for (const d of ['usr', 'etc', 'proc', 'dev', 'sys', 'root', ROOT.slice(1)]) await mkdir(path.join(rootfs, d), { recursive: true });
    for (const l of ['bin', 'sbin', 'lib', 'lib64']) await symlink(`usr/${l}`, path.join(rootfs, l));
    await writeFile(path.join(rootfs, '.dockerenv'), ''); // as Docker marks its containers: in place needs no --force
    const config = '{"auths":{"r.example":{"auth":"dXNlcjpzM2NyZXQ="}}}\n';
    const script = [
      `mkdir -p /root/.docker && printf '%s\\n' '${config.trim()}' > /root/.docker/config.json`,
      `node ${ROOT}/bin/builder --run-mode in-place --context /builds/ctx --dockerfile /builds/ctx/Dockerfile --destination ${reg.host}/dist-launcher/app:1 > /builds/res/out 2>&1; echo $? > /builds/res/rc`,
      'cat /root/.docker/config.json > /builds/res/config-after',
    ].join('\n');
    const bundle = ws.path('job');
    await mkdir(bundle, { recursive: true });
    await writeJobSpec(bundle, {
      rootfs, args: ['/bin/sh', '-s'], env: [`PATH=${PATH}`, 'HOME=/root'], cwd: '/',
      binds: [
        { source: '/usr', destination: '/usr', readonly: true }, { source: '/etc', destination: '/etc', readonly: true },
        { source: ROOT, destination: ROOT, readonly: true }, { source: ws.path('jobws'), destination: '/builds' },
      ],
    });
    const r = await runJob(bundle, `builder-test-dist-launcher-${process.pid}`, 200_000, `${script}\n`);
    const res = (f: string): Promise<string> => readFile(ws.path('jobws/res', f), 'utf8').catch(() => '');
    const context = `job exit ${r.code}\n${r.stdout}\n${r.stderr}\nbuild rc ${await res('rc')}\n${await res('out')}`;
    expect((await res('rc')).trim(), context).toBe('0');
    expect(await res('out'), context).not.toContain('RUN steps start without builder-run');
    expect((await res('step-ancestors')).split('\n'), context).toContain('builder-run');
    expect(await res('step-ls'), context).toBe('');
    expect(await res('config-after'), context).toBe(config);
    await rm(rootfs, { recursive: true, force: true });
  }, 300_000);
});
