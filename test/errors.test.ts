// BuilderError's code tables and relocation: a located error keeps its class and fields (a RegistryError its status).
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BuilderError, isBuilderError, locateError } from '../src/errors.js';
import { at } from '../src/executor/where.js';
import { RegistryError, retryKind } from '../src/registry/errors.js';

const SRC = path.resolve(import.meta.dirname, '../src');

describe('BuilderError', () => {
  it('at() puts the place in front once and keeps a RegistryError with its status and Retry-After', () => {
    const err = new RegistryError('REGISTRY_TOO_MANY_REQUESTS', 'pull x: rate limited (429)', { hint: 'wait', status: 429, retryAfterMs: 2000, exitCode: 3 });
    let out: unknown;
    try {
      at('Dockerfile:4')(err);
    } catch (e) {
      out = e;
    }
    expect(out).toBeInstanceOf(RegistryError);
    const r = out as RegistryError;
    expect(r.message).toBe('Dockerfile:4: pull x: rate limited (429)');
    expect([r.code, r.hint, r.exitCode, r.status, r.retryAfterMs, r.retry, r.cause]).toEqual(['REGISTRY_TOO_MANY_REQUESTS', 'wait', 3, 429, 2000, 'transient', err]);
    expect(retryKind(r)).toBe('transient');
    expect(r.stack).toContain('Dockerfile:4: pull x');
    // once: a message already starting with the place is thrown as it is
    expect(() => at('Dockerfile:4')(r)).toThrow(r);
  });

  it('locateError keeps the class and sets file and line; a plain BuilderError stays plain', () => {
    const reg = locateError(new RegistryError('REGISTRY_DENIED', 'push y was denied', { status: 403 }), 'Dockerfile', 7) as RegistryError;
    expect(reg).toBeInstanceOf(RegistryError);
    expect([reg.message, reg.file, reg.line, reg.status]).toEqual(['Dockerfile:7: push y was denied', 'Dockerfile', 7, 403]);
    const plain = locateError(new BuilderError('COPY_SOURCE_NOT_FOUND', 'no a.txt'), 'Dockerfile', 2) as BuilderError;
    expect(plain.constructor).toBe(BuilderError);
    expect([plain.message, plain.hint, plain.exitCode, plain.file, plain.line]).toEqual(['Dockerfile:2: no a.txt', undefined, 1, 'Dockerfile', 2]);
  });

  it('isBuilderError matches one code or any code of a table', () => {
    const e = new BuilderError('ROOTFS_STORE_FULL', 'full');
    expect(isBuilderError(e, ['ROOTFS_STORE_READ_FAILED', 'ROOTFS_STORE_FULL'])).toBe(true);
    expect(isBuilderError(e, ['ROOTFS_STORE_READ_FAILED'])).toBe(false);
    expect(isBuilderError(e, 'ROOTFS_STORE_FULL')).toBe(true);
    expect(isBuilderError(new Error('x'))).toBe(false);
  });

  it('no code is in two folder tables', async () => {
    const tables = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => path.basename(f) === 'codes.ts');
    expect(tables.length).toBeGreaterThan(10);
    const owner = new Map<string, string>();
    const twice: string[] = [];
    for (const f of tables) {
      const mod = (await import(path.join(SRC, f))) as Record<string, unknown>;
      // a folder's table is the export named <FOLDER>_ERROR_CODES (subsets of it have other names)
      const codes = new Set<string>();
      for (const [name, v] of Object.entries(mod)) {
        if (!name.endsWith('_ERROR_CODES')) continue;
        for (const c of Array.isArray(v) ? (v as string[]) : Object.keys(v as object)) codes.add(c);
      }
      for (const c of codes) {
        if (owner.has(c)) twice.push(`${c}: ${owner.get(c)} and ${f}`);
        owner.set(c, f);
      }
    }
    expect(twice).toEqual([]);
  });
});
