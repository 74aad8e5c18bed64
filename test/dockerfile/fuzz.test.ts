// Seeded, bounded fuzz of the Dockerfile front end (readDockerfile, planBuild, expandInstruction, ONBUILD triggers,
// the word expander) with mutated BuildKit/kaniko corpora: only BuilderErrors with file:line, no hang, deterministic.
// FUZZ_SEED=n and FUZZ_ITERATIONS=n replay or extend a run; a failure prints the seed and the input.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyToStageVars, cloneStageVars, compileShellPattern, expandInstruction, expansionEnv, globFind, lex, onbuildInstructions,
  planBuild, readDockerfile, stageVarsFromImage, type ExpandOptions,
} from '../../src/dockerfile/index.js';
import { prng } from '../../bench/workloads/index.js';
import { BuilderError } from '../../src/errors.js';
import { CONFORMANCE } from '../support/paths.js';
import { Watchdog } from '../support/watchdog.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261125);
const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 1000);
const MAX_INPUT = 8 * 1024;
/** One input taking more CPU time than this is a hang in the making (inputs are at most MAX_INPUT bytes). */
const SLOW_MS = 500;
/** The watchdog kills the test process when a single input has run this long, after printing it. */
const HANG_MS = 20_000;
const FILE = 'fuzz/Dockerfile';
const PLATFORM = { os: 'linux', architecture: 'amd64' };

// Copies of the corpora, read once: the shared directory is only read, never written.
function readCorpus(): { dockerfiles: string[]; words: string[] } {
  const dockerfiles: string[] = [];
  for (const dir of ['buildkit/parser-testfiles', 'buildkit/parser-testfiles-negative']) {
    for (const name of readdirSync(join(CONFORMANCE, dir))) dockerfiles.push(readFileSync(join(CONFORMANCE, dir, name, 'Dockerfile'), 'utf8'));
  }
  const kaniko = join(CONFORMANCE, 'kaniko/dockerfiles');
  for (const f of readdirSync(kaniko).filter((n) => !n.endsWith('.dockerignore'))) dockerfiles.push(readFileSync(join(kaniko, f), 'utf8'));
  // Seeds for what the corpora hold little of: heredocs, ONBUILD, stage references, RUN --mount, flags, ${VAR...} forms.
  dockerfiles.push(
    '# syntax=docker/dockerfile:1\nARG BASE=busybox\nFROM ${BASE:-alpine} AS build\nARG V=1\nRUN <<EOF\necho $V\nEOF\nCOPY --from=build --chown=1:1 --chmod=0755 a b /dst/\n',
    'FROM scratch AS a\nONBUILD RUN echo hi\nFROM a AS b\nCOPY --from=a / /\nRUN --mount=type=cache,target=/c,from=a --network=none true\n',
    '# escape=`\nFROM busybox\nENV A="x y" `\n  B=${A%% *}\nLABEL "k"="v" k2=${B/x/z}\nWORKDIR ${A:+/w}\nUSER ${NOPE:?unset}\n',
    'FROM scratch\nENV X=0123456789abcdef\nENV X=$X$X\nLABEL l=${X//?/ab}\n',
    'FROM --platform=$BUILDPLATFORM busybox\nCOPY <<-EOT /x <<"EOF2" /y\n\tbody\n\tEOT\nraw $x\nEOF2\nHEALTHCHECK --interval=5s CMD ["true"]\nSHELL ["/bin/sh","-c"]\nEXPOSE 80/tcp ${P:-81}\n',
  );
  const words: string[] = [];
  for (const line of readFileSync(join(CONFORMANCE, 'buildkit/envVarTest'), 'utf8').split('\n')) {
    const parts = line.split('|');
    if (!line.startsWith('#') && parts.length === 3) words.push(parts[1]!.trim());
  }
  for (const line of readFileSync(join(CONFORMANCE, 'buildkit/wordsTest'), 'utf8').split('\n')) {
    if (!line.startsWith('#') && !line.startsWith('ENV ') && line.includes(' | ')) words.push(line.slice(0, line.lastIndexOf(' | ')));
  }
  return { dockerfiles, words };
}

