import { test } from 'node:test';
import assert from 'node:assert/strict';
import { daemonNodeFlags } from '../../../orchestrator/deployment/processes.ts';

test('daemons started by canopy up cap V8 young generation, unless the operator set it in NODE_OPTIONS', () => {
  assert.deepEqual(daemonNodeFlags({}), ['--max-semi-space-size=2']);
  assert.deepEqual(daemonNodeFlags({ NODE_OPTIONS: '--enable-source-maps' }), ['--max-semi-space-size=2']);
  // A flag on the command line would override the operator's NODE_OPTIONS: none is added then.
  assert.deepEqual(daemonNodeFlags({ NODE_OPTIONS: '--max-semi-space-size=8' }), []);
});
