// Table-driven tests for reference parsing and normalization.
import { describe, expect, it } from 'vitest';
import { parseReference, parseRepository, withDigest, withTag, identifier, registryHostname } from '../../src/reference/index.js';
import { isBuilderError } from '../../src/errors.js';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  const valid: Array<[string, string, string, string | undefined, string | undefined, string]> = [
    ['busybox', 'index.docker.io', 'library/busybox', 'latest', undefined, 'index.docker.io/library/busybox:latest'],
    ['busybox:1.36', 'index.docker.io', 'library/busybox', '1.36', undefined, 'index.docker.io/library/busybox:1.36'],
    ['docker.io/busybox', 'index.docker.io', 'library/busybox', 'latest', undefined, 'index.docker.io/library/busybox:latest'],
    ['docker.io/library/busybox', 'index.docker.io', 'library/busybox', 'latest', undefined, 'index.docker.io/library/busybox:latest'],
    ['index.docker.io/user/app', 'index.docker.io', 'user/app', 'latest', undefined, 'index.docker.io/user/app:latest'],
    ['registry-1.docker.io/user/app:v1', 'index.docker.io', 'user/app', 'v1', undefined, 'index.docker.io/user/app:v1'],
    ['user/app', 'index.docker.io', 'user/app', 'latest', undefined, 'index.docker.io/user/app:latest'],
    ['localhost/app', 'localhost', 'app', 'latest', undefined, 'localhost/app:latest'],
    ['localhost:5000/app:dev', 'localhost:5000', 'app', 'dev', undefined, 'localhost:5000/app:dev'],
    ['127.0.0.1:5000/a/b/c:1', '127.0.0.1:5000', 'a/b/c', '1', undefined, '127.0.0.1:5000/a/b/c:1'],
    ['[::1]:5000/app', '[::1]:5000', 'app', 'latest', undefined, '[::1]:5000/app:latest'],
    ['registry.gitlab.com/group/sub/project/image:sha-1', 'registry.gitlab.com', 'group/sub/project/image', 'sha-1', undefined, 'registry.gitlab.com/group/sub/project/image:sha-1'],
    [`busybox@${D}`, 'index.docker.io', 'library/busybox', undefined, D, `index.docker.io/library/busybox@${D}`],
    [`r.io:443/x:t@${D}`, 'r.io:443', 'x', 't', D, `r.io:443/x:t@${D}`],
    ['Registry.Example.com/app', 'Registry.Example.com', 'app', 'latest', undefined, 'Registry.Example.com/app:latest'],
    ['my-reg/a__b.c-d--e', 'index.docker.io', 'my-reg/a__b.c-d--e', 'latest', undefined, 'index.docker.io/my-reg/a__b.c-d--e:latest'],
    ['app:_tag.With-Caps', 'index.docker.io', 'library/app', '_tag.With-Caps', undefined, 'index.docker.io/library/app:_tag.With-Caps'],
  ];
  it.each(valid)('%s', (input, registry, repository, tag, digest, str) => {
    const r = parseReference(input);
    expect(r.registry).toBe(registry);
    expect(r.repository).toBe(repository);
    expect(r.tag).toBe(tag);
    expect(r.digest).toBe(digest);
    expect(r.toString()).toBe(str);
    expect(String(r)).toBe(str);
    expect(r.name).toBe(`${registry}/${repository}`);
  });

  const invalid: Array<[string, RegExp]> = [
    ['', /empty/],
    ['Busybox', /lowercase/],
    ['registry.io/Group/app', /lowercase/],
    ['app:', /tag/],
    ['app:-x', /tag/],
    [`app:${'a'.repeat(129)}`, /tag/],
    ['app@sha256:abc', /digest/],
    [`app@md5:${'a'.repeat(64)}`, /digest/],
    ['a//b', /empty path component/],
    ['a/b/', /empty path component/],
    ['registry.io/', /empty/],
    ['a/-b', /path component/],
    ['a/b..c', /path component/],
    ['https://registry.io/app', /scheme/],
    ['app name', /whitespace/],
    ['-reg.io/app', /registry host/],
    [`r.io/${'a'.repeat(260)}`, /longer/],
  ];
  it.each(invalid)('rejects %j', (input, why) => {
    let err: unknown;
    try {
      parseReference(input);
    } catch (e) {
      err = e;
    }
    expect(isBuilderError(err, 'REFERENCE_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(why);
    expect((err as { hint?: string }).hint).toBeTruthy();
  });
});

describe('helpers', () => {
  it('parseRepository refuses tags and digests', () => {
    expect(parseRepository('localhost:5000/app').toString()).toBe('localhost:5000/app');
    expect(() => parseRepository('localhost:5000/app:1')).toThrow(/without tag/);
    expect(() => parseRepository(`app@${D}`)).toThrow(/without tag/);
  });
  it('withTag / withDigest / identifier', () => {
    const r = parseReference('r.io/x:1');
    expect(withTag(r, '2').toString()).toBe('r.io/x:2');
    const d = withDigest(r, D as `sha256:${string}`);
    expect(d.toString()).toBe(`r.io/x@${D}`);
    expect(identifier(d)).toBe(D);
    expect(identifier(r)).toBe('1');
    expect(() => withTag(r, 'bad tag')).toThrow(/not valid/);
  });
  it('registryHostname', () => {
    expect(registryHostname('[::1]:5000')).toBe('::1');
    expect(registryHostname('localhost:5000')).toBe('localhost');
    expect(registryHostname('r.io')).toBe('r.io');
  });
});
