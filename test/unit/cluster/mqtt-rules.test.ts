import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { workerMayPublish, workerMaySubscribe, parseWorkerTopic, topics } from '../../../orchestrator/mqtt/topics.ts';
import { decode } from '../../../orchestrator/mqtt/messages.ts';
import { CredentialStore, hashPassword, verifyPassword, CLUSTER_USER } from '../../../orchestrator/mqtt/credentials.ts';
import { aclFile } from '../../../orchestrator/mqtt/mosquitto.ts';
import { skipOrFail } from '../../support/facility.ts';

test('a worker publishes only its own upward topics', () => {
  assert.equal(workerMayPublish('w1', 'nodes/w1/information'), true);
  assert.equal(workerMayPublish('w1', 'nodes/w1/job'), true);
  assert.equal(workerMayPublish('w1', 'nodes/w1/net/tablequery/request'), true);
  assert.equal(workerMayPublish('w1', 'nodes/w2/information'), false);
  assert.equal(workerMayPublish('w1', 'nodes/w1/control/deploy'), false);
  assert.equal(workerMayPublish('w1', 'jobs/s1/updates'), false);
  assert.equal(workerMayPublish('w1', 'nodes/w1/information/extra'), false);
});

test('a worker subscribes only to its own downward topics and route updates', () => {
  assert.equal(workerMaySubscribe('w1', 'nodes/w1/control/deploy'), true);
  assert.equal(workerMaySubscribe('w1', 'nodes/w1/control/#'), true);
  assert.equal(workerMaySubscribe('w1', 'nodes/w1/net/tablequery/result'), true);
  assert.equal(workerMaySubscribe('w1', 'jobs/s1/updates'), true);
  assert.equal(workerMaySubscribe('w1', 'jobs/+/updates'), true);
  assert.equal(workerMaySubscribe('w1', 'nodes/w2/control/deploy'), false);
  assert.equal(workerMaySubscribe('w1', 'nodes/+/control/deploy'), false);
  assert.equal(workerMaySubscribe('w1', 'nodes/#'), false);
  assert.equal(workerMaySubscribe('w1', '#'), false);
  assert.equal(workerMaySubscribe('w1', 'nodes/w1/#'), false, 'would include its own upward topics');
  assert.equal(workerMaySubscribe('w1', 'nodes/w1/net/#'), false, 'net/ mixes both directions');
  assert.equal(workerMaySubscribe('w1', 'nodes/w1/net/coordinates/peers'), true);
  assert.equal(workerMaySubscribe('w1', 'nodes/w1/net/coordinates/#'), false, 'would include its own coordinate reports');
  assert.equal(workerMayPublish('w1', 'nodes/w1/net/coordinates'), true);
  assert.equal(workerMayPublish('w1', 'nodes/w1/net/coordinates/peers'), false);
  assert.equal(workerMaySubscribe('w1', 'jobs/#'), false);
});

test('the cluster dispatches only well-formed worker topics', () => {
  assert.deepEqual(parseWorkerTopic('nodes/w-1/information'), { worker: 'w-1', kind: 'information' });
  assert.deepEqual(parseWorkerTopic(topics.tableQueryRequest('w2')), { worker: 'w2', kind: 'net/tablequery/request' });
  assert.equal(parseWorkerTopic('nodes/W1/information'), undefined);
  assert.equal(parseWorkerTopic('nodes/w1/control/deploy'), undefined);
  assert.equal(parseWorkerTopic('jobs/s/updates'), undefined);
});

