// End to end on emulated hosts with the cluster's embedded broker (scenario in e2e-scenario.ts).
import { test } from 'node:test';
import { labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { e2eScenario } from './e2e-scenario.ts';

test('e2e: fixtures deployed through root run across three workers and reach each other by name and address',
  { skip: unavailable(labSkipReason()), timeout: 180_000 }, async (t) => {
    await e2eScenario(t);
  });
