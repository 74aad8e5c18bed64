// How the run mode is chosen: table-driven over the three probes (no build runs, nothing touches "/").
import { describe, expect, it } from 'vitest';
import { chooseRunMode } from '../../src/executor/build.js';
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
