// The set-up most end-to-end test files share: a real registry, a scratch workspace, busybox (or another base) pushed.
import { afterAll, beforeAll } from 'vitest';
import { compileIfStale, Workspace } from '../executor/helpers.js';
import { pushBusybox } from './images.js';
import { startRegistry, type StartRegistryOptions, type TestRegistry } from './registry.js';

export interface FixtureOptions {
  /** Registry flavour (default plain HTTP); each fixture starts its own, so files never share one. */
  registry?: StartRegistryOptions;
  /** Prefix of the workspace's temp dir (names it in /tmp when a test leaves it behind). */
  prefix?: string;
  /** Extra environment for the CLI processes the workspace runs. */
  env?: NodeJS.ProcessEnv;
  /** Where busybox is pushed: repository, tag and media types (default library/busybox:latest, v2s2). */
  repo?: string;
  tag?: string;
  format?: 'v2s2' | 'oci';
  /** Pushes another base instead of busybox (returns its reference), or null: nothing is pushed, `base` is ''. */
  push?: ((reg: TestRegistry) => Promise<string>) | null;
}

export interface Fixture {
  reg: TestRegistry;
  ws: Workspace;
  /** The pushed base as "HOST/repo:tag", ready for FROM ('' when `push` is null). */
  base: string;
  stop(): Promise<void>;
}

/** Starts the registry and the workspace (and compiles a stale CLI) at once, then pushes the base. */
export async function startFixture(o: FixtureOptions = {}): Promise<Fixture> {
  const [reg, ws] = await Promise.all([
    startRegistry({ mode: 'plain', ...o.registry }),
    Workspace.create(o.prefix, o.env),
    compileIfStale(),
  ]);
  const stop = async (): Promise<void> => {
    await reg.stop();
    await ws.remove();
  };
  try {
    const base = o.push === null ? '' : o.push ? await o.push(reg) : await pushBusybox(reg, o.repo ?? 'library/busybox', o.tag ?? 'latest', o.format ?? 'v2s2');
    return { reg, ws, base, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Starts a fixture before the tests of the calling describe and stops it after them; `ready` hands it to the
 * file's variables. Later beforeAll hooks see it; later afterAll hooks run before it stops (vitest's stack order).
 */
export function useFixture(o: FixtureOptions, ready: (f: Fixture) => void): void {
  let fixture: Fixture | undefined;
  beforeAll(async () => {
    fixture = await startFixture(o);
    ready(fixture);
  });
  afterAll(async () => {
    await fixture?.stop();
  });
}