test('payload validation names the offending field and never throws', () => {
  const good = { ts: 1, seq: 1, arch: 'amd64', virtualizations: ['process'], cpu: { cores: 2, free: 2, usage_pct: 5 },
    memory_mb: { total: 1024, free: 512 }, instances: [{ service_id: 's1', instance_n: 0, state: 'RUNNING' }] };
  const ok = decode('heartbeat', JSON.stringify(good));
  assert.equal(ok.ok, true);
  const bad = decode('heartbeat', JSON.stringify({ ...good, cpu: { cores: 2, free: -1, usage_pct: 5 } }));
  assert.ok(!bad.ok && /\/cpu\/free must be >= 0/.test(bad.error), !bad.ok ? bad.error : '');
  const badState = decode('job', JSON.stringify({ service_id: 's', instance_n: 0, state: 'EXPLODED', reason: '', ts: 1 }));
  assert.ok(!badState.ok && /\/state must be equal to one of the allowed values/.test(badState.error));
  const notJson = decode('deploy', Buffer.from([0xff, 0x00, 0x7b]));
  assert.ok(!notJson.ok && /not JSON/.test(notJson.error));
  const big = decode('job', 'x'.repeat(2 << 20));
  assert.ok(!big.ok && /exceeds/.test(big.error));
  for (const junk of ['null', '[]', '"s"', '{}', '{"__proto__":{"x":1}}']) assert.equal(decode('deploy', junk).ok, false, junk);
  const env = decode('deploy', JSON.stringify({ service_id: 's', instance_n: 1, name: { app: 'a', appns: 'b', svc: 'c', svcns: 'd' },
    spec: { virtualization: 'process', cmd: ['true'], memory: 0, vcpus: 0, environment: ['NOT A VAR'] } }));
  assert.ok(!env.ok && /environment\/0/.test(env.error));
  const subnet = decode('subnet', JSON.stringify({ subnet_v6: 'fdc0::/64' }));
  assert.ok(!subnet.ok && /subnet_v4/.test(subnet.error));
});

test('credentials: issue, verify, rotate, revoke, persist', () => {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-cred-'));
  const file = join(dir, 'c.json');
  const s = new CredentialStore(file);
  try {
    const a = s.issue('w1');
    assert.equal(s.verify('w1', a.password), true);
    assert.equal(s.verify('w1', 'nope'), false);
    assert.equal(s.verify('w2', a.password), false);
    assert.equal(s.verify(undefined, a.password), false);
    const b = s.issue('w1');
    assert.equal(s.verify('w1', a.password), false, 'old password stops working after rotation');
    s.flush();
    assert.equal(new CredentialStore(file).verify('w1', b.password), true, 'survives a restart');
    assert.doesNotMatch(readFileSync(file, 'utf8'), new RegExp(b.password), 'plaintext never stored');
    s.revoke('w1');
    assert.equal(s.verify('w1', b.password), false);
    s.flush();
    assert.throws(() => s.issue('bad/name'), /invalid worker id/);
    assert.throws(() => s.issue('+'), /invalid worker id/);
    assert.equal(s.issue(CLUSTER_USER).username, CLUSTER_USER);
  } finally {
    // The store writes 50 ms after a change: write now, or that write would make the folder again.
    s.flush();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('password hashes are what mosquitto_passwd reads and writes', (t) => {
  assert.equal(verifyPassword('secret', hashPassword('secret')), true);
  assert.equal(verifyPassword('secret', '$6$abc$def'), false);
  const dir = mkdtempSync(join(tmpdir(), 'canopy-pw-'));
  try {
    const f = join(dir, 'pw');
    try {
      execFileSync('mosquitto_passwd', ['-c', '-b', f, 'u', 'secret'], { stdio: 'pipe' });
    } catch (e) {
      // Only a missing binary may skip; any other failure of mosquitto_passwd is a real one.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return skipOrFail(t, 'mosquitto_passwd not installed');
      throw e;
    }
    const line = readFileSync(f, 'utf8').trim();
    assert.equal(verifyPassword('secret', line.slice(2)), true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the Mosquitto ACL mirrors the embedded rules', () => {
  const acl = aclFile();
  assert.match(acl, /^pattern write nodes\/%u\/information$/m);
  assert.match(acl, /^pattern read nodes\/%u\/control\/deploy$/m);
  assert.match(acl, /^pattern read jobs\/\+\/updates$/m);
  assert.doesNotMatch(acl, /pattern (write|readwrite) nodes\/%u\/control/);
});
