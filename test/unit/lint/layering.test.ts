// The folder layering (README, "Layout") is what `npm run lint` enforces: a file that breaks it fails
// the lint. Runs the project's own ESLint config on small in-memory files placed in each folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const eslint = new ESLint({ cwd: root });

async function layeringErrors(path: string, source: string): Promise<string[]> {
  const [r] = await eslint.lintText(source, { filePath: `${root}${path}` });
  return (r?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

const cases: Array<[file: string, source: string, allowed: boolean]> = [
  ['native/probe.ts', "import { TxPlan } from './io.ts';\nexport const p = new TxPlan();\n", true],
  ['native/probe.ts', "import type { Verdict } from '../netstack/table.ts';\nexport type V = Verdict;\n", false],
  ['native/probe.ts', "export { FlowTable } from '../proxy/flow-table.ts';\n", false],
  ['netstack/probe.ts', "import { TxPlan } from '../native/io.ts';\nexport const p = new TxPlan();\n", true],
  ['netstack/probe.ts', "import { FlowTable } from '../proxy/flow-table.ts';\nexport const f = FlowTable;\n", false],
  ['proxy/probe.ts', "import { Verdict } from '../netstack/table.ts';\nexport const v = Verdict;\n", true],
  ['proxy/probe.ts', "import { parseName } from '../dns/wire.ts';\nexport const f = parseName;\n", false],
  ['dns/probe.ts', "import { ipBytes } from '../proxy/address-map.ts';\nexport const f = ipBytes;\n", true],
  ['dns/probe.ts', "import { NetManager } from '../orchestrator/worker/net/net-manager.ts';\nexport const n = NetManager;\n", false],
  ['orchestrator/probe.ts', "import { Lab } from '../test/lab/lab.ts';\nexport const l = Lab;\n", false],
  ['netstack/probe.ts', "import { fakeNet } from '../test/support/x.ts';\nexport const f = fakeNet;\n", false],
  // Benchmarks share the tests' harnesses through harness/, never test/; shipped code imports neither.
  ['perf/probe.bench.ts', "import { Deployment } from '../harness/e2e-harness.ts';\nexport const d = Deployment;\n", true],
  ['perf/probe.bench.ts', "import { invalidCases } from '../test/fixtures/descriptors/invalid.ts';\nexport const c = invalidCases;\n", false],
  ['orchestrator/probe.ts', "import { freePort } from '../harness/loopback.ts';\nexport const f = freePort;\n", false],
  ['orchestrator/root/probe.ts', "import { freePort } from '../../harness/loopback.ts';\nexport const f = freePort;\n", false],
];

for (const [file, source, allowed] of cases) {
  const what = /from '([^']+)'/.exec(source)?.[1];
  test(`lint ${allowed ? 'accepts' : 'refuses'} ${what} in ${file}`, async () => {
    const errors = await layeringErrors(file, source);
    if (allowed) assert.deepEqual(errors, []);
    else assert.equal(errors.length, 1, `expected one layering error, got ${JSON.stringify(errors)}`);
  });
}
