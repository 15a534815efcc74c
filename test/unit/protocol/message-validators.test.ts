// The MQTT payload validators are compiled ahead of time (scripts/gen-validators.ts): the committed
// code matches the schemas, and the decoder built on it accepts good payloads and says why it refuses
// bad ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { VALIDATORS_FILE, validatorSource } from '../../../scripts/gen-validators.ts';
import { decode } from '../../../orchestrator/mqtt/messages.ts';

test('the generated validators match message-schemas.ts (else: npm run build)', () => {
  assert.equal(readFileSync(VALIDATORS_FILE, 'utf8'), validatorSource());
});

test('decode: good payloads pass, bad ones are refused with the path and the reason', () => {
  const job = { service_id: 's1', instance_n: 0, state: 'RUNNING', reason: 'started', ts: 1 };
  assert.deepEqual(decode('job', JSON.stringify(job)), { ok: true, value: job });
  const bad = decode('job', JSON.stringify({ ...job, instance_n: -1, state: 'SLEEPING' }));
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.error : '', /^invalid job: \/instance_n must be >= 0; \/state must be equal to one of the allowed values/);
  assert.match((decode('subnet', '{}') as { error: string }).error, /must have required property 'subnet_v4'/);
  assert.match((decode('probe', 'nope') as { error: string }).error, /^not JSON/);
  // maxLength counts code points, as ajv does: 45 emoji (90 UTF-16 units) fit a 45-character target.
  assert.equal(decode('probe_result', JSON.stringify({ probe_id: 'p', target: '😀'.repeat(45), rtt_ms: null, method: 'none' })).ok, true);
  assert.equal(decode('probe_result', JSON.stringify({ probe_id: 'p', target: '😀'.repeat(46), rtt_ms: null, method: 'none' })).ok, false);
  const env = decode('deploy', JSON.stringify({ service_id: 's', instance_n: 1, name: { app: 'a', appns: 'b', svc: 'c', svcns: 'd' },
    spec: { virtualization: 'process', cmd: ['x'], memory: 0, vcpus: 0, environment: ['1BAD=x'] } }));
  assert.match((env as { error: string }).error, /\/spec\/environment\/0 must match pattern/);
});
