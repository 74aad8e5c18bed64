// Typed instruction tests: forms, flags, heredocs, durations and line-numbered errors per instruction.
import { describe, expect, it } from 'vitest';
import { readDockerfile, parseGoDuration, type Instruction } from '../../src/dockerfile/instructions.js';

/** The typed instruction on line 2 (line 1 is FROM scratch). */
function second(line: string): Instruction {
  return readDockerfile(`FROM scratch\n${line}\n`, 'Dockerfile').instructions[1]!;
}

function errorOf(text: string): { code: string; message: string } {
  try {
    readDockerfile(text, 'Dockerfile');
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error('expected an error');
}

describe('typed instructions: forms and fields', () => {
  const table: [string, Partial<Instruction> & Record<string, unknown>][] = [
    ['FROM --platform=$BUILDPLATFORM golang:1.22 AS Build', { kind: 'from', image: 'golang:1.22', as: 'build', platform: '$BUILDPLATFORM' }],
    ['RUN echo $HOME', { kind: 'run', shell: true, cmd: ['echo $HOME'], mounts: [], heredocs: [] }],
    ['RUN ["echo", "a b"]', { kind: 'run', shell: false, cmd: ['echo', 'a b'] }],
    ['RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=x --network=none --security=insecure make',
      { kind: 'run', mounts: ['type=cache,target=/root/.cache', 'type=secret,id=x'], network: 'none', security: 'insecure', cmd: ['make'] }],
    ['CMD ["a", "b"]', { kind: 'cmd', shell: false, cmd: ['a', 'b'] }],
    ['CMD []', { kind: 'cmd', shell: false, cmd: [] }],
    ['ENTRYPOINT exec app', { kind: 'entrypoint', shell: true, cmd: ['exec app'] }],
    ['ENV A=1 B="two words" C=three\\ words', { kind: 'env', pairs: [{ key: 'A', value: '1' }, { key: 'B', value: '"two words"' }, { key: 'C', value: 'three\\ words' }] }],
    ['ENV LEGACY some value', { kind: 'env', pairs: [{ key: 'LEGACY', value: 'some value' }] }],
    ['LABEL a=b "c d"=e', { kind: 'label', pairs: [{ key: 'a', value: 'b' }, { key: '"c d"', value: 'e' }] }],
    ['MAINTAINER Jane <j@x>', { kind: 'maintainer', maintainer: 'Jane <j@x>' }],
    ['EXPOSE 80/tcp $PORT', { kind: 'expose', ports: ['80/tcp', '$PORT'] }],
    ['COPY --from=build --chown=1:1 --chmod=644 --link --exclude=*.md --exclude=*.txt --parents a b /dst/',
      { kind: 'copy', sources: ['a', 'b'], dest: '/dst/', from: 'build', chown: '1:1', chmod: '644', link: true, exclude: ['*.md', '*.txt'], parents: true, json: false }],
    ['COPY ["a b", "/c d/"]', { kind: 'copy', sources: ['a b'], dest: '/c d/', json: true, link: false, parents: false, exclude: [] }],
    ['ADD --keep-git-dir=true --checksum=sha256:abc --link=false https://x/y.tgz /', { kind: 'add', sources: ['https://x/y.tgz'], dest: '/', keepGitDir: true, checksum: 'sha256:abc', link: false }],
    ['VOLUME ["/a", "/b"]', { kind: 'volume', paths: ['/a', '/b'] }],
    ['VOLUME /a /b', { kind: 'volume', paths: ['/a', '/b'] }],
    ['USER app:app', { kind: 'user', user: 'app:app' }],
    ['WORKDIR /srv/$APP', { kind: 'workdir', path: '/srv/$APP' }],
    ['ARG a=1 b c="x y"', { kind: 'arg', args: [{ key: 'a', value: '1' }, { key: 'b' }, { key: 'c', value: '"x y"' }] }],
    ['STOPSIGNAL SIGTERM', { kind: 'stopsignal', signal: 'SIGTERM' }],
    ['SHELL ["/bin/bash", "-c"]', { kind: 'shell', shell: ['/bin/bash', '-c'] }],
    ['HEALTHCHECK NONE', { kind: 'healthcheck', test: 'NONE' }],
    ['HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=0s --start-interval=2s --retries=3 CMD curl -f http://x/',
      { kind: 'healthcheck', test: { shell: true, cmd: ['curl -f http://x/'] }, interval: 90e9, timeout: 500e6, startPeriod: 0, startInterval: 2e9, retries: 3 }],
    ['HEALTHCHECK cmd ["true"]', { kind: 'healthcheck', test: { shell: false, cmd: ['true'] } }],
  ];
  for (const [line, want] of table) {
    it(line, () => {
      const got = second(line);
      expect(got).toMatchObject({ ...want, line: 2, endLine: 2, file: 'Dockerfile', original: line });
    });
  }

  it('FROM without AS has no stage name', () => {
    expect(second('FROM alpine')).not.toHaveProperty('as');
  });

  it('ONBUILD keeps the trigger text and its parsed instruction', () => {
    const got = second('ONBUILD COPY --from=x . /app');
    expect(got).toMatchObject({ kind: 'onbuild', trigger: 'COPY --from=x . /app', instruction: { kind: 'copy', from: 'x', sources: ['.'], dest: '/app' } });
  });

  it('ONBUILD RUN heredoc re-parses from its trigger text', () => {
    const got = readDockerfile('FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n', 'Df').instructions[1]!;
    if (got.kind !== 'onbuild') throw new Error('expected onbuild');
    expect(got.trigger).toBe('RUN <<EOF\necho hi\nEOF');
    const again = readDockerfile(`FROM a\n${got.trigger}\n`, 'trigger').instructions[1]!;
    expect(again).toMatchObject({ kind: 'run', heredocs: [{ name: 'EOF', content: 'echo hi\n' }] });
  });

  it('RUN heredoc and COPY heredoc sources', () => {
    const df = readDockerfile('FROM a\nRUN <<-EOF bash\n\techo $X\n\tEOF\nCOPY <<conf.ini a.txt /etc/\n[x]\nconf.ini\n', 'Df');
    expect(df.instructions[1]).toMatchObject({ kind: 'run', shell: true, cmd: ['<<-EOF bash'], line: 2, endLine: 4, heredocs: [{ name: 'EOF', content: 'echo $X\n', chomp: true, expand: true }] });
    expect(df.instructions[2]).toMatchObject({ kind: 'copy', sources: ['a.txt'], dest: '/etc/', line: 5, endLine: 7, heredocs: [{ name: 'conf.ini', content: '[x]\n' }] });
  });

  it('reports directives and escape', () => {
    const df = readDockerfile('# syntax=docker/dockerfile:1.7\n# escape=`\nFROM a\n', 'Df');
    expect(df.escape).toBe('`');
    expect(df.directives.map((d) => [d.name, d.ignored])).toEqual([['syntax', true], ['escape', false]]);
  });
});

describe('typed instructions: errors carry file:line', () => {
  const table: [string, string, RegExp][] = [
    ['FROM a\nCOPY --user=me a /b\n', 'DOCKERFILE_UNKNOWN_FLAG', /^Dockerfile:2: COPY: unknown flag: --user/],
    ['FROM a\nADD --from=x a /b\n', 'DOCKERFILE_UNKNOWN_FLAG', /^Dockerfile:2: ADD: unknown flag: --from/],
    ['FROM a\nRUN --mnt=x make\n', 'DOCKERFILE_UNKNOWN_FLAG', /^Dockerfile:2: /],
    ['FROM a\nENV --x=1 A=b\n', 'DOCKERFILE_UNKNOWN_FLAG', /^Dockerfile:2: /],
    ['FROM --platfrm=x a\n', 'DOCKERFILE_UNKNOWN_FLAG', /^Dockerfile:1: /],
    ['FROM a\nCOPY --from a /b\n', 'DOCKERFILE_BAD_FLAG', /missing a value on flag: --from/],
    ['FROM a\nCOPY --link=maybe a /b\n', 'DOCKERFILE_BAD_FLAG', /expecting boolean value/],
    ['FROM a\nCOPY --from=a --from=b a /b\n', 'DOCKERFILE_BAD_FLAG', /duplicate flag/],
    ['FROM a\nRUN --network=bridge make\n', 'DOCKERFILE_BAD_FLAG', /network mode/],
    ['FROM a\nHEALTHCHECK --interval=1us CMD x\n', 'DOCKERFILE_BAD_FLAG', /cannot be less than 1ms/],
    ['FROM a\nHEALTHCHECK --retries=-1 CMD x\n', 'DOCKERFILE_BAD_FLAG', /cannot be negative/],
    ['FROM a\nHEALTHCHECK --timeout=soon CMD x\n', 'DOCKERFILE_BAD_FLAG', /invalid duration/],
    ['FROM a\nHEALTHCHECK CONNECT TCP 7000\n', 'DOCKERFILE_ARGS', /unknown type "CONNECT"/],
    ['FROM a\nHEALTHCHECK CMD\n', 'DOCKERFILE_ARGS', /missing command/],
    ['FROM a\nHEALTHCHECK NONE x\n', 'DOCKERFILE_ARGS', /takes no arguments/],
    ['FROM a\nFROBNICATE x\n', 'DOCKERFILE_UNKNOWN_INSTRUCTION', /^Dockerfile:2: FROBNICATE: unknown instruction/],
    ['FROM a\n\nENV PATH\n', 'DOCKERFILE_SYNTAX', /^Dockerfile:3: ENV must have two arguments/],
    ['FROM a\nENV A=1 B\n', 'DOCKERFILE_SYNTAX', /can't find =/],
    ['FROM a\nENV\n', 'DOCKERFILE_ARGS', /^Dockerfile:2: ENV: requires at least one argument/],
    ['FROM a\nCOPY a\n', 'DOCKERFILE_ARGS', /requires at least two arguments/],
    ['FROM a\nCOPY a <<EOF\nx\nEOF\n', 'DOCKERFILE_ARGS', /heredoc as a destination/],
    ['FROM a b\n', 'DOCKERFILE_ARGS', /one or three arguments/],
    ['FROM a AS 1x\n', 'DOCKERFILE_ARGS', /invalid name for build stage/],
    ['FROM a\nWORKDIR\n', 'DOCKERFILE_ARGS', /exactly one argument/],
    ['FROM a\nUSER\n', 'DOCKERFILE_ARGS', /exactly one argument/],
    ['FROM a\nRUN\n', 'DOCKERFILE_ARGS', /at least one argument/],
    ['FROM a\nEXPOSE\n', 'DOCKERFILE_ARGS', /at least one argument/],
    ['FROM a\nARG =x\n', 'DOCKERFILE_ARGS', /names can not be blank/],
    ['FROM a\nSHELL /bin/sh -c\n', 'DOCKERFILE_ARGS', /JSON form/],
    ['FROM a\nVOLUME [""]\n', 'DOCKERFILE_ARGS', /empty string/],
    ['FROM a\nONBUILD ONBUILD RUN x\n', 'DOCKERFILE_ONBUILD', /Chaining ONBUILD/],
    ['FROM a\nONBUILD FROM b\n', 'DOCKERFILE_ONBUILD', /FROM isn't allowed/],
    ['FROM a\nONBUILD MAINTAINER me\n', 'DOCKERFILE_ONBUILD', /MAINTAINER isn't allowed/],
    ['FROM a\nONBUILD\n', 'DOCKERFILE_ARGS', /at least one argument/],
    ['FROM a\nRUN ["a", ["b"]]\n', 'DOCKERFILE_JSON', /^Dockerfile:2: /],
    ['FROM a\nRUN <<EOF\nnever ends\n', 'DOCKERFILE_HEREDOC_UNTERMINATED', /^Dockerfile:2: /],
    ['# only a comment\n', 'DOCKERFILE_EMPTY', /^Dockerfile:1: file with no instructions/],
  ];
  for (const [text, code, message] of table) {
    it(`${code}: ${JSON.stringify(text)}`, () => {
      const err = errorOf(text);
      expect(err.code).toBe(code);
      expect(err.message).toMatch(message);
      expect(err.message).toMatch(/^Dockerfile:\d+: /);
    });
  }

  it('suggests the instruction a typo meant', () => {
    expect(errorOf('FROM a\nCOPPY a b\n')).toMatchObject({ hint: 'Did you mean COPY?' });
  });

  it('every error has a hint', () => {
    expect(errorOf('FROM a\nCOPY --user=me a /b\n')).toMatchObject({ hint: expect.stringContaining('--from') });
  });
});

describe('parseGoDuration', () => {
  it.each([
    ['0', 0], ['0s', 0], ['1h2m3s', 3723e9], ['1.5s', 1.5e9], ['250ms', 250e6], ['10us', 10e3], ['7ns', 7],
  ])('%s', (s, ns) => expect(parseGoDuration(s)).toBe(ns));
  it.each(['', '5', 's', '1d', '-1s'])('rejects %j', (s) => expect(parseGoDuration(s)).toBeUndefined());
});
