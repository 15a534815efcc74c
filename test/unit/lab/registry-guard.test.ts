// The guard every test worker gets (harness/registry-guard.ts): pulls only through mirrors, and
// docker.io on a closed loopback port unless the test brings its own docker.io mirror.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLOSED_MIRROR, registryGuardArgs } from '../../../harness/registry-guard.ts';

test('every worker pulls only through mirrors; docker.io gets a closed one unless the test gives one', () => {
  assert.deepEqual(registryGuardArgs(), ['--registry-mirror', `docker.io=${CLOSED_MIRROR}`, '--registry-mirrors-only']);
  assert.deepEqual(registryGuardArgs(['--vcpus', '1', '--registry-mirror', 'docker.io=http://10.0.0.5:5000']), ['--registry-mirrors-only']);
  assert.deepEqual(registryGuardArgs(['--registry-mirror=docker.io=http://10.0.0.5:5000']), ['--registry-mirrors-only']);
  // A mirror for another registry does not cover docker.io.
  assert.deepEqual(registryGuardArgs(['--registry-mirror', '10.0.0.5:5000=http://10.0.0.5:5000']),
    ['--registry-mirror', `docker.io=${CLOSED_MIRROR}`, '--registry-mirrors-only']);
  assert.match(CLOSED_MIRROR, /^http:\/\/127\./, 'loopback: nothing leaves the host or namespace');
});
