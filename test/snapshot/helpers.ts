// Test helpers for src/snapshot: temp trees, the system tar CLI, and a tiny OCI layout for umoci.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';

export function tempDir(prefix = 'snap-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function sha256File(p: string): string {
  return `sha256:${createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`;
}

export function sha256Gunzipped(p: string): string {
  return `sha256:${createHash('sha256').update(gunzipSync(fs.readFileSync(p))).digest('hex')}`;
}

/** `tar -tvf` lines, numeric owners, without the date columns (they vary with the TZ). */
export function tarListing(file: string): string[] {
  const out = execFileSync('tar', ['--numeric-owner', '-tvf', file], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
  return out.split('\n').filter((l) => l !== '');
}

/** Names only, in archive order. */
export function tarNames(file: string): string[] {
  return execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).split('\n').filter((l) => l !== '');
}

export function tarExtract(file: string, dest: string): void {
  execFileSync('tar', ['--numeric-owner', '--same-owner', '-xpf', file, '-C', dest]);
}

/** path -> "type mode uid:gid size [target|sha]" for every entry under dir (root excluded). */
export function describeTree(dir: string, skip: (rel: string) => boolean = () => false): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      if (skip(r)) continue;
      const p = path.join(dir, r);
      const st = fs.lstatSync(p);
      const mode = (st.mode & 0o7777).toString(8);
      const own = `${st.uid}:${st.gid}`;
      if (st.isDirectory()) {
        out.set(r, `dir ${mode} ${own}`);
        visit(r);
      } else if (st.isSymbolicLink()) {
        out.set(r, `link ${own} -> ${fs.readlinkSync(p)}`);
      } else if (st.isFile()) {
        out.set(r, `file ${mode} ${own} ${st.size} ${createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16)}`);
      } else {
        out.set(r, `other ${mode} ${own} ${st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? `chr ${st.rdev}` : 'x'}`);
      }
    }
  };
  visit('');
  return out;
}

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Writes an OCI layout at `dir` whose image (tag "t") is the given gzip layers, for `umoci unpack`. */
export function writeOciLayout(dir: string, layers: Array<{ file: string; digest: string; diffId: string; size: number }>): void {
  const blobs = path.join(dir, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const put = (data: Buffer): { digest: string; size: number } => {
    const hex = createHash('sha256').update(data).digest('hex');
    fs.writeFileSync(path.join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  for (const l of layers) fs.copyFileSync(l.file, path.join(blobs, l.digest.slice(7)));
  const config = put(Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', config: {},
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  })));
  const manifest = put(Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size })),
  })));
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 't' } }],
  }));
}
