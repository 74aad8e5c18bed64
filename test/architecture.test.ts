// The source's shape, as docs/ARCHITECTURE.md states it: imports flow one way (no circle, type imports included),
// functions do one job (none over 100 lines), and only src/cli reads the process (the library gets what it needs).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../src');
const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).sort().map((f) => path.join(SRC, f));
const parsed = new Map(files.map((f) => [f, ts.createSourceFile(f, readFileSync(f, 'utf8'), ts.ScriptTarget.Latest, true)]));
const rel = (f: string): string => path.relative(SRC, f);

function localImports(sf: ts.SourceFile): string[] {
  const out: string[] = [];
  for (const st of sf.statements) {
    const spec = (ts.isImportDeclaration(st) || ts.isExportDeclaration(st)) ? st.moduleSpecifier : undefined;
    if (spec && ts.isStringLiteral(spec) && spec.text.startsWith('.')) {
      out.push(path.resolve(path.dirname(sf.fileName), spec.text.replace(/\.js$/, '.ts')));
    }
  }
  return out.filter((f) => parsed.has(f));
}

/** Every strongly connected component of more than one file (Tarjan), each as sorted relative paths. */
function importCircles(): string[][] {
  const graph = new Map([...parsed].map(([f, sf]) => [f, localImports(sf)]));
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const circles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    for (const w of graph.get(v)!) {
      if (!index.has(w)) visit(w);
      if (stack.includes(w)) low.set(v, Math.min(low.get(v)!, low.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component = stack.splice(stack.indexOf(v));
    if (component.length > 1) circles.push(component.map(rel).sort());
  };
  for (const f of graph.keys()) if (!index.has(f)) visit(f);
  return circles;
}

function walk(sf: ts.SourceFile, fn: (n: ts.Node) => void): void {
  const go = (n: ts.Node): void => {
    fn(n);
    ts.forEachChild(n, go);
  };
  go(sf);
}

const lineOf = (sf: ts.SourceFile, pos: number): number => sf.getLineAndCharacterOfPosition(pos).line + 1;

describe('architecture', () => {
  it('has no import circle in src/ (type-only imports count)', () => {
    expect(importCircles()).toEqual([]);
  });

  it('has no function in src/ longer than 100 lines', () => {
    const long: string[] = [];
    for (const sf of parsed.values()) {
      walk(sf, (n) => {
        if (!ts.isFunctionLike(n) || !('body' in n) || !n.body) return;
        const lines = lineOf(sf, n.getEnd()) - lineOf(sf, n.getStart()) + 1;
        if (lines > 100) long.push(`${rel(sf.fileName)}:${lineOf(sf, n.getStart())} ${n.name?.getText() ?? '(anonymous)'} ${lines} lines`);
      });
    }
    expect(long).toEqual([]);
  });

  it('reads `process` only in src/cli', () => {
    const uses: string[] = [];
    for (const sf of parsed.values()) {
      if (rel(sf.fileName).startsWith(`cli${path.sep}`)) continue;
      walk(sf, (n) => {
        const global = ts.isIdentifier(n) && n.text === 'process' && !(ts.isPropertyAccessExpression(n.parent) && n.parent.name === n)
          && !ts.isPropertyAssignment(n.parent) && !ts.isQualifiedName(n.parent);
        const module = ts.isStringLiteral(n) && (n.text === 'node:process' || n.text === 'process') && ts.isImportDeclaration(n.parent);
        if (global || module) uses.push(`${rel(sf.fileName)}:${lineOf(sf, n.getStart())}`);
      });
    }
    expect(uses).toEqual([]);
  });

});
