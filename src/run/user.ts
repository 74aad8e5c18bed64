// Owns USER resolution: "name|uid[:group|gid]" -> uid, gid, supplementary groups, home, via the root's /etc/passwd and /etc/group.

import { BuilderError } from '../errors.js';

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Supplementary groups (from /etc/group membership), primary gid excluded, file order, no duplicates. */
  groups: number[];
  home: string;
}

export interface UserSpec {
  user: string;
  group?: string;
}

const MAX_ID = 0xfffffffe; // (uid_t)-1 is reserved: "no change" for setresuid.

/** A decimal id, or undefined when `s` is not all digits (so "1e3" or "0x10" are names). */
export function parseId(s: string): number | undefined {
  if (!/^[0-9]+$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) && n <= MAX_ID ? n : Number.NaN;
}

/** Parses /etc/passwd text; comments, blank and malformed lines are skipped (as libc does). */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 4) continue;
    const [name, , uidS, gidS, , home, shell] = f;
    const uid = parseId(uidS ?? '');
    const gid = parseId(gidS ?? '');
    if (!name || uid === undefined || gid === undefined || Number.isNaN(uid) || Number.isNaN(gid)) continue;
    out.push({ name, uid, gid, home: home || '/', shell: shell ?? '' });
  }
  return out;
}

/** Parses /etc/group text; the member list is comma separated and may be empty. */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 3) continue;
    const [name, , gidS, members] = f;
    const gid = parseId(gidS ?? '');
    if (!name || gid === undefined || Number.isNaN(gid)) continue;
    out.push({ name, gid, members: (members ?? '').split(',').map((m) => m.trim()).filter((m) => m !== '') });
  }
  return out;
}

/** Splits "user[:group]"; throws RUN_USER_INVALID on an empty user or group part. */
export function parseUserSpec(spec: string): UserSpec {
  const s = spec.trim();
  const i = s.indexOf(':');
  const user = i < 0 ? s : s.slice(0, i);
  const group = i < 0 ? undefined : s.slice(i + 1);
  if (user === '' || group === '' || (group !== undefined && group.includes(':'))) {
    throw new BuilderError('RUN_USER_INVALID', `invalid USER "${spec}"`, {
      hint: 'Write USER as name, uid, name:group or uid:gid.',
    });
  }
  return group === undefined ? { user } : { user, group };
}

function checkId(s: string, what: string, spec: string): number | undefined {
  const n = parseId(s);
  if (Number.isNaN(n)) {
    throw new BuilderError('RUN_USER_INVALID', `${what} ${s} in USER "${spec}" is out of range`, {
      hint: `Use a ${what} between 0 and ${MAX_ID}.`,
    });
  }
  return n;
}

/** Pure resolution against already-parsed tables (the testable core of resolveUser). */
export function resolveUserFromTables(passwd: PasswdEntry[], groups: GroupEntry[], spec: string): ResolvedUser {
  const parsed = parseUserSpec(spec);
  const numericUid = checkId(parsed.user, 'uid', spec);
  const entry =
    numericUid === undefined
      ? passwd.find((p) => p.name === parsed.user)
      : passwd.find((p) => p.uid === numericUid);

  let uid: number;
  let gid: number;
  let home: string;
  if (entry) {
    ({ uid, gid, home } = entry);
  } else if (numericUid !== undefined) {
    // An unknown numeric uid is legal in Docker: gid 0 and home "/" unless a group is given.
    uid = numericUid;
    gid = 0;
    home = '/';
  } else if (parsed.user === 'root') {
    // scratch-like roots have no /etc/passwd, yet "USER root" must still work.
    uid = 0;
    gid = 0;
    home = '/root';
  } else {
    throw new BuilderError('RUN_USER_UNKNOWN', `user "${parsed.user}" (USER ${spec}) is not in the root's /etc/passwd`, {
      hint: 'Create the user in an earlier RUN (e.g. adduser/useradd), or use a numeric uid[:gid].',
    });
  }

  if (parsed.group !== undefined) {
    const numericGid = checkId(parsed.group, 'gid', spec);
    if (numericGid !== undefined) {
      gid = numericGid;
    } else {
      const g = groups.find((x) => x.name === parsed.group);
      if (!g) {
        throw new BuilderError('RUN_GROUP_UNKNOWN', `group "${parsed.group}" (USER ${spec}) is not in the root's /etc/group`, {
          hint: 'Create the group in an earlier RUN (e.g. addgroup/groupadd), or use a numeric gid.',
        });
      }
      gid = g.gid;
    }
    // An explicit group replaces membership-derived groups, as Docker/runc do.
    return { uid, gid, groups: [], home };
  }

  const sup: number[] = [];
  const name = entry?.name ?? (parsed.user === 'root' ? 'root' : undefined);
  if (name !== undefined) {
    for (const g of groups) {
      if (g.gid !== gid && g.members.includes(name) && !sup.includes(g.gid)) sup.push(g.gid);
    }
  }
  return { uid, gid, groups: sup, home };
}

/**
 * Resolves a USER spec through the build root's /etc/passwd and /etc/group.
 * `rootReadFile` reads a container path ("/etc/passwd") inside the root, undefined when missing.
 */
export async function resolveUser(
  rootReadFile: (containerPath: string) => Promise<string | undefined>,
  spec: string,
): Promise<ResolvedUser> {
  const [passwdText, groupText] = await Promise.all([rootReadFile('/etc/passwd'), rootReadFile('/etc/group')]);
  return resolveUserFromTables(parsePasswd(passwdText ?? ''), parseGroup(groupText ?? ''), spec);
}
