// The orchestrator's layering is enforced by `npm run lint` (eslint.config.js, docs/layering.md): a
// deliberate violation in each tier is an error, and the allowed direction is not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ESLint } from 'eslint';
import { REPO_ROOT } from '../../../lab/lab.ts';

const eslint = new ESLint({ cwd: REPO_ROOT });

/** The no-restricted-imports messages ESLint gives `code` as if it were the file at `path`. */
async function restricted(path: string, code: string): Promise<string[]> {
  const [r] = await eslint.lintText(code, { filePath: `${REPO_ROOT}/${path}` });
  return (r?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

test('a tier importing another tier, or protocol importing a tier, fails the lint', async () => {
  const cases: [string, string][] = [
    ['orchestrator/root/x.ts', "import { Cluster } from '../cluster/cluster.ts';\nexport const x = Cluster;\n"],
    ['orchestrator/root/api/x.ts', "import { NodeEngine } from '../../worker/node-engine.ts';\nexport const x = NodeEngine;\n"],
    ['orchestrator/cluster/x.ts', "import { InstanceManager } from '../root/instances.ts';\nexport const x = InstanceManager;\n"],
    ['orchestrator/worker/net/x.ts', "import { Cluster } from '../../cluster/cluster.ts';\nexport const x = Cluster;\n"],
    ['orchestrator/protocol/x.ts', "import { topics } from '../mqtt/topics.ts';\nexport const x = topics;\n"],
    ['orchestrator/commands/x.ts', "import { Lab } from '../../test/support/loopback.ts';\nexport const x = Lab;\n"],
    // A tier never reaches up into the CLI that drives it (root's dashboard once took a helper from commands/logs.ts).
    ['orchestrator/root/api/x.ts', "import { register } from '../../commands/logs.ts';\nexport const x = register;\n"],
    ['orchestrator/worker/x.ts', "import { up } from '../deployment/local.ts';\nexport const x = up;\n"],
    ['orchestrator/cluster/x.ts', "import { readState } from '../client/deployment-state.ts';\nexport const x = readState;\n"],
  ];
  for (const [path, code] of cases) {
    const messages = await restricted(path, code);
    assert.equal(messages.length, 1, `${path} should be refused: ${code}`);
  }
});

test('imports downward, into protocol, are allowed', async () => {
  assert.deepEqual(await restricted('orchestrator/root/x.ts', "import { canTransition } from '../protocol/instance-states.ts';\nexport const x = canTransition;\n"), []);
  assert.deepEqual(await restricted('orchestrator/cluster/x.ts', "import { topics } from '../mqtt/topics.ts';\nexport const x = topics;\n"), []);
  assert.deepEqual(await restricted('test/unit/x.test.ts', "import { Cluster } from '../../orchestrator/cluster/cluster.ts';\nexport const x = Cluster;\n"), []);
});
