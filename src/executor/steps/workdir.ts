// WORKDIR: the config change is applyMetadata's; a missing directory is created owned by the current USER (moby/buildkit#1002).
import { entriesForPaths } from '../../snapshot/index.js';
import type { StepContext, StepHandler } from './index.js';
import { userFor } from './user.js';
import type { ExpandedInstruction } from '../../dockerfile/index.js';

type Workdir = Extract<ExpandedInstruction, { kind: 'workdir' }>;

export const workdirStep: StepHandler<Workdir> = {
  async execute({ stage, step }: StepContext<Workdir>) {
    const dir = stage.cfg.config.WorkingDir ?? '/';
    const rootfs = dir === '/' ? undefined : await stage.fs();
    if (!rootfs || (await rootfs.exists(dir))) {
      stage.emptyHistory(step);
      return;
    }
    const owner = await userFor(rootfs, stage.cfg.config.User, step.where);
    const made = await rootfs.mkdirAll(dir, { uid: owner.uid, gid: owner.gid, mode: 0o755 });
    const entries = await entriesForPaths(rootfs.root, [made.container], { recursive: false });
    stage.root.noteWritten(entries);
    await stage.addLayer(entries, step);
  },
};
