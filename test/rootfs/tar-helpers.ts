// Test helpers: layer tars built in memory with tar-stream, plus raw PAX blocks for binary xattr values.
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';

export interface Ent {
  name: string;
  type?: tar.Headers['type'];
  content?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
}

/** A complete tar (with end marker) of the given entries. */
export async function makeTar(entries: Ent[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: Buffer) => chunks.push(c));
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    const body = e.content === undefined ? undefined : Buffer.from(e.content);
    const header: tar.Headers & { pax?: Record<string, string> } = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: e.mtime ?? new Date(1_600_000_000_000),
      linkname: e.linkname,
      devmajor: e.devmajor,
      devminor: e.devminor,
      size: type === 'file' ? (body?.length ?? 0) : 0,
    };
    if (e.pax) header.pax = e.pax;
    await new Promise<void>((resolve, reject) => {
      if (type === 'file') pack.entry(header, body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
      else pack.entry(header, (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A raw 'x' (PAX) header block with byte-exact values, to put in front of a tar-stream entry ('g': a global header). */
export function paxBlock(records: Array<[string, Buffer]>, flag: 'x' | 'g' = 'x'): Buffer {
  const recs: Buffer[] = [];
  for (const [k, v] of records) {
    const body = Buffer.concat([Buffer.from(` ${k}=`), v, Buffer.from('\n')]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    recs.push(Buffer.concat([Buffer.from(String(len)), body]));
  }
  return extBlock('PaxHeader', flag, Buffer.concat(recs));
}

/** A raw GNU 'L' (long name) header block: the next entry takes this name whatever its own header says. */
export function gnuLongNameBlock(name: string): Buffer {
  return extBlock('././@LongLink', 'L', Buffer.from(name + '\0'));
}

/** An extension header block (PAX or GNU) carrying data, padded to 512 bytes. */
function extBlock(name: string, flag: string, data: Buffer): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0);
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write(flag, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([h, data, pad]);
}

export function gz(b: Buffer): Buffer {
  return gzipSync(b);
}

/** A stream that hands the buffer over in small pieces, like a network body. */
export function streamOf(b: Buffer, piece = 7000): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < b.length; i += piece) parts.push(b.subarray(i, i + piece));
  return Readable.from(parts);
}
