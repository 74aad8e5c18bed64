// Where the layer cache lives: kaniko's default, GitLab's, oci:DIR, and GitLab's depth limit refused before the build.
import { describe, expect, it } from 'vitest';
import { cacheRepository } from '../../src/cache/index.js';
import { isBuilderError } from '../../src/errors.js';

const name = (r: ReturnType<typeof cacheRepository>): string => ('oci' in r ? `oci:${r.oci}` : r.name);

describe('cacheRepository', () => {
  it.each([
    ['the first destination + /cache', undefined, ['reg.example.com/g/app:1', 'other.example.com/x:2'], {}, 'reg.example.com/g/app/cache'],
    ['$CI_REGISTRY_IMAGE/cache in GitLab', undefined, ['reg.example.com/g/p/app:1'], { CI_REGISTRY_IMAGE: 'reg.example.com/g/p' }, 'reg.example.com/g/p/cache'],
    ['--cache-repo as given', 'reg.example.com/g/p/build-cache', ['reg.example.com/g/p:1'], { CI_REGISTRY_IMAGE: 'reg.example.com/g/p' }, 'reg.example.com/g/p/build-cache'],
    ['two levels below the project', 'reg.example.com/g/p/a/cache', [], { CI_REGISTRY_IMAGE: 'reg.example.com/g/p' }, 'reg.example.com/g/p/a/cache'],
    ['oci:DIR', 'oci:/cache/layers', [], {}, 'oci:/cache/layers'],
  ])('%s', (_what, given, dests, env, want) => {
    expect(name(cacheRepository(given, dests, env))).toBe(want);
  });

  it('refuses a repository GitLab would refuse (three levels below the project) before building', () => {
    const err = (() => {
      try {
        cacheRepository('reg.example.com/g/p/a/b/cache', [], { CI_REGISTRY_IMAGE: 'reg.example.com/g/p' });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(isBuilderError(err, 'CACHE_REPO_TOO_DEEP')).toBe(true);
    expect((err as Error).message).toContain('3 levels below the GitLab project reg.example.com/g/p');
  });

  it('needs a destination or --cache-repo', () => {
    expect(() => cacheRepository(undefined, [], {})).toThrow(/no --destination/);
  });
});
