// Payload encryption as a cluster option (SPEC §5.4): `canopy cluster --encrypt-payload` makes its
// workers encrypt what they send through the tunnel. A capture on the lab's bridge (what any host on
// the wire sees) while a client asks the web service for a marked URL through the overlay: with the
// option no tunnel datagram holds the marker; without it the request crosses in clear (so the capture
// does find it when it is there, and the first case can fail).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { BridgeCapture, type CaptureResult } from '../support/bridge-capture.ts';
import { Deployment, poll } from '../../harness/e2e-harness.ts';

const TUNNEL_PORT = 50103;

async function captureRequests(t: { after: (fn: () => Promise<void>) => void; diagnostic: (s: string) => void }, encrypt: boolean): Promise<{ seen: CaptureResult; status: Record<string, unknown> }> {
  const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2'], ipv6: false });
  const d = new Deployment(lab, { workers: ['w1', 'w2'], clusterArgs: encrypt ? ['--encrypt-payload'] : [] });
  t.after(() => d.stop());
  try {
    await d.start();
    const { cli, c0 } = await d.deployWebClient(['w2'], 'w1');
    const marker = `canopy-marker-${randomBytes(8).toString('hex')}`;
    const get = async (path: string): Promise<string> =>
      (await d.inInstance(c0.worker_id!, cli.microserviceID, 0, ['curl', '-sS', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', `http://10.30.30.30/${path}`], 8000)).stdout;
    // The route is resolved and the server answers before the capture starts.
    await poll('the client reaches the server', async () => (await get('')) === '200', 30_000);
    const cap = await BridgeCapture.start(lab.switchNetns, TUNNEL_PORT, marker);
    t.after(async () => cap.kill());
    // http.server answers 404 for the marked path: the request went through and back.
    for (let i = 0; i < 5; i++) assert.equal(await get(marker), '404', `request ${i + 1} crossed the overlay`);
    const seen = await cap.stop();
    const status = await d.clusterStatus<Record<string, unknown>>();
    t.diagnostic(`encrypt=${encrypt}: ${JSON.stringify(seen)}`);
    return { seen, status };
  } catch (e) {
    for (const n of ['cluster', 'w1', 'w2']) t.diagnostic(`--- ${n} ---\n${d.output(n).slice(-3000)}`);
    throw e;
  }
}

test('payload encryption: with --encrypt-payload the bridge never sees the request in clear',
  { skip: unavailable(labSkipReason()), timeout: 120_000 }, async (t) => {
    const { seen, status } = await captureRequests(t, true);
    assert.equal(status.payload_encrypted, true, 'the cluster says its workers encrypt');
    assert.ok(seen.udp >= 10, `the capture saw the tunnel traffic (${seen.udp} datagrams)`);
    assert.equal(seen.with_marker, 0, `${seen.with_marker} tunnel datagrams carried the request in clear`);
  });

test('payload encryption: without it the same capture finds the request in clear (the control)',
  { skip: unavailable(labSkipReason()), timeout: 120_000 }, async (t) => {
    const { seen, status } = await captureRequests(t, false);
    assert.equal(status.payload_encrypted, false);
    assert.ok(seen.udp >= 10, `the capture saw the tunnel traffic (${seen.udp} datagrams)`);
    assert.ok(seen.with_marker >= 5, `each request crossed in clear (${seen.with_marker} datagrams with the marker)`);
  });
