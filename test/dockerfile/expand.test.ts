// Golden tests for word expansion: BuildKit's envVarTest and wordsTest tables, line by line, plus lex_test.go cases.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { envListToMap, expandWord, expandWords, lex, withLocation } from '../../src/dockerfile/expand.js';
import { BuilderError, isBuilderError } from '../../src/errors.js';

import { CONFORMANCE } from '../support/paths.js';
const CORPUS = `${CONFORMANCE}/buildkit`;
// envVarTest has 230 table lines: 228 for all platforms or Unix, 2 Windows-only.
const CASES_NON_WINDOWS = 228;

// Windows-only lines (W|): $pwd equals $PWD there because env names are case-insensitive; we build Linux images.
const EXCEPTED_WINDOWS_LINES = ['W|he$pwd.                  |     he/home.', 'W|안녕$pwd.                  |     안녕/home.'];

interface EnvVarCase {
  line: number;
  platform: string;
  source: string;
  expected: string;
}

function readEnvVarTest(): { cases: EnvVarCase[]; windows: string[] } {
  const cases: EnvVarCase[] = [];
  const windows: string[] = [];
  readFileSync(`${CORPUS}/envVarTest`, 'utf8')
    .split('\n')
    .forEach((raw, i) => {
      if (raw.startsWith('#')) return;
      const line = raw.trim();
      if (line === '') return;
      const parts = line.split('|');
      expect(parts, `envVarTest:${i + 1}`).toHaveLength(3);
      const platform = (parts[0] as string).trim();
      if (platform === 'W') {
        windows.push(line);
        return;
      }
      cases.push({ line: i + 1, platform, source: (parts[1] as string).trim(), expected: (parts[2] as string).trim() });
    });
  return { cases, windows };
}

describe('envVarTest (BuildKit shell/envVarTest)', () => {
  const { cases, windows } = readEnvVarTest();
  const envList = ['PWD=/home', 'SHELL=bash', 'KOREAN=한국어', 'NULL='];

  it('excepts exactly the Windows-only lines', () => {
    expect(windows).toEqual(EXCEPTED_WINDOWS_LINES.map((l) => l.trim()));
    expect(cases.length).toBe(CASES_NON_WINDOWS);
  });

  for (const envKind of ['map', 'record'] as const) {
    const env = envKind === 'map' ? envListToMap(envList) : Object.fromEntries(envListToMap(envList));
    it(`every non-Windows line passes (${envKind} env)`, () => {
      const failures: string[] = [];
      for (const c of cases) {
        let got: string;
        try {
          got = expandWord(c.source, env);
        } catch (err) {
          if (!isBuilderError(err)) throw err;
          got = 'error';
        }
        if (got !== c.expected) failures.push(`line ${c.line}: ${c.source} -> ${JSON.stringify(got)}, want ${JSON.stringify(c.expected)}`);
      }
      expect(failures).toEqual([]);
    });
  }
});

describe('wordsTest (BuildKit shell/wordsTest)', () => {
  it('every line passes', () => {
    const envs: string[] = [];
    const failures: string[] = [];
    let checked = 0;
    readFileSync(`${CORPUS}/wordsTest`, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (line.startsWith('#')) return;
        if (line === '' ) return;
        if (line.startsWith('ENV ')) {
          envs.push(line.slice(3).replace(/^ +/, ''));
          return;
        }
        const parts = line.split('|');
        expect(parts, `wordsTest:${i + 1}`).toHaveLength(2);
        const test = (parts[0] as string).trim();
        const expected = (parts[1] as string).replace(/^ +/, '').split(',');
        let got: string[];
        try {
          got = expandWords(test, envListToMap(envs));
        } catch (err) {
          if (!isBuilderError(err)) throw err;
          got = ['error'];
        }
        checked++;
        if (JSON.stringify(got) !== JSON.stringify(expected)) {
          failures.push(`line ${i + 1}: ${test} -> ${JSON.stringify(got)}, want ${JSON.stringify(expected)}`);
        }
      });
    expect(failures).toEqual([]);
    expect(checked).toBe(24);
  });
});

