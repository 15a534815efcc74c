// Every link is TLS, seen from the wire (SPEC §10): tcpdump on the lab's switch captures everything
// between ctl (root, cluster, broker) and the workers while they join, a user logs in to root from a
// worker host, and a web service and its client are deployed (orders over MQTT, route updates). None
// of the secrets that crossed (admin password, the user's token, the worker join key, the workers'
// MQTT passwords) nor the service's id, its command or a route message shows up in the capture; a
// marker a plain-HTTP client sent over the same bridge does, so the grep is able to find things.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { binaryMissing, unavailable } from '../support/facility.ts';
import { ADMIN_PASSWORD, Deployment, poll } from '../../harness/e2e-harness.ts';

test('a capture of the lab bridge during a TLS deployment holds none of the known secrets', {
  skip: unavailable(labSkipReason() ?? binaryMissing('tcpdump', ['--version'])), timeout: 180_000,
}, async (t) => {
  const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2'] });
  const d = new Deployment(lab, { workers: ['w1', 'w2'] });
  t.after(() => d.stop());
  const pcap = join(d.dir, 'bridge.pcap');
  // -U: every packet is written when captured, so SIGINT loses nothing.
  const dump = spawn('ip', ['netns', 'exec', lab.switchNetns, 'tcpdump', '-i', 'br0', '-U', '-s', '0', '-w', pcap], { stdio: ['ignore', 'ignore', 'pipe'] });
  let dumpErr = '';
  dump.stderr.on('data', (b: Buffer) => (dumpErr += b.toString()));
  t.after(() => { if (dump.exitCode === null) dump.kill('SIGKILL'); });
  await poll('tcpdump listening', async () => dumpErr.includes('listening on'), 10_000, 50);

  await d.start();
  // A user logs in to root from a worker host: the password and the token cross the bridge.
  const w1 = lab.host('w1');
  const login = await w1.execOk(['curl', '-sS', '-m', '10', '--cacert', d.certs.ca, '-H', 'content-type: application/json',
    '--data-binary', JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }), `https://${d.ctl.ip}:10000/api/v1/auth/login`]);
  const token = (JSON.parse(login) as { token: string }).token;
  assert.ok(token.length > 20);
  // Plain HTTP to root's port gets no answer. What a plain client sends still crosses in the clear:
  // nothing secret here, but a marker, the control that the grep finds what is in the clear.
  const marker = 'canopy-capture-control-marker';
  const plain = await w1.exec(['curl', '-sS', '-m', '5', `http://${d.ctl.ip}:10000/api/v1/${marker}`]);
  assert.notEqual(plain.code, 0, `plain HTTP to root's port gets no answer: ${plain.stdout}`);
  const { srv, cli } = await d.deployWebClient(['w1'], 'w2');
  await poll('the client reaches the server (route updates went out)', async () => /^200$/m.test(await d.instanceLogs(cli.microserviceID, 0)), 30_000);
  await new Promise((r) => setTimeout(r, 500));
  dump.kill('SIGINT');
  await new Promise((r) => dump.once('exit', r));

  const captured = readFileSync(pcap);
  assert.ok(captured.length > 10_000, `the capture holds the deployment's traffic (${captured.length} bytes)`);
  assert.ok(captured.includes(marker), 'the cleartext control marker is in the capture');
  const mqttPasswords = ['w1', 'w2'].map((h) => (JSON.parse(readFileSync(join(d.dir, h, 'worker.json'), 'utf8')) as { mqtt: { password: string } }).mqtt.password);
  const secrets: Record<string, string> = {
    'admin password': ADMIN_PASSWORD,
    "the user's token": token,
    'worker join key': 'e2e-wk',
    'w1 MQTT password': mqttPasswords[0]!,
    'w2 MQTT password': mqttPasswords[1]!,
    'the service id': String(srv.microserviceID),
    'a route message': 'route_update',
    'a deploy order': 'service_id',
    // (Not the client's own requests: the overlay's datagrams are authenticated, encrypted only when asked.)
    "the web server's command": 'http.server',
  };
  const found = Object.entries(secrets).filter(([, s]) => captured.includes(s)).map(([what]) => what);
  assert.deepEqual(found, [], `in the clear on the bridge: ${found.join(', ')}`);
});
