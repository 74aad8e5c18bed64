// How the run mode is chosen: table-driven over the three probes (no build runs, nothing touches "/").
import { describe, expect, it } from 'vitest';
import { chooseRunMode, startRunMode } from '../../src/executor/build.js';
import type { RunModeOption } from '../../src/executor/index.js';

const cases: Array<{ asked: RunModeOption; sandbox: boolean; container: boolean; image?: boolean; force?: boolean; want: string }> = [
  { asked: 'auto', sandbox: true, container: false, want: 'sandbox' },
  { asked: 'auto', sandbox: true, container: true, image: true, want: 'sandbox' },
  { asked: 'auto', sandbox: false, container: true, image: true, want: 'in-place' },
  // a host that merely looks like a container is never wiped on a guess
  { asked: 'auto', sandbox: false, container: true, want: 'RUN_SANDBOX_UNAVAILABLE' },
  { asked: 'auto', sandbox: false, container: false, want: 'RUN_SANDBOX_UNAVAILABLE' },
  { asked: 'auto', sandbox: false, container: false, force: true, want: 'RUN_SANDBOX_UNAVAILABLE' },
  { asked: 'sandbox', sandbox: false, container: true, want: 'RUN_SANDBOX_UNAVAILABLE' },
  { asked: 'sandbox', sandbox: true, container: true, want: 'sandbox' },
  { asked: 'in-place', sandbox: true, container: false, want: 'RUN_IN_PLACE_REFUSED' },
  { asked: 'in-place', sandbox: true, container: true, want: 'in-place' },
  { asked: 'in-place', sandbox: true, container: false, force: true, want: 'in-place' },
];

describe('chooseRunMode', () => {
  for (const c of cases) {
    it(`${c.asked}, sandbox ${c.sandbox ? 'ok' : 'unavailable'}, ${c.container ? 'in' : 'not in'} a container${c.image ? ' (the executor image)' : ''}${c.force ? ', --force' : ''} -> ${c.want}`, async () => {
      const logs: string[] = [];
      const p = chooseRunMode(
        { runMode: c.asked, force: c.force === true, env: {}, emit: (e) => { if (e.type === 'message') logs.push(e.msg); } },
        {
          sandbox: async () => (c.sandbox ? { ok: true } : { ok: false, reason: 'unshare: Operation not permitted' }),
          container: async () => c.container,
          executorImage: async () => c.image === true,
        },
      );
      if (c.want.startsWith('RUN_')) {
        await expect(p).rejects.toMatchObject({ code: c.want });
      } else {
        await expect(p).resolves.toBe(c.want);
        // falling back from the sandbox is said out loud, with the reason
        if (c.asked === 'auto' && !c.sandbox) expect(logs.join('\n')).toMatch(/Operation not permitted.*in place/);
      }
    });
  }
});

describe('startRunMode', () => {
  const outside = { container: async () => true, executorImage: async () => false };
  for (const asked of ['sandbox', 'auto'] as const) {
    it(`--run-mode ${asked} outside the executor image: the mode without probing; verify probes once and fails with the same error`, async () => {
      let probes = 0;
      const choice = await startRunMode({ runMode: asked, force: false, env: {}, emit: () => undefined }, {
        ...outside, sandbox: async () => { probes++; return { ok: false, reason: 'unshare: Operation not permitted' }; },
      });
      expect(choice.mode).toBe('sandbox');
      expect(probes).toBe(0);
      const chosen = chooseRunMode({ runMode: asked, force: false, env: {}, emit: () => undefined }, { ...outside, sandbox: async () => ({ ok: false, reason: 'unshare: Operation not permitted' }) });
      const wanted = await chosen.catch((e: unknown) => e as Error);
      await expect(choice.verify!()).rejects.toMatchObject({ code: 'RUN_SANDBOX_UNAVAILABLE', message: (wanted as Error).message });
      expect(probes).toBe(1);
    });
  }

  it('auto in the executor image probes first: its answer picks the mode, nothing is left to verify', async () => {
    const choice = await startRunMode({ runMode: 'auto', force: false, env: {}, emit: () => undefined }, {
      ...outside, executorImage: async () => true, sandbox: async () => ({ ok: false, reason: 'no namespaces' }),
    });
    expect(choice.mode).toBe('in-place');
    expect(choice.verify).toBeUndefined();
  });
});
