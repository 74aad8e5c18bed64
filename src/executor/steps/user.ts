// USER / --chown resolution against the stage root's /etc/passwd and /etc/group.
import type { RootFs } from '../../rootfs/index.js';
import { resolveUser, type RunUser } from '../../run/index.js';
import { at } from '../where.js';

export async function userFor(rootfs: RootFs, spec: string | undefined, where: string): Promise<RunUser> {
  if (!spec) return { uid: 0, gid: 0, groups: [], home: '/root' };
  const read = async (p: string): Promise<string | undefined> => {
    try {
      return (await rootfs.readFile(p)).toString('utf8');
    } catch {
      return undefined;
    }
  };
  return resolveUser(read, spec).catch(at(where));
}
