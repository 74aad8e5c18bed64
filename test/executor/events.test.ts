// What a build says while it runs, end to end through the CLI: JSON lines that parse, progress during a big layer, the summary; and --ignore-var-run.
import { spawn } from 'node:child_process';
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useFixture } from '../support/fixture.js';
import type { TestRegistry } from '../support/registry.js';
import { run } from '../support/tools.js';
import { ROOT, Workspace } from './helpers.js';

/** The lines a terminal shows after the output, applying "cursor up + erase line". */
function screen(out: string): string[] {
  const lines: string[] = [];
  for (const part of out.replace(/\r/g, '').split(/(\x1b\[1A\x1b\[2K)/)) {
    if (part === '\x1b[1A\x1b[2K') lines.pop();
    else lines.push(...part.split('\n').slice(0, -1));
  }
  return lines;
}

describe('builder build: events, progress and the summary', () => {
  let reg: TestRegistry;
  let ws: Workspace;
  let base: string;

  useFixture({ format: 'oci' }, (f) => ({ reg, ws, base } = f));

  it('--log-format json: every stderr line parses, steps and RUN output carry their fields, the summary is one event, stdout is the digest alone', async () => {
    const ctx = await ws.context('json', { Dockerfile: `FROM ${base}\nRUN echo hello-from-run && echo data > /data\nENV A=b\n`, 'a.txt': 'a' });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--log-format', 'json', '--destination', `${reg.host}/test/events:json`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const l of lines) {
      expect(typeof l.level).toBe('string');
      expect(typeof l.msg).toBe('string');
      expect(Number.isNaN(Date.parse(l.time as string))).toBe(false);
    }
    expect(lines).toContainEqual(expect.objectContaining({ event: 'step', status: 'started', step: '[1/2]', instruction: expect.stringContaining('echo hello-from-run') }));
    expect(lines).toContainEqual(expect.objectContaining({ event: 'step', status: 'finished', step: '[1/2]', ms: expect.any(Number), layer: expect.objectContaining({ digest: expect.stringMatching(/^sha256:/) }) }));
    expect(lines).toContainEqual(expect.objectContaining({ msg: '[1/2] hello-from-run', source: 'run', stream: 'stdout' }));
    const summaries = lines.filter((l) => l.event === 'summary');
    expect(summaries).toHaveLength(1);
    const s = summaries[0]!.summary as Record<string, unknown>;
    expect(s).toMatchObject({ digest: r.stdout.trim(), layersBuilt: 1, layersCached: 0, pushed: [`${reg.host}/test/events:json`] });
    expect(s.layers).toBeGreaterThan(1);
    // the new layer and the config went up; the base layers were mounted or already there
    expect(s.bytesUp).toBeGreaterThan(0);
    expect(s.bytesDown).toBeGreaterThan(0);
    expect(Object.keys(s.phases as object)).toEqual(['pull', 'steps', 'snapshot', 'push']);
    expect(lines.at(-1)!.event).toBe('summary');
  });

  it('--log-format json: a failing step ends with a failed step event (its duration), then the error', async () => {
    const ctx = await ws.context('json-fail', { Dockerfile: `FROM ${base}\nRUN echo about-to-fail && exit 3\n` });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--log-format', 'json', '--destination', `${reg.host}/test/events:fail`]);
    expect(r.code).toBe(3);
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const failed = lines.findIndex((l) => l.event === 'step' && l.status === 'failed');
    expect(lines[failed]).toMatchObject({ step: '[1/1]', instruction: expect.stringContaining('exit 3'), ms: expect.any(Number) });
    expect(lines.slice(failed + 1), r.stderr).toContainEqual(expect.objectContaining({ level: 'error', code: 'RUN_FAILED' }));
  });

  it('--log-format json stays JSON when a signal stops the build: the signal\'s message and the error are JSON lines too', async () => {
    const ctx = await ws.context('signal', { Dockerfile: `FROM ${base}\nRUN echo step-started && sleep 30\n` });
    const child = spawn('node', [path.join(ROOT, 'bin/builder'), '--context', ctx, '--cache-dir', ws.path('cache'), '--work-dir', ws.path('work'),
      '--run-mode', 'sandbox', '--no-push', '--log-format', 'json'], { cwd: ws.dir, env: ws.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      for (let i = 0; i < 600 && !stderr.includes('step-started'); i++) await new Promise((r) => setTimeout(r, 100));
      expect(stderr).toContain('step-started');
      child.kill('SIGTERM');
      expect(await exit).toBe(143);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    const lines = stderr.trim().split('\n').map((l) => JSON.parse(l) as { level: string; msg: string; code?: string });
    expect(lines).toContainEqual(expect.objectContaining({ level: 'warn', msg: expect.stringMatching(/^SIGTERM received/) }));
    expect(lines.at(-1)).toMatchObject({ level: 'error', code: 'INTERRUPTED' });
  });

  it('a RUN writing a big file is not silent while its layer is written: progress lines name the compression (CI log)', async () => {
    // random data: gzip cannot shrink it, so writing the layer takes a while even on a fast machine
    const ctx = await ws.context('big', { Dockerfile: `FROM ${base}\nRUN head -c 100000000 /dev/urandom > /big\n` });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--no-push', '--log-format', 'json'], { env: { BUILDER_PROGRESS_INTERVAL_MS: '100' } });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; progress?: Array<{ phase: string; id: string; bytes: number; total?: number }> });
    const compress = lines.flatMap((l) => l.progress ?? []).filter((p) => p.phase === 'compress');
    expect(compress.length, r.stderr).toBeGreaterThan(0);
    expect(compress[0]).toMatchObject({ id: '[1/1]', total: 100_000_000 });
    // the text form of the same line
    expect(lines.find((l) => l.progress?.some((p) => p.phase === 'compress'))!.msg).toMatch(/compress \[1\/1\] \d+(\.\d)? MiB\/95 MiB \(\d+%\)/);
  });

  it('on a terminal (a pseudo-terminal from script(1)): a live progress line is drawn while the layer is written, then erased', async () => {
    const ctx = await ws.context('tty', { Dockerfile: `FROM ${base}\nRUN head -c 100000000 /dev/urandom > /big\n` });
    const argv = ['node', path.join(ROOT, 'bin/builder'), '--context', ctx, '--cache-dir', ws.path('cache'), '--work-dir', ws.path('work'), '--run-mode', 'sandbox', '--no-push'];
    const r = await run('script', ['-qfec', argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' '), '/dev/null'], { cwd: ws.dir, env: { ...ws.env, TERM: 'xterm' }, timeoutMs: 110_000 });
    expect(r.stdout).toContain('\x1b[1A\x1b[2K');
    expect(r.stdout).toMatch(/\ncompress \[1\/1\] \d+(\.\d)? MiB\/95 MiB \(\d+%\)\r?\n/);
    const shown = screen(r.stdout);
    // nothing of the live block is left: the log reads as it would without it, the digest last
    expect(shown.filter((l) => !l.startsWith('builder: '))).toEqual([expect.stringMatching(/^sha256:[0-9a-f]{64}$/)]);
    expect(shown.at(-2)).toMatch(/^builder: done in /);
  });

  it('text: the summary line ends the log with digest, layers built, bytes and time per phase', async () => {
    const ctx = await ws.context('text', { Dockerfile: `FROM ${base}\nRUN echo x > /x\n` });
    const r = await ws.build(ctx, ['--run-mode', 'sandbox', '--destination', `${reg.host}/test/events:text`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(new RegExp(
      `^builder: done in [0-9.]+s: ${r.stdout.trim()}, \\d+ layers \\(1 built, 0 from the cache\\), [0-9.]+ (B|KiB|MiB); down [0-9.]+ (B|KiB|MiB), up [0-9.]+ (B|KiB|MiB); `
      + `pull [0-9.]+s, steps [0-9.]+s, snapshot [0-9.]+s, push [0-9.]+s; pushed to ${reg.host}/test/events:text$`,
    ));
    // the default text log is unchanged: the step line, no step-finished line (that one is debug)
    expect(r.stderr).toContain('builder: [1/1] RUN /bin/sh -c echo x > /x\n');
    expect(r.stderr).not.toMatch(/finished in/);
  });

  it('the summary counts a rebuild\'s layers as from the cache, not built', async () => {
    const ctx = await ws.context('cached', { Dockerfile: `FROM ${base}\nRUN echo cached > /c\n` });
    const args = ['--run-mode', 'sandbox', '--cache', '--destination', `${reg.host}/test/events-cache:v1`];
    const first = await ws.build(ctx, args);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/layers \(1 built, 0 from the cache\)/);
    const again = await ws.build(ctx, args);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/layers \(0 built, 1 from the cache\)/);
  });

  it('--ignore-var-run: a RUN writing under /var/run leaves it out of the layer by default, and keeps it with --ignore-var-run=false', async () => {
    const ctx = await ws.context('varrun', { Dockerfile: `FROM ${base}\nRUN rm -rf /var/run && mkdir -p /var/run/app && echo 1 > /var/run/app/pid && echo kept > /kept\n` });
    await ws.buildOk(ctx, ['--run-mode', 'sandbox', '--destination', `${reg.host}/test/varrun:default`]);
    await ws.buildOk(ctx, ['--run-mode', 'sandbox', '--ignore-var-run=false', '--destination', `${reg.host}/test/varrun:kept`]);
    const exists = (root: string, rel: string): Promise<boolean> => lstat(path.join(root, rel)).then(() => true, () => false);
    const dflt = await ws.unpack(reg, 'test/varrun:default', 'varrun-default');
    const kept = await ws.unpack(reg, 'test/varrun:kept', 'varrun-kept');
    expect(await exists(dflt, 'kept')).toBe(true);
    expect(await exists(dflt, 'var/run/app/pid')).toBe(false);
    expect(await exists(kept, 'var/run/app/pid')).toBe(true);
  });
});
