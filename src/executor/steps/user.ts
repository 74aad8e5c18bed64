// USER / --chown resolution against the stage root's /etc/passwd and /etc/group.
import { BuilderError } from '../../errors.js';
import type { RootFs } from '../../rootfs/index.js';
import { parseGroup, parsePasswd, parseUserSpec, resolveUser, type RunUser } from '../../run/index.js';
import { at } from '../where.js';

async function readOrUndefined(rootfs: RootFs, p: string): Promise<string | undefined> {
  try {
    return (await rootfs.readFile(p)).toString('utf8');
  } catch {
    return undefined;
  }
}

const ROOT: RunUser = { uid: 0, gid: 0, groups: [], home: '/root' };

export async function userFor(rootfs: RootFs, spec: string | undefined, where: string): Promise<RunUser> {
  const read = (p: string): Promise<string | undefined> => readOrUndefined(rootfs, p);
  // The default user is root with its groups from /etc/group, as BuildKit (executor/oci GetUser resolves uid 0 through
  // /etc/passwd and /etc/group); tables that cannot be read leave plain 0:0 there too.
  if (!spec) return resolveUser(read, 'root').then((u) => (u.uid === 0 ? u : ROOT), () => ROOT);
  return resolveUser(read, spec).catch(at(where));
}

/** A decimal id (BuildKit's parseUID: "root" is 0 too), else undefined for a name. */
function chownId(s: string): number | undefined {
  if (s === 'root') return 0;
  return /^[0-9]+$/.test(s) && Number(s) <= 0xffffffff ? Number(s) : undefined;
}

/** True when --chown names a user or group (so resolving it reads the stage's /etc/passwd or /etc/group). */
export function chownNeedsRoot(spec: string): boolean {
  return spec.split(':').some((part) => chownId(part) === undefined);
}

/**
 * COPY/ADD --chown as BuildKit's readUser: a numeric user is uid=gid=N whether or not it exists; a user name takes its
 * uid and primary gid from /etc/passwd; a group (id or name from /etc/group) replaces the gid. Unknown names fail,
 * as Docker documents (BuildKit's code silently falls back to 0).
 */
export async function chownFor(rootfs: RootFs | undefined, spec: string, where: string): Promise<{ uid: number; gid: number }> {
  const parsed = (() => {
    try {
      return parseUserSpec(spec);
    } catch {
      throw new BuilderError('COPY_CHOWN_INVALID', `${where}: invalid --chown=${spec}`, { hint: 'write --chown as user, uid, user:group or uid:gid' });
    }
  })();
  let uid = chownId(parsed.user);
  let gid = uid;
  if (uid === undefined) {
    const passwd = parsePasswd((rootfs && (await readOrUndefined(rootfs, '/etc/passwd'))) ?? '');
    const entry = passwd.find((p) => p.name === parsed.user);
    if (!entry) {
      throw new BuilderError('COPY_CHOWN_UNKNOWN_USER', `${where}: --chown=${spec}: user "${parsed.user}" is not in the stage's /etc/passwd`, {
        hint: 'create the user in an earlier RUN, or give numeric ids (--chown=1000:1000 needs no passwd entry)',
      });
    }
    uid = entry.uid;
    gid = entry.gid;
  }
  if (parsed.group !== undefined) {
    const g = chownId(parsed.group);
    if (g !== undefined) gid = g;
    else {
      const groups = parseGroup((rootfs && (await readOrUndefined(rootfs, '/etc/group'))) ?? '');
      const entry = groups.find((x) => x.name === parsed.group);
      if (!entry) {
        throw new BuilderError('COPY_CHOWN_UNKNOWN_GROUP', `${where}: --chown=${spec}: group "${parsed.group}" is not in the stage's /etc/group`, {
          hint: 'create the group in an earlier RUN, or give a numeric gid',
        });
      }
      gid = entry.gid;
    }
  }
  return { uid, gid: gid! };
}