const TOKENS = [
  '\\', '`', '"', "'", '$', '{', '}', '${', '$(', ':-', ':+', ':?', '-', '+', '?', '#', '##', '%', '%%', '/', '//', '*', '[', ']',
  ',', '=', ' ', '\t', '\n', '\r\n', '\r', '\\\n', '`\n', '\0', '\u00a0', '\u2028', 'é', '안', '\ud83d\ude00', '\ud800',
  '<<EOF', '<<-EOF', '<<"EOF"', "<<'E'", 'EOF', '\nEOF\n', '# escape=`\n', '# escape=\\\n', '# syntax=x\n', '# check=skip=all\n',
  'FROM ', 'FROM a AS b\n', 'AS ', 'ARG ', 'ENV ', 'RUN ', 'COPY ', 'ADD ', 'ONBUILD ', 'WORKDIR ', 'USER ', 'LABEL ', 'EXPOSE ',
  'HEALTHCHECK ', 'SHELL ', 'STOPSIGNAL ', 'VOLUME ', 'CMD ', 'ENTRYPOINT ', 'MAINTAINER ',
  '--from=', '--from=0', '--mount=', 'type=bind,from=', '--chown=', '--chmod=', '--platform=', '--network=', '--link', '--interval=',
  '--exclude=', '--parents', '--keep-git-dir', '--checksum=', '["', '"]', '[]', 'NONE', '${A}', '${A:-${B}}', '$A', '${#}', '${A/}',
];

function mutate(text: string, r: () => number, corpus: readonly string[]): string {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const at = (): number => Math.floor(r() * (text.length + 1));
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    switch (Math.floor(r() * 8)) {
      case 0: case 1: { // insert a token
        const p = at();
        text = text.slice(0, p) + pick(TOKENS) + text.slice(p);
        break;
      }
      case 2: { // delete a range
        const p = at();
        text = text.slice(0, p) + text.slice(p + 1 + Math.floor(r() * 16));
        break;
      }
      case 3: { // replace a character
        const p = at();
        text = text.slice(0, p) + String.fromCharCode(Math.floor(r() * 128)) + text.slice(p + 1);
        break;
      }
      case 4: { // repeat or move a line
        const lines = text.split('\n');
        const a = Math.floor(r() * lines.length);
        const b = Math.floor(r() * lines.length);
        if (r() < 0.5) lines.splice(b, 0, ...Array<string>(1 + Math.floor(r() * 30)).fill(lines[a]!));
        else [lines[a], lines[b]] = [lines[b]!, lines[a]!];
        text = lines.join('\n');
        break;
      }
      case 5: { // splice in part of another input
        const other = pick(corpus);
        const s = Math.floor(r() * other.length);
        const p = at();
        text = text.slice(0, p) + other.slice(s, s + Math.floor(r() * 200)) + text.slice(p);
        break;
      }
      case 6: { // repeat a short piece (long runs of one construct)
        const p = at();
        const piece = text.slice(p, p + 1 + Math.floor(r() * 8));
        text = text.slice(0, p) + piece.repeat(2 + Math.floor(r() * 40)) + text.slice(p);
        break;
      }
      default: { // change case of a stretch
        const p = at();
        const q = p + Math.floor(r() * 20);
        const part = text.slice(p, q);
        text = text.slice(0, p) + (r() < 0.5 ? part.toUpperCase() : part.toLowerCase()) + text.slice(q);
      }
    }
  }
  return text.slice(0, MAX_INPUT);
}

