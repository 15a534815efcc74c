// What `canopy worker revoke` and `canopy cluster revoke` print about root's rotated overlay key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keyLine } from '../../../orchestrator/client/revocation.ts';

test('the revoke commands name the new overlay key, the clusters told and those the push missed', () => {
  assert.equal(keyLine(undefined), '');
  assert.equal(keyLine({ key_id: 129, clusters_told: ['c1', 'c2'], clusters_missed: [] }), '\nnew overlay key 129 sent to c1, c2');
  assert.equal(keyLine({ key_id: 130, clusters_told: [], clusters_missed: [{ cluster: 'c3', error: 'timed out' }] }),
    '\nnew overlay key 130 (no other active cluster); not reached: c3 (timed out) (they get it with their next report)');
});
