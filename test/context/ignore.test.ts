// .dockerignore matching: moby/patternmatcher's own tables, Docker's documented examples, ignore-file parsing, Go filepath.Match.
import { describe, expect, it, onTestFinished } from 'vitest';
import { isBuilderError } from '../../src/errors.js';
import { BadPatternError, goClean, goMatch, hasWildcards } from '../../src/context/gopath.js';
import { PatternMatcher, parseIgnoreFile } from '../../src/context/ignore.js';
import { compileRegexNfa } from '../../src/context/regex-nfa.js';
import { Watchdog } from '../support/watchdog.js';

const ignored = (patterns: string[], file: string) => new PatternMatcher(patterns).matches(file);

// moby/patternmatcher patternmatcher_test.go TestMatches: [pattern, text, matches (exact or via a parent)].
const MOBY_MATCHES: Array<[string, string, boolean]> = [
  ['**', 'file', true], ['**', 'file/', true], ['**/', 'file', true], ['**/', 'file/', true],
  ['**', '/', true], ['**/', '/', true], ['**', 'dir/file', true], ['**/', 'dir/file', true],
  ['**', 'dir/file/', true], ['**/', 'dir/file/', true], ['**/**', 'dir/file', true], ['**/**', 'dir/file/', true],
  ['dir/**', 'dir/file', true], ['dir/**', 'dir/file/', true], ['dir/**', 'dir/dir2/file', true], ['dir/**', 'dir/dir2/file/', true],
  ['**/dir', 'dir', true], ['**/dir', 'dir/file', true], ['**/dir2/*', 'dir/dir2/file', true], ['**/dir2/*', 'dir/dir2/file/', true],
  ['**/dir2/**', 'dir/dir2/dir3/file', true], ['**/dir2/**', 'dir/dir2/dir3/file/', true],
  ['**file', 'file', true], ['**file', 'dir/file', true], ['**/file', 'dir/file', true], ['**file', 'dir/dir/file', true],
  ['**/file', 'dir/dir/file', true], ['**/file*', 'dir/dir/file', true], ['**/file*', 'dir/dir/file.txt', true],
  ['**/file*txt', 'dir/dir/file.txt', true], ['**/file*.txt', 'dir/dir/file.txt', true], ['**/file*.txt*', 'dir/dir/file.txt', true],
  ['**/**/*.txt', 'dir/dir/file.txt', true], ['**/**/*.txt2', 'dir/dir/file.txt', false], ['**/*.txt', 'file.txt', true],
  ['**/**/*.txt', 'file.txt', true], ['a**/*.txt', 'a/file.txt', true], ['a**/*.txt', 'a/dir/file.txt', true],
  ['a**/*.txt', 'a/dir/dir/file.txt', true], ['a/*.txt', 'a/dir/file.txt', false], ['a/*.txt', 'a/file.txt', true],
  ['a/*.txt**', 'a/file.txt', true], ['a[b-d]e', 'ae', false], ['a[b-d]e', 'ace', true], ['a[b-d]e', 'aae', false],
  ['a[^b-d]e', 'aze', true], ['.*', '.foo', true], ['.*', 'foo', false], ['abc.def', 'abcdef', false],
  ['abc.def', 'abc.def', true], ['abc.def', 'abcZdef', false], ['abc?def', 'abcZdef', true], ['abc?def', 'abcdef', false],
  ['**/foo/bar', 'foo/bar', true], ['**/foo/bar', 'dir/foo/bar', true], ['**/foo/bar', 'dir/dir2/foo/bar', true],
  ['abc/**', 'abc', false], ['abc/**', 'abc/def', true], ['abc/**', 'abc/def/ghi', true], ['**/.foo', '.foo', true],
  ['**/.foo', 'bar.foo', false], ['a(b)c/def', 'a(b)c/def', true], ['a(b)c/def', 'a(b)c/xyz', false],
  ['a.|)$(}+{bc', 'a.|)$(}+{bc', true],
  ['dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', true],
  ['dist/*.whl', 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', true],
  ['a\\\\', 'a\\', true], ['a\\*b', 'a*b', true],
];

const MOBY_MULTI: Array<[string[], string, boolean]> = [
  [['**', '!util/docker/web'], 'util/docker/web/foo', false],
  [['**', '!util/docker/web', 'util/docker/web/foo'], 'util/docker/web/foo', true],
  [['**', '!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl'], 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', false],
  [['**', '!dist/*.whl'], 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', false],
  // The single-pattern tests of patternmatcher_test.go.
  [['*'], 'fileutils.go', true],
  [['*.go'], 'fileutils.go', true],
  [['!fileutils.go', '*.go'], 'fileutils.go', true],
  [['docs', '!docs/README.md'], 'docs/README.md', false],
  [['docs/', '!docs/README.md'], 'docs/README.md', false],
  [['docs/*', '!docs/README.md'], 'docs/README.md', false],
  [['*.go', '!fileutils.go'], 'fileutils.go', false],
  [['*.go'], '.', false],
  [[], '/any/path/there', false],
];

// Go's path/filepath match tests as carried by patternmatcher_test.go (matchTests): [pattern, name, match, bad pattern].
const GO_MATCH: Array<[string, string, boolean, boolean?]> = [
  ['abc', 'abc', true], ['*', 'abc', true], ['*c', 'abc', true], ['a*', 'a', true], ['a*', 'abc', true],
  ['a*', 'ab/c', false], ['a*/b', 'abc/b', true], ['a*/b', 'a/c/b', false],
  ['a*b*c*d*e*/f', 'axbxcxdxe/f', true], ['a*b*c*d*e*/f', 'axbxcxdxexxx/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxe/xxx/f', false], ['a*b*c*d*e*/f', 'axbxcxdxexxx/fff', false],
  ['a*b?c*x', 'abxbbxdbxebxczzx', true], ['a*b?c*x', 'abxbbxdbxebxczzy', false],
  ['ab[c]', 'abc', true], ['ab[b-d]', 'abc', true], ['ab[e-g]', 'abc', false], ['ab[^c]', 'abc', false],
  ['ab[^b-d]', 'abc', false], ['ab[^e-g]', 'abc', true], ['a\\*b', 'a*b', true], ['a\\*b', 'ab', false],
  ['a?b', 'a☺b', true], ['a[^a]b', 'a☺b', true], ['a???b', 'a☺b', false], ['a[^a][^a][^a]b', 'a☺b', false],
  ['[a-ζ]*', 'α', true], ['*[a-ζ]', 'A', false], ['a?b', 'a/b', false], ['a*b', 'a/b', false],
  ['[\\]a]', ']', true], ['[\\-]', '-', true], ['[x\\-]', 'x', true], ['[x\\-]', '-', true], ['[x\\-]', 'z', false],
  ['[\\-x]', 'x', true], ['[\\-x]', '-', true], ['[\\-x]', 'a', false],
  ['[]a]', ']', false, true], ['[-]', '-', false, true], ['[x-]', 'x', false, true], ['[x-]', '-', false, true],
  ['[x-]', 'z', false, true], ['[-x]', 'x', false, true], ['[-x]', '-', false, true], ['[-x]', 'a', false, true],
  ['\\', 'a', false, true], ['[a-b-c]', 'a', false, true], ['[', 'a', false, true], ['[^', 'a', false, true],
  ['[^bc', 'a', false, true], ['a[', 'a', false, true], ['a[', 'ab', false, true], ['a[', 'x', false, true],
  ['a/b[', 'x', false, true], ['*x', 'xxx', true],
];

describe('goMatch (Go filepath.Match)', () => {
  it.each(GO_MATCH)('Match(%j, %j) = %s', (pattern, name, want, bad) => {
    if (bad) expect(() => goMatch(pattern, name)).toThrow(BadPatternError);
    else expect(goMatch(pattern, name)).toBe(want);
  });

  it('the same table through the ignore matcher (moby TestMatch)', () => {
    for (const [pattern, name, want, bad] of GO_MATCH) {
      if (bad) {
        expect(() => new PatternMatcher([pattern]), pattern).toThrow(/syntax error|illegal/);
        continue;
      }
      // The ignore matcher also matches parents; the table only has names whose parents do not match.
      if (name.includes('/') && want === false) continue;
      expect(ignored([pattern], name), `${pattern} ~ ${name}`).toBe(want);
    }
  });

  it('goClean behaves like Go path.Clean', () => {
    const cases: Array<[string, string]> = [
      ['', '.'], ['abc', 'abc'], ['abc/', 'abc'], ['a//b', 'a/b'], ['./a', 'a'], ['a/./b', 'a/b'], ['a/../b', 'b'],
      ['../a', '../a'], ['/../a', '/a'], ['/', '/'], ['a/b/..', 'a'], ['..', '..'], ['a/../..', '..'], ['/a/b/', '/a/b'],
    ];
    for (const [inp, out] of cases) expect(goClean(inp), inp).toBe(out);
  });

  it('hasWildcards follows Docker (escaped wildcards are literal)', () => {
    expect(hasWildcards('a*')).toBe(true);
    expect(hasWildcards('a?')).toBe(true);
    expect(hasWildcards('arr[[]0].txt')).toBe(true);
    expect(hasWildcards('a\\*')).toBe(false);
    expect(hasWildcards('plain/path')).toBe(false);
  });
});

describe('PatternMatcher (moby/patternmatcher MatchesOrParentMatches)', () => {
  it.each(MOBY_MATCHES)('%j ignores %j: %s', (pattern, text, want) => {
    expect(ignored([pattern], text)).toBe(want);
  });

  it.each(MOBY_MULTI)('%j ignores %j: %s', (patterns, text, want) => {
    expect(ignored(patterns, text)).toBe(want);
  });

  it('rejects a bare "!" and malformed patterns with DOCKERIGNORE_INVALID', () => {
    for (const bad of [['!'], ['['], ['[Local-Only]/'], ['a[']]) {
      let err: unknown;
      try {
        new PatternMatcher(bad, '/ctx/.dockerignore');
      } catch (e) {
        err = e;
      }
      expect(isBuilderError(err, 'DOCKERIGNORE_INVALID'), String(bad)).toBe(true);
      expect((err as Error).message).toContain('/ctx/.dockerignore');
    }
  });

  it('trims leading and trailing spaces and reports exceptions (TestCleanPatterns*)', () => {
    expect(new PatternMatcher(['docs', 'config', '']).list()).toEqual(['docs', 'config']);
    const pm = new PatternMatcher(['docs', '  !docs/README.md  ']);
    expect(pm.hasExclusions).toBe(true);
    expect(pm.list()).toEqual(['docs', '!docs/README.md']);
    expect(new PatternMatcher(['docs']).hasExclusions).toBe(false);
  });

  it('keeps current moby semantics where @balena/dockerignore differs', () => {
    // suffixMatch: a leading "**" followed by literals is a plain suffix test.
    expect(ignored(['**file'], 'dir/xfile')).toBe(true);
    // Linux Docker is case-sensitive.
    expect(ignored(['readme.md'], 'README.md')).toBe(false);
  });

  it('keeps answering by the parents when one matcher is asked about a whole tree (its per-directory memory)', () => {
    // what a walk asks: every file of 15,000 directories (more than the matcher remembers), in walk order and
    // backwards; a match two levels up, and an exception on the parent undoing it, decide each answer
    const shared = new PatternMatcher(['a1', '!a1/b2', 'x/**/y']);
    const cases: Array<[string, boolean]> = [];
    for (let b = 0; b < 5000; b++) {
      cases.push([`a1/b${b}/c/f`, b !== 2], [`a2/b${b}/c/f`, false], [`x/b${b}/q/y/f`, true]);
    }
    for (const [file, want] of [...cases, ...cases.slice().reverse()]) expect(shared.matches(file), file).toBe(want);
  });

  it('never ignores the context root', () => {
    expect(ignored(['**'], '.')).toBe(false);
    expect(ignored(['*'], '')).toBe(false);
  });

  it('decides when an excluded directory must still be walked (fsutil rule)', () => {
    const literal = new PatternMatcher(['ignore', '!ignore/keep/me']);
    expect(literal.mayReincludeUnder('ignore')).toBe(true);
    expect(literal.mayReincludeUnder('ignore/keep')).toBe(true);
    expect(literal.mayReincludeUnder('other')).toBe(false);
    expect(new PatternMatcher(['ignore', '!**/keep']).mayReincludeUnder('anything')).toBe(true);
    expect(new PatternMatcher(['ignore']).mayReincludeUnder('ignore')).toBe(false);
  });
});

describe('Docker documentation examples', () => {
  // https://docs.docker.com/build/concepts/context/#dockerignore-files
  const docs = parseIgnoreFile('# comment\n*/temp*\n*/*/temp*\ntemp?\n');
  it.each([
    ['somedir/temporary.txt', true], ['somedir/temp', true], ['somedir/subdir/temporary.txt', true],
    ['tempa', true], ['tempb', true], ['temp', false], ['temporary.txt', false], ['a/b/c/temp', false],
    ['# comment', false],
  ] as Array<[string, boolean]>)('*/temp*, */*/temp*, temp? — %s ignored: %s', (file, want) => {
    expect(new PatternMatcher(docs).matches(file)).toBe(want);
  });

  it('**/*.go excludes .go files in every directory, including the root', () => {
    const pm = new PatternMatcher(['**/*.go']);
    expect(pm.matches('main.go')).toBe(true);
    expect(pm.matches('a/b/c.go')).toBe(true);
    expect(pm.matches('a/b/c.goo')).toBe(false);
  });

  it('exceptions: *.md with !README.md', () => {
    const pm = new PatternMatcher(['*.md', '!README.md']);
    expect(pm.matches('CHANGES.md')).toBe(true);
    expect(pm.matches('README.md')).toBe(false);
  });

  it('exceptions: the last matching line decides', () => {
    const a = new PatternMatcher(['*.md', '!README*.md', 'README-secret.md']);
    expect(a.matches('README-secret.md')).toBe(true);
    expect(a.matches('README-public.md')).toBe(false);
    expect(a.matches('OTHER.md')).toBe(true);
    const b = new PatternMatcher(['*.md', 'README-secret.md', '!README*.md']);
    expect(b.matches('README-secret.md')).toBe(false);
  });

  it('/foo/bar and foo/bar are the same; ./ and trailing / are cleaned', () => {
    expect(parseIgnoreFile('/foo/bar\n./baz/\nqux/../quux\n')).toEqual(['foo/bar', 'baz', 'quux']);
  });

  it('a leading-space "#" is a pattern, not a comment (comments are checked before trimming)', () => {
    expect(parseIgnoreFile('  #notacomment\n#comment\n')).toEqual(['#notacomment']);
  });
});

describe('parseIgnoreFile (moby ignorefile.ReadAll)', () => {
  it('matches the ReadAll test', () => {
    const content = 'test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ';
    expect(parseIgnoreFile(content)).toEqual(['test1', 'test2', 'a/file/here', 'lastfile', '!inverted/abs/path', '!', '!']);
  });

  it('strips a UTF-8 BOM and CRLF line ends, trims trailing spaces', () => {
    expect(parseIgnoreFile('\uFEFFa\r\nb   \r\n\t c/d \n')).toEqual(['a', 'b', 'c/d']);
  });

  it('a lone "/" stays "/" and matches nothing', () => {
    expect(parseIgnoreFile('/\n')).toEqual(['/']);
    expect(new PatternMatcher(['/']).matches('a')).toBe(false);
  });
});

describe('hostile patterns (a context comes from a merge request)', () => {
  it('a pattern like *a*a*a*a*a*b against a long file name returns at once (a backtracking RegExp ran for hours)', () => {
    const t0 = performance.now();
    expect(ignored(['*a*a*a*a*a*b'], 'a'.repeat(255))).toBe(false);
    expect(ignored(['*a*a*a*a*a*a'], 'a'.repeat(255))).toBe(true);
    expect(ignored(['**/a/**/a/**/a/**/a/**/b'], Array(200).fill('a').join('/'))).toBe(false);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('the linear-time matcher agrees with the RegExp on the regexps patterns compile to (seeded, short inputs)', () => {
    let seed = 20261125;
    const r = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
    // The pieces compilePattern emits, including its odd ones ("[" then "[^/]*" inside a class).
    const pieces = ['(.*/)?', '.*', '[^/]*', '[^/]', 'a', 'b', '/', '\\.', '\\+', '\\(', '\\]', '\\\\', '[a-c]', '[^ab]', '[[^/]*', '[]', '[^]', 'é', '^', '-'];
    const failures: string[] = [];
    let compared = 0;
    for (let i = 0; i < 4000 && failures.length < 5; i++) {
      const src = `^${Array.from({ length: Math.floor(r() * 7) }, () => pick(pieces)).join('')}$`;
      let re: RegExp;
      try {
        re = new RegExp(src, 'u');
      } catch {
        continue; // compilePattern reports those as DOCKERIGNORE_INVALID
      }
      const nfa = compileRegexNfa(src);
      if (!nfa) {
        failures.push(`${src}: not compiled`);
        continue;
      }
      for (let k = 0; k < 6; k++) {
        const s = Array.from({ length: Math.floor(r() * 8) }, () => pick(['a', 'b', 'c', '/', '.', '+', ']', '\\', 'é', '\n', '-', '^'])).join('');
        compared++;
        if (nfa(s) !== re.test(s)) failures.push(`${src} on ${JSON.stringify(s)}: nfa ${nfa(s)}, RegExp ${re.test(s)}`);
      }
    }
    expect(failures).toEqual([]);
    expect(compared).toBeGreaterThan(10_000);
  });
});

describe('fuzz: .dockerignore patterns (seeded, bounded)', () => {
  it('any pattern either compiles or fails with DOCKERIGNORE_INVALID, and matching never throws or stalls', () => {
    let seed = 977;
    const r = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
    // Star-heavy, with long names: what makes a backtracking matcher blow up.
    const tokens = ['*', '*', '*', '*', '**', '**/', '?', '[', ']', '[a-z]', '[^/]', '[]', '\\', '\\*', '!', '/', './', '../', '.', 'a', 'a', 'a', 'b', '(', ')', '+', '|', '{', '}', '$', '^', '-', ' ', 'é', '\n', '#'];
    const failures: string[] = [];
    const dog = new Watchdog(20_000);
    onTestFinished(() => dog.stop());
    for (let i = 0; i < 3000 && failures.length < 5; i++) {
      const patterns = Array.from({ length: 1 + Math.floor(r() * 3) }, () =>
        r() < 0.3
          ? `${Array.from({ length: 3 + Math.floor(r() * 8) }, () => pick(['*', '*a', 'a', '**/', '?'])).join('')}${pick(['b', '/x', '?b', ''])}`
          : Array.from({ length: Math.floor(r() * 10) }, () => pick(tokens)).join(''));
      const path = Array.from({ length: 1 + Math.floor(r() * 6) }, () => pick(['a', 'b', 'ab', 'a'.repeat(250), 'a'.repeat(250), '.x', 'é', '[', '*'])).join(pick(['/', '/', 'a']));
      const cpu0 = process.cpuUsage();
      dog.run(`${JSON.stringify(patterns)} on ${JSON.stringify(path)}`, () => {
        try {
          const m = new PatternMatcher(parseIgnoreFile(patterns.join('\n')));
          m.matches(path);
          m.mayReincludeUnder(path);
        } catch (err) {
          if (!isBuilderError(err, 'DOCKERIGNORE_INVALID')) failures.push(`${JSON.stringify(patterns)} on ${JSON.stringify(path)}: ${String(err)}`);
        }
      });
      const cpu = process.cpuUsage(cpu0);
      if ((cpu.user + cpu.system) / 1000 > 500) failures.push(`${JSON.stringify(patterns)} on ${JSON.stringify(path)}: ${(cpu.user + cpu.system) / 1000} ms`);
    }
    expect(failures).toEqual([]);
  });
});
