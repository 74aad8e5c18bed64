// Issue 11 item 6: a layer is extracted only when its media type is a filesystem layer and its content is what the config's diff_id says.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MediaType } from '../../src/image/index.js';
import { extractLayer, RootFs, type ExtractOptions } from '../../src/rootfs/index.js';
import { gz, makeTar, streamOf } from './tar-helpers.js';

let root: string;

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'builder-layer-checks-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function extract(blob: Buffer, opts: ExtractOptions): Promise<unknown> {
  return extractLayer(new RootFs(root), streamOf(blob), { layer: 'sha256:' + 'cd'.repeat(32), ...opts }).catch((e: unknown) => e);
}

describe('layer diff_id', () => {
  it('content whose uncompressed sha256 is not the config diff_id fails with ROOTFS_LAYER_DIFF_ID_MISMATCH naming both digests', async () => {
    const tar = await makeTar([{ name: 'f', content: 'real' }]);
    const claimed = sha(await makeTar([{ name: 'f', content: 'claimed' }]));
    const err = await extract(gz(tar), { mediaType: MediaType.DockerLayerGzip, expectedDiffId: claimed });
    expect(err).toMatchObject({ code: 'ROOTFS_LAYER_DIFF_ID_MISMATCH' });
    expect((err as Error).message).toContain(claimed);
    expect((err as Error).message).toContain(sha(tar));
    expect((err as Error).message).toContain('cd'.repeat(32));
  });

  it('the diff_id covers the bytes after the end-of-archive marker too (an appended payload is a mismatch)', async () => {
    const tar = await makeTar([{ name: 'f', content: 'x' }]);
    const err = await extract(Buffer.concat([tar, Buffer.alloc(512, 0x41)]), { mediaType: MediaType.OciLayer, expectedDiffId: sha(tar) });
    expect(err).toMatchObject({ code: 'ROOTFS_LAYER_DIFF_ID_MISMATCH' });
  });

  it('gzip and plain layers whose diff_id matches extract', async () => {
    const tar = await makeTar([{ name: 'f', content: 'ok' }]);
    expect(await extract(gz(tar), { mediaType: MediaType.OciLayerGzip, expectedDiffId: sha(tar) })).toMatchObject({ entries: 1 });
    expect(await extract(tar, { mediaType: MediaType.OciLayer, expectedDiffId: sha(tar) })).toMatchObject({ entries: 1 });
    expect(readFileSync(path.join(root, 'f'), 'utf8')).toBe('ok');
  });
});

describe('layer media type', () => {
  it('an artifact or encrypted layer media type is refused before anything is written', async () => {
    const tar = await makeTar([{ name: 'f', content: 'x' }]);
    for (const mt of ['application/vnd.cncf.helm.chart.content.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+gzip+encrypted', 'text/html', '']) {
      const err = await extract(gz(tar), { mediaType: mt });
      expect(err, mt).toMatchObject({ code: 'ROOTFS_LAYER_MEDIA_TYPE_UNSUPPORTED' });
      expect((err as Error).message).toContain(`"${mt}"`);
    }
    expect(existsSync(path.join(root, 'f'))).toBe(false);
  });

  it('foreign and non-distributable layers (Docker and OCI) are filesystem layers and extract', async () => {
    const tar = await makeTar([{ name: 'f', content: 'x' }]);
    for (const mt of [MediaType.DockerForeignLayerGzip, MediaType.OciNondistributableLayerGzip, MediaType.DockerLayer, MediaType.OciNondistributableLayer]) {
      const body = mt.endsWith('gzip') ? gz(tar) : tar;
      expect(await extract(body, { mediaType: mt, expectedDiffId: sha(tar) }), mt).toMatchObject({ entries: 1 });
    }
  });

  it('a gzip media type on plain tar bytes extracts by the bytes (as docker and containerd do) with a warning', async () => {
    const tar = await makeTar([{ name: 'f', content: 'x' }]);
    const warnings: string[] = [];
    const r = await extract(tar, { mediaType: MediaType.DockerLayerGzip, expectedDiffId: sha(tar), emit: (e) => { if (e.type === 'warning') warnings.push(e.msg); } });
    expect(r).toMatchObject({ entries: 1 });
    expect(warnings.join('\n')).toMatch(/says gzip but the data is uncompressed/);
  });
});
