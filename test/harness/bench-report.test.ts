// The bench report says why a row failed when the cause is a known bug of the tool, not of the harness.
import { describe, expect, it } from 'vitest';
import { targetsTable, toolTables, type Summary } from '../../bench/support/report.js';

const failed = (mode: string, firstError: string): Summary => ({ workload: 'small', mode, tool: 'kaniko', runs: 1, failures: 1, firstError });
const tools = [{ name: 'builder' }, { name: 'kaniko' }];

describe('bench report', () => {
  it("names kaniko's warmer/OCI bug next to a warm MANIFEST_INVALID, in the table and the targets", () => {
    const sums = [failed('warm', 'exit 1: error pushing image: PUT http://x/v2/bench/small/manifests/latest: MANIFEST_INVALID: manifest invalid'), failed('cold', 'x')];
    const md = toolTables(sums, tools, [{ name: 'small', warm: true }]);
    expect(md).toContain('kaniko bug, not the harness (GoogleContainerTools/kaniko#2423, #2713');
    expect(targetsTable(sums)).toContain('small warm wall ≤ kaniko (issue 13) | n/a | not measured (kaniko failed every run: its warmer/OCI bug, see the table)');
  });

  it('blames nothing for another failure', () => {
    const md = toolTables([failed('warm', 'exit 1: connection refused')], tools, [{ name: 'small', warm: true }]);
    expect(md).toContain('**FAILED 1/1**: exit 1: connection refused |');
    expect(md).not.toContain('kaniko bug');
  });
});
