// Package databases as found in an image's files, parsed into packages (pure: bytes in, packages out).

export type PackageType = 'deb' | 'apk' | 'npm' | 'pypi' | 'golang';

export interface FoundPackage {
  type: PackageType;
  name: string;
  version: string;
  purl: string;
}

/** What a file is to the SBOM scan, by its path in the image (no leading "/"). */
export type FileKind = 'dpkg-status' | 'dpkg-status-d' | 'apk-installed' | 'npm-lock' | 'npm-package' | 'python-metadata' | 'os-release' | 'rpm-db';

export function classify(p: string): FileKind | undefined {
  if (p === 'var/lib/dpkg/status') return 'dpkg-status';
  if (/^var\/lib\/dpkg\/status\.d\/[^/]+$/.test(p) && !p.endsWith('.md5sums')) return 'dpkg-status-d';
  if (p === 'lib/apk/db/installed') return 'apk-installed';
  if (p === 'etc/os-release' || p === 'usr/lib/os-release') return 'os-release';
  if (/^(usr\/lib\/sysimage\/rpm|var\/lib\/rpm)\/(Packages|Packages\.db|rpmdb\.sqlite)$/.test(p)) return 'rpm-db';
  if (/(^|\/)node_modules\/(@[^/]+\/)?[^/@.][^/]*\/package\.json$/.test(p)) return 'npm-package';
  if (/(^|\/)(package-lock|npm-shrinkwrap)\.json$/.test(p) && !/(^|\/)node_modules\//.test(p)) return 'npm-lock';
  if (/\.dist-info\/METADATA$/.test(p) || /\.egg-info(\/PKG-INFO)?$/.test(p)) return 'python-metadata';
  return undefined;
}

/** purl segments: percent-encoded except the unreserved characters (the purl spec). */
const enc = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function paragraphs(text: string): Map<string, string>[] {
  const out: Map<string, string>[] = [];
  for (const para of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last: string | undefined;
    for (const line of para.split('\n')) {
      if (/^[ \t]/.test(line) && last) continue; // continuation lines (Description, Conffiles) are not needed
      const i = line.indexOf(':');
      if (i <= 0) continue;
      last = line.slice(0, i);
      if (!fields.has(last)) fields.set(last, line.slice(i + 1).trim());
    }
    if (fields.size > 0) out.push(fields);
  }
  return out;
}

/** dpkg's status file (or a status.d entry): installed packages only ("install ok installed"; removed/config-files left out). */
export function parseDpkgStatus(text: string, distro = 'debian'): FoundPackage[] {
  const out: FoundPackage[] = [];
  for (const f of paragraphs(text)) {
    const name = f.get('Package');
    const version = f.get('Version');
    // status.d (distroless) entries carry no Status field: present means installed
    const status = f.get('Status');
    if (!name || !version || (status !== undefined && status.split(/\s+/)[2] !== 'installed')) continue;
    const arch = f.get('Architecture');
    out.push({ type: 'deb', name, version, purl: `pkg:deb/${enc(distro)}/${enc(name)}@${enc(version)}${arch ? `?arch=${enc(arch)}` : ''}` });
  }
  return out;
}

/** Alpine's /lib/apk/db/installed (P: name, V: version, A: arch). */
export function parseApkInstalled(text: string, distro = 'alpine'): FoundPackage[] {
  return paragraphs(text).flatMap((f) => {
    const name = f.get('P');
    const version = f.get('V');
    const arch = f.get('A');
    return name && version ? [{ type: 'apk' as const, name, version, purl: `pkg:apk/${enc(distro)}/${enc(name)}@${enc(version)}${arch ? `?arch=${enc(arch)}` : ''}` }] : [];
  });
}

/** ID= of an os-release file (the purl namespace of deb/apk packages). */
export function parseOsReleaseId(text: string): string | undefined {
  const m = /^ID=["']?([^"'\n]+)["']?$/m.exec(text);
  return m?.[1];
}

function npm(name: string, version: string): FoundPackage {
  const purlName = name.startsWith('@') ? `${enc(name.slice(0, name.indexOf('/')))}/${enc(name.slice(name.indexOf('/') + 1))}` : enc(name);
  return { type: 'npm', name, version, purl: `pkg:npm/${purlName}@${enc(version)}` };
}

type LockV1Deps = Record<string, { version?: string; dependencies?: LockV1Deps; bundled?: boolean }>;

/** package-lock.json / npm-shrinkwrap.json, lockfileVersion 1 (nested "dependencies"), 2 and 3 ("packages"). */
export function parseNpmLock(text: string): FoundPackage[] {
  let j: { packages?: Record<string, { version?: string; link?: boolean; name?: string }>; dependencies?: LockV1Deps };
  try {
    j = JSON.parse(text) as typeof j;
  } catch {
    return [];
  }
  const out: FoundPackage[] = [];
  if (j.packages && typeof j.packages === 'object') {
    for (const [key, p] of Object.entries(j.packages)) {
      const i = key.lastIndexOf('node_modules/');
      if (key === '' || i < 0 || p.link || typeof p.version !== 'string') continue;
      out.push(npm(p.name ?? key.slice(i + 'node_modules/'.length), p.version));
    }
    return out;
  }
  const walk = (deps: LockV1Deps | undefined): void => {
    for (const [name, d] of Object.entries(deps ?? {})) {
      if (typeof d.version === 'string' && !/^(file|link):/.test(d.version)) out.push(npm(name, d.version));
      walk(d.dependencies);
    }
  };
  walk(j.dependencies);
  return out;
}

/** node_modules/<name>/package.json. */
export function parseNpmPackageJson(text: string): FoundPackage[] {
  try {
    const j = JSON.parse(text) as { name?: unknown; version?: unknown };
    return typeof j.name === 'string' && typeof j.version === 'string' ? [npm(j.name, j.version)] : [];
  } catch {
    return [];
  }
}

/** *.dist-info/METADATA or *.egg-info(/PKG-INFO): the Name and Version headers. */
export function parsePythonMetadata(text: string): FoundPackage[] {
  const head = text.split(/\r?\n\r?\n/)[0] ?? '';
  const name = /^Name:\s*(.+)$/m.exec(head)?.[1]?.trim();
  const version = /^Version:\s*(.+)$/m.exec(head)?.[1]?.trim();
  if (!name || !version) return [];
  return [{ type: 'pypi', name, version, purl: `pkg:pypi/${enc(name.toLowerCase().replace(/[-_.]+/g, '-'))}@${enc(version)}` }];
}

/** The Go build info magic that starts the .go.buildinfo section (cmd/go/internal/version, debug/buildinfo). */
export const GO_BUILDINFO_MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');

function uvarint(b: Buffer, at: number): [number, number] {
  let x = 0;
  let s = 0;
  for (let i = at; i < b.length && i < at + 10; i++) {
    const c = b[i]!;
    x += (c & 0x7f) * 2 ** s;
    if (c < 0x80) return [x, i + 1];
    s += 7;
  }
  return [-1, at];
}

/**
 * Modules from Go build info (32 bytes from the magic on: Go >= 1.18 inline strings, flag bit 2). `section` starts at
 * the magic. Returns undefined for the older pointer format (Go < 1.18), which needs the binary's sections.
 */
export function parseGoBuildInfo(section: Buffer): FoundPackage[] | undefined {
  if (section.length < 33 || !section.subarray(0, 14).equals(GO_BUILDINFO_MAGIC) || (section[15]! & 2) === 0) return undefined;
  let [n, at] = uvarint(section, 32);
  if (n < 0 || at + n > section.length) return undefined;
  const goVersion = section.subarray(at, at + n).toString('utf8');
  at += n;
  [n, at] = uvarint(section, at);
  if (n < 0 || at + n > section.length) return undefined;
  let mod = section.subarray(at, at + n).toString('latin1');
  // modinfo is wrapped in 16-byte sentinels
  if (mod.length >= 33 && mod[mod.length - 17] === '\n') mod = mod.slice(16, -16);
  const out: FoundPackage[] = [];
  if (/^go[0-9]/.test(goVersion)) out.push({ type: 'golang', name: 'stdlib', version: goVersion, purl: `pkg:golang/stdlib@${enc(goVersion)}` });
  for (const line of mod.split('\n')) {
    const [kind, path, version] = line.split('\t');
    if ((kind === 'mod' || kind === 'dep') && path && version && version !== '(devel)') {
      out.push({ type: 'golang', name: path, version, purl: `pkg:golang/${path.split('/').map(enc).join('/')}@${enc(version)}` });
    }
  }
  return out;
}
