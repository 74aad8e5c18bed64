// VerifyingStream: typed failures, and failures while nobody reads yet stay with the stream instead of killing the process.
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect, it } from 'vitest';
import { BuilderError } from '../../src/errors.js';
import { sha256, verified } from '../../src/digest/index.js';

async function drain(s: Readable): Promise<unknown> {
  try {
    for await (const _ of s) {
      // consume
    }
    return undefined;
  } catch (err) {
    return err;
  }
}

it('a source that fails before the consumer attaches: no unhandled error event, the consumer gets the typed error', async () => {
  const data = Buffer.from('hello world');
  const src = new Readable({ read() {} });
  const v = verified(src, sha256(data), data.length, 'blob x', (err) => new BuilderError('TEST_TYPED', `typed: ${(err as Error).message}`));
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown): void => void uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  try {
    src.push(data.subarray(0, 3));
    src.destroy(new Error('ECONNRESET'));
    await sleep(20); // the error has been emitted by now; without a listener node throws it at the process
  } finally {
    process.off('uncaughtException', onUncaught);
  }
  expect(uncaught).toEqual([]);
  const err = await drain(v);
  expect(err).toBeInstanceOf(BuilderError);
  expect((err as BuilderError).code).toBe('TEST_TYPED');
});

it('a source that ends short or with other bytes fails typed (SIZE_MISMATCH / DIGEST_MISMATCH)', async () => {
  const data = Buffer.from('hello world');
  expect(((await drain(verified(Readable.from([data.subarray(0, 5)]), sha256(data), data.length, 'blob x'))) as BuilderError).code).toBe('SIZE_MISMATCH');
  expect(((await drain(verified(Readable.from([Buffer.from('HELLO WORLD')]), sha256(data), data.length, 'blob x'))) as BuilderError).code).toBe('DIGEST_MISMATCH');
  expect(((await drain(verified(Readable.from([data]), sha256(data), data.length, 'blob x'))))).toBeUndefined();
});

it('an untyped source failure becomes BLOB_READ_FAILED by default', async () => {
  const src = new Readable({ read() { this.destroy(new Error('EIO')); } });
  const err = await drain(verified(src, sha256('x'), 1, 'blob x'));
  expect((err as BuilderError).code).toBe('BLOB_READ_FAILED');
  expect((err as BuilderError).message).toContain('EIO');
});

it('a file layer whose file is gone fails its reader with BLOB_READ_FAILED instead of an unhandled error', async () => {
  const { fileLayer } = await import('../../src/image/index.js');
  const uncaught: unknown[] = [];
  const on = (e: unknown): void => void uncaught.push(e);
  process.on('uncaughtException', on);
  try {
    const l = fileLayer('/nonexistent/builder-test/layer.tar.gz', { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256('x'), size: 1 }, sha256('y'));
    const err = await drain(await l.open());
    expect((err as BuilderError).code).toBe('BLOB_READ_FAILED');
    expect((err as BuilderError).message).toContain('ENOENT');
  } finally {
    process.off('uncaughtException', on);
  }
  expect(uncaught).toEqual([]);
});