/** The failure to report for what a call threw, or undefined when it is an acceptable error. */
function badError(err: unknown, located: boolean): string | undefined {
  if (!(err instanceof BuilderError)) return `threw a non-BuilderError: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
  if (!/^[A-Z][A-Z0-9_]+$/.test(err.code)) return `BuilderError with an unstable code ${JSON.stringify(err.code)}`;
  if (located && !new RegExp(`^${FILE}:\\d+: `).test(err.message)) return `BuilderError without file:line: ${err.code}: ${err.message}`;
  if (!err.hint) return `BuilderError without a hint: ${err.code}: ${err.message}`;
  return undefined;
}

/** Stable rendering of whatever a call returned, to compare two runs of the same input. */
function render(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (x instanceof Map ? [...x] : x instanceof Set ? [...x] : x));
}

interface Outcome {
  /** Rendering of the results, or the error code and message. */
  text: string;
  failure?: string;
}

/** The whole front end on one Dockerfile, as the executor drives it. */
function frontEnd(text: string, target: (names: string[]) => string | undefined): Outcome {
  const out: string[] = [];
  let df: ReturnType<typeof readDockerfile>;
  try {
    df = readDockerfile(text, FILE);
  } catch (err) {
    return { text: `parse error ${(err as BuilderError).code} ${(err as Error).message}`, failure: badError(err, true) };
  }
  out.push(render(df.instructions));
  let plan: ReturnType<typeof planBuild>;
  try {
    const names = df.instructions.flatMap((i) => (i.kind === 'from' && i.name ? [i.name] : []));
    const t = target(names);
    plan = planBuild(df, {
      buildArgs: { A: 'a b', HTTP_PROXY: 'http://p', EMPTY: '', BARE: undefined },
      env: { BARE: 'from-env' },
      ...(t ? { target: t } : {}),
      platform: PLATFORM,
      buildPlatform: PLATFORM,
      skipUnusedStages: t !== undefined,
    });
  } catch (err) {
    return { text: `${out.join('\n')}\nplan error ${(err as BuilderError).code} ${(err as Error).message}`, failure: badError(err, true) };
  }
  out.push(render({ ...plan, usage: undefined }));
  for (const stage of plan.stages) {
    // As the executor: expand each step against the stage's running env, then record ENV/ARG.
    const vars = stage.baseStage === undefined ? stageVarsFromImage(['PATH=/bin', 'HOME=/root']) : cloneStageVars(stageVarsFromImage(['X=1']));
    for (const inst of stage.instructions) {
      try {
        const e = expandInstruction(inst, expansionEnv(vars), plan);
        applyToStageVars(vars, e);
        out.push(render(e));
      } catch (err) {
        out.push(`expand error ${(err as BuilderError).code} ${(err as Error).message}`);
        const failure = badError(err, true);
        if (failure) return { text: out.join('\n'), failure };
        break; // the executor stops the stage at the first error
      }
    }
  }
  return { text: out.join('\n') };
}

/** A base image's ONBUILD triggers come from anywhere: each line of the input is one trigger. */
function triggers(text: string): Outcome {
  try {
    const insts = onbuildInstructions(text.split('\n').slice(0, 20), { file: FILE, line: 3, baseName: 'hostile/base' });
    return { text: render(insts) };
  } catch (err) {
    return { text: `error ${(err as BuilderError).code} ${(err as Error).message}`, failure: badError(err, true) };
  }
}

// L is long: pattern operators must stay fast on long values (a backtracking matcher does not).
const ENV = new Map([['A', 'a b'], ['EMPTY', ''], ['PWD', '/home'], ['안', '한'], ['X', '*?[a]'], ['L', `${'a'.repeat(1000)}\n${'ab'.repeat(300)}\r\u2028x`]]);

/** A ${VAR<op>pattern} word with a random shell pattern: the corpora hold few, and none on long values. */
function patternWord(r: () => number): string {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const pattern = Array.from({ length: Math.floor(r() * 12) }, () => pick(['*', '*', '*', '*', '?', 'a', 'a', 'a', 'b', 'x', '\\*', '\\?', '\\}', '\n', '\r', '\u2028', '$A'])).join('');
  const op = pick(['#', '##', '%', '%%', '/', '//']);
  return `\${${pick(['L', 'L', 'A', 'X', 'NOPE'])}${op}${pattern}${op.startsWith('/') ? `/${pick(['', 'r', '$0', '\\/'])}` : ''}}`;
}

/** The word expander alone (errors carry no location: withLocation adds it, tested elsewhere). */
function word(w: string, opts: ExpandOptions): Outcome {
  try {
    return { text: render(lex(w, ENV, opts)) };
  } catch (err) {
    return { text: `error ${(err as BuilderError).code} ${(err as Error).message}`, failure: badError(err, false) };
  }
}

describe('fuzz: Dockerfile parser, planner and expander (seeded, bounded)', () => {
  const corpus = readCorpus();
  let dog: Watchdog;
  beforeAll(() => {
    dog = new Watchdog(HANG_MS, MAX_INPUT);
  });
  afterAll(async () => {
    await dog?.stop();
  });

  /** Runs `check` twice per input (determinism) under the watchdog and timing; collects failures. */
  function campaign(name: string, seed: number, gen: (r: () => number) => string, check: (input: string, r: () => number) => Outcome): string[] {
    const r = prng(seed);
    const failures: string[] = [];
    for (let i = 0; i < ITERATIONS && failures.length < 5; i++) {
      const input = gen(r);
      const choice = r(); // the same choices for both runs of the input
      const once = (): Outcome => dog.run(input, () => check(input, prng(Math.floor(choice * 2 ** 32))));
      // CPU time, and the faster of two runs: the machine's load must not fail the run.
      const cpu0 = process.cpuUsage();
      const a = once();
      const cpu1 = process.cpuUsage(cpu0);
      const b = once();
      const cpu2 = process.cpuUsage(cpu0);
      const first = (cpu1.user + cpu1.system) / 1000;
      const ms = Math.min(first, (cpu2.user + cpu2.system) / 1000 - first);
      const where = `${name} seed=${seed} #${i} input=${JSON.stringify(input)}`;
      if (a.failure) failures.push(`${where}: ${a.failure}`);
      else if (a.text !== b.text) failures.push(`${where}: not deterministic:\n${a.text}\n---\n${b.text}`);
      else if (ms > SLOW_MS) failures.push(`${where}: took ${ms.toFixed(0)} ms`);
    }
    return failures;
  }

  it('readDockerfile, planBuild and expandInstruction on mutated Dockerfiles', () => {
    const failures = campaign('dockerfile', SEED, (r) => mutate(corpus.dockerfiles[Math.floor(r() * corpus.dockerfiles.length)]!, r, corpus.dockerfiles), (input, r) =>
      frontEnd(input, (names) => (names.length > 0 && r() < 0.3 ? names[Math.floor(r() * names.length)] : undefined)));
    expect(failures).toEqual([]);
  });

  it('ONBUILD triggers of a base image, mutated', () => {
    const lines = corpus.dockerfiles.flatMap((d) => d.split('\n')).filter((l) => /^\s*[A-Za-z]/.test(l));
    const failures = campaign('onbuild', SEED + 1, (r) => mutate(Array.from({ length: 1 + Math.floor(r() * 3) }, () => lines[Math.floor(r() * lines.length)]!).join('\n'), r, lines), (input) => triggers(input));
    expect(failures).toEqual([]);
  });

  it('the word expander on mutated words, with every option', () => {
    const failures = campaign('word', SEED + 2, (r) => (r() < 0.3 ? patternWord(r) : mutate(corpus.words[Math.floor(r() * corpus.words.length)]!, r, corpus.words).slice(0, 512)), (input, r) =>
      word(input, {
        escape: r() < 0.3 ? '`' : '\\',
        rawQuotes: r() < 0.3,
        rawEscapes: r() < 0.3,
        skipQuotes: r() < 0.2,
        skipUnset: r() < 0.3,
      }));
    expect(failures).toEqual([]);
  });

  it('the pattern matcher finds what a backtracking RegExp finds (short inputs, where backtracking is cheap)', () => {
    const r = prng(SEED + 3);
    const failures: string[] = [];
    const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
    for (let i = 0; i < ITERATIONS * 4 && failures.length < 5; i++) {
      const pattern = Array.from({ length: Math.floor(r() * 8) }, () => pick(['*', '?', 'a', 'b', '\\*', '\\?', '.', '\n'])).join('');
      const value = Array.from({ length: Math.floor(r() * 14) }, () => pick(['a', 'b', '*', '?', '.', '\n'])).join('');
      const greedy = r() < 0.5;
      const anchored = r() < 0.5;
      const from = Math.floor(r() * (value.length + 1));
      const tokens = compileShellPattern(pattern);
      // The oracle: the regex BuildKit builds, run by JS (the same leftmost-first rules as Go's regexp; no \r or \u2028 here).
      const source = tokens.map((t) => (t.kind === 'star' ? (greedy ? '.*' : '.*?') : t.kind === 'any' ? '.' : t.c.replace(/[.*?\\]/g, '\\$&'))).join('');
      const re = new RegExp(source, anchored ? 'yu' : 'gu'); // sticky: only at `from`
      re.lastIndex = from;
      const m = re.exec(value);
      const want = m ? [m.index, m.index + m[0].length] : undefined;
      const got = globFind(tokens, greedy, Array.from(value), from, anchored);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        failures.push(`pattern=${JSON.stringify(pattern)} value=${JSON.stringify(value)} greedy=${greedy} anchored=${anchored} from=${from}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
      }
    }
    expect(failures).toEqual([]);
  });
});
