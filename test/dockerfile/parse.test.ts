// Parser tests: BuildKit's golden corpus, negative corpus, kaniko's Dockerfiles, directives, continuations, heredocs.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isBuilderError } from '../../src/errors.js';
import { dumpAST, goQuote, parseDockerfile } from '../../src/dockerfile/parse.js';
import { readDockerfile } from '../../src/dockerfile/instructions.js';

import { CONFORMANCE } from '../support/paths.js';
const POSITIVE = join(CONFORMANCE, 'buildkit/parser-testfiles');
const NEGATIVE = join(CONFORMANCE, 'buildkit/parser-testfiles-negative');
const KANIKO = join(CONFORMANCE, 'kaniko/dockerfiles');

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('BuildKit parser-testfiles (golden)', () => {
  const cases = readdirSync(POSITIVE);
  it('has the corpus', () => expect(cases.length).toBeGreaterThanOrEqual(33));
  for (const name of cases) {
    it(name, () => {
      const text = readFileSync(join(POSITIVE, name, 'Dockerfile'), 'utf8');
      const want = readFileSync(join(POSITIVE, name, 'result'), 'utf8');
      expect(dumpAST(parseDockerfile(text, 'Dockerfile'))).toBe(want);
    });
  }
});

describe('BuildKit parser-testfiles-negative', () => {
  for (const name of readdirSync(NEGATIVE)) {
    it(name, () => {
      const text = readFileSync(join(NEGATIVE, name, 'Dockerfile'), 'utf8');
      const err = thrown(() => readDockerfile(text, `${name}/Dockerfile`));
      expect(isBuilderError(err)).toBe(true);
      expect((err as Error).message).toMatch(new RegExp(`^${name}/Dockerfile:\\d+: `));
    });
  }
});

describe('kaniko Dockerfiles', () => {
  // *.dockerignore files sit next to the Dockerfiles they belong to; they are not Dockerfiles
  const files = readdirSync(KANIKO).filter((f) => !f.endsWith('.dockerignore'));
  for (const f of files) {
    it(f, () => {
      const r = readDockerfile(readFileSync(join(KANIKO, f), 'utf8'), f);
      expect(r.instructions.length).toBeGreaterThan(0);
    });
  }
});

describe('directives', () => {
  it('reads escape and reports syntax/check as ignored', () => {
    const ast = parseDockerfile('# syntax=docker/dockerfile:1\n# check=skip=all\n# escape=`\nFROM a\nRUN echo `\n  b\n', 'Df');
    expect(ast.escape).toBe('`');
    expect(ast.directives).toEqual([
      { name: 'syntax', value: 'docker/dockerfile:1', line: 1, ignored: true },
      { name: 'check', value: 'skip=all', line: 2, ignored: true },
      { name: 'escape', value: '`', line: 3, ignored: false },
    ]);
    expect(ast.nodes[1]!.next).toEqual(['echo   b']);
  });
  it('ignores directives after a comment or instruction', () => {
    expect(parseDockerfile('# hi\n# escape=`\nFROM a\n', 'Df').escape).toBe('\\');
    expect(parseDockerfile('FROM a\n# escape=`\n', 'Df').directives).toEqual([]);
  });
  it('rejects a bad escape token and a repeated directive with the line', () => {
    expect(thrown(() => parseDockerfile('# escape=x\nFROM a\n', 'Df'))).toMatchObject({ code: 'DOCKERFILE_DIRECTIVE', message: expect.stringMatching(/^Df:1: /) });
    expect(thrown(() => parseDockerfile('# escape=\\\n# escape=`\nFROM a\n', 'Df'))).toMatchObject({ code: 'DOCKERFILE_DIRECTIVE', message: expect.stringMatching(/^Df:2: /) });
  });
  it('strips a UTF-8 BOM', () => {
    expect(parseDockerfile('\uFEFFFROM a\n', 'Df').nodes[0]!.instruction).toBe('from');
  });
});

