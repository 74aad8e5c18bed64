// WORKDIR: the config change is applyMetadata's; a missing directory is created owned by the current USER (moby/buildkit#1002).
import { isBuilderError } from '../../errors.js';
import { entriesForPaths } from '../../snapshot/index.js';
import { EMPTY, type StepContext, type StepHandler } from '../stage-state.js';
import { chownFor } from './user.js';
import type { ExpandedInstruction } from '../../dockerfile/index.js';

type Workdir = Extract<ExpandedInstruction, { kind: 'workdir' }>;

export const workdirStep: StepHandler<Workdir> = {
  /** WORKDIR / never reads the root. */
  needsRoot: ({ stage }) => (stage.cfg.config.WorkingDir ?? '/') !== '/',

  async execute({ stage, step }: StepContext<Workdir>) {
    const dir = stage.cfg.config.WorkingDir ?? '/';
    const rootfs = dir === '/' ? undefined : await stage.fs();
    if (!rootfs || (await rootfs.exists(dir))) return EMPTY;
    // BuildKit's mkdir takes the USER as a chown (llb.WithUser): a bare uid is uid:uid, passwd entry or not; a name
    // BuildKit cannot find leaves 0:0 (its readUser), where RUN would fail later anyway.
    const user = stage.cfg.config.User;
    const owner = !user ? { uid: 0, gid: 0 } : await chownFor(rootfs, user, step.where).catch((err: unknown) => {
      if (isBuilderError(err, ['COPY_CHOWN_UNKNOWN_USER', 'COPY_CHOWN_UNKNOWN_GROUP'])) return { uid: 0, gid: 0 };
      throw err;
    });
    const made = await rootfs.mkdirAll(dir, { uid: owner.uid, gid: owner.gid, mode: 0o755 });
    const entries = await entriesForPaths(rootfs.root, [made.container], { recursive: false });
    stage.root.noteWritten(entries);
    return stage.layerOf(entries, step);
  },
};