describe('lex_test.go cases', () => {
  it('${VAR:?} and ${VAR?} (TestShellParserMandatoryEnvVars)', () => {
    const set = { VAR: 'plain', ARG: 'x' };
    const empty = { VAR: '', ARG: 'x' };
    const unset = { ARG: 'x' };
    const noEmpty = '${VAR:?message here$ARG}';
    const noUnset = '${VAR?message here$ARG}';
    expect(expandWord(noEmpty, set)).toBe('plain');
    expect(() => expandWord(noEmpty, empty)).toThrow(/message herex/);
    expect(() => expandWord(noEmpty, unset)).toThrow(/message herex/);
    expect(expandWord(noUnset, set)).toBe('plain');
    expect(expandWord(noUnset, empty)).toBe('');
    expect(() => expandWord(noUnset, unset)).toThrow(/message herex/);
    try {
      expandWord('${NAME:?}', {});
      expect.unreachable();
    } catch (err) {
      expect(isBuilderError(err, 'DOCKERFILE_VAR_REQUIRED')).toBe(true);
      expect((err as BuilderError).message).toContain('NAME: is not allowed to be unset');
      expect((err as BuilderError).hint).toContain('--build-arg NAME=');
      const located = withLocation(err, 'Dockerfile', 7) as BuilderError;
      expect(located.message).toMatch(/^Dockerfile:7: /);
      expect(located.code).toBe('DOCKERFILE_VAR_REQUIRED');
    }
  });

  // [input, env, expected | 'error', used, unset]
  const table: Array<[string, Record<string, string>, string, string[], string[]]> = [
    ['x', { DUMMY: 'dummy' }, 'x', [], []],
    ['x ${UNUSED}', { DUMMY: 'dummy' }, 'x ', [], ['UNUSED']],
    ['x ${FOO}', { FOO: 'y' }, 'x y', ['FOO'], []],
    ['${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}', { FOO: 'xxx', BAR: '' }, 'xxx  ccc', ['FOO', 'BAR'], ['BAZ']],
    ['${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}', { FOO: 'xxx', BAR: '' }, 'xxx bbb ccc', ['FOO', 'BAR'], ['BAZ']],
    ['${FOO:-}', { FOO: 'xxx', BAR: '' }, 'xxx', ['FOO'], []],
    ['${FOO:-}', {}, '', [], ['FOO']],
    ['${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}', { FOO: 'xxx', BAR: '' }, 'aaa bbb ', ['FOO', 'BAR'], ['BAZ']],
    ['${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}', { FOO: 'xxx', BAR: '' }, 'aaa  ', ['FOO', 'BAR'], ['BAZ']],
    ['${FOO?aaa}', { FOO: 'xxx', BAR: '' }, 'xxx', ['FOO'], []],
    ['${BAR?bbb}', { FOO: 'xxx', BAR: '' }, '', ['BAR'], []],
    ['${BAZ?ccc}', { FOO: 'xxx', BAR: '' }, 'error', [], []],
    ['${FOO:?aaa}', { FOO: 'xxx', BAR: '' }, 'xxx', ['FOO'], []],
    ['${BAR:?bbb}', { FOO: 'xxx', BAR: '' }, 'error', [], []],
    ['${BAZ:?ccc}', { FOO: 'xxx', BAR: '' }, 'error', [], []],
    ['${BAZ:?}', { FOO: 'xxx', BAR: '' }, 'error', [], []],
    ['${FOO=aaa}', { FOO: 'xxx', BAR: '' }, 'error', [], []],
    ['${FOO=:aaa}', { FOO: 'xxx', BAR: '' }, 'error', [], []],
    ['${FOO=}', {}, 'error', [], []],
    ['${FOO#()[]{\\}^$.\\*\\?|\\\\}', { FOO: '()[]{}^$.*?|\\x' }, 'x', ['FOO'], []],
    ['${FOO%%\\**}', { FOO: 'xx**' }, 'xx', ['FOO'], []],
    ['${FOO#*x*y}', { FOO: 'xxyy' }, 'y', ['FOO'], []],
    ['${FOO#*}', { FOO: 'xxyy' }, 'xxyy', ['FOO'], []],
    ['${FOO#$BAR}', { FOO: 'xxyy', BAR: 'x' }, 'xyy', ['FOO', 'BAR'], []],
    ['${FOO#$BAR}', { FOO: 'xxyy', BAR: '' }, 'xxyy', ['FOO', 'BAR'], []],
    ['${FOO#}', { FOO: 'xxyy' }, 'xxyy', ['FOO'], []],
    ['${FOO##*x}', { FOO: 'xxyy' }, 'yy', ['FOO'], []],
    ['${FOO##}', { FOO: 'xxyy' }, 'xxyy', ['FOO'], []],
    ['${FOO#?\\?}', { FOO: '???y' }, '?y', ['FOO'], []],
    ['${ABC:-.}${FOO%x}${ABC:-.}', { FOO: 'xxyy' }, '.xxyy.', ['FOO'], ['ABC']],
    ['${FOO%%\\**\\*}', { FOO: 'a***yy*' }, 'a', ['FOO'], []],
    ['${FOO%}', { FOO: 'xxyy' }, 'xxyy', ['FOO'], []],
    ['${FOO%%$BAR}', { FOO: 'xxyy', BAR: '' }, 'xxyy', ['FOO', 'BAR'], []],
    ['${FOO%y}', { FOO: 'xxyy' }, 'xxy', ['FOO'], []],
    ['${FOO%%y*}', { FOO: 'xxyy' }, 'xx', ['FOO'], []],
    ['${FOO%y*}', { FOO: 'xxyy' }, 'xxy', ['FOO'], []],
    ['${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}', { FOO: '/foo*/*/*.txt', NEEDLE: '\\*/' }, '/foo.*/*.txt - /foo..*.txt', ['FOO', 'NEEDLE'], []],
    ['${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}', { FOO: '/tmp/tmp/bar.txt', NEEDLE: '/tmp' }, '/tmp/bar.txt - /bar.txt', ['FOO', 'NEEDLE'], []],
    ['${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}', { FOO: '/a/foo/b/c.txt', NEEDLE: '/?/', REPLACEMENT: '/' }, '/foo/b/c.txt - /foo/c.txt', ['FOO', 'NEEDLE', 'REPLACEMENT'], []],
    ['${FOO/$NEEDLE/$REPLACEMENT}', { FOO: 'http://google.de', NEEDLE: 'http://', REPLACEMENT: 'https://' }, 'https://google.de', ['FOO', 'NEEDLE', 'REPLACEMENT'], []],
    ['${FOO//\\//\\/}', { FOO: '/tmp/foo.txt' }, '\\/tmp\\/foo.txt', ['FOO'], []],
    ['${FOO/$BAR/ww}', { FOO: 'xxyy', BAR: '' }, 'wwxxyy', ['FOO', 'BAR'], []],
    ['${FOO//ww}', { FOO: 'xxyy' }, 'error', [], []],
    ['${FOO//}', { FOO: 'xxyy' }, 'error', [], []],
    ['${FOO///}', { FOO: 'xxyy' }, 'xxyy', ['FOO'], []],
    ['${FOO///}', {}, '', [], ['FOO']],
    // Go's ReplaceAll skips the empty match right after a non-empty one.
    ['${FOO//*/r}', { FOO: 'abc' }, 'r', ['FOO'], []],
    ['something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz', { VERSION: 'v1.2.3', TARGETOS: 'linux', TARGETARCH: 'arm', TARGETVARIANT: 'v7' }, 'something-v1.2.3.linux-arm-v7.tar.gz', ['VERSION', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT'], []],
  ];
  for (const [input, env, expected, used, unset] of table) {
    it(`${input} with ${JSON.stringify(env)}`, () => {
      if (expected === 'error') {
        expect(() => lex(input, env)).toThrow(BuilderError);
        return;
      }
      const r = lex(input, env);
      expect(r.value).toBe(expected);
      expect([...r.used].sort()).toEqual([...used].sort());
      expect([...r.unset].sort()).toEqual([...unset].sort());
    });
  }
});

describe('options', () => {
  it('uses the backtick escape directive', () => {
    expect(expandWord('C:\\path\\$X', { X: 'y' }, { escape: '`' })).toBe('C:\\path\\y');
    expect(expandWord('a`$X', { X: 'y' }, { escape: '`' })).toBe('a$X');
    expect(expandWord('"a`"b"', {}, { escape: '`' })).toBe('a"b');
  });
  it('skipUnset keeps unknown references for static plans', () => {
    expect(expandWord('$A-${B}-${C:-x}-$K', { K: 'k' }, { skipUnset: true })).toBe('$A-${B}-${C:-x}-k');
  });
  it('rawQuotes keeps quotes', () => {
    expect(expandWord(`"a $K" 'b'`, { K: 'k' }, { rawQuotes: true })).toBe(`"a k" 'b'`);
  });
  it('fills a caller-owned usage record across calls', () => {
    const usage = { used: new Set<string>(), unset: new Set<string>() };
    expandWord('$A', { A: '1' }, { usage });
    expandWord('$B', { A: '1' }, { usage });
    expect([...usage.used]).toEqual(['A']);
    expect([...usage.unset]).toEqual(['B']);
  });
  it('unterminated quote error code', () => {
    expect(() => expandWord('"abc', {})).toThrow(expect.objectContaining({ code: 'DOCKERFILE_UNTERMINATED_QUOTE' }));
  });
});

describe('hostile words (found by test/dockerfile/fuzz.test.ts)', () => {
  it('pattern operators take linear time on long values (a backtracking RegExp took minutes: *a*a*a*a*b)', () => {
    const env = { X: 'a'.repeat(5000) };
    const t0 = performance.now();
    for (const w of ['${X#*a*a*a*a*a*b}', '${X##*a*a*a*a*a*b}', '${X%*a*a*a*a*a*b}', '${X%%*a*a*a*a*a*b}', '${X/*a*a*a*a*a*b/z}', '${X//*a*a*a*a*a*b/z}']) {
      expect(expandWord(w, env), w).toBe(env.X);
    }
    expect(expandWord('${X//a?/b}', env)).toBe('b'.repeat(2500));
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('? and * match any character but "\\n", as Go\'s regexp in BuildKit (not JS\'s ".", which also skips \\r and \\u2028)', () => {
    expect(expandWord('${X#?}', { X: '\rb' })).toBe('b');
    expect(expandWord('${X%%*}', { X: 'a\u2028b' })).toBe('');
    expect(expandWord('${X%%*}', { X: 'a\nb' })).toBe('a\n');
    expect(expandWord('${X//?/-}', { X: 'a\r\nb' })).toBe('--\n-');
  });

  it('a word that grows without bound fails with DOCKERFILE_EXPANSION_TOO_LARGE; a long literal word does not', () => {
    const big = 'x'.repeat(600_000);
    expect(() => expandWord('$X$X', { X: big })).toThrow(expect.objectContaining({ code: 'DOCKERFILE_EXPANSION_TOO_LARGE' }));
    expect(() => expandWord('${X//?/abcd}', { X: 'y'.repeat(400_000) })).toThrow(expect.objectContaining({ code: 'DOCKERFILE_EXPANSION_TOO_LARGE' }));
    expect(expandWord(`${'z'.repeat(3_000_000)}$X`, { X: big })).toHaveLength(3_600_000);
  });
});