describe('lines and continuations', () => {
  it('records start and end lines across continuations, comments and blank lines', () => {
    const ast = parseDockerfile('FROM a\n\nRUN a \\\n# c\n\n  b\nCMD x\n', 'Df');
    expect(ast.nodes.map((n) => [n.instruction, n.startLine, n.endLine])).toEqual([['from', 1, 1], ['run', 3, 6], ['cmd', 7, 7]]);
    expect(ast.nodes[1]!.next).toEqual(['a   b']);
    expect(ast.warnings).toEqual(['Df:3: empty continuation line (will become an error in BuildKit)']);
  });
  it('keeps comments above an instruction', () => {
    expect(parseDockerfile('# build stage\nFROM a\n', 'Df').nodes[0]!.comments).toEqual(['build stage']);
  });
  it('handles CRLF line endings', () => {
    expect(dumpAST(parseDockerfile('FROM a\r\nRUN x \\\r\n  y\r\n', 'Df'))).toBe('(from "a")\n(run "x   y")\n');
  });
});

describe('heredocs', () => {
  it('reads a RUN heredoc with its lines', () => {
    const ast = parseDockerfile('FROM a\nRUN <<EOF\necho $HOME\nEOF\nCMD x\n', 'Df');
    const run = ast.nodes[1]!;
    expect(run.heredocs).toEqual([{ name: 'EOF', content: 'echo $HOME\n', expand: true, chomp: false }]);
    expect([run.startLine, run.endLine]).toEqual([2, 4]);
    expect(run.next).toEqual(['<<EOF']);
    expect(ast.nodes[2]!.startLine).toBe(5);
  });
  it('quoted delimiters disable expansion; <<- strips tabs', () => {
    const ast = parseDockerfile('FROM a\nRUN <<"A" <<-\'B\' cat\nx $y\nA\n\tz\n\tB\n', 'Df');
    expect(ast.nodes[1]!.heredocs).toEqual([
      { name: 'A', content: 'x $y\n', expand: false, chomp: false },
      { name: 'B', content: 'z\n', expand: false, chomp: true },
    ]);
  });
  it('several heredocs for COPY, with redirections and file descriptors', () => {
    const ast = parseDockerfile('FROM a\nCOPY <<one <<two /dest/\n1\none\n2\ntwo\nRUN python3 <<PY > out\nprint(1)\nPY\n', 'Df');
    expect(ast.nodes[1]!.heredocs.map((h) => [h.name, h.content])).toEqual([['one', '1\n'], ['two', '2\n']]);
    expect(ast.nodes[2]!.heredocs.map((h) => h.name)).toEqual(['PY']);
  });
  it('is not read for JSON form, other instructions or quoted markers', () => {
    const ast = parseDockerfile('FROM a\nRUN ["cat", "<<EOF"]\nENV A=<<EOF\nRUN echo "<<EOF"\n', 'Df');
    expect(ast.nodes.every((n) => n.heredocs.length === 0)).toBe(true);
  });
  it('ONBUILD RUN heredoc belongs to the ONBUILD line', () => {
    const ast = parseDockerfile('FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n', 'Df');
    expect(ast.nodes[1]!.heredocs[0]!.content).toBe('echo hi\n');
    expect(ast.nodes[1]!.endLine).toBe(4);
  });
  it('unterminated heredoc is an error naming the line', () => {
    const err = thrown(() => parseDockerfile('FROM a\nRUN <<EOF\necho\n', 'Df'));
    expect(err).toMatchObject({ code: 'DOCKERFILE_HEREDOC_UNTERMINATED', message: expect.stringMatching(/^Df:2: unterminated heredoc <<EOF/) });
  });
});

describe('JSON vs shell form', () => {
  it('falls back to shell form on invalid JSON and rejects non-string arrays', () => {
    const ast = parseDockerfile("FROM a\nCMD ['a']\nCMD [\"a\"\nCMD [\"a\", \"b\"]\n", 'Df');
    expect(ast.nodes.slice(1).map((n) => [n.json, n.next])).toEqual([[false, ["['a']"]], [false, ['["a"']], [true, ['a', 'b']]]);
    expect(thrown(() => parseDockerfile('FROM a\nRUN ["a", 1]\n', 'Df'))).toMatchObject({ code: 'DOCKERFILE_JSON', message: expect.stringMatching(/^Df:2: /) });
  });
  it('dumps like Go strconv.Quote', () => {
    expect(goQuote('a"\\\n\u0001\u007f♥\u200b')).toBe('"a\\"\\\\\\n\\x01\\x7f♥\\u200b"');
  });
});
